// Host emulation of the CUDA glue of torch_pet::radius_graph: csrc/cuda/radius_graph_cuda.cu
// compiled as C++ (TORCH_PET_HOST_EMULATION, see csrc/kernels/cuda_compat.h and
// csrc/kernels/launch.h), registered as torch_pet_emu::radius_graph for CPU tensors.
#include "cuda/radius_graph_cuda.cu"

// Host emulation of the CUDA glue of torch_pet::reverse_edge_index: csrc/cuda/reverse_edge_index_cuda.cu
// compiled as C++ (TORCH_PET_HOST_EMULATION, see csrc/kernels/cuda_compat.h and
// csrc/kernels/launch.h), registered as torch_pet_emu::reverse_edge_index for CPU tensors.
#include "cuda/reverse_edge_index_cuda.cu"

// Host emulation of the CUDA glue of torch_pet::ecse_pairs: csrc/cuda/ecse_pairs_cuda.cu
// compiled as C++ (TORCH_PET_HOST_EMULATION, see csrc/kernels/cuda_compat.h and
// csrc/kernels/launch.h), registered as torch_pet_emu::ecse_pairs for CPU tensors.
#include "cuda/ecse_pairs_cuda.cu"

// Plain C++/CUDA helpers shared by the CPU and CUDA kernels. No ATen here: the CUDA
// kernels include only these headers, so they compile with a bare nvcc (see
// scripts/check_cuda_kernels.sh) even where torch lacks CUDA headers.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define TP_HOST_DEVICE __host__ __device__
#else
#define TP_HOST_DEVICE
#endif

// Name of the op library: torch_pet, or torch_pet_emu in the host emulation of the CUDA
// glue (tests/cuda_emulation/), whose ops must not collide with the real ones.
#if defined(TORCH_PET_HOST_EMULATION)
#define TORCH_PET_LIBRARY torch_pet_emu
#else
#define TORCH_PET_LIBRARY torch_pet
#endif

#if defined(TORCH_PET_HOST_EMULATION)
#if defined(__CUDACC__)
#error "TORCH_PET_HOST_EMULATION compiles the CUDA code as C++; do not use it with nvcc"
#endif
// The CUDA kernels compiled as C++ (kernels/launch.h runs their grids in a loop): the
// qualifiers vanish, the built-in indices are set by the launch loop before each call.
#define __global__
#define __device__
#define __host__

namespace torch_pet {
struct HostDim3 {
  unsigned int x = 1, y = 1, z = 1;
};
inline thread_local HostDim3 blockIdx, threadIdx, blockDim, gridDim;
}  // namespace torch_pet
#endif

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

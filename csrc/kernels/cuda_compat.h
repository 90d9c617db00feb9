// The few CUDA runtime / ATen-CUDA calls of the CUDA glue (csrc/cuda/*.cu), in one place,
// with their host-emulation stand-ins (TORCH_PET_HOST_EMULATION, tests/cuda_emulation/):
//
//   compat::Stream, compat::current_stream()  the current CUDA stream  | a no-op stream
//   compat::DeviceGuard(device)               c10::cuda::CUDAGuard     | does nothing
//   TP_KERNEL_LAUNCH_CHECK()                  C10_CUDA_KERNEL_LAUNCH_CHECK() | nothing
//   TP_CUDA_LIBRARY_IMPL(m)                   TORCH_LIBRARY_IMPL(torch_pet, CUDA, m)
//                                             | TORCH_LIBRARY_IMPL(torch_pet_emu, CPU, m)
//
// Only the light c10/cuda headers are used: ATen/cuda/CUDAContext.h pulls the cuBLAS and
// cuSPARSE headers, which a bare CUDA toolkit may lack. Sorting, scans and reductions in the
// glue are ATen ops (at::sort, cumsum, bincount, scatter_reduce), which run on CPU tensors
// as they are, so no thrust/cub stand-ins are needed.
#pragma once
#include <ATen/ATen.h>
#include <torch/library.h>

#include "kernels/common.h"
#include "kernels/launch.h"

#if defined(TORCH_PET_HOST_EMULATION)

namespace torch_pet {
namespace compat {

using Stream = HostStream;
inline Stream current_stream() { return Stream{}; }

struct DeviceGuard {
  explicit DeviceGuard(const at::Device&) {}
};

}  // namespace compat
}  // namespace torch_pet

#define TP_KERNEL_LAUNCH_CHECK() ((void)0)
#define TP_CUDA_LIBRARY_IMPL(m) TORCH_LIBRARY_IMPL(torch_pet_emu, CPU, m)

#else

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace torch_pet {
namespace compat {

using Stream = cudaStream_t;
inline Stream current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }
using DeviceGuard = c10::cuda::CUDAGuard;

}  // namespace compat
}  // namespace torch_pet

#define TP_KERNEL_LAUNCH_CHECK() C10_CUDA_KERNEL_LAUNCH_CHECK()
#define TP_CUDA_LIBRARY_IMPL(m) TORCH_LIBRARY_IMPL(torch_pet, CUDA, m)

#endif

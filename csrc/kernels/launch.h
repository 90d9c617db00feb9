// One-dimensional kernel launch shared by all CUDA glue (csrc/cuda/*.cu), instead of
// `<<<>>>` at every call site: launch_1d(kernel, n, stream, args...) runs `kernel` with one
// thread per element 0 <= k < n in blocks of kThreadsPerBlock (the kernels return for
// k >= n); n == 0 launches nothing.
//
// Host emulation (TORCH_PET_HOST_EMULATION, a test-only C++ build on CPU tensors, see
// tests/cuda_emulation/): __global__ / __device__ / __host__ vanish and launch_1d runs every
// (block, thread) of the same grid in a loop, setting blockIdx / threadIdx / blockDim /
// gridDim (thread_local) before each call; the stream is a no-op. The kernels have no
// shared memory, atomics or barriers, so this reproduces their results exactly. Blocks and
// threads run in descending order, so a kernel that relied on another thread having run
// first (a missing dependency) would read unwritten memory here too. Each launch is
// recorded in launch_log() (grid and block sizes) for the tests.
//
// ATen-free: under nvcc this header needs only the CUDA runtime (which nvcc includes).
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/common.h"

#if defined(TORCH_PET_HOST_EMULATION)
#include <vector>
#endif

namespace torch_pet {

// Threads per block of every launch.
constexpr int kThreadsPerBlock = 256;
// Largest grid (x dimension) CUDA accepts.
constexpr int64_t kMaxBlocks = 2147483647;

// Blocks of kThreadsPerBlock threads covering n elements; throws past CUDA's grid limit.
inline int64_t blocks_for(int64_t n) {
  const int64_t blocks = (n + kThreadsPerBlock - 1) / kThreadsPerBlock;
  if (blocks > kMaxBlocks) {
    throw std::length_error("torch_pet: a kernel launch over " + std::to_string(n) +
                            " elements exceeds the CUDA grid limit of 2^31 - 1 blocks of " +
                            std::to_string(kThreadsPerBlock) + " threads");
  }
  return blocks;
}

#if defined(TORCH_PET_HOST_EMULATION)

// The stream of the emulated launches: nothing to order, nothing to wait for.
struct HostStream {};

struct LaunchRecord {
  int64_t blocks;
  int64_t threads;
};
// Launches on this host thread since the last clear (tests read and clear it).
inline std::vector<LaunchRecord>& launch_log() {
  static thread_local std::vector<LaunchRecord> log;
  return log;
}

template <typename... Params, typename... Args>
void launch_1d(void (*kernel)(Params...), int64_t n, HostStream, Args... args) {
  if (n <= 0) return;
  const int64_t blocks = blocks_for(n);
  launch_log().push_back(LaunchRecord{blocks, kThreadsPerBlock});
  gridDim = HostDim3{static_cast<unsigned int>(blocks), 1, 1};
  blockDim = HostDim3{static_cast<unsigned int>(kThreadsPerBlock), 1, 1};
  for (int64_t b = blocks - 1; b >= 0; --b) {
    blockIdx = HostDim3{static_cast<unsigned int>(b), 0, 0};
    for (int t = kThreadsPerBlock - 1; t >= 0; --t) {
      threadIdx = HostDim3{static_cast<unsigned int>(t), 0, 0};
      kernel(args...);
    }
  }
}

#elif defined(__CUDACC__)

template <typename... Params, typename... Args>
void launch_1d(void (*kernel)(Params...), int64_t n, cudaStream_t stream, Args... args) {
  if (n <= 0) return;
  const dim3 grid(static_cast<unsigned int>(blocks_for(n)));
  kernel<<<grid, kThreadsPerBlock, 0, stream>>>(args...);
}

#endif

}  // namespace torch_pet

// CUDA kernels of torch_pet::ecse_pairs: one thread per (centre, a), i.e. per edge a.
// ATen-free so that a bare nvcc can compile-check them; the launch glue is in
// cuda/ecse_pairs_cuda.cu.
#pragma once
#include "kernels/ecse_pairs.h"

namespace torch_pet {
namespace ecse {

// counts[a] = number of partners of edge a.
template <typename scalar_t>
__global__ void ecse_pairs_count_kernel(const scalar_t* __restrict__ vectors,
                                        const int64_t* __restrict__ ptr, int64_t num_centres,
                                        const scalar_t* __restrict__ radius, int64_t num_edges,
                                        scalar_t s_min, bool ordered, int64_t* __restrict__ counts) {
  const int64_t a = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (a >= num_edges) return;
  const int64_t c = centre_of_edge(ptr, num_centres, a);
  counts[a] = count_partners(vectors, a, ptr[c], ptr[c + 1], radius[c], s_min, ordered);
}

// Writes the pairs of edge a from row offsets[a] (exclusive prefix sum of counts).
template <typename scalar_t>
__global__ void ecse_pairs_fill_kernel(const scalar_t* __restrict__ vectors,
                                       const int64_t* __restrict__ ptr, int64_t num_centres,
                                       const scalar_t* __restrict__ radius, int64_t num_edges,
                                       scalar_t s_min, bool ordered,
                                       const int64_t* __restrict__ offsets, int64_t* __restrict__ out) {
  const int64_t a = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (a >= num_edges) return;
  const int64_t c = centre_of_edge(ptr, num_centres, a);
  fill_partners(vectors, a, ptr[c], ptr[c + 1], radius[c], s_min, ordered, offsets[a], out);
}

}  // namespace ecse
}  // namespace torch_pet

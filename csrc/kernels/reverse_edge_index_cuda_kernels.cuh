// CUDA kernel of torch_pet::reverse_edge_index: one thread per edge (binary search in the
// sorted edge list). ATen-free so that a bare nvcc can compile-check it; the launch glue is
// in cuda/reverse_edge_index_cuda.cu.
#pragma once
#include "kernels/reverse_edge_index.h"

namespace torch_pet {
namespace reverse {

__global__ void reverse_edge_index_kernel(const int64_t* __restrict__ edge_index,
                                          const int64_t* __restrict__ shifts, int64_t num_edges,
                                          int64_t* __restrict__ partner) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= num_edges) return;
  partner[e] = reverse_edge(edge_index, shifts, num_edges, e);
}

}  // namespace reverse
}  // namespace torch_pet

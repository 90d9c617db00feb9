// torch_pet::reverse_edge_index — schema and argument checks.
//
//   reverse_edge_index(edge_index [2, E], shifts [E, 3]) -> partner [E]
//
// For edges sorted by (centre, neighbour, shift), as radius_graph returns them, partner[e]
// is the index of the edge (i -> j, -S) reversing e = (j -> i, S); -1 when it is missing and
// -2 at an edge that breaks the sort order (kernels/reverse_edge_index.h). The Python
// wrapper sorts unsorted input and turns missing partners into an error.
// The CPU and CUDA kernels live in cpu/reverse_edge_index_cpu.cpp and
// cuda/reverse_edge_index_cuda.cu.
#include <torch/library.h>
#include <ATen/ATen.h>

#include "kernels/common.h"  // TORCH_PET_LIBRARY

namespace torch_pet {

void check_reverse_edge_index_args(const at::Tensor& edge_index, const at::Tensor& shifts) {
  TORCH_CHECK(edge_index.dim() == 2 && edge_index.size(0) == 2,
              "reverse_edge_index: edge_index must have shape [2, E], got ", edge_index.sizes());
  TORCH_CHECK(edge_index.scalar_type() == at::kLong,
              "reverse_edge_index: edge_index must be int64 (torch.long), got ", edge_index.scalar_type());
  TORCH_CHECK(shifts.dim() == 2 && shifts.size(0) == edge_index.size(1) && shifts.size(1) == 3,
              "reverse_edge_index: shifts must have shape [E, 3] = [", edge_index.size(1), ", 3], got ",
              shifts.sizes());
  TORCH_CHECK(shifts.scalar_type() == at::kLong,
              "reverse_edge_index: shifts must be int64 (torch.long), got ", shifts.scalar_type());
  TORCH_CHECK(edge_index.device() == shifts.device(),
              "reverse_edge_index: edge_index and shifts must be on the same device, got ",
              edge_index.device(), " and ", shifts.device());
}

TORCH_LIBRARY_FRAGMENT(TORCH_PET_LIBRARY, m) {
  m.def("reverse_edge_index(Tensor edge_index, Tensor shifts) -> Tensor");
}

}  // namespace torch_pet

// torch_pet::reverse_edge_index, CPU kernel: one binary search per edge, parallel over
// edges (per-edge logic in kernels/reverse_edge_index.h, shared with the CUDA kernel).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "kernels/reverse_edge_index.h"

namespace torch_pet {

void check_reverse_edge_index_args(const at::Tensor& edge_index, const at::Tensor& shifts);

namespace {

at::Tensor reverse_edge_index_cpu(const at::Tensor& edge_index, const at::Tensor& shifts) {
  check_reverse_edge_index_args(edge_index, shifts);
  const auto edges = edge_index.contiguous();
  const auto shift = shifts.contiguous();
  const int64_t num_edges = edges.size(1);
  auto partner = at::empty({num_edges}, edges.options());
  const int64_t* ei = edges.data_ptr<int64_t>();
  const int64_t* s = shift.data_ptr<int64_t>();
  int64_t* out = partner.data_ptr<int64_t>();
  at::parallel_for(0, num_edges, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t e = begin; e < end; ++e) out[e] = reverse::reverse_edge(ei, s, num_edges, e);
  });
  return partner;
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_pet, CPU, m) {
  m.impl("reverse_edge_index", &reverse_edge_index_cpu);
}

}  // namespace torch_pet

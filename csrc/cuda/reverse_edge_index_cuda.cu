// torch_pet::reverse_edge_index, CUDA glue: one thread per edge (kernel in
// kernels/reverse_edge_index_cuda_kernels.cuh, per-edge logic shared with the CPU kernel).
// Also compiled as C++ in the host emulation (kernels/cuda_compat.h, tests/cuda_emulation/).
#include <ATen/ATen.h>
#include <torch/library.h>

#include "kernels/cuda_compat.h"
#include "kernels/reverse_edge_index_cuda_kernels.cuh"

namespace torch_pet {

void check_reverse_edge_index_args(const at::Tensor& edge_index, const at::Tensor& shifts);

namespace {

at::Tensor reverse_edge_index_cuda(const at::Tensor& edge_index, const at::Tensor& shifts) {
  check_reverse_edge_index_args(edge_index, shifts);
  const compat::DeviceGuard guard(edge_index.device());
  const auto edges = edge_index.contiguous();
  const auto shift = shifts.contiguous();
  const int64_t num_edges = edges.size(1);
  auto partner = at::empty({num_edges}, edges.options());
  launch_1d(reverse::reverse_edge_index_kernel, num_edges, compat::current_stream(),
            edges.data_ptr<int64_t>(), shift.data_ptr<int64_t>(), num_edges,
            partner.data_ptr<int64_t>());
  TP_KERNEL_LAUNCH_CHECK();
  return partner;
}

}  // namespace

TP_CUDA_LIBRARY_IMPL(m) {
  m.impl("reverse_edge_index", &reverse_edge_index_cuda);
}

}  // namespace torch_pet

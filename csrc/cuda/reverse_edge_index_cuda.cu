// torch_pet::reverse_edge_index, CUDA glue: one thread per edge (kernel in
// kernels/reverse_edge_index_cuda_kernels.cuh, per-edge logic shared with the CPU kernel).
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "kernels/reverse_edge_index_cuda_kernels.cuh"

namespace torch_pet {

void check_reverse_edge_index_args(const at::Tensor& edge_index, const at::Tensor& shifts);

namespace {

constexpr int kThreads = 256;

at::Tensor reverse_edge_index_cuda(const at::Tensor& edge_index, const at::Tensor& shifts) {
  check_reverse_edge_index_args(edge_index, shifts);
  const c10::cuda::CUDAGuard guard(edge_index.device());
  const auto edges = edge_index.contiguous();
  const auto shift = shifts.contiguous();
  const int64_t num_edges = edges.size(1);
  auto partner = at::empty({num_edges}, edges.options());
  if (num_edges == 0) return partner;
  const int64_t blocks = (num_edges + kThreads - 1) / kThreads;
  reverse::reverse_edge_index_kernel<<<blocks, kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
      edges.data_ptr<int64_t>(), shift.data_ptr<int64_t>(), num_edges, partner.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return partner;
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_pet, CUDA, m) {
  m.impl("reverse_edge_index", &reverse_edge_index_cuda);
}

}  // namespace torch_pet

// torch_pet::ecse_pairs, CUDA glue: count kernel, cumsum, fill kernel (kernels in
// kernels/ecse_pairs_cuda_kernels.cuh, per-pair logic shared with the CPU kernel).
// Also compiled as C++ in the host emulation (kernels/cuda_compat.h, tests/cuda_emulation/).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "kernels/cuda_compat.h"
#include "kernels/ecse_pairs_cuda_kernels.cuh"

namespace torch_pet {

void check_ecse_pairs_args(const at::Tensor& edge_vectors, const at::Tensor& centre_ptr,
                           const at::Tensor& radius, double s_min);

namespace {

at::Tensor ecse_pairs_cuda(const at::Tensor& edge_vectors, const at::Tensor& centre_ptr,
                           const at::Tensor& radius, double s_min, bool ordered) {
  check_ecse_pairs_args(edge_vectors, centre_ptr, radius, s_min);
  const compat::DeviceGuard guard(edge_vectors.device());
  const auto vectors = edge_vectors.contiguous();
  const auto ptr = centre_ptr.contiguous();
  const auto radii = radius.contiguous();
  const int64_t num_centres = ptr.size(0) - 1;
  const int64_t num_edges = vectors.size(0);
  if (num_edges == 0) return at::empty({0, 2}, ptr.options());

  const auto stream = compat::current_stream();
  auto counts = at::empty({num_edges}, ptr.options());
  at::Tensor pairs;
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "ecse_pairs_cuda", [&] {
    const auto s_lim = static_cast<scalar_t>(s_min);
    launch_1d(ecse::ecse_pairs_count_kernel<scalar_t>, num_edges, stream,
              vectors.data_ptr<scalar_t>(), ptr.data_ptr<int64_t>(), num_centres,
              radii.data_ptr<scalar_t>(), num_edges, s_lim, ordered, counts.data_ptr<int64_t>());
    TP_KERNEL_LAUNCH_CHECK();
    const auto inclusive = counts.cumsum(0);
    const int64_t num_pairs = inclusive[-1].item<int64_t>();
    const auto offsets = inclusive - counts;
    pairs = at::empty({num_pairs, 2}, ptr.options());
    if (num_pairs == 0) return;
    launch_1d(ecse::ecse_pairs_fill_kernel<scalar_t>, num_edges, stream,
              vectors.data_ptr<scalar_t>(), ptr.data_ptr<int64_t>(), num_centres,
              radii.data_ptr<scalar_t>(), num_edges, s_lim, ordered, offsets.data_ptr<int64_t>(),
              pairs.data_ptr<int64_t>());
    TP_KERNEL_LAUNCH_CHECK();
  });
  return pairs;
}

}  // namespace

TP_CUDA_LIBRARY_IMPL(m) {
  m.impl("ecse_pairs", &ecse_pairs_cuda);
}

}  // namespace torch_pet

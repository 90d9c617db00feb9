// torch_pet::radius_graph, CUDA glue: per-atom binning kernels, a stable sort of the atoms
// by bin, then count and fill kernels over the centres (kernels in
// kernels/radius_graph_cuda_kernels.cuh, per-atom logic shared with the CPU kernel). The
// per-structure set-up (bases, bin grids, the lower bound on the edges) runs on the host
// from [B]-sized tensors. The count pass gives the exact number of edges before the output
// is allocated; more than max_edges raises. Also compiled as C++ in the host emulation
// (kernels/cuda_compat.h, tests/cuda_emulation/).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

#include "kernels/cuda_compat.h"
#include "kernels/radius_graph_cuda_kernels.cuh"
#include "radius_graph_host.h"

namespace torch_pet {

namespace {

constexpr int64_t kBinsPerCutoff = 2;

template <typename scalar_t>
std::tuple<at::Tensor, at::Tensor> radius_graph_cuda_impl(const at::Tensor& pos, const at::Tensor& ptr,
                                                          const at::Tensor& cell, const at::Tensor& pbc,
                                                          double r, bool loop, int64_t max_edges) {
  const int64_t num_atoms = pos.size(0);
  const int64_t num_structures = ptr.size(0) - 1;
  const auto long_options = ptr.options();
  const auto double_options = pos.options().dtype(at::kDouble);
  std::vector<radius::Grid> grids = radius_graph_bases(cell, pbc);  // checks the cells, as on the CPU
  if (num_atoms == 0) {
    return std::make_tuple(at::empty({2, 0}, long_options), at::empty({0, 3}, long_options));
  }
  TORCH_CHECK_VALUE(at::isfinite(pos).all().item<bool>(),
                    "radius_graph: pos contains NaN or Inf; fix the positions before building the graph");
  const auto stream = compat::current_stream();
  auto grids_device = radius_graph_grids_tensor(grids, pos.device());

  auto batch = at::empty({num_atoms}, long_options);
  auto frac = at::empty({num_atoms, 3}, double_options);
  auto wrap = at::empty({num_atoms, 3}, long_options);
  auto wrapped = at::empty({num_atoms, 3}, double_options);
  launch_1d(radius::wrap_atoms_kernel<scalar_t>, num_atoms, stream, pos.data_ptr<scalar_t>(), ptr.data_ptr<int64_t>(), num_structures,
      reinterpret_cast<const radius::Grid*>(grids_device.data_ptr<uint8_t>()), num_atoms,
      batch.data_ptr<int64_t>(), frac.data_ptr<double>(), wrap.data_ptr<int64_t>(),
      wrapped.data_ptr<double>());
  TP_KERNEL_LAUNCH_CHECK();

  // Bounding range of the fractional coordinates per structure (used on non-periodic axes).
  const auto index = batch.unsqueeze(1).expand({num_atoms, 3});
  const double inf = std::numeric_limits<double>::infinity();
  const auto lower = at::full({num_structures, 3}, inf, double_options)
                         .scatter_reduce(0, index, frac, "amin", true).to(at::kCPU).contiguous();
  const auto upper = at::full({num_structures, 3}, -inf, double_options)
                         .scatter_reduce(0, index, frac, "amax", true).to(at::kCPU).contiguous();
  const double max_abs_pos = pos.abs().max().item<double>();
  const scalar_t cutoff = static_cast<scalar_t>(r);  // inf when r overflows float32
  const int64_t num_bins = radius_graph_grids(grids, lower.data_ptr<double>(), upper.data_ptr<double>(),
                                              ptr, static_cast<double>(cutoff), max_abs_pos,
                                              std::is_same<scalar_t, float>::value, kBinsPerCutoff, loop,
                                              max_edges);
  grids_device = radius_graph_grids_tensor(grids, pos.device());
  const auto* grids_ptr = reinterpret_cast<const radius::Grid*>(grids_device.data_ptr<uint8_t>());

  auto bin = at::empty({num_atoms}, long_options);
  launch_1d(radius::bin_atoms_kernel, num_atoms, stream, frac.data_ptr<double>(), batch.data_ptr<int64_t>(),
            grids_ptr, num_atoms, bin.data_ptr<int64_t>());
  TP_KERNEL_LAUNCH_CHECK();
  const auto order = std::get<1>(at::sort(bin, /*stable=*/true, /*dim=*/0, /*descending=*/false)).contiguous();
  auto bin_start = at::zeros({num_bins + 1}, long_options);
  bin_start.slice(0, 1).copy_(at::bincount(bin, {}, num_bins).cumsum(0));

  auto sorted = at::empty({num_atoms * static_cast<int64_t>(sizeof(radius::SortedAtom))},
                          pos.options().dtype(at::kByte));
  auto* sorted_ptr = reinterpret_cast<radius::SortedAtom*>(sorted.data_ptr<uint8_t>());
  launch_1d(radius::gather_sorted_kernel, num_atoms, stream, order.data_ptr<int64_t>(),
            wrapped.data_ptr<double>(), wrap.data_ptr<int64_t>(), batch.data_ptr<int64_t>(), num_atoms,
            sorted_ptr);
  TP_KERNEL_LAUNCH_CHECK();

  radius::SearchData<scalar_t> data;
  data.pos = pos.data_ptr<scalar_t>();
  data.cell = cell.data_ptr<scalar_t>();
  data.grids = grids_ptr;
  data.sorted = sorted_ptr;
  data.bin_start = bin_start.data_ptr<int64_t>();
  data.cutoff2 = cutoff * cutoff;
  data.wide_cutoff2 = static_cast<double>(cutoff) * static_cast<double>(cutoff);
  data.loop = loop;

  auto counts = at::empty({num_atoms}, long_options);
  launch_1d(radius::count_edges_kernel<scalar_t>, num_atoms, stream, data, num_atoms,
            counts.data_ptr<int64_t>());
  TP_KERNEL_LAUNCH_CHECK();
  const auto inclusive = counts.cumsum(0);
  const int64_t num_edges = inclusive[-1].item<int64_t>();
  if (num_edges > max_edges) raise_too_many_edges(static_cast<double>(num_edges), false, max_edges);
  const auto offsets = (inclusive - counts).contiguous();
  auto edge_index = at::empty({2, num_edges}, long_options);
  auto shifts = at::empty({num_edges, 3}, long_options);
  if (num_edges > 0) {
    launch_1d(radius::fill_edges_kernel<scalar_t>, num_atoms, stream, data, num_atoms,
              offsets.data_ptr<int64_t>(), edge_index.data_ptr<int64_t>(),
              edge_index.data_ptr<int64_t>() + num_edges, shifts.data_ptr<int64_t>());
    TP_KERNEL_LAUNCH_CHECK();
  }
  return std::make_tuple(edge_index, shifts);
}

std::tuple<at::Tensor, at::Tensor> radius_graph_cuda(const at::Tensor& pos, const at::Tensor& ptr,
                                                     const at::Tensor& cell, const at::Tensor& pbc,
                                                     double r, bool loop, int64_t max_edges) {
  check_radius_graph_args(pos, ptr, cell, pbc, r, max_edges);
  const compat::DeviceGuard guard(pos.device());
  const auto pos_c = pos.contiguous();
  const auto ptr_c = ptr.contiguous();
  const auto cell_c = cell.contiguous();
  const auto pbc_c = pbc.contiguous();
  std::tuple<at::Tensor, at::Tensor> result;
  AT_DISPATCH_FLOATING_TYPES(pos_c.scalar_type(), "radius_graph_cuda", [&] {
    result = radius_graph_cuda_impl<scalar_t>(pos_c, ptr_c, cell_c, pbc_c, r, loop, max_edges);
  });
  return result;
}

}  // namespace

TP_CUDA_LIBRARY_IMPL(m) {
  m.impl("radius_graph", &radius_graph_cuda);
}

}  // namespace torch_pet

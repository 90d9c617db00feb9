// torch_pet::radius_graph, CPU kernel. Batches of small non-periodic structures: all pairs
// per structure (brute_force_cpu_impl). Otherwise: cell list per structure (kernels/radius_graph.h),
// counting sort of the atoms by bin, then one search pass over the centres in bin order,
// parallel over chunks with at::parallel_for; each chunk keeps the (per centre sorted)
// edges in its own buffer, and a second pass copies them to the output in centre order.
// Before the search the output is bounded: a lower bound on the edges (host set-up) and
// upper bounds (the fullest bin times the bins a centre scans; if that is not enough, the
// candidates of every centre, no distance test); only when both exceed max_edges are the
// edges counted first (stopping once past max_edges). The passes over the centres are in
// cpu/radius_graph_cpu_passes.h, the host set-up in kernels/radius_graph_bins.h.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

#include "kernels/radius_graph.h"
#include "kernels/radius_graph_bins.h"
#include "cpu/radius_graph_cpu_passes.h"
#include "radius_graph_host.h"

namespace torch_pet {

namespace {

// Bins of half the cutoff: 5^3 bins of (r/2)^3 cover less volume than 3^3 bins of r^3.
constexpr int64_t kBinsPerCutoff = 2;
// Batches of non-periodic structures of at most this many atoms each skip the cell list.
constexpr int64_t kBruteForceAtoms = 64;

// Raises naming the first structure whose positions are not all finite.
void require_finite(const std::vector<char>& finite) {
  for (size_t b = 0; b < finite.size(); ++b) {
    TORCH_CHECK_VALUE(finite[b], "radius_graph: pos contains NaN or Inf (structure ", b, "); fix the "
                      "positions before building the graph");
  }
}

bool use_brute_force(const at::Tensor& ptr, const at::Tensor& pbc) {
  if (pbc.numel() > 0 && pbc.any().item<bool>()) return false;
  const int64_t* p = ptr.data_ptr<int64_t>();
  for (int64_t b = 0; b + 1 < ptr.size(0); ++b) {
    if (p[b + 1] - p[b] > kBruteForceAtoms) return false;
  }
  return true;
}

// Small non-periodic structures (molecule batches): every pair of a structure goes through
// the exact test, centres and neighbours in ascending order, so the edges come out in the
// canonical order without a cell list or a sort. Two passes: count per centre, then write.
template <typename scalar_t>
std::tuple<at::Tensor, at::Tensor> brute_force_cpu_impl(const at::Tensor& pos, const at::Tensor& ptr,
                                                        double r, bool loop, int64_t max_edges) {
  const int64_t num_atoms = pos.size(0);
  const int64_t num_structures = ptr.size(0) - 1;
  const scalar_t* x = pos.data_ptr<scalar_t>();
  const int64_t* p = ptr.data_ptr<int64_t>();
  const scalar_t cutoff = static_cast<scalar_t>(r);
  const scalar_t cutoff2 = cutoff * cutoff;
  const double wide_cutoff2 = static_cast<double>(cutoff) * static_cast<double>(cutoff);
  const int64_t grain = std::max<int64_t>(1, num_structures * 4096 / std::max<int64_t>(num_atoms, 1));
  auto is_edge = [&](int64_t b, int64_t i, int64_t j) {
    return (loop || j != i) && radius::exact_inside_unshifted(x + 3 * j, x + 3 * i, cutoff2, wide_cutoff2);
  };
  std::vector<int64_t> offset(num_atoms + 1, 0);
  std::vector<char> finite(num_structures, 1);
  std::vector<double> max_abs(num_structures, 0.0);
  at::parallel_for(0, num_structures, grain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      for (int64_t k = 3 * p[b]; k < 3 * p[b + 1]; ++k) {
        const double v = static_cast<double>(x[k]);
        if (!std::isfinite(v)) finite[b] = 0;
        max_abs[b] = std::max(max_abs[b], std::fabs(v));
      }
      if (!finite[b] || (!std::is_same<scalar_t, float>::value && max_abs[b] > radius::kMaxCoordinateDouble)) {
        continue;
      }
      for (int64_t i = p[b]; i < p[b + 1]; ++i) {
        int64_t count = 0;
        for (int64_t j = p[b]; j < p[b + 1]; ++j) count += is_edge(b, i, j) ? 1 : 0;
        offset[i + 1] = count;
      }
    }
  });
  require_finite(finite);
  check_radius_graph_positions(num_structures > 0 ? *std::max_element(max_abs.begin(), max_abs.end()) : 0.0,
                               std::is_same<scalar_t, float>::value);
  for (int64_t i = 0; i < num_atoms; ++i) offset[i + 1] += offset[i];
  const int64_t num_edges = offset[num_atoms];
  if (num_edges > max_edges) raise_too_many_edges(static_cast<double>(num_edges), false, max_edges);
  auto edge_index = at::empty({2, num_edges}, ptr.options());
  auto shifts = at::empty({num_edges, 3}, ptr.options());
  int64_t* neighbour_out = edge_index.data_ptr<int64_t>();
  int64_t* centre_out = neighbour_out + num_edges;
  int64_t* shifts_out = shifts.data_ptr<int64_t>();
  radius_cpu::prefer_huge_pages(neighbour_out, 2 * num_edges * sizeof(int64_t));
  radius_cpu::prefer_huge_pages(shifts_out, 3 * num_edges * sizeof(int64_t));
  at::parallel_for(0, num_structures, grain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      for (int64_t i = p[b]; i < p[b + 1]; ++i) {
        int64_t e = offset[i];
        for (int64_t j = p[b]; j < p[b + 1]; ++j) {
          if (!is_edge(b, i, j)) continue;
          neighbour_out[e] = j;
          centre_out[e] = i;
          shifts_out[3 * e] = shifts_out[3 * e + 1] = shifts_out[3 * e + 2] = 0;
          ++e;
        }
      }
    }
  });
  return std::make_tuple(edge_index, shifts);
}

template <typename scalar_t>
std::tuple<at::Tensor, at::Tensor> radius_graph_cpu_impl(const at::Tensor& pos, const at::Tensor& ptr,
                                                         const at::Tensor& cell, const at::Tensor& pbc,
                                                         double r, bool loop, int64_t max_edges) {
  const int64_t num_atoms = pos.size(0);
  const int64_t num_structures = ptr.size(0) - 1;
  const scalar_t* x = pos.data_ptr<scalar_t>();
  const int64_t* p = ptr.data_ptr<int64_t>();
  std::vector<radius::Grid> grids = radius_graph_bases(cell, pbc);

  // Per structure (about 16k atoms per task): wrapped fractional coordinates, integer wraps,
  // wrapped Cartesian positions, bounding range of the fractional coordinates (used on
  // non-periodic axes), largest |coordinate| and finiteness.
  std::vector<double> frac(3 * num_atoms), wrapped(3 * num_atoms);
  std::vector<int64_t> wrap(3 * num_atoms), batch(num_atoms);
  std::vector<double> fmin(3 * num_structures), fmax(3 * num_structures), max_abs(num_structures);
  std::vector<char> finite(num_structures, 1);
  const int64_t grain = std::max<int64_t>(1, num_structures * 16384 / std::max<int64_t>(num_atoms, 1));
  at::parallel_for(0, num_structures, grain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      double lo[3], hi[3], largest = 0.0;
      bool ok = true;
      for (int k = 0; k < 3; ++k) { lo[k] = std::numeric_limits<double>::infinity(); hi[k] = -lo[k]; }
      for (int64_t i = p[b]; i < p[b + 1]; ++i) {
        batch[i] = b;
        for (int c = 0; c < 3; ++c) {
          const double v = static_cast<double>(x[3 * i + c]);
          ok = ok && std::isfinite(v);
          largest = std::max(largest, std::fabs(v));
        }
        if (!ok) break;
        radius::wrap_atom(x + 3 * i, grids[b], &frac[3 * i], &wrap[3 * i], &wrapped[3 * i]);
        for (int k = 0; k < 3; ++k) {
          lo[k] = std::min(lo[k], frac[3 * i + k]);
          hi[k] = std::max(hi[k], frac[3 * i + k]);
        }
      }
      for (int k = 0; k < 3; ++k) { fmin[3 * b + k] = lo[k]; fmax[3 * b + k] = hi[k]; }
      max_abs[b] = largest;
      finite[b] = ok;
    }
  });
  require_finite(finite);
  const double max_abs_pos = num_structures > 0 ? *std::max_element(max_abs.begin(), max_abs.end()) : 0.0;
  const scalar_t cutoff = static_cast<scalar_t>(r);  // inf when r overflows float32
  const int64_t num_bins = radius_graph_grids(grids, fmin.data(), fmax.data(), ptr, static_cast<double>(cutoff),
                                              max_abs_pos, std::is_same<scalar_t, float>::value, kBinsPerCutoff,
                                              loop, max_edges);

  // Counting sort of the atoms by bin (stable: original order inside a bin).
  std::vector<int64_t> bin(num_atoms);
  for (int64_t i = 0; i < num_atoms; ++i) {
    int64_t bin3[3];
    bin[i] = radius::atom_bin(&frac[3 * i], grids[batch[i]], bin3);
  }
  std::vector<int64_t> bin_start(num_bins + 1, 0);
  for (int64_t i = 0; i < num_atoms; ++i) ++bin_start[bin[i] + 1];
  for (int64_t q = 0; q < num_bins; ++q) bin_start[q + 1] += bin_start[q];
  std::vector<radius::SortedAtom> sorted(num_atoms);
  int64_t wrap_min = 0, wrap_max = 0;
  {
    std::vector<int64_t> fill(bin_start.begin(), bin_start.end() - 1);
    for (int64_t i = 0; i < num_atoms; ++i) {
      radius::SortedAtom& a = sorted[fill[bin[i]]++];
      for (int c = 0; c < 3; ++c) {
        a.wrapped[c] = wrapped[3 * i + c];
        a.wrap[c] = static_cast<int32_t>(wrap[3 * i + c]);
        wrap_min = std::min(wrap_min, wrap[3 * i + c]);
        wrap_max = std::max(wrap_max, wrap[3 * i + c]);
      }
      a.structure = static_cast<int32_t>(batch[i]);
      a.atom = i;
    }
  }

  radius::SearchData<scalar_t> data;
  data.pos = x;
  data.cell = cell.data_ptr<scalar_t>();
  data.grids = grids.data();
  data.sorted = sorted.data();
  data.bin_start = bin_start.data();
  data.cutoff2 = cutoff * cutoff;
  data.wide_cutoff2 = static_cast<double>(cutoff) * static_cast<double>(cutoff);
  data.loop = loop;
  // Bound the output before storing any edge: from the fullest bin of each structure (no
  // pass over the atoms), else from the candidates of every centre, else by counting.
  double bound = 0.0, per_centre = 0.0;
  for (int64_t b = 0; b < num_structures; ++b) {
    const radius::Grid& g = grids[b];
    const int64_t first = g.bin_offset, last = first + g.num_bins[0] * g.num_bins[1] * g.num_bins[2];
    int64_t most = 0;
    for (int64_t q = first; q < last; ++q) most = std::max(most, bin_start[q + 1] - bin_start[q]);
    const double centre_bound = radius::candidates_per_centre(g, most);
    bound += static_cast<double>(p[b + 1] - p[b]) * centre_bound;
    per_centre = std::max(per_centre, centre_bound);
  }
  std::vector<double> candidates(radius_cpu::search_chunks(num_atoms));  // per chunk, caps its buffer
  for (size_t c = 0; c < candidates.size(); ++c) {
    candidates[c] = per_centre * static_cast<double>((c + 1) * num_atoms / candidates.size() -
                                                     c * num_atoms / candidates.size());
  }
  if (bound > static_cast<double>(max_edges)) {
    candidates = radius_cpu::candidates_per_chunk(data, num_atoms);
    const double most = std::accumulate(candidates.begin(), candidates.end(), 0.0);
    if (most > static_cast<double>(max_edges)) {
      const radius_cpu::EdgeCount counted = radius_cpu::count_edges(data, num_atoms, max_edges);
      if (counted.count > max_edges) {
        raise_too_many_edges(static_cast<double>(counted.count), !counted.complete, max_edges);
      }
    }
  }
  // |S_k| <= |s'_k| + (w_max - w_min), |s'_k| <= (cutoff in cells) + 1.
  double images = 0.0;
  for (const radius::Grid& g : grids) {
    for (int k = 0; k < 3; ++k) {
      if (g.periodic[k]) images = std::max(images, std::sqrt(g.search2) * g.recip_norm[k] + 2.0);
    }
  }
  const bool packed = num_atoms < (int64_t(1) << 39) && images + static_cast<double>(wrap_max - wrap_min) < 127.0;
  using radius_cpu::search_and_write;
  auto result = packed ? search_and_write<radius_cpu::PackedEdge>(data, num_atoms, candidates, ptr.options())
                       : search_and_write<radius_cpu::Edge>(data, num_atoms, candidates, ptr.options());
  return result;
}

std::tuple<at::Tensor, at::Tensor> radius_graph_cpu(const at::Tensor& pos, const at::Tensor& ptr,
                                                    const at::Tensor& cell, const at::Tensor& pbc,
                                                    double r, bool loop, int64_t max_edges) {
  check_radius_graph_args(pos, ptr, cell, pbc, r, max_edges);
  const auto pos_c = pos.contiguous();
  const auto ptr_c = ptr.contiguous();
  const auto cell_c = cell.contiguous();
  const auto pbc_c = pbc.contiguous();
  std::tuple<at::Tensor, at::Tensor> result;
  const bool brute_force = use_brute_force(ptr_c, pbc_c);
  AT_DISPATCH_FLOATING_TYPES(pos_c.scalar_type(), "radius_graph_cpu", [&] {
    result = brute_force ? brute_force_cpu_impl<scalar_t>(pos_c, ptr_c, r, loop, max_edges)
                         : radius_graph_cpu_impl<scalar_t>(pos_c, ptr_c, cell_c, pbc_c, r, loop, max_edges);
  });
  return result;
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_pet, CPU, m) {
  m.impl("radius_graph", &radius_graph_cpu);
}

}  // namespace torch_pet

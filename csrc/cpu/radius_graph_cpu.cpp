// torch_pet::radius_graph, CPU kernel: cell list per structure (kernels/radius_graph.h),
// counting sort of the atoms by bin, then one pass over the centres, parallel over
// contiguous chunks of centres with at::parallel_for. Each chunk collects its edges
// (sorted per centre) in its own buffer; the buffers are then copied into the output.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

#include "kernels/radius_graph.h"

namespace torch_pet {

void check_radius_graph_args(const at::Tensor& pos, const at::Tensor& ptr, const at::Tensor& cell,
                             const at::Tensor& pbc, double r);
std::vector<radius::Grid> radius_graph_bases(const at::Tensor& cell, const at::Tensor& pbc);
int64_t radius_graph_grids(std::vector<radius::Grid>& grids, const double* fmin, const double* fmax,
                           const at::Tensor& ptr, double r, double max_abs_pos, bool single_precision,
                           int64_t bins_per_cutoff);

namespace {

// Bins of half the cutoff: 5^3 bins of (r/2)^3 cover less volume than 3^3 bins of r^3.
constexpr int64_t kBinsPerCutoff = 2;

struct Edge {
  int64_t neighbour;
  int64_t shift[3];
};

struct ChunkEdges {
  std::vector<int64_t> neighbour;
  std::vector<int64_t> shifts;  // 3 per edge
};

template <typename scalar_t>
std::tuple<at::Tensor, at::Tensor> radius_graph_cpu_impl(const at::Tensor& pos, const at::Tensor& ptr,
                                                         const at::Tensor& cell, const at::Tensor& pbc,
                                                         double r, bool loop) {
  const int64_t num_atoms = pos.size(0);
  const int64_t num_structures = ptr.size(0) - 1;
  const scalar_t* x = pos.data_ptr<scalar_t>();
  const int64_t* p = ptr.data_ptr<int64_t>();
  std::vector<radius::Grid> grids = radius_graph_bases(cell, pbc);

  // Wrapped fractional coordinates, integer wraps and wrapped Cartesian positions.
  std::vector<double> frac(3 * num_atoms), wrapped(3 * num_atoms);
  std::vector<int64_t> wrap(3 * num_atoms), batch(num_atoms);
  at::parallel_for(0, num_structures, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      for (int64_t i = p[b]; i < p[b + 1]; ++i) batch[i] = b;
    }
  });
  at::parallel_for(0, num_atoms, 2048, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      radius::wrap_atom(x + 3 * i, grids[batch[i]], &frac[3 * i], &wrap[3 * i], &wrapped[3 * i]);
    }
  });
  // Bounding range of the fractional coordinates of each structure (non-periodic axes).
  std::vector<double> fmin(3 * num_structures, 0.0), fmax(3 * num_structures, 0.0);
  at::parallel_for(0, num_structures, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      for (int k = 0; k < 3; ++k) {
        double lo = std::numeric_limits<double>::infinity(), hi = -lo;
        for (int64_t i = p[b]; i < p[b + 1]; ++i) {
          lo = std::min(lo, frac[3 * i + k]);
          hi = std::max(hi, frac[3 * i + k]);
        }
        fmin[3 * b + k] = lo;
        fmax[3 * b + k] = hi;
      }
    }
  });
  const double max_abs_pos = num_atoms > 0 ? pos.abs().max().item<double>() : 0.0;
  const int64_t num_bins = radius_graph_grids(grids, fmin.data(), fmax.data(), ptr, r, max_abs_pos,
                                              std::is_same<scalar_t, float>::value, kBinsPerCutoff);

  // Counting sort of the atoms by bin (stable: original order inside a bin).
  std::vector<int64_t> bin(num_atoms), bin3(3 * num_atoms);
  at::parallel_for(0, num_atoms, 2048, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) bin[i] = radius::atom_bin(&frac[3 * i], grids[batch[i]], &bin3[3 * i]);
  });
  std::vector<int64_t> bin_start(num_bins + 1, 0);
  for (int64_t i = 0; i < num_atoms; ++i) ++bin_start[bin[i] + 1];
  for (int64_t q = 0; q < num_bins; ++q) bin_start[q + 1] += bin_start[q];
  std::vector<int64_t> sorted_atom(num_atoms);
  {
    std::vector<int64_t> fill(bin_start.begin(), bin_start.end() - 1);
    for (int64_t i = 0; i < num_atoms; ++i) sorted_atom[fill[bin[i]]++] = i;
  }
  std::vector<double> sorted_wrapped(3 * num_atoms);
  std::vector<int64_t> sorted_wrap(3 * num_atoms);
  std::vector<scalar_t> sorted_pos(3 * num_atoms);
  at::parallel_for(0, num_atoms, 2048, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const int64_t i = sorted_atom[k];
      for (int c = 0; c < 3; ++c) {
        sorted_wrapped[3 * k + c] = wrapped[3 * i + c];
        sorted_wrap[3 * k + c] = wrap[3 * i + c];
        sorted_pos[3 * k + c] = x[3 * i + c];
      }
    }
  });

  radius::SearchData<scalar_t> data;
  data.pos = x;
  data.cell = cell.data_ptr<scalar_t>();
  data.ptr = p;
  data.grids = grids.data();
  data.wrapped = wrapped.data();
  data.wrap = wrap.data();
  data.bin3 = bin3.data();
  data.bin_start = bin_start.data();
  data.sorted_atom = sorted_atom.data();
  data.sorted_wrapped = sorted_wrapped.data();
  data.sorted_wrap = sorted_wrap.data();
  data.sorted_pos = sorted_pos.data();
  data.num_structures = num_structures;
  const scalar_t cutoff = static_cast<scalar_t>(r);
  data.cutoff2 = cutoff * cutoff;
  data.loop = loop;

  // One pass over the centres, chunk by chunk; each centre's edges sorted canonically.
  const int64_t num_chunks = std::max<int64_t>(1, std::min<int64_t>(num_atoms, 8 * at::get_num_threads()));
  std::vector<ChunkEdges> chunks(num_chunks);
  std::vector<int64_t> counts(num_atoms);
  auto chunk_begin = [&](int64_t c) { return c * num_atoms / num_chunks; };
  at::parallel_for(0, num_chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<Edge> local;
    for (int64_t c = begin; c < end; ++c) {
      ChunkEdges& out = chunks[c];
      for (int64_t i = chunk_begin(c); i < chunk_begin(c + 1); ++i) {
        local.clear();
        auto emit = [&](int64_t j, int64_t s0, int64_t s1, int64_t s2) {
          local.push_back(Edge{j, {s0, s1, s2}});
        };
        radius::visit_neighbours(i, data, emit);
        std::sort(local.begin(), local.end(), [](const Edge& a, const Edge& b) {
          return radius::edge_less(a.neighbour, a.shift, b.neighbour, b.shift);
        });
        counts[i] = static_cast<int64_t>(local.size());
        for (const Edge& e : local) {
          out.neighbour.push_back(e.neighbour);
          out.shifts.insert(out.shifts.end(), e.shift, e.shift + 3);
        }
      }
    }
  });
  std::vector<int64_t> chunk_offset(num_chunks + 1, 0);
  for (int64_t c = 0; c < num_chunks; ++c) {
    chunk_offset[c + 1] = chunk_offset[c] + static_cast<int64_t>(chunks[c].neighbour.size());
  }
  const int64_t num_edges = chunk_offset[num_chunks];
  auto long_options = ptr.options();
  auto edge_index = at::empty({2, num_edges}, long_options);
  auto shifts = at::empty({num_edges, 3}, long_options);
  int64_t* neighbour_out = edge_index.data_ptr<int64_t>();
  int64_t* centre_out = neighbour_out + num_edges;
  int64_t* shifts_out = shifts.data_ptr<int64_t>();
  at::parallel_for(0, num_chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      ChunkEdges& chunk = chunks[c];
      const int64_t offset = chunk_offset[c];
      std::copy(chunk.neighbour.begin(), chunk.neighbour.end(), neighbour_out + offset);
      std::copy(chunk.shifts.begin(), chunk.shifts.end(), shifts_out + 3 * offset);
      int64_t e = offset;
      for (int64_t i = chunk_begin(c); i < chunk_begin(c + 1); ++i) {
        std::fill(centre_out + e, centre_out + e + counts[i], i);
        e += counts[i];
      }
      std::vector<int64_t>().swap(chunk.neighbour);  // free early
      std::vector<int64_t>().swap(chunk.shifts);
    }
  });
  return std::make_tuple(edge_index, shifts);
}

std::tuple<at::Tensor, at::Tensor> radius_graph_cpu(const at::Tensor& pos, const at::Tensor& ptr,
                                                    const at::Tensor& cell, const at::Tensor& pbc,
                                                    double r, bool loop) {
  check_radius_graph_args(pos, ptr, cell, pbc, r);
  const auto pos_c = pos.contiguous();
  const auto ptr_c = ptr.contiguous();
  const auto cell_c = cell.contiguous();
  const auto pbc_c = pbc.contiguous();
  std::tuple<at::Tensor, at::Tensor> result;
  AT_DISPATCH_FLOATING_TYPES(pos_c.scalar_type(), "radius_graph_cpu", [&] {
    result = radius_graph_cpu_impl<scalar_t>(pos_c, ptr_c, cell_c, pbc_c, r, loop);
  });
  return result;
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_pet, CPU, m) {
  m.impl("radius_graph", &radius_graph_cpu);
}

}  // namespace torch_pet

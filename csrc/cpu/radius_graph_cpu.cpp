// torch_pet::radius_graph, CPU kernel. Batches of small non-periodic structures: all pairs
// per structure (brute_force_cpu_impl). Otherwise: cell list per structure (kernels/radius_graph.h),
// counting sort of the atoms by bin, then one search pass over the centres in bin order,
// parallel over chunks with at::parallel_for; each chunk keeps the (per centre sorted)
// edges in its own buffer, and a second pass copies them to the output in centre order.
// Before the search the output is bounded: a lower bound on the edges (host set-up) and
// upper bounds (the fullest bin times the bins a centre scans; if that is not enough, the
// candidates of every centre, no distance test); only when both exceed max_edges are the
// edges counted first (stopping once past max_edges).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

#include "kernels/radius_graph.h"
#include "radius_graph_host.h"

namespace torch_pet {

namespace {

// Bins of half the cutoff: 5^3 bins of (r/2)^3 cover less volume than 3^3 bins of r^3.
constexpr int64_t kBinsPerCutoff = 2;
// Below this many atoms the search runs on one thread.
constexpr int64_t kParallelAtoms = 256;
// Batches of non-periodic structures of at most this many atoms each skip the cell list.
constexpr int64_t kBruteForceAtoms = 64;

// Asks for transparent huge pages on memory about to be written for the first time (Linux):
// a 100k-atom list writes ~250 MB, whose 4 KiB page faults otherwise take a third of the time.
inline void prefer_huge_pages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(1) << 21;
  if (bytes < 2 * kHuge) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);  // a hint only
#else
  (void)data;
  (void)bytes;
#endif
}

// An edge as kept per centre until the output is written: either one packed 64-bit key
// (neighbour << 24 | (s0 + 128) << 16 | (s1 + 128) << 8 | (s2 + 128)), whose order is the
// canonical (neighbour, shift) order, when N < 2^39 and every |shift| < 128 (the usual
// case), or the general Edge.
struct Edge {
  int64_t neighbour;
  int32_t shift[3];
  static Edge make(int64_t j, int64_t s0, int64_t s1, int64_t s2) {
    return Edge{j, {static_cast<int32_t>(s0), static_cast<int32_t>(s1), static_cast<int32_t>(s2)}};
  }
  bool operator<(const Edge& other) const {
    return radius::edge_less_32(neighbour, shift, other.neighbour, other.shift);
  }
};

struct PackedEdge {
  uint64_t key;
  static PackedEdge make(int64_t j, int64_t s0, int64_t s1, int64_t s2) {
    return PackedEdge{static_cast<uint64_t>(j) << 24 | static_cast<uint64_t>(s0 + 128) << 16 |
                      static_cast<uint64_t>(s1 + 128) << 8 | static_cast<uint64_t>(s2 + 128)};
  }
  bool operator<(const PackedEdge& other) const { return key < other.key; }
};

inline void write_edge(const Edge& e, int64_t* neighbour, int64_t* shift) {
  *neighbour = e.neighbour;
  for (int c = 0; c < 3; ++c) shift[c] = e.shift[c];
}

inline void write_edge(const PackedEdge& e, int64_t* neighbour, int64_t* shift) {
  *neighbour = static_cast<int64_t>(e.key >> 24);
  for (int c = 0; c < 3; ++c) shift[c] = static_cast<int64_t>((e.key >> (8 * (2 - c))) & 255) - 128;
}

// Neighbour search over the centres in bin order (neighbouring centres read the same bins),
// chunk by chunk in parallel; each chunk keeps the sorted edges of its centres in its own
// buffer. Then the edges are copied to the output in centre order.
// Chunks of centres (in bin order) of the search passes.
int64_t search_chunks(int64_t num_atoms) { return num_atoms < kParallelAtoms ? 1 : 8 * at::get_num_threads(); }

// Candidates (atoms in the scanned bins) of the centres of each chunk: upper bounds on the
// chunk's edges.
template <typename scalar_t>
std::vector<double> candidates_per_chunk(const radius::SearchData<scalar_t>& data, int64_t num_atoms) {
  const int64_t num_chunks = search_chunks(num_atoms);
  std::vector<double> candidates(num_chunks, 0.0);
  at::parallel_for(0, num_chunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
    for (int64_t c = chunk_begin; c < chunk_end; ++c) {
      double sum = 0.0;
      for (int64_t k = c * num_atoms / num_chunks; k < (c + 1) * num_atoms / num_chunks; ++k) {
        sum += static_cast<double>(radius::count_candidates(k, data));
      }
      candidates[c] = sum;
    }
  });
  return candidates;
}

// The number of edges, counted without storing them; stops once past max_edges (then
// `complete` is false and the count a lower bound above max_edges).
struct EdgeCount {
  int64_t count;
  bool complete;
};

template <typename scalar_t>
EdgeCount count_edges(const radius::SearchData<scalar_t>& data, int64_t num_atoms, int64_t max_edges) {
  const int64_t num_chunks = search_chunks(num_atoms);
  std::atomic<int64_t> total{0}, done{0};  // edges, centres counted
  std::atomic<bool> stopped{false};
  at::parallel_for(0, num_chunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
    int64_t count = 0;
    auto emit = [&](int64_t, int64_t, int64_t, int64_t) { ++count; };
    for (int64_t c = chunk_begin; c < chunk_end; ++c) {
      for (int64_t k = c * num_atoms / num_chunks; k < (c + 1) * num_atoms / num_chunks; ++k) {
        if (stopped.load(std::memory_order_relaxed)) return;
        count = 0;
        radius::visit_neighbours<true>(k, data, emit);
        if (total.fetch_add(count) + count > max_edges) stopped.store(true);
        done.fetch_add(1, std::memory_order_relaxed);
      }
    }
  });
  return EdgeCount{total.load(), done.load() == num_atoms};
}

template <typename Record, typename scalar_t>
std::tuple<at::Tensor, at::Tensor> search_and_write(const radius::SearchData<scalar_t>& data,
                                                    int64_t num_atoms, const std::vector<double>& candidates,
                                                    const at::TensorOptions& options) {
  const int64_t num_chunks = search_chunks(num_atoms);
  std::vector<std::vector<Record>> buffers(num_chunks);
  std::vector<int64_t> counts(num_atoms), start(num_atoms);  // per centre, in its chunk's buffer
  std::vector<int32_t> chunk_of(num_atoms);
  at::parallel_for(0, num_chunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
    std::vector<Record> local;
    auto emit = [&](int64_t j, int64_t s0, int64_t s1, int64_t s2) { local.push_back(Record::make(j, s0, s1, s2)); };
    for (int64_t c = chunk_begin; c < chunk_end; ++c) {
      std::vector<Record>& buffer = buffers[c];
      const int64_t first = c * num_atoms / num_chunks, last = (c + 1) * num_atoms / num_chunks;
      for (int64_t k = first; k < last; ++k) {
        local.clear();
        radius::visit_neighbours<true>(k, data, emit);
        std::sort(local.begin(), local.end());
        if (k == first) {  // at most the chunk's candidates: memory stays within the bound
          const double guess = 2.0 * static_cast<double>(local.size() + 8) * static_cast<double>(last - first);
          buffer.reserve(static_cast<size_t>(std::min(guess, candidates[c] + 8.0)));
          prefer_huge_pages(buffer.data(), buffer.capacity() * sizeof(Record));
        }
        const int64_t i = data.sorted[k].atom;
        counts[i] = static_cast<int64_t>(local.size());
        start[i] = static_cast<int64_t>(buffer.size());
        chunk_of[i] = static_cast<int32_t>(c);
        buffer.insert(buffer.end(), local.begin(), local.end());
      }
    }
  });
  std::vector<int64_t> offset(num_atoms + 1, 0);
  for (int64_t i = 0; i < num_atoms; ++i) offset[i + 1] = offset[i] + counts[i];
  const int64_t num_edges = offset[num_atoms];
  auto edge_index = at::empty({2, num_edges}, options);
  auto shifts = at::empty({num_edges, 3}, options);
  int64_t* neighbour_out = edge_index.data_ptr<int64_t>();
  int64_t* centre_out = neighbour_out + num_edges;
  int64_t* shifts_out = shifts.data_ptr<int64_t>();
  prefer_huge_pages(neighbour_out, 2 * num_edges * sizeof(int64_t));
  prefer_huge_pages(shifts_out, 3 * num_edges * sizeof(int64_t));
  at::parallel_for(0, num_atoms, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const Record* edges = buffers[chunk_of[i]].data() + start[i];
      for (int64_t n = 0, e = offset[i]; n < counts[i]; ++n, ++e) {
        write_edge(edges[n], neighbour_out + e, shifts_out + 3 * e);
        centre_out[e] = i;
      }
    }
  });
  return std::make_tuple(edge_index, shifts);
}

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
  prefer_huge_pages(neighbour_out, 2 * num_edges * sizeof(int64_t));
  prefer_huge_pages(shifts_out, 3 * num_edges * sizeof(int64_t));
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
  std::vector<double> candidates(search_chunks(num_atoms));  // per chunk, caps its buffer
  for (size_t c = 0; c < candidates.size(); ++c) {
    candidates[c] = per_centre * static_cast<double>((c + 1) * num_atoms / candidates.size() -
                                                     c * num_atoms / candidates.size());
  }
  if (bound > static_cast<double>(max_edges)) {
    candidates = candidates_per_chunk(data, num_atoms);
    const double most = std::accumulate(candidates.begin(), candidates.end(), 0.0);
    if (most > static_cast<double>(max_edges)) {
      const EdgeCount counted = count_edges(data, num_atoms, max_edges);
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
  auto result = packed ? search_and_write<PackedEdge>(data, num_atoms, candidates, ptr.options())
                       : search_and_write<Edge>(data, num_atoms, candidates, ptr.options());
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

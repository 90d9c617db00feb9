// The parallel search passes of the CPU radius_graph kernel (cpu/radius_graph_cpu.cpp) over
// the bin-sorted atoms (kernels/radius_graph.h): the edge records kept per centre (packed
// or general), the candidate bound per chunk, the edge count that stops past max_edges, and
// the search that writes the output. Header-only, included by radius_graph_cpu.cpp alone.
#pragma once
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <tuple>
#include <vector>

#include "kernels/radius_graph.h"

namespace torch_pet {
namespace radius_cpu {

// Below this many atoms the search runs on one thread.
constexpr int64_t kParallelAtoms = 256;

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
inline int64_t search_chunks(int64_t num_atoms) { return num_atoms < kParallelAtoms ? 1 : 8 * at::get_num_threads(); }

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

}  // namespace radius_cpu
}  // namespace torch_pet

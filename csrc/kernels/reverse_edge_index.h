// Per-edge logic of torch_pet::reverse_edge_index, shared by the CPU and CUDA kernels.
//
// Edges are rows (centre, neighbour, s0, s1, s2) of edge_index [2, E] (row 0 neighbour,
// row 1 centre) and shifts [E, 3], sorted lexicographically (as radius_graph returns them).
// The partner of e = (j -> i, S) is the first edge (i -> j, -S), found by binary search;
// kMissing when there is none, kUnsorted at an edge that precedes its predecessor (the
// caller then sorts and searches again).
//
// Plain C++ (no ATen): the CUDA kernels include this header and compile with a bare nvcc.
#pragma once
#include <cstdint>

#include "kernels/common.h"

namespace torch_pet {
namespace reverse {

constexpr int64_t kMissing = -1;
constexpr int64_t kUnsorted = -2;

// Sign of key(e) - (centre, neighbour, s): -1, 0 or 1.
TP_HOST_DEVICE inline int compare_edge(const int64_t* edge_index, const int64_t* shifts,
                                       int64_t num_edges, int64_t e, int64_t centre,
                                       int64_t neighbour, const int64_t* s) {
  const int64_t key[5] = {edge_index[num_edges + e], edge_index[e], shifts[3 * e],
                          shifts[3 * e + 1], shifts[3 * e + 2]};
  const int64_t other[5] = {centre, neighbour, s[0], s[1], s[2]};
  for (int k = 0; k < 5; ++k) {
    if (key[k] != other[k]) return key[k] < other[k] ? -1 : 1;
  }
  return 0;
}

TP_HOST_DEVICE inline int64_t reverse_edge(const int64_t* edge_index, const int64_t* shifts,
                                           int64_t num_edges, int64_t e) {
  const int64_t neighbour = edge_index[e];
  const int64_t centre = edge_index[num_edges + e];
  const int64_t* s = shifts + 3 * e;
  if (e > 0 && compare_edge(edge_index, shifts, num_edges, e - 1, centre, neighbour, s) > 0) {
    return kUnsorted;
  }
  const int64_t partner_shift[3] = {-s[0], -s[1], -s[2]};
  int64_t lo = 0, hi = num_edges;  // lower bound of (neighbour, centre, -S)
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (compare_edge(edge_index, shifts, num_edges, mid, neighbour, centre, partner_shift) < 0) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo < num_edges && compare_edge(edge_index, shifts, num_edges, lo, neighbour, centre, partner_shift) == 0) {
    return lo;
  }
  return kMissing;
}

}  // namespace reverse
}  // namespace torch_pet

// Per-element logic of torch_pet::ecse_pairs, shared by the CPU and CUDA kernels.
//
// For one centre with edges [begin, end) (edge vectors r_e, rows of a [E, 3] array), a pair
// of edges (a, b), a != b, is kept iff |r_a| < radius, |r_b| < radius and
//     s = |r_a x r_b|^2 / (|r_a|^2 |r_b|^2) = |r̂_a x r̂_b|^2 > s_min.
// Edges of zero length never pair (their direction is undefined). With `ordered`, both
// (a, b) and (b, a) are kept, otherwise only a < b. Partners b of one edge a are visited in
// ascending order, so filling pair lists edge by edge gives pairs sorted by (centre, a, b).
//
// Plain C++ (no ATen): the CUDA kernels include this header and compile with a bare nvcc.
#pragma once
#include <cmath>

#include "kernels/common.h"

namespace torch_pet {
namespace ecse {

// Squared length of edge e.
template <typename scalar_t>
TP_HOST_DEVICE inline scalar_t edge_length2(const scalar_t* vectors, int64_t e) {
  const scalar_t* v = vectors + 3 * e;
  return v[0] * v[0] + v[1] * v[1] + v[2] * v[2];
}

// Whether edge e lies strictly inside the radius (and is not of zero length).
template <typename scalar_t>
TP_HOST_DEVICE inline bool edge_inside(const scalar_t* vectors, int64_t e, scalar_t radius) {
  const scalar_t r2 = edge_length2(vectors, e);
  return r2 > scalar_t(0) && std::sqrt(r2) < radius;
}

// s = |r̂_a x r̂_b|^2 (both edges of nonzero length).
template <typename scalar_t>
TP_HOST_DEVICE inline scalar_t pair_sine2(const scalar_t* vectors, int64_t a, int64_t b) {
  const scalar_t* u = vectors + 3 * a;
  const scalar_t* v = vectors + 3 * b;
  const scalar_t cx = u[1] * v[2] - u[2] * v[1];
  const scalar_t cy = u[2] * v[0] - u[0] * v[2];
  const scalar_t cz = u[0] * v[1] - u[1] * v[0];
  const scalar_t c2 = cx * cx + cy * cy + cz * cz;
  return c2 / (edge_length2(vectors, a) * edge_length2(vectors, b));
}

// Whether b is a partner of a (a inside the radius is checked by the caller).
template <typename scalar_t>
TP_HOST_DEVICE inline bool is_partner(const scalar_t* vectors, int64_t a, int64_t b,
                                      scalar_t radius, scalar_t s_min, bool ordered) {
  if (b == a || (!ordered && b < a)) return false;
  if (!edge_inside(vectors, b, radius)) return false;
  return pair_sine2(vectors, a, b) > s_min;
}

// Number of partners of edge a among the edges [begin, end) of its centre.
template <typename scalar_t>
TP_HOST_DEVICE inline int64_t count_partners(const scalar_t* vectors, int64_t a, int64_t begin,
                                             int64_t end, scalar_t radius, scalar_t s_min,
                                             bool ordered) {
  if (!edge_inside(vectors, a, radius)) return 0;
  int64_t count = 0;
  for (int64_t b = begin; b < end; ++b) {
    if (is_partner(vectors, a, b, radius, s_min, ordered)) ++count;
  }
  return count;
}

// Writes the pairs (a, b) of edge a, in ascending b, to out[2 * offset ...]; returns the
// number written (equal to count_partners for the same arguments).
template <typename scalar_t>
TP_HOST_DEVICE inline int64_t fill_partners(const scalar_t* vectors, int64_t a, int64_t begin,
                                            int64_t end, scalar_t radius, scalar_t s_min,
                                            bool ordered, int64_t offset, int64_t* out) {
  if (!edge_inside(vectors, a, radius)) return 0;
  int64_t written = 0;
  for (int64_t b = begin; b < end; ++b) {
    if (is_partner(vectors, a, b, radius, s_min, ordered)) {
      out[2 * (offset + written)] = a;
      out[2 * (offset + written) + 1] = b;
      ++written;
    }
  }
  return written;
}

// Centre c of edge e from the CSR pointer (ptr[c] <= e < ptr[c + 1]), by binary search over
// ptr[0..num_centres]; assumes 0 <= e < ptr[num_centres].
TP_HOST_DEVICE inline int64_t centre_of_edge(const int64_t* ptr, int64_t num_centres, int64_t e) {
  int64_t lo = 0, hi = num_centres;  // invariant: ptr[lo] <= e < ptr[hi]
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (ptr[mid] <= e) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

}  // namespace ecse
}  // namespace torch_pet

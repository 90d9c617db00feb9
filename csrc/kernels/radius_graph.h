// Per-atom and per-centre logic of torch_pet::radius_graph, shared by the CPU and CUDA
// kernels. Plain C++ (no ATen): the CUDA kernels include this header and compile with a
// bare nvcc (scripts/check_cuda_kernels.sh). The host-only set-up (limits, bins of each
// structure, bounds on the output size) is in kernels/radius_graph_bins.h.
//
// Definition (the one the pure-PyTorch reference implements): the edge j -> i with integer
// cell shift S exists iff |r_ij|^2 < r^2, evaluated in the dtype of the positions as
//     r_ij = (pos[j] - pos[i]) + ((S0 * cell[0] + S1 * cell[1]) + S2 * cell[2]),
//     |r_ij|^2 = (x * x + y * y) + z * z,
// S_k = 0 on non-periodic axes, and j == i with S == 0 only when `loop`. Every operation
// is rounded separately (no fused multiply-add) so that CPU, CUDA and the reference take
// bitwise the same decisions, also for pairs at the cutoff. In float32, a pair whose r_ij
// or |r_ij|^2 overflows (|r_ij| > 1.8e19) is decided by the same formula in double against
// double(float(r))^2; float64 inputs are limited (|pos|, periodic cell entries <= 1e100,
// r >= 1e-150; float32 r >= 1e-18) so that squares neither overflow nor underflow. Every
// double -> integer conversion of the bin arithmetic is clamped first (floor_clamped).
//
// Search (cell list): per structure, fractional coordinates f = pos @ inverse(basis), where
// the basis rows are the cell vectors on periodic axes and an orthonormal completion on the
// others. Periodic coordinates are wrapped into [0, 1) (integer wrap w per atom), the others
// binned over their bounding range; bins are about r |b_k| / 2 wide in fraction k (|b_k|:
// norm of the reciprocal vector; 1 / |b_k| is the distance between lattice planes). A centre
// scans the bins its sphere can reach, row by row: a row of bins along axis 2 is contiguous
// in the bin-sorted atom array, so it is one linear scan per periodic image. Bins are
// skipped by their distance to the centre: the plane distance along each axis (any cell),
// or the Euclidean distance when the basis is orthogonal. The image s' (wrapped coordinates)
// of a bin gives S = s' - w_j + w_i for the original positions. Candidates are tested in
// double on wrapped positions; only in a thin shell around r (the width of a bound on the
// rounding of the exact test, `inner2` <= d^2 < `search2`) does the exact test above
// decide. Centres are processed in bin order, so neighbouring centres read the same bins.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/common.h"

namespace torch_pet {
namespace radius {

// Binning of one structure; built on the host (make_basis + make_grid, radius_graph_bins.h),
// read by kernels.
struct Grid {
  double basis[9];      // rows a_k (row-major); periodic rows are the cell rows
  double inverse[9];    // basis^-1: f_k = sum_c pos_c * inverse[3 * c + k]
  double origin[3];     // fractional coordinate of the first bin's lower edge
  double width[3];      // bin width in fractional coordinate (0 for a flat axis)
  double inv_width[3];  // 1 / width (0 for a flat axis)
  double recip_norm[3];  // |b_k|, norm of column k of inverse
  double spacing[3];    // 1 / |b_k|: distance between lattice planes of axis k
  int64_t num_bins[3];
  int64_t periodic[3];
  int64_t orthogonal;   // basis rows mutually orthogonal: bin distances add in quadrature
  int64_t bin_offset;   // index of the structure's first bin in the global bin array
  double search2;       // squared radius of the fast test (r plus a rounding margin)
  double inner2;        // below it the fast test decides alone: (r minus the margin)^2
};

// Rounded arithmetic without contraction into FMA (nvcc contracts by default).
#if defined(__CUDA_ARCH__)
TP_HOST_DEVICE inline float mul_rn(float a, float b) { return __fmul_rn(a, b); }
TP_HOST_DEVICE inline double mul_rn(double a, double b) { return __dmul_rn(a, b); }
TP_HOST_DEVICE inline float add_rn(float a, float b) { return __fadd_rn(a, b); }
TP_HOST_DEVICE inline double add_rn(double a, double b) { return __dadd_rn(a, b); }
TP_HOST_DEVICE inline float sub_rn(float a, float b) { return __fsub_rn(a, b); }
TP_HOST_DEVICE inline double sub_rn(double a, double b) { return __dsub_rn(a, b); }
#else
template <typename T>
inline T mul_rn(T a, T b) { return a * b; }
template <typename T>
inline T add_rn(T a, T b) { return a + b; }
template <typename T>
inline T sub_rn(T a, T b) { return a - b; }
#endif

// floor(x) for |x| < 2^62 without a libm call (x86-64 without SSE4.1 has no inline floor).
TP_HOST_DEVICE inline double floor_fast(double x) {
#if defined(__CUDA_ARCH__)
  return floor(x);
#else
  const double t = static_cast<double>(static_cast<int64_t>(x));
  return t > x ? t - 1.0 : t;
#endif
}

// Largest |index| the bin arithmetic converts to an integer (well inside int64).
constexpr int64_t kIndexLimit = int64_t(1) << 60;

// floor(x) clamped to [lo, hi] (|lo|, |hi| <= kIndexLimit) for any double, NaN -> lo: a
// double -> int64 conversion out of range is undefined behaviour, so never convert before
// clamping.
TP_HOST_DEVICE inline int64_t floor_clamped(double x, int64_t lo, int64_t hi) {
  if (!(x >= static_cast<double>(lo))) return lo;
  if (!(x < static_cast<double>(hi))) return hi;
  return static_cast<int64_t>(floor_fast(x));
}

// Bin u (may lie outside [0, n)) along one axis: on periodic axes brought into [0, n) with
// the image shift s; returns false when a non-periodic axis has no such bin.
TP_HOST_DEVICE inline bool wrap_bin(int64_t& u, int64_t& s, int64_t n, int64_t periodic) {
  if (!periodic) return u >= 0 && u < n;
  if (u < 0 || u >= n) {
    int64_t q = u / n;
    if (u - q * n < 0) --q;
    s += q;
    u -= q * n;
  }
  return true;
}

// Structure of atom `atom`: the b with ptr[b] <= atom < ptr[b + 1] (ptr [B + 1] sorted).
TP_HOST_DEVICE inline int64_t structure_of(const int64_t* ptr, int64_t num_structures, int64_t atom) {
  int64_t lo = 0, hi = num_structures - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (ptr[mid] <= atom) lo = mid; else hi = mid - 1;
  }
  return lo;
}

// ---- per atom ---------------------------------------------------------------------------

// Fractional coordinates (periodic ones wrapped into [0, 1)), integer wraps and the wrapped
// Cartesian position (double) of one atom.
template <typename scalar_t>
TP_HOST_DEVICE inline void wrap_atom(const scalar_t* pos, const Grid& g, double* frac,
                                     int64_t* wrap, double* wrapped) {
  const double p[3] = {static_cast<double>(pos[0]), static_cast<double>(pos[1]),
                       static_cast<double>(pos[2])};
  for (int k = 0; k < 3; ++k) {
    frac[k] = p[0] * g.inverse[k] + p[1] * g.inverse[3 + k] + p[2] * g.inverse[6 + k];
    wrap[k] = 0;
    if (g.periodic[k]) {  // |frac| < 1e9 is checked by the host; clamped here, never UB
      wrap[k] = floor_clamped(frac[k], -kIndexLimit, kIndexLimit);
      frac[k] -= static_cast<double>(wrap[k]);
    }
  }
  for (int c = 0; c < 3; ++c) {
    wrapped[c] = p[c] - (static_cast<double>(wrap[0]) * g.basis[c] +
                         static_cast<double>(wrap[1]) * g.basis[3 + c] +
                         static_cast<double>(wrap[2]) * g.basis[6 + c]);
  }
}

// Bin coordinates of an atom from its (wrapped) fractional coordinates; returns its global
// bin index.
TP_HOST_DEVICE inline int64_t atom_bin(const double* frac, const Grid& g, int64_t* bin3) {
  for (int k = 0; k < 3; ++k) {
    bin3[k] = floor_clamped((frac[k] - g.origin[k]) * g.inv_width[k], 0, g.num_bins[k] - 1);
  }
  return g.bin_offset + (bin3[0] * g.num_bins[1] + bin3[1]) * g.num_bins[2] + bin3[2];
}

// ---- per centre -------------------------------------------------------------------------

// One atom in bin order: wrapped position (double), integer wraps and original index.
struct SortedAtom {
  double wrapped[3];
  int32_t wrap[3];
  int32_t structure;
  int64_t atom;
};

// Inputs of the neighbour search. `sorted` is ordered by bin (atoms of bin q are entries
// bin_start[q] .. bin_start[q + 1] - 1); pos and cell are the original arrays.
template <typename scalar_t>
struct SearchData {
  const scalar_t* pos;        // [N, 3] original positions
  const scalar_t* cell;       // [B, 3, 3]
  const Grid* grids;          // [B]
  const SortedAtom* sorted;   // [N]
  const int64_t* bin_start;   // [num_bins + 1]
  scalar_t cutoff2;      // r * r in scalar_t
  double wide_cutoff2;   // double(scalar_t(r))^2, for float32 distances that overflow
  bool loop;
};

// Largest finite float: a float32 |r_ij|^2 above it has overflowed.
constexpr float kFloatMax = 3.40282347e+38f;

// The test of the file comment redone in double from the same inputs, for float32 pairs
// whose r_ij or |r_ij|^2 overflowed (|r_ij| > 1.8e19): the edge exists iff the double
// |r_ij|^2 is below wide_cutoff2 = double(float(r))^2.
template <typename scalar_t>
TP_HOST_DEVICE inline bool wide_inside(const scalar_t* pj, const scalar_t* pi, const scalar_t* cell,
                                       int64_t s0, int64_t s1, int64_t s2, double wide_cutoff2) {
  const double t0 = static_cast<double>(s0), t1 = static_cast<double>(s1), t2 = static_cast<double>(s2);
  double v[3];
  for (int c = 0; c < 3; ++c) {
    const double shift = cell == nullptr ? 0.0
        : add_rn(add_rn(mul_rn(t0, static_cast<double>(cell[c])), mul_rn(t1, static_cast<double>(cell[3 + c]))),
                 mul_rn(t2, static_cast<double>(cell[6 + c])));
    v[c] = add_rn(sub_rn(static_cast<double>(pj[c]), static_cast<double>(pi[c])), shift);
  }
  const double d2 = add_rn(add_rn(mul_rn(v[0], v[0]), mul_rn(v[1], v[1])), mul_rn(v[2], v[2]));
  return d2 < wide_cutoff2;
}

// The exact edge test of the file comment (shared with the reference, same rounding). In
// float32 a squared distance that overflowed is decided by wide_inside (float64 inputs are
// bounded so that theirs cannot overflow).
template <typename scalar_t>
TP_HOST_DEVICE inline bool exact_inside(const scalar_t* pj, const scalar_t* pi, const scalar_t* cell,
                                        int64_t s0, int64_t s1, int64_t s2, scalar_t cutoff2,
                                        double wide_cutoff2) {
  const scalar_t t0 = static_cast<scalar_t>(s0), t1 = static_cast<scalar_t>(s1),
                 t2 = static_cast<scalar_t>(s2);
  scalar_t v[3];
  for (int c = 0; c < 3; ++c) {
    const scalar_t shift = add_rn(add_rn(mul_rn(t0, cell[c]), mul_rn(t1, cell[3 + c])),
                                  mul_rn(t2, cell[6 + c]));
    v[c] = add_rn(sub_rn(pj[c], pi[c]), shift);
  }
  const scalar_t d2 = add_rn(add_rn(mul_rn(v[0], v[0]), mul_rn(v[1], v[1])), mul_rn(v[2], v[2]));
  if (d2 < cutoff2) return true;
  if (sizeof(scalar_t) == 4 && !(d2 <= static_cast<scalar_t>(kFloatMax))) {
    return wide_inside(pj, pi, cell, s0, s1, s2, wide_cutoff2);
  }
  return false;
}

// exact_inside for S = 0 without the cell (a zero shift changes no rounded result).
template <typename scalar_t>
TP_HOST_DEVICE inline bool exact_inside_unshifted(const scalar_t* pj, const scalar_t* pi, scalar_t cutoff2,
                                                  double wide_cutoff2) {
  const scalar_t v0 = sub_rn(pj[0], pi[0]), v1 = sub_rn(pj[1], pi[1]), v2 = sub_rn(pj[2], pi[2]);
  const scalar_t d2 = add_rn(add_rn(mul_rn(v0, v0), mul_rn(v1, v1)), mul_rn(v2, v2));
  if (d2 < cutoff2) return true;
  if (sizeof(scalar_t) == 4 && !(d2 <= static_cast<scalar_t>(kFloatMax))) {
    return wide_inside<scalar_t>(pj, pi, nullptr, 0, 0, 0, wide_cutoff2);
  }
  return false;
}

// Unwrapped bins [lo, hi] along axis k within `radius` (Cartesian, may be infinite) of
// fractional coordinate f; clamped to the existing bins on non-periodic axes. Every
// conversion to an integer is clamped first (huge radii, thin bins).
TP_HOST_DEVICE inline void bin_range(double f, double radius, const Grid& g, int k, int64_t& lo, int64_t& hi) {
  if (g.inv_width[k] == 0.0) {  // a single bin
    lo = hi = 0;
    return;
  }
  const double centre = (f - g.origin[k]) * g.inv_width[k];
  const double reach = radius * g.recip_norm[k] * g.inv_width[k];
  const int64_t first = g.periodic[k] ? -kIndexLimit : 0;
  const int64_t last = g.periodic[k] ? kIndexLimit : g.num_bins[k] - 1;
  lo = floor_clamped(centre - reach, first, last);
  hi = floor_clamped(centre + reach, first, last);
}

// Squared lower bound on the distance along axis k (to the lattice planes of the unwrapped
// bin U) from fractional coordinate f.
TP_HOST_DEVICE inline double bin_gap2(double f, int64_t bin, const Grid& g, int k) {
  const double lo = g.origin[k] + static_cast<double>(bin) * g.width[k];
  const double hi = lo + g.width[k];
  const double gap = (lo > f ? lo - f : (f > hi ? f - hi : 0.0)) * g.spacing[k];
  return gap * gap;
}

// Candidate at sorted position n, seen from centre `centre` through the bin image s' with
// double-precision squared distance dist2 < search2: emits the edge if it exists.
template <typename scalar_t, typename Emit>
TP_HOST_DEVICE inline void accept_candidate(const SearchData<scalar_t>& d, const SortedAtom& centre,
                                            const Grid& g, const scalar_t* cell, int64_t n,
                                            const int64_t* image, double dist2, Emit& emit) {
  const SortedAtom& other = d.sorted[n];
  const int64_t t0 = image[0] - other.wrap[0] + centre.wrap[0];
  const int64_t t1 = image[1] - other.wrap[1] + centre.wrap[1];
  const int64_t t2 = image[2] - other.wrap[2] + centre.wrap[2];
  const int64_t j = other.atom;
  if (!d.loop && j == centre.atom && t0 == 0 && t1 == 0 && t2 == 0) return;
  if (dist2 >= g.inner2 &&
      !exact_inside(d.pos + 3 * j, d.pos + 3 * centre.atom, cell, t0, t1, t2, d.cutoff2,
                    d.wide_cutoff2)) {
    return;
  }
  emit(j, t0, t1, t2);
}

// Calls run(n, end, image) for every run of sorted atoms n .. end - 1 (one row of bins,
// one periodic image s' = image) the centre at sorted position k must scan: the bins its
// search sphere can reach, skipped by their distance to the centre.
template <typename scalar_t, typename Run>
TP_HOST_DEVICE inline void scan_runs(int64_t k, const SearchData<scalar_t>& d, Run& run) {
  const SortedAtom& centre = d.sorted[k];
  const Grid& g = d.grids[centre.structure];
  const double search = std::sqrt(g.search2);
  double f[3];
  for (int a = 0; a < 3; ++a) {
    f[a] = centre.wrapped[0] * g.inverse[a] + centre.wrapped[1] * g.inverse[3 + a] +
           centre.wrapped[2] * g.inverse[6 + a];
  }
  int64_t lo0, hi0;
  bin_range(f[0], search, g, 0, lo0, hi0);
  for (int64_t b0 = lo0; b0 <= hi0; ++b0) {
    const double gap0 = bin_gap2(f[0], b0, g, 0);
    if (gap0 >= g.search2) continue;
    int64_t u0 = b0, s0 = 0;
    wrap_bin(u0, s0, g.num_bins[0], g.periodic[0]);
    int64_t lo1, hi1;
    bin_range(f[1], g.orthogonal ? std::sqrt(g.search2 - gap0) : search, g, 1, lo1, hi1);
    for (int64_t b1 = lo1; b1 <= hi1; ++b1) {
      const double gap1 = bin_gap2(f[1], b1, g, 1);
      const double gap01 = g.orthogonal ? gap0 + gap1 : gap1;
      if (gap01 >= g.search2) continue;
      int64_t u1 = b1, s1 = 0;
      wrap_bin(u1, s1, g.num_bins[1], g.periodic[1]);
      const int64_t row = g.bin_offset + (u0 * g.num_bins[1] + u1) * g.num_bins[2];
      int64_t lo2, hi2;
      bin_range(f[2], g.orthogonal ? std::sqrt(g.search2 - gap01) : search, g, 2, lo2, hi2);
      // The bins lo2..hi2 of this row, one contiguous run of atoms per periodic image.
      for (int64_t b2 = lo2; b2 <= hi2;) {
        int64_t u2 = b2, s2 = 0;
        wrap_bin(u2, s2, g.num_bins[2], g.periodic[2]);
        int64_t last = u2 + (hi2 - b2);
        if (last > g.num_bins[2] - 1) last = g.num_bins[2] - 1;
        b2 += last - u2 + 1;
        const int64_t end = d.bin_start[row + last + 1];
        const int64_t n = d.bin_start[row + u2];
        if (n == end) continue;
        const int64_t image[3] = {s0, s1, s2};
        run(n, end, image);
      }
    }
  }
}

// Number of atoms the centre at sorted position k tests: an upper bound on its edges,
// without a distance test (a cheap pass that bounds the output before any allocation).
template <typename scalar_t>
TP_HOST_DEVICE inline int64_t count_candidates(int64_t k, const SearchData<scalar_t>& d) {
  int64_t total = 0;
  auto run = [&](int64_t n, int64_t end, const int64_t*) { total += end - n; };
  scan_runs(k, d, run);
  return total;
}

// Calls emit(j, s0, s1, s2) for every edge j -> i of the centre at sorted position k
// (unordered; the caller sorts). The double-precision distance decides directly outside
// the shell inner2 <= d^2 < search2, where rounding of the exact test in scalar_t could
// matter; inside the shell the exact test decides. kStaged (CPU): candidates within the
// radius are first collected without branches, then accepted, which avoids a branch
// misprediction per candidate; GPU threads take the plain loop.
template <bool kStaged, typename scalar_t, typename Emit>
TP_HOST_DEVICE inline void visit_neighbours(int64_t k, const SearchData<scalar_t>& d, Emit& emit) {
  const SortedAtom& centre = d.sorted[k];
  const Grid& g = d.grids[centre.structure];
  const scalar_t* cell = d.cell + 9 * centre.structure;
  auto run = [&](int64_t n, int64_t end, const int64_t* image) {
    // Centre seen from the image s' of the bins: candidate vector = wrapped_j - q.
    double q[3];
    for (int c = 0; c < 3; ++c) {
      q[c] = centre.wrapped[c] - (static_cast<double>(image[0]) * g.basis[c] +
                                  static_cast<double>(image[1]) * g.basis[3 + c] +
                                  static_cast<double>(image[2]) * g.basis[6 + c]);
    }
    if constexpr (kStaged) {
      constexpr int kStage = 64;
      int64_t staged[kStage];
      double staged_dist2[kStage];
      while (n < end) {
        const int64_t block_end = end - n > kStage ? n + kStage : end;
        int count = 0;
        for (; n < block_end; ++n) {
          const double* w = d.sorted[n].wrapped;
          const double dx = w[0] - q[0], dy = w[1] - q[1], dz = w[2] - q[2];
          const double dist2 = dx * dx + dy * dy + dz * dz;
          staged[count] = n;
          staged_dist2[count] = dist2;
          count += dist2 < g.search2 ? 1 : 0;
        }
        for (int c = 0; c < count; ++c) {
          accept_candidate(d, centre, g, cell, staged[c], image, staged_dist2[c], emit);
        }
      }
    } else {
      for (; n < end; ++n) {
        const double* w = d.sorted[n].wrapped;
        const double dx = w[0] - q[0], dy = w[1] - q[1], dz = w[2] - q[2];
        const double dist2 = dx * dx + dy * dy + dz * dz;
        if (dist2 < g.search2) accept_candidate(d, centre, g, cell, n, image, dist2, emit);
      }
    }
  };
  scan_runs(k, d, run);
}

// Canonical order of the edges of one centre: by neighbour, then shift (lexicographic).
TP_HOST_DEVICE inline bool edge_less_32(int64_t ja, const int32_t* sa, int64_t jb, const int32_t* sb) {
  if (ja != jb) return ja < jb;
  if (sa[0] != sb[0]) return sa[0] < sb[0];
  if (sa[1] != sb[1]) return sa[1] < sb[1];
  return sa[2] < sb[2];
}

TP_HOST_DEVICE inline bool edge_less(int64_t ja, const int64_t* sa, int64_t jb, const int64_t* sb) {
  if (ja != jb) return ja < jb;
  if (sa[0] != sb[0]) return sa[0] < sb[0];
  if (sa[1] != sb[1]) return sa[1] < sb[1];
  return sa[2] < sb[2];
}

// Insertion sort of the edges [begin, end) of one centre: neighbour[e], shifts[3 e .. 3 e + 2].
TP_HOST_DEVICE inline void sort_edges(int64_t* neighbour, int64_t* shifts, int64_t begin, int64_t end) {
  for (int64_t e = begin + 1; e < end; ++e) {
    const int64_t j = neighbour[e];
    const int64_t s[3] = {shifts[3 * e], shifts[3 * e + 1], shifts[3 * e + 2]};
    int64_t f = e;
    while (f > begin && edge_less(j, s, neighbour[f - 1], shifts + 3 * (f - 1))) {
      neighbour[f] = neighbour[f - 1];
      for (int c = 0; c < 3; ++c) shifts[3 * f + c] = shifts[3 * (f - 1) + c];
      --f;
    }
    neighbour[f] = j;
    for (int c = 0; c < 3; ++c) shifts[3 * f + c] = s[c];
  }
}

}  // namespace radius
}  // namespace torch_pet

// Per-structure and per-atom logic of torch_pet::radius_graph, shared by the CPU and CUDA
// kernels. Plain C++ (no ATen): the CUDA kernels include this header and compile with a
// bare nvcc (scripts/check_cuda_kernels.sh).
//
// Definition (the one the pure-PyTorch reference implements): the edge j -> i with integer
// cell shift S exists iff |r_ij|^2 < r^2, evaluated in the dtype of the positions as
//     r_ij = (pos[j] - pos[i]) + ((S0 * cell[0] + S1 * cell[1]) + S2 * cell[2]),
//     |r_ij|^2 = (x * x + y * y) + z * z,
// S_k = 0 on non-periodic axes, and j == i with S == 0 only when `loop`. Every operation
// is rounded separately (no fused multiply-add) so that CPU, CUDA and the reference take
// bitwise the same decisions, also for pairs at the cutoff.
//
// Search (cell list): per structure, fractional coordinates f = pos @ inverse(basis), where
// the basis rows are the cell vectors on periodic axes and an orthonormal completion on the
// others. Periodic coordinates are wrapped into [0, 1) (integer wrap w per atom), the others
// binned over their bounding range. Bins are at least r * |b_k| wide in fraction k (|b_k|:
// norm of the reciprocal vector, 1 / |b_k| the distance between lattice planes), so a centre
// visits reach_k = ceil(r |b_k| / width_k) bins each side: one for ordinary cells, several
// images when the cutoff exceeds the cell. A bin visited through image s' (wrapped
// coordinates) gives S = s' - w_j + w_i for the original positions. Candidates pass a fast
// test in double on wrapped positions with a slightly larger radius (`search2`, covers the
// rounding of the exact test) before the exact test above.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/common.h"

namespace torch_pet {
namespace radius {

// Binning of one structure; built on the host (make_basis + make_grid), read by kernels.
struct Grid {
  double basis[9];      // rows a_k (row-major); periodic rows are the cell rows
  double inverse[9];    // basis^-1: f_k = sum_c pos_c * inverse[3 * c + k]
  double origin[3];     // fractional coordinate of the first bin's lower edge
  double inv_width[3];  // bins per unit of fractional coordinate
  double recip_norm[3];  // |b_k|, norm of column k of inverse
  int64_t num_bins[3];
  int64_t reach[3];     // bins visited on each side of the centre's bin
  int64_t periodic[3];
  int64_t bin_offset;   // index of the structure's first bin in the global bin array
  double search2;       // squared radius of the fast test (r plus a rounding margin)
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

TP_HOST_DEVICE inline int64_t floor_div(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
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

// ---- host: per-structure set-up -------------------------------------------------------

inline double norm3(const double* v) { return std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]); }

inline void cross3(const double* u, const double* v, double* out) {
  out[0] = u[1] * v[2] - u[2] * v[1];
  out[1] = u[2] * v[0] - u[0] * v[2];
  out[2] = u[0] * v[1] - u[1] * v[0];
}

// Basis and inverse from the cell rows and pbc flags. Returns false when the periodic cell
// vectors are (nearly) linearly dependent: normalised volume / area / length below 1e-10.
inline bool make_basis(const double* cell, const bool* pbc, Grid& g) {
  int num_periodic = 0;
  int axes[3];
  for (int k = 0; k < 3; ++k) {
    g.periodic[k] = pbc[k] ? 1 : 0;
    if (pbc[k]) axes[num_periodic++] = k;
  }
  for (int i = 0; i < 9; ++i) g.basis[i] = (i % 4 == 0) ? 1.0 : 0.0;
  for (int n = 0; n < num_periodic; ++n) {
    for (int c = 0; c < 3; ++c) g.basis[3 * axes[n] + c] = cell[3 * axes[n] + c];
  }
  // Orthonormal completion of the non-periodic rows.
  if (num_periodic == 1) {
    const double* a = cell + 3 * axes[0];
    const double len = norm3(a);
    if (!(len > 0.0) || !std::isfinite(len)) return false;
    double e[3] = {0.0, 0.0, 0.0};
    int least = 0;
    for (int c = 1; c < 3; ++c) if (std::fabs(a[c]) < std::fabs(a[least])) least = c;
    e[least] = 1.0;
    double u[3], v[3];
    cross3(a, e, u);
    const double nu = norm3(u);
    for (int c = 0; c < 3; ++c) u[c] /= nu;
    cross3(a, u, v);
    const double nv = norm3(v);
    for (int c = 0; c < 3; ++c) v[c] /= nv;
    const int p = axes[0];
    const int q = (p + 1) % 3, s = (p + 2) % 3;
    for (int c = 0; c < 3; ++c) { g.basis[3 * q + c] = u[c]; g.basis[3 * s + c] = v[c]; }
  } else if (num_periodic == 2) {
    const double* a = cell + 3 * axes[0];
    const double* b = cell + 3 * axes[1];
    double n[3];
    cross3(a, b, n);
    const double area = norm3(n);
    if (!(area > 1e-10 * norm3(a) * norm3(b)) || !std::isfinite(area)) return false;
    const int q = 3 - axes[0] - axes[1];
    for (int c = 0; c < 3; ++c) g.basis[3 * q + c] = n[c] / area;
  }
  const double* m = g.basis;
  double cof[9];  // inverse = adjugate / det; cofactor layout gives inverse[3*c+k]
  cof[0] = m[4] * m[8] - m[5] * m[7];
  cof[1] = m[2] * m[7] - m[1] * m[8];
  cof[2] = m[1] * m[5] - m[2] * m[4];
  cof[3] = m[5] * m[6] - m[3] * m[8];
  cof[4] = m[0] * m[8] - m[2] * m[6];
  cof[5] = m[2] * m[3] - m[0] * m[5];
  cof[6] = m[3] * m[7] - m[4] * m[6];
  cof[7] = m[1] * m[6] - m[0] * m[7];
  cof[8] = m[0] * m[4] - m[1] * m[3];
  const double det = m[0] * cof[0] + m[1] * cof[3] + m[2] * cof[6];
  const double scale = norm3(m) * norm3(m + 3) * norm3(m + 6);
  if (!(std::fabs(det) > 1e-10 * scale) || !std::isfinite(det)) return false;
  for (int i = 0; i < 9; ++i) g.inverse[i] = cof[i] / det;
  for (int k = 0; k < 3; ++k) {
    const double* inv = g.inverse;
    g.recip_norm[k] = std::sqrt(inv[k] * inv[k] + inv[3 + k] * inv[3 + k] + inv[6 + k] * inv[6 + k]);
  }
  return true;
}

// Bins of one structure of `num_atoms` atoms whose fractional coordinates span
// [fmin_k, fmax_k] on non-periodic axes; `search_radius` includes the rounding margin and
// `bins_per_cutoff` (>= 1) subdivides bins below the cutoff. At most max(8, num_atoms)
// bins. Returns the number of bins.
inline int64_t make_grid(const double* fmin, const double* fmax, double search_radius,
                         int64_t num_atoms, int64_t bins_per_cutoff, int64_t bin_offset, Grid& g) {
  g.search2 = search_radius * search_radius;
  g.bin_offset = bin_offset;
  const double max_bins = static_cast<double>(num_atoms > 8 ? num_atoms : 8);
  double extent[3];
  int64_t n[3];
  for (int k = 0; k < 3; ++k) {
    extent[k] = g.periodic[k] ? 1.0 : (num_atoms > 0 ? fmax[k] - fmin[k] : 0.0);
    g.origin[k] = g.periodic[k] || num_atoms == 0 ? 0.0 : fmin[k];
    const double reach = search_radius * g.recip_norm[k];  // fractional reach of the sphere
    double count = std::floor(extent[k] * static_cast<double>(bins_per_cutoff) / reach);
    if (!(count >= 1.0)) count = 1.0;
    if (count > max_bins) count = max_bins;
    n[k] = static_cast<int64_t>(count);
  }
  while (static_cast<double>(n[0]) * static_cast<double>(n[1]) * static_cast<double>(n[2]) > max_bins) {
    int largest = 0;
    for (int k = 1; k < 3; ++k) if (n[k] > n[largest]) largest = k;
    n[largest] = (n[largest] + 1) / 2;
  }
  for (int k = 0; k < 3; ++k) {
    g.num_bins[k] = n[k];
    const double width = extent[k] / static_cast<double>(n[k]);
    g.inv_width[k] = width > 0.0 ? 1.0 / width : 0.0;
    const double reach = search_radius * g.recip_norm[k];
    int64_t m = width > 0.0 ? static_cast<int64_t>(std::ceil(reach / width)) : 0;
    if (!g.periodic[k] && m > n[k] - 1) m = n[k] - 1;  // beyond the last bin there is nothing
    g.reach[k] = m;
  }
  return n[0] * n[1] * n[2];
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
    if (g.periodic[k]) {
      const double w = std::floor(frac[k]);
      wrap[k] = static_cast<int64_t>(w);
      frac[k] -= w;
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
    double c = std::floor((frac[k] - g.origin[k]) * g.inv_width[k]);
    const double last = static_cast<double>(g.num_bins[k] - 1);
    c = c < 0.0 ? 0.0 : (c > last ? last : c);
    bin3[k] = static_cast<int64_t>(c);
  }
  return g.bin_offset + (bin3[0] * g.num_bins[1] + bin3[1]) * g.num_bins[2] + bin3[2];
}

// ---- per centre -------------------------------------------------------------------------

// Inputs of the neighbour search. "Sorted" arrays are ordered by bin (atoms of bin q are
// entries bin_start[q] .. bin_start[q + 1] - 1); the others are in the original order.
template <typename scalar_t>
struct SearchData {
  const scalar_t* pos;        // [N, 3] original positions
  const scalar_t* cell;       // [B, 3, 3]
  const int64_t* ptr;         // [B + 1]
  const Grid* grids;          // [B]
  const double* wrapped;      // [N, 3] wrapped positions (double)
  const int64_t* wrap;        // [N, 3]
  const int64_t* bin3;        // [N, 3] bin coordinates of each atom
  const int64_t* bin_start;   // [num_bins + 1]
  const int64_t* sorted_atom;     // [N] original index of sorted entry
  const double* sorted_wrapped;   // [N, 3]
  const int64_t* sorted_wrap;     // [N, 3]
  const scalar_t* sorted_pos;     // [N, 3]
  int64_t num_structures;
  scalar_t cutoff2;  // r * r in scalar_t
  bool loop;
};

// The exact edge test of the file comment (shared with the reference, same rounding).
template <typename scalar_t>
TP_HOST_DEVICE inline bool exact_inside(const scalar_t* pj, const scalar_t* pi, const scalar_t* cell,
                                        int64_t s0, int64_t s1, int64_t s2, scalar_t cutoff2) {
  const scalar_t t0 = static_cast<scalar_t>(s0), t1 = static_cast<scalar_t>(s1),
                 t2 = static_cast<scalar_t>(s2);
  scalar_t v[3];
  for (int c = 0; c < 3; ++c) {
    const scalar_t shift = add_rn(add_rn(mul_rn(t0, cell[c]), mul_rn(t1, cell[3 + c])),
                                  mul_rn(t2, cell[6 + c]));
    v[c] = add_rn(sub_rn(pj[c], pi[c]), shift);
  }
  const scalar_t d2 = add_rn(add_rn(mul_rn(v[0], v[0]), mul_rn(v[1], v[1])), mul_rn(v[2], v[2]));
  return d2 < cutoff2;
}

// Calls emit(j, s0, s1, s2) for every edge j -> i (unordered; the caller sorts).
template <typename scalar_t, typename Emit>
TP_HOST_DEVICE inline void visit_neighbours(int64_t i, const SearchData<scalar_t>& d, Emit& emit) {
  const int64_t b = structure_of(d.ptr, d.num_structures, i);
  const Grid& g = d.grids[b];
  const scalar_t* cell = d.cell + 9 * b;
  const scalar_t* pi = d.pos + 3 * i;
  const double* wi = d.wrapped + 3 * i;
  const int64_t* own_wrap = d.wrap + 3 * i;
  const int64_t* own_bin = d.bin3 + 3 * i;
  for (int64_t o0 = -g.reach[0]; o0 <= g.reach[0]; ++o0) {
    int64_t u0 = own_bin[0] + o0, s0 = 0;
    if (g.periodic[0]) { s0 = floor_div(u0, g.num_bins[0]); u0 -= s0 * g.num_bins[0]; }
    else if (u0 < 0 || u0 >= g.num_bins[0]) continue;
    for (int64_t o1 = -g.reach[1]; o1 <= g.reach[1]; ++o1) {
      int64_t u1 = own_bin[1] + o1, s1 = 0;
      if (g.periodic[1]) { s1 = floor_div(u1, g.num_bins[1]); u1 -= s1 * g.num_bins[1]; }
      else if (u1 < 0 || u1 >= g.num_bins[1]) continue;
      for (int64_t o2 = -g.reach[2]; o2 <= g.reach[2]; ++o2) {
        int64_t u2 = own_bin[2] + o2, s2 = 0;
        if (g.periodic[2]) { s2 = floor_div(u2, g.num_bins[2]); u2 -= s2 * g.num_bins[2]; }
        else if (u2 < 0 || u2 >= g.num_bins[2]) continue;
        // Centre seen from the image s' of the bin: candidate vector = wrapped_j - q.
        double q[3];
        for (int c = 0; c < 3; ++c) {
          q[c] = wi[c] - (static_cast<double>(s0) * g.basis[c] + static_cast<double>(s1) * g.basis[3 + c] +
                          static_cast<double>(s2) * g.basis[6 + c]);
        }
        const int64_t bin = g.bin_offset + (u0 * g.num_bins[1] + u1) * g.num_bins[2] + u2;
        const int64_t end = d.bin_start[bin + 1];
        for (int64_t k = d.bin_start[bin]; k < end; ++k) {
          const double* wj = d.sorted_wrapped + 3 * k;
          const double dx = wj[0] - q[0], dy = wj[1] - q[1], dz = wj[2] - q[2];
          if (dx * dx + dy * dy + dz * dz >= g.search2) continue;
          const int64_t* other_wrap = d.sorted_wrap + 3 * k;
          const int64_t t0 = s0 - other_wrap[0] + own_wrap[0];
          const int64_t t1 = s1 - other_wrap[1] + own_wrap[1];
          const int64_t t2 = s2 - other_wrap[2] + own_wrap[2];
          const int64_t j = d.sorted_atom[k];
          if (!d.loop && j == i && t0 == 0 && t1 == 0 && t2 == 0) continue;
          if (!exact_inside(d.sorted_pos + 3 * k, pi, cell, t0, t1, t2, d.cutoff2)) continue;
          emit(j, t0, t1, t2);
        }
      }
    }
  }
}

// Canonical order of the edges of one centre: by neighbour, then shift (lexicographic).
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

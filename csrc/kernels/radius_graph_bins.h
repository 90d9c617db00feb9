// Host-only set-up of torch_pet::radius_graph (the per-element logic shared by the CPU and
// CUDA kernels is in kernels/radius_graph.h): the documented limits, the binning basis and
// bins of each structure (make_basis, make_grid, which fill the Grid the kernels read) and
// the bounds on the output size (min_edges, candidates_per_centre). Plain C++ without ATen;
// included by the host code (radius_graph.cpp, cpu/radius_graph_cpu.cpp), not by the CUDA
// kernels.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/radius_graph.h"

namespace torch_pet {
namespace radius {

// Documented limits (the pure-PyTorch reference applies the same ones).
constexpr int64_t kMaxEdges = 2147483647;        // default and largest max_edges: 2^31 - 1
constexpr double kMaxImages = 1073741824.0;      // periodic images along one cell vector: 2^30
constexpr double kMaxCoordinateDouble = 1e100;   // |pos|, |periodic cell entries| in float64
constexpr double kMinCutoffFloat = 1e-18;        // r * r stays a normal number
constexpr double kMinCutoffDouble = 1e-150;

// Periodic images along a cell vector with reciprocal norm |b_k| that the cutoff reaches.
inline double periodic_images(double r, double recip_norm) { return std::ceil(r * recip_norm) + 2.0; }

// ---- per structure ----------------------------------------------------------------------

inline double norm3(const double* v) { return std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]); }

inline void cross3(const double* u, const double* v, double* out) {
  out[0] = u[1] * v[2] - u[2] * v[1];
  out[1] = u[2] * v[0] - u[0] * v[2];
  out[2] = u[0] * v[1] - u[1] * v[0];
}

// Basis and inverse from the cell rows and pbc flags. Returns false when the periodic cell
// vectors are (nearly) linearly dependent: the volume / area spanned by the normalised
// vectors below 1e-10, or a zero vector. Scale-free (cells of any size), except that the
// inverse must be finite (lattice vectors longer than about 1e-300).
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
  double length[3], unit[9];
  for (int k = 0; k < 3; ++k) {
    length[k] = norm3(g.basis + 3 * k);
    if (!(length[k] > 0.0) || !std::isfinite(length[k])) return false;
    for (int c = 0; c < 3; ++c) unit[3 * k + c] = g.basis[3 * k + c] / length[k];
  }
  // Orthonormal completion of the non-periodic rows.
  if (num_periodic == 1) {
    const double* a = unit + 3 * axes[0];
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
    for (int c = 0; c < 3; ++c) {
      g.basis[3 * q + c] = unit[3 * q + c] = u[c];
      g.basis[3 * s + c] = unit[3 * s + c] = v[c];
    }
  } else if (num_periodic == 2) {
    double n[3];
    cross3(unit + 3 * axes[0], unit + 3 * axes[1], n);
    const double area = norm3(n);
    if (!(area > 1e-10)) return false;
    const int q = 3 - axes[0] - axes[1];
    for (int c = 0; c < 3; ++c) g.basis[3 * q + c] = unit[3 * q + c] = n[c] / area;
  }
  for (int k = 0; k < 3; ++k) length[k] = norm3(g.basis + 3 * k);
  const double* m = unit;
  double cof[9];  // inverse(unit rows) = adjugate / det; cofactor layout gives inverse[3*c+k]
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
  if (!(std::fabs(det) > 1e-10)) return false;
  // basis = diag(length) unit, so inverse(basis) = inverse(unit) diag(1 / length).
  for (int i = 0; i < 9; ++i) {
    g.inverse[i] = cof[i] / det / length[i % 3];
    if (!std::isfinite(g.inverse[i])) return false;
  }
  g.orthogonal = 1;
  for (int a = 0; a < 3; ++a) {
    for (int b = a + 1; b < 3; ++b) {
      const double dot = m[3 * a] * m[3 * b] + m[3 * a + 1] * m[3 * b + 1] + m[3 * a + 2] * m[3 * b + 2];
      if (std::fabs(dot) > 1e-9) g.orthogonal = 0;
    }
  }
  for (int k = 0; k < 3; ++k) {
    const double* inv = g.inverse;
    const double largest = std::fmax(std::fabs(inv[k]), std::fmax(std::fabs(inv[3 + k]), std::fabs(inv[6 + k])));
    const double x = inv[k] / largest, y = inv[3 + k] / largest, z = inv[6 + k] / largest;
    g.recip_norm[k] = largest * std::sqrt(x * x + y * y + z * z);  // no overflow for tiny cells
    g.spacing[k] = 1.0 / g.recip_norm[k];
  }
  return true;
}

// Bins of one structure of `num_atoms` atoms whose fractional coordinates span
// [fmin_k, fmax_k] on non-periodic axes; `search_radius` includes the rounding margin and
// bins are about search_radius / bins_per_cutoff wide; `inner_radius` is r minus the margin
// (both may be infinite). At most max(8, num_atoms) bins, whatever the extents and radii
// (near-flat, subnormal or huge): bin counts are computed and clamped in double before any
// conversion; an axis whose bins would be too thin to index (1 / width not finite) gets one
// bin. A non-periodic axis with one bin has inv_width 0. Returns the number of bins.
inline int64_t make_grid(const double* fmin, const double* fmax, double search_radius,
                         double inner_radius, int64_t num_atoms, int64_t bins_per_cutoff,
                         int64_t bin_offset, Grid& g) {
  g.search2 = search_radius * search_radius;
  g.inner2 = inner_radius > 0.0 ? inner_radius * inner_radius : 0.0;
  g.bin_offset = bin_offset;
  const double max_bins = static_cast<double>(num_atoms > 8 ? num_atoms : 8);
  double extent[3];
  int64_t n[3];
  for (int k = 0; k < 3; ++k) {
    extent[k] = g.periodic[k] ? 1.0 : (num_atoms > 0 ? fmax[k] - fmin[k] : 0.0);
    if (!(extent[k] >= 0.0) || !std::isfinite(extent[k])) extent[k] = 0.0;  // guarded by the caller
    g.origin[k] = g.periodic[k] || num_atoms == 0 ? 0.0 : fmin[k];
    const double reach = search_radius * g.recip_norm[k];  // fractional reach of the sphere
    const double count = extent[k] * static_cast<double>(bins_per_cutoff) / reach;  // NaN, inf possible
    n[k] = count >= 2.0 ? static_cast<int64_t>(std::floor(count < max_bins ? count : max_bins)) : 1;
  }
  while (static_cast<double>(n[0]) * static_cast<double>(n[1]) * static_cast<double>(n[2]) > max_bins) {
    int largest = 0;
    for (int k = 1; k < 3; ++k) if (n[k] > n[largest]) largest = k;
    n[largest] = (n[largest] + 1) / 2;
  }
  for (int k = 0; k < 3; ++k) {
    double width = extent[k] / static_cast<double>(n[k]);
    double inv_width = 1.0 / width;
    if (n[k] == 1 || !(width > 0.0) || !std::isfinite(inv_width)) {
      n[k] = 1;
      width = extent[k];
      inv_width = g.periodic[k] ? 1.0 : 0.0;
    }
    g.num_bins[k] = n[k];
    g.width[k] = width;
    g.inv_width[k] = inv_width;
  }
  return n[0] * n[1] * n[2];
}

// A lower bound on the number of edges of one structure of `num_atoms` atoms (0 when none
// is easily proven), for refusing absurd outputs before searching. `inner_radius`: r minus
// the rounding margin (distances below it pass the exact test). Non-periodic coordinates
// (fmin, fmax) are orthonormal, so the perpendicular part h of any r_ij has
// |h| <= H = |extents|. On P periodic axes, the r_ij of a pair (i, j) over all shifts form a
// shifted lattice; the fundamental cells of the lattice points within rho - D of the origin
// (rho^2 = inner^2 - H^2, D = sum |a_k| >= the cell diameter) cover a P-ball of radius
// rho - D, so at least vol(ball) / cell volume of them are within rho. Without periodic axes
// every pair is an edge when H < inner_radius.
inline double min_edges(const Grid& g, const double* fmin, const double* fmax, int64_t num_atoms,
                        double inner_radius, bool loop) {
  if (num_atoms == 0 || !(inner_radius > 0.0)) return 0.0;
  double h2 = 0.0, diameter = 0.0, len[3], unit[9];
  int num_periodic = 0;
  for (int k = 0; k < 3; ++k) {
    if (g.periodic[k]) {
      const double* a = g.basis + 3 * k;
      len[num_periodic] = norm3(a);
      for (int c = 0; c < 3; ++c) unit[3 * num_periodic + c] = a[c] / len[num_periodic];
      diameter += len[num_periodic];
      ++num_periodic;
    } else {
      const double e = fmax[k] - fmin[k];
      h2 += e * e;
    }
  }
  const double rho2 = inner_radius * inner_radius - h2;
  if (!(rho2 > 0.0)) return 0.0;
  const double n = static_cast<double>(num_atoms), self = loop ? 0.0 : n;
  if (num_periodic == 0) return n * n - self;
  const double free = std::sqrt(rho2) - diameter;
  if (!(free > 0.0)) return 0.0;
  double per_pair;  // lattice points per pair, as volume ratio (overflow-free: unit vectors)
  if (num_periodic == 1) {
    per_pair = 2.0 * (free / len[0]);
  } else if (num_periodic == 2) {
    double cross[3];
    cross3(unit, unit + 3, cross);
    per_pair = 3.141592653589793 * (free / len[0]) * (free / len[1]) / norm3(cross);
  } else {
    double cross[3];
    cross3(unit + 3, unit + 6, cross);
    const double volume = std::fabs(unit[0] * cross[0] + unit[1] * cross[1] + unit[2] * cross[2]);
    per_pair = 4.18879020478639 * (free / len[0]) * (free / len[1]) * (free / len[2]) / volume;
  }
  per_pair = std::floor(per_pair * (1.0 - 1e-9));
  const double bound = n * n * per_pair - self;
  return bound > 0.0 ? bound : 0.0;
}

// Upper bound on the candidates (hence edges) of one centre of a structure whose fullest
// bin holds `most_per_bin` atoms: the bins a centre scans along axis k number at most
// floor(2 R_k) + 2 (R_k: the search reach in bins; images counted separately), at most
// num_bins on a non-periodic axis.
inline double candidates_per_centre(const Grid& g, int64_t most_per_bin) {
  double bins = 1.0;
  for (int k = 0; k < 3; ++k) {
    if (g.inv_width[k] == 0.0) continue;
    double range = std::floor(2.0 * std::sqrt(g.search2) * g.recip_norm[k] * g.inv_width[k]) + 2.0;
    if (!g.periodic[k] && !(range <= static_cast<double>(g.num_bins[k]))) range = static_cast<double>(g.num_bins[k]);
    bins *= range;
  }
  return bins * static_cast<double>(most_per_bin);
}

}  // namespace radius
}  // namespace torch_pet

// torch_pet::radius_graph — schema, argument checks and the host set-up shared by the CPU
// and CUDA kernels (per-structure bases and bin grids).
//
//   radius_graph(pos [N, 3], ptr [B + 1], cell [B, 3, 3], pbc [B, 3], r, loop, max_edges)
//       -> (edge_index [2, E], shifts [E, 3])
//
// Structures are atoms ptr[b] .. ptr[b + 1] - 1 and are never connected to each other.
// edge_index[0] is the neighbour j (source), edge_index[1] the centre i (target); the edge
// j -> i with integer shift S exists iff |pos[j] - pos[i] + S @ cell[b]| < r (exact rule
// and rounding in kernels/radius_graph.h), S = 0 on non-periodic axes. Edges are sorted by
// centre, then neighbour, then shift; the list is complete (no capacity, no truncation).
// Limits (ValueError): more than max_edges edges (default and at most 2^31 - 1), raised
// before the output is allocated (from a lower bound when one proves it, otherwise from a
// count); float64 coordinates beyond 1e100; r below 1e-18 (float32) / 1e-150 (float64);
// more than 2^30 periodic images along a cell vector; atoms more than 1e9 cells away.
// The CPU and CUDA kernels live in cpu/radius_graph_cpu.cpp and cuda/radius_graph_cuda.cu.
#include <torch/library.h>
#include <ATen/ATen.h>

#include <cmath>
#include <cstring>
#include <iomanip>
#include <sstream>
#include <string>
#include <limits>
#include <vector>

#include "kernels/radius_graph.h"
#include "kernels/radius_graph_bins.h"
#include "radius_graph_host.h"

namespace torch_pet {

namespace {

std::string count_text(double count) {
  std::ostringstream text;
  if (count < 1e15) {
    text << static_cast<int64_t>(count);
  } else if (std::isfinite(count)) {
    text << std::setprecision(3) << count;
  } else {
    text << "more than 1e308";
  }
  return text.str();
}

}  // namespace

void check_radius_graph_args(const at::Tensor& pos, const at::Tensor& ptr, const at::Tensor& cell,
                             const at::Tensor& pbc, double r, int64_t max_edges) {
  TORCH_CHECK_VALUE(pos.dim() == 2 && pos.size(1) == 3, "radius_graph: pos must have shape [N, 3], got ",
                    pos.sizes());
  TORCH_CHECK_TYPE(pos.scalar_type() == at::kFloat || pos.scalar_type() == at::kDouble,
                   "radius_graph: pos must be float32 or float64, got ", pos.scalar_type());
  TORCH_CHECK_TYPE(ptr.scalar_type() == at::kLong, "radius_graph: ptr must be an int64 tensor, got ",
                   ptr.scalar_type());
  TORCH_CHECK_VALUE(ptr.dim() == 1 && ptr.size(0) >= 1, "radius_graph: ptr must have shape [B + 1], got ",
                    ptr.sizes());
  const int64_t num_structures = ptr.size(0) - 1;
  TORCH_CHECK_VALUE(cell.dim() == 3 && cell.size(0) == num_structures && cell.size(1) == 3 && cell.size(2) == 3,
                    "radius_graph: cell must have shape [B, 3, 3] = [", num_structures, ", 3, 3], got ",
                    cell.sizes());
  TORCH_CHECK_TYPE(cell.scalar_type() == pos.scalar_type(), "radius_graph: cell must have the dtype of pos (",
                   pos.scalar_type(), "), got ", cell.scalar_type());
  TORCH_CHECK_TYPE(pbc.scalar_type() == at::kBool, "radius_graph: pbc must be a bool tensor, got ",
                   pbc.scalar_type());
  TORCH_CHECK_VALUE(pbc.dim() == 2 && pbc.size(0) == num_structures && pbc.size(1) == 3,
                    "radius_graph: pbc must have shape [B, 3] = [", num_structures, ", 3], got ", pbc.sizes());
  TORCH_CHECK_VALUE(pos.device() == ptr.device() && pos.device() == cell.device() && pos.device() == pbc.device(),
                    "radius_graph: pos, ptr, cell and pbc must be on the same device, got ", pos.device(),
                    ", ", ptr.device(), ", ", cell.device(), ", ", pbc.device());
  TORCH_CHECK_VALUE(std::isfinite(r) && r > 0.0, "radius_graph: the cutoff r must be positive and finite, got ", r);
  const bool single = pos.scalar_type() == at::kFloat;
  const double min_r = single ? radius::kMinCutoffFloat : radius::kMinCutoffDouble;
  TORCH_CHECK_VALUE(r >= min_r, "radius_graph: the cutoff r = ", r, " is too small for ",
                    single ? "float32" : "float64", " (r * r would underflow); r must be at least ", min_r,
                    ": rescale the units");
  TORCH_CHECK_VALUE(max_edges >= 0 && max_edges <= radius::kMaxEdges, "radius_graph: max_edges must be in "
                    "[0, 2**31 - 1], got ", max_edges);
  const auto ptr_host = ptr.to(at::kCPU);
  const int64_t* p = ptr_host.data_ptr<int64_t>();
  TORCH_CHECK_VALUE(p[0] == 0 && p[num_structures] == pos.size(0),
                    "radius_graph: ptr must start at 0 and end at N = ", pos.size(0), ", got ", p[0], " and ",
                    p[num_structures], "; build it from a sorted batch vector as [0] + cumsum(bincount(batch))");
  for (int64_t b = 0; b < num_structures; ++b) {
    TORCH_CHECK_VALUE(p[b] <= p[b + 1], "radius_graph: ptr must be non-decreasing (atoms grouped by "
                      "structure); it decreases at position ", b);
  }
  // Finiteness and size of pos are checked by the kernels (in their first pass over the atoms).
  TORCH_CHECK_VALUE(at::isfinite(cell).all().item<bool>(), "radius_graph: cell contains NaN or Inf");
}

void check_radius_graph_positions(double max_abs_pos, bool single_precision) {
  TORCH_CHECK_VALUE(single_precision || max_abs_pos <= radius::kMaxCoordinateDouble,
                    "radius_graph: pos has a coordinate of magnitude ", max_abs_pos, "; float64 positions "
                    "must stay within 1e100 (squared distances would overflow): rescale the units");
}

void raise_too_many_edges(double count, bool at_least, int64_t max_edges) {
  TORCH_CHECK_VALUE(false, "radius_graph: the graph would have ", at_least ? "at least " : "",
                    count_text(count), " edges (pairs closer than r, periodic images included), more than "
                    "max_edges = ", max_edges, "; use a smaller cutoff r, a larger cell or fewer atoms per "
                    "structure, or raise max_edges (at most 2**31 - 1)");
}

std::vector<radius::Grid> radius_graph_bases(const at::Tensor& cell, const at::Tensor& pbc) {
  const auto cell_host = cell.to(at::kCPU, at::kDouble).contiguous();
  const auto pbc_host = pbc.to(at::kCPU).contiguous();
  const double* c = cell_host.data_ptr<double>();
  const bool* p = pbc_host.data_ptr<bool>();
  const bool single = cell.scalar_type() == at::kFloat;
  const int64_t num_structures = cell_host.size(0);
  std::vector<radius::Grid> grids(num_structures);
  for (int64_t b = 0; b < num_structures; ++b) {
    for (int k = 0; k < 3 && !single; ++k) {
      for (int i = 0; i < 3; ++i) {
        TORCH_CHECK_VALUE(!p[3 * b + k] || std::fabs(c[9 * b + 3 * k + i]) <= radius::kMaxCoordinateDouble,
                          "radius_graph: the cell of structure ", b, " has an entry of magnitude ",
                          std::fabs(c[9 * b + 3 * k + i]), "; float64 cells must stay within 1e100 "
                          "(squared distances would overflow): rescale the units");
      }
    }
    std::memset(&grids[b], 0, sizeof(radius::Grid));
    TORCH_CHECK_VALUE(radius::make_basis(c + 9 * b, p + 3 * b, grids[b]),
                      "radius_graph: the cell of structure ", b, " is singular (its periodic cell vectors "
                      "are linearly dependent or zero); give a proper cell or set pbc to False on the "
                      "axes without periodicity");
  }
  return grids;
}

int64_t radius_graph_grids(std::vector<radius::Grid>& grids, const double* fmin, const double* fmax,
                           const at::Tensor& ptr, double r, double max_abs_pos, bool single_precision,
                           int64_t bins_per_cutoff, bool loop, int64_t max_edges) {
  check_radius_graph_positions(max_abs_pos, single_precision);
  const auto ptr_host = ptr.to(at::kCPU);
  const int64_t* p = ptr_host.data_ptr<int64_t>();
  // The fast double-precision test must keep every pair the exact test (in the dtype of pos)
  // accepts: enlarge r by a bound on the rounding of pos[j] - pos[i] + S @ cell.
  const double eps = single_precision ? static_cast<double>(std::numeric_limits<float>::epsilon())
                                      : std::numeric_limits<double>::epsilon();
  const size_t num_structures = grids.size();
  std::vector<double> search(num_structures), inner(num_structures);
  double lower_bound = 0.0;
  for (size_t b = 0; b < num_structures; ++b) {
    radius::Grid& g = grids[b];
    double scale = max_abs_pos + r;
    for (int k = 0; k < 3; ++k) {
      if (g.periodic[k]) scale += radius::norm3(g.basis + 3 * k) * radius::periodic_images(r, g.recip_norm[k]);
    }
    const double margin = 1e-6 * r + 64.0 * eps * scale;
    const bool finite = std::isfinite(r) && std::isfinite(margin);  // r: the cutoff in the dtype of pos
    search[b] = finite ? r + margin : std::numeric_limits<double>::infinity();
    inner[b] = finite ? r - margin : std::numeric_limits<double>::infinity();
    lower_bound += radius::min_edges(g, fmin + 3 * b, fmax + 3 * b, p[b + 1] - p[b], inner[b], loop);
  }
  if (lower_bound > static_cast<double>(max_edges)) raise_too_many_edges(lower_bound, true, max_edges);
  int64_t total = 0;
  for (size_t b = 0; b < num_structures; ++b) {
    radius::Grid& g = grids[b];
    const int64_t num_atoms = p[b + 1] - p[b];
    if (num_atoms > 0) {
      for (int k = 0; k < 3; ++k) {
        if (!g.periodic[k]) continue;
        const double images = radius::periodic_images(r, g.recip_norm[k]);
        TORCH_CHECK_VALUE(images <= radius::kMaxImages, "radius_graph: the cutoff r = ", r, " spans ",
                          count_text(images), " periodic images along cell vector ", k, " of structure ", b,
                          " (at most 2**30); use a smaller cutoff or a larger cell");
        // Wraps are stored as int32: bound |floor(f_k)| from the positions.
        const double* inv = g.inverse;
        const double bound = max_abs_pos * (std::fabs(inv[k]) + std::fabs(inv[3 + k]) + std::fabs(inv[6 + k]));
        TORCH_CHECK_VALUE(bound < 1e9, "radius_graph: atoms of structure ", b, " lie more than 1e9 cells "
                          "away from the origin; wrap the positions into the cell first");
      }
    }
    total += radius::make_grid(fmin + 3 * b, fmax + 3 * b, num_atoms > 0 ? search[b] : 0.0,
                               num_atoms > 0 ? inner[b] : 0.0, num_atoms, bins_per_cutoff, total, g);
  }
  return total;
}

at::Tensor radius_graph_grids_tensor(const std::vector<radius::Grid>& grids, const at::Device& device) {
  const int64_t bytes = static_cast<int64_t>(grids.size() * sizeof(radius::Grid));
  auto host = at::empty({bytes}, at::TensorOptions().dtype(at::kByte));
  if (bytes > 0) std::memcpy(host.data_ptr<uint8_t>(), grids.data(), bytes);
  return host.to(device);
}

// torch_pet, or torch_pet_emu in the host emulation of the CUDA glue (kernels/common.h)
TORCH_LIBRARY_FRAGMENT(TORCH_PET_LIBRARY, m) {
  m.def("radius_graph(Tensor pos, Tensor ptr, Tensor cell, Tensor pbc, float r, bool loop, "
        "int max_edges=2147483647) -> (Tensor, Tensor)");
}

}  // namespace torch_pet

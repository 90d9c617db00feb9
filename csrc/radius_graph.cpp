// torch_pet::radius_graph — schema, argument checks and the host set-up shared by the CPU
// and CUDA kernels (per-structure bases and bin grids).
//
//   radius_graph(pos [N, 3], ptr [B + 1], cell [B, 3, 3], pbc [B, 3], r, loop)
//       -> (edge_index [2, E], shifts [E, 3])
//
// Structures are atoms ptr[b] .. ptr[b + 1] - 1 and are never connected to each other.
// edge_index[0] is the neighbour j (source), edge_index[1] the centre i (target); the edge
// j -> i with integer shift S exists iff |pos[j] - pos[i] + S @ cell[b]| < r (exact rule
// and rounding in kernels/radius_graph.h), S = 0 on non-periodic axes. Edges are sorted by
// centre, then neighbour, then shift; the list is complete (no capacity, no truncation).
// The CPU and CUDA kernels live in cpu/radius_graph_cpu.cpp and cuda/radius_graph_cuda.cu.
#include <torch/library.h>
#include <ATen/ATen.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/radius_graph.h"
#include "radius_graph_host.h"

namespace torch_pet {

void check_radius_graph_args(const at::Tensor& pos, const at::Tensor& ptr, const at::Tensor& cell,
                             const at::Tensor& pbc, double r) {
  TORCH_CHECK(pos.dim() == 2 && pos.size(1) == 3, "radius_graph: pos must have shape [N, 3], got ",
              pos.sizes());
  TORCH_CHECK(pos.scalar_type() == at::kFloat || pos.scalar_type() == at::kDouble,
              "radius_graph: pos must be float32 or float64, got ", pos.scalar_type());
  TORCH_CHECK(ptr.dim() == 1 && ptr.size(0) >= 1 && ptr.scalar_type() == at::kLong,
              "radius_graph: ptr must be an int64 tensor of shape [B + 1], got ", ptr.sizes(), " ",
              ptr.scalar_type());
  const int64_t num_structures = ptr.size(0) - 1;
  TORCH_CHECK(cell.dim() == 3 && cell.size(0) == num_structures && cell.size(1) == 3 && cell.size(2) == 3,
              "radius_graph: cell must have shape [B, 3, 3] = [", num_structures, ", 3, 3], got ",
              cell.sizes());
  TORCH_CHECK(cell.scalar_type() == pos.scalar_type(), "radius_graph: cell must have the dtype of pos (",
              pos.scalar_type(), "), got ", cell.scalar_type());
  TORCH_CHECK(pbc.dim() == 2 && pbc.size(0) == num_structures && pbc.size(1) == 3 &&
                  pbc.scalar_type() == at::kBool,
              "radius_graph: pbc must be a bool tensor of shape [B, 3] = [", num_structures,
              ", 3], got ", pbc.sizes(), " ", pbc.scalar_type());
  TORCH_CHECK(pos.device() == ptr.device() && pos.device() == cell.device() && pos.device() == pbc.device(),
              "radius_graph: pos, ptr, cell and pbc must be on the same device, got ", pos.device(),
              ", ", ptr.device(), ", ", cell.device(), ", ", pbc.device());
  TORCH_CHECK(std::isfinite(r) && r > 0.0, "radius_graph: the cutoff r must be positive and finite, got ", r);
  const auto ptr_host = ptr.to(at::kCPU);
  const int64_t* p = ptr_host.data_ptr<int64_t>();
  TORCH_CHECK(p[0] == 0 && p[num_structures] == pos.size(0),
              "radius_graph: ptr must start at 0 and end at N = ", pos.size(0), ", got ", p[0], " and ",
              p[num_structures], "; build it from a sorted batch vector as [0] + cumsum(bincount(batch))");
  for (int64_t b = 0; b < num_structures; ++b) {
    TORCH_CHECK(p[b] <= p[b + 1], "radius_graph: ptr must be non-decreasing (atoms grouped by "
                "structure); it decreases at position ", b);
  }
  // Finiteness of pos is checked by the kernels (in their first pass over the atoms).
  TORCH_CHECK(at::isfinite(cell).all().item<bool>(), "radius_graph: cell contains NaN or Inf");
}

std::vector<radius::Grid> radius_graph_bases(const at::Tensor& cell, const at::Tensor& pbc) {
  const auto cell_host = cell.to(at::kCPU, at::kDouble).contiguous();
  const auto pbc_host = pbc.to(at::kCPU).contiguous();
  const double* c = cell_host.data_ptr<double>();
  const bool* p = pbc_host.data_ptr<bool>();
  const int64_t num_structures = cell_host.size(0);
  std::vector<radius::Grid> grids(num_structures);
  for (int64_t b = 0; b < num_structures; ++b) {
    std::memset(&grids[b], 0, sizeof(radius::Grid));
    TORCH_CHECK(radius::make_basis(c + 9 * b, p + 3 * b, grids[b]),
                "radius_graph: the cell of structure ", b, " is singular (its periodic cell vectors "
                "are linearly dependent or zero); give a proper cell or set pbc to False on the "
                "axes without periodicity");
  }
  return grids;
}

int64_t radius_graph_grids(std::vector<radius::Grid>& grids, const double* fmin, const double* fmax,
                           const at::Tensor& ptr, double r, double max_abs_pos, bool single_precision,
                           int64_t bins_per_cutoff) {
  const auto ptr_host = ptr.to(at::kCPU);
  const int64_t* p = ptr_host.data_ptr<int64_t>();
  // The fast double-precision test must keep every pair the exact test (in the dtype of pos)
  // accepts: enlarge r by a bound on the rounding of pos[j] - pos[i] + S @ cell.
  const double eps = single_precision ? static_cast<double>(std::numeric_limits<float>::epsilon())
                                      : std::numeric_limits<double>::epsilon();
  int64_t total = 0;
  for (size_t b = 0; b < grids.size(); ++b) {
    radius::Grid& g = grids[b];
    double scale = max_abs_pos + r;
    for (int k = 0; k < 3; ++k) {
      if (!g.periodic[k]) continue;
      const double images = std::ceil(r * g.recip_norm[k]) + 2.0;
      TORCH_CHECK(images < 1e6, "radius_graph: the cutoff r = ", r, " spans more than a million "
                  "periodic images of the cell of structure ", b, "; use a smaller cutoff or a larger cell");
      scale += radius::norm3(g.basis + 3 * k) * images;
    }
    const double margin = 1e-6 * r + 64.0 * eps * scale;
    // Wraps are stored as int32: bound |floor(f_k)| from the positions.
    for (int k = 0; k < 3; ++k) {
      const double* inv = g.inverse;
      const double bound = max_abs_pos * (std::fabs(inv[k]) + std::fabs(inv[3 + k]) + std::fabs(inv[6 + k]));
      TORCH_CHECK(!g.periodic[k] || bound < 1e9, "radius_graph: atoms of structure ", b, " lie more "
                  "than 1e9 cells away from the origin; wrap the positions into the cell first");
    }
    total += radius::make_grid(fmin + 3 * b, fmax + 3 * b, r + margin, r - margin, p[b + 1] - p[b],
                               bins_per_cutoff, total, g);
  }
  return total;
}

at::Tensor radius_graph_grids_tensor(const std::vector<radius::Grid>& grids, const at::Device& device) {
  const int64_t bytes = static_cast<int64_t>(grids.size() * sizeof(radius::Grid));
  auto host = at::empty({bytes}, at::TensorOptions().dtype(at::kByte));
  if (bytes > 0) std::memcpy(host.data_ptr<uint8_t>(), grids.data(), bytes);
  return host.to(device);
}

TORCH_LIBRARY_FRAGMENT(torch_pet, m) {
  m.def("radius_graph(Tensor pos, Tensor ptr, Tensor cell, Tensor pbc, float r, bool loop) "
        "-> (Tensor, Tensor)");
}

}  // namespace torch_pet

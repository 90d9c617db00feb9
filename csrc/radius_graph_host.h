// Host-side set-up of torch_pet::radius_graph shared by the CPU and CUDA kernels; defined in
// radius_graph.cpp.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "kernels/radius_graph.h"

namespace torch_pet {

// Shapes, dtypes, devices, r and max_edges of the op's arguments; raises ValueError /
// TypeError with a clear message.
void check_radius_graph_args(const at::Tensor& pos, const at::Tensor& ptr, const at::Tensor& cell,
                             const at::Tensor& pbc, double r, int64_t max_edges);
// Raises when float64 positions are too large for squared distances (|pos| > 1e100).
void check_radius_graph_positions(double max_abs_pos, bool single_precision);
// Raises the ValueError for an output of `count` (or at least `count`) edges > max_edges.
[[noreturn]] void raise_too_many_edges(double count, bool at_least, int64_t max_edges);
// Per-structure binning bases from cell [B, 3, 3] and pbc [B, 3]; raises on singular cells.
std::vector<radius::Grid> radius_graph_bases(const at::Tensor& cell, const at::Tensor& pbc);
// Completes the grids (bins, search radii) from the fractional ranges; returns the bin count.
// r is the cutoff as rounded to the dtype of pos (may be inf in float32). Raises when a
// lower bound on the edges exceeds max_edges, on too many periodic images, on atoms too
// far from the cell, on float64 positions beyond 1e100.
int64_t radius_graph_grids(std::vector<radius::Grid>& grids, const double* fmin, const double* fmax,
                           const at::Tensor& ptr, double r, double max_abs_pos, bool single_precision,
                           int64_t bins_per_cutoff, bool loop, int64_t max_edges);
// The grids as a byte tensor on `device` (for the CUDA kernels).
at::Tensor radius_graph_grids_tensor(const std::vector<radius::Grid>& grids, const at::Device& device);

}  // namespace torch_pet

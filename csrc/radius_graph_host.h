// Host-side set-up of torch_pet::radius_graph shared by the CPU and CUDA kernels; defined in
// radius_graph.cpp.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "kernels/radius_graph.h"

namespace torch_pet {

// Shapes, dtypes, devices and r of the op's arguments; raises with a clear message.
void check_radius_graph_args(const at::Tensor& pos, const at::Tensor& ptr, const at::Tensor& cell,
                             const at::Tensor& pbc, double r);
// Per-structure binning bases from cell [B, 3, 3] and pbc [B, 3]; raises on singular cells.
std::vector<radius::Grid> radius_graph_bases(const at::Tensor& cell, const at::Tensor& pbc);
// Completes the grids (bins, search radii) from the fractional ranges; returns the bin count.
int64_t radius_graph_grids(std::vector<radius::Grid>& grids, const double* fmin, const double* fmax,
                           const at::Tensor& ptr, double r, double max_abs_pos, bool single_precision,
                           int64_t bins_per_cutoff);
// The grids as a byte tensor on `device` (for the CUDA kernels).
at::Tensor radius_graph_grids_tensor(const std::vector<radius::Grid>& grids, const at::Device& device);

}  // namespace torch_pet

// torch_pet::ecse_pairs — schema and argument checks.
//
// Enumerates, per centre, the pairs of its edges (a, b), a != b, that can define an ECSE
// frame: |r_a| < radius[c], |r_b| < radius[c] and s = |r̂_a x r̂_b|^2 > s_min. Edges are
// grouped by centre through the CSR pointer centre_ptr [N+1] (edges of centre c are
// centre_ptr[c] .. centre_ptr[c+1]-1). `ordered` gives both (a, b) and (b, a), otherwise
// a < b. Output: pairs [P, 2] (int64 edge ids), sorted by (centre, a, b); no cap.
// The CPU and CUDA kernels live in cpu/ecse_pairs_cpu.cpp and cuda/ecse_pairs_cuda.cu.
#include <torch/library.h>
#include <ATen/ATen.h>

#include "kernels/common.h"  // TORCH_PET_LIBRARY

namespace torch_pet {

void check_ecse_pairs_args(const at::Tensor& edge_vectors, const at::Tensor& centre_ptr,
                           const at::Tensor& radius, double s_min) {
  TORCH_CHECK(edge_vectors.dim() == 2 && edge_vectors.size(1) == 3,
              "ecse_pairs: edge_vectors must have shape [E, 3], got ", edge_vectors.sizes());
  TORCH_CHECK(edge_vectors.scalar_type() == at::kFloat || edge_vectors.scalar_type() == at::kDouble,
              "ecse_pairs: edge_vectors must be float32 or float64, got ",
              edge_vectors.scalar_type());
  TORCH_CHECK(centre_ptr.dim() == 1 && centre_ptr.size(0) >= 1,
              "ecse_pairs: centre_ptr must have shape [N+1], got ", centre_ptr.sizes());
  TORCH_CHECK(centre_ptr.scalar_type() == at::kLong,
              "ecse_pairs: centre_ptr must be int64 (torch.long), got ", centre_ptr.scalar_type());
  TORCH_CHECK(radius.dim() == 1 && radius.size(0) == centre_ptr.size(0) - 1,
              "ecse_pairs: radius must have shape [N] with N = len(centre_ptr) - 1 = ",
              centre_ptr.size(0) - 1, ", got ", radius.sizes());
  TORCH_CHECK(radius.scalar_type() == edge_vectors.scalar_type(),
              "ecse_pairs: radius must have the dtype of edge_vectors (", edge_vectors.scalar_type(),
              "), got ", radius.scalar_type());
  TORCH_CHECK(edge_vectors.device() == centre_ptr.device() && edge_vectors.device() == radius.device(),
              "ecse_pairs: edge_vectors, centre_ptr and radius must be on the same device");
  TORCH_CHECK(std::isfinite(s_min), "ecse_pairs: s_min must be finite, got ", s_min);
  // The kernels index edges through centre_ptr, so it must be a valid CSR pointer.
  const int64_t num_edges = edge_vectors.size(0);
  const auto ptr_cpu = centre_ptr.to(at::kCPU);
  const int64_t* p = ptr_cpu.data_ptr<int64_t>();
  const int64_t n = ptr_cpu.size(0);
  TORCH_CHECK(p[0] == 0 && p[n - 1] == num_edges,
              "ecse_pairs: centre_ptr must start at 0 and end at E = ", num_edges, ", got ", p[0],
              " and ", p[n - 1], "; build it from the sorted centre index as "
              "[0] + cumsum(bincount(centre, minlength=N))");
  for (int64_t c = 0; c + 1 < n; ++c) {
    TORCH_CHECK(p[c] <= p[c + 1], "ecse_pairs: centre_ptr must be non-decreasing (edges grouped "
                "by centre); it decreases at position ", c);
  }
}

TORCH_LIBRARY_FRAGMENT(TORCH_PET_LIBRARY, m) {
  m.def("ecse_pairs(Tensor edge_vectors, Tensor centre_ptr, Tensor radius, float s_min, "
        "bool ordered) -> Tensor");
}

}  // namespace torch_pet

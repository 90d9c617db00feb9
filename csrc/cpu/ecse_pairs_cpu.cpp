// torch_pet::ecse_pairs, CPU kernel: count pass, prefix sum, fill pass, each parallel over
// centres. Per-pair logic in kernels/ecse_pairs.h (shared with the CUDA kernel).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "kernels/ecse_pairs.h"

namespace torch_pet {

void check_ecse_pairs_args(const at::Tensor& edge_vectors, const at::Tensor& centre_ptr,
                           const at::Tensor& radius, double s_min);

namespace {

at::Tensor ecse_pairs_cpu(const at::Tensor& edge_vectors, const at::Tensor& centre_ptr,
                          const at::Tensor& radius, double s_min, bool ordered) {
  check_ecse_pairs_args(edge_vectors, centre_ptr, radius, s_min);
  const auto vectors = edge_vectors.contiguous();
  const auto ptr = centre_ptr.contiguous();
  const auto radii = radius.contiguous();
  const int64_t num_centres = ptr.size(0) - 1;
  const int64_t num_edges = vectors.size(0);
  // counts[e]: number of partners of edge e; offsets[e] = sum of counts before e.
  auto offsets = at::zeros({num_edges + 1}, ptr.options());
  int64_t* off = offsets.data_ptr<int64_t>();
  const int64_t* p = ptr.data_ptr<int64_t>();
  // Work per centre grows as K^2: small grains keep the threads balanced.
  constexpr int64_t kGrain = 8;

  at::Tensor pairs;
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "ecse_pairs_cpu", [&] {
    const scalar_t* v = vectors.data_ptr<scalar_t>();
    const scalar_t* rad = radii.data_ptr<scalar_t>();
    const auto s_lim = static_cast<scalar_t>(s_min);
    at::parallel_for(0, num_centres, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        for (int64_t a = p[c]; a < p[c + 1]; ++a) {
          off[a + 1] = ecse::count_partners(v, a, p[c], p[c + 1], rad[c], s_lim, ordered);
        }
      }
    });
    for (int64_t e = 0; e < num_edges; ++e) off[e + 1] += off[e];  // inclusive scan
    const int64_t num_pairs = off[num_edges];
    pairs = at::empty({num_pairs, 2}, ptr.options());
    int64_t* out = pairs.data_ptr<int64_t>();
    at::parallel_for(0, num_centres, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        for (int64_t a = p[c]; a < p[c + 1]; ++a) {
          ecse::fill_partners(v, a, p[c], p[c + 1], rad[c], s_lim, ordered, off[a], out);
        }
      }
    });
  });
  return pairs;
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_pet, CPU, m) {
  m.impl("ecse_pairs", &ecse_pairs_cpu);
}

}  // namespace torch_pet

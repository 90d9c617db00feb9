// CUDA kernels of torch_pet::radius_graph: one thread per atom for the binning, one thread
// per centre (in bin order) for the neighbour search: count pass, then fill pass writing
// each centre's edges from its offset and sorting them. ATen-free so that a bare nvcc can compile-check
// them; the launch glue is in cuda/radius_graph_cuda.cu.
#pragma once
#include "kernels/radius_graph.h"

namespace torch_pet {
namespace radius {

// Structure, wrapped fractional coordinates, wraps and wrapped positions of every atom.
template <typename scalar_t>
__global__ void wrap_atoms_kernel(const scalar_t* __restrict__ pos, const int64_t* __restrict__ ptr,
                                  int64_t num_structures, const Grid* __restrict__ grids,
                                  int64_t num_atoms, int64_t* __restrict__ batch,
                                  double* __restrict__ frac, int64_t* __restrict__ wrap,
                                  double* __restrict__ wrapped) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= num_atoms) return;
  const int64_t b = structure_of(ptr, num_structures, i);
  batch[i] = b;
  wrap_atom(pos + 3 * i, grids[b], frac + 3 * i, wrap + 3 * i, wrapped + 3 * i);
}

// Global bin index of every atom.
__global__ void bin_atoms_kernel(const double* __restrict__ frac, const int64_t* __restrict__ batch,
                                 const Grid* __restrict__ grids, int64_t num_atoms, int64_t* __restrict__ bin) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= num_atoms) return;
  int64_t bin3[3];
  bin[i] = atom_bin(frac + 3 * i, grids[batch[i]], bin3);
}

// The atoms in bin order (order[k]: atom of sorted entry k).
__global__ void gather_sorted_kernel(const int64_t* __restrict__ order, const double* __restrict__ wrapped,
                                     const int64_t* __restrict__ wrap, const int64_t* __restrict__ batch,
                                     int64_t num_atoms, SortedAtom* __restrict__ sorted) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= num_atoms) return;
  const int64_t i = order[k];
  SortedAtom a;
  for (int c = 0; c < 3; ++c) {
    a.wrapped[c] = wrapped[3 * i + c];
    a.wrap[c] = static_cast<int32_t>(wrap[3 * i + c]);
  }
  a.structure = static_cast<int32_t>(batch[i]);
  a.atom = i;
  sorted[k] = a;
}

struct CountEdges {
  int64_t count;
  TP_HOST_DEVICE void operator()(int64_t, int64_t, int64_t, int64_t) { ++count; }
};

struct WriteEdges {
  int64_t* neighbour;
  int64_t* shifts;
  int64_t next;
  TP_HOST_DEVICE void operator()(int64_t j, int64_t s0, int64_t s1, int64_t s2) {
    neighbour[next] = j;
    shifts[3 * next] = s0;
    shifts[3 * next + 1] = s1;
    shifts[3 * next + 2] = s2;
    ++next;
  }
};

// One thread per centre, in bin order (threads of a warp read the same bins).
template <typename scalar_t>
__global__ void count_edges_kernel(SearchData<scalar_t> data, int64_t num_atoms, int64_t* __restrict__ counts) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= num_atoms) return;
  CountEdges emit{0};
  visit_neighbours<false>(k, data, emit);
  counts[data.sorted[k].atom] = emit.count;
}

// Writes the edges of each centre i from offsets[i] (exclusive prefix sum of the counts in
// centre order) and sorts them.
template <typename scalar_t>
__global__ void fill_edges_kernel(SearchData<scalar_t> data, int64_t num_atoms, const int64_t* __restrict__ offsets,
                                  int64_t* __restrict__ neighbour, int64_t* __restrict__ centre,
                                  int64_t* __restrict__ shifts) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= num_atoms) return;
  const int64_t i = data.sorted[k].atom;
  const int64_t begin = offsets[i];
  WriteEdges emit{neighbour, shifts, begin};
  visit_neighbours<false>(k, data, emit);
  for (int64_t e = begin; e < emit.next; ++e) centre[e] = i;
  sort_edges(neighbour, shifts, begin, emit.next);
}

#ifdef TORCH_PET_INSTANTIATE_KERNELS  // explicit instantiations for scripts/check_cuda_kernels.sh
template __global__ void wrap_atoms_kernel<float>(const float*, const int64_t*, int64_t, const Grid*, int64_t,
                                                  int64_t*, double*, int64_t*, double*);
template __global__ void wrap_atoms_kernel<double>(const double*, const int64_t*, int64_t, const Grid*, int64_t,
                                                   int64_t*, double*, int64_t*, double*);
template __global__ void count_edges_kernel<float>(SearchData<float>, int64_t, int64_t*);
template __global__ void count_edges_kernel<double>(SearchData<double>, int64_t, int64_t*);
template __global__ void fill_edges_kernel<float>(SearchData<float>, int64_t, const int64_t*,
                                                  int64_t*, int64_t*, int64_t*);
template __global__ void fill_edges_kernel<double>(SearchData<double>, int64_t, const int64_t*,
                                                   int64_t*, int64_t*, int64_t*);
#endif

}  // namespace radius
}  // namespace torch_pet

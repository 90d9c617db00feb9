#!/usr/bin/env bash
# Compile-check every csrc/kernels/*_cuda_kernels.cuh with a bare nvcc (no torch headers),
# so the CUDA kernels cannot rot on a CPU-only machine. Each header is included by a tiny
# .cu compiled with -DTORCH_PET_INSTANTIATE_KERNELS (headers may instantiate their
# templates under that macro). Exits 0 with a message when nvcc is absent.
set -euo pipefail
cd "$(dirname "$0")/.."

NVCC=${NVCC:-$(command -v nvcc || true)}
if [ -z "$NVCC" ]; then
  echo "check_cuda_kernels: nvcc not found; CUDA kernels not compile-checked"
  exit 0
fi
ARCH=${CUDA_ARCH:-sm_80}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
for header in csrc/kernels/*_cuda_kernels.cuh; do
  [ -e "$header" ] || continue
  name=$(basename "$header" .cuh)
  printf '#include "kernels/%s.cuh"\n' "$name" > "$tmp/$name.cu"
  if "$NVCC" -std=c++17 -arch="$ARCH" -O2 -Werror all-warnings -DTORCH_PET_INSTANTIATE_KERNELS \
      -I csrc -c "$tmp/$name.cu" -o "$tmp/$name.o"; then
    echo "check_cuda_kernels: compiled $header ($ARCH)"
  else
    echo "check_cuda_kernels: FAILED to compile $header" >&2
    status=1
  fi
done
exit $status

#!/usr/bin/env bash
# Compile-check the CUDA code on a machine without a GPU (CI runs it from scripts/test.sh):
#
# 1. every csrc/kernels/*_cuda_kernels.cuh with a bare nvcc (no torch headers): each header
#    is included by a tiny .cu compiled with -DTORCH_PET_INSTANTIATE_KERNELS (headers may
#    instantiate their templates under that macro), warnings are errors;
# 2. every csrc/cuda/*.cu (the launch glue: guards, streams, launches, ATen calls) with nvcc
#    against the headers of the CUDA build of the installed torch version, with the flags
#    setup.py uses. The CUDA wheel (~530 MB) is downloaded once with pip (pip's cache
#    keeps it) and only its torch/include is unpacked, into
#    $TORCH_PET_CACHE/cuda-torch-<version>-include (default ~/.cache/torch_pet), which later
#    runs reuse. TORCH_PET_CUDA_WHEEL=/path/to/torch-*.whl uses a wheel already on disk.
#    Two files compile at a time (~30-50 s each).
#
# Skips with a message (exit 0) where nvcc is absent or the wheel cannot be fetched
# (offline); fails (exit 1) when any file does not compile. Set CUDA_ARCH (default sm_80).
set -euo pipefail
cd "$(dirname "$0")/.."

NVCC=${NVCC:-$(command -v nvcc || true)}
if [ -z "$NVCC" ]; then
  echo "check_cuda_kernels: SKIPPED: nvcc not found; CUDA kernels and glue not compile-checked"
  exit 0
fi
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
ARCH=${CUDA_ARCH:-sm_80}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0

# 1. Kernel headers, bare nvcc.
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

# 2. The glue, against the CUDA torch headers.
version=$("$PYTHON" -c 'import torch; print(torch.__version__.split("+")[0])')
cache=${TORCH_PET_CACHE:-$HOME/.cache/torch_pet}
include_root="$cache/cuda-torch-$version-include"
include="$include_root/torch/include"
if [ ! -f "$include/c10/cuda/CUDAStream.h" ]; then
  wheel=${TORCH_PET_CUDA_WHEEL:-}
  if [ -z "$wheel" ]; then
    echo "check_cuda_kernels: downloading the CUDA build of torch==$version for its headers (once)"
    # Outside any local wheel folder (which may hold the +cpu build of the same version).
    if env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null timeout 600 \
        "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
        --python-version 3.11 "torch==$version" -d "$tmp/wheel" >"$tmp/pip.log" 2>&1; then
      wheel=$(ls "$tmp"/wheel/torch-*.whl)
    else
      tail -n 3 "$tmp/pip.log" >&2 || true
      echo "check_cuda_kernels: SKIPPED the glue (csrc/cuda/*.cu): could not download torch==$version" \
           "for manylinux_2_28_x86_64 (offline?); set TORCH_PET_CUDA_WHEEL to a downloaded wheel"
      exit $status
    fi
  fi
  mkdir -p "$cache"
  rm -rf "$include_root.partial"
  "$PYTHON" - "$wheel" "$include_root.partial" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:  # only torch/include (62 MB of the 527 MB)
    wheel.extractall(sys.argv[2], [n for n in wheel.namelist() if n.startswith("torch/include/")])
EOF
  if [ ! -f "$include_root.partial/torch/include/c10/cuda/CUDAStream.h" ]; then
    echo "check_cuda_kernels: FAILED: $wheel has no c10/cuda headers (not a CUDA build of torch)" >&2
    rm -rf "$include_root.partial"
    exit 1
  fi
  rm -rf "$include_root"
  mv "$include_root.partial" "$include_root"
fi

python_include=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
# setup.py's nvcc flags plus those torch.utils.cpp_extension adds; the two suppressed
# warnings are C++20 bit-field initializers inside the torch headers.
flags=(-std=c++17 -O3 --expt-relaxed-constexpr -arch="$ARCH" -Xcompiler -fPIC -DWITH_CUDA
       -D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ -D__CUDA_NO_BFLOAT16_CONVERSIONS__
       -D__CUDA_NO_HALF2_OPERATORS__ -diag-suppress 3306 -Xcompiler -Wno-c++20-extensions
       -I csrc -I "$include" -I "$include/torch/csrc/api/include" -I "$python_include")
compile_glue() {
  local source=$1 name start
  name=$(basename "$source" .cu)
  start=$SECONDS
  if "$NVCC" "${flags[@]}" -c "$source" -o "$tmp/glue_$name.o" >"$tmp/glue_$name.log" 2>&1; then
    echo "check_cuda_kernels: compiled $source against CUDA torch $version headers ($ARCH, $((SECONDS - start)) s)"
  else
    cat "$tmp/glue_$name.log" >&2
    echo "check_cuda_kernels: FAILED to compile $source against CUDA torch $version headers" >&2
    return 1
  fi
}
pids=()
sources=()
for source in csrc/cuda/*.cu; do
  [ -e "$source" ] || continue
  if [ ${#pids[@]} -ge 2 ]; then  # two at a time
    wait "${pids[0]}" || status=1
    pids=("${pids[@]:1}")
  fi
  compile_glue "$source" &
  pids+=($!)
  sources+=("$source")
done
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
[ ${#sources[@]} -gt 0 ] || echo "check_cuda_kernels: no csrc/cuda/*.cu found"
exit $status

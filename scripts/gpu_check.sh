#!/usr/bin/env bash
# For a machine with an NVIDIA GPU: build torch_pet's CUDA kernels, run the tests that use
# the GPU, and print the GPU benchmark tables (radius graph, PET, ECSE) for
# docs/benchmarks.md — so that a session lent a GPU spends its minutes measuring.
#
#   bash scripts/gpu_check.sh            # build, CUDA tests, benchmarks
#   QUICK=1 bash scripts/gpu_check.sh    # smaller benchmark systems
#
# Needs a CUDA build of torch in .venv (scripts/setup.sh with TORCH_SPEC pointing at one,
# e.g. TORCH_SPEC=torch from a CUDA index) and nvcc (CUDA_HOME). The extension is rebuilt
# with FORCE_CUDA=1 against the installed torch (TORCH_SPEC=torch keeps that torch).
# Exits 1 with a message when there is no GPU or torch lacks CUDA; the output is also
# written to $GPU_CHECK_LOG (default: a temporary file, named at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
log=${GPU_CHECK_LOG:-$(mktemp -d)/gpu_check.log}
exec > >(tee "$log") 2>&1

PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU visible (nvidia-smi); nothing to check here" >&2
  exit 1
fi
nvidia-smi -L
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.version.cuda and torch.cuda.is_available() else 1)'; then
  echo "gpu_check: $PY has torch $("$PY" -c 'import torch; print(torch.__version__)') without a" \
       "usable CUDA; install a CUDA build (pip install torch==2.13.0 from the CUDA index) and rerun" >&2
  exit 1
fi

echo "== build (FORCE_CUDA=1, keeping the installed CUDA torch)"
start=$SECONDS
TORCH_SPEC=torch FORCE_CUDA=1 "$PY" -m pip install -q --no-build-isolation --no-deps -e .
echo "build: $((SECONDS - start)) s"
"$PY" -c 'import torch, torch_pet._extension as e
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), {torch.cuda.get_device_name(0)}; "
      f"extension built={e.WITH_EXTENSION} cuda={e.WITH_CUDA_EXT}")
assert e.WITH_CUDA_EXT, "torch_pet._C was built without its CUDA kernels"'

echo "== CUDA tests (every test or parameter named cuda, and the cuda marker)"
"$PY" -m pytest -q tests -k cuda
rc=0
"$PY" -m pytest -q tests -m cuda || rc=$?
[ "$rc" = 0 ] || [ "$rc" = 5 ] || exit "$rc"  # 5: no test carries the marker

echo "== benchmarks on cuda"
if [ "${QUICK:-0}" = 1 ]; then
  "$PY" benchmarks/radius_graph.py --device cuda --repeats 5 --sizes 1000 10000 --molecules 200
  "$PY" benchmarks/pet.py --device cuda --repeats 3 --quick
  "$PY" benchmarks/ecse.py --device cuda --repeats 3
else
  "$PY" benchmarks/radius_graph.py --device cuda --repeats 5
  "$PY" benchmarks/pet.py --device cuda --repeats 3
  "$PY" benchmarks/ecse.py --device cuda --repeats 5
fi
echo "gpu_check: done (tables above; log in $log)"

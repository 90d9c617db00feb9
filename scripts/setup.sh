#!/usr/bin/env bash
# Idempotent set-up used by scripts/main.sh and scripts/test.sh: a virtual environment
# (.venv) with the pinned CPU torch, the dependencies, and torch_pet with its compiled
# extension (built against the installed torch, hence --no-build-isolation).
# Override the torch requirement with TORCH_SPEC (e.g. on a CUDA machine).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
$PIP install -q --disable-pip-version-check "$TORCH_SPEC"
$PIP install -q --disable-pip-version-check -r requirements.txt
$PIP install -q --disable-pip-version-check --no-build-isolation --no-deps -e .
.venv/bin/python -c "import torch_pet._extension as e; print(f'torch_pet extension: built={e.WITH_EXTENSION} cuda={e.WITH_CUDA_EXT}')"

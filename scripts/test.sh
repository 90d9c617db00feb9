#!/usr/bin/env bash
# Set up (idempotent), compile-check the CUDA kernels with nvcc where it exists, run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -f scripts/check_cuda_kernels.sh ]; then bash scripts/check_cuda_kernels.sh; fi
.venv/bin/python -m pytest -q "$@"

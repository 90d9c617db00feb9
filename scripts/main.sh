#!/usr/bin/env bash
# Set up (idempotent), then the main job: train PET on the bundled distorted-methane set,
# symmetrize it with ECSE, print the y0-vs-yS results table and write the plots.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/torch-pet main --out runs/main "$@"

#!/usr/bin/env bash
# Regenerates docs/pointclouds.md's numbers and figures: the DGCNN shape classifier with
# ECSE (examples/pointcloud_classification.py), then ECSE vs rotational averaging on CH4 and
# on that classifier (benchmarks/rotational_averaging.py). One thread, CPU; ~30 min on a
# shared 2-core machine. Outputs: runs/pointclouds/, runs/rotational_averaging/, docs/figures/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=1
nice -n 10 "$PY" examples/pointcloud_classification.py --out runs/pointclouds --figures docs/figures "$@"
nice -n 10 "$PY" benchmarks/rotational_averaging.py --out runs/rotational_averaging \
    --classifier runs/pointclouds/models.pt --figures docs/figures

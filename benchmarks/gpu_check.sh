#!/usr/bin/env bash
# The GPU check, one command on a machine with one CUDA device (about 8 minutes):
#   benchmarks/gpu_check.sh [--out DIR] [--train-seconds 240] [--skip PHASES]   # results: benchmarks/results/gpu/
#   benchmarks/gpu_check.sh --dry-run --out /tmp/gpu_check                       # a few steps of everything, CPU
# PYTHON picks the interpreter (default: python). What it runs and writes: benchmarks/gpu_check.py, and the
# "GPU check" section of docs/pages/speed.md.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" benchmarks/gpu_check.py "$@"

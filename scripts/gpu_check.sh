#!/usr/bin/env bash
# GPU readiness check (issue 12): every CUDA path of charrnn once, in at most 8 minutes, as one Markdown table.
#
#   bash scripts/gpu_check.sh                 # on a machine with a CUDA GPU (about 6 minutes)
#   bash scripts/gpu_check.sh --cpu-dry-run   # the same steps on the CPU with tiny budgets (about 2 minutes)
#
# The table goes to stdout and to $OUT/gpu_check.md ($OUT set) or runs/gpu_check/gpu_check.md, with gpu_check.log.
# Needs python3 with torch, numpy, safetensors, tqdm and pytest; charrnn need not be installed (PYTHONPATH below).
# PYTHON=... picks another interpreter. The steps and their limits are in scripts/gpu_check.py; the outer
# `timeout` is only a safety net behind the script's own 450 s budget.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec timeout -k 10 470 "${PYTHON:-python3}" scripts/gpu_check.py all "$@"

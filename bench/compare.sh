#!/usr/bin/env bash
# Trains the same models with pare and with PyTorch (CPU, 2 threads, same batch size, SGD lr 0.01
# momentum 0.9) in one run and prints seconds per epoch and the ratio pare / PyTorch.
# torch is installed here with pip, into bench/.venv, only for benchmarking.
#   bench/compare.sh [EPOCHS] [MODEL...]     default: 2 epochs, lenet300 lenet5
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS="${1:-2}"; shift || true
MODELS=("${@:-lenet300}")
[ $# -gt 0 ] || MODELS=(lenet300 lenet5)

scripts/setup.sh >/dev/null
if [ ! -x bench/.venv/bin/python ] || ! bench/.venv/bin/python -c "import torch" 2>/dev/null; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install -q torch numpy
fi
cargo build --release --quiet

printf "%-10s %14s %14s %8s\n" model "pare s/epoch" "torch s/epoch" ratio
for m in "${MODELS[@]}"; do
  p=$(target/release/pare bench train --model "$m" --epochs "$EPOCHS" --json | tail -n 1)
  t=$(bench/.venv/bin/python bench/torch_train.py --model "$m" --epochs "$EPOCHS" --threads 2)
  python3 - "$p" "$t" <<'PY'
import json, sys
p, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
# The first epoch includes warm-up on both sides; report the mean over all epochs.
ps, ts = p["mean_seconds_per_epoch"], t["mean_seconds_per_epoch"]
print(f'{p["model"]:<10} {ps:14.2f} {ts:14.2f} {ps / ts:8.2f}')
PY
done

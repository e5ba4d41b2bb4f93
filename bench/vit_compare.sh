#!/usr/bin/env bash
# The zoo ViT trained by pare and by PyTorch under one protocol (AdamW lr 1e-3, weight decay
# 0.05, per-step cosine, batch 128, no augmentation, 2 threads), one after the other in one run:
# test accuracy and seconds per epoch of each. torch is installed with pip into bench/.venv
# only for benchmarking.
#   bench/vit_compare.sh [EPOCHS] [OUT]      default: 10 epochs, runs/vit
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS="${1:-10}"
OUT="${2:-runs/vit}"

scripts/setup.sh >/dev/null
if [ ! -x bench/.venv/bin/python ] || ! bench/.venv/bin/python -c "import torch" 2>/dev/null; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install -q torch numpy
fi
cargo build --release --quiet

echo "== pare"
start=$(date +%s)
target/release/pare train --model vit --epochs "$EPOCHS" --optimizer adamw --lr 0.001 \
  --weight-decay 0.05 --schedule cosine --out "$OUT" 2>&1 | grep -E '^(epoch +[0-9]+/[0-9]+ +lr|test accuracy)'
echo "pare: $(( ($(date +%s) - start) / EPOCHS )) s per epoch (wall, evaluation included)"
echo "== pytorch"
bench/.venv/bin/python bench/vit_train.py "$EPOCHS"

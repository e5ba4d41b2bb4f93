#!/usr/bin/env bash
# The main job on real data: set up, build, train LeNet-300-100 on Fashion-MNIST, evaluate the
# saved model directory, prune it to Deep Compression's per-layer densities (8% / 9% / 26% of
# the weights kept) with a gradual (AGP) schedule and fine-tuning, and show both layer by layer.
# Outputs go to runs/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release --quiet
PARE=target/release/pare
OUT=runs/demo

$PARE zoo
$PARE train --model lenet300 --epochs 5 --val 5000 --out "$OUT/lenet300"
$PARE eval "$OUT/lenet300"
$PARE info "$OUT/lenet300"
$PARE prune "$OUT/lenet300" --out "$OUT/lenet300-sparse" --method unstructured \
  --layer fc1=0.92,fc2=0.91,fc3=0.74 --schedule agp --prune-epochs 2 --finetune-epochs 4 --cosine
$PARE info "$OUT/lenet300-sparse"

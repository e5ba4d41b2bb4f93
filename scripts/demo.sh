#!/usr/bin/env bash
# The main job on real data: Deep Compression of LeNet-300-100 on Fashion-MNIST, as the
# recipe recipes/lenet300.toml says: train the dense model, prune it to 8% / 9% / 26% of its
# weights with gradual pruning and fine-tuning, share the remaining weights (k-means, 16-32
# values per layer) and fine-tune the shared values, Huffman-code values and sparse indices,
# write runs/demo/dc-lenet300/model.pare, then evaluate that file by itself and show it layer by
# layer. About a minute on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release --quiet
PARE=target/release/pare
OUT=runs/demo/dc-lenet300

$PARE compress --recipe recipes/lenet300.toml --out "$OUT"
$PARE eval "$OUT/model.pare"
$PARE info "$OUT/model.pare"
ls -l "$OUT/model.pare" "$OUT/stages/1-train/weights.safetensors"

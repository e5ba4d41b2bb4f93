#!/usr/bin/env bash
# The main job on real data: set up, build, train LeNet-300-100 on Fashion-MNIST, evaluate the
# saved model directory, and show it layer by layer. Outputs go to runs/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release --quiet
PARE=target/release/pare
OUT=runs/demo/lenet300

$PARE zoo
$PARE train --model lenet300 --epochs 5 --val 5000 --out "$OUT"
$PARE eval "$OUT"
$PARE info "$OUT"

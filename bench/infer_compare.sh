#!/usr/bin/env bash
# pare's native engine against onnxruntime on the same architectures. Each zoo model is trained
# for one step on 64 images (its weights do not change the time), exported with `pare export`
# (onnxruntime then runs pare's graph node for node, BatchNorm included), and timed at batch 1
# and 64: `pare bench latency` (native engine) and onnxruntime (`bench/onnx_check.py time`, 2
# intra-op threads), the two taking turns RUNS times. Prints, per model and batch, each run's
# times and pare / onnxruntime (above 1: pare is slower), then the range of that ratio.
# PyTorch eager is not timed here: its wheel is not installed in bench/.venv by default.
#   bench/infer_compare.sh [OUT_DIR] [RUNS] [MODEL ...]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-$(mktemp -d)} RUNS=${2:-3}
shift $(( $# > 2 ? 2 : $# ))
MODELS=("$@")
[ ${#MODELS[@]} -gt 0 ] || MODELS=(lenet300 lenet5 vgg resnet20 mobilenet)
PARE="${CARGO_TARGET_DIR:-target}/release/pare"
PY=bench/.venv/bin/python
[ -x "$PY" ] || { python3 -m venv bench/.venv && bench/.venv/bin/pip install --quiet onnx onnxruntime numpy; }
cargo build --release --quiet
mkdir -p "$OUT"
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
for m in "${MODELS[@]}"; do
  d="$OUT/${m//:/-}"
  [ -d "$d" ] || $PARE train --model "$m" --epochs 1 --val 59936 --out "$d" > /dev/null
  $PARE export "$d" --onnx "$d.onnx" > /dev/null
  for r in $(seq "$RUNS"); do
    pare_json=$($PARE bench latency "$d" --reps 30 --json | tr -d '\n')
    for b in 1 64; do
      ort_json=$($PY bench/onnx_check.py time "$d.onnx" --batch $b --reps $((b == 1 ? 200 : 30)) | tr -d '\n')
      echo "$m $b $r $pare_json $ort_json" >> "$rows"
    done
  done
done
$PY - "$rows" <<'PY'
import json, sys
from collections import defaultdict
ratios = defaultdict(list)
print("| model | batch | run | pare native ms | onnxruntime ms | pare / onnxruntime |")
print("|---|---|---|---|---|---|")
for line in open(sys.argv[1]):
    model, batch, run, rest = line.split(" ", 3)
    dec = json.JSONDecoder()
    pare, end = dec.raw_decode(rest)
    ort, _ = dec.raw_decode(rest[end:].strip())
    p = pare[0]["latency_ms_b%s" % batch]
    o = ort["results"][0]["median_ms"]
    ratios[(model, batch)].append(p / o)
    print("| %s | %s | %s | %.3f | %.3f | %.2f |" % (model, batch, run, p, o, p / o))
print()
for (model, batch), rs in ratios.items():
    print("%-10s batch %-3s pare / onnxruntime %.2f-%.2f" % (model, batch, min(rs), max(rs)))
PY

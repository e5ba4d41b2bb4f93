#!/usr/bin/env bash
# Int8 ONNX export in onnxruntime against pare's own int8 engine and the f32 export:
#   1. pare quantize MODEL_DIR: 8-bit per-channel weights, 8-bit activations calibrated with
#      --act-scope SCOPE (graph: the residual Adds' inputs too, so the whole ResNet stays int8);
#   2. pare export of the float model (f32) and of the quantized one in QDQ form (--qdq) and as
#      integer ops (--integer-ops: ConvInteger / MatMulInteger);
#   3. pare eval --native on the quantized model with its predictions, onnxruntime on both int8
#      files over the Fashion-MNIST test set (accuracy, share of images where each agrees with
#      pare), and the three files' latency in onnxruntime (interleaved, RUNS runs) at batch 64
#      and 1.
#   bench/onnx_qdq.sh MODEL_DIR [OUT_DIR] [SCOPE] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=$1 OUT=${2:-$(mktemp -d)} SCOPE=${3:-graph} RUNS=${4:-3}
PARE="${CARGO_TARGET_DIR:-target}/release/pare"
PY=bench/.venv/bin/python
cargo build --release --quiet
mkdir -p "$OUT"
$PARE quantize "$MODEL" --bits 8 --act-bits 8 --act-scope "$SCOPE" --out "$OUT/q" | tail -1
$PARE export "$MODEL" --onnx "$OUT/f32.onnx" | tail -1
$PARE export "$OUT/q/model" --onnx "$OUT/qdq.onnx" --qdq | tail -2
$PARE export "$OUT/q/model" --onnx "$OUT/int.onnx" --integer-ops | tail -1
$PARE eval "$OUT/q/model.pare" --native --predictions "$OUT/pare.pred"
$PY bench/onnx_check.py eval "$OUT/qdq.onnx" "$OUT/int.onnx" --predictions "$OUT/pare.pred" \
  | $PY -c 'import json,sys
for r in json.load(sys.stdin)["results"]: print("onnxruntime %s: accuracy %.4f, agrees with pare int8 on %.2f%%" % (r["file"].rsplit("/", 1)[-1], r["accuracy"], 100 * r["agree_with_pare"]))'
for b in 64 1; do
  for r in $(seq "$RUNS"); do
    $PY bench/onnx_check.py time "$OUT/f32.onnx" "$OUT/qdq.onnx" "$OUT/int.onnx" --batch $b --reps $((b == 1 ? 200 : 30)) \
      | $PY -c 'import json,sys; r=json.load(sys.stdin)["results"]; print("onnxruntime batch %d: f32 %.3f ms, QDQ %.3f ms (x%.2f), integer ops %.3f ms (x%.2f)" % (r[0]["batch"], r[0]["median_ms"], r[1]["median_ms"], r[1]["ratio_to_first"], r[2]["median_ms"], r[2]["ratio_to_first"]))'
  done
done

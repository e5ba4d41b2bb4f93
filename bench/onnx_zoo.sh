#!/usr/bin/env bash
# Every zoo model exported to ONNX (`pare export --zoo`, seeded weights, Fashion-MNIST's input
# normalization) with a test case of pare's outputs on 8 random inputs, then run in
# onnxruntime by bench/onnx_check.py: prints each file's largest difference from pare (over
# the output's largest value) and exits non-zero past TOL.
#   bench/onnx_zoo.sh [OUT_DIR] [TOL]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-$(mktemp -d)} TOL=${2:-1e-5}
PARE="${CARGO_TARGET_DIR:-target}/release/pare"
PY=bench/.venv/bin/python
[ -x "$PY" ] || { python3 -m venv bench/.venv && bench/.venv/bin/pip install --quiet onnx onnxruntime numpy; }
cargo build --release --quiet
mkdir -p "$OUT"
pairs=()
for m in lenet300 lenet5 mlp vgg resnet20 mobilenet mobilenet:0.5 squeezenet shufflenet xception vit; do
  f="$OUT/${m//:/-}"
  $PARE export --zoo "$m" --seed 1 --onnx "$f.onnx" --test-data "$f-test" > /dev/null
  pairs+=("$f.onnx:$f-test")
done
report=$(mktemp)
trap 'rm -f "$report"' EXIT
status=0
$PY bench/onnx_check.py check "${pairs[@]}" --tol "$TOL" > "$report" || status=$?
$PY -c 'import json,sys; r=json.load(sys.stdin); print("onnxruntime", r["onnxruntime"]); [print("%-28s max diff / max |output| %.2e  argmax agree %s  %s" % (x["file"].split("/")[-1], x["max_rel_diff"], x["argmax_agree"], "ok" if x["ok"] else "FAIL")) for x in r["results"]]' < "$report"
exit $status

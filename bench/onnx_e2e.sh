#!/usr/bin/env bash
# Bring your own model and data, take the result anywhere, in one run:
#   1. a ResNet-18 (width 0.25, BatchNorm kept) exported by torch.onnx (bench/torch_onnx_models.py);
#   2. a 3-channel image folder (Fashion-MNIST padded to 32x32 and tinted, bench/fashion_folder.py);
#   3. pare import, a short training on the folder, structured pruning of RATIO of the channels
#      of each layer, kept counts rounded to multiples of ROUND (16: the channel block of
#      onnxruntime's AVX-512 convolutions; 8 on AVX2), with fine-tuning, ONNX export of both
#      (BatchNorm folded);
#   4. pare eval on each exported file beside pare eval on its model directory, and the files'
#      batch-64 latency in onnxruntime (RUNS runs, each timing both) against their MAC ratio.
#   bench/onnx_e2e.sh [OUT_DIR] [RATIO] [RUNS] [ROUND]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-$(mktemp -d)} RATIO=${2:-0.5} RUNS=${3:-5} ROUND=${4:-16}
PARE="${CARGO_TARGET_DIR:-target}/release/pare"
PY=bench/.venv/bin/python
cargo build --release --quiet
mkdir -p "$OUT"
$PY bench/torch_onnx_models.py "$OUT" --width 0.25 --keep-bn --only resnet18 2>/dev/null
[ -d "$OUT/rgb" ] || $PY bench/fashion_folder.py "$OUT/rgb"
rm -rf "$OUT/m" "$OUT/trained" "$OUT/pruned"
$PARE import "$OUT/resnet18.onnx" --out "$OUT/m"
$PARE prune "$OUT/m" --out "$OUT/trained" --method structured --ratio 0 --finetune-epochs 3 --lr 0.05 \
  --data "$OUT/rgb" | tail -3
$PARE prune "$OUT/trained" --out "$OUT/pruned" --method structured --criterion l1 --ratio "$RATIO" --round-to "$ROUND" \
  --finetune-epochs 2 --lr 0.01 --data "$OUT/rgb" | tail -6
for m in trained pruned; do
  $PARE export "$OUT/$m" --onnx "$OUT/$m.onnx" --fold-bn
  echo "$m: model directory: $($PARE eval "$OUT/$m" --data "$OUT/rgb")"
  echo "$m: exported file:   $($PARE eval "$OUT/$m.onnx" --data "$OUT/rgb")"
done
MACS=$($PY - "$PARE" "$OUT" <<'EOF'
import json, subprocess, sys
macs = [json.loads(subprocess.check_output([sys.argv[1], "info", f"{sys.argv[2]}/{m}", "--json"]))["macs"]
        for m in ("trained", "pruned")]
print(macs[0], macs[1], macs[0] / macs[1])
EOF
)
read -r DENSE PRUNED RATIO_MACS <<<"$MACS"
echo "MACs: dense $DENSE, pruned $PRUNED, ratio $RATIO_MACS"
for r in $(seq "$RUNS"); do
  $PY bench/onnx_check.py time "$OUT/trained.onnx" "$OUT/pruned.onnx" --batch 64 --reps 30 \
    | $PY -c 'import json,sys; m=float(sys.argv[1]); r=json.load(sys.stdin)["results"]; s=r[1]["ratio_to_first"]; print("onnxruntime batch 64: dense %.2f ms, pruned %.2f ms, speed-up x%.2f = %.2f of the MAC ratio" % (r[0]["median_ms"], r[1]["median_ms"], s, s / m))' "$RATIO_MACS"
done

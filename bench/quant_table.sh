#!/usr/bin/env bash
# Uniform quantization of a trained model: post-training (weights only; weights + 8-bit
# activations) against quantization-aware training, for weight bits 2..8, and the four
# activation observers at 4 and 8 activation bits. Prints Markdown tables.
#   bench/quant_table.sh BASE_DIR [QAT_EPOCHS]     (e.g. runs/dc-lenet5/stages/1-train)
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:?usage: bench/quant_table.sh BASE_DIR [QAT_EPOCHS]}
EPOCHS=${2:-2}
PARE=target/release/pare
OUT=runs/quant-table
cargo build --release --quiet
mkdir -p "$OUT"
acc() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('%.4f' % r['file_accuracy'])" "$1/report.json"; }
base_acc() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('%.4f' % r['stages'][0]['accuracy'])" "$1/report.json"; }
ratio() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('%.1f' % r['ratio'])" "$1/report.json"; }
q() { $PARE quantize "$BASE" --huffman "$@" > /dev/null; }

# The float model fine-tuned exactly like QAT (16-bit weights are float for this purpose): the
# reference QAT must be compared with, since QAT also trains for $EPOCHS more epochs.
q --bits 16 --qat-epochs "$EPOCHS" --lr 0.001 --cosine --out "$OUT/qat16"
echo "| weight bits | PTQ weights | PTQ weights + 8-bit act (KL) | QAT weights ($EPOCHS ep, lr 1e-3 cosine) | file ratio (QAT) |"
echo "|---|---|---|---|---|"
for b in 8 7 6 5 4 3 2; do
  q --bits "$b" --out "$OUT/ptq$b"
  q --bits "$b" --act-bits 8 --observer kl --out "$OUT/ptqa$b"
  q --bits "$b" --qat-epochs "$EPOCHS" --lr 0.001 --cosine --out "$OUT/qat$b"
  echo "| $b | $(acc "$OUT/ptq$b") | $(acc "$OUT/ptqa$b") | $(acc "$OUT/qat$b") | $(ratio "$OUT/qat$b")x |"
done
echo
echo "float model: $(base_acc "$OUT/ptq8"); float fine-tuned like QAT: $(acc "$OUT/qat16")"
echo
echo "| activation bits (weights 8) | minmax | percentile 99.99 | mse | kl |"
echo "|---|---|---|---|---|"
for a in 8 4; do
  row="| $a |"
  for o in minmax percentile mse kl; do
    q --bits 8 --act-bits "$a" --observer "$o" --out "$OUT/obs$a-$o"
    row="$row $(acc "$OUT/obs$a-$o") |"
  done
  echo "$row"
done

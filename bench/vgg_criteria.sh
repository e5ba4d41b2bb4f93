#!/usr/bin/env bash
# The structured-pruning criteria table: a VGG-style CNN trained with the slimming penalty,
# 50% of the filters of every layer removed by each criterion, fine-tuned equally, two seeds;
# plus the pruned architecture trained from scratch for the base model's epochs (Scratch-E).
#   bench/vgg_criteria.sh BASE_EPOCHS FINETUNE_EPOCHS OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_EPOCHS="${1:-3}"; FT="${2:-1}"; OUT="${3:-runs/vgg-criteria}"
PARE=target/release/pare
cargo build --release --quiet
mkdir -p "$OUT"
[ -f "$OUT/base/weights.safetensors" ] || \
  $PARE train --model vgg --epochs "$BASE_EPOCHS" --lr 0.05 --schedule cosine --slimming 1e-4 --out "$OUT/base"
for seed in 0 1; do
  for c in l1 l2 fpgm bn apoz taylor random; do
    $PARE prune "$OUT/base" --out "$OUT/$c-s$seed" --method structured --criterion "$c" --ratio 0.5 \
      --finetune-epochs "$FT" --lr 0.01 --cosine --seed "$seed" > "$OUT/$c-s$seed.log" 2>&1
  done
  $PARE prune "$OUT/base" --out "$OUT/scratch-s$seed" --method structured --criterion l1 --ratio 0.5 --reinit \
    --finetune-epochs "$BASE_EPOCHS" --lr 0.05 --cosine --seed "$seed" > "$OUT/scratch-s$seed.log" 2>&1
done
printf "%-8s %10s %10s\n" criterion seed0 seed1
for c in l1 l2 fpgm bn apoz taylor random scratch; do
  a=$(python3 -c "import json;print('%.4f'%json.load(open('$OUT/$c-s0/prune.json'))['after']['accuracy'])")
  b=$(python3 -c "import json;print('%.4f'%json.load(open('$OUT/$c-s1/prune.json'))['after']['accuracy'])")
  printf "%-8s %10s %10s\n" "$c" "$a" "$b"
done

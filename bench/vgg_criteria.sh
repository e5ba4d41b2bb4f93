#!/usr/bin/env bash
# The structured-pruning criteria table: a VGG-style CNN trained with the slimming penalty,
# 50% of the filters of every layer removed by each criterion, fine-tuned equally, over SEEDS
# seeds (the fine-tuning order and the random scores; one shared base model); plus the pruned
# architecture trained from scratch for the base model's epochs (Scratch-E). Runs already
# finished are kept. Prints each seed, the mean and the standard deviation.
#   bench/vgg_criteria.sh BASE_EPOCHS FINETUNE_EPOCHS OUT_DIR SEEDS
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_EPOCHS="${1:-3}"; FT="${2:-1}"; OUT="${3:-runs/vgg-criteria}"; SEEDS="${4:-2}"
PARE=target/release/pare
cargo build --release --quiet
mkdir -p "$OUT"
[ -f "$OUT/base/weights.safetensors" ] || \
  $PARE train --model vgg --epochs "$BASE_EPOCHS" --lr 0.05 --schedule cosine --slimming 1e-4 --out "$OUT/base"
for seed in $(seq 0 $((SEEDS - 1))); do
  for c in l1 l2 fpgm bn apoz taylor random; do
    [ -f "$OUT/$c-s$seed/prune.json" ] || \
    $PARE prune "$OUT/base" --out "$OUT/$c-s$seed" --method structured --criterion "$c" --ratio 0.5 \
      --finetune-epochs "$FT" --lr 0.01 --cosine --seed "$seed" > "$OUT/$c-s$seed.log" 2>&1
  done
  [ -f "$OUT/scratch-s$seed/prune.json" ] || \
  $PARE prune "$OUT/base" --out "$OUT/scratch-s$seed" --method structured --criterion l1 --ratio 0.5 --reinit \
    --finetune-epochs "$BASE_EPOCHS" --lr 0.05 --cosine --seed "$seed" > "$OUT/scratch-s$seed.log" 2>&1
done
python3 - "$OUT" "$SEEDS" <<'PY'
import json, statistics, sys
out, seeds = sys.argv[1], int(sys.argv[2])
acc = lambda c, s: json.load(open(f"{out}/{c}-s{s}/prune.json"))["after"]["accuracy"]
print("| criterion | " + " | ".join(f"seed {s}" for s in range(seeds)) + " | mean | sd |")
print("|---|" + "---:|" * (seeds + 2))
for c in ["l1", "l2", "fpgm", "bn", "apoz", "taylor", "random", "scratch"]:
    a = [acc(c, s) for s in range(seeds)]
    sd = statistics.stdev(a) if seeds > 1 else 0.0
    print(f"| {c} | " + " | ".join(f"{v:.4f}" for v in a) + f" | {statistics.mean(a):.4f} | {100 * sd:.2f} pt |")
PY

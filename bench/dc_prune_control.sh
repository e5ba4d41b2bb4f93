#!/usr/bin/env bash
# Deep Compression's LeNet-300-100 densities (fc1 8%, fc2 9%, fc3 26% kept) against the dense
# model trained the same way: the same 10-epoch dense start, then either the prune stage (AGP
# ramp over PRUNE epochs inside a FT-epoch cosine fine-tune) or FT more dense epochs with the
# same schedule. Prints the test accuracy of both and the drop, per seed.
#   bench/dc_prune_control.sh [SEEDS] [PRUNE] [FT] [LR]
# LR (default 0.01) is the learning rate of both arms' second stage; HEAD=N in the environment
# changes the dense start's epochs (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${1:-2} PRUNE=${2:-10} FT=${3:-30} LR=${4:-0.01}
OUT=runs/dc-control-p$PRUNE-f$FT
HEAD=${HEAD:-10}
[ "$LR" = 0.01 ] || OUT=$OUT-lr$LR
[ "$HEAD" = 10 ] || OUT=$OUT-head$HEAD
PARE=target/release/pare
cargo build --release --quiet
mkdir -p "$OUT"
head='[model]
zoo = "lenet300"
seed = 0

[[stage]]
[stage.train]
train = { epochs = '"$HEAD"', lr = 0.01 }
'
printf '%s\n[[stage]]\n[stage.prune]\nlayers = { fc1 = 0.92, fc2 = 0.91, fc3 = 0.74 }\nramp = "agp"\nprune_epochs = %s\ntrain = { epochs = %s, lr = %s, cosine = true }\n' \
  "$head" "$PRUNE" "$FT" "$LR" > "$OUT/prune.toml"
printf '%s\n[[stage]]\n[stage.train]\ntrain = { epochs = %s, lr = %s, cosine = true }\n' "$head" "$FT" "$LR" > "$OUT/dense.toml"
for s in $(seq 0 $((SEEDS - 1))); do
  for k in prune dense; do
    [ -f "$OUT/$k-s$s/report.json" ] || $PARE compress --recipe "$OUT/$k.toml" --seed "$s" --out "$OUT/$k-s$s" > "$OUT/$k-s$s.log" 2>&1
  done
done
python3 - "$OUT" "$SEEDS" <<'PY'
import json, sys
out, seeds = sys.argv[1], int(sys.argv[2])
acc = lambda k, s: json.load(open(f"{out}/{k}-s{s}/report.json"))["stages"][-1]["accuracy"]
print("| seed | pruned | dense, same training | drop |\n|---|---|---|---|")
drops = []
for s in range(seeds):
    p, d = acc("prune", s), acc("dense", s)
    drops.append(100 * (d - p))
    print(f"| {s} | {p:.4f} | {d:.4f} | {drops[-1]:.2f} pt |")
print(f"\nmean drop {sum(drops) / len(drops):.2f} pt")
PY

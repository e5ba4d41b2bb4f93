#!/usr/bin/env bash
# Every distillation method on one teacher/student pair, equal budgets, several seeds: the
# student alone, KD, FitNets, RKD, SP, DML (both peers), Born-Again (3 generations + ensemble),
# TAKD and Label Refinery. Prints mean and spread (max - min) per row and which rows beat the
# student alone by more than the spread. Defaults: LeNet-5 teacher -> LeNet-300-100 student
# (attention transfer needs image-shaped student layers, so it is not in the MLP table).
#   bench/distill_table.sh TEACHER_DIR [SEEDS] [EPOCHS]
set -uo pipefail
cd "$(dirname "$0")/.."
TEACHER=${1:?usage: bench/distill_table.sh TEACHER_DIR [SEEDS] [EPOCHS]}
SEEDS=${2:-3}
EPOCHS=${3:-10}
PARE=target/release/pare
OUT=runs/distill-table-e$EPOCHS
cargo build --release --quiet
mkdir -p "$OUT"
common=(--student lenet300 --epochs "$EPOCHS" --lr 0.05 --cosine --temperature 4 --alpha 0.9)
for s in $(seq 0 $((SEEDS - 1))); do
  run() { local name=$1; shift; $PARE distill "${common[@]}" --seed "$s" --out "$OUT/$name-s$s" "$@" > "$OUT/$name-s$s.log" 2>&1 || echo "$name seed $s failed: $(tail -1 "$OUT/$name-s$s.log")"; }
  run kd --teacher "$TEACHER" --method kd
  run fitnet --teacher "$TEACHER" --method fitnet --pairs fc1:fc1 --hint-epochs 2 --no-baseline
  run rkd --teacher "$TEACHER" --method rkd --pairs relu2:relu1 --with-kd --no-baseline
  run sp --teacher "$TEACHER" --method sp --pairs relu2:relu1 --with-kd --no-baseline
  run dml --method dml --peers 2 --no-baseline
  run ban --method ban --generations 3
  run takd --teacher "$TEACHER" --method takd --assistant mlp:800,800 --no-baseline
  run refinery --method refinery --rounds 3
done
python3 - "$OUT" "$SEEDS" <<'PY'
import json, os, statistics as st, sys
out, seeds = sys.argv[1], int(sys.argv[2])
rows = {}
for s in range(seeds):
    for m in ["kd", "fitnet", "rkd", "sp", "dml", "ban", "takd", "refinery"]:
        p = f"{out}/{m}-s{s}/distill.json"
        if not os.path.exists(p):
            continue
        for r in json.load(open(p))["results"]:
            name = r["model"] if m == "kd" or r["model"] != "student alone" else None
            if name is None or (name == "teacher" and m != "kd"):
                continue
            rows.setdefault(name, []).append(r["accuracy"])
alone = rows.get("student alone", [0])
base, noise = st.mean(alone), max(alone) - min(alone)
print("| model | mean | spread | vs alone | beyond the spread? |\n|---|---|---|---|---|")
for name, v in rows.items():
    d = st.mean(v) - base
    spread = max(v) - min(v)
    verdict = "-" if name in ("teacher", "student alone") else ("yes" if d > max(spread, noise) else ("worse" if -d > max(spread, noise) else "no"))
    print(f"| {name} | {st.mean(v):.4f} | {spread:.4f} | {100*d:+.2f} pt | {verdict} |")
PY

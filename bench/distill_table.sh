#!/usr/bin/env bash
# Every distillation method on one teacher/student pair, equal budgets, several seeds: the
# student alone, KD, FitNets, AT (cnn only), RKD, SP, DML (both peers), Born-Again (3
# generations + ensemble), TAKD and Label Refinery. Prints mean and spread (max - min) per row,
# test and validation, and which rows beat the student alone by more than the spread.
#   bench/distill_table.sh TEACHER_DIR [SEEDS] [EPOCHS] [PAIR]
# PAIR mlp (default): LeNet-300-100 student, all training images, no validation split.
# PAIR cnn: ResNet-8 student under a VGG-style teacher (their stages have the same spatial
#   sizes, 28/14/7, which attention transfer needs), trained on a seeded 10,000-image subset
#   with 5,000 images held out for validation, to fit a 2-core CPU budget.
set -uo pipefail
cd "$(dirname "$0")/.."
TEACHER=${1:?usage: bench/distill_table.sh TEACHER_DIR [SEEDS] [EPOCHS] [mlp|cnn]}
SEEDS=${2:-3}
EPOCHS=${3:-10}
PAIR=${4:-mlp}
PARE=target/release/pare
OUT=runs/distill-table-$PAIR-e$EPOCHS
cargo build --release --quiet
mkdir -p "$OUT"
case $PAIR in
  mlp)
    common=(--student lenet300)
    fitnet=(--pairs fc1:fc1) at=() rkd=(--pairs relu2:relu1) sp=(--pairs relu2:relu1) assistant=mlp:800,800 ;;
  cnn)
    common=(--student resnet8 --train-images 10000 --val 5000)
    fitnet=(--pairs layer2.0.relu2:relu4)
    at=(--pairs layer1.0.relu2:relu2,layer2.0.relu2:relu4,layer3.0.relu2:relu6)
    rkd=(--pairs flatten:relu_fc1) sp=(--pairs layer3.0.relu2:relu6) assistant=resnet14 ;;
  *) echo "PAIR must be mlp or cnn" >&2; exit 2 ;;
esac
common+=(--epochs "$EPOCHS" --lr 0.05 --cosine --temperature 4 --alpha 0.9)
for s in $(seq 0 $((SEEDS - 1))); do
  run() {
    local name=$1; shift
    [ -f "$OUT/$name-s$s/distill.json" ] && return
    $PARE distill "${common[@]}" --seed "$s" --out "$OUT/$name-s$s" "$@" > "$OUT/$name-s$s.log" 2>&1 \
      || echo "$name seed $s failed: $(tail -1 "$OUT/$name-s$s.log")"
  }
  run kd --teacher "$TEACHER" --method kd
  run fitnet --teacher "$TEACHER" --method fitnet "${fitnet[@]}" --hint-epochs 1 --no-baseline
  [ ${#at[@]} -gt 0 ] && run at --teacher "$TEACHER" --method at "${at[@]}" --no-baseline
  run rkd --teacher "$TEACHER" --method rkd "${rkd[@]}" --with-kd --no-baseline
  run sp --teacher "$TEACHER" --method sp "${sp[@]}" --with-kd --no-baseline
  run dml --method dml --peers 2 --no-baseline
  run ban --method ban --generations 3
  run takd --teacher "$TEACHER" --method takd --assistant "$assistant" --no-baseline
  run refinery --method refinery --rounds 3
done
python3 - "$OUT" "$SEEDS" <<'PY'
import json, os, statistics as st, sys
out, seeds = sys.argv[1], int(sys.argv[2])
rows = {}
for s in range(seeds):
    for m in ["kd", "fitnet", "at", "rkd", "sp", "dml", "ban", "takd", "refinery"]:
        p = f"{out}/{m}-s{s}/distill.json"
        if not os.path.exists(p):
            continue
        for r in json.load(open(p))["results"]:
            name = r["model"]
            # The baseline and the teacher come from the KD run (the others repeat them).
            if name in ("teacher", "student alone") and m != "kd":
                continue
            rows.setdefault(name, []).append((r["accuracy"], r.get("val_accuracy")))
alone = [t for t, _ in rows.get("student alone", [(0, None)])]
base, noise = st.mean(alone), max(alone) - min(alone)
print(f"{out}: mean over seeds (n), spread = max - min; 'beyond' = mean gain over the student alone larger than both spreads\n")
print("| model | n | test mean | spread | val mean | vs alone | beyond the spread? |\n|---|---|---|---|---|---|---|")
for name, v in rows.items():
    te = [t for t, _ in v]; va = [x for _, x in v if x is not None]
    d = st.mean(te) - base
    spread = max(te) - min(te)
    if name in ("teacher", "student alone"):
        verdict = "-"
    elif len(te) < 2 or len(alone) < 2:
        verdict = "needs 2+ seeds"
    else:
        verdict = "yes" if d > max(spread, noise) else ("worse" if -d > max(spread, noise) else "no")
    vm = f"{st.mean(va):.4f}" if va else "-"
    print(f"| {name} | {len(te)} | {st.mean(te):.4f} | {spread:.4f} | {vm} | {100*d:+.2f} pt | {verdict} |")
PY

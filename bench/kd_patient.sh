#!/usr/bin/env bash
# "Patient and consistent" KD (Beyer et al. 2022) of a CNN teacher into the LeNet-300-100 MLP:
# long cosine schedule, random crops that teacher and student see identically, drawn from a
# fixed set of VIEWS views per image so the teacher's logits are computed once per view and
# cached. Every run holds out 5,000 training images for validation (settings are chosen there;
# the test set only reports). Per seed it trains: KD, the student alone on the same views (the
# equal-budget baseline, part of the distill run), the student alone on fresh crops every
# epoch, and the student alone without augmentation.
#   bench/kd_patient.sh TEACHER_DIR SEEDS EPOCHS VIEWS TEMPERATURE ALPHA [flip]
# With "flip" every arm (KD and both baselines) also draws random horizontal flips.
set -euo pipefail
cd "$(dirname "$0")/.."
TEACHER=${1:?usage: bench/kd_patient.sh TEACHER_DIR SEEDS EPOCHS VIEWS TEMPERATURE ALPHA [flip]}
SEEDS=$2 EPOCHS=$3 VIEWS=$4 T=$5 ALPHA=$6
FLIP=() F=
if [ "${7:-}" = flip ]; then FLIP=(--hflip) F=-flip; fi
PARE=target/release/pare
OUT=runs/kd-patient
cargo build --release --quiet
mkdir -p "$OUT"
for s in $(seq 0 $((SEEDS - 1))); do
  name="kd-T$T-a$ALPHA-v$VIEWS$F-e$EPOCHS-s$s"
  [ -f "$OUT/$name/distill.json" ] || $PARE distill --teacher "$TEACHER" --student lenet300 --method kd \
    --epochs "$EPOCHS" --lr 0.05 --cosine --crop-padding 2 --views "$VIEWS" --temperature "$T" --alpha "$ALPHA" \
    --val 5000 --seed "$s" --out "$OUT/$name" "${FLIP[@]}" \
    --teacher-cache "$OUT/teacher-logits-v$VIEWS$F-s$s.safetensors" > "$OUT/$name.log" 2>&1
  for aug in 0 2; do
    name="alone-c$aug$F-e$EPOCHS-s$s"
    [ -f "$OUT/$name/report.json" ] || $PARE train --model lenet300 --epochs "$EPOCHS" --lr 0.05 --schedule cosine \
      --weight-decay 5e-4 --crop-padding $aug --val 5000 --seed "$s" --out "$OUT/$name" "${FLIP[@]}" > "$OUT/$name.log" 2>&1
  done
done
python3 - "$OUT" "$SEEDS" "$EPOCHS" "$VIEWS" "$T" "$ALPHA" "$F" <<'PY'
import glob, json, os, statistics as st, sys
out, seeds, e, v, t, a, f = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
rows = {}
def add(name, test, val):
    rows.setdefault(name, []).append((test, val))
def results(path):
    return json.load(open(path))["results"]
for s in range(seeds):
    kd = results(f"{out}/kd-T{t}-a{a}-v{v}{f}-e{e}-s{s}/distill.json")
    # The student alone on the same views does not depend on T or alpha: a run made with
    # --no-baseline (bench/kd_sweep.sh) takes it from another setting's run of this seed.
    alone = [r for r in kd if r["model"] == "student alone"] or next(
        ([r for r in results(p) if r["model"] == "student alone"]
         for p in sorted(glob.glob(f"{out}/kd-T*-a*-v{v}{f}-e{e}-s{s}/distill.json"))
         if any(r["model"] == "student alone" for r in results(p))), None)
    if alone is None:
        sys.exit(f"seed {s}: no run of {v} views has the student alone; run one without --no-baseline")
    for r in [x for x in kd if x["model"] != "student alone"] + alone:
        add({"student alone": f"alone, same {v} views"}.get(r["model"], r["model"]), r["accuracy"], r["val_accuracy"])
    for aug, name in [(0, "alone, flips only" if f else "alone, no augmentation"), (2, "alone, fresh crops and flips" if f else "alone, fresh crops")]:
        rep = json.load(open(f"{out}/alone-c{aug}{f}-e{e}-s{s}/report.json"))
        add(name, rep["test_accuracy"], rep["history"][-1]["val_accuracy"])
print(f"KD T={t} alpha={a}, {v} views{' with flips' if f else ''}, {e} epochs, {seeds} seeds\n")
print("| model | test mean | test spread | val mean | tests |\n|---|---|---|---|---|")
for n, xs in rows.items():
    te = [x[0] for x in xs]; va = [x[1] for x in xs]
    print(f"| {n} | {st.mean(te):.4f} | {max(te)-min(te):.4f} | {st.mean(va):.4f} | {' / '.join(f'{x:.4f}' for x in te)} |")
PY

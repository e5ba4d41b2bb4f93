#!/usr/bin/env bash
# Chooses the KD temperature and alpha for the patient-KD pair (VGG teacher -> LeNet-300-100,
# crops from fixed views) on the validation split of one seed: every setting trains the same
# student on the same views with the teacher's logits computed once (--teacher-cache, shared
# with bench/kd_patient.sh). The student alone on those views comes from kd_patient.sh's run
# of the same seed. Prints validation and test accuracy per setting; choose on validation.
#   bench/kd_sweep.sh TEACHER_DIR SEED EPOCHS VIEWS "T:ALPHA T:ALPHA ..."
set -euo pipefail
cd "$(dirname "$0")/.."
TEACHER=${1:?usage: bench/kd_sweep.sh TEACHER_DIR SEED EPOCHS VIEWS "T:ALPHA ..."}
SEED=$2 EPOCHS=$3 VIEWS=$4 SETTINGS=$5
PARE=target/release/pare
OUT=runs/kd-patient
cargo build --release --quiet
mkdir -p "$OUT"
for ta in $SETTINGS; do
  T=${ta%%:*} ALPHA=${ta##*:}
  name="kd-T$T-a$ALPHA-v$VIEWS-e$EPOCHS-s$SEED"
  [ -f "$OUT/$name/distill.json" ] || $PARE distill --teacher "$TEACHER" --student lenet300 --method kd \
    --epochs "$EPOCHS" --lr 0.05 --cosine --crop-padding 2 --views "$VIEWS" --temperature "$T" --alpha "$ALPHA" \
    --val 5000 --seed "$SEED" --out "$OUT/$name" --no-baseline \
    --teacher-cache "$OUT/teacher-logits-v$VIEWS-s$SEED.safetensors" > "$OUT/$name.log" 2>&1
done
python3 - "$OUT" "$SEED" "$EPOCHS" "$VIEWS" "$SETTINGS" <<'PY'
import json, os, sys
out, seed, e, v, settings = sys.argv[1:]
print(f"KD settings on seed {seed}, {v} views, {e} epochs (choose on validation)\n")
print("| setting | val | test |\n|---|---|---|")
base = f"{out}/kd-T4-a0.9-v{v}-e{e}-s{seed}/distill.json"
if os.path.exists(base):
    for r in json.load(open(base))["results"]:
        if r["model"] == "student alone":
            print(f"| student alone, same views | {r['val_accuracy']:.4f} | {r['accuracy']:.4f} |")
for ta in settings.split():
    t, a = ta.split(":")
    for r in json.load(open(f"{out}/kd-T{t}-a{a}-v{v}-e{e}-s{seed}/distill.json"))["results"]:
        if r["model"] == "student KD":
            print(f"| KD T={t} alpha={a} | {r['val_accuracy']:.4f} | {r['accuracy']:.4f} |")
PY

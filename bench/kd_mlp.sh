#!/usr/bin/env bash
# CNN teacher -> MLP student (LeNet-300-100 layout): a cosine schedule, and with CROP > 0 the
# same random crop for teacher and student ("consistent" teaching); with CROP = 0 the teacher's
# logits are computed once and cached. Each seed trains the student alone and with KD on the
# same budget. Prints one line per seed and the means.
#   bench/kd_mlp.sh TEACHER_DIR [SEEDS] [EPOCHS] [CROP]
set -euo pipefail
cd "$(dirname "$0")/.."
TEACHER=${1:?usage: bench/kd_mlp.sh TEACHER_DIR [SEEDS] [EPOCHS] [CROP]}
SEEDS=${2:-3}
EPOCHS=${3:-20}
CROP=${4:-2}
OUT=runs/kd-mlp-$(basename "$TEACHER")-e$EPOCHS-c$CROP
PARE=target/release/pare
cargo build --release --quiet
for s in $(seq 0 $((SEEDS - 1))); do
  $PARE distill --teacher "$TEACHER" --student lenet300 --method kd --epochs "$EPOCHS" --lr 0.05 --cosine \
    --crop-padding "$CROP" --temperature 4 --alpha 0.9 --seed "$s" --out "$OUT/s$s" > "$OUT-s$s.log" 2>&1
  python3 - "$OUT/s$s/distill.json" <<'PY'
import json, sys
r = {x["model"]: x["accuracy"] for x in json.load(open(sys.argv[1]))["results"]}
print(f"seed {sys.argv[1].split('/')[-2]}: teacher {r['teacher']:.4f} alone {r['student alone']:.4f} KD {r['student KD']:.4f} ({100*(r['student KD']-r['student alone']):+.2f} pt)")
PY
done
python3 - "$OUT" "$SEEDS" <<'PY'
import json, sys, statistics as st
rows = [{x["model"]: x["accuracy"] for x in json.load(open(f"{sys.argv[1]}/s{s}/distill.json"))["results"]} for s in range(int(sys.argv[2]))]
a = [r["student alone"] for r in rows]; k = [r["student KD"] for r in rows]
spread = lambda v: max(v) - min(v)
print(f"mean alone {st.mean(a):.4f} (spread {spread(a):.4f}), KD {st.mean(k):.4f} (spread {spread(k):.4f}), gain {100*(st.mean(k)-st.mean(a)):+.2f} pt")
PY

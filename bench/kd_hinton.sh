#!/usr/bin/env bash
# Hinton et al. (2015) on Fashion-MNIST: a 1200-1200 MLP teacher with dropout (inputs jittered
# by 2 pixels), 800-800 and 30-30 students, temperatures 1, 2, 4, 8, 20. lr 0.01 with cosine
# decay keeps every temperature stable (at lr 0.05 high temperatures diverge: pare stops a run
# whose loss becomes non-finite, and this script reports it as diverged).
#   bench/kd_hinton.sh [EPOCHS] [LR] [TEACHER_EPOCHS]
set -uo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-10}
LR=${2:-0.01}
TEACHER_EPOCHS=${3:-$EPOCHS}
PARE=target/release/pare
OUT=runs/hinton-t$TEACHER_EPOCHS
cargo build --release --quiet
mkdir -p "$OUT"
if [ ! -f "$OUT/teacher/weights.safetensors" ]; then
  $PARE train --model mlp --hidden 1200,1200 --dropout 0.5 --epochs "$TEACHER_EPOCHS" --lr 0.05 --schedule cosine \
    --crop-padding 2 --out "$OUT/teacher" > "$OUT/teacher.log" 2>&1
fi
echo "teacher 1200-1200 dropout 0.5, $TEACHER_EPOCHS epochs: $($PARE eval "$OUT/teacher" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["accuracy"])')"
acc() { python3 -c "import json,sys; r={x['model']:x['accuracy'] for x in json.load(open(sys.argv[1]))['results']}; print('%.4f' % r[sys.argv[2]])" "$1" "$2"; }
echo "| student | alone | T=1 | T=2 | T=4 | T=8 | T=20 |"
echo "|---|---|---|---|---|---|---|"
for st in 800,800 30,30; do
  base=""
  cells=""
  for T in 1 2 4 8 20; do
    dir="$OUT/s${st/,/-}-T$T"
    extra="--no-baseline"
    [ -z "$base" ] && extra=""
    if $PARE distill --teacher "$OUT/teacher" --student "mlp:$st" --method kd --epochs "$EPOCHS" --lr "$LR" --cosine \
        --temperature "$T" --alpha 0.9 --out "$dir" $extra > "$dir.log" 2>&1; then
      [ -z "$base" ] && base=$(acc "$dir/distill.json" "student alone")
      cells="$cells $(acc "$dir/distill.json" "student KD") |"
    else
      cells="$cells diverged ($(grep -o 'loss became [^:]*' "$dir.log" | head -1)) |"
    fi
  done
  echo "| $st | ${base:-failed} |$cells"
done

#!/usr/bin/env bash
# Does a pruned model get as much faster as its MACs say? Runs `pare bench latency DENSE
# PRUNED` RUNS times (each run times both models, so every ratio is taken within one run) and
# prints, per run, the batch-64 and batch-1 speed-ups and the batch-64 speed-up over the MAC
# ratio; then their range and median. Run it on an otherwise idle machine: this VM's timings
# drift by up to 15% between minutes.
#   bench/latency_ratio.sh DENSE_DIR PRUNED_DIR [RUNS] [REPS]
set -euo pipefail
cd "$(dirname "$0")/.."
DENSE=$1 PRUNED=$2 RUNS=${3:-5} REPS=${4:-50}
PARE="${CARGO_TARGET_DIR:-target}/release/pare"
cargo build --release --quiet
runs=$(mktemp)
trap 'rm -f "$runs"' EXIT
for r in $(seq "$RUNS"); do
  $PARE bench latency "$DENSE" "$PRUNED" --reps "$REPS" --json | tr -d '\n' >> "$runs"
  echo >> "$runs"
done
python3 - "$runs" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
d0, p0 = runs[0]
macs = d0["macs"] / p0["macs"]
print("MAC ratio /%.3f (%s -> %s)" % (macs, format(d0["macs"], ","), format(p0["macs"], ",")))
print("| run | dense b64 ms | pruned b64 ms | speed-up b64 | / MAC ratio | dense b1 ms | pruned b1 ms | speed-up b1 |")
print("|---|---|---|---|---|---|---|---|")
fr = []
for k, (d, p) in enumerate(runs, 1):
    s64 = d["latency_ms_b64"] / p["latency_ms_b64"]
    s1 = d["latency_ms_b1"] / p["latency_ms_b1"]
    fr.append(s64 / macs)
    print("| %d | %.2f | %.2f | x%.2f | %.3f | %.3f | %.3f | x%.2f |" % (
        k, d["latency_ms_b64"], p["latency_ms_b64"], s64, s64 / macs,
        d["latency_ms_b1"], p["latency_ms_b1"], s1))
print("\nbatch 64: %.3f-%.3fx the MAC ratio, median %.3fx" % (min(fr), max(fr), statistics.median(fr)))
PY

#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 600), two at a time, and prints each target's
# executions, corpus size and crashes. Logs: logs/<target>.log; crashing inputs: artifacts/.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-600}
targets=(arch weights idx pare pare_structured recipe checkpoint teacher_cache onnx)
mkdir -p logs
cargo +nightly fuzz build -O
run() {
    local t=$1
    mkdir -p "corpus/$t"
    cargo +nightly fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"logs/$t.log" 2>&1 || true
}
for ((i = 0; i < ${#targets[@]}; i += 2)); do
    run "${targets[i]}" &
    if ((i + 1 < ${#targets[@]})); then run "${targets[i + 1]}" & fi
    wait
done
printf '%-16s %12s %10s %8s\n' target executions corpus crashes
for t in "${targets[@]}"; do
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo '?')
    corpus=$(find "corpus/$t" -type f | wc -l)
    crashes=$(find "artifacts/$t" -type f 2>/dev/null | wc -l)
    printf '%-16s %12s %10s %8s\n' "$t" "$runs" "$corpus" "$crashes"
done

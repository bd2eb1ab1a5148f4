#!/usr/bin/env bash
# The compliance report's and the dashboard's ledger work at real sizes
# (docs/benchmarks.md, "report and dashboard at 10^6 ledger entries"):
# a signed file ledger of ENTRIES entries (default 1,000,000, spread over
# 30 days), then, each under /usr/bin/time -v (wall time, peak RSS):
#   report     what `report` does with the ledger: one scan pass for the
#              report's views, `ledger verify`, the HTML
#   dashboard  the dashboard's first load (full verification + scan,
#              ledger::Follower::start), APPEND entries appended through the
#              writer, and a refresh (only the new entries and checkpoints)
# Usage: [ENTRIES=1000000] [APPEND=1000] [PROFILE=release] bench/report.sh
set -euo pipefail
cd "$(dirname "$0")/.."
entries=${ENTRIES:-1000000}
append=${APPEND:-1000}
profile=${PROFILE:-release}
flag=()
[[ $profile == release ]] && flag=(--release)
cargo build "${flag[@]}" -p warden-bench --bin ledger-scale
bin=target/$profile/ledger-scale
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" synth --dir "$work/a" --entries "$entries"
cp -a "$work/a" "$work/b"
echo "machine: $(nproc) CPU(s), load $(cut -d' ' -f1-3 /proc/loadavg)"
for run in report dashboard; do
    dir=$work/a
    [[ $run == dashboard ]] && dir=$work/b
    /usr/bin/time -v "$bin" "$run" --dir "$dir" --append "$append" 2>"$work/time" || { cat "$work/time"; exit 1; }
    grep -E "Elapsed \(wall|Maximum resident" "$work/time" | sed 's/^\s*/  /'
done

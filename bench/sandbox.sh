#!/usr/bin/env bash
# redcap-sandbox at real sizes (issue #18). Not a test: never run by
# scripts/test or .ci/run. On 127.0.0.1 only; every process it starts is
# stopped by PID on exit.
#
# One run, one project of 20 text fields, grown to each size of $SIZES
# records in turn (imports of $BATCH records per request). At each size:
# - the import rate of the growth to that size (records/s, curl wall time of
#   the import requests only; generating the data is not counted);
# - one-record import latency: $RUNS imports of one record (an update of a
#   changed value), median and max;
# - the full export in json, csv, xml and eav (json), median of $RUNS, and
#   its size; next to it the serde_json floor of the same rows (the time
#   serde_json::to_string needs for the exported rows, measured by
#   `cargo bench -p redcap-sandbox --bench records -- --bench --floor FILE`);
# - the sandbox's CPU time (user + sys, all its threads, from
#   /proc/PID/stat): over the growth (as records per CPU second: the rate
#   a machine with a core to spare would see) and per export;
# - the sandbox's RSS: peak (VmHWM) during the growth (an import request's
#   body and the rows in flight), then — after a restart
#   on the grown database, timed from exec to listening — idle, and peak
#   during the exports (reset through /proc/PID/clear_refs).
#
# Usage: bench/sandbox.sh
# Environment: BENCH_DIR (a directory on a real disk; default /var/tmp),
#   SIZES (default "10000 100000 1000000"), RUNS (default 3), BATCH (default
#   50000), SKIP_BUILD=1, KEEP=1 (keep the work directory).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
bench=sandbox.sh
# shellcheck source=bench/lib.sh
. "$repo/bench/lib.sh"
SIZES=${SIZES:-"10000 100000 1000000"}
RUNS=${RUNS:-3}
BATCH=${BATCH:-50000}

bench_workdir sandbox-size
for t in curl python3; do command -v $t >/dev/null || die "$t is required"; done
bench_binaries "-p redcap-sandbox" redcap-sandbox
# The floor: the records bench's --floor mode (built with the bench profile).
floor_bin=""
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    (cd "$repo" && cargo bench -p redcap-sandbox --bench records --no-run >&2)
fi
floor_bin=$(find "${CARGO_TARGET_DIR:-$repo/target}/release/deps" -maxdepth 1 -type f -executable \
    -name 'records-*' -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2)
if [[ -n $floor_bin ]]; then
    cp "$floor_bin" "$work/bin/records-floor"
else
    say "the records bench is not built (run without SKIP_BUILD=1): no serde floor"
fi

# --- the sandbox and a project of 20 fields ------------------------------------
super=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F)
sb_port=$(free_port)
start_sandbox() {
    "$bin/redcap-sandbox" serve --listen "127.0.0.1:$sb_port" --data "$work/sandbox" \
        --super-token "$super" --admin-secret bench --timezone UTC >>"$work/sandbox.log" 2>&1 &
    sb_pid=$!
    pids+=($sb_pid)
    wait_port "$sb_port" redcap-sandbox
}
start_sandbox
api="http://127.0.0.1:$sb_port/api/"
token=$(curl -sf -d "token=$super" -d content=project -d format=json \
    --data-urlencode 'data=[{"project_title":"Size benchmark","purpose":0}]' "$api")
[[ ${#token} == 32 ]] || die "project creation answered: $token"
python3 - "$work/metadata.json" <<'EOF'
import json, sys
fields = [{"field_name": "record_id", "form_name": "visit", "field_type": "text", "field_label": "Record ID"}]
fields += [{"field_name": f"f{i:02}", "form_name": "visit", "field_type": "text", "field_label": f"Field {i}"} for i in range(1, 20)]
json.dump(fields, open(sys.argv[1], "w"))
EOF
curl -sf -d "token=$token" -d content=metadata -d format=json \
    --data-urlencode "data@$work/metadata.json" "$api" >/dev/null

status() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$sb_pid/status"; }
# The sandbox's CPU seconds so far (utime + stime of all its threads).
cpu_secs() { python3 -c "import os; f=open('/proc/$sb_pid/stat').read().rsplit(')', 1)[1].split(); print((int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK'))"; }
mb() { python3 -c "print(f'{int(\"$1\") / 1024:.0f}')"; }
median() { python3 -c 'import sys,statistics; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

# --- growing the project -------------------------------------------------------------
have=0
# Runs in this shell (not a $(...) subshell), so that `have` advances;
# writes the import seconds and the sandbox's CPU seconds to $work/grow.out.
grow_to() { # records
    local want=$1 total=0 cpu0
    cpu0=$(cpu_secs)
    while ((have < want)); do
        local n=$((want - have < BATCH ? want - have : BATCH))
        python3 - "$have" "$n" "$work/batch.form" "$token" <<'EOF'
import json, sys, urllib.parse
start, n, out, token = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = [dict({"record_id": str(i)}, **{f"f{k:02}": f"value {k} of record {i}" for k in range(1, 20)})
        for i in range(start + 1, start + n + 1)]
open(out, "w").write(urllib.parse.urlencode({"token": token, "content": "record", "format": "json", "data": json.dumps(rows)}))
EOF
        local t
        t=$(curl -sf -o "$work/import.out" -w '%{time_total}' \
            -H 'Content-Type: application/x-www-form-urlencoded' --data-binary "@$work/batch.form" "$api") ||
            die "import failed"
        grep -q "\"count\": $n" "$work/import.out" || die "import answered $(cat "$work/import.out")"
        total=$(python3 -c "print($total + $t)")
        have=$((have + n))
    done
    rm -f "$work/batch.form"
    sleep 1 # the last checkpoint (its own thread) is part of the import's cost
    echo "$total $(python3 -c "print($(cpu_secs) - $cpu0)")" >"$work/grow.out"
}

# One export: prints wall seconds and the sandbox's CPU seconds; the body
# goes to $work/out.
export_once() { # format type
    local c0 t
    c0=$(cpu_secs)
    t=$(curl -sf -o "$work/out" -w '%{time_total}' -d "token=$token" -d content=record \
        -d "format=$1" -d "type=$2" "$api")
    echo "$t $(python3 -c "print($(cpu_secs) - $c0)")"
}

say "== load at start: $(uptime)"
printf '| records | import rate (records/s) | import records per CPU s | one-record import median / max (ms) | json (s) | csv (s) | xml (s) | eav (s) | export CPU json / csv / xml / eav (s) | json MB | serde floor (s) | start-up (s) | RSS peak import / idle after restart / peak export (MB) |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|---|---|\n'
for size in $SIZES; do
    from=$have
    echo 5 >"/proc/$sb_pid/clear_refs"
    grow_to "$size"
    read -r secs cpu <"$work/grow.out"
    rate=$(python3 -c "print(f'{($size - $from) / $secs:,.0f}')")
    cpu_rate=$(python3 -c "print(f'{($size - $from) / $cpu:,.0f}')")
    hwm_import=$(status VmHWM)
    # One-record imports: an update of record 1 with a new value each time.
    lat=()
    for i in $(seq "$RUNS"); do
        lat+=("$(curl -sf -o /dev/null -w '%{time_total}' -d "token=$token" -d content=record -d format=json \
            --data-urlencode "data=[{\"record_id\":\"1\",\"f01\":\"latency $size $i\"}]" "$api")")
    done
    lat_med=$(python3 -c "import statistics,sys; print(f'{statistics.median(map(float, sys.argv[1:])) * 1e3:.1f}')" "${lat[@]}")
    lat_max=$(python3 -c "import sys; print(f'{max(map(float, sys.argv[1:])) * 1e3:.1f}')" "${lat[@]}")
    # Restart on the grown database: start-up time, then RSS from a fresh
    # process (what the data costs, not what the imports left behind).
    kill -TERM "$sb_pid"
    wait "$sb_pid" 2>/dev/null || true
    t0=$(date +%s.%N)
    start_sandbox
    startup=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.2f}')")
    curl -sf -o /dev/null -d "token=$super" -d content=version "$api"
    idle=$(status VmRSS)
    echo 5 >"/proc/$sb_pid/clear_refs"
    declare -A took=() cpu_took=()
    for fmt in json csv xml eav; do
        format=$fmt type=flat
        [[ $fmt == eav ]] && format=json type=eav
        runs=() cpus=()
        for _ in $(seq "$RUNS"); do
            read -r t c < <(export_once "$format" "$type")
            runs+=("$t")
            cpus+=("$c")
        done
        took[$fmt]=$(median "${runs[@]}")
        cpu_took[$fmt]=$(median "${cpus[@]}")
        if [[ $fmt == json ]]; then
            json_bytes=$(stat -c %s "$work/out")
            mv "$work/out" "$work/export.json"
        fi
    done
    hwm_export=$(status VmHWM)
    python3 - "$work/export.json" "$size" <<'EOF' || die "the json export did not hold every record"
import json, sys
rows = json.load(open(sys.argv[1]))
assert len(rows) == int(sys.argv[2]), len(rows)
EOF
    floor=nan
    if [[ -x $work/bin/records-floor ]]; then
        floor=$("$work/bin/records-floor" --bench --floor "$work/export.json")
    fi
    rm -f "$work/export.json" "$work/out"
    printf '| %s | %s | %s | %s / %s | %.3f | %.3f | %.3f | %.3f | %.2f / %.2f / %.2f / %.2f | %.1f | %.3f | %s | %s / %s / %s |\n' \
        "$(python3 -c "print(f'{$size:,}')")" "$rate" "$cpu_rate" "$lat_med" "$lat_max" \
        "${took[json]}" "${took[csv]}" "${took[xml]}" "${took[eav]}" \
        "${cpu_took[json]}" "${cpu_took[csv]}" "${cpu_took[xml]}" "${cpu_took[eav]}" \
        "$(python3 -c "print($json_bytes / 1e6)")" "$floor" \
        "$startup" "$(mb "$hwm_import")" "$(mb "$idle")" "$(mb "$hwm_export")"
    say "== load after $size: $(uptime)"
done
say "== database: $(du -sh "$work/sandbox" | cut -f1)"

#!/usr/bin/env bash
# The whole-project export benchmark (issue #10, item 4). Not a test: never
# run by scripts/test or .ci/run. On 127.0.0.1 only; every process it starts
# is stopped by PID on exit.
#
# One run, one project of 20 text fields in redcap-sandbox, grown to each
# size of $SIZES records in turn. At each size, `content=record` is exported
# in json, csv, xml and eav (json) — straight to the sandbox with the
# account's token, and through `redcap-warden serve` (durable file ledger)
# with a client key — $RUNS times each, alternating; the median wall time of
# each is reported with their ratio, and the gateway's peak RSS growth
# during its exports of that size (VmHWM, reset before each size through
# /proc/PID/clear_refs). Every gateway export's `response` entry is checked
# to name every record.
#
# Usage: bench/export.sh
# Environment: BENCH_DIR (a directory on a real disk; default /var/tmp),
#   SIZES (default "10000 100000 1000000"), RUNS (default 3), SKIP_BUILD=1,
#   KEEP=1 (keep the work directory).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
bench=export.sh
# shellcheck source=bench/lib.sh
. "$repo/bench/lib.sh"
SIZES=${SIZES:-"10000 100000 1000000"}
RUNS=${RUNS:-3}

bench_workdir warden-export
for t in curl python3; do command -v $t >/dev/null || die "$t is required"; done
bench_binaries "-p redcap-warden -p redcap-sandbox" redcap-warden redcap-sandbox

# --- the sandbox and a project of 20 fields ------------------------------------
super=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F)
sb_port=$(free_port)
"$bin/redcap-sandbox" serve --listen "127.0.0.1:$sb_port" --data "$work/sandbox" \
    --super-token "$super" --admin-secret bench --timezone UTC >"$work/sandbox.log" 2>&1 &
pids+=($!)
wait_port "$sb_port" redcap-sandbox
api="http://127.0.0.1:$sb_port/api/"
token=$(curl -sf -d "token=$super" -d content=project -d format=json \
    --data-urlencode 'data=[{"project_title":"Export benchmark","purpose":0}]' "$api")
[[ ${#token} == 32 ]] || die "project creation answered: $token"
python3 - "$work/metadata.json" <<'EOF'
import json, sys
fields = [{"field_name": "record_id", "form_name": "visit", "field_type": "text", "field_label": "Record ID"}]
fields += [{"field_name": f"f{i:02}", "form_name": "visit", "field_type": "text", "field_label": f"Field {i}"} for i in range(1, 20)]
json.dump(fields, open(sys.argv[1], "w"))
EOF
curl -sf -d "token=$token" -d content=metadata -d format=json \
    --data-urlencode "data@$work/metadata.json" "$api" >/dev/null

# --- a throwaway installation ------------------------------------------------------
gw_port=$(free_port)
admin_port=$(free_port)
mkdir "$work/warden"
cd "$work/warden"
"$bin/redcap-warden" init --redcap-url "$api" --time-zone UTC >"$work/init.log" 2>&1 ||
    { cat "$work/init.log" >&2; die "init failed"; }
cat >>warden.toml <<EOF

[gateway]
listen = "127.0.0.1:$gw_port"
admin_listen = "127.0.0.1:$admin_port"
outbound_per_minute = 100000000

[[study]]
name = "bench"

# The project creator's token, for simplicity: the benchmark measures the
# proxy, not rights.
[[account]]
name = "bench-account"
username = "site_admin"
secret = "redcap/bench"
study = "bench"

[[client]]
name = "bench-app"
account = "bench-account"
allow = ["record:export", "metadata"]
EOF
"$bin/redcap-warden" config check >&2
printf '%s' "$token" | "$bin/redcap-warden" secrets put redcap/bench --reason "export benchmark" >&2
"$bin/redcap-warden" keys issue bench-app --to-file "$work/app.key" --reason "export benchmark" >&2
key=$(tr -d '\n' <"$work/app.key")
"$bin/redcap-warden" serve >"$work/gateway.log" 2>&1 &
gw_pid=$!
pids+=($gw_pid)
wait_port "$gw_port" "the gateway"
gw="http://127.0.0.1:$gw_port/api/"

# --- growing the project -------------------------------------------------------------
have=0
grow_to() { # records
    local want=$1 batch=50000
    while ((have < want)); do
        local n=$((want - have < batch ? want - have : batch))
        python3 - "$have" "$n" "$work/batch.form" "$token" <<'EOF'
import json, sys, urllib.parse
start, n, out, token = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = [dict({"record_id": str(i)}, **{f"f{k:02}": f"value {k} of record {i}" for k in range(1, 20)})
        for i in range(start + 1, start + n + 1)]
open(out, "w").write(urllib.parse.urlencode({"token": token, "content": "record", "format": "json", "data": json.dumps(rows)}))
EOF
        curl -sf -H 'Content-Type: application/x-www-form-urlencoded' --data-binary "@$work/batch.form" "$api" >/dev/null ||
            die "import failed"
        have=$((have + n))
    done
}

# One export: prints wall seconds; the body goes to $work/out.
export_once() { # url credential format type
    curl -s -o "$work/out" -w '%{time_total}' -d "token=$2" -d content=record \
        -d "format=$3" -d "type=$4" "$1"
}

median() { python3 -c 'import sys,statistics; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

printf '| records | format | direct (s) | gateway (s) | ratio | body (MB) | gateway peak RSS growth (MB) |\n'
printf '|---|---|---|---|---|---|---|\n'
for size in $SIZES; do
    grow_to "$size"
    for fmt in json csv xml eav; do
        format=$fmt type=flat
        [[ $fmt == eav ]] && format=json type=eav
        echo 5 >"/proc/$gw_pid/clear_refs"
        rss0=$(awk '/VmRSS/ {print $2}' "/proc/$gw_pid/status")
        direct=() through=()
        for _ in $(seq "$RUNS"); do
            direct+=("$(export_once "$api" "$token" "$format" "$type")")
            through+=("$(export_once "$gw" "$key" "$format" "$type")")
        done
        bytes=$(stat -c %s "$work/out")
        hwm=$(awk '/VmHWM/ {print $2}' "/proc/$gw_pid/status")
        d=$(median "${direct[@]}")
        g=$(median "${through[@]}")
        python3 - "$size" "$fmt" "$d" "$g" "$bytes" "$rss0" "$hwm" <<'EOF'
import sys
size, fmt, d, g, b, rss0, hwm = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:])
print(f"| {int(size):,} | {fmt} | {d:.3f} | {g:.3f} | {g / d:.2f} | {b / 1e6:.1f} | {(hwm - rss0) / 1024:.1f} |")
EOF
    done
    # Every gateway export of this size named every record.
    "$bin/redcap-warden" ledger tail -n 200 | python3 -c '
import json, sys
size = int(sys.argv[1])
n = [len(e["record_ids"]) for e in map(json.loads, sys.stdin) if e["kind"] == "response" and e.get("delivery") == "complete"]
last = n[-4 * int(sys.argv[2]):]
bad = [x for x in last if x != size]
if bad: sys.exit(f"export.sh: response entries named {bad} records, not {size}")
' "$size" "$RUNS" || die "a response entry did not name every record"
done

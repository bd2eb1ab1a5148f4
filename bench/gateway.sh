#!/usr/bin/env bash
# The gateway benchmark (issue 6, item 11). Not a test: never run by
# scripts/test or .ci/run. On 127.0.0.1 only; every process it starts is
# stopped by PID on exit.
#
# Measures, in one run, with the same wrk load against each:
#   (a) direct   wrk → fixed-upstream (a REDCap stand-in answering `15.5.0`)
#   (b) gateway  wrk → redcap-warden serve (durable file ledger) → fixed-upstream
#   (c) nginx    wrk → nginx proxy_pass (Debian) → fixed-upstream
# plus the disk's raw append+fdatasync latency (fsync-probe, 300-byte records)
# on the filesystem that holds the ledger, before and after the loads.
#
# Each target gets two loads: 1 connection (latency: nothing queues, so p50
# is the cost of one request) and $CONNS connections (throughput). wrk is
# pinned to CPU $LOAD_CPU; the server under test and fixed-upstream to CPU
# $SERVER_CPU. The gateway's outbound limiter is set to 100000000 calls a
# minute, i.e. effectively off.
#
# Usage: bench/gateway.sh
# Environment: BENCH_DIR (a directory on a real disk; default /var/tmp),
#   DURATION (per load, default 10s), CONNS (default 32), LOAD_CPU (0),
#   SERVER_CPU (1), SKIP_BUILD=1 (use existing release binaries), KEEP=1
#   (keep the throwaway directory), PERF=1 (perf record the gateway during
#   its throughput load; report in the work directory, implies KEEP=1).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
bench=gateway.sh
# shellcheck source=bench/lib.sh
. "$repo/bench/lib.sh"
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
LOAD_CPU=${LOAD_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
[[ ${PERF:-0} == 1 ]] && KEEP=1

# --- the machine, tools and binaries ---------------------------------------
bench_workdir warden-bench
(($(nproc) >= 2)) || die "needs 2 CPUs to pin the load generator and the server apart"
findmnt -T "$work" >&2
missing=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
command -v wrk >/dev/null || missing+=(wrk)
if ((${#missing[@]})); then
    say "== installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
for t in taskset curl; do command -v $t >/dev/null || die "$t is required"; done
bench_binaries "-p redcap-warden -p warden-bench" redcap-warden fixed-upstream fsync-probe

# --- the fixed-response upstream ---------------------------------------------
up_port=$(free_port)
taskset -c "$SERVER_CPU" "$bin/fixed-upstream" --listen "127.0.0.1:$up_port" >"$work/upstream.log" 2>&1 &
up_pid=$!
pids+=($up_pid)
wait_port "$up_port" fixed-upstream

# --- a throwaway installation --------------------------------------------------
say "== setting up $work/warden"
gw_port=$(free_port)
admin_port=$(free_port)
mkdir "$work/warden"
cd "$work/warden"
"$bin/redcap-warden" init --redcap-url "http://127.0.0.1:$up_port/api/" --time-zone UTC >"$work/init.log" 2>&1 ||
    { cat "$work/init.log" >&2; die "init failed"; }
cat >>warden.toml <<EOF

[gateway]
listen = "127.0.0.1:$gw_port"
admin_listen = "127.0.0.1:$admin_port"
# The benchmark measures the proxy, not REDCap's ban threshold: the outbound
# limiter is effectively off (never use this against a real REDCap).
outbound_per_minute = 100000000

[[study]]
name = "bench"

[[account]]
name = "bench-account"
username = "svc_bench"
secret = "redcap/bench"
study = "bench"

[[client]]
name = "bench-app"
account = "bench-account"
allow = ["version"]
EOF
"$bin/redcap-warden" config check >&2
# A made-up token: the upstream never checks it.
od -An -N16 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F |
    "$bin/redcap-warden" secrets put redcap/bench --reason "gateway benchmark" >&2
"$bin/redcap-warden" keys issue bench-app --to-file "$work/bench-app.key" --reason "gateway benchmark" >&2
key=$(tr -d '\n' <"$work/bench-app.key")

taskset -c "$SERVER_CPU" "$bin/redcap-warden" serve >"$work/gateway.log" 2>&1 &
gw_pid=$!
pids+=($gw_pid)
wait_port "$gw_port" "the gateway"

# --- nginx -------------------------------------------------------------------
ng_port=$(free_port)
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    upstream redcap { server 127.0.0.1:$up_port; keepalive 64; }
    server {
        listen 127.0.0.1:$ng_port;
        location /api/ {
            proxy_pass http://redcap;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
taskset -c "$SERVER_CPU" "$nginx_bin" -c "$work/nginx/nginx.conf" -p "$work/nginx" >"$work/nginx.log" 2>&1 &
ng_pid=$!
pids+=($ng_pid)
wait_port "$ng_port" nginx
ng_pids="$ng_pid $(pgrep -P "$ng_pid" | tr '\n' ' ')"

# --- check each path answers as REDCap would ------------------------------------
body="token=$key&content=version&format=json"
for port in "$up_port" "$gw_port" "$ng_port"; do
    got=$(curl -sS -o - -w ' %{http_code}' --data "$body" "http://127.0.0.1:$port/api/")
    [[ $got == "15.5.0 200" ]] || die "127.0.0.1:$port answered '$got' (logs in $work)"
done

# --- the loads -----------------------------------------------------------------
cat >"$work/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = "token=" .. os.getenv("WARDEN_BENCH_KEY") .. "&content=version&format=json"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
EOF
export WARDEN_BENCH_KEY=$key

# wrk's latency in ms, from "50%  123.45us".
to_ms() {
    awk '{ v = $1; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
           f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1;
           if (f < 0) { print "nan" } else { printf "%.3f\n", v * f } }'
}

# CPU time (ms) the given processes have used: the proxy's own cost per
# request, apart from fixed-upstream's.
cpu_ms() {
    local p t=0
    for p in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done
    echo $((t * 1000 / $(getconf CLK_TCK)))
}

declare -A p50 p99 rps cpu syncs
load() { # name, port, connections, PIDs of the server under test (not the upstream)
    local name=$1 port=$2 c=$3 out="$work/wrk-$1-c$3.txt" before after n stat=
    shift 3
    taskset -c "$LOAD_CPU" wrk -t1 -c"$c" -d2s -s "$work/post.lua" "http://127.0.0.1:$port/api/" >/dev/null # warm-up
    if [[ $name == gateway ]] && command -v perf >/dev/null; then
        # fdatasync calls of the gateway's ledger during the load.
        perf stat -x, -e syscalls:sys_enter_fdatasync -p "$gw_pid" -o "$work/syncs-c$c.txt" 2>/dev/null &
        stat=$!
    fi
    before=$(cpu_ms "$@")
    taskset -c "$LOAD_CPU" wrk -t1 -c"$c" -d"$DURATION" --latency -s "$work/post.lua" "http://127.0.0.1:$port/api/" >"$out"
    after=$(cpu_ms "$@")
    if [[ -n $stat ]]; then
        kill -INT "$stat" 2>/dev/null || true
        wait "$stat" 2>/dev/null || true
    fi
    if grep -q -e 'Non-2xx' -e 'Socket errors' "$out"; then
        cat "$out" >&2
        die "$name with $c connections: errors (logs in $work)"
    fi
    n=$(awk '/requests in/ { print $1 }' "$out")
    p50[$name,$c]=$(awk '$1 == "50%" { print $2 }' "$out" | to_ms)
    p99[$name,$c]=$(awk '$1 == "99%" { print $2 }' "$out" | to_ms)
    rps[$name,$c]=$(awk '$1 == "Requests/sec:" { printf "%.0f", $2 }' "$out")
    cpu[$name,$c]=$(awk -v ms=$((after - before)) -v n="$n" 'BEGIN { printf "%.0f", ms * 1000 / n }')
    syncs[$name,$c]=-
    if [[ -s $work/syncs-c$c.txt && $name == gateway ]]; then
        syncs[$name,$c]=$(awk -F, -v n="$n" '/fdatasync/ { printf "%.2f", $1 / n }' "$work/syncs-c$c.txt")
    fi
    say "$name c=$c: p50 ${p50[$name,$c]} ms, p99 ${p99[$name,$c]} ms, ${rps[$name,$c]} req/s, ${cpu[$name,$c]} µs CPU/request, fdatasync/request ${syncs[$name,$c]}"
}

# On the server's CPU, where the ledger's syncs run: on a busy machine a
# sync waited for from a contended CPU comes back a scheduler tick late.
probe() {
    taskset -c "$SERVER_CPU" "$bin/fsync-probe" --dir "$work/warden/data/ledger" --count 5000 --bytes 300
}

say "== loads: $DURATION each, after a 2 s warm-up; wrk on CPU $LOAD_CPU, servers on CPU $SERVER_CPU"
say "load before: $(uptime)"
load1=$(cut -d' ' -f1 /proc/loadavg)
quiet=yes
awk -v l="$load1" 'BEGIN { exit !(l > 1.0) }' && quiet=no &&
    say "WARNING: load average $load1: the machine is not quiet; the figures (the fsync baseline most) are unreliable"
probe_before=$(probe)
say "fsync-probe: $probe_before"
for c in 1 "$CONNS"; do
    load direct "$up_port" "$c" "$up_pid"
    if [[ ${PERF:-0} == 1 && $c != 1 ]] && command -v perf >/dev/null; then
        perf record -F 999 -p "$gw_pid" -o "$work/perf.data" -- sleep 8 >/dev/null 2>&1 &
        perf_pid=$!
        load gateway "$gw_port" "$c" "$gw_pid"
        wait "$perf_pid" || true
        perf report -i "$work/perf.data" --no-children --stdio --percent-limit 1 >"$work/perf.txt" 2>/dev/null || true
    else
        load gateway "$gw_port" "$c" "$gw_pid"
    fi
    # shellcheck disable=SC2086 # the master and its worker
    load nginx "$ng_port" "$c" $ng_pids
done
probe_after=$(probe)
say "fsync-probe: $probe_after"
say "load after: $(uptime)"
ledger_lines=$(cat "$work"/warden/data/ledger/*.jsonl 2>/dev/null | wc -l || true)

# --- the table -----------------------------------------------------------------------
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }
fsync_p50_ms=$(awk -v a="$(field p50_us "$probe_before")" -v b="$(field p50_us "$probe_after")" 'BEGIN { printf "%.3f", (a + b) / 2000 }')
calc() { awk "BEGIN { printf \"$1\", $2 }"; }

echo
echo "gateway benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $fstype ($(findmnt -n -o SOURCE -T "$work")), wrk $DURATION per load"
echo "load average at start $load1$([[ $quiet == no ]] && echo ' — NOT QUIET, figures unreliable')"
echo
echo "| target | connections | p50 ms | p99 ms | req/s | p50 − direct ms | req/s ÷ nginx | server CPU µs/req | fdatasync/req |"
echo "|---|---|---|---|---|---|---|---|---|"
for c in 1 "$CONNS"; do
    for t in direct gateway nginx; do
        echo "| $t | $c | ${p50[$t,$c]} | ${p99[$t,$c]} | ${rps[$t,$c]} | $(calc %+.3f "${p50[$t,$c]} - ${p50[direct,$c]}") | $(calc %.2f "${rps[$t,$c]} / ${rps[nginx,$c]}") | ${cpu[$t,$c]} | ${syncs[$t,$c]} |"
    done
done
echo
echo "server CPU: the proxy's own processes (for direct: fixed-upstream), user+system time per request."
echo
echo "raw append+fdatasync (300 B): before $probe_before"
echo "                              after  $probe_after"
echo
overhead=$(calc %.3f "${p50[gateway,1]} - ${p50[direct,1]}")
allowed=$(calc %.3f "$fsync_p50_ms + 0.3")
ratio=$(calc %.2f "${rps[gateway,$CONNS]} / ${rps[nginx,$CONNS]}")
verdict() { awk "BEGIN { exit !($1) }" && echo met || echo MISSED; }
echo "target 1: gateway p50 overhead (1 connection) $overhead ms ≤ fsync p50 $fsync_p50_ms ms + 0.3 = $allowed ms: $(verdict "$overhead <= $allowed")"
echo "target 2: gateway throughput ($CONNS connections) ${rps[gateway,$CONNS]} req/s ≥ 0.8 × nginx ${rps[nginx,$CONNS]}: ratio $ratio, $(verdict "$ratio >= 0.8")"
[[ -n $ledger_lines ]] && echo "ledger lines written: $ledger_lines"
[[ -f $work/perf.txt ]] && echo "perf report of the gateway's throughput load: $work/perf.txt"
exit 0

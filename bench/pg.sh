#!/usr/bin/env bash
# The PostgreSQL benchmark (issue #15, item 4). Not a test: never run by
# scripts/test or .ci/run. On 127.0.0.1 only; every process it starts is
# stopped by PID on exit, and its throwaway PostgreSQL with pg_ctl.
#
# Measures, in one run, against one throwaway PostgreSQL 15 on a real disk
# (durable settings: fsync and synchronous_commit on, as the ledger
# requires):
#   (a) PostgreSQL's own commit rate: N connections each inserting one
#       300-byte row and committing, N = 1, 8, 64 (pg-append's baseline);
#   (b) the PostgreSQL ledger's durable append rate with N closed-loop
#       writers in one process (one PgLedger: one gateway), and spread over
#       two PgLedgers (two replicas' writers), N = 1, 8, 64;
#   (c) wrk → one `redcap-warden serve` on the PostgreSQL backend →
#       fixed-upstream, against wrk → two replicas (the same installation
#       as crates/cli/tests/common/cluster.rs deploys them: own config and
#       data directory each, one schema) with the connections split between
#       them; every call also takes a slot in the shared outbound window.
# Reported as ratios: (b) ÷ (a) at the same N, two gateways ÷ one.
#
# Usage: bench/pg.sh
# Environment: BENCH_DIR (a directory on a real disk; default /var/tmp),
#   SECS (per append measurement, default 5), DURATION (per wrk load,
#   default 10s), CONNS (wrk connections in all, default 32),
#   SKIP_BUILD=1, KEEP=1, BENCH_PROFILE=dev (the dev build, unoptimised).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
bench=pg.sh
# shellcheck source=bench/lib.sh
. "$repo/bench/lib.sh"
SECS=${SECS:-5}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

bench_workdir warden-pg-bench
[[ -x $PGBIN/initdb ]] || die "PostgreSQL 15 is required ($PGBIN/initdb; apt-get install postgresql-15)"
for t in wrk curl psql; do command -v $t >/dev/null || die "$t is required"; done
bench_binaries "-p redcap-warden -p warden-bench" redcap-warden fixed-upstream pg-append

# --- a throwaway PostgreSQL on the work directory's disk -------------------------
# initdb and postgres refuse to run as root: as root, as the postgres user.
as_pg=()
if [[ $(id -u) == 0 ]]; then
    as_pg=(runuser -u postgres --)
    chown postgres:postgres "$work"
fi
pg_port=$(free_port)
"${as_pg[@]}" "$PGBIN/initdb" -D "$work/pgdata" -U warden --auth=trust -E UTF8 \
    --locale=C.UTF-8 >"$work/initdb.log" 2>&1 || { cat "$work/initdb.log" >&2; die "initdb failed"; }
"${as_pg[@]}" "$PGBIN/pg_ctl" -D "$work/pgdata" -l "$work/pg.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $work -c max_connections=200" start >/dev/null
pg_stop() { "${as_pg[@]}" "$PGBIN/pg_ctl" -D "$work/pgdata" -m fast -w stop >/dev/null 2>&1 || true; }
trap 'pg_stop; bench_cleanup' EXIT
psql "postgresql://warden@127.0.0.1:$pg_port/postgres" -v ON_ERROR_STOP=1 -qc 'CREATE DATABASE warden'
url="postgresql://warden@127.0.0.1:$pg_port/warden"
say "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on $fstype, data in $work/pgdata"

say "== load before: $(uptime)"
load1=$(cut -d' ' -f1 /proc/loadavg)
quiet=yes
awk -v l="$load1" 'BEGIN { exit !(l > 1.0) }' && quiet=no &&
    say "WARNING: load average $load1: the machine is not quiet; the figures are unreliable"

# --- (a) and (b): appends against commits --------------------------------------------
say "== appends: $SECS s per measurement"
"$bin/pg-append" --url "$url" --secs "$SECS" --writers 1,8,64 --handles 1 | tee "$work/append-1.txt" >&2
"$bin/pg-append" --url "$url" --secs "$SECS" --writers 1,8,64 --handles 2 --only ledger | tee "$work/append-2.txt" >&2

# --- (c): one gateway against two ------------------------------------------------------
up_port=$(free_port)
"$bin/fixed-upstream" --listen "127.0.0.1:$up_port" >"$work/upstream.log" 2>&1 &
pids+=($!)
wait_port "$up_port" fixed-upstream

say "== setting up two replicas in $work/node-a and $work/node-b"
mkdir "$work/node-a" "$work/node-b"
mkdir -m 700 "$work/node-b/data"
(cd "$work/node-a" && "$bin/redcap-warden" init --redcap-url "http://127.0.0.1:$up_port/api/" --time-zone UTC) >"$work/init.log" 2>&1 ||
    { cat "$work/init.log" >&2; die "init failed"; }
shared=$work/node-a/data
template=$(cat "$work/node-a/warden.toml")
declare -A port admin
for node in node-a node-b; do
    port[$node]=$(free_port)
    admin[$node]=$(free_port)
    toml=${template/data_dir = \"data\"/data_dir = \"$work/$node/data\"}
    toml=${toml/\[secrets.file\]$'\n'/[secrets.file]$'\n'path = \"$shared/secrets.age\"$'\n'identity = \"$shared/identity.txt\"$'\n'}
    toml=${toml/\[ledger\]$'\n'/[ledger]$'\n'backend = \"postgres\"$'\n'dir = \"$shared/ledger\"$'\n'}
    cat >"$work/$node/warden.toml" <<EOF
$toml

[ledger.postgres]
url = "$url"
schema = "redcap_warden"

[gateway]
listen = "127.0.0.1:${port[$node]}"
admin_listen = "127.0.0.1:${admin[$node]}"
keys_file = "$shared/client-keys.json"
accounts_file = "$shared/account-status.json"
# The benchmark measures the gateways, not REDCap's ban threshold: the
# shared outbound window admits every call, but each still takes a slot
# (never use this figure against a real REDCap).
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
done
cd "$work/node-a"
"$bin/redcap-warden" config check >&2
# A made-up token: the upstream never checks it. The first write moves the
# file ledger `init` wrote into PostgreSQL.
od -An -N16 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F |
    "$bin/redcap-warden" secrets put redcap/bench --reason "pg benchmark" >&2
"$bin/redcap-warden" keys issue bench-app --to-file "$work/bench-app.key" --reason "pg benchmark" >&2
key=$(tr -d '\n' <"$work/bench-app.key")

declare -A gw_pid
start_gw() {
    (cd "$work/$1" && exec "$bin/redcap-warden" serve) >>"$work/$1.log" 2>&1 &
    gw_pid[$1]=$!
    pids+=(${gw_pid[$1]})
    wait_port "${port[$1]}" "$1"
}
start_gw node-a
start_gw node-b
body="token=$key&content=version&format=json"
for node in node-a node-b; do
    got=$(curl -sS -o - -w ' %{http_code}' --data "$body" "http://127.0.0.1:${port[$node]}/api/")
    [[ $got == "15.5.0 200" ]] || die "$node answered '$got' (logs in $work)"
done

cat >"$work/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = "token=" .. os.getenv("WARDEN_BENCH_KEY") .. "&content=version&format=json"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
EOF
export WARDEN_BENCH_KEY=$key

# wrk against each port given, at once, CONNS split between them; prints
# the summed req/s.
wrk_rps() {
    local c=$((CONNS / $#)) p i=0 outs=()
    for p in "$@"; do
        wrk -t1 -c"$c" -d2s -s "$work/post.lua" "http://127.0.0.1:$p/api/" >/dev/null & # warm-up
    done
    wait
    for p in "$@"; do
        i=$((i + 1))
        wrk -t1 -c"$c" -d"$DURATION" -s "$work/post.lua" "http://127.0.0.1:$p/api/" >"$work/wrk-$#-$i.txt" &
        outs+=("$work/wrk-$#-$i.txt")
    done
    wait
    for o in "${outs[@]}"; do
        if grep -q -e 'Non-2xx' -e 'Socket errors' "$o"; then
            cat "$o" >&2
            die "wrk: errors (logs in $work)"
        fi
    done
    awk '$1 == "Requests/sec:" { s += $2 } END { printf "%.0f\n", s }' "${outs[@]}"
}

say "== loads: $DURATION each, $CONNS connections in all, after a 2 s warm-up"
one=$(wrk_rps "${port[node-a]}")
say "one gateway: $one req/s"
two=$(wrk_rps "${port[node-a]}" "${port[node-b]}")
say "two gateways: $two req/s"
say "== load after: $(uptime)"
entries=$(psql "$url" -Atc 'SELECT count(*) FROM redcap_warden.entries')
slots=$(psql "$url" -Atc 'SELECT count(*) FROM redcap_warden.outbound_slots')
for node in node-a node-b; do
    kill -TERM "${gw_pid[$node]}"
    wait "${gw_pid[$node]}" || true
done
if (cd "$work/node-a" && "$bin/redcap-warden" ledger verify >"$work/verify.txt" 2>&1); then
    verify="passed"
else
    verify="FAILED (see $work/verify.txt)"
fi

# --- the table -------------------------------------------------------------------------
rate() { # kind writers file field
    awk -v k="$1" -v w="writers=$2" -v field="$4" '$1 == k && $2 == w { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == field) print kv[2] } }' "$3"
}
calc() { awk "BEGIN { printf \"$1\", $2 }"; }

echo
echo "PostgreSQL benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $fstype ($(findmnt -n -o SOURCE -T "$work")), PostgreSQL 15 on the same machine, ${BENCH_PROFILE:-release} build"
echo "load average at start $load1$([[ $quiet == no ]] && echo ' — NOT QUIET, figures unreliable')"
echo
echo "| writers | PostgreSQL commits/s | ledger appends/s, 1 handle | ÷ commits | ledger appends/s, 2 handles | ÷ commits |"
echo "|---|---|---|---|---|---|"
for n in 1 8 64; do
    base=$(rate baseline "$n" "$work/append-1.txt" commits_per_s)
    l1=$(rate ledger "$n" "$work/append-1.txt" appends_per_s)
    l2=$(rate ledger "$n" "$work/append-2.txt" appends_per_s)
    echo "| $n | $base | $l1 | $(calc %.2f "$l1 / $base") | $l2 | $(calc %.2f "$l2 / $base") |"
done
echo
echo "| gateways (PostgreSQL ledger, shared outbound window) | req/s ($CONNS connections in all) | ÷ one gateway |"
echo "|---|---|---|"
echo "| 1 | $one | 1.00 |"
echo "| 2 | $two | $(calc %.2f "$two / $one") |"
echo
echo "ledger entries after the loads: $entries; outbound slots made: $slots; ledger verify: $verify"
exit 0

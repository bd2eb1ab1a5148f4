# What the benchmarks in bench/ share; sourced, not run. The script sets
# `bench` (its name, for messages) and `repo` first.

BENCH_DIR=${BENCH_DIR:-/var/tmp}

say() { printf '%s\n' "$*" >&2; }
die() {
    say "$bench: $*"
    exit 2
}

# bench_workdir PREFIX: prints the machine, makes the work directory $work
# under $BENCH_DIR (refused on tmpfs, ramfs and overlay: their fdatasync
# proves nothing) and sets $fstype. Every PID added to $pids is stopped on
# exit, and $work removed unless KEEP=1.
bench_workdir() {
    say "== machine"
    say "nproc: $(nproc); $(uptime)"
    say "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    command -v findmnt >/dev/null || die "findmnt is required"
    mkdir -p "$BENCH_DIR"
    work=$(mktemp -d "$BENCH_DIR/$1.XXXXXX")
    fstype=$(findmnt -n -o FSTYPE -T "$work")
    case $fstype in
    tmpfs | ramfs | overlay)
        rmdir "$work"
        die "$work is on $fstype, not a real disk: set BENCH_DIR to a directory on one"
        ;;
    esac
    pids=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ ${KEEP:-0} == 1 ]]; then say "kept $work"; else rm -rf "$work"; fi
}

# bench_binaries "PACKAGES" BINARY...: builds the packages' release
# binaries (unless SKIP_BUILD=1) and copies the binaries to $work/bin (the
# shared target directory may be rebuilt while a benchmark runs); sets $bin.
# BENCH_PROFILE=dev takes the dev build instead (the workspace's own code
# unoptimised: say so next to any figure measured with it).
bench_binaries() {
    local packages=$1 b profile=release dir=release
    shift
    if [[ ${BENCH_PROFILE:-release} == dev ]]; then profile=dev dir=debug; fi
    bin=${CARGO_TARGET_DIR:-$repo/target}/$dir
    if [[ ${SKIP_BUILD:-0} != 1 ]]; then
        say "== building $profile binaries"
        # shellcheck disable=SC2086 # one -p per package
        (cd "$repo" && cargo build --profile "$profile" $packages >&2)
    fi
    mkdir "$work/bin"
    for b in "$@"; do
        [[ -x $bin/$b ]] || die "$bin/$b is missing (run without SKIP_BUILD=1)"
        cp "$bin/$b" "$work/bin/"
    done
    bin=$work/bin
}

# A loopback port nothing listens on.
free_port() {
    local p
    for _ in $(seq 50); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    die "no free loopback port found"
}

# wait_port PORT WHAT: waits up to 30 s for WHAT to listen on PORT.
wait_port() {
    for _ in $(seq 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return
        sleep 0.1
    done
    die "$2 did not start listening on 127.0.0.1:$1 (logs in $work)"
}

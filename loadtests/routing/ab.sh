#!/usr/bin/env bash
# Compares two vacd binaries (say, release builds of two commits) under the routing load:
# ROUNDS times each, alternating (A B A B …) so that the host's drift hits both alike. Each run
# starts a fresh vacd on a fresh SQLite file, warms it up with 2,000 interactions, then runs
# `routing URL INTERACTIONS 100 CLIENTS PID [RATE]` and prints its figures; with STAT=1 also
# the server's system calls and context switches over that run (`perf stat`, attached once the
# agents are logged in). From run to run the same binary's figures spread by ±15 % on these
# machines: compare several rounds, never one. Asserts nothing; everything goes to 127.0.0.1.
#
#   cp target/release/vacd /tmp/vacd-before   # build the other commit, then:
#   loadtests/routing/ab.sh /tmp/vacd-before target/release/vacd [ROUNDS] [INTERACTIONS] [CLIENTS] [RATE]
#   STAT=1 loadtests/routing/ab.sh A B 4 60000 256 12000

set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
a=$(realpath "$1")
b=$(realpath "$2")
rounds=${3:-3}
interactions=${4:-100000}
clients=${5:-256}
rate=${6:-}
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
port=18590
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release -q -p vacd-loadtests
source "$here/../vacd.sh"
events='syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_writev,syscalls:sys_enter_futex,syscalls:sys_enter_pwrite64,context-switches'

run() {
    vacd_bin=$1
    work=$(mktemp -d /tmp/routingab.XXXXXX)
    start_vacd VACD_DATABASE__URL="sqlite://$work/vacd.db?mode=rwc" VACD_HTTP__MAX_CONNECTIONS_PER_SOURCE=0
    local url="http://127.0.0.1:$port"
    "$target/release/routing" "$url" 2000 100 32 >/dev/null
    "$target/release/routing" "$url" "$interactions" 100 "$clients" "$vacd" ${rate:+"$rate"} >"$work/figures" &
    local generator=$! stat=
    if [ "${STAT:-0}" = 1 ]; then
        for _ in $(seq 600); do
            grep -q "agents ready" "$work/figures" && break
            sleep 0.05
        done
        perf stat -e "$events" -p "$vacd" -o "$work/stat" &
        stat=$!
    fi
    wait "$generator"
    grep -E "^(routed|create|to offer|server|generator)" "$work/figures" | sed 's/  (from sending.*//'
    if [ -n "$stat" ]; then
        kill -INT "$stat"
        wait "$stat" || true
        awk '/syscalls:|context-switches/ { printf "  %s %s", $2, $1 } END { print "" }' "$work/stat"
    fi
    kill "$vacd"
    wait "$vacd" 2>/dev/null || true
    rm -rf "$work"
}

for round in $(seq "$rounds"); do
    for side in A B; do
        [ "$side" = A ] && bin=$a || bin=$b
        echo "== round $round, $side: $bin, $interactions interactions, $clients clients${rate:+, $rate/s}"
        run "$bin"
    done
done

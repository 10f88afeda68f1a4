#!/usr/bin/env bash
# Concurrent silently monitored calls over real UDP: builds vacd and sip_monitor in release,
# starts vacd on its default config (SQLite, demo tenant) with other ports, a fresh database and
# MD5 first among the digest algorithms, then runs `sip_monitor` once per call count in CALLS
# (a fresh vacd each time). Prints sip_monitor's figures; asserts nothing.
#
#   loadtests/sip/monitor.sh                    # CALLS="50 100", RATE=20, HOLD_SECONDS=15
#
# Everything goes to 127.0.0.1, every wait is bounded, and every process started here is ended
# on exit (trap).

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

CALLS=${CALLS:-"50 100"}
RATE=${RATE:-20}
HOLD_SECONDS=${HOLD_SECONDS:-15}
target=${CARGO_TARGET_DIR:-$root/target}
http_port=18390
sip_port=15360

work=$(mktemp -d /tmp/sipmon.XXXXXX)
echo "work directory: $work"
vacd=""
cleanup() {
    if [[ -n "$vacd" ]]; then
        kill "$vacd" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$vacd" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$vacd" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cargo build --release -q -p vacd -p vacd-loadtests

for calls in $CALLS; do
    rm -f "$work/vacd.db"*
    sed -e "s#^listen = .*#listen = \"127.0.0.1:$http_port\"#" \
        -e "s#^url = .*#url = \"sqlite://$work/vacd.db?mode=rwc\"#" \
        -e "s#^udp = .*#udp = \"127.0.0.1:$sip_port\"#" \
        -e "s#^tcp = .*#tcp = \"127.0.0.1:$sip_port\"#" \
        -e "s#^rate_limit_per_second = .*#rate_limit_per_second = 10000000#" \
        -e 's#^digest_algorithms = .*#digest_algorithms = ["MD5", "SHA-256"]#' \
        -e 's#^level = .*#level = "warn"#' \
        config/vacd.toml >"$work/vacd.toml"
    "$target/release/vacd" --config "$work/vacd.toml" >"$work/vacd-$calls.log" 2>&1 &
    vacd=$!
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$http_port/ready" >/dev/null && break
        kill -0 "$vacd" 2>/dev/null || { cat "$work/vacd-$calls.log" >&2; exit 1; }
        sleep 0.2
    done
    echo "== $calls monitored calls (vacd pid $vacd)"
    timeout $((HOLD_SECONDS * 2 + calls + 300)) "$target/release/sip_monitor" \
        "http://127.0.0.1:$http_port" "127.0.0.1:$sip_port" "$calls" "$RATE" "$HOLD_SECONDS" "$vacd"
    cleanup
    vacd=""
done

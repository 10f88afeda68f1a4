# Sourced by the load test scripts. `start_vacd [VACD_KEY=value …]` starts the release vacd from
# "$target" (or the binary $vacd_bin names) with the default config on 127.0.0.1:$port (SIP on
# free ports, warnings only, log in "$work/vacd.log") and the settings given, sets $vacd to its
# pid, stops it and removes $work when the script exits, and returns once it answers /ready.
start_vacd() {
    env VACD_HTTP__LISTEN="127.0.0.1:$port" VACD_SIP__UDP=127.0.0.1:0 VACD_SIP__TCP=127.0.0.1:0 \
        VACD_LOG__LEVEL=warn "$@" \
        "${vacd_bin:-$target/release/vacd}" --config config/vacd.toml >"$work/vacd.log" 2>&1 &
    vacd=$!
    trap 'kill $vacd 2>/dev/null || true; wait $vacd 2>/dev/null || true; rm -rf "$work"' EXIT
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$port/ready" >/dev/null && return 0
        kill -0 "$vacd" 2>/dev/null || { cat "$work/vacd.log" >&2; exit 1; }
        sleep 0.2
    done
    echo "vacd did not get ready; its log:" >&2
    cat "$work/vacd.log" >&2
    exit 1
}

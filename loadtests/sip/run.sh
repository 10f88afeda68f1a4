#!/usr/bin/env bash
# The telephony load test: calls through vacd's full ACD flow (trunk INVITE → answered and
# queued → the agent's phone rings → bridged → the agent hangs up), measured with sipp, then the
# same sipp scenarios through Kamailio as a stateful proxy for comparison, then a concurrency
# run with RTP relayed across every bridge. Prints figures; asserts nothing.
#
#   loadtests/sip/run.sh            # from the workspace root or anywhere
#
# Knobs (environment): AGENTS (2000), RATES (calls/s tried in turn, "100 200 …"), STEP_SECONDS
# (10), CALLERS (sipp caller processes in parallel, 4), PHONES (sipp agent-phone processes, 2),
# KAMAILIO_RATES, CONCURRENCY (bridged calls held at once, tried in turn, "500 1000 1500 2000"),
# HOLD_SECONDS (40), PERF (1: profile vacd with perf at the top rate), PHASES (which parts run:
# "vacd kamailio concurrency"; "kamailio" alone needs neither vacd's agents nor its set-up),
# CARGO_TARGET_DIR. A rate that fails is tried once more before the search stops: the cores
# are shared, and a stall of a second makes sipp retransmit and fail calls on its own.
#
# What it does: builds vacd and the helpers in release; starts vacd on its default config
# (SQLite, demo tenant) with other ports, a fresh database under a temporary directory, MD5
# first among the digest algorithms (sipp answers MD5) and limits high enough for the load;
# `sip_agents` creates AGENTS agents for the demo queue Sales DE (+4930123456), registers their
# phones at the sipp processes playing agent.xml and keeps their consoles ready; sipp callers
# (caller.xml) call at each rate of RATES until one fails. Everything goes to 127.0.0.1, every
# loop is bounded, and every process started here is ended on exit (trap).

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

AGENTS=${AGENTS:-2000}
RATES=${RATES:-"100 200 400 600 800 1000 1200 1500 2000"}
STEP_SECONDS=${STEP_SECONDS:-10}
CALLERS=${CALLERS:-4}
PHONES=${PHONES:-2}
KAMAILIO_RATES=${KAMAILIO_RATES:-"500 1000 1500 2000 3000 4000 5000"}
CONCURRENCY=${CONCURRENCY:-"500 1000 1500 2000"}
HOLD_SECONDS=${HOLD_SECONDS:-40}
PERF=${PERF:-1}
PHASES=${PHASES:-"vacd kamailio concurrency"}
target=${CARGO_TARGET_DIR:-$root/target}

http_port=18290
sip_port=15260
kamailio_port=15270
phone_port=15280   # sipp agent phones: 15280, 15282, …
caller_port=15300  # sipp callers: 15300, 15302, …
number=+4930123456

work=$(mktemp -d /tmp/sipload.XXXXXX)
echo "work directory: $work"

pids=()
stop() {
    local pid
    for pid in "$@"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "$@"; do
        # Bounded: a process that ignores SIGTERM for 5 s gets SIGKILL.
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    done
}
cleanup() {
    exec 3>&- 2>/dev/null || true
    if ((${#pids[@]})); then
        stop "${pids[@]}"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s %s\n' "$(date +%T)" "$*"; }

# --- build -----------------------------------------------------------------------------------
log "building vacd and the helpers (release)"
cargo build --release -q -p vacd -p vacd-loadtests
command -v sipp >/dev/null || { echo "sipp is missing (Debian package sip-tester)" >&2; exit 1; }

phase() { [[ " $PHASES " == *" $1 "* ]]; }
needs_vacd=0
if phase vacd || phase concurrency; then
    needs_vacd=1
fi

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# --- sipp agent phones --------------------------------------------------------------------------
phones=()
contacts=""
# start_phones NAME SERVER: the phones send their BYEs to SERVER (sipp sends every request to
# the address it was started with).
start_phones() {
    local k port
    phones=()
    for ((k = 0; k < PHONES; k++)); do
        port=$((phone_port + 2 * k))
        (cd "$work" && exec sipp -sf "$here/agent.xml" -i 127.0.0.1 -p "$port" \
            -mp $((phone_port + 1000 + 10 * k)) -timeout 3600s -nostdin -max_socket 20000 \
            -buff_size 4194304 \
            -trace_err -error_file "$work/phone-$k-$1-errors.log" \
            "$2" >"$work/phone-$k-$1.log" 2>&1) &
        phones+=("$!")
        pids+=("$!")
    done
}
for ((k = 0; k < PHONES; k++)); do
    contacts+="${contacts:+,}127.0.0.1:$((phone_port + 2 * k))"
done

lines_seen=0
# Sends a command to sip_agents and prints its one-line answer (bounded wait).
ask() {
    echo "$1" >&3
    local i n
    for ((i = 0; i < ${2:-600}; i++)); do
        n=$(wc -l <"$work/agents.out")
        if ((n > lines_seen)); then
            lines_seen=$n
            tail -n 1 "$work/agents.out"
            return 0
        fi
        kill -0 "$agents_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "sip_agents did not answer '$1'" >&2
    cat "$work/agents.err" >&2
    return 1
}
# --- vacd --------------------------------------------------------------------------------------
rss_idle=0
if ((needs_vacd)); then
    # The default config with other ports, a fresh database and load limits; a config file rather
    # than VACD_* variables because digest_algorithms is a list.
    sed -e "s#^listen = .*#listen = \"127.0.0.1:$http_port\"#" \
        -e "s#^url = .*#url = \"sqlite://$work/vacd.db?mode=rwc\"#" \
        -e "s#^udp = .*#udp = \"127.0.0.1:$sip_port\"#" \
        -e "s#^tcp = .*#tcp = \"127.0.0.1:$sip_port\"#" \
        -e "s#^max_calls = .*#max_calls = 10000#" \
        -e "s#^rate_limit_per_second = .*#rate_limit_per_second = 10000000#" \
        -e 's#^digest_algorithms = .*#digest_algorithms = ["MD5", "SHA-256"]#' \
        -e 's#^level = .*#level = "warn"#' \
        config/vacd.toml >"$work/vacd.toml"
    "$target/release/vacd" --config "$work/vacd.toml" >"$work/vacd.log" 2>&1 &
    vacd=$!
    pids+=("$vacd")
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$http_port/ready" >/dev/null && break
        kill -0 "$vacd" 2>/dev/null || { cat "$work/vacd.log" >&2; exit 1; }
        sleep 0.2
    done
    curl -sf "http://127.0.0.1:$http_port/ready" >/dev/null || { echo "vacd not ready" >&2; exit 1; }
    log "vacd pid $vacd on http 127.0.0.1:$http_port, sip udp 127.0.0.1:$sip_port"
fi

# --- the agents ----------------------------------------------------------------------------------
if ((needs_vacd)); then
    mkfifo "$work/agents.in"
    "$target/release/sip_agents" "http://127.0.0.1:$http_port" "127.0.0.1:$sip_port" "$AGENTS" \
        "$contacts" 3000 <"$work/agents.in" >"$work/agents.out" 2>"$work/agents.err" &
    pids+=("$!")
    agents_pid=$!
    exec 3>"$work/agents.in"
    log "creating $AGENTS agents, registering their phones at $contacts, connecting consoles"
    for ((i = 0; i < 6000; i++)); do
        grep -q '^agents ' "$work/agents.out" 2>/dev/null && break
        kill -0 "$agents_pid" 2>/dev/null || { cat "$work/agents.err" >&2; exit 1; }
        sleep 0.1
    done
    lines_seen=1
    log "$(head -n 1 "$work/agents.out")"
    rss_idle=$(rss_kib "$vacd")
    log "vacd RSS with $AGENTS agents logged in and no calls: $((rss_idle / 1024)) MiB"
fi

# --- a sipp load step -------------------------------------------------------------------------------
# step NAME RATE TARGET: CALLERS sipp callers share RATE calls/s for STEP_SECONDS against
# TARGET. Sets ok (1: every call succeeded, none left over after the step) and step_line.
step() {
    local name=$1 rate=$2 dest=$3 k calls per_rate dir failed=0 success=0 created=0 status=0 c s f
    dir="$work/$name"
    mkdir -p "$dir"
    calls=$((rate * STEP_SECONDS / CALLERS))
    per_rate=$(awk -v r="$rate" -v c="$CALLERS" 'BEGIN { printf "%.2f", r / c }')
    local callers=() start end
    start=$(date +%s.%N)
    for ((k = 0; k < CALLERS; k++)); do
        (cd "$dir" && exec sipp -sf "$here/caller.xml" -s "$number" -i 127.0.0.1 \
            -p $((caller_port + 2 * k)) -mp $((caller_port + 1000 + 10 * k)) \
            -r "$per_rate" -m "$calls" -l 20000 -max_socket 20000 -buff_size 4194304 \
            -timeout $((STEP_SECONDS + 90))s -timeout_error -nostdin \
            -trace_stat -stf "$dir/stat-$k.csv" -fd 1 -trace_rtt -rtt_freq 20 \
            -trace_err -error_file "$dir/errors-$k.log" \
            "$dest" >"$dir/caller-$k.log" 2>&1) &
        callers+=("$!")
        pids+=("$!")
    done
    for k in "${callers[@]}"; do
        wait "$k" || status=1
    done
    end=$(date +%s.%N)
    for ((k = 0; k < CALLERS; k++)); do
        # The last line of sipp's statistics: cumulative counters.
        read -r c s f < <(awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i }
            END { print $col["OutgoingCall(C)"], $col["SuccessfulCall(C)"], $col["FailedCall(C)"] }' \
            "$dir/stat-$k.csv")
        created=$((created + c))
        success=$((success + s))
        failed=$((failed + f))
    done
    # Answer latency (INVITE → vacd's 200) per call, from sipp's rtd files.
    read -r answer_p50 answer_p99 < <(cat "$dir"/*_rtt.csv 2>/dev/null | awk -F';' '$2 ~ /^[0-9.]+$/ { print $2 }' |
        sort -n | awk '{ v[NR] = $1 } END { if (NR) printf "%.1f %.1f\n", v[int((NR - 1) * 0.5) + 1], v[int((NR - 1) * 0.99) + 1]; else print "- -" }')
    # Kept up: every call succeeded and the last one ended within 5 s of the step (sipp holds
    # its rate unless calls pile up, so a backlog shows as a long drain).
    wall=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    ok=0
    if ((status == 0 && failed == 0 && success == created && created > 0)) &&
        awk -v w="$wall" -v s="$STEP_SECONDS" 'BEGIN { exit !(w <= s + 5) }'; then
        ok=1
    fi
    step_line="offered=$rate/s calls=$created ok=$success failed=$failed wall=${wall}s answer_p50=${answer_p50}ms answer_p99=${answer_p99}ms"
}

# --- 1. vacd: the highest rate with zero failures ------------------------------------------------
vacd_best=0
vacd_best_line=""
if phase vacd; then
    start_phones vacd "127.0.0.1:$sip_port"
    sleep 1
    log "vacd: $CALLERS sipp callers, $PHONES sipp phones, ${STEP_SECONDS}s per rate"
    vacd_top_rate=0
    for rate in $RATES; do
        passed=0
        for attempt in 1 2; do
            ask "wait-ready 60" >/dev/null
            ask "mark cps-$rate" >/dev/null
            rss_before=$(rss_kib "$vacd")
            step "vacd-$rate-$attempt" "$rate" "127.0.0.1:$sip_port"
            agents=$(ask report)
            waited_p50=$(sed -n 's/.*waited_p50_ms=\([0-9]*\).*/\1/p' <<<"$agents")
            waited_p99=$(sed -n 's/.*waited_p99_ms=\([0-9]*\).*/\1/p' <<<"$agents")
            missed=$(sed -n 's/.* missed=\([0-9]*\).*/\1/p' <<<"$agents")
            log "vacd $step_line queue→bridged p50=${waited_p50}ms p99=${waited_p99}ms missed=$missed rss=$(($(rss_kib "$vacd") / 1024))MiB (before $((rss_before / 1024))MiB)"
            # Kept up also means no backlog in the queue: callers waited under 0.5 s (p99).
            if ((ok == 1 && missed == 0 && waited_p99 < 500)); then
                passed=1
                break
            fi
        done
        vacd_top_rate=$rate
        if ((passed == 1)); then
            vacd_best=$rate
            vacd_best_line="$step_line queue→bridged p50=${waited_p50}ms p99=${waited_p99}ms"
        else
            break
        fi
    done

    # --- profile at the top rate ------------------------------------------------------------------
    if ((PERF == 1)) && command -v perf >/dev/null; then
        log "profiling vacd at $vacd_top_rate calls/s (perf record -g, 8 s)"
        ask "wait-ready 60" >/dev/null
        perf record -F 499 -g -p "$vacd" -o "$work/perf.data" -- sleep 8 >"$work/perf.log" 2>&1 &
        perf_pid=$!
        pids+=("$perf_pid")
        step "vacd-perf" "$vacd_top_rate" "127.0.0.1:$sip_port"
        wait "$perf_pid" || true
        perf report -i "$work/perf.data" --no-children -g none --sort dso,symbol --stdio 2>/dev/null |
            grep -E '^ +[0-9]' | cut -c1-150 | sed 's/ *$//' | head -n 30 >"$work/perf-top.txt" || true
        perf report -i "$work/perf.data" --no-children -g none --sort comm --stdio 2>/dev/null |
            grep -E '^ +[0-9]' | head -n 12 >"$work/perf-threads.txt" || true
        log "perf: threads by samples:"
        cat "$work/perf-threads.txt"
        log "perf: top symbols (self):"
        cat "$work/perf-top.txt"
    fi
    stop "${phones[@]}"
fi

# --- 2. Kamailio as a stateful proxy to the same sipp phones -------------------------------------
kamailio_best=0
kamailio_best_line=""
if phase kamailio; then
    if ! command -v kamailio >/dev/null; then
        log "installing kamailio (apt-get)"
        apt-get install -y -q kamailio >"$work/apt.log" 2>&1 ||
            { apt-get update -q >>"$work/apt.log" 2>&1 && apt-get install -y -q kamailio >>"$work/apt.log" 2>&1; }
    fi
    modules=$(dirname "$(find /usr/lib -name tm.so -path '*kamailio*' | head -n 1)")
    cat >"$work/kamailio.cfg" <<EOF
#!KAMAILIO
debug=1
log_stderror=yes
children=2
auto_aliases=no
listen=udp:127.0.0.1:$kamailio_port
mpath="$modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
modparam("tm", "fr_timer", 5000)

# The callers never see a 180 from vacd (it answers them itself), and with several Kamailio
# workers a 180 can overtake the 200, which caller.xml does not expect: provisional replies
# other than Kamailio's own 100 are not forwarded.
onreply_route {
    if (status =~ "^18[0-9]") {
        drop;
    }
}

request_route {
    if (!mf_process_maxfwd_header("10")) {
        sl_send_reply("483", "Too Many Hops");
        exit;
    }
    if (has_totag()) {
        # In dialog. The sipp scenarios send no Route headers (sipp sends every request to
        # the proxy it was started with), so a request without one goes to its Request-URI.
        if (!loose_route() && method == "ACK" && !t_check_trans()) {
            forward();
            exit;
        }
        t_relay();
        exit;
    }
    if (method == "CANCEL") {
        if (t_check_trans()) {
            t_relay();
        }
        exit;
    }
    t_check_trans();
    record_route();
    # Caller k (source port $caller_port + 2k) goes to phone k mod PHONES.
    \$var(port) = $phone_port + 2 * ((\$sp / 2) mod $PHONES);
    \$du = "sip:127.0.0.1:" + \$var(port);
    if (!t_relay()) {
        sl_reply_error();
    }
}
EOF
    kamailio -f "$work/kamailio.cfg" -c >"$work/kamailio-check.log" 2>&1 || { cat "$work/kamailio-check.log" >&2; exit 1; }
    kamailio -f "$work/kamailio.cfg" -DD -E -m 512 -M 16 -P "$work/kamailio.pid" >"$work/kamailio.log" 2>&1 &
    kamailio=$!
    pids+=("$kamailio")
    sleep 1
    start_phones kamailio "127.0.0.1:$kamailio_port"
    sleep 1
    log "Kamailio (tm + rr, children=2) pid $kamailio on 127.0.0.1:$kamailio_port"
    for rate in $KAMAILIO_RATES; do
        for attempt in 1 2; do
            step "kamailio-$rate-$attempt" "$rate" "127.0.0.1:$kamailio_port"
            log "kamailio $step_line"
            ((ok == 1)) && break
        done
        if ((ok == 1)); then
            kamailio_best=$rate
            kamailio_best_line=$step_line
        else
            break
        fi
    done
    stop "${phones[@]}" "$kamailio"
fi

# --- 3. concurrency with RTP ---------------------------------------------------------------------
concurrency_lines=()
if phase concurrency; then
    ask "wait-ready 60" >/dev/null
    for calls in $CONCURRENCY; do
        ((calls <= AGENTS)) || continue
        ask "wait-ready 60" >/dev/null
        log "concurrency: $calls bridged calls with RTP at 50 packets/s each way, held ${HOLD_SECONDS}s"
        timeout $((calls / 100 + HOLD_SECONDS + 120)) "$target/release/sip_bridge" "127.0.0.1:$sip_port" \
            "$contacts" "$calls" 200 "$HOLD_SECONDS" "$vacd" >"$work/bridge-$calls.out" 2>"$work/bridge-$calls.err" || true
        cat "$work/bridge-$calls.out"
        peak=$(sed -n 's/.*rss_peak_kib=\([0-9]*\).*/\1/p' "$work/bridge-$calls.out")
        held=$(sed -n 's/.* held=\([0-9]*\).*/\1/p' "$work/bridge-$calls.out")
        if [[ -n $peak && -n $held ]] && ((held > 0)); then
            # Against the RSS before the first call: the allocator keeps what earlier runs freed.
            log "memory per bridged call against the idle RSS: $(((peak - rss_idle) / held)) KiB"
        fi
        concurrency_lines+=("$(grep -E '^(bridge|rtp|memory|setup)' "$work/bridge-$calls.out" | tr '\n' ' ')")
    done
fi

# --- figures -------------------------------------------------------------------------------------
echo
echo "=== telephony load test ($(date +%F), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)) ==="
echo "vacd:     highest rate kept up with zero failures: ${vacd_best} calls/s — $vacd_best_line"
echo "kamailio: highest rate kept up with zero failures: ${kamailio_best} calls/s — $kamailio_best_line"
if ((kamailio_best > 0)); then
    awk -v v="$vacd_best" -v k="$kamailio_best" 'BEGIN { printf "ratio:    vacd / kamailio = %.2f\n", v / k }'
fi
((rss_idle == 0)) || echo "vacd RSS idle with $AGENTS agents: $((rss_idle / 1024)) MiB"
for line in "${concurrency_lines[@]}"; do
    echo "concurrency: $line"
done
echo "(logs, sipp statistics and perf data in $work)"

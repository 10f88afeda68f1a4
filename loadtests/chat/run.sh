#!/usr/bin/env bash
# The website chat load test: starts vacd (release, default config, a fresh SQLite database,
# other port, no per-address limit on new chats since every visitor comes from 127.0.0.1) and
# runs the `chat` load generator against it. Prints figures; asserts nothing.
#
#   loadtests/chat/run.sh            # from anywhere
#
# Knobs (environment): VISITORS (10000), AGENTS (1000; 10 chats each), RATE (messages/s, 5000),
# DURATION (seconds of messages, 20), CARGO_TARGET_DIR. Everything goes to 127.0.0.1 and every loop is bounded.

set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
VISITORS=${VISITORS:-10000}
AGENTS=${AGENTS:-1000}
RATE=${RATE:-5000}
DURATION=${DURATION:-20}
target=${CARGO_TARGET_DIR:-$root/target}
port=18390
work=$(mktemp -d /tmp/chatload.XXXXXX)
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cargo build --release -q -p vacd -p vacd-loadtests
source "$here/../vacd.sh"
# Every visitor and agent is a connection from 127.0.0.1: no per-source cap, room for all.
start_vacd VACD_DATABASE__URL="sqlite://$work/vacd.db?mode=rwc" \
    VACD_CHAT__STARTS_PER_SECOND_PER_IP=1000000 VACD_CHAT__MESSAGES_PER_SECOND_PER_IP=1000000 \
    VACD_HTTP__MAX_CONNECTIONS=$((VISITORS + AGENTS + 1000)) VACD_HTTP__MAX_CONNECTIONS_PER_SOURCE=0
echo "vacd pid $vacd on 127.0.0.1:$port, work directory $work"
"$target/release/chat" "http://127.0.0.1:$port" "$vacd" "$VISITORS" "$AGENTS" "$RATE" "$DURATION"

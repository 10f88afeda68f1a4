#!/usr/bin/env bash
# The end-to-end routing load test: starts vacd (release, default config, a fresh SQLite
# database unless DATABASE says otherwise, other ports) and runs the `routing` load generator
# against it once per configuration, each with new agents on a new queue. Prints routed
# interactions/s, latencies and the server's CPU per interaction; asserts nothing.
#
#   loadtests/routing/run.sh            # from anywhere
#
# Knobs (environment): INTERACTIONS per run (30000), RUNS ("AGENTS:CLIENTS[:RATE] ...",
# default "100:128 100:512 1000:512 100:256:5000 100:256:20000", the last at the routing
# issue's goal rate; a RATE in interactions/s makes the run open loop, see
# loadtests/src/bin/routing.rs), DATABASE (a database URL, e.g. an empty PostgreSQL database),
# CARGO_TARGET_DIR. Everything goes to 127.0.0.1 and every loop is bounded.

set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
INTERACTIONS=${INTERACTIONS:-30000}
RUNS=${RUNS:-"100:128 100:512 1000:512 100:256:5000 100:256:20000"}
target=${CARGO_TARGET_DIR:-$root/target}
port=18490
work=$(mktemp -d /tmp/routingload.XXXXXX)
DATABASE=${DATABASE:-"sqlite://$work/vacd.db?mode=rwc"}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cargo build --release -q -p vacd -p vacd-loadtests
source "$here/../vacd.sh"
# Every agent and client is a connection from 127.0.0.1: no per-source cap.
start_vacd VACD_DATABASE__URL="$DATABASE" VACD_HTTP__MAX_CONNECTIONS_PER_SOURCE=0
echo "vacd pid $vacd on 127.0.0.1:$port, database $DATABASE"
for run in $RUNS; do
    IFS=: read -r agents clients rate <<<"$run"
    echo "== $INTERACTIONS interactions, $agents agents, $clients HTTP clients${rate:+, $rate/s}"
    "$target/release/routing" "http://127.0.0.1:$port" "$INTERACTIONS" "$agents" "$clients" "$vacd" ${rate:+"$rate"}
done

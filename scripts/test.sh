#!/usr/bin/env bash
# Runs every vacd test on a fresh machine: installs what the tests need if it is missing, then
# checks formatting and lints and runs the whole workspace's tests (unit, property, end-to-end).
# PostgreSQL is expected at VACD_TEST_POSTGRES (default postgres://postgres@127.0.0.1:5432/test).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v pg_isready >/dev/null || need_apt+=(postgresql postgresql-client)
# sipp drives the SIP end-to-end tests (tests/sip.rs runs the scenarios in loadtests/sip/).
command -v sipp >/dev/null || need_apt+=(sip-tester)
# The browser tests (tests/browser.rs) drive Debian's chromium with node's playwright-core.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v node >/dev/null || need_apt+=(nodejs npm)
# The ticket tests (tests/tickets.rs) fetch from a private Dovecot (IMAP and POP3) and send to
# aiosmtpd, both started by the tests on loopback ports.
[ -x /usr/sbin/dovecot ] || need_apt+=(dovecot-imapd dovecot-pop3d)
command -v aiosmtpd >/dev/null || need_apt+=(python3-aiosmtpd)
command -v openssl >/dev/null || need_apt+=(openssl)
# Letters in an embedded font (DejaVu), read back as a PDF reader does (poppler's pdftotext).
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_apt+=(fonts-dejavu-core)
command -v pdftotext >/dev/null || need_apt+=(poppler-utils)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing: ${need_apt[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

# playwright-core for the browser tests, at the version package-lock.json pins.
if [ ! -d tests/browser/node_modules/playwright-core ]; then
    npm ci --prefix tests/browser --no-audit --no-fund
fi

# PostgreSQL must answer on 127.0.0.1:5432; start the local cluster if it is down.
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    cluster=$(ls /etc/postgresql 2>/dev/null | head -n 1)
    [ -n "$cluster" ] && pg_ctlcluster --skip-systemctl-redirect "$cluster" main start || true
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432

# Databases left behind by an interrupted earlier run.
pg_url=${VACD_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}
psql "$pg_url" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'vacd\_t\_%'" |
    while read -r db; do psql "$pg_url" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"; done

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# Every test binary runs even after one fails, so a run reports all failures at once.
cargo test --workspace --no-fail-fast

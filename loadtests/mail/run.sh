#!/usr/bin/env bash
# Mail ingestion load test: a private Dovecot and a release vacd (embedded SQLite, demo tenant,
# one IMAP account for support@demo.vacd.test) on loopback ports, then `mail_load` delivers
# MAILS mails into the account's maildir and prints mails/s and arrival→offer latency.
# Everything started here is stopped on exit. Usage: loadtests/mail/run.sh [MAILS] [AGENTS]
set -euo pipefail
cd "$(dirname "$0")/../.."
mails=${1:-2000}
agents=${2:-20}
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p vacd --bin vacd -p vacd-loadtests --bin mail_load

work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
imap=$(free_port)
pop3=$(free_port)
http=$(free_port)
mkdir -p "$work/mail"
chmod 777 "$work/mail"
cat >"$work/dovecot.conf" <<CONF
base_dir = $work/run
state_dir = $work/state
log_path = $work/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = no
auth_mechanisms = plain
disable_plaintext_auth = no
first_valid_uid = 1
mail_location = maildir:$work/mail/%u
passdb {
  driver = static
  args = password=load-password
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$work/mail/%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $imap
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $pop3
  }
  inet_listener pop3s {
    port = 0
  }
}
CONF
/usr/sbin/dovecot -F -c "$work/dovecot.conf" &
pids+=($!)
cat >"$work/vacd.toml" <<CONF
[http]
listen = "127.0.0.1:$http"
[database]
url = "sqlite://$work/vacd.db?mode=rwc"
[sip]
udp = "127.0.0.1:0"
tcp = "127.0.0.1:0"
[demo]
enabled = true
[log]
level = "warn"
[channels]
poll_interval_ms = 50
fetch_batch = 500
[[channels.accounts]]
address = "support@demo.vacd.test"
protocol = "imap"
host = "127.0.0.1"
port = $imap
security = "plain"
username = "support"
password = "load-password"
CONF
"$target/release/vacd" --config "$work/vacd.toml" serve >"$work/vacd.log" 2>&1 &
pids+=($!)
# Ready once the mail account's session is up.
for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$http/ready" 2>/dev/null | grep -q '"up":true' && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$http/ready" | grep -q '"up":true' || { cat "$work/vacd.log"; exit 1; }
timeout 60 "$target/release/mail_load" "http://127.0.0.1:$http" "$work/mail/support" "$mails" "$agents"

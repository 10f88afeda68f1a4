//! The agents of the telephony load test (`loadtests/sip/run.sh`). Creates AGENTS agents for
//! the demo queue *Sales DE* (the queue `+4930123456` routes to) through the admin API — users
//! `sipload-<n>` with a SIP login, every skill the queue requires at level 10, membership of the
//! queue — and sets the queue's wrap-up to 0 s. Then it registers each agent's phone with a
//! contact pointing at the sipp process(es) that play the phones (`agent.xml`), logs each agent
//! in on `/ws/agent`, sets it ready and keeps it so while the calls run: it ends a wrap-up if one
//! starts and sets an agent ready again after a missed offer (counting the miss). It counts
//! offers, connections and ends, and keeps the queue wait vacd reports in
//! `interaction.connected` (`waited_ms`: queued → the agent's phone answered).
//!
//! Commands on stdin, one per line; answers on stdout:
//! - `mark NAME` — starts a measurement phase (counters and waits reset);
//! - `report` — `report phase=… offers=… connected=… ended=… missed=… errors=… waited_p50_ms=…`;
//! - `wait-ready SECONDS` — waits (bounded) until every agent is ready, answers `ready N/M`;
//! - `quit`, or the end of stdin — exits.
//!
//! Usage: `sip_agents BASE_URL SIP_ADDR AGENTS CONTACT[,CONTACT…] [LIFETIME_SECONDS]`, e.g.
//! `sip_agents http://127.0.0.1:18290 127.0.0.1:15260 2000 127.0.0.1:15280` — agent n's phone
//! is registered at CONTACT number n mod (number of contacts). Expects a demo tenant without
//! `sipload-*` users and MD5 among vacd's digest challenges. All traffic stays on loopback and
//! the process exits after LIFETIME_SECONDS (default 3000, less than the 3600 s registrations).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures_util::{stream, SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;
use vacd_loadtests::{items, Api};
use vacd_sip::digest::answer_challenge;
use vacd_sip::message::{self, new_branch, new_call_id, new_tag, parse_datagram, Limits};
use vacd_sip::rsip::headers::UntypedHeader;
use vacd_sip::rsip::{Header, SipMessage};

const PASSWORD: &str = "sipload-password";
const SIP_PASSWORD: &str = "sipload-sip-password";
const QUEUE: &str = "Sales DE";
/// Agents provisioned at once (user creation and login each hash a password with argon2).
const PARALLEL: usize = 8;
/// How long one HTTP request, websocket frame or SIP answer may take during set-up.
const WAIT: Duration = Duration::from_secs(20);

/// What the consoles saw in the current phase.
#[derive(Default)]
struct Stats {
    phase: String,
    offers: u64,
    connected: u64,
    ended: u64,
    missed: u64,
    wrapups: u64,
    errors: u64,
    waited_ms: Vec<u64>,
}

/// Shared by the console tasks and the command loop.
struct Floor {
    stats: Mutex<Stats>,
    /// Each agent's presence as its console last heard it.
    presence: Mutex<Vec<String>>,
    changed: tokio::sync::Notify,
}

impl Floor {
    fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        // A console task that panicked leaves plain counters behind: still readable.
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn presence(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.presence.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ready(&self) -> usize {
        self.presence().iter().filter(|p| *p == "ready").count()
    }
}

/// Creates agent `n` for `queue` with `skills` (skill id, level); returns its login token.
async fn provision(
    api: &Api,
    admin: &str,
    n: usize,
    queue: i64,
    skills: &[(i64, i64)],
) -> Result<String> {
    let username = format!("sipload-{n}");
    let user = api
        .post(
            "/api/v1/users",
            admin,
            json!({ "username": username, "display_name": format!("Load agent {n}"),
                    "password": PASSWORD, "role": "agent",
                    "sip_username": username, "sip_password": SIP_PASSWORD }),
        )
        .await?["id"]
        .as_i64()
        .context("user id")?;
    for (skill, level) in skills {
        api.post(
            "/api/v1/agent-skills",
            admin,
            json!({ "user_id": user, "skill_id": skill, "level": level }),
        )
        .await?;
    }
    api.post(
        "/api/v1/queue-members",
        admin,
        json!({ "queue_id": queue, "user_id": user }),
    )
    .await?;
    api.login(&username, PASSWORD).await
}

/// Sends `text` to `server` until a final response to `cseq` of the dialog `call_id` arrives
/// (UDP: retransmitted every 500 ms, at most 10 times).
async fn exchange(
    socket: &UdpSocket,
    server: SocketAddr,
    text: &str,
    call_id: &str,
    cseq: u32,
) -> Result<vacd_sip::rsip::Response> {
    let mut buf = vec![0u8; 65_535];
    for _ in 0..10 {
        socket
            .send_to(text.as_bytes(), server)
            .await
            .context("send REGISTER")?;
        let until = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Ok(received) = tokio::time::timeout_at(until, socket.recv_from(&mut buf)).await {
            let (len, _) = received.context("receive")?;
            let Ok(SipMessage::Response(response)) =
                parse_datagram(&buf[..len], &Limits::default())
            else {
                continue;
            };
            let ours = message::call_id(&response.headers).is_ok_and(|c| c == call_id)
                && message::cseq(&response.headers).is_ok_and(|(n, _)| n == cseq);
            if ours && response.status_code.code() >= 200 {
                return Ok(response);
            }
        }
    }
    bail!("no answer to the REGISTER of {call_id}")
}

/// Registers `user`'s phone at `contact` with digest auth (MD5), for an hour.
async fn register(server: SocketAddr, user: &str, contact: SocketAddr) -> Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .context("bind SIP socket")?;
    let local = socket.local_addr().context("local address")?;
    let uri = format!("sip:{server}");
    let aor = format!("<sip:{user}@{server}>");
    let from = format!("{aor};tag={}", new_tag());
    let call_id = new_call_id("sipload.test");
    let request = |cseq: u32, extra: &str| {
        format!(
            "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={};rport\r\n\
Max-Forwards: 70\r\nFrom: {from}\r\nTo: {aor}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n\
Contact: <sip:{user}@{contact}>\r\nExpires: 3600\r\n{extra}Content-Length: 0\r\n\r\n",
            new_branch()
        )
    };
    let challenge = exchange(&socket, server, &request(1, ""), &call_id, 1).await?;
    if challenge.status_code.code() != 401 {
        bail!(
            "REGISTER {user}: expected 401, got {}",
            challenge.status_code
        );
    }
    let offer = challenge
        .headers
        .iter()
        .find_map(|h| match h {
            Header::WwwAuthenticate(v) if v.value().contains("algorithm=MD5") => {
                Some(v.value().to_owned())
            }
            _ => None,
        })
        .with_context(|| format!("REGISTER {user}: no MD5 challenge"))?;
    let authorization =
        answer_challenge(&offer, "REGISTER", &uri, user, SIP_PASSWORD, 1, &new_tag())
            .with_context(|| format!("REGISTER {user}: challenge not answerable: {offer}"))?;
    let extra = format!("Authorization: {authorization}\r\n");
    let response = exchange(&socket, server, &request(2, &extra), &call_id, 2).await?;
    if response.status_code.code() != 200 {
        bail!("REGISTER {user}: {}", response.status_code);
    }
    Ok(())
}

use vacd_loadtests::WebSocket as Ws;

/// Logs agent `n` in on the console and sets it ready; returns the open websocket.
async fn console(base: &str, token: &str) -> Result<Ws> {
    let url = format!("{}/ws/agent?token={token}", base.replacen("http", "ws", 1));
    let mut ws = tokio::time::timeout(WAIT, vacd_loadtests::connect(&url))
        .await
        .context("console connect timed out")??;
    let ready =
        json!({ "id": "ready", "type": "presence.set", "status": "ready", "mode": "inbound" });
    ws.send(Message::Text(ready.to_string().into()))
        .await
        .context("send presence.set")?;
    Ok(ws)
}

/// Keeps agent `n` working until its console closes: ends wrap-up, is ready again after a
/// missed offer, and counts what happens.
async fn work(n: usize, ws: Ws, floor: Arc<Floor>) {
    let (mut tx, mut rx) = ws.split();
    let mut id = 0u64;
    while let Some(Ok(message)) = rx.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
            floor.stats().errors += 1;
            continue;
        };
        let reply = match frame["type"].as_str() {
            Some("offer") => {
                floor.stats().offers += 1;
                None
            }
            Some("interaction.connected") => {
                let mut stats = floor.stats();
                stats.connected += 1;
                if let Some(waited) = frame["waited_ms"].as_u64() {
                    stats.waited_ms.push(waited);
                }
                None
            }
            Some("interaction.ended") => {
                floor.stats().ended += 1;
                (frame["wrap_up_ms"].as_u64().unwrap_or(0) > 0).then(|| {
                    floor.stats().wrapups += 1;
                    json!({ "type": "wrapup.done", "interaction": frame["interaction"] })
                })
            }
            Some("presence.changed") => {
                let to = frame["to"]["presence"].as_str().unwrap_or("?").to_owned();
                let not_ready = to == "not_ready";
                if let Some(p) = floor.presence().get_mut(n) {
                    *p = to;
                }
                floor.changed.notify_waiters();
                not_ready.then(|| {
                    floor.stats().missed += 1;
                    json!({ "type": "presence.set", "status": "ready", "mode": "inbound" })
                })
            }
            Some("error") => {
                let mut stats = floor.stats();
                stats.errors += 1;
                if stats.errors <= 5 {
                    eprintln!("agent {n}: {frame}");
                }
                None
            }
            _ => None,
        };
        if let Some(mut command) = reply {
            id += 1;
            command["id"] = json!(id.to_string());
            if tx
                .send(Message::Text(command.to_string().into()))
                .await
                .is_err()
            {
                break;
            }
        }
    }
    eprintln!("agent {n}: console closed");
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    vacd_loadtests::percentile(sorted, p).unwrap_or_default()
}

fn report(floor: &Floor) -> String {
    let ready = floor.ready();
    let mut stats = floor.stats();
    stats.waited_ms.sort_unstable();
    let waited = &stats.waited_ms;
    format!(
        "report phase={} offers={} connected={} ended={} missed={} wrapups={} errors={} \
ready={ready} waited_p50_ms={} waited_p99_ms={} waited_max_ms={}",
        stats.phase,
        stats.offers,
        stats.connected,
        stats.ended,
        stats.missed,
        stats.wrapups,
        stats.errors,
        percentile(waited, 0.5),
        percentile(waited, 0.99),
        waited.last().copied().unwrap_or(0)
    )
}

/// Waits until every agent is ready, at most `wait`.
async fn wait_ready(floor: &Floor, agents: usize, wait: Duration) -> usize {
    let until = tokio::time::Instant::now() + wait;
    loop {
        let changed = floor.changed.notified();
        let ready = floor.ready();
        if ready >= agents {
            return ready;
        }
        // Re-checked at least every 200 ms: a change can land between the count and the wait.
        let next = (tokio::time::Instant::now() + Duration::from_millis(200)).min(until);
        if tokio::time::timeout_at(next, changed).await.is_err() && next >= until {
            return floor.ready();
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        bail!("usage: sip_agents BASE_URL SIP_ADDR AGENTS CONTACT[,CONTACT…] [LIFETIME_SECONDS]");
    }
    let base = args[1].trim_end_matches('/').to_owned();
    if !base.starts_with("http://127.0.0.1") && !base.starts_with("http://localhost") {
        bail!("load is only sent to loopback");
    }
    let server: SocketAddr = args[2].parse().context("SIP_ADDR")?;
    let agents: usize = args[3].parse().context("AGENTS")?;
    let contacts: Vec<SocketAddr> = args[4]
        .split(',')
        .map(|c| c.parse().with_context(|| format!("CONTACT {c}")))
        .collect::<Result<_>>()?;
    let lifetime = Duration::from_secs(args.get(5).map_or(Ok(3000), |s| s.parse())?);
    if !server.ip().is_loopback() || contacts.iter().any(|c| !c.ip().is_loopback()) {
        bail!("SIP_ADDR and CONTACTs must be loopback addresses");
    }
    let started = std::time::Instant::now();

    let api = Api::new(&base);
    let admin = api.login("ada", "demo-password").await?;
    let queues = api.get("/api/v1/queues?limit=100", &admin).await?;
    let queue = items(&queues)
        .iter()
        .find(|q| q["name"] == QUEUE)
        .and_then(|q| q["id"].as_i64())
        .with_context(|| format!("queue {QUEUE} in {queues}"))?;
    api.patch(
        &format!("/api/v1/queues/{queue}"),
        &admin,
        json!({ "wrapup_seconds": 0 }),
    )
    .await?;
    let required = api
        .get(
            &format!("/api/v1/queue-skills?queue_id={queue}&limit=100"),
            &admin,
        )
        .await?;
    let skills: Vec<(i64, i64)> = items(&required)
        .iter()
        .filter(|s| s["queue_id"].as_i64() == Some(queue))
        .filter_map(|s| s["skill_id"].as_i64())
        .map(|skill| (skill, 10))
        .collect();
    if skills.is_empty() {
        bail!("queue {QUEUE} requires no skills? {required}");
    }

    let floor = Arc::new(Floor {
        stats: Mutex::new(Stats {
            phase: "setup".into(),
            ..Stats::default()
        }),
        presence: Mutex::new(vec!["offline".to_owned(); agents]),
        changed: tokio::sync::Notify::new(),
    });
    let (api, admin) = (&api, admin.as_str());
    let skills = &skills;
    let consoles: Vec<(usize, Ws)> = stream::iter(0..agents)
        .map(|n| {
            let contact = contacts[n % contacts.len()];
            let base = base.clone();
            async move {
                let token = provision(api, admin, n, queue, skills)
                    .await
                    .with_context(|| format!("agent {n}"))?;
                register(server, &format!("sipload-{n}"), contact).await?;
                Ok::<_, anyhow::Error>((n, console(&base, &token).await?))
            }
        })
        .buffer_unordered(PARALLEL)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let mut tasks = Vec::new();
    for (n, ws) in consoles {
        tasks.push(tokio::spawn(work(n, ws, floor.clone())));
    }
    let ready = wait_ready(&floor, agents, WAIT).await;
    println!(
        "agents {ready}/{agents} ready on queue {queue} (set up in {:.1} s)",
        started.elapsed().as_secs_f64()
    );

    let deadline = tokio::time::Instant::now() + lifetime;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        let line = tokio::select! {
            line = lines.next_line() => line.context("read stdin")?,
            _ = tokio::time::sleep_until(deadline) => {
                eprintln!("lifetime over");
                break;
            }
        };
        let Some(line) = line else { break };
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("mark"), name) => {
                *floor.stats() = Stats {
                    phase: name.unwrap_or("-").to_owned(),
                    ..Stats::default()
                };
                println!("marked");
            }
            (Some("report"), _) => println!("{}", report(&floor)),
            (Some("wait-ready"), seconds) => {
                let wait = Duration::from_secs(seconds.and_then(|s| s.parse().ok()).unwrap_or(30));
                let ready = wait_ready(&floor, agents, wait).await;
                println!("ready {ready}/{agents}");
            }
            (Some("quit"), _) => break,
            (None, _) => {}
            (Some(other), _) => println!("unknown command {other}"),
        }
    }
    for task in tasks {
        task.abort();
    }
    Ok(())
}

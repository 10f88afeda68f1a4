//! Concurrent silently monitored calls over real UDP (`loadtests/README.md`, "Monitored
//! calls"): CALLS calls through vacd's full flow, each with a supervisor listening in, with RTP
//! both ways, and what monitoring costs.
//!
//! Set-up through the admin API of the demo tenant: CALLS agents `sipmon-a<n>` for *Sales DE*
//! (the queue `+4930123456` routes to; its wrap-up set to 0) and CALLS supervisors
//! `sipmon-s<n>`, every one with a SIP login whose phone this program plays on its own UDP
//! socket (registered with digest MD5). The agents' consoles are ready. Then the calls are placed
//! at RATE calls/s; each agent's phone answers the call vacd rings it with, and RTP flows at 50
//! packets/s each way (20 ms PCMU). Two holds of HOLD_SECONDS follow:
//! 1. **bridged**: the calls alone;
//! 2. **monitored**: every call gets `PUT /api/v1/calls/{interaction}/monitor {"mode":
//!    "silent"}` from its own supervisor, whose phone answers and receives vacd's mix.
//!
//! Every 500 ms the caller sends one loud frame among silence. The agent's phone (through
//! vacd's relay) and the supervisor's phone (through the mix) time its arrival: the difference is
//! the latency the mix adds. Printed per hold: vacd's CPU (`/proc/VACD_PID/stat`, user +
//! system, in % of one core), packets sent and received per direction with the loss (the first
//! 10 packets of each stream, 200 ms, are not counted), the supervisors' packets against the
//! mix's 50 per second, relay and mix latency (p50/p99) and how many pulses the mix carried.
//!
//! Usage: `sip_monitor BASE_URL SIP_ADDR CALLS RATE HOLD_SECONDS VACD_PID`, e.g.
//! `sip_monitor http://127.0.0.1:18390 127.0.0.1:15360 100 20 20 $(pgrep -n vacd)`. Expects a
//! fresh demo tenant (no `sipmon-*` users) and MD5 among vacd's digest challenges
//! (`loadtests/sip/monitor.sh` starts such a vacd). Everything stays on loopback, CALLS is at
//! most 1,000 and every wait has a deadline.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::{stream, SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;
use vacd_loadtests::{items, Api};
use vacd_sip::digest::answer_challenge;
use vacd_sip::message::Limits;
use vacd_sip::message::{self, new_branch, new_call_id, new_tag, parse_datagram, response_to};
use vacd_sip::rsip::headers::{Contact, ContentType, UntypedHeader};
use vacd_sip::rsip::{Header, Method, SipMessage};
use vacd_sip::sdp::SessionDescription;

const NUMBER: &str = "+4930123456";
const CALLER_PREFIX: &str = "+49171";
const QUEUE: &str = "Sales DE";
const PASSWORD: &str = "sipmon-password";
const SIP_PASSWORD: &str = "sipmon-sip-password";
/// Users provisioned at once (creation and login each hash a password with argon2).
const PARALLEL: usize = 8;
/// How long one request, answer or set-up step may take.
const WAIT: Duration = Duration::from_secs(30);
/// Packets at the start of each stream that are not counted.
const WARMUP: u16 = 10;
/// A loud frame every this many packets (500 ms).
const PULSE_EVERY: u16 = 25;
const PACKET: usize = 172;

/// What the run's tasks share.
#[derive(Default)]
struct Shared {
    /// Per call: when its latest pulse was sent (µs since `epoch`), 0 before the first.
    pulse_sent: Vec<AtomicU64>,
    /// Per call, per direction (0: caller → agent, 1: agent → caller): counted packets.
    sent: [Vec<AtomicU64>; 2],
    received: [Vec<AtomicU64>; 2],
    /// Per call: packets the supervisor's phone got, and the mix's pulses among them.
    supervised: Vec<AtomicU64>,
    /// Latency samples in µs: relay (at the agent's phone) and mix (at the supervisor's).
    relay_us: Mutex<Vec<u64>>,
    mix_us: Mutex<Vec<u64>>,
    pulses_sent: AtomicU64,
    mix_pulses: AtomicU64,
    /// Whether packets are counted (the holds), and whether RTP is sent at all.
    counting: AtomicBool,
    sending: AtomicBool,
}

impl Shared {
    fn new(calls: usize) -> Shared {
        let counters = || (0..calls).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Shared {
            pulse_sent: counters(),
            sent: [counters(), counters()],
            received: [counters(), counters()],
            supervised: counters(),
            ..Shared::default()
        }
    }

    fn reset(&self) {
        for list in self
            .sent
            .iter()
            .chain(&self.received)
            .chain([&self.supervised])
        {
            list.iter().for_each(|c| c.store(0, Relaxed));
        }
        self.relay_us
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.mix_us
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.pulses_sent.store(0, Relaxed);
        self.mix_pulses.store(0, Relaxed);
    }
}

/// Microseconds since the run's epoch.
fn micros(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64
}

/// A loopback UDP socket with a 1 MiB receive buffer.
fn udp() -> Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .context("socket")?;
    socket
        .set_recv_buffer_size(1 << 20)
        .context("receive buffer")?;
    let addr: SocketAddr = "127.0.0.1:0".parse().context("address")?;
    socket.bind(&addr.into()).context("bind")?;
    socket.set_nonblocking(true).context("non-blocking")?;
    UdpSocket::from_std(socket.into()).context("tokio socket")
}

/// Receives one SIP message (bounded), skipping anything that does not parse.
async fn receive(
    socket: &UdpSocket,
    until: tokio::time::Instant,
) -> Option<(SipMessage, SocketAddr)> {
    let mut buf = vec![0u8; 65_535];
    loop {
        let (len, from) = tokio::time::timeout_at(until, socket.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        if let Ok(message) = parse_datagram(&buf[..len], &Limits::default()) {
            return Some((message, from));
        }
    }
}

/// Sends `text` until a final response to its CSeq arrives (every 500 ms, at most 10 times).
async fn exchange(
    socket: &UdpSocket,
    server: SocketAddr,
    text: &str,
    cseq: u32,
) -> Result<vacd_sip::rsip::Response> {
    for _ in 0..10 {
        socket
            .send_to(text.as_bytes(), server)
            .await
            .context("send")?;
        let until = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Some((message, _)) = receive(socket, until).await {
            if let SipMessage::Response(response) = message {
                let ours = message::cseq(&response.headers).is_ok_and(|(n, _)| n == cseq);
                if ours && response.status_code.code() >= 200 {
                    return Ok(response);
                }
            }
        }
    }
    bail!(
        "no final answer to {}",
        text.lines().next().unwrap_or_default()
    )
}

/// Registers `user`'s phone at the address of `socket` (digest MD5), for an hour.
async fn register(socket: &UdpSocket, server: SocketAddr, user: &str) -> Result<()> {
    let local = socket.local_addr().context("local address")?;
    let uri = format!("sip:{server}");
    let aor = format!("<sip:{user}@{server}>");
    let from = format!("{aor};tag={}", new_tag());
    let call_id = new_call_id("sipmon.test");
    let request = |cseq: u32, extra: &str| {
        format!(
            "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={};rport\r\n\
Max-Forwards: 70\r\nFrom: {from}\r\nTo: {aor}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n\
Contact: <sip:{user}@{local}>\r\nExpires: 3600\r\n{extra}Content-Length: 0\r\n\r\n",
            new_branch()
        )
    };
    let challenge = exchange(socket, server, &request(1, ""), 1).await?;
    let offer = challenge
        .headers
        .iter()
        .find_map(|h| match h {
            Header::WwwAuthenticate(v) if v.value().contains("algorithm=MD5") => {
                Some(v.value().to_owned())
            }
            _ => None,
        })
        .with_context(|| {
            format!(
                "REGISTER {user}: no MD5 challenge ({})",
                challenge.status_code
            )
        })?;
    let authorization =
        answer_challenge(&offer, "REGISTER", &uri, user, SIP_PASSWORD, 1, &new_tag())
            .with_context(|| format!("REGISTER {user}: challenge not answerable"))?;
    let response = exchange(
        socket,
        server,
        &request(2, &format!("Authorization: {authorization}\r\n")),
        2,
    )
    .await?;
    if response.status_code.code() != 200 {
        bail!("REGISTER {user}: {}", response.status_code);
    }
    Ok(())
}

fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=sipmon 1 1 IN IP4 127.0.0.1\r\ns=sipmon\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

fn rtp_address(body: &[u8]) -> Option<SocketAddr> {
    let sdp = SessionDescription::parse(body).ok()?;
    let ip = sdp.connection_of(0).and_then(|c| c.ip_addr())?;
    Some(SocketAddr::new(ip, sdp.media.first()?.port))
}

/// The call index in a caller number inside a From value.
fn caller_index(from: &str) -> Option<usize> {
    let at = from.find(CALLER_PREFIX)? + CALLER_PREFIX.len();
    from[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

/// A frame is loud when most of its µ-law bytes have a large magnitude.
fn loud(payload: &[u8]) -> bool {
    payload.iter().filter(|b| (*b & 0x7f) < 0x30).count() > payload.len() / 2
}

/// A phone of this program: answers the INVITEs vacd sends it (180, 200 with our SDP until the
/// ACK), answers BYEs, and reports each answered call: (the From value, vacd's RTP address).
async fn phone(
    socket: Arc<UdpSocket>,
    rtp_port: u16,
    answered: tokio::sync::mpsc::UnboundedSender<(String, SocketAddr)>,
) {
    let mut pending: Option<(Vec<u8>, SocketAddr, Instant)> = None;
    loop {
        let until = tokio::time::Instant::now() + Duration::from_millis(500);
        let Some((message, from)) = receive(&socket, until).await else {
            if answered.is_closed() {
                return;
            }
            if let Some((ok, to, since)) = &pending {
                if since.elapsed() < WAIT {
                    let _ = socket.send_to(ok, *to).await;
                } else {
                    pending = None;
                }
            }
            continue;
        };
        let SipMessage::Request(request) = message else {
            continue;
        };
        match request.method {
            Method::Invite => {
                let tag = new_tag();
                let me = socket
                    .local_addr()
                    .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
                let contact = Header::Contact(Contact::new(format!("<sip:phone@{me}>")));
                let mut ok = response_to(&request, 200, Some(&tag));
                ok.headers.push(contact);
                ok.headers
                    .push(Header::ContentType(ContentType::new("application/sdp")));
                ok.body = sdp(rtp_port).into_bytes();
                let ok = message::encode(&SipMessage::Response(ok));
                let _ = socket.send_to(&ok, from).await;
                pending = Some((ok, from, Instant::now()));
                let caller = message::from_value(&request.headers)
                    .unwrap_or_default()
                    .to_owned();
                if let Some(rtp) = rtp_address(&request.body) {
                    let _ = answered.send((caller, rtp));
                }
            }
            Method::Ack => pending = None,
            _ => {
                let ok = response_to(&request, 200, None);
                let _ = socket
                    .send_to(&message::encode(&SipMessage::Response(ok)), from)
                    .await;
            }
        }
    }
}

/// Counts RTP arriving on `socket` for call `call` in direction `dir` (2: the supervisor's
/// mix), timing pulses.
async fn listen(
    socket: Arc<UdpSocket>,
    call: usize,
    dir: usize,
    shared: Arc<Shared>,
    epoch: Instant,
) {
    let mut buf = [0u8; 2048];
    while let Ok((len, _)) = socket.recv_from(&mut buf).await {
        if len < 12 + 160 || !shared.counting.load(Relaxed) {
            continue;
        }
        let payload = &buf[12..len];
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        match dir {
            2 => {
                shared.supervised[call].fetch_add(1, Relaxed);
            }
            _ if seq >= WARMUP => {
                shared.received[dir][call].fetch_add(1, Relaxed);
            }
            _ => {}
        }
        if dir != 1 && loud(payload) {
            let sent = shared.pulse_sent[call].load(Relaxed);
            let now = micros(epoch);
            if sent > 0 && now > sent && now - sent < 400_000 {
                let samples = if dir == 0 {
                    &shared.relay_us
                } else {
                    &shared.mix_us
                };
                samples
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(now - sent);
                if dir == 2 {
                    shared.mix_pulses.fetch_add(1, Relaxed);
                }
            }
        }
    }
}

/// Sends both directions of call `call` at 50 packets/s while `shared.sending` holds; the
/// caller's side carries a loud frame every `PULSE_EVERY` packets.
async fn talk(
    caller: Arc<UdpSocket>,
    to_caller_leg: SocketAddr,
    agent: Arc<UdpSocket>,
    to_agent_leg: SocketAddr,
    call: usize,
    shared: Arc<Shared>,
    epoch: Instant,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut seq = 0u16;
    let mut packet = [0xffu8; PACKET];
    // RTP version 2, no marker, payload type 0 (PCMU): the mix takes audio payloads only.
    packet[0] = 0x80;
    packet[1] = 0;
    while shared.sending.load(Relaxed) {
        tick.tick().await;
        seq = seq.wrapping_add(1);
        packet[2..4].copy_from_slice(&seq.to_be_bytes());
        packet[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        let counting = shared.counting.load(Relaxed);
        for (dir, socket, to) in [(0, &caller, to_caller_leg), (1, &agent, to_agent_leg)] {
            packet[8..12]
                .copy_from_slice(&(0x5b00_0000 | (dir as u32) << 20 | call as u32).to_be_bytes());
            let pulse = dir == 0 && seq.is_multiple_of(PULSE_EVERY);
            packet[12..].fill(if pulse { 0x00 } else { 0xff });
            if pulse {
                shared.pulse_sent[call].store(micros(epoch), Relaxed);
            }
            if socket.send_to(&packet, to).await.is_ok() && counting && seq >= WARMUP {
                shared.sent[dir][call].fetch_add(1, Relaxed);
                if pulse {
                    shared.pulses_sent.fetch_add(1, Relaxed);
                }
            }
        }
    }
}

/// vacd's user + system CPU time in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn percentile_ms(sorted: &[u64], p: f64) -> f64 {
    vacd_loadtests::percentile(sorted, p).map_or(f64::NAN, |us| us as f64 / 1000.0)
}

/// Holds for `hold` with counting on, then prints the figures of the hold named `name`.
async fn hold(name: &str, hold: Duration, calls: usize, shared: &Shared, pid: u32) {
    shared.reset();
    let before = cpu_ticks(pid);
    let started = Instant::now();
    shared.counting.store(true, Relaxed);
    tokio::time::sleep(hold).await;
    shared.counting.store(false, Relaxed);
    let held = started.elapsed().as_secs_f64();
    let cpu = match (before, cpu_ticks(pid)) {
        (Some(a), Some(b)) => 100.0 * (b - a) as f64 / clock_ticks_per_second() / held,
        _ => f64::NAN,
    };
    let sum = |v: &[AtomicU64]| v.iter().map(|c| c.load(Relaxed)).sum::<u64>();
    let mut line = format!("{name} calls={calls} hold_s={held:.1} vacd_cpu_pct={cpu:.1}");
    for (label, dir) in [("to_agent", 0), ("to_caller", 1)] {
        let (sent, received) = (sum(&shared.sent[dir]), sum(&shared.received[dir]));
        let loss = 100.0 * sent.saturating_sub(received) as f64 / sent.max(1) as f64;
        line +=
            &format!(" {label}_sent={sent} {label}_received={received} {label}_loss_pct={loss:.3}");
    }
    let supervised = sum(&shared.supervised);
    let monitored = shared
        .supervised
        .iter()
        .filter(|c| c.load(Relaxed) > 0)
        .count();
    let expected = (monitored as f64 * held * 50.0).max(1.0);
    let mut relay = shared
        .relay_us
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut mix = shared
        .mix_us
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    relay.sort_unstable();
    mix.sort_unstable();
    line += &format!(
        " monitored={monitored} mix_received={supervised} mix_vs_50pps_pct={:.2} pulses_sent={} mix_pulses={} \
relay_p50_ms={:.2} relay_p99_ms={:.2} mix_p50_ms={:.2} mix_p99_ms={:.2} added_p50_ms={:.2}",
        100.0 * supervised as f64 / expected,
        shared.pulses_sent.load(Relaxed),
        shared.mix_pulses.load(Relaxed),
        percentile_ms(&relay, 0.5),
        percentile_ms(&relay, 0.99),
        percentile_ms(&mix, 0.5),
        percentile_ms(&mix, 0.99),
        percentile_ms(&mix, 0.5) - percentile_ms(&relay, 0.5),
    );
    println!("{line}");
}

/// An agent or supervisor (number `n`), logged in, its phone registered.
struct Person {
    n: usize,
    agent: bool,
    token: String,
    sip: Arc<UdpSocket>,
    rtp: Arc<UdpSocket>,
}

/// Creates user `username` (role `role`, SIP login) and logs it in; an agent also gets the
/// queue's skills and membership.
async fn provision(
    api: &Api,
    admin: &str,
    username: &str,
    role: &str,
    queue: Option<(i64, &[i64])>,
) -> Result<String> {
    let user = api
        .call(
            reqwest::Method::POST,
            "/api/v1/users",
            admin,
            Some(json!({
            "username": username, "display_name": username, "password": PASSWORD, "role": role,
            "sip_username": username, "sip_password": SIP_PASSWORD })),
        )
        .await?["id"]
        .as_i64()
        .context("user id")?;
    if let Some((queue, skills)) = queue {
        for skill in skills {
            api.call(
                reqwest::Method::POST,
                "/api/v1/agent-skills",
                admin,
                Some(json!({ "user_id": user, "skill_id": skill, "level": 10 })),
            )
            .await?;
        }
        api.call(
            reqwest::Method::POST,
            "/api/v1/queue-members",
            admin,
            Some(json!({ "queue_id": queue, "user_id": user })),
        )
        .await?;
    }
    api.login(username, PASSWORD).await
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 7 {
        bail!("usage: sip_monitor BASE_URL SIP_ADDR CALLS RATE HOLD_SECONDS VACD_PID");
    }
    let base = args[1].trim_end_matches('/').to_owned();
    if !base.starts_with("http://127.0.0.1") {
        bail!("load is only sent to loopback");
    }
    let server: SocketAddr = args[2].parse().context("SIP_ADDR")?;
    let calls: usize = args[3].parse().context("CALLS")?;
    let rate: f64 = args[4].parse().context("RATE")?;
    let hold_for = Duration::from_secs(args[5].parse::<u64>().context("HOLD_SECONDS")?.min(300));
    let pid: u32 = args[6].parse().context("VACD_PID")?;
    if !server.ip().is_loopback() || calls == 0 || calls > 1000 || rate <= 0.0 {
        bail!("SIP_ADDR must be loopback, CALLS 1…1000, RATE positive");
    }
    let epoch = Instant::now();
    let api = Api::new(&base);
    let admin = api.login("ada", "demo-password").await?;
    let queues = api
        .call(
            reqwest::Method::GET,
            "/api/v1/queues?limit=100",
            &admin,
            None,
        )
        .await?;
    let queue = items(&queues)
        .iter()
        .find(|q| q["name"] == QUEUE)
        .and_then(|q| q["id"].as_i64())
        .with_context(|| format!("queue {QUEUE}"))?;
    api.call(
        reqwest::Method::PATCH,
        &format!("/api/v1/queues/{queue}"),
        &admin,
        Some(json!({ "wrapup_seconds": 0 })),
    )
    .await?;
    let required = api
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/queue-skills?queue_id={queue}&limit=100"),
            &admin,
            None,
        )
        .await?;
    let skills: Vec<i64> = items(&required)
        .iter()
        .filter_map(|s| s["skill_id"].as_i64())
        .collect();

    // Agents and supervisors: users, phones (one socket and one RTP socket each), consoles.
    let (answers_tx, mut answers) =
        tokio::sync::mpsc::unbounded_channel::<(usize, String, SocketAddr)>();
    let (offers_tx, mut offers) = tokio::sync::mpsc::unbounded_channel::<(usize, u64)>();
    let mut agent_rtp = Vec::new();
    let mut supervisor_rtp = Vec::new();
    let mut supervisor_tokens = Vec::new();
    let people: Vec<Result<Person>> = stream::iter(0..2 * calls)
        .map(|k| {
            let (api, admin, skills) = (&api, &admin, &skills);
            async move {
                let agent = k < calls;
                let n = k % calls;
                let name = if agent {
                    format!("sipmon-a{n}")
                } else {
                    format!("sipmon-s{n}")
                };
                let token = if agent {
                    provision(api, admin, &name, "agent", Some((queue, skills))).await?
                } else {
                    provision(api, admin, &name, "supervisor", None).await?
                };
                let sip = Arc::new(udp()?);
                register(&sip, server, &name).await?;
                Ok(Person {
                    n,
                    agent,
                    token,
                    sip,
                    rtp: Arc::new(udp()?),
                })
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let mut consoles = Vec::new();
    for person in people {
        let Person {
            n,
            agent,
            token,
            sip,
            rtp,
        } = person?;
        let port = rtp.local_addr()?.port();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(phone(sip, port, tx));
        // Each phone's answers go to one channel, tagged: agents 0…, supervisors CALLS….
        let answers_tx = answers_tx.clone();
        let index = if agent { n } else { calls + n };
        tokio::spawn(async move {
            while let Some((from, rtp)) = rx.recv().await {
                let _ = answers_tx.send((index, from, rtp));
            }
        });
        if agent {
            agent_rtp.push((n, rtp));
            let url = format!("{}/ws/agent?token={token}", base.replacen("http", "ws", 1));
            let mut ws = tokio::time::timeout(WAIT, vacd_loadtests::connect(&url))
                .await
                .context("console")??;
            let ready = json!({ "id": "ready", "type": "presence.set", "status": "ready", "mode": "inbound" });
            ws.send(Message::Text(ready.to_string().into())).await?;
            let offers_tx = offers_tx.clone();
            consoles.push(tokio::spawn(async move {
                while let Some(Ok(message)) = ws.next().await {
                    if let Message::Text(text) = message {
                        let frame: Value =
                            serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                        if frame["type"] == "offer" {
                            if let Some(id) = frame["interaction"].as_u64() {
                                let _ = offers_tx.send((n, id));
                            }
                        }
                    }
                }
            }));
        } else {
            supervisor_rtp.push((n, rtp));
            supervisor_tokens.push((n, token));
        }
    }
    agent_rtp.sort_by_key(|(n, _)| *n);
    supervisor_rtp.sort_by_key(|(n, _)| *n);
    supervisor_tokens.sort_by_key(|(n, _)| *n);
    eprintln!(
        "{calls} agents and {calls} supervisors ready after {:.1} s",
        epoch.elapsed().as_secs_f64()
    );

    // The calls: each caller has its own SIP and RTP socket.
    let shared = Arc::new(Shared::new(calls));
    shared.sending.store(true, Relaxed);
    let mut callers = Vec::new();
    let mut invites = Vec::new();
    for i in 0..calls {
        let sip = Arc::new(udp()?);
        let rtp = Arc::new(udp()?);
        let local = sip.local_addr()?;
        let port = rtp.local_addr()?.port();
        let call_id = new_call_id("sipmon.test");
        let from = format!("<sip:{CALLER_PREFIX}{i:07}@{local}>;tag={}", new_tag());
        let body = sdp(port);
        let invite = format!(
            "INVITE sip:{NUMBER}@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={};rport\r\n\
Max-Forwards: 70\r\nFrom: {from}\r\nTo: <sip:{NUMBER}@{server}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:caller@{local}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            new_branch(),
            body.len()
        );
        let (sip2, server2) = (sip.clone(), server);
        invites.push(tokio::spawn(async move {
            let response = exchange(&sip2, server2, &invite, 1).await?;
            if response.status_code.code() != 200 {
                bail!("call {i}: {}", response.status_code);
            }
            let to = message::to_value(&response.headers).unwrap_or_default().to_owned();
            let target = response.headers.iter().find_map(|h| match h {
                Header::Contact(c) => Some(message::uri_part(c.value()).to_owned()),
                _ => None,
            }).unwrap_or_else(|| format!("sip:{server2}"));
            let ack = format!(
                "ACK {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={};rport\r\nMax-Forwards: 70\r\n\
From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                new_branch()
            );
            sip2.send_to(ack.as_bytes(), server2).await?;
            let bye = format!(
                "BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={};rport\r\nMax-Forwards: 70\r\n\
From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
                new_branch()
            );
            let leg = rtp_address(&response.body).context("vacd's caller-leg SDP")?;
            Ok::<_, anyhow::Error>((leg, bye))
        }));
        callers.push((sip, rtp));
        tokio::time::sleep(Duration::from_secs_f64(1.0 / rate)).await;
    }
    let mut caller_legs = Vec::new();
    for (i, invite) in invites.into_iter().enumerate() {
        caller_legs.push(invite.await?.with_context(|| format!("call {i}"))?);
    }
    // Which agent got which call (its phone's INVITE names the caller) and which interaction
    // (its console's offer); the agent legs' RTP addresses.
    let mut agent_of_call: HashMap<usize, (usize, SocketAddr)> = HashMap::new();
    let mut interaction_of_agent: HashMap<usize, u64> = HashMap::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while agent_of_call.len() < calls || interaction_of_agent.len() < calls {
        tokio::select! {
            Some((index, from, rtp)) = answers.recv() => {
                if let Some(i) = caller_index(&from).filter(|_| index < calls) {
                    agent_of_call.insert(i, (index, rtp));
                }
            }
            Some((agent, id)) = offers.recv() => { interaction_of_agent.insert(agent, id); }
            _ = tokio::time::sleep_until(deadline) => {
                bail!("only {} of {calls} calls reached an agent ({} offers)", agent_of_call.len(), interaction_of_agent.len());
            }
        }
    }
    eprintln!(
        "{calls} calls bridged after {:.1} s",
        epoch.elapsed().as_secs_f64()
    );
    for i in 0..calls {
        let (agent, agent_leg) = agent_of_call[&i];
        let caller_rtp = &callers[i].1;
        let agent_socket = agent_rtp[agent].1.clone();
        tokio::spawn(listen(agent_socket.clone(), i, 0, shared.clone(), epoch));
        tokio::spawn(listen(caller_rtp.clone(), i, 1, shared.clone(), epoch));
        tokio::spawn(talk(
            caller_rtp.clone(),
            caller_legs[i].0,
            agent_socket,
            agent_leg,
            i,
            shared.clone(),
            epoch,
        ));
        tokio::spawn(listen(
            supervisor_rtp[i].1.clone(),
            i,
            2,
            shared.clone(),
            epoch,
        ));
    }
    // Streams settle for a second before counting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    hold("bridged", hold_for, calls, &shared, pid).await;

    for i in 0..calls {
        let (agent, _) = agent_of_call[&i];
        let interaction = interaction_of_agent[&agent];
        api.call(
            reqwest::Method::PUT,
            &format!("/api/v1/calls/{interaction}/monitor"),
            &supervisor_tokens[i].1,
            Some(json!({ "mode": "silent" })),
        )
        .await
        .with_context(|| format!("monitor call {i}"))?;
    }
    let mut listening = 0;
    let deadline = tokio::time::Instant::now() + WAIT;
    while listening < calls {
        tokio::select! {
            Some((index, _, _)) = answers.recv() => { if index >= calls { listening += 1; } }
            _ = tokio::time::sleep_until(deadline) => bail!("only {listening} of {calls} supervisors were called"),
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    hold("monitored", hold_for, calls, &shared, pid).await;

    shared.sending.store(false, Relaxed);
    for (i, (sip, _)) in callers.iter().enumerate() {
        let response = exchange(sip, server, &caller_legs[i].1, 2).await;
        if let Err(err) = response {
            eprintln!("call {i}: BYE: {err}");
        }
    }
    for console in consoles {
        console.abort();
    }
    Ok(())
}

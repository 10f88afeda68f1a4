//! The concurrency run of the telephony load test (`loadtests/sip/run.sh`): plays both ends of
//! CALLS calls through vacd at once — the trunk's callers (INVITE to `+4930123456` from
//! 127.0.0.1) and the agents' phones (it binds the CONTACT addresses that `sip_agents`
//! registered the agents' phones at, and answers vacd's INVITEs there) — and sends RTP across
//! every bridge at 50 packets/s each way (20 ms PCMU frames) while the calls are up. Callers are
//! placed at RATE calls/s; once all are bridged (or the ramp's deadline passed) the calls are
//! held for HOLD_SECONDS, then RTP stops and every caller hangs up.
//!
//! Loss is counted per call and direction from the packets' own SSRC (call number and
//! direction) and sequence numbers, leaving out each stream's first 10 packets (200 ms), which
//! may race the bridge being set up. Prints (key=value, for the script): calls bridged at once,
//! failures, setup latency (INVITE → vacd's 200, → the agent's phone rings, → bridged), packets
//! sent and received each way with the loss, the kernel's UDP drop counters over the hold, and
//! vacd's resident memory before the first call and at full concurrency (from
//! `/proc/VACD_PID/status`).
//!
//! Usage: `sip_bridge SIP_ADDR CONTACT[,CONTACT…] CALLS RATE HOLD_SECONDS [VACD_PID]`, e.g.
//! `sip_bridge 127.0.0.1:15260 127.0.0.1:15280 2000 200 20 $(pgrep -n vacd)`. Every address
//! must be loopback; every phase has a deadline, so the run ends even if vacd stops answering.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use vacd_sip::message::{self, new_branch, new_tag, parse_datagram, response_to, Limits};
use vacd_sip::rsip::headers::{Contact, ContentType, UntypedHeader};
use vacd_sip::rsip::{Header, Method, Request, Response, SipMessage};
use vacd_sip::sdp::SessionDescription;

const NUMBER: &str = "+4930123456";
/// Callers' numbers are this prefix and the call's index in 7 digits.
const CALLER_PREFIX: &str = "+49170";
/// RTP sockets per side; calls share them round-robin.
const RTP_SOCKETS: usize = 4;
/// Packets at the start of each stream that are sent but not counted.
const WARMUP: u16 = 10;
/// Marks our RTP streams' SSRC: `MAGIC | direction << 20 | call`.
const MAGIC: u32 = 0x5a00_0000;
/// 160 bytes of µ-law silence behind a 12-byte header.
const PACKET: usize = 172;
/// SIP over UDP: retransmit every 500 ms, at most this often.
const TRIES: u8 = 7;
const RETRANSMIT: Duration = Duration::from_millis(500);
/// Longest hold: sequence numbers (u16 at 50/s) must not wrap while counting.
const MAX_HOLD: u64 = 1000;

/// RTP direction 0: caller → vacd's caller leg → relayed to the agent's phone.
const TO_AGENT: usize = 0;
/// RTP direction 1: agent's phone → vacd's agent leg → relayed to the caller.
const TO_CALLER: usize = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Inviting,
    /// A provisional response came: no more INVITE retransmissions.
    Proceeding,
    /// vacd answered (the caller is queued); waiting for the agent's phone.
    Answered,
    /// The agent's phone answered and vacd acknowledged: RTP flows.
    Bridged,
    Hanging,
    Done,
    Failed,
}

/// The agent's leg of a call, as the phone sees it.
struct AgentLeg {
    call_id: String,
    /// Where vacd wants this leg's RTP.
    rtp: SocketAddr,
    /// Where vacd's INVITE came from and which of our sockets took it.
    peer: SocketAddr,
    socket: usize,
    ok: Vec<u8>,
    acked: bool,
    last_sent: Instant,
    tries: u8,
}

struct Call {
    state: State,
    call_id: String,
    from: String,
    to: String,
    target: String,
    invite: String,
    bye: String,
    last_sent: Instant,
    tries: u8,
    invited_at: Instant,
    answered: Option<Duration>,
    rang: Option<Duration>,
    bridged: Option<Duration>,
    caller_rtp: Option<SocketAddr>,
    agent: Option<AgentLeg>,
}

/// The RTP generator's shared state: destinations per call (0: not sending), counters.
struct Rtp {
    dest: [Vec<AtomicU64>; 2],
    sent: [Vec<AtomicU32>; 2],
    received: [Vec<AtomicU32>; 2],
    /// Datagrams that are not ours (vacd's music on hold to a waiting caller).
    stray: AtomicU64,
    /// Ours, but on the wrong side or socket.
    misrouted: AtomicU64,
    /// The sender fell more than 100 ms behind its schedule.
    lagged: AtomicU64,
    sending: AtomicBool,
    running: AtomicBool,
    sockets: [Vec<std::net::UdpSocket>; 2],
}

fn encode(addr: SocketAddr) -> u64 {
    match addr {
        SocketAddr::V4(v4) => 1 << 48 | u64::from(u32::from(*v4.ip())) << 16 | u64::from(v4.port()),
        SocketAddr::V6(_) => 0,
    }
}

fn decode(value: u64) -> SocketAddr {
    let ip = Ipv4Addr::from(((value >> 16) & 0xffff_ffff) as u32);
    SocketAddr::V4(SocketAddrV4::new(ip, (value & 0xffff) as u16))
}

/// A UDP socket on loopback with a 4 MiB receive buffer (the kernel caps it at rmem_max).
fn rtp_socket() -> Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .context("RTP socket")?;
    socket
        .set_recv_buffer_size(4 << 20)
        .context("RTP receive buffer")?;
    let addr: SocketAddr = "127.0.0.1:0".parse().context("address")?;
    socket.bind(&addr.into()).context("bind RTP socket")?;
    let socket: std::net::UdpSocket = socket.into();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .context("RTP read timeout")?;
    Ok(socket)
}

/// Sends direction `dir` of every call with a destination: one packet per call every 20 ms,
/// spread over ten 2 ms slots.
fn send_rtp(rtp: &Rtp, dir: usize) {
    let calls = rtp.dest[dir].len();
    let mut seq = vec![0u16; calls];
    let mut packet = [0xffu8; PACKET];
    packet[0] = 0x80;
    packet[1] = 0;
    let mut start = Instant::now();
    let mut tick: u64 = 0;
    while rtp.running.load(Relaxed) {
        let due = start + Duration::from_millis(2 * tick);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        } else if now - due > Duration::from_millis(100) {
            rtp.lagged.fetch_add(1, Relaxed);
            start = now;
            tick = 0;
        }
        let slot = (tick % 10) as usize;
        tick += 1;
        if !rtp.sending.load(Relaxed) {
            continue;
        }
        for call in (slot..calls).step_by(10) {
            let dest = rtp.dest[dir][call].load(Relaxed);
            if dest == 0 {
                continue;
            }
            let sequence = seq[call];
            seq[call] = sequence.wrapping_add(1);
            packet[2..4].copy_from_slice(&sequence.to_be_bytes());
            packet[4..8].copy_from_slice(&(u32::from(sequence) * 160).to_be_bytes());
            let ssrc = MAGIC | (dir as u32) << 20 | call as u32;
            packet[8..12].copy_from_slice(&ssrc.to_be_bytes());
            let socket = &rtp.sockets[dir][call % RTP_SOCKETS];
            if socket.send_to(&packet, decode(dest)).is_ok() && sequence >= WARMUP {
                rtp.sent[dir][call].fetch_add(1, Relaxed);
            }
        }
    }
}

/// Counts what arrives on socket `index` of `side` (the side whose phone receives: RTP of
/// direction TO_AGENT arrives at the agents' sockets).
fn receive_rtp(rtp: &Rtp, side: usize, index: usize) {
    let socket = &rtp.sockets[side][index];
    let expected = 1 - side;
    let mut buf = [0u8; 2048];
    while rtp.running.load(Relaxed) {
        let len = match socket.recv_from(&mut buf) {
            Ok((len, _)) => len,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => break,
        };
        if len < 12 {
            rtp.stray.fetch_add(1, Relaxed);
            continue;
        }
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        if ssrc & 0xff00_0000 != MAGIC {
            rtp.stray.fetch_add(1, Relaxed);
            continue;
        }
        let dir = ((ssrc >> 20) & 1) as usize;
        let call = (ssrc & 0xf_ffff) as usize;
        if dir != expected || call % RTP_SOCKETS != index || call >= rtp.received[dir].len() {
            rtp.misrouted.fetch_add(1, Relaxed);
            continue;
        }
        if u16::from_be_bytes([buf[2], buf[3]]) >= WARMUP {
            rtp.received[dir][call].fetch_add(1, Relaxed);
        }
    }
}

/// A message from one of our SIP sockets: which socket (0: the callers', 1…: contacts).
struct Inbound {
    socket: usize,
    from: SocketAddr,
    message: SipMessage,
}

/// Counters of what went wrong, printed at the end.
#[derive(Default, Debug)]
struct Trouble {
    refused: u64,
    invite_timeouts: u64,
    dropped_by_vacd: u64,
    cancelled: u64,
    unacked_answers: u64,
    unknown_agent_invites: u64,
    bye_timeouts: u64,
}

struct Run {
    sockets: Vec<Arc<UdpSocket>>,
    server: SocketAddr,
    local: SocketAddr,
    calls: Vec<Call>,
    by_agent_call_id: HashMap<String, usize>,
    rtp: Arc<Rtp>,
    rtp_ports: [Vec<u16>; 2],
    trouble: Trouble,
    bridged_now: usize,
    max_bridged: usize,
}

fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=sipload 1 1 IN IP4 127.0.0.1\r\ns=sipload\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

/// The audio address of an SDP body.
fn rtp_address(body: &[u8]) -> Option<SocketAddr> {
    let sdp = SessionDescription::parse(body).ok()?;
    let ip = sdp.connection_of(0).and_then(|c| c.ip_addr())?;
    Some(SocketAddr::new(ip, sdp.media.first()?.port))
}

fn contact_uri(headers: &vacd_sip::rsip::Headers) -> Option<String> {
    headers.iter().find_map(|h| match h {
        Header::Contact(c) => Some(message::uri_part(c.value()).to_owned()),
        _ => None,
    })
}

/// The call index in a caller number `+49170NNNNNNN` inside a From value.
fn caller_index(from: &str) -> Option<usize> {
    let at = from.find(CALLER_PREFIX)? + CALLER_PREFIX.len();
    let digits: String = from[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    vacd_loadtests::percentile(sorted, p).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Packets counted as sent so far, both directions.
fn total_sent(rtp: &Rtp) -> u64 {
    rtp.sent
        .iter()
        .flatten()
        .map(|c| u64::from(c.load(Relaxed)))
        .sum()
}

/// vacd's resident set in KiB.
fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The kernel's UDP InErrors and RcvbufErrors (all sockets of the machine).
fn udp_errors() -> (u64, u64) {
    let Ok(snmp) = std::fs::read_to_string("/proc/net/snmp") else {
        return (0, 0);
    };
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return (0, 0);
    };
    let field = |name: &str| {
        names
            .split_whitespace()
            .position(|n| n == name)
            .and_then(|i| values.split_whitespace().nth(i))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("InErrors"), field("RcvbufErrors"))
}

impl Run {
    async fn send(&self, socket: usize, bytes: &[u8], to: SocketAddr) {
        if let Err(e) = self.sockets[socket].send_to(bytes, to).await {
            eprintln!("send to {to}: {e}");
        }
    }

    async fn respond(&self, socket: usize, request: &Request, code: u16, to: SocketAddr) {
        let response = message::encode(&SipMessage::Response(response_to(request, code, None)));
        self.send(socket, &response, to).await;
    }

    /// Places call `i`: the INVITE from the trunk, with our caller socket's SDP.
    async fn invite(&mut self, i: usize, now: Instant) {
        let body = sdp(self.rtp_ports[TO_AGENT][i % RTP_SOCKETS]);
        let (local, server) = (self.local, self.server);
        let call = &mut self.calls[i];
        call.call_id = format!("sipload-{i}-{}@127.0.0.1", std::process::id());
        call.from = format!("<sip:{CALLER_PREFIX}{i:07}@{local}>;tag={}", new_tag());
        call.invite = format!(
            "INVITE sip:{NUMBER}@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={};rport\r\n\
Max-Forwards: 70\r\nFrom: {}\r\nTo: <sip:{NUMBER}@{server}>\r\nCall-ID: {}\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:caller@{local}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            new_branch(),
            call.from,
            call.call_id,
            body.len()
        );
        call.state = State::Inviting;
        call.invited_at = now;
        call.last_sent = now;
        call.tries = 1;
        let invite = call.invite.clone();
        self.send(0, invite.as_bytes(), server).await;
    }

    /// The caller of call `i` hangs up (a BYE to vacd).
    async fn hang_up(&mut self, i: usize, now: Instant) {
        let (local, server) = (self.local, self.server);
        self.stop_rtp(i);
        let call = &mut self.calls[i];
        if !matches!(call.state, State::Answered | State::Bridged) {
            return;
        }
        if call.state == State::Bridged {
            self.bridged_now -= 1;
        }
        call.bye = format!(
            "BYE {} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={};rport\r\nMax-Forwards: 70\r\n\
From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
            call.target,
            new_branch(),
            call.from,
            call.to,
            call.call_id
        );
        call.state = State::Hanging;
        call.last_sent = now;
        call.tries = 1;
        let bye = call.bye.clone();
        self.send(0, bye.as_bytes(), server).await;
    }

    fn stop_rtp(&self, i: usize) {
        self.rtp.dest[TO_AGENT][i].store(0, Relaxed);
        self.rtp.dest[TO_CALLER][i].store(0, Relaxed);
    }

    /// vacd ended call `i` on its own: counted as a dropped call.
    fn dropped(&mut self, i: usize) {
        let call = &mut self.calls[i];
        if matches!(call.state, State::Answered | State::Bridged) {
            if call.state == State::Bridged {
                self.bridged_now -= 1;
            }
            call.state = State::Failed;
            self.trouble.dropped_by_vacd += 1;
            self.stop_rtp(i);
        }
    }

    /// Both legs are up (vacd answered the caller and acknowledged the agent's answer): RTP
    /// starts both ways.
    fn start_bridge(&mut self, i: usize, now: Instant) {
        let call = &mut self.calls[i];
        let Some(agent) = call.agent.as_ref().filter(|a| a.acked) else {
            return;
        };
        let (State::Answered, Some(caller_rtp)) = (call.state, call.caller_rtp) else {
            return;
        };
        self.rtp.dest[TO_AGENT][i].store(encode(caller_rtp), Relaxed);
        self.rtp.dest[TO_CALLER][i].store(encode(agent.rtp), Relaxed);
        call.state = State::Bridged;
        call.bridged = Some(now - call.invited_at);
        self.bridged_now += 1;
        self.max_bridged = self.max_bridged.max(self.bridged_now);
    }

    fn index_of_caller(&self, headers: &vacd_sip::rsip::Headers) -> Option<usize> {
        let call_id = message::call_id(headers).ok()?;
        let i: usize = call_id
            .strip_prefix("sipload-")?
            .split('-')
            .next()?
            .parse()
            .ok()?;
        (self.calls.get(i)?.call_id == call_id).then_some(i)
    }

    /// Responses and requests on the callers' socket.
    async fn on_caller(&mut self, from: SocketAddr, message: SipMessage, now: Instant) {
        match message {
            SipMessage::Response(response) => self.on_caller_response(response, now).await,
            SipMessage::Request(request) => {
                self.respond(0, &request, 200, from).await;
                // vacd hangs up a caller on its own only if something failed.
                if request.method == Method::Bye {
                    if let Some(i) = self.index_of_caller(&request.headers) {
                        self.dropped(i);
                    }
                }
            }
        }
    }

    async fn on_caller_response(&mut self, response: Response, now: Instant) {
        let Some(i) = self.index_of_caller(&response.headers) else {
            return;
        };
        let code = response.status_code.code();
        let method = message::cseq(&response.headers).map(|(_, m)| m).ok();
        let (local, server) = (self.local, self.server);
        let call = &mut self.calls[i];
        match (method, code) {
            (Some(Method::Invite), 100..=199) if call.state == State::Inviting => {
                call.state = State::Proceeding;
            }
            (Some(Method::Invite), 200..=299) => {
                let first = matches!(call.state, State::Inviting | State::Proceeding);
                if first {
                    call.to = message::to_value(&response.headers)
                        .unwrap_or_default()
                        .to_owned();
                    call.target =
                        contact_uri(&response.headers).unwrap_or_else(|| format!("sip:{server}"));
                    call.caller_rtp = rtp_address(&response.body);
                    call.answered = Some(now - call.invited_at);
                    call.state = State::Answered;
                }
                // The ACK, also for vacd's retransmissions of the 2xx.
                let ack = format!(
                    "ACK {} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={};rport\r\n\
Max-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                    call.target,
                    new_branch(),
                    call.from,
                    call.to,
                    call.call_id
                );
                self.send(0, ack.as_bytes(), server).await;
                if first {
                    self.start_bridge(i, now);
                }
            }
            (Some(Method::Invite), _) => {
                // The ACK of a non-2xx: the INVITE's branch, the response's To.
                let via = call
                    .invite
                    .lines()
                    .find(|l| l.starts_with("Via:"))
                    .unwrap_or_default();
                let to = message::to_value(&response.headers).unwrap_or_default();
                let ack = format!(
                    "ACK sip:{NUMBER}@{server} SIP/2.0\r\n{via}\r\nMax-Forwards: 70\r\nFrom: {}\r\n\
To: {to}\r\nCall-ID: {}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                    call.from, call.call_id
                );
                if matches!(call.state, State::Inviting | State::Proceeding) {
                    call.state = State::Failed;
                    self.trouble.refused += 1;
                    if self.trouble.refused <= 5 {
                        eprintln!("call {i} refused: {code}");
                    }
                }
                self.send(0, ack.as_bytes(), server).await;
            }
            (Some(Method::Bye), 200..=699) if call.state == State::Hanging => {
                call.state = State::Done;
            }
            _ => {}
        }
    }

    /// Requests on the agents' phone sockets (responses are not expected: the phones never
    /// send requests).
    async fn on_agent(
        &mut self,
        socket: usize,
        from: SocketAddr,
        message: SipMessage,
        now: Instant,
    ) {
        let SipMessage::Request(request) = message else {
            return;
        };
        let Ok(call_id) = message::call_id(&request.headers).map(str::to_owned) else {
            return;
        };
        let index = self.by_agent_call_id.get(&call_id).copied();
        match request.method {
            Method::Invite => {
                self.on_agent_invite(socket, from, request, call_id, now)
                    .await
            }
            Method::Ack => {
                if let Some(i) = index {
                    if let Some(agent) = self.calls[i].agent.as_mut() {
                        if agent.call_id == call_id && !agent.acked {
                            agent.acked = true;
                            self.start_bridge(i, now);
                        }
                    }
                }
            }
            Method::Bye => {
                self.respond(socket, &request, 200, from).await;
                if let Some(i) = index {
                    self.dropped(i);
                }
            }
            Method::Cancel => {
                self.respond(socket, &request, 200, from).await;
                self.trouble.cancelled += 1;
            }
            _ => self.respond(socket, &request, 200, from).await,
        }
    }

    /// vacd rings an agent's phone: 180, then 200 with our SDP (retransmitted until the ACK).
    async fn on_agent_invite(
        &mut self,
        socket: usize,
        from: SocketAddr,
        request: Request,
        call_id: String,
        now: Instant,
    ) {
        if let Some(&i) = self.by_agent_call_id.get(&call_id) {
            // A retransmission: the same answer again.
            if let Some(ok) = self.calls[i].agent.as_ref().map(|a| a.ok.clone()) {
                self.send(socket, &ok, from).await;
            }
            return;
        }
        let index = message::from_value(&request.headers)
            .and_then(caller_index)
            .filter(|i| *i < self.calls.len());
        let (Some(i), Some(agent_rtp)) = (index, rtp_address(&request.body)) else {
            self.trouble.unknown_agent_invites += 1;
            let tag = new_tag();
            let busy = response_to(&request, 486, Some(&tag));
            self.send(socket, &message::encode(&SipMessage::Response(busy)), from)
                .await;
            return;
        };
        let tag = new_tag();
        let me = self.sockets[socket]
            .local_addr()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
        let contact = Header::Contact(Contact::new(format!("<sip:phone@{me}>")));
        let mut ringing = response_to(&request, 180, Some(&tag));
        ringing.headers.push(contact.clone());
        self.send(
            socket,
            &message::encode(&SipMessage::Response(ringing)),
            from,
        )
        .await;
        let mut ok = response_to(&request, 200, Some(&tag));
        ok.headers.push(contact);
        ok.headers
            .push(Header::ContentType(ContentType::new("application/sdp")));
        ok.body = sdp(self.rtp_ports[TO_CALLER][i % RTP_SOCKETS]).into_bytes();
        let ok = message::encode(&SipMessage::Response(ok));
        self.send(socket, &ok, from).await;
        let call = &mut self.calls[i];
        if call.rang.is_none() {
            call.rang = Some(now - call.invited_at);
        }
        if let Some(old) = call.agent.take() {
            self.by_agent_call_id.remove(&old.call_id);
        }
        call.agent = Some(AgentLeg {
            call_id: call_id.clone(),
            rtp: agent_rtp,
            peer: from,
            socket,
            ok,
            acked: false,
            last_sent: now,
            tries: 1,
        });
        self.by_agent_call_id.insert(call_id, i);
    }

    /// UDP retransmissions: INVITEs without any response, BYEs without a final one, agents'
    /// 200s without an ACK.
    async fn retransmit(&mut self, now: Instant) {
        let server = self.server;
        let mut out: Vec<(usize, Vec<u8>, SocketAddr)> = Vec::new();
        for (i, call) in self.calls.iter_mut().enumerate() {
            if matches!(call.state, State::Inviting | State::Hanging)
                && now - call.last_sent >= RETRANSMIT
            {
                if call.tries >= TRIES {
                    if call.state == State::Inviting {
                        self.trouble.invite_timeouts += 1;
                    } else {
                        self.trouble.bye_timeouts += 1;
                    }
                    call.state = State::Failed;
                    continue;
                }
                call.tries += 1;
                call.last_sent = now;
                let text = if call.state == State::Inviting {
                    &call.invite
                } else {
                    &call.bye
                };
                out.push((0, text.as_bytes().to_vec(), server));
            }
            if let Some(agent) = call.agent.as_mut() {
                if !agent.acked && now - agent.last_sent >= RETRANSMIT {
                    if agent.tries >= TRIES {
                        agent.acked = true;
                        self.trouble.unacked_answers += 1;
                        eprintln!("call {i}: the agent's 200 was never acknowledged");
                        continue;
                    }
                    agent.tries += 1;
                    agent.last_sent = now;
                    out.push((agent.socket, agent.ok.clone(), agent.peer));
                }
            }
        }
        for (socket, bytes, to) in out {
            self.send(socket, &bytes, to).await;
        }
    }

    fn count(&self, state: State) -> usize {
        self.calls.iter().filter(|c| c.state == state).count()
    }
}

/// Reads one SIP socket and hands what it parses to the run.
async fn read_sip(socket: Arc<UdpSocket>, index: usize, to: mpsc::Sender<Inbound>) {
    let mut buf = vec![0u8; 65_535];
    while let Ok((len, from)) = socket.recv_from(&mut buf).await {
        let Ok(message) = parse_datagram(&buf[..len], &Limits::default()) else {
            continue;
        };
        if to
            .send(Inbound {
                socket: index,
                from,
                message,
            })
            .await
            .is_err()
        {
            return;
        }
    }
}

/// A UDP socket with a 4 MiB receive buffer for SIP, bound to `addr`.
fn sip_socket(addr: SocketAddr) -> Result<Arc<UdpSocket>> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .context("SIP socket")?;
    socket
        .set_recv_buffer_size(4 << 20)
        .context("SIP receive buffer")?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("bind SIP socket {addr}"))?;
    socket.set_nonblocking(true).context("non-blocking")?;
    Ok(Arc::new(
        UdpSocket::from_std(socket.into()).context("tokio socket")?,
    ))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Ramp,
    Hold,
    Settle,
    Hangup,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        bail!("usage: sip_bridge SIP_ADDR CONTACT[,CONTACT…] CALLS RATE HOLD_SECONDS [VACD_PID]");
    }
    let server: SocketAddr = args[1].parse().context("SIP_ADDR")?;
    let contacts: Vec<SocketAddr> = args[2]
        .split(',')
        .map(|c| c.parse().with_context(|| format!("CONTACT {c}")))
        .collect::<Result<_>>()?;
    let total: usize = args[3].parse().context("CALLS")?;
    let rate: f64 = args[4].parse().context("RATE")?;
    let hold = Duration::from_secs(
        args[5]
            .parse::<u64>()
            .context("HOLD_SECONDS")?
            .min(MAX_HOLD),
    );
    let pid: Option<u32> = args
        .get(6)
        .map(|p| p.parse())
        .transpose()
        .context("VACD_PID")?;
    if !server.ip().is_loopback() || contacts.iter().any(|c| !c.ip().is_loopback()) {
        bail!("SIP_ADDR and CONTACTs must be loopback addresses");
    }
    if total == 0 || total > 0xf_ffff || rate <= 0.0 {
        bail!("CALLS must be 1…1048575 and RATE positive");
    }

    let mut sockets = vec![sip_socket("127.0.0.1:0".parse().context("address")?)?];
    for contact in &contacts {
        sockets.push(sip_socket(*contact)?);
    }
    let local = sockets[0].local_addr().context("local address")?;
    let side =
        || -> Result<Vec<std::net::UdpSocket>> { (0..RTP_SOCKETS).map(|_| rtp_socket()).collect() };
    let rtp_sockets = [side()?, side()?];
    let port = |s: &std::net::UdpSocket| s.local_addr().map(|a| a.port());
    let rtp_ports = [
        rtp_sockets[0]
            .iter()
            .map(port)
            .collect::<std::io::Result<Vec<u16>>>()?,
        rtp_sockets[1]
            .iter()
            .map(port)
            .collect::<std::io::Result<Vec<u16>>>()?,
    ];
    let counters = || (0..total).map(|_| AtomicU32::new(0)).collect::<Vec<_>>();
    let rtp = Arc::new(Rtp {
        dest: [
            (0..total).map(|_| AtomicU64::new(0)).collect(),
            (0..total).map(|_| AtomicU64::new(0)).collect(),
        ],
        sent: [counters(), counters()],
        received: [counters(), counters()],
        stray: AtomicU64::new(0),
        misrouted: AtomicU64::new(0),
        lagged: AtomicU64::new(0),
        sending: AtomicBool::new(true),
        running: AtomicBool::new(true),
        sockets: rtp_sockets,
    });
    let mut threads = Vec::new();
    for dir in [TO_AGENT, TO_CALLER] {
        let sender = rtp.clone();
        threads.push(std::thread::spawn(move || send_rtp(&sender, dir)));
        for index in 0..RTP_SOCKETS {
            let receiver = rtp.clone();
            // Direction TO_AGENT arrives at the agents' side (1), TO_CALLER at the callers' (0).
            threads.push(std::thread::spawn(move || {
                receive_rtp(&receiver, 1 - dir, index)
            }));
        }
    }
    let (tx, mut rx) = mpsc::channel(65_536);
    for (index, socket) in sockets.iter().enumerate() {
        tokio::spawn(read_sip(socket.clone(), index, tx.clone()));
    }
    drop(tx);

    let started = Instant::now();
    let mut run = Run {
        sockets,
        server,
        local,
        calls: (0..total)
            .map(|_| Call {
                state: State::Idle,
                call_id: String::new(),
                from: String::new(),
                to: String::new(),
                target: String::new(),
                invite: String::new(),
                bye: String::new(),
                last_sent: started,
                tries: 0,
                invited_at: started,
                answered: None,
                rang: None,
                bridged: None,
                caller_rtp: None,
                agent: None,
            })
            .collect(),
        by_agent_call_id: HashMap::new(),
        rtp: rtp.clone(),
        rtp_ports,
        trouble: Trouble::default(),
        bridged_now: 0,
        max_bridged: 0,
    };
    let rss_before = rss_kib(pid);
    let ramp_deadline = Duration::from_secs_f64(total as f64 / rate) + Duration::from_secs(30);
    let mut phase = Phase::Ramp;
    let mut phase_started = started;
    let mut placed = 0usize;
    let mut hung_up = 0usize;
    let mut rss_peak = rss_before;
    let mut hold_figures = None;
    let mut udp_before = udp_errors();
    let mut sent_at_hold = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut last_second = started;
    loop {
        tokio::select! {
            inbound = rx.recv() => {
                let Some(Inbound { socket, from, message }) = inbound else { bail!("SIP sockets closed") };
                let now = Instant::now();
                if socket == 0 {
                    run.on_caller(from, message, now).await;
                } else {
                    run.on_agent(socket, from, message, now).await;
                }
                continue;
            }
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        run.retransmit(now).await;
        let in_phase = now - phase_started;
        match phase {
            Phase::Ramp => {
                let due = ((in_phase.as_secs_f64() * rate) as usize).min(total);
                while placed < due {
                    run.invite(placed, now).await;
                    placed += 1;
                }
                let settled = run.count(State::Bridged) + run.count(State::Failed);
                if (placed == total && settled == total) || in_phase > ramp_deadline {
                    println!(
                        "ramp placed={placed} bridged={} in {:.1} s",
                        run.bridged_now,
                        in_phase.as_secs_f64()
                    );
                    phase = Phase::Hold;
                    phase_started = now;
                    udp_before = udp_errors();
                    sent_at_hold = total_sent(&rtp);
                }
            }
            Phase::Hold => {
                if now - last_second >= Duration::from_secs(1) {
                    last_second = now;
                    rss_peak = rss_peak.max(rss_kib(pid));
                }
                if in_phase >= hold {
                    rss_peak = rss_peak.max(rss_kib(pid));
                    rtp.sending.store(false, Relaxed);
                    phase = Phase::Settle;
                    hold_figures =
                        Some((run.bridged_now, in_phase, total_sent(&rtp) - sent_at_hold));
                    phase_started = now;
                }
            }
            Phase::Settle => {
                // In-flight packets arrive; then the counters are final.
                if in_phase >= Duration::from_millis(500) {
                    phase = Phase::Hangup;
                    phase_started = now;
                    rtp.running.store(false, Relaxed);
                }
            }
            Phase::Hangup => {
                let due = ((in_phase.as_secs_f64() * rate) as usize).min(total);
                while hung_up < due {
                    run.hang_up(hung_up, now).await;
                    hung_up += 1;
                }
                let open = run.count(State::Hanging)
                    + run.count(State::Answered)
                    + run.count(State::Bridged);
                if (hung_up == total && open == 0) || in_phase > ramp_deadline {
                    break;
                }
            }
        }
    }
    for thread in threads {
        if thread.join().is_err() {
            eprintln!("an RTP thread panicked");
        }
    }
    let udp_after = udp_errors();

    let latencies = |pick: fn(&Call) -> Option<Duration>| {
        let mut all: Vec<Duration> = run.calls.iter().filter_map(pick).collect();
        all.sort_unstable();
        all
    };
    let answered = latencies(|c| c.answered);
    let rang = latencies(|c| c.rang);
    let bridged = latencies(|c| c.bridged);
    let (held, held_for, sent_in_hold) = hold_figures.unwrap_or((0, Duration::ZERO, 0));
    println!(
        "bridge calls={total} placed={placed} answered={} bridged={} max_concurrent={} held={held} \
done={} failed={} trouble={:?}",
        answered.len(),
        bridged.len(),
        run.max_bridged,
        run.count(State::Done),
        run.count(State::Failed),
        run.trouble
    );
    println!(
        "setup answer_p50_ms={:.1} answer_p99_ms={:.1} ring_p50_ms={:.1} ring_p99_ms={:.1} \
bridge_p50_ms={:.1} bridge_p99_ms={:.1}",
        percentile(&answered, 0.5),
        percentile(&answered, 0.99),
        percentile(&rang, 0.5),
        percentile(&rang, 0.99),
        percentile(&bridged, 0.5),
        percentile(&bridged, 0.99)
    );
    let sum = |v: &[AtomicU32]| v.iter().map(|c| u64::from(c.load(Relaxed))).sum::<u64>();
    let mut line = format!("rtp hold_s={:.1}", held_for.as_secs_f64());
    for (name, dir) in [("to_agent", TO_AGENT), ("to_caller", TO_CALLER)] {
        let sent = sum(&rtp.sent[dir]);
        let received = sum(&rtp.received[dir]);
        let loss = if sent == 0 {
            0.0
        } else {
            100.0 * sent.saturating_sub(received) as f64 / sent as f64
        };
        line +=
            &format!(" {name}_sent={sent} {name}_received={received} {name}_loss_pct={loss:.4}");
    }
    // Packets per second into vacd during the hold (each is relayed once).
    let per_second = sent_in_hold as f64 / held_for.as_secs_f64().max(0.001);
    line += &format!(
        " relayed_per_s={per_second:.0} stray={} misrouted={} sender_lagged={} udp_in_errors={} udp_rcvbuf_errors={}",
        rtp.stray.load(Relaxed),
        rtp.misrouted.load(Relaxed),
        rtp.lagged.load(Relaxed),
        udp_after.0.saturating_sub(udp_before.0),
        udp_after.1.saturating_sub(udp_before.1)
    );
    println!("{line}");
    if let (Some(before), Some(peak)) = (rss_before, rss_peak) {
        println!(
            "memory rss_before_kib={before} rss_peak_kib={peak} per_call_kib={:.1}",
            peak.saturating_sub(before) as f64 / held.max(1) as f64
        );
    }
    Ok(())
}

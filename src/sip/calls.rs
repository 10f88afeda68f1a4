//! Calls on the signalling side: vacd as a B2BUA. Each call has the caller's leg (the dialog of
//! the trunk's INVITE, answered by vacd at once with its own SDP) and zero or more agent legs
//! (INVITEs vacd sends to the offered agents' registered phones; several at a time only while
//! one is still being cancelled, or for ring-all). [`Calls`] owns these dialogs and drives them
//! through the endpoint's sans-IO [`TransactionLayer`]; media and routing belong to each call's
//! actor (`call`), which it starts when it answers and commands with [`CallCmd`]s.
//!
//! What moves a call along:
//! - routing (through the [`CallTap`]): `offered` rings an agent's phone, `offer_revoked`
//!   cancels it (timeout, rejected in the console, ring-all answered elsewhere), `ended` (from the console) hangs up,
//!   `transferred` hangs up the agent's leg while the caller waits again; a restart of the
//!   tenant's routing after a failure voids every offer of a waiting call and stops every agent
//!   phone still ringing for it;
//! - the agent's phone: 2xx → ACK and bridge, ≥ 300 / timeout → the offer is rejected and
//!   routing re-routes;
//! - BYE from either side ends both legs;
//! - the call actor's reports (its answer was too late, it failed, it finished).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use tokio::sync::mpsc;
use vacd_actors::{AgentId, Output, TransferTarget};
use vacd_sip::dialog::{Dialog, DialogId};
use vacd_sip::g711::Law;
use vacd_sip::message::{self, new_branch, new_call_id, new_tag, response_to, via_value};
use vacd_sip::rsip::headers::UntypedHeader;
use vacd_sip::rsip::{self, Header, Method, Request, Response};
use vacd_sip::rtp::LegId;
use vacd_sip::sdp::{self, LocalMedia, LocalSdp, SessionDescription};
use vacd_sip::transaction::{TransactionKey, TransactionLayer};
use vacd_sip::{Peer, Transport};

use super::call::{self, CallCmd, CallReport, CallSetup, Sounds};
use super::screening::normalise_e164;
use crate::chat::ChatHub;
use crate::routing::{CallRouted, CallTap, Dial, Monitoring, RoutingHandle};
use crate::store::{HangupBy, NewCall, ServiceNumber, Store};

/// What every call needs from the server.
pub struct CallContext {
    pub store: Store,
    pub routing: RoutingHandle,
    pub tap: CallTap,
    /// The agents' consoles, told of holds.
    pub consoles: ChatHub,
    pub sounds: Arc<Sounds>,
    pub rtp: RtpPorts,
    /// Our SIP addresses, for Via and Contact.
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    /// With SIP over TLS on.
    pub tls: Option<SocketAddr>,
    /// Where calls to external numbers go (the first trunk with `outbound`), over UDP.
    pub outbound: Option<SocketAddr>,
    /// That trunk's username and password: what vacd answers its challenge with (a provider
    /// that authenticates the calls it carries answers an INVITE 401 or 407).
    pub outbound_credentials: Option<(String, String)>,
    /// How long a leg routing does not time (see [`Calls::ring`]) may ring.
    pub ring_timeout: Duration,
    pub reports: mpsc::UnboundedSender<CallReport>,
}

impl CallContext {
    /// Our address on `transport` (UDP's for the transports vacd does not serve). A TLS peer
    /// exists only with the TLS listener, whose address is then known.
    fn sent_by(&self, transport: Transport) -> SocketAddr {
        match transport {
            Transport::Tcp => self.tcp,
            Transport::Tls => self.tls.unwrap_or(self.tcp),
            _ => self.udp,
        }
    }

    /// A Via value naming us on `transport`, with a new branch.
    fn via(&self, transport: Transport) -> String {
        via_value(
            transport,
            &self.sent_by(transport).to_string(),
            &new_branch(),
        )
    }
}

/// An INVITE from a trunk to a known service number, ready to be answered.
pub struct Incoming {
    pub key: TransactionKey,
    pub request: Request,
    pub peer: Peer,
    pub trunk: String,
    pub number: String,
    pub service: ServiceNumber,
}

/// Where an agent's phone is reached: its registered contact URI, the peer to send to and the
/// address-of-record (the To of the INVITE).
pub struct PhoneTarget {
    pub uri: String,
    pub peer: Peer,
    pub aor: String,
}

/// The RTP port range; each call binds two sockets from it.
pub struct RtpPorts {
    ip: IpAddr,
    min: u16,
    max: u16,
}

impl RtpPorts {
    pub fn new(ip: IpAddr, min: u16, max: u16) -> RtpPorts {
        RtpPorts { ip, min, max }
    }

    /// A free port of the range, as a non-blocking socket: the search starts at a random port
    /// and goes up from there (wrapping around), so the next call's ports cannot be guessed
    /// from this one's — a stranger's packet that reached a leg's port first would be latched
    /// on (see `vacd_sip::rtp::Relay`).
    pub fn bind(&mut self) -> std::io::Result<tokio::net::UdpSocket> {
        let span = u32::from(self.max - self.min) + 1;
        let start = OsRng.next_u32() % span;
        let mut last = None;
        for offset in 0..span {
            let port = self.min + ((start + offset) % span) as u16;
            match std::net::UdpSocket::bind((self.ip, port)) {
                Ok(socket) => {
                    socket.set_nonblocking(true)?;
                    return tokio::net::UdpSocket::from_std(socket);
                }
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("empty RTP port range")))
    }

    fn bind_pair(&mut self) -> std::io::Result<(tokio::net::UdpSocket, tokio::net::UdpSocket)> {
        Ok((self.bind()?, self.bind()?))
    }
}

#[derive(Debug)]
enum AgentState {
    Ringing,
    /// CANCEL sent (or pending until a provisional response); a 2xx that crosses it is
    /// acknowledged and hung up.
    Cancelling,
    Answered(Dialog),
}

/// Who is on the far end of a leg vacd placed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Party {
    /// An agent's phone, ringing for an offer.
    Agent(AgentId),
    /// An external number through the outbound trunk (a blind transfer).
    External(String),
    /// A supervisor's phone, monitoring the call.
    Supervisor(AgentId),
}

/// Which of the call's RTP sockets a placed leg uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Socket {
    /// The caller side (relay leg A): the customer of a click-to-dial call.
    Caller,
    /// The agent side (relay leg B): agents and transfer targets.
    Agent,
    /// The supervisor's own socket, outside the relay.
    Supervisor,
}

impl Socket {
    fn relay_leg(self) -> Option<LegId> {
        match self {
            Socket::Caller => Some(LegId::A),
            Socket::Agent => Some(LegId::B),
            Socket::Supervisor => None,
        }
    }
}

#[derive(Debug)]
struct AgentLeg {
    party: Party,
    /// Which of the call's RTP sockets carries this leg's media.
    media: Socket,
    /// The phone asked for this transfer with REFER: it gets the NOTIFY with the outcome.
    referred: bool,
    invite: Request,
    key: TransactionKey,
    call_id: String,
    peer: Peer,
    offer: SessionDescription,
    state: AgentState,
    /// The ACK sent for the answer's 2xx, sent again for each retransmission of that 2xx
    /// (RFC 3261 §13.2.2.4).
    ack: Option<Request>,
    /// The same for the second answers of a forked INVITE, which were hung up (at most
    /// [`MAX_FORKS`]).
    forks: Vec<(DialogId, Request)>,
}

impl AgentLeg {
    fn pending(&self) -> bool {
        matches!(self.state, AgentState::Ringing | AgentState::Cancelling)
    }
}

/// A new call's media: its two RTP sockets and what the caller side negotiated.
struct CallMedia {
    caller_socket: tokio::net::UdpSocket,
    agent_socket: tokio::net::UdpSocket,
    caller_rtp: SocketAddr,
    agent_rtp: SocketAddr,
    caller_sdp: LocalSdp,
    caller_remote: Option<SocketAddr>,
    law: Law,
    payload_type: u8,
    /// The caller's telephone-event payload type, offered to the other legs under the same
    /// number: the relay forwards packets as they are.
    telephone_event: Option<u8>,
}

/// The caller's leg: the dialog of the trunk's INVITE that vacd answered.
struct CallerLeg {
    dialog: Dialog,
    peer: Peer,
    invite: TransactionKey,
}

struct Call {
    tenant: i64,
    /// `None` for click-to-dial calls, whose legs vacd places both.
    caller: Option<CallerLeg>,
    /// Click-to-dial: the number to call once the agent's phone answers.
    dial: Option<String>,
    /// The caller's number as shown to agents.
    caller_number: String,
    law: Law,
    /// The telephone-event payload type of the call's legs (see [`CallMedia`]).
    telephone_event: Option<u8>,
    caller_rtp: SocketAddr,
    caller_sdp: LocalSdp,
    agent_rtp: SocketAddr,
    agent_sdp: LocalSdp,
    /// The monitoring supervisor's RTP socket address and SDP, once one was called.
    supervisor_media: Option<(SocketAddr, LocalSdp)>,
    /// Re-INVITEs without an offer answered with ours, until their ACKs bring the answers:
    /// each one's Call-ID and CSeq number, the relay leg it renegotiates and our offer.
    awaiting_answers: Vec<(String, u32, LegId, SessionDescription)>,
    agents: Vec<AgentLeg>,
    actor: mpsc::UnboundedSender<CallCmd>,
    /// Hung up: both legs are being ended.
    over: bool,
    /// Transferred to an external number: routing is done with it, the call goes on between
    /// the caller and the external party.
    detached: bool,
    /// The actor has written the record and stopped.
    finished: bool,
    /// The agent whose phone hung up right after asking for a blind transfer with REFER (as
    /// many phones do, without waiting for the NOTIFY): the transfer goes on without the
    /// phone; if routing refuses it, the call ends as if the agent had hung up.
    left_referring: Option<AgentId>,
    /// The supervisor listening in is a team lead, who may listen to their own team's calls
    /// only: a transfer ends the monitoring.
    lead_monitors: bool,
}

impl Call {
    fn command(&self, key: u64, command: CallCmd) {
        if self.actor.send(command).is_err() {
            tracing::debug!(call = key, "call actor already gone");
        }
    }
}

/// Every call's signalling.
pub struct Calls {
    ctx: CallContext,
    calls: HashMap<u64, Call>,
    /// Call-IDs of callers' and agents' legs.
    by_call_id: HashMap<String, u64>,
    /// Callers' INVITE server transactions and agents' INVITE client transactions.
    by_invite: HashMap<TransactionKey, u64>,
    /// When legs routing does not time stop ringing: (deadline, call, the leg's Call-ID),
    /// earliest first; entries of legs answered or gone meanwhile are skipped when due.
    ring_deadlines: BinaryHeap<Reverse<(Instant, u64, String)>>,
    /// BYEs sent to the outbound trunk while it has credentials, until their final response:
    /// a challenge to one is answered once (see `answer_in_dialog_challenge`).
    to_trunk: HashMap<TransactionKey, (Request, Peer)>,
    next_key: u64,
}

/// Which side of a call a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Caller,
    Agent,
}

impl Calls {
    pub fn new(ctx: CallContext) -> Calls {
        Calls {
            ctx,
            calls: HashMap::new(),
            by_call_id: HashMap::new(),
            by_invite: HashMap::new(),
            ring_deadlines: BinaryHeap::new(),
            to_trunk: HashMap::new(),
            next_key: 1,
        }
    }

    /// When the next ringing leg without an offer timeout is due to give up.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.ring_deadlines.peek().map(|Reverse((at, ..))| *at)
    }

    /// Gives up on the legs due by `now` that still ring: they are cancelled and fail as a
    /// refusal would (a transfer or click-to-dial ends, a supervisor's listening is gone).
    pub fn handle_timeout(&mut self, layer: &mut TransactionLayer, now: Instant) {
        while let Some(Reverse((at, key, call_id))) = self.ring_deadlines.peek().cloned() {
            if at > now {
                break;
            }
            self.ring_deadlines.pop();
            let party = self.calls.get(&key).and_then(|call| {
                call.agents
                    .iter()
                    .find(|l| l.call_id == call_id && matches!(l.state, AgentState::Ringing))
                    .map(|l| l.party.clone())
            });
            if let Some(party) = party {
                tracing::info!(call = key, ?party, "no answer within the ring timeout");
                self.cancel_leg(layer, key, &party, now);
                self.leg_failed(layer, key, party, now);
            }
        }
    }

    /// Live calls (those answered and not yet cleaned up).
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Whether a live call has a leg with this Call-ID.
    pub fn has_call_id(&self, call_id: &str) -> bool {
        self.by_call_id.contains_key(call_id)
    }

    fn sent_by(&self, transport: Transport) -> SocketAddr {
        self.ctx.sent_by(transport)
    }

    fn via(&self, transport: Transport) -> String {
        self.ctx.via(transport)
    }

    fn contact(&self, transport: Transport) -> Header {
        let token = match transport {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            _ => "udp",
        };
        Header::Contact(rsip::headers::Contact::new(format!(
            "<sip:vacd@{};transport={token}>",
            self.sent_by(transport)
        )))
    }

    /// Answers a trunk's INVITE to a service number and starts the call's actor, which queues
    /// it. Refusals: 480 when the number has no queue (nor a routing rule giving it one), 488 without a usable G.711 offer, 503
    /// when no RTP ports are free.
    pub fn answer(&mut self, layer: &mut TransactionLayer, incoming: Incoming, now: Instant) {
        let Incoming {
            key,
            request,
            peer,
            trunk,
            number,
            service,
        } = incoming;
        let refuse =
            |layer: &mut TransactionLayer, code: u16| reply(layer, &key, &request, code, now);
        let Some(queue) = service.queue_id else {
            tracing::warn!(
                number,
                tenant = service.tenant_id,
                "service number has no queue, nor a rule giving it one; 480"
            );
            refuse(layer, 480);
            return;
        };
        let offer = match SessionDescription::parse(&request.body) {
            Ok(offer) if !request.body.is_empty() => offer,
            Ok(_) => {
                tracing::info!(%peer, number, "INVITE without SDP offer, 488");
                refuse(layer, 488);
                return;
            }
            Err(err) => {
                tracing::info!(%peer, number, %err, "INVITE with unreadable SDP, 488");
                refuse(layer, 488);
                return;
            }
        };
        let (caller_socket, agent_socket) = match self.ctx.rtp.bind_pair() {
            Ok(pair) => pair,
            Err(err) => {
                tracing::error!(%err, "no free RTP ports, 503");
                refuse(layer, 503);
                return;
            }
        };
        let (Ok(caller_rtp), Ok(agent_rtp)) =
            (caller_socket.local_addr(), agent_socket.local_addr())
        else {
            refuse(layer, 500);
            return;
        };
        let mut caller_sdp = LocalSdp::new(caller_rtp.ip());
        let (answer, negotiated) =
            match sdp::answer(&offer, &LocalMedia::new(caller_rtp), &mut caller_sdp) {
                Ok(done) => done,
                Err(err) => {
                    tracing::info!(%peer, number, %err, "no common codec with the caller, 488");
                    refuse(layer, 488);
                    return;
                }
            };
        let tag = new_tag();
        let caller = match Dialog::uas(&request, &tag) {
            Ok(dialog) => dialog,
            Err(err) => {
                tracing::info!(%peer, %err, "INVITE cannot form a dialog, 400");
                refuse(layer, 400);
                return;
            }
        };
        let mut response = response_to(&request, 200, Some(&tag));
        response.headers.push(self.contact(peer.transport));
        response.body = with_sdp(&mut response.headers, &answer);
        if let Err(err) = layer.send_response(&key, response, now) {
            // Cancelled meanwhile: the caller is gone before anything started.
            tracing::info!(%peer, %err, "caller left before the answer");
            return;
        }
        let caller_number = caller_number(&request);
        let record = NewCall {
            tenant: service.tenant_id,
            mailbox: Some(service.mailbox_id),
            service_address: Some(service.address_id),
            queue: Some(queue),
            call_id: caller.id().call_id.clone(),
            trunk,
            caller: caller_number.clone(),
            dialled: number,
            dialled_by: None,
            language: service.language,
        };
        let media = CallMedia {
            caller_socket,
            agent_socket,
            caller_rtp,
            agent_rtp,
            caller_sdp,
            caller_remote: negotiated.remote,
            law: negotiated.law,
            payload_type: negotiated.payload_type,
            telephone_event: negotiated.telephone_event,
        };
        let caller = CallerLeg {
            dialog: caller,
            peer,
            invite: key,
        };
        let shown = caller_number.unwrap_or_else(|| "anonymous".into());
        self.start(record, media, Some(caller), None, shown);
    }

    /// Starts a call's actor (which records and, for inbound calls, queues it) and keeps its
    /// signalling state; returns its key.
    fn start(
        &mut self,
        record: NewCall,
        media: CallMedia,
        caller: Option<CallerLeg>,
        dial: Option<String>,
        caller_number: String,
    ) -> u64 {
        let key = self.next_key;
        self.next_key += 1;
        let (actor, commands) = mpsc::unbounded_channel();
        let tenant = record.tenant;
        let setup = CallSetup {
            key,
            call: record,
            caller_socket: media.caller_socket,
            agent_socket: media.agent_socket,
            caller_remote: media.caller_remote,
            law: media.law,
            payload_type: media.payload_type,
            sounds: self.ctx.sounds.clone(),
            routing: self.ctx.routing.clone(),
            tap: self.ctx.tap.clone(),
            consoles: self.ctx.consoles.clone(),
            store: self.ctx.store.clone(),
            reports: self.ctx.reports.clone(),
        };
        tokio::spawn(call::run(setup, commands));
        metrics::gauge!(crate::metrics::CALLS_ACTIVE).increment(1.0);
        if let Some(caller) = &caller {
            self.by_call_id
                .insert(caller.dialog.id().call_id.clone(), key);
            self.by_invite.insert(caller.invite.clone(), key);
        }
        self.calls.insert(
            key,
            Call {
                tenant,
                caller,
                dial,
                caller_number,
                law: media.law,
                telephone_event: media.telephone_event,
                caller_rtp: media.caller_rtp,
                caller_sdp: media.caller_sdp,
                agent_rtp: media.agent_rtp,
                agent_sdp: LocalSdp::new(media.agent_rtp.ip()),
                supervisor_media: None,
                awaiting_answers: Vec::new(),
                agents: Vec::new(),
                actor,
                over: false,
                detached: false,
                finished: false,
                left_referring: None,
                lead_monitors: false,
            },
        );
        key
    }

    /// The tenant of a live call.
    pub fn tenant_of(&self, call: u64) -> Option<i64> {
        self.calls.get(&call).map(|c| c.tenant)
    }

    /// What routing tells about a call; `phone` is the offered agent's registered phone.
    pub fn on_routed(
        &mut self,
        layer: &mut TransactionLayer,
        routed: CallRouted,
        phone: Option<PhoneTarget>,
        now: Instant,
    ) {
        let (key, output) = match routed {
            CallRouted::Output { call, output } => (call, output),
            CallRouted::OffersVoid { call } => {
                tracing::info!(call, "routing restarted; the phones still ringing stop");
                self.cancel_legs(layer, call, |party| matches!(party, Party::Agent(_)), now);
                return;
            }
        };
        let Some(over) = self.calls.get(&key).filter(|c| !c.detached).map(|c| c.over) else {
            return;
        };
        match output {
            Output::Offered { agent, .. } if !over => {
                let rung = match phone {
                    Some(target) => {
                        self.ring(layer, key, Party::Agent(agent), target, Socket::Agent, now)
                    }
                    None => {
                        tracing::info!(call = key, %agent, "offered agent has no registered phone");
                        false
                    }
                };
                if !rung {
                    self.command(key, CallCmd::AgentFailed { agent });
                }
            }
            // Also a rejection: one made in the console leaves the phone ringing (a phone's own
            // refusal left no ringing leg to cancel).
            Output::OfferRevoked { agent, .. } => {
                self.cancel_leg(layer, key, &Party::Agent(agent), now)
            }
            Output::Transferred { from, .. } if !over => {
                // The caller waits again (queue) or is offered to the target agent next; a team
                // lead listening in stops (the call may leave their team).
                let lead = self.calls.get_mut(&key).is_some_and(|call| {
                    call.left_referring = None;
                    std::mem::take(&mut call.lead_monitors)
                });
                self.hang_up_leg(layer, key, &Party::Agent(from), now);
                if lead {
                    tracing::info!(
                        call = key,
                        "the call was transferred; the team lead's monitoring ends"
                    );
                    self.end_monitoring(layer, key, now);
                }
                self.command(key, CallCmd::Transferred);
            }
            Output::Connected { agent, .. } => self.command(key, CallCmd::Connected { agent }),
            Output::Ended { .. } if !over => self.hang_up(layer, key, HangupBy::Agent, now),
            _ => {}
        }
    }

    fn command(&self, key: u64, command: CallCmd) {
        if let Some(call) = self.calls.get(&key) {
            call.command(key, command);
        }
    }

    /// Sends the INVITE of a new far leg; `false` if it could not be sent.
    fn ring(
        &mut self,
        layer: &mut TransactionLayer,
        key: u64,
        party: Party,
        target: PhoneTarget,
        media: Socket,
        now: Instant,
    ) -> bool {
        let via = self.via(target.peer.transport);
        let contact = self.contact(target.peer.transport);
        let host = self.sent_by(target.peer.transport);
        let Some(call) = self.calls.get_mut(&key) else {
            return false;
        };
        // A click-to-dial call offers the agent both laws; later legs get the one in use.
        let codecs = match (&call.caller, &call.dial, media) {
            (None, Some(_), Socket::Agent) => vec![Law::MuLaw, Law::ALaw],
            _ => vec![call.law],
        };
        let (rtp, session) = match media {
            Socket::Caller => (call.caller_rtp, &mut call.caller_sdp),
            Socket::Agent => (call.agent_rtp, &mut call.agent_sdp),
            Socket::Supervisor => match call.supervisor_media.as_mut() {
                Some((rtp, session)) => (*rtp, session),
                None => return false,
            },
        };
        let local = LocalMedia {
            rtp,
            codecs,
            telephone_event: call.telephone_event,
            ptime: 20,
            direction: sdp::Direction::SendRecv,
        };
        let offer = sdp::offer(&local, session);
        let call_id = new_call_id(&host.ip().to_string());
        let invite = match agent_invite(&target, &call.caller_number, host, &via, &call_id) {
            Ok(mut invite) => {
                invite.headers.push(contact);
                invite.body = with_sdp(&mut invite.headers, &offer);
                invite
            }
            Err(err) => {
                tracing::warn!(call = key, ?party, uri = target.uri, %err, "contact unusable");
                return false;
            }
        };
        // Routing times its offers to agents; every other leg gets the ring timeout.
        let timed = match &party {
            Party::Agent(_) => call.dial.is_some(),
            Party::External(_) | Party::Supervisor(_) => true,
        };
        match layer.send_request(invite.clone(), target.peer, now) {
            Ok(invite_key) => {
                tracing::info!(call = key, ?party, phone = %target.peer, "ringing");
                if timed {
                    let until = now + self.ctx.ring_timeout;
                    self.ring_deadlines
                        .push(Reverse((until, key, call_id.clone())));
                }
                self.by_invite.insert(invite_key.clone(), key);
                self.by_call_id.insert(call_id.clone(), key);
                call.agents.push(AgentLeg {
                    party,
                    media,
                    referred: false,
                    invite,
                    key: invite_key,
                    call_id,
                    peer: target.peer,
                    offer,
                    state: AgentState::Ringing,
                    ack: None,
                    forks: Vec::new(),
                });
                true
            }
            Err(err) => {
                tracing::warn!(call = key, ?party, %err, "INVITE not sent");
                false
            }
        }
    }

    /// Cancels the party's ringing far leg (its INVITE then ends with 487).
    fn cancel_leg(&mut self, layer: &mut TransactionLayer, key: u64, party: &Party, now: Instant) {
        self.cancel_legs(layer, key, |p| p == party, now);
    }

    /// Cancels every ringing far leg of a party that `whose` picks.
    fn cancel_legs(
        &mut self,
        layer: &mut TransactionLayer,
        key: u64,
        whose: impl Fn(&Party) -> bool,
        now: Instant,
    ) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        for leg in call
            .agents
            .iter_mut()
            .filter(|l| whose(&l.party) && matches!(l.state, AgentState::Ringing))
        {
            match layer.cancel(&leg.key, now) {
                Ok(_) => leg.state = AgentState::Cancelling,
                Err(err) => {
                    tracing::debug!(call = key, party = ?leg.party, %err, "leg not cancelled")
                }
            }
        }
    }

    /// Sends BYE on the party's answered leg (or cancels it while it rings). A phone that
    /// asked for the transfer with REFER first gets the NOTIFY that it succeeded.
    fn hang_up_leg(&mut self, layer: &mut TransactionLayer, key: u64, party: &Party, now: Instant) {
        self.cancel_leg(layer, key, party, now);
        self.hang_up_answered(layer, key, |l| &l.party == party, now);
    }

    /// Sends BYE on the answered legs `which` picks (a referring phone first gets its NOTIFY).
    /// One answer is hung up by its own leg's Call-ID: the party may be rung again on a new leg
    /// meanwhile (a ring-all call ringing out and ringing the group again), which must go on.
    fn hang_up_answered(
        &mut self,
        layer: &mut TransactionLayer,
        key: u64,
        which: impl Fn(&AgentLeg) -> bool,
        now: Instant,
    ) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let mut requests = Vec::new();
        let mut gone = Vec::new();
        for leg in call.agents.iter_mut().filter(|l| which(l)) {
            if let AgentState::Answered(dialog) = &mut leg.state {
                if leg.referred {
                    requests.push((notify(dialog, 200), leg.peer));
                }
                requests.push((dialog.request(Method::Bye, ""), leg.peer));
                gone.push(leg.call_id.clone());
            }
        }
        for call_id in gone {
            self.drop_leg(key, |l| l.call_id == call_id);
        }
        for (request, peer) in requests {
            self.send_in_dialog(layer, key, request, peer, now);
        }
    }

    /// Sends a request built by a dialog (its Via placeholder replaced by ours); a BYE to the
    /// outbound trunk's IP (its calls to vacd may come from another port) is kept until its
    /// final response, in case the trunk challenges it. Only BYEs: the answer goes one CSeq
    /// up, past the dialog's count, which the BYE ends.
    fn send_in_dialog(
        &mut self,
        layer: &mut TransactionLayer,
        key: u64,
        request: Result<Request, vacd_sip::Error>,
        peer: Peer,
        now: Instant,
    ) {
        let mut request = match request {
            Ok(request) => request,
            Err(err) => {
                tracing::debug!(call = key, %err, "no request to send");
                return;
            }
        };
        let via = self.via(peer.transport);
        for header in request.headers.iter_mut() {
            if let Header::Via(v) = header {
                *v = rsip::headers::Via::new(via.clone());
                break;
            }
        }
        let method = request.method;
        let to_trunk = method == Method::Bye
            && self.ctx.outbound_credentials.is_some()
            && self.ctx.outbound.is_some_and(|o| o.ip() == peer.addr.ip())
            && peer.transport == Transport::Udp;
        let kept = to_trunk.then(|| request.clone());
        match layer.send_request(request, peer, now) {
            Ok(sent) => {
                if let Some(request) = kept {
                    self.to_trunk.insert(sent, (request, peer));
                }
            }
            Err(err) => {
                tracing::warn!(call = key, %peer, %method, %err, "in-dialog request not sent")
            }
        }
    }

    /// Ends the call: BYE to the caller, BYE or CANCEL to every agent leg, and tells the actor.
    fn hang_up(&mut self, layer: &mut TransactionLayer, key: u64, by: HangupBy, now: Instant) {
        self.end_legs(layer, key, false, now);
        if let Some(call) = self.calls.get(&key) {
            call.command(key, CallCmd::Hangup { by });
        }
    }

    /// Ends every leg (but the caller's when `caller_gone`: it hung up itself).
    fn end_legs(
        &mut self,
        layer: &mut TransactionLayer,
        key: u64,
        caller_gone: bool,
        now: Instant,
    ) {
        let parties: Vec<Party> = match self.calls.get_mut(&key) {
            Some(call) if !call.over => {
                call.over = true;
                call.agents.iter().map(|l| l.party.clone()).collect()
            }
            _ => return,
        };
        if !caller_gone {
            if let Some(caller) = self.calls.get_mut(&key).and_then(|c| c.caller.as_mut()) {
                let bye = caller.dialog.request(Method::Bye, "");
                let peer = caller.peer;
                self.send_in_dialog(layer, key, bye, peer, now);
            }
        }
        for party in parties {
            self.hang_up_leg(layer, key, &party, now);
        }
        self.remove_if_done(key);
    }

    /// A BYE, re-INVITE or REFER in a call's dialog; `false` if it belongs to none.
    /// `agent_named` finds the agent of a tenant by SIP username (REFER targets).
    pub fn on_request(
        &mut self,
        layer: &mut TransactionLayer,
        key: &TransactionKey,
        request: &Request,
        agent_named: impl Fn(i64, &str) -> Option<AgentId>,
        now: Instant,
    ) -> bool {
        let Some((call_key, side)) = self.find(request) else {
            return false;
        };
        let Some(call) = self.calls.get_mut(&call_key) else {
            return false;
        };
        let call_id = message::call_id(&request.headers).unwrap_or_default();
        let in_dialog = match side {
            Side::Caller => match call.caller.as_mut() {
                Some(caller) => caller.dialog.receive_request(request),
                None => Err(vacd_sip::Error::NotInDialog),
            },
            Side::Agent => match call.agents.iter_mut().find_map(|l| match &mut l.state {
                AgentState::Answered(d) if l.call_id == call_id => Some(d),
                _ => None,
            }) {
                Some(dialog) => dialog.receive_request(request),
                None => Err(vacd_sip::Error::NotInDialog),
            },
        };
        let code = match (&in_dialog, request.method) {
            (Err(vacd_sip::Error::CSeqOutOfOrder { .. }), _) => 500,
            (Err(_), _) => 481,
            (Ok(()), Method::Bye) => 200,
            (Ok(()), Method::Invite) => {
                self.reinvite(layer, key, request, call_key, side, now);
                return true;
            }
            (Ok(()), Method::Refer) if side == Side::Agent => {
                self.refer(layer, key, request, call_key, agent_named, now);
                return true;
            }
            (Ok(()), _) => 405,
        };
        reply(layer, key, request, code, now);
        if code != 200 {
            return true;
        }
        // A placed leg that hung up is over already; what it was decides the rest.
        let by = match side {
            Side::Caller => HangupBy::Caller,
            Side::Agent => match self
                .drop_leg(call_key, |l| l.call_id == call_id)
                .map(|l| (l.party, l.referred))
            {
                Some((Party::Supervisor(_), _)) => {
                    // The supervisor stops monitoring; the call goes on.
                    self.command(call_key, CallCmd::SupervisorGone);
                    return true;
                }
                Some((Party::Agent(agent), true)) => {
                    // REFER, 202, BYE: the phone is done, the transfer it asked for goes on.
                    tracing::info!(call = call_key, %agent, "the transferring phone hung up; the transfer goes on");
                    if let Some(call) = self.calls.get_mut(&call_key) {
                        call.left_referring = Some(agent);
                    }
                    return true;
                }
                Some((Party::External(_), _)) => HangupBy::Remote,
                Some((Party::Agent(_), false)) | None => HangupBy::Agent,
            },
        };
        tracing::info!(call = call_key, by = by.as_str(), "BYE");
        self.end_legs(layer, call_key, side == Side::Caller, now);
        self.command(call_key, CallCmd::Hangup { by });
        true
    }

    /// Forgets the first placed leg of `key` that `matches`, with its index entries.
    fn drop_leg(&mut self, key: u64, matches: impl Fn(&AgentLeg) -> bool) -> Option<AgentLeg> {
        let call = self.calls.get_mut(&key)?;
        let index = call.agents.iter().position(matches)?;
        let leg = call.agents.remove(index);
        self.by_call_id.remove(&leg.call_id);
        self.by_invite.remove(&leg.key);
        Some(leg)
    }

    /// A re-INVITE: hold (sendonly, inactive, c=0.0.0.0), resume or a moved phone. vacd answers
    /// for its side of that leg and tells the actor where the leg's media goes now; a holding
    /// agent's caller hears music meanwhile. Without an SDP offer, vacd's 2xx offers and the
    /// ACK's answer is applied ([`Calls::on_ack`]).
    fn reinvite(
        &mut self,
        layer: &mut TransactionLayer,
        key: &TransactionKey,
        request: &Request,
        call_key: u64,
        side: Side,
        now: Instant,
    ) {
        let transport = key_transport(request);
        let contact = self.contact(transport);
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        let call_id = message::call_id(&request.headers).unwrap_or_default();
        let leg = match side {
            Side::Caller => LegId::A,
            Side::Agent => {
                let socket = call
                    .agents
                    .iter()
                    .find(|l| l.call_id == call_id)
                    .map(|l| l.media);
                match socket.map(Socket::relay_leg) {
                    Some(Some(leg)) => leg,
                    // A supervisor's phone cannot renegotiate (it is outside the relay).
                    Some(None) | None => {
                        reply(layer, key, request, 488, now);
                        return;
                    }
                }
            }
        };
        let (rtp, session) = match leg {
            LegId::A => (call.caller_rtp, &mut call.caller_sdp),
            LegId::B => (call.agent_rtp, &mut call.agent_sdp),
        };
        let media = LocalMedia {
            rtp,
            codecs: vec![call.law],
            telephone_event: call.telephone_event,
            ptime: 20,
            direction: sdp::Direction::SendRecv,
        };
        // The SDP of our 200: the answer to the phone's offer, or — without one (RFC 3261
        // §14.2) — our offer, whose answer the ACK brings.
        let ours = if request.body.is_empty() {
            tracing::info!(
                call = call_key,
                ?side,
                "re-INVITE without an offer: offering"
            );
            let offer = sdp::offer(&media, session);
            let cseq = message::cseq(&request.headers).map_or(0, |(n, _)| n);
            call.awaiting_answers.retain(|(id, ..)| id != call_id);
            call.awaiting_answers
                .push((call_id.to_owned(), cseq, leg, offer.clone()));
            Ok(offer)
        } else {
            SessionDescription::parse(&request.body)
                .map_err(|e| e.to_string())
                .and_then(|offer| sdp::answer(&offer, &media, session).map_err(|e| e.to_string()))
                .map(|(answer, negotiated)| {
                    let receiving = !negotiated.remote_hold;
                    tracing::info!(call = call_key, ?side, hold = !receiving, "re-INVITE");
                    call.command(
                        call_key,
                        CallCmd::Renegotiated {
                            leg,
                            remote: negotiated.remote,
                            receiving,
                        },
                    );
                    answer
                })
        };
        let response = match ours {
            Ok(sdp) => {
                let mut response = response_to(request, 200, None);
                response.headers.push(contact);
                response.body = with_sdp(&mut response.headers, &sdp);
                response
            }
            Err(err) => {
                tracing::info!(call = call_key, ?side, err, "re-INVITE not acceptable, 488");
                response_to(request, 488, None)
            }
        };
        if let Err(err) = layer.send_response(key, response, now) {
            tracing::debug!(%key, %err, "re-INVITE response not sent");
        }
    }

    fn find(&self, request: &Request) -> Option<(u64, Side)> {
        let call_id = message::call_id(&request.headers).ok()?;
        let key = *self.by_call_id.get(call_id)?;
        let call = self.calls.get(&key)?;
        let side = if call
            .caller
            .as_ref()
            .is_some_and(|c| c.dialog.id().call_id == call_id)
        {
            Side::Caller
        } else {
            Side::Agent
        };
        Some((key, side))
    }

    /// A 401 or 407 from the outbound trunk to an INVITE of ours: the INVITE goes again with
    /// the trunk's credentials (RFC 3261 §22.2), CSeq one up, on a new branch; the layer
    /// acknowledges the challenge. Only once: a challenge to an INVITE that carried an answer
    /// means the credentials are wrong, and the refusal stands. True when sent again.
    fn answer_challenge(
        &mut self,
        layer: &mut TransactionLayer,
        call_key: u64,
        key: &TransactionKey,
        response: &Response,
        now: Instant,
    ) -> bool {
        let Some(leg) = self
            .calls
            .get(&call_key)
            .and_then(|call| call.agents.iter().find(|l| &l.key == key))
        else {
            return false;
        };
        if !matches!(leg.party, Party::External(_)) || !matches!(leg.state, AgentState::Ringing) {
            return false;
        }
        let peer = leg.peer;
        let Some(invite) = self.authorized(&leg.invite, response, peer) else {
            tracing::warn!(
                call = call_key,
                "the trunk's challenge not answered: no credentials for it, or they were refused"
            );
            return false;
        };
        match layer.send_request(invite.clone(), peer, now) {
            Ok(again) => {
                self.by_invite.remove(key);
                self.by_invite.insert(again.clone(), call_key);
                let leg = self
                    .calls
                    .get_mut(&call_key)
                    .and_then(|call| call.agents.iter_mut().find(|l| &l.key == key));
                if let Some(leg) = leg {
                    leg.key = again;
                    leg.invite = invite;
                }
                tracing::info!(call = call_key, "the trunk's challenge answered");
                true
            }
            Err(err) => {
                tracing::warn!(call = call_key, %err, "the answer to the trunk's challenge not sent");
                false
            }
        }
    }

    /// `request` again with the outbound trunk's answer to the challenge in `response` (401:
    /// Authorization, 407: Proxy-Authorization), CSeq one up, on a new branch. None when vacd
    /// has no credentials for the trunk, `request` carried an answer already (the credentials
    /// are wrong: the refusal stands), or the challenge cannot be answered.
    fn authorized(&self, request: &Request, response: &Response, peer: Peer) -> Option<Request> {
        let (username, password) = self.ctx.outbound_credentials.as_ref()?;
        if request
            .headers
            .iter()
            .any(|h| matches!(h, Header::Authorization(_) | Header::ProxyAuthorization(_)))
        {
            return None;
        }
        let proxy = response.status_code.code() == 407;
        let challenge = response.headers.iter().find_map(|h| match h {
            Header::ProxyAuthenticate(v) if proxy => Some(v.value().to_owned()),
            Header::WwwAuthenticate(v) if !proxy => Some(v.value().to_owned()),
            _ => None,
        })?;
        let method = request.method.to_string();
        let answer = vacd_sip::digest::answer_challenge(
            &challenge,
            &method,
            &request.uri.to_string(),
            username,
            password,
            1,
            &new_tag(),
        )?;
        let (cseq, _) = message::cseq(&request.headers).ok()?;
        let via = self.via(peer.transport);
        let mut again = request.clone();
        again.headers = request
            .headers
            .iter()
            .map(|h| match h {
                Header::Via(_) => Header::Via(rsip::headers::Via::new(via.clone())),
                Header::CSeq(_) => {
                    Header::CSeq(rsip::headers::CSeq::new(format!("{} {method}", cseq + 1)))
                }
                other => other.clone(),
            })
            .collect::<Vec<_>>()
            .into();
        again.headers.push(if proxy {
            Header::ProxyAuthorization(rsip::headers::ProxyAuthorization::new(answer))
        } else {
            Header::Authorization(rsip::headers::Authorization::new(answer))
        });
        Some(again)
    }

    /// A 401 or 407 to a BYE vacd sent the outbound trunk (a provider that challenges its
    /// calls' INVITEs may challenge their BYEs too): sent again once with the trunk's
    /// credentials, as the INVITE was, and kept so that a refusal of those is logged. Any
    /// final response ends the wait for it.
    fn answer_in_dialog_challenge(
        &mut self,
        layer: &mut TransactionLayer,
        key: &TransactionKey,
        response: &Response,
        now: Instant,
    ) -> bool {
        let code = response.status_code.code();
        if code < 200 {
            return self.to_trunk.contains_key(key);
        }
        let Some((request, peer)) = self.to_trunk.remove(key) else {
            return false;
        };
        if !matches!(code, 401 | 407) {
            return true;
        }
        let method = request.method;
        let Some(again) = self.authorized(&request, response, peer) else {
            tracing::warn!(%peer, %method, code, "the trunk refused our request: no credentials for it, or they were refused");
            return true;
        };
        match layer.send_request(again.clone(), peer, now) {
            Ok(sent) => {
                tracing::info!(%peer, %method, "the trunk's challenge answered");
                self.to_trunk.insert(sent, (again, peer));
            }
            Err(err) => {
                tracing::warn!(%peer, %method, %err, "the answer to the trunk's challenge not sent")
            }
        }
        true
    }

    /// A response to one of our requests; `false` if it is neither an agent INVITE's nor one
    /// to an in-dialog request kept for the trunk's challenge.
    pub fn on_response(
        &mut self,
        layer: &mut TransactionLayer,
        key: &TransactionKey,
        response: &Response,
        now: Instant,
    ) -> bool {
        let Some(&call_key) = self.by_invite.get(key) else {
            return self.answer_in_dialog_challenge(layer, key, response, now);
        };
        if matches!(response.status_code.code(), 401 | 407)
            && self.answer_challenge(layer, call_key, key, response, now)
        {
            return true;
        }
        let Some(call) = self.calls.get_mut(&call_key) else {
            return false;
        };
        let Some(index) = call.agents.iter().position(|l| &l.key == key) else {
            return true;
        };
        let code = response.status_code.code();
        if code < 200 {
            return true;
        }
        let leg = &mut call.agents[index];
        // A 2xx that forms no dialog (no To tag, no Contact) cannot be acknowledged or hung
        // up: it counts as a refusal, as a final error response does — unless the leg is
        // answered already (a second, forked answer), which stays.
        let dialog = match Dialog::uac(&leg.invite, response) {
            Ok(dialog) => Some(dialog),
            Err(err) if matches!(leg.state, AgentState::Answered(_)) => {
                tracing::warn!(call = call_key, %err, "a second 2xx that forms no dialog; ignored");
                return true;
            }
            Err(err) if code < 300 => {
                tracing::warn!(call = call_key, %err, "agent's 2xx forms no dialog; taken as a refusal");
                None
            }
            Err(_) => None,
        };
        let Some(dialog) = dialog else {
            let Some(leg) = self.drop_leg(call_key, |l| &l.key == key) else {
                return true;
            };
            if matches!(leg.state, AgentState::Ringing) {
                tracing::info!(call = call_key, party = ?leg.party, code, "call refused");
                self.leg_failed(layer, call_key, leg.party, now);
            }
            self.remove_if_done(call_key);
            return true;
        };
        let via = self.ctx.via(leg.peer.transport);
        let answered = match &leg.state {
            AgentState::Answered(answered) => Some(answered.id() == dialog.id()),
            _ => None,
        };
        let forked = answered == Some(false);
        // The ACK already sent for this dialog's 2xx, if this is a retransmission of it.
        let sent = match answered {
            Some(true) => leg.ack.as_ref(),
            Some(false) => leg
                .forks
                .iter()
                .find(|(id, _)| id == dialog.id())
                .map(|(_, ack)| ack),
            None => None,
        };
        let repeated = sent.is_some();
        // Every new dialog costs an ACK kept for the rest of the call and a BYE: past a few,
        // a peer answering with new tags again and again is left to hang up by itself.
        if forked && !repeated && leg.forks.len() >= MAX_FORKS {
            tracing::warn!(
                call = call_key,
                forks = MAX_FORKS,
                "another answer of a forked INVITE past the limit; ignored"
            );
            return true;
        }
        match sent {
            // The same ACK again, not a new one on a new branch.
            Some(ack) => layer.send_stateless(&rsip::SipMessage::Request(ack.clone()), leg.peer),
            // The INVITE's own CSeq number (two after a trunk's challenge), and its credentials
            // (RFC 3261 §13.2.2.4).
            None => {
                let invite_cseq =
                    message::cseq(&leg.invite.headers).map_or(1, |(number, _)| number);
                match dialog.ack(invite_cseq, &via) {
                    Ok(mut ack) => {
                        for credentials in leg.invite.headers.iter().filter(|h| {
                            matches!(h, Header::Authorization(_) | Header::ProxyAuthorization(_))
                        }) {
                            ack.headers.push(credentials.clone());
                        }
                        layer.send_stateless(&rsip::SipMessage::Request(ack.clone()), leg.peer);
                        if forked {
                            leg.forks.push((dialog.id().clone(), ack));
                        } else {
                            leg.ack = Some(ack);
                        }
                    }
                    Err(err) => tracing::warn!(call = call_key, %err, "ACK not built"),
                }
            }
        }
        match leg.state {
            // A 2xx of a second dialog (the INVITE forked on its way): acknowledged above, then
            // hung up (RFC 3261 §13.2.2.4) — once; the leg stays with the first answer.
            AgentState::Answered(_) if forked && !repeated => {
                let mut second = dialog;
                let bye = second.request(Method::Bye, "");
                let peer = leg.peer;
                tracing::info!(
                    call = call_key,
                    "a second answer of a forked INVITE; hung up"
                );
                self.send_in_dialog(layer, call_key, bye, peer, now);
            }
            // A retransmitted 2xx (of the answer or of a fork already hung up): the ACK above
            // was all it needed.
            AgentState::Answered(_) => {}
            // The answer crossed our CANCEL, or came after the call ended: hang up this leg —
            // the last one of an ended call, whose place it held until now.
            AgentState::Cancelling => {
                leg.state = AgentState::Answered(dialog);
                let call_id = leg.call_id.clone();
                self.hang_up_answered(layer, call_key, |l| l.call_id == call_id, now);
                self.remove_if_done(call_key);
            }
            AgentState::Ringing if call.over => {
                leg.state = AgentState::Answered(dialog);
                let party = leg.party.clone();
                self.hang_up_leg(layer, call_key, &party, now);
                self.remove_if_done(call_key);
            }
            AgentState::Ringing => {
                let remote = SessionDescription::parse(&response.body)
                    .map_err(|e| e.to_string())
                    .and_then(|answer| {
                        sdp::accept_answer(&leg.offer, &answer).map_err(|e| e.to_string())
                    });
                let party = leg.party.clone();
                let (media, peer) = (leg.media, leg.peer);
                leg.state = AgentState::Answered(dialog);
                match (remote, &party) {
                    (Ok(negotiated), Party::Agent(agent)) => {
                        tracing::info!(call = call_key, %agent, "agent answered");
                        call.command(
                            call_key,
                            CallCmd::AgentAnswered {
                                agent: *agent,
                                remote: negotiated.remote,
                            },
                        );
                        // Click-to-dial: the agent is on the line, now call the customer (in
                        // the law the agent's phone chose, which the media follows).
                        if let Some(number) = call.dial.take() {
                            call.law = negotiated.law;
                            call.command(
                                call_key,
                                CallCmd::Codec {
                                    law: negotiated.law,
                                },
                            );
                            call.telephone_event = negotiated.telephone_event;
                            self.dial_customer(layer, call_key, number, now);
                        }
                    }
                    (Ok(negotiated), Party::External(number)) => {
                        tracing::info!(call = call_key, number, "external number answered");
                        call.command(
                            call_key,
                            CallCmd::ExternalAnswered {
                                leg: media.relay_leg().unwrap_or(LegId::B),
                                remote: negotiated.remote,
                            },
                        );
                    }
                    (Ok(negotiated), Party::Supervisor(supervisor)) => {
                        tracing::info!(call = call_key, %supervisor, "supervisor answered");
                        call.command(
                            call_key,
                            CallCmd::SupervisorAnswered {
                                remote: negotiated.remote,
                                signalling: peer.addr.ip(),
                            },
                        );
                    }
                    (Err(err), _) => {
                        tracing::info!(call = call_key, ?party, %err, "SDP answer unusable; hanging up that leg");
                        self.hang_up_leg(layer, call_key, &party, now);
                        self.leg_failed(layer, call_key, party, now);
                    }
                }
            }
        }
        true
    }

    /// A transaction ended without an answer: an agent's INVITE that timed out or could not
    /// be sent counts as a refusal; a caller that never acknowledged our answer is hung up; an
    /// in-dialog request to the trunk is no longer kept.
    pub fn on_failed(&mut self, layer: &mut TransactionLayer, key: &TransactionKey, now: Instant) {
        if self.to_trunk.remove(key).is_some() {
            return;
        }
        let Some(&call_key) = self.by_invite.get(key) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        if call.caller.as_ref().is_some_and(|c| &c.invite == key) {
            tracing::info!(
                call = call_key,
                "caller never acknowledged the answer; hanging up"
            );
            self.hang_up(layer, call_key, HangupBy::System, now);
            return;
        }
        if let Some(leg) = self.drop_leg(call_key, |l| &l.key == key && l.pending()) {
            if matches!(leg.state, AgentState::Ringing) {
                tracing::info!(call = call_key, party = ?leg.party, "no answer from the far end");
                self.leg_failed(layer, call_key, leg.party, now);
            }
            self.remove_if_done(call_key);
        }
    }

    /// An ACK in a call's dialog: the answer to the offer vacd made in its 2xx to a re-INVITE
    /// without one, if it waited for that. An unusable answer leaves the media as it was.
    pub fn on_ack(&mut self, request: &Request) {
        let call_id = message::call_id(&request.headers).unwrap_or_default();
        let Some(&key) = self.by_call_id.get(call_id) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let cseq = message::cseq(&request.headers).map_or(0, |(n, _)| n);
        let Some(index) = call
            .awaiting_answers
            .iter()
            .position(|(id, number, ..)| id == call_id && *number == cseq)
        else {
            return;
        };
        let (_, _, leg, offer) = call.awaiting_answers.swap_remove(index);
        let negotiated = SessionDescription::parse(&request.body)
            .map_err(|e| e.to_string())
            .and_then(|answer| sdp::accept_answer(&offer, &answer).map_err(|e| e.to_string()));
        match negotiated {
            Ok(negotiated) => {
                let receiving = !negotiated.remote_hold;
                tracing::info!(
                    call = key,
                    hold = !receiving,
                    "re-INVITE answered in the ACK"
                );
                call.command(
                    key,
                    CallCmd::Renegotiated {
                        leg,
                        remote: negotiated.remote,
                        receiving,
                    },
                );
            }
            Err(err) => {
                tracing::warn!(
                    call = key,
                    err,
                    "ACK without a usable answer; media unchanged"
                )
            }
        }
    }

    /// What a call actor reports.
    pub fn on_report(&mut self, layer: &mut TransactionLayer, report: CallReport, now: Instant) {
        match report {
            CallReport::AgentRefused { call, agent } => {
                self.hang_up_leg(layer, call, &Party::Agent(agent), now)
            }
            CallReport::TransferRefused { call, agent } => {
                self.refer_failed(layer, call, agent, now)
            }
            CallReport::Failed { call } => self.hang_up(layer, call, HangupBy::System, now),
            CallReport::Finished { call } => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.finished = true;
                    if !c.over {
                        // The actor stopped on its own (it failed): end the legs too.
                        self.end_legs(layer, call, false, now);
                    }
                }
                self.remove_if_done(call);
            }
        }
    }

    /// A far leg vacd placed failed: an agent's refusal goes to routing (which re-routes), a
    /// click-to-dial agent's refusal or a failed transfer to an external number ends the call.
    fn leg_failed(&mut self, layer: &mut TransactionLayer, key: u64, party: Party, now: Instant) {
        let dialling = self.calls.get(&key).is_some_and(|c| c.dial.is_some());
        match party {
            // A click-to-dial whose agent's own phone refused (or never answered) has nobody
            // to call for: it ends (result `failed`), freeing its slot and media.
            Party::Agent(agent) if dialling => {
                tracing::info!(call = key, %agent, "the dialling agent's phone did not answer; call ended");
                self.hang_up(layer, key, HangupBy::Agent, now);
            }
            Party::Agent(agent) => self.command(key, CallCmd::AgentFailed { agent }),
            Party::External(number) => {
                tracing::warn!(
                    call = key,
                    number,
                    "transfer to an external number failed; hanging up"
                );
                self.hang_up(layer, key, HangupBy::System, now);
            }
            Party::Supervisor(_) => self.command(key, CallCmd::SupervisorGone),
        }
    }

    /// A REFER from the connected agent's phone: a blind transfer to another agent (the
    /// Refer-To user is an agent's SIP username in the call's tenant) or to an external
    /// number (an E.164 user part) through the outbound trunk. Answered 202; the phone gets a
    /// NOTIFY with the outcome and, on success, the BYE.
    fn refer(
        &mut self,
        layer: &mut TransactionLayer,
        key: &TransactionKey,
        request: &Request,
        call_key: u64,
        agent_named: impl Fn(i64, &str) -> Option<AgentId>,
        now: Instant,
    ) {
        let call_id = message::call_id(&request.headers).unwrap_or_default();
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        let tenant = call.tenant;
        let from = call
            .agents
            .iter_mut()
            .find(|l| l.call_id == call_id && matches!(l.state, AgentState::Answered(_)));
        let (Some(leg), Some(user)) = (from, refer_to_user(request)) else {
            tracing::info!(
                call = call_key,
                call_id,
                "REFER from no answered agent leg or without a Refer-To user, 400"
            );
            reply(layer, key, request, 400, now);
            return;
        };
        let Party::Agent(from) = leg.party else {
            tracing::info!(
                call = call_key,
                call_id,
                "REFER from a leg that is no agent's, 403"
            );
            reply(layer, key, request, 403, now);
            return;
        };
        let target = agent_named(tenant, &user).map(|agent| TransferTarget::Agent { agent });
        // A number only as one is dialled abroad (`+`, `00`): bare digits are more likely a
        // colleague's extension whose phone is not registered, and dialling `+2002` would
        // drop the caller.
        let number = refer_number(&user);
        let code = if target.is_some() || number.is_some() {
            leg.referred = true;
            202
        } else {
            404
        };
        reply(layer, key, request, code, now);
        tracing::info!(call = call_key, %from, user, code, "REFER");
        match (target, number) {
            (Some(to), _) => self.command(call_key, CallCmd::Transfer { agent: from, to }),
            (None, Some(number)) => {
                if let Err(err) = self.transfer_external(layer, call_key, from, number, now) {
                    tracing::info!(call = call_key, %err, "transfer refused");
                    self.refer_failed(layer, call_key, from, now);
                }
            }
            (None, None) => {}
        }
    }

    /// The transfer a phone asked for with REFER did not happen: it keeps the call and is told
    /// so with a NOTIFY.
    fn refer_failed(
        &mut self,
        layer: &mut TransactionLayer,
        key: u64,
        agent: AgentId,
        now: Instant,
    ) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if call.left_referring == Some(agent) {
            // The phone is gone already: nobody is left to take the call back.
            call.left_referring = None;
            tracing::info!(call = key, %agent, "transfer refused after the phone hung up; the call ends");
            self.hang_up(layer, key, HangupBy::Agent, now);
            return;
        }
        let Some(leg) = call
            .agents
            .iter_mut()
            .find(|l| l.party == Party::Agent(agent) && l.referred)
        else {
            return;
        };
        leg.referred = false;
        let peer = leg.peer;
        if let AgentState::Answered(dialog) = &mut leg.state {
            let request = notify(dialog, 503);
            self.send_in_dialog(layer, key, request, peer, now);
        }
    }

    /// Hangs up the phone of the supervisor listening in on call `key`, if one is.
    fn end_monitoring(&mut self, layer: &mut TransactionLayer, key: u64, now: Instant) {
        let supervisors: Vec<Party> = self
            .calls
            .get(&key)
            .into_iter()
            .flat_map(|call| &call.agents)
            .filter(|l| matches!(l.party, Party::Supervisor(_)))
            .map(|l| l.party.clone())
            .collect();
        for supervisor in &supervisors {
            self.hang_up_leg(layer, key, supervisor, now);
            self.command(key, CallCmd::SupervisorGone);
        }
    }

    /// Blind transfer of a connected call to an external number through the outbound trunk:
    /// the agent's phone is hung up (its interaction ends, the agent goes to wrap-up), the
    /// caller hears music while vacd calls the number, then the two are bridged.
    pub fn transfer_external(
        &mut self,
        layer: &mut TransactionLayer,
        key: u64,
        from: AgentId,
        number: String,
        now: Instant,
    ) -> Result<(), TransferError> {
        let trunk = self.ctx.outbound.ok_or(TransferError::NoOutboundTrunk)?;
        let call = self.talking(key, from).ok_or(TransferError::NotConnected)?;
        call.detached = true;
        call.command(
            key,
            CallCmd::TransferredOut {
                number: number.clone(),
            },
        );
        // The call leaves the contact center: a supervisor listening in goes with the agent
        // (a whisper would reach the outside party).
        self.hang_up_leg(layer, key, &Party::Agent(from), now);
        self.end_monitoring(layer, key, now);
        self.call_number(layer, key, trunk, number, Socket::Agent, now);
        Ok(())
    }

    /// Puts `agent`'s call on hold from its console (`on`), or takes it off: the caller hears
    /// music meanwhile, and nothing passes between caller and agent. The agent's phone is not
    /// asked: vacd relays the media, so holding it there needs no re-INVITE.
    pub fn hold(&mut self, key: u64, agent: AgentId, on: bool) -> Result<(), TransferError> {
        self.talking(key, agent)
            .ok_or(TransferError::NotConnected)?
            .command(key, CallCmd::Hold { on });
        Ok(())
    }

    /// `agent` of `tenant` connected a console: each call its phone is talking on tells the
    /// console whether it is held (see [`CallCmd::ConsoleLinked`]).
    pub fn console_linked(&mut self, tenant: i64, agent: AgentId) {
        let keys: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, call)| call.tenant == tenant)
            .map(|(key, _)| *key)
            .collect();
        for key in keys {
            if let Some(call) = self.talking(key, agent) {
                call.command(key, CallCmd::ConsoleLinked { agent });
            }
        }
    }

    /// The live call `key`, if `agent`'s phone is talking on it.
    fn talking(&mut self, key: u64, agent: AgentId) -> Option<&mut Call> {
        self.calls
            .get_mut(&key)
            .filter(|c| !c.over && !c.detached)
            .filter(|c| {
                c.agents.iter().any(|l| {
                    l.party == Party::Agent(agent) && matches!(l.state, AgentState::Answered(_))
                })
            })
    }

    /// Calls `number` through the outbound trunk on `socket`'s side of the call; if that
    /// cannot even be sent, the call ends.
    fn call_number(
        &mut self,
        layer: &mut TransactionLayer,
        key: u64,
        trunk: SocketAddr,
        number: String,
        socket: Socket,
        now: Instant,
    ) {
        let uri = format!("sip:{number}@{trunk}");
        let target = PhoneTarget {
            uri: uri.clone(),
            peer: Peer::new(Transport::Udp, trunk),
            aor: uri,
        };
        if !self.ring(layer, key, Party::External(number), target, socket, now) {
            self.hang_up(layer, key, HangupBy::System, now);
        }
    }

    /// Click-to-dial: rings the agent's phone first; when it answers, vacd calls the number
    /// through the outbound trunk and bridges the two. The call's actor places it in routing
    /// as the agent's work (`Input::Place`): busy, its capacity taken, wrap-up after.
    pub fn dial(
        &mut self,
        layer: &mut TransactionLayer,
        dial: Dial,
        phone: Option<PhoneTarget>,
        now: Instant,
    ) -> Result<(), DialError> {
        let Dial {
            tenant,
            agent,
            queue,
            number,
        } = dial;
        let trunk = self.ctx.outbound.ok_or(DialError::NoOutboundTrunk)?;
        let phone = phone.ok_or(DialError::NoPhone)?;
        let (caller_socket, agent_socket) = self.ctx.rtp.bind_pair().map_err(|err| {
            tracing::error!(%err, "no free RTP ports for click-to-dial");
            DialError::NoPorts
        })?;
        let (Ok(caller_rtp), Ok(agent_rtp)) =
            (caller_socket.local_addr(), agent_socket.local_addr())
        else {
            return Err(DialError::NoPorts);
        };
        let record = NewCall {
            tenant,
            mailbox: None,
            service_address: None,
            queue: Some(queue),
            call_id: new_call_id(&self.ctx.udp.ip().to_string()),
            trunk: trunk.to_string(),
            caller: Some(number.clone()),
            dialled: number.clone(),
            dialled_by: Some(agent.0 as i64),
            language: None,
        };
        let media = CallMedia {
            caller_socket,
            agent_socket,
            caller_rtp,
            agent_rtp,
            caller_sdp: LocalSdp::new(caller_rtp.ip()),
            caller_remote: None,
            law: Law::MuLaw,
            payload_type: Law::MuLaw.payload_type(),
            telephone_event: Some(sdp::TELEPHONE_EVENT_PT),
        };
        // The agent's phone shows the number it is calling.
        let call_key = self.start(record, media, None, Some(number.clone()), number);
        if !self.ring(
            layer,
            call_key,
            Party::Agent(agent),
            phone,
            Socket::Agent,
            now,
        ) {
            self.hang_up(layer, call_key, HangupBy::System, now);
            return Err(DialError::NoPhone);
        }
        Ok(())
    }

    /// Click-to-dial, second step: the customer's leg, on the caller side of the call.
    fn dial_customer(
        &mut self,
        layer: &mut TransactionLayer,
        key: u64,
        number: String,
        now: Instant,
    ) {
        match self.ctx.outbound {
            Some(trunk) => self.call_number(layer, key, trunk, number, Socket::Caller, now),
            None => self.hang_up(layer, key, HangupBy::System, now),
        }
    }

    /// A supervisor starts monitoring a call in `mode` (calling its phone), switches the mode
    /// of its running monitoring (the same phone leg stays), or stops (`None`).
    pub fn monitor(
        &mut self,
        layer: &mut TransactionLayer,
        key: u64,
        monitoring: Monitoring,
        phone: Option<PhoneTarget>,
        now: Instant,
    ) -> Result<(), MonitorError> {
        let Monitoring {
            tenant,
            supervisor,
            lead,
            mode,
        } = monitoring;
        // A call transferred out of the contact center is monitored no more (only a stop is
        // taken, of a leg still ending).
        let call = self
            .calls
            .get_mut(&key)
            .filter(|c| c.tenant == tenant && !c.over && (!c.detached || mode.is_none()))
            .ok_or(MonitorError::NoCall)?;
        let party = Party::Supervisor(supervisor);
        let listening = call.agents.iter().any(|l| l.party == party);
        // The supervisor's last leg is still being cancelled (a stop, or an unanswered ring,
        // moments ago): its end would also end a new one started now.
        let ending = call
            .agents
            .iter()
            .any(|l| l.party == party && matches!(l.state, AgentState::Cancelling));
        let other = call
            .agents
            .iter()
            .any(|l| matches!(l.party, Party::Supervisor(s) if s != supervisor));
        match (mode, listening) {
            (Some(_), true) if ending => Err(MonitorError::Ending),
            (None, true) => {
                self.hang_up_leg(layer, key, &party, now);
                self.command(key, CallCmd::SupervisorGone);
                Ok(())
            }
            (None, false) => Err(MonitorError::NotMonitoring),
            (Some(mode), true) => {
                call.command(key, CallCmd::MonitorMode { mode });
                Ok(())
            }
            (Some(_), false) if other => Err(MonitorError::Busy),
            (Some(mode), false) => {
                let phone = phone.ok_or(MonitorError::NoPhone)?;
                let socket = self.ctx.rtp.bind().map_err(|_| MonitorError::NoPorts)?;
                let rtp = socket.local_addr().map_err(|_| MonitorError::NoPorts)?;
                if let Some(call) = self.calls.get_mut(&key) {
                    call.supervisor_media = Some((rtp, LocalSdp::new(rtp.ip())));
                    call.lead_monitors = lead;
                    call.command(key, CallCmd::Monitor { socket, mode });
                }
                if self.ring(layer, key, party, phone, Socket::Supervisor, now) {
                    Ok(())
                } else {
                    self.command(key, CallCmd::SupervisorGone);
                    Err(MonitorError::NoPhone)
                }
            }
        }
    }

    /// Shutdown: hangs up every live call.
    pub fn hang_up_all(&mut self, layer: &mut TransactionLayer, now: Instant) {
        let keys: Vec<u64> = self.calls.keys().copied().collect();
        for key in keys {
            if self.calls.get(&key).is_some_and(|c| !c.over) {
                self.hang_up(layer, key, HangupBy::System, now);
            }
        }
    }

    /// Whether every call's actor has finished (written its record).
    pub fn all_finished(&self) -> bool {
        self.calls.values().all(|c| c.finished)
    }

    /// Forgets a call once it is over, its actor has finished and no agent INVITE is pending.
    fn remove_if_done(&mut self, key: u64) {
        let done = self
            .calls
            .get(&key)
            .is_some_and(|c| c.over && c.finished && !c.agents.iter().any(AgentLeg::pending));
        if !done {
            return;
        }
        if let Some(call) = self.calls.remove(&key) {
            metrics::gauge!(crate::metrics::CALLS_ACTIVE).decrement(1.0);
            if let Some(caller) = &call.caller {
                self.by_call_id.remove(&caller.dialog.id().call_id);
                self.by_invite.remove(&caller.invite);
            }
            for leg in call.agents {
                self.by_call_id.remove(&leg.call_id);
                self.by_invite.remove(&leg.key);
            }
        }
    }
}

/// Answers a request with `code` and no body (the transaction may have ended meanwhile).
fn reply(
    layer: &mut TransactionLayer,
    key: &TransactionKey,
    request: &Request,
    code: u16,
    now: Instant,
) {
    if let Err(err) = layer.send_response(key, response_to(request, code, Some(&new_tag())), now) {
        tracing::debug!(%key, %err, code, "response not sent");
    }
}

/// Adds the SDP content type to `headers` and returns the body.
fn with_sdp(headers: &mut rsip::Headers, sdp: &SessionDescription) -> Vec<u8> {
    headers.push(Header::ContentType(rsip::headers::ContentType::new(
        "application/sdp",
    )));
    sdp.to_bytes()
}

/// Why monitoring could not start, switch or stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MonitorError {
    #[error("no such live call in this tenant")]
    NoCall,
    #[error("the supervisor has no registered phone")]
    NoPhone,
    #[error("another supervisor is monitoring this call")]
    Busy,
    #[error("the supervisor is not monitoring this call")]
    NotMonitoring,
    #[error(
        "the supervisor's last monitoring of this call is still being ended; try again in a moment"
    )]
    Ending,
    #[error("no free RTP ports")]
    NoPorts,
}

/// Why a click-to-dial call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DialError {
    #[error("no trunk is configured for outbound calls (sip.trunks.outbound)")]
    NoOutboundTrunk,
    #[error("the agent has no registered phone")]
    NoPhone,
    #[error("no free RTP ports")]
    NoPorts,
    #[error("vacd is at its call capacity")]
    OverCapacity,
}

/// Why a transfer to an external number was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("no trunk is configured for outbound calls (sip.trunks.outbound)")]
    NoOutboundTrunk,
    #[error("the agent is not connected to that call")]
    NotConnected,
}

/// A NOTIFY for a REFER's implicit subscription (RFC 3515): terminated, with the transfer's
/// outcome as a sipfrag.
fn notify(dialog: &mut Dialog, status: u16) -> Result<Request, vacd_sip::Error> {
    let mut request = dialog.request(Method::Notify, "")?;
    request
        .headers
        .push(Header::Event(rsip::headers::Event::new("refer")));
    request.headers.push(Header::SubscriptionState(
        rsip::headers::SubscriptionState::new("terminated;reason=noresource"),
    ));
    request
        .headers
        .push(Header::ContentType(rsip::headers::ContentType::new(
            "message/sipfrag;version=2.0",
        )));
    let phrase = if status == 200 {
        "OK"
    } else {
        "Service Unavailable"
    };
    request.body = format!("SIP/2.0 {status} {phrase}\r\n").into_bytes();
    Ok(request)
}

/// The user part of a REFER's Refer-To URI.
fn refer_to_user(request: &Request) -> Option<String> {
    let value = request.headers.iter().find_map(|h| match h {
        Header::Other(name, value)
            if name.eq_ignore_ascii_case("Refer-To") || name.eq_ignore_ascii_case("r") =>
        {
            Some(value.as_str())
        }
        _ => None,
    })?;
    let uri = rsip::Uri::try_from(message::uri_part(value)).ok()?;
    let user = uri.auth?.user;
    (!user.is_empty()).then_some(user)
}

/// The transport a request came over, from its top Via.
fn key_transport(request: &Request) -> Transport {
    message::top_via(&request.headers)
        .ok()
        .and_then(|via| Transport::from_via_token(via.transport))
        .unwrap_or(Transport::Udp)
}

/// The caller's number: P-Asserted-Identity, else From; E.164 when it can be normalised, the
/// plain user part otherwise; `None` for anonymous callers and user parts longer than
/// [`MAX_CALLER`].
fn caller_number(request: &Request) -> Option<String> {
    let asserted = request.headers.iter().find_map(|h| match h {
        Header::Other(name, value) if name.eq_ignore_ascii_case("P-Asserted-Identity") => {
            Some(value.as_str())
        }
        _ => None,
    });
    let value = asserted.or_else(|| message::from_value(&request.headers))?;
    let uri = rsip::Uri::try_from(message::uri_part(value)).ok()?;
    let user = uri.auth?.user;
    if user.is_empty() || user.eq_ignore_ascii_case("anonymous") {
        return None;
    }
    if user.len() > MAX_CALLER {
        tracing::info!(
            length = user.len(),
            "caller's user part too long for a number; taken as anonymous"
        );
        return None;
    }
    // A national number keeps its digits, without the spaces and brackets it was written with.
    let caller = normalise_e164(&user)
        .unwrap_or_else(|| user.chars().filter(|c| !" ()".contains(*c)).collect());
    // It goes into the agent's INVITE (From's display name and URI) and the console: a quote,
    // a space or an escape there would make the phone refuse the INVITE as malformed.
    if !caller.chars().all(caller_char) {
        tracing::info!(
            caller,
            "caller's user part is no number or name; taken as anonymous"
        );
        return None;
    }
    Some(caller)
}

/// What a caller's user part may hold to be shown and passed on: digits and letters, `+ * #`
/// (dialled numbers), `. _ -` (names).
fn caller_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "+*#._-".contains(c)
}

/// Longest caller user part taken as the caller's number (an E.164 number has at most 15
/// digits; the store indexes it as the customer's identity).
const MAX_CALLER: usize = 64;

/// Second answers of a forked agent INVITE acknowledged and hung up per leg; more are ignored.
const MAX_FORKS: usize = 4;

/// The INVITE to an agent's phone: the caller's number in From (and P-Asserted-Identity), the
/// agent's address-of-record in To. Contact and body are added by the caller.
fn agent_invite(
    target: &PhoneTarget,
    caller: &str,
    host: SocketAddr,
    via: &str,
    call_id: &str,
) -> Result<Request, rsip::Error> {
    let uri = rsip::Uri::try_from(target.uri.as_str())?;
    let identity = format!("<sip:{caller}@{host}>");
    let headers: Vec<Header> = vec![
        Header::Via(rsip::headers::Via::new(via)),
        Header::MaxForwards(rsip::headers::MaxForwards::new("70")),
        Header::From(rsip::headers::From::new(format!(
            "\"{caller}\" {identity};tag={}",
            new_tag()
        ))),
        Header::To(rsip::headers::To::new(format!("<{}>", target.aor))),
        Header::CallId(rsip::headers::CallId::new(call_id)),
        Header::CSeq(rsip::headers::CSeq::new("1 INVITE")),
        Header::Other("P-Asserted-Identity".into(), identity),
        Header::Allow(rsip::headers::Allow::new(super::endpoint::ALLOW)),
    ];
    Ok(Request {
        method: Method::Invite,
        uri,
        version: rsip::Version::V2,
        headers: headers.into(),
        body: Vec::new(),
    })
}

/// The E.164 number a REFER's target user names, if it is written as an international number
/// (`+49…`, `%2B49…`, `0049…`).
fn refer_number(user: &str) -> Option<String> {
    let international = ["+", "%2B", "%2b", "00"]
        .iter()
        .any(|prefix| user.starts_with(prefix));
    international.then(|| normalise_e164(user)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(extra: &str) -> Request {
        let text = format!(
            "INVITE sip:+4930123456@vacd SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa\r\n\
Max-Forwards: 70\r\nFrom: <sip:0049 170 1234567@carrier>;tag=1\r\nTo: <sip:+4930123456@vacd>\r\n\
Call-ID: c1\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        match message::parse_datagram(text.as_bytes(), &message::Limits::default()) {
            Ok(rsip::SipMessage::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn caller_number_prefers_the_asserted_identity_and_normalises() {
        assert_eq!(caller_number(&invite("")).as_deref(), Some("+491701234567"));
        let asserted = invite("P-Asserted-Identity: <sip:+4940111@carrier>\r\n");
        assert_eq!(caller_number(&asserted).as_deref(), Some("+4940111"));
        let anonymous = invite("P-Asserted-Identity: <sip:anonymous@anonymous.invalid>\r\n");
        assert_eq!(caller_number(&anonymous), None);
        let long = format!("P-Asserted-Identity: <sip:{}@carrier>\r\n", "1".repeat(65));
        assert_eq!(
            caller_number(&invite(&long)),
            None,
            "no number is that long"
        );
        let longest = format!("P-Asserted-Identity: <sip:{}@carrier>\r\n", "a".repeat(64));
        assert_eq!(caller_number(&invite(&longest)).map(|n| n.len()), Some(64));
        // Whatever would break the agent's INVITE (quotes, escapes) is no caller number.
        for odd in [r#"12"34"#, "12%2234", "a;b"] {
            let header = format!("P-Asserted-Identity: <sip:{odd}@carrier>\r\n");
            assert_eq!(caller_number(&invite(&header)), None, "{odd}");
        }
        let named = invite("P-Asserted-Identity: <sip:frontdesk@carrier>\r\n");
        assert_eq!(caller_number(&named).as_deref(), Some("frontdesk"));
        let national = invite("P-Asserted-Identity: <sip:030 1234567@carrier>\r\n");
        assert_eq!(caller_number(&national).as_deref(), Some("0301234567"));
    }

    #[test]
    fn a_refer_names_a_number_only_as_one_dialled_abroad() {
        assert_eq!(refer_number("+4940999888").as_deref(), Some("+4940999888"));
        assert_eq!(
            refer_number("%2B4940999888").as_deref(),
            Some("+4940999888")
        );
        assert_eq!(refer_number("004940999888").as_deref(), Some("+4940999888"));
        assert_eq!(refer_number("2002"), None, "an extension");
        assert_eq!(refer_number("040999888"), None, "a national number");
        assert_eq!(refer_number("+49abc"), None);
    }

    #[tokio::test]
    async fn rtp_ports_skip_ports_in_use_and_wrap_around() {
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let mut ports = RtpPorts::new(IpAddr::from([127, 0, 0, 1]), port, port);
        assert!(ports.bind().is_err(), "the only port is in use");
        drop(taken);
        let socket = ports.bind().expect("the port is free again");
        assert_eq!(socket.local_addr().expect("addr").port(), port);
    }

    #[tokio::test]
    async fn rtp_ports_search_on_past_the_end_of_the_range() {
        // Two neighbouring ports, the upper one taken: every search that starts there wraps
        // around to the lower one.
        let (lower, upper) = (0..50)
            .find_map(|_| {
                let lower = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
                let port = lower.local_addr().ok()?.port();
                let upper = std::net::UdpSocket::bind(("127.0.0.1", port.checked_add(1)?)).ok()?;
                Some((port, upper))
            })
            .expect("two neighbouring free ports");
        let mut ports = RtpPorts::new(IpAddr::from([127, 0, 0, 1]), lower, lower + 1);
        for _ in 0..16 {
            let socket = ports.bind().expect("the lower port is free");
            assert_eq!(socket.local_addr().expect("addr").port(), lower);
        }
        drop(upper);
    }

    #[tokio::test]
    async fn rtp_ports_are_not_handed_out_in_sequence() {
        let mut ports = RtpPorts::new(IpAddr::from([127, 0, 0, 1]), 40_000, 49_999);
        let bound: Vec<u16> = (0..16)
            .map(|_| {
                ports
                    .bind()
                    .expect("a free port")
                    .local_addr()
                    .expect("addr")
                    .port()
            })
            .collect();
        assert!(
            bound.iter().all(|p| (40_000..=49_999).contains(p)),
            "{bound:?}"
        );
        assert!(
            bound.windows(2).any(|w| w[1] != w[0] + 1),
            "each call's ports follow the last one's: {bound:?}"
        );
    }
}

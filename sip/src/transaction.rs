//! The transaction layer of RFC 3261 §17: the four state machines (INVITE/non-INVITE ×
//! client/server), their timers A–K, retransmissions over unreliable transports, and the
//! matching rules that route each incoming message to its transaction (§17.1.3, §17.2.3).
//!
//! Start with [`TransactionLayer`]. It is sans-IO in the quinn-proto shape: the transport tasks
//! feed it received messages ([`TransactionLayer::handle_message`]) and the passing of time
//! ([`TransactionLayer::handle_timeout`], due at [`TransactionLayer::poll_timeout`]); the
//! transaction user (TU — the call actor, the registrar) starts client transactions and answers
//! server transactions; everything the layer wants done comes out of
//! [`TransactionLayer::poll_output`] as an [`Output`]: bytes to transmit to a [`Peer`], or an
//! [`Event`] for the TU.
//!
//! Beyond the letter of RFC 3261 the layer follows RFC 6026: INVITE transactions that saw a
//! 2xx enter an *Accepted* state (timers L and M) instead of ending at once, so retransmitted
//! 2xx responses still reach the TU and retransmitted INVITEs are absorbed. It also takes over
//! two UAS-core chores the RFC leaves to the TU because they are pure timer work: the 2xx to an
//! INVITE is retransmitted until its ACK arrives (§13.3.1.4, reported as
//! [`Event::AckTimeout`] if none does), and a CANCEL is answered itself — 200 to the CANCEL,
//! 487 to the INVITE, [`Event::Cancelled`] to the TU (§9.2). The 100 Trying to an INVITE
//! (§17.2.1) goes out at once unless the TU answered the INVITE in the same turn: a refusal
//! then needs no transaction ([`TransactionLayer::send_stateless_response`]). RFC 2543 peers (branch-less Via)
//! are not supported: the parser rejects requests without a branch.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::mem::discriminant;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rsip::headers::UntypedHeader;
use rsip::{Header, Method, Request, Response, SipMessage};

use crate::message::{self, encode, response_to, sibling_request};
use crate::{Error, Peer};

/// The protocol timers' base values (RFC 3261 §17.1.1.1 and Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// Round-trip estimate; 500 ms by default.
    pub t1: Duration,
    /// Longest retransmit interval for non-INVITE requests and INVITE responses; 4 s.
    pub t2: Duration,
    /// Longest time a message stays in the network; 5 s.
    pub t4: Duration,
    /// Timer D: how long an INVITE client transaction absorbs retransmitted final responses
    /// on unreliable transports; at least 32 s.
    pub d: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            d: Duration::from_secs(32),
        }
    }
}

impl Timers {
    /// 64·T1: timers B, F, H, J, L and M.
    pub fn timeout(&self) -> Duration {
        self.t1 * 64
    }
}

/// Which side of a transaction we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// We sent the request.
    Client,
    /// We received the request.
    Server,
}

/// Identifies a transaction: the top Via branch, the method (ACK folded into INVITE), and for
/// server transactions the top Via sent-by (§17.2.3). Client transactions need no sent-by,
/// since we wrote it ourselves (§17.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionKey {
    role: Role,
    branch: Box<str>,
    sent_by: Box<str>,
    method: Method,
}

impl Hash for TransactionKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.role.hash(state);
        self.branch.hash(state);
        self.sent_by.hash(state);
        discriminant(&self.method).hash(state);
    }
}

impl TransactionKey {
    fn new(role: Role, branch: &str, sent_by: &str, method: Method) -> Self {
        let method = if method == Method::Ack {
            Method::Invite
        } else {
            method
        };
        let sent_by = match role {
            Role::Client => Box::from(""),
            Role::Server => sent_by.to_ascii_lowercase().into_boxed_str(),
        };
        Self {
            role,
            branch: Box::from(branch),
            sent_by,
            method,
        }
    }

    /// The key of the server transaction `request` belongs to.
    pub fn server(request: &Request) -> Result<Self, Error> {
        let via = message::top_via(&request.headers)?;
        Ok(Self::new(
            Role::Server,
            via.branch,
            via.sent_by,
            request.method,
        ))
    }

    /// The key of the client transaction `response` belongs to.
    pub fn client(response: &Response) -> Result<Self, Error> {
        let via = message::top_via(&response.headers)?;
        let (_, method) = message::cseq(&response.headers)?;
        Ok(Self::new(Role::Client, via.branch, "", method))
    }

    /// Which side we are.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The Via branch.
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The transaction's method (INVITE for an ACK to a non-2xx response).
    pub fn method(&self) -> Method {
        self.method
    }

    fn with_method(&self, method: Method) -> Self {
        Self {
            method,
            ..self.clone()
        }
    }
}

impl fmt::Display for TransactionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = match self.role {
            Role::Client => "client",
            Role::Server => "server",
        };
        write!(f, "{role} {} {}", self.method, self.branch)
    }
}

/// Bytes to send to a peer. Retransmissions share the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send.
    pub peer: Peer,
    /// The encoded message.
    pub payload: Arc<[u8]>,
}

/// What the transaction layer tells its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A request opened a new server transaction; answer it with
    /// [`TransactionLayer::send_response`] (or refuse it with
    /// [`TransactionLayer::send_stateless_response`]). For INVITE the layer sends 100 Trying
    /// at its next timeout unless the TU has answered by then.
    Request {
        /// The server transaction.
        key: TransactionKey,
        /// The request.
        request: Request,
        /// Where it came from (and where responses go).
        peer: Peer,
    },
    /// An ACK that belongs to no server transaction: the ACK for a 2xx, which belongs to the
    /// dialog (§17.1.1.3). `invite` names the INVITE server transaction whose 2xx it
    /// acknowledges (matched by Call-ID and CSeq number) — its retransmissions have stopped.
    Ack {
        /// The ACK.
        request: Request,
        /// Where it came from.
        peer: Peer,
        /// The INVITE server transaction it acknowledged, if still known.
        invite: Option<TransactionKey>,
    },
    /// A CANCEL hit an INVITE server transaction that had no final response yet. The layer
    /// has answered the CANCEL with 200 and the INVITE with 487; the TU cleans up.
    Cancelled {
        /// The cancelled INVITE server transaction.
        invite: TransactionKey,
        /// The CANCEL request.
        request: Request,
    },
    /// A response for one of our client transactions (provisional or final). 2xx
    /// retransmissions for an INVITE are passed on too, so the TU can repeat its ACK.
    Response {
        /// The client transaction.
        key: TransactionKey,
        /// The response.
        response: Response,
    },
    /// A 2xx to an INVITE that matched no transaction any more (a late retransmission); the TU
    /// repeats its ACK if the dialog still exists.
    StrayInviteSuccess {
        /// The response.
        response: Response,
        /// Where it came from.
        peer: Peer,
    },
    /// The transaction timed out: no final response (timers B, F) or no ACK for a non-2xx
    /// final response (timer H).
    Timeout {
        /// The transaction.
        key: TransactionKey,
    },
    /// A 2xx to an INVITE was never acknowledged within 64·T1; the TU should end the dialog
    /// with BYE (§13.3.1.4).
    AckTimeout {
        /// The INVITE server transaction.
        key: TransactionKey,
    },
    /// The transport reported that the peer cannot be reached.
    TransportError {
        /// The transaction.
        key: TransactionKey,
    },
}

/// An item of the layer's outbox.
// Boxing the message would cost an allocation per message on the hot path; the enum is
// moved a few times at most, so its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send bytes.
    Transmit(Transmit),
    /// Tell the TU.
    Event(Event),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    InviteClient,
    NonInviteClient,
    InviteServer,
    NonInviteServer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// INVITE client before any response.
    Calling,
    /// Non-INVITE client/server before any response.
    Trying,
    Proceeding,
    Completed,
    /// INVITE server after the ACK for a non-2xx response.
    Confirmed,
    /// INVITE client/server after a 2xx (RFC 6026).
    Accepted,
}

/// Which deadline is armed; each ends the transaction when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deadline {
    B,
    D,
    F,
    H,
    I,
    J,
    K,
    L,
    M,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CancelState {
    None,
    /// The TU asked to cancel before any provisional response; send once one arrives (§9.1).
    Pending,
    Sent,
}

#[derive(Debug)]
struct Transaction {
    key: TransactionKey,
    kind: Kind,
    state: State,
    peer: Peer,
    /// What a retransmission sends: the request (clients) or the last response (servers).
    wire: Option<Arc<[u8]>>,
    /// INVITE client: the ACK for a non-2xx final response, repeated on its retransmissions.
    ack: Option<Arc<[u8]>>,
    /// INVITE client: the INVITE, to build its ACK and CANCEL.
    request: Option<Request>,
    /// INVITE server: the 100 Trying (sent when the timer armed with the transaction fires,
    /// unless the TU answered first), the template of the 487 sent on CANCEL.
    template: Option<Response>,
    /// INVITE server: the To tag of the TU's responses, reused by the 487.
    local_tag: Option<Box<str>>,
    /// INVITE server in Accepted: Call-ID and CSeq number under which it waits for the ACK.
    awaiting_ack: Option<(Box<str>, u32)>,
    acked: bool,
    cancel: CancelState,
    retransmit_at: Option<Instant>,
    interval: Duration,
    deadline: Option<(Instant, Deadline)>,
}

impl Transaction {
    fn new(key: TransactionKey, kind: Kind, state: State, peer: Peer) -> Self {
        Self {
            key,
            kind,
            state,
            peer,
            wire: None,
            ack: None,
            request: None,
            template: None,
            local_tag: None,
            awaiting_ack: None,
            acked: false,
            cancel: CancelState::None,
            retransmit_at: None,
            interval: Duration::ZERO,
            deadline: None,
        }
    }

    fn reliable(&self) -> bool {
        self.peer.transport.is_reliable()
    }
}

/// Configuration of a [`TransactionLayer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// T1, T2, T4 and D.
    pub timers: Timers,
    /// Most live transactions: a new request beyond them gets a stateless 503 with
    /// Retry-After instead of a transaction — a request over UDP holds one for 32 s after its
    /// answer, so a flood from forged sources would otherwise hold memory without bound.
    pub max_transactions: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            timers: Timers::default(),
            max_transactions: 50_000,
        }
    }
}

/// Seconds a request refused for want of room is asked to wait (Retry-After of the 503).
const RETRY_AFTER_SECONDS: u32 = 5;

/// All live transactions of one SIP endpoint, keyed by [`TransactionKey`].
#[derive(Debug)]
pub struct TransactionLayer {
    config: Config,
    next_id: u64,
    transactions: HashMap<u64, Transaction>,
    by_key: HashMap<TransactionKey, u64>,
    /// Accepted INVITE server transactions waiting for the ACK to their 2xx, by Call-ID and
    /// CSeq number (the ACK for a 2xx has a branch of its own).
    awaiting_ack: HashMap<(Box<str>, u32), u64>,
    /// Armed timers; entries whose transaction changed its timers since are skipped.
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    outbox: VecDeque<Output>,
    /// Whether new requests are being refused for want of room (logged when it starts).
    full: bool,
}

impl TransactionLayer {
    /// An empty layer.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            next_id: 0,
            transactions: HashMap::new(),
            by_key: HashMap::new(),
            awaiting_ack: HashMap::new(),
            timers: BinaryHeap::new(),
            outbox: VecDeque::new(),
            full: false,
        }
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.transactions.len()
    }

    /// Whether no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.transactions.is_empty()
    }

    /// The next output to act on, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outbox.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next. May be earlier than
    /// needed after a timer was disarmed (a harmless early wake-up), never later.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.fire(id, now);
        }
    }

    /// Sends a message outside any transaction: the ACK for a 2xx (which belongs to the
    /// dialog, §13.2.2.4) or a stateless response.
    pub fn send_stateless(&mut self, message: &SipMessage, peer: Peer) {
        self.transmit(peer, encode(message).into());
    }

    /// Starts a client transaction for `request`, whose top Via must carry a fresh branch
    /// ([`message::new_branch`]); sends it to `peer` and returns the transaction's key.
    pub fn send_request(
        &mut self,
        request: Request,
        peer: Peer,
        now: Instant,
    ) -> Result<TransactionKey, Error> {
        if request.method == Method::Ack {
            return Err(Error::TransactionState {
                action: "start a transaction for an ACK (use send_stateless)",
            });
        }
        let branch = message::top_via(&request.headers)?.branch;
        let key = TransactionKey::new(Role::Client, branch, "", request.method);
        if self.by_key.contains_key(&key) {
            return Err(Error::DuplicateTransaction {
                branch: branch.to_owned(),
                method: request.method.to_string(),
            });
        }
        let payload: Arc<[u8]> = encode(&SipMessage::Request(request.clone())).into();
        let (kind, state) = if request.method == Method::Invite {
            (Kind::InviteClient, State::Calling)
        } else {
            (Kind::NonInviteClient, State::Trying)
        };
        let mut txn = Transaction::new(key.clone(), kind, state, peer);
        if kind == Kind::InviteClient {
            txn.request = Some(request);
        }
        txn.wire = Some(payload.clone());
        let timers = self.config.timers;
        if !txn.reliable() {
            txn.interval = timers.t1;
            txn.retransmit_at = Some(now + timers.t1);
        }
        let deadline = if kind == Kind::InviteClient {
            Deadline::B
        } else {
            Deadline::F
        };
        txn.deadline = Some((now + timers.timeout(), deadline));
        self.insert(txn);
        self.transmit(peer, payload);
        Ok(key)
    }

    /// Cancels the INVITE client transaction `invite` (§9.1): the CANCEL is sent at once if a
    /// provisional response has arrived, otherwise as soon as one does (and not at all if a
    /// final response comes first). Returns the key of the CANCEL's own transaction, whose
    /// response the TU may ignore; the INVITE then ends with 487 as usual.
    pub fn cancel(
        &mut self,
        invite: &TransactionKey,
        now: Instant,
    ) -> Result<TransactionKey, Error> {
        let id = *self.by_key.get(invite).ok_or(Error::UnknownTransaction)?;
        let txn = self
            .transactions
            .get_mut(&id)
            .ok_or(Error::UnknownTransaction)?;
        if txn.kind != Kind::InviteClient {
            return Err(Error::TransactionState {
                action: "cancel a transaction that is not an INVITE client",
            });
        }
        let cancel_key = txn.key.with_method(Method::Cancel);
        match (txn.state, txn.cancel) {
            (_, CancelState::Pending | CancelState::Sent) => Ok(cancel_key),
            (State::Calling, CancelState::None) => {
                txn.cancel = CancelState::Pending;
                Ok(cancel_key)
            }
            (State::Proceeding, CancelState::None) => {
                self.send_cancel(id, now)?;
                Ok(cancel_key)
            }
            _ => Err(Error::TransactionState {
                action: "cancel after a final response",
            }),
        }
    }

    /// Answers the server transaction `key` with `response` (built with
    /// [`message::response_to`]).
    pub fn send_response(
        &mut self,
        key: &TransactionKey,
        response: Response,
        now: Instant,
    ) -> Result<(), Error> {
        let (id, cseq_number) = self.answered(key, &response)?;
        self.respond(id, response, cseq_number, now)
    }

    /// The id of the server transaction `key` and the CSeq number of `response`, if
    /// `response` answers that transaction (same top Via branch and CSeq method).
    fn answered(&self, key: &TransactionKey, response: &Response) -> Result<(u64, u32), Error> {
        let id = *self.by_key.get(key).ok_or(Error::UnknownTransaction)?;
        let via = message::top_via(&response.headers)?;
        if via.branch != &*key.branch {
            return Err(Error::MismatchedResponse("top Via branch differs"));
        }
        let (cseq_number, cseq_method) = message::cseq(&response.headers)?;
        if cseq_method != key.method {
            return Err(Error::MismatchedResponse("CSeq method differs"));
        }
        Ok((id, cseq_number))
    }

    /// Answers the server transaction `key` with the final `response` once and ends it, as a
    /// stateless UAS would (§8.2.7): nothing is retransmitted or absorbed, and a retransmitted
    /// request opens a new transaction and is answered anew. For refusals of requests whose
    /// source is not known: a forged source address gets one response per request sent, where
    /// an INVITE transaction would repeat its final response eleven times over 32 s waiting for
    /// an ACK that never comes. Only before anything was sent in the transaction (an INVITE's
    /// 100 Trying included), so that the client still retransmits until an answer arrives.
    pub fn send_stateless_response(
        &mut self,
        key: &TransactionKey,
        response: Response,
    ) -> Result<(), Error> {
        let (id, _) = self.answered(key, &response)?;
        let txn = self
            .transactions
            .get(&id)
            .ok_or(Error::UnknownTransaction)?;
        if txn.key.role() != Role::Server || txn.wire.is_some() || response.status_code.code() < 200
        {
            return Err(Error::TransactionState {
                action: "answer statelessly after a response or with a provisional one",
            });
        }
        let peer = txn.peer;
        self.terminate(id);
        self.transmit(peer, encode(&SipMessage::Response(response)).into());
        Ok(())
    }

    /// Reports that `peer` cannot be reached (connection refused or closed, ICMP error): every
    /// transaction with that peer ends with [`Event::TransportError`] — silently, an answered
    /// INVITE whose ACK came: it only waited to absorb retransmissions, and its call is up.
    pub fn handle_transport_error(&mut self, peer: Peer) {
        let mut failed: Vec<(u64, TransactionKey, bool)> = self
            .transactions
            .iter()
            .filter(|(_, t)| t.peer == peer)
            .map(|(id, t)| {
                let settled = t.kind == Kind::InviteServer && t.state == State::Accepted && t.acked;
                (*id, t.key.clone(), settled)
            })
            .collect();
        failed.sort_by_key(|(id, ..)| *id);
        for (id, key, settled) in failed {
            if !settled {
                self.event(Event::TransportError { key });
            }
            self.terminate(id);
        }
    }

    /// Routes a received, validated message (from [`message::parse_datagram`] or the stream
    /// framer) to its transaction, creating a server transaction for a new request.
    pub fn handle_message(&mut self, message: SipMessage, peer: Peer, now: Instant) {
        match message {
            SipMessage::Request(request) => self.handle_request(request, peer, now),
            SipMessage::Response(response) => self.handle_response(response, peer, now),
        }
    }

    fn handle_request(&mut self, request: Request, peer: Peer, now: Instant) {
        let key = match TransactionKey::server(&request) {
            Ok(key) => key,
            Err(err) => {
                tracing::debug!(%err, "dropping request without usable Via");
                return;
            }
        };
        match request.method {
            Method::Ack => self.handle_ack(key, request, peer, now),
            _ => {
                if let Some(&id) = self.by_key.get(&key) {
                    self.retransmitted_request(id);
                } else if self.no_room(&request, peer) {
                } else if request.method == Method::Cancel {
                    self.handle_cancel(key, request, peer, now);
                } else {
                    self.new_server_transaction(key, request, peer, now);
                }
            }
        }
    }

    /// Whether a new transaction would exceed [`Config::max_transactions`]; if so, `request`
    /// is answered 503 without one.
    fn no_room(&mut self, request: &Request, peer: Peer) -> bool {
        let live = self.transactions.len();
        if live < self.config.max_transactions {
            if self.full {
                self.full = false;
                tracing::info!(live, "room for new SIP transactions again");
            }
            return false;
        }
        if !self.full {
            self.full = true;
            tracing::warn!(
                live,
                "SIP transactions at their limit: new requests get 503 until some end"
            );
        }
        let response = message::service_unavailable(request, RETRY_AFTER_SECONDS);
        self.transmit(peer, encode(&SipMessage::Response(response)).into());
        true
    }

    fn new_server_transaction(
        &mut self,
        key: TransactionKey,
        request: Request,
        peer: Peer,
        now: Instant,
    ) {
        if request.method == Method::Invite {
            let mut txn =
                Transaction::new(key.clone(), Kind::InviteServer, State::Proceeding, peer);
            txn.template = Some(response_to(&request, 100, None));
            // Due at once: it goes out after the TU's turn, unless the TU answered.
            txn.retransmit_at = Some(now);
            self.insert(txn);
        } else {
            let txn = Transaction::new(key.clone(), Kind::NonInviteServer, State::Trying, peer);
            self.insert(txn);
        }
        self.event(Event::Request { key, request, peer });
    }

    /// A request matched an existing server transaction: repeat the last response, if any
    /// (§17.2.1, §17.2.2).
    fn retransmitted_request(&mut self, id: u64) {
        let Some(txn) = self.transactions.get(&id) else {
            return;
        };
        let repeat = match (txn.kind, txn.state) {
            (Kind::InviteServer, State::Proceeding | State::Completed) => txn.wire.clone(),
            (Kind::NonInviteServer, State::Proceeding | State::Completed) => txn.wire.clone(),
            _ => None,
        };
        if let Some(payload) = repeat {
            let peer = txn.peer;
            self.transmit(peer, payload);
        }
    }

    fn handle_ack(&mut self, key: TransactionKey, request: Request, peer: Peer, now: Instant) {
        if let Some(&id) = self.by_key.get(&key) {
            let reliable;
            let Some(txn) = self.transactions.get_mut(&id) else {
                return;
            };
            match txn.state {
                State::Completed => {
                    // ACK for our non-2xx final response (§17.2.1): stop G and H.
                    txn.state = State::Confirmed;
                    txn.retransmit_at = None;
                    reliable = txn.reliable();
                    if reliable {
                        self.terminate(id);
                    } else {
                        let at = now + self.config.timers.t4;
                        self.set_deadline(id, at, Deadline::I);
                    }
                }
                State::Accepted => {
                    // A 2xx ACK that reused the INVITE's branch (seen from some older UAs).
                    let invite = txn.key.clone();
                    self.acknowledge(id);
                    self.event(Event::Ack {
                        request,
                        peer,
                        invite: Some(invite),
                    });
                }
                _ => {}
            }
            return;
        }
        // The ACK for a 2xx: its own branch; match the accepted INVITE by Call-ID and CSeq.
        let invite = match (
            message::call_id(&request.headers),
            message::cseq(&request.headers),
        ) {
            (Ok(call_id), Ok((number, _))) => self
                .awaiting_ack
                .get(&(Box::from(call_id), number))
                .copied(),
            _ => None,
        };
        let invite = invite.and_then(|id| {
            let key = self.transactions.get(&id)?.key.clone();
            self.acknowledge(id);
            Some(key)
        });
        self.event(Event::Ack {
            request,
            peer,
            invite,
        });
    }

    /// The 2xx of an accepted INVITE server transaction was acknowledged: stop retransmitting
    /// it; the transaction stays until timer L to absorb INVITE retransmissions.
    fn acknowledge(&mut self, id: u64) {
        if let Some(txn) = self.transactions.get_mut(&id) {
            txn.acked = true;
            txn.retransmit_at = None;
            if let Some(index) = txn.awaiting_ack.take() {
                self.awaiting_ack.remove(&index);
            }
        }
    }

    fn handle_cancel(&mut self, key: TransactionKey, request: Request, peer: Peer, now: Instant) {
        let invite_key = key.with_method(Method::Invite);
        let txn = Transaction::new(key.clone(), Kind::NonInviteServer, State::Trying, peer);
        let cancel_id = self.insert(txn);
        let (cseq_number, _) = match message::cseq(&request.headers) {
            Ok(cseq) => cseq,
            Err(_) => return,
        };
        let invite_id = self.by_key.get(&invite_key).copied();
        let Some(invite_id) = invite_id else {
            tracing::info!(%peer, branch = key.branch(), "CANCEL for no INVITE here, 481");
            let response = response_to(&request, 481, Some(&message::new_tag()));
            let _ = self.respond(cancel_id, response, cseq_number, now);
            return;
        };
        // §9.2: the 200 to the CANCEL and the INVITE's responses should carry the same To tag.
        let tag = self
            .transactions
            .get(&invite_id)
            .and_then(|t| t.local_tag.as_deref())
            .map_or_else(message::new_tag, str::to_owned);
        let ok = response_to(&request, 200, Some(&tag));
        let _ = self.respond(cancel_id, ok, cseq_number, now);
        let Some(invite) = self.transactions.get(&invite_id) else {
            return;
        };
        if invite.kind != Kind::InviteServer || invite.state != State::Proceeding {
            return;
        }
        if let Some(mut terminated) = invite.template.clone() {
            terminated.status_code = 487.into();
            add_to_tag(&mut terminated, &tag);
            let _ = self.respond(invite_id, terminated, cseq_number, now);
        }
        self.event(Event::Cancelled {
            invite: invite_key,
            request,
        });
    }

    fn handle_response(&mut self, response: Response, peer: Peer, now: Instant) {
        let key = match TransactionKey::client(&response) {
            Ok(key) => key,
            Err(err) => {
                tracing::debug!(%err, "dropping response without usable Via/CSeq");
                return;
            }
        };
        let code = response.status_code.code();
        let Some(&id) = self.by_key.get(&key) else {
            if (200..300).contains(&code) && key.method == Method::Invite {
                self.event(Event::StrayInviteSuccess { response, peer });
            } else {
                tracing::debug!(%key, code, "dropping stray response");
            }
            return;
        };
        let timers = self.config.timers;
        let Some(txn) = self.transactions.get_mut(&id) else {
            return;
        };
        match (txn.kind, txn.state) {
            (Kind::InviteClient, State::Calling | State::Proceeding) => {
                if code < 200 {
                    txn.state = State::Proceeding;
                    txn.retransmit_at = None;
                    // Timer B guards only the Calling state; a proceeding INVITE waits for the
                    // TU to CANCEL it — once cancelled, its Timer B runs on (a 1xx crossing the
                    // CANCEL must not leave it waiting for ever).
                    if txn.cancel != CancelState::Sent {
                        txn.deadline = None;
                    }
                    let send_cancel = txn.cancel == CancelState::Pending;
                    self.event(Event::Response { key, response });
                    if send_cancel {
                        let _ = self.send_cancel(id, now);
                    }
                } else if code < 300 {
                    txn.state = State::Accepted;
                    txn.retransmit_at = None;
                    txn.cancel = CancelState::None;
                    self.set_deadline(id, now + timers.timeout(), Deadline::M);
                    self.event(Event::Response { key, response });
                } else {
                    txn.state = State::Completed;
                    txn.retransmit_at = None;
                    txn.cancel = CancelState::None;
                    let ack = txn.request.as_ref().and_then(|invite| {
                        sibling_request(invite, Method::Ack, Some(&response.headers)).ok()
                    });
                    let payload: Option<Arc<[u8]>> =
                        ack.map(|ack| encode(&SipMessage::Request(ack)).into());
                    txn.ack = payload.clone();
                    let reliable = txn.reliable();
                    let peer = txn.peer;
                    if let Some(payload) = payload {
                        self.transmit(peer, payload);
                    }
                    self.event(Event::Response { key, response });
                    if reliable {
                        self.terminate(id);
                    } else {
                        self.set_deadline(id, now + timers.d, Deadline::D);
                    }
                }
            }
            (Kind::InviteClient, State::Completed) if code >= 300 => {
                if let Some(ack) = txn.ack.clone() {
                    let peer = txn.peer;
                    self.transmit(peer, ack);
                }
            }
            (Kind::InviteClient, State::Accepted) if (200..300).contains(&code) => {
                self.event(Event::Response { key, response });
            }
            (Kind::NonInviteClient, State::Trying | State::Proceeding) => {
                if code < 200 {
                    txn.state = State::Proceeding;
                    self.event(Event::Response { key, response });
                } else {
                    txn.state = State::Completed;
                    txn.retransmit_at = None;
                    let reliable = txn.reliable();
                    self.event(Event::Response { key, response });
                    if reliable {
                        self.terminate(id);
                    } else {
                        self.set_deadline(id, now + timers.t4, Deadline::K);
                    }
                }
            }
            _ => tracing::trace!(%key, code, "absorbed response retransmission"),
        }
    }

    /// Sends the CANCEL for INVITE client transaction `id` as a new client transaction.
    fn send_cancel(&mut self, id: u64, now: Instant) -> Result<(), Error> {
        let txn = self
            .transactions
            .get_mut(&id)
            .ok_or(Error::UnknownTransaction)?;
        let invite = txn.request.as_ref().ok_or(Error::UnknownTransaction)?;
        let cancel = message::cancel_for(invite)?;
        txn.cancel = CancelState::Sent;
        let peer = txn.peer;
        // §9.1: a cancelled INVITE that gets no final response ends 64·T1 after the CANCEL (a
        // phone that rang and then fell silent), reported as a timeout.
        let timeout = self.config.timers.timeout();
        self.set_deadline(id, now + timeout, Deadline::B);
        self.send_request(cancel, peer, now).map(|_| ())
    }

    fn respond(
        &mut self,
        id: u64,
        response: Response,
        cseq_number: u32,
        now: Instant,
    ) -> Result<(), Error> {
        let timers = self.config.timers;
        let code = response.status_code.code();
        let txn = self
            .transactions
            .get_mut(&id)
            .ok_or(Error::UnknownTransaction)?;
        let tag = message::to_tag(&response.headers);
        let call_id = message::call_id(&response.headers)?;
        let payload: Arc<[u8]> = encode(&SipMessage::Response(response.clone())).into();
        let peer = txn.peer;
        let reliable = txn.reliable();
        match (txn.kind, txn.state) {
            (Kind::InviteServer, State::Proceeding) => {
                if let Some(tag) = tag {
                    txn.local_tag = Some(Box::from(tag));
                }
                txn.wire = Some(payload.clone());
                if code < 200 {
                    // Stays in Proceeding; the provisional is repeated on INVITE
                    // retransmissions, and the 100 Trying is not needed.
                    txn.retransmit_at = None;
                } else if code < 300 {
                    txn.state = State::Accepted;
                    let index = (Box::from(call_id), cseq_number);
                    txn.awaiting_ack = Some(index.clone());
                    if !reliable {
                        txn.interval = timers.t1;
                        txn.retransmit_at = Some(now + timers.t1);
                    }
                    self.awaiting_ack.insert(index, id);
                    self.set_deadline(id, now + timers.timeout(), Deadline::L);
                } else {
                    txn.state = State::Completed;
                    if !reliable {
                        txn.interval = timers.t1;
                        txn.retransmit_at = Some(now + timers.t1);
                    }
                    self.set_deadline(id, now + timers.timeout(), Deadline::H);
                }
            }
            (Kind::InviteServer, State::Accepted) if (200..300).contains(&code) => {
                // The TU repeats its 2xx (e.g. with a changed body); keep the newest.
                txn.wire = Some(payload.clone());
            }
            (Kind::NonInviteServer, State::Trying | State::Proceeding) => {
                txn.wire = Some(payload.clone());
                if code < 200 {
                    txn.state = State::Proceeding;
                } else {
                    txn.state = State::Completed;
                    if reliable {
                        self.transmit(peer, payload);
                        self.terminate(id);
                        return Ok(());
                    }
                    self.set_deadline(id, now + timers.timeout(), Deadline::J);
                }
            }
            _ => {
                return Err(Error::TransactionState {
                    action: "send this response",
                })
            }
        }
        self.transmit(peer, payload);
        Ok(())
    }

    fn fire(&mut self, id: u64, now: Instant) {
        let timers = self.config.timers;
        let Some(txn) = self.transactions.get_mut(&id) else {
            return;
        };
        if txn.kind == Kind::InviteServer && txn.state == State::Proceeding {
            // The 100 Trying, if the TU has sent nothing yet.
            let due = txn.retransmit_at.is_some_and(|at| at <= now) && txn.wire.is_none();
            let trying = txn.template.as_ref().filter(|_| due);
            if let Some(trying) = trying {
                let payload: Arc<[u8]> = encode(&SipMessage::Response(trying.clone())).into();
                txn.wire = Some(payload.clone());
                txn.retransmit_at = None;
                let peer = txn.peer;
                self.transmit(peer, payload);
            }
        } else if let Some(at) = txn.retransmit_at.filter(|at| *at <= now) {
            let next = match (txn.kind, txn.state) {
                // Timer A doubles without a cap.
                (Kind::InviteClient, State::Calling) => txn.interval * 2,
                // Timer E doubles up to T2 while Trying, then stays at T2.
                (Kind::NonInviteClient, State::Trying) => (txn.interval * 2).min(timers.t2),
                (Kind::NonInviteClient, State::Proceeding) => timers.t2,
                // Timer G, and the 2xx retransmission of §13.3.1.4, double up to T2.
                (Kind::InviteServer, State::Completed | State::Accepted) => {
                    (txn.interval * 2).min(timers.t2)
                }
                _ => Duration::ZERO,
            };
            if next.is_zero() {
                txn.retransmit_at = None;
            } else {
                txn.interval = next;
                let mut due = at + next;
                if due <= now {
                    due = now + next;
                }
                txn.retransmit_at = Some(due);
                self.timers.push(Reverse((due, id)));
                if let Some(payload) = txn.wire.clone() {
                    let peer = txn.peer;
                    self.transmit(peer, payload);
                }
            }
        }
        let Some(txn) = self.transactions.get(&id) else {
            return;
        };
        if let Some((at, deadline)) = txn.deadline {
            if at <= now {
                let key = txn.key.clone();
                match deadline {
                    Deadline::B | Deadline::F | Deadline::H => self.event(Event::Timeout { key }),
                    Deadline::L if !txn.acked => self.event(Event::AckTimeout { key }),
                    _ => {}
                }
                self.terminate(id);
            }
        }
    }

    fn insert(&mut self, txn: Transaction) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        if let Some(at) = txn.retransmit_at {
            self.timers.push(Reverse((at, id)));
        }
        if let Some((at, _)) = txn.deadline {
            self.timers.push(Reverse((at, id)));
        }
        self.by_key.insert(txn.key.clone(), id);
        self.transactions.insert(id, txn);
        id
    }

    fn set_deadline(&mut self, id: u64, at: Instant, deadline: Deadline) {
        if let Some(txn) = self.transactions.get_mut(&id) {
            txn.deadline = Some((at, deadline));
            if let Some(retransmit) = txn.retransmit_at {
                self.timers.push(Reverse((retransmit, id)));
            }
            self.timers.push(Reverse((at, id)));
        }
    }

    fn terminate(&mut self, id: u64) {
        if let Some(txn) = self.transactions.remove(&id) {
            self.by_key.remove(&txn.key);
            if let Some(index) = txn.awaiting_ack {
                self.awaiting_ack.remove(&index);
            }
        }
    }

    fn transmit(&mut self, peer: Peer, payload: Arc<[u8]>) {
        self.outbox
            .push_back(Output::Transmit(Transmit { peer, payload }));
    }

    fn event(&mut self, event: Event) {
        self.outbox.push_back(Output::Event(event));
    }
}

fn add_to_tag(response: &mut Response, tag: &str) {
    for header in response.headers.iter_mut() {
        if let Header::To(to) = header {
            if message::tag_param(to.value()).is_none() {
                let value = format!("{};tag={tag}", to.value());
                to.replace(value);
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{parse_datagram, Limits};
    use crate::Transport;

    const MS: Duration = Duration::from_millis(1);

    fn peer(transport: Transport) -> Peer {
        Peer::new(transport, "192.0.2.10:5060".parse().expect("addr"))
    }

    fn request_text(method: &str, branch: &str, sent_by: &str, cseq: u32) -> String {
        format!(
            "{method} sip:bob@192.0.2.20 SIP/2.0\r\n\
Via: SIP/2.0/UDP {sent_by};branch={branch}\r\n\
Max-Forwards: 70\r\n\
To: <sip:bob@example.com>\r\n\
From: <sip:alice@example.com>;tag=from1\r\n\
Call-ID: call-1@example.com\r\n\
CSeq: {cseq} {method}\r\n\
Content-Length: 0\r\n\r\n"
        )
    }

    fn request(method: &str, branch: &str) -> Request {
        parse_request(&request_text(method, branch, "192.0.2.10:5060", 1))
    }

    fn parse_request(text: &str) -> Request {
        match parse_datagram(text.as_bytes(), &Limits::default()) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn response_for(request: &Request, code: u16, tag: Option<&str>) -> SipMessage {
        SipMessage::Response(response_to(request, code, tag))
    }

    fn decode(t: &Transmit) -> SipMessage {
        parse_datagram(&t.payload, &Limits::default()).expect("layer sends valid messages")
    }

    struct Harness {
        layer: TransactionLayer,
        base: Instant,
        now: Instant,
        sent: Vec<(Duration, SipMessage)>,
        events: Vec<(Duration, Event)>,
    }

    impl Harness {
        fn new() -> Self {
            Self::with(Config::default())
        }

        fn with(config: Config) -> Self {
            let base = Instant::now();
            Self {
                layer: TransactionLayer::new(config),
                base,
                now: base,
                sent: Vec::new(),
                events: Vec::new(),
            }
        }

        fn drain(&mut self) {
            let at = self.now - self.base;
            while let Some(output) = self.layer.poll_output() {
                match output {
                    Output::Transmit(t) => self.sent.push((at, decode(&t))),
                    Output::Event(e) => self.events.push((at, e)),
                }
            }
        }

        /// Advances the fake clock to `base + t`, firing every timer on the way.
        fn run_until(&mut self, t: Duration) {
            let end = self.base + t;
            while let Some(at) = self.layer.poll_timeout() {
                if at > end {
                    break;
                }
                self.now = self.now.max(at);
                self.layer.handle_timeout(at);
                self.drain();
            }
            self.now = end;
        }

        /// Fires the timers due now: what the endpoint does after the TU's turn.
        fn tick(&mut self) {
            self.run_until(self.now - self.base);
        }

        fn receive(&mut self, message: SipMessage, from: Peer) {
            // Every message goes through the wire format, as in production.
            let bytes = encode(&message);
            let parsed = parse_datagram(&bytes, &Limits::default()).expect("valid");
            self.layer.handle_message(parsed, from, self.now);
            self.drain();
        }

        fn send(&mut self, request: Request, to: Peer) -> TransactionKey {
            let key = self
                .layer
                .send_request(request, to, self.now)
                .expect("send");
            self.drain();
            key
        }

        fn respond(&mut self, key: &TransactionKey, response: Response) {
            self.layer
                .send_response(key, response, self.now)
                .expect("respond");
            self.drain();
        }

        fn send_times(&self) -> Vec<u128> {
            self.sent.iter().map(|(at, _)| at.as_millis()).collect()
        }

        /// The newest request passed to the TU.
        fn server_request(&self) -> (TransactionKey, Request) {
            self.events
                .iter()
                .rev()
                .find_map(|(_, e)| match e {
                    Event::Request { key, request, .. } => Some((key.clone(), request.clone())),
                    _ => None,
                })
                .expect("a request event")
        }
    }

    fn status(message: &SipMessage) -> u16 {
        match message {
            SipMessage::Response(r) => r.status_code.code(),
            SipMessage::Request(_) => 0,
        }
    }

    fn method(message: &SipMessage) -> Option<Method> {
        match message {
            SipMessage::Request(r) => Some(r.method),
            SipMessage::Response(_) => None,
        }
    }

    #[test]
    fn invite_client_over_udp_retransmits_with_timer_a_until_timer_b() {
        let mut h = Harness::new();
        let key = h.send(request("INVITE", "z9hG4bKa1"), peer(Transport::Udp));
        h.run_until(Duration::from_secs(40));
        // A: 0.5, 1, 2, 4, 8, 16 s intervals; B fires at 64·T1 = 32 s.
        assert_eq!(h.send_times(), vec![0, 500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(h.events, vec![(32000 * MS, Event::Timeout { key })]);
        assert!(h.layer.is_empty());
    }

    #[test]
    fn invite_client_over_tcp_never_retransmits() {
        let mut h = Harness::new();
        let key = h.send(request("INVITE", "z9hG4bKa2"), peer(Transport::Tcp));
        h.run_until(Duration::from_secs(40));
        assert_eq!(h.send_times(), vec![0]);
        assert_eq!(h.events, vec![(32000 * MS, Event::Timeout { key })]);
    }

    #[test]
    fn provisional_response_stops_invite_retransmissions_and_timer_b() {
        let mut h = Harness::new();
        let invite = request("INVITE", "z9hG4bKa3");
        let key = h.send(invite.clone(), peer(Transport::Udp));
        h.run_until(700 * MS);
        h.receive(
            response_for(&invite, 180, Some("to1")),
            peer(Transport::Udp),
        );
        h.run_until(Duration::from_secs(60));
        assert_eq!(h.send_times(), vec![0, 500]);
        assert_eq!(h.events.len(), 1);
        assert!(matches!(&h.events[0].1, Event::Response { key: k, .. } if *k == key));
        assert_eq!(h.layer.len(), 1, "a proceeding INVITE waits for the TU");
    }

    #[test]
    fn non_2xx_final_response_is_acked_by_the_transaction() {
        let mut h = Harness::new();
        let invite = request("INVITE", "z9hG4bKa4");
        h.send(invite.clone(), peer(Transport::Udp));
        let busy = response_for(&invite, 486, Some("callee"));
        h.receive(busy.clone(), peer(Transport::Udp));
        assert_eq!(h.sent.len(), 2);
        let ack = match &h.sent[1].1 {
            SipMessage::Request(r) => r.clone(),
            other => panic!("expected the ACK, got {other:?}"),
        };
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(message::cseq(&ack.headers), Ok((1, Method::Ack)));
        assert_eq!(message::to_tag(&ack.headers), Some("callee"));
        assert_eq!(
            message::top_via(&ack.headers).map(|v| v.branch),
            Ok("z9hG4bKa4")
        );
        assert_eq!(ack.uri, invite.uri);
        // A retransmitted 486 is acked again and not passed up.
        h.run_until(Duration::from_secs(1));
        h.receive(busy, peer(Transport::Udp));
        assert_eq!(h.sent.len(), 3);
        assert_eq!(method(&h.sent[2].1), Some(Method::Ack));
        assert_eq!(h.events.len(), 1);
        // Timer D (32 s) ends it; no retransmission of the INVITE happened after the 486.
        h.run_until(Duration::from_secs(31));
        assert_eq!(h.layer.len(), 1);
        h.run_until(Duration::from_secs(33));
        assert!(h.layer.is_empty());
        assert_eq!(h.sent.len(), 3);
    }

    #[test]
    fn non_2xx_final_over_tcp_ends_at_once_timer_d_is_zero() {
        let mut h = Harness::new();
        let invite = request("INVITE", "z9hG4bKa5");
        h.send(invite.clone(), peer(Transport::Tcp));
        h.receive(response_for(&invite, 603, Some("x")), peer(Transport::Tcp));
        assert_eq!(method(&h.sent[1].1), Some(Method::Ack));
        assert!(h.layer.is_empty());
    }

    #[test]
    fn invite_2xx_retransmissions_reach_the_tu_until_timer_m() {
        let mut h = Harness::new();
        let invite = request("INVITE", "z9hG4bKa6");
        h.send(invite.clone(), peer(Transport::Udp));
        let ok = response_for(&invite, 200, Some("callee"));
        h.receive(ok.clone(), peer(Transport::Udp));
        h.receive(ok.clone(), peer(Transport::Udp));
        assert_eq!(h.sent.len(), 1, "the transaction never ACKs a 2xx");
        assert_eq!(h.events.len(), 2);
        h.run_until(Duration::from_secs(33));
        assert!(h.layer.is_empty());
        h.receive(ok, peer(Transport::Udp));
        assert!(matches!(
            h.events.last(),
            Some((_, Event::StrayInviteSuccess { .. }))
        ));
    }

    #[test]
    fn non_invite_client_timer_e_doubles_up_to_t2_then_timer_f() {
        let mut h = Harness::new();
        let key = h.send(request("OPTIONS", "z9hG4bKn1"), peer(Transport::Udp));
        h.run_until(Duration::from_secs(40));
        assert_eq!(
            h.send_times(),
            vec![0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        assert_eq!(h.events, vec![(32000 * MS, Event::Timeout { key })]);
    }

    #[test]
    fn non_invite_client_in_proceeding_retransmits_every_t2() {
        let mut h = Harness::new();
        let options = request("OPTIONS", "z9hG4bKn2");
        h.send(options.clone(), peer(Transport::Udp));
        h.run_until(600 * MS);
        h.receive(response_for(&options, 100, None), peer(Transport::Udp));
        h.run_until(10 * Duration::from_secs(1));
        assert_eq!(h.send_times(), vec![0, 500, 1500, 5500, 9500]);
    }

    #[test]
    fn non_invite_final_response_then_timer_k_absorbs_retransmissions() {
        let mut h = Harness::new();
        let bye = request("BYE", "z9hG4bKn3");
        h.send(bye.clone(), peer(Transport::Udp));
        let ok = response_for(&bye, 200, Some("t"));
        h.receive(ok.clone(), peer(Transport::Udp));
        h.receive(ok, peer(Transport::Udp));
        assert_eq!(h.events.len(), 1);
        h.run_until(4999 * MS);
        assert_eq!(h.layer.len(), 1);
        h.run_until(5000 * MS);
        assert!(h.layer.is_empty());
        assert_eq!(
            h.send_times(),
            vec![0],
            "no retransmission after the final response"
        );
    }

    #[test]
    fn non_invite_over_tcp_has_no_retransmissions_and_zero_timer_k() {
        let mut h = Harness::new();
        let bye = request("BYE", "z9hG4bKn4");
        h.send(bye.clone(), peer(Transport::Tcp));
        h.run_until(Duration::from_secs(10));
        h.receive(response_for(&bye, 200, Some("t")), peer(Transport::Tcp));
        assert_eq!(h.send_times(), vec![0]);
        assert!(h.layer.is_empty());
    }

    #[test]
    fn invite_server_sends_trying_and_repeats_the_last_provisional() {
        let mut h = Harness::new();
        let invite = request("INVITE", "z9hG4bKs1");
        h.receive(invite.clone().into(), peer(Transport::Udp));
        h.tick();
        assert_eq!(status(&h.sent[0].1), 100);
        let (key, req) = h.server_request();
        h.receive(invite.clone().into(), peer(Transport::Udp));
        assert_eq!(
            status(&h.sent[1].1),
            100,
            "retransmitted INVITE gets the 100 again"
        );
        assert_eq!(
            h.events.len(),
            1,
            "retransmissions are not passed to the TU"
        );
        h.respond(&key, response_to(&req, 180, Some("me")));
        h.receive(invite.into(), peer(Transport::Udp));
        assert_eq!(status(&h.sent[3].1), 180);
    }

    #[test]
    fn requests_beyond_the_transaction_limit_get_a_stateless_503() {
        let mut h = Harness::with(Config {
            max_transactions: 2,
            ..Config::default()
        });
        for branch in ["z9hG4bKl1", "z9hG4bKl2", "z9hG4bKl3"] {
            h.receive(request("OPTIONS", branch).into(), peer(Transport::Udp));
        }
        assert_eq!(h.events.len(), 2, "the third opened no transaction");
        assert_eq!(h.layer.len(), 2);
        let SipMessage::Response(refused) = &h.sent[0].1 else {
            panic!("a response")
        };
        assert_eq!(refused.status_code.code(), 503);
        assert!(refused
            .headers
            .iter()
            .any(|h| matches!(h, Header::RetryAfter(r) if r.value() == "5")));
        // Answered, the two end with timer J (32 s over UDP); then there is room again.
        for (key, req) in h.events.clone().into_iter().filter_map(|(_, e)| match e {
            Event::Request { key, request, .. } => Some((key, request)),
            _ => None,
        }) {
            h.respond(&key, response_to(&req, 200, Some("me")));
        }
        h.run_until(Duration::from_secs(33));
        assert!(h.layer.is_empty());
        h.receive(request("OPTIONS", "z9hG4bKl4").into(), peer(Transport::Udp));
        assert_eq!(h.events.len(), 3);
    }

    #[test]
    fn an_invite_answered_in_the_tus_turn_gets_no_trying() {
        let mut h = Harness::new();
        h.receive(request("INVITE", "z9hG4bKs10").into(), peer(Transport::Udp));
        let (key, req) = h.server_request();
        h.respond(&key, response_to(&req, 180, Some("me")));
        h.tick();
        let statuses: Vec<_> = h.sent.iter().map(|(_, m)| status(m)).collect();
        assert_eq!(statuses, vec![180]);
    }

    #[test]
    fn a_stateless_refusal_is_sent_once_and_keeps_nothing() {
        let mut h = Harness::new();
        let invite = request("INVITE", "z9hG4bKs11");
        h.receive(invite.clone().into(), peer(Transport::Udp));
        let (key, req) = h.server_request();
        h.layer
            .send_stateless_response(&key, response_to(&req, 403, Some("me")))
            .expect("refused");
        h.drain();
        assert!(h.layer.is_empty());
        h.run_until(Duration::from_secs(40));
        let statuses: Vec<_> = h.sent.iter().map(|(_, m)| status(m)).collect();
        assert_eq!(statuses, vec![403], "no 100 Trying, no retransmission");
        // The ACK is no transaction's; a retransmission is a new request, answered anew.
        h.receive(request("ACK", "z9hG4bKs11").into(), peer(Transport::Udp));
        assert!(matches!(
            h.events.last(),
            Some((_, Event::Ack { invite: None, .. }))
        ));
        h.receive(invite.into(), peer(Transport::Udp));
        let requests = h
            .events
            .iter()
            .filter(|(_, e)| matches!(e, Event::Request { .. }))
            .count();
        assert_eq!(requests, 2);
        // Once something went out, the transaction has to finish statefully.
        let (key, req) = h.server_request();
        h.tick();
        assert_eq!(status(&h.sent.last().expect("sent").1), 100);
        assert!(h
            .layer
            .send_stateless_response(&key, response_to(&req, 403, Some("me")))
            .is_err());
        assert!(h
            .layer
            .send_stateless_response(&key, response_to(&req, 180, Some("me")))
            .is_err());
    }

    #[test]
    fn invite_server_retransmits_final_with_timer_g_until_ack_then_timer_i() {
        let mut h = Harness::new();
        let invite = request("INVITE", "z9hG4bKs2");
        h.receive(invite.clone().into(), peer(Transport::Udp));
        h.tick();
        let (key, req) = h.server_request();
        h.respond(&key, response_to(&req, 486, Some("me")));
        h.run_until(Duration::from_secs(10));
        // 100 at 0, 486 at 0, then G: 0.5, 1.5, 3.5, 7.5 (capped at T2 = 4 s afterwards).
        assert_eq!(h.send_times(), vec![0, 0, 500, 1500, 3500, 7500]);
        // An INVITE retransmission gets the final response again.
        h.receive(invite.clone().into(), peer(Transport::Udp));
        assert_eq!(status(&h.sent.last().expect("sent").1), 486);
        // The ACK (same branch) confirms; no more retransmissions, timer I = T4 ends it.
        let mut ack = request("ACK", "z9hG4bKs2");
        ack.headers.retain(|h| !matches!(h, Header::To(_)));
        ack.headers.push(Header::To(rsip::headers::To::new(
            "<sip:bob@example.com>;tag=me",
        )));
        h.receive(ack.clone().into(), peer(Transport::Udp));
        h.receive(ack.into(), peer(Transport::Udp));
        let sent = h.sent.len();
        h.run_until(Duration::from_secs(14));
        assert_eq!(h.sent.len(), sent);
        assert_eq!(h.layer.len(), 1);
        h.run_until(Duration::from_secs(16));
        assert!(h.layer.is_empty());
        assert_eq!(h.events.len(), 1, "ACK for a non-2xx is absorbed");
    }

    #[test]
    fn invite_server_without_ack_times_out_with_timer_h() {
        let mut h = Harness::new();
        h.receive(request("INVITE", "z9hG4bKs3").into(), peer(Transport::Udp));
        h.tick();
        let (key, req) = h.server_request();
        h.respond(&key, response_to(&req, 404, Some("me")));
        h.run_until(Duration::from_secs(40));
        assert_eq!(
            h.send_times(),
            vec![0, 0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        assert_eq!(h.events.last(), Some(&(32000 * MS, Event::Timeout { key })));
        assert!(h.layer.is_empty());
    }

    #[test]
    fn invite_server_over_tcp_does_not_retransmit_and_ack_ends_it() {
        let mut h = Harness::new();
        h.receive(request("INVITE", "z9hG4bKs4").into(), peer(Transport::Tcp));
        h.tick();
        let (key, req) = h.server_request();
        h.respond(&key, response_to(&req, 486, Some("me")));
        h.run_until(Duration::from_secs(10));
        assert_eq!(h.send_times(), vec![0, 0]);
        h.receive(request("ACK", "z9hG4bKs4").into(), peer(Transport::Tcp));
        assert!(h.layer.is_empty(), "timer I is zero on reliable transports");
    }

    #[test]
    fn invite_2xx_is_retransmitted_until_the_ack_for_it_arrives() {
        let mut h = Harness::new();
        let invite = request("INVITE", "z9hG4bKs5");
        h.receive(invite.clone().into(), peer(Transport::Udp));
        h.tick();
        let (key, req) = h.server_request();
        h.respond(&key, response_to(&req, 200, Some("me")));
        h.run_until(Duration::from_secs(2));
        assert_eq!(h.send_times(), vec![0, 0, 500, 1500]);
        // The ACK for a 2xx has its own branch; it is matched by Call-ID and CSeq.
        h.receive(request("ACK", "z9hG4bKother").into(), peer(Transport::Udp));
        assert!(matches!(
            h.events.last(),
            Some((_, Event::Ack { invite: Some(k), .. })) if *k == key
        ));
        // INVITE retransmissions are absorbed while Accepted.
        h.receive(invite.into(), peer(Transport::Udp));
        h.run_until(Duration::from_secs(40));
        assert_eq!(h.send_times(), vec![0, 0, 500, 1500]);
        assert!(!h
            .events
            .iter()
            .any(|(_, e)| matches!(e, Event::AckTimeout { .. })));
        assert!(h.layer.is_empty());
    }

    #[test]
    fn a_lost_connection_after_the_ack_fails_nothing() {
        let mut h = Harness::new();
        let invite = request("INVITE", "z9hG4bKs8");
        h.receive(invite.clone().into(), peer(Transport::Tcp));
        let (key, req) = h.server_request();
        h.respond(&key, response_to(&req, 200, Some("me")));
        h.receive(request("ACK", "z9hG4bKack8").into(), peer(Transport::Tcp));
        h.events.clear();
        h.layer.handle_transport_error(peer(Transport::Tcp));
        h.drain();
        assert_eq!(
            h.events,
            vec![],
            "the answered, acknowledged call is not failed"
        );
        assert!(h.layer.is_empty());
        // Without the ACK the same loss fails the INVITE.
        h.receive(request("INVITE", "z9hG4bKs9").into(), peer(Transport::Tcp));
        let (key, req) = h.server_request();
        h.respond(&key, response_to(&req, 200, Some("me")));
        h.events.clear();
        h.layer.handle_transport_error(peer(Transport::Tcp));
        h.drain();
        assert_eq!(
            h.events,
            vec![(Duration::ZERO, Event::TransportError { key })]
        );
    }

    #[test]
    fn unacknowledged_2xx_reports_ack_timeout() {
        let mut h = Harness::new();
        h.receive(request("INVITE", "z9hG4bKs6").into(), peer(Transport::Tcp));
        h.tick();
        let (key, req) = h.server_request();
        h.respond(&key, response_to(&req, 200, Some("me")));
        h.run_until(Duration::from_secs(40));
        assert_eq!(h.send_times(), vec![0, 0]);
        assert_eq!(
            h.events.last(),
            Some(&(32000 * MS, Event::AckTimeout { key }))
        );
    }

    #[test]
    fn a_second_final_response_is_refused() {
        let mut h = Harness::new();
        h.receive(request("INVITE", "z9hG4bKs7").into(), peer(Transport::Udp));
        let (key, req) = h.server_request();
        h.respond(&key, response_to(&req, 486, Some("me")));
        let again = h
            .layer
            .send_response(&key, response_to(&req, 200, Some("me")), h.now);
        assert!(matches!(again, Err(Error::TransactionState { .. })));
    }

    #[test]
    fn non_invite_server_absorbs_then_repeats_final_until_timer_j() {
        let mut h = Harness::new();
        let options = request("OPTIONS", "z9hG4bKs8");
        h.receive(options.clone().into(), peer(Transport::Udp));
        h.receive(options.clone().into(), peer(Transport::Udp));
        assert!(
            h.sent.is_empty(),
            "no response yet, retransmission absorbed"
        );
        let (key, req) = h.server_request();
        h.respond(&key, response_to(&req, 200, Some("me")));
        h.receive(options.clone().into(), peer(Transport::Udp));
        assert_eq!(h.sent.len(), 2);
        assert_eq!(status(&h.sent[1].1), 200);
        h.run_until(Duration::from_secs(31));
        assert_eq!(h.layer.len(), 1);
        h.run_until(Duration::from_secs(32));
        assert!(h.layer.is_empty());
        assert_eq!(h.events.len(), 1);
    }

    #[test]
    fn non_invite_server_over_tcp_ends_on_the_final_response() {
        let mut h = Harness::new();
        h.receive(
            request("REGISTER", "z9hG4bKs9").into(),
            peer(Transport::Tcp),
        );
        let (key, req) = h.server_request();
        h.respond(&key, response_to(&req, 200, Some("me")));
        assert!(h.layer.is_empty());
    }

    #[test]
    fn server_matching_uses_branch_sent_by_and_method() {
        let mut h = Harness::new();
        let a = parse_request(&request_text("OPTIONS", "z9hG4bKm1", "host-a:5060", 1));
        let b = parse_request(&request_text("OPTIONS", "z9hG4bKm1", "host-b:5060", 1));
        let c = parse_request(&request_text("INFO", "z9hG4bKm1", "host-a:5060", 2));
        for r in [a.clone(), b, c, a] {
            h.receive(r.into(), peer(Transport::Udp));
        }
        let requests = h
            .events
            .iter()
            .filter(|(_, e)| matches!(e, Event::Request { .. }))
            .count();
        assert_eq!(
            requests, 3,
            "same branch but other sent-by or method is another transaction"
        );
    }

    #[test]
    fn cancel_answers_200_and_terminates_the_invite_with_487() {
        let mut h = Harness::new();
        let invite = request("INVITE", "z9hG4bKc1");
        h.receive(invite.clone().into(), peer(Transport::Udp));
        h.tick();
        let (key, req) = h.server_request();
        h.respond(&key, response_to(&req, 180, Some("me")));
        h.receive(request("CANCEL", "z9hG4bKc1").into(), peer(Transport::Udp));
        let statuses: Vec<_> = h.sent.iter().map(|(_, m)| status(m)).collect();
        assert_eq!(statuses, vec![100, 180, 200, 487]);
        let (_, cancel_ok) = &h.sent[2];
        assert_eq!(
            message::cseq(cancel_ok.headers_ref()).map(|c| c.1),
            Ok(Method::Cancel)
        );
        assert_eq!(message::to_tag(cancel_ok.headers_ref()), Some("me"));
        let (_, terminated) = &h.sent[3];
        assert_eq!(message::to_tag(terminated.headers_ref()), Some("me"));
        assert!(matches!(
            h.events.last(),
            Some((_, Event::Cancelled { invite, .. })) if *invite == key
        ));
        // The TU's late 200 is refused: the INVITE is already completed.
        assert!(h
            .layer
            .send_response(&key, response_to(&req, 200, Some("me")), h.now)
            .is_err());
    }

    #[test]
    fn cancel_without_matching_invite_gets_481() {
        let mut h = Harness::new();
        h.receive(request("CANCEL", "z9hG4bKc2").into(), peer(Transport::Udp));
        assert_eq!(status(&h.sent[0].1), 481);
        assert!(h.events.is_empty());
    }

    #[test]
    fn client_cancel_waits_for_a_provisional_response() {
        let mut h = Harness::new();
        let invite = request("INVITE", "z9hG4bKc3");
        let key = h.send(invite.clone(), peer(Transport::Udp));
        let cancel_key = h.layer.cancel(&key, h.now).expect("cancel");
        h.drain();
        assert_eq!(h.sent.len(), 1, "no CANCEL before a provisional response");
        h.receive(response_for(&invite, 180, Some("t")), peer(Transport::Udp));
        let (_, cancel) = h.sent.last().expect("cancel sent");
        assert_eq!(method(cancel), Some(Method::Cancel));
        assert_eq!(
            message::top_via(cancel.headers_ref()).map(|v| v.branch),
            Ok("z9hG4bKc3")
        );
        assert_eq!(cancel_key.method(), Method::Cancel);
        // The CANCEL's 200 goes to its own transaction, the 487 to the INVITE's (which ACKs).
        let cancel_request = match cancel {
            SipMessage::Request(r) => r.clone(),
            SipMessage::Response(_) => unreachable!(),
        };
        h.receive(
            response_for(&cancel_request, 200, Some("t")),
            peer(Transport::Udp),
        );
        h.receive(response_for(&invite, 487, Some("t")), peer(Transport::Udp));
        assert_eq!(method(&h.sent.last().expect("ack").1), Some(Method::Ack));
        let keys: Vec<_> = h
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Response { key, response } => {
                    Some((key.method(), response.status_code.code()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            keys,
            vec![
                (Method::Invite, 180),
                (Method::Cancel, 200),
                (Method::Invite, 487)
            ]
        );
    }

    #[test]
    fn a_cancelled_invite_without_a_final_response_times_out() {
        let mut h = Harness::new();
        let invite = request("INVITE", "z9hG4bKc4");
        let key = h.send(invite.clone(), peer(Transport::Udp));
        h.receive(response_for(&invite, 180, Some("t")), peer(Transport::Udp));
        h.drain();
        h.events.clear();
        h.layer.cancel(&key, h.now).expect("cancel");
        // A 183 crosses the CANCEL; then the phone answers neither the CANCEL nor the INVITE.
        h.receive(response_for(&invite, 183, Some("t")), peer(Transport::Udp));
        h.run_until(64 * 500 * MS);
        assert!(
            h.events.contains(&(32000 * MS, Event::Timeout { key })),
            "{:?}",
            h.events
        );
        assert!(h.layer.is_empty(), "both transactions ended");
    }

    #[test]
    fn transport_error_ends_the_peers_transactions() {
        let mut h = Harness::new();
        let key = h.send(request("INVITE", "z9hG4bKt1"), peer(Transport::Tcp));
        h.layer.handle_transport_error(peer(Transport::Tcp));
        h.drain();
        assert_eq!(
            h.events,
            vec![(Duration::ZERO, Event::TransportError { key })]
        );
        assert!(h.layer.is_empty());
    }

    #[test]
    fn duplicate_client_branch_is_refused() {
        let mut h = Harness::new();
        h.send(request("OPTIONS", "z9hG4bKd1"), peer(Transport::Udp));
        let again =
            h.layer
                .send_request(request("OPTIONS", "z9hG4bKd1"), peer(Transport::Udp), h.now);
        assert!(matches!(again, Err(Error::DuplicateTransaction { .. })));
    }

    trait HeadersRef {
        fn headers_ref(&self) -> &rsip::Headers;
    }

    impl HeadersRef for SipMessage {
        fn headers_ref(&self) -> &rsip::Headers {
            match self {
                SipMessage::Request(r) => &r.headers,
                SipMessage::Response(r) => &r.headers,
            }
        }
    }
}

//! The endpoint task: the one owner of the SIP state — the [`TransactionLayer`], the
//! [`Registrar`] of agents' phones and the [`DigestAuthenticator`] — driven as a sans-IO loop:
//! messages from the transports go into the layer, the layer's events are answered here (the
//! transaction user), and whatever the layer wants sent goes back out through the sockets.
//! Timers come from [`TransactionLayer::poll_timeout`] and the registrar's next expiry.
//!
//! What a request gets (see [`Endpoint::on_request`]):
//! - REGISTER: a digest challenge, then the registrar's answer once the agent's credentials
//!   (read from the store by SIP username, see `docs/decisions.md`) verify; a wrong password
//!   gets 403. Credentials answering a nonce we did not issue are challenged again without
//!   reading the store.
//! - OPTIONS: 200. BYE in a call's dialog: the call ends (`calls`); outside any: 481. CANCEL
//!   and ACK: handled by the layer. Other methods: 405 (501 for unknown methods, answered by
//!   the transport).
//! - INVITE: screened — 482 for a second INVITE of a call already here (same Call-ID, another
//!   branch: forked or merged), 503 over `sip.max_calls`, 403 unless it comes from a trunk's source
//!   network or authenticates as a trunk, 404 unless the Request-URI names a phone service
//!   number — and then answered by vacd and queued ([`Calls::answer`]). The refusals before the
//!   trunk is known (482, 503, challenge, 403) are stateless: sent once per INVITE received,
//!   never repeated towards a source address that may be forged.
//!
//! Routing's outputs about calls (offers to ring an agent's phone, …) arrive from the
//! [`CallTap`](crate::routing::CallTap) and the call actors' reports from their channel; both
//! are handed to [`Calls`], as are the layer's events about the calls' transactions.
//!
//! Store reads never run on this task: they are spawned, and their results come back as
//! [`Lookup`]s, so a slow database delays one request, not the endpoint.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use vacd_sip::digest::{Algorithm, DigestAuthenticator, DigestConfig, Rejection, Verdict};
use vacd_sip::message::{self, response_to, split_list, stamp_received, uri_part};
use vacd_sip::registrar::{Registrar, RegistrarConfig};
use vacd_sip::rsip::headers::UntypedHeader;
use vacd_sip::rsip::{self, Header, Method, Request, Response, SipMessage};
use vacd_sip::transaction::{self, Event, Output, TransactionKey, TransactionLayer, Transmit};
use vacd_sip::{Peer, Transport};

use super::call::CallReport;
use super::calls::{Calls, DialError, Incoming, PhoneTarget};
use super::credentials;
use super::screening::{dialled_number, Trunks};
use super::transport::Inbound;
use crate::routing::{CallRequest, CallRouted, CallTapEnds};
use crate::store::{self, ServiceNumber, SipUser, Store};

/// The methods vacd answers, for `Allow` headers.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, REFER";
/// How long shutdown waits for hung-up calls to write their records.
const CALLS_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// Seconds a caller over capacity is asked to wait (Retry-After of the 503).
const RETRY_AFTER_SECONDS: u32 = 5;

/// Results of store reads started by the endpoint.
#[derive(Debug)]
pub enum Lookup {
    /// The agent named in a REGISTER's Authorization header.
    Credentials {
        key: TransactionKey,
        request: Request,
        peer: Peer,
        username: String,
        result: store::Result<Option<SipUser>>,
    },
    /// The owner of the number an INVITE dialled.
    Number {
        key: TransactionKey,
        request: Request,
        peer: Peer,
        trunk: String,
        number: String,
        result: store::Result<Option<ServiceNumber>>,
    },
}

/// What the endpoint is configured with.
pub struct Settings {
    pub realm: String,
    pub algorithms: Vec<Algorithm>,
    pub max_calls: u32,
    pub max_transactions: usize,
    pub max_credential_lookups: usize,
    pub trunks: Trunks,
}

pub struct Endpoint {
    layer: TransactionLayer,
    registrar: Registrar,
    auth: DigestAuthenticator,
    trunks: Trunks,
    max_calls: u32,
    calls: Calls,
    /// Which agent registered its phone under which address-of-record.
    phones: PhoneBook,
    store: Store,
    udp: Arc<UdpSocket>,
    /// Open TCP and TLS connections by peer.
    connections: HashMap<Peer, mpsc::Sender<Arc<[u8]>>>,
    /// The open connections an authenticated REGISTER came in on: only their closing can end
    /// bindings, so a client opening and closing connections costs no look at them.
    registered_over: HashSet<Peer>,
    lookups: mpsc::Sender<Lookup>,
    /// Call-IDs of new INVITEs whose dialled number is being looked up.
    looking_up: HashSet<String>,
    /// REGISTERs whose credentials are being read, and how many may be at once: any username
    /// with a nonce vacd issued costs a read, and the nonce alone is easy to get.
    reading_credentials: usize,
    max_credential_lookups: usize,
}

impl Endpoint {
    pub fn new(
        settings: Settings,
        store: Store,
        calls: Calls,
        udp: Arc<UdpSocket>,
        lookups: mpsc::Sender<Lookup>,
    ) -> Self {
        let now = Instant::now();
        Self {
            layer: TransactionLayer::new(transaction::Config {
                max_transactions: settings.max_transactions,
                ..transaction::Config::default()
            }),
            registrar: Registrar::new(RegistrarConfig::default()),
            auth: DigestAuthenticator::new(
                DigestConfig {
                    algorithms: settings.algorithms,
                    ..DigestConfig::new(settings.realm)
                },
                now,
            ),
            trunks: settings.trunks,
            max_calls: settings.max_calls,
            calls,
            phones: PhoneBook::default(),
            store,
            udp,
            connections: HashMap::new(),
            registered_over: HashSet::new(),
            lookups,
            looking_up: HashSet::new(),
            reading_credentials: 0,
            max_credential_lookups: settings.max_credential_lookups,
        }
    }

    /// Runs until `stop` fires.
    pub async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut lookups: mpsc::Receiver<Lookup>,
        ends: CallTapEnds,
        mut reports: mpsc::UnboundedReceiver<CallReport>,
        mut stop: watch::Receiver<bool>,
    ) {
        let CallTapEnds {
            mut routed,
            mut requests,
        } = ends;
        loop {
            let deadline = self.next_deadline();
            let timer = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.changed() => break,
                Some(input) = inbound.recv() => self.on_inbound(input, Instant::now()),
                Some(done) = lookups.recv() => self.on_lookup(done, Instant::now()),
                Some(routed) = routed.recv() => self.on_routed(routed, Instant::now()),
                Some(request) = requests.recv() => self.on_call_request(request, Instant::now()),
                Some(report) = reports.recv() => {
                    self.calls.on_report(&mut self.layer, report, Instant::now())
                }
                () = timer => {
                    let now = Instant::now();
                    self.layer.handle_timeout(now);
                    self.registrar.remove_expired(now);
                    self.calls.handle_timeout(&mut self.layer, now);
                }
            }
            self.flush().await;
        }
        // Live calls are hung up and their actors get a bounded time to write their records.
        self.calls.hang_up_all(&mut self.layer, Instant::now());
        self.flush().await;
        let deadline = tokio::time::Instant::now() + CALLS_GRACE;
        while !self.calls.all_finished() {
            match tokio::time::timeout_at(deadline, reports.recv()).await {
                Ok(Some(report)) => {
                    self.calls
                        .on_report(&mut self.layer, report, Instant::now());
                    self.flush().await;
                }
                _ => {
                    tracing::warn!(
                        calls = self.calls.len(),
                        "calls still ending at shutdown were cut off"
                    );
                    break;
                }
            }
        }
        tracing::debug!(transactions = self.layer.len(), "SIP endpoint stopped");
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.layer.poll_timeout(),
            self.registrar.next_expiry(),
            self.calls.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn on_inbound(&mut self, input: Inbound, now: Instant) {
        match input {
            Inbound::Message { mut message, peer } => {
                if let SipMessage::Request(request) = &mut message {
                    // Responses follow the Via back to where the request really came from.
                    stamp_received(request, peer.addr);
                }
                self.layer.handle_message(message, peer, now);
            }
            Inbound::Connected { peer, writer } => {
                self.connections.insert(peer, writer);
            }
            Inbound::Disconnected { peer } => {
                self.connections.remove(&peer);
                self.layer.handle_transport_error(peer);
                if self.registered_over.remove(&peer) {
                    let dropped = self.registrar.drop_source(peer);
                    if dropped > 0 {
                        tracing::info!(%peer, bindings = dropped, "phone's SIP connection closed; its registration ends");
                    }
                }
            }
        }
    }

    /// Performs the layer's outputs until it has none left (answering events may add more).
    async fn flush(&mut self) {
        while let Some(output) = self.layer.poll_output() {
            match output {
                Output::Transmit(transmit) => self.transmit(transmit).await,
                Output::Event(event) => self.on_event(event, Instant::now()),
            }
        }
    }

    async fn transmit(&mut self, Transmit { peer, payload }: Transmit) {
        match peer.transport {
            Transport::Udp => {
                if let Err(err) = self.udp.send_to(&payload, peer.addr).await {
                    tracing::debug!(%peer, %err, "UDP send failed");
                }
            }
            Transport::Tcp | Transport::Tls => {
                let sent = self
                    .connections
                    .get(&peer)
                    .is_some_and(|writer| writer.try_send(payload).is_ok());
                if !sent {
                    tracing::info!(%peer, "no open connection with room for this message");
                    self.layer.handle_transport_error(peer);
                }
            }
            other => {
                tracing::warn!(%peer, transport = %other, "transport not supported");
                self.layer.handle_transport_error(peer);
            }
        }
    }

    fn on_event(&mut self, event: Event, now: Instant) {
        match event {
            Event::Request { key, request, peer } => self.on_request(key, request, peer, now),
            Event::Ack { request, peer, .. } => {
                tracing::debug!(%peer, call_id = message::call_id(&request.headers).unwrap_or_default(), "ACK");
                self.calls.on_ack(&request);
            }
            Event::Cancelled { invite, .. } => tracing::info!(%invite, "INVITE cancelled"),
            Event::Response { key, response } => {
                if !self
                    .calls
                    .on_response(&mut self.layer, &key, &response, now)
                {
                    tracing::debug!(%key, code = response.status_code.code(), "response outside a call");
                }
            }
            Event::StrayInviteSuccess { peer, .. } => {
                tracing::debug!(%peer, "stray 2xx to an INVITE ignored")
            }
            Event::Timeout { key } | Event::AckTimeout { key } | Event::TransportError { key } => {
                tracing::debug!(%key, "transaction ended without completing");
                self.calls.on_failed(&mut self.layer, &key, now);
            }
        }
    }

    /// A console request about a call.
    fn on_call_request(&mut self, request: CallRequest, now: Instant) {
        match request {
            CallRequest::TransferOut {
                call,
                agent,
                number,
                reply,
            } => {
                let result = self
                    .calls
                    .transfer_external(&mut self.layer, call, agent, number, now)
                    .map_err(|e| e.to_string());
                let _ = reply.send(result);
            }
            CallRequest::Hold {
                call,
                agent,
                on,
                reply,
            } => {
                let result = self.calls.hold(call, agent, on).map_err(|e| e.to_string());
                let _ = reply.send(result);
            }
            CallRequest::ConsoleLinked { tenant, agent } => {
                self.calls.console_linked(tenant, agent);
            }
            CallRequest::Monitor {
                call,
                monitoring,
                reply,
            } => {
                let phone = self.phone_of(monitoring.tenant, monitoring.supervisor, now);
                let result = self
                    .calls
                    .monitor(&mut self.layer, call, monitoring, phone, now);
                let _ = reply.send(result);
            }
            CallRequest::Dial { dial, reply } => {
                let result = if self.at_capacity() {
                    Err(DialError::OverCapacity)
                } else {
                    let phone = self.phone_of(dial.tenant, dial.agent, now);
                    self.calls.dial(&mut self.layer, dial, phone, now)
                };
                let _ = reply.send(result.map_err(|e| e.to_string()));
            }
            CallRequest::ForgetPhone { tenant, agent } => {
                if let Some(aor) = self.phones.forget((tenant, agent.0)) {
                    tracing::info!(
                        tenant,
                        user = agent.0,
                        aor,
                        "SIP credentials changed; the phone's registration dropped"
                    );
                    self.registrar.forget(&aor);
                }
            }
        }
    }

    /// Where `agent`'s registered phone is reached, if it has one.
    fn phone_of(
        &self,
        tenant: i64,
        agent: vacd_actors::AgentId,
        now: Instant,
    ) -> Option<PhoneTarget> {
        let aor = self.phones.address_of((tenant, agent.0))?;
        let binding = self
            .registrar
            .lookup(aor, now)
            .max_by_key(|b| b.expires_at)?;
        Some(PhoneTarget {
            peer: contact_peer(&binding.uri, binding.source),
            uri: binding.uri.clone(),
            aor: aor.clone(),
        })
    }

    /// What routing tells about a call: ringing an offered agent needs its registered phone.
    fn on_routed(&mut self, routed: CallRouted, now: Instant) {
        let phone = match &routed {
            CallRouted::Output {
                call,
                output: vacd_actors::Output::Offered { agent, .. },
            } => self
                .calls
                .tenant_of(*call)
                .and_then(|tenant| self.phone_of(tenant, *agent, now)),
            _ => None,
        };
        self.calls.on_routed(&mut self.layer, routed, phone, now);
    }

    fn respond(&mut self, key: &TransactionKey, response: Response, now: Instant) {
        if let Err(err) = self.layer.send_response(key, response, now) {
            // The transaction ended meanwhile (a CANCEL, a transport error): nothing to answer.
            tracing::debug!(%key, %err, "response not sent");
        }
    }

    fn reply(&mut self, key: &TransactionKey, request: &Request, code: u16, now: Instant) {
        let response = response_to(request, code, Some(&message::new_tag()));
        self.respond(key, response, now);
    }

    /// Refuses a new INVITE not known to come from a trunk without keeping a transaction (see
    /// [`TransactionLayer::send_stateless_response`]).
    fn refuse(&mut self, key: &TransactionKey, response: Response) {
        if let Err(err) = self.layer.send_stateless_response(key, response) {
            tracing::debug!(%key, %err, "refusal not sent");
        }
    }

    /// Answers a new request (the transaction user's part).
    fn on_request(&mut self, key: TransactionKey, request: Request, peer: Peer, now: Instant) {
        let call_id = message::call_id(&request.headers).unwrap_or_default();
        tracing::debug!(%peer, method = %request.method, call_id, "SIP request");
        match request.method {
            Method::Register => self.on_register(key, request, peer, now),
            // A re-INVITE carries the To tag of its dialog.
            Method::Invite if message::to_tag(&request.headers).is_some() => {
                self.in_dialog(key, request, peer, now)
            }
            Method::Invite => self.on_invite(key, request, peer, now),
            Method::Options if self.refused_extensions(&key, &request, peer, now) => {}
            Method::Options => {
                let mut response = response_to(&request, 200, Some(&message::new_tag()));
                response
                    .headers
                    .push(Header::Allow(rsip::headers::Allow::new(ALLOW)));
                response
                    .headers
                    .push(Header::Accept(rsip::headers::Accept::new(
                        "application/sdp",
                    )));
                self.respond(&key, response, now);
            }
            Method::Bye | Method::Refer => self.in_dialog(key, request, peer, now),
            // The transaction layer answers these itself.
            Method::Ack | Method::Cancel => {}
            _ => {
                tracing::info!(%peer, method = %request.method, "SIP method not allowed, 405");
                let mut response = response_to(&request, 405, Some(&message::new_tag()));
                response
                    .headers
                    .push(Header::Allow(rsip::headers::Allow::new(ALLOW)));
                self.respond(&key, response, now);
            }
        }
    }

    /// A request within a call's dialog (BYE, re-INVITE, REFER); 481 if it is in none.
    fn in_dialog(&mut self, key: TransactionKey, request: Request, peer: Peer, now: Instant) {
        if self.refused_extensions(&key, &request, peer, now) {
            return;
        }
        let phones = &self.phones;
        // A REFER's target agent: the one whose phone registered under that SIP username.
        let agent_named =
            |tenant: i64, name: &str| phones.named(tenant, name).map(vacd_actors::AgentId);
        if !self
            .calls
            .on_request(&mut self.layer, &key, &request, agent_named, now)
        {
            let call_id = message::call_id(&request.headers).unwrap_or_default();
            tracing::info!(%peer, method = %request.method, call_id, "request in no dialog of ours, 481");
            self.reply(&key, &request, 481, now);
        }
    }

    /// Answers 420 with the option tags vacd does not support (RFC 3261 §8.2.2.3) if the
    /// request's Require headers name any: it supports no SIP extension a request could
    /// require (reliable provisional responses, preconditions, session timers…), and a peer
    /// that requires one would otherwise wait for what never comes. True if it answered.
    fn refused_extensions(
        &mut self,
        key: &TransactionKey,
        request: &Request,
        peer: Peer,
        now: Instant,
    ) -> bool {
        let required: Vec<&str> = request
            .headers
            .iter()
            .filter_map(|header| match header {
                Header::Require(require) => Some(require.value()),
                _ => None,
            })
            .flat_map(split_list)
            .collect();
        if required.is_empty() {
            return false;
        }
        let unsupported = required.join(", ");
        tracing::info!(%peer, method = %request.method, require = unsupported, "request requires SIP extensions vacd lacks, 420");
        let mut response = response_to(request, 420, Some(&message::new_tag()));
        response
            .headers
            .push(Header::Unsupported(rsip::headers::Unsupported::new(
                unsupported,
            )));
        self.respond(key, response, now);
        true
    }

    fn challenge(&mut self, key: &TransactionKey, request: &Request, stale: bool, now: Instant) {
        let response = self.challenge_for(request, stale, now);
        self.respond(key, response, now);
    }

    fn challenge_for(&mut self, request: &Request, stale: bool, now: Instant) -> Response {
        let tag = message::new_tag();
        self.auth
            .challenge_response(request, false, stale, &tag, now)
    }

    fn on_register(&mut self, key: TransactionKey, request: Request, peer: Peer, now: Instant) {
        let Some(username) = authorization_username(&request, self.auth.realm()) else {
            self.challenge(&key, &request, false, now);
            return;
        };
        // Credentials for a nonce we never issued are refused before the store is asked for the
        // user: a flood of made-up REGISTERs costs no database reads.
        let ours = self
            .auth
            .credentials_of(&request, false)
            .is_some_and(|c| self.auth.issued_here(c));
        if !ours {
            tracing::debug!(%peer, username, "REGISTER with a nonce not ours; challenged");
            self.challenge(&key, &request, false, now);
            return;
        }
        if self.reading_credentials >= self.max_credential_lookups {
            tracing::warn!(%peer, username, max = self.max_credential_lookups, "too many REGISTERs being checked at once, 503");
            let response = message::service_unavailable(&request, RETRY_AFTER_SECONDS);
            self.respond(&key, response, now);
            return;
        }
        self.reading_credentials += 1;
        let store = self.store.clone();
        let done = self.lookups.clone();
        tokio::spawn(async move {
            let result = store.sip_user(&username).await;
            let _ = done
                .send(Lookup::Credentials {
                    key,
                    request,
                    peer,
                    username,
                    result,
                })
                .await;
        });
    }

    fn on_lookup(&mut self, lookup: Lookup, now: Instant) {
        match lookup {
            Lookup::Credentials {
                key,
                request,
                peer,
                username,
                result,
            } => {
                self.reading_credentials = self.reading_credentials.saturating_sub(1);
                self.on_credentials(key, request, peer, &username, result, now)
            }
            Lookup::Number {
                key,
                request,
                peer,
                trunk,
                number,
                result,
            } => {
                self.looking_up
                    .remove(message::call_id(&request.headers).unwrap_or_default());
                match result {
                    Err(err) => {
                        tracing::error!(%err, number, "cannot look up the dialled number");
                        self.reply(&key, &request, 500, now);
                    }
                    Ok(None) => {
                        tracing::info!(trunk, number, "INVITE to an unknown number");
                        self.reply(&key, &request, 404, now);
                    }
                    Ok(Some(service)) => {
                        tracing::info!(
                            tenant = service.tenant_id,
                            mailbox = service.mailbox_id,
                            queue = service.queue_id,
                            trunk,
                            number,
                            "call to a service number"
                        );
                        let incoming = Incoming {
                            key,
                            request,
                            peer,
                            trunk,
                            number,
                            service,
                        };
                        self.calls.answer(&mut self.layer, incoming, now);
                    }
                }
            }
        }
    }

    fn on_credentials(
        &mut self,
        key: TransactionKey,
        request: Request,
        peer: Peer,
        username: &str,
        result: store::Result<Option<SipUser>>,
        now: Instant,
    ) {
        let user = match result {
            Ok(user) => user,
            Err(err) => {
                tracing::error!(%err, username, "cannot read SIP credentials");
                self.reply(&key, &request, 500, now);
                return;
            }
        };
        let credential = user
            .as_ref()
            .and_then(|u| u.ha1.as_deref())
            .and_then(credentials::credential);
        let verdict = self.auth.verify_request(&request, false, now, |name| {
            (name == username).then_some(credential).flatten()
        });
        match (verdict, user) {
            (Verdict::Authorized { .. }, Some(_))
                if self.refused_extensions(&key, &request, peer, now) => {}
            (Verdict::Authorized { username }, Some(user)) => {
                if to_user(&request).as_deref() != Some(username.as_str()) {
                    tracing::info!(%peer, username, "REGISTER for another user's address refused");
                    self.reply(&key, &request, 403, now);
                    return;
                }
                if peer.transport.is_stream() {
                    // The connection may have closed while the credentials were looked up:
                    // a binding to it could never be reached, nor would it be ended.
                    if !self.connections.contains_key(&peer) {
                        tracing::debug!(%peer, username, "REGISTER's connection closed meanwhile; nothing bound");
                        return;
                    }
                    self.registered_over.insert(peer);
                }
                if let Some(aor) = Registrar::aor_of(&request) {
                    for void in self
                        .phones
                        .claim((user.tenant_id, user.user_id as u64), aor)
                    {
                        self.registrar.forget(&void);
                    }
                }
                let response = self.registrar.register(&request, peer, now);
                tracing::info!(
                    tenant = user.tenant_id,
                    user = user.user_id,
                    username,
                    %peer,
                    status = response.status_code.code(),
                    "REGISTER"
                );
                self.respond(&key, response, now);
            }
            (Verdict::Missing | Verdict::Rejected(Rejection::ForeignNonce), _) => {
                self.challenge(&key, &request, false, now)
            }
            // A count seen already is a replay — or two requests of the phone's checked out of
            // order (their lookups run side by side): a fresh nonce, not a refusal that would
            // make the phone give up.
            (Verdict::Stale | Verdict::Rejected(Rejection::Replay), _) => {
                self.challenge(&key, &request, true, now)
            }
            (Verdict::Rejected(Rejection::Malformed), _) => {
                tracing::info!(%peer, username, "REGISTER with unreadable credentials, 400");
                self.reply(&key, &request, 400, now);
            }
            (verdict, _) => {
                tracing::info!(%peer, username, ?verdict, "REGISTER refused");
                self.reply(&key, &request, 403, now);
            }
        }
    }

    /// Whether `sip.max_calls` calls are live or on their way: an INVITE whose number is being
    /// looked up holds its place, or a burst of INVITEs would all pass the check before the
    /// first became a call.
    fn at_capacity(&self) -> bool {
        self.calls.len() + self.looking_up.len() >= self.max_calls as usize
    }

    fn on_invite(&mut self, key: TransactionKey, request: Request, peer: Peer, now: Instant) {
        // A second new INVITE of a call already here (forked towards two of our numbers, or
        // one request come by two paths): RFC 3261 §8.2.2.2 — 482, or the two would share
        // one Call-ID's dialog and acknowledgements.
        let call_id = message::call_id(&request.headers).unwrap_or_default();
        if self.calls.has_call_id(call_id) || self.looking_up.contains(call_id) {
            tracing::info!(%peer, call_id, "a second INVITE of a call already here, 482");
            self.refuse(&key, response_to(&request, 482, Some(&message::new_tag())));
            return;
        }
        if self.at_capacity() {
            tracing::warn!(%peer, max_calls = self.max_calls, "over call capacity, 503");
            let response = message::service_unavailable(&request, RETRY_AFTER_SECONDS);
            self.refuse(&key, response);
            return;
        }
        let trunk = match self.trunks.by_source(peer.addr.ip()) {
            Some(name) => name.to_owned(),
            None if self.trunks.any_credentials() => {
                let trunks = &self.trunks;
                match self
                    .auth
                    .verify_request(&request, false, now, |name| trunks.credential(name))
                {
                    Verdict::Authorized { username } => self
                        .trunks
                        .name_of_user(&username)
                        .unwrap_or_default()
                        .to_owned(),
                    Verdict::Missing | Verdict::Rejected(Rejection::ForeignNonce) => {
                        let response = self.challenge_for(&request, false, now);
                        self.refuse(&key, response);
                        return;
                    }
                    Verdict::Stale | Verdict::Rejected(Rejection::Replay) => {
                        let response = self.challenge_for(&request, true, now);
                        self.refuse(&key, response);
                        return;
                    }
                    verdict => {
                        tracing::info!(%peer, ?verdict, "INVITE with bad trunk credentials, 403");
                        self.refuse(&key, response_to(&request, 403, Some(&message::new_tag())));
                        return;
                    }
                }
            }
            None => {
                tracing::info!(%peer, "INVITE from a source that is no trunk, 403");
                self.refuse(&key, response_to(&request, 403, Some(&message::new_tag())));
                return;
            }
        };
        if self.refused_extensions(&key, &request, peer, now) {
            return;
        }
        let Some(number) = dialled_number(&request) else {
            tracing::info!(%peer, trunk, uri = %request.uri, "INVITE to no phone number, 404");
            self.reply(&key, &request, 404, now);
            return;
        };
        self.looking_up.insert(call_id.to_owned());
        let store = self.store.clone();
        let done = self.lookups.clone();
        tokio::spawn(async move {
            let result = store.phone_number(&number).await;
            let _ = done
                .send(Lookup::Number {
                    key,
                    request,
                    peer,
                    trunk,
                    number,
                    result,
                })
                .await;
        });
    }
}

/// The username of the request's Digest Authorization for `realm`, if it has one.
fn authorization_username(request: &Request, realm: &str) -> Option<String> {
    request.headers.iter().find_map(|header| {
        let Header::Authorization(value) = header else {
            return None;
        };
        let params = value.value().trim();
        let scheme_end = params.find(char::is_whitespace)?;
        if !params[..scheme_end].eq_ignore_ascii_case("Digest") {
            return None;
        }
        let mut username = None;
        let mut ours = false;
        for item in split_list(&params[scheme_end..]) {
            let Some((name, value)) = item.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "username" => username = Some(value.to_owned()),
                "realm" => ours = value == realm,
                _ => {}
            }
        }
        username.filter(|_| ours)
    })
}

/// Where requests to a registered contact go. Over TCP or TLS: the phone's own connection (the
/// REGISTER's source). Over UDP: the contact URI's address when it is an IP literal — a phone
/// may register a contact other than its source — unless that address is a private one and
/// the REGISTER came from a public one: a phone behind NAT (a home office) registers its LAN
/// address, and only the pinhole its REGISTER opened reaches it. Else the source.
fn contact_peer(uri: &str, source: Peer) -> Peer {
    if source.transport != Transport::Udp {
        return source;
    }
    let Ok(uri) = rsip::Uri::try_from(uri) else {
        return source;
    };
    let port = uri.host_with_port.port.map_or(5060, |p| *p.value());
    match uri.host_with_port.host {
        rsip::Host::IpAddr(ip) if is_private(ip) && !is_private(source.addr.ip()) => source,
        rsip::Host::IpAddr(ip) => Peer::new(Transport::Udp, SocketAddr::new(ip, port)),
        rsip::Host::Domain(_) => source,
    }
}

/// Whether `ip` is reachable only inside its own network: RFC 1918, shared (CGNAT, RFC 6598),
/// link-local, loopback, unique local (IPv6).
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_private(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
            }
        },
    }
}

/// Which agent (tenant, user) registered its phone under which address-of-record, both ways.
/// An address belongs to the agent that registered under it last: an admin may give a SIP
/// username to another user — of another tenant, even — and the address must then ring only
/// that user's phones, never the previous owner's, nor may the previous owner's calls ring
/// the new owner's phone.
#[derive(Debug, Default)]
struct PhoneBook {
    by_agent: HashMap<(i64, u64), String>,
    by_address: HashMap<String, (i64, u64)>,
}

impl PhoneBook {
    /// Records that `agent` registered under `aor`. Returns the addresses whose bindings are
    /// void: `aor`, if another agent held it; the agent's previous address, if it changed.
    fn claim(&mut self, agent: (i64, u64), aor: String) -> Vec<String> {
        let mut void = Vec::new();
        if let Some(previous) = self.by_address.insert(aor.clone(), agent) {
            if previous != agent {
                self.by_agent.remove(&previous);
                void.push(aor.clone());
            }
        }
        if let Some(old) = self.by_agent.insert(agent, aor.clone()) {
            if old != aor {
                self.by_address.remove(&old);
                void.push(old);
            }
        }
        void
    }

    /// Forgets `agent`'s address; the address, if it had one.
    fn forget(&mut self, agent: (i64, u64)) -> Option<String> {
        let aor = self.by_agent.remove(&agent)?;
        self.by_address.remove(&aor);
        Some(aor)
    }

    /// The address `agent`'s phone registered under.
    fn address_of(&self, agent: (i64, u64)) -> Option<&String> {
        self.by_agent.get(&agent)
    }

    /// The agent of `tenant` whose phone registered under the SIP username `name`.
    fn named(&self, tenant: i64, name: &str) -> Option<u64> {
        self.by_address.iter().find_map(|(aor, (t, user))| {
            let registered = aor.strip_prefix("sip:")?.split('@').next()?;
            (*t == tenant && registered == name).then_some(*user)
        })
    }
}

/// The user part of the To URI: the SIP username whose address a REGISTER binds.
fn to_user(request: &Request) -> Option<String> {
    let to = message::to_value(&request.headers)?;
    let uri = rsip::Uri::try_from(uri_part(to)).ok()?;
    Some(uri.auth?.user)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(authorization: &str) -> Request {
        let text = format!(
            "REGISTER sip:vacd SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@vacd>;tag=1\r\nTo: <sip:alice@vacd>\r\n\
Call-ID: r1\r\nCSeq: 1 REGISTER\r\n{authorization}Content-Length: 0\r\n\r\n"
        );
        match message::parse_datagram(text.as_bytes(), &message::Limits::default()) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn a_phone_behind_nat_is_reached_where_its_register_came_from() {
        let udp = |a: &str| Peer::new(Transport::Udp, a.parse().expect("address"));
        let home = udp("203.0.113.5:40000");
        assert_eq!(contact_peer("sip:1001@192.168.1.20:5060", home), home);
        assert_eq!(contact_peer("sip:1001@100.64.7.1", home), home, "CGNAT");
        assert_eq!(contact_peer("sip:1001@[fd00::20]:5060", home), home);
        // On the same LAN, or a public contact: the contact, as the phone asked.
        let lan = udp("192.168.1.20:5062");
        assert_eq!(
            contact_peer("sip:1001@192.168.1.21:5060", lan),
            udp("192.168.1.21:5060")
        );
        assert_eq!(
            contact_peer("sip:1001@198.51.100.7", home),
            udp("198.51.100.7:5060")
        );
        assert_eq!(contact_peer("sip:1001@phone.example.com", home), home);
        let tcp = Peer::new(
            Transport::Tcp,
            "203.0.113.5:40000".parse().expect("address"),
        );
        assert_eq!(contact_peer("sip:1001@192.168.1.20", tcp), tcp);
        let tls = Peer::new(Transport::Tls, tcp.addr);
        assert_eq!(
            contact_peer("sip:1001@198.51.100.7;transport=tls", tls),
            tls
        );
    }

    #[test]
    fn an_address_rings_only_its_latest_owner() {
        let mut book = PhoneBook::default();
        let (x, y) = ((1, 7), (2, 9));
        let alice = "sip:alice@vacd".to_owned();
        assert!(book.claim(x, alice.clone()).is_empty());
        assert!(
            book.claim(x, alice.clone()).is_empty(),
            "a refresh voids nothing"
        );
        assert_eq!(book.named(1, "alice"), Some(7));
        // X's username goes to Y of another tenant, whose phone registers under it.
        assert_eq!(
            book.claim(y, alice.clone()),
            ["sip:alice@vacd"],
            "X's bindings go"
        );
        assert_eq!(book.address_of(x), None, "X's calls no longer ring alice");
        assert_eq!(book.address_of(y), Some(&alice));
        assert_eq!(book.named(1, "alice"), None);
        assert_eq!(book.named(2, "alice"), Some(9));
        // Y registers under a new username: the old address is nobody's.
        let bob = "sip:bob@vacd".to_owned();
        assert_eq!(book.claim(y, bob.clone()), [alice]);
        assert_eq!(book.named(2, "alice"), None);
        assert_eq!(book.address_of(y), Some(&bob));
    }

    #[test]
    fn finds_the_digest_username_of_our_realm() {
        let r = register("Authorization: Digest username=\"alice\", realm=\"vacd\", nonce=\"n\", uri=\"sip:vacd\", response=\"x\"\r\n");
        assert_eq!(authorization_username(&r, "vacd").as_deref(), Some("alice"));
        assert_eq!(authorization_username(&r, "other"), None);
        let r = register("Authorization: Basic YWxpY2U6eA==\r\n");
        assert_eq!(authorization_username(&r, "vacd"), None);
        let r = register("");
        assert_eq!(authorization_username(&r, "vacd"), None);
        assert_eq!(to_user(&r).as_deref(), Some("alice"));
    }
}

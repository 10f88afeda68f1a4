//! The sockets: one UDP socket task, and one task accepting on the TCP listener and the TLS
//! one (`sip.tls`) with a task per connection. They only move bytes. Incoming bytes pass the
//! per-source [`Limiter`], are parsed by `vacd-sip` (datagrams with [`parse_datagram`],
//! streams through a [`StreamFramer`]) and handed to the endpoint task as [`Inbound`]
//! messages; outgoing bytes come back from the endpoint — UDP is sent by the endpoint on the
//! shared socket, TCP and TLS through the connection's writer channel, registered with the
//! endpoint when the connection opens.
//!
//! A TLS connection is a TCP connection with a handshake first (within
//! [`TlsListener::handshake_within`]); after it, it is framed, limited and timed exactly as a
//! TCP one, and its peer is a [`Transport::Tls`] one. Both kinds share the connection caps.
//!
//! Malformed input never reaches the endpoint. A datagram that cannot be parsed is answered
//! statelessly with 400/501 when that is possible (see `reject`) and otherwise dropped; on TCP
//! an error that loses the message boundary closes the connection, any other skips one message.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use vacd_sip::framer::{Frame, StreamFramer};
use vacd_sip::message::{is_keep_alive, parse_datagram, Limits};
use vacd_sip::rsip::SipMessage;
use vacd_sip::{Peer, Transport};

use super::reject::response_to_unparsable;
use crate::rate_limit::{HandshakeLimit, SharedLimit};
use crate::serve::{SourcePlace, Sources};
use crate::stream::MaybeTls;

/// Largest datagram read; larger ones are truncated by the kernel and then fail to parse.
const MAX_DATAGRAM: usize = 65_535;
/// Queued outgoing messages per TCP or TLS connection before the connection counts as stuck.
const WRITER_QUEUE: usize = 256;
/// How long the TCP listener rests after a failed accept (out of file descriptors, say).
const ACCEPT_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);
/// Refused connections are logged at most this often.
const REFUSAL_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// What the transports tell the endpoint.
// Boxing the message would cost an allocation per message on the hot path; the value is moved
// once, through the channel, so its size does not matter (vacd-sip's `Output` does the same).
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Inbound {
    Message {
        message: SipMessage,
        peer: Peer,
    },
    /// A TCP or TLS connection opened; send to `peer` through `writer`.
    Connected {
        peer: Peer,
        writer: mpsc::Sender<Arc<[u8]>>,
    },
    /// A TCP or TLS connection closed.
    Disconnected {
        peer: Peer,
    },
}

/// The per-source message limit (`sip.rate_limit_per_second`): a datagram over it is dropped,
/// a stream over it waits for the window's end.
pub type Limiter = Arc<SharedLimit>;

/// Receives datagrams until `stop` fires.
pub async fn run_udp(
    socket: Arc<UdpSocket>,
    to_endpoint: mpsc::Sender<Inbound>,
    limiter: Limiter,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let received = tokio::select! {
            _ = stop.changed() => return,
            received = socket.recv_from(&mut buf) => received,
        };
        let (len, addr) = match received {
            Ok(received) => received,
            Err(err) => {
                // ICMP port unreachable from an earlier send surfaces here on some systems.
                tracing::debug!(%err, "UDP receive error");
                continue;
            }
        };
        let peer = Peer::new(Transport::Udp, addr);
        let bytes = &buf[..len];
        if is_keep_alive(bytes) || limiter.admit(peer.addr.ip()).is_err() {
            continue;
        }
        match parse_datagram(bytes, &limits) {
            Ok(message) => {
                if to_endpoint
                    .send(Inbound::Message { message, peer })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(err) => {
                tracing::info!(%peer, %err, "dropping malformed SIP datagram");
                if let Some(reply) = response_to_unparsable(bytes, &err) {
                    if let Err(err) = socket.send_to(&reply, addr).await {
                        tracing::debug!(%peer, %err, "cannot send 400");
                    }
                }
            }
        }
    }
}

/// How many SIP TCP connections (TLS ones included) may be open: in all, and from one source
/// (0: no limit); how long a new one may take to send something whole (a message or a
/// keep-alive; with TLS, counted from the handshake's end) before it is closed — it would hold
/// its place and a file descriptor for nothing; and how long a write may wait for the peer to
/// take its bytes before the connection is closed, for the same reason.
#[derive(Debug, Clone, Copy)]
pub struct TcpCaps {
    pub max: usize,
    pub per_source: usize,
    pub first_message_within: std::time::Duration,
    pub write_within: std::time::Duration,
}

/// The TLS listener (`sip.tls`) and what opens its connections.
pub struct TlsListener {
    pub listener: TcpListener,
    pub acceptor: TlsAcceptor,
    /// How long a new connection may take to finish its handshake: a client that connects and
    /// says nothing must not hold a place under the caps for longer.
    pub handshake_within: std::time::Duration,
    /// How many handshakes one source may begin per second; past it a connection is closed
    /// before its handshake.
    pub handshakes: HandshakeLimit,
}

/// Accepts TCP connections, and TLS ones with `tls`, until `stop` fires, then closes them all.
/// A connection beyond `caps` (which count both kinds together) is closed at once (and logged,
/// at most once a second).
pub async fn run_streams(
    tcp: TcpListener,
    tls: Option<TlsListener>,
    to_endpoint: mpsc::Sender<Inbound>,
    limiter: Limiter,
    limits: Limits,
    caps: TcpCaps,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let sources = Sources::default();
    let mut last_refusal_logged: Option<Instant> = None;
    loop {
        let (accepted, transport) = tokio::select! {
            _ = stop.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = tcp.accept() => (accepted, Transport::Tcp),
            accepted = accept_tls(tls.as_ref()) => (accepted, Transport::Tls),
        };
        let (stream, addr) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors, typically: accepting again at once would fail
                // again at once, spinning a core and flooding the log.
                tracing::warn!(%err, %transport, "SIP accept failed; pausing accepts briefly");
                tokio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
        };
        // Connections that ended meanwhile do not count: the select may have taken this
        // accept before their ends.
        while connections.try_join_next().is_some() {}
        let place = (connections.len() < caps.max)
            .then(|| sources.take(addr, caps.per_source))
            .flatten();
        let Some(place) = place else {
            if last_refusal_logged.is_none_or(|at| at.elapsed() >= REFUSAL_LOG_EVERY) {
                last_refusal_logged = Some(Instant::now());
                tracing::warn!(%addr, %transport, open = connections.len(), "SIP connection refused: too many open (in all or from this source)");
            }
            drop(stream);
            continue;
        };
        if transport == Transport::Tls
            && tls.as_ref().is_some_and(|tls| !tls.handshakes.admit(addr))
        {
            tracing::debug!(%addr, "SIP TLS handshake over the source's limit; connection closed");
            drop(place);
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let peer = Peer::new(transport, addr);
        // A TLS connection's acceptor and handshake deadline.
        let opening = tls
            .as_ref()
            .filter(|_| transport == Transport::Tls)
            .map(|tls| (tls.acceptor.clone(), tls.handshake_within));
        let (to_endpoint, limiter) = (to_endpoint.clone(), limiter.clone());
        connections.spawn(async move {
            // The handshake runs here, not in the accept loop: a slow client must not hold up
            // the others' accepts.
            let (stream, place) = match opening {
                None => (MaybeTls::Plain(stream), place),
                Some((acceptor, within)) => {
                    match open_tls(stream, peer, &acceptor, within, place).await {
                        Some(opened) => opened,
                        None => return,
                    }
                }
            };
            run_connection(stream, peer, to_endpoint, limiter, limits, caps, place).await
        });
    }
    connections.shutdown().await;
}

/// The next connection on the TLS listener; never, without one.
async fn accept_tls(tls: Option<&TlsListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match tls {
        Some(tls) => tls.listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Opens TLS on a new connection within `within`; `None` (logged) when the client fails the
/// handshake, closes or is too slow. A failed connection gives its place back before it is
/// closed, so that a client seeing the close may connect again at once.
async fn open_tls(
    stream: TcpStream,
    peer: Peer,
    acceptor: &TlsAcceptor,
    within: std::time::Duration,
    place: SourcePlace,
) -> Option<(MaybeTls<TcpStream>, SourcePlace)> {
    let handshake = tokio::time::timeout(within, acceptor.accept(stream).into_fallible());
    tokio::pin!(handshake);
    match handshake.as_mut().await {
        Ok(Ok(stream)) => return Some((MaybeTls::Tls(Box::new(stream.into())), place)),
        Ok(Err((err, stream))) => {
            tracing::debug!(%peer, %err, "TLS handshake failed; SIP connection closed");
            drop(place);
            drop(stream);
        }
        Err(_) => {
            tracing::debug!(%peer, timeout = ?within, "no TLS handshake within the timeout; SIP connection closed");
            // The stream goes with the handshake, after the place.
            drop(place);
        }
    }
    None
}

/// Writes `bytes` to `peer`'s connection and flushes them (TLS may hold written bytes until
/// then), waiting at most `within` for the peer to take them; `Err` says why the connection
/// closes.
async fn write(
    stream: &mut MaybeTls<TcpStream>,
    bytes: &[u8],
    within: std::time::Duration,
    peer: Peer,
) -> Result<(), &'static str> {
    let written = tokio::time::timeout(within, async {
        stream.write_all(bytes).await?;
        stream.flush().await
    });
    match written.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err("write error"),
        Err(_) => {
            tracing::info!(%peer, ?within, "SIP peer not reading; closing its connection");
            Err("peer not reading")
        }
    }
}

/// One TCP or TLS connection (opened): frames what it reads, writes what the endpoint queues
/// for it, and ends if nothing whole came within `caps.first_message_within` of opening or a
/// write waited `caps.write_within` for the peer to read (the endpoint meanwhile drops what
/// does not fit the connection's queue, with a log line, and ends its transactions).
async fn run_connection(
    mut stream: MaybeTls<TcpStream>,
    peer: Peer,
    to_endpoint: mpsc::Sender<Inbound>,
    limiter: Limiter,
    limits: Limits,
    caps: TcpCaps,
    place: SourcePlace,
) {
    tracing::debug!(%peer, "SIP connection opened");
    let (writer, mut outgoing) = mpsc::channel::<Arc<[u8]>>(WRITER_QUEUE);
    if to_endpoint
        .send(Inbound::Connected { peer, writer })
        .await
        .is_err()
    {
        return;
    }
    let mut framer = StreamFramer::new(limits);
    let mut buf = vec![0u8; 16 * 1024];
    // A message over the rate limit, held (and the connection not read) until `resume`.
    let mut held: Option<SipMessage> = None;
    let mut resume: Option<Instant> = None;
    // Until the first whole frame.
    let mut silent_until = Some(tokio::time::Instant::now() + caps.first_message_within);
    let reason = 'connection: loop {
        tokio::select! {
            () = tokio::time::sleep_until(silent_until.unwrap_or_else(tokio::time::Instant::now)), if silent_until.is_some() => {
                break 'connection "nothing sent in time";
            }
            () = tokio::time::sleep_until(resume.unwrap_or_else(Instant::now).into()), if resume.is_some() => {
                resume = None;
            }
            read = stream.read(&mut buf), if resume.is_none() => {
                match read {
                    Ok(0) => break 'connection "closed by peer",
                    Ok(len) => framer.push(&buf[..len]),
                    Err(_) => break 'connection "read error",
                }
            }
            payload = outgoing.recv() => {
                let Some(payload) = payload else { break 'connection "endpoint stopped" };
                if let Err(reason) = write(&mut stream, &payload, caps.write_within, peer).await {
                    break 'connection reason;
                }
                continue;
            }
        }
        // Every frame counts against the limit — pings and malformed messages too, which cost
        // an answer or a log line each. A message over it is held and goes first once the
        // window ends; anything else is handled, and reading waits all the same.
        loop {
            if let Some(message) = held.take() {
                if let Err(until) = limiter.admit(peer.addr.ip()) {
                    held = Some(message);
                    resume = Some(until);
                    break;
                }
                if to_endpoint
                    .send(Inbound::Message { message, peer })
                    .await
                    .is_err()
                {
                    break 'connection "endpoint stopped";
                }
                continue;
            }
            let frame = match framer.next_frame() {
                Ok(None) => break,
                Ok(Some(frame)) => Ok(frame),
                Err(err) => Err(err),
            };
            silent_until = None;
            let admitted = limiter.admit(peer.addr.ip());
            match frame {
                Ok(Frame::KeepAlive) => {
                    if let Err(reason) = write(&mut stream, b"\r\n", caps.write_within, peer).await
                    {
                        break 'connection reason;
                    }
                }
                Ok(Frame::Message(message)) if admitted.is_err() => held = Some(message),
                Ok(Frame::Message(message)) => {
                    if to_endpoint
                        .send(Inbound::Message { message, peer })
                        .await
                        .is_err()
                    {
                        break 'connection "endpoint stopped";
                    }
                }
                // Answered like a malformed datagram (RFC 3261 §8.2: a request gets a 400
                // rather than no answer, whose client would wait out its timer).
                Ok(Frame::Invalid { error, head }) => {
                    tracing::info!(%peer, %error, "dropping malformed SIP message");
                    if let Some(reply) = response_to_unparsable(&head, &error) {
                        if let Err(reason) =
                            write(&mut stream, &reply, caps.write_within, peer).await
                        {
                            break 'connection reason;
                        }
                    }
                }
                Err(err) => {
                    tracing::info!(%peer, %err, "closing SIP connection: the stream cannot be framed");
                    // Answered first when its header section was read, so that the client
                    // knows why (RFC 3261 §18.3: no Content-Length is a 400).
                    let reply = framer
                        .broken_head()
                        .and_then(|head| response_to_unparsable(head, &err));
                    if let Some(reply) = reply {
                        if let Err(reason) =
                            write(&mut stream, &reply, caps.write_within, peer).await
                        {
                            break 'connection reason;
                        }
                    }
                    break 'connection "malformed stream";
                }
            }
            if let Err(until) = admitted {
                resume = Some(until);
                break;
            }
        }
    };
    tracing::debug!(%peer, reason, "SIP connection closed");
    // Told before the socket is let go: a new connection from the same address and port can
    // open only once it is, so its REGISTER reaches the endpoint after this and a late
    // `Disconnected` never ends the new connection's registration.
    let _ = to_endpoint.send(Inbound::Disconnected { peer }).await;
    // The place is given back before the socket closes: a client that sees the close may
    // open its next connection at once.
    drop(place);
    drop(stream);
}

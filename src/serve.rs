//! The HTTP listener: accepts connections up to a cap, in all and per source, answers the ones
//! past it with 503 and closes them, gives every request head a deadline — which also ends keep-alive connections
//! left idle that long — and every write one (a client that reads no answers is closed), and at
//! shutdown lets running requests finish. `axum::serve` has none
//! of these limits: a client that opens connections and sends its headers a byte a minute
//! would hold them, and their file descriptors, for ever.
//!
//! A websocket keeps its connection's place under the cap until it closes (the place travels
//! with the socket, see [`Counted`]); shutdown waits for requests, not for websockets — their
//! owners close them (routing the consoles and, as it stops, the supervisors' feeds; chat the
//! visitors').
//!
//! Two of its pieces serve other streams too: the per-source count ([`Sources`], the SIP
//! endpoint's TCP connections) and the wait limit ([`Stall`], the mail servers' streams).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tower::Service;

use crate::sip::rate_limit::subscriber;

/// How long the listener rests after a failed accept (out of file descriptors, say): accepting
/// again at once would fail again and spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Connections past the cap being answered at once; past that many they are closed unanswered.
const REFUSING: usize = 64;

/// How often refused connections are logged (with their count since the last line).
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// How long a refused connection is given to take its answer.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// The body of the answer to a connection refused for the cap.
const REFUSAL: &str =
    r#"{"error":{"code":"too_many_connections","message":"too many connections; try again"}}"#;

/// The listener's limits (`[http]` in the configuration).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections, websockets included.
    pub max_connections: usize,
    /// Open connections from one source (an IPv4 address or an IPv6 /64); 0: no such limit
    /// (behind a reverse proxy, whose address every connection has).
    pub max_connections_per_source: usize,
    /// From the first wait for a request head (a new connection, or a keep-alive one after its
    /// last answer) to its last byte.
    pub header_timeout: Duration,
    /// How long a write may wait for the client to take the bytes, a websocket's too.
    pub write_timeout: Duration,
}

/// Serves `app` on `listener` until `stop` fires (or its sender is gone), then waits for the
/// connections' running requests.
pub async fn run(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: impl Future<Output = ()>,
) {
    warn_above_descriptor_limit(limits.max_connections);
    let mut make = app.into_make_service_with_connect_info::<SocketAddr>();
    let places = Arc::new(Semaphore::new(limits.max_connections));
    let sources = Sources::default();
    let refusing = Arc::new(Semaphore::new(REFUSING));
    let (closing, _) = watch::channel(());
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut connections = JoinSet::new();
    let mut refused = Refused::default();
    tokio::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut stop => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // The client gave up before it was accepted: nothing to pause for.
                Err(e) if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                ) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed; pausing accepts briefly");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                    continue;
                }
            },
        };
        let (Ok(place), Some(source)) = (
            places.clone().try_acquire_owned(),
            sources.take(peer, limits.max_connections_per_source),
        ) else {
            refused.count(peer);
            refuse(tcp, &refusing);
            continue;
        };
        // Console events, chat frames and answers are small writes that must go out at once:
        // with Nagle's algorithm a frame written while the previous one is unacknowledged
        // waits for the peer's delayed ACK (up to 40 ms on Linux).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "TCP_NODELAY not set on an HTTP connection");
        }
        let service = match make.call(peer).await {
            Ok(service) => service,
            Err(never) => match never {},
        };
        let io = TokioIo::new(Counted {
            tcp,
            _place: place,
            _source: source,
            write_stall: Stall::new(
                limits.write_timeout,
                "the client took no bytes within the write timeout",
            ),
        });
        let connection = builder
            .serve_connection(io, TowerToHyperService::new(service))
            .with_upgrades();
        let mut closing = closing.subscribe();
        connections.spawn(async move {
            tokio::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                _ = closing.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    closing.send_replace(());
    while connections.join_next().await.is_some() {}
}

/// Warns when the cap is above the process's soft limit of open files (Linux): past that
/// limit connections fail to be accepted (and SIP and the database run short) instead of
/// getting 503.
fn warn_above_descriptor_limit(max_connections: usize) {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return;
    };
    let soft = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse::<usize>().ok());
    if let Some(soft) = soft.filter(|soft| *soft < max_connections) {
        tracing::warn!(
            max_connections,
            open_files = soft,
            "http.max_connections is above the open file limit (ulimit -n): raise the limit or lower the cap"
        );
    }
}

/// Connections refused for the cap, logged once a second (a flood must not fill the log).
#[derive(Default)]
struct Refused {
    since: Option<Instant>,
    count: u64,
}

impl Refused {
    fn count(&mut self, peer: SocketAddr) {
        self.count += 1;
        let now = Instant::now();
        if self
            .since
            .is_some_and(|since| now.duration_since(since) < REPORT_EVERY)
        {
            return;
        }
        tracing::warn!(%peer, refused = self.count, "HTTP connections refused: too many connections, in all or from one source");
        self.since = Some(now);
        self.count = 0;
    }
}

/// Answers a connection past the cap with 503 and closes it, unless too many are being
/// answered already: then it is closed at once.
fn refuse(mut tcp: TcpStream, refusing: &Arc<Semaphore>) {
    let Ok(answering) = refusing.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _answering = answering;
        // Closing a socket with unread data sends a reset, which can overtake the answer; so
        // the client's request is read (and dropped) until it closes, for a moment at most.
        let _ = tokio::time::timeout(REFUSAL_LINGER, async {
            let answer = format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
                 connection: close\r\ncontent-length: {}\r\n\r\n{REFUSAL}",
                REFUSAL.len()
            );
            tcp.write_all(answer.as_bytes()).await?;
            tcp.shutdown().await?;
            tokio::io::copy(&mut tcp, &mut tokio::io::sink()).await
        })
        .await;
    });
}

/// Open connections per source (see [`subscriber`]); the SIP endpoint's TCP connections are
/// counted the same way.
#[derive(Default, Clone)]
pub(crate) struct Sources(Arc<Mutex<HashMap<IpAddr, usize>>>);

impl Sources {
    /// A place for one more connection from `peer`'s source, unless it has `max` (0: no
    /// limit) open already.
    pub(crate) fn take(&self, peer: SocketAddr, max: usize) -> Option<SourcePlace> {
        let key = subscriber(peer.ip());
        let mut open = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(key).or_default();
        if max > 0 && *count >= max {
            return None;
        }
        *count += 1;
        Some(SourcePlace {
            sources: self.clone(),
            key,
        })
    }
}

/// One connection's place among its source's; given back when dropped.
pub(crate) struct SourcePlace {
    sources: Sources,
    key: IpAddr,
}

impl Drop for SourcePlace {
    fn drop(&mut self) {
        let mut open = self
            .sources
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// A connection holding its places under the caps; they are free again when the connection
/// is dropped — for a websocket, when the socket closes. A write the client has not taken for
/// `write_timeout` (it sends requests but reads no answers) fails, which closes the connection.
struct Counted {
    tcp: TcpStream,
    _place: OwnedSemaphorePermit,
    _source: SourcePlace,
    /// Writes waiting for the client.
    write_stall: Stall,
}

/// A limit on how long an I/O operation of a stream may keep waiting for its peer: wrapped
/// around each poll of the operation, it fails the operation with `TimedOut` once it has been
/// pending for `after` without a break (the mail servers' streams use it too).
pub(crate) struct Stall {
    after: Duration,
    what: &'static str,
    /// Since when the operation waits, if it does.
    since: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Stall {
    /// Fails waits longer than `after` with the error message `what`.
    pub(crate) fn new(after: Duration, what: &'static str) -> Stall {
        Stall {
            after,
            what,
            since: None,
        }
    }

    /// `poll`'s outcome, or — while it keeps waiting — the time-out once `after` has passed.
    pub(crate) fn limit<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.since = None;
            return poll;
        }
        let after = self.after;
        let since = self
            .since
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
        match since.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.since = None;
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, self.what)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let write = Pin::new(&mut self.tcp).poll_write(cx, buf);
        self.write_stall.limit(cx, write)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let write = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        self.write_stall.limit(cx, write)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

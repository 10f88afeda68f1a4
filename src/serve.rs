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
//! With a certificate and key ([`Tls`]) the listener speaks TLS only — HTTPS, and WSS for
//! the websockets — with ALPN `http/1.1` (hyper serves HTTP/1 here; h2 is not offered). A new
//! connection's handshake has a deadline of its own (the header deadline starts after it), a
//! failed one ends that connection alone, and a plain-HTTP request to the port is answered
//! 400 `https_required` so that the mistake is plain to see.
//!
//! Some of its pieces serve other streams too: the per-source count ([`Sources`], the SIP
//! endpoint's TCP and TLS connections), the certificate loading ([`server_config`], SIP over
//! TLS), the plain-or-TLS stream ([`MaybeTls`], SIP and mail) and the wait limit ([`Stall`],
//! the mail servers' streams).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tower::Service;

use crate::config::HttpConfig;
use crate::rate_limit::{subscriber, HandshakeLimit};
use crate::stream::MaybeTls;

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

/// The content type of a TLS handshake record, the first byte a TLS client sends: anything
/// else on the TLS listener is plain HTTP sent to the wrong scheme.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The body of the answer to a plain-HTTP request on the TLS listener.
const HTTPS_REQUIRED: &str = r#"{"error":{"code":"https_required","message":"this port speaks HTTPS only: use https:// (wss:// for websockets)"}}"#;

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

/// What is wrong with the listener's TLS certificate or key: each names the file to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "`{set}` is set but `{missing}` is not: TLS needs both the certificate and its private \
         key (or neither, for plain HTTP)"
    )]
    Incomplete {
        set: &'static str,
        missing: &'static str,
    },
    #[error("TLS certificate {}: {problem}", path.display())]
    Certificate { path: PathBuf, problem: String },
    #[error("TLS private key {}: {problem}", path.display())]
    Key { path: PathBuf, problem: String },
    #[error(
        "TLS private key {} does not belong to the certificate {} (its public key differs; the file must start with the server's own certificate, then its chain)",
        key.display(),
        certificate.display()
    )]
    Mismatch { certificate: PathBuf, key: PathBuf },
    #[error(
        "TLS certificate {} with private key {}: {problem}",
        certificate.display(),
        key.display()
    )]
    Rejected {
        certificate: PathBuf,
        key: PathBuf,
        problem: String,
    },
}

/// TLS on the listener: the certificate chain and key, read once at start (a renewed
/// certificate takes a restart), how long a client has for its handshake and how many it may
/// begin per second.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    handshakes: HandshakeLimit,
}

impl Tls {
    /// The listener's TLS from `[http]`: `None` without `tls_certificate` and `tls_key`; an
    /// error when only one is set, or a file cannot be read, holds no certificate or key, or
    /// the key is not the certificate's.
    pub fn configured(http: &HttpConfig) -> Result<Option<Tls>, TlsError> {
        let handshake_timeout = Duration::from_secs(http.tls_handshake_timeout_seconds);
        let handshakes = HandshakeLimit::new(http.tls_handshakes_per_second, "HTTPS");
        match (&http.tls_certificate, &http.tls_key) {
            (None, None) => Ok(None),
            (Some(certificate), Some(key)) => {
                Tls::load(certificate, key, handshake_timeout, handshakes).map(Some)
            }
            (Some(_), None) => Err(TlsError::Incomplete {
                set: "http.tls_certificate",
                missing: "http.tls_key",
            }),
            (None, Some(_)) => Err(TlsError::Incomplete {
                set: "http.tls_key",
                missing: "http.tls_certificate",
            }),
        }
    }

    /// Reads the PEM certificate chain at `certificate` and the private key at `key`.
    pub fn load(
        certificate: &Path,
        key: &Path,
        handshake_timeout: Duration,
        handshakes: HandshakeLimit,
    ) -> Result<Tls, TlsError> {
        let mut config = server_config(certificate, key)?;
        // hyper serves HTTP/1 here (websockets need it: their upgrade is HTTP/1's).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            handshake_timeout,
            handshakes,
        })
    }

    /// Opens TLS on a new connection within the handshake deadline; `None` (logged) when the
    /// client fails the handshake, is too slow, closes, begins more handshakes than its limit,
    /// or `closing` (shutdown) fires first. A plain-HTTP request is answered 400 first.
    async fn open(
        &self,
        io: Counted,
        peer: SocketAddr,
        closing: &mut watch::Receiver<()>,
    ) -> Option<Box<TlsStream<Counted>>> {
        let handshake = async {
            let mut first = [0u8; 1];
            match io.tcp.peek(&mut first).await {
                Ok(0) => return Opening::Closed,
                Err(e) => return Opening::Failed(e),
                Ok(_) if first[0] != TLS_HANDSHAKE_RECORD => return Opening::Plain(io),
                Ok(_) if !self.handshakes.admit(peer) => return Opening::Limited,
                Ok(_) => {}
            }
            match self.acceptor.accept(io).await {
                Ok(stream) => Opening::Opened(Box::new(stream)),
                Err(e) => Opening::Failed(e),
            }
        };
        let opening = tokio::select! {
            opening = tokio::time::timeout(self.handshake_timeout, handshake) => opening,
            _ = closing.changed() => return None,
        };
        match opening {
            Ok(Opening::Opened(stream)) => return Some(stream),
            Ok(Opening::Plain(io)) => {
                tracing::debug!(%peer, "plain HTTP on the TLS listener; answered 400 https_required");
                let _ = tokio::time::timeout(
                    REFUSAL_LINGER,
                    answer_and_close(io, "400 Bad Request", HTTPS_REQUIRED),
                )
                .await;
            }
            Ok(Opening::Closed) => {
                tracing::debug!(%peer, "connection closed before its TLS handshake");
            }
            Ok(Opening::Limited) => {
                tracing::debug!(%peer, "TLS handshake over the source's limit; connection closed");
            }
            Ok(Opening::Failed(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed; connection closed");
            }
            Err(_) => {
                tracing::debug!(%peer, timeout = ?self.handshake_timeout, "no TLS handshake within the timeout; connection closed");
            }
        }
        None
    }
}

/// A TLS server configuration — TLS 1.2 and 1.3 (rustls with ring), no client certificates,
/// no ALPN — from the PEM certificate chain at `certificate` and the private key at `key`: the
/// HTTP listener's ([`Tls::load`]) and SIP over TLS's (`crate::sip`). Every error names the
/// file to fix.
pub fn server_config(certificate: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let bad_certificate = |problem: String| TlsError::Certificate {
        path: certificate.to_path_buf(),
        problem,
    };
    let chain = CertificateDer::pem_file_iter(certificate)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad_certificate(pem_problem(e)))?;
    if chain.is_empty() {
        return Err(bad_certificate(
            "holds no certificate (a PEM `CERTIFICATE` block)".into(),
        ));
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_path_buf(),
        problem: match e {
            pem::Error::NoItemsFound => "holds no unencrypted private key (a PEM `PRIVATE \
                                         KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` block)"
                .into(),
            e => pem_problem(e),
        },
    })?;
    ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rejected {
            certificate: certificate.to_path_buf(),
            key: key.to_path_buf(),
            problem: e.to_string(),
        })?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                TlsError::Mismatch {
                    certificate: certificate.to_path_buf(),
                    key: key.to_path_buf(),
                }
            }
            e => TlsError::Rejected {
                certificate: certificate.to_path_buf(),
                key: key.to_path_buf(),
                problem: e.to_string(),
            },
        })
}

/// How a new connection's TLS handshake went.
enum Opening {
    Opened(Box<TlsStream<Counted>>),
    /// Its first byte was no handshake record: plain HTTP, most likely.
    Plain(Counted),
    /// Closed before sending anything.
    Closed,
    /// Its source began more handshakes this second than it may.
    Limited,
    Failed(io::Error),
}

/// A PEM file's problem in an admin's words.
fn pem_problem(e: pem::Error) -> String {
    match e {
        pem::Error::Io(e) => format!("cannot be read: {e}"),
        pem::Error::NoItemsFound => "holds nothing of the kind".into(),
        e => format!("is not valid PEM: {e}"),
    }
}

/// Serves `app` on `listener` — over TLS when `tls` is given — until `stop` fires (or its
/// sender is gone), then waits for the connections' running requests.
pub async fn run(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<Tls>,
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
            refuse(tcp, &refusing, tls.as_ref());
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
        let counted = Counted {
            _place: place,
            _source: source,
            tcp,
            write_stall: Stall::new(
                limits.write_timeout,
                "the client took no bytes within the write timeout",
            ),
        };
        let mut closing = closing.subscribe();
        let builder = builder.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            // The handshake runs here, not in the accept loop: a slow client must not hold
            // up the others' accepts.
            let stream = match tls {
                None => MaybeTls::Plain(counted),
                Some(tls) => match tls.open(counted, peer, &mut closing).await {
                    Some(stream) => MaybeTls::Tls(Box::new((*stream).into())),
                    None => return,
                },
            };
            let connection = builder
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .with_upgrades();
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

/// Answers a connection past the cap with 503 (over TLS on a TLS listener) and closes it,
/// unless too many are being answered already: then it is closed at once. The handshake and
/// the answer together get [`REFUSAL_LINGER`].
fn refuse(tcp: TcpStream, refusing: &Arc<Semaphore>, tls: Option<&Tls>) {
    let Ok(answering) = refusing.clone().try_acquire_owned() else {
        return;
    };
    let acceptor = tls.map(|tls| tls.acceptor.clone());
    tokio::spawn(async move {
        let _answering = answering;
        let _ = tokio::time::timeout(REFUSAL_LINGER, async {
            let status = "503 Service Unavailable";
            match acceptor {
                None => answer_and_close(tcp, status, REFUSAL).await,
                Some(acceptor) => {
                    answer_and_close(acceptor.accept(tcp).await?, status, REFUSAL).await
                }
            }
        })
        .await;
    });
}

/// Writes an HTTP answer with `status` and the JSON `body` on a connection no request is
/// served on, and closes it.
async fn answer_and_close<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    status: &str,
    body: &str,
) -> io::Result<u64> {
    // The answer waits for the request's first bytes: one that comes before the client has
    // sent its request is an error to the client (hyper's "unexpected message"), which is
    // likely right after a TLS handshake.
    let mut request = [0u8; 1024];
    if stream.read(&mut request).await? == 0 {
        return Ok(0);
    }
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(answer.as_bytes()).await?;
    stream.shutdown().await?;
    // Closing a socket with unread data sends a reset, which can overtake the answer; so the
    // client's request is read (and dropped) until it closes — the caller bounds how long.
    tokio::io::copy(&mut stream, &mut tokio::io::sink()).await
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
    // The places come before the socket: fields drop in order, so a place is free again
    // before the peer can see the connection close (and open the next one).
    _place: OwnedSemaphorePermit,
    _source: SourcePlace,
    tcp: TcpStream,
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

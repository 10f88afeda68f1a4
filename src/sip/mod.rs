//! The SIP endpoint of the server: the sockets (UDP and TCP on `sip.udp` / `sip.tcp`, TLS on
//! `sip.tls` when set) and the task that owns all SIP state. Everything that *is* SIP —
//! parsing, framing, transactions, digest auth, the registrar — is the sans-IO core in
//! `vacd-sip`; this module only moves bytes and messages around it and applies vacd's policy
//! (who may register, which trunks may call, which numbers exist).
//!
//! Start with [`SipEndpoint::start`]; then `endpoint` (the transaction user: what each request
//! gets), `calls` (the B2BUA's dialogs: caller leg, agent legs), `call` (the call actor: a
//! call's routing, record and media), `transport` (sockets, rate limiting, parse errors),
//! `screening` (trunks and dialled numbers), `credentials` (how SIP passwords are stored) and
//! `reject`; the per-source limit is `crate::rate_limit`'s.

mod call;
mod calls;
pub mod credentials;
mod endpoint;
mod reject;
mod screening;

pub use calls::MonitorError;
pub use screening::normalise_e164;
mod transport;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use vacd_sip::digest::Algorithm;
use vacd_sip::message::Limits;

use crate::chat::ChatHub;
use crate::config::{DigestAlgorithm, SipConfig};
use crate::rate_limit::SharedLimit;
use crate::routing::{CallTap, CallTapEnds, RoutingHandle};
use crate::serve::{self, TlsError};
use crate::store::Store;
use call::Sounds;
use calls::{CallContext, Calls, RtpPorts};
use endpoint::{Endpoint, Settings};
use screening::Trunks;

/// Messages queued from the transports to the endpoint before the transports wait.
const INBOUND_QUEUE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen for SIP on {transport} {addr}: {source}")]
    Bind {
        transport: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "`sip.tls` is set: SIP over TLS needs `sip.tls_certificate` and `sip.tls_key` (PEM files)"
    )]
    TlsFilesMissing,
    #[error("SIP over TLS: {0}")]
    Tls(#[from] TlsError),
}

/// The TLS configuration of SIP over TLS: `None` without `sip.tls`; an error when a file is not
/// set, cannot be read, holds no certificate or key, or the key is not the certificate's.
/// Read once at start (a renewed certificate takes a restart), like the HTTP listener's, and
/// by the same code ([`serve::server_config`]).
pub fn load_tls(config: &SipConfig) -> Result<Option<TlsAcceptor>, Error> {
    if config.tls.is_none() {
        return Ok(None);
    }
    let (Some(certificate), Some(key)) = (&config.tls_certificate, &config.tls_key) else {
        return Err(Error::TlsFilesMissing);
    };
    let tls = serve::server_config(certificate, key)?;
    Ok(Some(TlsAcceptor::from(Arc::new(tls))))
}

/// The running SIP endpoint.
pub struct SipEndpoint {
    /// The bound UDP address (port 0 in the config resolved).
    pub udp_addr: SocketAddr,
    /// The bound TCP address.
    pub tcp_addr: SocketAddr,
    /// The bound TLS address, if SIP over TLS is on.
    pub tls_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// The endpoint's sockets, bound before anything else starts: a port in use — or, with TLS,
/// a certificate or key that cannot be used — stops vacd before it has touched the database.
pub struct SipSockets {
    udp: UdpSocket,
    udp_addr: SocketAddr,
    tcp: TcpListener,
    tcp_addr: SocketAddr,
    tls: Option<(transport::TlsListener, SocketAddr)>,
}

impl SipSockets {
    pub async fn bind(config: &SipConfig) -> Result<SipSockets, Error> {
        let acceptor = load_tls(config)?;
        let bind_error = |transport, addr| {
            move |source| Error::Bind {
                transport,
                addr,
                source,
            }
        };
        let udp = UdpSocket::bind(config.udp)
            .await
            .map_err(bind_error("UDP", config.udp))?;
        let udp_addr = udp.local_addr().map_err(bind_error("UDP", config.udp))?;
        widen_receive_buffer(&udp);
        let tcp = TcpListener::bind(config.tcp)
            .await
            .map_err(bind_error("TCP", config.tcp))?;
        let tcp_addr = tcp.local_addr().map_err(bind_error("TCP", config.tcp))?;
        let tls = match (config.tls, acceptor) {
            (Some(addr), Some(acceptor)) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(bind_error("TLS", addr))?;
                let bound = listener.local_addr().map_err(bind_error("TLS", addr))?;
                let listener = transport::TlsListener {
                    listener,
                    acceptor,
                    handshake_within: std::time::Duration::from_secs(
                        config.tls_handshake_timeout_seconds,
                    ),
                    handshakes: crate::rate_limit::HandshakeLimit::new(
                        config.tls_handshakes_per_second,
                        "SIP TLS",
                    ),
                };
                Some((listener, bound))
            }
            _ => None,
        };
        Ok(SipSockets {
            udp,
            udp_addr,
            tcp,
            tcp_addr,
            tls,
        })
    }
}

impl SipEndpoint {
    /// Starts the transports on their sockets and the endpoint task. Calls are routed through
    /// `routing`; `tap` and its `ends` carry routing's outputs and the console's requests about
    /// them (see [`CallTap`]).
    pub async fn start(
        config: &SipConfig,
        sockets: SipSockets,
        store: Store,
        routing: RoutingHandle,
        tap: CallTap,
        ends: CallTapEnds,
        consoles: ChatHub,
    ) -> Result<SipEndpoint, Error> {
        credentials::set_realm(&config.realm);
        let SipSockets {
            udp,
            udp_addr,
            tcp,
            tcp_addr,
            tls,
        } = sockets;
        let (tls, tls_addr) = tls.unzip();
        tracing::info!(udp = %udp_addr, tcp = %tcp_addr, tls = ?tls_addr, realm = config.realm, trunks = config.trunks.len(), "SIP listening");

        match store.fail_stale_calls().await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                calls = n,
                "calls live at the last stop were closed as failed"
            ),
            Err(err) => tracing::error!(%err, "calls live at the last stop could not be closed"),
        }
        let (reports_tx, reports) = mpsc::unbounded_channel();
        // What vacd names itself in its Via and Contact headers: where it listens, or — when
        // it listens on every interface — the address it gives for media (`sip.rtp_address`,
        // always a concrete one): a peer sends its ACK and BYE there.
        let advertised = |listening: SocketAddr| {
            if listening.ip().is_unspecified() {
                SocketAddr::new(config.rtp_address, listening.port())
            } else {
                listening
            }
        };
        let calls = Calls::new(CallContext {
            store: store.clone(),
            routing,
            tap,
            consoles,
            sounds: Arc::new(Sounds::load(&config.sounds)),
            rtp: RtpPorts::new(config.rtp_address, config.rtp_port_min, config.rtp_port_max),
            udp: advertised(udp_addr),
            tcp: advertised(tcp_addr),
            tls: tls_addr.map(advertised),
            outbound: config.trunks.iter().find_map(|t| t.outbound),
            outbound_credentials: config
                .trunks
                .iter()
                .find(|t| t.outbound.is_some())
                .and_then(|t| Some((t.outbound_username.clone()?, t.outbound_password.clone()?))),
            ring_timeout: std::time::Duration::from_secs(config.ring_timeout_seconds),
            reports: reports_tx,
        });
        let udp = Arc::new(udp);
        let limiter = Arc::new(SharedLimit::new(
            config.rate_limit_per_second,
            "SIP messages (datagrams dropped, connections not read until the second ends)",
        ));
        let limits = Limits::default();
        let (stop, stopped) = watch::channel(false);
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        let (lookup_tx, lookup_rx) = mpsc::channel(INBOUND_QUEUE);
        let endpoint = Endpoint::new(
            Settings {
                realm: config.realm.clone(),
                algorithms: config
                    .digest_algorithms
                    .iter()
                    .map(|a| match a {
                        DigestAlgorithm::Md5 => Algorithm::Md5,
                        DigestAlgorithm::Sha256 => Algorithm::Sha256,
                    })
                    .collect(),
                max_calls: config.max_calls,
                max_transactions: config.max_transactions,
                max_credential_lookups: config.max_credential_lookups,
                trunks: Trunks::new(config.trunks.clone()),
            },
            store,
            calls,
            udp.clone(),
            lookup_tx,
        );
        let tasks = vec![
            tokio::spawn(transport::run_udp(
                udp,
                inbound_tx.clone(),
                limiter.clone(),
                limits,
                stopped.clone(),
            )),
            tokio::spawn(transport::run_streams(
                tcp,
                tls,
                inbound_tx,
                limiter,
                limits,
                transport::TcpCaps {
                    max: config.max_tcp_connections,
                    per_source: config.max_tcp_connections_per_source,
                    first_message_within: std::time::Duration::from_secs(
                        config.tcp_first_message_seconds,
                    ),
                    write_within: std::time::Duration::from_secs(config.tcp_write_seconds),
                },
                stopped.clone(),
            )),
            tokio::spawn(endpoint.run(inbound_rx, lookup_rx, ends, reports, stopped)),
        ];
        Ok(SipEndpoint {
            udp_addr,
            tcp_addr,
            tls_addr,
            stop,
            tasks,
        })
    }

    /// Closes the sockets and connections and ends the endpoint task; transactions in flight
    /// are abandoned (their peers retransmit to the next instance or give up).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            if let Err(err) = task.await {
                tracing::error!(%err, "SIP task failed");
            }
        }
        tracing::info!("SIP stopped");
    }
}

/// Bytes of SIP datagrams the kernel may hold for the endpoint. Linux's default (~208 KiB, a
/// hundred-odd datagrams) overflows within milliseconds at a thousand calls a second whenever
/// the endpoint is busy, and every dropped INVITE, 200 or ACK costs a 500 ms retransmission.
const UDP_RECEIVE_BUFFER: usize = 4 << 20;

/// Asks for [`UDP_RECEIVE_BUFFER`]; the kernel caps it at `net.core.rmem_max`, which is logged.
fn widen_receive_buffer(udp: &UdpSocket) {
    let socket = socket2::SockRef::from(udp);
    if let Err(err) = socket.set_recv_buffer_size(UDP_RECEIVE_BUFFER) {
        tracing::warn!(%err, "SIP UDP receive buffer not widened");
        return;
    }
    match socket.recv_buffer_size() {
        // Linux reports twice what it grants (the rest is its bookkeeping).
        Ok(granted) if granted / 2 < UDP_RECEIVE_BUFFER => tracing::info!(
            granted = granted / 2,
            wanted = UDP_RECEIVE_BUFFER,
            "SIP UDP receive buffer capped by net.core.rmem_max"
        ),
        Ok(_) => {}
        Err(err) => tracing::debug!(%err, "SIP UDP receive buffer size unknown"),
    }
}

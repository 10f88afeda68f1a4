//! Start-up and graceful shutdown: open the store (migrating it), seed the demo tenant if
//! configured, start routing (restoring waiting interactions), bind SIP (UDP and TCP) and HTTP,
//! serve until told to stop, then stop SIP, drain requests, stop routing after its journal is
//! written, and close the store.
//! `main.rs` stops it on SIGINT/SIGTERM; tests start and stop it in-process.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api::{self, AppState};
use crate::channels::letter::LetterFonts;
use crate::channels::Channels;
use crate::chat::{self, ChatHub, ChatTap};
use crate::config::Config;
use crate::routing::{self, CallTap, Routing};
use crate::sip::{self, SipEndpoint, SipSockets};
use crate::store::{self, Store};
use crate::{demo, metrics, serve};

/// How long running requests may take to finish once shutdown begins.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store: {0}")]
    Store(#[from] store::Error),
    #[error("routing: {0}")]
    Routing(#[from] routing::Error),
    #[error("seeding the demo tenant: {0}")]
    Demo(#[from] api::error::Error),
    #[error("chat: {0}")]
    Chat(#[from] chat::Error),
    #[error("SIP: {0}")]
    Sip(#[from] sip::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    LetterFont(#[from] crate::channels::letter::FontError),
    #[error(transparent)]
    Tls(#[from] serve::TlsError),
    #[error("HTTP server: {0}")]
    Serve(std::io::Error),
}

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    /// Where SIP listens (the configured ports, or the ones picked for port 0).
    pub sip_udp: SocketAddr,
    pub sip_tcp: SocketAddr,
    /// With SIP over TLS on (`sip.tls`).
    pub sip_tls: Option<SocketAddr>,
    pub store: Store,
    routing: Routing,
    chat: ChatHub,
    channels: Channels,
    sip: SipEndpoint,
    floors: api::Floors,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

pub async fn start(config: &Config) -> Result<Running, Error> {
    let letter_fonts = LetterFonts::load(
        config.channels.letter_font.as_deref(),
        config.channels.letter_bold_font.as_deref(),
    )?;
    // Like the fonts, the certificate and key are read before anything else starts: a wrong
    // file stops the start with its name.
    let tls = serve::Tls::configured(&config.http)?;
    // The ports first: a port in use (another vacd, say) stops this one before it touches the
    // database, which starting routing does (restores, finishes wrap-ups). SIP over TLS's
    // certificate and key are read with SIP's sockets.
    let listener = TcpListener::bind(config.http.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.http.listen,
            source,
        })?;
    let sip_sockets = SipSockets::bind(&config.sip).await?;
    let store = Store::open(&config.database.url, config.database.max_connections).await?;
    tracing::info!(backend = ?store.backend(), "store open, migrations applied");
    // Before seeding: the demo agents' SIP passwords are hashed with the configured realm.
    sip::credentials::set_realm(&config.sip.realm);
    if config.demo.enabled {
        demo::seed(&store).await?;
    }
    let (calls, call_ends) = CallTap::new();
    let chat_tap = ChatTap::default();
    let routing = Routing::start(store.clone(), calls.clone(), chat_tap.clone()).await?;
    // The recorder first: the channels count from their first connection attempt on.
    let recorder = metrics::install();
    let chat = ChatHub::new(
        store.clone(),
        routing.handle(),
        chat_tap,
        config.chat.rules(),
        &config.chat,
    );
    let channels = Channels::start(
        config.channels.clone(),
        letter_fonts,
        store.clone(),
        routing.handle(),
        chat.clone(),
    );
    let restored = chat.restore().await?;
    if restored > 0 {
        tracing::info!(restored, "open chats restored");
    }
    let state = AppState::new(
        store.clone(),
        routing.handle(),
        chat.clone(),
        &config.auth,
        recorder,
        Some(channels.clone()),
        config.http.trusted_proxies.clone(),
    );
    let floors = state.floors();
    let app = api::router(
        state,
        config.http.max_body_bytes,
        std::time::Duration::from_secs(config.http.header_timeout_seconds),
    );
    let addr = listener.local_addr().map_err(Error::Serve)?;
    let sip = SipEndpoint::start(
        &config.sip,
        sip_sockets,
        store.clone(),
        routing.handle(),
        calls,
        call_ends,
        chat.clone(),
    )
    .await?;
    tracing::info!(%addr, tls = tls.is_some(), "HTTP listening");
    let (stop, stopped) = oneshot::channel::<()>();
    let limits = serve::Limits {
        max_connections: config.http.max_connections,
        max_connections_per_source: config.http.max_connections_per_source,
        header_timeout: std::time::Duration::from_secs(config.http.header_timeout_seconds),
        write_timeout: std::time::Duration::from_secs(config.http.write_timeout_seconds),
    };
    let task = tokio::spawn(serve::run(listener, app, limits, tls, async {
        let _ = stopped.await;
    }));
    Ok(Running {
        addr,
        sip_udp: sip.udp_addr,
        sip_tcp: sip.tcp_addr,
        sip_tls: sip.tls_addr,
        store,
        routing,
        chat,
        channels,
        floors,
        sip,
        stop,
        task,
    })
}

impl Running {
    /// The running routing's handle (what request handlers use).
    pub fn routing(&self) -> crate::routing::RoutingHandle {
        self.routing.handle()
    }

    /// Stops accepting connections, stops SIP, stops routing (closing the consoles) once its journal is
    /// written, lets running requests finish, then closes the store.
    pub async fn shutdown(self) -> Result<(), Error> {
        let _ = self.stop.send(());
        self.sip.shutdown().await;
        // Chat actors stop (their visitors' sockets close); open chats come back at start.
        self.chat.shutdown();
        // Before routing: a message in hand is committed (and routed) or left on its server.
        self.channels.shutdown().await;
        // Stopping routing ends the agent consoles' websockets, which the HTTP server would
        // otherwise wait for.
        self.routing.shutdown().await;
        // The supervisors' feeds have no owner to close them: they are told to (with "going
        // away", so the wallboards try again) and waited for.
        self.floors.close(SHUTDOWN_GRACE).await;
        // Requests get a bounded time to finish; a client that never reads must not hold the
        // shutdown forever.
        let mut task = self.task;
        let served = match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Serve(std::io::Error::other(e))),
            Err(_) => {
                tracing::warn!(grace = ?SHUTDOWN_GRACE, "requests still running at shutdown were cut off");
                task.abort();
                Ok(())
            }
        };
        self.store.close().await;
        tracing::info!("shut down");
        served
    }
}

//! Start-up and graceful shutdown: open the store (migrating it), seed the demo tenant if
//! configured, bind HTTP, serve until told to stop, then drain requests and close the store.
//! `main.rs` stops it on SIGINT/SIGTERM; tests start and stop it in-process.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::store::{self, Store};
use crate::{demo, metrics};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store: {0}")]
    Store(#[from] store::Error),
    #[error("seeding the demo tenant: {0}")]
    Demo(#[from] api::error::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server: {0}")]
    Serve(std::io::Error),
}

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    pub store: Store,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), Error>>,
}

pub async fn start(config: &Config) -> Result<Running, Error> {
    let store = Store::open(&config.database.url, config.database.max_connections).await?;
    tracing::info!(backend = ?store.backend(), "store open, migrations applied");
    if config.demo.enabled {
        demo::seed(&store).await?;
    }
    let state = AppState::new(
        store.clone(),
        &config.auth.operator_token,
        config.token_ttl().as_millis() as i64,
        metrics::install(),
    );
    let app = api::router(state, config.http.max_body_bytes);
    let listener = TcpListener::bind(config.http.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.http.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(Error::Serve)?;
    tracing::info!(%addr, "HTTP listening");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .map_err(Error::Serve)
    });
    Ok(Running {
        addr,
        store,
        stop,
        task,
    })
}

impl Running {
    /// Stops accepting connections, lets running requests finish, closes the store.
    pub async fn shutdown(self) -> Result<(), Error> {
        let _ = self.stop.send(());
        let served = match self.task.await {
            Ok(result) => result,
            Err(e) => Err(Error::Serve(std::io::Error::other(e))),
        };
        self.store.close().await;
        tracing::info!("shut down");
        served
    }
}

//! HTTP: the admin REST API under `/api/v1`, the OpenAPI document, and the operational
//! endpoints. [`router`] assembles everything; [`AppState`] is what every handler gets.
//!
//! - `auth`: login, tokens and the [`auth::Caller`] extractor (who is calling, with which role);
//! - `resources`: generic CRUD for the catalog's tenant-owned tables;
//! - `tenants`: tenant management by the operator;
//! - `error`: the one error type and its JSON shape;
//! - `console`: the agent console websocket `/ws/agent`;
//! - `openapi`, `health`: the document and `/health`, `/ready`, `/metrics`.

pub mod auth;
mod calls;
mod chat;
mod console;
pub mod error;
mod health;
mod interactions;
mod login_guard;
mod openapi;
mod pages;
mod reports;
pub mod resources;
mod supervisor;
mod tenants;
mod tickets;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::chat::ChatHub;
use crate::routing::RoutingHandle;
use crate::store::Store;
pub use supervisor::Floors;

/// Every websocket's read buffer. Frames from consoles and visitors are small, thousands of
/// sockets stay idle, and tungstenite zeroes the free part of its buffer before every read: at
/// its default of 128 KiB that zeroing was a twentieth of the server's time under console load.
const WS_READ_BUFFER_BYTES: usize = 4 * 1024;

/// What every handler is given. axum clones it for every request, so it is one shared
/// reference ([`Shared`] holds the ~30 handles inside).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    /// Reverse proxies whose `X-Forwarded-For` is believed (`http.trusted_proxies`).
    trusted_proxies: Vec<crate::config::Network>,
    pub store: Store,
    pub routing: RoutingHandle,
    pub chat: ChatHub,
    /// SHA-256 of the operator token; `None` when tenant management is disabled.
    pub operator_token_hash: Option<String>,
    /// SHA-256 of the token `/metrics` asks for; `None`: it asks for none.
    metrics_token_hash: Option<String>,
    pub token_ttl_ms: i64,
    /// Locks accounts whose passwords are being guessed.
    login_guard: std::sync::Mutex<login_guard::LoginGuard>,
    /// Password checks under way at most (each takes ~19 MiB and tens of ms of a core).
    password_checks: tokio::sync::Semaphore,
    pub metrics: PrometheusHandle,
    openapi: String,
    /// The floors the supervisors' feeds watch, one look per tenant.
    floors: supervisor::Floors,
    /// The written channels (tickets' replies go out through them); `None` without.
    pub channels: Option<crate::channels::Channels>,
    /// Today's report figures on `/metrics`, refreshed on scrape.
    report_gauges: crate::report_metrics::ReportGauges,
    /// Tickets (tenant, id) with a reply or forward being sent right now.
    sending: tickets::Sending,
    /// SMS senders whose messages are being taken in, one at a time each.
    sms_senders: tickets::SmsSenders,
    /// The request metrics `track` records.
    http_metrics: crate::metrics::HttpMetrics,
}

impl AppState {
    /// The supervisors' feeds, for shutdown to close them.
    pub fn floors(&self) -> supervisor::Floors {
        self.floors.clone()
    }

    /// The client's address: the connection's, or — from a trusted reverse proxy — the nearest
    /// address in `X-Forwarded-For` that is not itself a trusted proxy (each proxy appends the
    /// address it was reached from, so the ones to the left are the client's own say).
    pub fn client_ip(&self, peer: SocketAddr, headers: &axum::http::HeaderMap) -> IpAddr {
        let trusted = |ip: IpAddr| self.0.trusted_proxies.iter().any(|n| n.contains(ip));
        if !trusted(peer.ip()) {
            return peer.ip();
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect();
        for hop in hops.iter().rev() {
            match hop.parse::<IpAddr>() {
                Ok(ip) if trusted(ip) => continue,
                Ok(ip) => return ip,
                // Not an address: nothing to its left can be believed.
                Err(_) => break,
            }
        }
        peer.ip()
    }

    pub fn new(
        store: Store,
        routing: RoutingHandle,
        chat: ChatHub,
        auth: &crate::config::AuthConfig,
        metrics: PrometheusHandle,
        channels: Option<crate::channels::Channels>,
        trusted_proxies: Vec<crate::config::Network>,
    ) -> AppState {
        let openapi = serde_json::to_string(&openapi::document()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot render the OpenAPI document");
            "{}".into()
        });
        AppState(Arc::new(Shared {
            store,
            routing,
            chat,
            operator_token_hash: (!auth.operator_token.is_empty())
                .then(|| auth::token_hash(&auth.operator_token)),
            metrics_token_hash: (!auth.metrics_token.is_empty())
                .then(|| auth::token_hash(&auth.metrics_token)),
            token_ttl_ms: i64::try_from(auth.token_ttl_seconds.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            login_guard: std::sync::Mutex::new(login_guard::LoginGuard::new(
                auth.max_failed_logins,
                auth.max_failed_logins_per_source,
                Duration::from_secs(auth.failed_login_window_seconds),
            )),
            password_checks: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            metrics,
            openapi,
            floors: supervisor::Floors::default(),
            channels,
            trusted_proxies,
            report_gauges: Default::default(),
            sending: Default::default(),
            sms_senders: Default::default(),
            http_metrics: Default::default(),
        }))
    }
}

/// The API's routes; a request body may be `max_body_bytes` long and pause at most
/// `body_timeout` between two of its pieces (a client that sends its headers and then nothing
/// would otherwise hold its connection, and a place under the cap, for ever).
pub fn router(state: AppState, max_body_bytes: usize, body_timeout: Duration) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/api/v1/auth/login", post(auth::login))
        .route("/api/v1/auth/logout", post(auth::logout))
        .route("/api/v1/me", get(auth::me))
        .route("/api/v1/colleagues", get(auth::colleagues))
        .route("/ws/agent", get(console::agent_socket))
        .route("/ws/supervisor", get(supervisor::supervisor_socket))
        .route("/ws/chat", get(chat::chat_socket))
        .merge(chat::widget_routes())
        .route("/wallboard", get(pages::wallboard))
        .route("/wallboard.js", get(pages::wallboard_js))
        .route("/widget.js", get(pages::widget_js))
        .route("/demo", get(pages::demo))
        .route("/console", get(pages::console))
        .route("/console.js", get(pages::console_js))
        .route(
            "/api/v1/agents/{agent}/status",
            axum::routing::put(supervisor::set_status),
        )
        .route("/api/v1/reports/{table}", get(reports::report))
        .route(
            "/api/v1/interactions/{interaction}/move",
            post(interactions::move_interaction),
        )
        .route(
            "/api/v1/interactions/{interaction}/customer",
            get(interactions::customer),
        )
        .route(
            "/api/v1/calls/{interaction}/monitor",
            axum::routing::put(calls::start).delete(calls::stop),
        )
        .merge(tenants::routes())
        .merge(tickets::routes())
        .merge(resources::routes())
        .fallback(|| async { error::Error::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { error::Error::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            body_timeout,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

async fn openapi_json(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.as_str().to_owned(),
    )
        .into_response()
}

/// Counts requests per route and status, and times them.
async fn track(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    state
        .http_metrics
        .record(route, &method, response.status(), started.elapsed());
    response
}

/// Runs a write and what follows from it to the end, even when the client goes away
/// meanwhile: hyper drops the handler of a connection that closed, and a change committed
/// without routing hearing of it would stay unrouted (a created interaction never offered, a
/// changed skill not applied) until the next reload or restart; a reply sent and not recorded
/// would be sent again.
async fn to_the_end<T: Send + 'static>(
    work: impl std::future::Future<Output = error::Result<T>> + Send + 'static,
) -> error::Result<T> {
    match tokio::spawn(work).await {
        Ok(result) => result,
        // Never cancelled: a panic of the work is the handler's own.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    use super::to_the_end;

    /// The work goes on when the handler awaiting it is dropped (its client went away).
    #[tokio::test]
    async fn work_run_to_the_end_outlives_its_handler() {
        let (started, running) = tokio::sync::oneshot::channel();
        let (go, gate) = tokio::sync::oneshot::channel::<()>();
        let (done, finished) = tokio::sync::oneshot::channel();
        let handler = tokio::spawn(to_the_end(async move {
            let _ = started.send(());
            let _ = gate.await;
            let _ = done.send(());
            Ok(())
        }));
        running.await.expect("the work started");
        handler.abort();
        assert!(handler.await.is_err_and(|e| e.is_cancelled()));
        go.send(()).expect("the work is still waiting");
        finished.await.expect("the work ran to its end");
    }
}

//! Operational endpoints outside `/api/v1`: `/health` (the process answers), `/ready` (the store
//! is reachable and fully migrated; mail accounts up or down, and why only for the operator
//! token) and `/metrics` (Prometheus text; today's report figures are brought up to date
//! first, see `crate::report_metrics`). `/metrics` is for a scraper inside the deployment: it
//! asks for `auth.metrics_token` if one is set; otherwise block it at the reverse proxy (see
//! docs/decisions.md).

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::{auth, AppState};

#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, description = "the process is up")))]
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, description = "store reachable, migrations applied; each mail account up or down (with its last error for the operator token)"), (status = 503, description = "not ready")))]
pub async fn ready(State(state): State<AppState>, headers: HeaderMap) -> (StatusCode, Json<Value>) {
    match state.store.ready().await {
        Ok(true) => {
            // Mail servers are outside vacd: one that is down is reported, not a reason to
            // take vacd out of service. What it said is for the operator only: `/ready` is on
            // the public listener, and a tenant admin chooses the host an account talks to.
            let operator = auth::bearer(&headers).is_ok_and(|token| {
                state.operator_token_hash.as_deref() == Some(auth::token_hash(token).as_str())
            });
            let channels = state.channels.as_ref().map(|c| c.health(operator));
            (
                StatusCode::OK,
                Json(json!({ "status": "ready", "channels": channels })),
            )
        }
        Ok(false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready", "reason": "migrations pending" })),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            let reason = match e {
                crate::store::Error::LockLost => "database lock lost",
                _ => "store unreachable",
            };
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "not_ready", "reason": reason })),
            )
        }
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations", security((), ("bearer" = [])),
    responses((status = 200, description = "Prometheus text format"),
        (status = 401, description = "`auth.metrics_token` is set and the request does not carry it", body = super::error::ErrorBody)))]
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> super::error::Result<impl IntoResponse> {
    if let Some(expected) = state.metrics_token_hash.as_deref() {
        let carried = auth::bearer(&headers).is_ok_and(|token| auth::token_hash(token) == expected);
        if !carried {
            tracing::warn!("/metrics refused: no or a wrong metrics token");
            return Err(super::error::Error::Unauthorized(
                "/metrics needs the metrics token",
            ));
        }
    }
    state
        .report_gauges
        .refresh(&state.store, &state.routing)
        .await;
    let pending = state.store.journal_pending();
    metrics::gauge!(crate::metrics::JOURNAL_PENDING).set(pending as f64);
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    ))
}

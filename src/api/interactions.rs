//! Actions on interactions beyond the generic resource API:
//! - `POST /api/v1/interactions/{id}/move` with `{"queue": ID}` or `{"agent": ID}` moves a
//!   queued (or offered) interaction to another queue of the tenant, keeping its place by
//!   arrival and its wait time, or offers it straight to an agent who is ready with free
//!   capacity. Team leads and above, own tenant only; routing decides
//!   ([`vacd_actors::Input::Move`]) and the event log records it as `routing.moved`.
//! - `GET /api/v1/interactions/{id}/customer`: the card of the interaction's customer (the
//!   same as the screen pop: record, identities, other interactions newest first), for a
//!   console that joins a chat it was not offered or reloads. Agents and above.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;
use vacd_actors::{AgentId, Input, InteractionId, QueueId, RouterError, TenantId, TransferTarget};

use super::auth::Caller;
use super::error::{ApiPath, Error, Result};
use super::AppState;
use crate::catalog::{Role, INTERACTIONS};

/// Exactly one of `queue` and `agent`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    /// Move into this queue.
    queue: Option<u64>,
    /// Offer to this agent now.
    agent: Option<u64>,
}

#[utoipa::path(get, path = "/api/v1/interactions/{interaction}/customer", tag = "interactions",
    security(("bearer" = [])),
    responses((status = 200, description = "`{customer: {id, name, language, notes, identities}, history: [{id, channel, state, subject, created_at}]}`"),
        (status = 401, body = super::error::ErrorBody),
        (status = 404, description = "no such interaction, or it has no customer", body = super::error::ErrorBody)))]
pub async fn customer(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<serde_json::Value>> {
    let who = caller.user_with(Role::Agent)?;
    let interaction = raw
        .parse::<i64>()
        .map_err(|_| Error::NotFound(format!("no interaction {raw}")))?;
    let row = state
        .store
        .get(&INTERACTIONS, who.tenant_id, interaction)
        .await?;
    let Some(customer) = row["customer_id"].as_i64() else {
        return Err(Error::NotFound(format!(
            "interaction {interaction} has no customer"
        )));
    };
    let card = state
        .store
        .customer_card(who.tenant_id, customer, interaction)
        .await?;
    Ok(Json(serde_json::json!({
        "customer": card.customer,
        "history": card.history,
    })))
}

#[utoipa::path(post, path = "/api/v1/interactions/{interaction}/move", tag = "interactions",
    request_body = MoveRequest,
    params(("interaction" = u64, Path, description = "a queued or offered interaction")),
    security(("bearer" = [])),
    responses((status = 204, description = "moved (and, to an agent, offered)"),
        (status = 400, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody)))]
pub async fn move_interaction(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(raw): ApiPath<String>,
    body: std::result::Result<Json<MoveRequest>, JsonRejection>,
) -> Result<StatusCode> {
    let who = caller.user_with(Role::TeamLead)?;
    let Json(request) = body?;
    let interaction = raw
        .parse::<u64>()
        .map(InteractionId)
        .map_err(|_| Error::NotFound(format!("no waiting interaction {raw}")))?;
    let to = match (request.queue, request.agent) {
        (Some(queue), None) => TransferTarget::Queue {
            queue: QueueId(queue),
        },
        (None, Some(agent)) => TransferTarget::Agent {
            agent: AgentId(agent),
        },
        _ => {
            return Err(Error::invalid(
                "invalid_target",
                "give exactly one of \"queue\" and \"agent\"",
            ))
        }
    };
    let input = Input::Move { interaction, to };
    let tenant = TenantId(who.tenant_id as u64);
    match state.routing.router().input(tenant, input).await {
        Ok(()) => {
            tracing::info!(tenant = who.tenant_id, supervisor = who.user_id, %interaction, ?to, "interaction moved by a supervisor");
            Ok(StatusCode::NO_CONTENT)
        }
        Err(err) => {
            tracing::info!(tenant = who.tenant_id, supervisor = who.user_id, %interaction, ?to, %err, "move refused");
            Err(refusal(err))
        }
    }
}

fn refusal(err: RouterError) -> Error {
    use vacd_actors::Error::*;
    let message = err.to_string();
    match err {
        RouterError::Rejected(UnknownInteraction(_)) => Error::NotFound(message),
        RouterError::Rejected(UnknownQueue(_) | UnknownAgent(_)) => {
            Error::invalid(err.code(), message)
        }
        err => Error::Conflict {
            code: err.code(),
            message,
        },
    }
}

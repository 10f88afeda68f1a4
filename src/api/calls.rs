//! Supervisor actions on live calls: `PUT /api/v1/calls/{interaction}/monitor` with
//! `{"mode": "silent" | "whisper" | "barge"}` calls the supervisor's registered phone and lets
//! it listen in (or switches the mode of a running monitoring, keeping the phone leg);
//! `DELETE` of the same path ends it. Team leads and above, own tenant only.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;
use vacd_actors::{AgentId, InteractionId};
use vacd_sip::mix::Monitor;

use super::auth::Caller;
use super::error::{ApiPath, Error, Result};
use super::AppState;
use crate::catalog::Role;
use crate::routing::Monitoring;
use crate::sip::MonitorError;
use crate::store::Principal;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MonitorRequest {
    mode: Mode,
}

/// silent: listen only; whisper: the agent hears the supervisor; barge: three-way.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Silent,
    Whisper,
    Barge,
}

impl From<Mode> for Monitor {
    fn from(mode: Mode) -> Monitor {
        match mode {
            Mode::Silent => Monitor::Silent,
            Mode::Whisper => Monitor::Whisper,
            Mode::Barge => Monitor::Barge,
        }
    }
}

fn interaction_id(raw: &str) -> Result<InteractionId> {
    raw.parse::<u64>()
        .map(InteractionId)
        .map_err(|_| Error::NotFound(format!("no live call {raw}")))
}

fn refusal(err: MonitorError) -> Error {
    let message = err.to_string();
    match err {
        MonitorError::NoCall | MonitorError::NotMonitoring => Error::NotFound(message),
        MonitorError::Busy => Error::Conflict {
            code: "busy",
            message,
        },
        MonitorError::Ending => Error::Conflict {
            code: "monitor_ending",
            message,
        },
        MonitorError::NoPhone => Error::invalid("no_phone", message),
        MonitorError::NoPorts => Error::Conflict {
            code: "no_capacity",
            message,
        },
    }
}

/// `who`'s request to monitor in `mode` (or to stop: `None`).
fn monitoring(who: &Principal, mode: Option<Monitor>) -> Monitoring {
    Monitoring {
        tenant: who.tenant_id,
        supervisor: AgentId(who.user_id as u64),
        lead: who.role == Role::TeamLead,
        mode,
    }
}

#[utoipa::path(put, path = "/api/v1/calls/{interaction}/monitor", tag = "calls", request_body = MonitorRequest,
    params(("interaction" = u64, Path, description = "the call's interaction")), security(("bearer" = [])),
    responses((status = 204, description = "the supervisor's phone is called, or the mode switched"),
        (status = 403, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody),
        (status = 503, description = "journal_behind: routing's writes are behind (the database is down or slow); try again", body = super::error::ErrorBody)))]
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(interaction): ApiPath<String>,
    body: std::result::Result<Json<MonitorRequest>, JsonRejection>,
) -> Result<StatusCode> {
    let who = caller.user_with(Role::TeamLead)?;
    let Json(request) = body?;
    let interaction = interaction_id(&interaction)?;
    if who.role == Role::TeamLead
        && !state
            .store
            .worked_in_team_of(who.tenant_id, who.user_id, interaction.0 as i64)
            .await?
    {
        return Err(Error::Forbidden(
            "a team lead listens to their own team's calls only".into(),
        ));
    }
    state
        .routing
        .calls()
        .monitor(interaction, monitoring(&who, Some(request.mode.into())))
        .await
        .map_err(refusal)?;
    tracing::info!(tenant = who.tenant_id, supervisor = who.user_id, %interaction, mode = ?request.mode, "monitoring");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/calls/{interaction}/monitor", tag = "calls",
    params(("interaction" = u64, Path, description = "the call's interaction")), security(("bearer" = [])),
    responses((status = 204, description = "monitoring ended"), (status = 404, body = super::error::ErrorBody)))]
pub async fn stop(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(interaction): ApiPath<String>,
) -> Result<StatusCode> {
    let who = caller.user_with(Role::TeamLead)?;
    let interaction = interaction_id(&interaction)?;
    state
        .routing
        .calls()
        .monitor(interaction, monitoring(&who, None))
        .await
        .map_err(refusal)?;
    Ok(StatusCode::NO_CONTENT)
}

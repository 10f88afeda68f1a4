//! The ticket desk's REST API, for the agent console (documented in `docs/tickets.md`):
//! `GET /api/v1/tickets/{id}` (thread, customer, history), `POST …/preview` and `…/reply`
//! (a template and/or text, variables filled, sent through the ticket's channel), `…/notes`,
//! `…/forward`, `…/close`, `…/reopen`, `PUT …/follow-up`; and the SMS gateway's webhook
//! `POST /api/v1/sms/inbound` (its own bearer token). Agents and above, own tenant only.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value as Json_};
use utoipa::{OpenApi, ToSchema};
use vacd_actors::{AgentId, Input, InteractionId, TenantId};

use super::auth::{self, Caller};
use super::error::{ApiPath, Error, Result};
use super::AppState;
use crate::catalog::{Role, INTERACTIONS};
use crate::channels::{self, reply, sms, Channels, SendKind};
use crate::store::{self, NewOutbound, Outbound, Principal};

/// The ticket desk's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        ticket,
        preview,
        send_reply,
        note,
        forward,
        close,
        reopen,
        follow_up,
        sms_inbound
    ),
    components(schemas(
        ReplyRequest,
        NoteRequest,
        ForwardRequest,
        FollowUpRequest,
        sms::InboundSms
    ))
)]
pub struct TicketPaths;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tickets/{id}", get(ticket))
        .route("/api/v1/tickets/{id}/preview", post(preview))
        .route("/api/v1/tickets/{id}/reply", post(send_reply))
        .route("/api/v1/tickets/{id}/notes", post(note))
        .route("/api/v1/tickets/{id}/forward", post(forward))
        .route("/api/v1/tickets/{id}/close", post(close))
        .route("/api/v1/tickets/{id}/reopen", post(reopen))
        .route("/api/v1/tickets/{id}/follow-up", put(follow_up))
        .route("/api/v1/sms/inbound", post(sms_inbound))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ReplyRequest {
    /// A template name; its subject and body are used unless `subject` / `body` are given.
    template: Option<String>,
    subject: Option<String>,
    body: Option<String>,
    /// Close the ticket with this reply (default: answered, waiting for the customer).
    close: bool,
    /// The console's id of this reply (one per draft, at most 64 bytes): a repeat of a reply
    /// that was sent (a double click, a retry after a lost answer) is answered with the stored
    /// reply (200) instead of sending it again.
    #[serde(default)]
    client_id: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    body: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForwardRequest {
    to: String,
    #[serde(default)]
    body: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FollowUpRequest {
    /// Unix ms; `null` clears it.
    at: Option<i64>,
}

fn ticket_id(raw: &str) -> Result<i64> {
    raw.parse::<i64>()
        .map_err(|_| Error::NotFound(format!("no ticket {raw}")))
}

fn channels_of(state: &AppState) -> Result<&Channels> {
    state.channels.as_ref().ok_or_else(|| Error::Conflict {
        code: "channels_stopped",
        message: "the written channels are not running".into(),
    })
}

fn refusal(e: channels::Error) -> Error {
    let message = e.to_string();
    match e {
        channels::Error::Store(e) => Error::Internal(e),
        channels::Error::UnknownTemplate(_) => Error::invalid("unknown_template", message),
        channels::Error::ReplyTooLong(_) => Error::invalid("reply_too_long", message),
        channels::Error::NoRecipient => Error::invalid("no_recipient", message),
        channels::Error::NotConfigured(_) => Error::Conflict {
            code: "not_configured",
            message,
        },
        channels::Error::Letter(channels::letter::LetterError::Unprintable(_)) => {
            Error::invalid("unprintable", message)
        }
        channels::Error::Smtp(_) | channels::Error::Sms(_) | channels::Error::Letter(_) => {
            tracing::warn!(error = %message, "answer not sent");
            Error::Conflict {
                code: "send_failed",
                message,
            }
        }
    }
}

/// The subject of a reply: the agent's own if given — with the ticket's tag, so that the
/// customer's answer finds the ticket — else the composed one (which has it).
fn subject_of(own: Option<String>, composed: String, ticket: i64) -> String {
    let Some(own) = own else { return composed };
    // Ours the last tag: that is the one a customer's answer threads by.
    if channels::threading::find_tag(&own) == Some(ticket) {
        own
    } else {
        format!("{} {}", own.trim_end(), channels::threading::tag(ticket))
    }
}

async fn agent_name(state: &AppState, who: &Principal) -> Result<String> {
    state
        .store
        .user_name(who.tenant_id, vacd_actors::AgentId(who.user_id as u64))
        .await?
        .ok_or_else(|| Error::NotFound(format!("no user {}", who.user_id)))
}

/// Tickets with a reply or forward on its way out: a second one for the same ticket meanwhile
/// (a double click, a retry of a request that seemed to hang) is refused instead of sending the
/// customer the same message twice.
#[derive(Default)]
pub(super) struct Sending(dashmap::DashSet<(i64, i64)>);

/// An interaction's place in [`Sending`], given back when dropped.
pub(super) struct SendingGuard {
    state: AppState,
    ticket: (i64, i64),
}

impl Sending {
    /// The interaction's place, unless something of it is being sent already (a chat's
    /// transcript takes its place the same way).
    pub(super) fn claim(state: &AppState, tenant: i64, interaction: i64) -> Option<SendingGuard> {
        state
            .sending
            .0
            .insert((tenant, interaction))
            .then(|| SendingGuard {
                state: state.clone(),
                ticket: (tenant, interaction),
            })
    }

    fn start(state: &AppState, tenant: i64, ticket: i64) -> Result<SendingGuard> {
        Sending::claim(state, tenant, ticket).ok_or_else(|| Error::Conflict {
            code: "send_in_progress",
            message: format!(
                "a reply or forward of ticket {ticket} is being sent; see the ticket before sending again"
            ),
        })
    }
}

impl Drop for SendingGuard {
    fn drop(&mut self) {
        self.state.sending.0.remove(&self.ticket);
    }
}

/// Senders whose SMS are being taken in: one SMS of a sender at a time, so that the parts of
/// a long text the gateway posts side by side find the ticket the first one opened instead of
/// each opening its own (looking for the open ticket and storing the SMS are two steps).
#[derive(Default)]
pub(super) struct SmsSenders(dashmap::DashMap<(i64, i64, String), Arc<tokio::sync::Mutex<()>>>);

/// A sender's turn in [`SmsSenders`]; the entry goes when nobody else waits for it.
struct SmsTurn {
    state: AppState,
    key: (i64, i64, String),
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl SmsSenders {
    async fn turn(state: &AppState, key: (i64, i64, String)) -> SmsTurn {
        let lock = state.sms_senders.0.entry(key.clone()).or_default().clone();
        SmsTurn {
            state: state.clone(),
            key,
            _turn: lock.lock_owned().await,
        }
    }
}

impl Drop for SmsTurn {
    fn drop(&mut self) {
        // The map's and this turn's: nobody else holds or waits for the lock (taking one
        // needs the map's entry, which this removal holds locked).
        self.state
            .sms_senders
            .0
            .remove_if(&self.key, |_, lock| Arc::strong_count(lock) <= 2);
    }
}

/// An agent may not answer, forward or close a ticket routing has connected to another agent
/// (409 `held_by_another`); a team lead or above may, and their reply or close ends that
/// agent's work. Tickets waiting, offered or done are the desk's: any agent may answer them.
async fn not_held_by_another(state: &AppState, who: &Principal, id: i64) -> Result<()> {
    if who.role >= Role::TeamLead {
        return Ok(());
    }
    // The stored state must include what routing did before this request.
    state.routing.caught_up().await?;
    let row = state.store.get(&INTERACTIONS, who.tenant_id, id).await?;
    match row["agent_id"].as_i64() {
        Some(agent) if row["state"] == "connected" && agent != who.user_id => {
            Err(Error::Conflict {
                code: "held_by_another",
                message: format!(
                    "agent {agent} is working on ticket {id}; a team lead or supervisor may take it over"
                ),
            })
        }
        _ => Ok(()),
    }
}

/// Ends the ticket's routing work after `agent` answered or closed it: a connected ticket goes
/// to wrap-up, a waiting one leaves its queue (closed by `agent`: answered, not abandoned), a
/// finished one needs nothing. Routing's own view decides (the stored state may lag behind
/// it), so `End` is tried first, then `Close`.
async fn finish_routing(state: &AppState, tenant: i64, id: i64, agent: i64) {
    let interaction = InteractionId(id as u64);
    let router = state.routing.router();
    let tenant_id = TenantId(tenant as u64);
    if router
        .input(tenant_id, Input::End { interaction })
        .await
        .is_ok()
    {
        return;
    }
    // Still waiting (a ticket answered or closed from the desk): answered by whoever did,
    // not abandoned by the customer.
    let agent = AgentId(agent as u64);
    if let Err(e) = router
        .input(tenant_id, Input::Close { interaction, agent })
        .await
    {
        tracing::debug!(tenant, interaction_id = id, error = %e, "ticket had no routing work left");
    }
}

#[utoipa::path(get, path = "/api/v1/tickets/{id}", tag = "tickets", params(("id" = i64, Path, description = "the ticket's interaction")), security(("bearer" = [])),
    responses((status = 200, description = "the ticket with its thread, customer and history (docs/tickets.md)"), (status = 404, body = super::error::ErrorBody)))]
async fn ticket(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Json_>> {
    let who = caller.user_with(Role::Agent)?;
    Ok(Json(
        state.store.ticket(who.tenant_id, ticket_id(&id)?).await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/tickets/{id}/preview", tag = "tickets", request_body = ReplyRequest, params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, description = "`{subject, body, to}` as a reply would send them"), (status = 422, body = super::error::ErrorBody)))]
async fn preview(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    body: std::result::Result<Json<ReplyRequest>, JsonRejection>,
) -> Result<Json<Json_>> {
    let who = caller.user_with(Role::Agent)?;
    let Json(request) = body?;
    let ctx = state
        .store
        .reply_context(who.tenant_id, ticket_id(&id)?)
        .await?;
    let agent = agent_name(&state, &who).await?;
    let composed = reply::compose(
        &state.store,
        &ctx,
        request.template.as_deref(),
        request.body.as_deref(),
        Some(&agent),
    )
    .await
    .map_err(refusal)?;
    let subject = subject_of(request.subject, composed.subject, ctx.interaction);
    Ok(Json(
        json!({ "subject": subject, "body": composed.body, "to": ctx.contact }),
    ))
}

#[utoipa::path(post, path = "/api/v1/tickets/{id}/reply", tag = "tickets", request_body = ReplyRequest, params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 201, description = "sent through the ticket's channel"), (status = 409, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody),
        (status = 503, description = "journal_behind: routing's writes are behind (the database is down or slow); try again", body = super::error::ErrorBody)))]
async fn send_reply(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    body: std::result::Result<Json<ReplyRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Json_>)> {
    let who = caller.user_with(Role::Agent)?;
    let Json(request) = body?;
    // Sent, then recorded: both happen, and the ticket stays guarded meanwhile, even if the
    // client goes away (a retry then finds the reply recorded, not sent twice).
    super::to_the_end(reply(state, who, id, request)).await
}

async fn reply(
    state: AppState,
    who: Principal,
    id: String,
    request: ReplyRequest,
) -> Result<(StatusCode, Json<Json_>)> {
    let channels = channels_of(&state)?;
    let id = ticket_id(&id)?;
    let ctx = state.store.reply_context(who.tenant_id, id).await?;
    let _sending = Sending::start(&state, who.tenant_id, id)?;
    if request.template.is_none() && request.body.as_deref().is_none_or(|b| b.trim().is_empty()) {
        return Err(Error::invalid("empty_reply", "give a template or a body"));
    }
    let agent = agent_name(&state, &who).await?;
    // Before the holder is checked: a retry of a reply that went out is answered as such even
    // once the ticket has moved on to someone else.
    if let Some(client_id) = &request.client_id {
        if client_id.is_empty() || client_id.len() > MAX_CLIENT_ID || client_id.contains('\0') {
            return Err(Error::invalid(
                "invalid_value",
                format!("`client_id` must have 1 to {MAX_CLIENT_ID} bytes"),
            ));
        }
        // Sent already (the guard above was held until it was recorded): not again.
        if let Some(mut sent) = state
            .store
            .sent_with_client_id(who.tenant_id, id, &agent, client_id)
            .await?
        {
            sent["status"] = state.store.ticket(who.tenant_id, id).await?["status"].clone();
            sent["repeated"] = json!(true);
            return Ok((StatusCode::OK, Json(sent)));
        }
    }
    not_held_by_another(&state, &who, id).await?;
    // The customer's newest message now: one that arrives while this reply goes out is not
    // answered by it, and must not be left behind in an answered ticket.
    let newest = state.store.newest_inbound(who.tenant_id, id).await?;
    let composed = reply::compose(
        &state.store,
        &ctx,
        request.template.as_deref(),
        request.body.as_deref(),
        Some(&agent),
    )
    .await
    .map_err(refusal)?;
    let subject = subject_of(request.subject, composed.subject, ctx.interaction);
    let to = ctx
        .contact
        .clone()
        .ok_or_else(|| refusal(channels::Error::NoRecipient))?;
    let sent = channels
        .send(&ctx, &to, &subject, &composed.body, SendKind::Reply)
        .await
        .map_err(refusal)?;
    let status = if request.close { "closed" } else { "answered" };
    let message = state
        .store
        .record_outbound(&NewOutbound {
            tenant: who.tenant_id,
            interaction: id,
            author: agent,
            agent: Some(who.user_id),
            subject: subject.clone(),
            body: composed.body.clone(),
            recipients: vec![sent.to.clone()],
            message_id: sent.message_id.clone(),
            kind: Outbound::Reply {
                close: request.close,
            },
            attachments: sent.document.into_iter().collect(),
            client_id: request.client_id.clone(),
        })
        .await?;
    finish_routing(&state, who.tenant_id, id, who.user_id).await;
    let status = if state.store.newest_inbound(who.tenant_id, id).await? > newest {
        tracing::info!(
            tenant = who.tenant_id,
            interaction_id = id,
            "the customer wrote while the reply went out; the ticket waits again"
        );
        state.routing.flushed().await;
        state
            .store
            .set_ticket_status(who.tenant_id, id, None, "open")
            .await?;
        channels.route(who.tenant_id, id).await;
        "open"
    } else {
        status
    };
    tracing::info!(
        tenant = who.tenant_id,
        interaction_id = id,
        agent = who.user_id,
        message,
        "ticket answered"
    );
    Ok((
        StatusCode::CREATED,
        Json(
            json!({ "message": message, "message_id": sent.message_id, "to": sent.to, "subject": subject, "body": composed.body, "status": status }),
        ),
    ))
}

#[utoipa::path(post, path = "/api/v1/tickets/{id}/notes", tag = "tickets", request_body = NoteRequest, params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 201, description = "an internal note"), (status = 404, body = super::error::ErrorBody)))]
async fn note(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    body: std::result::Result<Json<NoteRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Json_>)> {
    let who = caller.user_with(Role::Agent)?;
    let Json(request) = body?;
    if request.body.trim().is_empty() {
        return Err(Error::invalid("empty_note", "a note needs a body"));
    }
    let author = agent_name(&state, &who).await?;
    let message = state
        .store
        .add_note(
            who.tenant_id,
            ticket_id(&id)?,
            Some(who.user_id),
            &author,
            &request.body,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "message": message }))))
}

#[utoipa::path(post, path = "/api/v1/tickets/{id}/forward", tag = "tickets", request_body = ForwardRequest, params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 201, description = "forwarded by mail"), (status = 409, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody),
        (status = 503, description = "journal_behind: routing's writes are behind (the database is down or slow); try again", body = super::error::ErrorBody)))]
async fn forward(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    body: std::result::Result<Json<ForwardRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Json_>)> {
    let who = caller.user_with(Role::Agent)?;
    let Json(request) = body?;
    // As a reply: sent and recorded to the end.
    super::to_the_end(forward_to(state, who, id, request)).await
}

async fn forward_to(
    state: AppState,
    who: Principal,
    id: String,
    request: ForwardRequest,
) -> Result<(StatusCode, Json<Json_>)> {
    let channels = channels_of(&state)?;
    let id = ticket_id(&id)?;
    let ctx = state.store.reply_context(who.tenant_id, id).await?;
    if ctx.channel != "email" {
        return Err(Error::invalid(
            "not_email",
            "only email tickets can be forwarded",
        ));
    }
    not_held_by_another(&state, &who, id).await?;
    let _sending = Sending::start(&state, who.tenant_id, id)?;
    let ticket = state.store.ticket(who.tenant_id, id).await?;
    let last_in = ticket["thread"]
        .as_array()
        .and_then(|t| t.iter().rev().find(|m| m["direction"] == "in"))
        .and_then(|m| m["body"].as_str())
        .unwrap_or_default()
        .to_owned();
    let text = format!(
        "{}\n\n---------- Forwarded message ----------\nFrom: {}\nSubject: {}\n\n{last_in}",
        request.body.unwrap_or_default(),
        ctx.contact.as_deref().unwrap_or("unknown sender"),
        ctx.subject
    );
    let subject = format!("Fwd: {} {}", ctx.subject, channels::threading::tag(id));
    let sent = channels
        .send(&ctx, &request.to, &subject, &text, SendKind::Forward)
        .await
        .map_err(refusal)?;
    let agent = agent_name(&state, &who).await?;
    let message = state
        .store
        .record_outbound(&NewOutbound {
            tenant: who.tenant_id,
            interaction: id,
            author: agent,
            agent: Some(who.user_id),
            subject,
            body: text,
            recipients: vec![sent.to.clone()],
            message_id: sent.message_id,
            kind: Outbound::Forward,
            attachments: Vec::new(),
            client_id: None,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "message": message, "to": sent.to })),
    ))
}

#[utoipa::path(post, path = "/api/v1/tickets/{id}/close", tag = "tickets", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, description = "the closed ticket"), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody),
        (status = 503, description = "journal_behind: routing's writes are behind (the database is down or slow); try again", body = super::error::ErrorBody)))]
async fn close(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Json_>> {
    let who = caller.user_with(Role::Agent)?;
    let id = ticket_id(&id)?;
    not_held_by_another(&state, &who, id).await?;
    // Not while a reply goes out: recording it would set the ticket answered over the close.
    let sending = Sending::start(&state, who.tenant_id, id)?;
    // Closed in the store and in routing alike, even if the client goes away meanwhile.
    super::to_the_end(async move {
        let _sending = sending;
        state
            .store
            .set_ticket_status(who.tenant_id, id, Some(who.user_id), "closed")
            .await?;
        finish_routing(&state, who.tenant_id, id, who.user_id).await;
        Ok(Json(state.store.ticket(who.tenant_id, id).await?))
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/tickets/{id}/reopen", tag = "tickets", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, description = "the reopened ticket, routed again"), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody),
        (status = 503, description = "journal_behind: routing's writes are behind (the database is down or slow); try again", body = super::error::ErrorBody)))]
async fn reopen(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Json_>> {
    let who = caller.user_with(Role::Agent)?;
    let channels = channels_of(&state)?.clone();
    let id = ticket_id(&id)?;
    // Not while a reply goes out: recording it would end the routing the reopen started.
    let sending = Sending::start(&state, who.tenant_id, id)?;
    // Reopened in the store and routed, even if the client goes away meanwhile.
    super::to_the_end(async move {
        let _sending = sending;
        // The stored state must include what routing did before this request.
        state.routing.caught_up().await?;
        let before = state
            .store
            .set_ticket_status(who.tenant_id, id, Some(who.user_id), "open")
            .await?;
        // A ticket in wrap-up waits again (routing lets the agent's wrap-up run on).
        if !matches!(before.as_str(), "new" | "queued" | "offered" | "connected") {
            channels.route(who.tenant_id, id).await;
        }
        Ok(Json(state.store.ticket(who.tenant_id, id).await?))
    })
    .await
}

#[utoipa::path(put, path = "/api/v1/tickets/{id}/follow-up", tag = "tickets", request_body = FollowUpRequest, params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 204, description = "follow-up date set or cleared"), (status = 404, body = super::error::ErrorBody)))]
async fn follow_up(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    body: std::result::Result<Json<FollowUpRequest>, JsonRejection>,
) -> Result<StatusCode> {
    let who = caller.user_with(Role::Agent)?;
    let Json(request) = body?;
    state
        .store
        .set_follow_up(
            who.tenant_id,
            ticket_id(&id)?,
            Some(who.user_id),
            request.at,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Longest `client_id` of a reply, in bytes.
const MAX_CLIENT_ID: usize = 64;

/// Longest SMS sender (a number or an alphanumeric sender id) taken, in bytes.
const MAX_SMS_SENDER: usize = 64;
/// Longest gateway message id taken, in bytes.
const MAX_SMS_ID: usize = 256;

#[utoipa::path(post, path = "/api/v1/sms/inbound", tag = "tickets", request_body = sms::InboundSms, security(("bearer" = [])),
    responses((status = 202, description = "`{ticket, outcome}`"), (status = 401, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)))]
async fn sms_inbound(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: std::result::Result<Json<sms::InboundSms>, JsonRejection>,
) -> Result<(StatusCode, Json<Json_>)> {
    let channels = channels_of(&state)?;
    let expected = &channels.config().sms.inbound_token;
    let given = auth::bearer(&headers)?;
    if expected.is_empty() || auth::token_hash(given) != auth::token_hash(expected) {
        return Err(Error::Unauthorized("not the SMS gateway's token"));
    }
    let Json(message) = body?;
    if message.from.trim().is_empty() || message.text.is_empty() {
        return Err(Error::invalid(
            "empty_sms",
            "an SMS needs a sender and a text",
        ));
    }
    // Numbers and alphanumeric sender ids are short; the store indexes both values.
    if message.from.trim().len() > MAX_SMS_SENDER
        || message.id.as_ref().is_some_and(|id| id.len() > MAX_SMS_ID)
    {
        return Err(Error::invalid(
            "invalid_sms",
            format!(
                "an SMS sender has at most {MAX_SMS_SENDER} bytes and its id at most {MAX_SMS_ID}"
            ),
        ));
    }
    let address = state
        .store
        .service_address("sms", message.to.trim())
        .await?
        .ok_or_else(|| {
            Error::invalid(
                "unknown_number",
                format!("{} is no SMS service number", message.to),
            )
        })?;
    // Stored and routed to the end even if the gateway hangs up meanwhile: its retry finds
    // the message stored (a duplicate), which is not routed again.
    let channels = channels.clone();
    let ingested = super::to_the_end(async move {
        let sender = (address.tenant, address.id, message.from.trim().to_owned());
        let _turn = SmsSenders::turn(&state, sender).await;
        let open = state
            .store
            .open_ticket_of(address.tenant, address.id, message.from.trim())
            .await?;
        let new = sms::inbound(&message, &address, open, store::now_ms());
        channels.accept(&new).await.map_err(Error::from)
    })
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(
            json!({ "ticket": ingested.interaction, "outcome": format!("{:?}", ingested.outcome).to_lowercase() }),
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::subject_of;

    #[test]
    fn an_agents_own_subject_keeps_the_ticket_tag() {
        let composed = "Re: Invoice [#T-42]".to_owned();
        assert_eq!(
            subject_of(Some("Your refund ".into()), composed.clone(), 42),
            "Your refund [#T-42]"
        );
        assert_eq!(
            subject_of(Some("[#T-42] Your refund".into()), composed.clone(), 42),
            "[#T-42] Your refund"
        );
        assert_eq!(subject_of(None, composed.clone(), 42), composed);
        assert_eq!(
            subject_of(Some("[#T-42] about [#T-5]".into()), composed.clone(), 42),
            "[#T-42] about [#T-5] [#T-42]",
            "ours must be the last tag"
        );
    }
}

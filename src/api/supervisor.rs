//! `GET /ws/supervisor`: the supervisors' live feed (team leads and up, token as for the
//! console), and `PUT /api/v1/agents/{id}/status`, a supervisor setting an agent's status
//! (same body as the console's `presence.set`: `{"status": "not_ready", "reason": "…"}`). vacd sends `floor` frames — every queue's live figures with today's totals, and
//! every agent's presence, time in state and work — when the floor changed: one task per
//! tenant ([`Floors`]) looks at routing's in-memory state twice a second for all of that
//! tenant's feeds and recomputes today's totals from the event log when new events were
//! written (at most every two seconds); each feed sends only what differs from its last frame. Team leads see the agents of their own team. The protocol is
//! documented in `docs/supervisor-feed.md`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value as Json};
use tokio::sync::watch;
use vacd_actors::{Floor, TenantId};

use super::auth::LiveSession;
use super::console::{authenticate, close_for_session, TokenQuery};
use super::error::{ApiPath, Error, Result};
use super::AppState;
use crate::catalog::Role;
use crate::reports::QueueRow;
use crate::store::{now_ms, Person, Principal, MAX_TODAY_EVENTS};

/// How often the floor is looked at.
const LOOK: Duration = Duration::from_millis(500);
/// Today's totals are recomputed at most once per this many looks.
const TOTALS_EVERY: u32 = 4;
/// How long one frame may take to go out.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The close code of a feed that ends because vacd shuts down (RFC 6455 §7.4.1, going away).
const GOING_AWAY: u16 = 1001;

pub async fn supervisor_socket(
    State(state): State<AppState>,
    query: std::result::Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
    upgrade: std::result::Result<
        WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> Result<Response> {
    let (live, upgrade) = authenticate(&state, query, &headers, upgrade, Role::TeamLead).await?;
    Ok(upgrade.on_upgrade(move |socket| serve(socket, state, live)))
}

/// What the feed keeps between looks.
struct Feed {
    /// Agents this viewer may see (`None`: all).
    team: Option<Vec<i64>>,
    people: BTreeMap<i64, String>,
    queue_names: BTreeMap<i64, String>,
    /// Each agent's presence as last seen and since when (Unix ms).
    presence: BTreeMap<i64, (Json, i64)>,
}

impl Feed {
    async fn new(state: &AppState, who: Principal) -> crate::store::Result<Feed> {
        let since = state.store.presence_since(who.tenant_id).await?;
        let presence = since
            .into_iter()
            .map(|(agent, at)| (agent, (Json::Null, at)))
            .collect();
        let mut feed = Feed {
            team: None,
            people: BTreeMap::new(),
            queue_names: BTreeMap::new(),
            presence,
        };
        feed.relabel(state, who).await?;
        Ok(feed)
    }

    /// Reads the names of people and queues, and the viewer's team, again.
    async fn relabel(&mut self, state: &AppState, who: Principal) -> crate::store::Result<()> {
        let (users, queue_names) = state.store.floor_labels(who.tenant_id).await?;
        self.team = match who.role {
            Role::TeamLead => {
                let own = users
                    .iter()
                    .find(|p| p.id == who.user_id)
                    .and_then(|p| p.team);
                Some(
                    users
                        .iter()
                        .filter(|p| own.is_some() && p.team == own)
                        .map(|p| p.id)
                        .collect(),
                )
            }
            _ => None,
        };
        self.people = users
            .into_iter()
            .map(|Person { id, name, .. }| (id, name))
            .collect();
        self.queue_names = queue_names;
        Ok(())
    }

    /// The frame for the tenant's `floor` as this viewer sees it.
    fn frame(&mut self, watched: &Watched) -> Json {
        let Watched { floor, totals } = watched;
        let now = now_ms();
        let queues: Vec<Json> = floor
            .queues
            .iter()
            .map(|q| {
                let id = q.queue.0 as i64;
                let today = totals.get(&id).map(|t| {
                    json!({
                        "offered": t.offered, "answered": t.answered, "abandoned": t.abandoned,
                        "service_level": t.service_level, "asa_ms": t.asa_ms, "aht_ms": t.aht_ms,
                        "longest_wait_ms": t.longest_wait_ms,
                    })
                });
                let waiting: Vec<Json> = floor
                    .waiting
                    .iter()
                    .filter(|w| w.queue == q.queue)
                    .map(|w| {
                        json!({
                            "interaction": w.interaction.0,
                            "channel": w.channel,
                            "position": w.position,
                            "waited_ms": w.waited.as_millis() as u64,
                            "estimated_wait_ms": w.estimated_wait.map(|d| d.as_millis() as u64),
                            "sla_breached": w.sla_breached,
                        })
                    })
                    .collect();
                json!({
                    "queue": id,
                    "name": self.queue_names.get(&id),
                    "waiting": q.waiting,
                    "waiting_interactions": waiting,
                    "offered": q.offered,
                    "in_progress": q.in_progress,
                    "longest_wait_ms": q.longest_wait.as_millis() as u64,
                    "agents_ready": q.agents_ready,
                    "agents_busy": q.agents_busy,
                    "agents_not_ready": q.agents_not_ready,
                    "today": today.unwrap_or_else(|| json!({ "offered": 0, "answered": 0, "abandoned": 0 })),
                })
            })
            .collect();
        let agents: Vec<Json> = floor
            .agents
            .iter()
            .filter(|a| {
                self.team
                    .as_ref()
                    .is_none_or(|team| team.contains(&(a.id.0 as i64)))
            })
            .map(|a| {
                let id = a.id.0 as i64;
                let presence = serde_json::to_value(&a.presence).unwrap_or(Json::Null);
                let entry = self
                    .presence
                    .entry(id)
                    .or_insert_with(|| (presence.clone(), now));
                if entry.0 != presence {
                    // Known from the event log at connect, or changed since the last look.
                    if !entry.0.is_null() {
                        entry.1 = now;
                    }
                    entry.0 = presence.clone();
                }
                json!({
                    "agent": id,
                    "name": self.people.get(&id),
                    "presence": presence,
                    "since": entry.1,
                    "work": a.work,
                })
            })
            .collect();
        json!({ "type": "floor", "queues": queues, "agents": agents })
    }
}

/// One tenant's floor and today's totals per queue, as last looked at.
#[derive(Debug, Default)]
pub struct Watched {
    floor: Floor,
    totals: BTreeMap<i64, QueueRow>,
}

/// The tenants' floors under watch: one task per tenant looks at routing and the event log
/// for all of that tenant's feeds, and stops when the last feed has gone.
#[derive(Clone, Default)]
pub struct Floors {
    tenants: Arc<Mutex<HashMap<i64, watch::Receiver<Arc<Watched>>>>>,
    /// True once vacd shuts down; every feed holds a receiver until it has closed.
    closing: Arc<watch::Sender<bool>>,
}

impl Floors {
    /// Closes every feed with "going away" and waits (at most `grace`) until they have closed,
    /// so that the close frames go out before vacd exits.
    pub async fn close(&self, grace: Duration) {
        self.closing.send_replace(true);
        if tokio::time::timeout(grace, self.closing.closed())
            .await
            .is_err()
        {
            tracing::warn!(?grace, "supervisor feeds still open at shutdown");
        }
    }

    /// The watch on `tenant`'s floor, starting its task if no feed watches it yet.
    fn subscribe(&self, state: &AppState, tenant: i64) -> watch::Receiver<Arc<Watched>> {
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(watching) = tenants.get(&tenant) {
            return watching.clone();
        }
        let (publish, watching) = watch::channel(Arc::new(Watched::default()));
        tenants.insert(tenant, watching.clone());
        tokio::spawn(look_after(self.clone(), state.clone(), tenant, publish));
        watching
    }
}

/// Looks at `tenant`'s floor twice a second and recomputes today's totals when new events
/// were written (at most every two seconds), while any feed watches.
async fn look_after(
    floors: Floors,
    state: AppState,
    tenant: i64,
    publish: watch::Sender<Arc<Watched>>,
) {
    let mut look = tokio::time::interval(LOOK);
    let mut looks = 0u32;
    let mut totals = BTreeMap::new();
    let mut seen = (-1, -1);
    // After too many events: when to try again.
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        look.tick().await;
        {
            // Only the map's own receiver left: nobody watches; stop (under the lock, so no
            // feed subscribes to a watch that is about to end).
            let mut tenants = floors.tenants.lock().unwrap_or_else(|p| p.into_inner());
            if publish.receiver_count() <= 1 {
                tenants.remove(&tenant);
                return;
            }
        }
        let due = retry_at.is_none_or(|at| tokio::time::Instant::now() >= at);
        if looks.is_multiple_of(TOTALS_EVERY) && due {
            retry_at = None;
            match today(&state, tenant, seen).await {
                Ok(Today::Fresh(now_seen, fresh)) => {
                    seen = now_seen;
                    totals = fresh;
                }
                Ok(Today::Unchanged) => {}
                Ok(Today::TooMany) => {
                    // Reading them all again every two seconds would load the database for
                    // nothing: the wallboard keeps its last totals and it is tried again later.
                    tracing::warn!(
                        tenant,
                        max = MAX_TODAY_EVENTS,
                        retry_seconds = TOO_MANY_RETRY.as_secs(),
                        "today's totals not refreshed: too many events since yesterday"
                    );
                    retry_at = Some(tokio::time::Instant::now() + TOO_MANY_RETRY);
                }
                Err(err) => tracing::warn!(tenant, %err, "today's totals not refreshed"),
            }
        }
        looks = looks.wrapping_add(1);
        match state.routing.router().floor(TenantId(tenant as u64)).await {
            Ok(floor) => {
                let watched = Watched {
                    floor,
                    totals: totals.clone(),
                };
                publish.send_replace(Arc::new(watched));
            }
            Err(err) => tracing::warn!(tenant, %err, "floor unavailable"),
        }
    }
}

/// What [`today`] found.
enum Today {
    /// Nothing new since the totals were taken.
    Unchanged,
    /// New totals per queue, and what they saw.
    Fresh((i64, i64), BTreeMap<i64, QueueRow>),
    /// More events since yesterday than [`MAX_TODAY_EVENTS`]: not computed.
    TooMany,
}

/// How often a tenant with too many events for today's totals is tried again.
const TOO_MANY_RETRY: Duration = Duration::from_secs(60);

/// Today's totals per queue, unless `seen` (the newest event id and the minute they were taken
/// in) is still current: events were written since, or a new minute began — a new day's totals
/// start at nothing, event or not, and on PostgreSQL an event with a smaller id than the newest
/// seen may commit after it was looked at (as `report_metrics` does).
async fn today(state: &AppState, tenant: i64, seen: (i64, i64)) -> crate::store::Result<Today> {
    let last = state.store.last_event_id(tenant).await?;
    let now = now_ms();
    let minute = now / 60_000;
    if (last, minute) == seen {
        return Ok(Today::Unchanged);
    }
    let Some((_, report)) = state.store.today_report(tenant, now).await? else {
        return Ok(Today::TooMany);
    };
    Ok(Today::Fresh(
        (last, minute),
        report.queues.into_iter().map(|r| (r.queue, r)).collect(),
    ))
}

async fn serve(socket: WebSocket, state: AppState, mut live: LiveSession) {
    let who = live.who;
    let (mut sink, mut stream) = socket.split();
    let mut feed = match Feed::new(&state, who).await {
        Ok(feed) => feed,
        Err(err) => {
            tracing::error!(tenant = who.tenant_id, %err, "supervisor feed not started");
            let _ = sink.close().await;
            return;
        }
    };
    tracing::info!(
        tenant = who.tenant_id,
        user = who.user_id,
        "supervisor feed connected"
    );
    let mut closing = state.floors.closing.subscribe();
    let mut watching = state.floors.subscribe(&state, who.tenant_id);
    // A user changed (moved to another team, renamed, added): the team and the names are read
    // again at the next look (every LOOK) — once, however many changes (a shift's logouts)
    // came meanwhile.
    let mut users = state.store.session_changes();
    let mut relabel = false;
    let mut last: Option<Json> = None;
    loop {
        tokio::select! {
            Ok(()) = users.changed() => relabel = true,
            // (The state holds the sender: this never fails.)
            Ok(()) = async { closing.wait_for(|closing| *closing).await.map(|_| ()) } => {
                // vacd is going away (the wallboard tries again).
                let close = Message::Close(Some(CloseFrame {
                    code: GOING_AWAY,
                    reason: "vacd is shutting down".into(),
                }));
                let _ = tokio::time::timeout(SEND_TIMEOUT, sink.send(close)).await;
                break;
            }
            changed = watching.changed() => {
                if changed.is_err() {
                    break;
                }
                if std::mem::take(&mut relabel) {
                    if let Err(err) = feed.relabel(&state, who).await {
                        tracing::warn!(tenant = who.tenant_id, %err, "supervisor feed's names not read again");
                    }
                }
                let watched = watching.borrow_and_update().clone();
                let frame = feed.frame(&watched);
                if last.as_ref() == Some(&frame) {
                    continue;
                }
                let text = Message::Text(frame.to_string().into());
                match tokio::time::timeout(SEND_TIMEOUT, sink.send(text)).await {
                    Ok(Ok(())) => last = Some(frame),
                    _ => break,
                }
            }
            () = live.ended(&state) => {
                tracing::info!(tenant = who.tenant_id, user = who.user_id, "supervisor feed closed: its login ended or changed");
                close_for_session(&mut sink).await;
                break;
            }
            received = stream.next() => match received {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                // The feed is read-only; anything the client sends is ignored.
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = tokio::time::timeout(SEND_TIMEOUT, sink.close()).await;
    tracing::info!(
        tenant = who.tenant_id,
        user = who.user_id,
        "supervisor feed disconnected"
    );
}

/// `PUT /api/v1/agents/{agent}/status`: a supervisor sets an agent's status (routing applies it
/// like the agent's own presence button; an agent holding work cannot be set offline, and an
/// agent without a connected console is refused with 409 `agent_not_connected`).
#[utoipa::path(put, path = "/api/v1/agents/{agent}/status", tag = "supervisor",
    request_body(content = serde_json::Value, description = "the body of the console's `presence.set`: `{\"status\": \"ready\", \"mode\": \"inbound\"}`, `{\"status\": \"not_ready\", \"reason\": \"coaching\"}` or `{\"status\": \"offline\"}`"),
    params(("agent" = u64, Path, description = "an agent of the caller's tenant")),
    security(("bearer" = [])),
    responses((status = 204, description = "set, as if the agent had pressed the button"),
        (status = 400, body = super::error::ErrorBody), (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody),
        (status = 409, description = "`agent_has_work` (offline while holding work) or `agent_not_connected`", body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody)))]
pub async fn set_status(
    State(state): State<AppState>,
    caller: super::auth::Caller,
    ApiPath(agent): ApiPath<String>,
    body: std::result::Result<
        axum::Json<vacd_actors::AgentStatus>,
        axum::extract::rejection::JsonRejection,
    >,
) -> Result<axum::http::StatusCode> {
    let who = caller.user_with(Role::Supervisor)?;
    let axum::Json(status) = body?;
    status
        .check()
        .map_err(|problem| Error::invalid("invalid_reason", problem))?;
    let agent = agent
        .parse::<u64>()
        .map(vacd_actors::AgentId)
        .map_err(|_| Error::NotFound(format!("no agent {agent}")))?;
    match state
        .routing
        .router()
        .supervise(TenantId(who.tenant_id as u64), agent, status.clone())
        .await
    {
        Ok(()) => {
            tracing::info!(tenant = who.tenant_id, supervisor = who.user_id, %agent, ?status, "agent status set by a supervisor");
            Ok(axum::http::StatusCode::NO_CONTENT)
        }
        Err(vacd_actors::RouterError::Rejected(vacd_actors::Error::UnknownAgent(_))) => {
            Err(Error::NotFound(format!("no agent {agent} in this tenant")))
        }
        Err(err) => Err(Error::Conflict {
            code: err.code(),
            message: err.to_string(),
        }),
    }
}

//! What routing needs from the store and gives back to it: a tenant's routing settings, queues,
//! agents and waiting interactions as the routing engine's configuration types
//! ([`TenantSetup`]), and the engine's outputs written to the event log and to the interactions
//! they change.
//!
//! Restore rule: interactions of written channels (everything but calls) that were queued,
//! offered or connected when vacd stopped are queued again, in their original queue order, so
//! nothing accepted is lost; an agent may see again what it was working on. So are written
//! interactions still `new` with a queue (their enqueue never reached routing); a live call
//! still `new` is taken in by its own enqueue, which is on its way. Those in
//! wrap-up are finished (`done`): their agent had ended them. Escalation steps and SLA
//! breaches already in the event log are not logged again. When only a tenant's routing
//! restarted after a failure (vacd ran on), work its agents held — connected or in wrap-up —
//! goes back to them instead (see [`Store::routing_setup`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value as Json;
use sqlx::Row;
use vacd_actors::{
    AgentConfig, AgentId, AgentSkill, Blending, Capacity, Channel, EngineConfig, EscalationAction,
    EscalationStep, Held, InteractionId, MissedOffer, NewInteraction, Output, QueueConfig, QueueId,
    Restored, ServiceLevel, SkillId, SkillLevel, SkillRequirement, Strategy, TenantSetup,
    TransferTarget,
};

use super::events::NewEvent;
use super::group_commit::until_taken;
use super::{now_ms, padded_chunks, query_for, AnyQuery, Backend, ChunkSql, Result, Store};

/// What a tenant's routing starts from ([`Store::routing_setup`]).
#[derive(Debug)]
pub struct RoutingSetup {
    pub setup: TenantSetup,
    /// The live calls that wait again, in their order: whatever they were offered when the
    /// previous routing stopped is void (the phones still ringing for them must stop; with
    /// ring-all more than one may ring, whatever the row's state says), and the restored
    /// routing offers them anew.
    pub waiting_calls: Vec<InteractionId>,
}

/// What the event log says of a restored interaction's wait.
#[derive(Debug, Default, Clone, Copy)]
struct Logged {
    /// When its last escalation step in its current queue, since its current wait began and
    /// its last move to a queue (which starts escalation over), was logged (Unix ms).
    last_escalation: Option<i64>,
    sla_breached: bool,
}

impl Logged {
    /// How many of its queue's (current) `steps` count as applied: those at or before the wait
    /// at which it got its last one — the engine's rule for steps changed while it waits, so a
    /// list changed before the restart is read the same way. Every step due then was applied
    /// then, together.
    fn steps_applied(&self, steps: &[EscalationStep], queued_at: i64) -> usize {
        let Some(at) = self.last_escalation else {
            return 0;
        };
        let waited = Duration::from_millis(u64::try_from(at - queued_at).unwrap_or(0));
        steps.partition_point(|step| step.after <= waited)
    }
}

/// What outputs do to an interaction's `agent_id`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Assignee {
    Set(i64),
    Clear,
    #[default]
    Keep,
}

/// Where one interaction's row stands after a run of outputs, so it is written once.
#[derive(Debug, Default)]
struct RowChange {
    state: Option<&'static str>,
    agent: Assignee,
    /// Queue and queue order of a `Queued` or `Moved` output, and the time of a `Queued` one:
    /// an enqueue or a transfer to a queue starts a new wait, a move keeps the one it has.
    queued: Option<(i64, i64, Option<i64>)>,
    /// The run began with a revoked offer: back to queued only if the row is still offered
    /// (ring-all revokes the losing offers after the winner connected).
    revoke_if_offered: bool,
    /// When a transfer to an agent started a new wait in the same queue and place (the
    /// escalation and the wait clock start over; a restore counts from here).
    rewait: Option<i64>,
}

impl RowChange {
    fn apply(&mut self, output: &Output, at: i64) {
        let (state, agent) = match output {
            Output::Queued {
                queue,
                order,
                waited,
                ..
            } => {
                // A restored wait keeps its start.
                let since =
                    at.saturating_sub(i64::try_from(waited.as_millis()).unwrap_or(i64::MAX));
                self.queued = Some((queue.0 as i64, *order as i64, Some(since)));
                ("queued", Assignee::Clear)
            }
            // A move to a queue is no new wait: `queued_at` keeps the last queueing.
            Output::Moved {
                queue,
                to: TransferTarget::Queue { .. },
                order,
                ..
            } => {
                let since = self.queued.and_then(|(_, _, since)| since);
                self.queued = Some((queue.0 as i64, *order as i64, since));
                ("queued", Assignee::Clear)
            }
            Output::Transferred {
                to: TransferTarget::Agent { .. },
                ..
            } => {
                // The newest wait start wins: a queueing earlier in the run counts from before
                // this transfer, one after it brings its own.
                self.rewait = Some(at);
                if let Some((queue, order, Some(_))) = self.queued {
                    self.queued = Some((queue, order, None));
                }
                return;
            }
            Output::Offered { agent, .. } => ("offered", Assignee::Set(agent.0 as i64)),
            Output::OfferRevoked { .. } => match self.state {
                Some("offered") => ("queued", Assignee::Clear),
                None => {
                    self.revoke_if_offered = true;
                    return;
                }
                Some(_) => return,
            },
            Output::Connected { agent, .. } => ("connected", Assignee::Set(agent.0 as i64)),
            // Its queue place, so that a restore after a failure gives it back to its agent.
            Output::Placed {
                agent,
                queue,
                order,
                ..
            } => {
                self.queued = Some((queue.0 as i64, *order as i64, Some(at)));
                ("connected", Assignee::Set(agent.0 as i64))
            }
            Output::Ended { agent, .. } => ("wrap_up", Assignee::Set(agent.0 as i64)),
            Output::Done { .. } => ("done", Assignee::Keep),
            Output::Abandoned { .. } => ("abandoned", Assignee::Clear),
            Output::Closed { agent, .. } => ("done", Assignee::Set(agent.0 as i64)),
            _ => return,
        };
        self.state = Some(state);
        self.revoke_if_offered = false;
        if agent != Assignee::Keep {
            self.agent = agent;
        }
    }

    /// The values of this change as one row of [`write_rows`]' `VALUES` list: state, how the
    /// agent changes (0 keep, 1 set, 2 clear) and to whom, queue / order / time of a queueing,
    /// and whether the row changes only while it is offered. `None`: nothing to write.
    fn values(&self) -> Option<RowValues> {
        let (state, agent, only_if_offered) = match self.state {
            Some(state) => (state, self.agent, false),
            None if self.revoke_if_offered => ("queued", Assignee::Clear, true),
            None => return None,
        };
        let (agent_mode, agent) = match agent {
            Assignee::Keep => (0, None),
            Assignee::Set(agent) => (1, Some(agent)),
            Assignee::Clear => (2, None),
        };
        let (queue, order, at) = match self.queued {
            Some((queue, order, at)) => (Some(queue), Some(order), at.or(self.rewait)),
            None => (None, None, self.rewait),
        };
        Some(RowValues {
            state,
            agent_mode,
            agent,
            queue,
            order,
            at,
            only_if_offered: i64::from(only_if_offered),
        })
    }
}

/// One interaction's row change, as bound into the batched update.
pub(super) struct RowValues {
    state: &'static str,
    agent_mode: i64,
    agent: Option<i64>,
    queue: Option<i64>,
    order: Option<i64>,
    at: Option<i64>,
    only_if_offered: i64,
}

/// Parameters per row of the batched update.
pub(super) const ROW_PARAMS: usize = 9;

/// Applies the row changes many rows per statement (in chunks of [`padded_chunks`]; a padding
/// row of NULLs matches no interaction).
pub(super) async fn write_rows(
    connection: &mut sqlx::AnyConnection,
    backend: Backend,
    rows: &[((i64, i64), RowValues)],
) -> Result<()> {
    for (chunk, size) in padded_chunks(rows) {
        let sql = ROWS.get(backend, size);
        bind_padded_rows(query_for(&sql, size * ROW_PARAMS), chunk, size)
            .execute(&mut *connection)
            .await?;
    }
    Ok(())
}

pub(super) static ROWS: ChunkSql = ChunkSql::new(rows_sql);

/// Binds a chunk of row changes to the update of `size` rows, padded with rows of NULLs.
pub(super) fn bind_padded_rows<'q>(
    query: AnyQuery<'q>,
    chunk: &[((i64, i64), RowValues)],
    size: usize,
) -> AnyQuery<'q> {
    let mut query = bind_rows(query, chunk);
    for _ in chunk.len()..size {
        query = bind_null_row(query);
    }
    query
}

/// One `UPDATE … FROM (VALUES …)` of `rows` interactions (both databases name the columns of a
/// `VALUES` list `column1`, `column2`, …); [`bind_rows`] binds their values.
///
/// A row the store made new again (a ticket reopened or written to while its agent wrapped it
/// up: `new`, no queue place) takes only a change that queues it: the outputs of its earlier
/// routing (wrap-up ended, done) may still be on their way, and writing them would leave a
/// reopened ticket done, never routed again.
fn rows_sql(backend: Backend, rows: usize) -> String {
    let values = backend.values(rows, ROW_PARAMS);
    format!(
        "UPDATE interactions SET \
         state = v.column3, \
         agent_id = CASE v.column4 WHEN 1 THEN v.column5 WHEN 2 THEN NULL ELSE interactions.agent_id END, \
         queue_id = CASE WHEN v.column6 IS NULL THEN interactions.queue_id ELSE v.column6 END, \
         queue_order = CASE WHEN v.column6 IS NULL THEN interactions.queue_order ELSE v.column7 END, \
         queued_at = COALESCE(v.column8, interactions.queued_at) \
         FROM (VALUES {values}) AS v \
         WHERE interactions.tenant_id = v.column1 AND interactions.id = v.column2 \
         AND (v.column9 = 0 OR interactions.state = 'offered') \
         AND (v.column6 IS NOT NULL OR interactions.state <> 'new' \
              OR interactions.queue_order IS NOT NULL)"
    )
}

/// One padding row of [`rows_sql`]: the nine values of [`bind_rows`], all NULL.
fn bind_null_row(query: AnyQuery<'_>) -> AnyQuery<'_> {
    query
        .bind(None::<i64>)
        .bind(None::<i64>)
        .bind(None::<&str>)
        .bind(None::<i64>)
        .bind(None::<i64>)
        .bind(None::<i64>)
        .bind(None::<i64>)
        .bind(None::<i64>)
        .bind(None::<i64>)
}

fn bind_rows<'q>(mut query: AnyQuery<'q>, rows: &[((i64, i64), RowValues)]) -> AnyQuery<'q> {
    for ((tenant, interaction), row) in rows {
        query = query
            .bind(*tenant)
            .bind(*interaction)
            .bind(row.state)
            .bind(row.agent_mode)
            .bind(row.agent)
            .bind(row.queue)
            .bind(row.order)
            .bind(row.at)
            .bind(row.only_if_offered);
    }
    query
}

/// What batches of routing outputs write: every output becomes an event (added to `events`), and
/// each interaction they concern is set to where it stands after all of them (the row changes
/// returned, for [`write_rows`]).
pub(super) fn output_changes(
    batches: &[OutputBatch],
    events: &mut Vec<(NewEvent, i64)>,
) -> Vec<((i64, i64), RowValues)> {
    let mut rows: BTreeMap<(i64, i64), RowChange> = BTreeMap::new();
    for batch in batches {
        let at = batch
            .at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for output in &batch.outputs {
            let event = NewEvent {
                tenant: batch.tenant,
                kind: format!("routing.{}", output.kind()),
                interaction_id: output.interaction().map(|i| i.0 as i64),
                agent_id: output.agent().map(|a| a.0 as i64),
                queue_id: output.queue().map(|q| q.0 as i64),
                payload: serde_json::to_string(output).unwrap_or_else(|e| {
                    tracing::error!(tenant = batch.tenant, error = %e, "routing output not serializable; logged without payload");
                    "null".into()
                }),
            };
            if let Some(interaction) = event.interaction_id {
                rows.entry((batch.tenant, interaction))
                    .or_default()
                    .apply(output, at);
            }
            events.push((event, at));
        }
    }
    rows.into_iter()
        .filter_map(|(key, change)| Some((key, change.values()?)))
        .collect()
}

/// Outputs of one tenant, in the order the engine produced them, at one moment.
#[derive(Debug)]
pub struct OutputBatch {
    pub tenant: i64,
    pub at: SystemTime,
    pub outputs: Vec<Output>,
}

fn level(raw: i64) -> SkillLevel {
    SkillLevel::new(raw.clamp(1, 10) as u8).expect("clamped to the valid range")
}

fn id(raw: i64) -> u64 {
    u64::try_from(raw).unwrap_or_default()
}

fn skill_id(raw: i64) -> SkillId {
    SkillId(u32::try_from(raw).unwrap_or(u32::MAX))
}

/// Names as stored (`"round_robin"`, `"email"`) to the engine's enums, which use the same names.
fn named<T: serde::de::DeserializeOwned>(name: &str) -> Option<T> {
    serde_json::from_value(Json::String(name.to_owned())).ok()
}

impl Store {
    /// Whether the agent routing gave `interaction` to is in the team of `lead` (a team lead
    /// watches their own team only). Reads after routing's pending writes (waiting for them
    /// at most [`super::JOURNAL_WAIT`]).
    pub async fn worked_in_team_of(
        &self,
        tenant: i64,
        lead: i64,
        interaction: i64,
    ) -> Result<bool> {
        self.caught_up().await?;
        let row = sqlx::query(
            "SELECT 1 AS found FROM interactions i JOIN users a ON a.id = i.agent_id \
             JOIN users l ON l.id = $3 AND l.tenant_id = i.tenant_id \
             WHERE i.tenant_id = $1 AND i.id = $2 AND a.team_id = l.team_id",
        )
        .bind(tenant)
        .bind(interaction)
        .bind(lead)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Ids of every tenant, for restoring routing at start.
    pub async fn tenant_ids(&self) -> Result<Vec<i64>> {
        let rows = sqlx::query("SELECT id FROM tenants ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    /// The skill id of a language code in this tenant, if the tenant has that language.
    pub async fn language_skill(&self, tenant: i64, code: &str) -> Result<Option<SkillId>> {
        let row = sqlx::query(
            "SELECT id FROM skills WHERE tenant_id = $1 AND kind = 'language' AND name = $2",
        )
        .bind(tenant)
        .bind(code.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(row) => Some(skill_id(row.try_get("id")?)),
            None => None,
        })
    }

    /// The language skill an interaction in `code` needs: none without a language, for one the
    /// tenant has no skill for, or when the lookup fails (logged) — routing it without the
    /// language beats not routing it.
    pub async fn language_need(&self, tenant: i64, code: Option<&str>) -> Option<SkillId> {
        let code = code?;
        self.language_skill(tenant, code).await.unwrap_or_else(|e| {
            tracing::warn!(tenant, code, error = %e, "language lookup failed");
            None
        })
    }

    /// The tenant's routing settings (its row in `tenants`) as the engine's settings; a name
    /// this build does not know falls back to the engine's default.
    async fn engine_config(&self, tenant: i64) -> Result<EngineConfig> {
        let row = sqlx::query(
            "SELECT blending, missed_offer, missed_offer_reason FROM tenants WHERE id = $1",
        )
        .bind(tenant)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(EngineConfig::default());
        };
        let blending: String = row.try_get("blending")?;
        let missed_offer: String = row.try_get("missed_offer")?;
        let missed_offer = match missed_offer.as_str() {
            "stay_ready" => MissedOffer::StayReady,
            _ => MissedOffer::NotReady {
                reason: row.try_get("missed_offer_reason")?,
            },
        };
        Ok(EngineConfig {
            blending: named::<Blending>(&blending).unwrap_or_default(),
            missed_offer,
            ..EngineConfig::default()
        })
    }

    /// Everything `tenant`'s routing starts from: its configuration ([`Store::routing_config`])
    /// and the live work, in its order. Calls count only while their caller is still on the
    /// line, so only those of `live_calls` (interaction ids) are included; a restart of vacd has
    /// none, a tenant's routing restarted after a failure has the calls the SIP endpoint still
    /// holds. Work that was waiting (new, queued, offered) waits again, but for a live call
    /// still new: its own input takes it in. Work an agent held
    /// (connected, wrap-up) is given back to that agent `after_failure` (its call or chat went
    /// on; a call the endpoint no longer holds has ended, and is given back in wrap-up), unless
    /// the agent is gone: then connected written work waits again, a call is left out; at a
    /// start of vacd, connected written work waits again and calls are gone. Written work in
    /// wrap-up that goes back to no agent is finished (its agent had ended it).
    /// [`RoutingSetup::waiting_calls`] names the live calls among the waiting work.
    pub async fn routing_setup(
        &self,
        tenant: i64,
        live_calls: &BTreeSet<i64>,
        after_failure: bool,
    ) -> Result<RoutingSetup> {
        let mut setup = self.routing_config(tenant).await?;
        let waiting_calls = self
            .live_work(tenant, live_calls, after_failure, &mut setup)
            .await?;
        Ok(RoutingSetup {
            setup,
            waiting_calls,
        })
    }

    /// `tenant`'s routing settings, queues and agents, without waiting work: what an admin
    /// change reloads.
    pub async fn routing_config(&self, tenant: i64) -> Result<TenantSetup> {
        let mut queues: BTreeMap<i64, QueueConfig> = BTreeMap::new();
        let rows = sqlx::query(
            "SELECT id, priority, strategy, sla_percent, sla_seconds, offer_timeout_seconds, wrapup_seconds \
             FROM queues WHERE tenant_id = $1 ORDER BY id",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let queue_id: i64 = row.try_get("id")?;
            let mut queue = QueueConfig::new(QueueId(id(queue_id)));
            queue.priority = row.try_get::<i64, _>("priority")? as i32;
            let strategy: String = row.try_get("strategy")?;
            queue.strategy = named::<Strategy>(&strategy).unwrap_or_default();
            queue.sla = Some(ServiceLevel {
                target: Duration::from_secs(id(row.try_get("sla_seconds")?)),
                percent: row.try_get::<i64, _>("sla_percent")?.clamp(0, 100) as u8,
            });
            queue.offer_timeout = Duration::from_secs(id(row.try_get("offer_timeout_seconds")?));
            queue.wrap_up = Duration::from_secs(id(row.try_get("wrapup_seconds")?));
            queues.insert(queue_id, queue);
        }
        let rows = sqlx::query("SELECT queue_id, skill_id, min_level FROM queue_skills WHERE tenant_id = $1 ORDER BY id")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        for row in rows {
            if let Some(queue) = queues.get_mut(&row.try_get::<i64, _>("queue_id")?) {
                queue.required_skills.push(SkillRequirement {
                    skill: skill_id(row.try_get("skill_id")?),
                    level: level(row.try_get("min_level")?),
                });
            }
        }
        let rows = sqlx::query(
            "SELECT queue_id, after_seconds, action, amount, overflow_queue_id FROM queue_escalations \
             WHERE tenant_id = $1 ORDER BY queue_id, after_seconds, id",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let queue_id: i64 = row.try_get("queue_id")?;
            let action: String = row.try_get("action")?;
            let amount: Option<i64> = row.try_get("amount")?;
            let overflow: Option<i64> = row.try_get("overflow_queue_id")?;
            let action = match (action.as_str(), overflow) {
                ("lower_skill_levels", _) => EscalationAction::LowerSkillLevels {
                    by: amount.unwrap_or(1).clamp(1, 9) as u8,
                },
                ("drop_skills", _) => EscalationAction::DropSkills,
                ("raise_priority", _) => EscalationAction::RaisePriority {
                    by: amount.unwrap_or(10).clamp(1, 100) as i32,
                },
                // Routing refuses a queue overflowing into itself, and with it the queue's
                // whole configuration: the step is dropped instead (the API refuses it too).
                ("add_overflow_queue", Some(overflow)) if overflow == queue_id => {
                    tracing::warn!(
                        tenant,
                        queue = queue_id,
                        "escalation step overflowing into its own queue ignored"
                    );
                    continue;
                }
                ("add_overflow_queue", Some(overflow)) => EscalationAction::AddOverflowQueues {
                    queues: vec![QueueId(id(overflow))],
                },
                (other, _) => {
                    tracing::warn!(
                        tenant,
                        queue = queue_id,
                        action = other,
                        "escalation step without its overflow queue ignored"
                    );
                    continue;
                }
            };
            if let Some(queue) = queues.get_mut(&queue_id) {
                let after = Duration::from_secs(id(row.try_get("after_seconds")?));
                queue.escalation.push(EscalationStep { after, action });
            }
        }

        let config = self.engine_config(tenant).await?;
        let mut agents: BTreeMap<i64, AgentConfig> = BTreeMap::new();
        let rows = sqlx::query("SELECT id, capacity_calls, capacity_chats, capacity_tickets, blending FROM users WHERE tenant_id = $1 ORDER BY id")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        for row in rows {
            let user: i64 = row.try_get("id")?;
            let mut agent = AgentConfig::new(AgentId(id(user)));
            let cap =
                |name: &str| -> Result<u8> { Ok(row.try_get::<i64, _>(name)?.clamp(0, 255) as u8) };
            agent.capacity = Some(Capacity {
                calls: cap("capacity_calls")?,
                chats: cap("capacity_chats")?,
                tickets: cap("capacity_tickets")?,
            });
            let blending: Option<String> = row.try_get("blending")?;
            agent.blending = blending.as_deref().and_then(named::<Blending>);
            agents.insert(user, agent);
        }
        let rows = sqlx::query("SELECT user_id, skill_id, level FROM agent_skills WHERE tenant_id = $1 ORDER BY skill_id")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        for row in rows {
            if let Some(agent) = agents.get_mut(&row.try_get::<i64, _>("user_id")?) {
                agent.skills.push(AgentSkill {
                    skill: skill_id(row.try_get("skill_id")?),
                    level: level(row.try_get("level")?),
                });
            }
        }
        let rows = sqlx::query(
            "SELECT queue_id, user_id FROM queue_members WHERE tenant_id = $1 ORDER BY queue_id",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            if let Some(agent) = agents.get_mut(&row.try_get::<i64, _>("user_id")?) {
                agent.queues.push(QueueId(id(row.try_get("queue_id")?)));
            }
        }
        Ok(TenantSetup {
            config,
            queues: queues.into_values().collect(),
            agents: agents.into_values().collect(),
            waiting: Vec::new(),
            held: Vec::new(),
        })
    }

    /// Adds `tenant`'s live work to `setup`'s waiting and held work (see
    /// [`Store::routing_setup`]); returns the live calls among the waiting work. Live work is
    /// what routing took in (it numbered its place, `queue_order`), and written work created new
    /// with a queue but not routed yet (a call not routed yet is taken in by its own input); a
    /// record imported in a routing state is history, as it was when created.
    async fn live_work(
        &self,
        tenant: i64,
        live_calls: &BTreeSet<i64>,
        after_failure: bool,
        setup: &mut TenantSetup,
    ) -> Result<Vec<InteractionId>> {
        let languages: BTreeMap<String, SkillId> =
            sqlx::query("SELECT id, name FROM skills WHERE tenant_id = $1 AND kind = 'language'")
                .bind(tenant)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| Ok((r.try_get::<String, _>("name")?, skill_id(r.try_get("id")?))))
                .collect::<Result<_>>()?;
        let rows = sqlx::query(
            "SELECT id, channel, queue_id, language, priority, queue_order, queued_at, state, agent_id \
             FROM interactions \
             WHERE tenant_id = $1 AND queue_id IS NOT NULL \
             AND (state = 'new' OR queue_order IS NOT NULL) \
             AND state IN ('new', 'queued', 'offered', 'connected', 'wrap_up') \
             ORDER BY queue_order IS NULL, queue_order, created_at, id",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        // What was already logged for them, so a restart neither repeats escalation events nor
        // reports an SLA breach twice (see [`Logged`]).
        let mut logged: BTreeMap<i64, Logged> = BTreeMap::new();
        // Two reads, each by the partial index of its kinds, put in the log's order.
        let live = "JOIN interactions i ON i.id = e.interaction_id AND i.tenant_id = e.tenant_id \
             WHERE e.tenant_id = $1 AND i.state IN ('queued', 'offered', 'connected', 'wrap_up')";
        let mut events = sqlx::query(&format!(
            "SELECT e.id, e.interaction_id, e.kind, e.at, e.payload FROM events e {live} \
             AND e.kind IN ('routing.escalated', 'routing.sla_breached') \
             AND (e.kind = 'routing.sla_breached' \
                  OR (e.queue_id = i.queue_id AND e.at >= i.queued_at))"
        ))
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        events.extend(
            sqlx::query(&format!(
                "SELECT e.id, e.interaction_id, e.kind, e.at, e.payload FROM events e {live} \
                 AND e.kind = 'routing.moved'"
            ))
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?,
        );
        let mut ordered = Vec::with_capacity(events.len());
        for event in events {
            ordered.push((event.try_get::<i64, _>("id")?, event));
        }
        ordered.sort_by_key(|(id, _)| *id);
        for (_, event) in ordered {
            let entry = logged.entry(event.try_get("interaction_id")?).or_default();
            match event.try_get::<String, _>("kind")?.as_str() {
                "routing.sla_breached" => entry.sla_breached = true,
                "routing.escalated" => entry.last_escalation = Some(event.try_get("at")?),
                // A move to a queue starts escalation over; one straight to an agent does not.
                _ => {
                    let payload: String = event.try_get("payload")?;
                    let to_queue = matches!(
                        serde_json::from_str(&payload),
                        Ok(Output::Moved {
                            to: TransferTarget::Queue { .. },
                            ..
                        })
                    );
                    if to_queue {
                        entry.last_escalation = None;
                    }
                }
            }
        }
        let steps: BTreeMap<QueueId, &[EscalationStep]> = setup
            .queues
            .iter()
            .map(|q| (q.id, q.escalation.as_slice()))
            .collect();
        let now = now_ms();
        let agents: BTreeSet<AgentId> = setup.agents.iter().map(|a| a.id).collect();
        let mut waiting_calls = Vec::new();
        let mut finished = Vec::new();
        for row in rows {
            let interaction: i64 = row.try_get("id")?;
            let seen = logged.get(&interaction).copied().unwrap_or_default();
            let queue = QueueId(id(row.try_get("queue_id")?));
            let queued_at: Option<i64> = row.try_get("queued_at")?;
            let escalations_applied = seen.steps_applied(
                steps.get(&queue).copied().unwrap_or_default(),
                queued_at.unwrap_or(now),
            );
            let sla_breached = seen.sla_breached;
            let channel: String = row.try_get("channel")?;
            let Some(channel) = named::<Channel>(&channel) else {
                continue;
            };
            let state: String = row.try_get("state")?;
            let agent = row
                .try_get::<Option<i64>, _>("agent_id")?
                .map(|agent| AgentId(id(agent)));
            // Held work goes back to its agent if that agent is still there; written work of
            // one that is gone waits again for another.
            let held = match (state.as_str(), agent) {
                ("connected" | "wrap_up", Some(agent))
                    if after_failure && agents.contains(&agent) =>
                {
                    Some(agent)
                }
                _ => None,
            };
            if held.is_none() && state == "wrap_up" && channel != Channel::Call {
                // Its agent had ended it and only the wrap-up time was left: finished, not
                // offered again (a closed ticket, an ended chat) — its wrap-up ends now, which
                // the reports count as the handling's end.
                let interaction = InteractionId(id(interaction));
                if let Some(agent) = agent {
                    finished.push(Output::WrapUpEnded { interaction, agent });
                }
                finished.push(Output::Done { interaction });
                continue;
            }
            let mut wrap_up = state == "wrap_up";
            if channel == Channel::Call {
                let live = live_calls.contains(&interaction);
                if held.is_some() {
                    // A held call the endpoint no longer holds has ended (in wrap-up already, or
                    // hung up while routing was down): its agent wraps it up.
                    wrap_up |= !live;
                } else if state == "new" {
                    // Not taken in yet: a live call's own `Enqueue` (or, dialled, `Place`) is
                    // on its way and takes it in. Restored from its row as well, the call's
                    // input would be refused as a duplicate, and a dialled call would wait for
                    // any agent to take it.
                    continue;
                } else if !live || !matches!(state.as_str(), "queued" | "offered") {
                    if live && after_failure {
                        // Still bridged to the phone of an agent deleted since: it cannot
                        // wait for another.
                        tracing::warn!(
                            tenant,
                            interaction,
                            "call of an agent that is gone not given back"
                        );
                    }
                    continue;
                }
                if held.is_none() {
                    waiting_calls.push(InteractionId(id(interaction)));
                }
            }
            let language: Option<String> = row.try_get("language")?;
            let order: Option<i64> = row.try_get("queue_order")?;
            let work = NewInteraction {
                id: InteractionId(id(interaction)),
                channel,
                queue,
                language: language.and_then(|l| languages.get(&l).copied()),
                skills: Vec::new(),
                priority: row.try_get::<i64, _>("priority")? as i32,
                restored: order.map(|order| Restored {
                    order: id(order),
                    waited: Duration::from_millis(id(now - queued_at.unwrap_or(now))),
                    escalations_applied,
                    sla_breached,
                }),
            };
            match held {
                Some(agent) => setup.held.push(Held {
                    interaction: work,
                    agent,
                    wrap_up,
                }),
                None => setup.waiting.push(work),
            }
        }
        if !finished.is_empty() {
            tracing::info!(
                tenant,
                finished = finished.len(),
                "work left in wrap-up finished"
            );
            self.record_outputs(&[OutputBatch {
                tenant,
                at: SystemTime::now(),
                outputs: finished,
            }])
            .await?;
        }
        Ok(waiting_calls)
    }

    /// Writes batches of routing outputs in one transaction of their own (see
    /// [`output_changes`]). Routing's outputs normally go to the group committer
    /// ([`Store::journal`]); this is its fallback when a round failed. If the batches fail
    /// together, their events are written alone (they refer to nothing but the tenant), then
    /// each interaction's row change alone: one change that cannot be made (to a queue deleted
    /// meanwhile, say) costs only itself, and one the database cannot take for the moment
    /// ([`super::Error::is_transient`]) is made again until it is taken or the store closes —
    /// left undone, the row would say `new` while its events say `queued`, and a restart would
    /// not find the work. `Err` only when the events could not be written.
    pub async fn record_outputs(&self, batches: &[OutputBatch]) -> Result<()> {
        let mut writer = self.writer.acquire().await?;
        let whole = super::group_commit::write_round(self, &mut writer, &[], batches).await;
        let Err(e) = whole else { return Ok(()) };
        if matches!(e, super::Error::CommitUnknown) {
            // The connection broke: a new one writes the rest.
            writer.close_on_drop();
            drop(writer);
            writer = self.writer.acquire().await?;
        }
        tracing::warn!(error = %e, "routing outputs not written together; writing their events, then each row change, alone");
        let mut events = Vec::new();
        let rows = output_changes(batches, &mut events);
        let mut tx = super::begin_in(&mut writer, self.backend).await?;
        super::events::append_many(&mut tx, self.backend, &events).await?;
        tx.commit().await?;
        drop(writer);
        // The events are written: from here on nothing is an error for the caller, which would
        // write them again. Each change takes a writer of its own, so that one whose
        // connection broke is tried again on another.
        for row in &rows {
            let ((tenant, interaction), _) = row;
            let write = || async {
                let mut writer = self.writer.acquire().await?;
                let made = write_rows(&mut writer, self.backend, std::slice::from_ref(row)).await;
                if made.as_ref().is_err_and(super::Error::is_transient) {
                    writer.close_on_drop();
                }
                made
            };
            let retrying = |e: &super::Error, pause: std::time::Duration| tracing::warn!(tenant, interaction, error = %e, retry_in = ?pause, "interaction row not brought in line yet; trying again");
            if let Err(e) = until_taken(self, write, retrying).await {
                tracing::error!(tenant, interaction, error = %e, "interaction row not brought in line with its routing events");
            }
        }
        Ok(())
    }
}

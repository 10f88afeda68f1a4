//! What the call actors write: a call's interaction with the customer behind the caller's
//! number (found by its phone identity, or created on the first call), its call detail record
//! (`call_records`), and the record's completion when the call ends. Each write goes into the
//! log with its event (`call.started`, `call.ended`), in a transaction shared with the other
//! calls' writes waiting at the moment (`call_commit`).

use serde_json::json;
use sqlx::Row;

use super::call_commit::{self, Done, Job};
use super::committer;
use super::events::{self, append_in, NewEvent};
use super::{now_ms, Result, Store};
use crate::catalog::DEFAULT_PRIORITY;
use crate::classify::Facts;

/// A call vacd has answered and is about to queue, or a click-to-dial call it places.
#[derive(Debug, Clone)]
pub struct NewCall {
    pub tenant: i64,
    pub mailbox: Option<i64>,
    /// The dialled service number's address row (inbound calls).
    pub service_address: Option<i64>,
    /// The queue: an inbound call's from its number (`None`: the number has none), a
    /// click-to-dial call's the one its agent places it in.
    pub queue: Option<i64>,
    /// The caller's SIP Call-ID.
    pub call_id: String,
    /// The trunk it came through.
    pub trunk: String,
    /// The caller's number (E.164 when it could be read), `None` when anonymous.
    pub caller: Option<String>,
    /// The dialled number: a service number, or the customer's for click-to-dial.
    pub dialled: String,
    /// The agent who placed a click-to-dial call.
    pub dialled_by: Option<i64>,
    /// The language of the dialled number's mailbox: the call's, unless the caller is a
    /// customer whose own language is known.
    pub language: Option<String>,
}

/// The sound files (in the sounds directory) a queue plays to its waiting callers instead of
/// the default ones, and the announcement it plays between its music.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueSounds {
    pub greeting: Option<String>,
    pub music: Option<String>,
    pub announcement: Option<String>,
    /// Seconds of music between two announcements.
    pub announce_every_seconds: Option<i64>,
}

/// The rows a started call got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedCall {
    pub interaction: i64,
    pub customer: Option<i64>,
    /// The language the call is served in (ISO 639-1), if any.
    pub language: Option<String>,
    /// The queue it waits in: the service number's, or a routing rule's.
    pub queue: Option<i64>,
    pub priority: i32,
    /// What that queue plays.
    pub sounds: QueueSounds,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallResult {
    /// An agent talked to the caller.
    Connected,
    /// The caller left before an agent answered.
    Abandoned,
    /// vacd could not route it.
    Failed,
}

impl CallResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CallResult::Connected => "connected",
            CallResult::Abandoned => "abandoned",
            CallResult::Failed => "failed",
        }
    }
}

/// Who hung up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangupBy {
    Caller,
    Agent,
    /// The external party of a transferred call.
    Remote,
    System,
}

impl HangupBy {
    pub fn as_str(self) -> &'static str {
        match self {
            HangupBy::Caller => "caller",
            HangupBy::Agent => "agent",
            HangupBy::Remote => "remote",
            HangupBy::System => "system",
        }
    }
}

/// The end of a call, for its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallEnd {
    pub tenant: i64,
    pub interaction: i64,
    /// The agent who talked to the caller last.
    pub agent: Option<i64>,
    /// When that agent answered (Unix ms).
    pub connected_at: Option<i64>,
    pub result: CallResult,
    pub hangup_by: HangupBy,
    /// Routing took the call (queued or placed); when it did not, nobody else ends its
    /// interaction, which is written `failed` here.
    pub routed: bool,
}

impl Store {
    /// Finds or creates the caller's customer, then creates the call's interaction (state
    /// `new`, for routing to take over) and its call record. Committed together with the
    /// other calls' records waiting at the moment (see `call_commit`).
    pub async fn start_call(&self, call: &NewCall) -> Result<StartedCall> {
        match committer::submit(&self.calls, Job::Start(call.clone())).await? {
            Done::Started(started) => Ok(started),
            Done::Ended => Err(call_commit::mismatch()),
        }
    }

    /// Completes the call's record and logs `call.ended` with its durations (committed like
    /// [`Store::start_call`]).
    pub async fn end_call(&self, end: &CallEnd) -> Result<()> {
        match committer::submit(&self.calls, Job::End(*end)).await? {
            Done::Ended => Ok(()),
            Done::Started(_) => Err(call_commit::mismatch()),
        }
    }

    /// The queue a click-to-dial call of `agent` is placed in: `wanted` if the agent serves it,
    /// else (none wanted) the first queue it serves, by id. `None`: no such queue.
    pub async fn dial_queue(
        &self,
        tenant: i64,
        agent: i64,
        wanted: Option<i64>,
    ) -> Result<Option<i64>> {
        let queue = sqlx::query(
            "SELECT MIN(queue_id) AS queue_id FROM queue_members \
             WHERE tenant_id = $1 AND user_id = $2 AND ($3 IS NULL OR queue_id = $3)",
        )
        .bind(tenant)
        .bind(agent)
        .bind(wanted)
        .fetch_one(&self.pool)
        .await?
        .try_get("queue_id")?;
        Ok(queue)
    }

    /// Calls that were live when vacd stopped cannot be resumed (their media and dialogs are
    /// gone): their interactions become `failed` (or `done` if only wrap-up was left) and their
    /// records are closed by the system. The event log is told too, dated at the tenant's last
    /// event (the last moment vacd is known to have run): a waiting call was abandoned, a
    /// connected one ended, a wrap-up ended — else the reports would count the call offered
    /// but never finished, and its agent busy for ever.
    /// Returns how many there were.
    pub async fn fail_stale_calls(&self) -> Result<u64> {
        let mut tx = self.begin().await?;
        let now = now_ms();
        let stale = sqlx::query(
            "SELECT i.id, i.tenant_id, i.state, i.agent_id, i.queue_id, \
             (SELECT MAX(e.at) FROM events e WHERE e.tenant_id = i.tenant_id) AS last_at \
             FROM interactions i WHERE i.channel = 'call' \
             AND i.state IN ('new', 'queued', 'offered', 'connected', 'wrap_up')",
        )
        .fetch_all(&mut *tx)
        .await?;
        for row in stale {
            let (id, tenant): (i64, i64) = (row.try_get("id")?, row.try_get("tenant_id")?);
            let state: String = row.try_get("state")?;
            let agent: Option<i64> = row.try_get("agent_id")?;
            let queue: Option<i64> = row.try_get("queue_id")?;
            let at = row.try_get::<Option<i64>, _>("last_at")?.unwrap_or(now);
            let kinds: &[&str] = match (state.as_str(), agent) {
                ("connected", Some(_)) => &["routing.ended", "routing.wrap_up_ended"],
                ("wrap_up", Some(_)) => &["routing.wrap_up_ended"],
                ("new" | "queued" | "offered", _) => &["routing.abandoned"],
                _ => &[],
            };
            for kind in kinds {
                let event = NewEvent {
                    tenant,
                    kind: (*kind).into(),
                    interaction_id: Some(id),
                    agent_id: agent.filter(|_| *kind != "routing.abandoned"),
                    queue_id: queue,
                    payload: json!({ "interaction": id, "reason": "vacd stopped" }).to_string(),
                };
                events::append_at(&mut tx, &event, at).await?;
            }
        }
        sqlx::query(
            "UPDATE call_records SET ended_at = $1, result = 'failed', hangup_by = 'system' \
             WHERE ended_at IS NULL",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let failed = sqlx::query(
            "UPDATE interactions SET state = 'failed' WHERE channel = 'call' \
             AND state IN ('new', 'queued', 'offered', 'connected')",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // A call in wrap-up was over already; only its agent's wrap-up was cut short.
        sqlx::query(
            "UPDATE interactions SET state = 'done' WHERE channel = 'call' AND state = 'wrap_up'",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(failed)
    }
}

/// Writes a call's start inside `tx` (which the caller commits).
pub(super) async fn start_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    backend: super::Backend,
    call: &NewCall,
) -> Result<StartedCall> {
    let now = now_ms();
    let customer = match &call.caller {
        None => None,
        Some(number) => Some(
            super::customers::find_or_create(
                tx,
                backend,
                call.tenant,
                super::customers::Identity {
                    kind: "phone",
                    value: number,
                    name: number,
                    language: None,
                },
                now,
            )
            .await?,
        ),
    };
    // A known customer's own language before the number's.
    let known = match customer {
        Some(customer) => sqlx::query("SELECT language FROM customers WHERE id = $1")
            .bind(customer)
            .fetch_one(&mut **tx)
            .await?
            .try_get::<Option<String>, _>("language")?,
        None => None,
    };
    // A customer whose language is not the number's is served by the queue of the number's
    // mailbox for that language, if there is one (an English caller of the German hotline
    // waits in Sales EN); else in the number's language and queue — never with a language
    // the number's queue may have no agent for.
    let mut language = call.language.clone();
    let mut queue = call.queue;
    if let (Some(code), Some(mailbox), Some(_)) = (known, call.mailbox, call.queue) {
        if Some(&code) != call.language.as_ref() {
            let row = sqlx::query(super::LANGUAGE_QUEUE)
                .bind(call.tenant)
                .bind(mailbox)
                .bind(code.clone())
                .fetch_optional(&mut **tx)
                .await?;
            if let Some(row) = row {
                queue = Some(row.try_get("id")?);
                language = Some(code);
            }
        }
    }
    // The queue the caller waits in, whose rules classify the call and whose sounds it hears: a
    // click-to-dial call, its agent's in the queue it chose, has none of either.
    let waits_in = queue.filter(|_| call.dialled_by.is_none());
    let classified = match waits_in {
        Some(_) => {
            let facts = Facts {
                channel: "call",
                service_address: call.service_address,
                text: "",
                language: language.as_deref(),
                customer,
                at: now,
            };
            super::rules::classify_in(tx, call.tenant, &facts).await?
        }
        None => None,
    };
    let waits_in = classified.map(|d| d.queue).or(waits_in);
    let queue = waits_in.or(queue);
    let priority = classified
        .and_then(|d| d.priority)
        .unwrap_or(DEFAULT_PRIORITY);
    let (subject, direction) = match call.dialled_by {
        Some(_) => (format!("Call to {}", call.dialled), "outbound"),
        None => (
            format!(
                "Call from {}",
                call.caller.as_deref().unwrap_or("anonymous")
            ),
            "inbound",
        ),
    };
    let interaction: i64 = sqlx::query(
        "INSERT INTO interactions \
         (tenant_id, channel, mailbox_id, queue_id, customer_id, language, priority, state, \
          subject, agent_id, created_at) \
         VALUES ($1, 'call', $2, $3, $4, $5, $6, 'new', $7, $8, $9) RETURNING id",
    )
    .bind(call.tenant)
    .bind(call.mailbox)
    .bind(queue)
    .bind(customer)
    .bind(language.clone())
    .bind(i64::from(priority))
    .bind(subject)
    .bind(call.dialled_by)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?
    .try_get("id")?;
    if let Some(decision) = &classified {
        super::rules::log_in(tx, call.tenant, interaction, decision).await?;
    }
    let sounds = match waits_in {
        Some(queue) => {
            let row = sqlx::query(
                "SELECT greeting, music, announcement, announce_every_seconds FROM queues \
                 WHERE id = $1",
            )
            .bind(queue)
            .fetch_optional(&mut **tx)
            .await?;
            match row {
                Some(row) => QueueSounds {
                    greeting: row.try_get("greeting")?,
                    music: row.try_get("music")?,
                    announcement: row.try_get("announcement")?,
                    announce_every_seconds: row.try_get("announce_every_seconds")?,
                },
                None => QueueSounds::default(),
            }
        }
        None => QueueSounds::default(),
    };
    sqlx::query(
        "INSERT INTO call_records \
         (tenant_id, interaction_id, call_id, trunk, caller, dialled, started_at, direction, agent_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(call.tenant)
    .bind(interaction)
    .bind(call.call_id.clone())
    .bind(call.trunk.clone())
    .bind(call.caller.clone().unwrap_or_else(|| "anonymous".into()))
    .bind(call.dialled.clone())
    .bind(now)
    .bind(direction)
    .bind(call.dialled_by)
    .execute(&mut **tx)
    .await?;
    let event = NewEvent {
        tenant: call.tenant,
        kind: "call.started".into(),
        interaction_id: Some(interaction),
        agent_id: None,
        queue_id: queue,
        payload: json!({
            "direction": direction,
            "call_id": call.call_id,
            "trunk": call.trunk,
            "caller": call.caller,
            "dialled": call.dialled,
        })
        .to_string(),
    };
    append_in(tx, &event).await?;
    Ok(StartedCall {
        interaction,
        customer,
        language,
        queue,
        priority,
        sounds,
    })
}

/// Writes a call's end inside `tx` (which the caller commits).
pub(super) async fn end_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    end: &CallEnd,
) -> Result<()> {
    let now = now_ms();
    let started: i64 = sqlx::query(
        "UPDATE call_records SET ended_at = $1, result = $2, hangup_by = $3, agent_id = $4, \
         connected_at = $5 WHERE tenant_id = $6 AND interaction_id = $7 RETURNING started_at",
    )
    .bind(now)
    .bind(end.result.as_str())
    .bind(end.hangup_by.as_str())
    .bind(end.agent)
    .bind(end.connected_at)
    .bind(end.tenant)
    .bind(end.interaction)
    .fetch_one(&mut **tx)
    .await?
    .try_get("started_at")?;
    if !end.routed {
        sqlx::query(
            "UPDATE interactions SET state = 'failed' WHERE tenant_id = $1 AND id = $2 \
             AND state = 'new'",
        )
        .bind(end.tenant)
        .bind(end.interaction)
        .execute(&mut **tx)
        .await?;
    }
    let event = NewEvent {
        tenant: end.tenant,
        kind: "call.ended".into(),
        interaction_id: Some(end.interaction),
        agent_id: end.agent,
        queue_id: None,
        payload: json!({
            "result": end.result.as_str(),
            "hangup_by": end.hangup_by.as_str(),
            "duration_ms": now - started,
            "talk_ms": end.connected_at.map(|at| now - at),
        })
        .to_string(),
    };
    append_in(tx, &event).await?;
    Ok(())
}

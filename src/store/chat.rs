//! What website chat reads and writes: a widget's settings and routing (which tenant, mailbox
//! and queue a widget id stands for), chat sessions by resume token, the interaction a chat
//! becomes with the visitor's first message, and its messages — each stored exactly once per
//! client message id.

use serde::Serialize;
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::Row;
use vacd_actors::chat::{ChatMessage, Party};
use vacd_actors::AgentId;

use super::committer;
use super::customers::{find_or_create, Identity};
use super::events::append_in;
use super::message_commit::Message;
use super::{now_ms, NewEvent, Result, Store};
use crate::catalog::DEFAULT_PRIORITY;
use crate::classify::Facts;

/// A widget: where its chats go and how it looks.
#[derive(Clone, Debug, Serialize)]
pub struct ChatWidget {
    pub tenant_id: i64,
    #[serde(skip)]
    pub service_address_id: i64,
    pub mailbox_id: i64,
    #[serde(skip)]
    pub queue_id: Option<i64>,
    /// The mailbox's language, used when the visitor's is not one the tenant knows.
    pub mailbox_language: Option<String>,
    pub title: String,
    pub color: String,
    pub logo_url: Option<String>,
    pub welcome: String,
    pub offline_text: String,
    /// The pre-chat form's fields, of `name`, `email`, `topic`.
    pub prechat: Vec<String>,
    pub topics: Vec<String>,
}

/// Where a chat (or the widget's offline ticket) goes: the language it is served in, that
/// language's skill, its queue and priority (a routing rule's, once the first message is in).
#[derive(Clone, Debug)]
pub struct ChatRoute {
    pub language: String,
    pub skill: Option<vacd_actors::SkillId>,
    pub queue: Option<i64>,
    pub priority: i32,
}

/// A chat to open.
#[derive(Clone, Debug)]
pub struct NewChat {
    pub tenant: i64,
    pub service_address: i64,
    pub token_hash: String,
    pub visitor_name: String,
    pub visitor_email: Option<String>,
    /// The key the visitor's browser keeps for the widget, if it sent one.
    pub visitor_key: Option<String>,
    pub topic: Option<String>,
    pub language: Option<String>,
}

/// A chat session as stored.
#[derive(Clone, Debug)]
pub struct ChatRow {
    pub id: i64,
    pub tenant: i64,
    pub service_address: i64,
    pub interaction: Option<i64>,
    pub customer: Option<i64>,
    pub visitor_name: String,
    pub visitor_email: Option<String>,
    pub visitor_key: Option<String>,
    pub topic: Option<String>,
    pub language: Option<String>,
    pub open: bool,
}

const CHAT_COLUMNS: &str = "id, tenant_id, service_address_id, interaction_id, customer_id, \
     visitor_name, visitor_email, visitor_key, topic, language, state";

/// 1 while routing may still have a chat's interaction (waiting, offered or connected, or no
/// interaction yet), else 0: it finished or failed while the chat's end was not stored (vacd
/// stopped, or the database could not take it).
const CHAT_LIVE: &str = "CAST(CASE WHEN interaction_id IS NULL OR EXISTS ( \
     SELECT 1 FROM interactions i WHERE i.id = chat_sessions.interaction_id \
     AND i.state IN ('new', 'queued', 'offered', 'connected')) THEN 1 ELSE 0 END AS BIGINT)";

fn chat_row(row: &AnyRow) -> Result<ChatRow> {
    Ok(ChatRow {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant_id")?,
        service_address: row.try_get("service_address_id")?,
        interaction: row.try_get("interaction_id")?,
        customer: row.try_get("customer_id")?,
        visitor_name: row.try_get("visitor_name")?,
        visitor_email: row.try_get("visitor_email")?,
        visitor_key: row.try_get("visitor_key")?,
        topic: row.try_get("topic")?,
        language: row.try_get("language")?,
        open: row.try_get::<String, _>("state")? == "open",
    })
}

fn list(value: Option<String>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

const WIDGET_SELECT: &str = "SELECT t.id AS tenant_id, t.display_name, s.id AS address_id, \
     s.mailbox_id, s.queue_id, m.language, w.title, w.color, w.logo_url, w.welcome, \
     w.offline_text, w.prechat, w.topics \
     FROM tenants t \
     JOIN service_addresses s ON s.tenant_id = t.id \
     JOIN mailboxes m ON m.id = s.mailbox_id \
     LEFT JOIN chat_widgets w ON w.service_address_id = s.id";

/// A widget from a [`WIDGET_SELECT`] row; settings a tenant did not make have defaults.
fn widget_row(row: &AnyRow) -> Result<ChatWidget> {
    let display_name: String = row.try_get("display_name")?;
    let title: Option<String> = row.try_get("title")?;
    Ok(ChatWidget {
        tenant_id: row.try_get("tenant_id")?,
        service_address_id: row.try_get("address_id")?,
        mailbox_id: row.try_get("mailbox_id")?,
        queue_id: row.try_get("queue_id")?,
        mailbox_language: row.try_get("language")?,
        title: title.unwrap_or(display_name),
        color: row
            .try_get::<Option<String>, _>("color")?
            .unwrap_or_else(|| "#1f5fbf".into()),
        logo_url: row.try_get("logo_url")?,
        welcome: row
            .try_get::<Option<String>, _>("welcome")?
            .unwrap_or_else(|| "Hello! How can we help?".into()),
        offline_text: row
            .try_get::<Option<String>, _>("offline_text")?
            .unwrap_or_else(|| {
                "Nobody is available to chat right now. Leave us a message and we will answer by email."
                    .into()
            }),
        prechat: match row.try_get::<Option<String>, _>("prechat")? {
            Some(fields) => list(Some(fields)),
            None => vec!["name".into(), "email".into()],
        },
        topics: list(row.try_get("topics")?),
    })
}

/// How a party is written in `messages.author`: `visitor`, `agent:7`, `supervisor:9`.
fn author(party: Party) -> String {
    match party {
        Party::Visitor => "visitor".into(),
        Party::Agent(a) => format!("agent:{}", a.0),
        Party::Supervisor(a) => format!("supervisor:{}", a.0),
    }
}

fn party(author: &str) -> Option<Party> {
    if author == "visitor" {
        return Some(Party::Visitor);
    }
    let (kind, id) = author.split_once(':')?;
    let id = AgentId(id.parse().ok()?);
    match kind {
        "agent" => Some(Party::Agent(id)),
        "supervisor" => Some(Party::Supervisor(id)),
        _ => None,
    }
}

impl Store {
    /// The widget `address` of the tenant named `tenant`; `None` if either is unknown.
    pub async fn chat_widget(&self, tenant: &str, address: &str) -> Result<Option<ChatWidget>> {
        let row = sqlx::query(&format!(
            "{WIDGET_SELECT} WHERE t.name = $1 AND s.kind = 'widget' AND s.address = $2"
        ))
        .bind(tenant.to_owned())
        .bind(address.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(widget_row).transpose()
    }

    /// The widget with service address `id` of `tenant`.
    pub async fn chat_widget_of(&self, tenant: i64, id: i64) -> Result<Option<ChatWidget>> {
        let row = sqlx::query(&format!("{WIDGET_SELECT} WHERE t.id = $1 AND s.id = $2"))
            .bind(tenant)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(widget_row).transpose()
    }

    /// Where a chat of `widget` goes: the first of `candidates` (detected, then the browser's
    /// language) the tenant has a language skill for, else the widget mailbox's language; and
    /// the queue of the widget's mailbox that asks for that language, else the widget's own.
    pub async fn chat_route(
        &self,
        widget: &ChatWidget,
        candidates: impl IntoIterator<Item = String>,
    ) -> Result<ChatRoute> {
        let fallback = widget
            .mailbox_language
            .clone()
            .unwrap_or_else(|| "en".into());
        let mut route = ChatRoute {
            language: fallback.clone(),
            skill: None,
            queue: None,
            priority: DEFAULT_PRIORITY,
        };
        for code in candidates.into_iter().chain(std::iter::once(fallback)) {
            if let Some(skill) = self.language_skill(widget.tenant_id, &code).await? {
                route.language = code;
                route.skill = Some(skill);
                break;
            }
        }
        let row = sqlx::query(super::LANGUAGE_QUEUE)
            .bind(widget.tenant_id)
            .bind(widget.mailbox_id)
            .bind(route.language.clone())
            .fetch_optional(&self.pool)
            .await?;
        route.queue = match row {
            Some(row) => Some(row.try_get("id")?),
            None => widget.queue_id,
        };
        Ok(route)
    }

    /// The queue a chat of `widget` would start in now, before its words are known: the
    /// `route`'s, unless a routing rule without keywords sends it elsewhere (one with keywords
    /// may still do so at the first message). What the widget's availability looks at.
    pub async fn chat_queue_before_words(
        &self,
        widget: &ChatWidget,
        route: &ChatRoute,
    ) -> Result<Option<i64>> {
        let ruled = self
            .rule_queue_before_words(
                widget.tenant_id,
                "chat",
                widget.service_address_id,
                Some(&route.language),
            )
            .await?;
        Ok(ruled.or(route.queue))
    }

    /// Opens a chat session; its id.
    pub async fn open_chat(&self, chat: &NewChat) -> Result<i64> {
        Ok(sqlx::query(
            "INSERT INTO chat_sessions \
             (tenant_id, service_address_id, token_hash, visitor_name, visitor_email, visitor_key, topic, language, state, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open', $9) RETURNING id",
        )
        .bind(chat.tenant)
        .bind(chat.service_address)
        .bind(chat.token_hash.clone())
        .bind(chat.visitor_name.clone())
        .bind(chat.visitor_email.clone())
        .bind(chat.visitor_key.clone())
        .bind(chat.topic.clone())
        .bind(chat.language.clone())
        .bind(now_ms())
        .fetch_one(&self.writer)
        .await?
        .try_get("id")?)
    }

    /// The chat whose resume token hashes to `token_hash`.
    pub async fn chat_by_token(&self, token_hash: &str) -> Result<Option<ChatRow>> {
        let row = sqlx::query(&format!(
            "SELECT {CHAT_COLUMNS} FROM chat_sessions WHERE token_hash = $1"
        ))
        .bind(token_hash.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(chat_row).transpose()
    }

    /// The chat with id `id`.
    pub async fn chat_by_id(&self, id: i64) -> Result<Option<ChatRow>> {
        let row = sqlx::query(&format!(
            "SELECT {CHAT_COLUMNS} FROM chat_sessions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(chat_row).transpose()
    }

    /// The addresses chat `interaction`'s transcript was emailed to, the first first (its
    /// `chat.transcript_sent` events).
    pub async fn transcripts_sent(&self, tenant: i64, interaction: i64) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT payload FROM events WHERE tenant_id = $1 AND interaction_id = $2 \
             AND kind = 'chat.transcript_sent' ORDER BY id",
        )
        .bind(tenant)
        .bind(interaction)
        .fetch_all(&self.pool)
        .await?;
        let mut sent = Vec::with_capacity(rows.len());
        for row in rows {
            let payload: String = row.try_get("payload")?;
            let payload: serde_json::Value = serde_json::from_str(&payload).unwrap_or_default();
            sent.push(payload["to"].as_str().unwrap_or_default().to_owned());
        }
        Ok(sent)
    }

    /// Logs that chat `interaction`'s transcript was emailed to `to`.
    pub async fn transcript_sent(&self, tenant: i64, interaction: i64, to: &str) -> Result<()> {
        self.append_event(&NewEvent {
            tenant,
            kind: "chat.transcript_sent".into(),
            interaction_id: Some(interaction),
            agent_id: None,
            queue_id: None,
            payload: json!({ "to": to }).to_string(),
        })
        .await
    }

    /// Makes chat `interaction` abandoned if it still waits: its chat ended, and routing —
    /// which may not have heard of it (its first enqueue failed) — must never offer it.
    pub async fn abandon_waiting_chat(&self, tenant: i64, interaction: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE interactions SET state = 'abandoned', agent_id = NULL \
             WHERE tenant_id = $1 AND id = $2 AND state IN ('new', 'queued', 'offered')",
        )
        .bind(tenant)
        .bind(interaction)
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(done > 0)
    }

    /// Chats still open (to bring back after a restart), each with whether routing still has
    /// its interaction (see [`CHAT_LIVE`]).
    pub async fn open_chats(&self) -> Result<Vec<(ChatRow, bool)>> {
        let rows = sqlx::query(&format!(
            "SELECT {CHAT_COLUMNS}, {CHAT_LIVE} AS live FROM chat_sessions \
             WHERE state = 'open' ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((chat_row(row)?, row.try_get::<i64, _>("live")? == 1)))
            .collect()
    }

    /// Whether routing still has chat `id`'s interaction (see [`CHAT_LIVE`]).
    pub async fn chat_live(&self, id: i64) -> Result<bool> {
        let live: i64 = sqlx::query_scalar(&format!(
            "SELECT {CHAT_LIVE} FROM chat_sessions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .unwrap_or(0);
        Ok(live == 1)
    }

    /// Turns a chat into an interaction (channel `chat`, state `new`, for routing) with the
    /// customer behind the visitor's email address, else behind its browser's key (the same
    /// for every chat from that browser), else a new one; the routing rules may move it from
    /// `route`'s queue (by its topic and `first` message, say), which `route` then names.
    /// Returns the interaction and the customer.
    pub async fn start_chat_interaction(
        &self,
        chat: &ChatRow,
        widget: &ChatWidget,
        route: &mut ChatRoute,
        first: &str,
    ) -> Result<(i64, i64)> {
        let (mailbox, language) = (widget.mailbox_id, route.language.clone());
        let mut tx = self.begin().await?;
        let now = now_ms();
        let (kind, value) = match (&chat.visitor_email, &chat.visitor_key) {
            (Some(email), _) => ("email", email.clone()),
            (None, Some(key)) => ("visitor", format!("browser-{key}")),
            (None, None) => ("visitor", format!("chat-{}", chat.id)),
        };
        let identity = Identity {
            kind,
            value: &value,
            name: &chat.visitor_name,
            language: None,
        };
        let customer = find_or_create(&mut tx, self.backend, chat.tenant, identity, now).await?;
        let subject = match &chat.topic {
            Some(topic) => format!("Chat: {topic}"),
            None => format!("Chat with {}", chat.visitor_name),
        };
        let text = format!("{}\n{first}", chat.topic.as_deref().unwrap_or_default());
        let facts = Facts {
            channel: "chat",
            service_address: Some(widget.service_address_id),
            text: &text,
            language: Some(&language),
            customer: Some(customer),
            at: now,
        };
        let classified = super::rules::classify_in(&mut tx, chat.tenant, &facts).await?;
        if let Some(decision) = &classified {
            route.queue = Some(decision.queue);
            route.priority = decision.priority.unwrap_or(route.priority);
        }
        let interaction: i64 = sqlx::query(
            "INSERT INTO interactions \
             (tenant_id, channel, mailbox_id, queue_id, customer_id, language, priority, state, subject, created_at) \
             VALUES ($1, 'chat', $2, $3, $4, $5, $6, 'new', $7, $8) RETURNING id",
        )
        .bind(chat.tenant)
        .bind(mailbox)
        .bind(route.queue)
        .bind(customer)
        .bind(language.to_owned())
        .bind(i64::from(route.priority))
        .bind(subject)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        sqlx::query(
            "UPDATE chat_sessions SET interaction_id = $1, customer_id = $2, language = $3 WHERE id = $4",
        )
        .bind(interaction)
        .bind(customer)
        .bind(language.to_owned())
        .bind(chat.id)
        .execute(&mut *tx)
        .await?;
        if let Some(decision) = &classified {
            super::rules::log_in(&mut tx, chat.tenant, interaction, decision).await?;
        }
        let event = NewEvent {
            tenant: chat.tenant,
            kind: "chat.started".into(),
            interaction_id: Some(interaction),
            agent_id: None,
            queue_id: route.queue,
            payload: json!({ "chat": chat.id, "language": language, "topic": chat.topic })
                .to_string(),
        };
        append_in(&mut tx, &event).await?;
        tx.commit().await?;
        Ok((interaction, customer))
    }

    /// Stores a chat message once per (author, client id); a resend returns the stored one.
    /// Messages of all chats are committed together (see `message_commit`).
    pub async fn store_chat_message(
        &self,
        tenant: i64,
        interaction: i64,
        message: &vacd_actors::chat::NewMessage,
    ) -> Result<ChatMessage> {
        let author = author(message.author);
        let direction = match (message.author, message.whisper) {
            (Party::Visitor, _) => "in",
            (_, true) => "internal",
            (_, false) => "out",
        };
        let row = Message {
            tenant,
            interaction,
            direction,
            author,
            body: message.text.clone(),
            client_id: message.client_id.clone(),
            whisper: message.whisper,
        };
        let stored = committer::submit(&self.messages, row).await?;
        Ok(ChatMessage {
            id: stored.id,
            author: message.author,
            name: message.name.clone(),
            text: message.text.clone(),
            at: stored.at,
            client_id: message.client_id.clone(),
            whisper: message.whisper,
        })
    }

    /// A chat's messages — the `last` so many, or all — oldest first, with the names of their
    /// authors (`visitor` is named `visitor_name`).
    pub async fn chat_messages(
        &self,
        tenant: i64,
        interaction: i64,
        visitor_name: &str,
        last: Option<usize>,
    ) -> Result<Vec<ChatMessage>> {
        let rows = sqlx::query(
            "SELECT * FROM (SELECT id, author, body, created_at, client_id, whisper FROM messages \
             WHERE tenant_id = $1 AND interaction_id = $2 ORDER BY id DESC LIMIT $3) AS last \
             ORDER BY id",
        )
        .bind(tenant)
        .bind(interaction)
        .bind(last.map_or(i64::MAX, |n| i64::try_from(n).unwrap_or(i64::MAX)))
        .fetch_all(&self.pool)
        .await?;
        let mut names = std::collections::HashMap::new();
        let mut messages = Vec::with_capacity(rows.len());
        for row in rows {
            let author_text: String = row.try_get("author")?;
            let Some(author) = party(&author_text) else {
                continue;
            };
            let name = match author {
                Party::Visitor => visitor_name.to_owned(),
                Party::Agent(user) | Party::Supervisor(user) => match names.get(&user) {
                    Some(name) => String::clone(name),
                    None => {
                        let name = self.user_name(tenant, user).await?.unwrap_or(author_text);
                        names.insert(user, name.clone());
                        name
                    }
                },
            };
            messages.push(ChatMessage {
                id: row.try_get("id")?,
                author,
                name,
                text: row.try_get("body")?,
                at: row.try_get("created_at")?,
                client_id: row.try_get("client_id")?,
                whisper: row.try_get::<i64, _>("whisper")? != 0,
            });
        }
        Ok(messages)
    }

    /// A user's display name.
    pub async fn user_name(&self, tenant: i64, user: AgentId) -> Result<Option<String>> {
        let row = sqlx::query("SELECT display_name FROM users WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(user.0 as i64)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => Some(row.try_get("display_name")?),
            None => None,
        })
    }

    /// Closes a chat for `reason`.
    pub async fn end_chat(&self, chat: &ChatRow, reason: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE chat_sessions SET state = 'ended', ended_reason = $1, ended_at = $2 WHERE id = $3",
        )
        .bind(reason.to_owned())
        .bind(now_ms())
        .bind(chat.id)
        .execute(&mut *tx)
        .await?;
        if chat.interaction.is_some() {
            let event = NewEvent {
                tenant: chat.tenant,
                kind: "chat.ended".into(),
                interaction_id: chat.interaction,
                agent_id: None,
                queue_id: None,
                payload: json!({ "chat": chat.id, "reason": reason }).to_string(),
            };
            append_in(&mut tx, &event).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

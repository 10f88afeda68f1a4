//! What the written channels write and the ticket desk reads: inbound messages stored as
//! tickets (the interaction, its `tickets` row, the message and its attachments, the customer
//! behind the sender) in one transaction, threading lookups, the thread and customer history
//! of a ticket, and the agent's actions on it (reply, note, forward, close, reopen, follow-up).
//!
//! Exactly once: every inbound message carries a `source_key` (account, mailbox generation,
//! the server's id of the message) that is unique per tenant. [`Store::ingest`] reports a
//! message it has already stored as [`Outcome::Duplicate`] and stores nothing, so a channel may
//! fetch the same message again after a crash, and removes it from its server only once this
//! has committed.

use std::collections::HashMap;

use serde_json::{json, Value as Json};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::events::{append_in, NewEvent};
use super::{now_ms, text, truncate, Backend, Error, Result, Store};
use crate::catalog::DEFAULT_PRIORITY;
use crate::channels::sla;
use crate::classify::Facts;

/// An inbound message of a written channel, ready to store.
#[derive(Debug, Clone, Default)]
pub struct NewWritten {
    pub tenant: i64,
    pub service_address: i64,
    pub mailbox: i64,
    pub queue: Option<i64>,
    /// `email`, `fax`, `letter` or `sms`.
    pub channel: &'static str,
    /// Where the message came from, unique per tenant (see the module doc).
    pub source_key: String,
    pub message_id: Option<String>,
    /// Message-IDs this one answers, nearest first.
    pub parents: Vec<String>,
    /// The ticket named by a tag in the subject: joined only when the sender is its customer.
    pub tag: Option<i64>,
    /// The sender's open ticket as the channel itself found it (an SMS: by the sender's
    /// number at this service address): joined as is.
    pub open_ticket: Option<i64>,
    /// The sender's display name.
    pub sender_name: Option<String>,
    /// Who wrote (email address, phone number): the customer's identity, and where replies go
    /// unless `reply_to` says otherwise; `None` when unknown.
    pub contact: Option<String>,
    /// Where replies go instead of `contact` (a mail's `Reply-To`): a new ticket's contact.
    pub reply_to: Option<String>,
    /// The customer identity kind of `contact` (`email`, `phone`).
    pub identity_kind: &'static str,
    pub recipients: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub language: Option<String>,
    pub attachments: Vec<NewAttachment>,
    /// Internal notes stored with the message (problems found while reading it).
    pub notes: Vec<String>,
    /// First-answer deadline of a new ticket (Unix ms).
    pub first_answer_due: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct NewAttachment {
    pub filename: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// The author of acknowledgements, the messages vacd sends by itself.
pub const ACKNOWLEDGER: &str = "vacd";

/// Where a ticket stands after a message joined it ([`Store::reopen_if_finished`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// It was finished (or in wrap-up) and is `new` again, to be routed.
    Reopened,
    /// Agent `agent` works on it.
    Connected { agent: i64 },
    /// It waits in its queue or is offered.
    Waiting,
}

/// What storing an inbound message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A new ticket: route it.
    Created,
    /// Joined an open ticket.
    Joined,
    /// Joined a closed or answered ticket, which is open and `new` again: route it.
    Reopened,
    /// Stored before (same source, or the same Message-ID with the same text): nothing written.
    Duplicate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    /// The ticket's interaction.
    pub interaction: i64,
    pub outcome: Outcome,
}

impl Ingested {
    /// Whether routing must enqueue the ticket now.
    pub fn needs_routing(&self) -> bool {
        matches!(self.outcome, Outcome::Created | Outcome::Reopened)
    }
}

/// A written service address and what it routes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenAddress {
    pub tenant: i64,
    pub id: i64,
    pub address: String,
    pub mailbox: i64,
    pub queue: Option<i64>,
    /// The mailbox's language, inherited from its parents.
    pub language: Option<String>,
    /// The mailbox's first-answer SLA in seconds, inherited.
    pub sla_seconds: Option<i64>,
    /// The mailbox's signature, inherited.
    pub signature: Option<String>,
    /// The mailbox's business hours (`Mo-Fr 08:00-18:00`), inherited.
    pub business_hours: Option<String>,
    /// The tenant's time zone, whose clock the business hours are read on.
    pub time_zone: String,
}

impl WrittenAddress {
    /// The first-answer deadline of a message arriving at `now` (Unix ms): the mailbox's SLA in
    /// its business hours on the tenant's clock; `None` without an SLA.
    pub fn first_answer_due(&self, now: i64) -> Option<i64> {
        sla::first_answer_due(
            now,
            self.sla_seconds,
            self.business_hours.as_deref(),
            &sla::tenant_clock(self.tenant, &self.time_zone),
        )
    }
}

/// A mail account row (the admin API's `mail-accounts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailAccountRow {
    pub id: i64,
    pub address: WrittenAddress,
    pub protocol: String,
    pub host: String,
    pub port: i64,
    pub security: String,
    pub username: String,
    pub password: String,
    pub folder: String,
    pub after_fetch: String,
    pub smtp_host: Option<String>,
    pub smtp_port: Option<i64>,
    pub smtp_security: Option<String>,
    pub smtp_username: Option<String>,
    pub smtp_password: Option<String>,
    pub auto_reply_template: Option<String>,
}

/// What a reply needs to know about its ticket.
#[derive(Debug, Clone)]
pub struct ReplyContext {
    pub tenant: i64,
    pub interaction: i64,
    pub channel: String,
    pub subject: String,
    pub contact: Option<String>,
    pub customer_name: Option<String>,
    pub language: String,
    pub address: Option<WrittenAddress>,
    /// Message-IDs of the thread, oldest first.
    pub thread_ids: Vec<String>,
    /// The latest inbound message's Message-ID.
    pub last_inbound: Option<String>,
}

/// An outgoing message to record in its ticket.
#[derive(Debug, Clone)]
pub struct NewOutbound {
    pub tenant: i64,
    pub interaction: i64,
    pub author: String,
    pub agent: Option<i64>,
    pub subject: String,
    pub body: String,
    pub recipients: Vec<String>,
    pub message_id: Option<String>,
    pub kind: Outbound,
    pub attachments: Vec<NewAttachment>,
    /// The sender's own id of the message (an agent's draft), by which a repeat finds it.
    pub client_id: Option<String>,
}

/// What an outgoing message is to its ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbound {
    /// An agent's answer: the customer's first answer (for the SLA), leaving the ticket
    /// `answered`, or `closed`.
    Reply { close: bool },
    /// Sent on to someone else; the ticket stays as it is.
    Forward,
    /// vacd's automatic acknowledgement of a new ticket.
    Acknowledgement,
}

impl Outbound {
    /// The event it is logged as.
    fn event(self) -> &'static str {
        match self {
            Outbound::Reply { .. } => "ticket.replied",
            Outbound::Forward => "ticket.forwarded",
            Outbound::Acknowledgement => "ticket.acknowledged",
        }
    }
}

const SELECT_ADDRESS: &str = "SELECT s.id, s.tenant_id, s.address, s.mailbox_id, s.queue_id, \
     m.language, m.sla_seconds, m.signature, m.business_hours, m.parent_id, t.time_zone \
     FROM service_addresses s JOIN mailboxes m ON m.id = s.mailbox_id \
     JOIN tenants t ON t.id = s.tenant_id";

impl Store {
    /// The service address `address` of `kind` (`email`, `fax`, `letter`, `sms`, `phone`), with
    /// what its mailbox leaves unset filled in from the mailbox's parents.
    pub async fn service_address(
        &self,
        kind: &str,
        address: &str,
    ) -> Result<Option<WrittenAddress>> {
        let row = sqlx::query(&format!(
            "{SELECT_ADDRESS} WHERE s.kind = $1 AND s.address = $2"
        ))
        .bind(kind.to_owned())
        .bind(address.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(Some(self.address_from(&row).await?)),
            None => Ok(None),
        }
    }

    /// Where answers to the tickets of a chat widget's offline form go out from: the email
    /// address of the widget's mailbox if it has one, else the widget's own address (answered
    /// through the tenant's other channels).
    pub async fn widget_reply_address(
        &self,
        tenant: i64,
        mailbox: i64,
        widget: i64,
    ) -> Result<Option<WrittenAddress>> {
        let row = sqlx::query(&format!(
            "{SELECT_ADDRESS} WHERE s.tenant_id = $1 AND ((s.kind = 'email' AND s.mailbox_id = $2) OR s.id = $3) \
             ORDER BY CASE WHEN s.kind = 'email' THEN 0 ELSE 1 END, s.id LIMIT 1"
        ))
        .bind(tenant)
        .bind(mailbox)
        .bind(widget)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(Some(self.address_from(&row).await?)),
            None => Ok(None),
        }
    }

    async fn address_by_id(&self, id: i64) -> Result<Option<WrittenAddress>> {
        let row = sqlx::query(&format!("{SELECT_ADDRESS} WHERE s.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => Ok(Some(self.address_from(&row).await?)),
            None => Ok(None),
        }
    }

    /// Reads the address row, filling what the mailbox leaves unset from its parents.
    async fn address_from(&self, row: &AnyRow) -> Result<WrittenAddress> {
        let mut address = WrittenAddress {
            tenant: row.try_get("tenant_id")?,
            id: row.try_get("id")?,
            address: row.try_get("address")?,
            mailbox: row.try_get("mailbox_id")?,
            queue: row.try_get("queue_id")?,
            language: row.try_get("language")?,
            sla_seconds: row.try_get("sla_seconds")?,
            signature: row.try_get("signature")?,
            business_hours: row.try_get("business_hours")?,
            time_zone: row.try_get("time_zone")?,
        };
        let mut parent: Option<i64> = row.try_get("parent_id")?;
        // Hierarchies are acyclic (the API refuses cycles); the bound guards a corrupt table.
        for _ in 0..crate::catalog::MAX_HIERARCHY_DEPTH {
            let Some(id) = parent else { break };
            let row = sqlx::query(
                "SELECT language, sla_seconds, signature, business_hours, parent_id FROM mailboxes \
                 WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
            address.language = address.language.or(row.try_get("language")?);
            address.sla_seconds = address.sla_seconds.or(row.try_get("sla_seconds")?);
            address.signature = address.signature.or(row.try_get("signature")?);
            address.business_hours = address.business_hours.or(row.try_get("business_hours")?);
            parent = row.try_get("parent_id")?;
        }
        Ok(address)
    }

    /// The enabled mail accounts of every tenant.
    pub async fn mail_accounts(&self) -> Result<Vec<MailAccountRow>> {
        let rows = sqlx::query(
            "SELECT id, service_address_id, protocol, host, port, security, username, password, \
             folder, after_fetch, smtp_host, smtp_port, smtp_security, smtp_username, \
             smtp_password, auto_reply_template FROM mail_accounts WHERE enabled <> 0 ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut accounts = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(address) = self
                .address_by_id(row.try_get("service_address_id")?)
                .await?
            else {
                continue;
            };
            accounts.push(MailAccountRow {
                id: row.try_get("id")?,
                address,
                protocol: row.try_get("protocol")?,
                host: row.try_get("host")?,
                port: row.try_get("port")?,
                security: row.try_get("security")?,
                username: row.try_get("username")?,
                password: row.try_get("password")?,
                folder: row.try_get("folder")?,
                after_fetch: row.try_get("after_fetch")?,
                smtp_host: row.try_get("smtp_host")?,
                smtp_port: row.try_get("smtp_port")?,
                smtp_security: row.try_get("smtp_security")?,
                smtp_username: row.try_get("smtp_username")?,
                smtp_password: row.try_get("smtp_password")?,
                auto_reply_template: row.try_get("auto_reply_template")?,
            });
        }
        Ok(accounts)
    }

    /// The ticket the message stored under `source_key` went into, if one was.
    pub async fn ticket_of_source(&self, tenant: i64, source_key: &str) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT interaction_id FROM messages WHERE tenant_id = $1 AND source_key = $2",
        )
        .bind(tenant)
        .bind(text(source_key))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("interaction_id")).transpose()?)
    }

    /// Stores an inbound message: in the ticket it threads into, or as a new ticket. One
    /// transaction; see [`Outcome`].
    pub async fn ingest(&self, new: &NewWritten) -> Result<Ingested> {
        let mut tx = self.begin().await?;
        let t = new.tenant;
        if let (Backend::Postgres, Some(id)) = (self.backend, &new.message_id) {
            // One mail fetched by two accounts at once (To one of ours, Cc another): stored one
            // after the other, so that the second finds the first as its duplicate. SQLite has
            // one writer: they are in turn already. (A lock of two 32-bit keys: a key space of
            // its own, apart from the database's lock.)
            sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
                .bind(super::MESSAGE_ID_LOCKS)
                .bind(super::advisory_key(t, &[id]))
                .execute(&mut *tx)
                .await?;
        }
        let seen = sqlx::query(
            "SELECT interaction_id FROM messages WHERE tenant_id = $1 AND source_key = $2",
        )
        .bind(t)
        .bind(text(&new.source_key))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = seen {
            return Ok(Ingested {
                interaction: row.try_get("interaction_id")?,
                outcome: Outcome::Duplicate,
            });
        }
        if let Some(id) = &new.message_id {
            // The same mail fetched again (through another account, say): same Message-ID,
            // sender, text and attachments (by name and size). A device whose Message-IDs
            // start over after a reboot sends different scans under an old id and the same
            // "please find attached": those are no duplicates.
            let same = sqlx::query(
                "SELECT id, interaction_id FROM messages WHERE tenant_id = $1 AND message_id = $2 \
                 AND direction = 'in' AND body = $3 AND COALESCE(sender, '') = $4",
            )
            .bind(t)
            .bind(text(id))
            .bind(text(&new.text))
            .bind(new.contact.as_deref().map(text).unwrap_or_default())
            .fetch_all(&mut *tx)
            .await?;
            let mut attached: Vec<(String, i64)> = new
                .attachments
                .iter()
                .map(|a| (truncate(&a.filename, 255), a.data.len() as i64))
                .collect();
            attached.sort();
            for row in same {
                let stored: i64 = row.try_get("id")?;
                let mut theirs: Vec<(String, i64)> = sqlx::query(
                    "SELECT filename, size_bytes FROM attachments WHERE message_id = $1",
                )
                .bind(stored)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|a| Ok((a.try_get("filename")?, a.try_get("size_bytes")?)))
                .collect::<Result<_>>()?;
                theirs.sort();
                if theirs == attached {
                    return Ok(Ingested {
                        interaction: row.try_get("interaction_id")?,
                        outcome: Outcome::Duplicate,
                    });
                }
            }
        }
        let now = now_ms();
        let customer = match &new.contact {
            Some(contact) => Some(
                super::customers::find_or_create(
                    &mut tx,
                    self.backend,
                    t,
                    super::customers::Identity {
                        kind: new.identity_kind,
                        value: contact,
                        name: new.sender_name.as_deref().unwrap_or(contact),
                        language: new.language.as_deref(),
                    },
                    now,
                )
                .await?,
            ),
            None => None,
        };
        // The ticket it threads into: the nearest known parent (a Message-ID of the thread),
        // else the ticket its tag names — if the sender is that ticket's customer. Ticket
        // numbers are no secret: a stranger's "[#T-42]" must not write into someone else's
        // ticket (it opens a ticket of its own).
        let mut existing = match new.open_ticket {
            Some(ticket) => ticket_state(&mut tx, t, ticket).await?,
            None => None,
        };
        for parent in &new.parents {
            if existing.is_some() {
                break;
            }
            let row = sqlx::query(
                "SELECT interaction_id FROM messages WHERE tenant_id = $1 AND message_id = $2 \
                 ORDER BY id LIMIT 1",
            )
            .bind(t)
            .bind(text(parent))
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = row {
                existing = ticket_state(&mut tx, t, row.try_get("interaction_id")?).await?;
            }
        }
        if let (None, Some(tag), Some(customer)) = (&existing, new.tag, customer) {
            let theirs = sqlx::query(
                "SELECT 1 AS found FROM interactions WHERE tenant_id = $1 AND id = $2 \
                 AND customer_id = $3",
            )
            .bind(t)
            .bind(tag)
            .bind(customer)
            .fetch_optional(&mut *tx)
            .await?;
            if theirs.is_some() {
                existing = ticket_state(&mut tx, t, tag).await?;
            }
        }
        // The queue the event names: a new ticket's classified one.
        let mut queue = new.queue;
        let (interaction, outcome) = match existing {
            Some((id, state, status)) => {
                let active = matches!(state.as_str(), "new" | "queued" | "offered" | "connected");
                let outcome = if active && status == "open" {
                    Outcome::Joined
                } else if active {
                    sqlx::query(
                        "UPDATE tickets SET status = 'open', closed_at = NULL, updated_at = $1 \
                         WHERE interaction_id = $2",
                    )
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    Outcome::Joined
                } else {
                    sqlx::query(
                        "UPDATE interactions SET state = 'new', agent_id = NULL, queue_order = NULL, queued_at = NULL \
                         WHERE tenant_id = $1 AND id = $2",
                    )
                    .bind(t)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "UPDATE tickets SET status = 'open', closed_at = NULL, updated_at = $1 \
                         WHERE interaction_id = $2",
                    )
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    Outcome::Reopened
                };
                (id, outcome)
            }
            None => {
                let content = format!("{}\n{}", new.subject, new.text);
                let facts = Facts {
                    channel: new.channel,
                    service_address: Some(new.service_address),
                    text: &content,
                    language: new.language.as_deref(),
                    customer,
                    at: now,
                };
                let classified = super::rules::classify_in(&mut tx, t, &facts).await?;
                if let Some(decision) = &classified {
                    queue = Some(decision.queue);
                }
                let priority = classified
                    .and_then(|d| d.priority)
                    .unwrap_or(DEFAULT_PRIORITY);
                let id: i64 = sqlx::query(
                    "INSERT INTO interactions (tenant_id, channel, mailbox_id, queue_id, \
                     customer_id, language, priority, state, subject, sla_deadline, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'new', $8, $9, $10) RETURNING id",
                )
                .bind(t)
                .bind(new.channel)
                .bind(new.mailbox)
                .bind(queue)
                .bind(customer)
                .bind(new.language.clone())
                .bind(i64::from(priority))
                .bind(truncate(&new.subject, 500))
                .bind(new.first_answer_due)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?
                .try_get("id")?;
                sqlx::query(
                    "INSERT INTO tickets (interaction_id, tenant_id, service_address_id, contact, \
                     status, first_answer_due, updated_at) VALUES ($1, $2, $3, $4, 'open', $5, $6)",
                )
                .bind(id)
                .bind(t)
                .bind(new.service_address)
                .bind(new.reply_to.as_deref().or(new.contact.as_deref()).map(text))
                .bind(new.first_answer_due)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if let Some(decision) = &classified {
                    super::rules::log_in(&mut tx, t, id, decision).await?;
                }
                (id, Outcome::Created)
            }
        };
        let author = new
            .sender_name
            .clone()
            .or_else(|| new.contact.clone())
            .unwrap_or_else(|| "unknown sender".into());
        let message = insert_message(
            &mut tx,
            t,
            interaction,
            MessageRow {
                direction: "in",
                author: &author,
                body: &new.text,
                subject: Some(&new.subject),
                html: new.html.as_deref(),
                sender: new.contact.as_deref(),
                recipients: &new.recipients,
                message_id: new.message_id.as_deref(),
                source_key: Some(&new.source_key),
                client_id: None,
            },
            now,
        )
        .await?;
        insert_attachments(&mut tx, t, message, &new.attachments, now).await?;
        for note in &new.notes {
            insert_message(&mut tx, t, interaction, MessageRow::note("vacd", note), now).await?;
        }
        let kind = match outcome {
            Outcome::Created => "ticket.created",
            Outcome::Reopened => "ticket.reopened",
            _ => "ticket.message",
        };
        let event = NewEvent {
            tenant: t,
            kind: kind.into(),
            interaction_id: Some(interaction),
            agent_id: None,
            queue_id: queue,
            payload: json!({
                "channel": new.channel,
                "message": message,
                "message_id": new.message_id,
                "attachments": new.attachments.len(),
            })
            .to_string(),
        };
        append_in(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(Ingested {
            interaction,
            outcome,
        })
    }

    /// The routing row of ticket `id`, as `RoutingHandle::enqueue` reads it.
    pub async fn ticket_routing_row(&self, tenant: i64, id: i64) -> Result<Json> {
        let row = sqlx::query(
            "SELECT id, channel, queue_id, language, priority, state FROM interactions \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(Error::NotFound)?;
        Ok(json!({
            "id": row.try_get::<i64, _>("id")?,
            "channel": row.try_get::<String, _>("channel")?,
            "queue_id": row.try_get::<Option<i64>, _>("queue_id")?,
            "language": row.try_get::<Option<String>, _>("language")?,
            "priority": row.try_get::<i64, _>("priority")?,
            "state": row.try_get::<String, _>("state")?,
        }))
    }

    /// Ticket `id` with its thread (messages with their attachments, oldest first) and the
    /// customer's history (their other interactions, newest first).
    pub async fn ticket(&self, tenant: i64, id: i64) -> Result<Json> {
        let row = sqlx::query(
            "SELECT i.id, i.channel, i.mailbox_id, i.queue_id, i.customer_id, i.language, i.state, \
             i.subject, i.sla_deadline, i.agent_id, i.created_at, t.contact, t.status, \
             t.follow_up_at, t.first_answer_due, t.first_answered_at, t.closed_at, \
             t.service_address_id FROM interactions i JOIN tickets t ON t.interaction_id = i.id \
             WHERE i.tenant_id = $1 AND i.id = $2",
        )
        .bind(tenant)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(Error::NotFound)?;
        let customer_id: Option<i64> = row.try_get("customer_id")?;
        let mut ticket = json!({
            "id": id,
            "number": format!("T-{id}"),
            "channel": row.try_get::<String, _>("channel")?,
            "mailbox_id": row.try_get::<Option<i64>, _>("mailbox_id")?,
            "queue_id": row.try_get::<Option<i64>, _>("queue_id")?,
            "customer_id": customer_id,
            "language": row.try_get::<Option<String>, _>("language")?,
            "state": row.try_get::<String, _>("state")?,
            "subject": row.try_get::<Option<String>, _>("subject")?,
            "sla_deadline": row.try_get::<Option<i64>, _>("sla_deadline")?,
            "agent_id": row.try_get::<Option<i64>, _>("agent_id")?,
            "created_at": row.try_get::<i64, _>("created_at")?,
            "contact": row.try_get::<Option<String>, _>("contact")?,
            "status": row.try_get::<String, _>("status")?,
            "follow_up_at": row.try_get::<Option<i64>, _>("follow_up_at")?,
            "first_answer_due": row.try_get::<Option<i64>, _>("first_answer_due")?,
            "first_answered_at": row.try_get::<Option<i64>, _>("first_answered_at")?,
            "closed_at": row.try_get::<Option<i64>, _>("closed_at")?,
            "service_address_id": row.try_get::<Option<i64>, _>("service_address_id")?,
        });
        let messages = sqlx::query(
            "SELECT id, direction, author, body, subject, html_body, sender, recipients, \
             message_id, created_at FROM messages WHERE tenant_id = $1 AND interaction_id = $2 \
             ORDER BY id",
        )
        .bind(tenant)
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let attachments = sqlx::query(
            "SELECT a.id, a.message_id, a.filename, a.content_type, a.size_bytes FROM attachments a \
             JOIN messages m ON m.id = a.message_id WHERE m.tenant_id = $1 AND m.interaction_id = $2 \
             ORDER BY a.id",
        )
        .bind(tenant)
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        // Each message's attachments, gathered in one pass (a long thread may hold many).
        let mut files_of: HashMap<i64, Vec<Json>> = HashMap::new();
        for a in &attachments {
            files_of
                .entry(a.try_get("message_id")?)
                .or_default()
                .push(json!({
                    "id": a.try_get::<i64, _>("id")?,
                    "filename": a.try_get::<String, _>("filename")?,
                    "content_type": a.try_get::<String, _>("content_type")?,
                    "size_bytes": a.try_get::<i64, _>("size_bytes")?,
                }));
        }
        let mut thread = Vec::with_capacity(messages.len());
        for m in &messages {
            let mid: i64 = m.try_get("id")?;
            let files = files_of.remove(&mid).unwrap_or_default();
            let recipients: Option<String> = m.try_get("recipients")?;
            thread.push(json!({
                "id": mid,
                "direction": m.try_get::<String, _>("direction")?,
                "author": m.try_get::<String, _>("author")?,
                "body": m.try_get::<String, _>("body")?,
                "subject": m.try_get::<Option<String>, _>("subject")?,
                "html": m.try_get::<Option<String>, _>("html_body")?,
                "sender": m.try_get::<Option<String>, _>("sender")?,
                "recipients": recipients.map(|r| r.split(',').map(str::to_owned).collect::<Vec<_>>()),
                "message_id": m.try_get::<Option<String>, _>("message_id")?,
                "created_at": m.try_get::<i64, _>("created_at")?,
                "attachments": files,
            }));
        }
        ticket["thread"] = Json::Array(thread);
        if let Some(customer) = customer_id {
            let card = self.customer_card(tenant, customer, id).await?;
            ticket["customer"] = card.customer;
            ticket["history"] = Json::Array(card.history);
        } else {
            ticket["customer"] = Json::Null;
            ticket["history"] = json!([]);
        }
        Ok(ticket)
    }

    /// What a reply in ticket `id` needs: recipient, subject, language, threading ids.
    pub async fn reply_context(&self, tenant: i64, id: i64) -> Result<ReplyContext> {
        let row = sqlx::query(
            "SELECT i.channel, i.subject, i.language, t.contact, t.service_address_id, \
             c.name AS customer_name, c.language AS customer_language FROM interactions i \
             JOIN tickets t ON t.interaction_id = i.id \
             LEFT JOIN customers c ON c.id = i.customer_id WHERE i.tenant_id = $1 AND i.id = $2",
        )
        .bind(tenant)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(Error::NotFound)?;
        let ids = sqlx::query(
            "SELECT direction, message_id FROM messages WHERE tenant_id = $1 AND interaction_id = $2 \
             AND message_id IS NOT NULL ORDER BY id",
        )
        .bind(tenant)
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let mut thread_ids = Vec::with_capacity(ids.len());
        let mut last_inbound = None;
        for r in &ids {
            let mid: String = r.try_get("message_id")?;
            if r.try_get::<String, _>("direction")? == "in" {
                last_inbound = Some(mid.clone());
            }
            thread_ids.push(mid);
        }
        let address = match row.try_get::<Option<i64>, _>("service_address_id")? {
            Some(a) => self.address_by_id(a).await?,
            None => None,
        };
        let language = row
            .try_get::<Option<String>, _>("language")?
            .or(row.try_get("customer_language")?)
            .or_else(|| address.as_ref().and_then(|a| a.language.clone()))
            .unwrap_or_else(|| "en".into());
        Ok(ReplyContext {
            tenant,
            interaction: id,
            channel: row.try_get("channel")?,
            subject: row
                .try_get::<Option<String>, _>("subject")?
                .unwrap_or_default(),
            contact: row.try_get("contact")?,
            customer_name: row.try_get("customer_name")?,
            language,
            address,
            thread_ids,
            last_inbound,
        })
    }

    /// A template of the tenant by name, preferring `language` and the ticket's mailbox:
    /// `(subject, body)`.
    pub async fn template(
        &self,
        tenant: i64,
        name: &str,
        language: &str,
    ) -> Result<Option<(Option<String>, String)>> {
        let rows = sqlx::query(
            "SELECT subject, body, language FROM templates WHERE tenant_id = $1 AND name = $2 \
             ORDER BY id",
        )
        .bind(tenant)
        .bind(name.to_owned())
        .fetch_all(&self.pool)
        .await?;
        let pick = rows
            .iter()
            .find(|r| r.try_get::<String, _>("language").ok().as_deref() == Some(language))
            .or_else(|| rows.first());
        match pick {
            Some(r) => Ok(Some((r.try_get("subject")?, r.try_get("body")?))),
            None => Ok(None),
        }
    }

    /// Text modules of the tenant by name (or shortcut), preferring `language`.
    pub async fn text_module(
        &self,
        tenant: i64,
        name: &str,
        language: &str,
    ) -> Result<Option<String>> {
        let rows = sqlx::query(
            "SELECT body, language FROM text_modules WHERE tenant_id = $1 AND (name = $2 OR shortcut = $3) \
             ORDER BY id",
        )
        .bind(tenant)
        .bind(name.to_owned())
        .bind(name.to_owned())
        .fetch_all(&self.pool)
        .await?;
        let pick = rows
            .iter()
            .find(|r| r.try_get::<String, _>("language").ok().as_deref() == Some(language))
            .or_else(|| rows.first());
        match pick {
            Some(r) => Ok(Some(r.try_get("body")?)),
            None => Ok(None),
        }
    }

    /// The message `author` sent in ticket `id` with their own id `client_id` (ids are the
    /// author's: another's may be the same): `{message, subject, body, to}`.
    pub async fn sent_with_client_id(
        &self,
        tenant: i64,
        id: i64,
        author: &str,
        client_id: &str,
    ) -> Result<Option<Json>> {
        let row = sqlx::query(
            "SELECT id, subject, body, recipients FROM messages WHERE tenant_id = $1 \
             AND interaction_id = $2 AND direction = 'out' AND author = $3 AND client_id = $4",
        )
        .bind(tenant)
        .bind(id)
        .bind(author.to_owned())
        .bind(client_id.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(json!({
                "message": row.try_get::<i64, _>("id")?,
                "subject": row.try_get::<Option<String>, _>("subject")?,
                "body": row.try_get::<String, _>("body")?,
                "to": row.try_get::<Option<String>, _>("recipients")?,
            }))
        })
        .transpose()
    }

    /// The newest message the customer sent in ticket `id` (its row id).
    pub async fn newest_inbound(&self, tenant: i64, id: i64) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MAX(id) AS newest FROM messages WHERE tenant_id = $1 AND interaction_id = $2 \
             AND direction = 'in'",
        )
        .bind(tenant)
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("newest")?)
    }

    /// Records a sent message in its ticket and moves the ticket's status.
    pub async fn record_outbound(&self, out: &NewOutbound) -> Result<i64> {
        let mut tx = self.begin().await?;
        let now = now_ms();
        let message = insert_message(
            &mut tx,
            out.tenant,
            out.interaction,
            MessageRow {
                direction: "out",
                author: &out.author,
                body: &out.body,
                subject: Some(&out.subject),
                html: None,
                sender: None,
                recipients: &out.recipients,
                message_id: out.message_id.as_deref(),
                source_key: None,
                client_id: out.client_id.as_deref(),
            },
            now,
        )
        .await?;
        insert_attachments(&mut tx, out.tenant, message, &out.attachments, now).await?;
        // A reply answers the customer (the SLA's first answer) and may close the ticket; a
        // forward only touches it; an acknowledgement changes nothing.
        if let Outbound::Reply { close } = out.kind {
            let status = if close { "closed" } else { "answered" };
            sqlx::query(
                "UPDATE tickets SET status = $1, updated_at = $2, \
                 first_answered_at = COALESCE(first_answered_at, $3), \
                 closed_at = CASE WHEN $4 = 'closed' THEN $5 ELSE closed_at END \
                 WHERE tenant_id = $6 AND interaction_id = $7",
            )
            .bind(status)
            .bind(now)
            .bind(now)
            .bind(status)
            .bind(now)
            .bind(out.tenant)
            .bind(out.interaction)
            .execute(&mut *tx)
            .await?;
        } else if out.kind == Outbound::Forward {
            sqlx::query(
                "UPDATE tickets SET updated_at = $1 WHERE tenant_id = $2 AND interaction_id = $3",
            )
            .bind(now)
            .bind(out.tenant)
            .bind(out.interaction)
            .execute(&mut *tx)
            .await?;
        }
        let event = NewEvent {
            tenant: out.tenant,
            kind: out.kind.event().into(),
            interaction_id: Some(out.interaction),
            agent_id: out.agent,
            queue_id: None,
            payload:
                json!({ "message": message, "to": out.recipients, "message_id": out.message_id })
                    .to_string(),
        };
        append_in(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(message)
    }

    /// Adds an internal note by `author`.
    pub async fn add_note(
        &self,
        tenant: i64,
        id: i64,
        agent: Option<i64>,
        author: &str,
        body: &str,
    ) -> Result<i64> {
        let mut tx = self.begin().await?;
        ticket_state(&mut tx, tenant, id)
            .await?
            .ok_or(Error::NotFound)?;
        let now = now_ms();
        let message =
            insert_message(&mut tx, tenant, id, MessageRow::note(author, body), now).await?;
        let event = NewEvent {
            tenant,
            kind: "ticket.noted".into(),
            interaction_id: Some(id),
            agent_id: agent,
            queue_id: None,
            payload: json!({ "message": message }).to_string(),
        };
        append_in(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(message)
    }

    /// Sets the ticket's status (`open`, `answered`, `closed`); reopening also makes its
    /// interaction `new` again (the caller routes it). Returns the interaction's state before.
    pub async fn set_ticket_status(
        &self,
        tenant: i64,
        id: i64,
        agent: Option<i64>,
        status: &'static str,
    ) -> Result<String> {
        let mut tx = self.begin().await?;
        let (_, state, _) = ticket_state(&mut tx, tenant, id)
            .await?
            .ok_or(Error::NotFound)?;
        let payload = json!({ "from_state": state });
        set_status_in(&mut tx, tenant, id, &state, agent, status, payload).await?;
        tx.commit().await?;
        Ok(state)
    }

    /// The tickets whose follow-up date has come by `now` (tenant, interaction).
    pub async fn due_follow_ups(&self, now: i64) -> Result<Vec<(i64, i64)>> {
        let rows = sqlx::query(
            "SELECT tenant_id, interaction_id FROM tickets \
             WHERE follow_up_at IS NOT NULL AND follow_up_at <= $1 ORDER BY follow_up_at",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("tenant_id")?, row.try_get("interaction_id")?)))
            .collect()
    }

    /// Acts on ticket `id`'s follow-up date if it has come by `now`, in one transaction: the
    /// date is used up and the ticket opened again (`ticket.reopened` with `by: follow_up`),
    /// its interaction new for routing — unless it is still waiting or worked on, which keeps
    /// going as it is. True if it was reopened. Should this fail, the date stays, and the
    /// next look tries again.
    pub async fn reopen_for_follow_up(&self, tenant: i64, id: i64, now: i64) -> Result<bool> {
        let mut tx = self.begin().await?;
        let used = sqlx::query(
            "UPDATE tickets SET follow_up_at = NULL WHERE tenant_id = $1 AND interaction_id = $2 \
             AND follow_up_at IS NOT NULL AND follow_up_at <= $3",
        )
        .bind(tenant)
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // Moved or cleared meanwhile.
        if used.rows_affected() == 0 {
            return Ok(false);
        }
        let reopen = match ticket_state(&mut tx, tenant, id).await? {
            Some((_, state, _))
                if !matches!(
                    state.as_str(),
                    "new" | "queued" | "offered" | "connected" | "wrap_up"
                ) =>
            {
                let payload = json!({ "from_state": state, "by": "follow_up" });
                set_status_in(&mut tx, tenant, id, &state, None, "open", payload).await?;
                true
            }
            _ => false,
        };
        tx.commit().await?;
        Ok(reopen)
    }

    /// Sets (or clears) the follow-up date.
    pub async fn set_follow_up(
        &self,
        tenant: i64,
        id: i64,
        agent: Option<i64>,
        at: Option<i64>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE tickets SET follow_up_at = $1, updated_at = $2 WHERE tenant_id = $3 AND interaction_id = $4",
        )
        .bind(at)
        .bind(now_ms())
        .bind(tenant)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound);
        }
        let event = NewEvent {
            tenant,
            kind: "ticket.follow_up".into(),
            interaction_id: Some(id),
            agent_id: agent,
            queue_id: None,
            payload: json!({ "at": at }).to_string(),
        };
        append_in(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether the customer of ticket `ticket` got an acknowledgement on another ticket since
    /// `since` (Unix ms). Told by the `ticket.acknowledged` events, not by the messages' author:
    /// an agent may be called like vacd itself. The kind named literally and the `+` before
    /// `e.at` make the planner look each of the customer's interactions up in the partial
    /// index `events_acknowledged` instead of reading every event of the last `since`.
    pub async fn acknowledged_since(&self, tenant: i64, ticket: i64, since: i64) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS hit FROM interactions t \
             JOIN interactions i ON i.tenant_id = t.tenant_id AND i.customer_id = t.customer_id \
             WHERE t.tenant_id = $1 AND t.id = $2 AND i.id <> t.id AND EXISTS ( \
               SELECT 1 FROM events e WHERE e.tenant_id = i.tenant_id AND e.interaction_id = i.id \
               AND e.kind = 'ticket.acknowledged' AND +e.at > $3) LIMIT 1",
        )
        .bind(tenant)
        .bind(ticket)
        .bind(since)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// After a message joined ticket `id`: makes it `new` again if routing has finished it
    /// or its agent wraps it up, else says who works on it.
    pub async fn reopen_if_finished(&self, tenant: i64, id: i64) -> Result<Joined> {
        let mut tx = self.begin().await?;
        let reopened = sqlx::query(
            "UPDATE interactions SET state = 'new', agent_id = NULL, queue_order = NULL, queued_at = NULL WHERE tenant_id = $1 AND id = $2 \
             AND state IN ('wrap_up', 'done', 'abandoned', 'failed')",
        )
        .bind(tenant)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        let joined = if reopened {
            let event = NewEvent {
                tenant,
                kind: "ticket.reopened".into(),
                interaction_id: Some(id),
                agent_id: None,
                queue_id: None,
                payload: json!({ "by": "customer" }).to_string(),
            };
            append_in(&mut tx, &event).await?;
            Joined::Reopened
        } else {
            let row = sqlx::query(
                "SELECT agent_id FROM interactions WHERE tenant_id = $1 AND id = $2 \
                 AND state = 'connected'",
            )
            .bind(tenant)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            match row
                .map(|r| r.try_get::<Option<i64>, _>("agent_id"))
                .transpose()?
            {
                Some(Some(agent)) => Joined::Connected { agent },
                _ => Joined::Waiting,
            }
        };
        tx.commit().await?;
        Ok(joined)
    }

    /// The newest ticket of `contact` at service address `address` that is not closed (an SMS
    /// conversation threads by sender).
    pub async fn open_ticket_of(
        &self,
        tenant: i64,
        address: i64,
        contact: &str,
    ) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT interaction_id FROM tickets WHERE tenant_id = $1 AND service_address_id = $2 \
             AND contact = $3 AND status <> 'closed' ORDER BY interaction_id DESC LIMIT 1",
        )
        .bind(tenant)
        .bind(address)
        .bind(contact.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("interaction_id")?),
            None => None,
        })
    }

    /// How many tickets came from `source_key`s starting with `prefix` (tests and the load
    /// script count with it).
    pub async fn count_sources(&self, tenant: i64, prefix: &str) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM messages WHERE tenant_id = $1 AND source_key LIKE $2",
        )
        .bind(tenant)
        .bind(format!("{prefix}%"))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// Sets ticket `id`'s status (its interaction in `state`) and logs `ticket.<status>` (`ticket.reopened`
/// for `open`) with `payload`. Reopened, an interaction nobody works on waits for routing again;
/// in wrap-up the agent is done with it, so it waits again too (see `ingest`).
async fn set_status_in(
    tx: &mut Tx,
    tenant: i64,
    id: i64,
    state: &str,
    agent: Option<i64>,
    status: &'static str,
    payload: Json,
) -> Result<()> {
    let now = now_ms();
    sqlx::query(
        "UPDATE tickets SET status = $1, updated_at = $2, \
         closed_at = CASE WHEN $3 = 'closed' THEN $4 ELSE NULL END \
         WHERE tenant_id = $5 AND interaction_id = $6",
    )
    .bind(status)
    .bind(now)
    .bind(status)
    .bind(now)
    .bind(tenant)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    let active = matches!(state, "new" | "queued" | "offered" | "connected");
    if status == "open" && !active {
        sqlx::query(
            "UPDATE interactions SET state = 'new', agent_id = NULL, queue_order = NULL, queued_at = NULL WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    }
    let event = NewEvent {
        tenant,
        kind: format!(
            "ticket.{}",
            if status == "open" { "reopened" } else { status }
        ),
        interaction_id: Some(id),
        agent_id: agent,
        queue_id: None,
        payload: payload.to_string(),
    };
    append_in(tx, &event).await
}

/// `(id, interaction state, ticket status)` of ticket `id`, if it is a ticket of `tenant`.
async fn ticket_state(tx: &mut Tx, tenant: i64, id: i64) -> Result<Option<(i64, String, String)>> {
    let row = sqlx::query(
        "SELECT i.state, t.status FROM interactions i JOIN tickets t ON t.interaction_id = i.id \
         WHERE i.tenant_id = $1 AND i.id = $2",
    )
    .bind(tenant)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    match row {
        Some(r) => Ok(Some((id, r.try_get("state")?, r.try_get("status")?))),
        None => Ok(None),
    }
}

struct MessageRow<'a> {
    direction: &'static str,
    author: &'a str,
    body: &'a str,
    subject: Option<&'a str>,
    html: Option<&'a str>,
    sender: Option<&'a str>,
    recipients: &'a [String],
    message_id: Option<&'a str>,
    source_key: Option<&'a str>,
    client_id: Option<&'a str>,
}

impl<'a> MessageRow<'a> {
    fn note(author: &'a str, body: &'a str) -> MessageRow<'a> {
        MessageRow {
            direction: "internal",
            author,
            body,
            subject: None,
            html: None,
            sender: None,
            recipients: &[],
            message_id: None,
            source_key: None,
            client_id: None,
        }
    }
}

async fn insert_message(
    tx: &mut Tx,
    tenant: i64,
    interaction: i64,
    m: MessageRow<'_>,
    now: i64,
) -> Result<i64> {
    let recipients = (!m.recipients.is_empty()).then(|| text(&m.recipients.join(",")));
    Ok(sqlx::query(
        "INSERT INTO messages (tenant_id, interaction_id, direction, author, body, subject, \
         html_body, sender, recipients, message_id, source_key, client_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
    )
    .bind(tenant)
    .bind(interaction)
    .bind(m.direction)
    .bind(truncate(m.author, 200))
    .bind(text(m.body))
    .bind(m.subject.map(text))
    .bind(m.html.map(text))
    .bind(m.sender.map(text))
    .bind(recipients)
    .bind(m.message_id.map(text))
    .bind(m.source_key.map(text))
    .bind(m.client_id.map(text))
    .bind(now)
    .fetch_one(&mut **tx)
    .await?
    .try_get("id")?)
}

async fn insert_attachments(
    tx: &mut Tx,
    tenant: i64,
    message: i64,
    attachments: &[NewAttachment],
    now: i64,
) -> Result<()> {
    for a in attachments {
        let id: i64 = sqlx::query(
            "INSERT INTO attachments (tenant_id, message_id, filename, content_type, size_bytes, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(tenant)
        .bind(message)
        .bind(truncate(&a.filename, 255))
        .bind(text(&a.content_type))
        .bind(a.data.len() as i64)
        .bind(now)
        .fetch_one(&mut **tx)
        .await?
        .try_get("id")?;
        sqlx::query("INSERT INTO attachment_blobs (attachment_id, data) VALUES ($1, $2)")
            .bind(id)
            .bind(a.data.clone())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

//! The written channels: email (IMAP, POP3 in; SMTP out), SMS (an HTTP gateway), fax and letter
//! (watched directories; letters out as PDF). Every adapter turns what arrives into a
//! [`NewWritten`](crate::store::NewWritten) and hands it to [`Channels::accept`], which stores it
//! as a ticket and routes it like any other interaction; answers go out through
//! [`Channels::send`], which picks the channel's way out.
//!
//! The protocol-free parts are separate and tested without I/O: `mime` (parsing), `threading`
//! (ticket tags and reply headers), `screening` (loops and spam), `template` (variables and
//! salutations), `language` (detection), `sla` (business-hours deadlines). `reply` composes answers from templates;
//! `follow_up` brings tickets back at their follow-up dates. Start
//! reading at [`Channels`].

pub mod config;
pub mod directory;
pub mod email;
pub mod follow_up;
pub mod letter;
pub mod mime;
pub mod reply;
pub mod screening;
pub mod sla;
pub mod sms;
pub mod template;
pub mod threading;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use serde_json::{json, Value as Json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vacd_actors::AgentId;

use crate::chat::ChatHub;
use crate::routing::RoutingHandle;
use crate::store::{self, Ingested, NewWritten, ReplyContext, Store};
pub use config::ChannelsConfig;
use email::MailAccount;

/// Longest value from outside (in bytes) the store indexes: Message-IDs and contacts. One
/// RFC 5322 line; PostgreSQL's B-tree refuses entries of more than about 2,700 bytes, and a
/// message the store refused would be fetched again and again and never become a ticket.
pub const MAX_INDEXED: usize = 998;

/// Why a message could not go out (or in).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the ticket has no address to answer to")]
    NoRecipient,
    #[error("{0}")]
    NotConfigured(String),
    #[error("no template `{0}` exists")]
    UnknownTemplate(String),
    #[error("the reply would be longer than {0} bytes")]
    ReplyTooLong(usize),
    #[error("sending mail failed: {0}")]
    Smtp(#[from] email::smtp::SendError),
    #[error("sending the SMS failed: {0}")]
    Sms(String),
    #[error("writing the letter failed: {0}")]
    Letter(#[from] letter::LetterError),
    #[error("store: {0}")]
    Store(#[from] store::Error),
}

/// How an account's server connection stands, for `/ready`.
#[derive(Debug, Clone, serde::Serialize)]
struct AccountHealth {
    up: bool,
    error: Option<String>,
    since: i64,
}

/// What a message sent for a ticket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendKind {
    /// An agent's reply to the customer, in the ticket's thread.
    Reply,
    /// Sent by vacd itself — a new ticket's acknowledgement, a chat's transcript — and marked
    /// so (`Auto-Submitted`), so that other robots do not answer it.
    Automatic,
    /// The ticket forwarded to someone else: outside the ticket's thread.
    Forward,
}

/// What went out.
#[derive(Debug, Clone)]
pub struct Sent {
    pub message_id: Option<String>,
    pub to: String,
    /// A rendered letter: the PDF, kept with the message.
    pub document: Option<store::NewAttachment>,
}

/// The running written channels. Cheap to clone.
#[derive(Clone)]
pub struct Channels {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    routing: RoutingHandle,
    /// Where frames to the agents' consoles go.
    consoles: ChatHub,
    config: ChannelsConfig,
    letter_fonts: letter::LetterFonts,
    health: DashMap<String, AccountHealth>,
    /// The running mail accounts by service address id: where replies are sent from.
    senders: DashMap<i64, Arc<MailAccount>>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    http: reqwest::Client,
    /// When each contact ((tenant, address)) was last acknowledged by this process.
    acknowledged: DashMap<(i64, String), i64>,
}

impl Channels {
    /// Starts the mail account supervisor and the directory watchers.
    pub fn start(
        config: ChannelsConfig,
        letter_fonts: letter::LetterFonts,
        store: Store,
        routing: RoutingHandle,
        consoles: ChatHub,
    ) -> Channels {
        let (stop, stopped) = watch::channel(false);
        let channels = Channels {
            inner: Arc::new(Inner {
                store,
                routing,
                consoles,
                config,
                letter_fonts,
                health: DashMap::new(),
                senders: DashMap::new(),
                stop,
                tasks: Mutex::new(Vec::new()),
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap_or_default(),
                acknowledged: DashMap::new(),
            }),
        };
        let mut tasks = vec![tokio::spawn(email::supervise(
            channels.clone(),
            stopped.clone(),
        ))];
        tasks.push(tokio::spawn(follow_up::watch(
            channels.clone(),
            stopped.clone(),
        )));
        for dir in &channels.inner.config.directories {
            tasks.push(tokio::spawn(directory::watch(
                channels.clone(),
                dir.clone(),
                stopped.clone(),
            )));
        }
        *channels.tasks() = tasks;
        channels
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops fetching: sessions finish the message in hand (what is committed stays
    /// committed; what is not is fetched again next start).
    pub async fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        let tasks = std::mem::take(&mut *self.tasks());
        for task in tasks {
            if tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .is_err()
            {
                tracing::warn!("a channel task did not stop in time");
            }
        }
    }

    pub fn config(&self) -> &ChannelsConfig {
        &self.inner.config
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn account_up(&self, key: &str) {
        metrics::gauge!(crate::metrics::MAIL_ACCOUNT_UP, "account" => key.to_owned()).set(1.0);
        self.inner.health.insert(
            key.to_owned(),
            AccountHealth {
                up: true,
                error: None,
                since: store::now_ms(),
            },
        );
    }

    /// Records a failed session; returns whether the account had been up.
    pub(crate) fn account_down(&self, key: &str, error: &str) -> bool {
        metrics::gauge!(crate::metrics::MAIL_ACCOUNT_UP, "account" => key.to_owned()).set(0.0);
        metrics::counter!(crate::metrics::MAIL_ACCOUNT_FAILURES, "account" => key.to_owned())
            .increment(1);
        let was_up = self.inner.health.get(key).is_some_and(|h| h.up);
        self.inner.health.insert(
            key.to_owned(),
            AccountHealth {
                up: false,
                error: Some(error.to_owned()),
                since: store::now_ms(),
            },
        );
        was_up
    }

    fn register_account(&self, account: &Arc<MailAccount>) {
        self.inner
            .senders
            .insert(account.address.id, account.clone());
    }

    fn forget_account(&self, key: &str, address: i64) {
        self.inner.health.remove(key);
        self.inner.senders.remove_if(&address, |_, a| a.key == key);
    }

    /// The state of every mail account, for `/ready`; with `errors`, the last error of each
    /// account that is down (a mail server's words, which may name hosts and users).
    pub fn health(&self, errors: bool) -> Json {
        let accounts: serde_json::Map<String, Json> = self
            .inner
            .health
            .iter()
            .map(|h| {
                let mut health = json!(h.value());
                if !errors {
                    if let Some(health) = health.as_object_mut() {
                        health.remove("error");
                    }
                }
                (h.key().clone(), health)
            })
            .collect();
        json!({ "mail_accounts": accounts })
    }

    /// Stores an inbound message and routes the ticket if it is new or reopened.
    pub async fn accept(&self, new: &NewWritten) -> Result<Ingested, store::Error> {
        let ingested = self.inner.store.ingest(new).await?;
        let outcome = format!("{:?}", ingested.outcome).to_lowercase();
        metrics::counter!(crate::metrics::TICKET_MESSAGES, "channel" => new.channel, "outcome" => outcome)
            .increment(1);
        tracing::info!(tenant = new.tenant, interaction_id = ingested.interaction, channel = new.channel, outcome = ?ingested.outcome, source = new.source_key, "written message stored");
        if ingested.needs_routing() {
            self.route(new.tenant, ingested.interaction).await;
        } else if ingested.outcome == store::Outcome::Joined {
            // The stored state may have lagged behind routing: a ticket routing finished
            // meanwhile is reopened now that the journal has caught up.
            self.inner.routing.flushed().await;
            match self
                .inner
                .store
                .reopen_if_finished(new.tenant, ingested.interaction)
                .await?
            {
                store::Joined::Reopened => self.route(new.tenant, ingested.interaction).await,
                // The agent on it sees the new message at once.
                store::Joined::Connected { agent } => self.inner.consoles.to_console(
                    new.tenant,
                    AgentId(agent as u64),
                    json!({ "type": "ticket.message", "interaction": ingested.interaction, "channel": new.channel })
                        .to_string(),
                ),
                store::Joined::Waiting => {}
            }
        }
        Ok(ingested)
    }

    /// Enqueues ticket `id` (new or reopened) in routing.
    pub async fn route(&self, tenant: i64, id: i64) {
        match self.inner.store.ticket_routing_row(tenant, id).await {
            Ok(row) => {
                if let Err(e) = self.inner.routing.enqueue(tenant, &row).await {
                    // It stays `new` in the store; routing takes it up again at the next start.
                    tracing::warn!(tenant, interaction_id = id, error = %e, "ticket not routed");
                }
            }
            Err(e) => tracing::error!(tenant, interaction_id = id, error = %e, "ticket not routed"),
        }
    }

    pub fn routing(&self) -> &RoutingHandle {
        &self.inner.routing
    }

    /// Sends the acknowledgement `template` for the new ticket `ticket`.
    pub async fn acknowledge(&self, tenant: i64, ticket: i64, template: &str) -> Result<(), Error> {
        let ctx = self.inner.store.reply_context(tenant, ticket).await?;
        let to = ctx.contact.clone().ok_or(Error::NoRecipient)?;
        // One acknowledgement per customer and interval (RFC 3834 §2): a flood of new mails, or
        // of mails in someone else's name, does not become a flood of answers. The store knows
        // the ones sent before a restart; `acknowledged` those being sent now.
        let interval = self.inner.config.acknowledgement_interval_seconds;
        if interval > 0 {
            let now = store::now_ms();
            let window = i64::try_from(interval.saturating_mul(1000)).unwrap_or(i64::MAX);
            // The claim first: a flood is turned away in memory; a claim the store then finds
            // answered already stays, so the rest of the flood is too.
            if !self.claim_acknowledgement(tenant, &to, now, window)
                || self
                    .inner
                    .store
                    .acknowledged_since(tenant, ticket, now - window)
                    .await?
            {
                tracing::info!(
                    tenant,
                    ticket,
                    interval,
                    "customer acknowledged recently; no acknowledgement"
                );
                return Ok(());
            }
        }
        let sent = match reply::compose(&self.inner.store, &ctx, Some(template), None, None).await {
            Ok(composed) => self
                .send(
                    &ctx,
                    &to,
                    &composed.subject,
                    &composed.body,
                    SendKind::Automatic,
                )
                .await
                .map(|sent| (composed, sent)),
            Err(e) => Err(e),
        };
        let (composed, sent) = match sent {
            Ok(sent) => sent,
            Err(e) => {
                // Not acknowledged after all: the next new ticket may be.
                self.inner.acknowledged.remove(&(tenant, to.to_lowercase()));
                return Err(e);
            }
        };
        self.inner
            .store
            .record_outbound(&store::NewOutbound {
                tenant,
                interaction: ticket,
                author: store::ACKNOWLEDGER.into(),
                agent: None,
                subject: composed.subject,
                body: composed.body,
                recipients: vec![sent.to],
                message_id: sent.message_id,
                kind: store::Outbound::Acknowledgement,
                attachments: Vec::new(),
                client_id: None,
            })
            .await?;
        Ok(())
    }

    /// Takes the turn to acknowledge `to` at `now` unless someone took it less than `window` ms
    /// ago (Unix ms); forgets turns older than that once the list is long.
    fn claim_acknowledgement(&self, tenant: i64, to: &str, now: i64, window: i64) -> bool {
        let acknowledged = &self.inner.acknowledged;
        if acknowledged.len() > 10_000 {
            acknowledged.retain(|_, at| now - *at < window);
        }
        match acknowledged.entry((tenant, to.to_lowercase())) {
            dashmap::Entry::Occupied(entry) if now - *entry.get() < window => false,
            entry => {
                entry.insert(now);
                true
            }
        }
    }

    /// Sends `body` under `subject` to `to` the way the ticket's channel answers: SMTP from the
    /// service address's account, the SMS gateway, or a PDF letter in the outbox.
    pub async fn send(
        &self,
        ctx: &ReplyContext,
        to: &str,
        subject: &str,
        body: &str,
        kind: SendKind,
    ) -> Result<Sent, Error> {
        let address = ctx
            .address
            .as_ref()
            .ok_or_else(|| Error::NotConfigured("the ticket's service address is gone".into()))?;
        match ctx.channel.as_str() {
            "email" => {
                let account = self
                    .inner
                    .senders
                    .get(&address.id)
                    .map(|a| a.clone())
                    .ok_or_else(|| {
                        Error::NotConfigured(format!("no mail account for {}", address.address))
                    })?;
                let smtp = account.smtp.as_ref().ok_or_else(|| {
                    Error::NotConfigured(format!("no SMTP server for {}", address.address))
                })?;
                // 128 random bits: a Message-ID of ours must not be guessable, for a mail that
                // names it as its parent joins (and reopens) that ticket.
                let mut nonce = [0u8; 16];
                OsRng.fill_bytes(&mut nonce);
                let unique = format!("{}.{}", store::now_ms(), hex::encode(nonce));
                let message_id =
                    threading::message_id(&address.address, ctx.interaction, 0, &unique);
                let (in_reply_to, references) = match (kind, &ctx.last_inbound) {
                    // Not in the ticket's thread: sent to another of the tenant's addresses,
                    // vacd would take it for the customer's mail and join it to this ticket.
                    // Its answer still finds the ticket by the forward's own Message-ID.
                    (SendKind::Forward, _) => (None, Vec::new()),
                    (_, Some(parent)) => (
                        Some(parent.clone()),
                        threading::reply_references(parent, &ctx.thread_ids),
                    ),
                    (_, None) => (None, ctx.thread_ids.clone()),
                };
                let out = email::smtp::Outgoing {
                    from: address.address.clone(),
                    from_name: None,
                    to: to.to_owned(),
                    subject: subject.to_owned(),
                    body: body.to_owned(),
                    message_id: message_id.clone(),
                    in_reply_to,
                    references,
                    automatic: kind == SendKind::Automatic,
                };
                email::smtp::send(smtp, account.ca_file.as_deref(), &out).await?;
                Ok(Sent {
                    message_id: Some(message_id),
                    to: to.to_owned(),
                    document: None,
                })
            }
            "sms" => {
                sms::send(
                    &self.inner.http,
                    &self.inner.config.sms,
                    &address.address,
                    to,
                    body,
                )
                .await?;
                Ok(Sent {
                    message_id: None,
                    to: to.to_owned(),
                    document: None,
                })
            }
            "letter" | "fax" => {
                let outbox = self
                    .inner
                    .config
                    .directories
                    .iter()
                    .find(|d| d.address == address.address)
                    .and_then(|d| d.outbox.clone())
                    .ok_or_else(|| {
                        Error::NotConfigured(format!("no outbox directory for {}", address.address))
                    })?;
                let document = letter::write(
                    &self.inner.letter_fonts,
                    &outbox,
                    ctx.interaction,
                    to,
                    subject,
                    body,
                )?;
                Ok(Sent {
                    message_id: None,
                    to: to.to_owned(),
                    document: Some(document),
                })
            }
            other => Err(Error::NotConfigured(format!(
                "{other} interactions are not answered here"
            ))),
        }
    }
}

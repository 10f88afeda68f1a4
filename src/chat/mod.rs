//! Website chat: the hub that opens, resumes and finds chat sessions, and the wiring between
//! them, routing and the agents' consoles. Each chat is one session actor
//! ([`session`]) owning a [`vacd_actors::chat::ChatSession`]; the widget's websocket
//! (`api::chat`) and the console's (`api::console`) only move frames to and from it.
//!
//! Indexes, each with one writer: `sessions` (chat id → actor) and the [`ChatTap`]
//! (interaction → actor) are written by the actors themselves when they start and stop;
//! `consoles` ((tenant, agent) → the console's chat frames) by the console sockets.

mod session;

/// The last frame of a visitor connection that a newer one of the same chat pushed out (a
/// visitor has at most 8); its socket then closes with code 4409.
pub const REPLACED: &str = r#"{"type":"chat.replaced"}"#;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use serde_json::Value as Json;
use tokio::sync::{mpsc, oneshot};
use vacd_actors::chat::{ChatConfig, ChatError, ChatInput};
use vacd_actors::{AgentId, Output};

use crate::api::auth::{random_token, token_hash};
use crate::catalog::Role;
use crate::config::ChatSettings;
use crate::rate_limit::SharedLimit;
use crate::routing::RoutingHandle;
use crate::store::{self, ChatRow, ChatWidget, NewChat, Principal, Store};

use session::{ChatMsg, Mailbox, StaffCommand};

/// Longest `client_id` of a chat message, in characters.
pub const MAX_CLIENT_ID: usize = 64;

/// Why `id` cannot be a chat message's `client_id`, if it cannot: longer than
/// [`MAX_CLIENT_ID`] characters (cut short, two ids alike in their first characters would be
/// one message sent twice), or holding control characters (PostgreSQL stores no NUL: the
/// message could never be stored).
pub fn client_id_problem(id: &str) -> Option<String> {
    if id.chars().count() > MAX_CLIENT_ID {
        Some(format!(
            "`client_id` is longer than {MAX_CLIENT_ID} characters"
        ))
    } else if id.chars().any(char::is_control) {
        Some("`client_id` holds control characters".into())
    } else {
        None
    }
}

/// Why a chat could not be opened, resumed or commanded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no chat has this resume token")]
    UnknownSession,
    #[error("this chat has ended")]
    Ended,
    #[error("no chat {0} of this tenant is open")]
    NoChat(u64),
    #[error("{0}")]
    Refused(#[from] ChatError),
    #[error("{0}")]
    Invalid(String),
    #[error("only supervisors and team leads may monitor chats")]
    Forbidden,
    #[error("store: {0}")]
    Store(#[from] store::Error),
    #[error("the chat is shutting down")]
    Gone,
}

impl Error {
    /// The stable code sent to clients.
    pub fn code(&self) -> &'static str {
        match self {
            Error::UnknownSession => "unknown_session",
            Error::Ended => "chat_ended",
            Error::NoChat(_) => "unknown_chat",
            Error::Refused(e) => e.code(),
            Error::Invalid(_) => "invalid_command",
            Error::Forbidden => "forbidden",
            // Routing's writes are behind (the database is down or slow): try again shortly.
            Error::Store(store::Error::JournalBehind) | Error::Gone => "unavailable",
            Error::Store(_) => "store_failed",
        }
    }
}

/// Routing outputs about chats, for their session actors (interaction → actor, with its
/// tenant).
#[derive(Clone, Default)]
pub struct ChatTap {
    chats: Arc<DashMap<u64, (i64, Mailbox)>>,
}

impl ChatTap {
    /// Hands every output about a live chat to its actor.
    pub fn forward(&self, outputs: &[Output]) {
        if self.chats.is_empty() {
            return;
        }
        for output in outputs {
            let Some(interaction) = output.interaction() else {
                continue;
            };
            if let Some(entry) = self.chats.get(&interaction.0) {
                let _ = entry.1.send(ChatMsg::Routed(output.clone()));
            }
        }
    }
}

/// A visitor's connection to a chat: its frames arrive on `events`; dropping it detaches.
pub struct Attached {
    pub chat: i64,
    pub events: mpsc::UnboundedReceiver<String>,
    conn: u64,
    actor: Mailbox,
    stopping: Arc<AtomicBool>,
}

impl Attached {
    /// Feeds one of the visitor's inputs to the chat. The chat's actor gone: the chat ended —
    /// or vacd is stopping (`unavailable`: a message is sent again after the restart).
    pub async fn input(&self, input: ChatInput) -> Result<(), Error> {
        let gone = || {
            if self.stopping.load(Ordering::Relaxed) {
                Error::Gone
            } else {
                Error::Ended
            }
        };
        let (reply, done) = oneshot::channel();
        self.actor
            .send(ChatMsg::Input { input, reply })
            .map_err(|_| gone())?;
        done.await.map_err(|_| gone())?.map_err(Error::from)
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let _ = self.actor.send(ChatMsg::Detach { conn: self.conn });
    }
}

/// A console's chat frames; dropping it unregisters them (unless a newer console took over).
pub struct ConsoleLink {
    pub frames: mpsc::UnboundedReceiver<String>,
    key: (i64, u64),
    generation: u64,
    hub: Arc<Inner>,
}

/// Puts `tx` in `consoles` under `key` unless a newer console (higher `order`) is there; a
/// link left out finds its channel closed, as a replaced console's does.
fn link(
    consoles: &DashMap<(i64, u64), (u64, mpsc::UnboundedSender<String>)>,
    key: (i64, u64),
    order: u64,
    tx: mpsc::UnboundedSender<String>,
) {
    match consoles.entry(key) {
        dashmap::Entry::Occupied(newer) if newer.get().0 > order => {
            tracing::debug!(
                tenant = key.0,
                agent = key.1,
                "a newer console has the chat frames"
            );
        }
        dashmap::Entry::Occupied(mut older) => {
            older.insert((order, tx));
        }
        dashmap::Entry::Vacant(free) => {
            free.insert((order, tx));
        }
    }
}

impl Drop for ConsoleLink {
    fn drop(&mut self) {
        self.hub
            .consoles
            .remove_if(&self.key, |_, (generation, _)| {
                *generation == self.generation
            });
    }
}

/// Who opens a chat, as the widget's `chat.start` says.
pub struct Visitor {
    pub name: String,
    pub email: Option<String>,
    /// The key the visitor's browser keeps for the widget: its anonymous chats find one
    /// customer.
    pub key: Option<String>,
}

#[derive(Clone)]
pub struct ChatHub {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    store: Store,
    routing: RoutingHandle,
    tap: ChatTap,
    rules: ChatConfig,
    sessions: DashMap<i64, Mailbox>,
    consoles: DashMap<(i64, u64), (u64, mpsc::UnboundedSender<String>)>,
    next_id: AtomicU64,
    /// New chats, visitor messages and widget reads, per source address.
    starts: SharedLimit,
    messages: SharedLimit,
    widget_reads: SharedLimit,
    /// How often a visitor's socket is pinged (`chat.ping_interval_seconds`).
    ping_every: Duration,
    /// vacd is stopping: a chat's actor gone now is no chat ended (it goes on after the
    /// restart).
    stopping: Arc<AtomicBool>,
}

impl Inner {
    /// Sends a frame to an agent's console, if it is connected.
    pub(crate) fn to_console(&self, tenant: i64, agent: AgentId, frame: String) {
        if let Some(console) = self.consoles.get(&(tenant, agent.0)) {
            let _ = console.1.send(frame);
        }
    }

    fn next(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

impl ChatHub {
    pub fn new(
        store: Store,
        routing: RoutingHandle,
        tap: ChatTap,
        rules: ChatConfig,
        settings: &ChatSettings,
    ) -> ChatHub {
        ChatHub {
            inner: Arc::new(Inner {
                store,
                routing,
                tap,
                rules,
                sessions: DashMap::new(),
                consoles: DashMap::new(),
                next_id: AtomicU64::new(1),
                stopping: Arc::default(),
                ping_every: Duration::from_secs(settings.ping_interval_seconds),
                starts: SharedLimit::new(settings.starts_per_second_per_ip, "new chats (refused)"),
                messages: SharedLimit::new(
                    settings.messages_per_second_per_ip,
                    "chat messages (refused)",
                ),
                widget_reads: SharedLimit::new(
                    settings.widget_reads_per_second_per_ip,
                    "widget reads (refused)",
                ),
            }),
        }
    }

    /// Brings back the chats that were open when vacd stopped, with their transcripts. A chat
    /// whose interaction routing had finished (ended by its agent as vacd stopped) is ended
    /// instead: nobody would ever answer it.
    pub async fn restore(&self) -> Result<usize, Error> {
        let chats = self.inner.store.open_chats().await?;
        let mut restored = 0;
        for (chat, live) in chats {
            if !live {
                self.end_over(&chat).await?;
                continue;
            }
            match session::spawn(&self.inner, chat.clone(), None).await {
                Ok(_) => restored += 1,
                Err(e) => tracing::warn!(chat = chat.id, error = %e, "chat not restored"),
            }
        }
        Ok(restored)
    }

    /// Opens a chat on `widget` for `visitor`; the resume token and the visitor's connection.
    pub async fn open(
        &self,
        widget: &ChatWidget,
        visitor: Visitor,
        topic: Option<String>,
        language: Option<String>,
    ) -> Result<(String, Attached), Error> {
        let token = random_token();
        let new = NewChat {
            tenant: widget.tenant_id,
            service_address: widget.service_address_id,
            token_hash: token_hash(&token),
            visitor_name: visitor.name,
            visitor_email: visitor.email,
            visitor_key: visitor.key,
            topic,
            language,
        };
        let id = self.inner.store.open_chat(&new).await?;
        let chat = ChatRow {
            id,
            tenant: new.tenant,
            service_address: new.service_address,
            interaction: None,
            customer: None,
            visitor_name: new.visitor_name,
            visitor_email: new.visitor_email,
            visitor_key: new.visitor_key,
            topic: new.topic,
            language: new.language,
            open: true,
        };
        tracing::info!(tenant = chat.tenant, chat = id, "chat opened");
        let actor = session::spawn(&self.inner, chat, Some(widget.clone())).await?;
        Ok((token, self.attach(id, actor).await?))
    }

    /// How often a visitor's socket is pinged; one silent for two of these is gone.
    pub fn ping_every(&self) -> Duration {
        self.inner.ping_every
    }

    /// Whether `source` may open another chat now.
    pub fn may_start(&self, source: IpAddr) -> bool {
        self.inner.starts.admit(source).is_ok()
    }

    /// Whether `source` may send another visitor message now.
    pub fn may_send(&self, source: IpAddr) -> bool {
        self.inner.messages.admit(source).is_ok()
    }

    /// Whether `source` may read a widget's settings again now.
    pub fn may_read_widget(&self, source: IpAddr) -> bool {
        self.inner.widget_reads.admit(source).is_ok()
    }

    /// Returns to the chat of a resume token.
    pub async fn resume(&self, token: &str) -> Result<Attached, Error> {
        let chat = self
            .inner
            .store
            .chat_by_token(&token_hash(token))
            .await?
            .ok_or(Error::UnknownSession)?;
        if !chat.open {
            return Err(Error::Ended);
        }
        let id = chat.id;
        let actor = match self.inner.sessions.get(&id).map(|a| a.clone()) {
            Some(actor) => actor,
            None => {
                // Its session is gone. If routing finished its interaction meanwhile (the
                // chat's end was not stored), nobody would answer it again: it ends now.
                self.inner.routing.caught_up().await?;
                if !self.inner.store.chat_live(id).await? {
                    self.end_over(&chat).await?;
                    return Err(Error::Ended);
                }
                session::spawn(&self.inner, chat, None).await?
            }
        };
        self.attach(id, actor).await
    }

    /// Ends an open chat whose interaction routing has finished.
    async fn end_over(&self, chat: &ChatRow) -> Result<(), Error> {
        tracing::info!(
            chat = chat.id,
            interaction = chat.interaction,
            "chat over while its end was not stored; ended"
        );
        self.inner.store.end_chat(chat, "system").await?;
        Ok(())
    }

    async fn attach(&self, chat: i64, actor: Mailbox) -> Result<Attached, Error> {
        let (tx, events) = mpsc::unbounded_channel();
        let conn = self.inner.next();
        let (reply, done) = oneshot::channel();
        actor
            .send(ChatMsg::Attach {
                conn,
                events: tx,
                reply,
            })
            .map_err(|_| Error::Ended)?;
        done.await.map_err(|_| Error::Ended)?;
        Ok(Attached {
            chat,
            events,
            conn,
            actor,
            stopping: self.inner.stopping.clone(),
        })
    }

    /// Sends a frame to an agent's console, if it is connected (the written channels tell it
    /// of a customer's new message this way).
    pub fn to_console(&self, tenant: i64, agent: AgentId, frame: String) {
        self.inner.to_console(tenant, agent, frame);
    }

    /// Registers an agent's console for chat frames, replacing an older one of the agent, and
    /// has the chats it takes part in as a guest or monitor send it their transcripts;
    /// `order` is the console's routing session's ([`vacd_actors::AgentSession::order`]), so
    /// that of two consoles connecting at once the one routing took last gets the frames,
    /// whichever links first. `role` is the agent's now: one no longer a supervisor or team lead
    /// is let go from the chats it monitored.
    pub fn link_console(&self, tenant: i64, agent: AgentId, role: Role, order: u64) -> ConsoleLink {
        let key = (tenant, agent.0);
        let (tx, frames) = mpsc::unbounded_channel();
        link(&self.inner.consoles, key, order, tx);
        // Chats the agent joined as a guest or monitor are the chats', not routing's: the new
        // console (a reload, say) gets their transcripts from them, as when it joined.
        for chat in self.inner.tap.chats.iter() {
            if chat.0 == tenant {
                let _ = chat.1.send(ChatMsg::ConsoleLinked { user: agent, role });
            }
        }
        ConsoleLink {
            frames,
            key,
            generation: order,
            hub: self.inner.clone(),
        }
    }

    /// Carries out a console's `chat.*` command (`frame` is the whole command).
    pub async fn command(&self, who: Principal, frame: &Json) -> Result<(), Error> {
        let kind = frame["type"].as_str().unwrap_or_default();
        let interaction = frame["interaction"]
            .as_u64()
            .ok_or_else(|| Error::Invalid("a chat command needs the `interaction`".into()))?;
        let text = |key: &str| frame[key].as_str().map(str::to_owned);
        let command = match kind {
            "chat.send" => StaffCommand::Send {
                text: text("text").ok_or_else(|| Error::Invalid("`text` is missing".into()))?,
                client_id: match text("client_id") {
                    Some(id) => match client_id_problem(&id) {
                        Some(problem) => return Err(Error::Invalid(problem)),
                        None => Some(id),
                    },
                    None => None,
                },
                whisper: frame["whisper"].as_bool().unwrap_or(false),
            },
            "chat.typing" => StaffCommand::Typing {
                on: frame["on"].as_bool().unwrap_or(true),
            },
            "chat.read" => StaffCommand::Read {
                up_to: frame["up_to"]
                    .as_i64()
                    .ok_or_else(|| Error::Invalid("`up_to` is missing".into()))?,
            },
            "chat.invite" => {
                let agent = frame["agent"]
                    .as_u64()
                    .ok_or_else(|| Error::Invalid("`agent` is missing".into()))?;
                let name = self
                    .inner
                    .store
                    .user_name(who.tenant_id, AgentId(agent))
                    .await?
                    .ok_or_else(|| Error::Invalid(format!("no agent {agent} in this tenant")))?;
                StaffCommand::Invite {
                    agent: AgentId(agent),
                    name,
                }
            }
            "chat.monitor" => {
                let reach = match who.role {
                    Role::Agent => false,
                    // A team lead watches their own team's chats only.
                    Role::TeamLead => {
                        self.inner
                            .store
                            .worked_in_team_of(who.tenant_id, who.user_id, interaction as i64)
                            .await?
                    }
                    Role::Supervisor | Role::Admin => true,
                };
                if !reach {
                    return Err(Error::Forbidden);
                }
                let name = self
                    .inner
                    .store
                    .user_name(who.tenant_id, AgentId(who.user_id as u64))
                    .await?
                    .unwrap_or_default();
                StaffCommand::Monitor { name }
            }
            "chat.takeover" => StaffCommand::TakeOver,
            "chat.leave" => StaffCommand::Leave,
            "chat.transcript" => StaffCommand::Transcript,
            "chat.end" => StaffCommand::End,
            other => return Err(Error::Invalid(format!("unknown chat command `{other}`"))),
        };
        let actor = self
            .inner
            .tap
            .chats
            .get(&interaction)
            .filter(|entry| entry.0 == who.tenant_id)
            .map(|entry| entry.1.clone())
            .ok_or(Error::NoChat(interaction))?;
        let (reply, done) = oneshot::channel();
        actor
            .send(ChatMsg::Staff {
                user: AgentId(who.user_id as u64),
                role: who.role,
                command,
                reply,
            })
            .map_err(|_| Error::NoChat(interaction))?;
        done.await.map_err(|_| Error::Gone)?
    }

    /// Live chat sessions (for metrics and tests).
    pub fn live(&self) -> usize {
        self.inner.sessions.len()
    }

    /// Stops every chat actor (their visitors' sockets close; the chats stay open in the store
    /// and come back with [`restore`](Self::restore)).
    pub fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::Relaxed);
        for entry in self.inner.sessions.iter() {
            let _ = entry.value().send(ChatMsg::Stop);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Of two consoles of an agent connecting at once, the one routing took last keeps the chat
    /// frames, whichever links first.
    #[test]
    fn the_newer_console_keeps_the_chat_frames_whichever_links_first() {
        let consoles = DashMap::new();
        let key = (1, 7);
        let (newer, mut to_newer) = mpsc::unbounded_channel();
        let (older, mut to_older) = mpsc::unbounded_channel();
        link(&consoles, key, 2, newer);
        link(&consoles, key, 1, older);
        let linked = consoles.get(&key).map(|entry| entry.0);
        assert_eq!(linked, Some(2));
        if let Some(entry) = consoles.get(&key) {
            entry
                .1
                .send("frame".to_owned())
                .expect("the newer console listens");
        }
        assert_eq!(to_newer.try_recv().ok().as_deref(), Some("frame"));
        assert!(to_older.try_recv().is_err(), "the older one is left out");
        // In the usual order the newer one replaces the older.
        let (newest, _) = mpsc::unbounded_channel();
        link(&consoles, key, 3, newest);
        assert_eq!(consoles.get(&key).map(|entry| entry.0), Some(3));
    }
}

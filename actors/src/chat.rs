//! The chat protocol as a state machine: one [`ChatSession`] per chat, fed inputs with the time
//! they happened ([`ChatSession::handle`]) and drained of what to do ([`ChatOutput`]): store a
//! message, send an event to a party, end the chat. Sockets, the store and routing are not here;
//! the server's chat actor moves frames and rows around it, so the rules — who sees what, when a
//! message counts as sent, when an idle visitor is warned and let go, when a chat nobody is in
//! ends — are tested without I/O.
//!
//! Parties: the visitor (one party, however many browser tabs), agents (routing connects them;
//! others join by invitation) and supervisors, who are invisible to the visitor until they take
//! over. A supervisor's message marked `whisper` — and every message of a supervisor who has not
//! taken over — reaches agents and supervisors only.
//!
//! A message is sent in two steps so that nothing is acknowledged before it is stored: `Say`
//! checks it and asks for it to be stored ([`ChatOutput::Store`]); `Stored` acknowledges it to its
//! author and delivers it. A repeated client message id (a resend after a reconnect) is
//! acknowledged again with the stored message and delivered to no one.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::ids::AgentId;

/// Who takes part in a chat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Party {
    /// The website visitor.
    Visitor,
    /// An agent (connected by routing, or invited).
    Agent(AgentId),
    /// A supervisor: invisible to the visitor until it takes over.
    Supervisor(AgentId),
}

/// Settings of the chat rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatConfig {
    /// A visitor silent this long while an agent is with them is warned.
    pub idle_warning: Duration,
    /// A visitor silent this long (including the warning) is let go.
    pub idle_timeout: Duration,
    /// Longest message text, in characters.
    pub max_message_chars: usize,
    /// Messages a party may send in a burst, and how many come back per second.
    pub burst: u32,
    pub per_second: u32,
    /// Messages kept in memory for joiners and resumes (the store keeps all of them).
    pub transcript_limit: usize,
}

impl Default for ChatConfig {
    fn default() -> ChatConfig {
        ChatConfig {
            idle_warning: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(420),
            max_message_chars: 4000,
            burst: 10,
            per_second: 2,
            transcript_limit: 200,
        }
    }
}

/// A stored message, as parties see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Its row id in the store.
    pub id: i64,
    /// Its author.
    pub author: Party,
    /// The author's display name.
    pub name: String,
    /// The text.
    pub text: String,
    /// Unix milliseconds, when it was stored.
    pub at: i64,
    /// The author's own id for it (de-duplication).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Seen by agents and supervisors only.
    pub whisper: bool,
}

/// A message to store, asked for by [`ChatOutput::Store`]; give it back with `Stored`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    pub author: Party,
    pub name: String,
    pub text: String,
    pub client_id: Option<String>,
    pub whisper: bool,
}

/// Why a chat ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The visitor closed it.
    Visitor,
    /// An agent ended it.
    Agent,
    /// The visitor stayed silent past the idle timeout.
    Idle,
    /// It left the queue without reaching an agent, or vacd could not route it.
    System,
}

/// What a party is told. Serialized as the frame sent to it (`type` tag).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum ChatEvent {
    /// A message.
    #[serde(rename = "chat.message")]
    Message {
        #[serde(flatten)]
        message: ChatMessage,
    },
    /// The party's message was stored; `message` is the stored one.
    #[serde(rename = "chat.ack")]
    Ack {
        client_id: Option<String>,
        message: ChatMessage,
    },
    /// Someone started or stopped typing.
    #[serde(rename = "chat.typing")]
    Typing {
        party: Party,
        name: String,
        on: bool,
    },
    /// Someone has read everything up to message `up_to`.
    #[serde(rename = "chat.read")]
    Read { party: Party, up_to: i64 },
    /// Someone joined.
    #[serde(rename = "chat.joined")]
    Joined { party: Party, name: String },
    /// Someone left.
    #[serde(rename = "chat.left")]
    Left { party: Party, name: String },
    /// The messages so far (sent to a party that joins or resumes); the newest of them the
    /// party has told it read (`chat.read`; 0: none): a reloaded client counts as unread only
    /// what came after it; and the newest the other side has read — for the visitor the
    /// furthest read of the staff it sees, for staff the visitor's — for the read receipts.
    #[serde(rename = "chat.transcript")]
    Transcript {
        messages: Vec<ChatMessage>,
        read_up_to: i64,
        others_read_up_to: i64,
    },
    /// The visitor will be let go in `ends_in_ms` unless they write.
    #[serde(rename = "chat.idle_warning")]
    IdleWarning { ends_in_ms: u64 },
    /// The chat is over.
    #[serde(rename = "chat.ended")]
    Ended { reason: EndReason },
}

/// What the session asks its owner to do.
#[derive(Clone, Debug, PartialEq)]
pub enum ChatOutput {
    /// Store this message, then feed `Stored` back.
    Store(NewMessage),
    /// Send this event to every connection of `to`.
    Send { to: Party, event: ChatEvent },
    /// The chat ended: close its interaction and its connections.
    Ended(EndReason),
}

/// An input to a chat session.
#[derive(Clone, Debug, PartialEq)]
pub enum ChatInput {
    /// A party joins (routing connected an agent, an invitation, a monitoring supervisor).
    /// A `guest` (an agent another agent invited) may talk and leave, not end the chat.
    Join {
        party: Party,
        name: String,
        guest: bool,
    },
    /// A party leaves (transferred away, stopped monitoring).
    Leave { party: Party },
    /// The visitor's first connection opened (`true`), or its last one closed (`false`).
    Visitor { connected: bool },
    /// A party sends a message.
    Say {
        from: Party,
        client_id: Option<String>,
        text: String,
        whisper: bool,
    },
    /// A message asked for by [`ChatOutput::Store`] is stored.
    Stored { message: ChatMessage },
    /// A message asked for by [`ChatOutput::Store`] could not be stored (its author was told
    /// to send it again): a copy sent again with the same `client_id` is stored afresh.
    NotStored {
        author: Party,
        client_id: Option<String>,
    },
    /// A party started or stopped typing.
    Typing { from: Party, on: bool },
    /// A party has read up to a message.
    Read { from: Party, up_to: i64 },
    /// A supervisor takes over: the visitor sees them from now on.
    TakeOver { supervisor: AgentId },
    /// A party (the visitor, or an agent) ends the chat.
    End { by: Party },
}

/// Why an input was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    #[error("the chat has ended")]
    Ended,
    #[error("you are not part of this chat")]
    NotParticipant,
    #[error("a message needs text")]
    Empty,
    #[error("the message is longer than {0} characters")]
    TooLong(usize),
    #[error("too many messages; slow down")]
    RateLimited,
    #[error("only a supervisor may do this")]
    NotSupervisor,
    #[error("an invited agent may leave the chat, not end it")]
    Guest,
    #[error(
        "the chat's own agent transfers or ends it; leaving is for invited agents and supervisors"
    )]
    Owner,
}

impl ChatError {
    /// The stable code sent to clients.
    pub fn code(&self) -> &'static str {
        match self {
            ChatError::Ended => "chat_ended",
            ChatError::NotParticipant => "not_participant",
            ChatError::Empty => "empty_message",
            ChatError::TooLong(_) => "message_too_long",
            ChatError::RateLimited => "rate_limited",
            ChatError::NotSupervisor => "not_supervisor",
            ChatError::Guest => "invited_guest",
            ChatError::Owner => "own_chat",
        }
    }
}

/// How a member of staff takes part in a chat ([`ChatSession::staff_role`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StaffRole {
    /// The agent routing gave the chat to.
    Owner,
    /// An agent another one invited.
    Guest,
    /// A supervisor the visitor does not see.
    Monitor,
    /// A supervisor who took the chat over (the visitor sees them).
    TookOver,
}

#[derive(Clone, Debug)]
struct Participant {
    name: String,
    /// Seen by the visitor (always for agents and the visitor; supervisors after a takeover).
    visible: bool,
    /// Invited by another agent: may not end the chat.
    guest: bool,
    /// Token bucket of its messages: tokens left and when it was last refilled.
    tokens: u32,
    refilled: Instant,
    /// Shown as typing to the others (its last typing input was `on`).
    typing: bool,
    /// When the others were last told it started typing: at most once per [`TYPING_EVERY`].
    typing_told: Option<Instant>,
    /// The highest message it was last told the others it has read.
    read_told: i64,
    /// The same as the visitor was told it: the newest message the visitor sees up to
    /// `read_told` — a whisper's id would tell the visitor that there are messages it does not
    /// see.
    read_shown: i64,
}

/// How often the others may be told that a participant started typing: a client switching
/// typing on and off as fast as it can must not flood the consoles.
pub const TYPING_EVERY: Duration = Duration::from_secs(1);

/// One chat's rules and memory.
#[derive(Debug)]
pub struct ChatSession {
    config: ChatConfig,
    participants: BTreeMap<Party, Participant>,
    /// Recent messages, oldest first (at most `transcript_limit`).
    transcript: VecDeque<ChatMessage>,
    /// Client ids asked to be stored and not yet stored.
    storing: Vec<(Party, String)>,
    /// When the visitor last wrote or typed.
    visitor_active: Instant,
    warned: bool,
    /// Since when no connection of the visitor has been open (`None` while one is).
    visitor_gone: Option<Instant>,
    ended: Option<EndReason>,
    outputs: VecDeque<ChatOutput>,
}

impl ChatSession {
    /// A new chat with the visitor `visitor_name`, and the messages it already has (when a chat
    /// is restored after a restart).
    pub fn new(
        config: ChatConfig,
        visitor_name: String,
        history: Vec<ChatMessage>,
        now: Instant,
    ) -> ChatSession {
        let mut session = ChatSession {
            participants: BTreeMap::new(),
            transcript: VecDeque::new(),
            storing: Vec::new(),
            visitor_active: now,
            warned: false,
            visitor_gone: Some(now),
            ended: None,
            outputs: VecDeque::new(),
            config,
        };
        session.add(Party::Visitor, visitor_name, false, now);
        for message in history {
            session.remember(message);
        }
        session
    }

    /// Whether the chat is over.
    /// Whether `party` is an agent the chat was routed to (not a guest, not a supervisor).
    pub fn is_owner(&self, party: Party) -> bool {
        matches!(party, Party::Agent(_)) && self.participants.get(&party).is_some_and(|p| !p.guest)
    }

    /// How `party`, a member of staff, takes part: `None` for the visitor and for someone not in
    /// the chat.
    pub fn staff_role(&self, party: Party) -> Option<StaffRole> {
        let p = self.participants.get(&party)?;
        Some(match party {
            Party::Visitor => return None,
            Party::Agent(_) if p.guest => StaffRole::Guest,
            Party::Agent(_) => StaffRole::Owner,
            Party::Supervisor(_) if p.visible => StaffRole::TookOver,
            Party::Supervisor(_) => StaffRole::Monitor,
        })
    }

    pub fn ended(&self) -> Option<EndReason> {
        self.ended
    }

    /// The agents with the visitor now (not supervisors).
    pub fn agents(&self) -> impl Iterator<Item = AgentId> + '_ {
        self.participants.keys().filter_map(|p| match p {
            Party::Agent(a) => Some(*a),
            _ => None,
        })
    }

    /// Whether `party` takes part.
    pub fn has(&self, party: Party) -> bool {
        self.participants.contains_key(&party)
    }

    /// The name `party` takes part under, if it does.
    pub fn name_of(&self, party: Party) -> Option<String> {
        self.participants.get(&party).map(|p| p.name.clone())
    }

    /// The parties and everything they may see, to send a (re)connecting party: the transcript
    /// as it may see it.
    pub fn transcript_for(&self, party: Party) -> ChatEvent {
        ChatEvent::Transcript {
            messages: self
                .transcript
                .iter()
                .filter(|m| party != Party::Visitor || self.visitor_sees(m))
                .cloned()
                .collect(),
            read_up_to: self.participants.get(&party).map_or(0, |p| p.read_told),
            others_read_up_to: self
                .participants
                .iter()
                .filter(|(other, p)| match party {
                    Party::Visitor => **other != Party::Visitor && p.visible,
                    _ => **other == Party::Visitor,
                })
                .map(|(_, p)| match party {
                    Party::Visitor => p.read_shown,
                    _ => p.read_told,
                })
                .max()
                .unwrap_or(0),
        }
    }

    /// Next output to carry out. Once all are out the queue gives its buffer back, so that an
    /// idle chat holds none.
    pub fn poll_output(&mut self) -> Option<ChatOutput> {
        let output = self.outputs.pop_front();
        if output.is_none() {
            self.outputs = VecDeque::new();
        }
        output
    }

    /// When [`handle_timeout`](Self::handle_timeout) should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ended.is_some() {
            return None;
        }
        if self.agents().next().is_none() {
            return self
                .visitor_gone
                .map(|since| since + self.config.idle_timeout);
        }
        Some(if self.warned {
            self.visitor_active + self.config.idle_timeout
        } else {
            self.visitor_active + self.config.idle_warning
        })
    }

    /// Warns, then lets go, a visitor who stays silent while an agent is with them; ends a chat
    /// without an agent whose visitor has had no connection open for the idle timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ended.is_some() {
            return;
        }
        if self.agents().next().is_none() {
            let gone = self
                .visitor_gone
                .map(|since| now.saturating_duration_since(since));
            if gone.is_some_and(|gone| gone >= self.config.idle_timeout) {
                self.end(EndReason::Idle);
            }
            return;
        }
        let silent = now.saturating_duration_since(self.visitor_active);
        if silent >= self.config.idle_timeout {
            self.end(EndReason::Idle);
        } else if silent >= self.config.idle_warning && !self.warned {
            self.warned = true;
            let left = self.config.idle_timeout - silent;
            let event = ChatEvent::IdleWarning {
                ends_in_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
            };
            self.send_all(|_| true, &event);
        }
    }

    /// Applies one input.
    pub fn handle(&mut self, input: ChatInput, now: Instant) -> Result<(), ChatError> {
        if self.ended.is_some() {
            return Err(ChatError::Ended);
        }
        match input {
            ChatInput::Join { party, name, guest } => {
                if let Some(participant) = self.participants.get_mut(&party) {
                    // A guest the chat is then routed to (transferred) becomes its owner.
                    if participant.guest && !guest {
                        participant.guest = false;
                        return Ok(());
                    }
                    // Joining again (a console that lost its panel: reloaded, reconnected)
                    // brings the transcript back; the others see nothing.
                    self.push(party, self.transcript_for(party));
                    return Ok(());
                }
                self.add(party, name.clone(), guest, now);
                self.push(party, self.transcript_for(party));
                let visible = !matches!(party, Party::Supervisor(_));
                let event = ChatEvent::Joined { party, name };
                self.send_others(party, visible, &event);
            }
            ChatInput::Leave { party } => {
                self.stop_typing(party);
                let left = self
                    .participants
                    .remove(&party)
                    .ok_or(ChatError::NotParticipant)?;
                self.storing.retain(|(p, _)| *p != party);
                let event = ChatEvent::Left {
                    party,
                    name: left.name,
                };
                self.send_others(party, left.visible, &event);
            }
            ChatInput::Say {
                from,
                client_id,
                text,
                whisper,
            } => self.say(from, client_id, text, whisper, now)?,
            ChatInput::Stored { message } => self.stored(message),
            ChatInput::Visitor { connected } => {
                if !connected {
                    self.stop_typing(Party::Visitor);
                }
                self.visitor_gone = match (connected, self.visitor_gone) {
                    (true, _) => None,
                    (false, since) => since.or(Some(now)),
                };
            }
            ChatInput::NotStored { author, client_id } => {
                if let Some(id) = client_id {
                    self.storing.retain(|(p, c)| !(*p == author && *c == id));
                }
            }
            ChatInput::Typing { from, on } => {
                let participant = self
                    .participants
                    .get_mut(&from)
                    .ok_or(ChatError::NotParticipant)?;
                // Told on a change only, and a start at most once per TYPING_EVERY (a stop
                // always, or the others would see it typing on).
                let recently = participant
                    .typing_told
                    .is_some_and(|at| now.saturating_duration_since(at) < TYPING_EVERY);
                if participant.typing == on || (on && recently) {
                    if from == Party::Visitor {
                        self.active(now);
                    }
                    return Ok(());
                }
                participant.typing = on;
                if on {
                    participant.typing_told = Some(now);
                }
                let (visible, name) = (participant.visible, participant.name.clone());
                if from == Party::Visitor {
                    self.active(now);
                }
                self.send_others(
                    from,
                    visible,
                    &ChatEvent::Typing {
                        party: from,
                        name,
                        on,
                    },
                );
            }
            ChatInput::Read { from, up_to } => {
                // Told only when it reaches a message of the chat's it had not reached: a read
                // again (or of a message that does not exist) tells nobody anything.
                let newest = self.transcript.back().map_or(0, |m| m.id);
                let participant = self
                    .participants
                    .get_mut(&from)
                    .ok_or(ChatError::NotParticipant)?;
                let up_to = up_to.min(newest);
                if up_to <= participant.read_told {
                    return Ok(());
                }
                participant.read_told = up_to;
                let shown_before = participant.read_shown;
                let visible = participant.visible;
                let read = ChatEvent::Read { party: from, up_to };
                if from == Party::Visitor {
                    self.send_others(from, visible, &read);
                    return Ok(());
                }
                self.send_all(|to| to != from && to != Party::Visitor, &read);
                let shown = self
                    .transcript
                    .iter()
                    .rev()
                    .find(|m| m.id <= up_to && self.visitor_sees(m))
                    .map_or(0, |m| m.id);
                if visible
                    && shown > shown_before
                    && self.participants.contains_key(&Party::Visitor)
                {
                    if let Some(participant) = self.participants.get_mut(&from) {
                        participant.read_shown = shown;
                    }
                    self.push(
                        Party::Visitor,
                        ChatEvent::Read {
                            party: from,
                            up_to: shown,
                        },
                    );
                }
            }
            ChatInput::TakeOver { supervisor } => {
                let party = Party::Supervisor(supervisor);
                let participant = self
                    .participants
                    .get_mut(&party)
                    .ok_or(ChatError::NotParticipant)?;
                if !participant.visible {
                    participant.visible = true;
                    let event = ChatEvent::Joined {
                        party,
                        name: participant.name.clone(),
                    };
                    self.push(Party::Visitor, event);
                }
            }
            ChatInput::End { by } => {
                match self.participants.get(&by) {
                    None => return Err(ChatError::NotParticipant),
                    Some(participant) if participant.guest => return Err(ChatError::Guest),
                    Some(_) => {}
                }
                let reason = match by {
                    Party::Visitor => EndReason::Visitor,
                    Party::Agent(_) | Party::Supervisor(_) => EndReason::Agent,
                };
                self.end(reason);
            }
        }
        Ok(())
    }

    /// Ends the chat for `reason` (also when routing ends it, e.g. an abandon).
    pub fn end(&mut self, reason: EndReason) {
        if self.ended.is_some() {
            return;
        }
        self.ended = Some(reason);
        self.send_all(|_| true, &ChatEvent::Ended { reason });
        self.outputs.push_back(ChatOutput::Ended(reason));
    }

    fn say(
        &mut self,
        from: Party,
        client_id: Option<String>,
        text: String,
        whisper: bool,
        now: Instant,
    ) -> Result<(), ChatError> {
        let config = &self.config;
        let participant = self
            .participants
            .get_mut(&from)
            .ok_or(ChatError::NotParticipant)?;
        if let Some(id) = &client_id {
            if let Some(message) = stored_copy(&self.transcript, from, id) {
                let event = ChatEvent::Ack {
                    client_id: client_id.clone(),
                    message: message.clone(),
                };
                self.push(from, event);
                return Ok(());
            }
            if self.storing.contains(&(from, id.clone())) {
                // The first copy is being stored; its ack answers this one too.
                return Ok(());
            }
        }
        // NUL means nothing in a message, and PostgreSQL's text cannot hold it.
        let text = text.replace('\0', "");
        let text = text.trim();
        if text.is_empty() {
            return Err(ChatError::Empty);
        }
        if text.chars().count() > config.max_message_chars {
            return Err(ChatError::TooLong(config.max_message_chars));
        }
        let refill = now
            .saturating_duration_since(participant.refilled)
            .as_millis()
            * u128::from(config.per_second)
            / 1000;
        if refill > 0 {
            let refill = u32::try_from(refill).unwrap_or(u32::MAX);
            participant.tokens = participant.tokens.saturating_add(refill).min(config.burst);
            participant.refilled = now;
        }
        if participant.tokens == 0 {
            return Err(ChatError::RateLimited);
        }
        participant.tokens -= 1;
        // Whispering is for staff; a supervisor who has not taken over always whispers.
        let whisper = match from {
            Party::Visitor => false,
            Party::Agent(_) => whisper,
            Party::Supervisor(_) => whisper || !participant.visible,
        };
        let name = participant.name.clone();
        if from == Party::Visitor {
            self.active(now);
        }
        if let Some(id) = &client_id {
            self.storing.push((from, id.clone()));
        }
        self.outputs.push_back(ChatOutput::Store(NewMessage {
            author: from,
            name,
            text: text.to_owned(),
            client_id,
            whisper,
        }));
        Ok(())
    }

    fn stored(&mut self, message: ChatMessage) {
        let author = message.author;
        if let Some(id) = &message.client_id {
            self.storing.retain(|(p, c)| !(*p == author && c == id));
        }
        if self.participants.contains_key(&author) {
            let ack = ChatEvent::Ack {
                client_id: message.client_id.clone(),
                message: message.clone(),
            };
            self.push(author, ack);
        }
        let visible = !message.whisper;
        self.send_others(
            author,
            visible,
            &ChatEvent::Message {
                message: message.clone(),
            },
        );
        self.remember(message);
    }

    fn remember(&mut self, message: ChatMessage) {
        self.transcript.push_back(message);
        while self.transcript.len() > self.config.transcript_limit {
            self.transcript.pop_front();
        }
    }

    fn visitor_sees(&self, message: &ChatMessage) -> bool {
        !message.whisper
    }

    /// A party shown as typing that leaves (or whose last connection closes) stops typing for
    /// the others: no indicator outlives its typist.
    fn stop_typing(&mut self, party: Party) {
        let Some(participant) = self.participants.get_mut(&party).filter(|p| p.typing) else {
            return;
        };
        participant.typing = false;
        let (visible, name) = (participant.visible, participant.name.clone());
        let event = ChatEvent::Typing {
            party,
            name,
            on: false,
        };
        self.send_others(party, visible, &event);
    }

    fn add(&mut self, party: Party, name: String, guest: bool, now: Instant) {
        let visible = !matches!(party, Party::Supervisor(_));
        self.participants.insert(
            party,
            Participant {
                name,
                visible,
                guest,
                tokens: self.config.burst,
                refilled: now,
                typing: false,
                typing_told: None,
                read_told: 0,
                read_shown: 0,
            },
        );
        if matches!(party, Party::Agent(_)) && self.agents().count() == 1 {
            // The idle clock starts when the first agent arrives.
            self.active(now);
        }
    }

    fn active(&mut self, now: Instant) {
        self.visitor_active = now;
        self.warned = false;
    }

    /// Sends `event` from `from` to every other party; to the visitor only if `visible`.
    fn send_others(&mut self, from: Party, visible: bool, event: &ChatEvent) {
        self.send_all(|to| to != from && (visible || to != Party::Visitor), event);
    }

    fn send_all(&mut self, to: impl Fn(Party) -> bool, event: &ChatEvent) {
        let parties: Vec<Party> = self
            .participants
            .keys()
            .copied()
            .filter(|p| to(*p))
            .collect();
        for party in parties {
            self.push(party, event.clone());
        }
    }

    fn push(&mut self, to: Party, event: ChatEvent) {
        self.outputs.push_back(ChatOutput::Send { to, event });
    }
}

/// The stored message `author` sent with `client_id`, if the transcript still holds it.
fn stored_copy<'a>(
    transcript: &'a VecDeque<ChatMessage>,
    author: Party,
    client_id: &str,
) -> Option<&'a ChatMessage> {
    transcript
        .iter()
        .rev()
        .find(|m| m.author == author && m.client_id.as_deref() == Some(client_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: Party = Party::Agent(AgentId(1));
    const BRUNO: Party = Party::Agent(AgentId(2));
    const SAM: Party = Party::Supervisor(AgentId(9));

    struct Chat {
        session: ChatSession,
        now: Instant,
        next_id: i64,
    }

    impl Chat {
        fn new() -> Chat {
            let now = Instant::now();
            Chat {
                session: ChatSession::new(ChatConfig::default(), "Vera".into(), Vec::new(), now),
                now,
                next_id: 1,
            }
        }

        /// Applies `input`, stores whatever it asks to store, and returns what was sent.
        fn run(&mut self, input: ChatInput) -> Result<Vec<(Party, ChatEvent)>, ChatError> {
            self.session.handle(input, self.now)?;
            Ok(self.drain())
        }

        fn drain(&mut self) -> Vec<(Party, ChatEvent)> {
            let mut sent = Vec::new();
            while let Some(output) = self.session.poll_output() {
                match output {
                    ChatOutput::Store(new) => {
                        let message = ChatMessage {
                            id: self.next_id,
                            author: new.author,
                            name: new.name,
                            text: new.text,
                            at: 0,
                            client_id: new.client_id,
                            whisper: new.whisper,
                        };
                        self.next_id += 1;
                        self.session
                            .handle(ChatInput::Stored { message }, self.now)
                            .expect("stored");
                    }
                    ChatOutput::Send { to, event } => sent.push((to, event)),
                    ChatOutput::Ended(_) => {}
                }
            }
            sent
        }

        fn join(&mut self, party: Party, name: &str) {
            self.run(ChatInput::Join {
                party,
                name: name.into(),
                guest: false,
            })
            .expect("joins");
        }

        fn say(&mut self, from: Party, client_id: &str, text: &str) -> Vec<(Party, ChatEvent)> {
            self.run(ChatInput::Say {
                from,
                client_id: Some(client_id.into()),
                text: text.into(),
                whisper: false,
            })
            .expect("said")
        }
    }

    fn messages_to(sent: &[(Party, ChatEvent)], party: Party) -> Vec<String> {
        sent.iter()
            .filter_map(|(to, e)| match e {
                ChatEvent::Message { message } if *to == party => Some(message.text.clone()),
                _ => None,
            })
            .collect()
    }

    fn acks_to(sent: &[(Party, ChatEvent)], party: Party) -> Vec<i64> {
        sent.iter()
            .filter_map(|(to, e)| match e {
                ChatEvent::Ack { message, .. } if *to == party => Some(message.id),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_message_is_acked_after_it_is_stored_and_reaches_the_others() {
        let mut chat = Chat::new();
        chat.join(ALICE, "Alice");
        chat.session
            .handle(
                ChatInput::Say {
                    from: Party::Visitor,
                    client_id: Some("c1".into()),
                    text: "Hello".into(),
                    whisper: false,
                },
                chat.now,
            )
            .expect("said");
        let first = chat.session.poll_output();
        assert!(
            matches!(first, Some(ChatOutput::Store(_))),
            "storing comes first: {first:?}"
        );
        assert_eq!(
            chat.session.poll_output(),
            None,
            "nothing sent before it is stored"
        );
        let Some(ChatOutput::Store(new)) = first else {
            unreachable!()
        };
        let message = ChatMessage {
            id: 7,
            author: new.author,
            name: new.name,
            text: new.text,
            at: 0,
            client_id: new.client_id,
            whisper: false,
        };
        chat.session
            .handle(ChatInput::Stored { message }, chat.now)
            .expect("stored");
        let sent = chat.drain();
        assert_eq!(acks_to(&sent, Party::Visitor), vec![7]);
        assert_eq!(messages_to(&sent, ALICE), vec!["Hello"]);
        assert!(
            messages_to(&sent, Party::Visitor).is_empty(),
            "no echo to the author"
        );
    }

    #[test]
    fn a_message_not_stored_is_stored_when_sent_again() {
        let mut chat = Chat::new();
        chat.join(ALICE, "Alice");
        let say = ChatInput::Say {
            from: Party::Visitor,
            client_id: Some("c1".into()),
            text: "Hello".into(),
            whisper: false,
        };
        chat.session.handle(say.clone(), chat.now).expect("said");
        let Some(ChatOutput::Store(new)) = chat.session.poll_output() else {
            panic!("a store is asked for")
        };
        chat.session
            .handle(
                ChatInput::NotStored {
                    author: new.author,
                    client_id: new.client_id,
                },
                chat.now,
            )
            .expect("not stored");
        chat.session.handle(say, chat.now).expect("said again");
        assert!(
            matches!(chat.session.poll_output(), Some(ChatOutput::Store(new)) if new.text == "Hello"),
            "the copy sent again is stored"
        );
    }

    #[test]
    fn a_chat_without_agent_ends_once_its_visitor_is_gone_for_the_idle_timeout() {
        let mut chat = Chat::new();
        let t0 = chat.now;
        let idle = ChatConfig::default().idle_timeout;
        let visitor = |connected| ChatInput::Visitor { connected };
        assert_eq!(
            chat.session.poll_timeout(),
            Some(t0 + idle),
            "no visitor yet"
        );
        chat.session.handle(visitor(true), t0).expect("attached");
        assert_eq!(chat.session.poll_timeout(), None, "the visitor is there");
        let left = t0 + Duration::from_secs(5);
        chat.session.handle(visitor(false), left).expect("detached");
        assert_eq!(chat.session.poll_timeout(), Some(left + idle));
        chat.session
            .handle_timeout(left + idle - Duration::from_millis(1));
        assert_eq!(chat.session.ended(), None);
        chat.session.handle_timeout(left + idle);
        assert_eq!(chat.session.ended(), Some(EndReason::Idle));
    }

    #[test]
    fn nul_characters_are_dropped_from_a_message() {
        let mut chat = Chat::new();
        chat.join(ALICE, "Alice");
        let say = |text: &str| ChatInput::Say {
            from: Party::Visitor,
            client_id: None,
            text: text.into(),
            whisper: false,
        };
        chat.session.handle(say("He\0llo"), chat.now).expect("said");
        assert!(
            matches!(chat.session.poll_output(), Some(ChatOutput::Store(new)) if new.text == "Hello"),
            "stored without the NUL"
        );
        assert_eq!(
            chat.session.handle(say("\0 \0"), chat.now),
            Err(ChatError::Empty)
        );
    }

    #[test]
    fn a_resent_client_id_is_acked_again_and_delivered_once() {
        let mut chat = Chat::new();
        chat.join(ALICE, "Alice");
        let first = chat.say(Party::Visitor, "c1", "Hello");
        let again = chat.say(Party::Visitor, "c1", "Hello");
        assert_eq!(
            acks_to(&first, Party::Visitor),
            acks_to(&again, Party::Visitor)
        );
        assert!(
            messages_to(&again, ALICE).is_empty(),
            "the resend reaches no one"
        );
        let ChatEvent::Transcript { messages, .. } = chat.session.transcript_for(ALICE) else {
            unreachable!()
        };
        assert_eq!(messages.len(), 1);
    }

    #[test]
    fn a_resend_while_the_first_copy_is_being_stored_waits_for_its_ack() {
        let mut chat = Chat::new();
        let say = ChatInput::Say {
            from: Party::Visitor,
            client_id: Some("c1".into()),
            text: "Hi".into(),
            whisper: false,
        };
        chat.session.handle(say.clone(), chat.now).expect("said");
        chat.session.handle(say, chat.now).expect("said again");
        let stores = std::iter::from_fn(|| chat.session.poll_output())
            .filter(|o| matches!(o, ChatOutput::Store(_)))
            .count();
        assert_eq!(stores, 1);
    }

    #[test]
    fn joiners_get_the_transcript_and_the_visitor_sees_them_join() {
        let mut chat = Chat::new();
        chat.say(Party::Visitor, "c1", "Anyone there?");
        let sent = chat
            .run(ChatInput::Join {
                party: ALICE,
                name: "Alice".into(),
                guest: false,
            })
            .expect("joins");
        assert!(sent.iter().any(|(to, e)| *to == ALICE
            && matches!(e, ChatEvent::Transcript { messages, .. } if messages.len() == 1)));
        assert!(sent.iter().any(|(to, e)| *to == Party::Visitor
            && matches!(e, ChatEvent::Joined { name, .. } if name == "Alice")));
    }

    #[test]
    fn no_typing_indicator_outlives_its_typist() {
        let mut chat = Chat::new();
        chat.join(ALICE, "Alice");
        let typing_off = |sent: &[(Party, ChatEvent)], to: Party, from: Party| {
            sent.iter().any(|(p, e)| {
                *p == to
                    && matches!(e, ChatEvent::Typing { party, on: false, .. } if *party == from)
            })
        };
        chat.run(ChatInput::Typing {
            from: Party::Visitor,
            on: true,
        })
        .expect("typing");
        let sent = chat
            .run(ChatInput::Visitor { connected: false })
            .expect("gone");
        assert!(typing_off(&sent, ALICE, Party::Visitor), "{sent:?}");
        let sent = chat
            .run(ChatInput::Visitor { connected: false })
            .expect("still gone");
        assert!(sent.is_empty(), "told once: {sent:?}");
        chat.run(ChatInput::Typing {
            from: ALICE,
            on: true,
        })
        .expect("typing");
        let sent = chat.run(ChatInput::Leave { party: ALICE }).expect("leaves");
        assert!(typing_off(&sent, Party::Visitor, ALICE), "{sent:?}");
    }

    /// A visitor switching typing on and off, or marking the same message read, as fast as it
    /// can: the agent is told of a start at most once a second, of each stop, and of each
    /// message read once.
    #[test]
    fn typing_and_read_floods_reach_nobody() {
        let mut chat = Chat::new();
        chat.join(ALICE, "Alice");
        chat.say(ALICE, "a1", "Hello");
        chat.say(ALICE, "a2", "How can I help?");
        let typing = |chat: &mut Chat, on| {
            chat.run(ChatInput::Typing {
                from: Party::Visitor,
                on,
            })
            .expect("typing")
            .len()
        };
        let mut told = 0;
        for _ in 0..100 {
            told += typing(&mut chat, true);
            told += typing(&mut chat, false);
        }
        assert_eq!(
            told, 2,
            "one start, its stop; the rest within the second is dropped"
        );
        chat.now += TYPING_EVERY;
        assert_eq!(typing(&mut chat, true), 1, "a second later, a start again");
        assert_eq!(
            typing(&mut chat, true),
            0,
            "typing on while on tells nothing"
        );

        let read = |chat: &mut Chat, up_to| {
            chat.run(ChatInput::Read {
                from: Party::Visitor,
                up_to,
            })
            .expect("read")
        };
        assert_eq!(read(&mut chat, 1).len(), 1);
        for _ in 0..100 {
            assert!(read(&mut chat, 1).is_empty(), "the same read again");
        }
        // Beyond the newest message: told as read up to the newest, once.
        assert!(matches!(
            read(&mut chat, 99).as_slice(),
            [(_, ChatEvent::Read { up_to: 2, .. })]
        ));
        assert!(read(&mut chat, 1000).is_empty());
        // What a party has read comes back with its transcript (a reloaded client's unread).
        let read_up_to = |party| match chat.session.transcript_for(party) {
            ChatEvent::Transcript {
                read_up_to,
                others_read_up_to,
                ..
            } => (read_up_to, others_read_up_to),
            other => panic!("{other:?}"),
        };
        assert_eq!(read_up_to(Party::Visitor), (2, 0));
        assert_eq!(
            read_up_to(ALICE),
            (0, 2),
            "the visitor's read, for alice's receipts"
        );
    }

    /// The visitor is never told a whisper is there: an agent's read receipt reaching one
    /// tells the visitor only of the newest message it sees.
    #[test]
    fn a_read_receipt_tells_the_visitor_of_no_whisper() {
        let mut chat = Chat::new();
        chat.join(ALICE, "Alice");
        chat.join(SAM, "Sam");
        chat.say(Party::Visitor, "v1", "Help");
        chat.run(ChatInput::Say {
            from: SAM,
            client_id: Some("s1".into()),
            text: "Offer the voucher".into(),
            whisper: true,
        })
        .expect("whispered");
        let ChatEvent::Transcript { messages, .. } = chat.session.transcript_for(ALICE) else {
            unreachable!()
        };
        let (help, whisper) = (messages[0].id, messages[1].id);
        let sent = chat
            .run(ChatInput::Read {
                from: ALICE,
                up_to: whisper,
            })
            .expect("read");
        let told = |to: Party| {
            sent.iter().find_map(|(p, e)| match e {
                ChatEvent::Read { up_to, .. } if *p == to => Some(*up_to),
                _ => None,
            })
        };
        assert_eq!(told(SAM), Some(whisper));
        assert_eq!(told(Party::Visitor), Some(help), "{sent:?}");
        let ChatEvent::Transcript {
            others_read_up_to, ..
        } = chat.session.transcript_for(Party::Visitor)
        else {
            unreachable!()
        };
        assert_eq!(others_read_up_to, help);
    }

    #[test]
    fn a_supervisor_is_invisible_and_whispers_until_taking_over() {
        let mut chat = Chat::new();
        chat.join(ALICE, "Alice");
        let sent = chat
            .run(ChatInput::Join {
                party: SAM,
                name: "Sam".into(),
                guest: false,
            })
            .expect("joins");
        assert!(
            sent.iter().all(|(to, _)| *to != Party::Visitor),
            "the visitor is told nothing: {sent:?}"
        );
        let sent = chat.say(Party::Visitor, "v1", "Help");
        assert_eq!(
            messages_to(&sent, SAM),
            vec!["Help"],
            "the supervisor reads along"
        );
        let sent = chat.say(SAM, "s1", "Offer the refund");
        assert_eq!(messages_to(&sent, ALICE), vec!["Offer the refund"]);
        assert!(messages_to(&sent, Party::Visitor).is_empty());
        let typing = chat
            .run(ChatInput::Typing {
                from: SAM,
                on: true,
            })
            .expect("typing");
        assert!(typing.iter().all(|(to, _)| *to != Party::Visitor));
        let ChatEvent::Transcript { messages, .. } = chat.session.transcript_for(Party::Visitor)
        else {
            unreachable!()
        };
        assert_eq!(
            messages.len(),
            1,
            "the whisper is not in the visitor's transcript"
        );

        let sent = chat
            .run(ChatInput::TakeOver {
                supervisor: AgentId(9),
            })
            .expect("takes over");
        assert!(sent.iter().any(|(to, e)| *to == Party::Visitor
            && matches!(e, ChatEvent::Joined { name, .. } if name == "Sam")));
        let sent = chat.say(SAM, "s2", "I am Sam, I can help");
        assert_eq!(
            messages_to(&sent, Party::Visitor),
            vec!["I am Sam, I can help"]
        );
    }

    #[test]
    fn an_agent_may_whisper_and_a_visitor_may_not() {
        let mut chat = Chat::new();
        chat.join(ALICE, "Alice");
        chat.join(BRUNO, "Bruno");
        let sent = chat
            .run(ChatInput::Say {
                from: ALICE,
                client_id: None,
                text: "Can you take this?".into(),
                whisper: true,
            })
            .expect("said");
        assert_eq!(messages_to(&sent, BRUNO), vec!["Can you take this?"]);
        assert!(messages_to(&sent, Party::Visitor).is_empty());
        let sent = chat
            .run(ChatInput::Say {
                from: Party::Visitor,
                client_id: None,
                text: "psst".into(),
                whisper: true,
            })
            .expect("said");
        assert_eq!(messages_to(&sent, ALICE), vec!["psst"]);
    }

    #[test]
    fn strangers_empty_long_and_flooding_messages_are_refused() {
        let mut chat = Chat::new();
        let say = |from, text: &str| ChatInput::Say {
            from,
            client_id: None,
            text: text.into(),
            whisper: false,
        };
        assert_eq!(chat.run(say(BRUNO, "hi")), Err(ChatError::NotParticipant));
        assert_eq!(chat.run(say(Party::Visitor, "  ")), Err(ChatError::Empty));
        let long = "x".repeat(4001);
        assert_eq!(
            chat.run(say(Party::Visitor, &long)),
            Err(ChatError::TooLong(4000))
        );
        for _ in 0..10 {
            chat.run(say(Party::Visitor, "spam"))
                .expect("within the burst");
        }
        assert_eq!(
            chat.run(say(Party::Visitor, "spam")),
            Err(ChatError::RateLimited)
        );
        chat.now += Duration::from_secs(1);
        chat.run(say(Party::Visitor, "later"))
            .expect("tokens came back");
    }

    #[test]
    fn an_idle_visitor_is_warned_then_let_go() {
        let mut chat = Chat::new();
        chat.run(ChatInput::Visitor { connected: true })
            .expect("attached");
        assert_eq!(
            chat.session.poll_timeout(),
            None,
            "no idle clock while waiting"
        );
        chat.join(ALICE, "Alice");
        let warn_at = chat.session.poll_timeout().expect("idle clock runs");
        assert_eq!(warn_at, chat.now + Duration::from_secs(300));
        chat.session.handle_timeout(warn_at);
        let sent = chat.drain();
        assert!(sent.iter().any(|(to, e)| *to == Party::Visitor
            && matches!(
                e,
                ChatEvent::IdleWarning {
                    ends_in_ms: 120_000
                }
            )));
        chat.now = warn_at;
        chat.say(Party::Visitor, "v1", "still here");
        assert_eq!(
            chat.session.poll_timeout(),
            Some(warn_at + Duration::from_secs(300)),
            "writing restarts the clock"
        );
        let end_at = warn_at + Duration::from_secs(420);
        chat.session.handle_timeout(end_at);
        assert_eq!(chat.session.ended(), Some(EndReason::Idle));
        assert_eq!(
            chat.session
                .handle(ChatInput::End { by: Party::Visitor }, end_at),
            Err(ChatError::Ended)
        );
    }

    #[test]
    fn ending_tells_everyone_once() {
        let mut chat = Chat::new();
        chat.join(ALICE, "Alice");
        chat.session
            .handle(ChatInput::End { by: ALICE }, chat.now)
            .expect("ends");
        let outputs: Vec<_> = std::iter::from_fn(|| chat.session.poll_output()).collect();
        let ended = outputs
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    ChatOutput::Send {
                        event: ChatEvent::Ended { .. },
                        ..
                    }
                )
            })
            .count();
        assert_eq!(ended, 2, "visitor and agent");
        assert_eq!(outputs.last(), Some(&ChatOutput::Ended(EndReason::Agent)));
        chat.session.end(EndReason::System);
        assert_eq!(chat.session.poll_output(), None);
    }

    #[test]
    fn an_invited_agent_may_leave_but_not_end_the_chat_until_it_is_theirs() {
        let mut chat = Chat::new();
        chat.join(ALICE, "Alice");
        chat.run(ChatInput::Join {
            party: BRUNO,
            name: "Bruno".into(),
            guest: true,
        })
        .expect("joins");
        assert_eq!(
            chat.run(ChatInput::End { by: BRUNO }).err(),
            Some(ChatError::Guest)
        );
        assert!(chat.session.ended().is_none());
        // Routed to Bruno (a transfer): the chat is his now.
        chat.run(ChatInput::Leave { party: ALICE }).expect("leaves");
        chat.join(BRUNO, "Bruno");
        chat.run(ChatInput::End { by: BRUNO }).expect("ends");
        assert!(chat.session.ended().is_some());
    }

    #[test]
    fn a_transferred_agent_leaves_and_the_next_one_gets_the_history() {
        let mut chat = Chat::new();
        chat.join(ALICE, "Alice");
        chat.say(Party::Visitor, "v1", "My order is late");
        chat.say(ALICE, "a1", "Let me pass you on");
        let sent = chat.run(ChatInput::Leave { party: ALICE }).expect("leaves");
        assert!(sent.iter().any(|(to, e)| *to == Party::Visitor
            && matches!(e, ChatEvent::Left { name, .. } if name == "Alice")));
        let late = chat.run(ChatInput::Say {
            from: ALICE,
            client_id: None,
            text: "x".into(),
            whisper: false,
        });
        assert_eq!(
            late,
            Err(ChatError::NotParticipant),
            "a left agent cannot write"
        );
    }
}

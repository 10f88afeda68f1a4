//! The chat session actor: one task per open chat. It owns the chat's
//! [`ChatSession`] and carries out what it asks — store a message (creating the interaction
//! with the visitor's first one, then routing it), send an event to the visitor's connections
//! or an agent's console, close the chat — and feeds it what happens: the visitor's and the
//! agents' inputs, routing's outputs (an agent connected, transferred away, ended), the idle
//! timer, and whether the visitor has a connection open. A panic inside is caught: the chat is closed with reason `system` and its
//! interaction ended, nothing else stops.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use serde_json::{json, Value as Json};
use tokio::sync::{mpsc, oneshot};
use vacd_actors::chat::{
    ChatError, ChatEvent, ChatInput, ChatOutput, ChatSession, EndReason, NewMessage, Party,
    StaffRole,
};
use vacd_actors::{
    AgentId, Channel, Input, InteractionId, NewInteraction, Output, QueueId, TenantId,
};

use super::{Error, Inner};
use crate::catalog::Role;
use crate::language;
use crate::store::{ChatRoute, ChatRow, ChatWidget};

/// Most connections of one visitor (browser tabs) served at once; a newer one closes the oldest.
const MAX_VISITOR_CONNECTIONS: usize = 8;

pub(crate) enum ChatMsg {
    /// A visitor connection: gets the transcript and the chat's status, then every event.
    Attach {
        conn: u64,
        events: mpsc::UnboundedSender<String>,
        reply: oneshot::Sender<()>,
    },
    Detach {
        conn: u64,
    },
    /// An input of the visitor.
    Input {
        input: ChatInput,
        reply: oneshot::Sender<Result<(), ChatError>>,
    },
    /// A command of an agent or supervisor (`user`).
    Staff {
        user: AgentId,
        /// The user's role now (a supervisor demoted since joining is let go).
        role: Role,
        command: StaffCommand,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Routed(Output),
    /// A console of `user` connected: if the user is in the chat as a guest or a supervisor, it
    /// gets the transcript (routing's own agent gets its work from routing's `hello`).
    ConsoleLinked {
        user: AgentId,
        role: Role,
    },
    Stop,
}

pub(crate) enum StaffCommand {
    Send {
        text: String,
        client_id: Option<String>,
        whisper: bool,
    },
    Typing {
        on: bool,
    },
    Read {
        up_to: i64,
    },
    Invite {
        agent: AgentId,
        name: String,
    },
    Monitor {
        name: String,
    },
    TakeOver,
    Leave,
    Transcript,
    End,
}

/// A chat actor's address. Messages travel boxed: tokio's channels allocate room for 32
/// messages at once, and thousands of idle chats should not each hold 32 unboxed `ChatMsg`s
/// (~4 KiB).
#[derive(Clone)]
pub(crate) struct Mailbox(mpsc::UnboundedSender<Box<ChatMsg>>);

impl Mailbox {
    /// Sends `message` to the actor; an error if the actor has stopped.
    pub(crate) fn send(
        &self,
        message: ChatMsg,
    ) -> Result<(), mpsc::error::SendError<Box<ChatMsg>>> {
        self.0.send(Box::new(message))
    }

    /// Whether both reach the same actor.
    fn same(&self, other: &Mailbox) -> bool {
        self.0.same_channel(&other.0)
    }
}

struct Actor {
    hub: Arc<Inner>,
    chat: ChatRow,
    widget: ChatWidget,
    session: ChatSession,
    visitors: Vec<(u64, mpsc::UnboundedSender<String>)>,
    me: Mailbox,
    /// Routing still has the interaction (queued, offered or connected).
    routed: bool,
    /// Team leads monitoring the chat: they may watch their own team's chats only, so a
    /// transfer (which may take the chat out of it) ends their monitoring.
    team_leads: HashSet<AgentId>,
}

/// Starts the actor of an open chat (loading its transcript) and registers it.
/// `widget` is the chat's widget when the caller has it at hand (a chat just opened).
pub(crate) async fn spawn(
    hub: &Arc<Inner>,
    chat: ChatRow,
    widget: Option<ChatWidget>,
) -> Result<Mailbox, Error> {
    let widget = match widget {
        Some(widget) => widget,
        None => hub
            .store
            .chat_widget_of(chat.tenant, chat.service_address)
            .await?
            .ok_or(Error::Ended)?,
    };
    let history = match chat.interaction {
        Some(interaction) => {
            hub.store
                .chat_messages(
                    chat.tenant,
                    interaction,
                    &chat.visitor_name,
                    // All the session keeps (the store keeps every one).
                    Some(hub.rules.transcript_limit),
                )
                .await?
        }
        None => Vec::new(),
    };
    let (me, mailbox) = mpsc::unbounded_channel();
    let me = Mailbox(me);
    let session = ChatSession::new(
        hub.rules.clone(),
        chat.visitor_name.clone(),
        history,
        Instant::now(),
    );
    let mut actor = Actor {
        hub: hub.clone(),
        routed: chat.interaction.is_some(),
        team_leads: HashSet::new(),
        chat,
        widget,
        session,
        visitors: Vec::new(),
        me: me.clone(),
    };
    // Two resumes of a chat without a running session (a failed restore, several tabs at
    // once) may both get here: the first one's actor is the chat's, the other is not started.
    match hub.sessions.entry(actor.chat.id) {
        dashmap::Entry::Occupied(running) => return Ok(running.get().clone()),
        dashmap::Entry::Vacant(place) => {
            place.insert(me.clone());
        }
    }
    if let Some(interaction) = actor.chat.interaction {
        hub.tap
            .chats
            .insert(interaction as u64, (actor.chat.tenant, me.clone()));
    }
    metrics::gauge!(crate::metrics::CHATS_LIVE).increment(1.0);
    tokio::spawn(async move {
        let id = actor.chat.id;
        if AssertUnwindSafe(actor.run(mailbox))
            .catch_unwind()
            .await
            .is_err()
        {
            tracing::error!(chat = id, "chat actor failed; closing the chat");
            actor.session.end(EndReason::System);
            Box::pin(actor.carry_out()).await;
        }
        actor.unregister();
    });
    Ok(me)
}

impl Actor {
    /// Works off the mailbox until the chat ends or is stopped. The rare, deep work (storing,
    /// routing, closing) runs in futures of its own, so that what every idle chat keeps while
    /// it waits stays small.
    async fn run(&mut self, mut mailbox: mpsc::UnboundedReceiver<Box<ChatMsg>>) {
        if self.routed {
            // A restored chat: routing re-queued it, or it was with an agent when vacd stopped
            // (then it ended with the restart); either way the agent who gets it joins anew.
            tracing::info!(chat = self.chat.id, "chat restored");
        }
        loop {
            let deadline = self.session.poll_timeout();
            let message = tokio::select! {
                message = mailbox.recv() => message,
                () = sleep_until(deadline) => {
                    self.session.handle_timeout(Instant::now());
                    Box::pin(self.carry_out()).await;
                    if self.session.ended().is_some() {
                        return;
                    }
                    continue;
                }
            };
            let Some(message) = message else { return };
            match *message {
                ChatMsg::Attach {
                    conn,
                    events,
                    reply,
                } => {
                    let _ = events.send(frame(&self.session.transcript_for(Party::Visitor)));
                    let _ = events.send(self.status());
                    if self.visitors.len() >= MAX_VISITOR_CONNECTIONS {
                        // The oldest connection goes, told why (its tab must not connect
                        // again at once and push out the next): its socket closes when its
                        // events end.
                        let (_, oldest) = self.visitors.remove(0);
                        let _ = oldest.send(super::REPLACED.to_owned());
                    }
                    self.visitors.push((conn, events));
                    let _ = reply.send(());
                    if self.visitors.len() == 1 {
                        self.visitor_present(true);
                    }
                }
                ChatMsg::Detach { conn } => {
                    self.visitors.retain(|(c, _)| *c != conn);
                    if self.visitors.is_empty() {
                        self.visitor_present(false);
                    }
                }
                ChatMsg::Input { input, reply } => {
                    let result = self.session.handle(input, Instant::now());
                    let _ = reply.send(result);
                }
                ChatMsg::Staff {
                    user,
                    role,
                    command,
                    reply,
                } => {
                    let result = self.staff(user, role, command);
                    let _ = reply.send(result);
                }
                ChatMsg::Routed(output) => Box::pin(self.routed(output)).await,
                ChatMsg::ConsoleLinked { user, role } => self.rejoin(user, role),
                ChatMsg::Stop => {
                    self.visitors.clear();
                    return;
                }
            }
            Box::pin(self.carry_out()).await;
            if self.session.ended().is_some() {
                return;
            }
        }
    }

    fn staff(&mut self, user: AgentId, role: Role, command: StaffCommand) -> Result<(), Error> {
        let now = Instant::now();
        let party = if self.session.has(Party::Agent(user)) {
            Party::Agent(user)
        } else {
            Party::Supervisor(user)
        };
        // Someone in the chat as a supervisor who is one no more (demoted meanwhile) is let go.
        if party == Party::Supervisor(user) && role < Role::TeamLead && self.session.has(party) {
            self.let_go(user);
            return Err(Error::Forbidden);
        }
        let input = match command {
            StaffCommand::Send {
                text,
                client_id,
                whisper,
            } => ChatInput::Say {
                from: party,
                client_id,
                text,
                whisper,
            },
            StaffCommand::Typing { on } => ChatInput::Typing { from: party, on },
            StaffCommand::Read { up_to } => ChatInput::Read { from: party, up_to },
            StaffCommand::Invite { agent, name } => {
                if !matches!(party, Party::Agent(_)) || !self.session.has(party) {
                    return Err(ChatError::NotParticipant.into());
                }
                ChatInput::Join {
                    party: Party::Agent(agent),
                    name,
                    guest: true,
                }
            }
            StaffCommand::Monitor { name } => {
                if role == Role::TeamLead {
                    self.team_leads.insert(user);
                } else {
                    self.team_leads.remove(&user);
                }
                ChatInput::Join {
                    party: Party::Supervisor(user),
                    name,
                    guest: false,
                }
            }
            StaffCommand::TakeOver => ChatInput::TakeOver { supervisor: user },
            // Routing's transfer takes the chat's own agent out; on its own it would leave the
            // visitor with nobody who may end the chat.
            StaffCommand::Leave if self.session.is_owner(party) => {
                return Err(ChatError::Owner.into());
            }
            StaffCommand::Leave => ChatInput::Leave { party },
            StaffCommand::Transcript => {
                if !self.session.has(party) {
                    return Err(ChatError::NotParticipant.into());
                }
                let event = self.session.transcript_for(party);
                self.to_staff(user, &event);
                return Ok(());
            }
            StaffCommand::End => ChatInput::End { by: party },
        };
        Ok(self.session.handle(input, now)?)
    }

    /// Takes `user`, in the chat as a supervisor, out of it, and tells their console
    /// (`chat.left` naming them).
    fn let_go(&mut self, user: AgentId) {
        let party = Party::Supervisor(user);
        let name = self.session.name_of(party).unwrap_or_default();
        if self
            .session
            .handle(ChatInput::Leave { party }, Instant::now())
            .is_ok()
        {
            tracing::info!(chat = self.chat.id, %user, "a supervisor's monitoring ended");
            self.to_staff(user, &ChatEvent::Left { party, name });
        }
    }

    /// Sends the transcript to a new console of `user` if the user is in the chat as a guest or
    /// a supervisor, saying how (`joined_as`) — unless the user, in it as a supervisor, is one
    /// no more (`user_role`, demoted meanwhile): let go then.
    fn rejoin(&mut self, user: AgentId, user_role: Role) {
        let supervisor = Party::Supervisor(user);
        if user_role < Role::TeamLead && self.session.has(supervisor) {
            self.let_go(user);
            return;
        }
        let joined = [Party::Agent(user), Party::Supervisor(user)]
            .into_iter()
            .find_map(|party| Some((party, self.session.staff_role(party)?)));
        let Some((party, role)) = joined.filter(|(_, role)| *role != StaffRole::Owner) else {
            return;
        };
        let mut json = serde_json::to_value(self.session.transcript_for(party)).unwrap_or_default();
        json["joined_as"] = json!(role);
        self.to_staff_json(user, json);
    }

    async fn routed(&mut self, output: Output) {
        let now = Instant::now();
        match output {
            Output::Connected { agent, .. } => {
                let name = match self.hub.store.user_name(self.chat.tenant, agent).await {
                    Ok(Some(name)) => name,
                    Ok(None) => format!("Agent {agent}"),
                    Err(e) => {
                        tracing::warn!(chat = self.chat.id, error = %e, "agent name not read");
                        format!("Agent {agent}")
                    }
                };
                let join = ChatInput::Join {
                    party: Party::Agent(agent),
                    name,
                    guest: false,
                };
                if let Err(e) = self.session.handle(join, now) {
                    tracing::debug!(chat = self.chat.id, %agent, error = %e, "connected agent not joined");
                }
                self.send_visitors(self.status());
            }
            Output::Transferred { from, .. } => {
                let _ = self.session.handle(
                    ChatInput::Leave {
                        party: Party::Agent(from),
                    },
                    now,
                );
                // Team leads watch their own team's chats only: the chat may have left it. One
                // who took the chat over keeps it (it is theirs now).
                for lead in std::mem::take(&mut self.team_leads) {
                    if self.session.staff_role(Party::Supervisor(lead)) == Some(StaffRole::Monitor)
                    {
                        self.let_go(lead);
                    }
                }
                self.send_visitors(self.status());
            }
            Output::Queued { .. } => self.send_visitors(self.status()),
            Output::Ended { .. } => {
                self.routed = false;
                self.session.end(EndReason::Agent);
            }
            Output::Abandoned { .. } => {
                self.routed = false;
                self.session.end(EndReason::System);
            }
            _ => {}
        }
    }

    /// Carries out everything the session asks, until it asks nothing more.
    async fn carry_out(&mut self) {
        while let Some(output) = self.session.poll_output() {
            match output {
                ChatOutput::Store(new) => self.store(new).await,
                ChatOutput::Send { to, event } => match to {
                    Party::Visitor => self.send_visitors(frame(&event)),
                    Party::Agent(user) | Party::Supervisor(user) => self.to_staff(user, &event),
                },
                ChatOutput::Ended(reason) => self.close(reason).await,
            }
        }
    }

    /// Stores a message — the visitor's first one turns the chat into a routed interaction —
    /// and hands it back to the session, which acknowledges and delivers it.
    async fn store(&mut self, new: NewMessage) {
        let first = self.chat.interaction.is_none();
        let mut route = None;
        if first {
            match self.start_interaction(&new.text).await {
                Ok(r) => route = Some(r),
                Err(e) => {
                    tracing::error!(chat = self.chat.id, error = %e, "chat interaction not created");
                    self.refuse(
                        &new,
                        "store_failed",
                        "the chat could not be started; try again",
                    );
                    return;
                }
            }
        }
        let Some(interaction) = self.chat.interaction else {
            return;
        };
        match self
            .hub
            .store
            .store_chat_message(self.chat.tenant, interaction, &new)
            .await
        {
            Ok(message) => {
                metrics::counter!(crate::metrics::CHAT_MESSAGES).increment(1);
                let _ = self
                    .session
                    .handle(ChatInput::Stored { message }, Instant::now());
            }
            Err(e) => {
                tracing::error!(chat = self.chat.id, error = %e, "chat message not stored");
                self.refuse(
                    &new,
                    "store_failed",
                    "the message was not stored; send it again",
                );
            }
        }
        if let Some(route) = route {
            self.enqueue(interaction, route).await;
        }
    }

    /// Creates the interaction for the visitor's first message, routed by the text's language
    /// (when clear), else the browser's, else the mailbox's (see `Store::chat_route`).
    async fn start_interaction(&mut self, text: &str) -> Result<ChatRoute, crate::store::Error> {
        let store = &self.hub.store;
        let tenant = self.chat.tenant;
        let candidates = [
            language::detect(text).map(str::to_owned),
            self.chat.language.clone(),
        ];
        let mut route = store
            .chat_route(&self.widget, candidates.into_iter().flatten())
            .await?;
        let (interaction, customer) = store
            .start_chat_interaction(&self.chat, &self.widget, &mut route, text)
            .await?;
        self.chat.interaction = Some(interaction);
        self.chat.customer = Some(customer);
        self.chat.language = Some(route.language.clone());
        self.hub
            .tap
            .chats
            .insert(interaction as u64, (tenant, self.me.clone()));
        Ok(route)
    }

    async fn enqueue(&mut self, interaction: i64, route: ChatRoute) {
        let tenant = self.chat.tenant;
        let Some(queue) = route.queue else {
            tracing::warn!(chat = self.chat.id, "no queue for this chat");
            self.session.end(EndReason::System);
            return;
        };
        let new = NewInteraction {
            id: InteractionId(interaction as u64),
            channel: Channel::Chat,
            queue: QueueId(queue as u64),
            language: route.skill,
            skills: Vec::new(),
            priority: route.priority,
            restored: None,
        };
        let router = self.hub.routing.router();
        match router
            .input(TenantId(tenant as u64), Input::Enqueue { interaction: new })
            .await
        {
            Ok(()) => self.routed = true,
            Err(e) => {
                tracing::warn!(chat = self.chat.id, error = %e, "chat not queued");
                self.session.end(EndReason::System);
            }
        }
    }

    /// Closes the chat: routing lets go of its interaction, the store marks it ended.
    async fn close(&mut self, reason: EndReason) {
        // Whether routing took the chat's end: its outputs then bring the row up to date.
        let mut let_go = false;
        if let (true, Some(interaction)) = (self.routed, self.chat.interaction) {
            let interaction = InteractionId(interaction as u64);
            // Ended if an agent has it, abandoned if it waits. The session's agents are a
            // hint, not routing's view: an invited agent may stay in a chat that was
            // transferred back to a queue, a transfer may be ringing. So the other input is
            // tried when routing refuses the first — a chat left queued would be offered to
            // an agent who could never end it.
            let (end, abandon) = (Input::End { interaction }, Input::Abandon { interaction });
            let (first, then) = if self.session.agents().next().is_some() {
                (end, abandon)
            } else {
                (abandon, end)
            };
            let tenant = TenantId(self.chat.tenant as u64);
            let router = self.hub.routing.router();
            let_go = match router.input(tenant, first).await {
                Ok(()) => true,
                Err(e) => match router.input(tenant, then).await {
                    Ok(()) => true,
                    Err(again) => {
                        tracing::debug!(chat = self.chat.id, error = %e, %again, "routing had let go of the chat");
                        false
                    }
                },
            };
            self.routed = false;
        }
        // Routing did not take it (its first enqueue failed, or it knows the chat no more): a
        // row left waiting would be offered at routing's next load, a chat with nobody behind
        // it.
        if let (false, Some(interaction)) = (let_go, self.chat.interaction) {
            match self
                .hub
                .store
                .abandon_waiting_chat(self.chat.tenant, interaction)
                .await
            {
                Ok(true) => tracing::info!(
                    chat = self.chat.id,
                    interaction,
                    "waiting chat marked abandoned"
                ),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(chat = self.chat.id, error = %e, "chat's interaction not closed")
                }
            }
        }
        let reason = match reason {
            EndReason::Visitor => "visitor",
            EndReason::Agent => "agent",
            EndReason::Idle => "idle",
            EndReason::System => "system",
        };
        if let Err(e) = self.hub.store.end_chat(&self.chat, reason).await {
            tracing::error!(chat = self.chat.id, error = %e, "chat end not stored");
        }
        tracing::info!(chat = self.chat.id, reason, "chat ended");
    }

    /// Tells the session whether the visitor has a connection open (a chat nobody is in ends
    /// after the idle timeout).
    fn visitor_present(&mut self, connected: bool) {
        let _ = self
            .session
            .handle(ChatInput::Visitor { connected }, Instant::now());
    }

    /// Tells the author of a message that could not be stored to send it again (the session
    /// forgets it, so that the copy sent again is stored).
    fn refuse(&mut self, new: &NewMessage, code: &str, message: &str) {
        let not_stored = ChatInput::NotStored {
            author: new.author,
            client_id: new.client_id.clone(),
        };
        let _ = self.session.handle(not_stored, Instant::now());
        let error = json!({ "type": "error", "code": code, "message": message, "client_id": new.client_id });
        match new.author {
            Party::Visitor => self.send_visitors(error.to_string()),
            Party::Agent(user) | Party::Supervisor(user) => {
                let mut error = error;
                error["interaction"] = json!(self.chat.interaction);
                self.hub
                    .to_console(self.chat.tenant, user, error.to_string());
            }
        }
    }

    /// The chat's status for the visitor: waiting for the first message, queued, or with
    /// agents (by name).
    fn status(&self) -> String {
        let status = if self.chat.interaction.is_none() {
            "new"
        } else if self.session.agents().next().is_some() {
            "connected"
        } else {
            "queued"
        };
        json!({ "type": "chat.status", "status": status }).to_string()
    }

    fn send_visitors(&mut self, frame: String) {
        self.visitors
            .retain(|(_, events)| events.send(frame.clone()).is_ok());
    }

    fn to_staff(&self, user: AgentId, event: &ChatEvent) {
        self.to_staff_json(user, serde_json::to_value(event).unwrap_or(Json::Null));
    }

    fn to_staff_json(&self, user: AgentId, mut json: Json) {
        json["interaction"] = json!(self.chat.interaction);
        json["customer"] = json!(self.chat.customer);
        self.hub
            .to_console(self.chat.tenant, user, json.to_string());
    }

    /// Takes this actor's entries out of the hub — its own only: a chat resumed after this
    /// actor ended may have another already.
    fn unregister(&self) {
        let me = &self.me;
        self.hub
            .sessions
            .remove_if(&self.chat.id, |_, m| m.same(me));
        if let Some(interaction) = self.chat.interaction {
            self.hub
                .tap
                .chats
                .remove_if(&(interaction as u64), |_, (_, m)| m.same(me));
        }
        metrics::gauge!(crate::metrics::CHATS_LIVE).decrement(1.0);
    }
}

fn frame(event: &ChatEvent) -> String {
    serde_json::to_string(event).unwrap_or_default()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

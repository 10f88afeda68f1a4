//! The tenant actor: owns one tenant's [`Engine`] and is the only place its routing decisions
//! are taken. It feeds inputs (from the API, from agent sessions, from its timer) to the engine,
//! then performs the outputs: each goes to the [`Host`] to be persisted, and what concerns an
//! agent goes to that agent's session. It supervises its queue actors (restarted when they
//! fail) and session actors (a failed or closed session logs its agent out, or sets it
//! `not_ready("disconnected")` while it still holds work; pending offers are re-routed).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::mpsc;

use crate::console::{Command, ConsoleEvent};
use crate::queue_actor::{QueueActor, QueueMsg};
use crate::session::{SessionActor, SessionArgs, SessionMsg};
use crate::supervisor::{Floor, Load};
use crate::supervisor::{Host, RouterError, TenantId, TenantSetup};
use crate::{
    AgentConfig, AgentId, AgentStatus, Channel, Engine, Error, Input, Output, Presence, QueueId,
    SkillId,
};

/// How often live queue figures are published to the consoles.
const STATS_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) enum TenantMsg {
    Input(Input, Option<RpcReplyPort<Result<(), Error>>>),
    /// Console commands of `agent`, each with the id its reply carries, carried out in order;
    /// each is answered with `Ack` or `Error` on `replies` after the events it caused.
    Commands {
        agent: AgentId,
        /// The session actor of the console that sent them.
        session: ActorId,
        commands: Vec<(String, Command)>,
        replies: mpsc::UnboundedSender<ConsoleEvent>,
    },
    /// The console of this session actor closed: the session ends after the commands it sent
    /// before (the tenant hears of an actor's end on ractor's supervision port, ahead of its
    /// messages, so stopping the session straight away would log the agent out first).
    Close(ActorId),
    Reconfigure(RpcReplyPort<Result<(), String>>),
    /// A supervisor sets the status of `agent`, whose console must be connected.
    Supervise {
        agent: AgentId,
        status: AgentStatus,
        reply: RpcReplyPort<Result<(), RouterError>>,
    },
    Connect {
        agent: AgentId,
        events: mpsc::UnboundedSender<ConsoleEvent>,
        reply: RpcReplyPort<Result<ActorRef<SessionMsg>, RouterError>>,
    },
    /// The live figures of every queue and the state of every agent (supervisors' feed).
    Floor(RpcReplyPort<Floor>),
    /// vacd stops: every agent not offline is logged off in the event log.
    LogOffAll(RpcReplyPort<()>),
    /// Whether a new interaction of the queue, channel and language could be offered now.
    CanServe {
        queue: QueueId,
        channel: Channel,
        language: Option<SkillId>,
        reply: RpcReplyPort<bool>,
    },
    /// The engine's next deadline (of this generation) has come.
    Timeout(u64),
    StatsTick,
    #[cfg(test)]
    Panic,
    /// Makes the queue's actor panic.
    #[cfg(test)]
    PanicQueue(QueueId),
}

pub(crate) struct TenantArgs {
    pub(crate) tenant: TenantId,
    pub(crate) setup: TenantSetup,
    pub(crate) host: Arc<dyn Host>,
}

/// The task that delivers the next [`TenantMsg::Timeout`].
type TimerHandle = JoinHandle<Result<(), ractor::MessagingErr<TenantMsg>>>;

pub(crate) struct TenantActor;

pub(crate) struct TenantState {
    tenant: TenantId,
    engine: Engine,
    host: Arc<dyn Host>,
    sessions: BTreeMap<AgentId, ActorRef<SessionMsg>>,
    /// The consoles' event channels, written directly so that the events of a command are
    /// queued before its reply (the session actor is busy waiting for that reply).
    consoles: BTreeMap<AgentId, mpsc::UnboundedSender<ConsoleEvent>>,
    queues: BTreeMap<QueueId, ActorRef<QueueMsg>>,
    /// Agents serving each queue, for publishing its figures.
    members: BTreeMap<QueueId, BTreeSet<AgentId>>,
    agents: BTreeSet<AgentId>,
    /// Agents gone from the configuration but kept in the engine until their work is done (see
    /// [`TenantState::configure`]); in `agents` too until removed.
    departing: BTreeSet<AgentId>,
    /// Agents whose console went away while they held work (`not_ready("disconnected")`): they
    /// go offline once that work is done, unless a console of theirs connects first.
    disconnected: BTreeSet<AgentId>,
    timer: Option<(Instant, TimerHandle)>,
    generation: u64,
}

impl TenantState {
    /// Applies one input now and performs what came out.
    fn apply(&mut self, myself: &ActorRef<TenantMsg>, input: Input) -> Result<(), Error> {
        let result = self.engine.handle(input, Instant::now());
        self.flush(myself);
        result
    }

    /// Hands the engine's outputs to the host and the sessions, and re-arms the timer. Departing
    /// agents whose work is done are removed first, so their removal goes out with the change
    /// that ended their work.
    fn flush(&mut self, myself: &ActorRef<TenantMsg>) {
        self.remove_departed();
        self.log_off_disconnected();
        let outputs: Vec<_> = self.engine.drain_outputs().collect();
        if !outputs.is_empty() {
            for output in &outputs {
                if let Some((agent, event)) = ConsoleEvent::for_agent(output) {
                    if let Some(console) = self.consoles.get(&agent) {
                        let _ = console.send(event);
                    }
                }
            }
            self.host.record(self.tenant, SystemTime::now(), outputs);
        }
        // A timer already armed stays unless the engine needs an earlier one: firing early
        // costs one timeout that finds nothing due (and arms the next), while re-arming at
        // every change cost a task spawned and aborted per command, the earliest offer
        // deadline moving with nearly every accept.
        let next = self.engine.poll_timeout();
        let armed = self.timer.as_ref().map(|(at, _)| *at);
        if next.is_none() || armed.is_some_and(|armed| Some(armed) <= next) {
            return;
        }
        if let Some((_, handle)) = self.timer.take() {
            handle.abort();
        }
        if let Some(at) = next {
            self.generation += 1;
            let generation = self.generation;
            let delay = at.saturating_duration_since(Instant::now());
            let handle = myself.send_after(delay, move || TenantMsg::Timeout(generation));
            self.timer = Some((at, handle));
        }
    }

    /// Brings the engine's settings, queues and agents in line with `setup`: takes its settings
    /// first (so every agent upserted below gets the new default blending and capacity), upserts
    /// what is there, removes what is not (an agent that holds work once it is done).
    async fn configure(&mut self, myself: &ActorRef<TenantMsg>, setup: &TenantSetup) {
        let now = Instant::now();
        if self.engine.config() != &setup.config {
            let config = setup.config.clone();
            if let Err(e) = self.engine.handle(Input::Configure { config }, now) {
                tracing::warn!(tenant = %self.tenant, error = %e, "engine settings refused");
            }
        }
        let mut queues = BTreeSet::new();
        for queue in &setup.queues {
            queues.insert(queue.id);
            if let Err(e) = self.engine.handle(
                Input::UpsertQueue {
                    queue: queue.clone(),
                },
                now,
            ) {
                tracing::warn!(tenant = %self.tenant, queue = %queue.id, error = %e, "queue configuration refused");
            }
        }
        self.members.clear();
        let mut agents = BTreeSet::new();
        for agent in &setup.agents {
            agents.insert(agent.id);
            for queue in &agent.queues {
                self.members.entry(*queue).or_default().insert(agent.id);
            }
            if let Err(e) = self.engine.handle(
                Input::UpsertAgent {
                    agent: agent.clone(),
                },
                now,
            ) {
                tracing::warn!(tenant = %self.tenant, agent = %agent.id, error = %e, "agent configuration refused");
            }
        }
        // The engine refuses to remove an agent that still holds connected or wrap-up work.
        // Such an agent is kept with no queues and no skills, so that it takes no new work while
        // it finishes what it holds, and removed when it holds none: tried again after every
        // change (`remove_departed`), and on every reconfiguration until then.
        self.departing.clear();
        for gone in self.agents.difference(&agents) {
            match self.engine.handle(Input::RemoveAgent { agent: *gone }, now) {
                Ok(()) => {}
                Err(Error::AgentHasWork(_)) => {
                    tracing::info!(tenant = %self.tenant, agent = %gone, "agent kept until its work is done");
                    let idle = AgentConfig::new(*gone);
                    if let Err(e) = self.engine.handle(Input::UpsertAgent { agent: idle }, now) {
                        tracing::warn!(tenant = %self.tenant, agent = %gone, error = %e, "departing agent not taken off its queues");
                    }
                    self.departing.insert(*gone);
                }
                Err(e) => {
                    tracing::warn!(tenant = %self.tenant, agent = %gone, error = %e, "agent removal refused");
                }
            }
        }
        agents.extend(self.departing.iter().copied());
        let known: BTreeSet<QueueId> = self.queues.keys().copied().collect();
        for gone in known.difference(&queues) {
            if let Err(e) = self.engine.handle(Input::RemoveQueue { queue: *gone }, now) {
                tracing::warn!(tenant = %self.tenant, queue = %gone, error = %e, "queue kept until its interactions are done");
            }
            if let Some(actor) = self.queues.remove(gone) {
                actor.stop(None);
            }
        }
        for queue in queues.difference(&known) {
            self.spawn_queue(myself, *queue).await;
        }
        self.agents = agents;
        self.flush(myself);
    }

    /// Removes the departing agents that no longer hold connected or wrap-up work.
    fn remove_departed(&mut self) {
        if self.departing.is_empty() {
            return;
        }
        let now = Instant::now();
        let (tenant, engine, agents) = (self.tenant, &mut self.engine, &mut self.agents);
        self.departing.retain(|&agent| {
            match engine.handle(Input::RemoveAgent { agent }, now) {
                Err(Error::AgentHasWork(_)) => return true,
                Ok(()) => tracing::info!(%tenant, %agent, "departing agent removed, its work done"),
                Err(e) => {
                    tracing::warn!(%tenant, %agent, error = %e, "departing agent not removed")
                }
            }
            agents.remove(&agent);
            false
        });
    }

    /// Sets the disconnected agents whose work is done offline (their presence change goes out
    /// with the change that ended the work). One whose status changed meanwhile is left as it is.
    fn log_off_disconnected(&mut self) {
        if self.disconnected.is_empty() {
            return;
        }
        let now = Instant::now();
        let (tenant, engine) = (self.tenant, &mut self.engine);
        self.disconnected.retain(|&agent| {
            let still = engine
                .agent(agent)
                .is_some_and(|view| view.status == AgentStatus::disconnected());
            if !still {
                return false;
            }
            let offline = Input::SetStatus {
                agent,
                status: AgentStatus::Offline,
            };
            match engine.handle(offline, now) {
                Err(Error::AgentHasWork(_)) => true,
                Ok(()) => {
                    tracing::info!(%tenant, %agent, "disconnected agent offline, its work done");
                    false
                }
                Err(e) => {
                    tracing::warn!(%tenant, %agent, error = %e, "disconnected agent not set offline");
                    false
                }
            }
        });
    }

    /// Records every agent that is not offline going offline, as vacd stops: the reports end
    /// their logins there, not at the next start (or never, for one who does not come back).
    /// Only the event log hears of it; the engine, about to stop with the tenant, keeps its
    /// state (work an agent holds is routing's to restore at the next start).
    fn log_off_all(&mut self) {
        let outputs: Vec<Output> = self
            .agents
            .iter()
            .filter_map(|&agent| self.engine.agent(agent))
            .filter(|view| view.presence != Presence::Offline)
            .map(|view| Output::PresenceChanged {
                agent: view.id,
                from: view.presence,
                to: Presence::Offline,
            })
            .collect();
        if !outputs.is_empty() {
            tracing::info!(tenant = %self.tenant, agents = outputs.len(), "agents logged off as vacd stops");
            self.host.record(self.tenant, SystemTime::now(), outputs);
        }
    }

    async fn spawn_queue(&mut self, myself: &ActorRef<TenantMsg>, queue: QueueId) {
        match Actor::spawn_linked(None, QueueActor, queue, myself.get_cell()).await {
            Ok((actor, _)) => {
                self.queues.insert(queue, actor);
            }
            Err(e) => {
                tracing::error!(tenant = %self.tenant, %queue, error = %e, "queue actor did not start")
            }
        }
    }

    /// Hands every queue's figures to its queue actor with the consoles of its serving agents.
    fn publish_stats(&self) {
        let now = Instant::now();
        for (queue, actor) in &self.queues {
            let Ok(stats) = self.engine.queue_stats(*queue, now) else {
                continue;
            };
            let subscribers: Vec<_> = self
                .members
                .get(queue)
                .into_iter()
                .flatten()
                .filter_map(|a| self.sessions.get(a).cloned())
                .collect();
            let _ = actor.cast(QueueMsg::Stats(stats, subscribers));
        }
    }

    /// A console that just connected gets the current figures of the queues its agent serves.
    fn send_stats_to(&self, agent: AgentId) {
        let Some(console) = self.consoles.get(&agent) else {
            return;
        };
        let now = Instant::now();
        for (queue, members) in &self.members {
            if !members.contains(&agent) {
                continue;
            }
            if let Ok(stats) = self.engine.queue_stats(*queue, now) {
                let _ = console.send(ConsoleEvent::from(&stats));
            }
        }
    }

    /// The console of `agent` went away (closed, replaced or failed).
    fn session_ended(&mut self, myself: &ActorRef<TenantMsg>, agent: AgentId) {
        self.sessions.remove(&agent);
        self.consoles.remove(&agent);
        let offline = self.apply(
            myself,
            Input::SetStatus {
                agent,
                status: AgentStatus::Offline,
            },
        );
        if let Err(Error::AgentHasWork(_)) = offline {
            let status = AgentStatus::disconnected();
            match self.apply(myself, Input::SetStatus { agent, status }) {
                Ok(()) => {
                    self.disconnected.insert(agent);
                }
                Err(e) => {
                    tracing::warn!(tenant = %self.tenant, %agent, error = %e, "cannot mark the agent disconnected")
                }
            }
        }
    }

    /// The engine input a console command of `agent` stands for. Ending and transferring are
    /// refused for interactions the agent is not connected to.
    fn input_for(&self, agent: AgentId, command: Command) -> Result<Input, Error> {
        let own = |interaction| {
            let held = self
                .engine
                .interaction(interaction)
                .is_some_and(|i| i.agents.contains(&agent));
            if held {
                Ok(interaction)
            } else {
                Err(Error::UnknownInteraction(interaction))
            }
        };
        Ok(match command {
            Command::PresenceSet { status } => Input::SetStatus { agent, status },
            Command::OfferAccept { interaction } => Input::Accept { agent, interaction },
            Command::OfferReject { interaction } => Input::Reject { agent, interaction },
            Command::InteractionEnd { interaction } => Input::End {
                interaction: own(interaction)?,
            },
            Command::WrapUpDone { interaction } => Input::WrapUpDone { agent, interaction },
            Command::InteractionTransfer { interaction, to } => Input::Transfer {
                interaction: own(interaction)?,
                to,
            },
        })
    }

    fn agent_of(&self, actor: ActorId) -> Option<AgentId> {
        self.sessions
            .iter()
            .find(|(_, s)| s.get_id() == actor)
            .map(|(a, _)| *a)
    }
}

impl Actor for TenantActor {
    type Msg = TenantMsg;
    type State = TenantState;
    type Arguments = TenantArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<TenantMsg>,
        args: TenantArgs,
    ) -> Result<TenantState, ActorProcessingErr> {
        let mut state = TenantState {
            tenant: args.tenant,
            engine: Engine::new(args.setup.config.clone()),
            host: args.host,
            sessions: BTreeMap::new(),
            consoles: BTreeMap::new(),
            queues: BTreeMap::new(),
            members: BTreeMap::new(),
            disconnected: BTreeSet::new(),
            agents: BTreeSet::new(),
            departing: BTreeSet::new(),
            timer: None,
            generation: 0,
        };
        state.configure(&myself, &args.setup).await;
        let now = Instant::now();
        // Held work first, so the agents' capacity counts it before waiting work is offered.
        for held in args.setup.held {
            let (id, agent) = (held.interaction.id, held.agent);
            match state.engine.handle(Input::Resume { held }, now) {
                // Given back to an agent without a console: offline once it is done.
                Ok(()) => {
                    state.disconnected.insert(agent);
                }
                Err(e) => {
                    tracing::warn!(tenant = %state.tenant, interaction = %id, %agent, error = %e, "held work not given back")
                }
            }
        }
        for interaction in args.setup.waiting {
            let id = interaction.id;
            if let Err(e) = state.engine.handle(Input::Enqueue { interaction }, now) {
                tracing::warn!(tenant = %state.tenant, interaction = %id, error = %e, "waiting interaction not restored");
            }
        }
        state.flush(&myself);
        myself.send_interval(STATS_INTERVAL, || TenantMsg::StatsTick);
        Ok(state)
    }

    async fn post_stop(
        &self,
        _: ActorRef<TenantMsg>,
        state: &mut TenantState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some((_, handle)) = state.timer.take() {
            handle.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<TenantMsg>,
        message: TenantMsg,
        state: &mut TenantState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            TenantMsg::Input(input, reply) => {
                let result = state.apply(&myself, input);
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            TenantMsg::Supervise {
                agent,
                status,
                reply,
            } => {
                let result = if state.sessions.contains_key(&agent) {
                    state
                        .apply(&myself, Input::SetStatus { agent, status })
                        .map_err(RouterError::Rejected)
                } else if state.engine.agent(agent).is_none() {
                    Err(RouterError::Rejected(Error::UnknownAgent(agent)))
                } else {
                    Err(RouterError::NoConsole(agent))
                };
                let _ = reply.send(result);
            }
            TenantMsg::Commands {
                agent,
                session,
                commands,
                replies,
            } => {
                let current = state.sessions.get(&agent).map(|s| s.get_id());
                for (id, command) in commands {
                    let result = if current == Some(session) {
                        state
                            .input_for(agent, command)
                            .and_then(|input| state.apply(&myself, input))
                            .map_err(RouterError::Rejected)
                    } else {
                        let reason = "this console was replaced by a newer one".to_string();
                        Err(RouterError::Unavailable(state.tenant, reason))
                    };
                    let _ = replies.send(ConsoleEvent::reply(id, result));
                }
            }
            TenantMsg::Close(session) => {
                if let Some(actor) = state.sessions.values().find(|s| s.get_id() == session) {
                    let _ = actor.cast(SessionMsg::Close);
                }
            }
            TenantMsg::Reconfigure(reply) => {
                let result = match state.host.load(state.tenant, Load::Reconfigure).await {
                    Ok(setup) => {
                        state.configure(&myself, &setup).await;
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            TenantMsg::Connect {
                agent,
                events,
                reply,
            } => {
                let Some(view) = state.engine.agent(agent) else {
                    let _ = reply.send(Err(RouterError::Rejected(Error::UnknownAgent(agent))));
                    return Ok(());
                };
                if let Some(old) = state.sessions.remove(&agent) {
                    let _ = old.cast(SessionMsg::Replaced);
                }
                state.disconnected.remove(&agent);
                let hello = ConsoleEvent::Hello {
                    agent,
                    presence: view.presence,
                    status: view.status,
                    work: view.work,
                };
                let args = SessionArgs {
                    events: events.clone(),
                    hello,
                };
                match Actor::spawn_linked(None, SessionActor, args, myself.get_cell()).await {
                    Ok((session, _)) => {
                        state.sessions.insert(agent, session.clone());
                        state.consoles.insert(agent, events);
                        state.send_stats_to(agent);
                        let _ = reply.send(Ok(session));
                    }
                    Err(e) => {
                        // The console it replaced is gone too: the agent is logged off as if
                        // that one had closed, not left ready with nobody to see its offers.
                        state.session_ended(&myself, agent);
                        let _ =
                            reply.send(Err(RouterError::Unavailable(state.tenant, e.to_string())));
                    }
                }
            }
            TenantMsg::Timeout(generation) => {
                if generation == state.generation {
                    state.timer = None;
                    state.engine.handle_timeout(Instant::now());
                    state.flush(&myself);
                }
            }
            TenantMsg::StatsTick => state.publish_stats(),
            TenantMsg::LogOffAll(reply) => {
                state.log_off_all();
                let _ = reply.send(());
            }
            TenantMsg::Floor(reply) => {
                let now = Instant::now();
                let floor = Floor {
                    queues: state
                        .queues
                        .keys()
                        .filter_map(|q| state.engine.queue_stats(*q, now).ok())
                        .collect(),
                    agents: state
                        .agents
                        .iter()
                        .filter_map(|a| state.engine.agent(*a))
                        .collect(),
                    waiting: state
                        .queues
                        .keys()
                        .filter_map(|q| state.engine.queue_positions(*q, now).ok())
                        .flatten()
                        .collect(),
                };
                let _ = reply.send(floor);
            }
            TenantMsg::CanServe {
                queue,
                channel,
                language,
                reply,
            } => {
                let _ = reply.send(state.engine.can_serve(queue, channel, language));
            }
            #[cfg(test)]
            TenantMsg::Panic => panic!("tenant actor panic requested by a test"),
            #[cfg(test)]
            TenantMsg::PanicQueue(queue) => {
                if let Some(actor) = state.queues.get(&queue) {
                    let _ = actor.cast(QueueMsg::Panic);
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<TenantMsg>,
        event: SupervisionEvent,
        state: &mut TenantState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, failure) = match event {
            SupervisionEvent::ActorFailed(cell, e) => (cell, Some(e.to_string())),
            SupervisionEvent::ActorTerminated(cell, ..) => (cell, None),
            _ => return Ok(()),
        };
        if let Some(agent) = state.agent_of(cell.get_id()) {
            if let Some(e) = &failure {
                tracing::error!(tenant = %state.tenant, %agent, error = %e, "agent session failed; disconnecting it");
            }
            state.session_ended(&myself, agent);
        } else if let Some(queue) = state
            .queues
            .iter()
            .find(|(_, a)| a.get_id() == cell.get_id())
            .map(|(q, _)| *q)
        {
            state.queues.remove(&queue);
            if let Some(e) = failure {
                tracing::error!(tenant = %state.tenant, %queue, error = %e, "queue actor failed; restarting it");
                state.spawn_queue(&myself, queue).await;
            }
        }
        Ok(())
    }
}

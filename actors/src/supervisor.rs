//! The root of the actor tree and the handle the server holds: [`Router`].
//!
//! ```text
//! Supervisor ─┬─ TenantActor (one per tenant; owns the tenant's Engine)
//!             │    ├─ QueueActor (one per queue; publishes its live figures)
//!             │    └─ SessionActor (one per logged-in agent console)
//!             └─ …
//! ```
//!
//! The server implements [`Host`]: it loads a tenant's configuration and waiting interactions
//! from the store ([`TenantSetup`]) and persists the engine's outputs. Policy: a tenant actor
//! that fails is logged and started again from the store (its waiting interactions are restored
//! in their order, the work its agents held is given back to them; its consoles are disconnected
//! and reconnect); nothing else stops.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};
use std::time::SystemTime;

use ractor::concurrency::JoinHandle;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, ActorStatus, RpcReplyPort, SupervisionEvent};
use tokio::sync::mpsc;

use crate::console::{Command, ConsoleEvent};
use crate::session::SessionMsg;
use crate::tenant::{TenantActor, TenantArgs, TenantMsg};
use crate::{
    AgentConfig, AgentId, AgentStatus, Channel, EngineConfig, Held, Input, NewInteraction, Output,
    QueueConfig, QueueId, SkillId,
};

/// A tenant, the unit of isolation and placement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TenantId(pub u64);

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Everything a tenant actor starts from.
#[derive(Clone, Debug, Default)]
pub struct TenantSetup {
    /// Engine-wide settings.
    pub config: EngineConfig,
    /// Every queue.
    pub queues: Vec<QueueConfig>,
    /// Every agent (logged in or not).
    pub agents: Vec<AgentConfig>,
    /// Interactions to enqueue again, in their original order (written channels only).
    pub waiting: Vec<NewInteraction>,
    /// Work agents held when the routing stopped, to give back to them (at a restart after a
    /// failure only).
    pub held: Vec<Held>,
}

/// A tenant's floor at one moment: every queue's live figures and every agent's state, in id
/// order, and the interactions waiting in each queue, in service order (what a supervisor's
/// wallboard shows).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Floor {
    pub queues: Vec<crate::QueueStats>,
    pub agents: Vec<crate::AgentView>,
    pub waiting: Vec<crate::QueuePosition>,
}

/// A boxed future, so that [`Host`] can be used as a trait object.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Why a tenant's setup is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    /// The tenant's routing starts with vacd: everything counts, the waiting interactions too.
    Start,
    /// The tenant's routing starts again after a failure while vacd ran: as [`Load::Start`],
    /// and the calls, chats and tickets its agents held are theirs again.
    Restart,
    /// An admin change: only the settings, queues and agents are taken.
    Reconfigure,
}

/// What the actors need from the server: configuration in, domain events out.
pub trait Host: Send + Sync + 'static {
    /// Loads a tenant's settings, queues and agents, and the interactions still waiting.
    fn load(&self, tenant: TenantId, why: Load) -> BoxFuture<Result<TenantSetup, String>>;
    /// Persists outputs in order. Must not block: queue them for a writer.
    fn record(&self, tenant: TenantId, at: SystemTime, outputs: Vec<Output>);
}

/// Why the router could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouterError {
    /// The engine refused the input; nothing changed.
    #[error(transparent)]
    Rejected(#[from] crate::Error),
    /// The tenant could not be loaded or its actor is gone.
    #[error("tenant {0} is unavailable: {1}")]
    Unavailable(TenantId, String),
    /// A supervisor's status change for an agent whose console is not connected.
    #[error("agent {0} has no console connected")]
    NoConsole(AgentId),
}

impl RouterError {
    /// A stable code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            RouterError::Rejected(e) => e.code(),
            RouterError::Unavailable(..) => "unavailable",
            RouterError::NoConsole(_) => "agent_not_connected",
        }
    }
}

pub(crate) enum SupervisorMsg {
    Tenant(TenantId, RpcReplyPort<Result<ActorRef<TenantMsg>, String>>),
    /// The tenant is gone (deleted): its actor stops and is not restarted.
    Forget(TenantId, RpcReplyPort<()>),
}

pub(crate) struct Supervisor;

pub(crate) struct SupervisorState {
    host: Arc<dyn Host>,
    tenants: BTreeMap<TenantId, ActorRef<TenantMsg>>,
    /// Every tenant started so far: a second start is a restart after a failure.
    started: BTreeSet<TenantId>,
}

impl SupervisorState {
    async fn start_tenant(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        tenant: TenantId,
    ) -> Result<ActorRef<TenantMsg>, String> {
        let why = if self.started.contains(&tenant) {
            Load::Restart
        } else {
            Load::Start
        };
        let setup = self.host.load(tenant, why).await?;
        let args = TenantArgs {
            tenant,
            setup,
            host: self.host.clone(),
        };
        let (actor, _) = Actor::spawn_linked(None, TenantActor, args, myself.get_cell())
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(%tenant, "tenant routing started");
        self.started.insert(tenant);
        self.tenants.insert(tenant, actor.clone());
        Ok(actor)
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = Arc<dyn Host>;

    async fn pre_start(
        &self,
        _: ActorRef<Self::Msg>,
        host: Arc<dyn Host>,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState {
            host,
            tenants: BTreeMap::new(),
            started: BTreeSet::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Tenant(tenant, reply) => {
                // A tenant actor that just failed may not have been reported yet: start anew.
                let alive = |a: &ActorRef<TenantMsg>| {
                    matches!(
                        a.get_status(),
                        ractor::ActorStatus::Running | ractor::ActorStatus::Starting
                    )
                };
                let actor = match state.tenants.get(&tenant).filter(|a| alive(a)) {
                    Some(actor) => Ok(actor.clone()),
                    None => state.start_tenant(&myself, tenant).await,
                };
                let _ = reply.send(actor);
            }
            SupervisorMsg::Forget(tenant, reply) => {
                // Out of the map first: its termination is then no failure to restart from.
                if let Some(actor) = state.tenants.remove(&tenant) {
                    actor.stop(Some("tenant deleted".into()));
                    tracing::info!(%tenant, "tenant routing stopped: the tenant is gone");
                }
                state.started.remove(&tenant);
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, failure) = match event {
            SupervisionEvent::ActorFailed(cell, e) => (cell, Some(e.to_string())),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (cell, reason),
            _ => return Ok(()),
        };
        let Some(tenant) = state
            .tenants
            .iter()
            .find(|(_, a)| a.get_id() == cell.get_id())
            .map(|(t, _)| *t)
        else {
            return Ok(());
        };
        state.tenants.remove(&tenant);
        if myself.get_status() != ractor::ActorStatus::Running {
            return Ok(());
        }
        tracing::error!(%tenant, reason = failure.as_deref().unwrap_or("stopped"), "tenant routing stopped; restarting it from the store");
        if let Err(e) = state.start_tenant(&myself, tenant).await {
            tracing::error!(%tenant, error = %e, "tenant routing could not be restarted; it starts again on next use");
        }
        Ok(())
    }
}

/// The server's handle on routing: one per process, cheap to clone.
#[derive(Clone)]
pub struct Router {
    supervisor: ActorRef<SupervisorMsg>,
    /// The tenant actors asked of the supervisor before, so that an input costs one round trip,
    /// not two; one that is no longer running is asked for again.
    tenants: Arc<RwLock<BTreeMap<TenantId, ActorRef<TenantMsg>>>>,
}

async fn call<M: ractor::Message, T: Send + 'static>(
    actor: &ActorRef<M>,
    make: impl FnOnce(RpcReplyPort<T>) -> M,
) -> Result<T, String> {
    match actor.call(make, None).await {
        Ok(CallResult::Success(value)) => Ok(value),
        Ok(_) => Err("no reply".into()),
        Err(e) => Err(e.to_string()),
    }
}

impl Router {
    /// Starts the supervision tree.
    pub async fn start(host: Arc<dyn Host>) -> Result<(Router, JoinHandle<()>), ractor::SpawnErr> {
        let (supervisor, handle) = Actor::spawn(None, Supervisor, host).await?;
        let router = Router {
            supervisor,
            tenants: Arc::default(),
        };
        Ok((router, handle))
    }

    /// Stops every actor.
    pub fn stop(&self) {
        self.supervisor.stop(Some("shutdown".into()));
    }

    /// As vacd stops, before [`Router::stop`]: every running tenant records its agents that
    /// are not offline going offline (see the tenant actor's `log_off_all`).
    pub async fn log_off_all(&self) {
        let tenants: Vec<(TenantId, ActorRef<TenantMsg>)> = self
            .known()
            .iter()
            .map(|(tenant, actor)| (*tenant, actor.clone()))
            .collect();
        for (tenant, actor) in tenants {
            if let Err(e) = call(&actor, TenantMsg::LogOffAll).await {
                tracing::warn!(%tenant, error = %e, "agents not logged off at the stop");
            }
        }
    }

    async fn tenant(&self, tenant: TenantId) -> Result<ActorRef<TenantMsg>, RouterError> {
        let known = self.known().get(&tenant).cloned();
        if let Some(actor) = known.filter(|a| a.get_status() == ActorStatus::Running) {
            return Ok(actor);
        }
        let actor = call(&self.supervisor, |reply| {
            SupervisorMsg::Tenant(tenant, reply)
        })
        .await
        .and_then(|r| r)
        .map_err(|e| RouterError::Unavailable(tenant, e))?;
        self.tenants
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tenant, actor.clone());
        Ok(actor)
    }

    fn known(&self) -> RwLockReadGuard<'_, BTreeMap<TenantId, ActorRef<TenantMsg>>> {
        // Every write is one insert or one remove, so the map is whole even after a writer
        // panicked.
        self.tenants.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops the tenant's routing for good (the tenant was deleted): its timers stop and
    /// nothing more is recorded for it. A later input would start it again from the store.
    pub async fn forget(&self, tenant: TenantId) -> Result<(), RouterError> {
        self.tenants
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&tenant);
        call(&self.supervisor, |reply| {
            SupervisorMsg::Forget(tenant, reply)
        })
        .await
        .map_err(|e| RouterError::Unavailable(tenant, e))
    }

    /// Starts the tenant's routing (restoring its waiting interactions) if it is not running.
    pub async fn ensure(&self, tenant: TenantId) -> Result<(), RouterError> {
        self.tenant(tenant).await.map(|_| ())
    }

    /// Feeds one input to the tenant's engine.
    pub async fn input(&self, tenant: TenantId, input: Input) -> Result<(), RouterError> {
        let actor = self.tenant(tenant).await?;
        call(&actor, |reply| TenantMsg::Input(input, Some(reply)))
            .await
            .map_err(|e| RouterError::Unavailable(tenant, e))?
            .map_err(RouterError::Rejected)
    }

    /// A supervisor sets an agent's status, as the agent's own presence button would. Only an
    /// agent whose console is connected: one set ready without a console would be offered work
    /// nobody sees, and a break would log in an agent who is away.
    pub async fn supervise(
        &self,
        tenant: TenantId,
        agent: AgentId,
        status: AgentStatus,
    ) -> Result<(), RouterError> {
        let actor = self.tenant(tenant).await?;
        call(&actor, |reply| TenantMsg::Supervise {
            agent,
            status,
            reply,
        })
        .await
        .map_err(|e| RouterError::Unavailable(tenant, e))?
    }

    /// Reloads the tenant's settings, queues and agents from the host and applies the difference
    /// live.
    pub async fn reconfigure(&self, tenant: TenantId) -> Result<(), RouterError> {
        let actor = self.tenant(tenant).await?;
        call(&actor, TenantMsg::Reconfigure)
            .await
            .and_then(|r| r)
            .map_err(|e| RouterError::Unavailable(tenant, e))
    }

    /// The tenant's floor now (starting its routing if needed).
    pub async fn floor(&self, tenant: TenantId) -> Result<Floor, RouterError> {
        let actor = self.tenant(tenant).await?;
        call(&actor, TenantMsg::Floor)
            .await
            .map_err(|e| RouterError::Unavailable(tenant, e))
    }

    /// Whether an agent of the tenant could take a new `channel` interaction of `queue` in
    /// `language` now (see [`Engine::can_serve`](crate::Engine::can_serve)).
    pub async fn can_serve(
        &self,
        tenant: TenantId,
        queue: QueueId,
        channel: Channel,
        language: Option<SkillId>,
    ) -> Result<bool, RouterError> {
        let actor = self.tenant(tenant).await?;
        call(&actor, |reply| TenantMsg::CanServe {
            queue,
            channel,
            language,
            reply,
        })
        .await
        .map_err(|e| RouterError::Unavailable(tenant, e))
    }

    /// Connects an agent's console: events for it go to `events`. A previous console of the same
    /// agent is told `session.replaced` and closed.
    pub async fn connect(
        &self,
        tenant: TenantId,
        agent: AgentId,
        events: mpsc::UnboundedSender<ConsoleEvent>,
    ) -> Result<AgentSession, RouterError> {
        let actor = self.tenant(tenant).await?;
        let session = call(&actor, |reply| TenantMsg::Connect {
            agent,
            events: events.clone(),
            reply,
        })
        .await
        .map_err(|e| RouterError::Unavailable(tenant, e))??;
        Ok(AgentSession {
            tenant,
            agent,
            actor,
            session,
            events: events.downgrade(),
        })
    }

    #[cfg(test)]
    pub(crate) async fn tenant_ref(&self, tenant: TenantId) -> ActorRef<TenantMsg> {
        self.tenant(tenant).await.expect("tenant starts")
    }
}

/// One connected console. Dropping it does not disconnect; call [`AgentSession::close`].
pub struct AgentSession {
    tenant: TenantId,
    agent: AgentId,
    /// The tenant actor, which carries out the commands.
    actor: ActorRef<TenantMsg>,
    session: ActorRef<SessionMsg>,
    /// The console's event channel, where the replies go; weakly, for the channel closes
    /// when the session ends, and that is how the console learns it.
    events: mpsc::WeakUnboundedSender<ConsoleEvent>,
}

impl AgentSession {
    /// Hands console commands, each with the id of its reply, to the tenant actor, which
    /// carries them out in order and answers each with [`ConsoleEvent::Ack`] or
    /// [`ConsoleEvent::Error`] on the console's event channel after the events it caused: a
    /// reply is a barrier in the channel, and commands sent together are one message with no
    /// round trip. They go straight to the tenant actor, naming the session, so a console
    /// replaced by a newer one can no longer act; if the tenant actor is gone, each is refused
    /// on the channel all the same. `Err`: the session has ended (replaced by a newer console,
    /// or failed; its channel is closing), with the commands, not carried out, for the console
    /// to refuse.
    pub fn send(
        &self,
        commands: Vec<(String, Command)>,
    ) -> Result<(), (RouterError, Vec<(String, Command)>)> {
        let Some(replies) = self.events.upgrade() else {
            let reason = "this console's session has ended".to_string();
            return Err((RouterError::Unavailable(self.tenant, reason), commands));
        };
        let message = TenantMsg::Commands {
            agent: self.agent,
            session: self.session.get_id(),
            commands,
            replies,
        };
        if let Err(ractor::MessagingErr::SendErr(TenantMsg::Commands {
            commands, replies, ..
        })) = self.actor.cast(message)
        {
            let gone = RouterError::Unavailable(self.tenant, "tenant routing is gone".into());
            for (id, _) in commands {
                let _ = replies.send(ConsoleEvent::reply(id, Err(gone.clone())));
            }
        }
        Ok(())
    }

    /// Whether the session still stands: not replaced by a newer console of the agent, nor
    /// failed (its event channel then closes). For the commands routing does not carry out
    /// (chat, calls), which must not act for a replaced console either.
    pub fn is_live(&self) -> bool {
        self.events.upgrade().is_some()
    }

    /// Where this session stands among the sessions routing took in: a later connection of the
    /// agent, which replaced this one, has a higher number (its session actor was spawned
    /// later, and ractor numbers local actors as it spawns them).
    pub fn order(&self) -> u64 {
        self.session.get_id().pid()
    }

    /// The console went away: the agent is logged out (or set not ready if it holds work),
    /// after the commands it sent before. A session no longer current (replaced) ends on its
    /// own; one whose tenant actor is gone is stopped directly.
    pub fn close(&self) {
        let close = TenantMsg::Close(self.session.get_id());
        if self.actor.cast(close).is_err() {
            let _ = self.session.cast(SessionMsg::Close);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::{Channel, InteractionId, QueueId, ReadyMode};

    /// A host that serves fixed setups and keeps what it is told to record and why it loaded.
    #[derive(Default)]
    struct MemoryHost {
        setups: Mutex<BTreeMap<TenantId, TenantSetup>>,
        recorded: Mutex<Vec<(TenantId, Output)>>,
        loads: Mutex<Vec<(TenantId, Load)>>,
    }

    impl Host for MemoryHost {
        fn load(&self, tenant: TenantId, why: Load) -> BoxFuture<Result<TenantSetup, String>> {
            self.loads.lock().expect("loads").push((tenant, why));
            let setup = self
                .setups
                .lock()
                .expect("setups")
                .get(&tenant)
                .cloned()
                .ok_or_else(|| "no such tenant".to_string());
            Box::pin(async move { setup })
        }

        fn record(&self, tenant: TenantId, _: SystemTime, outputs: Vec<Output>) {
            self.recorded
                .lock()
                .expect("recorded")
                .extend(outputs.into_iter().map(|o| (tenant, o)));
        }
    }

    const T1: TenantId = TenantId(1);
    const T2: TenantId = TenantId(2);
    const Q: QueueId = QueueId(10);

    fn setup(agents: &[u64], waiting: &[u64]) -> TenantSetup {
        let agents = agents
            .iter()
            .map(|id| {
                let mut agent = AgentConfig::new(AgentId(*id));
                agent.queues = vec![Q];
                agent
            })
            .collect();
        let waiting = waiting.iter().map(|id| email(*id)).collect();
        TenantSetup {
            config: EngineConfig::default(),
            queues: vec![QueueConfig::new(Q)],
            agents,
            waiting,
            held: Vec::new(),
        }
    }

    fn email(id: u64) -> NewInteraction {
        NewInteraction {
            id: InteractionId(id),
            channel: Channel::Email,
            queue: Q,
            language: None,
            skills: vec![],
            priority: 0,
            restored: None,
        }
    }

    /// Enqueues the email `id` in `tenant`'s queue.
    async fn enqueue(router: &Router, tenant: TenantId, id: u64) {
        router
            .input(
                tenant,
                Input::Enqueue {
                    interaction: email(id),
                },
            )
            .await
            .expect("enqueued");
    }

    /// A router over a host that serves `setups`; the host, to read what was recorded.
    async fn start(setups: Vec<(TenantId, TenantSetup)>) -> (Arc<MemoryHost>, Router) {
        let host = Arc::new(MemoryHost::default());
        host.setups.lock().expect("setups").extend(setups);
        let (router, _) = Router::start(host.clone()).await.expect("router starts");
        (host, router)
    }

    /// Receives events until one matches, failing after a bounded wait (for all of them: the
    /// queue figures come every second whatever else happens).
    async fn until(
        rx: &mut mpsc::UnboundedReceiver<ConsoleEvent>,
        matches: impl Fn(&ConsoleEvent) -> bool,
    ) -> ConsoleEvent {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let event = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .expect("the event within the wait")
                .expect("session open");
            if matches(&event) {
                return event;
            }
        }
    }

    /// Waits (boundedly) until the console's channel is closed.
    async fn closed(rx: &mut mpsc::UnboundedReceiver<ConsoleEvent>) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("closes within the wait")
            .is_some()
        {}
    }

    /// Agent `agent` of T1 accepts its offer of `id`, then ends it, then finishes its wrap-up:
    /// each step one input routing must take.
    async fn accept(router: &Router, agent: u64, id: u64) {
        let (agent, interaction) = (AgentId(agent), InteractionId(id));
        let input = Input::Accept { agent, interaction };
        router.input(T1, input).await.expect("accepted");
    }

    async fn end(router: &Router, id: u64) {
        let input = Input::End {
            interaction: InteractionId(id),
        };
        router.input(T1, input).await.expect("ended");
    }

    async fn wrap_up_done(router: &Router, agent: u64, id: u64) {
        let (agent, interaction) = (AgentId(agent), InteractionId(id));
        let input = Input::WrapUpDone { agent, interaction };
        router.input(T1, input).await.expect("wrap-up done");
    }

    fn offer_of(id: u64) -> impl Fn(&ConsoleEvent) -> bool {
        move |e| matches!(e, ConsoleEvent::Offer { interaction, .. } if *interaction == InteractionId(id))
    }

    async fn console(
        router: &Router,
        tenant: TenantId,
        agent: u64,
    ) -> (AgentSession, mpsc::UnboundedReceiver<ConsoleEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let session = router
            .connect(tenant, AgentId(agent), tx)
            .await
            .expect("connects");
        let ready = Command::PresenceSet {
            status: crate::AgentStatus::Ready {
                mode: ReadyMode::Inbound,
            },
        };
        session.send(vec![("ready".into(), ready)]).expect("sent");
        (session, rx)
    }

    fn reply_to(id: &str) -> impl Fn(&ConsoleEvent) -> bool + '_ {
        move |e| match e {
            ConsoleEvent::Ack { id: of } => of == id,
            ConsoleEvent::Error { id: of, .. } => of.as_deref() == Some(id),
            _ => false,
        }
    }

    /// A command's reply comes on the console's channel after the events it caused: the
    /// websocket layer relies on this to make replies barriers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_events_of_a_command_come_before_its_reply() {
        let (_, router) = start(vec![(T1, setup(&[1], &[]))]).await;
        let (session, mut rx) = console(&router, T1, 1).await;
        until(&mut rx, reply_to("ready")).await;
        for round in 0..200 {
            let status = if round % 2 == 0 {
                crate::AgentStatus::NotReady {
                    reason: "break".into(),
                }
            } else {
                crate::AgentStatus::Ready {
                    mode: ReadyMode::Inbound,
                }
            };
            let id = round.to_string();
            session
                .send(vec![(id.clone(), Command::PresenceSet { status })])
                .expect("sent");
            let mut before = Vec::new();
            loop {
                let event = until(&mut rx, |_| true).await;
                if reply_to(&id)(&event) {
                    assert_eq!(event, ConsoleEvent::Ack { id: id.clone() });
                    break;
                }
                before.push(event);
            }
            assert!(
                before
                    .iter()
                    .any(|e| matches!(e, ConsoleEvent::PresenceChanged { .. })),
                "round {round}: {before:?}"
            );
        }
        router.stop();
    }

    /// A second console of the agent takes over: the first is told so, and its commands are
    /// refused from then on while the new console's are carried out.
    #[tokio::test]
    async fn a_replaced_console_can_no_longer_act() {
        let (_, router) = start(vec![(T1, setup(&[1], &[]))]).await;
        let (old, mut old_rx) = console(&router, T1, 1).await;
        let (new, mut new_rx) = console(&router, T1, 1).await;
        until(&mut old_rx, |e| matches!(e, ConsoleEvent::SessionReplaced)).await;
        let break_ = || {
            let status = crate::AgentStatus::NotReady {
                reason: "break".into(),
            };
            vec![("break".to_string(), Command::PresenceSet { status })]
        };
        // Refused at once if the old session is already gone (the commands come back, not
        // carried out), else by the tenant.
        let code = match old.send(break_()) {
            Err((e, commands)) => {
                assert_eq!(commands, break_());
                e.code().to_string()
            }
            Ok(()) => match until(&mut old_rx, reply_to("break")).await {
                ConsoleEvent::Error { code, .. } => code,
                other => panic!("the old console acted: {other:?}"),
            },
        };
        assert_eq!(code, "unavailable");
        new.send(break_()).expect("sent");
        let acted = until(&mut new_rx, reply_to("break")).await;
        assert_eq!(
            acted,
            ConsoleEvent::Ack { id: "break".into() },
            "the new console acts"
        );
        // Once its channel has closed, the old session says it no longer stands (what the
        // console asks before a chat or call command), while the new one does.
        while old_rx.recv().await.is_some() {}
        assert!(!old.is_live());
        assert!(new.is_live());
        router.stop();
    }

    /// A deleted tenant's routing stops for good: no restart from the store (it would record
    /// outputs of a tenant that is gone); another tenant is untouched, and a later use starts
    /// the tenant afresh.
    #[tokio::test]
    async fn a_forgotten_tenant_is_not_restarted() {
        let (host, router) = start(vec![(T1, setup(&[1], &[])), (T2, setup(&[1], &[]))]).await;
        enqueue(&router, T1, 100).await;
        enqueue(&router, T2, 200).await;
        router.forget(T1).await.expect("forgotten");
        enqueue(&router, T2, 201).await;
        enqueue(&router, T1, 101).await;
        let loads = host.loads.lock().expect("loads").clone();
        assert_eq!(
            loads,
            vec![(T1, Load::Start), (T2, Load::Start), (T1, Load::Start)],
            "started anew, never restarted"
        );
        router.stop();
    }

    #[tokio::test]
    async fn a_failed_session_is_cleaned_up_and_its_offer_rerouted() {
        let (host, router) = start(vec![(T1, setup(&[1, 2], &[]))]).await;
        let (first, mut first_rx) = console(&router, T1, 1).await;
        enqueue(&router, T1, 100).await;
        until(&mut first_rx, offer_of(100)).await;

        let (second, mut second_rx) = console(&router, T1, 2).await;
        first
            .session
            .cast(SessionMsg::Panic)
            .expect("message delivered");
        // The failed session's console is closed …
        closed(&mut first_rx).await;
        // … its pending offer goes to the other agent, and the tenant keeps serving.
        until(&mut second_rx, offer_of(100)).await;
        let accept = Command::OfferAccept {
            interaction: InteractionId(100),
        };
        second.send(vec![("accept".into(), accept)]).expect("sent");
        let accepted = until(&mut second_rx, reply_to("accept")).await;
        assert_eq!(
            accepted,
            ConsoleEvent::Ack {
                id: "accept".into()
            }
        );
        let recorded = host.recorded.lock().expect("recorded").clone();
        assert!(
            recorded.iter().any(|(_, o)| matches!(
                o,
                Output::OfferRevoked {
                    agent: AgentId(1),
                    ..
                }
            )),
            "{recorded:?}"
        );
        router.stop();
    }

    #[tokio::test]
    async fn a_failed_queue_actor_is_restarted_and_the_tenant_keeps_routing() {
        let (_, router) = start(vec![(T1, setup(&[1], &[]))]).await;
        let (_session, mut rx) = console(&router, T1, 1).await;
        until(&mut rx, reply_to("ready")).await;
        router
            .tenant_ref(T1)
            .await
            .cast(crate::tenant::TenantMsg::PanicQueue(Q))
            .expect("message delivered");
        enqueue(&router, T1, 100).await;
        // Routing went on without the queue actor …
        until(&mut rx, offer_of(100)).await;
        // … and the queue's figures, which only its actor publishes after the console's first
        // ones, come again: from the restarted actor.
        until(
            &mut rx,
            |e| matches!(e, ConsoleEvent::QueueStats { queue, offered: 1, .. } if *queue == Q),
        )
        .await;
        router.stop();
    }

    /// An agent deleted from the configuration while it holds work is kept until that work is
    /// done, but takes nothing new meanwhile; it is removed as soon as its wrap-up ends, not at
    /// the next reconfiguration.
    #[tokio::test]
    async fn a_deleted_agent_finishes_its_work_takes_nothing_new_and_goes() {
        let mut with_wrap_up = setup(&[1], &[]);
        with_wrap_up.queues[0].wrap_up = Duration::from_secs(30);
        let (host, router) = start(vec![(T1, with_wrap_up)]).await;
        let ready = crate::AgentStatus::Ready {
            mode: ReadyMode::Inbound,
        };
        let apply = |input| router.input(T1, input);
        apply(Input::SetStatus {
            agent: AgentId(1),
            status: ready,
        })
        .await
        .expect("agent 1 ready");
        enqueue(&router, T1, 100).await;
        accept(&router, 1, 100).await;

        // The administrator deletes agent 1 while it is connected to email 100.
        host.setups
            .lock()
            .expect("setups")
            .entry(T1)
            .and_modify(|setup| setup.agents.clear());
        router.reconfigure(T1).await.expect("reconfigured");
        enqueue(&router, T1, 101).await;
        let floor = router.floor(T1).await.expect("floor");
        let waiting: Vec<_> = floor.waiting.iter().map(|p| p.interaction).collect();
        assert_eq!(waiting, [InteractionId(101)], "not offered to agent 1");
        assert!(floor.agents.iter().any(|a| a.id == AgentId(1)), "kept");

        end(&router, 100).await;
        let floor = router.floor(T1).await.expect("floor");
        assert!(
            floor.agents.iter().any(|a| a.id == AgentId(1)),
            "kept while in wrap-up"
        );
        wrap_up_done(&router, 1, 100).await;
        let floor = router.floor(T1).await.expect("floor");
        assert!(floor.agents.is_empty(), "removed once its work is done");
        let recorded = host.recorded.lock().expect("recorded").clone();
        assert!(
            recorded.iter().any(|(_, o)| matches!(
                o,
                Output::PresenceChanged {
                    agent: AgentId(1),
                    to: crate::Presence::Offline,
                    ..
                }
            )),
            "{recorded:?}"
        );
        router.stop();
    }

    /// An agent whose console closes while it holds work is `not_ready("disconnected")` until
    /// that work is done, then offline — it does not stay logged in for the reports. A supervisor
    /// cannot set an agent without a console ready meanwhile.
    #[tokio::test]
    async fn a_disconnected_agent_goes_offline_once_its_work_is_done() {
        let mut with_wrap_up = setup(&[1], &[]);
        with_wrap_up.queues[0].wrap_up = Duration::from_secs(30);
        let (_, router) = start(vec![(T1, with_wrap_up)]).await;
        let (session, mut rx) = console(&router, T1, 1).await;
        enqueue(&router, T1, 100).await;
        until(&mut rx, offer_of(100)).await;
        accept(&router, 1, 100).await;
        session.close();
        closed(&mut rx).await;
        let presence = |floor: Floor| {
            floor
                .agents
                .iter()
                .find(|a| a.id == AgentId(1))
                .map(|a| (a.status.clone(), a.presence.clone()))
        };
        let floor = router.floor(T1).await.expect("floor");
        let disconnected = crate::AgentStatus::disconnected();
        assert_eq!(
            presence(floor),
            Some((disconnected.clone(), crate::Presence::Busy))
        );
        let ready = crate::AgentStatus::Ready {
            mode: ReadyMode::Inbound,
        };
        assert!(matches!(
            router.supervise(T1, AgentId(1), ready).await,
            Err(RouterError::NoConsole(AgentId(1)))
        ));
        end(&router, 100).await;
        let floor = router.floor(T1).await.expect("floor");
        assert_eq!(
            presence(floor),
            Some((disconnected, crate::Presence::WrapUp)),
            "wrap-up first"
        );
        wrap_up_done(&router, 1, 100).await;
        let floor = router.floor(T1).await.expect("floor");
        assert_eq!(
            presence(floor),
            Some((crate::AgentStatus::Offline, crate::Presence::Offline))
        );
        router.stop();
    }

    /// As vacd stops, the agents not offline are logged off in the event log, whatever they
    /// hold; offline ones are not logged again.
    #[tokio::test]
    async fn stopping_logs_every_agent_off() {
        let (host, router) = start(vec![(T1, setup(&[1, 2, 3], &[]))]).await;
        let (_one, mut rx) = console(&router, T1, 1).await;
        enqueue(&router, T1, 100).await;
        until(&mut rx, offer_of(100)).await;
        accept(&router, 1, 100).await;
        let (_two, mut rx) = console(&router, T1, 2).await;
        until(&mut rx, reply_to("ready")).await;
        host.recorded.lock().expect("recorded").clear();
        router.log_off_all().await;
        let recorded = host.recorded.lock().expect("recorded").clone();
        let offline: Vec<_> = recorded
            .iter()
            .filter_map(|(_, o)| match o {
                Output::PresenceChanged {
                    agent,
                    from,
                    to: crate::Presence::Offline,
                } => Some((agent.0, from.clone())),
                _ => None,
            })
            .collect();
        let ready = crate::Presence::Ready {
            mode: ReadyMode::Inbound,
        };
        assert_eq!(offline, [(1, crate::Presence::Busy), (2, ready)]);
        router.stop();
    }

    /// A failed tenant is loaded again as a restart: with its waiting work, and with the work
    /// its agents held given back to them (the agent's new console finds it).
    #[tokio::test]
    async fn a_failed_tenant_restarts_from_the_host_and_others_keep_running() {
        let (host, router) = start(vec![(T1, setup(&[1], &[7])), (T2, setup(&[1], &[]))]).await;
        let (_other, mut other_rx) = console(&router, T2, 1).await;
        let (_session, mut rx) = console(&router, T1, 1).await;
        until(&mut rx, offer_of(7)).await;
        // What the host will have for the restart: agent 1 was connected to email 9.
        let held = Held {
            interaction: email(9),
            agent: AgentId(1),
            wrap_up: false,
        };
        host.setups
            .lock()
            .expect("setups")
            .entry(T1)
            .and_modify(|setup| setup.held.push(held));

        router
            .tenant_ref(T1)
            .await
            .cast(crate::tenant::TenantMsg::Panic)
            .expect("message delivered");
        // The tenant's consoles are closed with it.
        closed(&mut rx).await;
        // It comes back from the host with its waiting interaction; a new console gets it, and
        // finds the email it was connected to.
        let (_session, mut rx) = console(&router, T1, 1).await;
        let hello = until(&mut rx, |e| matches!(e, ConsoleEvent::Hello { .. })).await;
        let ConsoleEvent::Hello { status, work, .. } = hello else {
            unreachable!("matched above")
        };
        assert_eq!(status, crate::AgentStatus::disconnected());
        let work: Vec<_> = work.iter().map(|w| (w.interaction, w.state)).collect();
        assert_eq!(work, [(InteractionId(9), crate::WorkState::Connected)]);
        until(&mut rx, offer_of(7)).await;
        let loads = host.loads.lock().expect("loads").clone();
        let of_t1: Vec<Load> = loads
            .into_iter()
            .filter(|(t, _)| *t == T1)
            .map(|(_, why)| why)
            .collect();
        assert_eq!(of_t1, [Load::Start, Load::Restart]);
        // The other tenant never noticed.
        enqueue(&router, T2, 8).await;
        until(&mut other_rx, offer_of(8)).await;
        router.stop();
    }
}

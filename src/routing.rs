//! Wires routing (`vacd-actors`) to the store and the API. [`Routing`] starts the actor tree with
//! a [`Host`] backed by the store: tenants are loaded from it, and every output of the engines
//! goes to the store's journal ([`Store::journal`]), which writes them in rounds to the event log
//! and the interactions table. At start every tenant's routing is started, which re-queues the
//! written interactions that were waiting when vacd stopped.
//!
//! The admin API calls [`Routing::after_change`] after each committed change (and
//! [`RoutingHandle::reconfigure`] after a change of a tenant's routing settings), so skills,
//! queue settings, assignments, blending and the missed-offer policy take effect in the running
//! engine before the API answers. Changes that arrive while a tenant is being reloaded share the
//! next reload ([`Reloads`]): an import of 2,000 agents costs a few reloads, not one per row.
//! A tenant's routing restarted after a failure also takes back the calls still waiting on the
//! SIP endpoint (the store host's `load`).
//!
//! Calls are routed like everything else, but their signalling lives in the SIP endpoint: a
//! [`CallTap`] hands the outputs about live calls (offers to ring an agent's phone, revoked
//! offers to cancel it, ends from the console to hang up) to the endpoint as they happen.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use serde_json::Value as Json;
use tokio::sync::{mpsc, oneshot};
use vacd_actors::{
    AgentId, BoxFuture, Channel, Host, Input, InteractionId, Load, NewInteraction, Output, QueueId,
    Router, RouterError, TenantId, TenantSetup,
};

use vacd_sip::mix::Monitor;

use crate::catalog::{self, Column, Resource};
use crate::chat::ChatTap;
use crate::sip::MonitorError;
use crate::store::{OutputBatch, RoutingSetup, Store, Value};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("routing did not start: {0}")]
    Spawn(#[from] ractor::SpawnErr),
    #[error("store: {0}")]
    Store(#[from] crate::store::Error),
}

struct StoreHost {
    store: Store,
    calls: CallTap,
    chats: ChatTap,
    /// Never sent: its receiver learns that the host is dropped, i.e. that every actor that
    /// could still record outputs is gone.
    _alive: oneshot::Sender<()>,
}

/// What routing tells the SIP endpoint about a live call (`call` is the endpoint's key of it).
#[derive(Debug, PartialEq)]
pub enum CallRouted {
    /// A routing output about the call.
    Output { call: u64, output: Output },
    /// The tenant's routing restarted after a failure and the call waits again: whatever it was
    /// offered is void, so every agent's phone still ringing for it stops (the restored routing
    /// offers it anew).
    OffersVoid { call: u64 },
}

/// What the console asks of a live call that routing cannot do: the SIP endpoint does it and
/// replies.
#[derive(Debug)]
pub enum CallRequest {
    /// Blind transfer of `agent`'s connected call to an external number.
    TransferOut {
        call: u64,
        agent: AgentId,
        number: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// A supervisor starts, switches or stops monitoring a call.
    Monitor {
        call: u64,
        monitoring: Monitoring,
        reply: oneshot::Sender<Result<(), MonitorError>>,
    },
    /// `agent`'s console puts its connected call on hold (`on`) or takes it off.
    Hold {
        call: u64,
        agent: AgentId,
        on: bool,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// `agent`'s console (re)connected and has its `hello`: the calls its phone is talking on
    /// tell it their holds, which routing does not know. Nothing is replied.
    ConsoleLinked { tenant: i64, agent: AgentId },
    /// Click-to-dial: ring the agent's phone, then call the number and bridge them.
    Dial {
        dial: Dial,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// `agent`'s SIP credentials changed or the agent is gone: its phone's registration is
    /// void (a phone with the old password, lost or stolen, must not go on ringing).
    ForgetPhone { tenant: i64, agent: AgentId },
}

/// A supervisor's request about monitoring a call of `tenant`: start or switch to `mode`, or
/// stop (`None`); `lead`: the supervisor is a team lead, whose monitoring ends when the call is
/// transferred (it may leave the lead's team).
#[derive(Debug)]
pub struct Monitoring {
    pub tenant: i64,
    pub supervisor: AgentId,
    pub lead: bool,
    pub mode: Option<Monitor>,
}

/// A click-to-dial call to place: `agent` of `tenant` calls `number` (E.164) as work of
/// `queue` (one it serves: the call's wrap-up and figures are that queue's).
#[derive(Debug)]
pub struct Dial {
    pub tenant: i64,
    pub agent: AgentId,
    pub queue: i64,
    pub number: String,
}

/// The two channels of a [`CallTap`], for the SIP endpoint.
pub struct CallTapEnds {
    pub routed: mpsc::UnboundedReceiver<CallRouted>,
    pub requests: mpsc::UnboundedReceiver<CallRequest>,
}

/// Connects routing with the SIP endpoint: forwards routing outputs about live calls to it,
/// and the console's requests about calls. The index of live calls (interaction → call) has
/// one writer, the SIP endpoint's call actors: they register a call before enqueueing it and
/// unregister it when it ends; the tenant actors and the console only read it.
#[derive(Clone)]
pub struct CallTap {
    calls: Arc<DashMap<u64, LiveCall>>,
    events: mpsc::UnboundedSender<CallRouted>,
    requests: mpsc::UnboundedSender<CallRequest>,
}

/// A live call in the index of a [`CallTap`].
#[derive(Clone, Copy)]
struct LiveCall {
    key: u64,
    /// The agent of a click-to-dial whose phone has not answered: the customer is not called
    /// yet.
    dialling: Option<AgentId>,
}

impl CallTap {
    pub fn new() -> (CallTap, CallTapEnds) {
        let (events, routed) = mpsc::unbounded_channel();
        let (requests, requests_rx) = mpsc::unbounded_channel();
        let tap = CallTap {
            calls: Arc::new(DashMap::new()),
            events,
            requests,
        };
        let ends = CallTapEnds {
            routed,
            requests: requests_rx,
        };
        (tap, ends)
    }

    /// Asks the SIP endpoint to carry out `monitoring` of the call `interaction`.
    pub async fn monitor(
        &self,
        interaction: InteractionId,
        monitoring: Monitoring,
    ) -> Result<(), MonitorError> {
        let call = self
            .live_call(interaction)
            .map_err(|_| MonitorError::NoCall)?;
        let (reply, done) = oneshot::channel();
        self.requests
            .send(CallRequest::Monitor {
                call,
                monitoring,
                reply,
            })
            .map_err(|_| MonitorError::NoCall)?;
        done.await.unwrap_or(Err(MonitorError::NoCall))
    }

    /// Asks the SIP endpoint to place a click-to-dial call.
    pub async fn dial(&self, dial: Dial) -> Result<(), String> {
        self.ask(|reply| CallRequest::Dial { dial, reply }).await
    }

    /// Sends the request `make` builds and waits for the endpoint's reply.
    async fn ask(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), String>>) -> CallRequest,
    ) -> Result<(), String> {
        let (reply, done) = oneshot::channel();
        self.requests
            .send(make(reply))
            .map_err(|_| "telephony is not running".to_string())?;
        done.await
            .unwrap_or_else(|_| Err("telephony stopped".to_string()))
    }

    /// Asks the SIP endpoint to transfer `agent`'s call `interaction` to `number`.
    pub async fn transfer_out(
        &self,
        interaction: InteractionId,
        agent: AgentId,
        number: String,
    ) -> Result<(), String> {
        let call = self.live_call(interaction)?;
        self.ask(|reply| CallRequest::TransferOut {
            call,
            agent,
            number,
            reply,
        })
        .await
    }

    /// Asks the SIP endpoint to put `agent`'s call `interaction` on hold (`on`) or take it off.
    pub async fn hold(
        &self,
        interaction: InteractionId,
        agent: AgentId,
        on: bool,
    ) -> Result<(), String> {
        let call = self.live_call(interaction)?;
        self.ask(|reply| CallRequest::Hold {
            call,
            agent,
            on,
            reply,
        })
        .await
    }

    /// Tells the SIP endpoint that user `user` of `tenant` may register its phone only anew
    /// (its SIP credentials changed, or it was deleted).
    pub fn forget_phone(&self, tenant: i64, user: i64) {
        let agent = AgentId(u64::try_from(user).unwrap_or_default());
        // Without telephony there is no registration.
        let _ = self
            .requests
            .send(CallRequest::ForgetPhone { tenant, agent });
    }

    /// Tells the SIP endpoint that `agent` of `tenant` has a new console, which the agent's
    /// held calls then tell of their holds (see [`CallRequest::ConsoleLinked`]).
    pub fn console_linked(&self, tenant: i64, agent: AgentId) {
        // Without telephony there is no call to be held.
        let _ = self
            .requests
            .send(CallRequest::ConsoleLinked { tenant, agent });
    }

    /// The key of `interaction`'s call, if it is live.
    fn live_call(&self, interaction: InteractionId) -> Result<u64, String> {
        self.calls
            .get(&interaction.0)
            .map(|c| c.key)
            .ok_or_else(|| format!("interaction {interaction} is no live call"))
    }

    /// Outputs about `interaction` go to the endpoint from now on, tagged with `call`;
    /// `dialling` names the agent of a click-to-dial, until [`CallTap::dial_answered`].
    pub fn register(&self, interaction: InteractionId, call: u64, dialling: Option<AgentId>) {
        let call = LiveCall {
            key: call,
            dialling,
        };
        self.calls.insert(interaction.0, call);
    }

    /// The agent's phone answered the click-to-dial `interaction`: the customer is called.
    pub fn dial_answered(&self, interaction: InteractionId) {
        if let Some(mut call) = self.calls.get_mut(&interaction.0) {
            call.dialling = None;
        }
    }

    /// Whether `interaction` is `agent`'s click-to-dial whose customer is not called yet (the
    /// agent's phone has not answered): there is nobody to transfer.
    pub fn dialling(&self, interaction: InteractionId, agent: AgentId) -> bool {
        self.calls
            .get(&interaction.0)
            .is_some_and(|c| c.dialling == Some(agent))
    }

    pub fn unregister(&self, interaction: InteractionId) {
        self.calls.remove(&interaction.0);
    }

    /// The interactions of the calls live now.
    fn live(&self) -> BTreeSet<i64> {
        self.calls.iter().map(|c| *c.key() as i64).collect()
    }

    fn forward(&self, outputs: &[Output]) {
        if self.calls.is_empty() {
            return;
        }
        for output in outputs {
            if let Some(interaction) = output.interaction() {
                self.tell(interaction, |call| CallRouted::Output {
                    call,
                    output: output.clone(),
                });
            }
        }
    }

    /// Tells the SIP endpoint that the offers of the live calls `interactions` are void (see
    /// [`CallRouted::OffersVoid`]).
    pub fn void_offers(&self, interactions: &[InteractionId]) {
        for interaction in interactions {
            self.tell(*interaction, |call| CallRouted::OffersVoid { call });
        }
    }

    /// Sends the endpoint what `news` makes of the key of `interaction`'s call, if it is live.
    fn tell(&self, interaction: InteractionId, news: impl FnOnce(u64) -> CallRouted) {
        if let Some(call) = self.calls.get(&interaction.0).map(|c| c.key) {
            if self.events.send(news(call)).is_err() {
                tracing::warn!(%interaction, "SIP endpoint gone; call news dropped");
            }
        }
    }
}

impl Host for StoreHost {
    /// At a start, waits until the journal has written every output sent so far (a restarted
    /// tenant must not read rows its predecessor's last outputs have yet to change), then reads
    /// the waiting work too. The calls still on the line wait again in their places (the SIP
    /// endpoint holds them whatever happened to routing); the phones their void offers ring are
    /// told to stop, as if the agents had become unavailable, before the restored routing offers
    /// them anew. After a failure, the work agents held (connected or in wrap-up: its call or
    /// chat went on) is theirs again. An admin change reads only the configuration, which the
    /// journal never writes.
    fn load(&self, tenant: TenantId, why: Load) -> BoxFuture<Result<TenantSetup, String>> {
        let (store, calls) = (self.store.clone(), self.calls.clone());
        let tenant = tenant.0 as i64;
        Box::pin(async move {
            if why == Load::Reconfigure {
                return store
                    .routing_config(tenant)
                    .await
                    .map_err(|e| e.to_string());
            }
            store.flushed().await;
            let RoutingSetup {
                setup,
                waiting_calls,
            } = store
                .routing_setup(tenant, &calls.live(), why == Load::Restart)
                .await
                .map_err(|e| e.to_string())?;
            calls.void_offers(&waiting_calls);
            Ok(setup)
        })
    }

    fn record(&self, tenant: TenantId, at: SystemTime, outputs: Vec<Output>) {
        self.calls.forward(&outputs);
        self.chats.forward(&outputs);
        self.store.journal(OutputBatch {
            tenant: tenant.0 as i64,
            at,
            outputs,
        });
    }
}

/// The running routing: the actor tree. Owned by the server.
pub struct Routing {
    handle: RoutingHandle,
    supervisor: ractor::concurrency::JoinHandle<()>,
    /// Resolves once the host, which every actor holds, is dropped.
    host_gone: oneshot::Receiver<()>,
}

/// What request handlers use: the router and the hooks for admin changes. Cheap to clone.
#[derive(Clone)]
pub struct RoutingHandle {
    router: Router,
    store: Store,
    calls: CallTap,
    reloads: Arc<DashMap<i64, Arc<Reloads>>>,
}

/// One tenant's reloads after admin changes. Each change counts itself in `requested`; a reload
/// covers every change counted before it started, so a change waits for the reload running
/// now (which may predate it) and then for one more only if nobody has started it since.
#[derive(Default)]
struct Reloads {
    requested: AtomicU64,
    /// The `requested` count the last reload started at.
    covered: tokio::sync::Mutex<u64>,
}

impl Routing {
    /// Starts the actor tree and the routing of every tenant in the store.
    pub async fn start(store: Store, calls: CallTap, chats: ChatTap) -> Result<Routing, Error> {
        let (alive, host_gone) = oneshot::channel();
        let host = Arc::new(StoreHost {
            store: store.clone(),
            calls: calls.clone(),
            chats,
            _alive: alive,
        });
        let (router, supervisor) = Router::start(host).await?;
        for tenant in store.tenant_ids().await? {
            if let Err(e) = router.ensure(TenantId(tenant as u64)).await {
                tracing::error!(tenant, error = %e, "tenant routing did not start");
            }
        }
        Ok(Routing {
            handle: RoutingHandle {
                router,
                store,
                calls,
                reloads: Arc::default(),
            },
            supervisor,
            host_gone,
        })
    }

    pub fn handle(&self) -> RoutingHandle {
        self.handle.clone()
    }

    /// Logs every agent off in the event log, stops every actor, waits until the last is gone (the supervisor's children are killed
    /// after it stops, and one still busy may record outputs), then until the journal has
    /// written everything they produced.
    pub async fn shutdown(self) {
        // Bounded like the rest: a tenant busy reloading must not hold the stop.
        let logging_off = self.handle.router.log_off_all();
        if tokio::time::timeout(Duration::from_secs(10), logging_off)
            .await
            .is_err()
        {
            tracing::error!("agents not all logged off within 10 s");
        }
        self.handle.router.stop();
        let stopped = async {
            let _ = self.supervisor.await;
            let _ = self.host_gone.await;
            self.handle.store.flushed().await;
        };
        if tokio::time::timeout(Duration::from_secs(30), stopped)
            .await
            .is_err()
        {
            tracing::error!("routing not stopped and written within 30 s");
        }
    }
}

impl RoutingHandle {
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Waits until the journal has written every routing output produced so far (reports read
    /// the event log after this, so they include everything routed before the request).
    pub async fn flushed(&self) {
        self.store.flushed().await;
    }

    /// [`RoutingHandle::flushed`] for a request: gives up after [`crate::store::JOURNAL_WAIT`]
    /// with `JournalBehind` while the database cannot take routing's writes.
    pub async fn caught_up(&self) -> crate::store::Result<()> {
        self.store.caught_up().await
    }

    /// The bridge to live calls (for console requests the SIP endpoint carries out).
    pub fn calls(&self) -> &CallTap {
        &self.calls
    }

    /// Called after a committed admin change of `resource` in `tenant` (`row` is the row after
    /// the change, `None` after a delete). Routing-relevant changes reconfigure the tenant's
    /// engine; a new interaction with a queue is enqueued.
    pub async fn after_change(
        &self,
        resource: &Resource,
        tenant: i64,
        row: Option<&Json>,
        created: bool,
    ) {
        let relevant = [
            &catalog::QUEUES,
            &catalog::QUEUE_SKILLS,
            &catalog::QUEUE_ESCALATIONS,
            &catalog::QUEUE_MEMBERS,
            &catalog::USERS,
            &catalog::AGENT_SKILLS,
            &catalog::SKILLS,
        ];
        if relevant.iter().any(|r| std::ptr::eq(*r, resource)) {
            self.reconfigure(tenant).await;
        } else if created && std::ptr::eq(resource, &catalog::INTERACTIONS) {
            if let Some(row) = row {
                if let Err(e) = self.enqueue(tenant, row).await {
                    tracing::warn!(tenant, interaction = %row["id"], error = %e, "interaction not routed");
                }
            }
        }
    }

    /// Reloads `tenant`'s routing after a committed change (of the catalog, through
    /// [`RoutingHandle::after_change`], or of the tenant's routing settings), once for all
    /// changes that arrived while the previous reload ran; returns when a reload that began
    /// after this change is done.
    pub async fn reconfigure(&self, tenant: i64) {
        let reloads = self.reloads.entry(tenant).or_default().clone();
        let mine = reloads.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut covered = reloads.covered.lock().await;
        if *covered >= mine {
            return;
        }
        *covered = reloads.requested.load(Ordering::SeqCst);
        if let Err(e) = self.router.reconfigure(TenantId(tenant as u64)).await {
            tracing::error!(tenant, error = %e, "routing not reconfigured after an admin change");
        }
    }

    /// Creates an interaction (`values` as the API validated them) and routes it at once, while
    /// its insert waits for its group commit ([`Store::create_ahead`]): an offer does not wait
    /// for the database. Answers the row as written, like [`Store::create`]. An insert that
    /// fails after routing took the interaction withdraws it: as if its customer left, or, if
    /// an agent accepted it meanwhile, as if it ended (an insert whose outcome is unknown
    /// leaves it routed). The rows it names besides its queue (a customer, a mailbox) are read
    /// first; routing itself refuses a queue it does not know, and the insert then does too.
    /// `None` when the create is not for this path — it names no queue, is not new, names a
    /// row that is not there (the usual create reports it), or no id is reserved: the caller
    /// creates it as any other row.
    pub async fn create_routed(
        &self,
        tenant: i64,
        actor: Option<i64>,
        values: &[(&'static Column, Value)],
    ) -> Option<crate::store::Result<Json>> {
        let routable = values
            .iter()
            .all(|(column, value)| match (column.name, value) {
                ("queue_id", value) => matches!(value, Value::Int(Some(_))),
                ("state", value) => matches!(value, Value::Text(Some(s)) if s == "new"),
                _ => true,
            })
            && values.iter().any(|(c, _)| c.name == "queue_id");
        if !routable {
            return None;
        }
        let others: Vec<_> = values
            .iter()
            .filter(|(c, _)| c.name != "queue_id")
            .collect();
        match self.store.references_exist(tenant, others).await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::warn!(tenant, error = %e, "references not read; the interaction is written before it is routed");
                return None;
            }
        }
        let ahead = self.store.create_ahead(tenant, actor, values)?;
        let id = ahead.id;
        let routed = self.enqueue(tenant, &ahead.row).await;
        if let Err(e) = &routed {
            tracing::warn!(tenant, interaction = id, error = %e, "interaction not routed");
        }
        let written = ahead.written().await;
        match &written {
            Err(e) if routed.is_ok() && !matches!(e, crate::store::Error::CommitUnknown) => {
                tracing::error!(tenant, interaction = id, error = %e, "interaction routed but not written; withdrawn from routing");
                self.withdraw(tenant, InteractionId(id as u64)).await;
            }
            _ => {}
        }
        Some(written)
    }

    /// Takes an interaction whose row was never written out of routing: as abandoned while it
    /// waits, as ended (its agent wraps up) once an agent took it.
    async fn withdraw(&self, tenant: i64, interaction: InteractionId) {
        let tenant_id = TenantId(tenant as u64);
        let abandoned = self
            .router
            .input(tenant_id, Input::Abandon { interaction })
            .await;
        let withdrawn = match abandoned {
            Err(RouterError::Rejected(vacd_actors::Error::NotWaiting { .. })) => {
                self.router
                    .input(tenant_id, Input::End { interaction })
                    .await
            }
            abandoned => abandoned,
        };
        if let Err(e) = withdrawn {
            tracing::warn!(tenant, %interaction, error = %e, "unwritten interaction not withdrawn");
        }
    }

    /// Routes a freshly created interaction (`row` as the store returns it) that names a queue.
    pub async fn enqueue(&self, tenant: i64, row: &Json) -> Result<(), RouterError> {
        let (Some(id), Some(queue)) = (row["id"].as_i64(), row["queue_id"].as_i64()) else {
            return Ok(());
        };
        // Only new work is routed; a record created as done (an import, say) is history.
        if row["state"] != "new" {
            return Ok(());
        }
        let Some(channel) = row["channel"]
            .as_str()
            .and_then(|c| serde_json::from_value::<Channel>(Json::from(c)).ok())
        else {
            return Ok(());
        };
        let language = self
            .store
            .language_need(tenant, row["language"].as_str())
            .await;
        let interaction = NewInteraction {
            id: InteractionId(id as u64),
            channel,
            queue: QueueId(queue as u64),
            language,
            skills: Vec::new(),
            priority: row["priority"].as_i64().unwrap_or_default() as i32,
            restored: None,
        };
        self.router
            .input(TenantId(tenant as u64), Input::Enqueue { interaction })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::resources::new_values;
    use crate::catalog::{INTERACTIONS, QUEUES, USERS};
    use serde_json::json;

    /// A tenant's routing started after a failure takes back a live call that was offered and
    /// tells the SIP endpoint to stop every phone still ringing for it, and gives a live connected call back to
    /// its agent, but leaves a live call not taken in yet to its own Enqueue; a start with vacd
    /// gives nothing back; an admin change's reload reads only the configuration and stops
    /// nothing.
    #[tokio::test]
    async fn a_restart_takes_back_live_calls_and_cancels_their_void_offers() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/vacd.db?mode=rwc", dir.path().display());
        let store = Store::open(&url, 2).await.expect("store opens");
        let tenant = store.create_tenant("t", "T").await.expect("tenant").id;
        let create = |resource, body| {
            let values = new_values(resource, body).expect("valid");
            let store = store.clone();
            async move {
                store
                    .create(resource, tenant, None, &values)
                    .await
                    .expect("created")["id"]
                    .as_i64()
                    .expect("id")
            }
        };
        let queue = create(&QUEUES, json!({ "name": "Q" })).await;
        let call = create(
            &INTERACTIONS,
            json!({ "channel": "call", "queue_id": queue }),
        )
        .await;
        let answered = create(
            &INTERACTIONS,
            json!({ "channel": "call", "queue_id": queue }),
        )
        .await;
        // A call whose row is still `new`: its own Enqueue has not reached routing yet.
        let arriving = create(
            &INTERACTIONS,
            json!({ "channel": "call", "queue_id": queue }),
        )
        .await;
        let agent = create(
            &USERS,
            json!({ "username": "a", "display_name": "A", "password": "password1" }),
        )
        .await;
        let (interaction, queue_id) = (InteractionId(call as u64), QueueId(queue as u64));
        let (answered, agent) = (InteractionId(answered as u64), AgentId(agent as u64));
        let mut outputs = Vec::new();
        for (call, agent) in [(interaction, AgentId(7)), (answered, agent)] {
            outputs.push(Output::Queued {
                interaction: call,
                queue: queue_id,
                channel: Channel::Call,
                order: call.0,
                priority: 0,
                waited: std::time::Duration::ZERO,
            });
            outputs.push(Output::Offered {
                interaction: call,
                agent,
                queue: queue_id,
                channel: Channel::Call,
                timeout: Duration::from_secs(20),
            });
        }
        // Ring-all: the waiting call rings a second phone, and the first one rejects — the
        // row says `queued` while the other phone still rings.
        outputs.push(Output::Offered {
            interaction,
            agent: AgentId(8),
            queue: queue_id,
            channel: Channel::Call,
            timeout: Duration::from_secs(20),
        });
        outputs.push(Output::OfferRevoked {
            interaction,
            agent: AgentId(7),
            reason: vacd_actors::RevokeReason::Rejected,
        });
        outputs.push(Output::Connected {
            interaction: answered,
            agent,
            queue: queue_id,
            waited: Duration::from_secs(3),
        });
        store
            .record_outputs(&[OutputBatch {
                tenant,
                at: SystemTime::now(),
                outputs,
            }])
            .await
            .expect("recorded");
        let (calls, mut ends) = CallTap::new();
        calls.register(interaction, 42, None);
        calls.register(answered, 43, None);
        calls.register(InteractionId(arriving as u64), 44, None);
        let host = StoreHost {
            store: store.clone(),
            calls,
            chats: ChatTap::default(),
            _alive: oneshot::channel().0,
        };

        let setup = host
            .load(TenantId(tenant as u64), Load::Reconfigure)
            .await
            .expect("configuration");
        assert!(setup.waiting.is_empty());
        assert!(ends.routed.try_recv().is_err(), "a reload stops no phone");

        let setup = host
            .load(TenantId(tenant as u64), Load::Start)
            .await
            .expect("setup");
        assert!(setup.held.is_empty(), "{:?}", setup.held);
        while ends.routed.try_recv().is_ok() {}

        let setup = host
            .load(TenantId(tenant as u64), Load::Restart)
            .await
            .expect("setup");
        let waiting: Vec<InteractionId> = setup.waiting.iter().map(|w| w.id).collect();
        assert_eq!(waiting, [interaction]);
        let held: Vec<(InteractionId, AgentId)> = setup
            .held
            .iter()
            .map(|h| (h.interaction.id, h.agent))
            .collect();
        assert_eq!(held, [(answered, agent)]);
        assert_eq!(
            ends.routed.try_recv().ok(),
            Some(CallRouted::OffersVoid { call: 42 }),
            "the phones still ringing for the waiting call stop"
        );
        assert!(
            ends.routed.try_recv().is_err(),
            "the held call rings nothing"
        );
        store.close().await;
    }
}

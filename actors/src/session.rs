//! The session actor: one per connected agent console. It passes the console's commands to its
//! tenant actor (which turns them into engine inputs) and forwards the events meant for its agent to the
//! console's outgoing channel. It holds no routing state; when it stops (console closed,
//! replaced by a newer console, or failed) its tenant actor logs the agent out.

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::mpsc;

use crate::console::{Command, ConsoleEvent};
use crate::supervisor::{RouterError, TenantId};
use crate::tenant::TenantMsg;
use crate::AgentId;

pub(crate) enum SessionMsg {
    Command(Command, RpcReplyPort<Result<(), RouterError>>),
    Event(ConsoleEvent),
    /// A newer console of the same agent took over.
    Replaced,
    /// The console closed.
    Close,
    #[cfg(test)]
    Panic,
}

pub(crate) struct SessionArgs {
    pub(crate) agent: AgentId,
    pub(crate) tenant_id: TenantId,
    pub(crate) tenant: ActorRef<TenantMsg>,
    pub(crate) events: mpsc::UnboundedSender<ConsoleEvent>,
    pub(crate) hello: ConsoleEvent,
}

pub(crate) struct SessionActor;

pub(crate) struct SessionState {
    agent: AgentId,
    tenant_id: TenantId,
    tenant: ActorRef<TenantMsg>,
    events: mpsc::UnboundedSender<ConsoleEvent>,
}

impl Actor for SessionActor {
    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = SessionArgs;

    async fn pre_start(
        &self,
        _: ActorRef<SessionMsg>,
        args: SessionArgs,
    ) -> Result<SessionState, ActorProcessingErr> {
        let _ = args.events.send(args.hello);
        Ok(SessionState {
            agent: args.agent,
            tenant_id: args.tenant_id,
            tenant: args.tenant,
            events: args.events,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SessionMsg>,
        message: SessionMsg,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SessionMsg::Command(command, reply) => {
                let agent = state.agent;
                let result = match state
                    .tenant
                    .call(
                        |tx| TenantMsg::Command {
                            agent,
                            command,
                            reply: tx,
                        },
                        None,
                    )
                    .await
                {
                    Ok(ractor::rpc::CallResult::Success(result)) => {
                        result.map_err(RouterError::Rejected)
                    }
                    _ => Err(RouterError::Unavailable(
                        state.tenant_id,
                        "tenant routing is restarting".into(),
                    )),
                };
                let _ = reply.send(result);
            }
            SessionMsg::Event(event) => {
                if state.events.send(event).is_err() {
                    myself.stop(Some("console gone".into()));
                }
            }
            SessionMsg::Replaced => {
                let _ = state.events.send(ConsoleEvent::SessionReplaced);
                myself.stop(Some("replaced".into()));
            }
            SessionMsg::Close => myself.stop(Some("closed".into())),
            #[cfg(test)]
            SessionMsg::Panic => panic!("session actor panic requested by a test"),
        }
        Ok(())
    }
}

//! The session actor: one per connected agent console. It stands for the console in its tenant
//! actor (which takes the console's commands directly, checking they come from the current
//! session) and forwards the events meant for its agent to the console's outgoing channel. It
//! holds no routing state; when it stops (console closed, replaced by a newer console, or failed)
//! its tenant actor logs the agent out.

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::mpsc;

use crate::console::ConsoleEvent;

pub(crate) enum SessionMsg {
    Event(ConsoleEvent),
    /// A newer console of the same agent took over.
    Replaced,
    /// The console closed.
    Close,
    #[cfg(test)]
    Panic,
}

pub(crate) struct SessionArgs {
    pub(crate) events: mpsc::UnboundedSender<ConsoleEvent>,
    pub(crate) hello: ConsoleEvent,
}

pub(crate) struct SessionActor;

pub(crate) struct SessionState {
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

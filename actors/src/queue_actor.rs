//! The queue actor: one per queue. It publishes the queue's live figures (`queue.stats`) to the
//! consoles of the agents serving it, sending only when the figures changed (or to a console
//! that has not had them from this actor yet; a console gets the current figures from the
//! tenant actor when it connects). The figures come from the tenant actor's engine; this actor
//! keeps only what it last sent, so a restart after a failure loses nothing.

use std::collections::BTreeSet;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef};

use crate::console::ConsoleEvent;
use crate::session::SessionMsg;
use crate::{QueueId, QueueStats};

pub(crate) enum QueueMsg {
    Stats(QueueStats, Vec<ActorRef<SessionMsg>>),
    #[cfg(test)]
    Panic,
}

pub(crate) struct QueueActor;

pub(crate) struct QueueState {
    last: Option<QueueStats>,
    told: BTreeSet<ActorId>,
}

impl Actor for QueueActor {
    type Msg = QueueMsg;
    type State = QueueState;
    type Arguments = QueueId;

    async fn pre_start(
        &self,
        _: ActorRef<QueueMsg>,
        _: QueueId,
    ) -> Result<QueueState, ActorProcessingErr> {
        Ok(QueueState {
            last: None,
            told: BTreeSet::new(),
        })
    }

    async fn handle(
        &self,
        _: ActorRef<QueueMsg>,
        message: QueueMsg,
        state: &mut QueueState,
    ) -> Result<(), ActorProcessingErr> {
        let (stats, subscribers) = match message {
            QueueMsg::Stats(stats, subscribers) => (stats, subscribers),
            #[cfg(test)]
            QueueMsg::Panic => panic!("queue actor panic requested by a test"),
        };
        let changed = state.last.as_ref() != Some(&stats);
        let event = ConsoleEvent::from(&stats);
        for session in &subscribers {
            if changed || !state.told.contains(&session.get_id()) {
                let _ = session.cast(SessionMsg::Event(event.clone()));
            }
        }
        state.told = subscribers.iter().map(|s| s.get_id()).collect();
        state.last = Some(stats);
        Ok(())
    }
}

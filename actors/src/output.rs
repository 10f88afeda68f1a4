//! Everything the routing engine decides, as domain events: [`Output`].
//!
//! Each output is a state change the outside world acts on and persists in the event log (in the
//! order polled). Outputs carry durations, not instants: an [`Instant`](std::time::Instant) means
//! nothing in a log or after a restart, so a deadline is given as a duration from the `now` of the
//! call that produced it (an offer expires `timeout` after that `now`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::capacity::Channel;
use crate::ids::{AgentId, InteractionId, QueueId};
use crate::input::TransferTarget;
use crate::presence::Presence;
use crate::queue::EscalationAction;

/// Why a pending offer was withdrawn from an agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    /// The agent rejected it.
    Rejected,
    /// The offer timeout passed.
    TimedOut,
    /// Ring-all: another agent accepted first.
    AnsweredElsewhere,
    /// The customer left.
    Abandoned,
    /// The agent went not ready, outbound, back office or offline, or was removed.
    AgentUnavailable,
    /// A supervisor moved the interaction elsewhere.
    Moved,
    /// Its queue stopped ringing everyone (an admin changed its strategy from ring-all): it
    /// stays offered to one agent only.
    QueueChanged,
}

/// A domain event produced by the engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Output {
    /// The interaction waits in `queue` (on enqueue, and on transfer to a queue).
    Queued {
        /// The interaction.
        interaction: InteractionId,
        /// Its queue.
        queue: QueueId,
        /// Its channel.
        channel: Channel,
        /// Its enqueue order; store it to restore the place after a restart.
        order: u64,
        /// Its own priority (added to the queue's).
        priority: i32,
        /// How long it had waited already: zero for a new wait; a wait restored after a
        /// restart goes on (its start is `waited` before this output, it is no new entry).
        #[serde(default, skip_serializing_if = "Duration::is_zero")]
        waited: Duration,
    },
    /// The agent is reserved and offered the interaction.
    Offered {
        /// The interaction.
        interaction: InteractionId,
        /// The agent.
        agent: AgentId,
        /// The interaction's queue.
        queue: QueueId,
        /// Its channel.
        channel: Channel,
        /// The offer expires this long after the `now` of the call that produced it.
        timeout: Duration,
    },
    /// A pending offer was withdrawn from the agent. Unless it was answered elsewhere (or the
    /// customer left) the interaction is routed again at once, keeping its place.
    OfferRevoked {
        /// The interaction.
        interaction: InteractionId,
        /// The agent.
        agent: AgentId,
        /// Why.
        reason: RevokeReason,
    },
    /// The agent accepted; the interaction is connected.
    Connected {
        /// The interaction.
        interaction: InteractionId,
        /// The agent.
        agent: AgentId,
        /// The interaction's queue.
        queue: QueueId,
        /// How long it waited (since enqueue or transfer).
        waited: Duration,
    },
    /// The agent placed the interaction itself (click-to-dial): connected at once, without a
    /// wait or an offer ([`Input::Place`](crate::Input::Place)).
    Placed {
        /// The interaction.
        interaction: InteractionId,
        /// The agent.
        agent: AgentId,
        /// The interaction's queue.
        queue: QueueId,
        /// Its channel.
        channel: Channel,
        /// Its order in the queue, as [`Output::Queued`]'s: store it, so that a restart of the
        /// routing gives the work back to its agent.
        order: u64,
    },
    /// The conversation ended; the agent is in wrap-up for `wrap_up` (zero: done at once).
    Ended {
        /// The interaction.
        interaction: InteractionId,
        /// The agent.
        agent: AgentId,
        /// Wrap-up time granted.
        wrap_up: Duration,
    },
    /// The agent's wrap-up of the interaction is over; its capacity is free again.
    WrapUpEnded {
        /// The interaction.
        interaction: InteractionId,
        /// The agent.
        agent: AgentId,
    },
    /// The interaction is finished.
    Done {
        /// The interaction.
        interaction: InteractionId,
    },
    /// The customer left before being connected.
    Abandoned {
        /// The interaction.
        interaction: InteractionId,
        /// Its queue.
        queue: QueueId,
        /// How long it waited.
        waited: Duration,
    },
    /// `agent` finished the waiting interaction outside routing (see
    /// [`Input::Close`](crate::Input::Close)): answered after `waited`, not abandoned.
    Closed {
        /// The interaction.
        interaction: InteractionId,
        /// Its queue.
        queue: QueueId,
        /// Who finished it.
        agent: AgentId,
        /// How long it waited.
        waited: Duration,
    },
    /// The connected agent handed the interaction on and is in wrap-up for `wrap_up`.
    Transferred {
        /// The interaction.
        interaction: InteractionId,
        /// The agent that transferred it.
        from: AgentId,
        /// Where to.
        to: TransferTarget,
        /// Wrap-up time granted to `from`.
        wrap_up: Duration,
    },
    /// A supervisor moved a waiting interaction (see [`Input::Move`](crate::Input::Move)). Its
    /// pending offers are revoked after this; a move to an agent is followed by the offer. A
    /// move to a queue is no new wait (no [`Output::Queued`]): the interaction keeps `order` and
    /// its wait time.
    Moved {
        /// The interaction.
        interaction: InteractionId,
        /// The queue it waited in before.
        from_queue: QueueId,
        /// The queue it waits in now (`from_queue` unless moved to a queue).
        queue: QueueId,
        /// Where to.
        to: TransferTarget,
        /// Its enqueue order, unchanged.
        order: u64,
    },
    /// An escalation step of the queue applied to the interaction.
    Escalated {
        /// The interaction.
        interaction: InteractionId,
        /// Its queue.
        queue: QueueId,
        /// Index of the step in the queue's escalation list.
        step: usize,
        /// What the step did.
        action: EscalationAction,
    },
    /// The interaction has waited longer than its queue's SLA target (once per interaction).
    SlaBreached {
        /// The interaction.
        interaction: InteractionId,
        /// Its queue.
        queue: QueueId,
        /// How long it has waited.
        waited: Duration,
        /// The target.
        target: Duration,
    },
    /// The agent's presence changed.
    PresenceChanged {
        /// The agent.
        agent: AgentId,
        /// Before.
        from: Presence,
        /// After.
        to: Presence,
    },
}

impl Output {
    /// Its `type` in JSON, e.g. `offer_revoked`.
    pub fn kind(&self) -> &'static str {
        match self {
            Output::Queued { .. } => "queued",
            Output::Offered { .. } => "offered",
            Output::OfferRevoked { .. } => "offer_revoked",
            Output::Connected { .. } => "connected",
            Output::Placed { .. } => "placed",
            Output::Ended { .. } => "ended",
            Output::WrapUpEnded { .. } => "wrap_up_ended",
            Output::Done { .. } => "done",
            Output::Abandoned { .. } => "abandoned",
            Output::Closed { .. } => "closed",
            Output::Transferred { .. } => "transferred",
            Output::Moved { .. } => "moved",
            Output::Escalated { .. } => "escalated",
            Output::SlaBreached { .. } => "sla_breached",
            Output::PresenceChanged { .. } => "presence_changed",
        }
    }

    /// The interaction it is about (presence changes are about none).
    pub fn interaction(&self) -> Option<InteractionId> {
        match self {
            Output::Queued { interaction, .. }
            | Output::Offered { interaction, .. }
            | Output::OfferRevoked { interaction, .. }
            | Output::Connected { interaction, .. }
            | Output::Placed { interaction, .. }
            | Output::Ended { interaction, .. }
            | Output::WrapUpEnded { interaction, .. }
            | Output::Done { interaction }
            | Output::Abandoned { interaction, .. }
            | Output::Closed { interaction, .. }
            | Output::Transferred { interaction, .. }
            | Output::Moved { interaction, .. }
            | Output::Escalated { interaction, .. }
            | Output::SlaBreached { interaction, .. } => Some(*interaction),
            Output::PresenceChanged { .. } => None,
        }
    }

    /// The agent it is about: the one offered, connected, ending or changing presence, or the
    /// one who transferred.
    pub fn agent(&self) -> Option<AgentId> {
        match self {
            Output::Offered { agent, .. }
            | Output::OfferRevoked { agent, .. }
            | Output::Connected { agent, .. }
            | Output::Placed { agent, .. }
            | Output::Ended { agent, .. }
            | Output::WrapUpEnded { agent, .. }
            | Output::PresenceChanged { agent, .. }
            | Output::Closed { agent, .. }
            | Output::Transferred { from: agent, .. } => Some(*agent),
            Output::Queued { .. }
            | Output::Done { .. }
            | Output::Abandoned { .. }
            | Output::Moved { .. }
            | Output::Escalated { .. }
            | Output::SlaBreached { .. } => None,
        }
    }

    /// The queue it names (after a move, the queue the interaction waits in now).
    pub fn queue(&self) -> Option<QueueId> {
        match self {
            Output::Queued { queue, .. }
            | Output::Offered { queue, .. }
            | Output::Connected { queue, .. }
            | Output::Placed { queue, .. }
            | Output::Abandoned { queue, .. }
            | Output::Closed { queue, .. }
            | Output::Moved { queue, .. }
            | Output::Escalated { queue, .. }
            | Output::SlaBreached { queue, .. } => Some(*queue),
            Output::OfferRevoked { .. }
            | Output::Ended { .. }
            | Output::WrapUpEnded { .. }
            | Output::Done { .. }
            | Output::Transferred { .. }
            | Output::PresenceChanged { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::*;

    /// The accessors say what the JSON says: the event log's columns come from them, its
    /// payload from the JSON.
    #[test]
    fn accessors_agree_with_the_json() {
        use std::time::Duration;
        let (i, a, q) = (InteractionId(4), AgentId(2), QueueId(3));
        let d = Duration::from_secs(1);
        let outputs = [
            Output::Queued {
                interaction: i,
                queue: q,
                channel: Channel::Chat,
                order: 1,
                priority: 0,
                waited: std::time::Duration::ZERO,
            },
            Output::Offered {
                interaction: i,
                agent: a,
                queue: q,
                channel: Channel::Call,
                timeout: d,
            },
            Output::OfferRevoked {
                interaction: i,
                agent: a,
                reason: RevokeReason::TimedOut,
            },
            Output::Connected {
                interaction: i,
                agent: a,
                queue: q,
                waited: d,
            },
            Output::Placed {
                interaction: i,
                agent: a,
                queue: q,
                channel: Channel::Call,
                order: 1,
            },
            Output::Ended {
                interaction: i,
                agent: a,
                wrap_up: d,
            },
            Output::WrapUpEnded {
                interaction: i,
                agent: a,
            },
            Output::Done { interaction: i },
            Output::Abandoned {
                interaction: i,
                queue: q,
                waited: d,
            },
            Output::Closed {
                interaction: i,
                queue: q,
                agent: a,
                waited: d,
            },
            Output::Transferred {
                interaction: i,
                from: a,
                to: TransferTarget::Queue { queue: QueueId(9) },
                wrap_up: d,
            },
            Output::Moved {
                interaction: i,
                from_queue: QueueId(8),
                queue: q,
                to: TransferTarget::Agent { agent: AgentId(7) },
                order: 1,
            },
            Output::Escalated {
                interaction: i,
                queue: q,
                step: 0,
                action: EscalationAction::DropSkills,
            },
            Output::SlaBreached {
                interaction: i,
                queue: q,
                waited: d,
                target: d,
            },
            Output::PresenceChanged {
                agent: a,
                from: Presence::Offline,
                to: Presence::Offline,
            },
        ];
        for output in outputs {
            let json = serde_json::to_value(&output).expect("outputs serialize");
            let number = |key: &str| json.get(key).and_then(serde_json::Value::as_u64);
            assert_eq!(json["type"], output.kind(), "{output:?}");
            assert_eq!(
                number("interaction"),
                output.interaction().map(|i| i.0),
                "{output:?}"
            );
            let agent = number("agent").or_else(|| number("from"));
            assert_eq!(agent, output.agent().map(|a| a.0), "{output:?}");
            assert_eq!(number("queue"), output.queue().map(|q| q.0), "{output:?}");
        }
    }

    #[test]
    fn inputs_and_outputs_round_trip_as_tagged_snake_case_json() {
        let output = Output::OfferRevoked {
            interaction: InteractionId(4),
            agent: AgentId(2),
            reason: RevokeReason::AnsweredElsewhere,
        };
        let json = serde_json::to_string(&output).expect("outputs serialize");
        assert_eq!(
            json,
            r#"{"type":"offer_revoked","interaction":4,"agent":2,"reason":"answered_elsewhere"}"#
        );
        let outputs = vec![
            output,
            Output::PresenceChanged {
                agent: AgentId(2),
                from: Presence::NotReady {
                    reason: "missed".into(),
                },
                to: Presence::Ready {
                    mode: ReadyMode::Inbound,
                },
            },
            Output::Escalated {
                interaction: InteractionId(4),
                queue: QueueId(1),
                step: 0,
                action: EscalationAction::AddOverflowQueues {
                    queues: vec![QueueId(2)],
                },
            },
        ];
        let back: Vec<Output> =
            serde_json::from_str(&serde_json::to_string(&outputs).expect("serialize"))
                .expect("deserialize");
        assert_eq!(back, outputs);

        let input: Input = serde_json::from_str(
            r#"{"type":"enqueue","interaction":{"id":9,"channel":"sms","queue":1,"language":100,
                "skills":[{"skill":3,"level":4}],"restored":{"order":7,"waited":{"secs":5,"nanos":0}}}}"#,
        )
        .expect("inputs deserialize");
        let Input::Enqueue { interaction } = &input else {
            panic!("wrong input {input:?}");
        };
        assert_eq!(interaction.channel, Channel::Sms);
        assert_eq!(interaction.restored.map(|r| r.order), Some(7));
        let bad_level =
            r#"{"type":"upsert_agent","agent":{"id":1,"skills":[{"skill":3,"level":11}]}}"#;
        assert!(serde_json::from_str::<Input>(bad_level).is_err());
        let status =
            r#"{"type":"set_status","agent":1,"status":{"status":"not_ready","reason":"lunch"}}"#;
        assert!(serde_json::from_str::<Input>(status).is_ok());
    }
}

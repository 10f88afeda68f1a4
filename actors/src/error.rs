//! Why an input was refused: [`Error`]. A refused input changes nothing.

use crate::ids::{AgentId, InteractionId, QueueId, SkillId};
use crate::interaction::InteractionState;

/// An input that makes no sense in the current state. The engine's state is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No such agent.
    #[error("agent {0} is unknown")]
    UnknownAgent(AgentId),
    /// No such queue.
    #[error("queue {0} is unknown")]
    UnknownQueue(QueueId),
    /// No such live interaction (never enqueued, or already done or abandoned).
    #[error("interaction {0} is unknown or finished")]
    UnknownInteraction(InteractionId),
    /// The id is already used by a live interaction.
    #[error("interaction {0} is already being routed")]
    DuplicateInteraction(InteractionId),
    /// An agent configuration lists a skill twice.
    #[error("agent {agent} lists skill {skill} twice")]
    DuplicateSkill {
        /// The agent.
        agent: AgentId,
        /// The skill.
        skill: SkillId,
    },
    /// A queue configuration makes no sense.
    #[error("queue {queue}: {reason}")]
    InvalidQueue {
        /// The queue.
        queue: QueueId,
        /// What is wrong.
        reason: &'static str,
    },
    /// Accept or reject of an offer that is not pending for this agent.
    #[error("no offer of interaction {interaction} is pending for agent {agent}")]
    OfferNotPending {
        /// The interaction.
        interaction: InteractionId,
        /// The agent.
        agent: AgentId,
    },
    /// End or transfer of an interaction that is not connected.
    #[error("interaction {interaction} is {state}, not connected")]
    NotConnected {
        /// The interaction.
        interaction: InteractionId,
        /// Where it stands.
        state: InteractionState,
    },
    /// Abandon of an interaction that is already connected or ended.
    #[error("interaction {interaction} is {state}, it can no longer be abandoned")]
    NotWaiting {
        /// The interaction.
        interaction: InteractionId,
        /// Where it stands.
        state: InteractionState,
    },
    /// Wrap-up done for an interaction the agent is not wrapping up.
    #[error("agent {agent} is not wrapping up interaction {interaction}")]
    NotInWrapUp {
        /// The interaction.
        interaction: InteractionId,
        /// The agent.
        agent: AgentId,
    },
    /// Going offline or being removed while connected or in wrap-up.
    #[error("agent {0} still holds connected or wrap-up work")]
    AgentHasWork(AgentId),
    /// Transfer to an agent that is not ready inbound with free capacity for the interaction,
    /// or transfer or resume to an agent that already holds it.
    #[error("agent {0} cannot take the interaction now")]
    AgentUnavailable(AgentId),
    /// Transfer to the agent that holds the interaction.
    #[error("interaction {interaction} is already connected to agent {agent}")]
    TransferToSelf {
        /// The interaction.
        interaction: InteractionId,
        /// The agent.
        agent: AgentId,
    },
    /// Move of an interaction that is connected or in wrap-up.
    #[error(
        "interaction {interaction} is {state}; only queued or offered interactions can be moved"
    )]
    NotMovable {
        /// The interaction.
        interaction: InteractionId,
        /// Where it stands.
        state: InteractionState,
    },
    /// Move of an interaction to the queue it already waits in.
    #[error("interaction {interaction} already waits in queue {queue}")]
    AlreadyInQueue {
        /// The interaction.
        interaction: InteractionId,
        /// The queue.
        queue: QueueId,
    },
    /// Removal of a queue live interactions belong to.
    #[error("queue {queue} still has {interactions} live interactions")]
    QueueInUse {
        /// The queue.
        queue: QueueId,
        /// How many.
        interactions: usize,
    },
}

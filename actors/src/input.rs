//! Everything that can happen to a tenant's routing state from outside: [`Input`].
//!
//! Inputs are plain data (serde, `snake_case`, tagged by `type`) so that the tenant actor can log
//! them and tests can replay them. Time is not part of an input; it comes with
//! [`Engine::handle`](crate::Engine::handle).

use serde::{Deserialize, Serialize};

use crate::agent::AgentConfig;
use crate::config::EngineConfig;
use crate::ids::{AgentId, InteractionId, QueueId};
use crate::interaction::{Held, NewInteraction};
use crate::presence::AgentStatus;
use crate::queue::QueueConfig;

/// Where a connected interaction is transferred to, or a waiting one moved to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "target", rename_all = "snake_case")]
pub enum TransferTarget {
    /// Offered directly to this agent (it must be ready inbound with free capacity; skills are the
    /// transferring agent's judgement and are not checked).
    Agent {
        /// The agent.
        agent: AgentId,
    },
    /// Re-enqueued in this queue as a new wait.
    Queue {
        /// The queue.
        queue: QueueId,
    },
}

/// An input to the routing engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Input {
    /// Replace the engine-wide settings. The missed-offer policy applies from the next missed
    /// offer; the default capacity and blending apply to agents that do not set their own at
    /// their next [`Input::UpsertAgent`], the default handle time to queues created after.
    Configure {
        /// The new settings.
        config: EngineConfig,
    },
    /// Create or change an agent (skills, capacity, queues served); routing re-runs for it.
    UpsertAgent {
        /// Its configuration.
        agent: AgentConfig,
    },
    /// Delete an agent holding no connected or wrap-up work; its pending offers are re-routed.
    RemoveAgent {
        /// The agent.
        agent: AgentId,
    },
    /// Create or change a queue; routing re-runs for its waiting interactions.
    UpsertQueue {
        /// Its configuration.
        queue: QueueConfig,
    },
    /// Delete a queue no live interaction belongs to.
    RemoveQueue {
        /// The queue.
        queue: QueueId,
    },
    /// The agent chose a status (presence button, login, logout).
    SetStatus {
        /// The agent.
        agent: AgentId,
        /// What it chose.
        status: AgentStatus,
    },
    /// A new (or restored) interaction waits for an agent.
    Enqueue {
        /// The interaction.
        interaction: NewInteraction,
    },
    /// Work an agent held when the tenant's routing stopped is its again (after a failure of
    /// the routing, while the call or chat went on). Logs no event for the interaction; an
    /// offline agent becomes not ready (`"disconnected"`).
    Resume {
        /// The work.
        held: Held,
    },
    /// The agent's own outbound work (a click-to-dial call): connected to the agent at once,
    /// without a wait or an offer, in `interaction.queue` (its wrap-up and its figures). The
    /// agent must be logged in with free capacity for the channel (blending applies); its
    /// status is not changed. Logged as [`Output::Placed`](crate::Output::Placed).
    Place {
        /// The interaction.
        interaction: NewInteraction,
        /// The agent who placed it.
        agent: AgentId,
    },
    /// The agent accepts (answers) a pending offer.
    Accept {
        /// The agent.
        agent: AgentId,
        /// The interaction offered to it.
        interaction: InteractionId,
    },
    /// The agent declines a pending offer (or its phone was busy / declined).
    Reject {
        /// The agent.
        agent: AgentId,
        /// The interaction offered to it.
        interaction: InteractionId,
    },
    /// The customer left while queued or offered (hang-up, CANCEL, visitor gone).
    Abandon {
        /// The interaction.
        interaction: InteractionId,
    },
    /// An agent finished a waiting interaction without taking it through routing (a ticket
    /// answered or closed from the ticket desk): it leaves its queue answered, not abandoned.
    /// Pending offers are withdrawn; `agent` needs no routing state (a supervisor may close).
    Close {
        /// The interaction.
        interaction: InteractionId,
        /// Who finished it.
        agent: AgentId,
    },
    /// A connected interaction ended (either side); its agent goes to wrap-up.
    End {
        /// The interaction.
        interaction: InteractionId,
    },
    /// The agent finishes wrap-up before its timer.
    WrapUpDone {
        /// The agent.
        agent: AgentId,
        /// The interaction it wraps up.
        interaction: InteractionId,
    },
    /// Transfer a connected interaction; the transferring agent goes to wrap-up.
    Transfer {
        /// The interaction.
        interaction: InteractionId,
        /// Where to.
        to: TransferTarget,
    },
    /// A supervisor moves a queued or offered interaction: to another queue (it keeps its
    /// enqueue order and wait time) or straight to an agent (offered at once; the agent must be
    /// ready inbound with free capacity, skills are the supervisor's judgement). A pending offer
    /// is revoked first.
    Move {
        /// The interaction.
        interaction: InteractionId,
        /// Where to.
        to: TransferTarget,
    },
}

//! `vacd-actors` owns routing: which agent gets which interaction, and when.
//!
//! The crate is built around a sans-IO routing engine (plain state machine, no sockets, no
//! database, no actors) that the ractor supervision tree drives. Nothing here knows SQL or
//! network protocols: the server in `src/` feeds events in and persists the domain events
//! that come out.
//!
//! Around the engine sits the actor tree (ractor): [`Router`] is the server's handle on it; a
//! supervisor owns one tenant actor per tenant (the engine's only owner), which owns a queue
//! actor per queue and a session actor per connected agent console. The server plugs in through
//! [`Host`] (load a tenant's setup from the store, persist outputs); [`console`] defines the
//! agent console protocol as data.
//!
//! Start reading at [`Engine`]: one instance holds one tenant's routing state. Feed it
//! [`Input`]s with the current [`Instant`](std::time::Instant), drain [`Output`]s (domain events
//! for the event log and for the consoles), and call [`Engine::handle_timeout`] when
//! [`Engine::poll_timeout`] says so. Configuration comes in as [`AgentConfig`], [`QueueConfig`]
//! and [`EngineConfig`]; refused inputs come back as [`Error`].
//!
//! ```
//! use std::time::{Duration, Instant};
//! use vacd_actors::*;
//!
//! let now = Instant::now();
//! let mut engine = Engine::new(EngineConfig::default());
//! let mut agent = AgentConfig::new(AgentId(7));
//! agent.queues = vec![QueueId(1)];
//! engine.handle(Input::UpsertQueue { queue: QueueConfig::new(QueueId(1)) }, now).unwrap();
//! engine.handle(Input::UpsertAgent { agent }, now).unwrap();
//! let ready = AgentStatus::Ready { mode: ReadyMode::Inbound };
//! engine.handle(Input::SetStatus { agent: AgentId(7), status: ready }, now).unwrap();
//! let call = NewInteraction {
//!     id: InteractionId(1),
//!     channel: Channel::Call,
//!     queue: QueueId(1),
//!     language: None,
//!     skills: vec![],
//!     priority: 0,
//!     restored: None,
//! };
//! engine.handle(Input::Enqueue { interaction: call }, now).unwrap();
//! let offered = engine.drain_outputs().find(|o| matches!(o, Output::Offered { .. }));
//! assert_eq!(
//!     offered,
//!     Some(Output::Offered {
//!         interaction: InteractionId(1),
//!         agent: AgentId(7),
//!         queue: QueueId(1),
//!         channel: Channel::Call,
//!         timeout: Duration::from_secs(20),
//!     })
//! );
//! ```

mod admin;
mod agent;
mod capacity;
pub mod chat;
mod config;
pub mod console;
mod engine;
mod error;
mod escalation;
mod idle;
mod ids;
mod input;
mod interaction;
mod lifecycle;
mod moves;
mod output;
mod presence;
mod queue;
mod queue_actor;
mod routing;
mod session;
mod skill;
mod stats;
mod strategy;
mod supervisor;
mod table;
mod tenant;
mod timer;
mod waiting;

#[cfg(test)]
mod harness;

pub use agent::{AgentConfig, AgentView, WorkItem, WorkState};
pub use capacity::{Blending, Capacity, Channel, WorkKind};
pub use config::{EngineConfig, MissedOffer};
pub use engine::Engine;
pub use error::Error;
pub use ids::{AgentId, InteractionId, QueueId, SkillId};
pub use input::{Input, TransferTarget};
pub use interaction::{Held, InteractionState, InteractionView, NewInteraction, Restored};
pub use output::{Output, RevokeReason};
pub use presence::{check_reason, AgentStatus, Presence, ReadyMode, MAX_REASON_CHARS};
pub use queue::{EscalationAction, EscalationStep, QueueConfig, ServiceLevel};
pub use skill::{AgentSkill, SkillLevel, SkillLevelOutOfRange, SkillRequirement};
pub use stats::{QueuePosition, QueueStats};
pub use strategy::Strategy;
pub use supervisor::{
    AgentSession, BoxFuture, Floor, Host, Load, Router, RouterError, TenantId, TenantSetup,
};

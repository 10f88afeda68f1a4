//! Identifier newtypes for everything the routing engine names: agents, queues, interactions and
//! skills.
//!
//! The engine never invents ids; the caller (the tenant actor, fed by the store) assigns them and
//! interns skill and language names to [`SkillId`]s. Keeping them as distinct types means an agent
//! id can never be passed where a queue id is expected.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_type!(
    /// An agent (a user who takes interactions) of the tenant.
    AgentId(u64)
);
id_type!(
    /// A queue interactions wait in.
    QueueId(u64)
);
id_type!(
    /// One routable unit of work: a call, a chat or a ticket.
    InteractionId(u64)
);
id_type!(
    /// An interned skill name. Languages are skills too (one id per ISO 639-1 code).
    SkillId(u32)
);

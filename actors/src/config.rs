//! Engine-wide settings ([`EngineConfig`]): defaults for agents that do not set their own, and the
//! policy for missed offers.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::capacity::{Blending, Capacity};

/// What happens to an agent that rejects an offer or lets it time out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case", deny_unknown_fields)]
pub enum MissedOffer {
    /// The agent goes to `not_ready(reason)` (default reason `"missed"`).
    NotReady {
        /// The not-ready reason to set.
        reason: String,
    },
    /// The agent stays ready (it goes to the back of longest-idle).
    StayReady,
}

impl Default for MissedOffer {
    fn default() -> Self {
        MissedOffer::NotReady {
            reason: "missed".to_owned(),
        }
    }
}

/// Settings of one engine (one tenant).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "snake_case", deny_unknown_fields)]
pub struct EngineConfig {
    /// Capacity of agents that do not set their own.
    pub capacity: Capacity,
    /// Blending of agents that do not set their own.
    pub blending: Blending,
    /// What a missed offer does to the agent.
    pub missed_offer: MissedOffer,
    /// Handle time assumed for a queue before any interaction was handled (wait estimates).
    pub default_handle_time: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            capacity: Capacity::default(),
            blending: Blending::default(),
            missed_offer: MissedOffer::default(),
            default_handle_time: Duration::from_secs(180),
        }
    }
}

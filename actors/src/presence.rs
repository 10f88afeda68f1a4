//! Agent presence: what the agent chose ([`AgentStatus`]) and what routing and supervisors see
//! ([`Presence`]).
//!
//! The agent picks a status: `offline`, `ready` (inbound, outbound or back office) or
//! `not_ready(reason)`. While it holds work its presence is derived from that work instead:
//! `reserved` (an offer is pending), `busy` (connected) or `wrap_up`; when the work is done the
//! presence falls back to the chosen status. Only `ready(inbound)` receives offers. Every change
//! of [`Presence`] becomes an [`Output::PresenceChanged`](crate::Output::PresenceChanged).

use serde::{Deserialize, Serialize};

/// What a ready agent is ready for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadyMode {
    /// Takes routed interactions.
    Inbound,
    /// Places outbound calls; receives no offers.
    Outbound,
    /// Back-office work; receives no offers.
    BackOffice,
}

/// The status an agent chooses with its presence buttons.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AgentStatus {
    /// Logged out.
    Offline,
    /// At work, in a mode.
    Ready {
        /// Inbound, outbound or back office.
        mode: ReadyMode,
    },
    /// Logged in but not available (break, meeting, a missed offer, ...).
    NotReady {
        /// Why, in the tenant's words; `"missed"` after a missed offer.
        reason: String,
    },
}

/// Longest not-ready reason, in characters: it goes into every event, wallboard frame and
/// console that shows the agent.
pub const MAX_REASON_CHARS: usize = 64;

/// Whether `reason` can be a not-ready reason: 1 to [`MAX_REASON_CHARS`] characters, not
/// only white space; `Err` says what is wrong.
pub fn check_reason(reason: &str) -> Result<(), String> {
    if reason.trim().is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(format!(
            "a not-ready reason must be 1 to {MAX_REASON_CHARS} characters"
        ));
    }
    Ok(())
}

impl AgentStatus {
    /// The status as someone may choose it: a not-ready reason within [`check_reason`].
    pub fn check(&self) -> Result<(), String> {
        match self {
            AgentStatus::NotReady { reason } => check_reason(reason),
            _ => Ok(()),
        }
    }

    /// Whether an agent with this status receives offers.
    pub fn takes_inbound(&self) -> bool {
        matches!(
            self,
            AgentStatus::Ready {
                mode: ReadyMode::Inbound
            }
        )
    }

    /// The status of an agent whose console went away while it still held work (it cannot go
    /// offline before that work is done).
    pub fn disconnected() -> AgentStatus {
        AgentStatus::NotReady {
            reason: "disconnected".into(),
        }
    }

    fn as_presence(&self) -> Presence {
        match self {
            AgentStatus::Offline => Presence::Offline,
            AgentStatus::Ready { mode } => Presence::Ready { mode: *mode },
            AgentStatus::NotReady { reason } => Presence::NotReady {
                reason: reason.clone(),
            },
        }
    }
}

/// An agent's presence as routing and supervisors see it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "presence", rename_all = "snake_case")]
pub enum Presence {
    /// Logged out.
    Offline,
    /// Ready, holding no work.
    Ready {
        /// Inbound, outbound or back office.
        mode: ReadyMode,
    },
    /// Not ready, holding no work.
    NotReady {
        /// Why.
        reason: String,
    },
    /// An offer is pending and nothing is connected.
    Reserved,
    /// At least one interaction is connected.
    Busy,
    /// Only wrap-up work is left.
    WrapUp,
}

/// What an agent holds, as far as presence cares.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Holding {
    pub(crate) offered: bool,
    pub(crate) connected: bool,
    pub(crate) wrap_up: bool,
}

impl Presence {
    /// The presence of an agent with `status` holding `holding`: busy over reserved over wrap-up
    /// over the chosen status.
    pub(crate) fn derive(status: &AgentStatus, holding: Holding) -> Presence {
        if holding.connected {
            Presence::Busy
        } else if holding.offered {
            Presence::Reserved
        } else if holding.wrap_up {
            Presence::WrapUp
        } else {
            status.as_presence()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ready_inbound_takes_offers() {
        assert!(AgentStatus::Ready {
            mode: ReadyMode::Inbound
        }
        .takes_inbound());
        for status in [
            AgentStatus::Offline,
            AgentStatus::Ready {
                mode: ReadyMode::Outbound,
            },
            AgentStatus::Ready {
                mode: ReadyMode::BackOffice,
            },
            AgentStatus::NotReady {
                reason: "break".into(),
            },
        ] {
            assert!(!status.takes_inbound(), "{status:?}");
        }
    }

    #[test]
    fn work_outranks_the_chosen_status() {
        let status = AgentStatus::NotReady {
            reason: "lunch".into(),
        };
        let all = Holding {
            offered: true,
            connected: true,
            wrap_up: true,
        };
        assert_eq!(Presence::derive(&status, all), Presence::Busy);
        let offered_in_wrap_up = Holding {
            offered: true,
            wrap_up: true,
            ..Holding::default()
        };
        assert_eq!(
            Presence::derive(&status, offered_in_wrap_up),
            Presence::Reserved
        );
        let wrap_up = Holding {
            wrap_up: true,
            ..Holding::default()
        };
        assert_eq!(Presence::derive(&status, wrap_up), Presence::WrapUp);
        assert_eq!(
            Presence::derive(&status, Holding::default()),
            Presence::NotReady {
                reason: "lunch".into()
            }
        );
    }

    #[test]
    fn serializes_as_tagged_snake_case() {
        let json = serde_json::to_string(&Presence::Ready {
            mode: ReadyMode::BackOffice,
        })
        .expect("presence serializes");
        assert_eq!(json, r#"{"presence":"ready","mode":"back_office"}"#);
        let json = serde_json::to_string(&Presence::WrapUp).expect("presence serializes");
        assert_eq!(json, r#"{"presence":"wrap_up"}"#);
    }
}

//! The agent console protocol as data: what a console may ask ([`Command`], parsed from a JSON
//! frame by [`parse_command`]) and what it is told ([`ConsoleEvent`]). Sockets are not here —
//! the server's websocket task moves frames; this module only says what they mean, so the
//! protocol is tested without a network. `docs/agent-protocol.md` documents it for clients.
//!
//! Every command frame is `{"id": "…", "type": "…", …}`; the reply is `ack` or `error` with the
//! same `id`. Events carry no `id`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::capacity::Channel;
use crate::ids::{AgentId, InteractionId, QueueId};
use crate::input::TransferTarget;
use crate::output::RevokeReason;
use crate::presence::{AgentStatus, Presence};
use crate::stats::QueueStats;

/// A command from an agent's console. Fields a command does not know are ignored, so newer
/// consoles keep working with older servers.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "type")]
pub enum Command {
    /// Choose a status: `{"status": "ready", "mode": "inbound"}`, `{"status": "not_ready",
    /// "reason": "break"}` or `{"status": "offline"}`.
    #[serde(rename = "presence.set")]
    PresenceSet {
        /// The chosen status.
        #[serde(flatten)]
        status: AgentStatus,
    },
    /// Accept a pending offer.
    #[serde(rename = "offer.accept")]
    OfferAccept {
        /// The offered interaction.
        interaction: InteractionId,
    },
    /// Decline a pending offer.
    #[serde(rename = "offer.reject")]
    OfferReject {
        /// The offered interaction.
        interaction: InteractionId,
    },
    /// End a connected interaction (the agent goes to wrap-up).
    #[serde(rename = "interaction.end")]
    InteractionEnd {
        /// The interaction.
        interaction: InteractionId,
    },
    /// Finish wrap-up early.
    #[serde(rename = "wrapup.done")]
    WrapUpDone {
        /// The interaction being wrapped up.
        interaction: InteractionId,
    },
    /// Hand a connected interaction to another agent or queue.
    #[serde(rename = "interaction.transfer")]
    InteractionTransfer {
        /// The interaction.
        interaction: InteractionId,
        /// `{"target": "agent", "agent": 7}` or `{"target": "queue", "queue": 3}`.
        to: TransferTarget,
    },
}

/// A command frame that could not be understood; answered with an `error` frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not JSON, or not an object.
    #[error("the frame is not a JSON object: {0}")]
    Malformed(String),
    /// No usable `id`.
    #[error("every command needs an `id`: a number, or a non-empty string of at most 64 bytes")]
    MissingId,
    /// A JSON object that is no known command, or one with wrong fields.
    #[error("{0}")]
    Invalid(String),
}

impl FrameError {
    /// The stable error code sent to the console.
    pub fn code(&self) -> &'static str {
        match self {
            FrameError::Malformed(_) => "malformed_json",
            FrameError::MissingId => "missing_id",
            FrameError::Invalid(_) => "invalid_command",
        }
    }
}

/// Parses one text frame into its `id` and command. When the frame has a usable `id` but is no
/// valid command, the id is returned with the error so the reply can carry it.
pub fn parse_command(frame: &str) -> Result<(String, Command), (Option<String>, FrameError)> {
    let value: serde_json::Value =
        serde_json::from_str(frame).map_err(|e| (None, FrameError::Malformed(e.to_string())))?;
    command_of(value)
}

/// Longest command `id`, in bytes.
pub const MAX_ID_BYTES: usize = 64;

/// A command frame's `id` (`frame["id"]`) as its reply carries it: a number, or a non-empty
/// string of at most [`MAX_ID_BYTES`] bytes. The same for every command, whoever carries it out.
pub fn command_id(id: Option<&serde_json::Value>) -> Result<String, FrameError> {
    match id {
        Some(serde_json::Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID_BYTES => {
            Ok(s.clone())
        }
        Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
        _ => Err(FrameError::MissingId),
    }
}

/// [`parse_command`] of a frame already parsed as JSON (the server parses each frame once and
/// looks at its `type` before it knows whose command it is).
pub fn command_of(
    value: serde_json::Value,
) -> Result<(String, Command), (Option<String>, FrameError)> {
    let serde_json::Value::Object(mut object) = value else {
        return Err((None, FrameError::Malformed("expected an object".into())));
    };
    let id = command_id(object.get("id")).map_err(|e| (None, e))?;
    object.remove("id");
    match serde_json::from_value(serde_json::Value::Object(object)) {
        // A status some other way than its presence buttons (a supervisor) is checked the same.
        Ok(Command::PresenceSet { status }) => match status.check() {
            Ok(()) => Ok((id, Command::PresenceSet { status })),
            Err(problem) => Err((Some(id), FrameError::Invalid(problem))),
        },
        Ok(command) => Ok((id, command)),
        Err(e) => Err((Some(id), FrameError::Invalid(e.to_string()))),
    }
}

/// Something the console is told.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum ConsoleEvent {
    /// The command with this id was carried out.
    #[serde(rename = "ack")]
    Ack {
        /// The command's id.
        id: String,
    },
    /// The command with this id (if it had one) was refused.
    #[serde(rename = "error")]
    Error {
        /// The command's id.
        id: Option<String>,
        /// Stable machine-readable code.
        code: String,
        /// What went wrong, for humans.
        message: String,
    },
    /// Sent once when the console connects: who it is and where it stands.
    #[serde(rename = "hello")]
    Hello {
        /// The agent.
        agent: AgentId,
        /// Its presence now.
        presence: Presence,
        /// Its chosen status.
        status: AgentStatus,
        /// Interactions it holds (offered, connected, wrap-up).
        work: Vec<crate::agent::WorkItem>,
    },
    /// An interaction is offered; accept within `timeout_ms`.
    #[serde(rename = "offer")]
    Offer {
        /// The interaction.
        interaction: InteractionId,
        /// Its queue.
        queue: QueueId,
        /// Its channel.
        channel: Channel,
        /// Milliseconds until the offer expires.
        timeout_ms: u64,
    },
    /// A pending offer was withdrawn.
    #[serde(rename = "offer.revoked")]
    OfferRevoked {
        /// The interaction.
        interaction: InteractionId,
        /// Why.
        reason: RevokeReason,
    },
    /// The agent is connected to the interaction.
    #[serde(rename = "interaction.connected")]
    Connected {
        /// The interaction.
        interaction: InteractionId,
        /// Its queue.
        queue: QueueId,
        /// How long the customer waited, in milliseconds.
        waited_ms: u64,
        /// Its channel, given for work the agent placed itself (a click-to-dial call), which no
        /// offer announced.
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<Channel>,
    },
    /// The interaction ended (or was transferred away); wrap-up runs for `wrap_up_ms`.
    #[serde(rename = "interaction.ended")]
    Ended {
        /// The interaction.
        interaction: InteractionId,
        /// Wrap-up time in milliseconds.
        wrap_up_ms: u64,
    },
    /// Wrap-up of the interaction is over.
    #[serde(rename = "wrapup.ended")]
    WrapUpEnded {
        /// The interaction.
        interaction: InteractionId,
    },
    /// The agent's presence changed.
    #[serde(rename = "presence.changed")]
    PresenceChanged {
        /// Before.
        from: Presence,
        /// After.
        to: Presence,
    },
    /// Live figures of a queue the agent serves.
    #[serde(rename = "queue.stats")]
    QueueStats {
        /// The queue.
        queue: QueueId,
        /// Waiting interactions.
        waiting: usize,
        /// Offered, not yet accepted.
        offered: usize,
        /// Connected or in wrap-up.
        in_progress: usize,
        /// Wait of the longest-waiting interaction, in milliseconds.
        longest_wait_ms: u64,
        /// Serving agents ready inbound.
        agents_ready: usize,
        /// Serving agents holding work.
        agents_busy: usize,
        /// Serving agents logged in but not ready.
        agents_not_ready: usize,
    },
    /// Another connection of the same agent took over; this one closes.
    #[serde(rename = "session.replaced")]
    SessionReplaced,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl From<&QueueStats> for ConsoleEvent {
    fn from(s: &QueueStats) -> ConsoleEvent {
        ConsoleEvent::QueueStats {
            queue: s.queue,
            waiting: s.waiting,
            offered: s.offered,
            in_progress: s.in_progress,
            longest_wait_ms: millis(s.longest_wait),
            agents_ready: s.agents_ready,
            agents_busy: s.agents_busy,
            agents_not_ready: s.agents_not_ready,
        }
    }
}

impl ConsoleEvent {
    /// The reply to the command with this id.
    pub fn reply(id: String, result: Result<(), crate::RouterError>) -> ConsoleEvent {
        match result {
            Ok(()) => ConsoleEvent::Ack { id },
            Err(e) => ConsoleEvent::Error {
                id: Some(id),
                code: e.code().to_owned(),
                message: e.to_string(),
            },
        }
    }

    /// Whether this is the reply to a command (`ack` or `error`).
    pub fn is_reply(&self) -> bool {
        matches!(self, ConsoleEvent::Ack { .. } | ConsoleEvent::Error { .. })
    }

    /// What an engine output means for one agent's console, with the agent it is for.
    pub fn for_agent(output: &crate::Output) -> Option<(AgentId, ConsoleEvent)> {
        use crate::Output;
        Some(match output {
            Output::Offered {
                interaction,
                agent,
                queue,
                channel,
                timeout,
            } => (
                *agent,
                ConsoleEvent::Offer {
                    interaction: *interaction,
                    queue: *queue,
                    channel: *channel,
                    timeout_ms: millis(*timeout),
                },
            ),
            Output::OfferRevoked {
                interaction,
                agent,
                reason,
            } => (
                *agent,
                ConsoleEvent::OfferRevoked {
                    interaction: *interaction,
                    reason: *reason,
                },
            ),
            Output::Connected {
                interaction,
                agent,
                queue,
                waited,
            } => (
                *agent,
                ConsoleEvent::Connected {
                    interaction: *interaction,
                    queue: *queue,
                    waited_ms: millis(*waited),
                    channel: None,
                },
            ),
            Output::Placed {
                interaction,
                agent,
                queue,
                channel,
                ..
            } => (
                *agent,
                ConsoleEvent::Connected {
                    interaction: *interaction,
                    queue: *queue,
                    waited_ms: 0,
                    channel: Some(*channel),
                },
            ),
            Output::Ended {
                interaction,
                agent,
                wrap_up,
            } => (
                *agent,
                ConsoleEvent::Ended {
                    interaction: *interaction,
                    wrap_up_ms: millis(*wrap_up),
                },
            ),
            Output::Transferred {
                interaction,
                from,
                wrap_up,
                ..
            } => (
                *from,
                ConsoleEvent::Ended {
                    interaction: *interaction,
                    wrap_up_ms: millis(*wrap_up),
                },
            ),
            Output::WrapUpEnded { interaction, agent } => (
                *agent,
                ConsoleEvent::WrapUpEnded {
                    interaction: *interaction,
                },
            ),
            Output::PresenceChanged { agent, from, to } => (
                *agent,
                ConsoleEvent::PresenceChanged {
                    from: from.clone(),
                    to: to.clone(),
                },
            ),
            _ => return None,
        })
    }
}

impl crate::Error {
    /// The stable code an `error` frame carries for this refusal.
    pub fn code(&self) -> &'static str {
        use crate::Error::*;
        match self {
            UnknownAgent(_) => "unknown_agent",
            UnknownQueue(_) => "unknown_queue",
            UnknownInteraction(_) => "unknown_interaction",
            DuplicateInteraction(_) => "duplicate_interaction",
            DuplicateSkill { .. } | InvalidQueue { .. } => "invalid_configuration",
            OfferNotPending { .. } => "offer_not_pending",
            NotConnected { .. } => "not_connected",
            NotWaiting { .. } => "not_waiting",
            NotInWrapUp { .. } => "not_in_wrap_up",
            AgentHasWork(_) => "agent_has_work",
            AgentUnavailable(_) => "agent_unavailable",
            TransferToSelf { .. } => "transfer_to_self",
            QueueInUse { .. } => "queue_in_use",
            NotMovable { .. } => "not_movable",
            AlreadyInQueue { .. } => "already_in_queue",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::ReadyMode;

    #[test]
    fn parses_every_command() {
        let cases = [
            (
                r#"{"id":"1","type":"presence.set","status":"ready","mode":"inbound"}"#,
                Command::PresenceSet {
                    status: AgentStatus::Ready {
                        mode: ReadyMode::Inbound,
                    },
                },
            ),
            (
                r#"{"id":"2","type":"presence.set","status":"not_ready","reason":"break"}"#,
                Command::PresenceSet {
                    status: AgentStatus::NotReady {
                        reason: "break".into(),
                    },
                },
            ),
            (
                r#"{"id":"3","type":"presence.set","status":"offline"}"#,
                Command::PresenceSet {
                    status: AgentStatus::Offline,
                },
            ),
            (
                r#"{"id":"4","type":"offer.accept","interaction":9}"#,
                Command::OfferAccept {
                    interaction: InteractionId(9),
                },
            ),
            (
                r#"{"id":"5","type":"offer.reject","interaction":9}"#,
                Command::OfferReject {
                    interaction: InteractionId(9),
                },
            ),
            (
                r#"{"id":"6","type":"interaction.end","interaction":9}"#,
                Command::InteractionEnd {
                    interaction: InteractionId(9),
                },
            ),
            (
                r#"{"id":"7","type":"wrapup.done","interaction":9}"#,
                Command::WrapUpDone {
                    interaction: InteractionId(9),
                },
            ),
            (
                r#"{"id":8,"type":"interaction.transfer","interaction":9,"to":{"target":"queue","queue":3}}"#,
                Command::InteractionTransfer {
                    interaction: InteractionId(9),
                    to: TransferTarget::Queue { queue: QueueId(3) },
                },
            ),
        ];
        for (frame, expected) in cases {
            let (id, command) = parse_command(frame).unwrap_or_else(|e| panic!("{frame}: {e:?}"));
            assert!(!id.is_empty());
            assert_eq!(command, expected, "{frame}");
        }
    }

    #[test]
    fn bad_frames_name_the_problem() {
        let code = |frame: &str| {
            parse_command(frame)
                .map(|_| ())
                .map_err(|(id, e)| (id, e.code()))
        };
        assert_eq!(code("{nope"), Err((None, "malformed_json")));
        assert_eq!(code("[1]"), Err((None, "malformed_json")));
        assert_eq!(
            code(r#"{"type":"offer.accept","interaction":1}"#),
            Err((None, "missing_id"))
        );
        assert_eq!(
            code(r#"{"id":"x","type":"self.destruct"}"#),
            Err((Some("x".into()), "invalid_command"))
        );
        assert_eq!(
            code(r#"{"id":"x","type":"offer.accept","interaction":"one"}"#),
            Err((Some("x".into()), "invalid_command"))
        );
        assert_eq!(
            code(r#"{"id":"x","type":"offer.accept"}"#),
            Err((Some("x".into()), "invalid_command"))
        );
        assert_eq!(
            code(r#"{"id":"x","type":"presence.set","status":"sleeping"}"#),
            Err((Some("x".into()), "invalid_command"))
        );
        // A not-ready reason is 1 to 64 characters, not just spaces.
        let long = format!(
            r#"{{"id":"x","type":"presence.set","status":"not_ready","reason":"{}"}}"#,
            "z".repeat(65)
        );
        for frame in [
            r#"{"id":"x","type":"presence.set","status":"not_ready","reason":""}"#,
            r#"{"id":"x","type":"presence.set","status":"not_ready","reason":"  "}"#,
            long.as_str(),
        ] {
            assert_eq!(
                code(frame),
                Err((Some("x".into()), "invalid_command")),
                "{frame}"
            );
        }
        let longest = long.replacen("z", "", 1);
        assert!(code(&longest).is_ok(), "64 characters are fine");
    }

    #[test]
    fn events_serialize_with_dotted_types() {
        let event = ConsoleEvent::Offer {
            interaction: InteractionId(4),
            queue: QueueId(2),
            channel: Channel::Email,
            timeout_ms: 20_000,
        };
        let json = serde_json::to_value(&event).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({"type": "offer", "interaction": 4, "queue": 2, "channel": "email", "timeout_ms": 20000})
        );
        let changed = ConsoleEvent::PresenceChanged {
            from: Presence::Offline,
            to: Presence::NotReady {
                reason: "missed".into(),
            },
        };
        assert_eq!(
            serde_json::to_value(&changed).expect("serializes"),
            serde_json::json!({"type": "presence.changed", "from": {"presence": "offline"}, "to": {"presence": "not_ready", "reason": "missed"}})
        );
    }
}

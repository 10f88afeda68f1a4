//! The call actor: one task per answered call, owning everything about the call that is not
//! signalling. That is its interaction in routing — created, enqueued, accepted, rejected,
//! abandoned or ended strictly in the order things happen, because the actor feeds routing one
//! input at a time — its record in the store, and its media: the two RTP sockets (caller leg,
//! agent leg), the waiting caller's [`Playlist`] (greeting, then music on hold) and, once an
//! agent has answered, the symmetric [`Relay`] between the legs (payload untouched).
//!
//! The endpoint, which owns the SIP dialogs, tells the actor what happened with [`CallCmd`]s
//! and hears back through [`CallReport`]s. A panic in here ends only this task; the endpoint
//! sees the command channel close and hangs up both legs (see `calls`).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use vacd_actors::{
    AgentId, Channel, Error as RoutingError, Input, InteractionId, NewInteraction, QueueId,
    RouterError, TenantId, TransferTarget,
};
use vacd_sip::g711::Law;
use vacd_sip::media::{NowPlaying, Playlist, Sound, FRAME_DURATION};
use vacd_sip::mix::{decode_frame, encode_frame, Monitor, PcmFrame};
use vacd_sip::rtp::{LegId, Packetizer, Relay, RelayAction, RelayLeg, RtpPacket};

use crate::chat::ChatHub;
use crate::routing::{CallTap, RoutingHandle};
use crate::store::{now_ms, CallEnd, CallResult, HangupBy, NewCall, NewEvent, QueueSounds, Store};

/// Largest RTP datagram relayed.
const MAX_RTP: usize = 2048;
/// RTP packets handled in a row before a pending command gets its turn.
const MAX_BURST: u32 = 64;

/// What waiting callers hear (µ-law; converted per call if needed): `greeting.wav` and
/// `music.wav` of the sounds directory, loaded once, unless the call's queue names files of its
/// own there (`greeting`, `music`, and an `announcement` between its music), which are loaded
/// when a call first needs them and kept.
#[derive(Debug)]
pub struct Sounds {
    dir: PathBuf,
    greeting: Option<Sound>,
    music: Sound,
    /// The queues' own files by name, as loaded; a file that could not be loaded is tried
    /// again by the next call (an admin may add it meanwhile).
    loaded: Mutex<HashMap<String, Sound>>,
}

impl Sounds {
    /// `greeting.wav` and `music.wav` from `dir`; missing music becomes the comfort tone, a
    /// missing greeting is skipped.
    pub fn load(dir: &Path) -> Sounds {
        let read = |name: &str| {
            let path = dir.join(name);
            match std::fs::read(&path) {
                Ok(bytes) => Some(bytes),
                Err(err) => {
                    tracing::warn!(path = %path.display(), %err, "sound file not readable");
                    None
                }
            }
        };
        let greeting = read("greeting.wav").and_then(|bytes| {
            Sound::from_wav(&bytes, Law::MuLaw)
                .map_err(|err| tracing::warn!(%err, "greeting.wav unusable; no greeting"))
                .ok()
        });
        let music = Sound::from_wav_or_tone(read("music.wav").as_deref(), Law::MuLaw);
        Sounds {
            dir: dir.to_owned(),
            greeting,
            music,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// The announcement of a queue that names `sounds`, with the 20 ms frames of music between
    /// two: none unless the queue sets both, or if its file is unusable (logged).
    pub async fn announcement_of(&self, sounds: &QueueSounds) -> Option<(Sound, u32)> {
        let (name, every) = (
            sounds.announcement.as_ref()?,
            sounds.announce_every_seconds?,
        );
        // The API keeps it in 5..=3600; a row from before, or written by hand, is brought in.
        let seconds = every.clamp(5, 3600) as u32;
        if i64::from(seconds) != every {
            tracing::warn!(
                every,
                seconds,
                "queue's announcement interval out of range; brought in"
            );
        }
        let frames = seconds * 1000 / FRAME_DURATION.as_millis() as u32;
        Some((self.named(name).await?, frames))
    }

    /// The greeting and music of a call waiting in a queue that names `sounds` (each file
    /// name, if set, in the sounds directory); what is not set or cannot be loaded is the
    /// default's.
    pub async fn for_queue(&self, sounds: &QueueSounds) -> (Option<Sound>, Sound) {
        let greeting = match &sounds.greeting {
            Some(name) => self.named(name).await.or_else(|| self.greeting.clone()),
            None => self.greeting.clone(),
        };
        let music = match &sounds.music {
            Some(name) => self.named(name).await,
            None => None,
        };
        (greeting, music.unwrap_or_else(|| self.music.clone()))
    }

    async fn named(&self, name: &str) -> Option<Sound> {
        if let Some(sound) = self.loaded.lock().ok()?.get(name) {
            return Some(sound.clone());
        }
        let path = self.dir.join(name);
        let sound = match tokio::fs::read(&path).await {
            Ok(bytes) => Sound::from_wav(&bytes, Law::MuLaw)
                .map_err(|err| tracing::warn!(path = %path.display(), %err, "queue's sound unusable; the default plays"))
                .ok()?,
            Err(err) => {
                tracing::warn!(path = %path.display(), %err, "queue's sound not readable; the default plays");
                return None;
            }
        };
        if let Ok(mut loaded) = self.loaded.lock() {
            loaded.insert(name.to_owned(), sound.clone());
        }
        Some(sound)
    }
}

/// What the endpoint tells a call actor.
#[derive(Debug)]
pub enum CallCmd {
    /// Click-to-dial: the agent's phone answered in `law`, which the customer's leg is then
    /// offered too; music, the monitoring mixes and what vacd sends switch to it.
    Codec { law: Law },
    /// The offered agent's phone answered; its RTP goes to `remote`.
    AgentAnswered {
        agent: AgentId,
        remote: Option<SocketAddr>,
    },
    /// Routing connected the agent — it accepted the offer in its console; its phone is still
    /// ringing and bridges the media when it answers.
    Connected { agent: AgentId },
    /// The offered agent's phone refused, failed or could not be reached.
    AgentFailed { agent: AgentId },
    /// A leg's re-INVITE changed where its media goes, or put the call on hold (`receiving`
    /// false: nothing is sent to that leg; a holding agent's caller hears music).
    Renegotiated {
        leg: LegId,
        remote: Option<SocketAddr>,
        receiving: bool,
    },
    /// The connected agent put the call on hold from its console (`on`), or took it off: the
    /// caller hears music meanwhile and nothing passes between the legs.
    Hold { on: bool },
    /// `agent`'s console (re)connected: if the agent is talking on this call and it is held,
    /// the new console is told so (`call.held`, `by` as when the hold began), which its
    /// `hello` from routing cannot say.
    ConsoleLinked { agent: AgentId },
    /// The connected agent transferred the call; its leg is hung up and the caller waits
    /// (with music) until routing offers the call again.
    Transferred,
    /// The connected agent's phone asked (REFER) to hand the call to `to`.
    Transfer { agent: AgentId, to: TransferTarget },
    /// The connected agent's call goes to an external number: routing is done with it (the
    /// agent wraps up); the caller hears music until the number answers.
    TransferredOut { number: String },
    /// The external number answered on relay leg `leg`; its RTP goes to `remote`.
    ExternalAnswered {
        leg: LegId,
        remote: Option<SocketAddr>,
    },
    /// A supervisor's phone is being called to monitor the call in `mode`, with this socket.
    Monitor { socket: UdpSocket, mode: Monitor },
    /// The supervisor's phone answered; its RTP goes to `remote` (its SDP's address), and
    /// comes from that address's IP or from `signalling`, the IP its SIP messages come from.
    SupervisorAnswered {
        remote: Option<SocketAddr>,
        signalling: IpAddr,
    },
    /// The supervisor switches between silent, whisper and barge (same phone leg).
    MonitorMode { mode: Monitor },
    /// The supervisor stopped monitoring (hung up, refused, or asked to stop).
    SupervisorGone,
    /// The call is over (both legs are being hung up).
    Hangup { by: HangupBy },
}

/// What a call actor tells the endpoint.
#[derive(Debug)]
pub enum CallReport {
    /// Routing refused the transfer a phone asked for: that phone keeps the call.
    TransferRefused { call: u64, agent: AgentId },
    /// Routing refused the agent's answer (the offer had been withdrawn meanwhile): hang up
    /// that agent's leg; the caller keeps waiting.
    AgentRefused { call: u64, agent: AgentId },
    /// The call could not be put in a queue: hang up.
    Failed { call: u64 },
    /// The actor is done; the call's record is written.
    Finished { call: u64 },
}

/// Everything a call actor starts with.
pub struct CallSetup {
    pub key: u64,
    pub call: NewCall,
    pub caller_socket: UdpSocket,
    pub agent_socket: UdpSocket,
    /// Where the caller's SDP said to send RTP (`None` if it gave no address).
    pub caller_remote: Option<SocketAddr>,
    /// The caller leg's codec and payload type.
    pub law: Law,
    pub payload_type: u8,
    pub sounds: Arc<Sounds>,
    pub routing: RoutingHandle,
    pub tap: CallTap,
    pub consoles: ChatHub,
    pub store: Store,
    pub reports: mpsc::UnboundedSender<CallReport>,
}

/// Who is talking to the caller.
#[derive(Debug, Clone, Copy)]
struct Connected {
    agent: AgentId,
    at_ms: i64,
}

struct CallActor {
    key: u64,
    tenant: TenantId,
    interaction: InteractionId,
    routing: RoutingHandle,
    consoles: ChatHub,
    store: Store,
    reports: mpsc::UnboundedSender<CallReport>,
    /// The agent talking to the caller now.
    connected: Option<Connected>,
    /// The last agent who talked to the caller (for the record, across transfers).
    talked: Option<Connected>,
    /// The agent's phone holds the call: the caller hears music, nothing is relayed.
    agent_holds: bool,
    /// The agent's console holds the call: the caller hears music, nothing passes between the
    /// legs (the agent's phone stays bridged, to resume without a re-INVITE).
    console_holds: bool,
    /// A click-to-dial call's agent, who placed it in routing (it is never offered).
    dialler: Option<AgentId>,
    /// The queue the call came in on.
    queue: Option<QueueId>,
    /// The external number answered (a transfer out, or the customer of a click-to-dial).
    reached: bool,
    /// Transferred to an outside number: the caller no longer waits in a queue.
    transferred_out: bool,
}

impl CallActor {
    /// Whether the caller waits in a queue for an agent: no agent has the call (none talking,
    /// holding or having accepted it), and it was not dialled out or transferred out.
    fn waiting(&self) -> bool {
        self.connected.is_none() && self.dialler.is_none() && !self.transferred_out
    }

    async fn input(&self, input: Input) -> Result<(), vacd_actors::RouterError> {
        self.routing.router().input(self.tenant, input).await
    }

    fn report(&self, report: CallReport) {
        // The endpoint outlives its calls except at shutdown, when nobody needs the report.
        let _ = self.reports.send(report);
    }

    /// Handles a command; `Some` when the call is over.
    async fn command(&mut self, command: CallCmd, relay: &mut Relay) -> Option<HangupBy> {
        match command {
            CallCmd::AgentAnswered { agent, remote } => {
                // Accepted in the console already, or the dialling agent's phone (its call was
                // placed in routing, connected to it): the phone's answer only brings the media.
                let dialler = self.talked.is_none() && self.dialler == Some(agent);
                if dialler {
                    self.routing.calls().dial_answered(self.interaction);
                }
                let accepted = if dialler || self.connected.is_some_and(|c| c.agent == agent) {
                    Ok(())
                } else {
                    self.input(Input::Accept {
                        agent,
                        interaction: self.interaction,
                    })
                    .await
                };
                match accepted {
                    Ok(()) => {
                        relay.leg_mut(LegId::B).renegotiate(remote, true);
                        self.connect(agent);
                        tracing::info!(call = self.key, interaction = %self.interaction, %agent, "call connected");
                    }
                    Err(err) => {
                        tracing::info!(call = self.key, %agent, %err, "agent answered a withdrawn offer");
                        self.report(CallReport::AgentRefused {
                            call: self.key,
                            agent,
                        });
                    }
                }
                None
            }
            CallCmd::AgentFailed { agent } if self.connected.is_some_and(|c| c.agent == agent) => {
                // Accepted in the console, then its phone refused or never answered: the caller
                // waits again in the call's queue (the agent's part ends as after a transfer).
                let Some(queue) = self.queue else {
                    return Some(HangupBy::System);
                };
                let to = TransferTarget::Queue { queue };
                let requeued = self
                    .input(Input::Transfer {
                        interaction: self.interaction,
                        to,
                    })
                    .await;
                match requeued {
                    Ok(()) => {
                        tracing::info!(call = self.key, %agent, "the accepting agent's phone did not answer; the call waits again");
                        None
                    }
                    Err(err) => {
                        tracing::warn!(call = self.key, %agent, %err, "call not queued again; hanging up");
                        Some(HangupBy::System)
                    }
                }
            }
            CallCmd::AgentFailed { agent } => {
                let rejected = self
                    .input(Input::Reject {
                        agent,
                        interaction: self.interaction,
                    })
                    .await;
                // Refused when the offer was already withdrawn (timeout, caller gone).
                if let Err(err) = rejected {
                    tracing::debug!(call = self.key, %agent, %err, "reject not applied");
                }
                None
            }
            CallCmd::Connected { agent } => {
                self.connect(agent);
                None
            }
            CallCmd::Renegotiated {
                leg,
                remote,
                receiving,
            } => {
                relay.leg_mut(leg).renegotiate(remote, receiving);
                if leg == LegId::B && self.agent_holds == receiving {
                    self.agent_holds = !receiving;
                    let kind = if receiving {
                        "call.resumed"
                    } else {
                        "call.held"
                    };
                    self.tell_agent(serde_json::json!({ "type": kind, "by": "phone" }));
                }
                None
            }
            CallCmd::Hold { on: true } => {
                if !self.console_holds {
                    self.console_holds = true;
                    let agent = self.connected.map(|c| c.agent);
                    tracing::info!(call = self.key, ?agent, "console hold");
                    self.log("call.held", agent, serde_json::json!({}));
                    self.tell_agent(serde_json::json!({ "type": "call.held", "by": "console" }));
                }
                None
            }
            CallCmd::Hold { on: false } => {
                self.resume("console");
                None
            }
            CallCmd::ConsoleLinked { agent } => {
                if self.connected.is_some_and(|c| c.agent == agent) {
                    // Phone and console hold independently; each is told with its own `by`.
                    if self.agent_holds {
                        self.tell_agent(serde_json::json!({ "type": "call.held", "by": "phone" }));
                    }
                    if self.console_holds {
                        self.tell_agent(
                            serde_json::json!({ "type": "call.held", "by": "console" }),
                        );
                    }
                }
                None
            }
            CallCmd::Transferred => {
                self.resume("transferred");
                self.agent_holds = false;
                self.connected = None;
                relay.leg_mut(LegId::B).renegotiate(None, false);
                None
            }
            CallCmd::Transfer { agent, to } => {
                let transferred = self
                    .input(Input::Transfer {
                        interaction: self.interaction,
                        to,
                    })
                    .await;
                if let Err(err) = transferred {
                    tracing::info!(call = self.key, %agent, %err, "transfer refused by routing");
                    self.report(CallReport::TransferRefused {
                        call: self.key,
                        agent,
                    });
                }
                None
            }
            CallCmd::TransferredOut { number } => {
                let ended = self
                    .input(Input::End {
                        interaction: self.interaction,
                    })
                    .await;
                if let Err(err) = ended {
                    tracing::warn!(call = self.key, %err, "routing did not end the transferred call");
                }
                self.resume("transferred");
                self.connected = None;
                self.agent_holds = false;
                self.transferred_out = true;
                relay.leg_mut(LegId::B).renegotiate(None, false);
                let agent = self.talked.map(|c| c.agent);
                let payload = serde_json::json!({ "to": number });
                self.log("call.transferred", agent, payload);
                None
            }
            CallCmd::ExternalAnswered { leg, remote } => {
                relay.leg_mut(leg).renegotiate(remote, true);
                self.reached = true;
                None
            }
            CallCmd::Hangup { by } => Some(by),
            // Monitoring and the codec belong to the media loop (`Media::handle`).
            CallCmd::Codec { .. }
            | CallCmd::Monitor { .. }
            | CallCmd::SupervisorAnswered { .. }
            | CallCmd::MonitorMode { .. }
            | CallCmd::SupervisorGone => None,
        }
    }

    /// Routing connected `agent` (no-op if it already knew).
    fn connect(&mut self, agent: AgentId) {
        if self.connected.is_some_and(|c| c.agent == agent) {
            return;
        }
        self.resume("new agent");
        self.connected = Some(Connected {
            agent,
            at_ms: now_ms(),
        });
        self.talked = self.connected;
    }

    /// Ends the console's hold, if there is one, for `reason` (the console, a transfer, a new
    /// agent, the hang-up): logged as `call.resumed`, so every `call.held` has its end.
    fn resume(&mut self, reason: &str) {
        if std::mem::take(&mut self.console_holds) {
            let agent = self.connected.map(|c| c.agent);
            tracing::info!(call = self.key, ?agent, reason, "console hold ends");
            self.log(
                "call.resumed",
                agent,
                serde_json::json!({ "reason": reason }),
            );
            self.tell_agent(serde_json::json!({ "type": "call.resumed", "by": "console" }));
        }
    }

    /// Sends the connected agent's console `frame` about this call (its `interaction` added).
    fn tell_agent(&self, mut frame: serde_json::Value) {
        if let Some(connected) = self.connected {
            frame["interaction"] = self.interaction.0.into();
            let tenant = self.tenant.0 as i64;
            self.consoles
                .to_console(tenant, connected.agent, frame.to_string());
        }
    }

    /// The caller hears music while an agent's phone or console holds the call.
    fn holding(&self) -> bool {
        self.agent_holds || self.console_holds
    }

    /// Appends `kind` about this call to the event log, with `agent` and `payload` — on a task
    /// of its own: the media must not wait for the store's writer.
    fn log(&self, kind: &'static str, agent: Option<AgentId>, payload: serde_json::Value) {
        let event = NewEvent {
            tenant: self.tenant.0 as i64,
            kind: kind.into(),
            interaction_id: Some(self.interaction.0 as i64),
            agent_id: agent.map(|a| a.0 as i64),
            queue_id: None,
            payload: payload.to_string(),
        };
        let (store, call) = (self.store.clone(), self.key);
        tokio::spawn(async move {
            if let Err(err) = store.append_event(&event).await {
                tracing::error!(call, %err, kind, "call event not logged");
            }
        });
    }

    /// The call's outcome for its record.
    fn result(&self) -> CallResult {
        match (self.dialler.is_some(), self.talked, self.reached) {
            (true, _, true) | (false, Some(_), _) => CallResult::Connected,
            // A click-to-dial whose number never answered.
            (true, _, false) => CallResult::Failed,
            (false, None, _) => CallResult::Abandoned,
        }
    }

    /// Tells routing the call is over: an end if an agent is talking, an abandon otherwise. A
    /// click-to-dial call whose agent's phone never answered leaves that agent no wrap-up:
    /// nobody talked, there is nothing to note.
    async fn finish(&self) {
        self.end_or_abandon().await;
        if let (Some(agent), None) = (self.dialler, self.talked) {
            let interaction = self.interaction;
            if let Err(err) = self.input(Input::WrapUpDone { agent, interaction }).await {
                tracing::debug!(call = self.key, %err, "no wrap-up to end for the dialler");
            }
        }
    }

    async fn end_or_abandon(&self) {
        let interaction = self.interaction;
        let (end, abandon) = (Input::End { interaction }, Input::Abandon { interaction });
        let (first, other) = match self.connected {
            Some(_) => (end, abandon),
            None => (abandon, end),
        };
        match self.input(first).await {
            Ok(()) => {}
            // What this call knew of routing lagged behind it: a transfer back to the queue, or
            // an accept in the console, crossed the hang-up. Left there, routing would go on
            // offering a call that is gone (or keep an agent connected to it).
            Err(RouterError::Rejected(
                RoutingError::NotConnected { .. } | RoutingError::NotWaiting { .. },
            )) => {
                if let Err(err) = self.input(other).await {
                    tracing::debug!(call = self.key, %err, "end of call not applied");
                }
            }
            // Refused when the console already ended it.
            Err(err) => tracing::debug!(call = self.key, %err, "end of call not applied"),
        }
    }
}

/// Runs one call until it is hung up.
pub async fn run(setup: CallSetup, mut commands: mpsc::UnboundedReceiver<CallCmd>) {
    let CallSetup {
        key,
        call,
        caller_socket,
        agent_socket,
        caller_remote,
        law,
        payload_type,
        sounds,
        routing,
        tap,
        consoles,
        store,
        reports,
    } = setup;
    let started = match store.start_call(&call).await {
        Ok(started) => started,
        Err(err) => {
            tracing::error!(call = key, %err, "call not recorded; hanging up");
            let _ = reports.send(CallReport::Failed { call: key });
            wait_for_hangup(&mut commands).await;
            let _ = reports.send(CallReport::Finished { call: key });
            return;
        }
    };
    let interaction = InteractionId(started.interaction as u64);
    let mut actor = CallActor {
        key,
        tenant: TenantId(call.tenant as u64),
        interaction,
        routing,
        consoles,
        store: store.clone(),
        reports,
        connected: None,
        talked: None,
        agent_holds: false,
        console_holds: false,
        dialler: call.dialled_by.map(|agent| AgentId(agent as u64)),
        queue: started.queue.map(|q| QueueId(q as u64)),
        reached: false,
        transferred_out: false,
    };
    tap.register(interaction, key, actor.dialler);
    let enqueued = match (started.queue, actor.dialler) {
        // Click-to-dial: the agent's own call, connected to it at once.
        (Some(queue), Some(agent)) => {
            actor
                .input(Input::Place {
                    interaction: NewInteraction {
                        id: interaction,
                        channel: Channel::Call,
                        queue: QueueId(queue as u64),
                        language: None,
                        skills: Vec::new(),
                        priority: started.priority,
                        restored: None,
                    },
                    agent,
                })
                .await
        }
        (Some(queue), None) => {
            let language = store
                .language_need(call.tenant, started.language.as_deref())
                .await;
            actor
                .input(Input::Enqueue {
                    interaction: NewInteraction {
                        id: interaction,
                        channel: Channel::Call,
                        queue: QueueId(queue as u64),
                        language,
                        skills: Vec::new(),
                        priority: started.priority,
                        restored: None,
                    },
                })
                .await
        }
        (None, _) => Ok(()),
    };
    let (result, hangup_by) = match enqueued {
        Ok(()) => {
            tracing::info!(call = key, %interaction, queue = started.queue, caller = call.caller.as_deref().unwrap_or("anonymous"), "call started");
            // The agent side takes nothing until a phone answers: a packet reaching its socket
            // before (a stray, a neighbour's RTCP) must not latch it and end the music.
            let (greeting, music) = sounds.for_queue(&started.sounds).await;
            let announcement = sounds.announcement_of(&started.sounds).await;
            let mut relay = Relay::new(caller_remote, None);
            relay.leg_mut(LegId::B).renegotiate(None, false);
            let mut media = Media {
                caller: caller_socket,
                agent: agent_socket,
                relay,
                playlist: Playlist::new(law, greeting, Some(music.clone())),
                packetizer: Packetizer::random(payload_type),
                law,
                payload_type,
                music,
                announcement,
                music_since_announcement: 0,
                supervisor: None,
            };
            let by = match AssertUnwindSafe(media.run(&mut actor, &mut commands))
                .catch_unwind()
                .await
            {
                Ok(by) => by,
                Err(_) => {
                    tracing::error!(call = key, %interaction, "call actor failed; hanging up");
                    actor.report(CallReport::Failed { call: key });
                    HangupBy::System
                }
            };
            actor.resume("hung up");
            (Some(actor.result()), by)
        }
        Err(err) => {
            tracing::error!(call = key, %interaction, %err, "call not queued; hanging up");
            // The console acknowledged the dial before routing was asked: it hears it now.
            if let Some(agent) = actor.dialler {
                let frame = serde_json::json!({
                    "type": "error",
                    "code": "dial_failed",
                    "message": format!("the call was not placed: {err}"),
                    "interaction": interaction.0,
                });
                let tenant = call.tenant;
                actor.consoles.to_console(tenant, agent, frame.to_string());
            }
            actor.report(CallReport::Failed { call: key });
            (None, wait_for_hangup(&mut commands).await)
        }
    };
    // The record first, then routing: whoever sees the end in routing finds the record written.
    let end = CallEnd {
        tenant: call.tenant,
        interaction: started.interaction,
        agent: actor.talked.map(|c| c.agent.0 as i64),
        connected_at: actor.talked.map(|c| c.at_ms),
        result: result.unwrap_or(CallResult::Failed),
        hangup_by,
        routed: result.is_some(),
    };
    if let Err(err) = store.end_call(&end).await {
        tracing::error!(call = key, %interaction, %err, "call record not completed");
    }
    if result.is_some() {
        actor.finish().await;
    }
    tap.unregister(interaction);
    metrics::counter!(crate::metrics::CALLS_ENDED, "result" => end.result.as_str(), "hangup_by" => hangup_by.as_str()).increment(1);
    tracing::info!(call = key, %interaction, result = end.result.as_str(), hangup_by = hangup_by.as_str(), "call ended");
    actor.report(CallReport::Finished { call: key });
}

/// After a failure: waits for the endpoint's hang-up (or its going away).
async fn wait_for_hangup(commands: &mut mpsc::UnboundedReceiver<CallCmd>) -> HangupBy {
    while let Some(command) = commands.recv().await {
        if let CallCmd::Hangup { by } = command {
            return by;
        }
    }
    HangupBy::System
}

/// The call's RTP: music to the waiting caller, then the relay.
struct Media {
    caller: UdpSocket,
    agent: UdpSocket,
    relay: Relay,
    playlist: Playlist,
    /// Our stream to the caller (music, and the barge mix).
    packetizer: Packetizer,
    law: Law,
    payload_type: u8,
    /// The music on hold, for a playlist in another law.
    music: Sound,
    /// The queue's announcement and the frames of music between two, for a waiting caller.
    announcement: Option<(Sound, u32)>,
    /// Frames of music a waiting caller heard since the last announcement (or the start).
    music_since_announcement: u32,
    supervisor: Option<Supervisor>,
}

/// A supervisor monitoring the call from its own phone leg.
struct Supervisor {
    socket: UdpSocket,
    /// Its phone's RTP, `None` until it answers: sent to the address its SDP names until a
    /// packet comes from it, then to where its packets come from (a phone behind NAT names
    /// an address of its own network).
    phone: Option<RelayLeg>,
    /// The IPs its packets may come from: its SDP's and the one its SIP messages come from.
    /// Anyone else's packets are dropped before they could latch: whoever latched would hear
    /// the call, and while whispering or barging talk into it.
    phone_ips: Vec<IpAddr>,
    mode: Monitor,
    /// Our stream to the supervisor (the mix).
    to_supervisor: Packetizer,
    /// Our stream to the agent while whispering or barging (the agent hears a mix).
    to_agent: Packetizer,
    /// Each party's frames waiting for the mix.
    caller: Frames,
    agent: Frames,
    microphone: Frames,
}

/// Frames a monitoring mix keeps of one party, at most this many: a tick that comes late (a
/// busy machine) no longer loses the frames that arrived meanwhile — it mixes them all at once
/// — and past that the oldest goes.
const MIX_DEPTH: usize = 3;

/// One party's frames waiting for the mix, oldest first.
#[derive(Default)]
struct Frames(VecDeque<PcmFrame>);

impl Frames {
    fn push(&mut self, frame: PcmFrame) {
        if self.0.len() == MIX_DEPTH {
            self.0.pop_front();
        }
        self.0.push_back(frame);
    }

    /// The next frame for the mix; none is silence.
    fn next(&mut self) -> Option<PcmFrame> {
        self.0.pop_front()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Media {
    /// The monitoring mode in effect: once the supervisor's phone has answered.
    fn monitoring(&self) -> Option<Monitor> {
        self.supervisor
            .as_ref()
            .filter(|s| s.phone.is_some())
            .map(|s| s.mode)
    }

    /// Monitoring commands change the media here; the rest go to the actor.
    async fn handle(&mut self, actor: &mut CallActor, command: CallCmd) -> Option<HangupBy> {
        match command {
            CallCmd::Codec { law } => {
                if law != self.law {
                    tracing::debug!(call = actor.key, ?law, "media switches law");
                    self.law = law;
                    self.payload_type = law.payload_type();
                    self.packetizer = Packetizer::random(self.payload_type);
                    self.playlist = Playlist::new(law, None, Some(self.music.clone()));
                }
                None
            }
            CallCmd::Monitor { socket, mode } => {
                tracing::info!(call = actor.key, ?mode, "monitoring starts");
                self.supervisor = Some(Supervisor {
                    socket,
                    phone: None,
                    phone_ips: Vec::new(),
                    mode,
                    to_supervisor: Packetizer::random(self.payload_type),
                    to_agent: Packetizer::random(self.payload_type),
                    caller: Frames::default(),
                    agent: Frames::default(),
                    microphone: Frames::default(),
                });
                None
            }
            CallCmd::SupervisorAnswered { remote, signalling } => {
                if let Some(supervisor) = self.supervisor.as_mut() {
                    supervisor.phone = Some(RelayLeg::new(remote));
                    supervisor.phone_ips = remote.map(|r| r.ip()).into_iter().collect();
                    supervisor.phone_ips.push(signalling);
                }
                None
            }
            CallCmd::MonitorMode { mode } => {
                tracing::info!(call = actor.key, ?mode, "monitoring mode");
                if let Some(supervisor) = self.supervisor.as_mut() {
                    supervisor.mode = mode;
                }
                None
            }
            CallCmd::SupervisorGone => {
                if self.supervisor.take().is_some() {
                    tracing::info!(call = actor.key, "monitoring ends");
                }
                None
            }
            command => actor.command(command, &mut self.relay).await,
        }
    }

    /// Plays and relays until the call is hung up; returns who hung up.
    async fn run(
        &mut self,
        actor: &mut CallActor,
        commands: &mut mpsc::UnboundedReceiver<CallCmd>,
    ) -> HangupBy {
        let mut tick = tokio::time::interval(FRAME_DURATION);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut from_caller = [0u8; MAX_RTP];
        let mut from_agent = [0u8; MAX_RTP];
        let mut from_supervisor = [0u8; MAX_RTP];
        let mut packet = Vec::with_capacity(MAX_RTP);
        // RTP already received is handled before a command that arrived with it (media sent
        // before a hold is not relayed after the resume); the burst bound keeps a flood of
        // packets from starving the commands.
        let mut burst = 0u32;
        loop {
            if burst >= MAX_BURST {
                burst = 0;
                if let Ok(command) = commands.try_recv() {
                    if let Some(by) = self.handle(actor, command).await {
                        return by;
                    }
                }
            }
            // Music until an agent's media is bridged, and while the agent holds the call.
            let music = !self.relay.leg(LegId::B).bridged() || actor.console_holds;
            let mixing = self.monitoring().is_some();
            tokio::select! {
                biased;
                received = self.caller.recv_from(&mut from_caller) => {
                    burst += 1;
                    if let Ok((len, from)) = received {
                        self.relay_packet(LegId::A, from, &from_caller[..len], actor.console_holds).await;
                    }
                }
                received = self.agent.recv_from(&mut from_agent) => {
                    burst += 1;
                    // A holding phone may send its own music: the caller hears ours. Before a
                    // phone's answer bridged this socket, whatever reaches it is a stranger's.
                    if let (Ok((len, from)), false, false) = (received, actor.holding(), music) {
                        self.relay_packet(LegId::B, from, &from_agent[..len], false).await;
                    }
                }
                received = async {
                    match &self.supervisor {
                        Some(supervisor) => supervisor.socket.recv_from(&mut from_supervisor).await,
                        None => std::future::pending().await,
                    }
                } => {
                    burst += 1;
                    if let Ok((len, from)) = received {
                        self.take_microphone(from, &from_supervisor[..len]);
                    }
                }
                command = commands.recv() => {
                    burst = 0;
                    let Some(command) = command else {
                        return HangupBy::System;
                    };
                    if let Some(by) = self.handle(actor, command).await {
                        return by;
                    }
                }
                _ = tick.tick(), if music || mixing => {
                    burst = 0;
                    if mixing {
                        self.mix_tick(&mut packet, music).await;
                    }
                    if !music {
                        continue;
                    }
                    let Some(to) = self.relay.leg(LegId::A).destination() else { continue };
                    self.announce_when_due(actor.waiting());
                    packet.clear();
                    self.packetizer.packetize(self.playlist.next_frame(), &mut packet);
                    if let Err(err) = self.caller.send_to(&packet, to).await {
                        tracing::debug!(call = actor.key, %to, %err, "music RTP not sent");
                    }
                }
            }
        }
    }

    /// Before each frame of music: for a caller `waiting` in a queue, counts the frames of
    /// music and queues the announcement once enough have played since the last (greeting
    /// and announcement do not count, so a long file never plays twice in a row). For a caller
    /// an agent has (holding the call, say) or who is transferred out: no announcement, and
    /// one cut short by the agent is not finished later.
    fn announce_when_due(&mut self, waiting: bool) {
        let Some((announcement, every)) = &self.announcement else {
            return;
        };
        if !waiting {
            if self.music_since_announcement > 0
                || self.playlist.now_playing() == NowPlaying::Message
            {
                self.playlist.clear_messages();
                self.music_since_announcement = 0;
            }
            return;
        }
        if self.playlist.now_playing() != NowPlaying::Music {
            return;
        }
        if self.music_since_announcement >= *every {
            self.music_since_announcement = 0;
            self.playlist.insert(announcement.clone());
        } else {
            self.music_since_announcement += 1;
        }
    }

    /// One 20 ms step of monitoring: the supervisor gets the mix of caller and agent; while
    /// whispering the agent gets caller and supervisor; while barging the caller gets agent
    /// and supervisor too (unless it hears music).
    async fn mix_tick(&mut self, packet: &mut Vec<u8>, music: bool) {
        // Frames a late tick left waiting are mixed now, one packet each: catching up keeps
        // the mix from lagging behind for the rest of the call.
        for _ in 0..MIX_DEPTH {
            self.mix_once(packet, music).await;
            let drained = self.supervisor.as_ref().is_none_or(|s| {
                s.caller.is_empty() && s.agent.is_empty() && s.microphone.is_empty()
            });
            if drained {
                break;
            }
        }
    }

    /// One mixed packet from the next frame of each party.
    async fn mix_once(&mut self, packet: &mut Vec<u8>, music: bool) {
        let law = self.law;
        let agent_to = self.relay.leg(LegId::B).destination();
        let caller_to = self.relay.leg(LegId::A).destination();
        let Some(supervisor) = self.supervisor.as_mut() else {
            return;
        };
        let (caller, agent, microphone) = (
            supervisor.caller.next(),
            supervisor.agent.next(),
            supervisor.microphone.next(),
        );
        let mixed = supervisor
            .mode
            .mix(caller.as_ref(), agent.as_ref(), microphone.as_ref());
        if let Some(to) = supervisor.phone.as_ref().and_then(RelayLeg::destination) {
            packet.clear();
            supervisor
                .to_supervisor
                .packetize(&encode_frame(law, &mixed.to_supervisor), packet);
            if let Err(err) = supervisor.socket.send_to(packet, to).await {
                tracing::debug!(%to, %err, "monitoring RTP not sent");
            }
        }
        if supervisor.mode != Monitor::Silent {
            if let Some(to) = agent_to {
                packet.clear();
                supervisor
                    .to_agent
                    .packetize(&encode_frame(law, &mixed.to_agent), packet);
                if let Err(err) = self.agent.send_to(packet, to).await {
                    tracing::debug!(%to, %err, "whisper RTP not sent");
                }
            }
        }
        if supervisor.mode == Monitor::Barge && !music {
            if let Some(to) = caller_to {
                packet.clear();
                self.packetizer
                    .packetize(&encode_frame(law, &mixed.to_caller), packet);
                if let Err(err) = self.caller.send_to(packet, to).await {
                    tracing::debug!(%to, %err, "barge RTP not sent");
                }
            }
        }
    }

    /// The supervisor's own audio, kept for the next mix (only from its phone's IPs and latched
    /// address, see [`RelayLeg::latch`]).
    fn take_microphone(&mut self, from: SocketAddr, datagram: &[u8]) {
        let (law, payload_type) = (self.law, self.payload_type);
        let Some(supervisor) = self.supervisor.as_mut() else {
            return;
        };
        let (Some(phone), Ok(rtp)) = (supervisor.phone.as_mut(), RtpPacket::parse(datagram)) else {
            return;
        };
        if rtp.header.is_rtcp() || !supervisor.phone_ips.contains(&from.ip()) || !phone.latch(from)
        {
            return;
        }
        if rtp.header.payload_type == payload_type {
            supervisor.microphone.push(decode_frame(law, rtp.payload));
        }
    }

    /// Relays a packet that came in on leg `on`, and keeps it for the monitoring mix.
    async fn relay_packet(&mut self, on: LegId, from: SocketAddr, datagram: &[u8], held: bool) {
        let action = self.relay.handle_packet(on, from, datagram);
        // A held call's packets only keep their leg latched (the caller may move meanwhile).
        if held {
            return;
        }
        if let Some(mode) = self.monitoring() {
            // What the supervisor's mix needs; and while whispering the agent hears the mix
            // instead of the caller, while barging nobody hears the other leg directly.
            if matches!(action, RelayAction::Forward { .. }) {
                self.keep_frame(on, datagram);
            }
            let mixed = match (mode, on) {
                (Monitor::Silent, _) | (Monitor::Whisper, LegId::B) => false,
                (Monitor::Whisper, LegId::A) | (Monitor::Barge, _) => true,
            };
            if mixed {
                return;
            }
        }
        // Before the agent answers this only latches the caller's address (no destination).
        if let RelayAction::Forward { via, to } = action {
            let socket = match via {
                LegId::A => &self.caller,
                LegId::B => &self.agent,
            };
            if let Err(err) = socket.send_to(datagram, to).await {
                tracing::debug!(%to, %err, "RTP not relayed");
            }
        }
    }

    /// Keeps a leg's audio frame for the next mix (telephone-events are not audio).
    fn keep_frame(&mut self, on: LegId, datagram: &[u8]) {
        let (law, payload_type) = (self.law, self.payload_type);
        let Some(supervisor) = self.supervisor.as_mut() else {
            return;
        };
        let Ok(rtp) = RtpPacket::parse(datagram) else {
            return;
        };
        if rtp.header.payload_type != payload_type {
            return;
        }
        let frame = decode_frame(law, rtp.payload);
        match on {
            LegId::A => supervisor.caller.push(frame),
            LegId::B => supervisor.agent.push(frame),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: i16) -> PcmFrame {
        [n; vacd_sip::rtp::FRAME_SAMPLES]
    }

    #[test]
    fn the_mix_takes_frames_in_order_and_keeps_the_newest() {
        let mut frames = Frames::default();
        assert_eq!(frames.next(), None, "nothing is silence");
        // Two frames before a late tick: both are mixed, one per tick.
        frames.push(frame(1));
        frames.push(frame(2));
        assert_eq!(frames.next(), Some(frame(1)));
        assert_eq!(frames.next(), Some(frame(2)));
        // More than the depth: the oldest go.
        for n in 3..=7 {
            frames.push(frame(n));
        }
        let kept: Vec<i16> = std::iter::from_fn(|| frames.next()).map(|f| f[0]).collect();
        assert_eq!(kept, [5, 6, 7]);
    }
}

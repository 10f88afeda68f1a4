//! `GET /ws/agent`: the agent console's websocket. Authenticates the token (query parameter
//! `token`, or the `Authorization` header), connects a session to the agent's tenant routing,
//! then moves frames: console commands to routing, the chat or the SIP endpoint (each answered
//! with `ack` or `error`, in the order sent), routing events to the console. An `offer` (and
//! the `interaction.connected` of a call the agent placed itself) carries the interaction's
//! details and is followed by a `customer.screen_pop` with the customer's identities and
//! history when it has a customer; `hello` is followed by a `call.held` for
//! each hold the agent's calls are in. The protocol is documented in `docs/agent-protocol.md`.

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value as Json};
use tokio::sync::mpsc;
use vacd_actors::console::{command_id, command_of, Command, ConsoleEvent, FrameError};
use vacd_actors::{AgentId, AgentSession, AgentStatus, Input, InteractionId, ReadyMode, TenantId};

use super::auth::{self, LiveSession};
use super::error::{Error, Result};
use super::AppState;
use crate::catalog::Role;
use crate::routing::Dial;
use crate::store::Principal;

/// How long one frame may take to go out before the console counts as gone.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Most commands answered in one write; a console sending more at once waits for its next turn
/// beside the events and chat frames.
const MAX_ANSWERED_TOGETHER: usize = 32;

/// Most routing commands of one console sent and not answered yet; more wait for the answers.
const MAX_UNANSWERED: usize = 64;

/// Largest command frame a console may send.
pub const MAX_FRAME_BYTES: usize = 16 * 1024;

/// The close code of a socket whose session ended or changed.
const SESSION_ENDED: u16 = 4001;

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// The user behind a websocket's token (query parameter `token`, else the `Authorization`
/// header), if its role is at least `role`, and the upgrade to carry on with: frames and
/// messages over [`MAX_FRAME_BYTES`] are refused as they arrive, before they are buffered.
pub(super) async fn authenticate(
    state: &AppState,
    query: std::result::Result<Query<TokenQuery>, QueryRejection>,
    headers: &HeaderMap,
    upgrade: std::result::Result<
        WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
    role: Role,
) -> Result<(LiveSession, WebSocketUpgrade)> {
    let Query(query) = query?;
    let token = match query.token {
        Some(token) => token,
        None => auth::bearer(headers)?.to_owned(),
    };
    let live = LiveSession::of(state, &token).await?;
    if live.who.role < role {
        return Err(Error::Forbidden(format!(
            "role {} may not connect here; it needs {}",
            live.who.role.as_str(),
            role.as_str()
        )));
    }
    let upgrade = upgrade
        .map_err(|e| Error::InvalidQuery(format!("not a websocket upgrade: {e}")))?
        .read_buffer_size(super::WS_READ_BUFFER_BYTES)
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES);
    Ok((live, upgrade))
}

/// Closes a socket whose session ended or changed (see [`LiveSession::ended`]): code 4001, and
/// the client logs in (or connects) again.
pub(super) async fn close_for_session<S>(sink: &mut S)
where
    S: futures_util::Sink<Message> + Unpin,
{
    let close = Message::Close(Some(CloseFrame {
        code: SESSION_ENDED,
        reason: "the session ended or changed; log in again".into(),
    }));
    let _ = tokio::time::timeout(SEND_TIMEOUT, sink.send(close)).await;
}

pub async fn agent_socket(
    State(state): State<AppState>,
    query: std::result::Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
    upgrade: std::result::Result<
        WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> Result<Response> {
    let (live, upgrade) = authenticate(&state, query, &headers, upgrade, Role::Agent).await?;
    Ok(upgrade.on_upgrade(move |socket| serve(socket, state, live)))
}

fn frame(event: &Json) -> Message {
    Message::Text(event.to_string().into())
}

/// An event as a frame, serialized straight to text.
fn event_frame(event: &ConsoleEvent) -> Message {
    match serde_json::to_string(event) {
        Ok(text) => Message::Text(text.into()),
        Err(e) => error_frame(None, "internal", &e.to_string()),
    }
}

fn error_frame(id: Option<String>, code: &str, message: &str) -> Message {
    frame(&json!({ "type": "error", "id": id, "code": code, "message": message }))
}

async fn serve(socket: WebSocket, state: AppState, mut live: LiveSession) {
    let who = live.who;
    let agent = AgentId(who.user_id as u64);
    let (mut sink, mut stream) = socket.split();
    let (events, incoming) = mpsc::unbounded_channel();
    let session = match state
        .routing
        .router()
        .connect(TenantId(who.tenant_id as u64), agent, events)
        .await
    {
        Ok(session) => session,
        Err(e) => {
            tracing::warn!(tenant = who.tenant_id, %agent, error = %e, "console refused");
            let refusal = error_frame(None, e.code(), &e.to_string());
            let _ = tokio::time::timeout(SEND_TIMEOUT, sink.send(refusal)).await;
            let _ = tokio::time::timeout(SEND_TIMEOUT, sink.close()).await;
            return;
        }
    };
    let mut chats = state
        .chat
        .link_console(who.tenant_id, agent, who.role, session.order());
    let mut chat_frames = true;
    tracing::info!(tenant = who.tenant_id, %agent, "console connected");
    metrics::gauge!(crate::metrics::CONSOLES).increment(1.0);
    let mut console = Console {
        sink,
        incoming,
        state,
        who,
        session,
        gathered: Vec::new(),
        pending: 0,
    };
    'serve: loop {
        tokio::select! {
            received = stream.next() => {
                // Commands that arrived together (a console may send several in one write) go
                // to routing together, and their replies out in one write.
                let (mut received, mut answered) = (received, 0);
                loop {
                    if !console.read(received).await {
                        break 'serve;
                    }
                    answered += 1;
                    let next = (answered < MAX_ANSWERED_TOGETHER)
                        .then(|| stream.next().now_or_never())
                        .flatten();
                    match next {
                        Some(next) => received = next,
                        None => break,
                    }
                }
                // A console that sends faster than routing answers waits for the answers.
                let sent = if console.pending + console.gathered.len() > MAX_UNANSWERED {
                    console.settle().await
                } else {
                    console.send_gathered().await
                };
                if !sent || !console.flush().await {
                    break;
                }
            }
            frame = chats.frames.recv(), if chat_frames => {
                // `None`: a newer console of the agent took the chat frames over; routing's
                // `session.replaced` closes this one.
                let Some(frame) = frame else {
                    chat_frames = false;
                    continue;
                };
                let mut delivered = feed(&mut console.sink, Message::Text(frame.into())).await;
                while delivered {
                    let Ok(frame) = chats.frames.try_recv() else { break };
                    delivered = feed(&mut console.sink, Message::Text(frame.into())).await;
                }
                if !delivered || !console.flush().await {
                    break;
                }
            }
            () = live.ended(&console.state) => {
                tracing::info!(tenant = who.tenant_id, %agent, "console closed: its login ended or changed");
                close_for_session(&mut console.sink).await;
                break;
            }
            event = console.incoming.recv() => {
                // `None`: the session ended (replaced by another console, or failed).
                let Some(event) = event else { break };
                // Whatever else is already waiting goes out in the same write; a socket that
                // did not take one frame in time is given no more.
                let mut delivered = console.deliver(&event).await;
                while delivered {
                    let Ok(event) = console.incoming.try_recv() else { break };
                    delivered = console.deliver(&event).await;
                }
                if !delivered || !console.flush().await {
                    break;
                }
            }
        }
    }
    // Commands read before the connection ended (in the same write as a close, say) are still
    // carried out: the session closes behind them.
    console.send_gathered().await;
    console.session.close();
    let _ = tokio::time::timeout(SEND_TIMEOUT, console.sink.close()).await;
    metrics::gauge!(crate::metrics::CONSOLES).decrement(1.0);
    tracing::info!(tenant = who.tenant_id, %agent, "console disconnected");
}

type Sink = futures_util::stream::SplitSink<WebSocket, Message>;

/// One connected console as its websocket task drives it. Routing commands are not awaited one
/// by one: those read together are sent to the tenant in one message, and their replies come
/// back on the event channel after the events each caused. A command routing does not carry
/// out (a chat or call command) and a refused frame are answered here, once every routing
/// command before them was answered, so replies keep the order of the commands.
struct Console {
    sink: Sink,
    /// Routing events and the replies to routing commands.
    incoming: mpsc::UnboundedReceiver<ConsoleEvent>,
    state: AppState,
    who: Principal,
    session: AgentSession,
    /// Routing commands read from the frames at hand, not sent yet.
    gathered: Vec<(String, Command)>,
    /// Routing commands sent whose reply has not been delivered yet.
    pending: usize,
}

impl Console {
    /// Takes in one frame the console sent: gathers a routing command, carries out anything
    /// else and queues its reply (without flushing). False when the console is gone or closed
    /// the connection.
    async fn read(&mut self, received: Option<std::result::Result<Message, axum::Error>>) -> bool {
        match received {
            Some(Ok(Message::Text(text))) => match serde_json::from_str::<Json>(text.as_str()) {
                Ok(frame) => {
                    let request = call_request(&frame);
                    let is_chat = frame["type"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("chat."));
                    if request.is_none() && !is_chat {
                        return match command_of(frame) {
                            Ok((id, Command::InteractionTransfer { interaction, .. }))
                                if self
                                    .state
                                    .routing
                                    .calls()
                                    .dialling(interaction, AgentId(self.who.user_id as u64)) =>
                            {
                                let message = "the dialled customer is not called yet: the agent's phone has not answered";
                                let reply = rejected(self.who, Some(id), "not_connected", message);
                                self.answer(reply).await
                            }
                            Ok(command) => {
                                self.gathered.push(command);
                                true
                            }
                            Err((id, e)) => self.answer(refused(self.who, id, &e)).await,
                        };
                    }
                    // Carried out here, after the routing commands before it.
                    if !self.settle().await {
                        return false;
                    }
                    // A console another one replaced changes nothing, in a chat or on a call
                    // as in routing.
                    if !self.session.is_live() {
                        let id = command_id(frame.get("id")).ok();
                        let message = "this console was replaced by a newer one of the agent";
                        return feed(
                            &mut self.sink,
                            rejected(self.who, id, "unavailable", message),
                        )
                        .await;
                    }
                    let reply = match request {
                        Some(request) => request.carry_out(&self.state, self.who).await,
                        None => chat(&self.state, self.who, &frame).await,
                    };
                    // Events the command caused in routing (a dial's presence change) go
                    // before its reply.
                    while let Ok(event) = self.incoming.try_recv() {
                        if !self.deliver(&event).await {
                            return false;
                        }
                    }
                    feed(&mut self.sink, reply).await
                }
                Err(e) => {
                    let reply = refused(self.who, None, &FrameError::Malformed(e.to_string()));
                    self.answer(reply).await
                }
            },
            Some(Ok(Message::Binary(_))) => {
                let message = "commands are JSON text frames";
                let reply = rejected(self.who, None, "unsupported_frame", message);
                self.answer(reply).await
            }
            Some(Ok(Message::Close(_))) | None => false,
            Some(Ok(_)) => true,
            Some(Err(e)) => {
                tracing::info!(tenant = self.who.tenant_id, agent = self.who.user_id, error = %e, "console connection failed");
                let close = CloseFrame {
                    code: 1009,
                    reason: "frame too large or broken".into(),
                };
                let close = self.sink.send(Message::Close(Some(close)));
                let _ = tokio::time::timeout(SEND_TIMEOUT, close).await;
                false
            }
        }
    }

    /// Queues a reply made here, after the replies of the routing commands before it.
    async fn answer(&mut self, reply: Message) -> bool {
        self.settle().await && feed(&mut self.sink, reply).await
    }

    /// Sends the gathered routing commands. False if the session has ended (a newer console
    /// of the agent replaced this one): then each is refused with `unavailable`, and the
    /// refusals are written out before the connection closes.
    async fn send_gathered(&mut self) -> bool {
        if self.gathered.is_empty() {
            return true;
        }
        let sent = self.gathered.len();
        let (e, commands) = match self.session.send(std::mem::take(&mut self.gathered)) {
            Ok(()) => {
                self.pending += sent;
                return true;
            }
            Err(ended) => ended,
        };
        let mut delivered = true;
        for (id, _) in commands {
            if delivered {
                let reply = rejected(self.who, Some(id), e.code(), &e.to_string());
                delivered = feed(&mut self.sink, reply).await;
            }
        }
        if delivered {
            self.flush().await;
        }
        false
    }

    /// Sends what was gathered and waits until every routing command sent was answered,
    /// queueing the events and replies that come meanwhile.
    async fn settle(&mut self) -> bool {
        if !self.send_gathered().await {
            return false;
        }
        while self.pending > 0 {
            let Some(event) = self.incoming.recv().await else {
                return false;
            };
            if !self.deliver(&event).await {
                return false;
            }
        }
        true
    }

    /// Queues an event or reply from routing (see [`feed_event`]). After `hello`, the agent's
    /// calls are asked to tell their holds: a hold lives in its call, not in routing, so
    /// `hello` cannot carry it. They answer on the chat frames' channel, linked before, so their
    /// `call.held` follows `hello`, and a hold that changes meanwhile is told there too.
    async fn deliver(&mut self, event: &ConsoleEvent) -> bool {
        if event.is_reply() {
            self.pending = self.pending.saturating_sub(1);
        }
        let fed = feed_event(&mut self.sink, &self.state, self.who, event).await;
        if fed && matches!(event, ConsoleEvent::Hello { .. }) {
            let agent = AgentId(self.who.user_id as u64);
            self.state
                .routing
                .calls()
                .console_linked(self.who.tenant_id, agent);
        }
        fed
    }

    async fn flush(&mut self) -> bool {
        flush(&mut self.sink, self.who).await
    }
}

/// Queues a frame for the socket (written out by [`flush`], or when the buffer is full); false
/// when the socket is gone or does not take it in time.
async fn feed(sink: &mut Sink, message: Message) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, sink.feed(message)).await,
        Ok(Ok(()))
    )
}

/// Writes out the queued frames. A console that stops reading fills its TCP window; it is
/// dropped rather than buffered for forever.
async fn flush(sink: &mut Sink, who: Principal) -> bool {
    let flushed = matches!(
        tokio::time::timeout(SEND_TIMEOUT, sink.flush()).await,
        Ok(Ok(()))
    );
    if !flushed {
        tracing::info!(
            tenant = who.tenant_id,
            agent = who.user_id,
            "console not reading; disconnecting it"
        );
    }
    flushed
}

/// Queues an event (and the screen pop that follows an offer, or work the agent placed
/// itself); false when the socket is gone.
async fn feed_event(
    sink: &mut Sink,
    state: &AppState,
    who: Principal,
    event: &ConsoleEvent,
) -> bool {
    let interaction = match event {
        ConsoleEvent::Offer { interaction, .. }
        | ConsoleEvent::Connected {
            interaction,
            channel: Some(_),
            ..
        } => interaction.0 as i64,
        _ => return feed(sink, event_frame(event)).await,
    };
    // It gets the interaction's details, read once for it and its screen pop.
    let details = match state.store.offer_details(who.tenant_id, interaction).await {
        Ok(details) => details,
        Err(e) => {
            tracing::warn!(tenant = who.tenant_id, interaction, error = %e, "event sent without its details");
            return feed(sink, event_frame(event)).await;
        }
    };
    let offer = WithDetails {
        event,
        details: &details.record,
    };
    let offered = match serde_json::to_string(&offer) {
        Ok(text) => Message::Text(text.into()),
        Err(e) => error_frame(None, "internal", &e.to_string()),
    };
    if !feed(sink, offered).await {
        return false;
    }
    match details.customer {
        Some(customer) => match screen_pop(state, who, interaction, customer).await {
            Some(pop) => feed(sink, frame(&pop)).await,
            None => true,
        },
        None => true,
    }
}

/// An offer (or placed work) with the interaction's record.
#[derive(serde::Serialize)]
struct WithDetails<'a> {
    #[serde(flatten)]
    event: &'a ConsoleEvent,
    details: &'a serde_json::value::RawValue,
}

/// The reply to a frame that is no command.
fn refused(who: Principal, id: Option<String>, e: &FrameError) -> Message {
    rejected(who, id, e.code(), &e.to_string())
}

/// An `error` reply to `who`'s console, logged.
fn rejected(who: Principal, id: Option<String>, code: &str, message: &str) -> Message {
    tracing::info!(
        tenant = who.tenant_id,
        agent = who.user_id,
        id,
        code,
        message,
        "console command refused"
    );
    error_frame(id, code, message)
}

/// Carries out a `chat.*` command and returns the reply frame.
async fn chat(state: &AppState, who: Principal, frame: &Json) -> Message {
    let id = match command_id(frame.get("id")) {
        Ok(id) => id,
        Err(e) => return refused(who, None, &e),
    };
    match state.chat.command(who, frame).await {
        Ok(()) => frame_ack(&id),
        Err(e) => rejected(who, Some(id), e.code(), &e.to_string()),
    }
}

fn frame_ack(id: &str) -> Message {
    event_frame(&ConsoleEvent::Ack { id: id.to_owned() })
}

/// A console command about calls that the SIP endpoint carries out (routing knows only
/// agents and queues): `interaction.transfer` of a call to an external number (`"to":
/// {"target": "number", "number": "+49…"}`), `call.dial` (`"number"`, click-to-dial, and
/// optionally the `"queue"` it is work of) and `call.hold` / `call.resume` (`"interaction"`).
struct CallCommand {
    id: Option<Json>,
    kind: CallCommandKind,
    /// The number, normalised to E.164 (`None` when it is not a phone number).
    number: Option<String>,
}

enum CallCommandKind {
    TransferOut {
        interaction: Option<u64>,
    },
    /// `queue`: `Some(None)` when the frame names no queue, `None` when it names one badly.
    Dial {
        queue: Option<Option<i64>>,
    },
    Hold {
        interaction: Option<u64>,
        on: bool,
    },
}

fn call_request(frame: &Json) -> Option<CallCommand> {
    let (kind, number) =
        if frame["type"] == "interaction.transfer" && frame["to"]["target"] == "number" {
            let interaction = frame["interaction"].as_u64();
            (
                CallCommandKind::TransferOut { interaction },
                &frame["to"]["number"],
            )
        } else if frame["type"] == "call.dial" {
            let queue = match &frame["queue"] {
                Json::Null => Some(None),
                queue => queue.as_i64().map(Some),
            };
            (CallCommandKind::Dial { queue }, &frame["number"])
        } else if frame["type"] == "call.hold" || frame["type"] == "call.resume" {
            let interaction = frame["interaction"].as_u64();
            let on = frame["type"] == "call.hold";
            (CallCommandKind::Hold { interaction, on }, &Json::Null)
        } else {
            return None;
        };
    Some(CallCommand {
        id: frame.get("id").cloned(),
        number: number.as_str().and_then(crate::sip::normalise_e164),
        kind,
    })
}

impl CallCommand {
    async fn carry_out(self, state: &AppState, who: Principal) -> Message {
        let id = match command_id(self.id.as_ref()) {
            Ok(id) => id,
            Err(e) => return refused(who, None, &e),
        };
        let agent = AgentId(who.user_id as u64);
        let calls = state.routing.calls();
        let (result, failure) = match (self.kind, self.number) {
            (CallCommandKind::Hold { interaction, on }, _) => {
                let Some(interaction) = interaction else {
                    let message = "a hold needs the `interaction`";
                    return rejected(who, Some(id), "invalid_command", message);
                };
                let held = calls.hold(InteractionId(interaction), agent, on).await;
                (held, "hold_failed")
            }
            (_, None) => {
                let message = "the number must be E.164 (+49…) or international (0049…)";
                return rejected(who, Some(id), "invalid_command", message);
            }
            (CallCommandKind::TransferOut { interaction: None }, _) => {
                let message = "a transfer needs the `interaction`";
                return rejected(who, Some(id), "invalid_command", message);
            }
            (
                CallCommandKind::TransferOut {
                    interaction: Some(interaction),
                },
                Some(number),
            ) => (
                calls
                    .transfer_out(InteractionId(interaction), agent, number)
                    .await,
                "transfer_failed",
            ),
            (CallCommandKind::Dial { queue: None }, Some(_)) => {
                let message = "the `queue` must be a queue id";
                return rejected(who, Some(id), "invalid_command", message);
            }
            (
                CallCommandKind::Dial {
                    queue: Some(wanted),
                },
                Some(number),
            ) => {
                let queue = match state
                    .store
                    .dial_queue(who.tenant_id, who.user_id, wanted)
                    .await
                {
                    Ok(Some(queue)) => queue,
                    Ok(None) => {
                        let message = match wanted {
                            Some(queue) => format!("queue {queue} is not one of the agent's"),
                            None => "the agent serves no queue to place the call in".to_owned(),
                        };
                        return rejected(who, Some(id), "dial_failed", &message);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "no queue for a click-to-dial");
                        return rejected(who, Some(id), "internal", "the queue could not be read");
                    }
                };
                // First ready for outbound work (the doc's order): no inbound call is offered,
                // nor the agent's phone rung, while the dial is being set up.
                let status = AgentStatus::Ready {
                    mode: ReadyMode::Outbound,
                };
                let outbound = state
                    .routing
                    .router()
                    .input(
                        TenantId(who.tenant_id as u64),
                        Input::SetStatus { agent, status },
                    )
                    .await;
                let result = match outbound {
                    Ok(()) => {
                        let dial = Dial {
                            tenant: who.tenant_id,
                            agent,
                            queue,
                            number,
                        };
                        calls.dial(dial).await
                    }
                    Err(e) => Err(e.to_string()),
                };
                (result, "dial_failed")
            }
        };
        match result {
            Ok(()) => frame_ack(&id),
            Err(message) => rejected(who, Some(id), failure, &message),
        }
    }
}

/// The customer behind an offered interaction: record, identities and recent history.
async fn screen_pop(
    state: &AppState,
    who: Principal,
    interaction: i64,
    customer_id: i64,
) -> Option<Json> {
    let card = state
        .store
        .customer_card(who.tenant_id, customer_id, interaction)
        .await
        .map_err(|e| tracing::warn!(interaction, customer_id, error = %e, "no screen pop"))
        .ok()?;
    Some(json!({
        "type": "customer.screen_pop",
        "interaction": interaction,
        "identities": card.customer["identities"],
        "customer": card.customer,
        "history": card.history,
    }))
}

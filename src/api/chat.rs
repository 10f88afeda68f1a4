//! The website chat's public side, used by the widget (no login):
//! - `GET /api/v1/chat/widgets/{tenant}/{widget}?language=de`: the widget's look, pre-chat
//!   form and whether an agent speaking that language is ready to chat now;
//! - `POST /api/v1/chat/widgets/{tenant}/{widget}/offline`: the offline form, which becomes a
//!   ticket (channel email, answered from the mailbox's email address) with the visitor's
//!   address;
//! - `GET /ws/chat`: the chat itself. The first frame opens a chat (`chat.start`) or returns to
//!   one (`chat.resume` with the token from `chat.welcome`); then messages, typing, read
//!   receipts and the end. The protocol is documented in `docs/chat-protocol.md`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value as Json_};
use vacd_actors::chat::{ChatInput, Party};
use vacd_actors::{Channel, QueueId, TenantId};

use super::error::{ApiPath, Error, Result};
use super::AppState;
use crate::chat::{client_id_problem, Attached};
use crate::language;
use crate::store::{ChatWidget, NewWritten};

/// Largest frame a visitor may send.
pub const MAX_FRAME_BYTES: usize = 16 * 1024;

/// How long a new connection may take to say which chat it wants.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one frame may take to go out before the visitor's connection counts as gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest visitor name, email address, topic and offline message.
const MAX_NAME: usize = 100;
const MAX_EMAIL: usize = 200;
const MAX_OFFLINE: usize = 10_000;

#[derive(Debug, Deserialize)]
pub struct LanguageQuery {
    language: Option<String>,
}

async fn widget(state: &AppState, tenant: &str, address: &str) -> Result<ChatWidget> {
    state
        .store
        .chat_widget(tenant, address)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no chat widget {address} of tenant {tenant}")))
}

/// A widget's look and form, and whether an agent can chat in the visitor's language now.
#[utoipa::path(get, path = "/api/v1/chat/widgets/{tenant}/{widget}", tag = "chat",
    params(("tenant" = String, Path), ("widget" = String, Path), ("language" = Option<String>, Query)),
    responses((status = 200, description = "the widget's settings with `available` and `language`"), (status = 404, body = super::error::ErrorBody), (status = 429, description = "too many reads from this address", body = super::error::ErrorBody)))]
pub async fn widget_info(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    ApiPath((tenant, address)): ApiPath<(String, String)>,
    query: std::result::Result<Query<LanguageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    // Public, and each read costs the store several queries: limited per source.
    if !state.chat.may_read_widget(state.client_ip(peer, &headers)) {
        return Err(Error::RateLimited(
            "too many widget reads from this address; try again in a second".into(),
        ));
    }
    let Query(query) = query?;
    let widget = widget(&state, &tenant, &address).await?;
    let browser = query.language.as_deref().and_then(language::primary);
    let route = state.store.chat_route(&widget, browser).await?;
    let queue = state.store.chat_queue_before_words(&widget, &route).await?;
    let available = match queue {
        Some(queue) => state
            .routing
            .router()
            .can_serve(
                TenantId(widget.tenant_id as u64),
                QueueId(queue as u64),
                Channel::Chat,
                route.skill,
            )
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(tenant, error = %e, "chat availability unknown");
                false
            }),
        None => false,
    };
    let mut body = serde_json::to_value(&widget).unwrap_or(Json_::Null);
    body["available"] = json!(available);
    body["language"] = json!(route.language);
    Ok(([("cache-control", "no-store")], Json(body)).into_response())
}

/// The widget's own endpoints: its settings and its offline form. The widget runs on the
/// customer's site, so any origin may read them (CORS, with the preflight of the form's JSON
/// POST); they need no credentials.
pub fn widget_routes() -> axum::Router<AppState> {
    let cors = tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
        .allow_headers([axum::http::header::CONTENT_TYPE]);
    // The preflight (OPTIONS) is answered by the CORS layer; the route needs the method for
    // the request to reach the layer at all.
    let preflight = || async { axum::http::StatusCode::NO_CONTENT };
    axum::Router::new()
        .route(
            "/api/v1/chat/widgets/{tenant}/{widget}",
            axum::routing::get(widget_info).options(preflight),
        )
        .route(
            "/api/v1/chat/widgets/{tenant}/{widget}/offline",
            axum::routing::post(offline).options(preflight),
        )
        .layer(cors)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OfflineForm {
    name: Option<String>,
    email: String,
    message: String,
    language: Option<String>,
}

/// The widget's offline form: becomes an email ticket of the customer with that address.
#[utoipa::path(post, path = "/api/v1/chat/widgets/{tenant}/{widget}/offline", tag = "chat",
    params(("tenant" = String, Path), ("widget" = String, Path)),
    responses((status = 201, description = "`{interaction}`"), (status = 404, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody), (status = 429, body = super::error::ErrorBody)))]
pub async fn offline(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    ApiPath((tenant, address)): ApiPath<(String, String)>,
    body: std::result::Result<Json<OfflineForm>, axum::extract::rejection::JsonRejection>,
) -> Result<Response> {
    let Json(form) = body?;
    let widget = widget(&state, &tenant, &address).await?;
    // A form sent is a contact started, like a chat: the same per-source limit.
    if !state.chat.may_start(state.client_ip(peer, &headers)) {
        return Err(Error::RateLimited(
            "too many new contacts from this address; try again in a second".into(),
        ));
    }
    let email = valid_email(&form.email)
        .ok_or_else(|| Error::invalid("invalid_value", "`email` must be an email address"))?;
    let message = form.message.trim();
    if message.is_empty() || message.chars().count() > MAX_OFFLINE {
        return Err(Error::invalid(
            "invalid_value",
            format!("`message` must have 1 to {MAX_OFFLINE} characters"),
        ));
    }
    let name = visitor_name(form.name.as_deref(), &email);
    let detected = language::detect(message);
    let candidates = [
        detected.map(str::to_owned),
        form.language.as_deref().and_then(language::primary),
    ];
    let route = state
        .store
        .chat_route(&widget, candidates.into_iter().flatten())
        .await?;
    let channels = state
        .channels
        .as_ref()
        .ok_or_else(|| Error::NotFound("written channels are not running".into()))?;
    let address = state
        .store
        .widget_reply_address(
            widget.tenant_id,
            widget.mailbox_id,
            widget.service_address_id,
        )
        .await?
        .ok_or_else(|| Error::NotFound(format!("no chat widget {address} of tenant {tenant}")))?;
    let now = crate::store::now_ms();
    let new = NewWritten {
        tenant: widget.tenant_id,
        service_address: address.id,
        mailbox: widget.mailbox_id,
        queue: route.queue,
        channel: "email",
        source_key: format!("widget:{}:{email}:{now}", widget.service_address_id),
        sender_name: Some(name.clone()),
        contact: Some(email.clone()),
        identity_kind: "email",
        recipients: vec![address.address.clone()],
        subject: format!("Offline message from {name}"),
        text: message.to_owned(),
        language: Some(route.language),
        first_answer_due: address.first_answer_due(now),
        ..NewWritten::default()
    };
    let interaction = channels.accept(&new).await?.interaction;
    tracing::info!(tenant, interaction, "offline chat form became a ticket");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "interaction": interaction })),
    )
        .into_response())
}

/// A browser's key for the widget: random, so long enough not to be guessed, and plain.
fn valid_visitor_key(key: &str) -> bool {
    (16..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn valid_email(email: &str) -> Option<String> {
    let email = email.trim();
    let (local, domain) = email.split_once('@')?;
    (!local.is_empty()
        && domain.contains('.')
        && email.len() <= MAX_EMAIL
        && !email.contains(|c: char| c.is_whitespace() || c.is_control()))
    .then(|| email.to_owned())
}

fn visitor_name(name: Option<&str>, fallback: &str) -> String {
    let name: String = name
        .unwrap_or_default()
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME)
        .collect();
    if name.is_empty() {
        fallback.to_owned()
    } else {
        name
    }
}

pub async fn chat_socket(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    upgrade: std::result::Result<
        WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> Result<Response> {
    let upgrade =
        upgrade.map_err(|e| Error::InvalidQuery(format!("not a websocket upgrade: {e}")))?;
    Ok(upgrade
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .read_buffer_size(super::WS_READ_BUFFER_BYTES)
        // Every frame is written out at once: nothing is gathered per idle socket.
        .write_buffer_size(0)
        .on_upgrade(move |socket| {
            let client = state.client_ip(peer, &headers);
            serve(socket, state, client)
        }))
}

fn text(value: &Json_) -> Message {
    Message::Text(value.to_string().into())
}

fn error(code: &str, message: &str, client_id: Option<&str>) -> Message {
    text(&json!({ "type": "error", "code": code, "message": message, "client_id": client_id }))
}

type Sink = futures_util::stream::SplitSink<WebSocket, Message>;

async fn close(sink: &mut Sink, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.to_owned().into(),
    };
    send(sink, Message::Close(Some(frame))).await;
}

/// Sends one frame; false when the visitor's browser did not take it within [`SEND_TIMEOUT`]
/// (a connection that stopped reading is let go rather than buffered for).
async fn send(sink: &mut Sink, message: Message) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, sink.send(message)).await,
        Ok(Ok(()))
    )
}

/// Reads the first frame and opens or resumes its chat; `None` when the connection is done.
async fn first(
    state: &AppState,
    client: IpAddr,
    sink: &mut Sink,
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
) -> Option<Attached> {
    // One deadline for the opening frame, whatever else (pings, refused frames) comes first.
    let deadline = tokio::time::Instant::now() + FIRST_FRAME_TIMEOUT;
    loop {
        let received = tokio::time::timeout_at(deadline, stream.next()).await;
        let text_frame = match received {
            Err(_) => {
                close(sink, 4408, "no chat.start or chat.resume in time").await;
                return None;
            }
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(Message::Binary(_)))) => {
                if !send(
                    sink,
                    error("unsupported_frame", "frames are JSON text", None),
                )
                .await
                {
                    return None;
                }
                continue;
            }
            Ok(Some(Err(e))) => {
                tracing::info!(%client, error = %e, "chat connection failed");
                close(sink, 1009, "frame too large or broken").await;
                return None;
            }
            Ok(_) => return None,
        };
        let frame: Json_ = match serde_json::from_str(text_frame.as_str()) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::info!(%client, error = %e, "chat frame is not JSON");
                if !send(sink, error("malformed_json", &e.to_string(), None)).await {
                    return None;
                }
                continue;
            }
        };
        let opened = match frame["type"].as_str() {
            Some("chat.start") => start(state, client, &frame).await,
            Some("chat.resume") => match frame["token"].as_str() {
                Some(token) => state
                    .chat
                    .resume(token)
                    .await
                    .map(|attached| (None, attached))
                    .map_err(|e| (e.code(), e.to_string())),
                None => Err(("invalid_command", "`token` is missing".to_owned())),
            },
            _ => Err((
                "invalid_command",
                "the first frame is chat.start or chat.resume".to_owned(),
            )),
        };
        match opened {
            Ok((token, attached)) => {
                let welcome =
                    json!({ "type": "chat.welcome", "chat": attached.chat, "token": token });
                if !send(sink, text(&welcome)).await {
                    return None;
                }
                return Some(attached);
            }
            Err((code, message)) => {
                tracing::info!(%client, code, message, "chat refused");
                send(sink, error(code, &message, None)).await;
                let close_code = match code {
                    "invalid_command" | "invalid_value" => continue,
                    "rate_limited" => 4429,
                    "chat_ended" => 4410,
                    "unavailable" => 1013,
                    "unknown_widget" | "unknown_session" => 4404,
                    _ => 1011,
                };
                close(sink, close_code, code).await;
                return None;
            }
        }
    }
}

type Opened = std::result::Result<(Option<String>, Attached), (&'static str, String)>;

async fn start(state: &AppState, client: IpAddr, frame: &Json_) -> Opened {
    let field = |key: &str| frame[key].as_str().map(str::trim).filter(|s| !s.is_empty());
    let (Some(tenant), Some(address)) = (field("tenant"), field("widget")) else {
        return Err(("invalid_command", "`tenant` and `widget` are needed".into()));
    };
    // No tenant or widget name holds a NUL (PostgreSQL could not even look for one).
    let looked_up = if tenant.contains('\0') || address.contains('\0') {
        Ok(None)
    } else {
        state.store.chat_widget(tenant, address).await
    };
    let widget = match looked_up {
        Ok(Some(widget)) => widget,
        Ok(None) => {
            return Err((
                "unknown_widget",
                format!("no chat widget {address} of tenant {tenant}"),
            ))
        }
        Err(e) => {
            tracing::error!(%tenant, widget = %address, error = %e, "chat widget not read");
            return Err((
                "store_failed",
                "the chat could not be started; try again".into(),
            ));
        }
    };
    if !state.chat.may_start(client) {
        return Err((
            "rate_limited",
            "too many new chats from this address".into(),
        ));
    }
    let email = match field("email") {
        Some(email) => match valid_email(email) {
            Some(email) => Some(email),
            None => return Err(("invalid_value", "`email` must be an email address".into())),
        },
        None => None,
    };
    let topic = field("topic").map(|t| {
        t.chars()
            .filter(|c| !c.is_control())
            .take(MAX_NAME)
            .collect::<String>()
    });
    if let Some(topic) = &topic {
        if !widget.topics.is_empty() && !widget.topics.contains(topic) {
            return Err((
                "invalid_value",
                format!("`topic` is one of {}", widget.topics.join(", ")),
            ));
        }
    }
    let name = visitor_name(field("name"), "Visitor");
    let language = field("language").and_then(language::primary);
    let key = match field("visitor") {
        Some(key) if valid_visitor_key(key) => Some(key.to_owned()),
        Some(_) => {
            return Err((
                "invalid_value",
                "`visitor` is 16 to 64 letters, digits, `-` or `_`".into(),
            ))
        }
        None => None,
    };
    let visitor = crate::chat::Visitor { name, email, key };
    state
        .chat
        .open(&widget, visitor, topic, language)
        .await
        .map(|(token, attached)| (Some(token), attached))
        .map_err(|e| (e.code(), e.to_string()))
}

async fn serve(socket: WebSocket, state: AppState, client: IpAddr) {
    let (mut sink, mut stream) = socket.split();
    let Some(mut attached) = first(&state, client, &mut sink, &mut stream).await else {
        let _ = sink.close().await;
        return;
    };
    let chat = attached.chat;
    let mut replaced = false;
    // A browser answers pings by itself; a connection silent for two of them is gone, and
    // dropping it tells the chat the visitor left (else a half-open socket of a phone that
    // changed networks would keep its chat waiting for ever).
    let every = state.chat.ping_every();
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = ping.tick() => {
                if heard.elapsed() >= every * 2 {
                    tracing::info!(chat, %client, "chat connection silent; closed as gone");
                    break;
                }
                if !send(&mut sink, Message::Ping(Default::default())).await {
                    break;
                }
            }
            received = stream.next() => {
                heard = tokio::time::Instant::now();
                match received {
                    Some(Ok(Message::Text(t))) => {
                        if let Some(reply) = visitor_frame(&state, client, &attached, t.as_str()).await {
                            if !send(&mut sink, reply).await {
                                break;
                            }
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        if !send(&mut sink, error("unsupported_frame", "frames are JSON text", None)).await {
                            break;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::info!(chat, %client, error = %e, "chat connection failed");
                        close(&mut sink, 1009, "frame too large or broken").await;
                        break;
                    }
                }
            }
            event = attached.events.recv() => {
                let Some(event) = event else {
                    if replaced {
                        close(&mut sink, 4409, "a newer connection took this one's place").await;
                    } else {
                        // The chat ended (its last frame was `chat.ended`) or vacd is stopping.
                        close(&mut sink, 1000, "chat over").await;
                    }
                    break;
                };
                replaced = event == crate::chat::REPLACED;
                if !send(&mut sink, Message::Text(event.into())).await {
                    break;
                }
            }
        }
    }
    let _ = sink.close().await;
}

/// Carries out one visitor frame; the error frame to send back, if it was refused.
async fn visitor_frame(
    state: &AppState,
    client: IpAddr,
    attached: &Attached,
    text_frame: &str,
) -> Option<Message> {
    let frame: Json_ = match serde_json::from_str(text_frame) {
        Ok(frame) => frame,
        Err(e) => return Some(error("malformed_json", &e.to_string(), None)),
    };
    let client_id = frame["client_id"].as_str();
    if let Some((id, problem)) = client_id.and_then(|id| Some((id, client_id_problem(id)?))) {
        return Some(error("invalid_command", &problem, Some(id)));
    }
    let client_id = client_id.map(str::to_owned);
    let input = match frame["type"].as_str() {
        Some("chat.send") if !state.chat.may_send(client) => {
            return Some(error(
                "rate_limited",
                "too many messages from this address; slow down",
                client_id.as_deref(),
            ))
        }
        Some("chat.send") => match frame["text"].as_str() {
            Some(text) => ChatInput::Say {
                from: Party::Visitor,
                client_id: client_id.clone(),
                text: text.to_owned(),
                whisper: false,
            },
            None => {
                return Some(error(
                    "invalid_command",
                    "`text` is missing",
                    client_id.as_deref(),
                ))
            }
        },
        Some("chat.typing") => ChatInput::Typing {
            from: Party::Visitor,
            on: frame["on"].as_bool().unwrap_or(true),
        },
        Some("chat.read") => match frame["up_to"].as_i64() {
            Some(up_to) => ChatInput::Read {
                from: Party::Visitor,
                up_to,
            },
            None => return Some(error("invalid_command", "`up_to` is missing", None)),
        },
        Some("chat.end") => ChatInput::End { by: Party::Visitor },
        Some("chat.email_transcript") => {
            if !state.chat.may_send(client) {
                return Some(error(
                    "rate_limited",
                    "too many requests from this address",
                    None,
                ));
            }
            return Some(
                match email_transcript(state, attached.chat, frame["email"].as_str()).await {
                    Ok(to) => text(&json!({ "type": "chat.transcript_sent", "email": to })),
                    Err(e) => {
                        tracing::info!(chat = attached.chat, error = %e, "chat transcript not sent");
                        let code = match &e {
                            Error::Invalid { code, .. } => code,
                            Error::RateLimited(_) => "rate_limited",
                            _ => "transcript_failed",
                        };
                        error(code, &e.to_string(), None)
                    }
                },
            );
        }
        _ => {
            return Some(error(
                "invalid_command",
                "expected chat.send, chat.typing, chat.read, chat.email_transcript or chat.end",
                None,
            ))
        }
    };
    match attached.input(input).await {
        Ok(()) => None,
        Err(e) => {
            tracing::debug!(
                chat = attached.chat,
                code = e.code(),
                "visitor input refused"
            );
            Some(error(e.code(), &e.to_string(), client_id.as_deref()))
        }
    }
}

/// Transcripts one chat may email at most.
const MAX_TRANSCRIPTS: usize = 3;

/// Emails the chat's transcript (what the visitor saw: no whispers) to the address the visitor
/// gave at the start, or — only if none was given — to `requested`, which then stays the
/// chat's one address. Sent from the widget mailbox's email address like a ticket's answer,
/// once someone of the company has written in the chat and at most [`MAX_TRANSCRIPTS`] times
/// per chat: the visitor writes the text, and the company's own mailbox must not become
/// anyone's way to mail anybody — a script starting chats would otherwise send its words from
/// it to any address, three mails a chat. The address it went to.
async fn email_transcript(state: &AppState, chat: i64, requested: Option<&str>) -> Result<String> {
    let row = state
        .store
        .chat_by_id(chat)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no chat {chat}")))?;
    let interaction = row
        .interaction
        .ok_or_else(|| Error::invalid("empty_chat", "the chat has no messages yet"))?;
    // One at a time per chat: sent side by side (from several tabs), each would find the
    // count and the address still free and send.
    let _sending =
        super::tickets::Sending::claim(state, row.tenant, interaction).ok_or_else(|| {
            Error::Conflict {
                code: "send_in_progress",
                message: "this chat's transcript is being sent".into(),
            }
        })?;
    let sent = state
        .store
        .transcripts_sent(row.tenant, interaction)
        .await?;
    if sent.len() >= MAX_TRANSCRIPTS {
        return Err(Error::RateLimited(format!(
            "this chat's transcript was sent {MAX_TRANSCRIPTS} times already"
        )));
    }
    let to = match (row.visitor_email.as_ref().or(sent.first()), requested) {
        (Some(email), _) => email.clone(),
        (None, Some(email)) => valid_email(email)
            .ok_or_else(|| Error::invalid("invalid_value", "`email` must be an email address"))?,
        (None, None) => {
            return Err(Error::invalid(
                "invalid_value",
                "this chat has no email address; send `email`",
            ))
        }
    };
    let widget = state
        .store
        .chat_widget_of(row.tenant, row.service_address)
        .await?
        .ok_or_else(|| Error::NotFound(format!("the widget of chat {chat} is gone")))?;
    let messages = state
        .store
        .chat_messages(row.tenant, interaction, &row.visitor_name, None)
        .await?;
    if !messages
        .iter()
        .any(|m| !m.whisper && m.author != Party::Visitor)
    {
        return Err(Error::invalid(
            "unanswered_chat",
            "a transcript is sent once an agent has written in the chat",
        ));
    }
    let mut body = format!("Your chat with {}\n\n", widget.title);
    for m in messages.iter().filter(|m| !m.whisper) {
        body.push_str(&format!("{}: {}\n\n", m.name, m.text));
    }
    let channels = state
        .channels
        .as_ref()
        .ok_or_else(|| Error::NotFound("written channels are not running".into()))?;
    let context = crate::store::ReplyContext {
        tenant: row.tenant,
        interaction,
        channel: "email".into(),
        subject: format!("Your chat with {}", widget.title),
        contact: Some(to.clone()),
        customer_name: Some(row.visitor_name.clone()),
        language: row.language.clone().unwrap_or_else(|| "en".into()),
        address: state
            .store
            .widget_reply_address(row.tenant, widget.mailbox_id, widget.service_address_id)
            .await?,
        thread_ids: Vec::new(),
        last_inbound: None,
    };
    channels
        .send(
            &context,
            &to,
            &context.subject,
            &body,
            crate::channels::SendKind::Automatic,
        )
        .await
        .map_err(|e| Error::Conflict {
            code: "transcript_failed",
            message: e.to_string(),
        })?;
    state
        .store
        .transcript_sent(row.tenant, interaction, &to)
        .await?;
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::valid_email;

    #[test]
    fn an_email_is_an_address_a_store_can_keep() {
        assert_eq!(
            valid_email(" vera@example.com ").as_deref(),
            Some("vera@example.com")
        );
        for bad in [
            "vera",
            "@example.com",
            "vera@localhost",
            "ve ra@example.com",
            "a\0@example.com",
            "a\u{7}b@example.com",
        ] {
            assert_eq!(valid_email(bad), None, "{bad:?}");
        }
    }
}

//! The floor under the routing load test: the least a server can do and still speak the
//! protocol `routing` drives — no routing, no store, no events. It logs anyone in, creates
//! queues, users and memberships by handing out ids, and hands each created interaction
//! straight to the next agent's websocket (round robin) as an offer, answering the create with
//! a row of vacd's size; an agent's accept and end get vacd's replies. What it costs per
//! interaction is what the protocol, axum, hyper, tungstenite, tokio and the kernel's loopback
//! TCP cost on this machine (both sides on its cores), before any routing or storing.
//!
//! Usage: `floor [PORT]` (127.0.0.1 only; 18590 by default), then
//! `routing http://127.0.0.1:PORT INTERACTIONS AGENTS CLIENTS FLOOR_PID [RATE]` (see
//! loadtests/README.md).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

#[derive(Default)]
struct Floor {
    ids: AtomicU64,
    agents: Mutex<Vec<mpsc::UnboundedSender<[String; 2]>>>,
    next_agent: AtomicUsize,
}

type Shared = Arc<Floor>;

#[tokio::main(worker_threads = 2)]
async fn main() -> Result<()> {
    let port: u16 = std::env::args().nth(1).map_or(Ok(18590), |p| p.parse())?;
    let floor = Shared::default();
    let app = Router::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/queues", post(new_id))
        .route("/api/v1/users", post(new_id))
        .route("/api/v1/queue-members", post(new_id))
        .route("/api/v1/interactions", post(create))
        .route("/ws/agent", get(agent))
        .with_state(floor);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await?
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    println!("floor listening on 127.0.0.1:{port}");
    axum::serve(listener, app).await?;
    Ok(())
}

async fn login() -> Json<Value> {
    Json(json!({ "token": "floor" }))
}

async fn new_id(State(floor): State<Shared>) -> (StatusCode, Json<Value>) {
    let id = floor.ids.fetch_add(1, Ordering::Relaxed) + 1;
    (StatusCode::CREATED, Json(json!({ "id": id })))
}

/// The create: its body parsed into JSON (not checked), offered to the next agent, answered
/// with a row.
async fn create(State(floor): State<Shared>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let id = floor.ids.fetch_add(1, Ordering::Relaxed) + 1;
    let row = json!({
        "id": id, "tenant_id": 1, "channel": body["channel"], "queue_id": body["queue_id"],
        "mailbox_id": null, "customer_id": null, "language": null, "subject": body["subject"],
        "priority": 50, "state": "new", "agent_id": null, "queue_order": null,
        "queued_at": null, "sla_deadline": null, "direction": "in", "source_key": null,
        "created_at": 1_765_000_000_000_i64, "updated_at": 1_765_000_000_000_i64,
    });
    let offer = json!({
        "type": "offer", "interaction": id, "queue": body["queue_id"],
        "channel": body["channel"], "timeout_ms": 600_000, "details": row,
    });
    let reserved = r#"{"type":"presence.changed","from":{"presence":"ready","mode":"inbound"},"to":{"presence":"reserved"}}"#;
    let agent = {
        // The consoles of an earlier run are gone.
        let mut agents = floor.agents.lock().expect("agents");
        agents.retain(|agent| !agent.is_closed());
        (!agents.is_empty()).then(|| {
            agents[floor.next_agent.fetch_add(1, Ordering::Relaxed) % agents.len()].clone()
        })
    };
    if let Some(agent) = agent {
        let _ = agent.send([offer.to_string(), reserved.to_owned()]);
    }
    (StatusCode::CREATED, Json(row))
}

async fn agent(State(floor): State<Shared>, upgrade: WebSocketUpgrade) -> Response {
    upgrade
        .read_buffer_size(4096)
        .on_upgrade(move |socket| console(floor, socket))
}

#[derive(Deserialize)]
struct Command {
    id: Value,
    #[serde(rename = "type")]
    kind: String,
    interaction: Option<u64>,
}

/// One agent's console: offers out as they come, each batch of commands answered in one write.
async fn console(floor: Shared, socket: WebSocket) {
    let (offers_in, mut offers) = mpsc::unbounded_channel::<[String; 2]>();
    let (mut tx, mut rx) = socket.split();
    let mut ready = false;
    loop {
        tokio::select! {
            Some(frames) = offers.recv() => {
                for frame in frames {
                    if tx.feed(Message::Text(frame.into())).await.is_err() {
                        return;
                    }
                }
                if tx.flush().await.is_err() {
                    return;
                }
            }
            message = rx.next() => {
                let Some(Ok(Message::Text(text))) = message else { return };
                // Commands that came together are answered together, as vacd does.
                let mut texts = vec![text];
                while let Some(Some(Ok(Message::Text(text)))) = rx.next().now_or_never() {
                    texts.push(text);
                }
                for text in texts {
                    let Ok(command) = serde_json::from_str::<Command>(text.as_str()) else { continue };
                    for reply in replies(&command) {
                        if tx.feed(Message::Text(reply.to_string().into())).await.is_err() {
                            return;
                        }
                    }
                    if command.kind == "presence.set" && !ready {
                        ready = true;
                        floor.agents.lock().expect("agents").push(offers_in.clone());
                    }
                }
                if tx.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// vacd's replies to a command the generator sends: its events, then the ack (any other
/// command: the ack alone).
fn replies(command: &Command) -> Vec<Value> {
    let interaction = command.interaction.unwrap_or_default();
    let mut replies = match command.kind.as_str() {
        "presence.set" => vec![
            json!({ "type": "presence.changed", "from": { "presence": "offline" }, "to": { "presence": "ready", "mode": "inbound" } }),
        ],
        "offer.accept" => vec![
            json!({ "type": "interaction.connected", "interaction": interaction, "queue": 1, "waited_ms": 1 }),
            json!({ "type": "presence.changed", "from": { "presence": "reserved" }, "to": { "presence": "busy" } }),
        ],
        "interaction.end" => vec![
            json!({ "type": "interaction.ended", "interaction": interaction, "wrap_up_ms": 0 }),
            json!({ "type": "presence.changed", "from": { "presence": "busy" }, "to": { "presence": "ready", "mode": "inbound" } }),
        ],
        _ => Vec::new(),
    };
    replies.push(json!({ "type": "ack", "id": command.id }));
    replies
}

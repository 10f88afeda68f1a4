//! A test agent console: a real websocket client of `/ws/agent` that sends commands and waits
//! for frames. Every wait is bounded; nothing sleeps.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::TestServer;

/// How long a test waits for a frame before failing.
pub const WAIT: Duration = Duration::from_secs(15);

pub struct Console {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Frames that arrived while waiting for a command's reply, not yet taken by `next`.
    pending: std::collections::VecDeque<Value>,
    /// Every frame received so far, in order.
    pub seen: Vec<Value>,
    /// The server's close code, once it closed.
    close: Option<u16>,
}

impl Console {
    pub async fn connect(server: &TestServer, token: &str) -> Console {
        let mut console = Console::open(server, &format!("/ws/agent?token={token}")).await;
        console.expect("hello").await;
        console
    }

    /// A websocket to `path` of the server, with this type's frame handling (the chat
    /// visitor's socket uses it too).
    pub async fn open(server: &TestServer, path: &str) -> Console {
        let url = format!("{}{path}", server.base.replacen("http", "ws", 1));
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        Console {
            ws,
            next_id: 0,
            pending: Default::default(),
            seen: Vec::new(),
            close: None,
        }
    }

    /// Waits until the server closes the connection; its close code.
    pub async fn closed(&mut self) -> Option<u16> {
        while self.next().await.is_some() {}
        self.close
    }

    /// The next frame, or `None` when the server closed the connection.
    pub async fn next(&mut self) -> Option<Value> {
        if let Some(frame) = self.pending.pop_front() {
            return Some(frame);
        }
        self.receive().await
    }

    async fn receive(&mut self) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame within the wait")?;
            match message {
                Ok(Message::Text(text)) => {
                    let value: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
                    self.seen.push(value.clone());
                    return Some(value);
                }
                Ok(Message::Close(frame)) => {
                    self.close = frame.map(|f| u16::from(f.code));
                    return None;
                }
                Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Waits for a frame of `kind` (skipping others) and returns it.
    pub async fn expect(&mut self, kind: &str) -> Value {
        self.expect_where(kind, |_| true).await
    }

    /// Waits for a frame of `kind` that satisfies `matches`, at most [`WAIT`] in all (queue
    /// figures come every second, so a bound per frame would never end the wait).
    pub async fn expect_where(&mut self, kind: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.next())
                .await
                .unwrap_or_else(|_| panic!("no {kind} within the wait; saw {:?}", self.seen));
            let frame = frame.unwrap_or_else(|| {
                panic!(
                    "connection closed while waiting for {kind}; saw {:?}",
                    self.seen
                )
            });
            if frame["type"] == kind && matches(&frame) {
                return frame;
            }
        }
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    /// Sends `messages` in one write.
    pub async fn send_together(&mut self, messages: Vec<Message>) {
        for message in messages {
            self.ws.feed(message).await.expect("queue a frame");
        }
        self.ws.flush().await.expect("send the frames");
    }

    /// Sends a command and returns the frames up to and including its reply (`ack` or `error`).
    /// The frames before the reply also stay queued for [`Console::next`] and the `expect`s.
    pub async fn command(&mut self, mut command: Value) -> Vec<Value> {
        self.next_id += 1;
        let id = self.next_id.to_string();
        command["id"] = json!(id);
        self.send_raw(Message::Text(command.to_string().into()))
            .await;
        let mut frames = Vec::new();
        loop {
            let frame = self.receive().await.expect("reply before close");
            let done =
                frame["id"] == id.as_str() && (frame["type"] == "ack" || frame["type"] == "error");
            if !done {
                self.pending.push_back(frame.clone());
            }
            frames.push(frame);
            if done {
                return frames;
            }
        }
    }

    /// Sends `commands` in one write; their ids, and the frames up to and including the reply to
    /// the last.
    pub async fn together(&mut self, commands: &[Value]) -> (Vec<String>, Vec<Value>) {
        let mut ids = Vec::new();
        let mut frames = Vec::new();
        for command in commands {
            self.next_id += 1;
            let id = self.next_id.to_string();
            let mut command = command.clone();
            command["id"] = json!(id);
            ids.push(id);
            frames.push(Message::Text(command.to_string().into()));
        }
        self.send_together(frames).await;
        let last = ids.last().cloned().unwrap_or_default();
        let mut frames = Vec::new();
        loop {
            let frame = self.receive().await.expect("replies before close");
            let done = frame["id"] == last.as_str()
                && (frame["type"] == "ack" || frame["type"] == "error");
            frames.push(frame);
            if done {
                return (ids, frames);
            }
        }
    }

    /// Sends a command that must succeed; returns the frames before its ack.
    pub async fn ok(&mut self, command: Value) -> Vec<Value> {
        let mut frames = self.command(command.clone()).await;
        let reply = frames.pop().expect("reply");
        assert_eq!(reply["type"], "ack", "{command} → {reply}");
        frames
    }

    /// Waits for the offer of `interaction`, accepts it and ends it (the agent is in wrap-up).
    pub async fn handle(&mut self, interaction: i64) {
        self.accept(interaction).await;
        self.ok(json!({ "type": "interaction.end", "interaction": interaction }))
            .await;
    }

    /// Waits for the offer of `interaction` and accepts it.
    pub async fn accept(&mut self, interaction: i64) {
        self.expect_where("offer", |f| f["interaction"] == interaction)
            .await;
        self.ok(json!({ "type": "offer.accept", "interaction": interaction }))
            .await;
    }

    pub async fn ready(&mut self) -> Vec<Value> {
        self.ok(json!({ "type": "presence.set", "status": "ready", "mode": "inbound" }))
            .await
    }
}

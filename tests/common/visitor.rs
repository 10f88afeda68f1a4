//! A test website visitor: a real websocket client of `/ws/chat`, built on the console test
//! client's frame handling. Every wait is bounded; nothing sleeps.

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::console::Console;
use super::TestServer;

pub struct Visitor {
    pub ws: Console,
    /// The resume token of the chat.
    pub token: String,
    pub chat: i64,
}

impl Visitor {
    /// Opens a chat on the demo widget; `extra` adds or overrides `chat.start` fields.
    pub async fn start(server: &TestServer, extra: Value) -> Visitor {
        let mut start = json!({
            "type": "chat.start", "tenant": "demo", "widget": "demo-widget", "name": "Vera Visitor",
        });
        if let (Some(start), Some(extra)) = (start.as_object_mut(), extra.as_object()) {
            start.extend(extra.clone());
        }
        let mut ws = Console::open(server, "/ws/chat").await;
        ws.send_raw(Message::Text(start.to_string().into())).await;
        let welcome = ws.expect("chat.welcome").await;
        Visitor {
            token: welcome["token"]
                .as_str()
                .expect("a resume token")
                .to_owned(),
            chat: welcome["chat"].as_i64().expect("chat id"),
            ws,
        }
    }

    /// A new connection that asks to return to the chat with `token` (the answer unread).
    pub async fn ask_to_resume(server: &TestServer, token: &str) -> Console {
        let mut ws = Console::open(server, "/ws/chat").await;
        ws.send_raw(Message::Text(
            json!({ "type": "chat.resume", "token": token })
                .to_string()
                .into(),
        ))
        .await;
        ws
    }

    /// Returns to the chat with `token` on a new connection.
    pub async fn resume(server: &TestServer, token: &str) -> Visitor {
        let mut ws = Visitor::ask_to_resume(server, token).await;
        let welcome = ws.expect("chat.welcome").await;
        Visitor {
            token: token.to_owned(),
            chat: welcome["chat"].as_i64().expect("chat id"),
            ws,
        }
    }

    pub async fn frame(&mut self, frame: Value) {
        self.ws
            .send_raw(Message::Text(frame.to_string().into()))
            .await;
    }

    /// Sends a message and waits for its ack; the stored message.
    pub async fn say(&mut self, client_id: &str, text: &str) -> Value {
        self.frame(json!({ "type": "chat.send", "client_id": client_id, "text": text }))
            .await;
        self.ws
            .expect_where("chat.ack", |f| f["client_id"] == client_id)
            .await["message"]
            .clone()
    }

    /// Waits for a message whose text is `text`.
    pub async fn hears(&mut self, text: &str) -> Value {
        self.ws
            .expect_where("chat.message", |f| f["text"] == text)
            .await
    }
}

//! Browser tests: vacd's pages in a real browser — Debian's chromium, headless, driven by
//! playwright-core from the scripts in `tests/browser/` (scripts/test.sh installs both).
//! Screenshots go to `target/screenshots/`.

mod common;

use common::console::Console;
use common::feed::Feed;
use common::{Db, TestServer};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// The wallboard signs in, follows the live feed, and its Break button sets an agent not ready
/// (which the agent's own console sees).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallboard_in_chromium() {
    let s = TestServer::start(Db::Sqlite).await;
    let token = s.demo_login("bruno").await;
    let mut console = Console::connect(&s, &token).await;
    console.ready().await;
    let (_, me) = s.get("/api/v1/me", &token).await;
    let bruno = me["id"].as_i64().expect("bruno's id");
    let screenshots = concat!(env!("CARGO_MANIFEST_DIR"), "/target/screenshots");
    std::fs::create_dir_all(screenshots).expect("screenshot directory");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/wallboard.mjs");
    let run = tokio::process::Command::new("node")
        .args([script, &s.base, &bruno.to_string(), screenshots])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(90), run)
        .await
        .expect("the browser test finishes within 90 s")
        .expect("node runs (scripts/test.sh installs node's playwright-core and chromium)");
    assert!(
        output.status.success(),
        "wallboard test failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    console
        .expect_where("presence.changed", |f| f["to"]["reason"] == "break")
        .await;
    s.stop().await;
}

/// A website visitor's chat socket (`/ws/chat`), read until a frame a test waits for.
struct Visitor {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Visitor {
    async fn start(s: &TestServer, start: serde_json::Value) -> Visitor {
        let url = format!("{}/ws/chat", s.base.replacen("http", "ws", 1));
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("chat socket connects");
        let mut visitor = Visitor { ws };
        visitor.send(start).await;
        visitor.until("chat.welcome", |_| true).await;
        visitor
    }

    async fn send(&mut self, frame: serde_json::Value) {
        use futures_util::SinkExt;
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("visitor frame sent");
    }

    /// Waits (bounded) for a frame of `kind` that satisfies `matches`.
    async fn until(
        &mut self,
        kind: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        use futures_util::StreamExt;
        loop {
            let next = tokio::time::timeout(common::console::WAIT, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no {kind} for the visitor within the wait"));
            let Some(message) = next else {
                panic!("chat closed before {kind}");
            };
            if let Message::Text(text) = message.expect("chat frame") {
                let frame: serde_json::Value =
                    serde_json::from_str(text.as_str()).expect("JSON frame");
                if frame["type"] == kind && matches(&frame) {
                    return frame;
                }
            }
        }
    }
}

/// The agent console in chromium: bruno signs in and goes ready; a German visitor's chat is
/// offered to him with a countdown; he accepts and sees the message and the customer's history;
/// a second chat comes in beside it, into which he invites alice. He answers both with the `/hi`
/// text module (each visitor's name filled in) and sees the read receipt; the second visitor
/// ends her chat, bruno ends the first; each goes through wrap-up. Then an email is offered: a
/// plain card he rejects once, then accepts and transfers to alice.
/// The visitors are real chat sockets here (`visitors`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_chromium() {
    let s = TestServer::start(Db::Sqlite).await;
    let sam = s.demo_login("sam").await;
    let mut feed = Feed::connect(&s, &sam).await;
    let (_, me) = s.get("/api/v1/me", &s.demo_login("bruno").await).await;
    let bruno = me["id"].as_i64().expect("bruno's id");
    // Alice, a colleague bruno invites into a chat and transfers an email to.
    let alice_token = s.demo_login("alice").await;
    let mut alice = Console::connect(&s, &alice_token).await;
    alice.ready().await;
    let (_, me) = s.get("/api/v1/me", &alice_token).await;
    let alice_id = me["id"].as_i64().expect("alice's id");
    // A returning customer: the screen pop shows her earlier email.
    let vera = s
        .create(
            "/api/v1/customers",
            &sam,
            json!({ "name": "Vera Vogel", "language": "de" }),
        )
        .await;
    s.create(
        "/api/v1/customer-identities",
        &sam,
        json!({ "customer_id": vera, "kind": "email", "value": "vera@example.com" }),
    )
    .await;
    s.create(
        "/api/v1/interactions",
        &sam,
        json!({ "channel": "email", "customer_id": vera, "language": "de", "state": "done", "subject": "Rechnung März" }),
    )
    .await;

    let screenshots = concat!(env!("CARGO_MANIFEST_DIR"), "/target/screenshots");
    std::fs::create_dir_all(screenshots).expect("screenshot directory");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/console.mjs");
    let mut browser = tokio::spawn(
        tokio::process::Command::new("node")
            .args([script, &s.base, screenshots, &alice_id.to_string()])
            .kill_on_drop(true)
            .output(),
    );
    {
        let visitors = visitors(&s, &mut feed, &mut alice, &sam, bruno, vera);
        tokio::pin!(visitors);
        let run = async {
            // A browser that fails early is reported at once, with its output.
            let (output, visitors_done) = tokio::select! {
                output = &mut browser => (output, false),
                () = &mut visitors => (browser.await, true),
            };
            let output = output
                .expect("the browser task runs")
                .expect("node runs (scripts/test.sh installs node's playwright-core and chromium)");
            assert!(
                output.status.success(),
                "console test failed:\n{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            if !visitors_done {
                visitors.await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(90), run)
            .await
            .expect("the browser test finishes within 90 s");
    }
    s.stop().await;
}

/// The other side of `console_in_chromium`: two visitors chat with bruno (each step waits for
/// what his console did) and alice joins one of the chats; then an email comes in for bruno,
/// which he transfers to alice.
async fn visitors(
    s: &TestServer,
    feed: &mut Feed,
    alice: &mut Console,
    sam: &str,
    bruno: i64,
    vera: i64,
) {
    let ready = feed
        .until("bruno ready", |f| {
            common::feed::agent_of(f, bruno).is_some_and(|a| a["presence"]["presence"] == "ready")
        })
        .await;
    let mut first = Visitor::start(
        s,
        json!({ "type": "chat.start", "tenant": "demo", "widget": "demo-widget", "name": "Vera Vogel", "email": "vera@example.com", "language": "de" }),
    )
    .await;
    first
        .send(json!({ "type": "chat.send", "client_id": "v-1", "text": "Guten Tag, ich habe eine Frage zu meiner Rechnung. Können Sie mir bitte helfen?" }))
        .await;
    first.until("chat.ack", |f| f["client_id"] == "v-1").await;
    let read = first
        .until("chat.read", |f| f["party"]["kind"] == "agent")
        .await;
    assert_eq!(
        read["party"]["id"], bruno,
        "bruno's console read it: {read}"
    );

    // Bruno has the first chat open: a second one comes in beside it.
    let mut second = Visitor::start(
        s,
        json!({ "type": "chat.start", "tenant": "demo", "widget": "demo-widget", "name": "Klara Klein", "language": "de" }),
    )
    .await;
    second
        .send(json!({ "type": "chat.send", "client_id": "k-1", "text": "Hallo, mein Paket ist noch nicht angekommen. Wo bleibt meine Bestellung?" }))
        .await;
    second.until("chat.ack", |f| f["client_id"] == "k-1").await;

    let answer = first
        .until("chat.message", |f| f["author"]["kind"] == "agent")
        .await;
    assert_eq!(
        answer["text"], "Hallo Vera Vogel, danke für Ihre Nachricht. Wie kann ich helfen?",
        "the German greeting with the customer's name: {answer}"
    );
    first
        .send(json!({ "type": "chat.read", "up_to": answer["id"] }))
        .await;
    // Bruno invites alice into the second chat: she gets its transcript, the visitor sees her.
    let transcript = alice.expect("chat.transcript").await;
    assert!(
        transcript["messages"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Paket")),
        "{transcript}"
    );
    second
        .until("chat.joined", |f| f["name"] == "Alice Andersen")
        .await;
    let answer = second
        .until("chat.message", |f| f["author"]["kind"] == "agent")
        .await;
    assert_eq!(
        answer["text"], "Hallo Klara Klein, danke für Ihre Nachricht. Wie kann ich helfen?",
        "{answer}"
    );
    second.send(json!({ "type": "chat.end" })).await;
    let ended = second.until("chat.ended", |_| true).await;
    assert_eq!(ended["reason"], "visitor");
    let ended = first.until("chat.ended", |_| true).await;
    assert_eq!(ended["reason"], "agent");

    // Back from wrap-up, bruno gets an email.
    let since = common::feed::agent_of(&ready, bruno).and_then(|a| a["since"].as_i64());
    feed.until("bruno ready again", |f| {
        common::feed::agent_of(f, bruno)
            .is_some_and(|a| a["presence"]["presence"] == "ready" && a["since"].as_i64() > since)
    })
    .await;
    let (_, queues) = s.get("/api/v1/queues", sam).await;
    let support_de = queues["items"]
        .as_array()
        .and_then(|queues| queues.iter().find(|q| q["name"] == "Support DE"))
        .map(|q| q["id"].clone())
        .expect("the demo queue Support DE");
    let email = s
        .create(
            "/api/v1/interactions",
            sam,
            json!({ "channel": "email", "queue_id": support_de, "customer_id": vera, "language": "de", "subject": "Mahnung" }),
        )
        .await;
    // Bruno rejects it once, then takes it and transfers it to alice.
    alice
        .expect_where("offer", |f| f["interaction"] == email)
        .await;
    alice
        .ok(json!({ "type": "offer.accept", "interaction": email }))
        .await;
}

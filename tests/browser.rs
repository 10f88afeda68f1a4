//! Browser tests: vacd's pages in a real browser — Debian's chromium, headless, driven by
//! playwright-core from the scripts in `tests/browser/` (scripts/test.sh installs both).
//! Screenshots go to `target/screenshots/`.

mod common;

use common::console::Console;
use common::{Db, TestServer};
use serde_json::json;

/// Runs `tests/browser/{script}` with `args`, screenshots going to `target/screenshots/`; its
/// output if it succeeded.
async fn node(script: &str, args: &[&str]) -> String {
    let screenshots = concat!(env!("CARGO_MANIFEST_DIR"), "/target/screenshots");
    std::fs::create_dir_all(screenshots).expect("screenshot directory");
    let path = format!("{}/tests/browser/{script}", env!("CARGO_MANIFEST_DIR"));
    let run = tokio::process::Command::new("node")
        .arg(&path)
        .args(args)
        .arg(screenshots)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(90), run)
        .await
        .expect("the browser test finishes within 90 s")
        .expect("node runs (scripts/test.sh installs node's playwright-core and chromium)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A German visitor chats through the widget on /demo with Bruno and keeps the transcript over
/// a reload; a French visitor with nobody ready leaves a message with the keyboard only, which
/// becomes a ticket. The widget's gzipped size is printed and held to its budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn widget_in_chromium() {
    let s = TestServer::start(Db::Sqlite).await;
    let token = s.demo_login("bruno").await;
    let mut bruno = Console::connect(&s, &token).await;
    bruno.ready().await;
    let browser = tokio::spawn({
        let base = s.base.clone();
        async move { node("widget.mjs", &[&base]).await }
    });
    let offer = bruno
        .expect_where("offer", |f| f["channel"] == "chat")
        .await;
    let interaction = offer["interaction"].clone();
    bruno
        .ok(json!({ "type": "offer.accept", "interaction": interaction }))
        .await;
    bruno.expect("chat.transcript").await;
    bruno
        .ok(json!({ "type": "chat.send", "interaction": interaction, "text": "Hallo Vera, wie kann ich helfen?" }))
        .await;
    let output = browser.await.expect("browser task");
    println!("{output}");
    let admin = s.demo_login("ada").await;
    let (_, tickets) = s.get("/api/v1/interactions?channel=email", &admin).await;
    let ticket = &tickets["items"][0];
    assert_eq!(
        ticket["subject"], "Offline message from Olivier",
        "{tickets}"
    );
    assert_eq!(ticket["language"], "fr");
    s.stop().await;
}

/// The wallboard signs in, follows the live feed, and its Break button sets an agent not ready
/// (which the agent's own console sees); it draws today's charts from the reports (one email
/// answered in Sales DE), and moves a waiting email from a queue nobody serves to Sales DE with
/// the keyboard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallboard_in_chromium() {
    let s = TestServer::start(Db::Sqlite).await;
    let token = s.demo_login("bruno").await;
    let mut console = Console::connect(&s, &token).await;
    console.ready().await;
    let (_, me) = s.get("/api/v1/me", &token).await;
    let bruno = me["id"].as_i64().expect("bruno's id");
    let admin = s.demo_login("ada").await;
    let (_, queues) = s.get("/api/v1/queues?limit=500", &admin).await;
    let sales_de = queues["items"]
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["name"] == "Sales DE"))
        .and_then(|q| q["id"].as_i64())
        .expect("the demo's Sales DE queue");
    let email = |queue: i64| json!({ "channel": "email", "queue_id": queue, "language": "de", "subject": "Hallo" });
    let answered = s
        .create("/api/v1/interactions", &admin, email(sales_de))
        .await;
    console
        .expect_where("offer", |f| f["interaction"] == answered)
        .await;
    console
        .ok(json!({ "type": "offer.accept", "interaction": answered }))
        .await;
    console
        .ok(json!({ "type": "interaction.end", "interaction": answered }))
        .await;
    console
        .ok(json!({ "type": "wrapup.done", "interaction": answered }))
        .await;
    let unserved = s
        .create("/api/v1/queues", &admin, json!({ "name": "Nobody serves" }))
        .await;
    let waiting = s
        .create("/api/v1/interactions", &admin, email(unserved))
        .await;
    node(
        "wallboard.mjs",
        &[&s.base, &bruno.to_string(), &waiting.to_string()],
    )
    .await;
    console
        .expect_where("presence.changed", |f| f["to"]["reason"] == "break")
        .await;
    s.stop().await;
}

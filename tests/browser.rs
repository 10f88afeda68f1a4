//! Browser tests: vacd's pages in a real browser — Debian's chromium, headless, driven by
//! playwright-core from the scripts in `tests/browser/` (scripts/test.sh installs both).
//! Screenshots go to `target/screenshots/`.

mod common;

use common::console::Console;
use common::{Db, TestServer};
use serde_json::json;

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
    let screenshots = concat!(env!("CARGO_MANIFEST_DIR"), "/target/screenshots");
    std::fs::create_dir_all(screenshots).expect("screenshot directory");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/wallboard.mjs");
    let run = tokio::process::Command::new("node")
        .args([
            script,
            &s.base,
            &bruno.to_string(),
            screenshots,
            &waiting.to_string(),
        ])
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

//! Browser tests: vacd's pages in a real browser — Debian's chromium, headless, driven by
//! playwright-core from the scripts in `tests/browser/` (scripts/test.sh installs both).
//! Screenshots go to `target/screenshots/`.

mod common;

use common::console::Console;
use common::{Db, TestServer};

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

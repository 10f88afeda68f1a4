//! The `vacd` binary as a user runs it: the default config (`config/vacd.toml`, embedded SQLite
//! under `data/`, the demo tenant), only the ports moved to ephemeral ones. It must become
//! ready, let a demo agent log in and list the demo queues, keep data across a restart, stop
//! cleanly on SIGTERM, and reject bad configuration with the key named.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_vacd");

fn default_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/vacd.toml")
}

/// Starts `vacd serve` in `dir` and returns it with the address it logged.
async fn serve(dir: &Path) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["--config", &default_config().display().to_string(), "serve"])
        .current_dir(dir)
        .env("VACD_HTTP__LISTEN", "127.0.0.1:0")
        .env("VACD_SIP__UDP", "127.0.0.1:0")
        .env("VACD_SIP__TCP", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("vacd starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let find_addr = async {
        while let Some(line) = lines.next_line().await.expect("read log") {
            if let Some(at) = line.find("HTTP listening") {
                let rest = &line[at..];
                let start = rest.find("127.0.0.1:").expect("address in log line");
                let addr: String = rest[start..]
                    .chars()
                    .take_while(|c| !c.is_whitespace())
                    .collect();
                return addr;
            }
        }
        panic!("vacd exited before listening");
    };
    let addr = tokio::time::timeout(Duration::from_secs(60), find_addr)
        .await
        .expect("vacd listens within a minute");
    // Keep draining the log so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, format!("http://{addr}"))
}

async fn terminate(mut child: Child) {
    let pid = child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("wait");
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
}

#[tokio::test]
async fn default_config_serves_the_demo_tenant() {
    let dir = tempfile::tempdir().expect("temp dir");
    let http = reqwest::Client::new();
    let (child, base) = serve(dir.path()).await;
    assert!(
        dir.path().join("data/vacd.db").exists(),
        "SQLite file created under data/"
    );

    let ready = http
        .get(format!("{base}/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 200);
    let login: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({ "tenant": "demo", "username": "alice", "password": "demo-password" }))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let token = login["token"].as_str().expect("token").to_owned();
    let queues: Value = http
        .get(format!("{base}/api/v1/queues"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("queues")
        .json()
        .await
        .expect("json");
    let names: Vec<_> = queues["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|q| q["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "Sales DE",
            "Sales EN",
            "Support EN",
            "Support FR",
            "Support DE"
        ]
    );
    let customer: Value = http
        .post(format!("{base}/api/v1/customers"))
        .bearer_auth(&token)
        .json(&json!({ "name": "Kept across restarts" }))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    terminate(child).await;

    // Second start on the same data: nothing re-seeded, nothing lost, sessions still valid.
    let (child, base) = serve(dir.path()).await;
    let url = format!("{base}/api/v1/customers/{}", customer["id"]);
    let again: Value = http
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(again["name"], "Kept across restarts");
    let queues: Value = http
        .get(format!("{base}/api/v1/queues"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("queues")
        .json()
        .await
        .expect("json");
    assert_eq!(queues["total"], 4, "demo seeded once");
    terminate(child).await;
}

#[tokio::test]
async fn migrate_and_check_config_subcommands() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = default_config().display().to_string();
    let migrate = Command::new(BIN)
        .args(["--config", &config, "migrate"])
        .current_dir(dir.path())
        .output()
        .await
        .expect("run");
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    assert!(dir.path().join("data/vacd.db").exists());

    let ok = Command::new(BIN)
        .args(["--config", &config, "check-config"])
        .output()
        .await
        .expect("run");
    assert!(ok.status.success());

    let bad = Command::new(BIN)
        .args(["--config", &config, "check-config"])
        .env("VACD_DATABASE__URL", "mysql://nope")
        .output()
        .await
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("database.url"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    let missing = Command::new(BIN)
        .args(["--config", "/nonexistent/vacd.toml", "check-config"])
        .output()
        .await
        .expect("run");
    assert_eq!(missing.status.code(), Some(2));
}

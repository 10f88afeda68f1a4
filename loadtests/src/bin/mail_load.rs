//! Mail ingestion load: delivers N mails into the maildir of a Dovecot account that a running
//! vacd fetches over IMAP (see `loadtests/mail/run.sh`, which starts both), while agents accept
//! every offer at once over the agent websocket. Prints mails ingested per second (delivered →
//! fetched, stored as tickets and deleted from the server) and the time from a mail's arrival
//! in the mailbox to its offer to an agent (p50/p95/p99/max).
//!
//! Bounded in count and time. Usage:
//! `mail_load BASE_URL MAILDIR [MAILS] [AGENTS]`

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const DEADLINE: Duration = Duration::from_secs(50);

async fn post(
    http: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> Result<Value> {
    let mut request = http.post(&url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() {
        bail!("POST {url}: {status} {body}");
    }
    Ok(body)
}

async fn get(http: &reqwest::Client, url: String, token: &str) -> Result<Value> {
    Ok(http
        .get(url)
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    vacd_loadtests::percentile(sorted, p).unwrap_or_default()
}

fn waiting(maildir: &Path) -> usize {
    ["new", "cur"]
        .iter()
        .filter_map(|d| std::fs::read_dir(maildir.join(d)).ok())
        .map(|entries| entries.count())
        .sum()
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let base = args.get(1).cloned().context("BASE_URL")?;
    let maildir = PathBuf::from(args.get(2).context("MAILDIR")?);
    let total: usize = args.get(3).map_or(Ok(2000), |s| s.parse())?;
    let agents: usize = args.get(4).map_or(Ok(20), |s| s.parse())?;
    if !base.starts_with("http://127.0.0.1") {
        bail!("load is only sent to loopback");
    }
    let http = reqwest::Client::new();
    let login = |user: String, password: &'static str| {
        let (http, url) = (http.clone(), format!("{base}/api/v1/auth/login"));
        async move {
            let body = json!({ "tenant": "demo", "username": user, "password": password });
            post(&http, url, None, body).await?["token"]
                .as_str()
                .map(str::to_owned)
                .context("login token")
        }
    };
    let admin = login("ada".into(), "demo-password").await?;
    let addresses = get(
        &http,
        format!("{base}/api/v1/service-addresses?kind=email"),
        &admin,
    )
    .await?;
    let queue = addresses["items"][0]["queue_id"]
        .as_i64()
        .context("the email address's queue")?;
    let skills = get(&http, format!("{base}/api/v1/skills?limit=100"), &admin).await?;
    let skill = |name: &str| {
        skills["items"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == name))
            .and_then(|s| s["id"].as_i64())
            .context("demo skill")
    };
    let (en, support) = (skill("en")?, skill("support")?);

    let offered: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let progress = Arc::new(tokio::sync::Notify::new());
    let mut consoles = Vec::new();
    let tag = std::process::id();
    for n in 0..agents {
        let username = format!("mail-{tag}-{n}");
        let user = post(&http, format!("{base}/api/v1/users"), Some(&admin), json!({ "username": username, "display_name": username, "password": "load-password", "capacity_tickets": 50 }))
            .await?["id"]
            .as_i64()
            .context("user id")?;
        for (skill, level) in [(en, 10), (support, 9)] {
            post(
                &http,
                format!("{base}/api/v1/agent-skills"),
                Some(&admin),
                json!({ "user_id": user, "skill_id": skill, "level": level }),
            )
            .await?;
        }
        post(
            &http,
            format!("{base}/api/v1/queue-members"),
            Some(&admin),
            json!({ "queue_id": queue, "user_id": user }),
        )
        .await?;
        let token = login(username, "load-password").await?;
        let url = format!("{}/ws/agent?token={token}", base.replacen("http", "ws", 1));
        let ws = vacd_loadtests::connect(&url).await?;
        let (mut tx, mut rx) = ws.split();
        tx.send(Message::Text(
            json!({ "id": "ready", "type": "presence.set", "status": "ready", "mode": "inbound" })
                .to_string()
                .into(),
        ))
        .await?;
        let (offered, progress) = (offered.clone(), progress.clone());
        consoles.push(tokio::spawn(async move {
            let mut n = 0u64;
            while let Some(Ok(Message::Text(text))) = rx.next().await {
                let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                if frame["type"] != "offer" {
                    continue;
                }
                if let Some(subject) = frame["details"]["subject"].as_str() {
                    offered
                        .lock()
                        .expect("offers")
                        .insert(subject.to_owned(), Instant::now());
                    progress.notify_one();
                }
                let id = &frame["interaction"];
                for command in ["offer.accept", "interaction.end", "wrapup.done"] {
                    n += 1;
                    let frame = json!({ "id": n, "type": command, "interaction": id });
                    if tx
                        .feed(Message::Text(frame.to_string().into()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                if tx.flush().await.is_err() {
                    return;
                }
            }
        }));
    }
    println!("{agents} agents ready on queue {queue}; delivering {total} mails");

    for sub in ["new", "cur", "tmp"] {
        let dir = maildir.join(sub);
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
    }
    let mut sent = HashMap::with_capacity(total);
    let started = Instant::now();
    for n in 0..total {
        let subject = format!("load {tag} {n}");
        let raw = format!(
            "From: Customer {n} <c{n}@load.test>\r\nTo: support@demo.vacd.test\r\nSubject: {subject}\r\n\
             Message-ID: <load-{tag}-{n}@load.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
             Hello, I would like to know why my invoice is so much higher this month than last month.\r\n"
        );
        let name = format!("{tag}.{n}.load");
        std::fs::write(maildir.join("tmp").join(&name), raw)?;
        std::fs::rename(
            maildir.join("tmp").join(&name),
            maildir.join("new").join(&name),
        )?;
        sent.insert(subject, Instant::now());
    }
    let delivered_in = started.elapsed();
    while waiting(&maildir) > 0 && started.elapsed() < DEADLINE {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ingested_in = started.elapsed();
    let left = waiting(&maildir);
    while offered.lock().expect("offers").len() < total {
        let rest = DEADLINE.saturating_sub(started.elapsed());
        if tokio::time::timeout(rest, progress.notified())
            .await
            .is_err()
        {
            break;
        }
    }
    let offered_in = started.elapsed();
    let offered = offered.lock().expect("offers").clone();
    let mut latency: Vec<Duration> = offered
        .iter()
        .filter_map(|(s, at)| sent.get(s).map(|t| at.saturating_duration_since(*t)))
        .collect();
    latency.sort();
    println!(
        "delivered {total} mails into the maildir in {:.2} s",
        delivered_in.as_secs_f64()
    );
    println!(
        "ingested  {} mails (fetched, stored as tickets, deleted) in {:.2} s = {:.0} mails/s{}",
        total - left,
        ingested_in.as_secs_f64(),
        (total - left) as f64 / ingested_in.as_secs_f64(),
        if left > 0 {
            format!(" ({left} still waiting at the deadline)")
        } else {
            String::new()
        }
    );
    println!(
        "offered   {} tickets in {:.2} s = {:.0} tickets/s end to end",
        offered.len(),
        offered_in.as_secs_f64(),
        offered.len() as f64 / offered_in.as_secs_f64()
    );
    println!(
        "arrival→offer p50 {:?}  p95 {:?}  p99 {:?}  max {:?}",
        percentile(&latency, 0.5),
        percentile(&latency, 0.95),
        percentile(&latency, 0.99),
        latency.last().copied().unwrap_or_default()
    );
    for console in consoles {
        console.abort();
    }
    Ok(())
}

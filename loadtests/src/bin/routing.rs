//! Drives a running vacd through its public interfaces and prints routing throughput and
//! latency: agents log in over the API and work through the agent websocket (accept at once, end
//! at once; the queue has no wrap-up); interactions are created with `POST /api/v1/interactions` by concurrent
//! HTTP clients, each on a keep-alive connection of its own. Prints routed interactions per
//! second and the latency from sending the create request to the agent receiving its first offer
//! (p50/p99), plus the create request's own latency. The generator shares the machine's cores
//! with the server, so it does little per interaction: it runs on one thread (no wake-ups
//! between threads, and the other core is left to the server), offers are read into a borrowed
//! struct, times are kept in tables indexed by the interaction's number.
//!
//! Prints its own CPU time per routed interaction and, given the server's process id (same
//! machine), the server's, counted from the first create to the last offer (`/proc/PID/stat`).
//!
//! Closed loop by default: each client sends its next create as soon as the last is answered,
//! so the figures are those of a saturated server. Given a RATE (interactions/s), open loop: the
//! Nth create is due at N / RATE seconds after the start and the clients send each when it is
//! due (or as soon as one is free, if all are busy). Its latency counts from when it was sent,
//! or — if no client was free when it was due — from when it was due, so a server falling
//! behind shows in the figures instead of slowing the generator down, while the generator's own
//! timer (late by up to a millisecond) does not.
//!
//! Bounded in count and time. Usage (against a server started with the default config):
//! `cargo run --release -p vacd-loadtests --bin routing -- [BASE_URL] [INTERACTIONS] [AGENTS] [CLIENTS] [SERVER_PID] [RATE]`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use vacd_loadtests::{Api, Connection};

const DEADLINE: Duration = Duration::from_secs(120);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    vacd_loadtests::percentile(sorted, p).unwrap_or_default()
}

/// What a console reads of a frame: the type, and of an offer the interaction and the subject
/// (`load-N`, N the interaction's number in this run).
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    interaction: Option<u64>,
    #[serde(borrow)]
    details: Option<Details<'a>>,
}

#[derive(Deserialize)]
struct Details<'a> {
    subject: Option<&'a str>,
}

/// When each interaction (by number) was sent or offered.
type Times = Arc<Mutex<Vec<Option<Instant>>>>;

// One thread: at 10,000/s its p99 was 7 ms against 16–21 ms with a worker per core, at 34
// against 40 µs of the generator's CPU per interaction.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let total: usize = args.get(2).map_or(Ok(20_000), |s| s.parse())?;
    let agents: usize = args.get(3).map_or(Ok(200), |s| s.parse())?;
    let clients: usize = args.get(4).map_or(Ok(64), |s| s.parse())?;
    let server: Option<u32> = args
        .get(5)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse())
        .transpose()?;
    let rate: Option<f64> = args.get(6).map(|s| s.parse()).transpose()?;
    if rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        bail!("RATE must be a positive number of interactions per second");
    }
    if !base.starts_with("http://127.0.0.1") && !base.starts_with("http://localhost") {
        bail!("load is only sent to loopback");
    }
    let api = Api::new(&base);
    let admin = api.login("ada", "demo-password").await?;
    let tag = format!("{}", std::process::id());
    let queue = api
        .post("/api/v1/queues", &admin, json!({ "name": format!("load-{tag}"), "wrapup_seconds": 0, "offer_timeout_seconds": 600 }))
        .await?["id"]
        .as_i64()
        .context("queue id")?;

    // Agents: each console accepts and ends every offer at once and reports when it saw it.
    let offered: Times = Arc::new(Mutex::new(vec![None; total]));
    let offers = Arc::new(AtomicUsize::new(0));
    let mut consoles = Vec::new();
    // Signalled by the consoles at every offer, so the end of the run is awaited, not polled.
    let progress = Arc::new(tokio::sync::Notify::new());
    for n in 0..agents {
        let username = format!("load-{tag}-{n}");
        let password = "load-password";
        let user = api
            .post("/api/v1/users", &admin, json!({ "username": username, "display_name": username, "password": password, "capacity_tickets": 5 }))
            .await?["id"]
            .as_i64()
            .context("user id")?;
        api.post(
            "/api/v1/queue-members",
            &admin,
            json!({ "queue_id": queue, "user_id": user }),
        )
        .await?;
        let token = api.login(&username, password).await?;
        let url = api.ws(&format!("/ws/agent?token={token}"));
        let ws = vacd_loadtests::connect(&url).await?;
        let (mut tx, mut rx) = ws.split();
        tx.send(Message::Text(
            json!({ "id": "ready", "type": "presence.set", "status": "ready", "mode": "inbound" })
                .to_string()
                .into(),
        ))
        .await?;
        let (offered, offers, progress) = (offered.clone(), offers.clone(), progress.clone());
        consoles.push(tokio::spawn(async move {
            let mut n = 0u64;
            while let Some(Ok(Message::Text(text))) = rx.next().await {
                // Only offers are worth parsing.
                if !text.as_str().contains(r#""type":"offer""#) {
                    continue;
                }
                let Ok(frame) = serde_json::from_str::<Frame>(text.as_str()) else {
                    continue;
                };
                let (Some(id), "offer") = (frame.interaction, frame.kind) else {
                    continue;
                };
                let number = frame
                    .details
                    .and_then(|d| d.subject?.strip_prefix("load-")?.parse::<usize>().ok());
                let first_offer = number.is_some_and(|number| {
                    let mut offered = offered.lock().expect("offer times");
                    match offered.get_mut(number) {
                        Some(slot @ None) => slot.replace(Instant::now()).is_none(),
                        _ => false,
                    }
                });
                if first_offer {
                    offers.fetch_add(1, Ordering::Relaxed);
                    progress.notify_one();
                }
                // Both commands go out in one write; the queue has no wrap-up to finish.
                for command in ["offer.accept", "interaction.end"] {
                    n += 1;
                    let frame = format!(r#"{{"id":{n},"type":"{command}","interaction":{id}}}"#);
                    if tx.feed(Message::Text(frame.into())).await.is_err() {
                        return;
                    }
                }
                if tx.flush().await.is_err() {
                    return;
                }
            }
        }));
    }
    let pace = rate.map_or("as fast as answered".to_owned(), |r| format!("at {r}/s"));
    println!("{agents} agents ready on queue {queue}; creating {total} interactions with {clients} clients, {pace}");

    let sent: Times = Arc::new(Mutex::new(vec![None; total]));
    let create_latency: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let authorization = hyper::header::HeaderValue::from_str(&format!("Bearer {admin}"))?;
    let mut connections = Vec::new();
    for _ in 0..clients {
        connections.push(Connection::open(&base).await?);
    }
    let started = Instant::now();
    let cpu_before = server.and_then(cpu_ticks);
    let own_before = cpu_ticks(std::process::id());
    let mut workers = Vec::new();
    for mut connection in connections {
        let (authorization, sent, create_latency, next) = (
            authorization.clone(),
            sent.clone(),
            create_latency.clone(),
            next.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total || started.elapsed() > DEADLINE {
                    return;
                }
                let body =
                    format!(r#"{{"channel":"email","queue_id":{queue},"subject":"load-{n}"}}"#);
                let at = match rate {
                    // A client free before the create is due sends it when its timer fires
                    // (tokio's wheel ticks in milliseconds: up to ~1 ms after it was due, which
                    // is the generator's delay, not the server's); one that was busy until
                    // after, counts from when it was due.
                    Some(rate) => {
                        let due = started + Duration::from_secs_f64(n as f64 / rate);
                        if due > Instant::now() {
                            tokio::time::sleep_until(due.into()).await;
                            Instant::now()
                        } else {
                            due
                        }
                    }
                    None => Instant::now(),
                };
                sent.lock().expect("send times")[n] = Some(at);
                let created = connection
                    .post("/api/v1/interactions", &authorization, body)
                    .await;
                if let Err(e) = created {
                    eprintln!("create failed: {e}");
                    return;
                }
                create_latency.lock().expect("latencies").push(at.elapsed());
            }
        }));
    }
    for worker in workers {
        worker.await?;
    }
    let created_in = started.elapsed();
    // Wait (bounded) until every created interaction was offered.
    let created = create_latency.lock().expect("latencies").len();
    while offers.load(Ordering::Relaxed) < created {
        let left = DEADLINE.saturating_sub(started.elapsed());
        if tokio::time::timeout(left, progress.notified())
            .await
            .is_err()
        {
            break;
        }
    }
    let routed_in = started.elapsed();
    let cpu = cpu_before.zip(server.and_then(cpu_ticks));
    let own = own_before.zip(cpu_ticks(std::process::id()));
    let routed = offers.load(Ordering::Relaxed);
    let offered = offered.lock().expect("offer times").clone();
    let sent = sent.lock().expect("send times").clone();
    let mut latency: Vec<Duration> = offered
        .iter()
        .zip(&sent)
        .filter_map(|(offered, sent)| {
            Some(offered.as_ref()?.saturating_duration_since(*sent.as_ref()?))
        })
        .collect();
    latency.sort();
    let mut creates = create_latency.lock().expect("latencies").clone();
    creates.sort();
    println!(
        "created   {created} interactions in {:.2} s = {:.0}/s",
        created_in.as_secs_f64(),
        created as f64 / created_in.as_secs_f64()
    );
    println!(
        "routed    {} offered in {:.2} s = {:.0}/s end to end",
        routed,
        routed_in.as_secs_f64(),
        routed as f64 / routed_in.as_secs_f64()
    );
    println!(
        "create    p50 {:?}  p99 {:?}",
        percentile(&creates, 0.5),
        percentile(&creates, 0.99)
    );
    println!(
        "to offer  p50 {:?}  p99 {:?}  (from sending the create request to the offer frame)",
        percentile(&latency, 0.5),
        percentile(&latency, 0.99)
    );
    for (who, ticks) in [("server", cpu), ("generator", own)] {
        if let Some((before, after)) = ticks {
            let ms = (after - before) as f64 * TICK_MS;
            println!(
                "{who:<9} {ms:.0} ms CPU = {:.0} µs per routed interaction ({:.2} cores)",
                ms * 1000.0 / routed.max(1) as f64,
                ms / 1000.0 / routed_in.as_secs_f64()
            );
        }
    }
    for console in consoles {
        console.abort();
    }
    Ok(())
}

/// Length of the clock ticks `/proc/PID/stat` counts in (USER_HZ, 100 on Linux).
const TICK_MS: f64 = 10.0;

/// User plus system CPU time of process `pid` so far, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses; utime and stime
    // are the 14th and 15th of the line.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let number = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(number(11)? + number(12)?)
}

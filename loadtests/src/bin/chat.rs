//! The website chat load generator: drives a running vacd through its public interfaces only.
//! Creates AGENTS chat agents (10 chats each) for the demo queue "Support EN", keeps their
//! consoles ready and accepting, opens VISITORS chats on the demo widget (each with a first
//! message, so each is routed and joined by an agent), measures the server's memory per idle
//! session, then has the visitors send RATE messages per second for SECONDS and measures the
//! latency from a visitor sending a message to the agent's console receiving it.
//!
//! Prints: concurrent sessions, messages/s delivered, latency p50/p99, server RSS per session.
//! Bounded in count and time. Usage (vacd started by loadtests/chat/run.sh):
//! `chat BASE_URL VACD_PID [VISITORS] [AGENTS] [RATE] [SECONDS]`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use vacd_loadtests::Api;

const DEADLINE: Duration = Duration::from_secs(900);
/// Chats being opened at once.
const OPENING: usize = 200;
const PASSWORD: &str = "chat-load-password";
const FIRST: &str = "Hello, I have a question about my last order and its delivery date.";

fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Creates `count` agents serving Support EN in English, each with 10 chats of capacity.
async fn create_agents(api: &Api, admin: &str, count: usize) -> Result<Vec<String>> {
    let queue = api.id_of("/api/v1/queues?name=Support%20EN", admin).await?;
    let en = api.id_of("/api/v1/skills?name=en", admin).await?;
    let support = api.id_of("/api/v1/skills?name=support", admin).await?;
    let names: Vec<String> = (0..count).map(|n| format!("chatload{n}")).collect();
    let mut pending = FuturesUnordered::new();
    let mut created = 0;
    for name in &names {
        pending.push(async move {
            let user = api
                .call(reqwest::Method::POST, "/api/v1/users", admin, Some(json!({
                    "username": name, "display_name": name, "password": PASSWORD, "role": "agent",
                    "capacity_chats": 10,
                })))
                .await?;
            let user = user["id"].as_i64().context("user id")?;
            for (skill, level) in [(en, 10), (support, 9)] {
                api.call(
                    reqwest::Method::POST,
                    "/api/v1/agent-skills",
                    admin,
                    Some(json!({ "user_id": user, "skill_id": skill, "level": level })),
                )
                .await?;
            }
            api.call(
                reqwest::Method::POST,
                "/api/v1/queue-members",
                admin,
                Some(json!({ "queue_id": queue, "user_id": user })),
            )
            .await?;
            Result::<()>::Ok(())
        });
        if pending.len() >= 16 {
            pending.next().await.context("agent")??;
            created += 1;
        }
    }
    while let Some(done) = pending.next().await {
        done?;
        created += 1;
    }
    drop(pending);
    eprintln!("{created} agents created");
    Ok(names)
}

/// One agent: logs in, goes ready, accepts every offer, records the latency of every load
/// message (`t:<µs since start>`) it receives.
async fn agent(
    api: Arc<Api>,
    name: String,
    start: Instant,
    latencies: Arc<Mutex<Vec<u64>>>,
    ready: Arc<AtomicUsize>,
) -> Result<()> {
    let token = api.login(&name, PASSWORD).await?;
    let ws = vacd_loadtests::connect(&api.ws(&format!("/ws/agent?token={token}"))).await?;
    let (mut sink, mut stream) = ws.split();
    sink.send(Message::Text(
        json!({ "id": "ready", "type": "presence.set", "status": "ready", "mode": "inbound" })
            .to_string()
            .into(),
    ))
    .await?;
    let mut n = 0u64;
    while let Some(message) = stream.next().await {
        let Message::Text(text) = message? else {
            continue;
        };
        let frame: Value = serde_json::from_str(text.as_str())?;
        match frame["type"].as_str() {
            Some("ack") if frame["id"] == "ready" => {
                ready.fetch_add(1, Ordering::Relaxed);
            }
            Some("offer") => {
                n += 1;
                let accept = json!({ "id": format!("a{n}"), "type": "offer.accept", "interaction": frame["interaction"] });
                sink.send(Message::Text(accept.to_string().into())).await?;
            }
            Some("chat.message") => {
                if let Some(sent) = frame["text"]
                    .as_str()
                    .and_then(|t| t.strip_prefix("t:"))
                    .and_then(|t| t.parse::<u64>().ok())
                {
                    let now = start.elapsed().as_micros() as u64;
                    latencies
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(now.saturating_sub(sent));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// One visitor: opens a chat with a first message, reports when an agent joined, then sends a
/// load message for every tick it is given.
async fn visitor(
    api: Arc<Api>,
    start: Instant,
    mut ticks: mpsc::UnboundedReceiver<()>,
    joined: Arc<AtomicUsize>,
    opening: tokio::sync::OwnedSemaphorePermit,
) -> Result<()> {
    let mut opening = Some(opening);
    let ws = vacd_loadtests::connect(&api.ws("/ws/chat")).await?;
    let (mut sink, mut stream) = ws.split();
    let hello = json!({ "type": "chat.start", "tenant": "demo", "widget": "demo-widget", "name": "Load", "language": "en" });
    sink.send(Message::Text(hello.to_string().into())).await?;
    sink.send(Message::Text(
        json!({ "type": "chat.send", "client_id": "first", "text": FIRST })
            .to_string()
            .into(),
    ))
    .await?;
    let mut n = 0u64;
    loop {
        tokio::select! {
            tick = ticks.recv() => {
                let Some(()) = tick else { return Ok(()) };
                n += 1;
                let text = format!("t:{}", start.elapsed().as_micros());
                let frame = json!({ "type": "chat.send", "client_id": format!("m{n}"), "text": text });
                sink.send(Message::Text(frame.to_string().into())).await?;
            }
            message = stream.next() => {
                let Some(message) = message else { return Ok(()) };
                let Message::Text(text) = message? else { continue };
                let frame: Value = serde_json::from_str(text.as_str())?;
                match frame["type"].as_str() {
                    Some("chat.joined") => {
                        joined.fetch_add(1, Ordering::Relaxed);
                        // Joined: the next visitor may start opening.
                        drop(opening.take());
                    }
                    Some("error") => eprintln!("visitor error: {frame}"),
                    _ => {}
                }
            }
        }
    }
}

/// Waits (bounded) until `counter` reaches `target`.
async fn wait_for(counter: &AtomicUsize, target: usize, what: &str, limit: Duration) -> usize {
    let until = Instant::now() + limit;
    while counter.load(Ordering::Relaxed) < target && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reached = counter.load(Ordering::Relaxed);
    eprintln!("{what}: {reached}/{target}");
    reached
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    vacd_loadtests::percentile(sorted, p).map_or(f64::NAN, |us| us as f64 / 1000.0)
}

async fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let pid = args
        .get(2)
        .cloned()
        .context("usage: chat BASE_URL VACD_PID [VISITORS] [AGENTS] [RATE] [SECONDS]")?;
    let arg =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (visitors, agents, rate, seconds) =
        (arg(3, 10_000), arg(4, 1_000), arg(5, 5_000), arg(6, 20));
    let api = Arc::new(Api::new(&base));
    let admin = api.login("ada", "demo-password").await?;
    let names = create_agents(&api, &admin, agents).await?;

    let start = Instant::now();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let ready = Arc::new(AtomicUsize::new(0));
    for name in names {
        let (api, latencies, ready) = (api.clone(), latencies.clone(), ready.clone());
        tokio::spawn(async move {
            if let Err(e) = agent(api, name, start, latencies, ready).await {
                eprintln!("agent: {e:#}");
            }
        });
    }
    wait_for(&ready, agents, "agents ready", Duration::from_secs(300)).await;
    let rss_before = rss_kib(&pid);

    // Sessions open in two halves; the memory per session is the growth over the second half,
    // so that the allocator's warm-up with the first half does not count.
    let joined = Arc::new(AtomicUsize::new(0));
    let mut ticks = Vec::with_capacity(visitors);
    let opened = Instant::now();
    let half = visitors / 2;
    let opening = Arc::new(tokio::sync::Semaphore::new(OPENING));
    let mut rss_half = 0;
    for n in 0..visitors {
        if n == half {
            wait_for(&joined, half, "first half joined", Duration::from_secs(300)).await;
            rss_half = rss_kib(&pid);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        ticks.push(tx);
        let (api, joined) = (api.clone(), joined.clone());
        // At most OPENING chats are being opened (connected, first message, not yet joined by
        // an agent) at a time, so the opening rate follows what the server sustains.
        let permit = opening.clone().acquire_owned().await?;
        tokio::spawn(async move {
            if let Err(e) = visitor(api, start, rx, joined, permit).await {
                eprintln!("visitor: {e:#}");
            }
        });
    }
    let connected = wait_for(
        &joined,
        visitors,
        "chats joined by an agent",
        Duration::from_secs(300),
    )
    .await;
    let open_secs = opened.elapsed().as_secs_f64();
    let rss_idle = rss_kib(&pid);

    latencies
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();
    let per_tick = (rate / 100).max(1);
    let total = per_tick * 100 * seconds;
    let sending = Instant::now();
    let mut interval = tokio::time::interval(Duration::from_millis(10));
    let mut next = 0usize;
    for _ in 0..(seconds * 100) {
        interval.tick().await;
        for _ in 0..per_tick {
            let _ = ticks[next % ticks.len()].send(());
            next += 1;
        }
    }
    let sent_secs = sending.elapsed().as_secs_f64();
    let until = Instant::now() + Duration::from_secs(15);
    while latencies
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .len()
        < total
        && Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivered_secs = sending.elapsed().as_secs_f64();
    let mut got = latencies
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    got.sort_unstable();

    println!("chat load: {visitors} visitors, {agents} agents (10 chats each)");
    println!(
        "concurrent chat sessions (joined by an agent): {connected} (opened in {open_secs:.1} s)"
    );
    println!(
        "server memory: {rss_before} KiB before the chats, {rss_half} KiB with half of them, \
         {rss_idle} KiB with all idle: {:.1} KiB per session (growth over the second half)",
        rss_idle.saturating_sub(rss_half) as f64 / (visitors - half).max(1) as f64
    );
    println!(
        "messages: {total} sent in {sent_secs:.1} s ({:.0}/s), {} delivered to agents ({:.0}/s over {delivered_secs:.1} s)",
        total as f64 / sent_secs,
        got.len(),
        got.len() as f64 / delivered_secs,
    );
    println!(
        "latency visitor → agent console: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&got, 0.50),
        percentile(&got, 0.99),
        percentile(&got, 1.0)
    );
    println!("server RSS after the messages: {} KiB", rss_kib(&pid));
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    tokio::time::timeout(DEADLINE, run())
        .await
        .context("the chat load test hit its deadline")?
}

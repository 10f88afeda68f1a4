//! Supervisor actions end to end over real HTTP and websockets, on SQLite and PostgreSQL:
//! moving a waiting interaction to another queue or straight to an agent (the feed lists what
//! waits, the agent's console gets the offer, the event log and today's figures follow the
//! move), and every refusal with its code.

mod common;

use common::console::Console;
use common::feed::{queue_of, Feed};
use common::{assert_error, Db, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The demo tenant with an admin and its supervisor signed in.
struct Floor {
    s: TestServer,
    admin: String,
    sam: String,
}

impl Floor {
    async fn new(db: Db) -> Floor {
        let s = TestServer::start(db).await;
        let admin = s.demo_login("ada").await;
        let sam = s.demo_login("sam").await;
        Floor { s, admin, sam }
    }

    async fn queue(&self, name: &str) -> i64 {
        self.s
            .create(
                "/api/v1/queues",
                &self.admin,
                json!({ "name": name, "wrapup_seconds": 0 }),
            )
            .await
    }

    /// A new agent serving `queues`, its console connected and ready; returns its id.
    async fn agent(&self, username: &str, queues: &[i64]) -> (i64, Console) {
        let (user, token) = self.s.demo_agent(&self.admin, username, queues).await;
        let mut console = Console::connect(&self.s, &token).await;
        console.ready().await;
        (user, console)
    }

    async fn email(&self, queue: i64) -> i64 {
        self.s
            .create(
                "/api/v1/interactions",
                &self.admin,
                json!({ "channel": "email", "queue_id": queue, "subject": "Hello" }),
            )
            .await
    }

    async fn move_to(&self, token: &str, interaction: i64, body: Value) -> (StatusCode, Value) {
        self.s
            .call(
                Method::POST,
                &format!("/api/v1/interactions/{interaction}/move"),
                Some(token),
                Some(body),
            )
            .await
    }
}

fn lists(frame: &Value, queue: i64, interaction: i64) -> bool {
    queue_of(frame, queue).is_some_and(|q| {
        q["waiting_interactions"]
            .as_array()
            .is_some_and(|list| list.iter().any(|w| w["interaction"] == interaction))
    })
}

/// An email waits in a queue nobody serves; the feed lists it; the supervisor moves it to a
/// served queue, whose agent is offered it at once; a second one goes straight to an agent who
/// serves no queue. The event log has both moves, and today's figures count the moved wait in
/// its new queue.
async fn a_supervisor_moves_waiting_interactions(db: Db) {
    let f = Floor::new(db).await;
    let unserved = f.queue("Unserved").await;
    let served = f.queue("Served").await;
    let (_, mut member) = f.agent("member", &[served]).await;
    let (direct_id, mut direct) = f.agent("direct", &[]).await;
    let mut feed = Feed::connect(&f.s, &f.sam).await;

    let first = f.email(unserved).await;
    let frame = feed
        .until("the waiting email", |fr| lists(fr, unserved, first))
        .await;
    let listed = &queue_of(&frame, unserved).expect("queue")["waiting_interactions"][0];
    assert_eq!(listed["channel"], "email", "{listed}");
    assert_eq!(listed["position"], 1, "{listed}");

    let (status, body) = f.move_to(&f.sam, first, json!({ "queue": served })).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    member
        .expect_where("offer", |o| {
            o["interaction"] == first && o["queue"] == served
        })
        .await;

    let second = f.email(unserved).await;
    feed.until("the second email", |fr| lists(fr, unserved, second))
        .await;
    let (status, body) = f
        .move_to(&f.sam, second, json!({ "agent": direct_id }))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    direct
        .expect_where("offer", |o| o["interaction"] == second)
        .await;

    // Today's figures come from the event log: the first wait moved to the served queue.
    feed.until("the move in today's figures", |fr| {
        queue_of(fr, served).is_some_and(|q| q["today"]["offered"] == 1)
            && queue_of(fr, unserved).is_some_and(|q| q["today"]["offered"] == 1)
    })
    .await;
    for (interaction, target) in [
        (first, json!({ "target": "queue", "queue": served })),
        (second, json!({ "target": "agent", "agent": direct_id })),
    ] {
        let (_, page) =
            f.s.get(
                &format!("/api/v1/events?kind=routing.moved&interaction_id={interaction}"),
                &f.sam,
            )
            .await;
        let payload = page["items"][0]["payload"].clone();
        let payload: Value = match payload {
            Value::String(text) => serde_json::from_str(&text).expect("JSON payload"),
            other => other,
        };
        assert_eq!(payload["to"], target, "{page}");
        assert_eq!(payload["from_queue"], unserved, "{page}");
    }
    f.s.stop().await;
}

/// Every bad move gets a clear error and changes nothing.
async fn bad_moves_are_refused(db: Db) {
    let f = Floor::new(db).await;
    let front = f.queue("Front").await;
    let back = f.queue("Back").await;
    let (agent_id, mut agent) = f.agent("busy-agent", &[front]).await;
    let connected = f.email(front).await;
    agent
        .expect_where("offer", |o| o["interaction"] == connected)
        .await;
    agent
        .ok(json!({ "type": "offer.accept", "interaction": connected }))
        .await;
    agent
        .ok(json!({ "type": "presence.set", "status": "not_ready", "reason": "lunch" }))
        .await;
    let waiting = f.email(front).await;

    let cases = [
        (
            connected,
            json!({ "queue": back }),
            StatusCode::CONFLICT,
            "not_movable",
        ),
        (
            waiting,
            json!({ "queue": front }),
            StatusCode::CONFLICT,
            "already_in_queue",
        ),
        (
            waiting,
            json!({ "agent": agent_id }),
            StatusCode::CONFLICT,
            "agent_unavailable",
        ),
        (
            waiting,
            json!({ "queue": 999_999 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_queue",
        ),
        (
            waiting,
            json!({ "agent": 999_999 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_agent",
        ),
        (
            waiting,
            json!({ "queue": back, "agent": agent_id }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_target",
        ),
        (
            waiting,
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_target",
        ),
        (
            waiting,
            json!({ "queue": "back" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            999_999,
            json!({ "queue": back }),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (interaction, body, status, code) in cases {
        let response = f.move_to(&f.sam, interaction, body.clone()).await;
        assert_eq!(response.0, status, "{body}: {}", response.1);
        assert_eq!(response.1["error"]["code"], code, "{body}: {}", response.1);
    }
    let malformed =
        f.s.http
            .post(format!("{}/api/v1/interactions/{waiting}/move", f.s.base))
            .bearer_auth(&f.sam)
            .header("content-type", "application/json")
            .body("{\"queue\":")
            .send()
            .await
            .expect("request");
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert_error(
        &f.move_to(&f.sam, 0, json!({ "queue": back })).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    // An agent may not move work; another tenant's admin does not find this tenant's.
    let bruno = f.s.demo_login("bruno").await;
    assert_error(
        &f.move_to(&bruno, waiting, json!({ "queue": back })).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let (_, other) = f.s.new_tenant("elsewhere").await;
    assert_error(
        &f.move_to(&other, waiting, json!({ "queue": back })).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // Still waiting where it was.
    let mut feed = Feed::connect(&f.s, &f.sam).await;
    feed.until("the email still waiting in front", |fr| {
        lists(fr, front, waiting)
    })
    .await;
    f.s.stop().await;
}

/// A waiting interaction's estimated wait: position × the queue's handle time (3 minutes before
/// anything was handled) ÷ its members taking inbound work; none while nobody serves the queue.
async fn the_feed_estimates_each_wait(db: Db) {
    let f = Floor::new(db).await;
    let unserved = f.queue("Nobody here").await;
    let served = f.queue("Waiting room").await;
    // Ready, but without French: the French email waits in the served queue.
    let (_, _member) = f.agent("member", &[served]).await;
    let french = |queue: i64| {
        f.s.create(
            "/api/v1/interactions",
            &f.admin,
            json!({ "channel": "email", "queue_id": queue, "language": "fr", "subject": "Bonjour" }),
        )
    };
    let (waits, alone) = (french(served).await, french(unserved).await);
    let mut feed = Feed::connect(&f.s, &f.sam).await;
    let frame = feed
        .until("both emails", |fr| {
            lists(fr, served, waits) && lists(fr, unserved, alone)
        })
        .await;
    let listed = |queue| queue_of(&frame, queue).expect("queue")["waiting_interactions"][0].clone();
    let waiting = listed(served);
    assert_eq!(waiting["position"], 1, "{waiting}");
    assert_eq!(waiting["estimated_wait_ms"], 180_000, "{waiting}");
    let unserved = listed(unserved);
    assert_eq!(
        unserved.get("estimated_wait_ms"),
        Some(&Value::Null),
        "{unserved}"
    );
    f.s.stop().await;
}

/// vacd shutting down closes the supervisors' feeds with "going away" (the wallboard tries
/// again), rather than leaving them open on figures that no longer change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_the_feeds() {
    let f = Floor::new(Db::Sqlite).await;
    let mut feed = Feed::connect(&f.s, &f.sam).await;
    feed.until("a first frame", |_| true).await;
    let stopping = tokio::spawn(f.s.stop());
    assert_eq!(feed.closed().await, Some(1001));
    stopping.await.expect("shut down");
}

on_both_backends!(
    a_supervisor_moves_waiting_interactions,
    bad_moves_are_refused,
    the_feed_estimates_each_wait
);

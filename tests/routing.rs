//! Routing end to end over real websockets and HTTP, on SQLite and PostgreSQL: language-based
//! routing, not-ready agents, reject and offer timeout re-routing, wrap-up, transfer, live skill
//! changes, routing settings (missed-offer policy, blending) changed live, console takeover, bad
//! frames, screen pop, and waiting interactions surviving a restart in their order.

mod common;

use common::console::Console;
use common::feed::{agent_of, queue_of, Feed};
use common::{assert_error, Db, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Sets up routing scenarios in the demo tenant through the admin API.
struct Desk {
    s: TestServer,
    admin: String,
}

impl Desk {
    async fn new(db: Db) -> Desk {
        let s = TestServer::start(db).await;
        let admin = s.demo_login("ada").await;
        Desk { s, admin }
    }

    async fn skill(&self, name: &str) -> i64 {
        let (_, page) = self
            .s
            .get(&format!("/api/v1/skills?name={name}"), &self.admin)
            .await;
        match page["items"][0]["id"].as_i64() {
            Some(id) => id,
            None => {
                self.s
                    .create(
                        "/api/v1/skills",
                        &self.admin,
                        json!({ "name": name, "kind": "language" }),
                    )
                    .await
            }
        }
    }

    async fn queue(&self, name: &str, settings: Value) -> i64 {
        let mut body = settings;
        body["name"] = json!(name);
        self.s.create("/api/v1/queues", &self.admin, body).await
    }

    /// A new agent with these language skills serving these queues; returns its id and token.
    async fn agent(&self, username: &str, skills: &[(&str, i64)], queues: &[i64]) -> (i64, String) {
        let (user, token) = self.s.demo_agent(&self.admin, username, queues).await;
        for (skill, level) in skills {
            let skill = self.skill(skill).await;
            self.s
                .create(
                    "/api/v1/agent-skills",
                    &self.admin,
                    json!({ "user_id": user, "skill_id": skill, "level": level }),
                )
                .await;
        }
        (user, token)
    }

    /// Changes the demo tenant's settings through `PATCH /api/v1/tenants/{id}`.
    async fn settings(&self, change: Value) -> Value {
        let tenant = self
            .s
            .store()
            .tenant_by_name("demo")
            .await
            .expect("tenant read")
            .expect("the demo tenant");
        let (status, body) = self
            .s
            .patch(
                &format!("/api/v1/tenants/{}", tenant.id),
                &self.admin,
                change.clone(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{change}: {body}");
        body
    }

    async fn console(&self, token: &str) -> Console {
        Console::connect(&self.s, token).await
    }

    async fn interaction(&self, queue: i64, language: &str) -> i64 {
        self.s
            .create("/api/v1/interactions", &self.admin, json!({ "channel": "email", "queue_id": queue, "language": language, "subject": "Hello" }))
            .await
    }
}

/// The row of `queue` in a queue report's `page`.
fn queue_row(page: &Value, queue: i64) -> Value {
    page["items"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["queue"] == queue))
        .cloned()
        .unwrap_or_else(|| panic!("a row for queue {queue}: {page}"))
}

fn offer_of(id: i64) -> impl Fn(&Value) -> bool {
    move |frame| frame["interaction"] == id
}

fn offers(frames: &[Value]) -> Vec<i64> {
    frames
        .iter()
        .filter(|f| f["type"] == "offer")
        .filter_map(|f| f["interaction"].as_i64())
        .collect()
}

async fn agents_get_their_languages_and_not_ready_gets_nothing(db: Db) {
    let d = Desk::new(db).await;
    let queue = d.queue("Languages", json!({})).await;
    let (_, ella) = d.agent("ella", &[("en", 10)], &[queue]).await;
    let (_, dirk) = d.agent("dirk", &[("de", 10)], &[queue]).await;
    let (_, nora) = d.agent("nora", &[("en", 10), ("de", 10)], &[queue]).await;
    let mut ella = d.console(&ella).await;
    let mut dirk = d.console(&dirk).await;
    let mut nora = d.console(&nora).await;
    nora.ok(json!({ "type": "presence.set", "status": "not_ready", "reason": "break" }))
        .await;
    ella.ready().await;
    dirk.ready().await;

    let en = [
        d.interaction(queue, "en").await,
        d.interaction(queue, "en").await,
    ];
    let de = [
        d.interaction(queue, "de").await,
        d.interaction(queue, "de").await,
    ];
    for id in en {
        ella.expect_where("offer", offer_of(id)).await;
    }
    for id in de {
        dirk.expect_where("offer", offer_of(id)).await;
    }
    // A barrier: anything routed to nora before now arrives before this reply.
    nora.ok(json!({ "type": "presence.set", "status": "not_ready", "reason": "still on break" }))
        .await;
    assert!(
        offers(&nora.seen).is_empty(),
        "a not-ready agent got offers: {:?}",
        nora.seen
    );
    assert!(
        offers(&ella.seen).iter().all(|id| en.contains(id)),
        "{:?}",
        ella.seen
    );
    assert!(
        offers(&dirk.seen).iter().all(|id| de.contains(id)),
        "{:?}",
        dirk.seen
    );
    d.s.stop().await;
}

async fn reject_goes_to_the_next_agent(db: Db) {
    let d = Desk::new(db).await;
    let queue = d.queue("Reject", json!({})).await;
    let (_, first) = d.agent("first", &[("en", 5)], &[queue]).await;
    let (_, second) = d.agent("second", &[("en", 5)], &[queue]).await;
    let mut first = d.console(&first).await;
    let mut second = d.console(&second).await;
    first.ready().await;
    second.ready().await;
    let id = d.interaction(queue, "en").await;
    // Longest idle: the agent ready first is offered first.
    first.expect_where("offer", offer_of(id)).await;
    first
        .ok(json!({ "type": "offer.reject", "interaction": id }))
        .await;
    second.expect_where("offer", offer_of(id)).await;
    let revoked = first.expect("offer.revoked").await;
    assert_eq!(
        (revoked["interaction"].as_i64(), revoked["reason"].as_str()),
        (Some(id), Some("rejected"))
    );
    first
        .expect_where("presence.changed", |f| {
            f["to"] == json!({ "presence": "not_ready", "reason": "missed" })
        })
        .await;
    second
        .ok(json!({ "type": "offer.accept", "interaction": id }))
        .await;
    second
        .expect_where("interaction.connected", offer_of(id))
        .await;
    d.s.stop().await;
}

async fn offer_timeout_reroutes_and_marks_missed(db: Db) {
    let d = Desk::new(db).await;
    let queue = d
        .queue("Timeout", json!({ "offer_timeout_seconds": 1 }))
        .await;
    let (_, sleepy) = d.agent("sleepy", &[("en", 5)], &[queue]).await;
    let (_, awake) = d.agent("awake", &[("en", 5)], &[queue]).await;
    let mut sleepy = d.console(&sleepy).await;
    let mut awake = d.console(&awake).await;
    sleepy.ready().await;
    awake.ready().await;
    let id = d.interaction(queue, "en").await;
    let offer = sleepy.expect_where("offer", offer_of(id)).await;
    assert_eq!(offer["timeout_ms"], 1000);
    let revoked = sleepy.expect("offer.revoked").await;
    assert_eq!(
        (revoked["interaction"].as_i64(), revoked["reason"].as_str()),
        (Some(id), Some("timed_out"))
    );
    sleepy
        .expect_where("presence.changed", |f| {
            f["to"] == json!({ "presence": "not_ready", "reason": "missed" })
        })
        .await;
    awake.expect_where("offer", offer_of(id)).await;
    d.s.stop().await;
}

/// What the agent became each time it stopped being reserved (an offer left it).
fn presence_after_offers(frames: &[Value]) -> Vec<Value> {
    frames
        .iter()
        .filter(|f| f["type"] == "presence.changed" && f["from"]["presence"] == "reserved")
        .map(|f| f["to"].clone())
        .collect()
}

/// The missed-offer policy is the tenant's and changes live: with `stay_ready` an agent that
/// rejects stays ready (and is offered the next interaction); with `not_ready` and a reason of
/// the tenant's, it goes not ready with that reason.
async fn missed_offer_policy_changed_live(db: Db) {
    let d = Desk::new(db).await;
    let shared = d.queue("Shared", json!({})).await;
    let own = d.queue("Own", json!({})).await;
    let (_, picky) = d.agent("picky", &[("en", 5)], &[shared, own]).await;
    let (_, other) = d.agent("other", &[("en", 5)], &[shared]).await;
    let mut picky = d.console(&picky).await;
    let mut other = d.console(&other).await;
    picky.ready().await;
    other.ready().await;
    let settings = d.settings(json!({ "missed_offer": "stay_ready" })).await;
    assert_eq!(settings["missed_offer"], "stay_ready");

    let id = d.interaction(shared, "en").await;
    picky.expect_where("offer", offer_of(id)).await;
    // The events of the reject come before its ack.
    let frames = picky
        .ok(json!({ "type": "offer.reject", "interaction": id }))
        .await;
    assert_eq!(
        presence_after_offers(&frames),
        [json!({ "presence": "ready", "mode": "inbound" })],
        "{frames:?}"
    );
    other.expect_where("offer", offer_of(id)).await;
    let next = d.interaction(own, "en").await;
    picky.expect_where("offer", offer_of(next)).await;

    let settings = d
        .settings(json!({ "missed_offer": "not_ready", "missed_offer_reason": "break" }))
        .await;
    assert_eq!(settings["missed_offer_reason"], "break");
    let frames = picky
        .ok(json!({ "type": "offer.reject", "interaction": next }))
        .await;
    assert_eq!(
        presence_after_offers(&frames),
        [json!({ "presence": "not_ready", "reason": "break" })],
        "{frames:?}"
    );
    d.s.stop().await;
}

/// Blending is the tenant's, overridden per agent, both live: with the tenant's `exclusive` an
/// agent holding a chat is offered no email (the default, a call blocks the rest, would offer
/// it); set to `independent` for that agent, it is offered the waiting email at once.
async fn blending_changed_live(db: Db) {
    let d = Desk::new(db).await;
    let queue = d.queue("Blended", json!({})).await;
    let (agent_id, token) = d.agent("blender", &[("en", 5)], &[queue]).await;
    let mut console = d.console(&token).await;
    console.ready().await;
    let settings = d.settings(json!({ "blending": "exclusive" })).await;
    assert_eq!(settings["blending"], "exclusive");

    let chat =
        d.s.create(
            "/api/v1/interactions",
            &d.admin,
            json!({ "channel": "chat", "queue_id": queue, "language": "en" }),
        )
        .await;
    console.expect_where("offer", offer_of(chat)).await;
    console
        .ok(json!({ "type": "offer.accept", "interaction": chat }))
        .await;
    let email = d.interaction(queue, "en").await;
    // A barrier: an offer of the email would come before this reply.
    let frames = console.ready().await;
    assert!(offers(&frames).is_empty(), "exclusive: {frames:?}");

    let (status, user) =
        d.s.patch(
            &format!("/api/v1/users/{agent_id}"),
            &d.admin,
            json!({ "blending": "independent" }),
        )
        .await;
    assert_eq!(
        (status, user["blending"].as_str()),
        (StatusCode::OK, Some("independent")),
        "{user}"
    );
    console.expect_where("offer", offer_of(email)).await;
    d.s.stop().await;
}

/// The tenant's timer is armed for the earliest offer deadline; when that offer is answered, the
/// timer fires for nothing and must still arm the later deadline of another offer.
async fn a_later_offer_deadline_fires_after_the_earlier_offer_was_answered(db: Db) {
    let d = Desk::new(db).await;
    let short = d
        .queue("Short", json!({ "offer_timeout_seconds": 1 }))
        .await;
    let long = d.queue("Long", json!({ "offer_timeout_seconds": 2 })).await;
    let (_, quick) = d.agent("quick", &[("en", 5)], &[short]).await;
    let (_, slow) = d.agent("slow", &[("en", 5)], &[long]).await;
    let mut quick = d.console(&quick).await;
    let mut slow = d.console(&slow).await;
    quick.ready().await;
    slow.ready().await;
    let answered = d.interaction(short, "en").await;
    quick.expect_where("offer", offer_of(answered)).await;
    let missed = d.interaction(long, "en").await;
    slow.expect_where("offer", offer_of(missed)).await;
    quick
        .ok(json!({ "type": "offer.accept", "interaction": answered }))
        .await;
    let revoked = slow.expect("offer.revoked").await;
    assert_eq!(
        (revoked["interaction"].as_i64(), revoked["reason"].as_str()),
        (Some(missed), Some("timed_out"))
    );
    d.s.stop().await;
}

async fn wrap_up_timer_returns_the_agent_to_ready(db: Db) {
    let d = Desk::new(db).await;
    let queue = d.queue("Wrap", json!({ "wrapup_seconds": 1 })).await;
    let (_, agent) = d.agent("wrapper", &[("en", 5)], &[queue]).await;
    let mut agent = d.console(&agent).await;
    agent.ready().await;
    let id = d.interaction(queue, "en").await;
    agent.expect_where("offer", offer_of(id)).await;
    agent
        .ok(json!({ "type": "offer.accept", "interaction": id }))
        .await;
    agent
        .expect_where("interaction.connected", offer_of(id))
        .await;
    agent
        .ok(json!({ "type": "interaction.end", "interaction": id }))
        .await;
    let ended = agent.expect_where("interaction.ended", offer_of(id)).await;
    assert_eq!(ended["wrap_up_ms"], 1000);
    agent
        .expect_where("presence.changed", |f| f["to"]["presence"] == "wrap_up")
        .await;
    agent.expect_where("wrapup.ended", offer_of(id)).await;
    agent
        .expect_where("presence.changed", |f| {
            f["to"] == json!({ "presence": "ready", "mode": "inbound" })
        })
        .await;
    d.s.stop().await;
}

async fn transfer_to_queue_and_agent(db: Db) {
    let d = Desk::new(db).await;
    let front = d.queue("Front", json!({ "wrapup_seconds": 0 })).await;
    let back = d.queue("Back", json!({})).await;
    let (_, a) = d.agent("front-agent", &[("en", 5)], &[front]).await;
    let (b_id, b) = d.agent("back-agent", &[("en", 5)], &[back]).await;
    let mut a = d.console(&a).await;
    let mut b = d.console(&b).await;
    a.ready().await;
    b.ready().await;
    let id = d.interaction(front, "en").await;
    a.expect_where("offer", offer_of(id)).await;
    a.ok(json!({ "type": "offer.accept", "interaction": id }))
        .await;
    a.ok(json!({ "type": "interaction.transfer", "interaction": id, "to": { "target": "queue", "queue": back } })).await;
    a.expect_where("interaction.ended", offer_of(id)).await;
    b.expect_where("offer", offer_of(id)).await;
    b.ok(json!({ "type": "offer.accept", "interaction": id }))
        .await;
    // Only the connected agent may hand it on; a's transfer of b's interaction is refused.
    let refused = a.command(json!({ "type": "interaction.transfer", "interaction": id, "to": { "target": "agent", "agent": b_id } })).await;
    assert_eq!(
        refused.last().map(|f| f["code"].clone()),
        Some(json!("unknown_interaction"))
    );
    d.s.stop().await;
}

async fn a_skill_changed_live_changes_routing(db: Db) {
    let d = Desk::new(db).await;
    let queue = d.queue("Live", json!({})).await;
    let (agent_id, token) = d.agent("learner", &[("en", 8)], &[queue]).await;
    let mut console = d.console(&token).await;
    console.ready().await;
    let id = d.interaction(queue, "fr").await;
    assert!(offers(&console.ready().await).is_empty(), "no French yet");
    let fr = d.skill("fr").await;
    d.s.create(
        "/api/v1/agent-skills",
        &d.admin,
        json!({ "user_id": agent_id, "skill_id": fr, "level": 6 }),
    )
    .await;
    console.expect_where("offer", offer_of(id)).await;
    d.s.stop().await;
}

/// Queue membership changed through the API moves offers at once: an agent made a member is
/// offered what waits there; removed again, it is offered nothing more from that queue.
async fn a_membership_changed_live_changes_routing(db: Db) {
    let d = Desk::new(db).await;
    let queue = d.queue("Assigned", json!({})).await;
    let (agent_id, token) = d.agent("assignee", &[("en", 8)], &[]).await;
    let mut console = d.console(&token).await;
    console.ready().await;
    let first = d.interaction(queue, "en").await;
    assert!(
        offers(&console.ready().await).is_empty(),
        "not a member yet"
    );
    let membership =
        d.s.create(
            "/api/v1/queue-members",
            &d.admin,
            json!({ "queue_id": queue, "user_id": agent_id }),
        )
        .await;
    console.handle(first).await;
    let (status, body) =
        d.s.delete(&format!("/api/v1/queue-members/{membership}"), &d.admin)
            .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let second = d.interaction(queue, "en").await;
    let frames = console
        .ok(json!({ "type": "wrapup.done", "interaction": first }))
        .await;
    assert!(
        !offers(&frames).contains(&second) && offers(&console.ready().await).is_empty(),
        "no longer a member: {frames:?}"
    );
    d.s.stop().await;
}

/// An agent taken off a queue live gives back the offer it holds from that queue at once: the
/// console is told, and accepting it is refused.
async fn a_membership_removed_live_takes_back_its_offer(db: Db) {
    let d = Desk::new(db).await;
    let queue = d.queue("Withdrawn", json!({})).await;
    let (agent_id, token) = d.agent("withdrawn", &[("en", 5)], &[]).await;
    let mut console = d.console(&token).await;
    console.ready().await;
    let membership =
        d.s.create(
            "/api/v1/queue-members",
            &d.admin,
            json!({ "queue_id": queue, "user_id": agent_id }),
        )
        .await;
    let waiting = d.interaction(queue, "en").await;
    console.expect_where("offer", offer_of(waiting)).await;
    let (status, body) =
        d.s.delete(&format!("/api/v1/queue-members/{membership}"), &d.admin)
            .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let revoked = console
        .expect_where("offer.revoked", offer_of(waiting))
        .await;
    assert_eq!(revoked["reason"], "agent_unavailable", "{revoked}");
    let frames = console
        .command(json!({ "type": "offer.accept", "interaction": waiting }))
        .await;
    let reply = frames.last().expect("reply");
    assert_eq!(reply["code"], "offer_not_pending", "{reply}");
    d.s.stop().await;
}

/// Many changes at once (an import) share reloads, and every one of them is in effect when
/// its request is answered: the agent made a member of twelve queues concurrently hears the
/// figures of each.
async fn concurrent_changes_all_take_effect(db: Db) {
    let d = Desk::new(db).await;
    let mut queues = Vec::new();
    for n in 0..12 {
        queues.push(d.queue(&format!("Import {n}"), json!({})).await);
    }
    let (agent_id, token) = d.agent("imported", &[("en", 5)], &[]).await;
    let mut console = d.console(&token).await;
    let memberships = queues.iter().map(|queue| {
        d.s.create(
            "/api/v1/queue-members",
            &d.admin,
            json!({ "queue_id": queue, "user_id": agent_id }),
        )
    });
    futures_util::future::join_all(memberships).await;
    for queue in &queues {
        d.interaction(*queue, "en").await;
    }
    let mut heard = std::collections::BTreeSet::new();
    while heard.len() < queues.len() {
        let stats = console
            .expect_where("queue.stats", |f| f["waiting"] == 1)
            .await;
        heard.extend(stats["queue"].as_i64().filter(|q| queues.contains(q)));
    }
    d.s.stop().await;
}

async fn queue_settings_changed_live(db: Db) {
    let d = Desk::new(db).await;
    let queue = d
        .queue("Settings", json!({ "offer_timeout_seconds": 600 }))
        .await;
    let (_, token) = d.agent("tuned", &[("en", 5)], &[queue]).await;
    let mut console = d.console(&token).await;
    console.ready().await;
    let (status, _) =
        d.s.patch(
            &format!("/api/v1/queues/{queue}"),
            &d.admin,
            json!({ "offer_timeout_seconds": 7 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let id = d.interaction(queue, "en").await;
    let offer = console.expect_where("offer", offer_of(id)).await;
    assert_eq!(offer["timeout_ms"], 7000);
    d.s.stop().await;
}

async fn escalation_overflows_to_another_queue(db: Db) {
    let d = Desk::new(db).await;
    let main = d.queue("Main", json!({ "sla_seconds": 1 })).await;
    let overflow = d.queue("Overflow", json!({})).await;
    d.s.create(
        "/api/v1/queue-escalations",
        &d.admin,
        json!({ "queue_id": main, "after_seconds": 1, "action": "add_overflow_queue", "overflow_queue_id": overflow }),
    )
    .await;
    let (_, token) = d.agent("backup", &[("en", 5)], &[overflow]).await;
    let mut console = d.console(&token).await;
    console.ready().await;
    let id = d.interaction(main, "en").await;
    // Nobody serves Main; after a second the step lets Overflow's agent take it.
    let offer = console.expect_where("offer", offer_of(id)).await;
    assert_eq!(offer["queue"], main);
    let s = d.s.restart().await;
    let admin = s.demo_login("ada").await;
    for kind in ["routing.escalated", "routing.sla_breached"] {
        let (_, events) = s
            .get(
                &format!("/api/v1/events?kind={kind}&interaction_id={id}"),
                &admin,
            )
            .await;
        assert_eq!(events["total"], 1, "{kind}: {events}");
    }
    s.stop().await;
}

async fn replies_follow_their_events(db: Db) {
    let d = Desk::new(db).await;
    let queue = d.queue("Barrier", json!({})).await;
    let (_, token) = d.agent("ordered", &[("en", 5)], &[queue]).await;
    let mut console = d.console(&token).await;
    for round in 0..20 {
        let (status, presence) = if round % 2 == 0 {
            (
                json!({ "type": "presence.set", "status": "ready", "mode": "inbound" }),
                json!({ "presence": "ready", "mode": "inbound" }),
            )
        } else {
            (
                json!({ "type": "presence.set", "status": "not_ready", "reason": "break" }),
                json!({ "presence": "not_ready", "reason": "break" }),
            )
        };
        let before_ack = console.ok(status).await;
        assert!(
            before_ack
                .iter()
                .any(|f| f["type"] == "presence.changed" && f["to"] == presence),
            "round {round}: the presence change must arrive before the ack: {before_ack:?}"
        );
    }
    d.s.stop().await;
}

/// Accept, end and finish wrap-up sent in one write: carried out in order, each reply after the
/// events it caused, and the agent is free for the next offer.
async fn commands_sent_together_are_answered_in_order(db: Db) {
    let d = Desk::new(db).await;
    let queue = d.queue("Together", json!({ "wrapup_seconds": 600 })).await;
    let (_, token) = d.agent("quick", &[("en", 5)], &[queue]).await;
    let mut console = d.console(&token).await;
    console.ready().await;
    let first = d.interaction(queue, "en").await;
    console.expect_where("offer", offer_of(first)).await;
    let (ids, frames) = console
        .together(&[
            json!({ "type": "offer.accept", "interaction": first }),
            json!({ "type": "interaction.end", "interaction": first }),
            json!({ "type": "wrapup.done", "interaction": first }),
        ])
        .await;
    let replies: Vec<(&str, &str)> = frames
        .iter()
        .filter(|f| f["type"] == "ack" || f["type"] == "error")
        .map(|f| {
            (
                f["type"].as_str().unwrap_or_default(),
                f["id"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    let expected: Vec<(&str, &str)> = ids.iter().map(|id| ("ack", id.as_str())).collect();
    assert_eq!(replies, expected, "acks in the order sent: {frames:?}");
    let at = |matches: &dyn Fn(&Value) -> bool| frames.iter().position(matches);
    let reply_to = |n: usize| at(&|f| f["type"] == "ack" && f["id"] == ids[n].as_str());
    let connected = at(&|f| f["type"] == "interaction.connected");
    let ended = at(&|f| f["type"] == "interaction.ended");
    assert!(connected.is_some() && connected < reply_to(0), "{frames:?}");
    assert!(ended.is_some() && ended < reply_to(1), "{frames:?}");
    // More than a console may have unanswered at once: every one answered, in order.
    let flood: Vec<Value> = (0..150)
        .map(|n| match n % 2 {
            0 => json!({ "type": "presence.set", "status": "not_ready", "reason": "break" }),
            _ => json!({ "type": "presence.set", "status": "ready", "mode": "inbound" }),
        })
        .collect();
    let (ids, frames) = console.together(&flood).await;
    let acks: Vec<&str> = frames
        .iter()
        .filter(|f| f["type"] == "ack")
        .map(|f| f["id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(acks, ids.iter().map(String::as_str).collect::<Vec<_>>());
    let second = d.interaction(queue, "en").await;
    console.expect_where("offer", offer_of(second)).await;
    d.s.stop().await;
}

async fn a_second_console_takes_over(db: Db) {
    let d = Desk::new(db).await;
    let queue = d.queue("Takeover", json!({})).await;
    let (_, token) = d.agent("twice", &[("en", 5)], &[queue]).await;
    let mut old = d.console(&token).await;
    old.ready().await;
    let mut new = d.console(&token).await;
    old.expect("session.replaced").await;
    while old.next().await.is_some() {} // and then it is closed
                                        // The agent stayed ready across the takeover and the new console gets the work.
    let id = d.interaction(queue, "en").await;
    new.expect_where("offer", offer_of(id)).await;
    d.s.stop().await;
}

async fn bad_frames_get_errors(db: Db) {
    let d = Desk::new(db).await;
    let queue = d.queue("Bad", json!({})).await;
    let (_, token) = d.agent("clumsy", &[("en", 5)], &[queue]).await;
    let mut console = d.console(&token).await;
    let code = |frame: &Value| frame["code"].as_str().unwrap_or_default().to_owned();
    console.send_raw(Message::Text("{not json".into())).await;
    assert_eq!(code(&console.expect("error").await), "malformed_json");
    console
        .send_raw(Message::Text(
            r#"{"type":"offer.accept","interaction":1}"#.into(),
        ))
        .await;
    assert_eq!(code(&console.expect("error").await), "missing_id");
    console
        .send_raw(Message::Binary(vec![1, 2, 3].into()))
        .await;
    assert_eq!(code(&console.expect("error").await), "unsupported_frame");
    let unknown = console.command(json!({ "type": "self.destruct" })).await;
    assert_eq!(unknown.last().map(code).as_deref(), Some("invalid_command"));
    let not_offered = console
        .command(json!({ "type": "offer.accept", "interaction": 999_999 }))
        .await;
    assert_eq!(
        not_offered.last().map(code).as_deref(),
        Some("unknown_interaction")
    );
    // Still serving after all that.
    console.ready().await;
    // An oversized frame closes this connection, and only this one.
    let mut other = d.console(&token).await;
    console.expect("session.replaced").await;
    other
        .send_raw(Message::Text("x".repeat(64 * 1024).into()))
        .await;
    // The connection closes (events that were already on their way may come first).
    assert_eq!(other.closed().await, Some(1009));
    let mut again = d.console(&token).await;
    again.ready().await;
    // Every kind of command takes the same ids: a number, or a string of 1 to 64 bytes.
    let long = "x".repeat(65);
    for frame in [
        json!({ "id": "", "type": "call.dial", "number": "+4930123456" }),
        json!({ "id": long, "type": "call.dial", "number": "+4930123456" }),
        json!({ "id": long, "type": "chat.send", "interaction": 1, "text": "hi" }),
        json!({ "id": long, "type": "presence.set", "status": "offline" }),
        json!({ "id": true, "type": "chat.send", "interaction": 1, "text": "hi" }),
    ] {
        again
            .send_raw(Message::Text(frame.to_string().into()))
            .await;
        let error = again.expect("error").await;
        assert_eq!(
            (code(&error), &error["id"]),
            ("missing_id".into(), &Value::Null),
            "{frame}"
        );
    }

    // Wrong tokens never get a websocket.
    let url = format!(
        "{}/ws/agent?token=wrong",
        d.s.base.replacen("http", "ws", 1)
    );
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!("expected 401, got {other:?}"),
    }
    assert_error(
        &d.s.call(reqwest::Method::GET, "/ws/agent", None, None)
            .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    d.s.stop().await;
}

/// Commands a console sent just before closing its connection, in the same write as the
/// close, are carried out all the same.
async fn commands_sent_with_the_close_are_carried_out(db: Db) {
    let d = Desk::new(db).await;
    let queue = d.queue("Closing", json!({ "wrapup_seconds": 600 })).await;
    let (_, token) = d.agent("leaver", &[("en", 5)], &[queue]).await;
    let mut console = d.console(&token).await;
    console.ready().await;
    let interaction = d.interaction(queue, "en").await;
    console.expect_where("offer", offer_of(interaction)).await;
    console
        .ok(json!({ "type": "offer.accept", "interaction": interaction }))
        .await;
    let end = json!({ "id": "end", "type": "interaction.end", "interaction": interaction });
    console
        .send_together(vec![
            Message::Text(end.to_string().into()),
            Message::Close(None),
        ])
        .await;
    // The server has read both once it answers the close.
    console.closed().await;
    let again = d.console(&token).await;
    let hello = again.seen.first().expect("hello");
    assert_eq!(hello["work"][0]["interaction"], interaction, "{hello}");
    assert_eq!(hello["work"][0]["state"], "wrap_up", "{hello}");
    d.s.stop().await;
}

async fn offers_carry_details_and_a_screen_pop(db: Db) {
    let d = Desk::new(db).await;
    let queue = d.queue("Pop", json!({})).await;
    let (_, token) = d.agent("popper", &[("de", 5)], &[queue]).await;
    let customer =
        d.s.create(
            "/api/v1/customers",
            &d.admin,
            json!({ "name": "Erika Mustermann", "language": "de" }),
        )
        .await;
    d.s.create(
        "/api/v1/customer-identities",
        &d.admin,
        json!({ "customer_id": customer, "kind": "email", "value": "erika@example.test" }),
    )
    .await;
    // Her earlier contacts, created as done (history, not routed).
    let mut earlier = Vec::new();
    for subject in ["Vertrag", "Umzug"] {
        let body = json!({ "channel": "call", "state": "done", "customer_id": customer, "subject": subject });
        earlier.push(d.s.create("/api/v1/interactions", &d.admin, body).await);
    }
    let mut console = d.console(&token).await;
    console.ready().await;
    let id = d
        .s
        .create("/api/v1/interactions", &d.admin, json!({ "channel": "email", "queue_id": queue, "language": "de", "customer_id": customer, "subject": "Rechnung" }))
        .await;
    let offer = console.expect_where("offer", offer_of(id)).await;
    assert_eq!(offer["details"]["subject"], "Rechnung");
    let pop = console.expect("customer.screen_pop").await;
    assert_eq!(pop["customer"]["name"], "Erika Mustermann");
    assert_eq!(pop["identities"][0]["value"], "erika@example.test");
    let history: Vec<_> = pop["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|i| (i["id"].clone(), i["subject"].clone()))
        .collect();
    assert_eq!(
        history,
        [
            (json!(earlier[1]), json!("Umzug")),
            (json!(earlier[0]), json!("Vertrag")),
        ],
        "earlier contacts, newest first, without the offered one"
    );
    // A console that got no screen pop (it joined later, or reloaded) asks for the same card.
    let (status, card) =
        d.s.get(&format!("/api/v1/interactions/{id}/customer"), &token)
            .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(card["customer"], pop["customer"]);
    assert_eq!(card["history"], pop["history"]);
    let (status, _) =
        d.s.get(
            &format!("/api/v1/interactions/{}/customer", earlier[0] + 1000),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let anonymous = d.interaction(queue, "de").await;
    let (status, body) =
        d.s.get(
            &format!("/api/v1/interactions/{anonymous}/customer"),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    d.s.stop().await;
}

async fn queue_stats_reach_the_members(db: Db) {
    let d = Desk::new(db).await;
    let queue = d.queue("Stats", json!({})).await;
    let (_, token) = d.agent("watcher", &[("en", 5)], &[queue]).await;
    let mut console = d.console(&token).await;
    console
        .expect_where("queue.stats", |f| f["queue"] == queue && f["waiting"] == 0)
        .await;
    d.interaction(queue, "en").await;
    console
        .expect_where("queue.stats", |f| f["queue"] == queue && f["waiting"] == 1)
        .await;
    d.s.stop().await;
}

async fn waiting_interactions_survive_a_restart_in_order(db: Db) {
    let d = Desk::new(db).await;
    let queue = d.queue("Durable", json!({})).await;
    let (_, token) = d.agent("keeper", &[("en", 5)], &[queue]).await;
    // The first interaction created is transferred back into the queue after the other two,
    // so its place is behind them: their order is not the order of their ids.
    let first = d.interaction(queue, "en").await;
    let mut console = d.console(&token).await;
    console.ready().await;
    console.expect_where("offer", offer_of(first)).await;
    console
        .ok(json!({ "type": "offer.accept", "interaction": first }))
        .await;
    console
        .ok(json!({ "type": "presence.set", "status": "not_ready", "reason": "lunch" }))
        .await;
    let second = d.interaction(queue, "en").await;
    let third = d.interaction(queue, "en").await;
    console
        .ok(json!({ "type": "interaction.transfer", "interaction": first, "to": { "target": "queue", "queue": queue } }))
        .await;
    let ids = [second, third, first];
    // A record imported finished is history: not routed, before or after a restart. (One in
    // a state of routing's own is refused: no queue would hold it.)
    let imported =
        d.s.create(
            "/api/v1/interactions",
            &d.admin,
            json!({ "channel": "email", "queue_id": queue, "state": "done", "subject": "Imported" }),
        )
        .await;
    let s = d.s.restart().await;
    let token = s.login("demo", "keeper", "keeper-password").await;
    let mut console = Console::connect(&s, &token).await;
    console.ready().await;
    let mut offered = Vec::new();
    for _ in ids {
        offered.push(
            console.expect("offer").await["interaction"]
                .as_i64()
                .expect("id"),
        );
    }
    assert_eq!(offered, ids, "restored in their original order");
    // The event log recorded the queueing before the restart.
    let admin = s.demo_login("ada").await;
    let (_, events) = s
        .get(
            &format!(
                "/api/v1/events?kind=routing.queued&interaction_id={}",
                ids[0]
            ),
            &admin,
        )
        .await;
    assert!(events["total"].as_i64().is_some_and(|n| n >= 1), "{events}");
    let (status, _) = s
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/interactions/{imported}/move"),
            Some(&admin),
            Some(json!({ "queue": queue })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "routing does not know it");
    s.stop().await;
}

/// Written work its agent was still wrapping up when vacd stopped is finished at the restart,
/// and counted handled: the wrap-up's end is logged before it is done.
async fn a_wrap_up_cut_short_by_a_restart_is_counted_handled(db: Db) {
    let d = Desk::new(db).await;
    let queue = d.queue("Wrapped", json!({ "wrapup_seconds": 600 })).await;
    let (agent_id, token) = d.agent("wrapper", &[("en", 5)], &[queue]).await;
    let mut console = d.console(&token).await;
    console.ready().await;
    let handled = d.interaction(queue, "en").await;
    console.handle(handled).await;
    console
        .expect_where("presence.changed", |f| f["to"]["presence"] == "wrap_up")
        .await;
    let s = d.s.restart().await;
    let sam = s.demo_login("sam").await;
    let (_, agents) = s.get("/api/v1/reports/agents?interval=hour", &sam).await;
    assert!(
        agents["items"].as_array().is_some_and(|rows| rows
            .iter()
            .any(|r| r["agent"] == agent_id && r["handled"] == 1)),
        "{agents}"
    );
    // The stop logged the agent off, in wrap-up as it was: its login ended there.
    let (_, events) = s
        .get(
            &format!("/api/v1/events?kind=routing.presence_changed&agent_id={agent_id}"),
            &sam,
        )
        .await;
    let last = events["items"]
        .as_array()
        .and_then(|items| items.iter().max_by_key(|e| e["id"].as_i64()))
        .cloned()
        .unwrap_or_default();
    let payload = |e: &Value| -> Value {
        e["payload"]
            .as_str()
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or_else(|| e["payload"].clone())
    };
    assert_eq!(
        (
            &payload(&last)["from"]["presence"],
            &payload(&last)["to"]["presence"]
        ),
        (&json!("wrap_up"), &json!("offline")),
        "{events}"
    );
    s.stop().await;
}

/// Reports over the real event log: two interactions in a fresh queue, one handled and one
/// still waiting; the queue, agent and tenant reports (JSON and CSV) show them, and only
/// supervisors may read them.
async fn reports_from_the_event_log(db: Db) {
    let d = Desk::new(db).await;
    let queue = d
        .queue(
            "Reported",
            json!({ "sla_seconds": 60, "wrapup_seconds": 0 }),
        )
        .await;
    let (agent_id, token) = d.agent("reporter", &[("en", 5)], &[queue]).await;
    let mut console = d.console(&token).await;
    console.ready().await;
    let handled = d.interaction(queue, "en").await;
    console.handle(handled).await;
    console
        .ok(json!({ "type": "presence.set", "status": "not_ready", "reason": "report" }))
        .await;
    let abandoned = d.interaction(queue, "en").await;
    let (status, _) =
        d.s.patch(
            &format!("/api/v1/interactions/{abandoned}"),
            &d.admin,
            json!({ "subject": "gone" }),
        )
        .await;
    assert!(status.is_success());

    let sam = d.s.demo_login("sam").await;
    // Spans whose rows could not be made, or not in time, are refused.
    for query in [
        "from=0&to=9000000000000000000&interval=15m",
        "from=-9000000000000000000&to=0&interval=day",
        "from=0&to=9000000000000&interval=15m",
    ] {
        let (status, body) =
            d.s.get(&format!("/api/v1/reports/agents?{query}"), &sam)
                .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query", "{body}");
    }
    // The day is the demo tenant's: it began at midnight in Berlin, not in UTC (taken before
    // and after the report, which may be asked across midnight).
    let berlin_midnight = || {
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").expect("Berlin");
        jiff::Timestamp::from_millisecond(vacd::store::now_ms())
            .expect("now")
            .to_zoned_datetime(berlin)
            .start_of_day()
            .expect("today's start")
            .timestamp()
            .as_millisecond()
    };
    let midnight_before = berlin_midnight();
    let (status, page) = d.s.get("/api/v1/reports/queues?interval=day", &sam).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let midnights = [midnight_before, berlin_midnight()];
    let row = queue_row(&page, queue);
    assert_eq!(row["offered"], 2, "{row}");
    assert_eq!(row["answered"], 1, "{row}");
    assert_eq!(row["answered_in_target"], 1, "{row}");
    assert_eq!(row["handled"], 1, "{row}");
    // One of the two answered in target; the other still waits (no abandon yet).
    assert_eq!(row["service_level"], 0.5, "{row}");
    assert!(
        midnights.iter().any(|m| row["interval_start"] == *m),
        "{row} starts at none of {midnights:?}"
    );

    let (_, agents) = d.s.get("/api/v1/reports/agents?interval=hour", &sam).await;
    assert!(
        agents["items"].as_array().is_some_and(|rows| rows
            .iter()
            .any(|r| r["agent"] == agent_id && r["handled"] == 1)),
        "{agents}"
    );
    let (_, tenant) = d.s.get("/api/v1/reports/tenant?interval=day", &sam).await;
    assert!(
        tenant["items"][0]["offered"].as_u64() >= Some(2),
        "{tenant}"
    );

    let csv =
        d.s.http
            .get(format!(
                "{}/api/v1/reports/queues?interval=day&format=csv",
                d.s.base
            ))
            .bearer_auth(&sam)
            .send()
            .await
            .expect("csv")
            .text()
            .await
            .expect("csv text");
    let mut lines = csv.lines();
    assert!(lines
        .next()
        .is_some_and(|h| h.starts_with("queue,interval_start,offered")));
    assert!(
        lines.any(|l| l.starts_with(&format!("{queue},")) && l.contains(",2,1,1,0,0,")),
        "{csv}"
    );

    assert_error(
        &d.s.get("/api/v1/reports/queues", &token).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &d.s.get("/api/v1/reports/queues?interval=week", &sam).await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    );
    assert_error(
        &d.s.get("/api/v1/reports/queues?from=10&to=5", &sam).await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    );
    // The waiting one is answered after a report's `to`: that report counts it answered all the
    // same (a wait belongs to the interval it entered in, whenever it ends).
    d.s.routing().flushed().await;
    let to = vacd::store::now_ms();
    console.ready().await;
    console.accept(abandoned).await;
    d.s.routing().flushed().await;
    let (_, page) =
        d.s.get(
            &format!(
                "/api/v1/reports/queues?interval=day&from={}&to={to}",
                to - to.rem_euclid(86_400_000)
            ),
            &sam,
        )
        .await;
    let row = queue_row(&page, queue);
    assert_eq!(
        (row["offered"].as_u64(), row["answered"].as_u64()),
        (Some(2), Some(2)),
        "{row}"
    );
    assert_error(
        &d.s.get("/api/v1/reports/nothing", &sam).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    d.s.stop().await;
}

/// The live feed follows an interaction from waiting to connected to done, with the agent's
/// presence and today's totals; another tenant's supervisor sees none of it; agents may not
/// connect.
async fn supervisor_feed_follows_the_floor(db: Db) {
    let d = Desk::new(db).await;
    let queue = d.queue("Watched", json!({ "wrapup_seconds": 0 })).await;
    let (agent_id, token) = d.agent("watched", &[("en", 5)], &[queue]).await;
    let sam = d.s.demo_login("sam").await;
    let mut feed = Feed::connect(&d.s, &sam).await;
    feed.until("the new queue", |f| queue_of(f, queue).is_some())
        .await;

    let id = d.interaction(queue, "en").await;
    feed.until("one waiting", |f| {
        queue_of(f, queue).is_some_and(|q| q["waiting"] == 1)
    })
    .await;
    let mut console = d.console(&token).await;
    console.ready().await;
    console.expect_where("offer", offer_of(id)).await;
    console
        .ok(json!({ "type": "offer.accept", "interaction": id }))
        .await;
    let busy = feed
        .until("the agent busy", |f| {
            agent_of(f, agent_id).is_some_and(|a| a["presence"]["presence"] == "busy")
        })
        .await;
    assert_eq!(queue_of(&busy, queue).expect("queue")["waiting"], 0);
    assert_eq!(agent_of(&busy, agent_id).expect("agent")["name"], "watched");
    console
        .ok(json!({ "type": "interaction.end", "interaction": id }))
        .await;
    feed.until("today's answer", |f| {
        queue_of(f, queue)
            .is_some_and(|q| q["today"]["answered"] == 1 && q["today"]["offered"] == 1)
    })
    .await;

    // Another tenant's admin sees its own (empty) floor only.
    let (_, other) = d.s.new_tenant("elsewhere").await;
    let mut elsewhere = Feed::connect(&d.s, &other).await;
    let floor = elsewhere.until("a frame", |_| true).await;
    assert!(queue_of(&floor, queue).is_none(), "{floor}");
    assert!(agent_of(&floor, agent_id).is_none(), "{floor}");

    // The supervisor sends the agent on a break; the agent's console and the feed show it.
    let (status, body) =
        d.s.call(
            reqwest::Method::PUT,
            &format!("/api/v1/agents/{agent_id}/status"),
            Some(&sam),
            Some(json!({ "status": "not_ready", "reason": "coaching" })),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    console
        .expect_where("presence.changed", |f| f["to"]["reason"] == "coaching")
        .await;
    feed.until("the agent on a break", |f| {
        agent_of(f, agent_id).is_some_and(|a| a["presence"]["reason"] == "coaching")
    })
    .await;
    assert_error(
        &d.s.call(
            reqwest::Method::PUT,
            &format!("/api/v1/agents/{agent_id}/status"),
            Some(&token),
            Some(json!({ "status": "ready", "mode": "inbound" })),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &d.s.call(
            reqwest::Method::PUT,
            &format!("/api/v1/agents/{agent_id}/status"),
            Some(&other),
            Some(json!({ "status": "ready", "mode": "inbound" })),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // A reason is 1 to 64 characters: it goes into every event and frame about the agent.
    for reason in [String::new(), "x".repeat(65)] {
        assert_error(
            &d.s.call(
                reqwest::Method::PUT,
                &format!("/api/v1/agents/{agent_id}/status"),
                Some(&sam),
                Some(json!({ "status": "not_ready", "reason": reason })),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_reason",
        );
    }

    // Without a console the agent is away: neither sent on a break (that would log it in) nor
    // made ready (offers would go to nobody).
    drop(console);
    feed.until("the agent offline", |f| {
        agent_of(f, agent_id).is_some_and(|a| a["presence"]["presence"] == "offline")
    })
    .await;
    for status in [
        json!({ "status": "ready", "mode": "inbound" }),
        json!({ "status": "not_ready", "reason": "break" }),
    ] {
        assert_error(
            &d.s.call(
                reqwest::Method::PUT,
                &format!("/api/v1/agents/{agent_id}/status"),
                Some(&sam),
                Some(status),
            )
            .await,
            StatusCode::CONFLICT,
            "agent_not_connected",
        );
    }
    let floor = Feed::connect(&d.s, &sam)
        .await
        .until("the floor now", |_| true)
        .await;
    assert_eq!(
        agent_of(&floor, agent_id).expect("agent")["presence"]["presence"],
        "offline",
        "{floor}"
    );

    let refused = tokio_tungstenite::connect_async(format!(
        "{}/ws/supervisor?token={token}",
        d.s.base.replacen("http", "ws", 1)
    ))
    .await;
    assert!(refused.is_err(), "an agent may not watch the floor");
    d.s.stop().await;
}

/// An interaction routing still holds is not deleted (409 `in_routing`): routing would go on
/// offering a row that is gone. Once done, it can be.
async fn an_interaction_in_routing_is_not_deleted(db: Db) {
    let d = Desk::new(db).await;
    let queue = d.queue("Kept", json!({ "wrapup_seconds": 0 })).await;
    let (_, token) = d.agent("keeper", &[("en", 5)], &[queue]).await;
    let id = d.interaction(queue, "en").await;
    let path = format!("/api/v1/interactions/{id}");
    assert_error(
        &d.s.delete(&path, &d.admin).await,
        StatusCode::CONFLICT,
        "in_routing",
    );
    let mut console = d.console(&token).await;
    console.ready().await;
    console.handle(id).await;
    d.s.routing().flushed().await;
    let (status, body) = d.s.delete(&path, &d.admin).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    d.s.stop().await;
}

/// The feed reads teams and names again when users change: a team lead moved to another team
/// sees that team's agents (one created after the feed connected by name too), not the old
/// team's.
async fn a_team_leads_feed_follows_the_leads_team(db: Db) {
    let d = Desk::new(db).await;
    let north =
        d.s.create("/api/v1/teams", &d.admin, json!({ "name": "North" }))
            .await;
    let south =
        d.s.create("/api/v1/teams", &d.admin, json!({ "name": "South" }))
            .await;
    let (lead_id, lead) =
        d.s.demo_user(
            &d.admin,
            "lead",
            json!({ "role": "team_lead", "team_id": north }),
        )
        .await;
    let mut feed = Feed::connect(&d.s, &lead).await;
    feed.until("a frame", |_| true).await;
    let (agent_id, token) = d.agent("southerner", &[], &[]).await;
    let (status, _) =
        d.s.patch(
            &format!("/api/v1/users/{agent_id}"),
            &d.admin,
            json!({ "team_id": south }),
        )
        .await;
    assert!(status.is_success());
    let mut console = d.console(&token).await;
    console.ready().await;
    let (status, _) =
        d.s.patch(
            &format!("/api/v1/users/{lead_id}"),
            &d.admin,
            json!({ "team_id": south }),
        )
        .await;
    assert!(status.is_success());
    feed.until("the southerner, by name, on the lead's new team", |f| {
        agent_of(f, agent_id).is_some_and(|a| a["name"] == "southerner")
    })
    .await;
    d.s.stop().await;
}

/// A websocket lives only as long as the login that opened it grants what it granted then: a
/// change of the user's role, a logout or the user's deletion closes the console and the
/// supervisor feed (code 4001); a change that leaves the rights as they were does not.
async fn sockets_close_when_their_login_ends_or_changes(db: Db) {
    let d = Desk::new(db).await;
    let (agent_id, token) = d.agent("fleeting", &[], &[]).await;
    let user = format!("/api/v1/users/{agent_id}");
    let mut console = d.console(&token).await;
    let (status, _) =
        d.s.patch(&user, &d.admin, json!({ "display_name": "Renamed" }))
            .await;
    assert!(status.is_success());
    console.ready().await;

    let (status, _) =
        d.s.patch(&user, &d.admin, json!({ "role": "team_lead" }))
            .await;
    assert!(status.is_success());
    assert_eq!(console.closed().await, Some(4001), "promoted: log in again");
    let mut console = d.console(&token).await;
    let mut feed = Feed::connect(&d.s, &token).await;
    feed.until("a frame", |_| true).await;

    let (status, _) = d.s.patch(&user, &d.admin, json!({ "role": "agent" })).await;
    assert!(status.is_success());
    assert_eq!(
        feed.closed().await,
        Some(4001),
        "demoted: the floor is no longer theirs"
    );
    assert_eq!(console.closed().await, Some(4001));

    let mut console = d.console(&token).await;
    let (status, _) =
        d.s.call(
            reqwest::Method::POST,
            "/api/v1/auth/logout",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(console.closed().await, Some(4001), "logged out");
    // Refused before the upgrade: a token logged out, and the operator's, which is no user's.
    for (token, status) in [(token.as_str(), 401), (common::OPERATOR_TOKEN, 403)] {
        let url = format!(
            "{}/ws/agent?token={token}",
            d.s.base.replacen("http", "ws", 1)
        );
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), status)
            }
            other => panic!("refused with {status}: {other:?}"),
        }
    }

    let token = d.s.login("demo", "fleeting", "fleeting-password").await;
    let mut console = d.console(&token).await;
    let (status, _) = d.s.delete(&user, &d.admin).await;
    assert!(status.is_success());
    assert_eq!(console.closed().await, Some(4001), "deleted");
    d.s.stop().await;
}

/// Another connection that holds the write lock on interactions (SQLite's, or on PostgreSQL a
/// lock on the table) until [`let_go`].
async fn hold_writes(d: &Desk, db: Db) -> sqlx::AnyConnection {
    use sqlx::Connection;

    let mut other = sqlx::AnyConnection::connect(d.s.database_url())
        .await
        .expect("connects");
    let hold = match db {
        Db::Sqlite => "BEGIN IMMEDIATE",
        Db::Postgres => "BEGIN; LOCK TABLE interactions IN EXCLUSIVE MODE",
    };
    sqlx::raw_sql(hold)
        .execute(&mut other)
        .await
        .expect("the other connection holds the write lock");
    other
}

/// What `meanwhile` gives while `create` (a request whose write the database cannot take yet)
/// stays unanswered; a panic if it is answered first.
async fn unanswered<T>(
    create: &mut (impl std::future::Future<Output = (StatusCode, Value)> + Unpin),
    meanwhile: impl std::future::Future<Output = T>,
) -> T {
    tokio::select! {
        got = meanwhile => got,
        (status, body) = create => panic!("answered before the database could write it: {status} {body}"),
    }
}

async fn let_go(other: &mut sqlx::AnyConnection) {
    sqlx::raw_sql("ROLLBACK")
        .execute(other)
        .await
        .expect("lets go");
}

/// While its insert waits (the write lock held elsewhere), an interaction offered ahead and
/// rejected is offered to the next agent with its details all the same: the database has no
/// row to read them from yet.
async fn a_second_offer_before_the_insert_shows_the_details(db: Db) {
    let d = Desk::new(db).await;
    let queue = d.queue("Early reject", json!({})).await;
    let (_, first) = d.agent("first", &[], &[queue]).await;
    let (_, second) = d.agent("second", &[], &[queue]).await;
    let mut first = d.console(&first).await;
    first.ready().await;
    let mut second = d.console(&second).await;
    second.ready().await;

    let mut other = hold_writes(&d, db).await;
    let body = json!({ "channel": "email", "queue_id": queue, "subject": "Twice" });
    let (offer, (status, created)) = {
        let create = d.s.post("/api/v1/interactions", &d.admin, body);
        tokio::pin!(create);
        let again = async {
            let offer = first.expect("offer").await;
            first
                .ok(json!({ "type": "offer.reject", "interaction": offer["interaction"] }))
                .await;
            second.expect("offer").await
        };
        let offer = unanswered(&mut create, again).await;
        let_go(&mut other).await;
        (offer, create.await)
    };
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(offer["details"], created, "{offer}");
    d.s.stop().await;
}

/// An interaction created through the API is routed at once: its offer reaches the agent while
/// its insert still waits for the database (another connection holds the write lock), and once
/// the database takes it the create is answered with the row the offer showed, as stored. One
/// naming a customer who is not there is refused as before.
async fn an_offer_does_not_wait_for_the_database(db: Db) {
    let d = Desk::new(db).await;
    let queue = d.queue("Ahead", json!({})).await;
    let customer =
        d.s.create(
            "/api/v1/customers",
            &d.admin,
            json!({ "name": "Early Bird" }),
        )
        .await;
    let (_, token) = d.agent("early", &[], &[queue]).await;
    let mut console = d.console(&token).await;
    console.ready().await;

    let mut other = hold_writes(&d, db).await;
    let body = json!({ "channel": "email", "queue_id": queue, "customer_id": customer, "subject": "Early" });
    let (offer, (status, created)) = {
        let create = d.s.post("/api/v1/interactions", &d.admin, body);
        tokio::pin!(create);
        let offer = unanswered(&mut create, console.expect("offer")).await;
        let_go(&mut other).await;
        (offer, create.await)
    };
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(offer["interaction"], created["id"], "{offer}");
    assert_eq!(
        offer["details"], created,
        "the offer shows the row as written"
    );
    let (status, stored) =
        d.s.get(&format!("/api/v1/interactions/{}", created["id"]), &token)
            .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored["subject"], "Early");
    assert_eq!(stored["customer_id"], customer);
    // The row as inserted, before routing changed it.
    let inserted = |row: &Value| {
        let mut row = row.clone();
        for routed in ["state", "agent_id", "queue_order", "queued_at"] {
            row.as_object_mut().expect("a row").remove(routed);
        }
        row
    };
    assert_eq!(
        inserted(&stored),
        inserted(&created),
        "the create answers the row as written"
    );
    let body = json!({ "channel": "email", "queue_id": queue, "customer_id": customer + 1000 });
    let refused = d.s.post("/api/v1/interactions", &d.admin, body).await;
    assert_error(
        &refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_reference",
    );
    console
        .ok(json!({ "type": "offer.accept", "interaction": created["id"] }))
        .await;
    d.s.stop().await;
}

/// An agent who asks for an interaction offered before its insert committed (the console
/// names it a moment after the offer) is answered once the row is written — its record, a
/// message added to it, a change to it — not with a 404 or an unknown reference; a listing of
/// the queue's interactions made meanwhile (a supervisor's) shows it too.
async fn a_request_for_an_interaction_offered_before_its_insert_waits_for_it(db: Db) {
    let d = Desk::new(db).await;
    let queue = d.queue("Asked early", json!({})).await;
    let (_, token) = d.agent("asker", &[], &[queue]).await;
    let mut console = d.console(&token).await;
    console.ready().await;

    let mut other = hold_writes(&d, db).await;
    let body = json!({ "channel": "email", "queue_id": queue, "subject": "Asked early" });
    let (
        id,
        (status, created),
        ((read, record), (added, message), (changed, patched), (listed, page)),
    ) = {
        let create = d.s.post("/api/v1/interactions", &d.admin, body);
        tokio::pin!(create);
        let offer = unanswered(&mut create, console.expect("offer")).await;
        let id = offer["interaction"].as_i64().expect("an interaction id");
        let path = format!("/api/v1/interactions/{id}");
        let message = json!({ "interaction_id": id, "direction": "in", "author": "erika@example.test", "body": "Hello" });
        let listing = format!("/api/v1/interactions?queue_id={queue}");
        let asked = async {
            tokio::join!(
                d.s.get(&path, &token),
                d.s.post("/api/v1/messages", &token, message),
                d.s.patch(
                    &path,
                    &token,
                    json!({ "sla_deadline": 4_102_444_800_000_i64 })
                ),
                d.s.get(&listing, &d.admin)
            )
        };
        tokio::pin!(asked);
        // While the insert waits, the requests wait too: the server answers others meanwhile.
        tokio::select! {
            ((status, body), _, _, _) = &mut asked => panic!("answered before the insert: {status} {body}"),
            () = async {
                for _ in 0..5 {
                    let (status, body) = d.s.get("/api/v1/queues", &d.admin).await;
                    assert_eq!(status, StatusCode::OK, "{body}");
                }
            } => {}
        }
        let_go(&mut other).await;
        let (created, asked) = tokio::join!(create, asked);
        (id, created, asked)
    };
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(read, StatusCode::OK, "{record}");
    assert_eq!(record["subject"], "Asked early");
    assert_eq!(added, StatusCode::CREATED, "{message}");
    assert_eq!(message["interaction_id"], id);
    assert_eq!(changed, StatusCode::OK, "{patched}");
    assert_eq!(patched["sla_deadline"], 4_102_444_800_000_i64, "{patched}");
    assert_eq!(listed, StatusCode::OK, "{page}");
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(page["items"][0]["id"], id, "{page}");
    d.s.stop().await;
}

/// While the database cannot take routing's outputs (another connection holds the write lock),
/// routing goes on: the agent who becomes ready is offered the waiting interaction. A report,
/// which must show what routing did, is refused 503 `journal_behind` after a bounded wait
/// instead of hanging with the database, and `/metrics` answers all the same, counting the
/// outputs pending. Once the database takes them the report shows the offer.
async fn a_journal_behind_the_database_is_reported_not_waited_for(db: Db) {
    let d = Desk::new(db).await;
    let queue = d.queue("Behind", json!({})).await;
    let body = json!({ "channel": "email", "queue_id": queue, "subject": "Behind" });
    let created = d.s.create("/api/v1/interactions", &d.admin, body).await;
    let (_, token) = d.agent("behind", &[], &[queue]).await;
    let mut console = d.console(&token).await;

    let mut other = hold_writes(&d, db).await;
    console.ready().await;
    let offer = console.expect("offer").await;
    assert_eq!(offer["interaction"], created, "{offer}");
    let report = "/api/v1/reports/queues?interval=day";
    let scrape = async {
        let response = reqwest::get(format!("{}/metrics", d.s.base))
            .await
            .expect("scraped");
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("metrics text")
    };
    let (metrics, refused) = tokio::time::timeout(vacd::store::JOURNAL_WAIT * 3, async {
        tokio::join!(scrape, d.s.get(report, &d.admin))
    })
    .await
    .expect("answered while the journal is behind");
    assert_error(&refused, StatusCode::SERVICE_UNAVAILABLE, "journal_behind");
    // Its presence change and its offer, at least.
    let pending = metrics
        .lines()
        .find_map(|line| line.strip_prefix("vacd_routing_outputs_pending "))
        .and_then(|value| value.parse::<f64>().ok());
    assert!(pending.is_some_and(|p| p >= 2.0), "{metrics}");

    let_go(&mut other).await;
    let (status, page) = d.s.get(report, &d.admin).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let row = queue_row(&page, queue);
    assert_eq!(row["offered"], 1, "{row}");
    assert_eq!(d.s.store().journal_pending(), 0, "all written");
    d.s.stop().await;
}

/// PostgreSQL: a trigger that refuses to insert an interaction whose subject is `refused`.
const REFUSE_SUBJECT_REFUSED: &str = "CREATE FUNCTION refuse_some() RETURNS trigger AS $$ BEGIN \
    IF NEW.subject = 'refused' THEN \
    RAISE EXCEPTION 'refused by a trigger' USING ERRCODE = '23514'; END IF; \
    RETURN NEW; END $$ LANGUAGE plpgsql; \
    CREATE TRIGGER refuse_some BEFORE INSERT ON interactions \
    FOR EACH ROW EXECUTE FUNCTION refuse_some()";

/// PostgreSQL: an interaction routed before its insert, which the database then refuses (a
/// trigger), is answered with the error and withdrawn from routing: the agent who becomes ready
/// afterwards is offered the next interaction, not the one that was never stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_interaction_the_database_refuses_is_withdrawn_from_routing() {
    use sqlx::Connection;

    let d = Desk::new(Db::Postgres).await;
    let queue = d.queue("Refusing", json!({})).await;
    let (_, token) = d.agent("waiting", &[], &[queue]).await;
    let mut admin = sqlx::PgConnection::connect(d.s.database_url())
        .await
        .expect("connects");
    sqlx::raw_sql(REFUSE_SUBJECT_REFUSED)
        .execute(&mut admin)
        .await
        .expect("the trigger is made");
    admin.close().await.expect("closed");

    let body = json!({ "channel": "email", "queue_id": queue, "subject": "refused" });
    let (status, refused) = d.s.post("/api/v1/interactions", &d.admin, body).await;
    assert!(
        status.is_client_error() || status.is_server_error(),
        "{status} {refused}"
    );
    let body = json!({ "channel": "email", "queue_id": queue, "subject": "kept" });
    let kept = d.s.create("/api/v1/interactions", &d.admin, body).await;
    let mut console = d.console(&token).await;
    console.ready().await;
    let offer = console.expect("offer").await;
    assert_eq!(offer["interaction"], kept, "{offer}");
    d.s.stop().await;
}

/// PostgreSQL: an interaction routed before its insert and accepted by an agent while the
/// insert waits (the test holds a lock on the table), which the database then refuses (a
/// trigger made meanwhile): the caller gets the error, and the interaction ends for the agent,
/// who goes to wrap-up — it is not left connected to a record that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_accepted_interaction_the_database_refuses_ends() {
    use sqlx::Connection;

    let d = Desk::new(Db::Postgres).await;
    let queue = d.queue("Refusing late", json!({})).await;
    let (_, token) = d.agent("quick", &[], &[queue]).await;
    let mut console = d.console(&token).await;
    console.ready().await;
    let mut other = hold_writes(&d, Db::Postgres).await;
    let body = json!({ "channel": "email", "queue_id": queue, "subject": "refused" });
    let (offer, (status, refused)) = {
        let create = d.s.post("/api/v1/interactions", &d.admin, body);
        tokio::pin!(create);
        let offer = unanswered(&mut create, console.expect("offer")).await;
        console
            .ok(json!({ "type": "offer.accept", "interaction": offer["interaction"] }))
            .await;
        sqlx::raw_sql(REFUSE_SUBJECT_REFUSED)
            .execute(&mut other)
            .await
            .expect("the trigger is made");
        sqlx::raw_sql("COMMIT")
            .execute(&mut other)
            .await
            .expect("the table is let go");
        (offer, create.await)
    };
    assert!(
        status.is_client_error() || status.is_server_error(),
        "{status} {refused}"
    );
    let interaction = offer["interaction"].clone();
    console
        .expect_where("interaction.ended", |f| f["interaction"] == interaction)
        .await;
    console
        .expect_where("presence.changed", |f| f["to"]["presence"] == "wrap_up")
        .await;
    other.close().await.expect("closed");
    d.s.stop().await;
}

on_both_backends!(
    an_offer_does_not_wait_for_the_database,
    a_journal_behind_the_database_is_reported_not_waited_for,
    a_second_offer_before_the_insert_shows_the_details,
    a_request_for_an_interaction_offered_before_its_insert_waits_for_it,
    an_interaction_in_routing_is_not_deleted,
    sockets_close_when_their_login_ends_or_changes,
    supervisor_feed_follows_the_floor,
    a_team_leads_feed_follows_the_leads_team,
    reports_from_the_event_log,
    agents_get_their_languages_and_not_ready_gets_nothing,
    reject_goes_to_the_next_agent,
    offer_timeout_reroutes_and_marks_missed,
    missed_offer_policy_changed_live,
    blending_changed_live,
    a_later_offer_deadline_fires_after_the_earlier_offer_was_answered,
    wrap_up_timer_returns_the_agent_to_ready,
    transfer_to_queue_and_agent,
    a_skill_changed_live_changes_routing,
    a_membership_changed_live_changes_routing,
    a_membership_removed_live_takes_back_its_offer,
    concurrent_changes_all_take_effect,
    queue_settings_changed_live,
    escalation_overflows_to_another_queue,
    replies_follow_their_events,
    commands_sent_together_are_answered_in_order,
    a_second_console_takes_over,
    bad_frames_get_errors,
    commands_sent_with_the_close_are_carried_out,
    offers_carry_details_and_a_screen_pop,
    queue_stats_reach_the_members,
    waiting_interactions_survive_a_restart_in_order,
    a_wrap_up_cut_short_by_a_restart_is_counted_handled,
);

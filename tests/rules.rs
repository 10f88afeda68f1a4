//! Classification end to end: routing rules administered through the API send a phone call, an
//! SMS and a chat to the queue the first matching rule names — by service address and time of
//! day, by keyword, by the chat's first message — and everything else to its service
//! address's queue; each pick is in the event log. Hours are read on the tenant's clock.

mod common;

use common::console::Console;
use common::phone::Phone;
use common::visitor::Visitor;
use common::{assert_error, trunk, Db, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};
use vacd_sip::rsip::Method;

/// All day, every day: a rule limited to these hours always applies, one outside them never.
const ALWAYS: &str = "Mo-So 00:00-24:00";

/// The id of the demo queue `name`.
async fn queue(s: &TestServer, admin: &str, name: &str) -> i64 {
    let (_, page) = s.get(&format!("/api/v1/queues?name={name}"), admin).await;
    page["items"][0]["id"].as_i64().expect("the demo queue")
}

async fn ready(s: &TestServer, user: &str) -> Console {
    let mut console = Console::connect(s, &s.demo_login(user).await).await;
    console.ready().await;
    console
}

/// The `routing.classified` events of `interaction`.
async fn classified(s: &TestServer, admin: &str, interaction: i64) -> Vec<Value> {
    let (_, page) = s
        .get(
            &format!("/api/v1/events?kind=routing.classified&interaction_id={interaction}"),
            admin,
        )
        .await;
    page["items"].as_array().cloned().unwrap_or_default()
}

/// An SMS from `from` to the service number `to` through the gateway (token
/// `gateway-secret`): the record of the ticket it became.
async fn sms_in(s: &TestServer, admin: &str, from: &str, to: &str, text: &str) -> Value {
    let (status, body) = s
        .call(
            reqwest::Method::POST,
            "/api/v1/sms/inbound",
            Some("gateway-secret"),
            Some(json!({ "from": from, "to": to, "text": text, "id": from })),
        )
        .await;
    assert_eq!(body["outcome"], "created", "{status}: {body}");
    let interaction = body["ticket"].as_i64().expect("the SMS's ticket");
    s.get(&format!("/api/v1/interactions/{interaction}"), admin)
        .await
        .1
}

async fn routing_rules_pick_the_queue(db: Db) {
    let s = TestServer::start_with(db, |c| {
        trunk::configure(c, None);
        c.channels.sms.inbound_token = "gateway-secret".into();
    })
    .await;
    let admin = s.demo_login("ada").await;
    let (sales_de, support_de) = (
        queue(&s, &admin, "Sales%20DE").await,
        queue(&s, &admin, "Support%20DE").await,
    );
    let (_, phones) = s.get("/api/v1/service-addresses?kind=phone", &admin).await;
    let hotline = phones["items"][0]["id"].as_i64().expect("the demo number");

    // Bad rules are refused with a clear error.
    for (bad, code) in [
        (
            json!({ "name": "x", "queue_id": support_de, "hours": "weekdays" }),
            "invalid_value",
        ),
        (
            json!({ "name": "x", "queue_id": support_de, "channel": "pigeon" }),
            "invalid_value",
        ),
        (json!({ "name": "x" }), "missing_field"),
    ] {
        let refused = s
            .call(
                reqwest::Method::POST,
                "/api/v1/routing-rules",
                Some(&admin),
                Some(bad.clone()),
            )
            .await;
        assert_error(&refused, StatusCode::UNPROCESSABLE_ENTITY, code);
    }
    // Agents may not read or write them.
    let agent = s.demo_login("bruno").await;
    let (status, _) = s.get("/api/v1/routing-rules", &agent).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Calls to the hotline: a rule for outside the hours comes first and never applies; the
    // next sends them to Support DE at a higher priority. A disabled rule does nothing.
    s.create(
        "/api/v1/routing-rules",
        &admin,
        json!({ "name": "disabled", "position": 1, "enabled": 0, "queue_id": sales_de, "channel": "call" }),
    )
    .await;
    s.create(
        "/api/v1/routing-rules",
        &admin,
        json!({ "name": "after hours", "position": 2, "channel": "call", "hours": ALWAYS, "outside_hours": 1, "queue_id": sales_de }),
    )
    .await;
    let by_day = s
        .create(
            "/api/v1/routing-rules",
            &admin,
            json!({ "name": "hotline by day", "position": 3, "service_address_id": hotline, "hours": ALWAYS, "queue_id": support_de, "priority": 90 }),
        )
        .await;
    let mut bruno = ready(&s, "bruno").await;
    let mut phone = Phone::new("127.0.0.1", s.sip_udp()).await;
    phone.register("bruno", trunk::SIP_PASSWORD, None).await;
    let (mut caller, leg) = trunk::call_in(s.sip_udp()).await;
    let offer = bruno
        .expect_where("offer", |f| f["channel"] == "call")
        .await;
    assert_eq!(offer["queue"], support_de, "{offer}");
    let call = offer["interaction"].as_i64().expect("interaction");
    let (_, record) = s.get(&format!("/api/v1/interactions/{call}"), &admin).await;
    assert_eq!(
        (&record["queue_id"], &record["priority"]),
        (&json!(support_de), &json!(90)),
        "{record}"
    );
    let picks = classified(&s, &admin, call).await;
    assert_eq!(picks.len(), 1, "{picks:?}");
    let payload: Value = serde_json::from_str(picks[0]["payload"].as_str().unwrap_or("null"))
        .expect("the event's payload");
    assert_eq!(payload["rule"], by_day, "{payload}");
    let invite = phone.request(Method::Invite).await;
    phone.respond(&invite, 180, "ring", false).await;
    assert_eq!(caller.bye(&leg).await, 200);
    phone.cancelled(&invite).await;
    bruno
        .expect_where("presence.changed", |f| f["to"]["presence"] == "ready")
        .await;

    // SMS: one with a keyword goes to Support DE, one without to the number's own queue.
    s.create(
        "/api/v1/service-addresses",
        &admin,
        json!({ "kind": "sms", "address": "+4930111", "mailbox_id": record["mailbox_id"], "queue_id": sales_de }),
    )
    .await;
    s.create(
        "/api/v1/routing-rules",
        &admin,
        json!({ "name": "cancellations", "channel": "sms", "keywords": "kündigen, cancel", "queue_id": support_de }),
    )
    .await;
    let sms_queue = async |from: &str, text: &str| {
        sms_in(&s, &admin, from, "+4930111", text).await["queue_id"].clone()
    };
    assert_eq!(
        sms_queue("+491709999991", "Ich möchte meinen Vertrag KÜNDIGEN.").await,
        support_de
    );
    assert_eq!(
        sms_queue("+491709999992", "Wo bleibt meine Lieferung?").await,
        sales_de
    );

    // Chat: the first message decides; the demo widget's German chats wait in Support DE
    // unless the rule sends them to Sales DE.
    s.create(
        "/api/v1/routing-rules",
        &admin,
        json!({ "name": "chat offers", "channel": "chat", "keywords": "angebot", "queue_id": sales_de }),
    )
    .await;
    let mut vera = Visitor::start(&s, json!({ "language": "de-DE" })).await;
    vera.say(
        "v-1",
        "Guten Tag, ich hätte gerne ein Angebot für zehn Lizenzen.",
    )
    .await;
    let offer = bruno
        .expect_where("offer", |f| f["channel"] == "chat")
        .await;
    assert_eq!(offer["queue"], sales_de, "{offer}");
    s.stop().await;
}

/// Hours are read on the tenant's clock: a routing rule's and a mailbox's business hours that
/// hold now in the tenant's time zone (but not in UTC) send an SMS to the rule's queue and give
/// it a first-answer deadline one hour of business time away; set back to UTC, they do not.
async fn hours_follow_the_tenant_time_zone(db: Db) {
    let s = TestServer::start_with(db, |c| {
        c.channels.sms.inbound_token = "gateway-secret".into();
    })
    .await;
    let admin = s.demo_login("ada").await;
    let (_, demo) = s.get("/api/v1/tenants/1", &admin).await;
    assert_eq!(demo["time_zone"], "Europe/Berlin", "{demo}");
    assert_error(
        &s.patch(
            "/api/v1/tenants/1",
            &admin,
            json!({ "time_zone": "Mars/Olympus_Mons" }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
    );

    // A zone whose clock is 12 (or, near its midnight, 6) hours ahead of UTC, and a window of
    // hours around its present hour that UTC's present hour is far from.
    let utc_hour = (vacd::store::now_ms() / 3_600_000 % 24) as i64;
    let (zone, hour) = match (utc_hour + 12) % 24 {
        22 | 23 | 0 | 1 => ("Etc/GMT-6", (utc_hour + 6) % 24),
        hour => ("Etc/GMT-12", hour),
    };
    let window = format!("Mo-So {:02}:00-{:02}:00", hour - 1, hour + 2);
    let (status, changed) = s
        .patch("/api/v1/tenants/1", &admin, json!({ "time_zone": zone }))
        .await;
    assert_eq!(
        (status, &changed["time_zone"]),
        (StatusCode::OK, &json!(zone))
    );

    let (sales_de, support_de) = (
        queue(&s, &admin, "Sales%20DE").await,
        queue(&s, &admin, "Support%20DE").await,
    );
    let desk = s
        .create(
            "/api/v1/mailboxes",
            &admin,
            json!({ "name": "Night desk", "sla_seconds": 3600, "business_hours": window }),
        )
        .await;
    s.create(
        "/api/v1/service-addresses",
        &admin,
        json!({ "kind": "sms", "address": "+4930113", "mailbox_id": desk, "queue_id": sales_de }),
    )
    .await;
    s.create(
        "/api/v1/routing-rules",
        &admin,
        json!({ "name": "night shift", "channel": "sms", "hours": window, "queue_id": support_de }),
    )
    .await;
    let sms = async |from: &str| {
        let record = sms_in(&s, &admin, from, "+4930113", "Hallo?").await;
        let (Some(due), Some(created)) = (
            record["sla_deadline"].as_i64(),
            record["created_at"].as_i64(),
        ) else {
            panic!("no deadline: {record}");
        };
        (record["queue_id"].clone(), due - created)
    };
    let (queue_id, due_in) = sms("+491709999993").await;
    assert_eq!(
        queue_id, support_de,
        "inside the hours on the tenant's clock"
    );
    assert!(
        (3_540_000..=3_660_000).contains(&due_in),
        "one hour of business time from now, not {due_in} ms"
    );

    let (status, _) = s
        .patch("/api/v1/tenants/1", &admin, json!({ "time_zone": "UTC" }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (queue_id, due_in) = sms("+491709999994").await;
    assert_eq!(queue_id, sales_de, "outside the hours in UTC");
    assert!(
        due_in > 4 * 3_600_000,
        "the hours open later in UTC: {due_in} ms"
    );
    s.stop().await;
}

/// The chat widget shows chat as available when the queue its chats would start in can serve
/// them: the widget's own unless a rule without keywords sends chats elsewhere — here to a
/// queue nobody serves, then (that rule disabled) back. A keyword rule cannot be judged before
/// the first message and leaves availability alone.
async fn chat_availability_follows_the_rules(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.demo_login("ada").await;
    let available = async || {
        let (status, body) = s
            .get("/api/v1/chat/widgets/demo/demo-widget?language=de", "")
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["available"].clone()
    };
    let _bruno = ready(&s, "bruno").await;
    assert_eq!(
        available().await,
        true,
        "Bruno serves the widget's German chats"
    );

    let nobody = s
        .create("/api/v1/queues", &admin, json!({ "name": "Nobody's" }))
        .await;
    s.create(
        "/api/v1/routing-rules",
        &admin,
        json!({ "name": "offers", "position": 1, "channel": "chat", "keywords": "angebot", "queue_id": nobody }),
    )
    .await;
    assert_eq!(
        available().await,
        true,
        "a keyword rule waits for the words"
    );
    let all_chats = s
        .create(
            "/api/v1/routing-rules",
            &admin,
            json!({ "name": "all chats", "position": 2, "channel": "chat", "hours": ALWAYS, "queue_id": nobody }),
        )
        .await;
    assert_eq!(available().await, false, "chats go where nobody serves");
    let (status, _) = s
        .patch(
            &format!("/api/v1/routing-rules/{all_chats}"),
            &admin,
            json!({ "enabled": 0 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(available().await, true);
    s.stop().await;
}

/// A phone number without a queue of its own is refused (480) — until a rule gives its calls
/// one: then they are answered and wait there.
async fn a_rule_gives_a_number_without_a_queue_its_calls(db: Db) {
    let s = TestServer::start_with(db, |c| trunk::configure(c, None)).await;
    let admin = s.demo_login("ada").await;
    let support_de = queue(&s, &admin, "Support%20DE").await;
    let (_, phones) = s.get("/api/v1/service-addresses?kind=phone", &admin).await;
    let spare = s
        .create(
            "/api/v1/service-addresses",
            &admin,
            json!({ "kind": "phone", "address": "+4930777", "mailbox_id": phones["items"][0]["mailbox_id"] }),
        )
        .await;
    let mut caller = Phone::new(trunk::TRUNK_IP, s.sip_udp()).await;
    match caller.call("+4930777").await {
        Err(refused) => assert_eq!(refused.status_code.code(), 480, "{refused}"),
        Ok(_) => panic!("a number without a queue answered"),
    }

    s.create(
        "/api/v1/routing-rules",
        &admin,
        json!({ "name": "spare line", "service_address_id": spare, "queue_id": support_de }),
    )
    .await;
    let mut bruno = ready(&s, "bruno").await;
    let mut phone = Phone::new("127.0.0.1", s.sip_udp()).await;
    phone.register("bruno", trunk::SIP_PASSWORD, None).await;
    let leg = match caller.call("+4930777").await {
        Ok(leg) => leg,
        Err(refused) => panic!("the rule's queue takes the call: {refused}"),
    };
    let offer = bruno
        .expect_where("offer", |f| f["channel"] == "call")
        .await;
    assert_eq!(offer["queue"], support_de, "{offer}");
    let invite = phone.request(Method::Invite).await;
    phone.respond(&invite, 180, "ring", false).await;
    assert_eq!(caller.bye(&leg).await, 200);
    phone.cancelled(&invite).await;
    s.stop().await;
}

on_both_backends!(
    a_rule_gives_a_number_without_a_queue_its_calls,
    routing_rules_pick_the_queue,
    hours_follow_the_tenant_time_zone,
    chat_availability_follows_the_rules
);

//! Website chat end to end over real websockets: a visitor on `/ws/chat`, agents and
//! supervisors on `/ws/agent`, against both stores. The demo tenant's widget `demo-widget`
//! routes German chats to "Support DE" (Bruno), English ones to "Support EN".

mod common;

use common::console::Console;
use common::feed::{agent_of, queue_of, Feed};
use common::visitor::Visitor;
use common::{eventually, Db, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const GERMAN: &str = "Guten Tag, ich habe eine Frage zu meiner Rechnung vom letzten Monat.";
const ENGLISH: &str = "Hello, I have a question about the invoice you sent me last month.";

/// An agent's console, logged in and ready.
async fn ready(s: &TestServer, user: &str) -> (Console, i64) {
    let token = s.demo_login(user).await;
    let (_, me) = s.get("/api/v1/me", &token).await;
    let mut console = Console::connect(s, &token).await;
    console.ready().await;
    (console, me["id"].as_i64().expect("user id"))
}

/// Waits for the chat offer, accepts it, and returns the interaction with the transcript the
/// agent got on joining.
async fn accept_chat(console: &mut Console) -> (u64, Value) {
    let offer = console
        .expect_where("offer", |f| f["channel"] == "chat")
        .await;
    let interaction = offer["interaction"].as_u64().expect("interaction");
    console
        .ok(json!({ "type": "offer.accept", "interaction": interaction }))
        .await;
    let transcript = console
        .expect_where("chat.transcript", |f| f["interaction"] == interaction)
        .await;
    (interaction, transcript)
}

/// Olga's German message through the demo widget's offline form; the ticket's interaction,
/// once `agent` is offered it as an email.
async fn offline_ticket(s: &TestServer, agent: &mut Console) -> i64 {
    let (status, created) = s
        .post(
            "/api/v1/chat/widgets/demo/demo-widget/offline",
            "",
            json!({ "name": "Olga", "email": "olga@example.com", "message": GERMAN }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let interaction = created["interaction"].as_i64().expect("interaction");
    let offer = agent
        .expect_where("offer", |f| f["interaction"] == interaction)
        .await;
    assert_eq!(offer["channel"], "email");
    interaction
}

fn texts(transcript: &Value) -> Vec<String> {
    transcript["messages"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn a_german_visitor_chats_with_the_german_speaking_agent(db: Db) {
    let s = TestServer::start(db).await;
    let (chloe, _) = ready(&s, "chloe").await;
    let (mut bruno, _) = ready(&s, "bruno").await;
    let mut vera = Visitor::start(
        &s,
        json!({ "language": "de-DE", "email": "vera@example.com" }),
    )
    .await;
    vera.ws
        .expect_where("chat.status", |f| f["status"] == "new")
        .await;
    let stored = vera.say("v-1", GERMAN).await;
    // Stored before acknowledged: the ack's message is already readable through the API.
    let admin = s.demo_login("ada").await;
    let (status, message) = s
        .get(&format!("/api/v1/messages/{}", stored["id"]), &admin)
        .await;
    assert_eq!(status, StatusCode::OK, "{message}");
    assert_eq!(message["body"], GERMAN);
    assert_eq!(message["direction"], "in");

    let (interaction, transcript) = accept_chat(&mut bruno).await;
    assert_eq!(texts(&transcript), [GERMAN]);
    let (_, row) = s
        .get(&format!("/api/v1/interactions/{interaction}"), &admin)
        .await;
    assert_eq!(row["channel"], "chat");
    assert_eq!(row["language"], "de");
    let screen_pop = bruno
        .seen
        .iter()
        .find(|f| f["type"] == "customer.screen_pop")
        .expect("a screen pop came with the offer");
    assert_eq!(screen_pop["identities"][0]["value"], "vera@example.com");

    vera.ws
        .expect_where("chat.joined", |f| f["name"] == "Bruno Becker")
        .await;
    bruno
        .ok(json!({ "type": "chat.send", "interaction": interaction, "text": "Gerne, worum geht es?", "client_id": "b-1" }))
        .await;
    bruno
        .expect_where("chat.ack", |f| f["client_id"] == "b-1")
        .await;
    let heard = vera.hears("Gerne, worum geht es?").await;
    assert_eq!(heard["name"], "Bruno Becker");
    vera.frame(json!({ "type": "chat.typing", "on": true }))
        .await;
    bruno
        .expect_where("chat.typing", |f| {
            f["interaction"] == interaction && f["on"] == true
        })
        .await;
    vera.frame(json!({ "type": "chat.read", "up_to": heard["id"] }))
        .await;
    bruno
        .expect_where("chat.read", |f| f["up_to"] == heard["id"])
        .await;

    assert!(
        chloe.seen.iter().all(|f| f["type"] != "offer"),
        "the French agent was never offered the German chat"
    );
    bruno
        .ok(json!({ "type": "chat.end", "interaction": interaction }))
        .await;
    vera.ws
        .expect_where("chat.ended", |f| f["reason"] == "agent")
        .await;
    assert_eq!(vera.ws.closed().await, Some(1000));
    bruno.expect("interaction.ended").await;
    s.stop().await;
}

async fn a_reconnecting_visitor_gets_the_transcript_and_resends_count_once(db: Db) {
    let s = TestServer::start(db).await;
    let (mut bruno, _) = ready(&s, "bruno").await;
    let mut vera = Visitor::start(&s, json!({ "language": "de" })).await;
    let first = vera.say("v-1", GERMAN).await;
    let (interaction, _) = accept_chat(&mut bruno).await;
    bruno
        .ok(json!({ "type": "chat.send", "interaction": interaction, "text": "Einen Moment bitte." }))
        .await;
    vera.hears("Einen Moment bitte.").await;
    let token = vera.token.clone();
    drop(vera);

    let mut again = Visitor::resume(&s, &token).await;
    let transcript = again.ws.expect("chat.transcript").await;
    assert_eq!(texts(&transcript), [GERMAN, "Einen Moment bitte."]);
    again
        .ws
        .expect_where("chat.status", |f| f["status"] == "connected")
        .await;
    // The widget did not see the first ack before the connection dropped, so it sends again.
    let resent = again.say("v-1", GERMAN).await;
    assert_eq!(
        resent["id"], first["id"],
        "the resend is the stored message"
    );
    let next = again.say("v-2", "Noch da?").await;
    bruno
        .expect_where("chat.message", |f| f["id"] == next["id"])
        .await;
    let german_copies = bruno
        .seen
        .iter()
        .filter(|f| f["type"] == "chat.message" && f["text"] == GERMAN)
        .count();
    assert_eq!(
        german_copies, 0,
        "Bruno got the first message once, in the transcript"
    );
    let admin = s.demo_login("ada").await;
    let (_, messages) = s
        .get(
            &format!("/api/v1/messages?interaction_id={interaction}"),
            &admin,
        )
        .await;
    assert_eq!(messages["items"].as_array().map(Vec::len), Some(3));
    s.stop().await;
}

/// Vera's German chat, Bruno's, with Alice invited (her transcript taken): Bruno, Alice and
/// her id, Vera, the interaction, and the transcript Alice got.
async fn conference(s: &TestServer) -> (Console, Console, i64, Visitor, u64, Value) {
    let (mut bruno, _) = ready(s, "bruno").await;
    let mut vera = Visitor::start(s, json!({ "language": "de" })).await;
    vera.say("v-1", GERMAN).await;
    let (interaction, _) = accept_chat(&mut bruno).await;
    let (mut alice, alice_id) = ready(s, "alice").await;
    bruno
        .ok(json!({ "type": "chat.invite", "interaction": interaction, "agent": alice_id }))
        .await;
    let joined = alice
        .expect_where("chat.transcript", |f| f["interaction"] == interaction)
        .await;
    (bruno, alice, alice_id, vera, interaction, joined)
}

async fn invite_makes_a_conference_and_transfer_hands_over_the_history(db: Db) {
    let s = TestServer::start(db).await;
    let (mut bruno, alice, alice_id, mut vera, interaction, joined) = conference(&s).await;
    assert_eq!(texts(&joined), [GERMAN]);
    // Alice's console reloads: the chat she is a guest in comes back to the new one by itself
    // (routing's `hello` knows nothing of it).
    drop(alice);
    let mut alice = Console::connect(&s, &s.demo_login("alice").await).await;
    let again = alice
        .expect_where("chat.transcript", |f| f["interaction"] == interaction)
        .await;
    assert_eq!(again["joined_as"], "guest", "{again}");
    assert_eq!(texts(&again), [GERMAN]);
    // Her old console's end logged her off (the guest chat is no routing work of hers).
    alice.ready().await;
    vera.ws
        .expect_where("chat.joined", |f| f["name"] == "Alice Andersen")
        .await;
    alice
        .ok(json!({ "type": "chat.send", "interaction": interaction, "text": "Ich helfe mit." }))
        .await;
    vera.hears("Ich helfe mit.").await;
    bruno
        .expect_where("chat.message", |f| f["text"] == "Ich helfe mit.")
        .await;
    // An invited colleague helps; ending the chat is Bruno's, who cannot just leave it.
    let refused = alice
        .command(json!({ "type": "chat.end", "interaction": interaction }))
        .await;
    assert_eq!(refused.last().expect("reply")["code"], "invited_guest");
    let refused = bruno
        .command(json!({ "type": "chat.leave", "interaction": interaction }))
        .await;
    assert_eq!(refused.last().expect("reply")["code"], "own_chat");
    alice
        .ok(json!({ "type": "chat.leave", "interaction": interaction }))
        .await;
    vera.ws
        .expect_where("chat.left", |f| f["name"] == "Alice Andersen")
        .await;

    // Transfer to Alice through routing: Bruno leaves, Alice accepts and gets everything.
    bruno
        .ok(json!({ "type": "interaction.transfer", "interaction": interaction, "to": { "target": "agent", "agent": alice_id } }))
        .await;
    vera.ws
        .expect_where("chat.left", |f| f["name"] == "Bruno Becker")
        .await;
    let (_, transcript) = accept_chat(&mut alice).await;
    assert_eq!(texts(&transcript), [GERMAN, "Ich helfe mit."]);
    vera.ws
        .expect_where("chat.joined", |f| f["name"] == "Alice Andersen")
        .await;
    let refused = bruno
        .command(json!({ "type": "chat.send", "interaction": interaction, "text": "still here?" }))
        .await;
    assert_eq!(refused.last().expect("reply")["code"], "not_participant");
    s.stop().await;
}

/// A chat sent back to its queue while an invited colleague stays in it, then ended by the
/// visitor, is let go by routing too: no agent is offered a chat that is over.
async fn a_chat_ended_while_queued_with_a_guest_in_it_is_let_go(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.demo_login("ada").await;
    let (mut bruno, _alice, _, mut vera, interaction, _) = conference(&s).await;
    let url = format!("/api/v1/interactions/{interaction}");
    let (_, row) = s.get(&url, &admin).await;
    bruno
        .ok(json!({ "type": "interaction.transfer", "interaction": interaction, "to": { "target": "queue", "queue": row["queue_id"] } }))
        .await;
    vera.ws
        .expect_where("chat.left", |f| f["name"] == "Bruno Becker")
        .await;
    vera.frame(json!({ "type": "chat.end" })).await;
    vera.ws
        .expect_where("chat.ended", |f| f["reason"] == "visitor")
        .await;
    eventually("the ended chat let go by routing", || async {
        let (_, row) = s.get(&url, &admin).await;
        (row["state"] == "abandoned").then_some(())
    })
    .await;
    s.stop().await;
}

async fn a_supervisor_monitors_invisibly_whispers_and_takes_over(db: Db) {
    let s = TestServer::start(db).await;
    let (mut bruno, _) = ready(&s, "bruno").await;
    let mut vera = Visitor::start(&s, json!({ "language": "de" })).await;
    vera.say("v-1", GERMAN).await;
    let (interaction, _) = accept_chat(&mut bruno).await;

    let refused = bruno
        .command(json!({ "type": "chat.monitor", "interaction": interaction }))
        .await;
    assert_eq!(refused.last().expect("reply")["code"], "forbidden");

    let sam_token = s.demo_login("sam").await;
    let mut sam = Console::connect(&s, &sam_token).await;
    sam.ok(json!({ "type": "chat.monitor", "interaction": interaction }))
        .await;
    let transcript = sam
        .expect_where("chat.transcript", |f| f["interaction"] == interaction)
        .await;
    assert_eq!(texts(&transcript), [GERMAN]);
    vera.say("v-2", "Sind Sie noch da?").await;
    sam.expect_where("chat.message", |f| f["text"] == "Sind Sie noch da?")
        .await;
    sam.ok(json!({ "type": "chat.send", "interaction": interaction, "text": "Biete die Gutschrift an." }))
        .await;
    let whisper = bruno
        .expect_where("chat.message", |f| f["text"] == "Biete die Gutschrift an.")
        .await;
    assert_eq!(whisper["whisper"], true);
    // Sam's console reconnects (a reload): the chat brings the whole transcript back by itself,
    // saying that Sam monitors it; monitoring again does too.
    drop(sam);
    let mut sam = Console::connect(&s, &sam_token).await;
    let back = sam
        .expect_where("chat.transcript", |f| f["interaction"] == interaction)
        .await;
    assert_eq!(back["joined_as"], "monitor", "{back}");
    sam.ok(json!({ "type": "chat.monitor", "interaction": interaction }))
        .await;
    let again = sam
        .expect_where("chat.transcript", |f| f["interaction"] == interaction)
        .await;
    for transcript in [&back, &again] {
        assert_eq!(
            texts(transcript),
            [GERMAN, "Sind Sie noch da?", "Biete die Gutschrift an."]
        );
    }
    // Bruno's next message is a barrier: everything before it has reached the visitor.
    bruno
        .ok(json!({ "type": "chat.send", "interaction": interaction, "text": "Ja, ich bin da." }))
        .await;
    vera.hears("Ja, ich bin da.").await;
    let leaked: Vec<_> = vera
        .ws
        .seen
        .iter()
        .filter(|f| f.to_string().contains("Sam") || f.to_string().contains("Gutschrift"))
        .collect();
    assert!(
        leaked.is_empty(),
        "the visitor saw the supervisor: {leaked:?}"
    );

    sam.ok(json!({ "type": "chat.takeover", "interaction": interaction }))
        .await;
    vera.ws
        .expect_where("chat.joined", |f| f["name"] == "Sam Supervisor")
        .await;
    sam.ok(json!({ "type": "chat.send", "interaction": interaction, "text": "Ich übernehme." }))
        .await;
    vera.hears("Ich übernehme.").await;

    // A team lead watches their own team's chats only (Bruno is in Team Berlin).
    let admin = s.demo_login("ada").await;
    let (_, teams) = s.get("/api/v1/teams", &admin).await;
    let berlin = teams["items"][0]["id"].clone();
    let hamburg = s
        .create("/api/v1/teams", &admin, json!({ "name": "Team Hamburg" }))
        .await;
    for (lead, team, code) in [
        ("tl-hamburg", json!(hamburg), Some("forbidden")),
        ("tl-berlin", berlin, None),
    ] {
        let (_, token) = s
            .demo_user(
                &admin,
                lead,
                json!({ "role": "team_lead", "team_id": team }),
            )
            .await;
        let mut console = Console::connect(&s, &token).await;
        let reply = console
            .command(json!({ "type": "chat.monitor", "interaction": interaction }))
            .await;
        let reply = reply.last().expect("reply");
        assert_eq!(reply["code"].as_str(), code, "{lead}: {reply}");
    }
    s.stop().await;
}

/// A team lead watches their own team's chats only: a transfer, which may take the chat out of
/// the team, ends their monitoring — their console gets `chat.left` naming them, and the chat
/// takes no more of their commands. A supervisor demoted meanwhile is let go when their console
/// comes back.
async fn monitoring_ends_when_its_reach_does(db: Db) {
    let s = TestServer::start(db).await;
    let (mut bruno, _) = ready(&s, "bruno").await;
    let mut vera = Visitor::start(&s, json!({ "language": "de" })).await;
    vera.say("v-1", GERMAN).await;
    let (interaction, _) = accept_chat(&mut bruno).await;
    let admin = s.demo_login("ada").await;
    let (_, teams) = s.get("/api/v1/teams", &admin).await;
    let berlin = teams["items"][0]["id"].clone();
    let (_, token) = s
        .demo_user(
            &admin,
            "tl-berlin",
            json!({ "role": "team_lead", "team_id": berlin }),
        )
        .await;
    let mut lead = Console::connect(&s, &token).await;
    let (sam_id, sam_token) = s
        .demo_user(&admin, "sam-2", json!({ "role": "supervisor" }))
        .await;
    let mut sam = Console::connect(&s, &sam_token).await;
    for monitor in [&mut lead, &mut sam] {
        monitor
            .ok(json!({ "type": "chat.monitor", "interaction": interaction }))
            .await;
        monitor
            .expect_where("chat.transcript", |f| f["interaction"] == interaction)
            .await;
    }

    let (_, row) = s
        .get(&format!("/api/v1/interactions/{interaction}"), &admin)
        .await;
    bruno
        .ok(json!({ "type": "interaction.transfer", "interaction": interaction, "to": { "target": "queue", "queue": row["queue_id"] } }))
        .await;
    let left = lead
        .expect_where("chat.left", |f| f["interaction"] == interaction)
        .await;
    assert_eq!(left["name"], "tl-berlin", "{left}");
    let refused = lead
        .command(json!({ "type": "chat.send", "interaction": interaction, "text": "Noch da?" }))
        .await;
    assert_eq!(refused.last().expect("reply")["code"], "not_participant");

    // The supervisor stays through the transfer, until demoted: the console closes, and the
    // one that comes back is let go.
    sam.ok(json!({ "type": "chat.send", "interaction": interaction, "text": "Ich bleibe." }))
        .await;
    let (status, body) = s
        .patch(
            &format!("/api/v1/users/{sam_id}"),
            &admin,
            json!({ "role": "agent" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(sam.closed().await.is_some(), "demoted, the console closes");
    let mut sam = Console::connect(&s, &sam_token).await;
    sam.expect_where("chat.left", |f| f["interaction"] == interaction)
        .await;
    let refused = sam
        .command(json!({ "type": "chat.send", "interaction": interaction, "text": "Ich bleibe." }))
        .await;
    assert_eq!(refused.last().expect("reply")["code"], "not_participant");
    s.stop().await;
}

async fn availability_follows_language_and_the_offline_form_makes_a_ticket(db: Db) {
    let s = TestServer::start(db).await;
    let info = |language: &'static str| {
        let s = &s;
        async move {
            let (status, body) = s
                .get(
                    &format!("/api/v1/chat/widgets/demo/demo-widget?language={language}"),
                    "",
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body
        }
    };
    let de = info("de-AT").await;
    assert_eq!(de["language"], "de");
    assert_eq!(de["available"], false, "nobody is ready");
    assert_eq!(de["title"], "Demo GmbH support");
    assert_eq!(de["prechat"], json!(["name", "email", "topic"]));
    let (mut bruno, _) = ready(&s, "bruno").await;
    assert_eq!(info("de").await["available"], true);
    assert_eq!(info("fr").await["available"], false, "Chloé is not ready");
    assert_eq!(
        info("ja").await["language"],
        "en",
        "unknown languages fall back to the mailbox's"
    );
    let (status, _) = s.get("/api/v1/chat/widgets/demo/nope", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s.get("/api/v1/chat/widgets/nobody/demo-widget", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let interaction = offline_ticket(&s, &mut bruno).await;
    let admin = s.demo_login("ada").await;
    let (_, messages) = s
        .get(
            &format!("/api/v1/messages?interaction_id={interaction}"),
            &admin,
        )
        .await;
    assert_eq!(messages["items"][0]["body"], GERMAN);
    let (status, refused) = s
        .post(
            "/api/v1/chat/widgets/demo/demo-widget/offline",
            "",
            json!({ "email": "not-an-address", "message": "hi" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    s.stop().await;
}

async fn bad_input_gets_clear_errors_and_hurts_no_other_chat(db: Db) {
    let s = TestServer::start(db).await;
    let (mut diego, _) = ready(&s, "diego").await;
    let mut good = Visitor::start(&s, json!({ "language": "en" })).await;
    good.say("g-1", ENGLISH).await;
    let (interaction, _) = accept_chat(&mut diego).await;

    let mut unknown = Console::open(&s, "/ws/chat").await;
    unknown
        .send_raw(Message::Text(
            json!({ "type": "chat.start", "tenant": "demo", "widget": "nope" })
                .to_string()
                .into(),
        ))
        .await;
    assert_eq!(unknown.expect("error").await["code"], "unknown_widget");
    assert_eq!(unknown.closed().await, Some(4404));

    let mut forged = Visitor::ask_to_resume(&s, "00ff").await;
    assert_eq!(forged.expect("error").await["code"], "unknown_session");
    assert_eq!(forged.closed().await, Some(4404));

    let mut noisy = Visitor::start(&s, json!({})).await;
    noisy.ws.send_raw(Message::Text("{not json".into())).await;
    assert_eq!(noisy.ws.expect("error").await["code"], "malformed_json");
    noisy.frame(json!({ "type": "chat.dance" })).await;
    assert_eq!(noisy.ws.expect("error").await["code"], "invalid_command");
    noisy
        .frame(json!({ "type": "chat.send", "text": "   " }))
        .await;
    assert_eq!(noisy.ws.expect("error").await["code"], "empty_message");
    // A client_id too long to keep whole is refused, not cut short: two ids alike in their
    // first 64 characters would be one message sent twice.
    let long = format!("{}-first", "m".repeat(64));
    noisy
        .frame(json!({ "type": "chat.send", "client_id": long, "text": ENGLISH }))
        .await;
    let refused = noisy.ws.expect("error").await;
    assert_eq!(refused["code"], "invalid_command", "{refused}");
    assert_eq!(refused["client_id"], long.as_str());
    // So is one PostgreSQL could not store (a NUL), which would fail its batch's commit.
    noisy
        .frame(json!({ "type": "chat.send", "client_id": "a\u{0}b", "text": ENGLISH }))
        .await;
    let refused = noisy.ws.expect("error").await;
    assert_eq!(refused["code"], "invalid_command", "{refused}");
    assert_eq!(refused["client_id"], "a\u{0}b");
    // A flood: the burst passes, then messages are refused until tokens come back.
    for n in 0..12 {
        noisy
            .frame(json!({ "type": "chat.send", "client_id": format!("f-{n}"), "text": ENGLISH }))
            .await;
    }
    noisy
        .ws
        .expect_where("error", |f| f["code"] == "rate_limited")
        .await;
    noisy
        .ws
        .send_raw(Message::Text("x".repeat(20_000).into()))
        .await;
    assert_eq!(
        noisy.ws.closed().await,
        Some(1009),
        "an oversized frame closes"
    );

    // The good chat carries on.
    good.say("g-2", "Are you still there?").await;
    diego
        .expect_where("chat.message", |f| f["text"] == "Are you still there?")
        .await;
    let refused = diego
        .command(json!({ "type": "chat.send", "interaction": 999_999, "text": "hi" }))
        .await;
    assert_eq!(refused.last().expect("reply")["code"], "unknown_chat");
    let refused = diego
        .command(json!({ "type": "chat.send", "interaction": interaction }))
        .await;
    assert_eq!(refused.last().expect("reply")["code"], "invalid_command");
    // An agent's client_id is held to the visitor's rules.
    for id in ["m".repeat(65), "a\u{0}b".to_owned()] {
        let refused = diego
            .command(json!({ "type": "chat.send", "interaction": interaction, "text": "hi", "client_id": id }))
            .await;
        assert_eq!(refused.last().expect("reply")["code"], "invalid_command");
    }
    s.stop().await;
}

/// A resume of `token` on a new socket: refused as `chat_ended`, the socket closed 4410.
async fn resuming_is_refused_as_ended(s: &TestServer, token: &str) {
    let mut late = Visitor::ask_to_resume(s, token).await;
    assert_eq!(late.expect("error").await["code"], "chat_ended");
    assert_eq!(late.closed().await, Some(4410));
}

async fn a_visitor_ends_the_chat_and_cannot_resume_it(db: Db) {
    let s = TestServer::start(db).await;
    let (mut diego, _) = ready(&s, "diego").await;
    let mut vera = Visitor::start(&s, json!({ "language": "en" })).await;
    vera.say("v-1", ENGLISH).await;
    let (interaction, _) = accept_chat(&mut diego).await;
    vera.frame(json!({ "type": "chat.end" })).await;
    vera.ws
        .expect_where("chat.ended", |f| f["reason"] == "visitor")
        .await;
    assert_eq!(vera.ws.closed().await, Some(1000));
    // The chat's frames and routing's events are two streams: either may come first.
    let this = |f: &Value| f["interaction"] == interaction;
    diego.expect_where("chat.ended", this).await;
    if !diego
        .seen
        .iter()
        .any(|f| f["type"] == "interaction.ended" && this(f))
    {
        diego.expect_where("interaction.ended", this).await;
    }

    resuming_is_refused_as_ended(&s, &vera.token).await;

    // Had the chat's end not been stored (the database could not take it), its row would still
    // be open, its interaction finished: resuming it ends it instead of reviving a chat nobody
    // would answer.
    use sqlx::Connection;
    let mut db = sqlx::AnyConnection::connect(s.database_url())
        .await
        .expect("connects");
    sqlx::query("UPDATE chat_sessions SET state = 'open' WHERE interaction_id = $1")
        .bind(interaction as i64)
        .execute(&mut db)
        .await
        .expect("the chat's end is undone");
    resuming_is_refused_as_ended(&s, &vera.token).await;
    let state: String =
        sqlx::query_scalar("SELECT state FROM chat_sessions WHERE interaction_id = $1")
            .bind(interaction as i64)
            .fetch_one(&mut db)
            .await
            .expect("the chat's row");
    assert_eq!(state, "ended");
    s.stop().await;
}

async fn open_chats_come_back_after_a_restart(db: Db) {
    let s = TestServer::start(db).await;
    let mut vera = Visitor::start(&s, json!({ "language": "de" })).await;
    vera.say("v-1", GERMAN).await;
    let token = vera.token.clone();
    let s = s.restart().await;
    assert!(
        vera.ws.closed().await.is_some(),
        "stopping closes the visitor's socket"
    );

    let mut back = Visitor::resume(&s, &token).await;
    assert_eq!(texts(&back.ws.expect("chat.transcript").await), [GERMAN]);
    let (mut bruno, _) = ready(&s, "bruno").await;
    let (interaction, transcript) = accept_chat(&mut bruno).await;
    assert_eq!(texts(&transcript), [GERMAN]);
    back.ws
        .expect_where("chat.joined", |f| f["name"] == "Bruno Becker")
        .await;
    bruno
        .ok(json!({ "type": "chat.send", "interaction": interaction, "text": "Da bin ich." }))
        .await;
    back.hears("Da bin ich.").await;
    s.stop().await;
}

/// A chat whose interaction routing finished while vacd stopped (the chat row still open) is
/// ended at the start, not brought back to wait for ever.
async fn a_chat_finished_in_routing_at_a_stop_is_not_restored(db: Db) {
    let s = TestServer::start(db).await;
    let mut vera = Visitor::start(&s, json!({ "language": "de" })).await;
    vera.say("v-1", GERMAN).await;
    let token = vera.token.clone();
    let admin = s.demo_login("ada").await;
    let (_, chats) = s.get("/api/v1/interactions?channel=chat", &admin).await;
    let interaction = chats["items"][0]["id"]
        .as_i64()
        .expect("the chat's interaction");
    let queue = chats["items"][0]["queue_id"].as_i64().expect("its queue");
    let tenant = s
        .store()
        .tenant_by_name("demo")
        .await
        .expect("tenant read")
        .expect("demo")
        .id;
    // Routing's end of it reached the log; the chat's own end did not (vacd stopped between).
    s.store()
        .record_outputs(&[vacd::store::OutputBatch {
            tenant,
            at: std::time::SystemTime::now(),
            outputs: vec![vacd_actors::Output::Abandoned {
                interaction: vacd_actors::InteractionId(interaction as u64),
                queue: vacd_actors::QueueId(queue as u64),
                waited: std::time::Duration::from_secs(1),
            }],
        }])
        .await
        .expect("recorded");
    let s = s.restart().await;
    assert!(vera.ws.closed().await.is_some());
    resuming_is_refused_as_ended(&s, &token).await;
    s.stop().await;
}

async fn an_idle_visitor_is_warned_and_then_let_go(db: Db) {
    let s = TestServer::start_with(db, |c| {
        c.chat.idle_warning_seconds = 1;
        c.chat.idle_timeout_seconds = 2;
    })
    .await;
    let (mut diego, _) = ready(&s, "diego").await;
    let mut vera = Visitor::start(&s, json!({ "language": "en" })).await;
    vera.say("v-1", ENGLISH).await;
    let (interaction, _) = accept_chat(&mut diego).await;
    let warning = vera.ws.expect("chat.idle_warning").await;
    assert!(warning["ends_in_ms"].as_u64().is_some_and(|ms| ms <= 1000));
    vera.ws
        .expect_where("chat.ended", |f| f["reason"] == "idle")
        .await;
    diego
        .expect_where("interaction.ended", |f| f["interaction"] == interaction)
        .await;
    s.stop().await;
}

/// A visitor's connection that answers nothing (a phone that changed networks: the socket is
/// half open, nothing closes it) is closed after two pings, so that its chat sees the visitor
/// gone and ends after the idle timeout instead of waiting in its queue for ever.
async fn a_silent_visitor_connection_is_let_go(db: Db) {
    let s = TestServer::start_with(db, |c| {
        c.chat.ping_interval_seconds = 1;
        c.chat.idle_warning_seconds = 1;
        c.chat.idle_timeout_seconds = 1;
    })
    .await;
    let mut vera = Visitor::start(&s, json!({ "language": "de" })).await;
    vera.say("v-1", GERMAN).await;
    // From here the visitor's socket is never read again, so no ping is answered.
    eventually("the silent visitor's chat closed", || async {
        let chat = s.store().chat_by_id(vera.chat).await.expect("chat");
        chat.filter(|c| !c.open)
    })
    .await;
    drop(vera);
    s.stop().await;
}

/// A chat nobody is in — no agent, and no connection of its visitor — ends after the idle
/// timeout and leaves its queue; a visitor's connections beyond eight close the oldest.
async fn a_chat_nobody_is_in_ends_and_tabs_are_bounded(db: Db) {
    let s = TestServer::start_with(db, |c| {
        c.chat.idle_warning_seconds = 1;
        c.chat.idle_timeout_seconds = 1;
    })
    .await;
    let admin = s.demo_login("ada").await;
    let (_, queues) = s.get("/api/v1/queues?name=Support%20DE", &admin).await;
    let queue = queues["items"][0]["id"].as_i64().expect("Support DE");
    let sam = s.demo_login("sam").await;
    let mut feed = Feed::connect(&s, &sam).await;
    let mut vera = Visitor::start(&s, json!({ "language": "de" })).await;
    let mut tabs = Vec::new();
    for _ in 0..8 {
        tabs.push(Visitor::resume(&s, &vera.token).await);
    }
    vera.ws.expect("chat.replaced").await;
    assert_eq!(
        vera.ws.closed().await,
        Some(4409),
        "the oldest tab is let go, told not to come straight back"
    );
    let mut tabs = tabs.into_iter();
    let mut last = tabs.next_back().expect("a tab");
    last.say("v-1", GERMAN).await;
    feed.until("the chat waiting", |f| {
        queue_of(f, queue).is_some_and(|q| q["waiting"] == 1)
    })
    .await;
    for mut tab in tabs {
        tab.ws.send_raw(Message::Close(None)).await;
        tab.ws.closed().await;
    }
    last.ws.send_raw(Message::Close(None)).await;
    last.ws.closed().await;

    feed.until("the chat nobody is in gone from its queue", |f| {
        queue_of(f, queue).is_some_and(|q| q["waiting"] == 0)
    })
    .await;
    // Routing lets go of the chat first, then its row is closed.
    let chat = eventually("the chat's row closed", || async {
        let chat = s.store().chat_by_id(vera.chat).await.expect("chat");
        chat.filter(|c| !c.open)
    })
    .await;
    let interaction = chat.interaction.expect("its interaction");
    s.routing().flushed().await;
    let (_, events) = s
        .get(
            &format!("/api/v1/events?kind=routing.abandoned&interaction_id={interaction}"),
            &admin,
        )
        .await;
    assert_eq!(events["total"], 1, "it left its queue: {events}");
    s.stop().await;
}

/// One address opens one chat (or sends one offline form), sends two messages and reads the
/// widget twice per second here; past that it is refused with `rate_limited`.
async fn one_address_is_limited_in_new_chats_and_messages(db: Db) {
    let s = TestServer::start_with(db, |c| {
        c.chat.starts_per_second_per_ip = 1;
        c.chat.messages_per_second_per_ip = 2;
        c.chat.widget_reads_per_second_per_ip = 2;
    })
    .await;
    for _ in 0..2 {
        let (status, body) = s.get("/api/v1/chat/widgets/demo/demo-widget", "").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = s.get("/api/v1/chat/widgets/demo/demo-widget", "").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    let mut first = Visitor::start(&s, json!({})).await;
    let mut third = Console::open(&s, "/ws/chat").await;
    third
        .send_raw(Message::Text(
            json!({ "type": "chat.start", "tenant": "demo", "widget": "demo-widget" })
                .to_string()
                .into(),
        ))
        .await;
    assert_eq!(third.expect("error").await["code"], "rate_limited");
    assert_eq!(third.closed().await, Some(4429));
    // The offline form starts a contact too: within the same second it is refused.
    let form = s
        .post(
            "/api/v1/chat/widgets/demo/demo-widget/offline",
            "",
            json!({ "email": "olga@example.test", "message": ENGLISH }),
        )
        .await;
    common::assert_error(&form, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    for n in 0..3 {
        first
            .frame(json!({ "type": "chat.send", "client_id": format!("m-{n}"), "text": ENGLISH }))
            .await;
    }
    let refused = first.ws.expect("error").await;
    assert_eq!(refused["code"], "rate_limited");
    assert_eq!(
        refused["client_id"], "m-2",
        "the third message in a second is refused"
    );
    s.stop().await;
}

/// Behind a trusted reverse proxy each visitor has the per-source limit of the address the
/// proxy names in `X-Forwarded-For`; from anywhere else the header is ignored (anyone can
/// write it).
async fn behind_a_trusted_proxy_each_visitor_has_its_own_limit(db: Db) {
    let form = |s: &TestServer, forwarded: &'static str| {
        s.http
            .post(format!(
                "{}/api/v1/chat/widgets/demo/demo-widget/offline",
                s.base
            ))
            .header("x-forwarded-for", forwarded)
            .json(&json!({ "email": "olga@example.test", "message": ENGLISH }))
            .send()
    };
    let limited = |c: &mut vacd::config::Config| c.chat.starts_per_second_per_ip = 1;
    // The test's connections come from 127.0.0.1, here the proxy.
    let s = TestServer::start_with(db, |c| {
        limited(c);
        c.http.trusted_proxies =
            vec![vacd::config::Network::try_from("127.0.0.0/8".to_owned()).expect("network")];
    })
    .await;
    for client in ["203.0.113.1", "203.0.113.2", "198.51.100.7, 203.0.113.3"] {
        let sent = form(&s, client).await.expect("form sent");
        assert_eq!(sent.status(), StatusCode::CREATED, "{client}");
    }
    s.stop().await;

    let s = TestServer::start_with(db, limited).await;
    let first = form(&s, "203.0.113.1").await.expect("form sent");
    assert_eq!(first.status(), StatusCode::CREATED);
    let second = form(&s, "203.0.113.2").await.expect("form sent");
    assert_eq!(
        second.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "an untrusted X-Forwarded-For changes nothing"
    );
    s.stop().await;
}

/// The supervisors' feed follows a chat and then a ticket through queue and agent.
async fn the_supervisor_feed_follows_a_chat_and_a_ticket(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.demo_login("ada").await;
    let (_, queues) = s.get("/api/v1/queues?name=Support%20DE", &admin).await;
    let queue = queues["items"][0]["id"].as_i64().expect("Support DE");
    let sam = s.demo_login("sam").await;
    let mut feed = Feed::connect(&s, &sam).await;
    let mut vera = Visitor::start(&s, json!({ "language": "de" })).await;
    vera.say("v-1", GERMAN).await;
    feed.until("the chat waiting", |f| {
        queue_of(f, queue).is_some_and(|q| q["waiting"] == 1)
    })
    .await;
    let (mut bruno, bruno_id) = ready(&s, "bruno").await;
    let (interaction, _) = accept_chat(&mut bruno).await;
    feed.until("Bruno chatting", |f| {
        agent_of(f, bruno_id).is_some_and(|a| {
            a["work"][0]["interaction"] == interaction && a["work"][0]["kind"] == "chat"
        })
    })
    .await;
    bruno
        .ok(json!({ "type": "chat.end", "interaction": interaction }))
        .await;
    feed.until("today's answered chat", |f| {
        queue_of(f, queue).is_some_and(|q| q["today"]["answered"] == 1 && q["waiting"] == 0)
    })
    .await;
    bruno
        .ok(json!({ "type": "wrapup.done", "interaction": interaction }))
        .await;

    // A ticket (the widget's offline form) moves through the same floor.
    let ticket = offline_ticket(&s, &mut bruno).await;
    bruno
        .ok(json!({ "type": "offer.accept", "interaction": ticket }))
        .await;
    feed.until("Bruno on the ticket", |f| {
        agent_of(f, bruno_id).is_some_and(|a| {
            a["work"][0]["interaction"] == ticket && a["work"][0]["kind"] == "ticket"
        })
    })
    .await;
    s.stop().await;
}

async fn agents_see_their_colleagues_by_name_only(db: Db) {
    let s = TestServer::start(db).await;
    let bruno = s.demo_login("bruno").await;
    let (status, colleagues) = s.get("/api/v1/colleagues", &bruno).await;
    assert_eq!(status, StatusCode::OK, "{colleagues}");
    let alice = colleagues["items"]
        .as_array()
        .and_then(|items| items.iter().find(|u| u["display_name"] == "Alice Andersen"))
        .expect("Alice is listed");
    assert_eq!(alice["role"], "agent");
    assert!(alice.get("username").is_none() && alice.get("sip_username").is_none());
    let (status, _) = s.get("/api/v1/colleagues", "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    s.stop().await;
}

/// The visitor asks for the transcript: it goes by email (SMTP, to a real receiver) from the
/// widget mailbox's address, with the visible messages and without the agents' whispers.
async fn the_visitor_gets_the_transcript_by_email(db: Db) {
    use common::mail::{self, Dovecot, SmtpReceiver};
    let dovecot = Dovecot::start().await;
    let smtp = SmtpReceiver::start().await;
    let account = mail::support_account(dovecot.imap_port, Some(&smtp));
    let s = TestServer::start_with(db, |c| {
        c.channels.poll_interval_ms = 100;
        c.channels.reload_interval_ms = 100;
        c.channels.accounts = vec![account];
    })
    .await;
    let (mut diego, _) = ready(&s, "diego").await;
    let mut vera =
        Visitor::start(&s, json!({ "language": "en", "email": "vera@example.com" })).await;
    vera.say("v-1", ENGLISH).await;
    let (interaction, _) = accept_chat(&mut diego).await;
    diego
        .ok(json!({ "type": "chat.send", "interaction": interaction, "text": "Only for colleagues", "whisper": true }))
        .await;
    diego
        .ok(json!({ "type": "chat.send", "interaction": interaction, "text": "It ships on Monday." }))
        .await;
    vera.hears("It ships on Monday.").await;
    mail::support_account_up(&s).await;
    vera.frame(json!({ "type": "chat.email_transcript" })).await;
    let sent = vera.ws.expect("chat.transcript_sent").await;
    assert_eq!(sent["email"], "vera@example.com");
    let mail = smtp
        .expect("the transcript", |m| m.raw.contains("It ships on Monday."))
        .await;
    assert!(
        mail.raw.contains("Vera Visitor: Hello, I have a question"),
        "{}",
        mail.raw
    );
    assert!(
        !mail.raw.contains("Only for colleagues"),
        "no whispers: {}",
        mail.raw
    );
    assert!(mail
        .header("To")
        .is_some_and(|to| to.contains("vera@example.com")));
    assert!(mail
        .header("From")
        .is_some_and(|f| f.contains("support@demo.vacd.test")));

    // A visitor who gave no address names one, which stays the chat's only one, and a chat
    // sends a transcript once an agent wrote in it, three at most: the company's mailbox is
    // nobody's way to mail anybody.
    let mut eve = Visitor::start(&s, json!({ "language": "en" })).await;
    eve.say("e-1", "Please mail me this").await;
    eve.frame(json!({ "type": "chat.email_transcript", "email": "eve@example.com" }))
        .await;
    let refused = eve.ws.expect("error").await;
    assert_eq!(refused["code"], "unanswered_chat", "{refused}");
    let (interaction, _) = accept_chat(&mut diego).await;
    diego
        .ok(json!({ "type": "chat.send", "interaction": interaction, "text": "Here it comes." }))
        .await;
    eve.hears("Here it comes.").await;
    for asked in ["eve@example.com", "victim@example.org", "other@example.net"] {
        eve.frame(json!({ "type": "chat.email_transcript", "email": asked }))
            .await;
        let sent = eve.ws.expect("chat.transcript_sent").await;
        assert_eq!(sent["email"], "eve@example.com");
    }
    eve.frame(json!({ "type": "chat.email_transcript", "email": "eve@example.com" }))
        .await;
    let refused = eve.ws.expect("error").await;
    assert_eq!(refused["code"], "rate_limited", "{refused}");

    // Asked from several tabs at once, each with another address: one address at most gets
    // mail (the others are refused while one is sent, or get it sent to that one).
    let mut tabs = vec![Visitor::start(&s, json!({ "language": "en" })).await];
    tabs[0].say("m-1", "Mail it everywhere").await;
    let (interaction, _) = accept_chat(&mut diego).await;
    diego
        .ok(json!({ "type": "chat.send", "interaction": interaction, "text": "Sure." }))
        .await;
    tabs[0].hears("Sure.").await;
    let token = tabs[0].token.clone();
    for _ in 0..3 {
        tabs.push(Visitor::resume(&s, &token).await);
    }
    let asks = tabs.iter_mut().enumerate().map(|(n, tab)| async move {
        let email = format!("tab{n}@example.org");
        tab.frame(json!({ "type": "chat.email_transcript", "email": email }))
            .await;
        loop {
            let frame = tab.ws.next().await.expect("the chat stays open");
            if frame["type"] == "chat.transcript_sent" || frame["type"] == "error" {
                return frame;
            }
        }
    });
    let answers = futures_util::future::join_all(asks).await;
    let mut addresses: Vec<&str> = answers
        .iter()
        .filter(|f| f["type"] == "chat.transcript_sent")
        .filter_map(|f| f["email"].as_str())
        .collect();
    addresses.dedup();
    assert_eq!(addresses.len(), 1, "{answers:?}");
    s.stop().await;
}

/// A chat command sent in the same write as the accept before it is carried out after the
/// accept (the websocket task sends routing commands on without waiting for them), and the
/// replies keep the order of the commands.
async fn accept_and_greet_in_one_write(db: Db) {
    let s = TestServer::start(db).await;
    let (mut bruno, _) = ready(&s, "bruno").await;
    let mut vera = Visitor::start(&s, json!({ "language": "de-DE" })).await;
    vera.ws
        .expect_where("chat.status", |f| f["status"] == "new")
        .await;
    vera.say("v-1", GERMAN).await;
    let offer = bruno
        .expect_where("offer", |f| f["channel"] == "chat")
        .await;
    let interaction = offer["interaction"].as_u64().expect("interaction");
    let (ids, frames) = bruno
        .together(&[
            json!({ "type": "offer.accept", "interaction": interaction }),
            json!({ "type": "chat.send", "interaction": interaction, "text": "Guten Tag!", "client_id": "b-1" }),
        ])
        .await;
    let replies: Vec<_> = frames
        .iter()
        .filter(|f| f["type"] == "ack" || f["type"] == "error")
        .map(|f| (f["id"].as_str(), f["type"].as_str()))
        .collect();
    assert_eq!(
        replies,
        [
            (Some(ids[0].as_str()), Some("ack")),
            (Some(ids[1].as_str()), Some("ack"))
        ],
        "{frames:?}"
    );
    assert_eq!(vera.hears("Guten Tag!").await["name"], "Bruno Becker");
    s.stop().await;
}

/// An anonymous visitor's browser keeps a key for the widget: its chats find one customer, so
/// the agent's screen pop shows the earlier ones; another browser is another customer; a key
/// that is no such key is refused.
async fn a_browsers_key_finds_the_anonymous_visitors_customer(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.demo_login("ada").await;
    let (here, there) = (
        "0123456789abcdef0123456789abcdef",
        "fedcba9876543210fedcba9876543210",
    );
    for (n, key) in [here, here, there].into_iter().enumerate() {
        let mut visitor = Visitor::start(&s, json!({ "visitor": key })).await;
        visitor
            .say(&format!("v-{n}"), "Hallo, ich bin es wieder.")
            .await;
    }
    let (_, chats) = s
        .get("/api/v1/interactions?channel=chat&limit=10", &admin)
        .await;
    let mut customers: Vec<(i64, i64)> = chats["items"]
        .as_array()
        .expect("the chats' interactions")
        .iter()
        .map(|i| {
            (
                i["id"].as_i64().expect("id"),
                i["customer_id"].as_i64().expect("a customer"),
            )
        })
        .collect();
    customers.sort();
    let customers: Vec<i64> = customers.into_iter().map(|(_, c)| c).collect();
    assert_eq!(customers.len(), 3, "{chats}");
    assert_eq!(customers[0], customers[1], "one browser, one customer");
    assert_ne!(
        customers[0], customers[2],
        "another browser, another customer"
    );
    for bad in ["short", "0123456789abcdef0123456789abcdef;drop"] {
        let mut ws = Console::open(&s, "/ws/chat").await;
        ws.send_raw(tokio_tungstenite::tungstenite::Message::Text(
            json!({ "type": "chat.start", "tenant": "demo", "widget": "demo-widget", "name": "X", "visitor": bad })
                .to_string()
                .into(),
        ))
        .await;
        let refused = ws.expect("error").await;
        assert_eq!(refused["code"], "invalid_value", "{bad}: {refused}");
    }
    s.stop().await;
}

on_both_backends!(
    a_browsers_key_finds_the_anonymous_visitors_customer,
    a_chat_nobody_is_in_ends_and_tabs_are_bounded,
    a_silent_visitor_connection_is_let_go,
    the_visitor_gets_the_transcript_by_email,
    accept_and_greet_in_one_write,
    agents_see_their_colleagues_by_name_only,
    the_supervisor_feed_follows_a_chat_and_a_ticket,
    one_address_is_limited_in_new_chats_and_messages,
    behind_a_trusted_proxy_each_visitor_has_its_own_limit,
    a_german_visitor_chats_with_the_german_speaking_agent,
    a_reconnecting_visitor_gets_the_transcript_and_resends_count_once,
    invite_makes_a_conference_and_transfer_hands_over_the_history,
    a_chat_ended_while_queued_with_a_guest_in_it_is_let_go,
    a_supervisor_monitors_invisibly_whispers_and_takes_over,
    monitoring_ends_when_its_reach_does,
    availability_follows_language_and_the_offline_form_makes_a_ticket,
    bad_input_gets_clear_errors_and_hurts_no_other_chat,
    a_visitor_ends_the_chat_and_cannot_resume_it,
    open_chats_come_back_after_a_restart,
    a_chat_finished_in_routing_at_a_stop_is_not_restored,
    an_idle_visitor_is_warned_and_then_let_go,
);

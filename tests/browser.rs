//! Browser tests: vacd's pages in a real browser — Debian's chromium, headless, driven by
//! playwright-core from the scripts in `tests/browser/` (scripts/test.sh installs both).
//! Screenshots go to `target/screenshots/`.

mod common;

use common::console::Console;
use common::feed::Feed;
use common::visitor::Visitor;
use common::{Db, TestServer};
use serde_json::json;

/// Runs `tests/browser/{script}` with `args`, screenshots going to `target/screenshots/`; its
/// output if it succeeded.
async fn node(script: &str, args: &[&str]) -> String {
    let screenshots = concat!(env!("CARGO_MANIFEST_DIR"), "/target/screenshots");
    std::fs::create_dir_all(screenshots).expect("screenshot directory");
    let path = format!("{}/tests/browser/{script}", env!("CARGO_MANIFEST_DIR"));
    let run = tokio::process::Command::new("node")
        .arg(&path)
        .args(args)
        .arg(screenshots)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(90), run)
        .await
        .expect("the browser test finishes within 90 s")
        .expect("node runs (scripts/test.sh installs node's playwright-core and chromium)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A browser script that takes turns with the test (`tests/browser/calls.mjs`): it prints a
/// line when it reaches a step, and where it needs the test's part done first it waits for a
/// line on its stdin. Every wait is bounded; nothing sleeps.
struct Script {
    name: &'static str,
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    /// What the script wrote to stderr, collected as it comes (so that it never blocks).
    stderr: tokio::task::JoinHandle<String>,
}

impl Script {
    /// How long the script may take to reach its next step.
    const STEP: std::time::Duration = std::time::Duration::from_secs(60);

    /// Starts `tests/browser/{name}` with `args`, screenshots going to `target/screenshots/`.
    fn start(name: &'static str, args: &[&str]) -> Script {
        use std::process::Stdio;
        use tokio::io::{AsyncBufReadExt, AsyncReadExt};
        let screenshots = concat!(env!("CARGO_MANIFEST_DIR"), "/target/screenshots");
        std::fs::create_dir_all(screenshots).expect("screenshot directory");
        let path = format!("{}/tests/browser/{name}", env!("CARGO_MANIFEST_DIR"));
        let mut child = tokio::process::Command::new("node")
            .arg(&path)
            .args(args)
            .arg(screenshots)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs (scripts/test.sh installs node's playwright-core and chromium)");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut err = child.stderr.take().expect("stderr");
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text).await;
            text
        });
        Script {
            name,
            child,
            stdin,
            stdout,
            stderr,
        }
    }

    /// Waits until the script prints a line starting with `step`; the rest of that line. Fails
    /// with the script's output when it ends (or stalls) first.
    async fn reached(&mut self, step: &str) -> String {
        let mut seen = Vec::new();
        loop {
            let line = tokio::time::timeout(Script::STEP, self.stdout.next_line()).await;
            match line {
                Ok(Ok(Some(line))) => {
                    if let Some(rest) = line.strip_prefix(step) {
                        return rest.trim().to_owned();
                    }
                    seen.push(line);
                }
                _ => {
                    let _ = self.child.start_kill();
                    let _ = self.child.wait().await;
                    let stderr = (&mut self.stderr).await.unwrap_or_default();
                    panic!(
                        "{} did not reach \"{step}\"; it printed {seen:?}\n{stderr}",
                        self.name
                    );
                }
            }
        }
    }

    /// Tells the script that the test has done its part (a line on its stdin).
    async fn tell(&mut self, line: &str) {
        use tokio::io::AsyncWriteExt;
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("the script reads its stdin");
        self.stdin.flush().await.expect("flush");
    }

    /// Waits for the script's last line (`done`) and its successful end.
    async fn finish(mut self, done: &str) {
        self.reached(done).await;
        drop(self.stdin);
        let status = tokio::time::timeout(Script::STEP, self.child.wait()).await;
        let stderr = self.stderr.await.unwrap_or_default();
        match status {
            Ok(Ok(status)) => assert!(status.success(), "{} failed: {status}\n{stderr}", self.name),
            other => panic!("{} did not end: {other:?}\n{stderr}", self.name),
        }
    }
}

/// A German visitor chats through the widget on /demo with Bruno on /console (two browser
/// contexts) and keeps the transcript over a reload; minimised, the chat counts only Bruno's
/// messages she has not seen as unread, also over a reload; a French visitor's widget, loaded
/// with nobody ready, offers the chat once Chloé is ready and the form again once she is not;
/// he leaves a message with the keyboard only, which becomes a ticket. The widget's gzipped size
/// is printed and held to its budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn widget_in_chromium() {
    let s = TestServer::start(Db::Sqlite).await;
    println!("{}", node("widget.mjs", &[&s.base]).await);
    let admin = s.demo_login("ada").await;
    let (_, tickets) = s.get("/api/v1/interactions?channel=email", &admin).await;
    let ticket = &tickets["items"][0];
    assert_eq!(
        ticket["subject"], "Offline message from Olivier",
        "{tickets}"
    );
    assert_eq!(ticket["language"], "fr");
    s.stop().await;
}

/// Supervisor sam monitors a chat from /console (as the wallboard links it): his whisper
/// reaches the agent and not the visitor; after taking over, the visitor reads him.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_monitoring_in_chromium() {
    let s = TestServer::start(Db::Sqlite).await;
    let token = s.demo_login("bruno").await;
    let mut bruno = Console::connect(&s, &token).await;
    bruno.ready().await;
    let mut vera = Visitor::start(&s, json!({ "language": "de" })).await;
    vera.say(
        "v-1",
        "Guten Tag, ich habe eine Frage zu meiner Rechnung vom letzten Monat.",
    )
    .await;
    let offer = bruno
        .expect_where("offer", |f| f["channel"] == "chat")
        .await;
    let interaction = offer["interaction"].as_u64().expect("interaction");
    bruno
        .ok(json!({ "type": "offer.accept", "interaction": interaction }))
        .await;
    let browser = tokio::spawn({
        let base = s.base.clone();
        async move { node("monitor.mjs", &[&base, &interaction.to_string()]).await }
    });
    let whisper = bruno
        .expect_where("chat.message", |f| f["text"] == "Biete die Gutschrift an.")
        .await;
    assert_eq!(whisper["whisper"], true);
    assert_eq!(whisper["author"]["kind"], "supervisor");
    vera.ws
        .expect_where("chat.joined", |f| f["name"] == "Sam Supervisor")
        .await;
    vera.hears("Ich übernehme das Gespräch.").await;
    assert!(
        vera.ws
            .seen
            .iter()
            .all(|f| !f.to_string().contains("Gutschrift")),
        "the visitor never got the whisper"
    );
    vera.say("v-2", "Danke, sehr nett!").await;
    println!("{}", browser.await.expect("browser task"));
    s.stop().await;
}

/// The wallboard signs in, follows the live feed, and its Break button sets an agent not ready
/// (which the agent's own console sees; a team lead gets no such button); it draws today's
/// charts from the reports (one email answered in Sales DE) on the tenant's clock, also on a day
/// its clocks change, and moves a waiting email from a queue nobody serves to Sales DE with the
/// keyboard.
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
    console.handle(answered).await;
    console
        .ok(json!({ "type": "wrapup.done", "interaction": answered }))
        .await;
    // Its service-level target is a second: the email waiting there breaches it.
    let unserved = s
        .create(
            "/api/v1/queues",
            &admin,
            json!({ "name": "Nobody serves", "sla_seconds": 1 }),
        )
        .await;
    let waiting = s
        .create("/api/v1/interactions", &admin, email(unserved))
        .await;
    // A team lead of bruno's team watches the board too, without the supervisors' buttons.
    let (_, bruno_row) = s.get(&format!("/api/v1/users/{bruno}"), &admin).await;
    s.create(
        "/api/v1/users",
        &admin,
        json!({ "username": "tina", "display_name": "Tina Teamlead", "password": "tina-password", "role": "team_lead", "team_id": bruno_row["team_id"] }),
    )
    .await;
    node(
        "wallboard.mjs",
        &[&s.base, &bruno.to_string(), &waiting.to_string()],
    )
    .await;
    console
        .expect_where("presence.changed", |f| f["to"]["reason"] == "break")
        .await;
    s.stop().await;
}

/// The wallboard's broken feed (`tests/browser/wallboard-reconnect.mjs`, which cuts the feed in a
/// relay standing for the network): signed in, the wallboard reconnects and is live again, also
/// after vacd was unreachable for a while; logged out through the API while its 4001 was held
/// back, it finds the sign-in ended and shows the sign-in form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallboard_reconnect_in_chromium() {
    let s = TestServer::start(Db::Sqlite).await;
    println!("{}", node("wallboard-reconnect.mjs", &[&s.base]).await);
    s.stop().await;
}

/// The agent console in chromium: bruno signs in and goes ready; a German visitor's chat is
/// offered to him with a countdown; he accepts and sees the message, the customer's history and
/// her typing; a second chat comes in beside it, into which he invites alice. He answers both
/// with the `/hi` text module (each visitor's name filled in; she sees him typing first) and
/// sees the read receipt; he reloads the page and finds his work again; the second visitor
/// ends her chat, bruno ends the first; each goes through wrap-up. Then an email is offered
/// (made through the API, without a ticket thread): he rejects it once, then accepts and
/// transfers it to alice.
/// The visitors are real chat sockets here (`visitors`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_chromium() {
    let s = TestServer::start(Db::Sqlite).await;
    let sam = s.demo_login("sam").await;
    let mut feed = Feed::connect(&s, &sam).await;
    let (_, me) = s.get("/api/v1/me", &s.demo_login("bruno").await).await;
    let bruno = me["id"].as_i64().expect("bruno's id");
    // Alice, a colleague bruno invites into a chat and transfers an email to.
    let alice_token = s.demo_login("alice").await;
    let mut alice = Console::connect(&s, &alice_token).await;
    alice.ready().await;
    let (_, me) = s.get("/api/v1/me", &alice_token).await;
    let alice_id = me["id"].as_i64().expect("alice's id");
    // A returning customer: the screen pop shows her earlier email.
    let vera = s
        .create(
            "/api/v1/customers",
            &sam,
            json!({ "name": "Vera Vogel", "language": "de" }),
        )
        .await;
    s.create(
        "/api/v1/customer-identities",
        &sam,
        json!({ "customer_id": vera, "kind": "email", "value": "vera@example.com" }),
    )
    .await;
    s.create(
        "/api/v1/interactions",
        &sam,
        json!({ "channel": "email", "customer_id": vera, "language": "de", "state": "done", "subject": "Rechnung März" }),
    )
    .await;

    let mut browser = tokio::spawn({
        let (base, alice) = (s.base.clone(), alice_id.to_string());
        async move { node("console.mjs", &[&base, &alice]).await }
    });
    {
        let visitors = visitors(&s, &mut feed, &mut alice, &sam, bruno, vera);
        tokio::pin!(visitors);
        // A browser script that fails early is reported at once.
        let visitors_done = tokio::select! {
            output = &mut browser => {
                output.expect("the console script passes");
                false
            }
            () = &mut visitors => true,
        };
        if visitors_done {
            browser.await.expect("the console script passes");
        } else {
            visitors.await;
        }
    }
    s.stop().await;
}

/// The other side of `console_in_chromium`: two visitors chat with bruno (each step waits for
/// what his console did) and alice joins one of the chats; then an email comes in for bruno,
/// which he transfers to alice.
async fn visitors(
    s: &TestServer,
    feed: &mut Feed,
    alice: &mut Console,
    sam: &str,
    bruno: i64,
    vera: i64,
) {
    let ready = feed
        .until("bruno ready", |f| {
            common::feed::agent_of(f, bruno).is_some_and(|a| a["presence"]["presence"] == "ready")
        })
        .await;
    let mut first = Visitor::start(
        s,
        json!({ "name": "Vera Vogel", "email": "vera@example.com", "language": "de" }),
    )
    .await;
    first
        .say(
            "v-1",
            "Guten Tag, ich habe eine Frage zu meiner Rechnung. Können Sie mir bitte helfen?",
        )
        .await;
    let read = first
        .ws
        .expect_where("chat.read", |f| f["party"]["kind"] == "agent")
        .await;
    assert_eq!(
        read["party"]["id"], bruno,
        "bruno's console read it: {read}"
    );

    // Bruno has the first chat open: he sees her typing, and a second chat comes in beside it.
    first
        .frame(json!({ "type": "chat.typing", "on": true }))
        .await;
    let mut second = Visitor::start(s, json!({ "name": "Klara Klein", "language": "de" })).await;
    second
        .say(
            "k-1",
            "Hallo, mein Paket ist noch nicht angekommen. Wo bleibt meine Bestellung?",
        )
        .await;

    first
        .ws
        .expect_where("chat.typing", |f| {
            f["party"]["kind"] == "agent" && f["on"] == true
        })
        .await;
    let answer = first
        .hears("Hallo Vera Vogel, danke für Ihre Nachricht. Wie kann ich helfen?")
        .await;
    assert_eq!(answer["author"]["id"], bruno, "{answer}");
    first
        .frame(json!({ "type": "chat.read", "up_to": answer["id"] }))
        .await;
    // Bruno invites alice into the second chat: she gets its transcript, the visitor sees her.
    let transcript = alice.expect("chat.transcript").await;
    assert!(
        transcript["messages"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Paket")),
        "{transcript}"
    );
    second
        .ws
        .expect_where("chat.joined", |f| f["name"] == "Alice Andersen")
        .await;
    // Bruno back in the first chat, the second visitor writes again: unread in his console.
    first.hears("Einen Moment bitte.").await;
    second.say("k-2", "Die Sendungsnummer ist 4711.").await;
    second
        .hears("Hallo Klara Klein, danke für Ihre Nachricht. Wie kann ich helfen?")
        .await;
    second.frame(json!({ "type": "chat.end" })).await;
    let ended = second.ws.expect("chat.ended").await;
    assert_eq!(ended["reason"], "visitor");
    let ended = first.ws.expect("chat.ended").await;
    assert_eq!(ended["reason"], "agent");

    // Back from wrap-up, bruno gets an email.
    let since = common::feed::agent_of(&ready, bruno).and_then(|a| a["since"].as_i64());
    feed.until("bruno ready again", |f| {
        common::feed::agent_of(f, bruno)
            .is_some_and(|a| a["presence"]["presence"] == "ready" && a["since"].as_i64() > since)
    })
    .await;
    let (_, queues) = s.get("/api/v1/queues?name=Support%20DE", sam).await;
    let support_de = queues["items"][0]["id"].clone();
    let email = s
        .create(
            "/api/v1/interactions",
            sam,
            json!({ "channel": "email", "queue_id": support_de, "customer_id": vera, "language": "de", "subject": "Mahnung" }),
        )
        .await;
    // Bruno rejects it once, then takes it and transfers it to alice.
    alice
        .expect_where("offer", |f| f["interaction"] == email)
        .await;
    alice
        .ok(json!({ "type": "offer.accept", "interaction": email }))
        .await;
}

/// The ticket panel of /console in chromium (`tests/browser/tickets.mjs`): bruno answers a
/// German email ticket from the widget's offline form with the "antwort" template (filled
/// through the preview) and the "rueckruf" text module, adds a note, sends the reply — which
/// the SMTP receiver gets with the variables, the salutation and the mailbox's signature —,
/// sees the customer's mail arriving meanwhile in the open thread, and closes a second ticket
/// without an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_desk_in_chromium() {
    use common::mail::{self, Dovecot, SmtpReceiver};
    let dovecot = Dovecot::start().await;
    let smtp = SmtpReceiver::start().await;
    let account = mail::support_account(dovecot.imap_port, Some(&smtp));
    let s = TestServer::start_with(Db::Sqlite, |c| {
        c.channels.poll_interval_ms = 100;
        c.channels.reload_interval_ms = 100;
        c.channels.accounts = vec![account];
    })
    .await;
    let admin = s.demo_login("ada").await;
    s.create(
        "/api/v1/templates",
        &admin,
        json!({ "name": "antwort", "language": "de", "subject": "Ihre Bestellung",
                "body": "{{salutation}}\n\nvielen Dank fuer Ihre Nachricht. Ihre Ticketnummer ist {{ticket.id}}.\n\nMit freundlichen Gruessen\n{{agent.name}}" }),
    )
    .await;
    s.create(
        "/api/v1/text-modules",
        &admin,
        json!({ "name": "rueckruf", "language": "de", "shortcut": "/rr",
                "body": "Wir rufen Sie zu {{ticket.id}} morgen an, {{customer.name}}." }),
    )
    .await;
    mail::support_account_up(&s).await;

    let imap_port = dovecot.imap_port.to_string();
    let output = node("tickets.mjs", &[&s.base, &imap_port, mail::PASSWORD]).await;
    let ids: serde_json::Value = output
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("the script prints the tickets: {output}"));
    let tag = format!("[#T-{}]", ids["answered"]);
    let reply = smtp
        .expect("the reply", |m| {
            m.header("Subject").is_some_and(|s| s.contains(&tag))
                && m.header("To")
                    .is_some_and(|to| to.contains("olga@example.com"))
        })
        .await;
    for part in [
        "Guten Tag Olga,".to_owned(),
        format!("Ihre Ticketnummer ist T-{}.", ids["answered"]),
        format!("Wir rufen Sie zu T-{} morgen an, Olga.", ids["answered"]),
        "Bruno Becker".to_owned(),
        "Your Demo support team".to_owned(),
    ] {
        assert!(reply.raw.contains(&part), "{part} in {}", reply.raw);
    }
    assert!(
        !reply.raw.contains("Paket 4711"),
        "no internal note: {}",
        reply.raw
    );
    assert!(reply
        .header("To")
        .is_some_and(|to| to.contains("olga@example.com")));
    let forward = smtp
        .expect("the forward", |m| {
            m.header("To")
                .is_some_and(|to| to.contains("lager@example.test"))
        })
        .await;
    assert!(
        forward
            .header("Subject")
            .is_some_and(|s| s.starts_with("Fwd:") && s.contains(&tag)),
        "{}",
        forward.raw
    );
    assert!(
        forward.raw.contains("Bitte Paket 4711 pr"),
        "the comment: {}",
        forward.raw
    );
    let bruno = s.demo_login("bruno").await;
    let (_, answered) = s
        .get(&format!("/api/v1/tickets/{}", ids["answered"]), &bruno)
        .await;
    assert_eq!(answered["status"], "answered", "{answered}");
    let (_, closed) = s
        .get(&format!("/api/v1/tickets/{}", ids["closed"]), &bruno)
        .await;
    assert_eq!(closed["status"], "closed", "{closed}");
    s.stop().await;
}

/// The console's call controls in chromium (`tests/browser/calls.mjs`) over real SIP, with a
/// trunk whose outside numbers go to the test's carrier: bruno's click-to-dial shows the
/// server's refusals (a national number: `invalid_command`; no registered phone yet:
/// `dial_failed`), then shows the call as his work (panel, customer, busy), rings his phone
/// and, answered, the dialled number at the carrier, and the two talk; hung up, it is wrapped
/// up with Done. A caller from the trunk is offered to bruno and his phone answers; Hold in the
/// console gives the caller music and keeps caller and agent apart (both in the event log),
/// and still offers Resume after a reload of the page; Resume bridges them again; a transfer
/// to an outside number hangs up bruno's phone and puts the caller through to the carrier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_controls_in_chromium() {
    use common::phone::Phone;
    use common::trunk;
    use vacd_sip::rsip::Method;
    let mut carrier = trunk::carrier().await;
    let s = TestServer::start_with(Db::Sqlite, |c| trunk::configure(c, Some(carrier.addr))).await;
    carrier.retarget(s.sip_udp());
    let dialled =
        |invite: &vacd_sip::rsip::Request| invite.uri.auth.as_ref().map(|a| a.user.clone());
    let mut phone = Phone::new("127.0.0.1", s.sip_udp()).await;
    let mut script = Script::start("calls.mjs", &[&s.base]);

    // Click-to-dial: refused until bruno's phone is registered; then it rings first, and once
    // it answers the carrier gets the number.
    script.reached("dial refused").await;
    phone.register("bruno", trunk::SIP_PASSWORD, None).await;
    script.tell("registered").await;
    let ringing = phone.request(Method::Invite).await;
    let agent_leg = phone.answer(&ringing).await;
    let outgoing = carrier.request(Method::Invite).await;
    assert_eq!(dialled(&outgoing).as_deref(), Some("+4940555000"));
    let customer = carrier.answer(&outgoing).await;
    phone
        .rtp_reaches(agent_leg.remote_rtp, b"hello customer", &carrier)
        .await;
    // Hung up only once the console has shown the call connected: it is on screen briefly.
    script.reached("dial connected").await;
    assert_eq!(carrier.bye(&customer).await, 200);
    phone.take_bye().await;
    script.tell("dialled").await;

    // An inbound call: offered in the console, answered by the phone.
    script.reached("ready").await;
    let (mut caller, leg) = trunk::call_in(s.sip_udp()).await;
    let ringing = phone.request(Method::Invite).await;
    script.reached("offered").await;
    let agent_leg = phone.answer(&ringing).await;
    let interaction: i64 = script
        .reached("connected")
        .await
        .parse()
        .expect("the call's interaction");
    caller
        .rtp_reaches(leg.remote_rtp, b"before hold", &phone)
        .await;
    script.tell("bridged").await;

    // Held from the console: the caller hears vacd's music (20 ms G.711 frames from the call's
    // media address; bruno's phone sends nothing, so it is nothing of his), and what either
    // side says goes nowhere.
    script.reached("held").await;
    caller.hears_music(&leg, 5).await;
    for sequence in 0..5 {
        caller
            .send_rtp(leg.remote_rtp, sequence, b"caller on hold")
            .await;
        phone
            .send_rtp(agent_leg.remote_rtp, sequence, b"agent on hold")
            .await;
    }
    script.tell("resume").await;

    // Resumed: both directions cross again, and what was said on hold never did (loopback
    // keeps the order, so it would have come first).
    script.reached("resumed").await;
    let (_, to_agent) = caller
        .rtp_reaches_after(leg.remote_rtp, b"after hold", &phone)
        .await;
    assert!(
        !to_agent.iter().any(|p| p == b"caller on hold"),
        "held audio reached the agent: {to_agent:?}"
    );
    let (_, to_caller) = phone
        .rtp_reaches_after(agent_leg.remote_rtp, b"agent back", &caller)
        .await;
    assert!(
        !to_caller.iter().any(|p| p == b"agent on hold"),
        "held audio reached the caller: {to_caller:?}"
    );
    // The call logs its holds on a task of its own: they come to the event log soon after.
    let sam = s.demo_login("sam").await;
    for kind in ["call.held", "call.resumed"] {
        let path = format!("/api/v1/events?kind={kind}&interaction_id={interaction}");
        let events = common::eventually(kind, || async {
            let (_, events) = s.get(&path, &sam).await;
            let events = events["items"].as_array().cloned().unwrap_or_default();
            (!events.is_empty()).then_some(events)
        })
        .await;
        assert_eq!(events.len(), 1, "one {kind}: {events:?}");
    }
    script.tell("transfer").await;

    // Transferred to an outside number: bruno's phone is hung up, the carrier gets the call
    // and the caller's voice.
    script.reached("transferred").await;
    phone.take_bye().await;
    let outgoing = carrier.request(Method::Invite).await;
    assert_eq!(dialled(&outgoing).as_deref(), Some("+4940999888"));
    carrier.answer(&outgoing).await;
    caller
        .rtp_reaches(leg.remote_rtp, b"outside", &carrier)
        .await;
    assert_eq!(caller.bye(&leg).await, 200);
    carrier.take_bye().await;
    script.finish("calls ok").await;
    s.stop().await;
}

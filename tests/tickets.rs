//! Written channels end to end, on SQLite and PostgreSQL, against real servers on loopback: a
//! private Dovecot (IMAP, POP3) and aiosmtpd. A mail appended to the mailbox becomes a ticket,
//! is offered to the agent with the right language, is acknowledged, answered with a template
//! (the reply reaches the SMTP receiver with the right threading headers), and the customer's
//! answer lands in the same ticket. Also: a crash between fetching and committing (the vacd
//! binary, killed), POP3, bad mail, fax/letter directories with PDF out, and SMS.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::console::Console;
use common::mail::{self, poll, Dovecot, SmtpReceiver, MAIL_WAIT};
use common::visitor::Visitor;
use common::{Db, TestDb, TestServer, OPERATOR_TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Row;
use vacd::channels::config::{
    AfterFetch, DirectoryConfig, DirectoryKind, MailAccountConfig, Protocol, Security, SmtpConfig,
};
use vacd::config::Config;
use vacd::store::NewWritten;

use common::mail::SUPPORT;
const ERIKA: &str = "Erika Mustermann <erika@example.test>";

fn offer_of(id: i64) -> impl Fn(&Value) -> bool {
    move |f: &Value| f["interaction"] == id
}

/// Fast polling for tests.
fn quick(config: &mut Config) {
    config.channels.poll_interval_ms = 100;
    config.channels.reload_interval_ms = 100;
}

fn imap_account(dovecot: &Dovecot, smtp: Option<&SmtpReceiver>) -> MailAccountConfig {
    mail::support_account(dovecot.imap_port, smtp)
}

async fn service_address(s: &TestServer, token: &str, kind: &str) -> Value {
    let (status, page) = s
        .get(&format!("/api/v1/service-addresses?kind={kind}"), token)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"][0].clone()
}

/// Waits until the ticket (or its newest message) satisfies `check`.
async fn ticket_where(
    s: &TestServer,
    token: &str,
    id: i64,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + MAIL_WAIT;
    loop {
        let (status, ticket) = s.get(&format!("/api/v1/tickets/{id}"), token).await;
        if status == StatusCode::OK && check(&ticket) {
            return ticket;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ticket {id} never got there: {ticket}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn mail_becomes_a_ticket_answered_with_a_template(db: Db) {
    let dovecot = Dovecot::start().await;
    let smtp = SmtpReceiver::start().await;
    let s = TestServer::start_with(db, quick).await;
    let admin = s.demo_login("ada").await;
    // The account is administered through the API (config-file accounts: see the crash test).
    let address = service_address(&s, &admin, "email").await;
    let account = imap_account(&dovecot, Some(&smtp));
    s.create(
        "/api/v1/mail-accounts",
        &admin,
        json!({ "service_address_id": address["id"], "protocol": "imap", "host": "127.0.0.1",
                "port": account.port, "security": "plain", "username": "support",
                "password": mail::PASSWORD, "smtp_host": "127.0.0.1", "smtp_port": smtp.port,
                "smtp_security": "plain", "auto_reply_template": "acknowledgement" }),
    )
    .await;
    s.create(
        "/api/v1/templates",
        &admin,
        json!({ "name": "answer", "language": "fr", "body": "{{salutation}}\n\nmerci, votre dossier {{ticket.id}} est réglé.\n\n{{agent.name}}" }),
    )
    .await;
    // Chloé speaks French; Diego does not. Both serve Support EN.
    let chloe_token = s.demo_login("chloe").await;
    let diego_token = s.demo_login("diego").await;
    let mut diego = Console::connect(&s, &diego_token).await;
    diego.ready().await;
    let mut chloe = Console::connect(&s, &chloe_token).await;
    chloe.ready().await;

    let first = mail::mail(
        ERIKA,
        SUPPORT,
        "Facture",
        "m1@example.test",
        "",
        "Bonjour, je voudrais savoir pourquoi ma facture est si élevée ce mois-ci. Merci beaucoup.",
    );
    dovecot.append("support", &first).await;

    let offer = chloe.expect("offer").await;
    assert_eq!(offer["channel"], "email");
    let id = offer["interaction"].as_i64().expect("id");
    assert_eq!(offer["details"]["subject"], "Facture");
    assert_eq!(offer["details"]["language"], "fr");
    chloe
        .ok(json!({ "type": "offer.accept", "interaction": id }))
        .await;
    // Committed, so deleted from the server.
    poll("the mail deleted from the server", MAIL_WAIT, || {
        (dovecot.messages("support") == 0).then_some(())
    })
    .await;
    // The acknowledgement, automatic and tagged.
    let tag = format!("[#T-{id}]");
    let ack = smtp
        .expect("the acknowledgement", |m| {
            m.header("Subject").is_some_and(|s| s.contains(&tag))
        })
        .await;
    assert_eq!(
        ack.header("Auto-Submitted").as_deref(),
        Some("auto-replied")
    );
    // Sent with the null reverse path: a bounce of it goes nowhere.
    assert_eq!(
        ack.header("X-MailFrom").as_deref(),
        Some("<>"),
        "{}",
        ack.raw
    );
    assert_eq!(
        ack.header("In-Reply-To").as_deref(),
        Some("<m1@example.test>")
    );

    // The acknowledgement is in the thread once recorded.
    let ticket = ticket_where(&s, &chloe_token, id, |t| {
        t["thread"].as_array().is_some_and(|m| m.len() == 2)
    })
    .await;
    assert_eq!(ticket["number"], format!("T-{id}"));
    assert_eq!(ticket["customer"]["name"], "Erika Mustermann");
    assert_eq!(ticket["contact"], "erika@example.test");
    assert_eq!(ticket["thread"][0]["direction"], "in");
    assert!(ticket["thread"][0]["body"]
        .as_str()
        .is_some_and(|b| b.contains("facture")));

    let (status, preview) = s
        .post(
            &format!("/api/v1/tickets/{id}/preview"),
            &chloe_token,
            json!({ "template": "answer" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    let body = preview["body"].as_str().expect("body");
    assert!(body.starts_with("Bonjour Erika Mustermann,"), "{body}");
    assert!(
        body.contains(&format!("T-{id}")) && body.contains("Chloé Charpentier"),
        "{body}"
    );
    assert!(
        body.contains("Your Demo support team"),
        "the mailbox signature: {body}"
    );
    // A text module by its shortcut (the demo's greeting is `/hi`).
    let (_, preview) = s
        .post(
            &format!("/api/v1/tickets/{id}/preview"),
            &chloe_token,
            json!({ "body": "{{module./hi}}" }),
        )
        .await;
    let body = preview["body"].as_str().expect("body");
    assert!(
        body.contains("thank you for contacting us") && !body.contains("{{"),
        "{body}"
    );
    // A short text that would fill in to more than 1 MiB is refused, not built.
    s.create(
        "/api/v1/text-modules",
        &admin,
        json!({ "name": "long", "language": "en", "body": "x".repeat(20_000) }),
    )
    .await;
    let (status, refused) = s
        .post(
            &format!("/api/v1/tickets/{id}/preview"),
            &chloe_token,
            json!({ "body": "{module.long}".repeat(60) }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["error"]["code"], "reply_too_long");

    let sent = replied(&s, &chloe_token, id, json!({ "template": "answer" })).await;
    let reply_id = sent["message_id"].as_str().expect("message id").to_owned();
    let reply = smtp
        .expect("the reply", |m| {
            m.header("Message-ID").as_deref() == Some(format!("<{reply_id}>").as_str())
        })
        .await;
    assert_eq!(
        reply.header("In-Reply-To").as_deref(),
        Some("<m1@example.test>")
    );
    assert!(reply
        .header("References")
        .is_some_and(|r| r.contains("<m1@example.test>")));
    assert!(
        reply.header("Subject").is_some_and(|s| s.contains(&tag)),
        "{}",
        reply.raw
    );
    assert!(reply
        .header("To")
        .is_some_and(|t| t.contains("erika@example.test")));
    assert_eq!(reply.header("Auto-Submitted"), None);
    chloe.expect_where("interaction.ended", offer_of(id)).await;
    chloe
        .ok(json!({ "type": "wrapup.done", "interaction": id }))
        .await;

    // The customer answers the reply (threaded by In-Reply-To alone, no tag): same ticket,
    // reopened and offered again.
    let answer = mail::mail(
        ERIKA,
        SUPPORT,
        "Re: Facture",
        "m2@example.test",
        &format!("In-Reply-To: <{reply_id}>\r\nReferences: <m1@example.test> <{reply_id}>\r\n"),
        "Merci, mais la facture reste trop élevée. Pouvez-vous vérifier encore une fois?",
    );
    dovecot.append("support", &answer).await;
    let again = chloe.expect_where("offer", offer_of(id)).await;
    assert_eq!(again["channel"], "email");
    let ticket = ticket_where(&s, &chloe_token, id, |t| {
        t["thread"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["message_id"] == "m2@example.test"))
    })
    .await;
    assert_eq!(ticket["status"], "open");
    let directions: Vec<&str> = ticket["thread"]
        .as_array()
        .expect("thread")
        .iter()
        .filter_map(|m| m["direction"].as_str())
        .collect();
    assert_eq!(directions, ["in", "out", "out", "in"], "{ticket}");
    // And one by the tag alone (a new mail, not a reply): same ticket.
    let tagged = mail::mail(
        ERIKA,
        SUPPORT,
        &format!("Nachtrag {tag}"),
        "m3@example.test",
        "",
        "P.S.",
    );
    dovecot.append("support", &tagged).await;
    ticket_where(&s, &chloe_token, id, |t| {
        t["thread"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["message_id"] == "m3@example.test"))
    })
    .await;
    // The desk's other actions: note, follow-up, forward, close, reopen.
    chloe
        .ok(json!({ "type": "offer.accept", "interaction": id }))
        .await;
    // A message joining the ticket while Chloé works on it is announced to her console.
    let more = mail::mail(
        ERIKA,
        SUPPORT,
        &format!("Noch etwas {tag}"),
        "m4@example.test",
        "",
        "P.P.S.",
    );
    dovecot.append("support", &more).await;
    let announced = chloe.expect("ticket.message").await;
    assert_eq!(
        announced,
        json!({ "type": "ticket.message", "interaction": id, "channel": "email" })
    );
    let ticket = s
        .get(&format!("/api/v1/tickets/{id}"), &chloe_token)
        .await
        .1;
    assert!(
        ticket["thread"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["message_id"] == "m4@example.test")),
        "stored before it is announced: {ticket}"
    );
    let (status, _) = s
        .post(
            &format!("/api/v1/tickets/{id}/notes"),
            &chloe_token,
            json!({ "body": "Billing checks the tariff." }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let due = vacd::store::now_ms() + 86_400_000;
    let (status, _) = s
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/tickets/{id}/follow-up"),
            Some(&chloe_token),
            Some(json!({ "at": due })),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, forwarded) = s
        .post(
            &format!("/api/v1/tickets/{id}/forward"),
            &chloe_token,
            json!({ "to": "billing@example.test", "body": "Please check." }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{forwarded}");
    let fwd = smtp
        .expect("the forward", |m| {
            m.header("To")
                .is_some_and(|t| t.contains("billing@example.test"))
        })
        .await;
    assert!(fwd
        .header("Subject")
        .is_some_and(|s| s.starts_with("Fwd:") && s.contains(&tag)));
    // Outside the ticket's thread: sent to another address of the tenant, it would otherwise
    // be taken for the customer's mail and join this ticket again.
    for threading in ["In-Reply-To", "References"] {
        assert_eq!(fwd.header(threading), None, "{threading} in the forward");
    }
    let (status, closed) = s
        .post(
            &format!("/api/v1/tickets/{id}/close"),
            &chloe_token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{closed}");
    assert_eq!(closed["status"], "closed");
    assert_eq!(closed["follow_up_at"], due);
    assert!(closed["thread"].as_array().is_some_and(|t| t
        .iter()
        .any(|m| m["direction"] == "internal" && m["author"] == "Chloé Charpentier")));
    chloe.expect_where("interaction.ended", offer_of(id)).await;
    chloe
        .ok(json!({ "type": "wrapup.done", "interaction": id }))
        .await;
    let (status, reopened) = s
        .post(
            &format!("/api/v1/tickets/{id}/reopen"),
            &chloe_token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reopened}");
    assert_eq!(reopened["status"], "open");
    chloe.expect_where("offer", offer_of(id)).await;
    // Everything Diego was sent so far arrives before the reply to this command.
    diego
        .command(json!({ "type": "presence.set", "status": "ready", "mode": "inbound" }))
        .await;
    assert!(
        !diego.seen.iter().any(|f| f["type"] == "offer"),
        "Diego speaks no French: {:?}",
        diego.seen
    );
    // A stranger quoting the tag gets a ticket of their own: ticket numbers are no secret.
    let spoofed = mail::mail(
        "mallory@example.test",
        SUPPORT,
        &format!("Please change the bank account {tag}"),
        "x1@example.test",
        "",
        "Pay the refund to my account instead.",
    );
    dovecot.append("support", &spoofed).await;
    let subject = format!("Please change the bank account {tag}");
    let own = common::eventually("the stranger's mail stored", || async {
        tickets_by_subject(&s, &chloe_token).await.remove(&subject)
    })
    .await;
    assert_ne!(own["number"], format!("T-{id}"), "{own}");
    // Forwarding it (to have it checked) answers nobody: its SLA's first answer is still due.
    let own_id = own["id"].as_i64().expect("id");
    let (status, forwarded) = s
        .post(
            &format!("/api/v1/tickets/{own_id}/forward"),
            &chloe_token,
            json!({ "to": "security@example.test", "body": "Suspicious." }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{forwarded}");
    let own = s
        .get(&format!("/api/v1/tickets/{own_id}"), &chloe_token)
        .await
        .1;
    assert_eq!(own["first_answered_at"], Value::Null, "{own}");
    assert_eq!(own["status"], "open", "{own}");
    let ticket = s
        .get(&format!("/api/v1/tickets/{id}"), &chloe_token)
        .await
        .1;
    assert!(
        ticket["thread"]
            .as_array()
            .is_some_and(|m| m.iter().all(|m| m["message_id"] != "x1@example.test")),
        "{ticket}"
    );
    s.stop().await;
}

/// The committed inbound mails in the database at `url` (0 while it does not exist yet).
async fn committed(url: &str) -> i64 {
    let Ok(pool) = sqlx::AnyPool::connect(url).await else {
        return 0;
    };
    let n = sqlx::query("SELECT COUNT(*) AS n FROM messages WHERE source_key LIKE 'imap:%'")
        .fetch_one(&pool)
        .await
        .ok()
        .and_then(|r| r.try_get::<i64, _>("n").ok())
        .unwrap_or(0);
    pool.close().await;
    n
}

/// Starts the vacd binary with `config` (TOML).
fn spawn_vacd(dir: &Path, config: &str) -> tokio::process::Child {
    let path = dir.join("vacd.toml");
    std::fs::write(&path, config).expect("write config");
    tokio::process::Command::new(env!("CARGO_BIN_EXE_vacd"))
        .args(["--config", &path.display().to_string(), "serve"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("vacd starts")
}

/// vacd is killed (SIGKILL) while it works through a batch of fetched mails: some are
/// committed but still on the server, the rest fetched but not committed. After a restart every
/// mail is a ticket exactly once and the server is empty.
async fn a_crash_between_fetch_and_commit_loses_and_duplicates_nothing(db: Db) {
    const MAILS: usize = 300;
    sqlx::any::install_default_drivers();
    let dovecot = Dovecot::start().await;
    let test_db = TestDb::new(db).await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let raws: Vec<Vec<u8>> = (0..MAILS)
        .map(|n| {
            mail::mail(
                &format!("Customer {n} <c{n}@example.test>"),
                SUPPORT,
                &format!("Question {n}"),
                &format!("crash-{n}@example.test"),
                "",
                "Hello, I have a question about my contract and the last invoice you sent me.",
            )
        })
        .collect();
    dovecot.append_all("support", &raws).await;
    let config = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[database]\nurl = \"{}\"\n[sip]\nudp = \"127.0.0.1:0\"\ntcp = \"127.0.0.1:0\"\n\
         [demo]\nenabled = true\n[log]\nlevel = \"warn\"\n\
         [channels]\npoll_interval_ms = 100\nfetch_batch = 1000\n\
         [[channels.accounts]]\naddress = \"{SUPPORT}\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\n\
         security = \"plain\"\nusername = \"support\"\npassword = \"{}\"\n",
        test_db.url,
        dovecot.imap_port,
        mail::PASSWORD
    );
    let mut vacd = spawn_vacd(dir.path(), &config);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while committed(&test_db.url).await == 0 {
        assert!(std::time::Instant::now() < deadline, "vacd stored no mail");
    }
    vacd.start_kill().expect("SIGKILL");
    vacd.wait().await.expect("killed");
    let before = committed(&test_db.url).await;
    assert!(
        before > 0 && (before as usize) < MAILS,
        "killed mid-batch: {before} committed"
    );
    assert_eq!(
        dovecot.messages("support"),
        MAILS,
        "nothing is deleted before its batch is committed"
    );

    let mut vacd = spawn_vacd(dir.path(), &config);
    poll(
        "every mail stored and deleted",
        Duration::from_secs(60),
        || (dovecot.messages("support") == 0).then_some(()),
    )
    .await;
    let pool = sqlx::AnyPool::connect(&test_db.url).await.expect("connect");
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query(sql)
                .fetch_one(&pool)
                .await
                .expect("count")
                .try_get::<i64, _>("n")
                .expect("n")
        }
    };
    assert_eq!(
        count("SELECT COUNT(*) AS n FROM messages WHERE direction = 'in'").await,
        MAILS as i64
    );
    assert_eq!(
        count("SELECT COUNT(DISTINCT message_id) AS n FROM messages WHERE direction = 'in'").await,
        MAILS as i64
    );
    assert_eq!(
        count("SELECT COUNT(*) AS n FROM tickets").await,
        MAILS as i64
    );
    assert_eq!(
        count("SELECT COUNT(*) AS n FROM interactions WHERE channel = 'email'").await,
        MAILS as i64
    );
    pool.close().await;
    let pid = vacd.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(30), vacd.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("wait");
    assert!(status.success(), "graceful shutdown: {status}");
    test_db.drop_db().await;
}

/// Subjects of the demo tenant's tickets, with their thread, by subject.
async fn tickets_by_subject(
    s: &TestServer,
    token: &str,
) -> std::collections::BTreeMap<String, Value> {
    let (_, page) = s.get("/api/v1/interactions?limit=100", token).await;
    let mut out = std::collections::BTreeMap::new();
    for i in page["items"].as_array().expect("items") {
        let id = i["id"].as_i64().expect("id");
        let (status, ticket) = s.get(&format!("/api/v1/tickets/{id}"), token).await;
        if status == StatusCode::OK {
            out.insert(
                ticket["subject"].as_str().unwrap_or_default().to_owned(),
                ticket,
            );
        }
    }
    out
}

/// `len` characters no compression shortens (PostgreSQL compresses long index entries).
fn incompressible(len: usize) -> String {
    let mut text: String = (1..=len.div_ceil(16) as u64)
        .map(|n| format!("{:016x}", n.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
        .collect();
    text.truncate(len);
    text
}

/// Bad mail over POP3 (an account from the config file): every message that exists becomes a
/// ticket, with notes about what was wrong; loops and spam are dropped; machines get no
/// acknowledgement; a mail delivered twice is stored once.
async fn bad_mail_over_pop3_is_kept_loops_and_spam_are_not(db: Db) {
    let dovecot = Dovecot::start().await;
    let smtp = SmtpReceiver::start().await;
    let mut account = imap_account(&dovecot, Some(&smtp));
    account.protocol = Protocol::Pop3;
    account.port = dovecot.pop3_port;
    account.auto_reply_template = Some("acknowledgement".into());
    let s = TestServer::start_with(db, |c| {
        quick(c);
        c.channels.max_attachment_bytes = 1000;
        c.channels.rules = vec![vacd::channels::screening::Rule {
            header: "X-Spam-Flag".into(),
            contains: "yes".into(),
            action: vacd::channels::screening::RuleAction::Drop,
        }];
        c.channels.accounts = vec![account];
    })
    .await;
    let admin = s.demo_login("ada").await;
    let huge = "A".repeat(4000);
    let mails = vec![
        b"From: a@example.test\r\nSubject: broken\r\nMessage-ID: <b1@x>\r\nContent-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nbroken part without an end".to_vec(),
        b"From: b@example.test\r\nSubject: klingon\r\nMessage-ID: <b2@x>\r\nContent-Type: text/plain; charset=x-klingon\r\n\r\nqapla\xff'".to_vec(),
        format!("From: c@example.test\r\nSubject: huge\r\nMessage-ID: <b3@x>\r\nContent-Type: multipart/mixed; boundary=\"q\"\r\n\r\n--q\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n--q\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"big.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{huge}\r\n--q--\r\n").into_bytes(),
        b"Subject: anonymous\r\nMessage-ID: <b4@x>\r\n\r\nwho am I".to_vec(),
        mail::mail("d@example.test", SUPPORT, "twice", "b5@x", "", "same mail twice"),
        mail::mail("d@example.test", SUPPORT, "twice", "b5@x", "", "same mail twice"),
        mail::mail(SUPPORT, SUPPORT, "loop", "b6@x", "", "our own acknowledgement came back"),
        mail::mail("daemon@example.test", SUPPORT, "auto", "b7@x", "Auto-Submitted: auto-replied\r\n", "I am on holiday"),
        mail::mail("spammer@example.test", SUPPORT, "spam", "b8@x", "X-Spam-Flag: YES\r\n", "buy now"),
        b"From: e@example.test\r\nSubject: nul\r\nMessage-ID: <b9@x>\r\n\r\nbefore\0after".to_vec(),
        format!("From: f@example.test\r\nTo: <{SUPPORT}>, <a\0b@example.test>\r\nSubject: nul address\r\nMessage-ID: <b10@x>\r\nContent-Type: multipart/mixed; boundary=\"n\"\r\n\r\n--n\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n--n\r\nContent-Type: text/x-n\0ul\r\nContent-Disposition: attachment; filename=\"n.txt\"\r\n\r\nnul\r\n--n--\r\n").into_bytes(),
        mail::mail("MAILER-DAEMON@mx.example.test", SUPPORT, "bounce", "b14@x", "", "Undelivered Mail Returned to Sender"),
        // A web form's Reply-To nobody can use: still no loop, a ticket without a contact.
        mail::mail(SUPPORT, SUPPORT, "broken form", "b18@x", &format!("Reply-To: {}@example.test\r\n", incompressible(300)), "call me"),
        // Answers wanted elsewhere: the ticket answers there; the customer is who wrote.
        mail::mail("i@example.test", SUPPORT, "reply elsewhere", "b15@x", "Reply-To: other@example.test\r\n", "write to my other address"),
        // Two new mails of one customer: two tickets, one acknowledgement (RFC 3834).
        mail::mail("j@example.test", SUPPORT, "first of two", "b16@x", "", "one thing"),
        mail::mail("j@example.test", SUPPORT, "second of two", "b17@x", "", "another thing"),
        // A web form sends from our own address on the customer's behalf: no loop.
        mail::mail(SUPPORT, SUPPORT, "web form", "b13@x", "Reply-To: Hanna <h@example.test>\r\n", "call me back"),
        // Longer than a PostgreSQL index takes (and than RFC 5322 and 5321 allow).
        mail::mail("g@example.test", SUPPORT, "long id", &format!("{}@x", incompressible(4000)), "", "hello"),
        mail::mail(&format!("{}@example.test", incompressible(4000)), SUPPORT, "long sender", "b12@x", "", "hello"),
    ];
    for (n, raw) in mails.iter().enumerate() {
        dovecot.deliver("support", &format!("{n}.bad"), raw);
    }
    // All but the one whose attachment was not kept.
    poll(
        "every whole bad mail taken from the server",
        MAIL_WAIT,
        || (dovecot.subjects("support") == ["huge"]).then_some(()),
    )
    .await;
    // Acknowledgements for the people: broken, klingon, huge, twice, nul, nul address, long id,
    // web form, reply elsewhere (to the other address), the first of two.
    let expected = [
        "a@example.test",
        "b@example.test",
        "c@example.test",
        "d@example.test",
        "e@example.test",
        "f@example.test",
        "g@example.test",
        "h@example.test",
        "other@example.test",
        "j@example.test",
    ];
    poll("the acknowledgements", MAIL_WAIT, || {
        (smtp.received().len() >= expected.len()).then_some(())
    })
    .await;
    let acked: Vec<String> = smtp
        .received()
        .iter()
        .filter_map(|m| m.header("To"))
        .collect();
    for to in expected {
        assert!(
            acked.iter().any(|a| a.contains(to)),
            "{to} acknowledged: {acked:?}"
        );
    }
    assert_eq!(
        acked.len(),
        expected.len(),
        "nobody else is acknowledged: {acked:?}"
    );

    let tickets = tickets_by_subject(&s, &admin).await;
    let subjects: Vec<&str> = tickets.keys().map(String::as_str).collect();
    assert_eq!(
        subjects,
        [
            "anonymous",
            "auto",
            "bounce",
            "broken",
            "broken form",
            "first of two",
            "huge",
            "klingon",
            "long id",
            "long sender",
            "nul",
            "nul address",
            "reply elsewhere",
            "second of two",
            "twice",
            "web form"
        ]
    );
    assert_eq!(tickets["broken form"]["contact"], Value::Null);
    assert!(
        tickets["broken form"]["thread"][1]["body"]
            .as_str()
            .is_some_and(|n| n.contains("Reply-To names no usable address")),
        "{}",
        tickets["broken form"]
    );
    let elsewhere = &tickets["reply elsewhere"];
    assert_eq!(elsewhere["contact"], "other@example.test");
    assert_eq!(
        elsewhere["customer"]["identities"],
        json!([{ "kind": "email", "value": "i@example.test" }])
    );
    assert_eq!(tickets["web form"]["contact"], "h@example.test");
    assert_eq!(tickets["web form"]["customer"]["name"], "Hanna");
    let note = |t: &str| {
        tickets[t]["thread"][1]["body"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        note("long id").contains("Message-ID has 4002 characters"),
        "{}",
        note("long id")
    );
    assert_eq!(tickets["long id"]["contact"], "g@example.test");
    assert!(
        note("long sender").contains("sender address has 4013 characters"),
        "{}",
        note("long sender")
    );
    assert_eq!(tickets["long sender"]["contact"], Value::Null);
    assert_eq!(
        tickets["nul"]["thread"][0]["body"].as_str().map(str::trim),
        Some("beforeafter"),
        "NUL removed, not refused"
    );
    let body = |t: &str| {
        tickets[t]["thread"][0]["body"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(body("broken").contains("broken part"), "{}", body("broken"));
    assert!(body("klingon").starts_with("qapla"));
    let huge = &tickets["huge"];
    assert_eq!(huge["thread"][0]["attachments"], json!([]));
    assert!(huge["thread"][1]["body"]
        .as_str()
        .is_some_and(|n| n.contains("big.bin")
            && n.contains("exceeds the limit")
            && n.contains("stays on the mail server")));
    assert_eq!(huge["thread"][1]["direction"], "internal");
    let anonymous = &tickets["anonymous"];
    assert_eq!(anonymous["contact"], Value::Null);
    assert!(anonymous["thread"][1]["body"]
        .as_str()
        .is_some_and(|n| n.contains("no sender")));
    let twice = tickets["twice"]["thread"].as_array().expect("thread");
    assert_eq!(
        twice.iter().filter(|m| m["direction"] == "in").count(),
        1,
        "stored once"
    );

    let metrics = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .expect("metrics");
    let text = metrics.text().await.expect("text");
    // The recorder is shared by every server of this test process: at least these two.
    let dropped: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("vacd_mails_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(dropped >= 2.0, "loop and spam counted: {dropped}");
    s.stop().await;
}

/// A POP3 server that sends more for a mail than vacd accepts (here: one endless line) does not
/// hold back the mail behind it: that session ends, and the next one goes past the mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pop3_answer_larger_than_accepted_holds_back_nothing() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let port = listener.local_addr().expect("bound").port();
    tokio::spawn(endless_pop3(listener));
    let mut account = mail::support_account(port, None);
    account.protocol = Protocol::Pop3;
    let s = TestServer::start_with(Db::Sqlite, |c| {
        quick(c);
        // A mail's answer may then be 16 MiB at most (the dot-stuffed size of the largest
        // header, or of a whole message, accepted).
        c.channels.max_message_bytes = 4096;
        c.channels.accounts = vec![account];
    })
    .await;
    let admin = s.demo_login("ada").await;
    ticket_of(&s, &admin, "email", "behind it").await;
    s.stop().await;
}

/// A POP3 server with two mails: the first (UIDL `endless`) a line that never ends, the second
/// an ordinary mail.
async fn endless_pop3(listener: tokio::net::TcpListener) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            write.write_all(b"+OK fake POP3\r\n").await?;
            while let Some(line) = lines.next_line().await? {
                let reply = match line.as_str() {
                    "LIST" => "+OK\r\n1 100\r\n2 300\r\n.\r\n".to_owned(),
                    "UIDL" => "+OK\r\n1 endless\r\n2 fine\r\n.\r\n".to_owned(),
                    "RETR 1" => {
                        write.write_all(b"+OK\r\n").await?;
                        // Until vacd hangs up: past 16 MiB, or the test's end.
                        let chunk = vec![b'x'; 64 * 1024];
                        for _ in 0..1024 {
                            write.write_all(&chunk).await?;
                        }
                        return Ok(());
                    }
                    "RETR 2" => {
                        let mail = mail::mail(ERIKA, SUPPORT, "behind it", "fine@x", "", "hello");
                        format!("+OK\r\n{}.\r\n", String::from_utf8_lossy(&mail))
                    }
                    "QUIT" => {
                        write.write_all(b"+OK bye\r\n").await?;
                        return Ok(());
                    }
                    _ => "+OK\r\n".to_owned(),
                };
                write.write_all(reply.as_bytes()).await?;
            }
            Ok::<(), std::io::Error>(())
        });
    }
}

/// PostgreSQL refuses to reopen a ticket at its follow-up date for a while (a trigger stands in
/// for any failure): the date is not used up by the failed tries, and once the database takes it
/// the ticket comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_follow_up_the_database_refuses_comes_back_later() {
    let (s, _) = sms_desk(Db::Postgres, None).await;
    let first = sms_in(&s, "gw-1", "Please call me back next week.").await;
    let id = first["ticket"].as_i64().expect("ticket");
    let diego = s.demo_login("diego").await;
    replied(
        &s,
        &diego,
        id,
        json!({ "body": "We will get back to you." }),
    )
    .await;
    let db = sqlx::PgPool::connect(s.database_url())
        .await
        .expect("database");
    // The sequence counts the refused tries: it is not rolled back with them.
    sqlx::raw_sql(
        "CREATE SEQUENCE reopen_refused; \
         CREATE FUNCTION refuse_reopen() RETURNS trigger AS $$ BEGIN \
         PERFORM nextval('reopen_refused'); RAISE EXCEPTION 'reopen refused'; \
         END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER refuse_reopen BEFORE INSERT ON events FOR EACH ROW \
         WHEN (NEW.kind = 'ticket.reopened') EXECUTE FUNCTION refuse_reopen()",
    )
    .execute(&db)
    .await
    .expect("trigger");
    let due = vacd::store::now_ms();
    let (status, _) = s
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/tickets/{id}/follow-up"),
            Some(&diego),
            Some(json!({ "at": due })),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    common::eventually_within("a refused reopening", MAIL_WAIT, || async {
        let tried: bool = sqlx::query_scalar("SELECT is_called FROM reopen_refused")
            .fetch_one(&db)
            .await
            .expect("the count");
        tried.then_some(())
    })
    .await;
    let (_, ticket) = s.get(&format!("/api/v1/tickets/{id}"), &diego).await;
    assert_eq!(ticket["follow_up_at"], due, "the date is kept: {ticket}");
    assert_ne!(ticket["status"], "open", "{ticket}");

    sqlx::raw_sql("DROP TRIGGER refuse_reopen ON events")
        .execute(&db)
        .await
        .expect("trigger dropped");
    let ticket = ticket_where(&s, &diego, id, |t| t["status"] == "open").await;
    assert_eq!(ticket["follow_up_at"], Value::Null, "{ticket}");
    db.close().await;
    s.stop().await;
}

/// PostgreSQL refuses to store some mails (a trigger stands in for any lasting failure): a full
/// batch of them stays on the server, and the mail behind them becomes its ticket all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_mails_that_cannot_be_stored_do_not_hold_back_the_others() {
    use sqlx::Connection;
    let dovecot = Dovecot::start().await;
    let s = TestServer::start_with(Db::Postgres, |c| {
        quick(c);
        c.channels.fetch_batch = 2;
        c.channels.accounts = vec![imap_account(&dovecot, None)];
    })
    .await;
    let admin = s.demo_login("ada").await;
    let mut db = sqlx::PgConnection::connect(s.database_url())
        .await
        .expect("database");
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN \
         IF NEW.subject = 'poison' THEN RAISE EXCEPTION 'poison refused'; END IF; \
         RETURN NEW; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER refuse_poison BEFORE INSERT ON messages \
         FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
    )
    .execute(&mut db)
    .await
    .expect("trigger");
    db.close().await.expect("closed");
    let mails: Vec<Vec<u8>> = ["p1@x", "p2@x"]
        .into_iter()
        .map(|id| mail::mail(ERIKA, SUPPORT, "poison", id, "", "refused"))
        .chain([mail::mail(ERIKA, SUPPORT, "fine", "f1@x", "", "stored")])
        .collect();
    dovecot.append_all("support", &mails).await;

    ticket_of(&s, &admin, "email", "fine").await;
    poll("the fine mail taken from the server", MAIL_WAIT, || {
        (dovecot.messages("support") == 2).then_some(())
    })
    .await;
    s.stop().await;
}

/// A mail larger than `channels.max_message_bytes` is not downloaded, over IMAP or POP3: its
/// header becomes the ticket, with a note, and the message stays on the server (and is not
/// made a ticket again); so does one whose attachment is over `channels.max_attachment_bytes`,
/// a ticket without it. The mails around them are taken as always. Once the limits are raised,
/// the whole mails join those tickets before they are taken off the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_too_large_to_download_is_a_ticket_from_its_header() {
    for (protocol, after_fetch) in [
        (Protocol::Imap, AfterFetch::Delete),
        (Protocol::Imap, AfterFetch::Flag),
        (Protocol::Pop3, AfterFetch::Delete),
    ] {
        let dovecot = Dovecot::start().await;
        let mut account = imap_account(&dovecot, None);
        account.after_fetch = after_fetch;
        if protocol == Protocol::Pop3 {
            account.protocol = protocol;
            account.port = dovecot.pop3_port;
        }
        // Taken off the server: deleted, or (flag) flagged and kept. The big one and the one
        // with the large attachment are never deleted; flag accounts flag them too, so that
        // later rounds do not look at them again.
        let taken = |n: usize| match after_fetch {
            AfterFetch::Delete => dovecot.subjects("support") == ["attached", "big"],
            AfterFetch::Flag => {
                dovecot.keyworded("support") == n && dovecot.messages("support") == n
            }
        };
        let again = account.clone();
        let s = TestServer::start_with(Db::Sqlite, |c| {
            quick(c);
            c.channels.max_message_bytes = 4096;
            c.channels.max_attachment_bytes = 1000;
            c.channels.fetch_batch = 2;
            c.channels.accounts = vec![account];
        })
        .await;
        let admin = s.demo_login("ada").await;
        let big = "a line of a long attachment, seventy-six characters with the line end.\r\n"
            .repeat(100);
        let mut mails: Vec<Vec<u8>> = [
            ("small 1", "s1@x", "hello"),
            ("big", "big@x", big.as_str()),
            ("small 2", "s2@x", "hello"),
            ("small 3", "s3@x", "hello"),
        ]
        .into_iter()
        .map(|(subject, id, body)| mail::mail(ERIKA, SUPPORT, subject, id, "", body))
        .collect();
        let report = "A".repeat(2000);
        mails.insert(2, format!("From: {ERIKA}\r\nTo: {SUPPORT}\r\nSubject: attached\r\nMessage-ID: <att@x>\r\nContent-Type: multipart/mixed; boundary=\"q\"\r\n\r\n--q\r\nContent-Type: text/plain\r\n\r\nsee the report\r\n--q\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"report.pdf\"\r\n\r\n{report}\r\n--q--\r\n").into_bytes());
        dovecot.append_all("support", &mails).await;
        for subject in ["small 1", "small 2", "small 3"] {
            ticket_of(&s, &admin, "email", subject).await;
        }
        let attached = ticket_of(&s, &admin, "email", "attached").await;
        assert_eq!(
            attached["thread"][0]["attachments"],
            json!([]),
            "{protocol:?}: {attached}"
        );
        assert!(
            attached["thread"][1]["body"]
                .as_str()
                .is_some_and(|n| n.contains("report.pdf") && n.contains("stays on the mail server")),
            "{protocol:?}: {attached}"
        );
        let ticket = ticket_of(&s, &admin, "email", "big").await;
        assert_eq!(
            ticket["contact"], "erika@example.test",
            "{protocol:?}: {ticket}"
        );
        assert!(
            ticket["thread"][1]["body"]
                .as_str()
                .is_some_and(|n| n.contains("more than the 4096 taken")
                    && n.contains("stays on the mail server")),
            "{protocol:?}: {ticket}"
        );
        poll("the mails taken from the server", MAIL_WAIT, || {
            taken(5).then_some(())
        })
        .await;
        // Later rounds leave the big one alone.
        dovecot
            .append(
                "support",
                &mail::mail(ERIKA, SUPPORT, "later", "s4@x", "", "hello"),
            )
            .await;
        ticket_of(&s, &admin, "email", "later").await;
        poll("the later mail taken from the server", MAIL_WAIT, || {
            taken(6).then_some(())
        })
        .await;
        for subject in ["big", "attached"] {
            let count = tickets_titled(&s, &admin, "email", subject).await;
            assert_eq!(count, 1, "{protocol:?}: one ticket for {subject}");
        }
        if after_fetch == AfterFetch::Flag {
            // Flagged, it is not looked at again.
            s.stop().await;
            continue;
        }
        let s = s
            .restart_with(|c| {
                quick(c);
                c.channels.max_message_bytes = 1024 * 1024;
                c.channels.max_attachment_bytes = 1024 * 1024;
                c.channels.accounts = vec![again];
            })
            .await;
        let admin = s.demo_login("ada").await;
        poll("the big mail taken from the server", MAIL_WAIT, || {
            (dovecot.messages("support") == 0).then_some(())
        })
        .await;
        let id = ticket["id"].as_i64().expect("id");
        let (_, joined) = s.get(&format!("/api/v1/tickets/{id}"), &admin).await;
        assert!(
            joined["thread"]
                .as_array()
                .is_some_and(|thread| thread.iter().any(|m| m["body"]
                    .as_str()
                    .is_some_and(|b| b.contains("seventy-six characters")))),
            "{protocol:?}: the whole mail is in the ticket: {joined}"
        );
        let id = attached["id"].as_i64().expect("id");
        let (_, joined) = s.get(&format!("/api/v1/tickets/{id}"), &admin).await;
        assert!(
            joined["thread"].as_array().is_some_and(|thread| thread
                .iter()
                .any(|m| m["attachments"][0]["filename"] == "report.pdf")),
            "{protocol:?}: the whole mail is in the ticket, attachment and all: {joined}"
        );
        for subject in ["big", "attached"] {
            let count = tickets_titled(&s, &admin, "email", subject).await;
            assert_eq!(count, 1, "{protocol:?}: still one ticket for {subject}");
        }
        s.stop().await;
    }
}

/// A mail the IMAP server fails on — its file unreadable, Dovecot ends the session with BYE
/// whenever it is fetched, even for its size — holds back no other: the mails before and
/// after it become tickets, and it stays on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_the_server_cannot_read_holds_back_no_other() {
    use std::os::unix::fs::PermissionsExt;
    let dovecot = Dovecot::start().await;
    let account = imap_account(&dovecot, None);
    for (n, subject) in ["before", "unreadable", "after"].into_iter().enumerate() {
        let raw = mail::mail(ERIKA, SUPPORT, subject, &format!("u{n}@x"), "", "hello");
        dovecot.deliver("support", &format!("{n}.mail"), &raw);
    }
    let unreadable = dovecot.maildir("support").join("new").join("1.mail");
    std::fs::set_permissions(&unreadable, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let s = TestServer::start_with(Db::Sqlite, |c| {
        quick(c);
        c.channels.retry_max_seconds = 1;
        c.channels.accounts = vec![account];
    })
    .await;
    let admin = s.demo_login("ada").await;
    for subject in ["before", "after"] {
        ticket_of(&s, &admin, "email", subject).await;
    }
    poll(
        "the readable mails taken from the server",
        MAIL_WAIT,
        || (dovecot.subjects("support") == ["unreadable"]).then_some(()),
    )
    .await;
    assert_eq!(tickets_titled(&s, &admin, "email", "unreadable").await, 0);
    s.stop().await;
}

/// The demo tenant, and a mail from `from` to its support address as the store is handed one
/// (source key `test:<key>`); the rest of its fields are the caller's.
async fn mail_to_support(store: &vacd::store::Store) -> (i64, impl Fn(String, &str) -> NewWritten) {
    let address = store
        .service_address("email", SUPPORT)
        .await
        .expect("store")
        .expect("the demo's email address");
    let tenant = address.tenant;
    let mail = move |key, from: &str| NewWritten {
        tenant: address.tenant,
        service_address: address.id,
        mailbox: address.mailbox,
        queue: address.queue,
        channel: "email",
        source_key: format!("test:{key}"),
        contact: Some(from.to_owned()),
        identity_kind: "email",
        ..NewWritten::default()
    };
    (tenant, mail)
}

/// A mail stored again under another source key (another account, a server that renumbered
/// it) is a duplicate only when it is the same mail: same Message-ID, sender, text and
/// attachments. A scanner whose Message-IDs start over sends another scan under an old id and
/// the same words: a ticket of its own. Mails of one new sender stored side by side make one
/// customer.
async fn a_duplicate_is_the_same_mail_attachments_included(db: Db) {
    use vacd::store::{NewAttachment, Outcome};
    let s = TestServer::start_with(db, quick).await;
    let store = s.store();
    let (_, mail) = mail_to_support(store).await;
    let scan = |n: usize, bytes: usize| NewWritten {
        message_id: Some("1@scanner.example.test".into()),
        subject: "Scan".into(),
        text: "Please find attached".into(),
        attachments: vec![NewAttachment {
            filename: "scan.pdf".into(),
            content_type: "application/pdf".into(),
            data: vec![b'%'; bytes],
        }],
        ..mail(format!("scan:{n}"), "scanner@example.test")
    };
    let first = store.ingest(&scan(1, 100)).await.expect("ingested");
    assert_eq!(first.outcome, Outcome::Created);
    let other = store.ingest(&scan(2, 200)).await.expect("ingested");
    assert_eq!(
        other.outcome,
        Outcome::Created,
        "another scan, another ticket"
    );
    let again = store.ingest(&scan(3, 100)).await.expect("ingested");
    assert_eq!(
        (again.outcome, again.interaction),
        (Outcome::Duplicate, first.interaction),
        "the first scan again"
    );
    // One mail fetched by several accounts at the same moment (To and Cc both the tenant's):
    // one ticket, the others its duplicates — also where transactions run side by side.
    let copy = |n: usize| NewWritten {
        source_key: format!("test:copy:{n}"),
        message_id: Some("2@scanner.example.test".into()),
        ..scan(n, 300)
    };
    let copies: Vec<NewWritten> = (0..8).map(copy).collect();
    let stored = futures_util::future::join_all(copies.iter().map(|c| store.ingest(c))).await;
    let created = stored
        .iter()
        .filter(|r| r.as_ref().expect("ingested").outcome == Outcome::Created)
        .count();
    assert_eq!(created, 1, "{stored:?}");
    // Different mails of a new customer stored side by side: each a ticket, one customer.
    let news: Vec<NewWritten> = (0..8)
        .map(|n| NewWritten {
            subject: format!("new {n}"),
            text: format!("mail {n}"),
            ..mail(format!("new:{n}"), "newcomer@example.test")
        })
        .collect();
    let stored = futures_util::future::join_all(news.iter().map(|m| store.ingest(m))).await;
    let mut customers = std::collections::BTreeSet::new();
    for ingested in stored {
        let ingested = ingested.expect("ingested: the identity taken in turn");
        let admin = s.demo_login("ada").await;
        let ticket = s
            .get(
                &format!("/api/v1/interactions/{}", ingested.interaction),
                &admin,
            )
            .await
            .1;
        customers.insert(ticket["customer_id"].as_i64().expect("a customer"));
    }
    assert_eq!(customers.len(), 1, "{customers:?}");
    s.stop().await;
}

/// The store finds a customer's acknowledgement on their other tickets within the window —
/// what keeps a customer from being acknowledged twice an hour across a restart.
async fn acknowledgements_are_found_by_customer_and_time(db: Db) {
    use vacd::store::{NewOutbound, Outbound, ACKNOWLEDGER};
    let s = TestServer::start_with(db, quick).await;
    let store = s.store();
    let (t, mail) = mail_to_support(store).await;
    let ticket = |n: usize, from: &str| NewWritten {
        subject: format!("ticket {n}"),
        text: "hello".into(),
        ..mail(format!("ack:{n}"), from)
    };
    let mut ids = Vec::new();
    for (n, from) in [
        "erika@example.test",
        "erika@example.test",
        "max@example.test",
        "max@example.test",
    ]
    .into_iter()
    .enumerate()
    {
        ids.push(
            store
                .ingest(&ticket(n, from))
                .await
                .expect("ingested")
                .interaction,
        );
    }
    let before = vacd::store::now_ms() - 1;
    let sent = |ticket: i64, to: &str, kind: Outbound| NewOutbound {
        tenant: t,
        interaction: ticket,
        author: ACKNOWLEDGER.into(),
        agent: None,
        subject: "received".into(),
        body: "we have your message".into(),
        recipients: vec![to.into()],
        message_id: None,
        kind,
        attachments: Vec::new(),
        client_id: None,
    };
    store
        .record_outbound(&sent(
            ids[0],
            "erika@example.test",
            Outbound::Acknowledgement,
        ))
        .await
        .expect("recorded");
    // An agent who happens to be called like vacd answers Max: no acknowledgement.
    store
        .record_outbound(&sent(
            ids[2],
            "max@example.test",
            Outbound::Reply { close: false },
        ))
        .await
        .expect("recorded");
    let since = |ticket: i64, at: i64| store.acknowledged_since(t, ticket, at);
    assert!(
        since(ids[1], before).await.expect("query"),
        "Erika's other ticket sees it"
    );
    assert!(
        !since(ids[1], vacd::store::now_ms() + 1)
            .await
            .expect("query"),
        "not after the window"
    );
    assert!(
        !since(ids[0], before).await.expect("query"),
        "a ticket's own acknowledgement does not count"
    );
    assert!(
        !since(ids[2], before).await.expect("query"),
        "another customer's tickets do not see it"
    );
    assert!(
        !since(ids[3], before).await.expect("query"),
        "an agent's reply is no acknowledgement, whatever the author's name"
    );
    s.stop().await;
}

/// A mail server that is down is retried with back-off, shown in `/ready` and the metrics, and
/// used as soon as it is up.
async fn an_unreachable_mail_server_is_retried_and_visible(db: Db) {
    let (imap_port, pop3_port) = (mail::free_port(), mail::free_port());
    let account = MailAccountConfig {
        port: imap_port,
        ..imap_account_on(imap_port)
    };
    let s = TestServer::start_with(db, |c| {
        quick(c);
        c.channels.accounts = vec![account];
    })
    .await;
    let key = format!("file:{SUPPORT}");
    // Only the operator hears what the mail server said: a tenant admin picks its host.
    let ready = |s: &TestServer| {
        let url = format!("{}/ready", s.base);
        let http = s.http.clone();
        async move {
            http.get(url)
                .bearer_auth(OPERATOR_TOKEN)
                .send()
                .await
                .expect("ready")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let deadline = std::time::Instant::now() + MAIL_WAIT;
    let down = loop {
        let r = ready(&s).await;
        if r["channels"]["mail_accounts"][&key]["up"] == false {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the account never showed as down: {r}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(down["status"], "ready", "vacd itself stays ready");
    assert!(down["channels"]["mail_accounts"][&key]["error"]
        .as_str()
        .is_some_and(|e| e.contains("connection")));
    let (_, public) = s.call(reqwest::Method::GET, "/ready", None, None).await;
    let account = &public["channels"]["mail_accounts"][&key];
    assert!(
        account.get("up").is_some() && account.get("error").is_none(),
        "{public}"
    );
    let metrics = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .expect("metrics");
    let text = metrics.text().await.expect("text");
    assert!(text.contains("vacd_mail_account_failures_total"), "{text}");

    let dovecot = Dovecot::start_on(imap_port, pop3_port).await;
    dovecot
        .append(
            "support",
            &mail::mail(ERIKA, SUPPORT, "late", "late@example.test", "", "finally"),
        )
        .await;
    // The account flags instead of deleting.
    let deadline = std::time::Instant::now() + MAIL_WAIT;
    while dovecot.flagged("support", "$VacdTicket").await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the mail fetched once the server is up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        dovecot.messages("support"),
        1,
        "flagged, kept on the server"
    );
    let r = ready(&s).await;
    assert_eq!(r["channels"]["mail_accounts"][&key]["up"], true, "{r}");
    s.stop().await;
}

/// A mail server that accepts the connection and then says nothing: the session is given up
/// once it has waited the poll interval and 10 s more, and the account shows as down, why.
async fn a_mail_server_that_stops_answering_is_given_up(db: Db) {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let port = silent.local_addr().expect("address").port();
    // Accepted connections are kept open and never written to.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            held.push(tcp);
        }
    });
    let s = TestServer::start_with(db, |c| {
        quick(c);
        c.channels.accounts = vec![imap_account_on(port)];
    })
    .await;
    let key = format!("file:{SUPPORT}");
    let down = common::eventually_within("the silent server's account down", MAIL_WAIT, || async {
        let (_, ready) = s
            .call(reqwest::Method::GET, "/ready", Some(OPERATOR_TOKEN), None)
            .await;
        let account = &ready["channels"]["mail_accounts"][&key];
        (account["up"] == false && account["error"].is_string()).then(|| account.clone())
    })
    .await;
    assert!(
        down["error"]
            .as_str()
            .is_some_and(|e| e.contains("stopped answering")),
        "{down}"
    );
    holder.abort();
    s.stop().await;
}

fn imap_account_on(port: u16) -> MailAccountConfig {
    MailAccountConfig {
        after_fetch: AfterFetch::Flag,
        ..mail::support_account(port, None)
    }
}

/// The SMS gateway's side for the test: records what vacd posts to it.
/// What a test SMS gateway was sent: the Authorization header and the JSON body of each.
type SmsSent = std::sync::Arc<std::sync::Mutex<Vec<(Option<String>, Value)>>>;

/// A test SMS gateway: its URL and what it was sent. With a `gate`, each request is recorded
/// and then answered only once the gate gives it a permit.
async fn sms_gateway(gate: Option<std::sync::Arc<tokio::sync::Semaphore>>) -> (String, SmsSent) {
    use axum::http::HeaderMap;
    let got = SmsSent::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/send",
        axum::routing::post(move |headers: HeaderMap, body: axum::Json<Value>| {
            let sink = sink.clone();
            let gate = gate.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                sink.lock().expect("lock").push((auth, body.0));
                if let Some(gate) = gate {
                    let _ = gate.acquire().await.map(|permit| permit.forget());
                }
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/send"), got)
}

/// SMS in through the authenticated webhook (threaded by sender, repeated posts stored once)
/// and out through the configured gateway.
async fn sms_in_through_the_webhook_and_out_through_the_gateway(db: Db) {
    let (url, sent) = sms_gateway(None).await;
    let s = TestServer::start_with(db, |c| {
        c.channels.sms.inbound_token = "gateway-secret".into();
        c.channels.sms.outbound_url = Some(url);
        c.channels.sms.outbound_token = Some("outbound-secret".into());
    })
    .await;
    let (_, doc) = s
        .call(reqwest::Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    for path in [
        "/api/v1/tickets/{id}",
        "/api/v1/tickets/{id}/reply",
        "/api/v1/sms/inbound",
        "/api/v1/mail-accounts",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} in the OpenAPI document"
        );
    }
    let admin = s.demo_login("ada").await;
    let email = service_address(&s, &admin, "email").await;
    let (support, queue) = (email["mailbox_id"].clone(), email["queue_id"].clone());
    s.create(
        "/api/v1/service-addresses",
        &admin,
        json!({ "kind": "sms", "address": "+4930111", "mailbox_id": support, "queue_id": queue }),
    )
    .await;
    let sms = json!({ "from": "+491701234567", "to": "+4930111", "text": "Hello, my parcel has not arrived yet. Can you check it please?", "id": "gw-1" });
    let wrong = s
        .call(
            reqwest::Method::POST,
            "/api/v1/sms/inbound",
            Some("nope"),
            Some(sms.clone()),
        )
        .await;
    common::assert_error(&wrong, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, first) = s
        .call(
            reqwest::Method::POST,
            "/api/v1/sms/inbound",
            Some("gateway-secret"),
            Some(sms.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["outcome"], "created");
    let id = first["ticket"].as_i64().expect("ticket");
    let (_, again) = s
        .call(
            reqwest::Method::POST,
            "/api/v1/sms/inbound",
            Some("gateway-secret"),
            Some(sms),
        )
        .await;
    assert_eq!(again["outcome"], "duplicate");
    let follow = json!({ "from": "+491701234567", "to": "+4930111", "text": "It is order 42.", "id": "gw-2" });
    let (_, joined) = s
        .call(
            reqwest::Method::POST,
            "/api/v1/sms/inbound",
            Some("gateway-secret"),
            Some(follow),
        )
        .await;
    assert_eq!(joined, json!({ "ticket": id, "outcome": "joined" }));
    let unknown = json!({ "from": "+49170", "to": "+4999", "text": "x" });
    let refused = s
        .call(
            reqwest::Method::POST,
            "/api/v1/sms/inbound",
            Some("gateway-secret"),
            Some(unknown),
        )
        .await;
    common::assert_error(&refused, StatusCode::UNPROCESSABLE_ENTITY, "unknown_number");
    // Values too long to be a number or a gateway's id (and for the store's indexes).
    for oversized in [
        json!({ "from": "+49".repeat(100), "to": "+4930111", "text": "x" }),
        json!({ "from": "+49170", "to": "+4930111", "text": "x", "id": incompressible(4000) }),
    ] {
        let refused = s
            .call(
                reqwest::Method::POST,
                "/api/v1/sms/inbound",
                Some("gateway-secret"),
                Some(oversized),
            )
            .await;
        common::assert_error(&refused, StatusCode::UNPROCESSABLE_ENTITY, "invalid_sms");
    }

    let diego = s.demo_login("diego").await;
    let ticket = s.get(&format!("/api/v1/tickets/{id}"), &diego).await.1;
    assert_eq!(ticket["channel"], "sms");
    assert_eq!(ticket["language"], "en");
    assert_eq!(
        ticket["customer"]["identities"][0],
        json!({ "kind": "phone", "value": "+491701234567" })
    );
    replied(
        &s,
        &diego,
        id,
        json!({ "body": "Your parcel arrives tomorrow. {{agent.name}}", "close": true }),
    )
    .await;
    let posted = sent.lock().expect("lock").clone();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].0.as_deref(), Some("Bearer outbound-secret"));
    assert_eq!(posted[0].1["from"], "+4930111");
    assert_eq!(posted[0].1["to"], "+491701234567");
    assert!(posted[0].1["text"]
        .as_str()
        .is_some_and(|t| t.starts_with("Your parcel arrives tomorrow. Diego Díaz")));
    let ticket = s.get(&format!("/api/v1/tickets/{id}"), &diego).await.1;
    assert_eq!(ticket["status"], "closed");
    s.stop().await;
}

/// A server with an SMS number (+4930111) on the support queue's mailbox, whose queue's wrap-up
/// lasts 10 minutes, the outgoing SMS going to a gateway of the test's (see [`sms_gateway`]).
async fn sms_desk(
    db: Db,
    gate: Option<std::sync::Arc<tokio::sync::Semaphore>>,
) -> (TestServer, SmsSent) {
    let (url, sent) = sms_gateway(gate).await;
    let s = TestServer::start_with(db, |c| {
        quick(c);
        c.channels.sms.inbound_token = "gateway-secret".into();
        c.channels.sms.outbound_url = Some(url);
    })
    .await;
    let admin = s.demo_login("ada").await;
    let email = service_address(&s, &admin, "email").await;
    let (support, queue) = (email["mailbox_id"].clone(), email["queue_id"].clone());
    s.create(
        "/api/v1/service-addresses",
        &admin,
        json!({ "kind": "sms", "address": "+4930111", "mailbox_id": support, "queue_id": queue }),
    )
    .await;
    let (status, _) = s
        .patch(
            &format!("/api/v1/queues/{queue}"),
            &admin,
            json!({ "wrapup_seconds": 600 }),
        )
        .await;
    assert!(status.is_success());
    (s, sent)
}

/// The customer's SMS `text` (gateway id `id`) to the desk's number; the webhook's answer.
async fn sms_in(s: &TestServer, id: &str, text: &str) -> Value {
    let sms = json!({ "from": "+491701234567", "to": "+4930111", "text": text, "id": id });
    let (status, answer) = s
        .call(
            reqwest::Method::POST,
            "/api/v1/sms/inbound",
            Some("gateway-secret"),
            Some(sms),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    answer
}

/// A long text the gateway delivers as several SMS at once (one request each): one ticket,
/// the first SMS making it and the others joining it, however the requests interleave.
async fn sms_sent_together_make_one_ticket(db: Db) {
    let (s, _) = sms_desk(db, None).await;
    let ids: Vec<String> = (0..8).map(|n| format!("part-{n}")).collect();
    let answers = futures_util::future::join_all(ids.iter().map(|id| sms_in(&s, id, "Teil"))).await;
    let tickets: std::collections::BTreeSet<i64> = answers
        .iter()
        .map(|a| a["ticket"].as_i64().expect("ticket"))
        .collect();
    assert_eq!(tickets.len(), 1, "{answers:?}");
    let created = answers.iter().filter(|a| a["outcome"] == "created").count();
    assert_eq!(created, 1, "{answers:?}");
    s.stop().await;
}

/// `user` logs in, connects a console and is ready; their token and console.
async fn ready_agent(s: &TestServer, user: &str) -> (String, Console) {
    let token = s.demo_login(user).await;
    let mut console = Console::connect(s, &token).await;
    console.ready().await;
    (token, console)
}

/// An agent who frees up takes work by queue priority, then waiting time, whatever the
/// channel: every channel waits at the same priority unless a rule sets one, so a ticket does
/// not jump ahead of a chat that waited longer in the same queue.
async fn a_ticket_does_not_outrank_a_chat_that_waited_longer(db: Db) {
    let (s, _) = sms_desk(db, None).await;
    let mut vera = Visitor::start(&s, json!({ "language": "en" })).await;
    vera.say(
        "v-1",
        "Hello, I have a question about my order, can you help me please?",
    )
    .await;
    sms_in(&s, "gw-1", "Where is my parcel? It was due last week.").await;
    // Chloé serves the queue of both.
    let chloe_token = s.demo_login("chloe").await;
    let mut chloe = Console::connect(&s, &chloe_token).await;
    let first = match chloe
        .ready()
        .await
        .into_iter()
        .find(|f| f["type"] == "offer")
    {
        Some(offer) => offer,
        None => chloe.expect("offer").await,
    };
    assert_eq!(first["channel"], "chat", "{first}");
    s.stop().await;
}

/// A customer who answers while the agent still wraps the ticket up is heard: the ticket waits
/// again and is offered to the next agent, while the first agent's wrap-up runs on.
async fn a_reply_during_wrap_up_waits_again(db: Db) {
    let (s, _) = sms_desk(db, None).await;
    let (diego_token, mut diego) = ready_agent(&s, "diego").await;
    let first = sms_in(
        &s,
        "gw-1",
        "Hello, my parcel has not arrived yet. Can you check it please?",
    )
    .await;
    let id = first["ticket"].as_i64().expect("ticket");
    diego.accept(id).await;
    replied(
        &s,
        &diego_token,
        id,
        json!({ "body": "It arrives tomorrow." }),
    )
    .await;
    diego
        .expect_where("presence.changed", |f| f["to"]["presence"] == "wrap_up")
        .await;

    let (_, mut chloe) = ready_agent(&s, "chloe").await;
    let again = sms_in(
        &s,
        "gw-2",
        "It did not arrive today either, can you check again please?",
    )
    .await;
    assert_eq!(again["ticket"], id, "{again}");
    chloe
        .expect_where("offer", |f| f["interaction"] == id)
        .await;
    s.stop().await;
}

/// A waiting ticket answered from the desk (no offer: nobody is ready) is answered in the
/// reports, by whoever answered it — the customer did not abandon it.
async fn a_waiting_ticket_answered_from_the_desk_counts_answered(db: Db) {
    let (s, _) = sms_desk(db, None).await;
    let first = sms_in(&s, "gw-1", "Where is my parcel? It was due last week.").await;
    let id = first["ticket"].as_i64().expect("ticket");
    let diego = s.demo_login("diego").await;
    replied(&s, &diego, id, json!({ "body": "It arrives tomorrow." })).await;
    s.routing().flushed().await;
    let sam = s.demo_login("sam").await;
    let (_, events) = s
        .get(&format!("/api/v1/events?interaction_id={id}"), &sam)
        .await;
    let kinds: Vec<&str> = events["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"routing.closed"), "{kinds:?}");
    assert!(!kinds.contains(&"routing.abandoned"), "{kinds:?}");
    let (_, report) = s.get("/api/v1/reports/queues?interval=day", &sam).await;
    let (answered, abandoned) =
        report["items"]
            .as_array()
            .expect("rows")
            .iter()
            .fold((0, 0), |(a, b), r| {
                (
                    a + r["answered"].as_i64().unwrap_or(0),
                    b + r["abandoned"].as_i64().unwrap_or(0),
                )
            });
    assert_eq!((answered, abandoned), (1, 0), "{report}");
    let (_, row) = s.get(&format!("/api/v1/interactions/{id}"), &sam).await;
    assert_eq!(row["state"], "done", "{row}");
    s.stop().await;
}

/// A ticket answered and done comes back at its follow-up date: opened again and offered, the
/// date used up, the reopening logged as the follow-up's.
async fn a_follow_up_date_brings_the_ticket_back(db: Db) {
    let (s, _) = sms_desk(db, None).await;
    let first = sms_in(
        &s,
        "gw-1",
        "Please call me back about my contract next week.",
    )
    .await;
    let id = first["ticket"].as_i64().expect("ticket");
    let diego_token = s.demo_login("diego").await;
    replied(
        &s,
        &diego_token,
        id,
        json!({ "body": "We will get back to you." }),
    )
    .await;
    let (status, _) = s
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/tickets/{id}/follow-up"),
            Some(&diego_token),
            Some(json!({ "at": vacd::store::now_ms() })),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let mut diego = Console::connect(&s, &diego_token).await;
    diego.ready().await;
    diego.expect_where("offer", offer_of(id)).await;
    let ticket = ticket_where(&s, &diego_token, id, |t| t["status"] == "open").await;
    assert_eq!(ticket["follow_up_at"], Value::Null, "{ticket}");
    let sam = s.demo_login("sam").await;
    let (_, events) = s
        .get(
            &format!("/api/v1/events?interaction_id={id}&kind=ticket.reopened"),
            &sam,
        )
        .await;
    let payload: Value = serde_json::from_str(
        events["items"][0]["payload"]
            .as_str()
            .expect("a ticket.reopened event"),
    )
    .expect("JSON payload");
    assert_eq!(payload["by"], "follow_up", "{events}");
    s.stop().await;
}

/// A customer who writes while the reply is on its way is not left in an answered ticket: the
/// reply did not answer that message, so the ticket waits again and is offered.
async fn a_message_that_crosses_the_reply_is_routed_again(db: Db) {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let (s, sent) = sms_desk(db, Some(gate.clone())).await;
    let (diego_token, mut diego) = ready_agent(&s, "diego").await;
    let first = sms_in(&s, "gw-1", "Where is my parcel? It was due last week.").await;
    let id = first["ticket"].as_i64().expect("ticket");
    diego.accept(id).await;
    let (_, mut chloe) = ready_agent(&s, "chloe").await;
    let path = format!("/api/v1/tickets/{id}/reply");
    let body = json!({ "body": "It arrives tomorrow." });
    let (replied, _) = tokio::join!(s.post(&path, &diego_token, body), async {
        common::eventually("the reply at the gateway", || async {
            (!sent.lock().expect("lock").is_empty()).then_some(())
        })
        .await;
        let crossing = sms_in(
            &s,
            "gw-2",
            "Also, can I change the delivery address please?",
        )
        .await;
        assert_eq!(crossing["ticket"], id, "{crossing}");
        gate.add_permits(1);
    });
    assert_eq!(replied.0, StatusCode::CREATED, "{}", replied.1);
    assert_eq!(replied.1["status"], "open", "{}", replied.1);
    chloe
        .expect_where("offer", |f| f["interaction"] == id)
        .await;
    s.stop().await;
}

/// A second reply while the first is still on its way to the customer (a double click) is
/// refused, and one sent again after it went (a retry after a lost answer) is answered with the
/// stored reply: the customer does not get the same message twice.
async fn a_reply_is_sent_once_however_often_it_is_clicked(db: Db) {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let (s, sent) = sms_desk(db, Some(gate.clone())).await;
    let first = sms_in(&s, "gw-1", "Where is my parcel? It was due last week.").await;
    let id = first["ticket"].as_i64().expect("ticket");
    let diego = s.demo_login("diego").await;
    let path = format!("/api/v1/tickets/{id}/reply");
    let body = json!({ "body": "It arrives tomorrow.", "client_id": "draft-1" });
    let (replied, second) = tokio::join!(s.post(&path, &diego, body.clone()), async {
        common::eventually("the first reply at the gateway", || async {
            (!sent.lock().expect("lock").is_empty()).then_some(())
        })
        .await;
        let second = s.post(&path, &diego, body.clone()).await;
        // Nor is it closed or reopened meanwhile: the reply, once recorded, would undo that.
        let mut changes = Vec::new();
        for change in ["close", "reopen"] {
            let ticket = format!("/api/v1/tickets/{id}/{change}");
            changes.push(s.post(&ticket, &diego, json!({})).await);
        }
        gate.add_permits(1);
        (second, changes)
    });
    let (second, changes) = second;
    assert_eq!(replied.0, StatusCode::CREATED, "{}", replied.1);
    common::assert_error(&second, StatusCode::CONFLICT, "send_in_progress");
    for change in &changes {
        common::assert_error(change, StatusCode::CONFLICT, "send_in_progress");
    }
    let (status, repeated) = s.post(&path, &diego, body).await;
    assert_eq!(status, StatusCode::OK, "{repeated}");
    assert_eq!(repeated["repeated"], true, "{repeated}");
    assert_eq!(repeated["message"], replied.1["message"], "{repeated}");
    assert_eq!(sent.lock().expect("lock").len(), 1);
    // A client_id is its author's: a colleague's reply under the same one is a reply of its own.
    let chloe = s.demo_login("chloe").await;
    gate.add_permits(1);
    let body = json!({ "body": "Tomorrow before noon.", "client_id": "draft-1" });
    let (status, theirs) = s.post(&path, &chloe, body).await;
    assert_eq!(status, StatusCode::CREATED, "{theirs}");
    assert_ne!(theirs["message"], replied.1["message"], "{theirs}");
    assert_eq!(sent.lock().expect("lock").len(), 2);
    s.stop().await;
}

/// A ticket routing connected to one agent is theirs: another agent can neither answer nor
/// close it (a note is fine); a supervisor can, which ends the first agent's work.
async fn a_ticket_another_agent_works_on_is_theirs(db: Db) {
    let (s, _) = sms_desk(db, None).await;
    let (_, mut diego) = ready_agent(&s, "diego").await;
    let first = sms_in(&s, "gw-1", "Where is my parcel? It was due last week.").await;
    let id = first["ticket"].as_i64().expect("ticket");
    diego.accept(id).await;
    let chloe = s.demo_login("chloe").await;
    let reply = s
        .post(
            &format!("/api/v1/tickets/{id}/reply"),
            &chloe,
            json!({ "body": "I took this one." }),
        )
        .await;
    common::assert_error(&reply, StatusCode::CONFLICT, "held_by_another");
    let close = s
        .post(&format!("/api/v1/tickets/{id}/close"), &chloe, json!({}))
        .await;
    common::assert_error(&close, StatusCode::CONFLICT, "held_by_another");
    let (status, _) = s
        .post(
            &format!("/api/v1/tickets/{id}/notes"),
            &chloe,
            json!({ "body": "Customer called about this too." }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let ticket = s.get(&format!("/api/v1/tickets/{id}"), &chloe).await.1;
    assert_eq!(ticket["status"], "open", "{ticket}");

    let sam = s.demo_login("sam").await;
    let (status, closed) = s
        .post(&format!("/api/v1/tickets/{id}/close"), &sam, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{closed}");
    assert_eq!(closed["status"], "closed", "{closed}");
    diego
        .expect_where("interaction.ended", |f| f["interaction"] == id)
        .await;
    s.stop().await;
}

/// A minimal valid TIFF (one empty image directory).
const TIFF: &[u8] = b"II*\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00";

/// How many `channel` interactions (of the first 100) have the subject `subject`.
async fn tickets_titled(s: &TestServer, token: &str, channel: &str, subject: &str) -> usize {
    let (_, page) = s
        .get(
            &format!("/api/v1/interactions?channel={channel}&limit=100"),
            token,
        )
        .await;
    page["items"]
        .as_array()
        .expect("tickets")
        .iter()
        .filter(|t| t["subject"] == subject)
        .count()
}

/// Waits for a ticket of `channel` whose subject is `subject`.
/// Ticket `id` answered by `token` with `body` (the reply request): the answer, 201 checked.
async fn replied(s: &TestServer, token: &str, id: i64, body: Value) -> Value {
    let (status, reply) = s
        .post(&format!("/api/v1/tickets/{id}/reply"), token, body)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    reply
}

async fn ticket_of(s: &TestServer, token: &str, channel: &str, subject: &str) -> Value {
    let deadline = std::time::Instant::now() + MAIL_WAIT;
    loop {
        let (_, page) = s
            .get(
                &format!("/api/v1/interactions?channel={channel}&limit=100"),
                token,
            )
            .await;
        if let Some(found) = page["items"]
            .as_array()
            .and_then(|items| items.iter().find(|i| i["subject"] == subject))
        {
            let id = found["id"].as_i64().expect("id");
            return s.get(&format!("/api/v1/tickets/{id}"), token).await.1;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {channel} ticket `{subject}`: {page}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fax and letter inboxes: documents dropped there become tickets with the document attached
/// (a corrupt one too, with a note); a letter's answer is a PDF in the outbox whose text is
/// the reply, printed in the configured letter font (Polish and Greek included).
async fn fax_and_letter_directories_in_and_pdf_out(db: Db) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (fax_in, letter_in, letter_out) = (
        dir.path().join("fax"),
        dir.path().join("letters"),
        dir.path().join("out"),
    );
    for d in [&fax_in, &letter_in] {
        std::fs::create_dir_all(d).expect("inbox");
    }
    let directories = vec![
        DirectoryConfig {
            address: "+4930555".into(),
            kind: DirectoryKind::Fax,
            inbox: fax_in.clone(),
            outbox: None,
        },
        DirectoryConfig {
            address: "letters".into(),
            kind: DirectoryKind::Letter,
            inbox: letter_in.clone(),
            outbox: Some(letter_out.clone()),
        },
    ];
    let s = TestServer::start_with(db, |c| {
        quick(c);
        c.channels.max_attachment_bytes = 1024 * 1024;
        c.channels.directories = directories;
        c.channels.letter_font = Some("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf".into());
        c.channels.letter_bold_font =
            Some("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf".into());
    })
    .await;
    let admin = s.demo_login("ada").await;
    let email = service_address(&s, &admin, "email").await;
    let (support, queue) = (email["mailbox_id"].clone(), email["queue_id"].clone());
    for (kind, address) in [("fax", "+4930555"), ("letter", "letters")] {
        s.create(
            "/api/v1/service-addresses",
            &admin,
            json!({ "kind": kind, "address": address, "mailbox_id": support, "queue_id": queue }),
        )
        .await;
    }
    // A document that cannot be moved to `processed/` (a directory of its name is there)
    // becomes its ticket but stays, tried again every round; documents dropped later are
    // taken all the same.
    // (Directories hold both names it could go by: its own and the one with its hash.)
    let stuck = b"%PDF-1.4 stuck %%EOF";
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(stuck));
    for taken in ["stuck.pdf".to_owned(), format!("stuck.{}.pdf", &hash[..12])] {
        std::fs::create_dir_all(fax_in.join("processed").join(taken).join("in-the-way"))
            .expect("obstacle");
    }
    std::fs::write(fax_in.join("stuck.json"), r#"{"subject": "Stuck fax"}"#).expect("side file");
    std::fs::write(fax_in.join("stuck.pdf"), stuck).expect("fax");
    ticket_of(&s, &admin, "fax", "Stuck fax").await;
    std::fs::write(
        fax_in.join("order.json"),
        r#"{"sender": "Erika Mustermann", "contact": "+4930777", "subject": "Fax order"}"#,
    )
    .expect("side file");
    std::fs::write(fax_in.join("order.tif"), TIFF).expect("fax");
    std::fs::write(fax_in.join("broken.pdf"), b"%PDF-1.4 cut off in the middle").expect("fax");
    let letter = vacd::channels::letter::render(
        &Default::default(),
        "Max Muster",
        "Kuendigung",
        "I cancel my contract.",
    )
    .expect("pdf");
    std::fs::write(letter_in.join("scan.json"), r#"{"sender": "Max Muster", "contact": "Max Muster\nHauptstrasse 1\n10115 Berlin", "subject": "Cancellation"}"#).expect("side file");
    std::fs::write(letter_in.join("scan.pdf"), &letter).expect("letter");

    let fax = ticket_of(&s, &admin, "fax", "Fax order").await;
    let document = &fax["thread"][0]["attachments"][0];
    assert_eq!(document["filename"], "order.tif");
    assert_eq!(document["content_type"], "image/tiff");
    let bytes = s
        .http
        .get(format!(
            "{}/api/v1/attachments/{}/content",
            s.base, document["id"]
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("content")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(&bytes[..], TIFF, "the document is viewable as sent");
    assert_eq!(fax["customer"]["name"], "Erika Mustermann");
    let broken = ticket_of(&s, &admin, "fax", "Fax from unknown sender").await;
    assert!(
        broken["thread"][1]["body"]
            .as_str()
            .is_some_and(|n| n.contains("broken.pdf") && n.contains("truncated")),
        "{broken}"
    );
    // A contact longer than the store indexes is left out, with a note; the fax is a ticket.
    std::fs::write(
        fax_in.join("long.json"),
        json!({ "contact": incompressible(4000), "subject": "Long contact" }).to_string(),
    )
    .expect("side file");
    std::fs::write(fax_in.join("long.pdf"), b"%PDF-1.4 long %%EOF").expect("fax");
    let long = ticket_of(&s, &admin, "fax", "Long contact").await;
    assert_eq!(long["contact"], Value::Null, "{long}");
    assert!(
        long["thread"][1]["body"]
            .as_str()
            .is_some_and(|n| n.contains("contact has 4000 bytes")),
        "{long}"
    );
    poll("the faxes moved to processed/", MAIL_WAIT, || {
        (fax_in.join("processed/order.tif").exists()
            && fax_in.join("processed/broken.pdf").exists())
        .then_some(())
    })
    .await;
    // The same name again, another fax: both are kept in processed/.
    std::fs::write(
        fax_in.join("order.json"),
        r#"{"subject": "Fax order again"}"#,
    )
    .expect("side file");
    std::fs::write(fax_in.join("order.tif"), [TIFF, b"2"].concat()).expect("fax");
    ticket_of(&s, &admin, "fax", "Fax order again").await;
    let processed = |ext: &str| {
        std::fs::read_dir(fax_in.join("processed"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("order.") && n.ends_with(ext))
                    .count()
            })
            .unwrap_or(0)
    };
    poll("both orders in processed/", MAIL_WAIT, || {
        (processed(".tif") == 2 && processed(".json") == 2).then_some(())
    })
    .await;
    // One larger than max_attachment_bytes: a ticket that says where it is, nothing attached.
    let mut huge = b"%PDF-1.4 ".to_vec();
    huge.resize(1024 * 1024 + 1, b' ');
    std::fs::write(fax_in.join("huge.json"), r#"{"subject": "Huge fax"}"#).expect("side file");
    std::fs::write(fax_in.join("huge.pdf"), &huge).expect("fax");
    let big = ticket_of(&s, &admin, "fax", "Huge fax").await;
    assert_eq!(big["thread"][0]["attachments"], json!([]), "{big}");
    assert!(
        big["thread"][1]["body"]
            .as_str()
            .is_some_and(|n| n.contains("huge.pdf has 1048577 bytes")
                && n.contains("find it as processed/huge.pdf in")),
        "{big}"
    );
    // A side file that is a link or a pipe is not read (a pipe would block the inbox for
    // ever): the faxes are tickets with a note.
    let elsewhere = fax_in.parent().expect("parent").join("elsewhere.json");
    std::fs::write(&elsewhere, r#"{"subject": "Linked fax"}"#).expect("target");
    std::os::unix::fs::symlink(&elsewhere, fax_in.join("linked.json")).expect("symlink");
    std::fs::write(fax_in.join("linked.pdf"), b"%PDF-1.4 linked %%EOF").expect("fax");
    let made = std::process::Command::new("mkfifo")
        .arg(fax_in.join("piped.json"))
        .status()
        .expect("mkfifo");
    assert!(made.success());
    std::fs::write(fax_in.join("piped.pdf"), b"%PDF-1.4 piped %%EOF").expect("fax");
    for side in ["linked.json", "piped.json"] {
        common::eventually(&format!("the fax beside {side}"), || async {
            let (_, page) = s
                .get("/api/v1/interactions?channel=fax&limit=100", &admin)
                .await;
            for item in page["items"].as_array()? {
                let id = item["id"].as_i64()?;
                let ticket = s.get(&format!("/api/v1/tickets/{id}"), &admin).await.1;
                if ticket
                    .to_string()
                    .contains(&format!("{side} is no plain file"))
                {
                    return Some(());
                }
            }
            None
        })
        .await;
    }
    assert_eq!(tickets_titled(&s, &admin, "fax", "Linked fax").await, 0);
    assert!(fax_in.join("stuck.pdf").exists(), "the stuck fax stays");
    let stuck = tickets_titled(&s, &admin, "fax", "Stuck fax").await;
    assert_eq!(stuck, 1, "taken again every round, its ticket is made once");

    let letter = ticket_of(&s, &admin, "letter", "Cancellation").await;
    let id = letter["id"].as_i64().expect("id");
    assert_eq!(
        letter["thread"][0]["attachments"][0]["content_type"],
        "application/pdf"
    );
    let (status, reply) = s
        .post(&format!("/api/v1/tickets/{id}/reply"), &admin, json!({ "body": "{{salutation}}\n\nwe confirm the cancellation of your contract.\nPozdrawiamy z Łodzi, Ευχαριστώ.\n\n{{agent.name}}" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let pdf = poll("the letter in the outbox", MAIL_WAIT, || {
        std::fs::read_dir(&letter_out)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "pdf"))
    })
    .await;
    // The text as a reader extracts it (poppler's pdftotext).
    let extracted = std::process::Command::new("pdftotext")
        .arg(&pdf)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils) runs");
    assert!(extracted.status.success(), "pdftotext failed on {pdf:?}");
    let text = String::from_utf8(extracted.stdout).expect("UTF-8 text");
    assert!(text.contains("Hauptstrasse 1"), "{text}");
    assert!(text.contains(&format!("[#T-{id}]")), "{text}");
    assert!(
        text.contains("we confirm the cancellation of your contract."),
        "{text}"
    );
    assert!(text.contains("Dear Max Muster,"), "{text}");
    assert!(text.contains("Pozdrawiamy z Łodzi, Ευχαριστώ."), "{text}");
    s.stop().await;
}

/// Encrypted mail servers: IMAP over TLS, IMAP with STARTTLS, POP3 with STLS, and replies over
/// SMTP with STARTTLS, all against a self-signed certificate the accounts trust (`ca_file`).
async fn tls_and_starttls_to_imap_pop3_and_smtp(db: Db) {
    let certificate = mail::Certificate::new();
    let dovecot = Dovecot::start_tls(&certificate).await;
    let smtp = SmtpReceiver::start_tls(&certificate).await;
    let account = |address: &str, user: &str, protocol, port, security| MailAccountConfig {
        address: address.into(),
        protocol,
        port,
        security,
        username: user.into(),
        after_fetch: AfterFetch::Delete,
        ca_file: Some(certificate.cert.clone()),
        ..imap_account_on(port)
    };
    let mut support = account(
        SUPPORT,
        "support",
        Protocol::Imap,
        dovecot.imaps_port,
        Security::Tls,
    );
    support.auto_reply_template = Some("acknowledgement".into());
    support.smtp = Some(SmtpConfig {
        host: "127.0.0.1".into(),
        port: smtp.port,
        security: Security::Starttls,
        username: None,
        password: None,
    });
    let accounts = vec![
        support,
        account(
            "sales@demo.vacd.test",
            "sales",
            Protocol::Imap,
            dovecot.imap_port,
            Security::Starttls,
        ),
        account(
            "info@demo.vacd.test",
            "info",
            Protocol::Pop3,
            dovecot.pop3_port,
            Security::Starttls,
        ),
    ];
    let s = TestServer::start_with(db, |c| {
        quick(c);
        c.channels.accounts = accounts;
    })
    .await;
    let admin = s.demo_login("ada").await;
    let email = service_address(&s, &admin, "email").await;
    for address in ["sales@demo.vacd.test", "info@demo.vacd.test"] {
        s.create(
            "/api/v1/service-addresses",
            &admin,
            json!({ "kind": "email", "address": address, "mailbox_id": email["mailbox_id"], "queue_id": email["queue_id"] }),
        )
        .await;
    }
    for (user, address) in [
        ("support", SUPPORT),
        ("sales", "sales@demo.vacd.test"),
        ("info", "info@demo.vacd.test"),
    ] {
        let raw = mail::mail(
            ERIKA,
            address,
            &format!("via {user}"),
            &format!("{user}@example.test"),
            "",
            "Hello, please call me back.",
        );
        dovecot.deliver(user, "1.tls", &raw);
    }
    let deadline = std::time::Instant::now() + MAIL_WAIT;
    while !["support", "sales", "info"]
        .iter()
        .all(|u| dovecot.messages(u) == 0)
    {
        let (_, ready) = s.call(reqwest::Method::GET, "/ready", None, None).await;
        assert!(
            std::time::Instant::now() < deadline,
            "every mail fetched over TLS: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ack = smtp
        .expect("the acknowledgement over STARTTLS", |m| {
            m.header("In-Reply-To").as_deref() == Some("<support@example.test>")
        })
        .await;
    assert!(ack.header("Subject").is_some_and(|s| s.contains("[#T-")));
    let (_, ready) = s.call(reqwest::Method::GET, "/ready", None, None).await;
    for key in [
        "file:support@demo.vacd.test",
        "file:sales@demo.vacd.test",
        "file:info@demo.vacd.test",
    ] {
        assert_eq!(
            ready["channels"]["mail_accounts"][key]["up"], true,
            "{key}: {ready}"
        );
    }
    s.stop().await;
}

on_both_backends!(
    mail_becomes_a_ticket_answered_with_a_template,
    a_crash_between_fetch_and_commit_loses_and_duplicates_nothing,
    bad_mail_over_pop3_is_kept_loops_and_spam_are_not,
    acknowledgements_are_found_by_customer_and_time,
    an_unreachable_mail_server_is_retried_and_visible,
    a_duplicate_is_the_same_mail_attachments_included,
    a_mail_server_that_stops_answering_is_given_up,
    sms_in_through_the_webhook_and_out_through_the_gateway,
    a_reply_during_wrap_up_waits_again,
    a_ticket_does_not_outrank_a_chat_that_waited_longer,
    sms_sent_together_make_one_ticket,
    a_ticket_another_agent_works_on_is_theirs,
    a_reply_is_sent_once_however_often_it_is_clicked,
    a_message_that_crosses_the_reply_is_routed_again,
    a_waiting_ticket_answered_from_the_desk_counts_answered,
    a_follow_up_date_brings_the_ticket_back,
    fax_and_letter_directories_in_and_pdf_out,
    tls_and_starttls_to_imap_pop3_and_smtp,
);

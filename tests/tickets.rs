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
use common::{Db, TestDb, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Row;
use vacd::channels::config::{
    AfterFetch, DirectoryConfig, DirectoryKind, MailAccountConfig, Protocol, Security, SmtpConfig,
};
use vacd::config::Config;

const SUPPORT: &str = "support@demo.vacd.test";
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
    MailAccountConfig {
        address: SUPPORT.into(),
        protocol: Protocol::Imap,
        host: "127.0.0.1".into(),
        port: dovecot.imap_port,
        security: Security::Plain,
        username: "support".into(),
        password: mail::PASSWORD.into(),
        folder: "INBOX".into(),
        after_fetch: AfterFetch::Delete,
        smtp: smtp.map(|s| SmtpConfig {
            host: "127.0.0.1".into(),
            port: s.port,
            security: Security::Plain,
            username: None,
            password: None,
        }),
        auto_reply_template: None,
        ca_file: None,
    }
}

async fn service_address(s: &TestServer, token: &str, kind: &str) -> Value {
    let (status, page) = s
        .get(&format!("/api/v1/service-addresses?kind={kind}"), token)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"][0].clone()
}

/// Waits until the ticket (or its newest message) satisfies `check`.
async fn ticket_where(s: &TestServer, token: &str, id: i64, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + MAIL_WAIT;
    loop {
        let (status, ticket) = s.get(&format!("/api/v1/tickets/{id}"), token).await;
        if status == StatusCode::OK && check(&ticket) {
            return ticket;
        }
        assert!(std::time::Instant::now() < deadline, "ticket {id} never got there: {ticket}");
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
    assert_eq!(ack.header("Auto-Submitted").as_deref(), Some("auto-replied"));
    assert_eq!(ack.header("In-Reply-To").as_deref(), Some("<m1@example.test>"));

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
        .post(&format!("/api/v1/tickets/{id}/preview"), &chloe_token, json!({ "template": "answer" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    let body = preview["body"].as_str().expect("body");
    assert!(body.starts_with("Bonjour Erika Mustermann,"), "{body}");
    assert!(body.contains(&format!("T-{id}")) && body.contains("Chloé Charpentier"), "{body}");
    assert!(body.contains("Your Demo support team"), "the mailbox signature: {body}");

    let (status, sent) = s
        .post(&format!("/api/v1/tickets/{id}/reply"), &chloe_token, json!({ "template": "answer" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    let reply_id = sent["message_id"].as_str().expect("message id").to_owned();
    let reply = smtp
        .expect("the reply", |m| {
            m.header("Message-ID").as_deref() == Some(format!("<{reply_id}>").as_str())
        })
        .await;
    assert_eq!(reply.header("In-Reply-To").as_deref(), Some("<m1@example.test>"));
    assert!(reply.header("References").is_some_and(|r| r.contains("<m1@example.test>")));
    assert!(reply.header("Subject").is_some_and(|s| s.contains(&tag)), "{}", reply.raw);
    assert!(reply.header("To").is_some_and(|t| t.contains("erika@example.test")));
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
        t["thread"].as_array().is_some_and(|m| m.iter().any(|m| m["message_id"] == "m2@example.test"))
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
    let tagged = mail::mail(ERIKA, SUPPORT, &format!("Nachtrag {tag}"), "m3@example.test", "", "P.S.");
    dovecot.append("support", &tagged).await;
    ticket_where(&s, &chloe_token, id, |t| {
        t["thread"].as_array().is_some_and(|m| m.iter().any(|m| m["message_id"] == "m3@example.test"))
    })
    .await;
    // Everything Diego was sent so far arrives before the reply to this command.
    diego
        .command(json!({ "type": "presence.set", "status": "ready", "mode": "inbound" }))
        .await;
    assert!(
        !diego.seen.iter().any(|f| f["type"] == "offer"),
        "Diego speaks no French: {:?}",
        diego.seen
    );
    s.stop().await;
}

on_both_backends!(mail_becomes_a_ticket_answered_with_a_template);

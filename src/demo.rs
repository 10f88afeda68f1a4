//! The demo tenant seeded when `demo.enabled` is set (it is in `config/vacd.toml`), so that a
//! fresh start has something to route: mailboxes Sales and Support (with a child mailbox that
//! inherits), language and topic skills, four queues, four agents who speak different
//! languages (each with a SIP phone login), a supervisor (with a phone for monitoring), an admin, and one phone number, email
//! address and chat widget.
//! Seeding goes through the same validation as the API and happens only if no tenant `demo`
//! exists, so an admin's later changes survive restarts. The logins are listed in the README.

use serde_json::{json, Value as Json};

use crate::api::error::Error;
use crate::api::resources::new_values;
use crate::catalog::{self, Resource};
use crate::store::Store;

pub const TENANT: &str = "demo";
/// Every demo user's password.
pub const PASSWORD: &str = "demo-password";
/// The demo agents' SIP password; their SIP username is their login name.
pub const SIP_PASSWORD: &str = "demo-sip-password";

struct Seeder<'a> {
    store: &'a Store,
    tenant: i64,
}

impl Seeder<'_> {
    async fn add(&self, resource: &Resource, body: Json) -> Result<i64, Error> {
        let values = new_values(resource, body)?;
        let row = self
            .store
            .create(resource, self.tenant, None, &values)
            .await?;
        Ok(row["id"].as_i64().unwrap_or_default())
    }
}

/// Seeds the demo tenant unless it already exists. Returns whether it seeded.
pub async fn seed(store: &Store) -> Result<bool, Error> {
    if store.tenant_by_name(TENANT).await?.is_some() {
        return Ok(false);
    }
    // A company in Berlin: its mailboxes' business hours are Berlin's.
    let tenant = store
        .create_tenant_in(TENANT, "Demo GmbH", "Europe/Berlin")
        .await?;
    let s = Seeder {
        store,
        tenant: tenant.id,
    };
    use catalog::*;

    let mut skill = std::collections::BTreeMap::new();
    for (name, kind) in [
        ("en", "language"),
        ("de", "language"),
        ("fr", "language"),
        ("es", "language"),
        ("sales", "topic"),
        ("support", "topic"),
    ] {
        skill.insert(
            name,
            s.add(&SKILLS, json!({ "name": name, "kind": kind }))
                .await?,
        );
    }

    let sales = s.add(&MAILBOXES, json!({ "name": "Sales", "language": "de", "sla_seconds": 28800, "business_hours": "Mo-Fr 08:00-18:00", "signature": "Ihr Demo-Vertrieb" })).await?;
    let support = s.add(&MAILBOXES, json!({ "name": "Support", "language": "en", "sla_seconds": 14400, "business_hours": "Mo-Sa 07:00-20:00", "signature": "Your Demo support team" })).await?;
    s.add(
        &MAILBOXES,
        json!({ "name": "Support Billing", "parent_id": support }),
    )
    .await?;

    let mut queue = std::collections::BTreeMap::new();
    for (name, mailbox, topic, language, priority) in [
        ("Sales DE", sales, "sales", "de", 60),
        ("Sales EN", sales, "sales", "en", 60),
        ("Support EN", support, "support", "en", 50),
        ("Support FR", support, "support", "fr", 50),
        ("Support DE", support, "support", "de", 50),
    ] {
        let id = s
            .add(
                &QUEUES,
                json!({ "name": name, "mailbox_id": mailbox, "priority": priority }),
            )
            .await?;
        s.add(
            &QUEUE_SKILLS,
            json!({ "queue_id": id, "skill_id": skill[topic], "min_level": 3 }),
        )
        .await?;
        s.add(
            &QUEUE_SKILLS,
            json!({ "queue_id": id, "skill_id": skill[language], "min_level": 5 }),
        )
        .await?;
        queue.insert(name, id);
    }

    let team = s.add(&TEAMS, json!({ "name": "Team Berlin" })).await?;
    // (username, display name, skills with levels, queues served)
    type DemoAgent = (
        &'static str,
        &'static str,
        &'static [(&'static str, i64)],
        &'static [&'static str],
    );
    let agents: [DemoAgent; 4] = [
        (
            "alice",
            "Alice Andersen",
            &[("en", 10), ("de", 6), ("sales", 8)],
            &["Sales EN", "Sales DE"],
        ),
        (
            "bruno",
            "Bruno Becker",
            &[("de", 10), ("sales", 5), ("support", 7)],
            &["Sales DE", "Support DE"],
        ),
        (
            "chloe",
            "Chloé Charpentier",
            &[("fr", 10), ("en", 7), ("support", 9)],
            &["Support FR", "Support EN"],
        ),
        (
            "diego",
            "Diego Díaz",
            &[("es", 10), ("en", 8), ("support", 6)],
            &["Support EN"],
        ),
    ];
    for (username, name, skills, queues) in agents {
        let user = s.add(&USERS, json!({ "username": username, "display_name": name, "password": PASSWORD, "role": "agent", "team_id": team, "sip_username": username, "sip_password": SIP_PASSWORD })).await?;
        for (skill_name, level) in skills {
            s.add(
                &AGENT_SKILLS,
                json!({ "user_id": user, "skill_id": skill[skill_name], "level": level }),
            )
            .await?;
        }
        for q in queues {
            s.add(
                &QUEUE_MEMBERS,
                json!({ "queue_id": queue[q], "user_id": user }),
            )
            .await?;
        }
    }
    // The supervisor has a phone too: monitoring calls it.
    s.add(&USERS, json!({ "username": "sam", "display_name": "Sam Supervisor", "password": PASSWORD, "role": "supervisor", "team_id": team, "sip_username": "sam", "sip_password": SIP_PASSWORD })).await?;
    s.add(&USERS, json!({ "username": "ada", "display_name": "Ada Admin", "password": PASSWORD, "role": "admin" })).await?;

    s.add(&SERVICE_ADDRESSES, json!({ "kind": "phone", "address": "+4930123456", "mailbox_id": sales, "queue_id": queue["Sales DE"] })).await?;
    s.add(&SERVICE_ADDRESSES, json!({ "kind": "email", "address": "support@demo.vacd.test", "mailbox_id": support, "queue_id": queue["Support EN"] })).await?;
    let widget = s.add(&SERVICE_ADDRESSES, json!({ "kind": "widget", "address": "demo-widget", "mailbox_id": support, "queue_id": queue["Support EN"] })).await?;
    s.add(&CHAT_WIDGETS, json!({ "service_address_id": widget, "title": "Demo GmbH support", "color": "#0b6e4f", "welcome": "Hello! Ask us anything.", "offline_text": "Nobody can chat right now. Leave a message and we will answer by email.", "prechat": "name,email,topic", "topics": "Orders,Billing,Technical" })).await?;

    s.add(&TEXT_MODULES, json!({ "name": "greeting", "language": "en", "shortcut": "/hi", "body": "Hello {customer.name}, thank you for contacting us. How can I help?" })).await?;
    s.add(&TEXT_MODULES, json!({ "name": "greeting", "language": "de", "shortcut": "/hi", "body": "Hallo {customer.name}, danke für Ihre Nachricht. Wie kann ich helfen?" })).await?;
    s.add(&TEMPLATES, json!({ "name": "acknowledgement", "language": "en", "mailbox_id": support, "subject": "We received your message [#{ticket}]", "body": "Dear {customer.name},\n\nthank you for your message. Your ticket number is {ticket}.\n\n{signature}" })).await?;

    tracing::info!(tenant = tenant.id, "demo tenant seeded");
    Ok(true)
}

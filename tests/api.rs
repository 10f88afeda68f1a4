//! The admin API over real HTTP, on SQLite and on PostgreSQL: CRUD round trips for every
//! resource, login and tokens, the role checks, the tenant-isolation matrix, bad input, routing
//! settings of tenants and users, the OpenAPI document and the operational endpoints; the
//! HTTP listener's header deadline and connection cap.

mod common;

use common::{assert_error, console, Db, TestServer, OPERATOR_TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vacd::catalog::RESOURCES;

/// One row per resource in the tenant of `token`, created in dependency order. Returns, per
/// resource path, the id and a valid PATCH body.
async fn fixture(s: &TestServer, token: &str, tag: &str) -> Vec<(&'static str, i64, Value)> {
    let skill = s
        .create(
            "/api/v1/skills",
            token,
            json!({ "name": format!("skill-{tag}"), "kind": "topic" }),
        )
        .await;
    let parent = s
        .create(
            "/api/v1/mailboxes",
            token,
            json!({ "name": format!("parent-{tag}"), "language": "en" }),
        )
        .await;
    let mailbox = s
        .create(
            "/api/v1/mailboxes",
            token,
            json!({ "name": format!("mb-{tag}"), "parent_id": parent }),
        )
        .await;
    let queue = s
        .create(
            "/api/v1/queues",
            token,
            json!({ "name": format!("q-{tag}"), "mailbox_id": mailbox, "strategy": "round_robin" }),
        )
        .await;
    let queue_skill = s
        .create(
            "/api/v1/queue-skills",
            token,
            json!({ "queue_id": queue, "skill_id": skill, "min_level": 4 }),
        )
        .await;
    let overflow = s
        .create(
            "/api/v1/queues",
            token,
            json!({ "name": format!("q-{tag}-overflow") }),
        )
        .await;
    let escalation = s.create("/api/v1/queue-escalations", token, json!({ "queue_id": queue, "after_seconds": 60, "action": "add_overflow_queue", "overflow_queue_id": overflow })).await;
    let team = s
        .create(
            "/api/v1/teams",
            token,
            json!({ "name": format!("team-{tag}") }),
        )
        .await;
    let user = s.create("/api/v1/users", token, json!({ "username": format!("user-{tag}"), "display_name": "U", "password": "long-enough", "team_id": team })).await;
    let agent_skill = s
        .create(
            "/api/v1/agent-skills",
            token,
            json!({ "user_id": user, "skill_id": skill, "level": 7 }),
        )
        .await;
    let member = s
        .create(
            "/api/v1/queue-members",
            token,
            json!({ "queue_id": queue, "user_id": user }),
        )
        .await;
    let address = s.create("/api/v1/service-addresses", token, json!({ "kind": "email", "address": format!("{tag}@example.test"), "mailbox_id": mailbox, "queue_id": queue })).await;
    let customer = s
        .create(
            "/api/v1/customers",
            token,
            json!({ "name": "Erika Mustermann", "language": "de" }),
        )
        .await;
    let identity = s.create("/api/v1/customer-identities", token, json!({ "customer_id": customer, "kind": "phone", "value": format!("+49301{}", tag.len()) })).await;
    // A record without a queue: routing never holds it, so the round trip may delete it.
    let interaction = s
        .create(
            "/api/v1/interactions",
            token,
            json!({ "channel": "email", "customer_id": customer, "subject": "Invoice" }),
        )
        .await;
    let message = s.create("/api/v1/messages", token, json!({ "interaction_id": interaction, "direction": "in", "author": "erika@example.test", "body": "Hello" })).await;
    let attachment = s.create("/api/v1/attachments", token, json!({ "message_id": message, "filename": "scan.pdf", "content_type": "application/pdf" })).await;
    let template = s
        .create(
            "/api/v1/templates",
            token,
            json!({ "name": format!("t-{tag}"), "language": "en", "body": "Dear {name}" }),
        )
        .await;
    let module = s
        .create(
            "/api/v1/text-modules",
            token,
            json!({ "name": format!("m-{tag}"), "language": "en", "body": "Thanks!" }),
        )
        .await;
    let widget = s.create("/api/v1/chat-widgets", token, json!({ "service_address_id": address, "title": "Help", "color": "#123456", "welcome": "Hi", "offline_text": "Later", "prechat": "name" })).await;
    let mail_account = s.create("/api/v1/mail-accounts", token, json!({ "service_address_id": address, "protocol": "pop3", "host": "mail.example.test", "port": 110, "security": "starttls", "username": "u", "password": "p" })).await;
    let rule = s.create("/api/v1/routing-rules", token, json!({ "name": format!("r-{tag}"), "service_address_id": address, "customer_id": customer, "keywords": "invoice, bill", "hours": "Mo-Fr 08:00-18:00", "queue_id": queue, "priority": 70 })).await;
    vec![
        ("skills", skill, json!({ "kind": "language" })),
        (
            "mailboxes",
            mailbox,
            json!({ "sla_seconds": 3600, "language": null }),
        ),
        (
            "queues",
            queue,
            json!({ "priority": 90, "wrapup_seconds": 5 }),
        ),
        ("queue-skills", queue_skill, json!({ "min_level": 2 })),
        (
            "queue-escalations",
            escalation,
            json!({ "after_seconds": 90, "action": "raise_priority", "amount": 5 }),
        ),
        (
            "teams",
            team,
            json!({ "name": format!("team-{tag}-renamed") }),
        ),
        (
            "users",
            user,
            json!({ "display_name": "User Renamed", "role": "team_lead" }),
        ),
        ("agent-skills", agent_skill, json!({ "level": 9 })),
        ("queue-members", member, json!({})),
        ("service-addresses", address, json!({ "queue_id": null })),
        ("customers", customer, json!({ "notes": "VIP" })),
        (
            "customer-identities",
            identity,
            json!({ "value": "+4930999" }),
        ),
        (
            "interactions",
            interaction,
            json!({ "subject": "Invoice 2" }),
        ),
        ("messages", message, json!({})),
        ("attachments", attachment, json!({})),
        ("templates", template, json!({ "subject": "Re: {subject}" })),
        ("text-modules", module, json!({ "shortcut": "/thx" })),
        (
            "mail-accounts",
            mail_account,
            json!({ "port": 995, "enabled": 0 }),
        ),
        (
            "chat-widgets",
            widget,
            json!({ "color": "#654321", "topics": "Billing,Orders" }),
        ),
        (
            "routing-rules",
            rule,
            json!({ "position": 5, "enabled": 0, "outside_hours": 1 }),
        ),
    ]
}

async fn crud_round_trip_for_every_resource(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.demo_login("ada").await;
    let rows = fixture(&s, &admin, "rt").await;
    // Every writable catalog resource is covered by the fixture.
    for r in RESOURCES.iter().filter(|r| r.write.is_some()) {
        assert!(
            rows.iter().any(|(path, ..)| *path == r.path),
            "fixture misses {}",
            r.path
        );
    }
    for (path, id, change) in &rows {
        let (status, row) = s.get(&format!("/api/v1/{path}/{id}"), &admin).await;
        assert_eq!(status, StatusCode::OK, "{path}: {row}");
        assert_eq!(row["id"], *id);
        assert!(
            row.get("password").is_none() && row.get("password_hash").is_none(),
            "{path} leaks a password"
        );

        let (status, page) = s.get(&format!("/api/v1/{path}?limit=500"), &admin).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        assert!(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .any(|r| r["id"] == *id),
            "{path} list"
        );

        let (status, updated) = s
            .patch(&format!("/api/v1/{path}/{id}"), &admin, change.clone())
            .await;
        assert_eq!(status, StatusCode::OK, "{path}: {updated}");
        for (key, value) in change.as_object().expect("object") {
            assert_eq!(updated[key], *value, "{path}.{key} after PATCH");
        }
        let (_, again) = s.get(&format!("/api/v1/{path}/{id}"), &admin).await;
        assert_eq!(again, updated, "{path}: PATCH result persisted");
    }
    // Delete leaves first (reverse creation order), then the rows are gone.
    for (path, id, _) in rows.iter().rev() {
        let (status, body) = s.delete(&format!("/api/v1/{path}/{id}"), &admin).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{path}: {body}");
        assert_error(
            &s.get(&format!("/api/v1/{path}/{id}"), &admin).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
    }
    // Every change above is in the event log.
    let (status, events) = s
        .get("/api/v1/events?kind=admin.queues.updated", &admin)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(events["total"], 1, "{events}");
    s.stop().await;
}

async fn filters_and_pagination(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.demo_login("ada").await;
    let (_, all) = s.get("/api/v1/queues", &admin).await;
    assert_eq!(all["total"], 5);
    let (_, page) = s.get("/api/v1/queues?limit=3&offset=2", &admin).await;
    assert_eq!(
        (
            page["total"].clone(),
            page["items"].as_array().map(Vec::len)
        ),
        (json!(5), Some(3))
    );
    assert_eq!(page["items"][0]["id"], all["items"][2]["id"]);
    let sales = all["items"][0]["mailbox_id"].clone();
    let (_, filtered) = s
        .get(&format!("/api/v1/queues?mailbox_id={sales}"), &admin)
        .await;
    assert_eq!(filtered["total"], 2, "{filtered}");
    let (_, agents) = s.get("/api/v1/users?role=agent", &admin).await;
    assert_eq!(agents["total"], 4);
    s.stop().await;
}

/// A parent chain is walked at most 32 levels up: a deeper one is refused like a cycle, so that
/// a cycle two concurrent changes stored cannot make the walk go on for ever.
/// A chain of mailboxes is 32 levels deep at most, whether a mailbox is created or moved
/// there.
async fn hierarchies_deeper_than_32_levels_are_refused(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.demo_login("ada").await;
    let mut deepest = None;
    for level in 1..=32 {
        let body = json!({ "name": format!("Level {level}"), "parent_id": deepest });
        deepest = Some(s.create("/api/v1/mailboxes", &admin, body).await);
    }
    assert_error(
        &s.post(
            "/api/v1/mailboxes",
            &admin,
            json!({ "name": "Level 33", "parent_id": deepest }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "too_deep",
    );
    let under = s
        .create("/api/v1/mailboxes", &admin, json!({ "name": "Too deep" }))
        .await;
    assert_error(
        &s.patch(
            &format!("/api/v1/mailboxes/{under}"),
            &admin,
            json!({ "parent_id": deepest }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "too_deep",
    );
    s.stop().await;
}

/// A tenant keeps an admin: the last one cannot be demoted or deleted (only an admin manages
/// users, and the operator token does not), once another is made admin it can.
async fn the_last_admin_stays(db: Db) {
    let s = TestServer::start(db).await;
    let ada = s.demo_login("ada").await;
    let (_, me) = s.get("/api/v1/me", &ada).await;
    let id = me["id"].as_i64().or(me["user"]["id"].as_i64()).expect("id");
    let me = format!("/api/v1/users/{id}");
    assert_error(
        &s.patch(&me, &ada, json!({ "role": "supervisor" })).await,
        StatusCode::CONFLICT,
        "last_admin",
    );
    assert_error(
        &s.delete(&me, &ada).await,
        StatusCode::CONFLICT,
        "last_admin",
    );
    let (_, still) = s.get(&me, &ada).await;
    assert_eq!(still["role"], "admin", "{still}");
    // Other changes of the last admin go through.
    let (status, renamed) = s
        .patch(&me, &ada, json!({ "display_name": "Ada L." }))
        .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");

    let grace = s
        .create(
            "/api/v1/users",
            &ada,
            json!({ "username": "grace", "display_name": "Grace", "password": "grace-password-1", "role": "admin" }),
        )
        .await;
    let (status, demoted) = s.patch(&me, &ada, json!({ "role": "supervisor" })).await;
    assert_eq!(status, StatusCode::OK, "{demoted}");
    let grace_token = s.login("demo", "grace", "grace-password-1").await;
    assert_error(
        &s.delete(&format!("/api/v1/users/{grace}"), &grace_token)
            .await,
        StatusCode::CONFLICT,
        "last_admin",
    );
    s.stop().await;
}

async fn login_and_tokens(db: Db) {
    let s = TestServer::start(db).await;
    let login = |tenant: &str, user: &str, password: &str| {
        s.call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({ "tenant": tenant, "username": user, "password": password })),
        )
    };
    assert_error(
        &login("demo", "alice", "wrong-password").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_error(
        &login("demo", "nobody", "demo-password").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_error(
        &login("no-such-tenant", "alice", "demo-password").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );

    // A name longer than any account's is refused as such, and never counts as a guess.
    let long = "x".repeat(257);
    for (tenant, user, password) in [
        (long.as_str(), "alice", "demo-password"),
        ("demo", &long, "demo-password"),
        ("demo", "alice", &long),
    ] {
        let refused = login(tenant, user, password).await;
        assert_error(&refused, StatusCode::UNPROCESSABLE_ENTITY, "too_long");
    }

    // Guessing: after 10 failures (the default) Diego's account is refused even the right
    // password, a made-up account locks the same way, and everyone else logs in as before.
    for _ in 0..10 {
        for user in ["diego", "no-one"] {
            assert_error(
                &login("demo", user, "guess").await,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            );
        }
    }
    for user in ["Diego", "no-one"] {
        assert_error(
            &login("demo", user, "demo-password").await,
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
        );
    }
    s.demo_login("chloe").await;

    // Guesses sent side by side do not get past the limit by queueing for the password check
    // together: at most one more per check running at once.
    let guesses = (0..40).map(|_| login("demo", "mallory", "guess"));
    let answers = futures_util::future::join_all(guesses).await;
    let checked = answers
        .iter()
        .filter(|(status, _)| *status != StatusCode::TOO_MANY_REQUESTS)
        .count();
    let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
    assert!(
        (10..=10 + parallel).contains(&checked),
        "{checked} of 40 guesses were checked, not refused"
    );

    // A NUL is no character PostgreSQL stores or looks for: a clear refusal, never a 500.
    let nul = login("demo\u{0}", "alice", "demo-password").await;
    let skills = s
        .get("/api/v1/skills?name=%00", &s.demo_login("ada").await)
        .await;
    match db {
        Db::Postgres => {
            assert_error(&nul, StatusCode::UNPROCESSABLE_ENTITY, "invalid_text");
            assert_error(&skills, StatusCode::UNPROCESSABLE_ENTITY, "invalid_text");
        }
        Db::Sqlite => {
            assert_error(&nul, StatusCode::UNAUTHORIZED, "unauthorized");
            assert_eq!(skills.1["total"], 0, "{}", skills.1);
        }
    }

    let token = s.demo_login("alice").await;
    let (status, me) = s.get("/api/v1/me", &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (me["username"].as_str(), me["role"].as_str()),
        (Some("alice"), Some("agent"))
    );

    assert_error(
        &s.call(Method::GET, "/api/v1/queues", None, None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_error(
        &s.get("/api/v1/queues", "not-a-token").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    let (status, _) = s
        .call(Method::POST, "/api/v1/auth/logout", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_error(
        &s.get("/api/v1/me", &token).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );

    // A password reset ends the logins made with the old password; other changes do not.
    let admin = s.demo_login("ada").await;
    let old = s.demo_login("alice").await;
    let (_, alice) = s.get("/api/v1/me", &old).await;
    let alice_url = format!("/api/v1/users/{}", alice["id"]);
    let (status, _) = s
        .patch(&alice_url, &admin, json!({ "display_name": "Alice A." }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s.get("/api/v1/me", &old).await.0, StatusCode::OK);
    let (status, _) = s
        .patch(&alice_url, &admin, json!({ "password": "a-new-password" }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &s.get("/api/v1/me", &old).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    let new = s.login("demo", "alice", "a-new-password").await;
    assert_eq!(s.get("/api/v1/me", &new).await.0, StatusCode::OK);
    assert_eq!(
        s.get("/api/v1/me", &admin).await.0,
        StatusCode::OK,
        "the admin's own login lives on"
    );
    s.stop().await;
}

/// One password tried on many accounts: after `auth.max_failed_logins_per_source` failures
/// from one client address (here forwarded by a trusted proxy) that address is refused for any
/// account, even with the right password, while the accounts log in from elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_from_one_address_locks_that_address() {
    let s = TestServer::start_with(Db::Sqlite, |c| {
        c.auth.max_failed_logins_per_source = 3;
        c.http.trusted_proxies =
            vec![vacd::config::Network::try_from("127.0.0.0/8".to_owned()).expect("network")];
    })
    .await;
    let login = |from: &'static str, user: &'static str, password: &'static str| {
        let body = json!({ "tenant": "demo", "username": user, "password": password });
        let request = s
            .http
            .post(format!("{}/api/v1/auth/login", s.base))
            .header("x-forwarded-for", from)
            .json(&body);
        async move {
            let response = request.send().await.expect("request sent");
            let status = response.status();
            (status, response.json::<Value>().await.expect("JSON body"))
        }
    };
    for user in ["alice", "diego", "no-one"] {
        assert_error(
            &login("203.0.113.1", user, "summer2026").await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
    }
    let refused = login("203.0.113.1", "chloe", "demo-password").await;
    assert_error(&refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(
        refused.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("from this address")),
        "{}",
        refused.1
    );
    for user in ["chloe", "alice"] {
        let (status, body) = login("203.0.113.2", user, "demo-password").await;
        assert_eq!(status, StatusCode::OK, "{user} from elsewhere: {body}");
    }
    s.stop().await;
}

async fn roles_are_checked_on_every_route(db: Db) {
    let s = TestServer::start(db).await;
    let agent = s.demo_login("alice").await;
    let supervisor = s.demo_login("sam").await;
    let admin = s.demo_login("ada").await;
    let team_lead = {
        let id = s.create("/api/v1/users", &admin, json!({ "username": "tim", "display_name": "Tim", "password": "tim-password", "role": "team_lead" })).await;
        assert!(id > 0);
        s.login("demo", "tim", "tim-password").await
    };
    // Reading: agents read what the console needs, not users or the event log.
    for (path, agent_ok, team_lead_ok, supervisor_ok) in [
        ("queues", true, true, true),
        ("text-modules", true, true, true),
        ("users", false, true, true),
        ("agent-skills", false, true, true),
        ("events", false, false, true),
    ] {
        for (token, ok) in [
            (&agent, agent_ok),
            (&team_lead, team_lead_ok),
            (&supervisor, supervisor_ok),
            (&admin, true),
        ] {
            let response = s.get(&format!("/api/v1/{path}"), token).await;
            if ok {
                assert_eq!(response.0, StatusCode::OK, "{path}: {}", response.1);
            } else {
                assert_error(&response, StatusCode::FORBIDDEN, "forbidden");
            }
        }
    }
    // Writing.
    let queue = json!({ "name": "Roles" });
    assert_error(
        &s.post("/api/v1/queues", &agent, queue.clone()).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &s.post("/api/v1/queues", &team_lead, queue.clone()).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &s.post("/api/v1/queues", &supervisor, queue.clone()).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let queue_id = s.create("/api/v1/queues", &admin, queue).await;
    let module = json!({ "name": "bye", "language": "en", "body": "Bye" });
    assert_error(
        &s.post("/api/v1/text-modules", &agent, module.clone()).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    s.create("/api/v1/text-modules", &team_lead, module).await;
    let (_, alice) = s.get("/api/v1/me", &agent).await;
    let member = json!({ "queue_id": queue_id, "user_id": alice["id"] });
    assert_error(
        &s.post("/api/v1/queue-members", &team_lead, member.clone())
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    s.create("/api/v1/queue-members", &supervisor, member).await;
    let user = json!({ "username": "eve", "display_name": "Eve", "password": "eve-password" });
    assert_error(
        &s.post("/api/v1/users", &supervisor, user).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    // Customers are worked on by agents, but only admins delete them.
    let customer = s
        .create("/api/v1/customers", &agent, json!({ "name": "Walk-in" }))
        .await;
    assert_error(
        &s.delete(&format!("/api/v1/customers/{customer}"), &agent)
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    // The event log is read-only for everyone.
    assert_error(
        &s.post(
            "/api/v1/events",
            &admin,
            json!({ "kind": "x", "at": 1, "payload": "{}" }),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    // Only the operator manages tenants; the operator token is no tenant user.
    assert_error(
        &s.get("/api/v1/tenants", &admin).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &s.get("/api/v1/queues", OPERATOR_TOKEN).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    // A role change takes effect on the next request of an existing token.
    let (_, tim) = s.get("/api/v1/me", &team_lead).await;
    let (status, _) = s
        .patch(
            &format!("/api/v1/users/{}", tim["id"]),
            &admin,
            json!({ "role": "agent" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &s.get("/api/v1/users", &team_lead).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    s.stop().await;
}

async fn tenants_are_isolated(db: Db) {
    let s = TestServer::start(db).await;
    let demo_admin = s.demo_login("ada").await;
    let (other_id, other_admin) = s.new_tenant("other").await;
    let demo_rows = fixture(&s, &demo_admin, "a").await;
    let other_rows = fixture(&s, &other_admin, "b").await;

    for ((path, mine, _), (_, theirs, change)) in demo_rows.iter().zip(&other_rows) {
        let url = format!("/api/v1/{path}/{theirs}");
        // The other tenant's row is invisible: read, change and delete answer 404 …
        assert_error(
            &s.get(&url, &demo_admin).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
        assert_error(
            &s.patch(&url, &demo_admin, change.clone()).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
        assert_error(
            &s.delete(&url, &demo_admin).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
        // … lists hold only the caller's rows …
        let (_, page) = s
            .get(&format!("/api/v1/{path}?limit=500"), &demo_admin)
            .await;
        let ids: Vec<_> = page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|r| r["id"].clone())
            .collect();
        assert!(
            ids.contains(&json!(mine)) && !ids.contains(&json!(theirs)),
            "{path}: {ids:?}"
        );
        // … and the row is unchanged for its owner.
        let (status, _) = s.get(&url, &other_admin).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    // References into another tenant are refused as unknown.
    let their_mailbox = other_rows
        .iter()
        .find(|(p, ..)| *p == "mailboxes")
        .map(|(_, id, _)| *id)
        .expect("mailbox");
    assert_error(
        &s.post(
            "/api/v1/queues",
            &demo_admin,
            json!({ "name": "sneaky", "mailbox_id": their_mailbox }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_reference",
    );
    // Tenants themselves: own visible, the other 404, listing is the operator's.
    let (status, own) = s.get("/api/v1/tenants/1", &demo_admin).await;
    assert_eq!(
        (status, own["name"].as_str()),
        (StatusCode::OK, Some("demo"))
    );
    assert_error(
        &s.get(&format!("/api/v1/tenants/{other_id}"), &demo_admin)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &s.patch(
            &format!("/api/v1/tenants/{other_id}"),
            &demo_admin,
            json!({ "display_name": "x" }),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let (status, renamed) = s
        .patch(
            &format!("/api/v1/tenants/{other_id}"),
            &other_admin,
            json!({ "display_name": "Other AG" }),
        )
        .await;
    assert_eq!(
        (status, renamed["display_name"].as_str()),
        (StatusCode::OK, Some("Other AG"))
    );
    let (status, tenants) = s.get("/api/v1/tenants", OPERATOR_TOKEN).await;
    assert_eq!(
        (status, tenants["total"].clone()),
        (StatusCode::OK, json!(2))
    );
    // A tenant starts on UTC's clock unless the operator names its time zone.
    assert_eq!(tenants["items"][1]["time_zone"], "UTC", "{tenants}");
    let (status, zoned) = s
        .post("/api/v1/tenants", OPERATOR_TOKEN, json!({ "name": "zoned", "display_name": "x", "admin_username": "a", "admin_password": "long-enough", "time_zone": "america/new_york" }))
        .await;
    assert_eq!(
        (status, &zoned["time_zone"]),
        (StatusCode::CREATED, &json!("America/New_York"))
    );
    // Same usernames in two tenants are two different users.
    let demo_tenant_admin = s
        .create(
            "/api/v1/users",
            &demo_admin,
            json!({ "username": "admin", "display_name": "A", "password": "another-password" }),
        )
        .await;
    assert!(demo_tenant_admin > 0);
    // A tenant with a chat or call still in routing is not deleted from under it.
    let (busy_id, busy_admin) = s.new_tenant("busy").await;
    let queue = s
        .create("/api/v1/queues", &busy_admin, json!({ "name": "Chats" }))
        .await;
    s.create(
        "/api/v1/interactions",
        &busy_admin,
        json!({ "channel": "chat", "queue_id": queue }),
    )
    .await;
    assert_error(
        &s.delete(&format!("/api/v1/tenants/{busy_id}"), OPERATOR_TOKEN)
            .await,
        StatusCode::CONFLICT,
        "tenant_busy",
    );
    // Deleting a tenant removes everything it owned.
    let (status, _) = s
        .delete(&format!("/api/v1/tenants/{other_id}"), OPERATOR_TOKEN)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_error(
        &s.get("/api/v1/me", &other_admin).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    s.stop().await;
}

async fn bad_input_is_rejected_and_changes_nothing(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.demo_login("ada").await;
    let snapshot = |s: &TestServer| {
        let admin = admin.clone();
        let base = s.base.clone();
        let http = s.http.clone();
        async move {
            let mut totals = Vec::new();
            for r in RESOURCES {
                let page: Value = http
                    .get(format!("{base}/api/v1/{}?limit=1", r.path))
                    .bearer_auth(&admin)
                    .send()
                    .await
                    .expect("send")
                    .json()
                    .await
                    .expect("json");
                totals.push((r.path, page["total"].clone()));
            }
            totals
        }
    };
    let interaction = s
        .create(
            "/api/v1/interactions",
            &admin,
            json!({ "channel": "email" }),
        )
        .await;
    let (_, queues) = s.get("/api/v1/queues", &admin).await;
    let queue = queues["items"][0]["id"].as_i64().expect("queue id");
    let step = s
        .create(
            "/api/v1/queue-escalations",
            &admin,
            json!({ "queue_id": queue, "after_seconds": 60, "action": "lower_skill_levels" }),
        )
        .await;
    let before = snapshot(&s).await;
    let raw = |method: Method, path: &str, content_type: Option<&str>, body: &'static [u8]| {
        let mut request = s
            .http
            .request(method, format!("{}{path}", s.base))
            .bearer_auth(&admin)
            .body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        async move {
            let response = request.send().await.expect("send");
            (
                response.status(),
                response.json::<Value>().await.expect("JSON error body"),
            )
        }
    };
    let json_ct = Some("application/json");
    assert_error(
        &raw(Method::POST, "/api/v1/queues", json_ct, b"{\"name\": ").await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
    );
    assert_error(
        &raw(Method::POST, "/api/v1/queues", json_ct, b"\xff\xfe").await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
    );
    assert_error(
        &raw(Method::POST, "/api/v1/queues", None, b"{\"name\": \"x\"}").await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let huge: &'static [u8] = Box::leak(
        format!("{{\"name\": \"{}\"}}", "x".repeat(100 * 1024))
            .into_bytes()
            .into_boxed_slice(),
    );
    assert_error(
        &raw(Method::POST, "/api/v1/queues", json_ct, huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );

    let cases: Vec<(&str, Value, &str)> = vec![
        ("queues", json!([1, 2]), "invalid_body"),
        (
            "queues",
            json!({ "name": "x", "colour": "red" }),
            "unknown_field",
        ),
        ("queues", json!({ "name": "x", "id": 99 }), "unknown_field"),
        ("queues", json!({ "name": 42 }), "invalid_type"),
        (
            "queues",
            json!({ "name": "x", "priority": "high" }),
            "invalid_type",
        ),
        (
            "queues",
            json!({ "name": "x", "priority": 1.5 }),
            "invalid_type",
        ),
        (
            "queues",
            json!({ "name": "x", "priority": 101 }),
            "out_of_range",
        ),
        (
            "queues",
            json!({ "name": "x", "sla_percent": 0 }),
            "out_of_range",
        ),
        ("queues", json!({ "name": "" }), "out_of_range"),
        ("queues", json!({ "name": "x".repeat(101) }), "out_of_range"),
        ("queues", json!({ "name": "a\u{0}b" }), "invalid_value"),
        (
            "interactions",
            json!({ "channel": "email", "subject": "\u{0}" }),
            "invalid_value",
        ),
        (
            "queues",
            json!({ "name": "x", "strategy": "random" }),
            "invalid_value",
        ),
        (
            "queues",
            json!({ "name": "x", "priority": null }),
            "invalid_type",
        ),
        ("queues", json!({ "priority": 3 }), "missing_field"),
        (
            "queues",
            json!({ "name": "x", "mailbox_id": 999_999 }),
            "unknown_reference",
        ),
        (
            "queues",
            json!({ "name": "x", "mailbox_id": -1 }),
            "out_of_range",
        ),
        (
            "users",
            json!({ "username": "u", "display_name": "U", "password": "short" }),
            "out_of_range",
        ),
        (
            "users",
            json!({ "username": "u", "display_name": "U", "password": "long-enough", "role": "root" }),
            "invalid_value",
        ),
        (
            "customers",
            json!({ "name": "x", "language": "english" }),
            "invalid_value",
        ),
        (
            "customers",
            json!({ "name": "x", "created_at": 5 }),
            "unknown_field",
        ),
        (
            "agent-skills",
            json!({ "user_id": 1, "skill_id": 1, "level": 11 }),
            "out_of_range",
        ),
        // Steps routing would refuse, and with them the queue's whole configuration.
        (
            "queue-escalations",
            json!({ "queue_id": queue, "after_seconds": 60, "action": "add_overflow_queue", "overflow_queue_id": queue }),
            "invalid_value",
        ),
        (
            "queue-escalations",
            json!({ "queue_id": queue, "after_seconds": 60, "action": "add_overflow_queue" }),
            "missing_field",
        ),
        // A content type is served as a header.
        (
            "attachments",
            json!({ "message_id": 1, "filename": "a", "content_type": "text/plain\r\nX-Evil: 1" }),
            "invalid_value",
        ),
        (
            "attachments",
            json!({ "message_id": 1, "filename": "a", "content_type": "pdf" }),
            "invalid_value",
        ),
        // A POP3 account cannot keep mail (it would delete what "flag" meant to keep), and no
        // password goes unencrypted beyond this machine.
        (
            "mail-accounts",
            json!({ "service_address_id": 1, "protocol": "pop3", "host": "127.0.0.1", "port": 110, "security": "plain", "username": "u", "password": "p", "after_fetch": "flag" }),
            "invalid_value",
        ),
        (
            "mail-accounts",
            json!({ "service_address_id": 1, "protocol": "imap", "host": "mail.example.test", "port": 143, "security": "plain", "username": "u", "password": "p" }),
            "invalid_value",
        ),
        (
            "mail-accounts",
            json!({ "service_address_id": 1, "protocol": "imap", "host": "mail.example.test", "port": 993, "security": "tls", "username": "u", "password": "p", "smtp_host": "smtp.example.test", "smtp_port": 25, "smtp_security": "plain" }),
            "invalid_value",
        ),
        // Routing's states are routing's to set.
        (
            "interactions",
            json!({ "channel": "email", "state": "queued" }),
            "invalid_value",
        ),
    ];
    for (path, body, code) in cases {
        let response = s
            .post(&format!("/api/v1/{path}"), &admin, body.clone())
            .await;
        assert_error(&response, StatusCode::UNPROCESSABLE_ENTITY, code);
    }
    // Duplicates conflict.
    assert_error(
        &s.post("/api/v1/queues", &admin, json!({ "name": "Sales DE" }))
            .await,
        StatusCode::CONFLICT,
        "duplicate",
    );
    assert_error(
        &s.patch(
            &format!("/api/v1/queues/{queue}"),
            &admin,
            json!({ "name": "Sales EN" }),
        )
        .await,
        StatusCode::CONFLICT,
        "duplicate",
    );
    // Updates: immutable fields, unknown ids, non-numeric ids, hierarchy cycles.
    assert_error(
        &s.patch("/api/v1/users/1", &admin, json!({ "username": "renamed" }))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "immutable_field",
    );
    assert_error(
        &s.patch(
            &format!("/api/v1/queue-escalations/{step}"),
            &admin,
            json!({ "action": "add_overflow_queue", "overflow_queue_id": queue }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
    );
    // Routing owns an interaction's state, queue, language and priority once it exists.
    for change in [
        json!({ "state": "done" }),
        json!({ "queue_id": queue }),
        json!({ "language": "de" }),
        json!({ "priority": 100 }),
    ] {
        assert_error(
            &s.patch(
                &format!("/api/v1/interactions/{interaction}"),
                &admin,
                change,
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "immutable_field",
        );
    }
    assert_error(
        &s.patch("/api/v1/queues/999999", &admin, json!({ "priority": 1 }))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &s.get("/api/v1/queues/abc", &admin).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // A path segment that is no UTF-8 is refused in the same JSON format, wherever it is.
    for (method, path) in [
        (reqwest::Method::GET, "/api/v1/queues/%FF"),
        (reqwest::Method::GET, "/api/v1/tickets/%FF"),
        (reqwest::Method::POST, "/api/v1/tickets/%FF/close"),
        (reqwest::Method::GET, "/api/v1/reports/%FF"),
        (reqwest::Method::GET, "/api/v1/interactions/%FF/customer"),
        (reqwest::Method::PUT, "/api/v1/calls/%FF/monitor"),
        (reqwest::Method::PUT, "/api/v1/agents/%FF/status"),
        (reqwest::Method::GET, "/api/v1/chat/widgets/demo/%FF"),
    ] {
        let (status, body) = s.call(method, path, Some(&admin), Some(json!({}))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
    }
    let (_, mailboxes) = s.get("/api/v1/mailboxes", &admin).await;
    let child = mailboxes["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|m| !m["parent_id"].is_null())
        .expect("child mailbox")
        .clone();
    assert_error(
        &s.patch(
            &format!("/api/v1/mailboxes/{}", child["parent_id"]),
            &admin,
            json!({ "parent_id": child["id"] }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "cycle",
    );
    assert_error(
        &s.patch(
            &format!("/api/v1/mailboxes/{}", child["id"]),
            &admin,
            json!({ "parent_id": child["id"] }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "cycle",
    );
    // Deleting what is still referenced conflicts.
    assert_error(
        &s.delete(&format!("/api/v1/mailboxes/{}", child["parent_id"]), &admin)
            .await,
        StatusCode::CONFLICT,
        "in_use",
    );
    // Query strings.
    assert_error(
        &s.get("/api/v1/queues?limit=0", &admin).await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    );
    assert_error(
        &s.get("/api/v1/queues?limit=ten", &admin).await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    );
    assert_error(
        &s.get("/api/v1/queues?offset=-1", &admin).await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    );
    assert_error(
        &s.get("/api/v1/queues?colour=red", &admin).await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    );
    assert_error(
        &s.get("/api/v1/queues?mailbox_id=x", &admin).await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    );
    let many = vec!["mailbox_id=1"; 33].join("&");
    assert_error(
        &s.get(&format!("/api/v1/queues?{many}"), &admin).await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    );
    // Routes and methods.
    assert_error(
        &s.get("/api/v1/no-such-thing", &admin).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &s.call(Method::PUT, "/api/v1/queues", Some(&admin), None)
            .await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    // Tenant creation input.
    assert_error(
        &s.post("/api/v1/tenants", OPERATOR_TOKEN, json!({ "name": "Bad Name", "display_name": "x", "admin_username": "a", "admin_password": "long-enough" })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
    );
    assert_error(
        &s.post("/api/v1/tenants", OPERATOR_TOKEN, json!({ "name": "fine", "display_name": "x", "admin_username": "a", "admin_password": "short" })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "out_of_range",
    );
    assert_error(
        &s.post("/api/v1/tenants", OPERATOR_TOKEN, json!({ "name": "demo", "display_name": "x", "admin_username": "a", "admin_password": "long-enough" })).await,
        StatusCode::CONFLICT,
        "duplicate",
    );
    assert_error(
        &s.post("/api/v1/tenants", OPERATOR_TOKEN, json!({ "name": "fine", "display_name": "x", "admin_username": "a", "admin_password": "long-enough", "time_zone": "Europe/Gotham" })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
    );
    assert_error(
        &s.post(
            "/api/v1/tenants",
            OPERATOR_TOKEN,
            json!({ "name": "x", "extra": 1 }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    );

    // Routing settings: each bad value is refused naming its field, and a bad field refuses
    // the good ones sent with it.
    let (_, tenant_before) = s.get("/api/v1/tenants/1", &admin).await;
    let reason_too_long = "x".repeat(65);
    for (change, code, field) in [
        (
            json!({ "blending": "round_robin" }),
            "invalid_value",
            "blending",
        ),
        (
            json!({ "blending": "Exclusive" }),
            "invalid_value",
            "blending",
        ),
        (
            json!({ "missed_offer": "ignore" }),
            "invalid_value",
            "missed_offer",
        ),
        (
            json!({ "blending": "exclusive", "missed_offer": "sometimes" }),
            "invalid_value",
            "missed_offer",
        ),
        (
            json!({ "missed_offer_reason": "" }),
            "out_of_range",
            "missed_offer_reason",
        ),
        (
            json!({ "missed_offer_reason": "  " }),
            "out_of_range",
            "missed_offer_reason",
        ),
        (
            json!({ "missed_offer_reason": reason_too_long }),
            "out_of_range",
            "missed_offer_reason",
        ),
        (
            json!({ "display_name": "" }),
            "out_of_range",
            "display_name",
        ),
        (json!({ "time_zone": "CEST" }), "invalid_value", "time_zone"),
    ] {
        let response = s.patch("/api/v1/tenants/1", &admin, change.clone()).await;
        assert_error(&response, StatusCode::UNPROCESSABLE_ENTITY, code);
        let message = response.1["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("`{field}`")),
            "{change}: {message}"
        );
    }
    assert_error(
        &s.patch("/api/v1/tenants/1", &admin, json!({ "blending": 1 }))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    );
    assert_error(
        &s.patch("/api/v1/tenants/1", &admin, json!({ "timezone": "UTC" }))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    );
    assert_eq!(s.get("/api/v1/tenants/1", &admin).await.1, tenant_before);
    assert_error(
        &s.post(
            "/api/v1/users",
            &admin,
            json!({ "username": "mixer", "display_name": "M", "password": "long-enough", "blending": "sometimes" }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
    );

    // Nothing of the above changed any table (the event log included).
    assert_eq!(snapshot(&s).await, before);
    let (_, tenants) = s.get("/api/v1/tenants", OPERATOR_TOKEN).await;
    assert_eq!(tenants["total"], 1, "{tenants}");
    s.stop().await;
}

/// The tenant's routing settings: defaults, a change of some of them by the tenant's admin or
/// the operator (audited), refused for lesser roles; a user's own blending and its reset.
async fn routing_settings_of_tenants_and_users(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.demo_login("ada").await;
    let (status, tenant) = s.get("/api/v1/tenants/1", &admin).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            &tenant["blending"],
            &tenant["missed_offer"],
            &tenant["missed_offer_reason"]
        ),
        (
            &json!("call_blocks_others"),
            &json!("not_ready"),
            &json!("missed")
        ),
        "{tenant}"
    );
    let (status, changed) = s
        .patch(
            "/api/v1/tenants/1",
            &admin,
            json!({ "blending": "independent", "missed_offer_reason": "no answer" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["blending"], "independent");
    assert_eq!(changed["missed_offer"], "not_ready", "left as it was");
    assert_eq!(changed["missed_offer_reason"], "no answer");
    assert_eq!(changed["display_name"], tenant["display_name"]);
    let (_, read) = s.get("/api/v1/tenants/1", &admin).await;
    assert_eq!(read, changed);
    let (status, changed) = s
        .patch(
            "/api/v1/tenants/1",
            OPERATOR_TOKEN,
            json!({ "missed_offer": "stay_ready" }),
        )
        .await;
    assert_eq!(
        (status, changed["missed_offer"].as_str()),
        (StatusCode::OK, Some("stay_ready"))
    );
    let (_, events) = s
        .get("/api/v1/events?kind=admin.tenants.updated", &admin)
        .await;
    assert_eq!(events["total"], 2, "{events}");
    let sam = s.demo_login("sam").await;
    assert_error(
        &s.patch(
            "/api/v1/tenants/1",
            &sam,
            json!({ "blending": "exclusive" }),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );

    let user = s
        .create(
            "/api/v1/users",
            &admin,
            json!({ "username": "mixer", "display_name": "M", "password": "long-enough", "blending": "exclusive" }),
        )
        .await;
    let (_, row) = s.get(&format!("/api/v1/users/{user}"), &admin).await;
    assert_eq!(row["blending"], "exclusive");
    let (status, row) = s
        .patch(
            &format!("/api/v1/users/{user}"),
            &admin,
            json!({ "blending": null }),
        )
        .await;
    assert_eq!(
        (status, row["blending"].clone()),
        (StatusCode::OK, Value::Null)
    );
    s.stop().await;
}

async fn mailboxes_inherit_settings(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.demo_login("ada").await;
    let root = s.create("/api/v1/mailboxes", &admin, json!({ "name": "Root", "language": "fr", "sla_seconds": 600, "signature": "Root sig" })).await;
    let mid = s
        .create(
            "/api/v1/mailboxes",
            &admin,
            json!({ "name": "Mid", "parent_id": root, "sla_seconds": 300 }),
        )
        .await;
    let leaf = s
        .create(
            "/api/v1/mailboxes",
            &admin,
            json!({ "name": "Leaf", "parent_id": mid, "signature": "Leaf sig" }),
        )
        .await;
    let (status, effective) = s
        .get(&format!("/api/v1/mailboxes/{leaf}/effective"), &admin)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(effective["language"], "fr");
    assert_eq!(effective["sla_seconds"], 300);
    assert_eq!(effective["signature"], "Leaf sig");
    assert!(effective["business_hours"].is_null());
    s.stop().await;
}

async fn attachment_bytes_round_trip(db: Db) {
    let s = TestServer::start(db).await;
    let agent = s.demo_login("alice").await;
    let interaction = s
        .create("/api/v1/interactions", &agent, json!({ "channel": "fax" }))
        .await;
    let message = s.create("/api/v1/messages", &agent, json!({ "interaction_id": interaction, "direction": "in", "author": "+4930777", "body": "fax" })).await;
    let attachment = s
        .create(
            "/api/v1/attachments",
            &agent,
            json!({ "message_id": message, "filename": "fax.tiff", "content_type": "image/tiff" }),
        )
        .await;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let url = format!("{}/api/v1/attachments/{attachment}/content", s.base);
    let get = || s.http.get(&url).bearer_auth(&agent).send();
    let stored: Value = s
        .http
        .put(&url)
        .bearer_auth(&agent)
        .body(bytes.clone())
        .send()
        .await
        .expect("put")
        .json()
        .await
        .expect("json");
    assert_eq!(stored["size_bytes"], 5000);
    let response = get().await.expect("get");
    assert_eq!(response.headers()["content-type"], "image/tiff");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(response.headers()["content-security-policy"], "sandbox");
    assert_eq!(response.bytes().await.expect("bytes").to_vec(), bytes);
    // Written once: an agent cannot replace the bytes (the old ones stay), an admin can.
    let put =
        |token: &str, body: &'static [u8]| s.http.put(&url).bearer_auth(token).body(body).send();
    let refused = put(&agent, b"other bytes").await.expect("put");
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let refused: Value = refused.json().await.expect("json");
    assert_eq!(refused["error"]["code"], "content_stored", "{refused}");
    let kept = get().await.expect("get");
    assert_eq!(kept.bytes().await.expect("bytes").to_vec(), bytes);
    let admin = s.demo_login("ada").await;
    let replaced = put(&admin, b"redacted").await.expect("put");
    assert_eq!(replaced.status(), StatusCode::OK);
    // Bytes over the body limit get the API's own error, like any other body.
    let oversized = s
        .http
        .put(&url)
        .bearer_auth(&admin)
        .body(vec![0u8; 65 * 1024])
        .send()
        .await
        .expect("put");
    assert_eq!(oversized.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let refused: Value = oversized.json().await.expect("a JSON error");
    assert_eq!(refused["error"]["code"], "payload_too_large", "{refused}");
    // A message is a record: nobody edits what it said.
    let edit = s
        .patch(
            &format!("/api/v1/messages/{message}"),
            &admin,
            json!({ "body": "something else" }),
        )
        .await;
    assert_error(&edit, StatusCode::UNPROCESSABLE_ENTITY, "immutable_field");
    // Nor the name and type a file came under.
    for change in [
        json!({ "filename": "invoice.exe" }),
        json!({ "content_type": "text/plain" }),
    ] {
        let edit = s
            .patch(&format!("/api/v1/attachments/{attachment}"), &agent, change)
            .await;
        assert_error(&edit, StatusCode::UNPROCESSABLE_ENTITY, "immutable_field");
    }
    s.stop().await;
}

async fn openapi_describes_every_route(db: Db) {
    let s = TestServer::start(db).await;
    let doc: Value = s
        .http
        .get(format!("{}/api/v1/openapi.json", s.base))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    for r in RESOURCES {
        let collection = &doc["paths"][format!("/api/v1/{}", r.path)];
        assert!(collection["get"].is_object(), "{} list", r.path);
        assert_eq!(
            collection["post"].is_object(),
            r.write.is_some(),
            "{} create",
            r.path
        );
        let schema = &doc["components"]["schemas"][r.schema];
        for c in r.columns.iter().filter(|c| c.readable()) {
            assert!(
                schema["properties"][c.name].is_object(),
                "{}.{} in schema",
                r.schema,
                c.name
            );
        }
    }
    for path in [
        "/api/v1/auth/login",
        "/api/v1/tenants",
        "/api/v1/tenants/{id}",
        "/health",
        "/ready",
        "/metrics",
        "/api/v1/calls/{interaction}/monitor",
        "/api/v1/call-records",
    ] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
    assert!(
        doc["components"]["schemas"]["UserCreate"]["properties"]["password"]["writeOnly"] == true
    );
    for schema in ["Tenant", "TenantUpdate"] {
        let blending = &doc["components"]["schemas"][schema]["properties"]["blending"]["enum"];
        assert!(
            blending
                .as_array()
                .is_some_and(|names| names.contains(&json!("independent"))),
            "{schema}: {blending}"
        );
        let missed = &doc["components"]["schemas"][schema]["properties"]["missed_offer"]["enum"];
        assert!(
            missed
                .as_array()
                .is_some_and(|names| names.contains(&json!("stay_ready"))),
            "{schema}: {missed}"
        );
    }
    s.stop().await;
}

async fn operational_endpoints(db: Db) {
    let s = TestServer::start(db).await;
    assert_eq!(
        s.call(Method::GET, "/health", None, None).await.0,
        StatusCode::OK
    );
    let (status, ready) = s.call(Method::GET, "/ready", None, None).await;
    assert_eq!(
        (status, ready["status"].as_str()),
        (StatusCode::OK, Some("ready"))
    );
    // A method of the client's own invention is counted, under `other`.
    let invented = Method::from_bytes(b"BREW").expect("a method name");
    assert_eq!(
        s.call(invented, "/health", None, None).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    let text = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert!(text.contains("vacd_http_requests_total"), "{text}");
    assert!(text.contains("route=\"/ready\""), "{text}");
    assert!(
        text.contains("method=\"other\",route=\"/health\",status=\"405\""),
        "{text}"
    );
    assert!(!text.contains("BREW"), "{text}");
    s.stop().await;
}

/// Sends `request` on a connection of its own; everything the server wrote until it closed.
async fn exchange(s: &TestServer, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(s.base.trim_start_matches("http://"))
        .await
        .expect("connects");
    tcp.write_all(request).await.expect("request sent");
    read_to_close(&mut tcp).await
}

/// What the server writes on `tcp` until it closes the connection.
async fn read_to_close(tcp: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(console::WAIT, tcp.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nhost: vacd\r\nconnection: close\r\n\r\n";

/// The pages carry a Content-Security-Policy that lets them run their own scripts only and
/// keeps them out of other sites' frames; nothing served to browsers is left to type sniffing.
/// (The browser tests fail on anything the policy refuses.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_a_content_security_policy() {
    let s = TestServer::start(Db::Sqlite).await;
    for path in [
        "/console",
        "/wallboard",
        "/demo",
        "/console.js",
        "/wallboard.js",
        "/widget.js",
    ] {
        let response = s
            .http
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        if path.ends_with(".js") {
            continue;
        }
        let policy = headers["content-security-policy"].to_str().expect("text");
        for directive in [
            "script-src 'self'",
            "object-src 'none'",
            "frame-ancestors 'none'",
        ] {
            assert!(policy.contains(directive), "{path}: {policy}");
        }
    }
    s.stop().await;
}

/// A client that never finishes its request head loses its connection after the header
/// timeout; others are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_has_a_deadline() {
    let s = TestServer::start_with(Db::Sqlite, |c| c.http.header_timeout_seconds = 1).await;
    let mut slow = TcpStream::connect(s.base.trim_start_matches("http://"))
        .await
        .expect("connects");
    slow.write_all(b"GET /health HTTP/1.1\r\nhost: vacd\r\n")
        .await
        .expect("half a head sent");
    assert!(exchange(&s, HEALTH).await.starts_with("HTTP/1.1 200"));
    let answer = read_to_close(&mut slow).await;
    assert!(!answer.contains("200 OK"), "{answer}");
    s.stop().await;
}

/// A client that sends its request head and then stops in the middle of the body is answered
/// and closed once it has paused for the timeout, the login it started failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_has_a_deadline() {
    let s = TestServer::start_with(Db::Sqlite, |c| c.http.header_timeout_seconds = 1).await;
    let mut slow = TcpStream::connect(s.base.trim_start_matches("http://"))
        .await
        .expect("connects");
    slow.write_all(
        b"POST /api/v1/auth/login HTTP/1.1\r\nhost: vacd\r\ncontent-type: application/json\r\n\
          content-length: 100\r\n\r\n{\"tenant\": \"demo\",",
    )
    .await
    .expect("half a body sent");
    assert!(exchange(&s, HEALTH).await.starts_with("HTTP/1.1 200"));
    let answer = read_to_close(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    s.stop().await;
}

/// A client that sends requests but reads no answers loses its connection once a write has
/// waited `http.write_timeout_seconds` for it — and with it the place it held under the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_no_answers_is_closed() {
    let s = TestServer::start_with(Db::Sqlite, |c| {
        c.http.max_connections = 1;
        c.http.write_timeout_seconds = 1;
        c.http.header_timeout_seconds = 3600;
    })
    .await;
    let address = s
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let mut deaf = socket.connect(address).await.expect("connects");
    // Far more answer than the socket buffers between us hold (the API description is tens of
    // kilobytes): the server's writes stop, and stay stopped.
    let request = b"GET /api/v1/openapi.json HTTP/1.1\r\nhost: vacd\r\n\r\n".repeat(300);
    deaf.write_all(&request).await.expect("requests sent");
    // Its connection holds the one place; once it is closed, a new one is served.
    let deadline = std::time::Instant::now() + console::WAIT;
    let mut refused = 0;
    loop {
        let answer = exchange(&s, HEALTH).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(answer.contains("too_many_connections"), "{answer}");
        refused += 1;
        assert!(
            std::time::Instant::now() < deadline,
            "the deaf client keeps its connection"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(refused > 0, "the deaf client held the place first");
    // What the server wrote before it gave up, then the end (or a reset: it closed with
    // requests unread).
    let mut rest = Vec::new();
    tokio::time::timeout(console::WAIT, deaf.read_to_end(&mut rest))
        .await
        .expect("the server closed the connection")
        .ok();
    s.stop().await;
}

/// Past `http.max_connections` open connections (a websocket is one) a connection is answered
/// 503 and closed; a place freed is taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_are_refused() {
    let s = TestServer::start_with(Db::Sqlite, |c| c.http.max_connections = 3).await;
    // The first place: the harness's client keeps its connection for the next request.
    let token = s.demo_login("alice").await;
    let _console = console::Console::connect(&s, &token).await;
    let idle = TcpStream::connect(s.base.trim_start_matches("http://"))
        .await
        .expect("connects");
    let refused = exchange(&s, HEALTH).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("too_many_connections"), "{refused}");
    drop(idle);
    common::eventually("a freed place taken again", || async {
        exchange(&s, HEALTH)
            .await
            .starts_with("HTTP/1.1 200")
            .then_some(())
    })
    .await;
    s.stop().await;
}

/// One source (an address) cannot take every place: past `http.max_connections_per_source` its
/// connections are answered 503, while another source is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_cannot_take_every_place() {
    let s = TestServer::start_with(Db::Sqlite, |c| c.http.max_connections_per_source = 2).await;
    let addr: std::net::SocketAddr = s
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    let _held = [
        TcpStream::connect(addr).await.expect("connects"),
        TcpStream::connect(addr).await.expect("connects"),
    ];
    let refused = exchange(&s, HEALTH).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.2:0".parse().expect("address"))
        .expect("bind 127.0.0.2");
    let mut other = socket.connect(addr).await.expect("connects");
    other.write_all(HEALTH).await.expect("request sent");
    let served = read_to_close(&mut other).await;
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    s.stop().await;
}

on_both_backends!(
    crud_round_trip_for_every_resource,
    filters_and_pagination,
    login_and_tokens,
    the_last_admin_stays,
    hierarchies_deeper_than_32_levels_are_refused,
    roles_are_checked_on_every_route,
    tenants_are_isolated,
    bad_input_is_rejected_and_changes_nothing,
    routing_settings_of_tenants_and_users,
    mailboxes_inherit_settings,
    attachment_bytes_round_trip,
    openapi_describes_every_route,
    operational_endpoints,
);

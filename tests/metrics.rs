//! `/metrics` carries today's report figures, for the scraper with `auth.metrics_token` only:
//! after an email was routed, answered and wrapped up (and a second one still waits), a scrape
//! shows the queue's offered, answered, service
//! level, ASA, AHT and longest wait, and the agent's and the tenant's occupancy — on SQLite, then
//! on PostgreSQL. One test in this binary: the Prometheus recorder is per process, so two
//! servers with the same tenant and queue ids must not run side by side here.

mod common;

use common::console::Console;
use common::{Db, TestServer};
use serde_json::json;

/// The value of the series `name{…}` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, i64)]) -> Option<f64> {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .find(|line| {
            labels
                .iter()
                .all(|(key, value)| line.contains(&format!("{key}=\"{value}\"")))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// The scraper's token (`auth.metrics_token`).
const TOKEN: &str = "scraper-token";

async fn scrape(s: &TestServer) -> String {
    s.http
        .get(format!("{}/metrics", s.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics text")
}

async fn report_figures_on_metrics(db: Db) {
    let s = TestServer::start_with(db, |c| c.auth.metrics_token = TOKEN.into()).await;
    // Without the token, or with another, nothing is shown.
    for token in [None, Some("guess")] {
        let mut request = s.http.get(format!("{}/metrics", s.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("scrape");
        assert_eq!(
            response.status(),
            reqwest::StatusCode::UNAUTHORIZED,
            "{token:?}"
        );
        let body = response.text().await.expect("body");
        assert!(!body.contains("vacd_"), "{body}");
    }
    let admin = s.demo_login("ada").await;
    let tenant = s
        .store()
        .tenant_by_name("demo")
        .await
        .expect("store")
        .expect("the demo tenant")
        .id;
    let queue = s
        .create(
            "/api/v1/queues",
            &admin,
            json!({ "name": "Metered", "sla_seconds": 60, "wrapup_seconds": 0 }),
        )
        .await;
    let (agent, token) = s.demo_agent(&admin, "metered", &[queue]).await;
    let before = scrape(&s).await;
    let labels = [("tenant", tenant), ("queue", queue)];
    assert_eq!(
        sample(&before, "vacd_queue_today_offered", &labels),
        Some(0.0),
        "a queue without traffic shows zero: {before}"
    );

    let mut console = Console::connect(&s, &token).await;
    console.ready().await;
    let email = json!({ "channel": "email", "queue_id": queue, "subject": "Hello" });
    let answered = s
        .create("/api/v1/interactions", &admin, email.clone())
        .await;
    console.handle(answered).await;
    console
        .ok(json!({ "type": "presence.set", "status": "not_ready", "reason": "metrics" }))
        .await;
    s.create("/api/v1/interactions", &admin, email).await;

    // The scrape flushes routing's journal first: everything above is in the figures.
    let text = scrape(&s).await;
    let value = |name: &str| {
        sample(&text, name, &labels).unwrap_or_else(|| panic!("no {name} for {labels:?}: {text}"))
    };
    assert_eq!(value("vacd_queue_today_offered"), 2.0);
    assert_eq!(value("vacd_queue_today_answered"), 1.0);
    assert_eq!(value("vacd_queue_today_abandoned"), 0.0);
    assert_eq!(
        value("vacd_queue_today_service_level_ratio"),
        0.5,
        "one of two in target; the other still waits"
    );
    for name in [
        "vacd_queue_today_asa_seconds",
        "vacd_queue_today_aht_seconds",
        "vacd_queue_today_longest_wait_seconds",
    ] {
        let seconds = value(name);
        assert!(
            seconds.is_finite() && (0.0..60.0).contains(&seconds),
            "{name} = {seconds}"
        );
    }
    let occupancy = sample(
        &text,
        "vacd_agent_today_occupancy_ratio",
        &[("tenant", tenant), ("agent", agent)],
    )
    .expect("the agent's occupancy");
    assert!((0.0..=1.0).contains(&occupancy), "occupancy {occupancy}");
    let tenant_occupancy = sample(
        &text,
        "vacd_tenant_today_occupancy_ratio",
        &[("tenant", tenant)],
    )
    .expect("the tenant's occupancy");
    assert!(
        (0.0..=1.0).contains(&tenant_occupancy),
        "{tenant_occupancy}"
    );
    assert!(
        text.contains("# HELP vacd_queue_today_service_level_ratio"),
        "{text}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_figures_on_metrics_on_both_backends() {
    report_figures_on_metrics(Db::Sqlite).await;
    report_figures_on_metrics(Db::Postgres).await;
}

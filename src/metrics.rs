//! The one place vacd's metrics are named and described, and where the Prometheus recorder is
//! installed (once per process; every server started in the process shares it). Also keeps the
//! HTTP request metrics' handles ([`HttpMetrics`]).

use std::sync::OnceLock;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use dashmap::DashMap;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "vacd_http_requests_total";
pub const HTTP_DURATION: &str = "vacd_http_request_duration_seconds";
pub const ROUTING_OUTPUTS: &str = "vacd_routing_outputs_total";
pub const JOURNAL_RETRIES: &str = "vacd_routing_output_retries_total";
pub const JOURNAL_PENDING: &str = "vacd_routing_outputs_pending";
pub const CONSOLES: &str = "vacd_agent_consoles";
pub const CALLS_ACTIVE: &str = "vacd_calls_active";
pub const CALLS_ENDED: &str = "vacd_calls_ended_total";
pub const CHATS_LIVE: &str = "vacd_chats_live";
pub const CHAT_MESSAGES: &str = "vacd_chat_messages_total";
pub const CREATE_BATCH: &str = "vacd_store_create_batch_size";
pub const CHAT_MESSAGE_BATCH: &str = "vacd_store_chat_message_batch_size";
pub const TICKET_MESSAGES: &str = "vacd_ticket_messages_total";
pub const MAILS_DROPPED: &str = "vacd_mails_dropped_total";
pub const MAIL_ACCOUNT_UP: &str = "vacd_mail_account_up";
pub const MAIL_ACCOUNT_FAILURES: &str = "vacd_mail_account_failures_total";
// Today's report figures (`crate::report_metrics`), per tenant and queue / agent.
pub const QUEUE_OFFERED: &str = "vacd_queue_today_offered";
pub const QUEUE_ANSWERED: &str = "vacd_queue_today_answered";
pub const QUEUE_ABANDONED: &str = "vacd_queue_today_abandoned";
pub const QUEUE_SERVICE_LEVEL: &str = "vacd_queue_today_service_level_ratio";
pub const QUEUE_ASA: &str = "vacd_queue_today_asa_seconds";
pub const QUEUE_AHT: &str = "vacd_queue_today_aht_seconds";
pub const QUEUE_LONGEST_WAIT: &str = "vacd_queue_today_longest_wait_seconds";
pub const AGENT_OCCUPANCY: &str = "vacd_agent_today_occupancy_ratio";
pub const TENANT_OCCUPANCY: &str = "vacd_tenant_today_occupancy_ratio";

/// The HTTP request metrics (`HTTP_REQUESTS` by method, route and status, `HTTP_DURATION` by
/// route), registered with the recorder once per route, method and status: looking them up by
/// name and labels at every request built and hashed the labels each time, ~2.5 % of the
/// server's CPU in the routing load test. Methods other than the standard ones count as
/// `other`, so a client inventing methods cannot grow the series without bound.
#[derive(Default)]
pub struct HttpMetrics {
    routes: DashMap<String, RouteMetrics>,
}

struct RouteMetrics {
    duration: Histogram,
    requests: DashMap<(&'static str, StatusCode), Counter>,
}

impl HttpMetrics {
    /// Counts a request to `route` (its pattern, e.g. `/api/v1/queues/{id}`) and records how long
    /// it took.
    pub fn record(&self, route: &str, method: &Method, status: StatusCode, took: Duration) {
        let metrics = match self.routes.get(route) {
            Some(metrics) => metrics,
            None => self
                .routes
                .entry(route.to_owned())
                .or_insert_with(|| RouteMetrics {
                    duration: metrics::histogram!(HTTP_DURATION, "route" => route.to_owned()),
                    requests: DashMap::new(),
                })
                .downgrade(),
        };
        metrics.duration.record(took.as_secs_f64());
        let key = (method_label(method), status);
        match metrics.requests.get(&key) {
            Some(counter) => counter.increment(1),
            None => metrics
                .requests
                .entry(key)
                .or_insert_with(|| {
                    metrics::counter!(HTTP_REQUESTS, "method" => key.0, "route" => route.to_owned(), "status" => status.as_str().to_owned())
                })
                .increment(1),
        };
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Installs the global recorder on first use and returns the handle that renders it.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            metrics::describe_counter!(HTTP_REQUESTS, "HTTP requests by method, route and status");
            metrics::describe_histogram!(
                HTTP_DURATION,
                metrics::Unit::Seconds,
                "HTTP request duration by route"
            );
            metrics::describe_gauge!(CHATS_LIVE, "chat sessions with a running actor");
            metrics::describe_counter!(CHAT_MESSAGES, "chat messages stored");
            metrics::describe_counter!(
                JOURNAL_RETRIES,
                "routing output batches tried again because the database could not take them"
            );
            metrics::describe_gauge!(
                JOURNAL_PENDING,
                "routing outputs handed to the event log and not yet written (grows while the database cannot take them)"
            );
            metrics::describe_gauge!(CALLS_ACTIVE, "calls answered by vacd and not yet over");
            metrics::describe_counter!(CALLS_ENDED, "calls ended, by result and who hung up");
            metrics::describe_histogram!(
                CREATE_BATCH,
                "creates committed together in one transaction (group commit)"
            );
            metrics::describe_histogram!(
                CHAT_MESSAGE_BATCH,
                "chat messages committed together in one transaction (group commit)"
            );
            metrics::describe_counter!(
                TICKET_MESSAGES,
                "inbound written messages stored, by channel and outcome (created, joined, reopened, duplicate)"
            );
            metrics::describe_counter!(MAILS_DROPPED, "inbound mails dropped by loop and spam screening");
            metrics::describe_gauge!(MAIL_ACCOUNT_UP, "1 while the mail account's server session is up, 0 while it is retried");
            metrics::describe_counter!(MAIL_ACCOUNT_FAILURES, "failed mail server sessions, by account");
            describe_report_gauges();
            handle
        })
        .clone()
}

fn describe_report_gauges() {
    for (name, unit, help) in [
        (
            QUEUE_OFFERED,
            None,
            "interactions that entered the queue today (on the tenant's clock)",
        ),
        (QUEUE_ANSWERED, None, "of today's, connected to an agent"),
        (
            QUEUE_ABANDONED,
            None,
            "of today's, left by the customer while waiting",
        ),
        (
            QUEUE_SERVICE_LEVEL,
            None,
            "today's service level, 0-1 (see docs/reports.md)",
        ),
        (
            QUEUE_ASA,
            Some(metrics::Unit::Seconds),
            "today's average speed of answer",
        ),
        (
            QUEUE_AHT,
            Some(metrics::Unit::Seconds),
            "today's average handle time",
        ),
        (
            QUEUE_LONGEST_WAIT,
            Some(metrics::Unit::Seconds),
            "today's longest ended wait",
        ),
        (
            AGENT_OCCUPANCY,
            None,
            "today's busy time over logged-in time, 0-1",
        ),
        (
            TENANT_OCCUPANCY,
            None,
            "today's busy time over logged-in time of all agents, 0-1",
        ),
    ] {
        match unit {
            Some(unit) => metrics::describe_gauge!(name, unit, help),
            None => metrics::describe_gauge!(name, help),
        }
    }
}

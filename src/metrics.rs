//! The one place vacd's metrics are named and described, and where the Prometheus recorder is
//! installed (once per process; every server started in the process shares it).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "vacd_http_requests_total";
pub const HTTP_DURATION: &str = "vacd_http_request_duration_seconds";
pub const ROUTING_OUTPUTS: &str = "vacd_routing_outputs_total";
pub const CONSOLES: &str = "vacd_agent_consoles";
pub const CALLS_ACTIVE: &str = "vacd_calls_active";
pub const CALLS_ENDED: &str = "vacd_calls_ended_total";
pub const CHATS_LIVE: &str = "vacd_chats_live";
pub const CHAT_MESSAGES: &str = "vacd_chat_messages_total";
pub const CREATE_BATCH: &str = "vacd_store_create_batch_size";
pub const TICKET_MESSAGES: &str = "vacd_ticket_messages_total";
pub const MAILS_DROPPED: &str = "vacd_mails_dropped_total";
pub const MAIL_ACCOUNT_UP: &str = "vacd_mail_account_up";
pub const MAIL_ACCOUNT_FAILURES: &str = "vacd_mail_account_failures_total";

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
            metrics::describe_gauge!(CALLS_ACTIVE, "calls answered by vacd and not yet over");
            metrics::describe_counter!(CALLS_ENDED, "calls ended, by result and who hung up");
            metrics::describe_histogram!(
                CREATE_BATCH,
                "creates committed together in one transaction (group commit)"
            );
            metrics::describe_counter!(
                TICKET_MESSAGES,
                "inbound written messages stored, by channel and outcome (created, joined, reopened, duplicate)"
            );
            metrics::describe_counter!(MAILS_DROPPED, "inbound mails dropped by loop and spam screening");
            metrics::describe_gauge!(MAIL_ACCOUNT_UP, "1 while the mail account's server session is up, 0 while it is retried");
            metrics::describe_counter!(MAIL_ACCOUNT_FAILURES, "failed mail server sessions, by account");
            handle
        })
        .clone()
}

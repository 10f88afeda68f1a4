//! The pages vacd serves to browsers from `web-widget/` (embedded at build time, so the binary
//! is the whole deployment): the supervisor wallboard, the chat widget and its demo page, and
//! the agent console.

use axum::http::header;
use axum::response::IntoResponse;

const WALLBOARD_HTML: &str = include_str!("../../web-widget/wallboard.html");
const WALLBOARD_JS: &str = include_str!("../../web-widget/wallboard.js");
const WIDGET_JS: &str = include_str!("../../web-widget/widget.js");
const DEMO_HTML: &str = include_str!("../../web-widget/demo.html");
const CONSOLE_HTML: &str = include_str!("../../web-widget/console.html");
const CONSOLE_JS: &str = include_str!("../../web-widget/console.js");

pub async fn wallboard() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        WALLBOARD_HTML,
    )
}

pub async fn wallboard_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        WALLBOARD_JS,
    )
}

/// The chat widget, embeddable from any site (hence the open CORS header).
pub async fn widget_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        WIDGET_JS,
    )
}

pub async fn demo() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        DEMO_HTML,
    )
}

pub async fn console() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        CONSOLE_HTML,
    )
}

pub async fn console_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        CONSOLE_JS,
    )
}

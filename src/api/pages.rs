//! The pages vacd serves to browsers from `web-widget/` (embedded at build time, so the binary
//! is the whole deployment): the supervisor wallboard and the agent console.

use axum::http::header;
use axum::response::IntoResponse;

const WALLBOARD_HTML: &str = include_str!("../../web-widget/wallboard.html");
const WALLBOARD_JS: &str = include_str!("../../web-widget/wallboard.js");
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

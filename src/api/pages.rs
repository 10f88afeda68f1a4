//! The pages vacd serves to browsers from `web-widget/` (embedded at build time, so the binary
//! is the whole deployment): the supervisor wallboard, the chat widget and its demo page, and
//! the agent console. The pages carry a Content-Security-Policy, and nothing is served for the
//! browser to sniff.

use axum::http::header;
use axum::response::IntoResponse;

const WALLBOARD_HTML: &str = include_str!("../../web-widget/wallboard.html");
const WALLBOARD_JS: &str = include_str!("../../web-widget/wallboard.js");
const WIDGET_JS: &str = include_str!("../../web-widget/widget.js");
const DEMO_HTML: &str = include_str!("../../web-widget/demo.html");
const CONSOLE_HTML: &str = include_str!("../../web-widget/console.html");
const CONSOLE_JS: &str = include_str!("../../web-widget/console.js");

/// What the console and the wallboard may load and do: their own scripts and requests (and
/// websockets) only, their inline stylesheet, images of their own or made in the page (an
/// attachment opened from the console); no plugins, no other base, not framed elsewhere. A
/// text that got into the page as markup could run nothing.
const PAGE_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The demo page's: as [`PAGE_POLICY`], but the widget's logo may come from any https address
/// (a widget's `logo_url`).
const DEMO_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// An HTML page under `policy`.
fn page(policy: &'static str, html: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, policy),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        html,
    )
}

/// A script of the pages.
fn script(js: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        js,
    )
}

pub async fn wallboard() -> impl IntoResponse {
    page(PAGE_POLICY, WALLBOARD_HTML)
}

pub async fn wallboard_js() -> impl IntoResponse {
    script(WALLBOARD_JS)
}

/// The chat widget, embeddable from any site (hence the open CORS header).
pub async fn widget_js() -> impl IntoResponse {
    (
        [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")],
        script(WIDGET_JS),
    )
}

pub async fn demo() -> impl IntoResponse {
    page(DEMO_POLICY, DEMO_HTML)
}

pub async fn console() -> impl IntoResponse {
    page(PAGE_POLICY, CONSOLE_HTML)
}

pub async fn console_js() -> impl IntoResponse {
    script(CONSOLE_JS)
}

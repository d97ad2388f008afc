//! The web dashboard at `/`: one HTML page, a script and a stylesheet, embedded in the binary
//! (no build step at install time) and served without the token, since they hold no data;
//! everything the page shows comes from the public API, called with the token the user gives
//! it (TCP) and checked by the guard like any other client. The page shows action buttons
//! only for what `GET /api/whoami` says the caller may do, and confirms each.
//!
//! Served with a strict Content-Security-Policy (scripts and connections to this origin
//! only, no inline script, no framing): the page writes data with `textContent` only, and the
//! policy stops anything injected from running anyway.
use axum::{
    http::{header, HeaderValue},
    response::IntoResponse,
    routing::get,
    Router,
};
use std::sync::Arc;

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/app.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The dashboard's routes, outside the guard (static files; the API they call is guarded).
pub fn routes() -> Router<Arc<crate::core::Agent>> {
    Router::new()
        .route("/", get(index))
        .route("/ui/app.js", get(script))
        .route("/ui/app.css", get(style))
}

fn page(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
}

/// The dashboard page.
#[utoipa::path(get, path = "/", tag = "dashboard", security(()),
    responses((status = 200, description = "The dashboard's HTML page (no token needed: it holds no data).", content_type = "text/html")))]
pub async fn index() -> impl IntoResponse {
    page("text/html; charset=utf-8", INDEX)
}

/// The dashboard's script.
#[utoipa::path(get, path = "/ui/app.js", tag = "dashboard", security(()),
    responses((status = 200, description = "The dashboard's script.", content_type = "text/javascript")))]
pub async fn script() -> impl IntoResponse {
    page("text/javascript; charset=utf-8", SCRIPT)
}

/// The dashboard's stylesheet.
#[utoipa::path(get, path = "/ui/app.css", tag = "dashboard", security(()),
    responses((status = 200, description = "The dashboard's stylesheet.", content_type = "text/css")))]
pub async fn style() -> impl IntoResponse {
    page("text/css; charset=utf-8", STYLE)
}

//! CORS for the TCP listener, so a dashboard served from another origin (seed 004's
//! frontend: `fetch('http://agent-ip:8754/api/processes')`) can call the API from a browser.
//!
//! - Only the origins listed in `[api] cors_origins` get `Access-Control-Allow-Origin`
//!   (none by default; `*` is refused at config load). The list is read per request, so a
//!   reload applies at once.
//! - Credentials (cookies) are never allowed: the API authenticates with the bearer token,
//!   which the page sends in `Authorization`, so preflights allow that header.
//! - Preflight (`OPTIONS`) is answered here, before the token check: browsers send it
//!   without credentials.
//!
//! The Unix socket needs none of this (browsers cannot reach it) and has no CORS layer.
//! tower-http's `CorsLayer` does the protocol; this module only decides the policy.
use crate::core::Agent;
use axum::http::{header, HeaderValue, Method};
use std::{sync::Arc, time::Duration};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may cache a preflight answer.
const MAX_AGE: Duration = Duration::from_secs(600);

pub fn layer(agent: Arc<Agent>) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            allowed(&agent, origin)
        }))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(MAX_AGE)
}

fn allowed(agent: &Agent, origin: &HeaderValue) -> bool {
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    agent
        .cors_origins
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|o| o.as_str().eq_ignore_ascii_case(origin))
}

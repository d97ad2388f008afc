//! The HTTP/JSON API on the agent's Unix socket.
//!
//! Routes (all JSON; errors are `{"error": "..."}` with a 4xx/5xx status):
//! - `GET /api/status`: [`AgentStatus`].
//! - `GET /api/events?pid=1,2&comm=a,b&kind=exec,exit&threads=1`: a never-ending NDJSON stream
//!   of [`EventStreamItem`], filtered server side.
use crate::core::Agent;
use anyhow::{bail, Context, Result};
use axum::{
    body::Body,
    extract::{Query, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use procman_common::api::{ApiError, EventKind, EventStreamItem, ProcEvent};
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
};
use tokio::{net::UnixListener, sync::broadcast};

pub fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(ApiError { error: msg.into() })).into_response()
}

pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/api/status", get(status))
        .route("/api/events", get(events))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such endpoint; see README.md (API)",
            )
        })
        .with_state(agent)
}

async fn status(State(agent): State<Arc<Agent>>) -> Response {
    Json(agent.status()).into_response()
}

#[derive(serde::Deserialize, Default)]
pub struct EventQuery {
    pid: Option<String>,
    comm: Option<String>,
    kind: Option<String>,
}

/// A parsed event filter: empty lists match everything.
#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    pub pids: Vec<u32>,
    pub comms: Vec<String>,
    pub kinds: Vec<EventKind>,
}

impl EventFilter {
    pub fn parse(q: &EventQuery) -> Result<EventFilter, String> {
        let list = |s: &Option<String>| -> Vec<String> {
            s.as_deref()
                .map(|s| {
                    s.split(',')
                        .map(str::trim)
                        .filter(|x| !x.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        let pids = list(&q.pid)
            .iter()
            .map(|p| {
                p.parse::<u32>()
                    .map_err(|_| format!("invalid pid {p:?}: expected a number"))
            })
            .collect::<Result<_, _>>()?;
        let kinds = list(&q.kind)
            .iter()
            .map(|k| k.parse())
            .collect::<Result<_, _>>()?;
        Ok(EventFilter {
            pids,
            comms: list(&q.comm),
            kinds,
        })
    }

    pub fn matches(&self, ev: &ProcEvent) -> bool {
        (self.pids.is_empty() || self.pids.contains(&ev.pid))
            && (self.kinds.is_empty() || self.kinds.contains(&ev.kind))
            && (self.comms.is_empty()
                || self
                    .comms
                    .iter()
                    .any(|c| c.as_bytes() == ev.comm.as_bytes()))
    }
}

async fn events(State(agent): State<Arc<Agent>>, Query(q): Query<EventQuery>) -> Response {
    let filter = match EventFilter::parse(&q) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let rx = agent.events.subscribe();
    let stream = futures_util::stream::unfold((rx, filter), |(mut rx, filter)| async move {
        loop {
            let item = match rx.recv().await {
                Ok(ev) if filter.matches(&ev) => EventStreamItem::Event(ev),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    EventStreamItem::Lagged { lagged: n }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            let mut line = serde_json::to_vec(&item).unwrap_or_default();
            line.push(b'\n');
            return Some((
                Ok::<_, std::convert::Infallible>(bytes::Bytes::from(line)),
                (rx, filter),
            ));
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Binds the API socket: creates its directory, refuses to start if another agent answers on
/// it, removes a stale socket file, and restricts it to root (and `group`, if given).
pub async fn bind(path: &Path, group: &str) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create socket directory {}", dir.display()))?;
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            bail!(
                "another procman-agent is already serving {}; stop it first or pass --socket with another path",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot bind the API socket {}", path.display()))?;
    let mode = if group.is_empty() { 0o600 } else { 0o660 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    if !group.is_empty() {
        let g = nix::unistd::Group::from_name(group)?
            .with_context(|| format!("agent.socket_group = {group:?}: no such group"))?;
        nix::unistd::chown(path, None, Some(g.gid))?;
    }
    Ok(listener)
}

/// Serves the API until the future is dropped.
pub async fn serve(listener: UnixListener, agent: Arc<Agent>) -> Result<()> {
    axum::serve(listener, router(agent))
        .await
        .context("API server failed")
}

/// Removes the socket file when the agent exits.
pub struct SocketGuard(pub PathBuf);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

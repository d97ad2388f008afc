//! The HTTP/JSON API on the agent's Unix socket.
//!
//! Routes (all JSON; errors are `{"error": "..."}` with a 4xx/5xx status):
//! - `GET /api/status`: [`AgentStatus`].
//! - `GET /api/events?pid=1,2&comm=a,b&kind=exec,exit&threads=1`: a never-ending NDJSON stream
//!   of [`EventStreamItem`], filtered server side.
use crate::core::Agent;
pub mod enforce;

use crate::query::{self, Sort};
use anyhow::{bail, Context, Result};
use axum::extract::Path as UrlPath;
use axum::{
    body::Body,
    extract::{Query, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use procman_common::api::{ApiError, EventKind, EventStreamItem, ProcEvent, ProcessDetail};
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
        .route("/api/processes", get(processes))
        .route("/api/processes/{pid}", get(process))
        .route("/api/processes/{pid}/tree", get(process_tree))
        .route("/api/processes/{pid}/history", get(process_history))
        .route("/api/tree", get(whole_tree))
        .route("/api/system", get(system))
        .merge(enforce::routes())
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

#[derive(serde::Deserialize, Default)]
pub struct ListQuery {
    sort: Option<String>,
    limit: Option<usize>,
    user: Option<String>,
    filter: Option<String>,
}

fn snapshot(agent: &Agent) -> Vec<procman_common::api::ProcessInfo> {
    let table = agent.table.read().unwrap_or_else(|e| e.into_inner());
    query::all(&table, &agent.monitor)
}

async fn processes(
    State(agent): State<Arc<Agent>>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiErr> {
    let full = q.sort.is_some() || q.limit.is_some() || q.user.is_some() || q.filter.is_some();
    let filter = parse_filter(q.filter.as_deref())?;
    let key: Sort = q
        .sort
        .as_deref()
        .unwrap_or("cpu")
        .parse()
        .map_err(|e| ApiErr(StatusCode::BAD_REQUEST, e))?;
    let uid_of_user = match q.user.as_deref() {
        None => None,
        Some(u) => Some(
            u.parse::<u32>()
                .ok()
                .or_else(|| query::uid_of(u))
                .ok_or_else(|| {
                    ApiErr(
                        StatusCode::BAD_REQUEST,
                        format!("unknown user {u:?}: give a user name or a uid"),
                    )
                })?,
        ),
    };
    let table = agent.table.read().unwrap_or_else(|e| e.into_inner());
    let mut overview = query::overview(&table, &agent.monitor);
    if full {
        overview.processes = Some(query::select(
            &table,
            &agent.monitor,
            key,
            q.limit,
            |e, u| {
                uid_of_user.is_none_or(|uid| e.uid == uid)
                    && filter
                        .as_ref()
                        .is_none_or(|f| f.matches(&query::Row { entry: e, usage: u }))
            },
        ));
    }
    drop(table);
    Ok(Json(overview).into_response())
}

/// An error answer: status + message, rendered as `{"error": ...}`.
pub struct ApiErr(StatusCode, String);

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

fn parse_pid(s: &str) -> Result<u32, ApiErr> {
    s.parse::<u32>().ok().filter(|p| *p > 0).ok_or_else(|| {
        ApiErr(
            StatusCode::BAD_REQUEST,
            format!("invalid pid {s:?}: expected a positive number"),
        )
    })
}

fn not_found(pid: u32) -> ApiErr {
    ApiErr(StatusCode::NOT_FOUND, format!("no process with pid {pid}"))
}

/// fds and sockets of a process (reads /proc/PID/fd: on demand only).
fn count_fds(pid: u32) -> (Option<u32>, Option<u32>) {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return (None, None);
    };
    let (mut fds, mut socks) = (0, 0);
    for e in rd.flatten() {
        fds += 1;
        if std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:")) {
            socks += 1;
        }
    }
    (Some(fds), Some(socks))
}

async fn process(State(agent): State<Arc<Agent>>, UrlPath(pid): UrlPath<String>) -> Response {
    let pid = match parse_pid(&pid) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let (info, children) = {
        let table = agent.table.read().unwrap_or_else(|e| e.into_inner());
        let Some(e) = table.get(pid) else {
            return not_found(pid).into_response();
        };
        let u = agent.monitor.get(pid);
        let kids: Vec<u32> = table.children_of(pid).collect();
        (query::process_info(e, u.as_ref()), kids)
    };
    let leak = {
        let h = agent
            .monitor
            .history
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        h.find(pid).and_then(|id| h.leak_suspected(id))
    };
    let (fds, sockets) = count_fds(pid);
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    let mut children = children;
    children.sort_unstable();
    Json(ProcessDetail {
        process: info,
        fds,
        sockets,
        cwd,
        children,
        leak_suspected: leak,
    })
    .into_response()
}

async fn process_tree(State(agent): State<Arc<Agent>>, UrlPath(pid): UrlPath<String>) -> Response {
    let pid = match parse_pid(&pid) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let all = snapshot(&agent);
    let Some(me) = all.iter().find(|p| p.pid == pid) else {
        return not_found(pid).into_response();
    };
    let parent = all.iter().find(|p| p.pid == me.ppid).cloned();
    let node = query::tree(all, Some(pid)).into_iter().next();
    Json(serde_json::json!({ "parent": parent, "tree": node })).into_response()
}

#[derive(serde::Deserialize, Default)]
pub struct HistoryQuery {
    hours: Option<String>,
}

async fn process_history(
    State(agent): State<Arc<Agent>>,
    UrlPath(pid): UrlPath<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Response, ApiErr> {
    let pid = parse_pid(&pid)?;
    let hours = match q.hours.as_deref() {
        None => 1.0,
        Some(h) => h.parse::<f64>().ok().filter(|h| *h > 0.0 && *h <= 48.0).ok_or_else(|| {
            ApiErr(StatusCode::BAD_REQUEST, format!("invalid hours {h:?}: expected a number of hours, more than 0 and at most 48"))
        })?,
    };
    let since = crate::monitor::unix_now().saturating_sub((hours * 3600.0) as u32);
    let h = agent
        .monitor
        .history
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let id = h.find(pid).ok_or_else(|| {
        ApiErr(StatusCode::NOT_FOUND, format!("no history for pid {pid} (not sampled yet, or exited longer ago than the retention)"))
    })?;
    let body = procman_common::api::ProcessHistory {
        pid,
        exited: h.exited_at(id).is_some(),
        hours,
        samples: h.samples(id, since),
        stats: h.window(id, since).unwrap_or_default(),
        leak_suspected: h.leak_suspected(id),
    };
    drop(h);
    Ok(Json(body).into_response())
}

#[derive(serde::Deserialize, Default)]
pub struct TreeQuery {
    root: Option<String>,
    filter: Option<String>,
}

/// Parses `?filter=`; a bad one is a 400 naming the column.
fn parse_filter(f: Option<&str>) -> Result<Option<procman_common::filter::Filter>, ApiErr> {
    f.filter(|f| !f.trim().is_empty())
        .map(|f| {
            procman_common::filter::Filter::parse(f).map_err(|e| {
                ApiErr(
                    StatusCode::BAD_REQUEST,
                    format!("invalid filter {f:?}: {e}"),
                )
            })
        })
        .transpose()
}

async fn whole_tree(
    State(agent): State<Arc<Agent>>,
    Query(q): Query<TreeQuery>,
) -> Result<Response, ApiErr> {
    let root = q.root.as_deref().map(parse_pid).transpose()?;
    let filter = parse_filter(q.filter.as_deref())?;
    let keep = filter.map(|f| {
        let table = agent.table.read().unwrap_or_else(|e| e.into_inner());
        query::matching(&table, &agent.monitor, &f)
    });
    let all = snapshot(&agent);
    if let Some(r) = root {
        if !all.iter().any(|p| p.pid == r) {
            return Err(not_found(r));
        }
    }
    let mut nodes = query::tree(all, root);
    if let Some(keep) = keep {
        nodes = query::prune(nodes, &keep);
    }
    Ok(Json(nodes).into_response())
}

async fn system(State(agent): State<Arc<Agent>>) -> Response {
    let mut info = agent
        .monitor
        .system
        .read()
        .map(|s| s.info.clone())
        .unwrap_or_default();
    info.timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    info.processes = agent.table.read().map(|t| t.len()).unwrap_or(0);
    Json(info).into_response()
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

//! Service endpoints, over the [`Supervisor`](crate::services::Supervisor):
//!
//! - `GET /api/services`: every service ([`ServiceInfo`]).
//! - `GET /api/services/{name}`: one.
//! - `POST /api/services/{name}/start|stop|restart` (action `service`): answers once the
//!   service got there (up or failed, stopped, a new main process), with its state.
//! - `POST /api/services` (body: the fields of a `[[service]]` entry): a transient service,
//!   started unless `autostart` is false, kept across agent restarts until
//!   `DELETE /api/services/{name}` stops and forgets it. A caller other than root may only
//!   create services that run as itself; TCP clients may not create any.
//! - `GET /api/services/{name}/logs?lines=N&since=DUR`: the last lines ([`ServiceLogs`]);
//!   with `follow=true`, a never-ending `text/plain` stream of those lines and every new
//!   one, following the file across rotations.
use super::{error::ApiErr, extract, extract::Query, processes::blocking};
use crate::{
    access::Scope,
    core::Agent,
    services::{config::ServiceConfig, Cmd, Supervisor, SvcError},
};
use axum::{
    body::Body,
    extract::{Extension, Path as UrlPath, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use procman_common::{
    service::{ServiceInfo, ServiceLogs},
    units::{HumanDuration, Timestamp},
};
use std::{path::PathBuf, sync::Arc, time::Duration};

pub fn routes() -> Router<Arc<Agent>> {
    Router::new()
        .route("/api/services", get(list).post(create))
        .route("/api/services/{name}", get(one).delete(remove))
        .route("/api/services/{name}/start", post(start))
        .route("/api/services/{name}/stop", post(stop))
        .route("/api/services/{name}/restart", post(restart))
        .route("/api/services/{name}/logs", get(logs))
}

impl From<SvcError> for ApiErr {
    fn from(e: SvcError) -> ApiErr {
        let status = match e {
            SvcError::NotFound(_) => StatusCode::NOT_FOUND,
            SvcError::Invalid(_) => StatusCode::BAD_REQUEST,
            SvcError::Forbidden(_) => StatusCode::FORBIDDEN,
            SvcError::Conflict(_) => StatusCode::CONFLICT,
            SvcError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            SvcError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiErr::new(status, e.to_string())
    }
}

fn supervisor(agent: &Agent) -> Result<Arc<Supervisor>, ApiErr> {
    agent.services.get().cloned().ok_or_else(|| {
        ApiErr::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "services are not started yet",
        )
    })
}

/// Every service with its state.
#[utoipa::path(get, path = "/api/services", tag = "services", operation_id = "service_list",
    responses((status = 200, description = "Each service: state, pid, since, restarts, last exit, next attempt, probe.", body = Vec<ServiceInfo>)))]
pub async fn list(State(agent): State<Arc<Agent>>) -> Result<Json<Vec<ServiceInfo>>, ApiErr> {
    Ok(Json(supervisor(&agent)?.list()))
}

/// One service.
#[utoipa::path(get, path = "/api/services/{name}", tag = "services", operation_id = "service_one", params(("name" = String, Path, description = "The service.")),
    responses(
        (status = 200, description = "The service.", body = ServiceInfo),
        (status = 404, description = "No such service.", body = procman_common::api::ApiError),
    ))]
pub async fn one(
    State(agent): State<Arc<Agent>>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<ServiceInfo>, ApiErr> {
    Ok(Json(supervisor(&agent)?.get(&name)?))
}

async fn command(
    agent: &Agent,
    scope: Scope,
    name: &str,
    cmd: Cmd,
) -> Result<Json<ServiceInfo>, ApiErr> {
    let sup = supervisor(agent)?;
    sup.check_owner(name, scope.only_uid)?;
    Ok(Json(sup.command(name, cmd).await?))
}

/// Starts a service (afresh when it is `failed`).
#[utoipa::path(post, path = "/api/services/{name}/start", tag = "services", operation_id = "service_start", params(("name" = String, Path, description = "The service.")),
    responses(
        (status = 200, description = "The service once started.", body = ServiceInfo),
        (status = 404, description = "No such service.", body = procman_common::api::ApiError),
    ))]
pub async fn start(
    State(agent): State<Arc<Agent>>,
    Extension(scope): Extension<Scope>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<ServiceInfo>, ApiErr> {
    command(&agent, scope, &name, Cmd::Start).await
}

/// Stops a service: its stop signal, then `cgroup.kill` of its slice after the timeout.
#[utoipa::path(post, path = "/api/services/{name}/stop", tag = "services", operation_id = "service_stop", params(("name" = String, Path, description = "The service.")),
    responses(
        (status = 200, description = "The service once stopped.", body = ServiceInfo),
        (status = 404, description = "No such service.", body = procman_common::api::ApiError),
    ))]
pub async fn stop(
    State(agent): State<Arc<Agent>>,
    Extension(scope): Extension<Scope>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<ServiceInfo>, ApiErr> {
    command(&agent, scope, &name, Cmd::Stop).await
}

/// Stops and starts a service.
#[utoipa::path(post, path = "/api/services/{name}/restart", tag = "services", operation_id = "service_restart", params(("name" = String, Path, description = "The service.")),
    responses(
        (status = 200, description = "The service once started again.", body = ServiceInfo),
        (status = 404, description = "No such service.", body = procman_common::api::ApiError),
    ))]
pub async fn restart(
    State(agent): State<Arc<Agent>>,
    Extension(scope): Extension<Scope>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<ServiceInfo>, ApiErr> {
    command(&agent, scope, &name, Cmd::Restart).await
}

/// `POST /api/services`: a transient service, the fields of a `[[service]]` entry.
#[utoipa::path(post, path = "/api/services", tag = "services", operation_id = "service_create",
    request_body(content = Object, description = "The fields of a `[[service]]` config entry, as JSON (unknown fields refused)."),
    responses(
        (status = 200, description = "The service once started.", body = ServiceInfo),
        (status = 400, description = "A refused field, named.", body = procman_common::api::ApiError),
        (status = 409, description = "A service with this name exists.", body = procman_common::api::ApiError),
    ))]
pub async fn create(
    State(agent): State<Arc<Agent>>,
    Extension(scope): Extension<Scope>,
    extract::Json(cfg): extract::Json<ServiceConfig>,
) -> Result<Json<ServiceInfo>, ApiErr> {
    let sup = supervisor(&agent)?;
    let name = cfg.name.clone();
    let caller = scope.peer.remote.is_none().then_some(scope.peer.uid);
    let s2 = sup.clone();
    blocking(agent, move |_| Ok(s2.create(cfg, caller)?)).await?;
    Ok(Json(sup.wait_started(&name).await?))
}

/// `DELETE /api/services/{name}`: stops a transient service and forgets it.
#[utoipa::path(delete, path = "/api/services/{name}", tag = "services", operation_id = "service_remove", params(("name" = String, Path, description = "The service.")),
    responses(
        (status = 200, description = "The service as it was removed.", body = ServiceInfo),
        (status = 404, description = "No such service.", body = procman_common::api::ApiError),
    ))]
pub async fn remove(
    State(agent): State<Arc<Agent>>,
    Extension(scope): Extension<Scope>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<ServiceInfo>, ApiErr> {
    let sup = supervisor(&agent)?;
    sup.check_owner(&name, scope.only_uid)?;
    Ok(Json(sup.delete(&name).await?))
}

#[derive(serde::Deserialize, Default, utoipa::IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// The last N lines (default 100, at most 100000).
    lines: Option<usize>,
    /// Only lines of the last DURATION (`5m`, `1h`).
    #[param(value_type = Option<String>)]
    since: Option<HumanDuration>,
    /// Keep streaming new lines.
    follow: bool,
}

/// A service's output: the last lines, or (`follow=true`) those and then every new line as
/// plain text.
#[utoipa::path(get, path = "/api/services/{name}/logs", tag = "services", operation_id = "service_logs", params(("name" = String, Path, description = "The service."), LogsQuery),
    responses(
        (status = 200, description = "The lines (JSON), or with `follow=true` a text stream.", body = ServiceLogs),
        (status = 404, description = "No such service.", body = procman_common::api::ApiError),
    ))]
pub async fn logs(
    State(agent): State<Arc<Agent>>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiErr> {
    let sup = supervisor(&agent)?;
    let n = q.lines.unwrap_or(100).min(100_000);
    let since = q
        .since
        .map(|d| Timestamp(std::time::SystemTime::now() - d.0).to_string());
    let (s2, n2) = (sup.clone(), name.clone());
    let ans: ServiceLogs = blocking(agent, move |_| Ok(s2.logs(&n2, n, since.as_deref())?)).await?;
    if !q.follow {
        return Ok(Json(ans).into_response());
    }
    let (path, keep) = sup.log_path(&name)?;
    let mut first = ans.lines.join("\n");
    if !first.is_empty() {
        first.push('\n');
    }
    let head = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(first))]);
    let tail = follow(path, keep).await;
    use futures_util::StreamExt;
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from_stream(head.chain(tail)))
        .map_err(|e| ApiErr::internal(e.to_string()))
}

/// `path.N` (`N` 0: `path` itself).
fn rotated(path: &std::path::Path, n: u32) -> PathBuf {
    if n == 0 {
        return path.to_path_buf();
    }
    let mut p = path.to_path_buf().into_os_string();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// The file to read after the one with inode `ino` (device `dev`) was read to its end: the
/// file rotated in after it (it is now `path.K`: the next is `path.K-1`, or `path`), so that
/// several rotations between two polls skip nothing that is still kept.
async fn successor(path: &std::path::Path, keep: u32, dev: u64, ino: u64) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    for k in 0..=keep {
        if let Ok(m) = tokio::fs::metadata(rotated(path, k)).await {
            if m.ino() == ino && m.dev() == dev {
                return (k > 0).then(|| rotated(path, k - 1));
            }
        }
    }
    // ours was rotated beyond `keep`: the oldest kept file comes next
    for k in (0..=keep).rev() {
        let p = rotated(path, k);
        if tokio::fs::metadata(&p).await.is_ok() {
            return Some(p);
        }
    }
    None
}

/// New bytes of the log from its current end on, across rotations: the open file is read to
/// its end, then the file rotated in after it, and so on up to the current one (nothing is
/// skipped while it is kept). Polled every 200 ms.
async fn follow(
    path: PathBuf,
    keep: u32,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let file = match tokio::fs::File::open(&path).await {
        Ok(mut f) => {
            let _ = f.seek(std::io::SeekFrom::End(0)).await;
            Some(f)
        }
        Err(_) => None,
    };
    futures_util::stream::unfold((path, file), move |(path, mut file)| async move {
        use std::os::unix::fs::MetadataExt;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let Some(f) = file.as_mut() else {
                // no log yet: wait for it
                file = tokio::fs::File::open(&path).await.ok();
                if file.is_none() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                continue;
            };
            match f.read(&mut buf).await {
                Ok(0) => {}
                Ok(n) => {
                    buf.truncate(n);
                    return Some((Ok(bytes::Bytes::from(buf)), (path, file)));
                }
                Err(e) => return Some((Err(e), (path, None))),
            }
            // at the end: has the file been rotated (another inode at the path)?
            let (Ok(now), Ok(cur)) = (tokio::fs::metadata(&path).await, f.metadata().await) else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            if now.ino() != cur.ino() || now.dev() != cur.dev() {
                if let Some(next) = successor(&path, keep, cur.dev(), cur.ino()).await {
                    if let Ok(n) = tokio::fs::File::open(&next).await {
                        file = Some(n);
                        continue;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

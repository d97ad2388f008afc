//! Action endpoints: thin wrappers over [`crate::actions`] (and the Enforcer for slices), run
//! on the blocking pool (signals and waits).
//!
//! - `POST /api/processes/{pid}/kill`: seed 004's body (`{"force": false}`, an empty body is
//!   `{}`) and answer ([`KillAnswer`]); needs `kill`.
//! - `POST /api/processes/{pid}/renice` (`{"nice": N}` or `{"level": "low"}`) and
//!   `/ionice` (`{"class": "best-effort", "level": 4}`); need `limit` (they change a
//!   process's share of CPU or disk, as limits do).
//! - `POST /api/slices/{name}/kill`: kill every process of a slice, keep the slice; `kill`.
//! - `GET /api/actions`: the live NDJSON stream of actions taken or refused
//!   ([`ActionStreamItem`]).
//!
//! Each answer (and each error) is also sent to the action stream; the guard writes the audit
//! line, with the answer's message (which signal ended the process) as its detail.
use super::{
    error::ApiErr,
    extract,
    guard::{AuditDetail, MAX_BODY},
    processes::blocking,
};
use crate::{access::Scope, core::Agent};
use axum::{
    body::Body,
    extract::{Extension, Path as UrlPath, Request, State},
    http::{header, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use procman_common::action::{
    ActionRecord, ActionStreamItem, IoniceRequest, KillRequest, ReniceRequest, SliceKillAnswer,
};
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::broadcast;

pub fn routes() -> Router<Arc<Agent>> {
    Router::new()
        .route("/api/processes/{pid}/kill", post(kill))
        .route("/api/processes/{pid}/renice", post(renice))
        .route("/api/processes/{pid}/ionice", post(ionice))
        .route_layer(axum::middleware::from_fn(pid_errors))
        .route("/api/slices/{name}/kill", post(kill_slice))
        .route("/api/actions", get(stream))
}

/// Seed 004's error shape for the pid routes: `{"success": false, "error": ..., "pid": N}`.
/// Adds `success` and `pid` to an error body that lacks them (the common error body may
/// already carry them; then this changes nothing).
async fn pid_errors(req: Request, next: Next) -> Response {
    let pid: Option<u32> = req
        .uri()
        .path()
        .split('/')
        .nth(3)
        .and_then(|s| s.parse().ok());
    let resp = next.run(req).await;
    if resp.status().is_success() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let Ok(serde_json::Value::Object(mut m)) = serde_json::from_slice(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    m.entry("success").or_insert(false.into());
    if let Some(p) = pid {
        m.entry("pid").or_insert(p.into());
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = serde_json::to_vec(&m).unwrap_or_else(|_| bytes.to_vec());
    Response::from_parts(parts, Body::from(body))
}

/// Who asked, for the action stream.
fn actor(scope: &Scope) -> String {
    match (scope.peer.remote, scope.peer.pid) {
        (Some(addr), _) => format!("token ({addr})"),
        (None, Some(pid)) => format!("uid {} (pid {pid})", scope.peer.uid),
        (None, None) => format!("uid {}", scope.peer.uid),
    }
}

/// Publishes the outcome to the action stream and turns it into the answer (with the message
/// for the audit line).
fn answer<T: Serialize>(
    agent: &Agent,
    scope: &Scope,
    action: &str,
    target: (Option<u32>, Option<String>),
    args: serde_json::Value,
    r: Result<T, ApiErr>,
) -> Result<Response, ApiErr> {
    let (result, message, ans) = match &r {
        Ok(t) => {
            let v = serde_json::to_value(t).unwrap_or_default();
            let m = v["message"].as_str().unwrap_or("").to_string();
            ("ok", m, v)
        }
        Err(e) if e.status == StatusCode::FORBIDDEN => {
            ("denied", e.message.clone(), serde_json::Value::Null)
        }
        Err(e) => ("error", e.message.clone(), serde_json::Value::Null),
    };
    agent.actions.publish(ActionRecord {
        time: crate::actions::unix_now(),
        action: action.to_string(),
        pid: target.0,
        slice: target.1,
        name: ans["name"].as_str().map(str::to_string),
        actor: actor(scope),
        args,
        result: result.to_string(),
        message: message.clone(),
        answer: ans,
    });
    let mut resp = Json(r?).into_response();
    resp.extensions_mut().insert(AuditDetail(message));
    Ok(resp)
}

/// Seed 004's kill: SIGTERM, then SIGKILL after the grace (`force`: SIGKILL at once).
#[utoipa::path(post, path = "/api/processes/{pid}/kill", tag = "actions", operation_id = "action_kill", params(("pid" = u32, Path, description = "The process.")),
    request_body(content = Option<KillRequest>, description = "`{\"force\": false}` (seed 004); an empty body is `{}`."),
    responses(
        (status = 200, description = "Ended, and how.", body = procman_common::action::KillAnswer),
        (status = 403, description = "A protected process (pid 1, a kernel thread, the agent, `[actions] protect`) or not the caller's.", body = procman_common::api::ApiError),
        (status = 404, description = "No such process.", body = procman_common::api::ApiError),
        (status = 409, description = "The pid names another process than the `started_at`/`start_ns` given.", body = procman_common::api::ApiError),
    ))]
pub async fn kill(
    State(agent): State<Arc<Agent>>,
    Extension(scope): Extension<Scope>,
    extract::Pid(pid): extract::Pid,
    body: Option<extract::Json<KillRequest>>,
) -> Result<Response, ApiErr> {
    let req = body.map(|b| b.0).unwrap_or_default();
    let args = serde_json::to_value(&req).unwrap_or_default();
    let r = blocking(agent.clone(), move |a| {
        Ok(crate::actions::kill::kill(a, pid, &req, scope.only_uid)?)
    })
    .await;
    answer(&agent, &scope, "kill", (Some(pid), None), args, r)
}

/// The nice value of every thread of a process.
#[utoipa::path(post, path = "/api/processes/{pid}/renice", tag = "actions", operation_id = "action_renice", params(("pid" = u32, Path, description = "The process.")),
    request_body = ReniceRequest,
    responses(
        (status = 200, description = "The old and new nice values.", body = procman_common::action::ReniceAnswer),
        (status = 403, description = "A protected process, or not the caller's.", body = procman_common::api::ApiError),
        (status = 404, description = "No such process.", body = procman_common::api::ApiError),
        (status = 409, description = "The pid names another process.", body = procman_common::api::ApiError),
    ))]
pub async fn renice(
    State(agent): State<Arc<Agent>>,
    Extension(scope): Extension<Scope>,
    extract::Pid(pid): extract::Pid,
    extract::Json(req): extract::Json<ReniceRequest>,
) -> Result<Response, ApiErr> {
    let args = serde_json::to_value(&req).unwrap_or_default();
    let r = blocking(agent.clone(), move |a| {
        Ok(crate::actions::priority::renice(
            a,
            pid,
            &req,
            scope.only_uid,
        )?)
    })
    .await;
    answer(&agent, &scope, "renice", (Some(pid), None), args, r)
}

/// The IO priority of every thread of a process.
#[utoipa::path(post, path = "/api/processes/{pid}/ionice", tag = "actions", operation_id = "action_ionice", params(("pid" = u32, Path, description = "The process.")),
    request_body = IoniceRequest,
    responses(
        (status = 200, description = "The old and new IO priorities.", body = procman_common::action::IoniceAnswer),
        (status = 403, description = "A protected process, or not the caller's.", body = procman_common::api::ApiError),
        (status = 404, description = "No such process.", body = procman_common::api::ApiError),
        (status = 409, description = "The pid names another process.", body = procman_common::api::ApiError),
    ))]
pub async fn ionice(
    State(agent): State<Arc<Agent>>,
    Extension(scope): Extension<Scope>,
    extract::Pid(pid): extract::Pid,
    extract::Json(req): extract::Json<IoniceRequest>,
) -> Result<Response, ApiErr> {
    let args = serde_json::to_value(&req).unwrap_or_default();
    let r = blocking(agent.clone(), move |a| {
        Ok(crate::actions::priority::ionice(
            a,
            pid,
            &req,
            scope.only_uid,
        )?)
    })
    .await;
    answer(&agent, &scope, "ionice", (Some(pid), None), args, r)
}

/// Every process of a slice, at once (`cgroup.kill`, or the freeze-and-SIGKILL sweep
/// before 5.14); the slice stays.
#[utoipa::path(post, path = "/api/slices/{name}/kill", tag = "actions", operation_id = "action_kill_slice",
    params(("name" = String, Path, description = "The slice.")),
    responses(
        (status = 200, description = "The pids killed and how.", body = procman_common::action::SliceKillAnswer),
        (status = 404, description = "No such slice.", body = procman_common::api::ApiError),
    ))]
pub async fn kill_slice(
    State(agent): State<Arc<Agent>>,
    Extension(scope): Extension<Scope>,
    UrlPath(name): UrlPath<String>,
) -> Result<Response, ApiErr> {
    let slice = name.clone();
    let r = blocking(agent.clone(), move |a| {
        let (killed, how) = a.enforcer.kill_slice(&name, scope.only_uid)?;
        Ok(SliceKillAnswer {
            success: true,
            message: format!("Slice {name}: {} process(es) killed ({how})", killed.len()),
            slice: name,
            killed,
            method: how.to_string(),
        })
    })
    .await;
    answer(
        &agent,
        &scope,
        "slice-kill",
        (None, Some(slice)),
        serde_json::Value::Null,
        r,
    )
}

/// `GET /api/actions`: every action from now on, one JSON object per line.
#[utoipa::path(get, path = "/api/actions", tag = "actions", operation_id = "action_stream",
    responses((status = 200, description = "An endless NDJSON stream of ActionStreamItem objects.", content_type = "application/x-ndjson", body = procman_common::action::ActionStreamItem)))]
pub async fn stream(State(agent): State<Arc<Agent>>) -> Result<Response, ApiErr> {
    let rx = agent.actions.stream.subscribe();
    let s = futures_util::stream::unfold(rx, |mut rx| async move {
        let item = match rx.recv().await {
            Ok(r) => ActionStreamItem::Action(Box::new(r)),
            Err(broadcast::error::RecvError::Lagged(n)) => ActionStreamItem::Lagged { lagged: n },
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        let mut line = serde_json::to_vec(&item).unwrap_or_default();
        line.push(b'\n');
        Some((
            Ok::<_, std::convert::Infallible>(bytes::Bytes::from(line)),
            rx,
        ))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(s))
        .map_err(|e| ApiErr::internal(e.to_string()))
}

//! Enforcement endpoints: slices, limits, freeze/thaw and placement statistics.
//!
//! - `GET /api/slices`: every managed slice with its limits and usage.
//! - `POST /api/slices/{name}`: create or update a slice (body: `{"limits": {...}}`).
//! - `POST /api/limit`: create or update a slice and move processes into it.
//! - `DELETE /api/slices/{name}/limits`: lift every limit of a slice (processes stay).
//! - `POST /api/slices/{name}/freeze`, `/thaw`.
//! - `GET /api/placement`: placement rules, counters and latency percentiles.
//!
//! Every limit is parsed and checked (including "is its controller available here") before
//! anything is written; errors are 400 with the value and the accepted forms.
use super::ApiErr;
use crate::core::Agent;
use axum::{
    extract::{Path as UrlPath, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{delete, get, post},
    Json, Router,
};
use procman_cgroup::{CgroupError, Limits, Manager};
use procman_common::api::{LimitRequest, SliceAnswer, SliceInfo};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Agent>> {
    Router::new()
        .route("/api/slices", get(slices))
        .route("/api/slices/{name}", post(ensure))
        .route("/api/slices/{name}/limits", delete(unlimit))
        .route("/api/slices/{name}/freeze", post(freeze))
        .route("/api/slices/{name}/thaw", post(thaw))
        .route("/api/limit", post(limit))
        .route("/api/placement", get(placement))
}

fn manager(agent: &Agent) -> Result<Arc<Manager>, ApiErr> {
    agent.enforcer.manager().map_err(|e| {
        ApiErr(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cgroup v2 is not usable here: {e}"),
        )
    })
}

/// Maps a cgroup error to a status: bad input 400, unknown things 404, else 500.
fn cg_err(e: CgroupError) -> ApiErr {
    let status = match &e {
        CgroupError::InvalidName { .. }
        | CgroupError::Unenforceable { .. }
        | CgroupError::ProtectedPid { .. }
        | CgroupError::ProtectedMember { .. } => StatusCode::BAD_REQUEST,
        CgroupError::NoSuchSlice { .. } | CgroupError::NoSuchProcess { .. } => {
            StatusCode::NOT_FOUND
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiErr(status, e.to_string())
}

/// The slice's current limits with `updates` (systemd keys) applied; nothing is written.
fn merged_limits(
    m: &Manager,
    slice: &str,
    updates: &std::collections::BTreeMap<String, String>,
) -> Result<Limits, ApiErr> {
    let mut l = if m.list_slices().map_err(cg_err)?.iter().any(|s| s == slice) {
        m.read_limits(slice).map_err(cg_err)?
    } else {
        Limits::default()
    };
    for (k, v) in updates {
        l.set(k, v)
            .map_err(|e| ApiErr(StatusCode::BAD_REQUEST, e.to_string()))?;
    }
    l.validate()
        .map_err(|e| ApiErr(StatusCode::BAD_REQUEST, e.to_string()))?;
    m.check_enforceable(&l).map_err(cg_err)?;
    Ok(l)
}

fn answer(m: &Manager, slice: &str, created: bool, moved: Vec<u32>) -> Result<SliceAnswer, ApiErr> {
    Ok(SliceAnswer {
        slice: slice.to_string(),
        path: m.slice_path(slice).map_err(cg_err)?.display().to_string(),
        created,
        moved,
        limits: m
            .read_limits(slice)
            .map_err(cg_err)?
            .entries()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    })
}

#[derive(serde::Deserialize, Default)]
struct EnsureBody {
    #[serde(default)]
    limits: std::collections::BTreeMap<String, String>,
}

async fn ensure(
    State(agent): State<Arc<Agent>>,
    UrlPath(name): UrlPath<String>,
    body: Option<Json<EnsureBody>>,
) -> Result<Response, ApiErr> {
    let m = manager(&agent)?;
    procman_cgroup::validate_name("slice", &name).map_err(cg_err)?;
    let updates = body.map(|b| b.0.limits).unwrap_or_default();
    let limits = merged_limits(&m, &name, &updates)?;
    let created =
        m.ensure_slice(&name, &limits).map_err(cg_err)? == procman_cgroup::Ensured::Created;
    Ok(Json(answer(&m, &name, created, vec![])?).into_response())
}

async fn limit(
    State(agent): State<Arc<Agent>>,
    Json(req): Json<LimitRequest>,
) -> Result<Response, ApiErr> {
    let m = manager(&agent)?;
    // who: validated before anything is written
    let mut targets: Vec<(u32, u64)> = Vec::new();
    let filter = req
        .filter
        .as_deref()
        .map(|f| {
            procman_common::filter::Filter::parse(f).map_err(|e| {
                ApiErr(
                    StatusCode::BAD_REQUEST,
                    format!("invalid filter {f:?}: {e}"),
                )
            })
        })
        .transpose()?;
    {
        let table = agent.table.read().unwrap_or_else(|e| e.into_inner());
        for &pid in &req.pids {
            // a process started a moment ago may not be in the table yet: ask /proc
            let start = match table.get(pid) {
                Some(e) if !e.exited => e.start_ticks,
                Some(_) => {
                    return Err(ApiErr(
                        StatusCode::NOT_FOUND,
                        format!("process {pid} has exited"),
                    ))
                }
                None => {
                    procman_cgroup::procs::proc_info(pid)
                        .map_err(|_| {
                            ApiErr(StatusCode::NOT_FOUND, format!("no process with pid {pid}"))
                        })?
                        .start_time
                }
            };
            targets.push((pid, start));
        }
        if let Some(n) = &req.name {
            let before = targets.len();
            targets.extend(
                table
                    .iter()
                    .filter(|e| !e.exited && e.comm.as_bytes() == n.as_bytes())
                    .map(|e| (e.pid, e.start_ticks)),
            );
            if targets.len() == before {
                return Err(ApiErr(
                    StatusCode::NOT_FOUND,
                    format!("no process named {n:?}"),
                ));
            }
        }
        if let Some(f) = &filter {
            let keep = crate::query::matching(&table, &agent.monitor, f);
            targets.extend(
                keep.into_iter()
                    .filter_map(|p| table.get(p))
                    .filter(|e| !e.exited)
                    .map(|e| (e.pid, e.start_ticks)),
            );
        }
        if targets.is_empty() {
            return Err(ApiErr(
                StatusCode::BAD_REQUEST,
                "say which processes: pids, name or filter".into(),
            ));
        }
        // descendants follow (escape-free)
        let roots = targets.clone();
        for (pid, _) in roots {
            for d in table.descendants(pid) {
                if let Some(e) = table.get(d).filter(|e| !e.exited) {
                    targets.push((d, e.start_ticks));
                }
            }
        }
    }
    targets.sort_unstable();
    targets.dedup();
    for &(pid, start) in &targets {
        procman_cgroup::procs::check_mutable(pid, Some(start)).map_err(cg_err)?;
    }
    let slice = match (&req.slice, req.pids.first(), &req.name) {
        (Some(s), _, _) => s.clone(),
        (None, Some(p), _) => format!("pid-{p}"),
        (None, None, Some(n)) => format!("name-{n}"),
        (None, None, None) => {
            return Err(ApiErr(
                StatusCode::BAD_REQUEST,
                "with --filter, give --slice NAME".into(),
            ))
        }
    };
    procman_cgroup::validate_name("slice", &slice).map_err(cg_err)?;
    let limits = merged_limits(&m, &slice, &req.limits)?;
    let created =
        m.ensure_slice(&slice, &limits).map_err(cg_err)? == procman_cgroup::Ensured::Created;
    let mut moved = Vec::new();
    for (pid, start) in targets {
        match m.move_process(&slice, pid, Some(start)) {
            Ok(()) => moved.push(pid),
            Err(CgroupError::NoSuchProcess { .. }) | Err(CgroupError::PidReused { .. }) => {} // exited meanwhile
            Err(e) => return Err(cg_err(e)),
        }
    }
    Ok(Json(answer(&m, &slice, created, moved)?).into_response())
}

async fn unlimit(
    State(agent): State<Arc<Agent>>,
    UrlPath(name): UrlPath<String>,
) -> Result<Response, ApiErr> {
    let m = manager(&agent)?;
    m.update_slice(&name, &Limits::default()).map_err(cg_err)?;
    Ok(Json(answer(&m, &name, false, vec![])?).into_response())
}

async fn freeze(
    State(agent): State<Arc<Agent>>,
    UrlPath(name): UrlPath<String>,
) -> Result<Response, ApiErr> {
    let m = manager(&agent)?;
    m.freeze(&name).map_err(cg_err)?;
    m.wait_frozen(&name, true, std::time::Duration::from_secs(5))
        .map_err(cg_err)?;
    Ok(Json(serde_json::json!({"slice": name, "frozen": true})).into_response())
}

async fn thaw(
    State(agent): State<Arc<Agent>>,
    UrlPath(name): UrlPath<String>,
) -> Result<Response, ApiErr> {
    let m = manager(&agent)?;
    m.thaw(&name).map_err(cg_err)?;
    Ok(Json(serde_json::json!({"slice": name, "frozen": false})).into_response())
}

async fn slices(State(agent): State<Arc<Agent>>) -> Result<Response, ApiErr> {
    let m = manager(&agent)?;
    let mut out = Vec::new();
    for name in m.list_slices().map_err(cg_err)? {
        let stats = m
            .stats(&name)
            .map(|s| serde_json::to_value(s).unwrap_or_default())
            .unwrap_or_default();
        out.push(SliceInfo {
            path: m.slice_path(&name).map_err(cg_err)?.display().to_string(),
            pids: m.pids(&name).unwrap_or_default(),
            limits: m
                .read_limits(&name)
                .map(|l| {
                    l.entries()
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect()
                })
                .unwrap_or_default(),
            stats,
            name,
        });
    }
    Ok(Json(out).into_response())
}

async fn placement(State(agent): State<Arc<Agent>>) -> Response {
    match &agent.enforcer.placement {
        Some(p) => Json(p.report()).into_response(),
        None => Json(procman_common::api::PlacementReport::default()).into_response(),
    }
}

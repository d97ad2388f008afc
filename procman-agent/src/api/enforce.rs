//! Enforcement endpoints: thin wrappers over the [`Enforcer`](crate::enforce::Enforcer),
//! run on the blocking pool (cgroupfs writes, freeze waits).
//!
//! - `GET /api/slices`: every managed slice with its limits and usage.
//! - `POST /api/slices/{name}`: create or update a slice (body: `{"limits": {...}}`).
//! - `POST /api/limit`: create or update a slice and move processes into it.
//! - `DELETE /api/slices/{name}/limits`: lift every limit of a slice (processes stay).
//! - `DELETE /api/slices/{name}[?kill=true]`: remove a slice (killing its processes with
//!   `kill`; a non-empty one is refused otherwise).
//! - `POST /api/slices/{name}/freeze`, `/thaw`.
//! - `GET /api/placement`: placement rules, counters and latency percentiles.
use super::{error::ApiErr, extract, processes::blocking};
use crate::access::Scope;
use crate::core::Agent;
use axum::{
    extract::{Extension, Path as UrlPath, State},
    routing::{delete, get, post},
    Json, Router,
};
use procman_common::api::{
    ApiError, LimitRequest, PlacementReport, ProcessFreezeAnswer, SliceAnswer, SliceInfo,
};
use std::{collections::BTreeMap, sync::Arc};

pub fn routes() -> Router<Arc<Agent>> {
    Router::new()
        .route("/api/slices", get(slices))
        .route("/api/slices/{name}", post(ensure).delete(remove))
        .route("/api/slices/{name}/limits", delete(unlimit))
        .route("/api/slices/{name}/freeze", post(freeze))
        .route("/api/slices/{name}/thaw", post(thaw))
        .route("/api/limit", post(limit))
        .route("/api/processes/{pid}/freeze", post(freeze_process))
        .route("/api/processes/{pid}/thaw", post(thaw_process))
        .route("/api/placement", get(placement))
}

/// `POST /api/slices/{name}`'s body.
#[derive(serde::Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct EnsureBody {
    /// systemd-style limits to set (merged over the slice's current ones), e.g.
    /// `{"MemoryMax": "512M", "CPUQuota": "50%"}`.
    #[serde(default)]
    limits: BTreeMap<String, String>,
}

/// Creates a slice or updates its limits.
#[utoipa::path(post, path = "/api/slices/{name}", tag = "enforcement", params(("name" = String, Path, description = "The slice's name (a cgroup directory under procman's root).")),
    request_body(content = Option<EnsureBody>, description = "The limits to set (no body: none)."),
    responses(
        (status = 200, description = "The slice and its limits now.", body = SliceAnswer),
        (status = 400, description = "Invalid name, limit or request.", body = ApiError),
        (status = 404, description = "No such slice or process.", body = ApiError),
        (status = 409, description = "Conflicts with the slice's or the cgroup's state.", body = ApiError),
        (status = 503, description = "Enforcement is unavailable on this host (no usable cgroup2, or a controller is missing).", body = ApiError),
    ))]
async fn ensure(
    State(agent): State<Arc<Agent>>,
    Extension(scope): Extension<Scope>,
    UrlPath(name): UrlPath<String>,
    body: Option<extract::Json<EnsureBody>>,
) -> Result<Json<SliceAnswer>, ApiErr> {
    let updates = body.map(|b| b.0.limits).unwrap_or_default();
    blocking(agent, move |a| {
        Ok(Json(a.enforcer.ensure_slice(
            &name,
            &updates,
            scope.only_uid,
        )?))
    })
    .await
}

/// Creates or updates a slice and moves the selected processes (with their descendants)
/// into it.
#[utoipa::path(post, path = "/api/limit", tag = "enforcement", request_body = LimitRequest,
    responses(
        (status = 200, description = "The slice, its limits and the pids moved.", body = SliceAnswer),
        (status = 400, description = "Invalid name, limit or request.", body = ApiError),
        (status = 404, description = "No such slice or process.", body = ApiError),
        (status = 409, description = "Conflicts with the slice's or the cgroup's state.", body = ApiError),
        (status = 503, description = "Enforcement is unavailable on this host (no usable cgroup2, or a controller is missing).", body = ApiError),
    ))]
async fn limit(
    State(agent): State<Arc<Agent>>,
    Extension(scope): Extension<Scope>,
    extract::Json(req): extract::Json<LimitRequest>,
) -> Result<Json<SliceAnswer>, ApiErr> {
    blocking(agent, move |a| {
        Ok(Json(a.enforcer.limit(
            &req,
            &a.table,
            &a.monitor,
            scope.only_uid,
        )?))
    })
    .await
}

/// Lifts every limit of a slice (its processes stay).
#[utoipa::path(delete, path = "/api/slices/{name}/limits", tag = "enforcement", params(("name" = String, Path, description = "The slice's name (a cgroup directory under procman's root).")),
    responses(
        (status = 200, description = "The slice, without limits.", body = SliceAnswer),
        (status = 400, description = "Invalid name, limit or request.", body = ApiError),
        (status = 404, description = "No such slice or process.", body = ApiError),
        (status = 409, description = "Conflicts with the slice's or the cgroup's state.", body = ApiError),
        (status = 503, description = "Enforcement is unavailable on this host (no usable cgroup2, or a controller is missing).", body = ApiError),
    ))]
async fn unlimit(
    State(agent): State<Arc<Agent>>,
    Extension(scope): Extension<Scope>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<SliceAnswer>, ApiErr> {
    blocking(agent, move |a| {
        Ok(Json(a.enforcer.unlimit(&name, scope.only_uid)?))
    })
    .await
}

/// The answer to `POST /api/slices/{name}/freeze` and `/thaw`.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct FreezeAnswer {
    slice: String,
    frozen: bool,
}

/// Freezes a slice (the cgroup freezer): its processes stop until thawed.
#[utoipa::path(post, path = "/api/slices/{name}/freeze", tag = "enforcement", params(("name" = String, Path, description = "The slice's name (a cgroup directory under procman's root).")),
    responses(
        (status = 200, description = "The slice is frozen.", body = FreezeAnswer),
        (status = 400, description = "Invalid name, limit or request.", body = ApiError),
        (status = 404, description = "No such slice or process.", body = ApiError),
        (status = 409, description = "Conflicts with the slice's or the cgroup's state.", body = ApiError),
        (status = 503, description = "Enforcement is unavailable on this host (no usable cgroup2, or a controller is missing).", body = ApiError),
    ))]
async fn freeze(
    State(agent): State<Arc<Agent>>,
    Extension(scope): Extension<Scope>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<FreezeAnswer>, ApiErr> {
    blocking(agent, move |a| {
        a.enforcer.freeze(&name, scope.only_uid)?;
        Ok(Json(FreezeAnswer {
            slice: name,
            frozen: true,
        }))
    })
    .await
}

/// Thaws a frozen slice.
#[utoipa::path(post, path = "/api/slices/{name}/thaw", tag = "enforcement", params(("name" = String, Path, description = "The slice's name (a cgroup directory under procman's root).")),
    responses(
        (status = 200, description = "The slice is thawed.", body = FreezeAnswer),
        (status = 400, description = "Invalid name, limit or request.", body = ApiError),
        (status = 404, description = "No such slice or process.", body = ApiError),
        (status = 409, description = "Conflicts with the slice's or the cgroup's state.", body = ApiError),
        (status = 503, description = "Enforcement is unavailable on this host (no usable cgroup2, or a controller is missing).", body = ApiError),
    ))]
async fn thaw(
    State(agent): State<Arc<Agent>>,
    Extension(scope): Extension<Scope>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<FreezeAnswer>, ApiErr> {
    blocking(agent, move |a| {
        a.enforcer.thaw(&name, scope.only_uid)?;
        Ok(Json(FreezeAnswer {
            slice: name,
            frozen: false,
        }))
    })
    .await
}

#[derive(serde::Deserialize, Default, utoipa::IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct RemoveQuery {
    /// Kill the slice's processes first (otherwise a non-empty slice is refused).
    kill: bool,
}

/// The answer to `DELETE /api/slices/{name}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct RemoveAnswer {
    slice: String,
    removed: bool,
    /// The processes that were in it (killed).
    killed: Vec<u32>,
}

/// Removes a slice (a non-empty one only with `kill=true`, which kills its processes).
#[utoipa::path(delete, path = "/api/slices/{name}", tag = "enforcement", params(("name" = String, Path, description = "The slice's name (a cgroup directory under procman's root)."), RemoveQuery),
    responses(
        (status = 200, description = "The slice is gone.", body = RemoveAnswer),
        (status = 400, description = "Invalid name, limit or request.", body = ApiError),
        (status = 404, description = "No such slice or process.", body = ApiError),
        (status = 409, description = "Conflicts with the slice's or the cgroup's state.", body = ApiError),
        (status = 503, description = "Enforcement is unavailable on this host (no usable cgroup2, or a controller is missing).", body = ApiError),
    ))]
async fn remove(
    State(agent): State<Arc<Agent>>,
    Extension(scope): Extension<Scope>,
    UrlPath(name): UrlPath<String>,
    extract::Query(q): extract::Query<RemoveQuery>,
) -> Result<Json<RemoveAnswer>, ApiErr> {
    blocking(agent, move |a| {
        let killed = a.enforcer.remove_slice(&name, q.kill, scope.only_uid)?;
        Ok(Json(RemoveAnswer {
            slice: name,
            removed: true,
            killed,
        }))
    })
    .await
}

/// Freezes one process: alone in a slice of its own (moved there first when it is outside
/// procman's slices).
#[utoipa::path(post, path = "/api/processes/{pid}/freeze", tag = "enforcement", params(extract::Pid),
    responses(
        (status = 200, description = "The process is frozen.", body = ProcessFreezeAnswer),
        (status = 400, description = "Invalid name, limit or request.", body = ApiError),
        (status = 404, description = "No such slice or process.", body = ApiError),
        (status = 409, description = "Conflicts with the slice's or the cgroup's state.", body = ApiError),
        (status = 503, description = "Enforcement is unavailable on this host (no usable cgroup2, or a controller is missing).", body = ApiError),
    ))]
async fn freeze_process(
    state: State<Arc<Agent>>,
    scope: Extension<Scope>,
    pid: extract::Pid,
) -> Result<Json<ProcessFreezeAnswer>, ApiErr> {
    freeze_or_thaw(state, scope, pid, true).await
}

/// Thaws a process frozen by `POST /api/processes/{pid}/freeze`.
#[utoipa::path(post, path = "/api/processes/{pid}/thaw", tag = "enforcement", params(extract::Pid),
    responses(
        (status = 200, description = "The process is thawed.", body = ProcessFreezeAnswer),
        (status = 400, description = "Invalid name, limit or request.", body = ApiError),
        (status = 404, description = "No such slice or process.", body = ApiError),
        (status = 409, description = "Conflicts with the slice's or the cgroup's state.", body = ApiError),
        (status = 503, description = "Enforcement is unavailable on this host (no usable cgroup2, or a controller is missing).", body = ApiError),
    ))]
async fn thaw_process(
    state: State<Arc<Agent>>,
    scope: Extension<Scope>,
    pid: extract::Pid,
) -> Result<Json<ProcessFreezeAnswer>, ApiErr> {
    freeze_or_thaw(state, scope, pid, false).await
}

async fn freeze_or_thaw(
    State(agent): State<Arc<Agent>>,
    Extension(scope): Extension<Scope>,
    extract::Pid(pid): extract::Pid,
    freeze: bool,
) -> Result<Json<ProcessFreezeAnswer>, ApiErr> {
    blocking(agent, move |a| {
        let e = &a.enforcer;
        Ok(Json(e.freeze_process(
            pid,
            freeze,
            &a.table,
            &a.monitor,
            scope.only_uid,
        )?))
    })
    .await
}

/// Every managed slice with its processes, limits and cgroup statistics.
#[utoipa::path(get, path = "/api/slices", tag = "enforcement",
    responses(
        (status = 200, description = "The slices.", body = Vec<SliceInfo>),
        (status = 503, description = "Enforcement is unavailable on this host.", body = ApiError),
    ))]
async fn slices(State(agent): State<Arc<Agent>>) -> Result<Json<Vec<SliceInfo>>, ApiErr> {
    blocking(agent, |a| Ok(Json(a.enforcer.slices()?))).await
}

/// Placement rules, counters and latency percentiles.
#[utoipa::path(get, path = "/api/placement", tag = "enforcement",
    responses((status = 200, description = "The placement report.", body = PlacementReport)))]
async fn placement(State(agent): State<Arc<Agent>>) -> Json<PlacementReport> {
    Json(agent.enforcer.placement_report())
}

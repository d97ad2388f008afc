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
    LimitRequest, PlacementReport, ProcessFreezeAnswer, SliceAnswer, SliceInfo,
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

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EnsureBody {
    #[serde(default)]
    limits: BTreeMap<String, String>,
}

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

#[derive(serde::Serialize)]
struct FreezeAnswer {
    slice: String,
    frozen: bool,
}

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

#[derive(serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RemoveQuery {
    /// Kill the slice's processes first (otherwise a non-empty slice is refused).
    kill: bool,
}

#[derive(serde::Serialize)]
struct RemoveAnswer {
    slice: String,
    removed: bool,
    /// The processes that were in it (killed).
    killed: Vec<u32>,
}

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

async fn freeze_process(
    state: State<Arc<Agent>>,
    scope: Extension<Scope>,
    pid: extract::Pid,
) -> Result<Json<ProcessFreezeAnswer>, ApiErr> {
    freeze_or_thaw(state, scope, pid, true).await
}

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

async fn slices(State(agent): State<Arc<Agent>>) -> Result<Json<Vec<SliceInfo>>, ApiErr> {
    blocking(agent, |a| Ok(Json(a.enforcer.slices()?))).await
}

async fn placement(State(agent): State<Arc<Agent>>) -> Json<PlacementReport> {
    Json(agent.enforcer.placement_report())
}

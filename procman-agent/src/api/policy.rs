//! Policy endpoints (all reads: the test endpoint acts on nothing).
//!
//! - `GET /api/policies`: each `[[policy]]` with its mode, effective mode, hits, actions,
//!   budget left and the targets in progress.
//! - `GET /api/policies/explain/{pid}`: each policy against one process.
//! - `POST /api/policies/test`: a TOML body of `[[policy]]` entries, validated and evaluated
//!   once against the current table, without acting or keeping state.
use super::{error::ApiErr, extract, processes::blocking};
use crate::{access::Scope, core::Agent, policy::config::PolicyFile};
use axum::{
    extract::{Extension, State},
    routing::{get, post},
    Json, Router,
};
use procman_common::{
    filter::Comparison,
    policy::{Explain, PolicyList, PolicyTestReport},
};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Agent>> {
    Router::new()
        .route("/api/policies", get(list))
        .route("/api/policies/explain/{pid}", get(explain))
        .route("/api/policies/test", post(test))
}

/// Command lines are hidden from callers who may not see every process's (like the
/// process list does).
fn redact(terms: &mut [Comparison], scope: &Scope) {
    if scope.sees_all {
        return;
    }
    for t in terms.iter_mut().filter(|t| t.field == "cmdline") {
        t.value = t.value.as_ref().map(|_| "(hidden)".to_string());
    }
}

/// Every `[[policy]]` with its state.
#[utoipa::path(get, path = "/api/policies", tag = "policies", operation_id = "policy_list",
    responses((status = 200, description = "Each policy: mode, effective mode (and why), hits, actions, budget left, targets in progress.", body = PolicyList)))]
pub async fn list(State(agent): State<Arc<Agent>>) -> Json<PolicyList> {
    Json(agent.policies.list())
}

/// Each policy against one process: does it match, each condition's value, how long it held,
/// what happens next.
#[utoipa::path(get, path = "/api/policies/explain/{pid}", tag = "policies", operation_id = "policy_explain",
    params(("pid" = u32, Path, description = "The process.")),
    responses(
        (status = 200, description = "Each policy's verdict on the process.", body = Explain),
        (status = 400, description = "The pid is not a number.", body = procman_common::api::ApiError),
        (status = 404, description = "No such process.", body = procman_common::api::ApiError),
    ))]
pub async fn explain(
    State(agent): State<Arc<Agent>>,
    Extension(scope): Extension<Scope>,
    extract::Pid(pid): extract::Pid,
) -> Result<Json<Explain>, ApiErr> {
    let mut e = blocking(agent, move |a| {
        a.policies
            .explain(a, pid)
            .ok_or_else(|| ApiErr::process_not_found(pid))
    })
    .await?;
    for r in &mut e.policies {
        redact(&mut r.match_terms, &scope);
        redact(&mut r.conditions, &scope);
    }
    Ok(Json(e))
}

/// Validates `[[policy]]` entries (a TOML body) and shows what they would hit now, acting on
/// nothing.
#[utoipa::path(post, path = "/api/policies/test", tag = "policies", operation_id = "policy_test",
    request_body(content = String, content_type = "application/toml", description = "`[[policy]]` entries, as in the config file."),
    responses(
        (status = 200, description = "Per policy: valid, and the processes it would hit now.", body = PolicyTestReport),
        (status = 400, description = "A refused rule, naming the policy and the key.", body = procman_common::api::ApiError),
    ))]
pub async fn test(
    State(agent): State<Arc<Agent>>,
    Extension(scope): Extension<Scope>,
    body: String,
) -> Result<Json<PolicyTestReport>, ApiErr> {
    let policies = PolicyFile::parse(&body).map_err(|e| ApiErr::bad_request(format!("{e:#}")))?;
    let mut r = blocking(agent, move |a| Ok(crate::policy::test(a, &policies))).await?;
    for p in &mut r.policies {
        for h in &mut p.hits {
            redact(&mut h.conditions, &scope);
        }
    }
    Ok(Json(r))
}

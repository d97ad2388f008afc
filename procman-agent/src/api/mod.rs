//! The HTTP/JSON API on the agent's Unix socket.
//!
//! One module per group of routes; requests are parsed into typed structs once
//! ([`extract`]), and every error becomes a status in one place ([`error`]).
//!
//! - `GET /api/status`: [`AgentStatus`](procman_common::api::AgentStatus).
//! - `GET /api/events`: the live event stream ([`events`]).
//! - `GET /api/processes[/{pid}[/tree|/history]]`, `/api/tree`, `/api/system`: the read side
//!   ([`processes`]).
//! - slices, limits, freeze/thaw, placement: [`enforce`].
//! - `GET /api/openapi.json`: the OpenAPI description of all of them ([`openapi`]).
//! - `[[policy]]` state, explain and test: [`policy`].
//! - supervised services, their commands and logs: [`services`].
//! - kill, renice, ionice, slice kill and the `/api/actions` stream: [`actions`].
//!
//! A new endpoint goes into the module of its group (or a new one), returns
//! `Result<Json<T>, ApiErr>` with `T` a wire type from `procman_common::api`, runs
//! anything blocking through [`processes::blocking`], and is described with
//! `#[utoipa::path(...)]`, listed in [`openapi::ApiDoc`].
pub mod actions;
pub mod cors;
pub mod dashboard;
pub mod enforce;
pub mod error;
pub mod events;
pub mod extract;
pub mod guard;
pub mod metrics;
pub mod openapi;
pub mod policy;
pub mod processes;
pub mod server;
pub mod services;

use crate::core::Agent;
use anyhow::{bail, Context, Result};
use axum::{extract::State, routing::get, Json, Router};
use error::ApiErr;
use procman_common::api::AgentStatus;
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
};
use tokio::net::UnixListener;

pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/api/status", get(status))
        .route("/api/whoami", get(whoami))
        .route("/api/events", get(events::events))
        .route("/api/processes", get(processes::processes))
        .route("/api/processes/{pid}", get(processes::process))
        .route("/api/processes/{pid}/tree", get(processes::process_tree))
        .route(
            "/api/processes/{pid}/history",
            get(processes::process_history),
        )
        .route("/api/tree", get(processes::whole_tree))
        .route("/api/system", get(processes::system))
        .route("/api/audit", get(audit_log))
        .route("/metrics", get(metrics::metrics))
        .route("/api/openapi.json", get(openapi::document))
        .merge(enforce::routes())
        .merge(policy::routes())
        .merge(services::routes())
        .merge(actions::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            agent.clone(),
            guard::guard,
        ))
        // after the guard's layer: static files that hold no data, served without the token
        .merge(dashboard::routes())
        .fallback(|| async { ApiErr::not_found("no such endpoint; see README.md (API)") })
        .method_not_allowed_fallback(
            |method: axum::http::Method, uri: axum::http::Uri| async move {
                ApiErr::new(
                    axum::http::StatusCode::METHOD_NOT_ALLOWED,
                    format!(
                        "{method} is not allowed on {}; see README.md (API)",
                        uri.path()
                    ),
                )
            },
        )
        .with_state(agent)
}

/// The agent's status: event source, counters, sampler, enforcement.
#[utoipa::path(get, path = "/api/status", tag = "status",
    responses((status = 200, description = "The agent's status (as `procman status --json`).", body = AgentStatus)))]
async fn status(State(agent): State<Arc<Agent>>) -> Json<AgentStatus> {
    Json(agent.status())
}

/// Who the caller is and what it may do: each action through the same check the guard makes.
#[utoipa::path(get, path = "/api/whoami", tag = "status",
    responses((status = 200, description = "The caller and the actions it may take.", body = procman_common::api::Caller)))]
async fn whoami(
    State(agent): State<Arc<Agent>>,
    axum::extract::Extension(scope): axum::extract::Extension<crate::access::Scope>,
) -> Json<procman_common::api::Caller> {
    let peer = scope.peer;
    let policy = agent.access.read().unwrap_or_else(|e| e.into_inner());
    let granted: Vec<(crate::access::Action, crate::access::Scope)> = crate::access::Action::ALL
        .into_iter()
        .filter_map(|a| policy.check(peer, a).ok().map(|s| (a, s)))
        .collect();
    Json(procman_common::api::Caller {
        who: match (peer.remote, peer.uid) {
            (Some(_), _) => "token holder (TCP)".into(),
            (None, 0) => "root".into(),
            (None, uid) => format!("uid {uid}"),
        },
        uid: peer.remote.is_none().then_some(peer.uid),
        via: if peer.remote.is_some() { "tcp" } else { "unix" }.into(),
        allowed: granted
            .iter()
            .map(|(a, _)| a.as_str().to_string())
            .collect(),
        only_own: granted.iter().any(|(_, s)| s.only_uid.is_some()),
    })
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

/// Serves the API until the future is dropped. Each connection's peer credentials are read
/// once, when it is accepted, for the access check ([`guard`]).
pub async fn serve(
    listener: UnixListener,
    tcp: Option<tokio::net::TcpListener>,
    agent: Arc<Agent>,
) -> Result<()> {
    let router = router(agent.clone());
    if let Some(tcp) = tcp {
        let web = router.clone().layer(cors::layer(agent.clone()));
        tokio::spawn(server::serve_tcp(tcp, agent.clone(), web));
    }
    server::serve(listener, agent, router).await
}

#[derive(serde::Deserialize, Default, utoipa::IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Only records from this time on, Unix seconds.
    since: f64,
    /// At most this many (the latest; default 100, at most 10000).
    limit: Option<usize>,
}

/// `GET /api/audit?since=UNIX&limit=N`: the latest audit records (action `audit`).
#[utoipa::path(get, path = "/api/audit", tag = "audit", params(AuditQuery),
    responses(
        (status = 200, description = "The latest audit records, oldest first.", body = Vec<procman_common::api::AuditRecord>),
        (status = 400, description = "A malformed query.", body = procman_common::api::ApiError),
    ))]
async fn audit_log(
    State(agent): State<Arc<Agent>>,
    extract::Query(q): extract::Query<AuditQuery>,
) -> Result<Json<Vec<crate::audit::Record>>, ApiErr> {
    let limit = q.limit.unwrap_or(100).min(10_000);
    processes::blocking(agent, move |a| {
        crate::audit::read(a.audit.path(), a.audit.keep(), q.since, limit)
            .map(Json)
            .map_err(|e| ApiErr::internal(format!("reading {}: {e}", a.audit.path().display())))
    })
    .await
}

/// Removes the socket file when the agent exits.
pub struct SocketGuard(pub PathBuf);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Every query string of the API through the same parser axum uses: arbitrary input never
/// panics, and unknown or malformed parameters are refused.
#[cfg(test)]
mod fuzz {
    use super::{events::EventFilter, processes, AuditQuery};
    use proptest::prelude::*;

    fn all(q: &str) {
        let _ = serde_urlencoded::from_str::<processes::ListQuery>(q);
        let _ = serde_urlencoded::from_str::<processes::HistoryQuery>(q);
        let _ = serde_urlencoded::from_str::<processes::TreeQuery>(q);
        let _ = serde_urlencoded::from_str::<EventFilter>(q);
        let _ = serde_urlencoded::from_str::<AuditQuery>(q);
    }

    #[test]
    fn known_and_unknown_parameters() {
        assert!(serde_urlencoded::from_str::<processes::ListQuery>("sort=mem&limit=5").is_ok());
        assert!(serde_urlencoded::from_str::<processes::ListQuery>("sort=colour").is_err());
        assert!(serde_urlencoded::from_str::<processes::ListQuery>("limit=-1").is_err());
        assert!(serde_urlencoded::from_str::<processes::ListQuery>("limt=5").is_err());
        let f = serde_urlencoded::from_str::<EventFilter>("pid=1,2&kind=exec").unwrap();
        assert_eq!(f.pid.0, vec![1, 2]);
        assert!(serde_urlencoded::from_str::<EventFilter>("kind=boom").is_err());
        assert!(serde_urlencoded::from_str::<AuditQuery>("since=1e400")
            .is_ok_and(|q| q.since.is_infinite()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn any_query_string_is_parsed_or_refused(q in "\\PC{0,120}") {
            all(&q);
        }

        #[test]
        fn structured_query_strings(
            k in "(sort|limit|user|filter|hours|root|pid|comm|kind|since|x)",
            v in "[-0-9a-z,.%+ ]{0,30}",
            k2 in "(sort|limit|filter|pid|kind)",
            v2 in "\\PC{0,20}",
        ) {
            all(&format!("{k}={v}&{k2}={}", v2.replace('&', "%26")));
        }
    }
}

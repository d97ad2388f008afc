//! The access check and the audit trail, in front of every route: the action a request needs
//! is decided from its route (and, for `POST /api/limit`, from what its body asks), checked
//! against the caller's peer credentials, and every mutation or denial leaves an audit line.
//! Handlers find the caller's [`Scope`] in the request extensions.
use super::error::{ApiErr, ErrorMessage};
use crate::{
    access::{Action, Peer, Scope},
    audit::{peer_actor, Record},
    core::Agent,
};
use axum::{
    body::Body,
    extract::{ConnectInfo, MatchedPath, Request, State},
    http::{Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use std::sync::Arc;

/// The message of a successful mutation, for its audit line (e.g. which signal ended a
/// process); handlers put it in the response's extensions.
#[derive(Debug, Clone)]
pub struct AuditDetail(pub String);

/// Largest request body accepted (a limit request is a few hundred bytes).
pub const MAX_BODY: usize = 64 * 1024;

/// The actions a request needs. `POST /api/limit` moves the processes it selects (`move`)
/// and sets limits when it has some (`limit`).
fn actions_of(
    method: &Method,
    route: &str,
    uri_query: &str,
    body: &serde_json::Value,
) -> Vec<Action> {
    match (method.as_str(), route) {
        ("GET", "/api/audit") => vec![Action::Audit],
        ("GET", _) | ("HEAD", _) => vec![Action::Read],
        // evaluates the posted rules once and acts on nothing
        ("POST", "/api/policies/test") => vec![Action::Read],
        ("POST", "/api/limit") => {
            let mut a = vec![Action::Move];
            if body["limits"].as_object().is_some_and(|m| !m.is_empty()) {
                a.push(Action::Limit);
            }
            a
        }
        ("POST", "/api/processes/{pid}/kill") | ("POST", "/api/slices/{name}/kill") => {
            vec![Action::Kill]
        }
        // a share of CPU or disk, as limits are
        ("POST", "/api/processes/{pid}/renice") | ("POST", "/api/processes/{pid}/ionice") => {
            vec![Action::Limit]
        }
        ("POST", "/api/slices/{name}/freeze")
        | ("POST", "/api/slices/{name}/thaw")
        | ("POST", "/api/processes/{pid}/thaw") => vec![Action::Freeze],
        ("DELETE", "/api/slices/{name}") if query_has(uri_query, "kill=true") => {
            vec![Action::Limit, Action::Kill]
        }
        (_, r) if r.starts_with("/api/services") => vec![Action::Service],
        // a process outside the slices is moved into one of its own first
        ("POST", "/api/processes/{pid}/freeze") => vec![Action::Freeze, Action::Move],
        _ => vec![Action::Limit],
    }
}

pub async fn guard(
    State(agent): State<Arc<Agent>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    req: Request,
    next: Next,
) -> Response {
    // counted by route pattern (bounded: the router's routes), method and status
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let method = req.method().clone();
    let resp = check_and_run(agent.clone(), peer, req, next).await;
    if let Some(route) = route {
        agent
            .api_requests
            .count(method.as_str(), &route, resp.status().as_u16());
    }
    resp
}

async fn check_and_run(agent: Arc<Agent>, peer: Peer, req: Request, next: Next) -> Response {
    if peer.remote.is_some() {
        if let Err(e) = check_token(&agent, &req) {
            let target = format!("{} {}", req.method(), req.uri().path());
            audit(&agent, peer, &[], target, serde_json::Value::Null, &e);
            return e.into_response();
        }
    }
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    let method = req.method().clone();
    let query = req.uri().query().unwrap_or("").to_string();
    // a refusal on the routes of one process names it, as the handlers' errors do
    let pid = pid_of(&route, req.uri().path());
    let with_pid = |e: ApiErr| match pid {
        Some(p) => e.with_pid(p),
        None => e,
    };
    if method == Method::GET || method == Method::HEAD {
        let actions = actions_of(&method, &route, &query, &serde_json::Value::Null);
        return match check(&agent, peer, &actions) {
            Ok(scope) => {
                let mut req = req;
                req.extensions_mut().insert(scope);
                next.run(req).await
            }
            Err(e) => {
                let target = format!("{method} {}", req.uri().path());
                audit(&agent, peer, &actions, target, serde_json::Value::Null, &e);
                with_pid(e).into_response()
            }
        };
    }
    // a mutation: read its (bounded) body once, for the check and the audit line
    let target = req.uri().path().to_string();
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            let e = ApiErr::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {MAX_BODY} bytes"),
            );
            let actions = actions_of(&method, &route, &query, &serde_json::Value::Null);
            audit(
                &agent,
                peer,
                &actions,
                format!("{method} {target}"),
                serde_json::Value::Null,
                &e,
            );
            return with_pid(e).into_response();
        }
    };
    let args: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let actions = actions_of(&method, &route, &query, &args);
    let scope = match check(&agent, peer, &actions) {
        Ok(s) => s,
        Err(e) => {
            audit(
                &agent,
                peer,
                &actions,
                format!("{method} {target}"),
                args,
                &e,
            );
            return with_pid(e).into_response();
        }
    };
    let mut req = Request::from_parts(parts, Body::from(bytes));
    req.extensions_mut().insert(scope);
    let resp = next.run(req).await;
    let status = resp.status();
    let detail = resp
        .extensions()
        .get::<ErrorMessage>()
        .map(|m| m.0.clone())
        .or_else(|| resp.extensions().get::<AuditDetail>().map(|m| m.0.clone()));
    agent.audit.record(Record {
        time: Default::default(),
        seq: 0,
        actor: peer_actor(peer),
        action: action_names(&actions),
        target: format!("{method} {target}"),
        args,
        result: if status.is_success() { "ok" } else { "error" }.into(),
        status: status.as_u16(),
        detail,
    });
    resp
}

/// A TCP request must carry the API token: `Authorization: Bearer TOKEN`.
fn check_token(agent: &Agent, req: &Request) -> Result<(), ApiErr> {
    let unauthorized = |m: &str| ApiErr::new(StatusCode::UNAUTHORIZED, m.to_string());
    let Some(expected) = &agent.api_token else {
        return Err(unauthorized("the TCP API has no token configured"));
    };
    let presented = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("send the API token: Authorization: Bearer TOKEN"))?;
    if !crate::access::token_matches(presented.trim().as_bytes(), expected.as_bytes()) {
        return Err(unauthorized("the API token is wrong"));
    }
    Ok(())
}

/// The pid of a route under `/api/processes/{pid}`, from the request's path.
fn pid_of(route: &str, path: &str) -> Option<u32> {
    if !route.starts_with("/api/processes/{pid}") {
        return None;
    }
    path.split('/').nth(3)?.parse().ok()
}

/// Whether a query string has exactly `pair` (e.g. `kill=true`) among its parameters.
fn query_has(query: &str, pair: &str) -> bool {
    query.split('&').any(|kv| kv == pair)
}

/// Every action must be allowed; the scope is the narrowest of them.
fn check(agent: &Agent, peer: Peer, actions: &[Action]) -> Result<Scope, ApiErr> {
    let mut scope: Option<Scope> = None;
    for &a in actions {
        let s = agent
            .access
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .check(peer, a)
            .map_err(|d| ApiErr::new(StatusCode::FORBIDDEN, d.0))?;
        scope = Some(match scope {
            Some(prev) => Scope {
                only_uid: prev.only_uid.or(s.only_uid),
                ..prev
            },
            None => s,
        });
    }
    Ok(scope.expect("every request needs at least one action"))
}

fn action_names(actions: &[Action]) -> String {
    if actions.is_empty() {
        return "auth".into(); // refused before its action was known: no or a wrong token
    }
    actions
        .iter()
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join("+")
}

/// The audit line of a request refused before its handler ran.
fn audit(
    agent: &Agent,
    peer: Peer,
    actions: &[Action],
    target: String,
    args: serde_json::Value,
    e: &ApiErr,
) {
    agent.audit.record(Record {
        time: Default::default(),
        seq: 0,
        actor: peer_actor(peer),
        action: action_names(actions),
        target,
        args,
        result: if e.status == StatusCode::FORBIDDEN || e.status == StatusCode::UNAUTHORIZED {
            "denied"
        } else {
            "error"
        }
        .into(),
        status: e.status.as_u16(),
        detail: Some(e.message.clone()),
    });
}

//! `GET /api/events?pid=1,2&comm=a,b&kind=exec,exit`: a never-ending NDJSON stream of
//! [`EventStreamItem`], filtered server side.
use super::{
    error::ApiErr,
    extract::{CommaList, Query},
};
use crate::core::Agent;
use axum::{body::Body, extract::State, http::header, response::Response};
use procman_common::api::{EventKind, EventStreamItem, ProcEvent};
use std::sync::Arc;
use tokio::sync::broadcast;

/// The query: empty lists match everything.
#[derive(serde::Deserialize, Default, Debug, Clone, utoipa::IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventFilter {
    /// Only these pids, comma-separated (`1,2`).
    #[param(value_type = Option<String>)]
    pub pid: CommaList<u32>,
    /// Only these comms, comma-separated.
    #[param(value_type = Option<String>)]
    pub comm: CommaList<String>,
    /// Only these kinds, comma-separated: `fork`, `exec`, `exit`.
    #[param(value_type = Option<String>)]
    pub kind: CommaList<EventKind>,
}

impl EventFilter {
    pub fn matches(&self, ev: &ProcEvent) -> bool {
        (self.pid.0.is_empty() || self.pid.0.contains(&ev.pid))
            && (self.kind.0.is_empty() || self.kind.0.contains(&ev.kind))
            && (self.comm.0.is_empty()
                || self
                    .comm
                    .0
                    .iter()
                    .any(|c| c.as_bytes() == ev.comm.as_bytes()))
    }
}

/// The live event stream: one JSON object a line, never ending.
#[utoipa::path(get, path = "/api/events", tag = "events", params(EventFilter),
    responses(
        (status = 200, description = "An endless NDJSON stream: each line an event, or a notice that this subscriber fell behind.", content_type = "application/x-ndjson", body = EventStreamItem),
        (status = 400, description = "A malformed query.", body = procman_common::api::ApiError),
    ))]
pub async fn events(
    State(agent): State<Arc<Agent>>,
    Query(filter): Query<EventFilter>,
) -> Result<Response, ApiErr> {
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
        .map_err(|e| ApiErr::internal(e.to_string()))
}

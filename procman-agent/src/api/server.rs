//! The accept loop: HTTP/1.1 connections on the Unix socket, each with its peer credentials,
//! bounded in number and in how long they may sit idle.
//!
//! axum's own `serve` has neither a connection cap nor a header/idle timeout, so this loop
//! drives hyper directly:
//! - at most [`MAX_CONNECTIONS`] connections from non-root callers at a time; past that a new
//!   one is closed at once and counted (root's are always accepted, so a flood of idle
//!   connections from a socket_group member cannot lock the operator out);
//! - a connection that does not send a complete request head within [`IDLE_TIMEOUT`] (a new
//!   one, or a keep-alive one between requests) is closed;
//! - accept errors (EMFILE) back off briefly instead of spinning.
//!
//! The optional TCP listener (`[api] listen`) is served the same way; its callers have no
//! peer credentials and are identified by the bearer token of each request.
use crate::{access::Peer, core::Agent};
use anyhow::Result;
use axum::{extract::ConnectInfo, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};
use tokio::{
    net::{TcpListener, UnixListener},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tower::ServiceExt;

/// Connections from non-root callers served at once.
pub const MAX_CONNECTIONS: usize = 512;
/// How long a connection may wait before sending a complete request head.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// The Unix socket: each connection's peer credentials identify the caller.
pub async fn serve(listener: UnixListener, agent: Arc<Agent>, router: Router) -> Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                backoff(e).await;
                continue;
            }
        };
        let peer = Peer::of(&stream);
        if let Some(permit) = admit(&agent, &slots, peer) {
            tokio::spawn(serve_connection(stream, peer, router.clone(), permit));
        }
    }
}

/// The optional TCP listener: callers are identified by the bearer token of each request
/// (checked by the API's guard), so every TCP connection counts against the cap.
pub async fn serve_tcp(listener: TcpListener, agent: Arc<Agent>, router: Router) -> Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                backoff(e).await;
                continue;
            }
        };
        let peer = Peer::tcp(addr);
        if let Some(permit) = admit(&agent, &slots, peer) {
            tokio::spawn(serve_connection(stream, peer, router.clone(), permit));
        }
    }
}

async fn backoff(e: std::io::Error) {
    log::warn!("API: accept failed: {e}; retrying");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// A connection slot; `Some(None)` for root over the Unix socket when the cap is reached (it
/// is admitted anyway); `None`: refused (counted, and the connection is closed).
fn admit(
    agent: &Agent,
    slots: &Arc<Semaphore>,
    peer: Peer,
) -> Option<Option<OwnedSemaphorePermit>> {
    match slots.clone().try_acquire_owned() {
        Ok(p) => Some(Some(p)),
        Err(_) if peer.is_root() => Some(None),
        Err(_) => {
            agent.refused_connections.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

async fn serve_connection<S>(
    stream: S,
    peer: Peer,
    router: Router,
    permit: Option<OwnedSemaphorePermit>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let _permit = permit;
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(req)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(IDLE_TIMEOUT)
        .serve_connection(TokioIo::new(stream), svc);
    if let Err(e) = conn.await {
        log::debug!("API connection from {peer:?}: {e}");
    }
}

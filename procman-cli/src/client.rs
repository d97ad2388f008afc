//! The API client the CLI (and the tests) use: HTTP/1.1 over the agent's Unix socket.
use anyhow::{Context, Result};
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::{body::Incoming, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use procman_common::api::ApiError;
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use tokio::net::UnixStream;

fn is_socket(p: &std::path::Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

fn kind_of(p: &std::path::Path) -> &'static str {
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => "a directory",
        Ok(m) if m.is_file() => "a regular file",
        Ok(_) => "not a socket",
        Err(_) => "unreadable",
    }
}

/// What to do about a socket one may not open: the group to join, when the agent has one.
fn join_hint(socket: &std::path::Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let group = std::fs::metadata(socket)
        .ok()
        .filter(|m| m.mode() & 0o060 == 0o060)
        .and_then(|m| nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(m.gid())).ok()?)
        .filter(|g| g.gid.as_raw() != 0);
    match group {
        Some(g) => format!(
            "join its group to read: `sudo usermod -aG {0} $USER`, then log in again (or `newgrp {0}`)",
            g.name
        ),
        None => "the agent's socket is for root only: run as root, or set agent.socket_group in \
                 its config and join that group"
            .to_string(),
    }
}

/// The agent refused a request: its message, and the status that decides procman's exit code.
#[derive(Debug)]
pub struct AgentError {
    pub status: StatusCode,
    pub message: String,
}

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AgentError {}

/// A failure with the exit code that says what kind it was (see [`exit_code`]): the agent
/// unreachable (5), a socket one may not open (4), a bad value checked before asking (2), a
/// name that matches nothing (3).
#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// procman's exit code for an error: 1 failure, 2 bad usage or value, 3 not found,
/// 4 permission denied, 5 agent not running or unreachable.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    if let Some(c) = e.downcast_ref::<CliError>() {
        return c.code;
    }
    match e.downcast_ref::<AgentError>().map(|a| a.status) {
        Some(StatusCode::NOT_FOUND) => 3,
        Some(StatusCode::FORBIDDEN) | Some(StatusCode::UNAUTHORIZED) => 4,
        Some(s) if s.is_client_error() => 2,
        _ => 1,
    }
}

/// Context of an answer that does not parse: most likely an agent of another version.
fn unexpected(path: &str) -> String {
    format!(
        "unexpected answer from procman-agent to {path}: is the agent the same version as this \
         procman ({})? compare with `procman status` and `procman-agent --version`",
        env!("CARGO_PKG_VERSION")
    )
}

pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client {
            socket: socket.into(),
        }
    }

    /// The connection broke mid-request (exit 5): the agent stopped, restarted or dropped us.
    fn broke(&self, e: hyper::Error) -> anyhow::Error {
        CliError {
            code: 5,
            message: format!(
                "the connection to procman-agent at {} broke ({e}): the agent may have stopped or \
                 restarted; check `systemctl status procman-agent` (or its log) and try again",
                self.socket.display()
            ),
        }
        .into()
    }

    /// Connects, explaining the usual failures in one sentence each.
    async fn connect(&self) -> Result<UnixStream> {
        let s = self.socket.display();
        UnixStream::connect(&self.socket).await.map_err(|e| {
            let (code, message) = match e.kind() {
                std::io::ErrorKind::NotFound => (5, format!(
                    "agent not running: {s} does not exist; start it with `systemctl start \
                     procman-agent` (or `sudo procman-agent --config FILE`), or pass --socket / set \
                     PROCMAN_SOCKET if it listens elsewhere"
                )),
                std::io::ErrorKind::ConnectionRefused if !is_socket(&self.socket) => (2, format!(
                    "cannot reach procman-agent: {s} is not a socket ({}); pass the agent's socket \
                     with --socket or PROCMAN_SOCKET (default {})",
                    kind_of(&self.socket),
                    procman_common::DEFAULT_SOCKET
                )),
                std::io::ErrorKind::ConnectionRefused => (5, format!(
                    "agent not running: nothing listens on {s} (a stale socket); start it with \
                     `systemctl start procman-agent` (or `sudo procman-agent --config FILE`)"
                )),
                std::io::ErrorKind::PermissionDenied => (4, format!(
                    "cannot reach procman-agent: permission denied on {s}; {}",
                    join_hint(&self.socket)
                )),
                _ => (5, format!(
                    "cannot reach procman-agent at {s}: {e}; check that it runs with \
                     `systemctl status procman-agent`"
                )),
            };
            anyhow::Error::new(CliError { code, message })
        })
    }

    async fn send(&self, path_and_query: &str) -> Result<Response<Incoming>> {
        self.request(hyper::Method::GET, path_and_query, None).await
    }

    async fn request(
        &self,
        method: hyper::Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response<Incoming>> {
        let stream = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.broke(e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(hyper::header::HOST, "procman")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(Bytes::from(
                body.unwrap_or_default(),
            )))?;
        let resp = sender.send_request(req).await.map_err(|e| self.broke(e))?;
        if resp.status() != StatusCode::OK {
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            let msg = serde_json::from_slice::<ApiError>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
            return Err(AgentError {
                status,
                message: msg,
            }
            .into());
        }
        Ok(resp)
    }

    /// POST (or DELETE) a JSON body, returning the JSON answer.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: hyper::Method,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T> {
        let resp = self
            .request(method, path, Some(serde_json::to_vec(body)?))
            .await?;
        let body = resp.into_body().collect().await?.to_bytes();
        serde_json::from_slice(&body).with_context(|| unexpected(path))
    }

    /// POST a raw body (e.g. TOML), returning the JSON answer.
    pub async fn post_text<T: DeserializeOwned>(&self, path: &str, body: String) -> Result<T> {
        let resp = self
            .request(hyper::Method::POST, path, Some(body.into_bytes()))
            .await?;
        let body = resp.into_body().collect().await?.to_bytes();
        serde_json::from_slice(&body).with_context(|| unexpected(path))
    }

    /// GET a JSON document.
    pub async fn get<T: DeserializeOwned>(&self, path_and_query: &str) -> Result<T> {
        let resp = self.send(path_and_query).await?;
        let body = resp.into_body().collect().await?.to_bytes();
        serde_json::from_slice(&body).with_context(|| unexpected(path_and_query))
    }

    /// GET an NDJSON stream; `on_line` gets each line until it returns false or the stream ends.
    pub async fn stream_lines(
        &self,
        path_and_query: &str,
        mut on_line: impl FnMut(&[u8]) -> bool,
    ) -> Result<()> {
        let mut body = self.send(path_and_query).await?.into_body();
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.context("the event stream from procman-agent broke")?;
            if let Some(data) = frame.data_ref() {
                buf.extend_from_slice(data);
                while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                    let line = buf.split_to(nl + 1);
                    if !on_line(&line[..nl]) {
                        return Ok(());
                    }
                }
            }
        }
        if buf.has_remaining() && !on_line(&buf) {
            return Ok(());
        }
        Ok(())
    }
}

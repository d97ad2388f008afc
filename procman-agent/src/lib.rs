//! procman-agent: the host agent and the `procman` CLI, one concern per module.
//!
//! Data flows one way: `events` (kernel -> ProcEvent stream) -> `core` (process table,
//! broadcast) -> `api` (HTTP/JSON on a Unix socket) -> `client` / `cli`.
pub mod cgroup;
pub mod events;

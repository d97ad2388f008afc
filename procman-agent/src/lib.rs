//! procman-agent: the host agent and the `procman` CLI, one concern per module.
//!
//! Data flows one way: `events` (kernel -> ProcEvent stream) -> `core` (process table,
//! fan-out, counters) -> `api` (HTTP/JSON on a Unix socket) -> `client` -> `cli`.
pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod core;
pub mod events;
pub mod monitor;
pub mod query;
pub mod tree;

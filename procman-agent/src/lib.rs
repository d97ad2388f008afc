//! procman-agent: the host agent and the `procman` CLI, one concern per module.
//!
//! Data flows one way: `events` (kernel -> ProcEvent stream) -> `core` (process table,
//! fan-out, counters) -> `api` (HTTP/JSON on a Unix socket) -> `client` -> `cli`.
//! `monitor` samples usage for the table's processes; `query` joins both for the read API;
//! `cgroup` is the cgroup v2 layer (slices, limits, moves) that enforcement builds on.
pub mod api;
pub mod cgroup;
pub mod cli;
pub mod client;
pub mod config;
pub mod core;
pub mod enforce;
pub mod events;
pub mod filter;
pub mod history;
pub mod monitor;
pub mod placement;
pub mod query;
pub mod spawn;
pub mod tree;

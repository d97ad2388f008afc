//! procman-agent: the privileged host daemon, one concern per module.
//!
//! Data flows one way (see docs/architecture.md): `events` (kernel -> `ProcEvent` stream) ->
//! `core` (the dispatcher: table, placement, fan-out, counters) -> `api` (HTTP/JSON on a
//! Unix socket). `monitor` samples usage for the table's processes; `query` joins both for
//! the read API; `enforce` owns every cgroup decision (limits, moves, freeze, placement) on
//! top of the `procman-cgroup` library; `actions` acts on single processes (kill, renice,
//! ionice) through pidfds.
pub mod access;
pub mod actions;
pub mod api;
pub mod audit;
pub mod config;
pub mod core;
pub mod enforce;
pub mod events;
pub mod history;
pub mod hold;
pub mod monitor;
pub mod placement;
pub mod policy;
pub mod query;
pub mod reload;
pub mod services;
pub mod systemd;
pub mod tree;

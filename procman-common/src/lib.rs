//! procman's shared vocabulary, used by the agent, the CLI and the tests alike.
//!
//! - [`abi`]: the `#[repr(C)]` mirror of `include/procman_event.h`, the ring-buffer record.
//! - [`action`]: the wire types of process actions (kill, renice, ionice, the action stream)
//!   and the parsers of their values (signals, nice levels, IO priorities).
//! - [`api`]: the JSON types of the agent's HTTP API (what `procman --json` prints).
//! - [`filter`]: the filter expression language (parser and AST; evaluation through a trait
//!   the caller implements for its rows).
//! - [`units`]: byte sizes, durations and percentages, parsed and printed in one place.
//! - [`spawn`]: clone3(2) with `CLONE_INTO_CGROUP` / `set_tid` (std's `Command` offers neither).
//! - [`service`]: the services API's types and exit-status wording.
//!
//! Nothing here does I/O on behalf of the agent or links the agent's dependencies (aya,
//! tokio, the cgroup library): the CLI depends on this crate and on the API only.
pub mod abi;
pub mod action;
pub mod api;
pub mod filter;
pub mod limits;
pub mod policy;
pub mod service;
pub mod spawn;
pub mod units;

/// Default path of the agent's Unix socket.
pub const DEFAULT_SOCKET: &str = "/run/procman/procman.sock";

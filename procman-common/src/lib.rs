//! Types shared by the procman agent, its CLI and the kernel side.
//!
//! - [`abi`]: the `#[repr(C)]` mirror of `include/procman_event.h`, the ring-buffer record.
//! - [`api`]: the JSON types of the agent's HTTP API (what `procman --json` prints).
pub mod abi;
pub mod api;

/// Default path of the agent's Unix socket.
pub const DEFAULT_SOCKET: &str = "/run/procman/procman.sock";

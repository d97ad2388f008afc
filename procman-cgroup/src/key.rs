//! The vocabulary everything else is written in: the controllers procman enforces with
//! ([`Controller`]) and the limit keys, systemd's names ([`LimitKey`]). They live in
//! [`procman_common::limits`] so that the CLI checks limit values with the same parser
//! before it asks the agent; this crate re-exports them.
pub use procman_common::limits::{hint, shorten, Controller, LimitKey, UnknownKey};

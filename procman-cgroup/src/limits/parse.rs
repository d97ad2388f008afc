//! The per-key parsers, range checks and human forms are [`procman_common::limits::parse`]
//! (one parser for the config, the API and the CLI); this module adapts their errors to
//! [`LimitError`] and adds what only rendering needs.
use procman_common::units::Percent;

pub use procman_common::limits::parse::accepted_forms;
pub(super) use procman_common::limits::parse::{
    check_cpu_quota, check_cpu_weight, check_io, check_memory, check_tasks, cpu_quota, cpu_weight,
    fmt_cpu_quota, fmt_io, fmt_memory, fmt_tasks, io, memory, tasks,
};

use super::CPU_PERIOD_US;
use crate::error::LimitError;
use crate::key::LimitKey;

/// `key = value` is refused because of `problem`.
pub(super) fn lerr(key: LimitKey, value: &str, problem: impl Into<String>) -> LimitError {
    procman_common::limits::parse::invalid(key, value, problem).into()
}

/// The quota written to `cpu.max` for a one-CPU percentage (`20%` -> 20000 of 100000 µs).
pub(super) fn quota_us(p: Percent, cpus: u32) -> u64 {
    p.of(CPU_PERIOD_US * u64::from(cpus.max(1)))
}

//! Resource limits in systemd's vocabulary, as text: the keys ([`LimitKey`], the controllers
//! that enforce them), their values ([`MemoryValue`], [`CpuQuota`], [`TasksMax`],
//! [`IoLimit`]) parsed and range-checked, the accepted forms of their errors, and the same
//! human forms printed back. Pure: no filesystem. This is the one parser of limit values:
//! `procman-cgroup` builds its `Limits` with it (config, API) and the CLI checks its flags
//! with it before it asks the agent.
//!
//! | key | cgroup file | accepted forms |
//! |---|---|---|
//! | `MemoryMax`, `MemoryHigh` | `memory.max`, `memory.high` | bytes `536870912`, `512M`, `2GiB`, `1.5G` (K/M/G/T are 1024-based, like systemd; KB/MB/GB/TB 1000-based), `50%` of physical memory, `max` (also `infinity`); at least 1M |
//! | `MemorySwapMax` | `memory.swap.max` | as above, `0` allowed |
//! | `CPUQuota` | `cpu.max` | `20%` of one CPU (`250%` = 2.5 CPUs), `50% of machine` (all online CPUs), `max`; period 100 ms |
//! | `CPUWeight` | `cpu.weight` | integer 1..=10000 (kernel default 100) |
//! | `IOReadBandwidthMax`, `IOWriteBandwidthMax` | `io.max` `rbps`/`wbps` | `"DEVICE RATE"`, DEVICE a block device path (`/dev/vda`) or `MAJ:MIN` (`254:0`), RATE bytes/s like `10M` or `max` |
//! | `IOReadIOPSMax`, `IOWriteIOPSMax` | `io.max` `riops`/`wiops` | `"DEVICE IOPS"`, IOPS an integer, `K`/`M`/`G` suffixes 1000-based (like systemd: a count, not bytes), or `max` |
//! | `TasksMax` | `pids.max` | integer 1..=4194304, `10%` of the kernel's pid limit, `max` |
//!
//! Sizes and percentages are read by [`crate::units`]; this module adds what they mean for
//! a limit: minimums, ranges, "a bare number is ambiguous for CPUQuota".
use std::fmt;
use std::path::PathBuf;

use crate::units::Percent;

mod key;
pub mod parse;

pub use key::{hint, shorten, Controller, LimitKey, UnknownKey};
pub use parse::accepted_forms;

/// Smallest MemoryMax/MemoryHigh: anything below is almost surely a unit mistake (`512`
/// meaning 512 bytes) and would OOM-kill the slice at once.
pub const MIN_MEMORY: u64 = 1 << 20;
/// Smallest IO bandwidth: one page per second; lower rates stall every IO.
pub const MIN_IO_BANDWIDTH: u64 = 4096;
/// The kernel's PIDS_MAX: pids.max accepts at most PID_MAX_LIMIT (4194304).
pub const MAX_TASKS: u64 = 4 * 1024 * 1024;
pub const MAX_CPU_WEIGHT: u32 = 10_000;
pub const DEFAULT_CPU_WEIGHT: u32 = 100;
/// cpu.max period in microseconds (the kernel default, 100 ms).
pub const CPU_PERIOD_US: u64 = 100_000;

/// A limit value that does not parse or is out of range: the key, the value (at most 128
/// characters of it), what is wrong and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} = {value:?}: {problem}; accepted forms: {accepted}")]
pub struct InvalidLimit {
    pub key: LimitKey,
    pub value: String,
    pub problem: String,
    pub accepted: &'static str,
}

/// A memory amount: `MemoryMax`, `MemoryHigh`, `MemorySwapMax`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemoryValue {
    Max,
    Bytes(u64),
    /// Of physical memory (MemTotal).
    Percent(Percent),
}

/// `CPUQuota`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CpuQuota {
    Max,
    /// Of one CPU, systemd's meaning: `200%` is two CPUs.
    OneCpu(Percent),
    /// Of all online CPUs.
    Machine(Percent),
}

/// `TasksMax`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TasksMax {
    Max,
    Count(u64),
    /// Of the kernel's pid limit (min of pid_max and threads-max).
    Percent(Percent),
}

/// A device number `MAJ:MIN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DevNum {
    pub major: u32,
    pub minor: u32,
}

impl fmt::Display for DevNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

impl DevNum {
    /// Parses `MAJ:MIN` (both decimal).
    pub fn parse(s: &str) -> Option<DevNum> {
        let (a, b) = s.split_once(':')?;
        let digits = |x: &str| !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit());
        if !digits(a) || !digits(b) {
            return None;
        }
        Some(DevNum {
            major: a.parse().ok()?,
            minor: b.parse().ok()?,
        })
    }
}

/// A per-device IO rate (bytes/s or IOs/s), or `max` (unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rate {
    Max,
    Value(u64),
}

impl Rate {
    /// `max` or a decimal number (the kernel's form in `io.max`).
    pub fn parse(s: &str) -> Option<Rate> {
        match s {
            "max" => Some(Rate::Max),
            _ => s.parse().ok().map(Rate::Value),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Max => f.write_str("max"),
            Rate::Value(v) => write!(f, "{v}"),
        }
    }
}

/// A block device, as the user named it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceSpec {
    Path(PathBuf),
    Number(DevNum),
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Path(p) => write!(f, "{}", p.display()),
            DeviceSpec::Number(n) => write!(f, "{n}"),
        }
    }
}

/// One `DEVICE RATE` entry of an IO key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IoLimit {
    pub device: DeviceSpec,
    pub rate: Rate,
}

/// One key's value, parsed and range-checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitValue {
    Memory(MemoryValue),
    CpuQuota(CpuQuota),
    CpuWeight(u32),
    Tasks(TasksMax),
    Io(IoLimit),
}

impl LimitValue {
    /// Parses and range-checks `key`'s value `s` (the config's, the API's and the CLI's one
    /// parser).
    pub fn parse(key: LimitKey, s: &str) -> Result<LimitValue, InvalidLimit> {
        use LimitKey::*;
        Ok(match key {
            MemoryMax | MemoryHigh | MemorySwapMax => LimitValue::Memory(parse::memory(key, s)?),
            CPUQuota => LimitValue::CpuQuota(parse::cpu_quota(s)?),
            CPUWeight => LimitValue::CpuWeight(parse::cpu_weight(s)?),
            TasksMax => LimitValue::Tasks(parse::tasks(s)?),
            IOReadBandwidthMax | IOWriteBandwidthMax | IOReadIOPSMax | IOWriteIOPSMax => {
                LimitValue::Io(parse::io(key, s)?)
            }
        })
    }

    /// The value in its human form, as [`LimitValue::parse`] accepts it back.
    pub fn to_text(&self, key: LimitKey) -> String {
        match self {
            LimitValue::Memory(v) => parse::fmt_memory(*v),
            LimitValue::CpuQuota(q) => parse::fmt_cpu_quota(*q),
            LimitValue::CpuWeight(w) => w.to_string(),
            LimitValue::Tasks(t) => parse::fmt_tasks(*t),
            LimitValue::Io(l) => parse::fmt_io(key, l),
        }
    }
}

/// A limit error that is not about one key's value: `KEY=VALUE` text with an unknown key or
/// without `=`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropertyError {
    #[error("{key} = {value:?}: unknown key{}; accepted keys: {}", hint(*.suggestion), LimitKey::ACCEPTED)]
    UnknownKey {
        key: String,
        value: String,
        suggestion: Option<LimitKey>,
    },
    #[error(transparent)]
    Invalid(#[from] InvalidLimit),
    #[error(
        "{property:?} is not KEY=VALUE (e.g. MemoryMax=512M); accepted keys: {}",
        LimitKey::ACCEPTED
    )]
    NotAProperty { property: String },
}

/// Parses `KEY=VALUE` (systemd-run `-p` style): the key and its checked value.
pub fn parse_property(prop: &str) -> Result<(LimitKey, LimitValue), PropertyError> {
    let (k, v) = prop
        .split_once('=')
        .ok_or_else(|| PropertyError::NotAProperty {
            property: shorten(prop, 128),
        })?;
    parse_pair(k.trim(), v)
}

/// Parses a key given as text and its value.
pub fn parse_pair(key: &str, value: &str) -> Result<(LimitKey, LimitValue), PropertyError> {
    let k = key
        .parse::<LimitKey>()
        .map_err(|e| PropertyError::UnknownKey {
            key: e.key,
            value: shorten(value, 128),
            suggestion: e.suggestion,
        })?;
    Ok((k, LimitValue::parse(k, value)?))
}

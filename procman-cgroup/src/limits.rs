//! Resource limits in systemd's vocabulary, parsed and range-checked before anything is
//! written, then rendered to cgroup2 interface-file writes.
//!
//! | key | cgroup file | accepted forms |
//! |---|---|---|
//! | `MemoryMax`, `MemoryHigh` | `memory.max`, `memory.high` | bytes `536870912`, `512M`, `2GiB`, `1.5G` (K/M/G/T are 1024-based, like systemd), `50%` of physical memory, `max` (also `infinity`); at least 1M |
//! | `MemorySwapMax` | `memory.swap.max` | as above, `0` allowed |
//! | `CPUQuota` | `cpu.max` | `20%` of one CPU (`250%` = 2.5 CPUs), `50% of machine` (all online CPUs), `max`; period 100 ms |
//! | `CPUWeight` | `cpu.weight` | integer 1..=10000 (kernel default 100) |
//! | `IOReadBandwidthMax`, `IOWriteBandwidthMax` | `io.max` `rbps`/`wbps` | `"DEVICE RATE"`, DEVICE a block device path (`/dev/vda`) or `MAJ:MIN` (`254:0`), RATE bytes/s like `10M` or `max`; a list for several devices |
//! | `IOReadIOPSMax`, `IOWriteIOPSMax` | `io.max` `riops`/`wiops` | `"DEVICE IOPS"`, IOPS an integer, `K`/`M` suffixes 1000-based (like systemd), or `max` |
//! | `TasksMax` | `pids.max` | integer 1..=4194304, `10%` of the kernel's pid limit, `max` |
//!
//! Limits are declarative: [`Limits::plan`] renders every file of the controllers it covers,
//! resetting keys that are absent to the kernel default (`max`, weight 100), so re-applying
//! the same config is idempotent and removing a key from the config lifts that one limit.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::fs::Controller;

pub const MEMORY_MAX: &str = "MemoryMax";
pub const MEMORY_HIGH: &str = "MemoryHigh";
pub const MEMORY_SWAP_MAX: &str = "MemorySwapMax";
pub const CPU_QUOTA: &str = "CPUQuota";
pub const CPU_WEIGHT: &str = "CPUWeight";
pub const IO_READ_BANDWIDTH_MAX: &str = "IOReadBandwidthMax";
pub const IO_WRITE_BANDWIDTH_MAX: &str = "IOWriteBandwidthMax";
pub const IO_READ_IOPS_MAX: &str = "IOReadIOPSMax";
pub const IO_WRITE_IOPS_MAX: &str = "IOWriteIOPSMax";
pub const TASKS_MAX: &str = "TasksMax";

/// Every accepted key, in the order they are printed.
pub const KEYS: [&str; 10] = [
    MEMORY_MAX,
    MEMORY_HIGH,
    MEMORY_SWAP_MAX,
    CPU_QUOTA,
    CPU_WEIGHT,
    IO_READ_BANDWIDTH_MAX,
    IO_WRITE_BANDWIDTH_MAX,
    IO_READ_IOPS_MAX,
    IO_WRITE_IOPS_MAX,
    TASKS_MAX,
];

const ACCEPT_MEMORY: &str = "bytes with an optional K, M, G or T suffix (1024-based; KiB, MiB, \
GiB, TiB also accepted), e.g. \"512M\", \"2GiB\", \"1.5G\", \"1073741824\", at least 1M; a \
percentage of physical memory, e.g. \"50%\"; or \"max\"";
const ACCEPT_SWAP: &str = "bytes with an optional K, M, G or T suffix (1024-based; KiB, MiB, \
GiB, TiB also accepted), e.g. \"0\", \"512M\", \"2GiB\"; a percentage of physical memory, e.g. \
\"50%\"; or \"max\"";
const ACCEPT_CPU_QUOTA: &str = "a percentage of one CPU, e.g. \"20%\" (\"250%\" = two and a half \
CPUs, at least 1%); a percentage of the whole machine, e.g. \"50% of machine\" (1% to 100%); or \
\"max\"";
const ACCEPT_CPU_WEIGHT: &str = "an integer from 1 to 10000 (default 100), e.g. 100 or \"500\"";
const ACCEPT_IO_BW: &str = "\"DEVICE RATE\" where DEVICE is a block device path like \
\"/dev/vda\" or \"MAJ:MIN\" like \"254:0\" and RATE is bytes per second with an optional K, M, \
G or T suffix (1024-based), at least 4K, or \"max\", e.g. \"/dev/vda 10M\"; a list of such \
strings for several devices";
const ACCEPT_IO_IOPS: &str = "\"DEVICE IOPS\" where DEVICE is a block device path like \
\"/dev/vda\" or \"MAJ:MIN\" like \"254:0\" and IOPS is an integer of at least 1 with an \
optional K or M suffix (1000-based) or \"max\", e.g. \"/dev/vda 500\"; a list of such strings \
for several devices";
const ACCEPT_TASKS: &str = "an integer from 1 to 4194304, e.g. 512; a percentage of the \
kernel's pid limit, e.g. \"10%\"; or \"max\"";
const ACCEPT_KEYS: &str = "MemoryMax, MemoryHigh, MemorySwapMax, CPUQuota, CPUWeight, \
IOReadBandwidthMax, IOWriteBandwidthMax, IOReadIOPSMax, IOWriteIOPSMax, TasksMax";

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
/// 100% in hundredths of a percent.
const HUNDRED_PERCENT: u32 = 10_000;
/// Upper bound of a one-CPU percentage (8192 CPUs).
const MAX_CPU_PERCENT_CENTI: u32 = 8192 * 100 * 100;

/// A limit value was malformed or out of range. Names the key, the value and the accepted
/// forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} = {value:?}: {problem}; accepted forms: {accepted}")]
pub struct LimitError {
    pub key: String,
    pub value: String,
    pub problem: String,
    pub accepted: &'static str,
}

fn lerr(key: &str, value: &str, problem: impl Into<String>, accepted: &'static str) -> LimitError {
    LimitError {
        key: key.to_string(),
        value: value.to_string(),
        problem: problem.into(),
        accepted,
    }
}

/// A percentage with two decimals, stored in hundredths of a percent (`12.5%` = 1250).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Percent(pub u32);

impl Percent {
    /// `total * self / 100%`, rounded down.
    pub fn of(self, total: u64) -> u64 {
        ((total as u128 * self.0 as u128) / 10_000) as u64
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (i, frac) = (self.0 / 100, self.0 % 100);
        match frac {
            0 => write!(f, "{i}%"),
            x if x % 10 == 0 => write!(f, "{i}.{}%", x / 10),
            x => write!(f, "{i}.{x:02}%"),
        }
    }
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

/// A per-device IO rate (bytes/s or IOs/s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rate {
    Max,
    Value(u64),
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

/// One `DEVICE RATE` entry of an IO key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IoLimit {
    pub device: DeviceSpec,
    pub rate: Rate,
}

/// The limits of one slice. `None`/empty = not limited (the kernel default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory_max: Option<MemoryValue>,
    pub memory_high: Option<MemoryValue>,
    pub memory_swap_max: Option<MemoryValue>,
    pub cpu_quota: Option<CpuQuota>,
    pub cpu_weight: Option<u32>,
    pub io_read_bandwidth_max: Vec<IoLimit>,
    pub io_write_bandwidth_max: Vec<IoLimit>,
    pub io_read_iops_max: Vec<IoLimit>,
    pub io_write_iops_max: Vec<IoLimit>,
    pub tasks_max: Option<TasksMax>,
}

// ---------------------------------------------------------------------------------------
// Parsing

/// Splits `12.5` into (125, 1). Only plain decimal digits with at most one '.'.
fn parse_decimal(s: &str) -> Option<(u128, u32)> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if int.is_empty() || int.len() > 30 || frac.len() > 9 {
        return None;
    }
    if !int.bytes().all(|c| c.is_ascii_digit()) || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if s.ends_with('.') {
        return None;
    }
    let mut v: u128 = 0;
    for c in int.bytes().chain(frac.bytes()) {
        v = v.checked_mul(10)?.checked_add((c - b'0') as u128)?;
    }
    Some((v, frac.len() as u32))
}

fn is_max(s: &str) -> bool {
    s == "max" || s == "infinity"
}

/// Parses `NN%` / `NN.NN%` into a Percent; `Err(problem)`.
fn parse_percent(s: &str) -> Result<Percent, String> {
    let num = s.strip_suffix('%').ok_or("not a percentage")?.trim_end();
    let (v, frac) = parse_decimal(num).ok_or_else(|| format!("{num:?} is not a number"))?;
    if frac > 2 {
        return Err("at most two decimals are allowed in a percentage".into());
    }
    let centi = v * 10u128.pow(2 - frac);
    u32::try_from(centi)
        .map(Percent)
        .map_err(|_| "the percentage is too large".into())
}

/// Parses a byte amount with an optional 1024-based suffix. `Err(problem)`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = (&s[..split], s[split..].trim_start());
    if num.is_empty() {
        return Err(if s.starts_with('-') {
            "negative amounts are not allowed".into()
        } else {
            "not a number".into()
        });
    }
    let shift = match unit {
        "" | "B" => 0,
        "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        "T" | "TiB" => 40,
        "KB" | "MB" | "GB" | "TB" | "kB" | "kb" | "mb" | "gb" | "tb" => {
            return Err(format!(
                "unit {unit:?} is ambiguous (1000 or 1024?); write {}",
                &unit[..1].to_uppercase()
            ))
        }
        "k" | "m" | "g" | "t" | "kiB" | "miB" | "giB" | "tiB" => {
            return Err(format!(
                "unit {unit:?} must be upper case: {}",
                unit.to_uppercase().replace("IB", "iB")
            ))
        }
        _ => return Err(format!("unknown unit {unit:?}")),
    };
    let (v, frac) = parse_decimal(num).ok_or_else(|| format!("{num:?} is not a number"))?;
    let bytes = v
        .checked_mul(1u128 << shift)
        .map(|b| b / 10u128.pow(frac))
        .ok_or("the amount is too large")?;
    match u64::try_from(bytes) {
        Ok(b) if b < u64::MAX => Ok(b),
        _ => Err("the amount is too large (over 16 EiB)".into()),
    }
}

/// Parses an IOPS count with an optional 1000-based K/M/G suffix.
fn parse_iops(s: &str) -> Result<u64, String> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = (&s[..split], &s[split..]);
    let mult: u128 = match unit {
        "" => 1,
        "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ if num.is_empty() && s.starts_with('-') => {
            return Err("negative amounts are not allowed".into())
        }
        _ => return Err(format!("unknown IOPS suffix {unit:?}")),
    };
    let (v, frac) = parse_decimal(num).ok_or_else(|| format!("{num:?} is not a number"))?;
    let n = v.checked_mul(mult).ok_or("too large")? / 10u128.pow(frac);
    match u64::try_from(n) {
        Ok(n) if n < u64::MAX => Ok(n),
        _ => Err("too large".into()),
    }
}

fn parse_memory(key: &str, s: &str) -> Result<MemoryValue, LimitError> {
    let swap = key == MEMORY_SWAP_MAX;
    let accepted = if swap { ACCEPT_SWAP } else { ACCEPT_MEMORY };
    let t = s.trim();
    let v = if is_max(t) {
        MemoryValue::Max
    } else if t.ends_with('%') {
        MemoryValue::Percent(parse_percent(t).map_err(|p| lerr(key, s, p, accepted))?)
    } else {
        MemoryValue::Bytes(parse_bytes(t).map_err(|p| lerr(key, s, p, accepted))?)
    };
    check_memory(key, s, v)?;
    Ok(v)
}

fn check_memory(key: &str, s: &str, v: MemoryValue) -> Result<(), LimitError> {
    let swap = key == MEMORY_SWAP_MAX;
    let accepted = if swap { ACCEPT_SWAP } else { ACCEPT_MEMORY };
    match v {
        MemoryValue::Max => Ok(()),
        MemoryValue::Bytes(b) if !swap && b < MIN_MEMORY => Err(lerr(
            key,
            s,
            format!(
                "{b} bytes is below the minimum of 1M (a value this small is usually a \
                 missing unit, and would OOM-kill the slice at once)"
            ),
            accepted,
        )),
        MemoryValue::Bytes(_) => Ok(()),
        MemoryValue::Percent(p) if p.0 == 0 || p.0 > HUNDRED_PERCENT => Err(lerr(
            key,
            s,
            format!("{p} is outside 0% (exclusive) to 100%"),
            accepted,
        )),
        MemoryValue::Percent(_) => Ok(()),
    }
}

fn parse_cpu_quota(s: &str) -> Result<CpuQuota, LimitError> {
    let key = CPU_QUOTA;
    let t = s.trim();
    let v = if is_max(t) {
        CpuQuota::Max
    } else if let Some(p) = t.strip_suffix("of machine") {
        CpuQuota::Machine(
            parse_percent(p.trim_end()).map_err(|p| lerr(key, s, p, ACCEPT_CPU_QUOTA))?,
        )
    } else if t.ends_with('%') {
        CpuQuota::OneCpu(parse_percent(t).map_err(|p| lerr(key, s, p, ACCEPT_CPU_QUOTA))?)
    } else if parse_decimal(t).is_some() {
        return Err(lerr(
            key,
            s,
            "a bare number is ambiguous; add % (of one CPU)",
            ACCEPT_CPU_QUOTA,
        ));
    } else {
        return Err(lerr(key, s, "not a percentage", ACCEPT_CPU_QUOTA));
    };
    check_cpu_quota(s, v)?;
    Ok(v)
}

fn check_cpu_quota(s: &str, v: CpuQuota) -> Result<(), LimitError> {
    match v {
        CpuQuota::Max => Ok(()),
        CpuQuota::OneCpu(p) if p.0 < 100 => Err(lerr(
            CPU_QUOTA,
            s,
            format!("{p} is below 1% (the kernel's smallest quota is 1 ms per 100 ms)"),
            ACCEPT_CPU_QUOTA,
        )),
        CpuQuota::OneCpu(p) if p.0 > MAX_CPU_PERCENT_CENTI => Err(lerr(
            CPU_QUOTA,
            s,
            format!("{p} is more than 8192 CPUs"),
            ACCEPT_CPU_QUOTA,
        )),
        CpuQuota::Machine(p) if p.0 < 100 || p.0 > HUNDRED_PERCENT => Err(lerr(
            CPU_QUOTA,
            s,
            format!("{p} of machine is outside 1% to 100%"),
            ACCEPT_CPU_QUOTA,
        )),
        _ => Ok(()),
    }
}

fn parse_cpu_weight(s: &str) -> Result<u32, LimitError> {
    let t = s.trim();
    let w: u64 = if t.starts_with('-') {
        return Err(lerr(CPU_WEIGHT, s, "negative", ACCEPT_CPU_WEIGHT));
    } else if !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit()) {
        t.parse().unwrap_or(u64::MAX)
    } else {
        return Err(lerr(CPU_WEIGHT, s, "not an integer", ACCEPT_CPU_WEIGHT));
    };
    let w = u32::try_from(w).unwrap_or(u32::MAX);
    check_cpu_weight(s, w)?;
    Ok(w)
}

fn check_cpu_weight(s: &str, w: u32) -> Result<(), LimitError> {
    if !(1..=MAX_CPU_WEIGHT).contains(&w) {
        return Err(lerr(CPU_WEIGHT, s, "outside 1 to 10000", ACCEPT_CPU_WEIGHT));
    }
    Ok(())
}

fn parse_tasks(s: &str) -> Result<TasksMax, LimitError> {
    let t = s.trim();
    let v = if is_max(t) {
        TasksMax::Max
    } else if t.ends_with('%') {
        TasksMax::Percent(parse_percent(t).map_err(|p| lerr(TASKS_MAX, s, p, ACCEPT_TASKS))?)
    } else if t.starts_with('-') {
        return Err(lerr(TASKS_MAX, s, "negative", ACCEPT_TASKS));
    } else if !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit()) {
        TasksMax::Count(t.parse().unwrap_or(u64::MAX))
    } else {
        return Err(lerr(TASKS_MAX, s, "not an integer", ACCEPT_TASKS));
    };
    check_tasks(s, v)?;
    Ok(v)
}

fn check_tasks(s: &str, v: TasksMax) -> Result<(), LimitError> {
    match v {
        TasksMax::Count(n) if n == 0 || n > MAX_TASKS => {
            Err(lerr(TASKS_MAX, s, "outside 1 to 4194304", ACCEPT_TASKS))
        }
        TasksMax::Percent(p) if p.0 == 0 || p.0 > HUNDRED_PERCENT => Err(lerr(
            TASKS_MAX,
            s,
            format!("{p} is outside 0% (exclusive) to 100%"),
            ACCEPT_TASKS,
        )),
        _ => Ok(()),
    }
}

fn io_accepted(key: &str) -> &'static str {
    if key == IO_READ_BANDWIDTH_MAX || key == IO_WRITE_BANDWIDTH_MAX {
        ACCEPT_IO_BW
    } else {
        ACCEPT_IO_IOPS
    }
}

fn parse_io(key: &str, s: &str) -> Result<IoLimit, LimitError> {
    let accepted = io_accepted(key);
    let bw = accepted == ACCEPT_IO_BW;
    let mut it = s.split_whitespace();
    let (dev, rate) = match (it.next(), it.next(), it.next()) {
        (Some(d), Some(r), None) => (d, r),
        _ => {
            return Err(lerr(
                key,
                s,
                "expected a device and a rate separated by a space",
                accepted,
            ))
        }
    };
    let device = if dev.starts_with('/') {
        let p = Path::new(dev);
        if p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(lerr(
                key,
                s,
                "the device path must not contain ..",
                accepted,
            ));
        }
        DeviceSpec::Path(p.to_path_buf())
    } else if let Some(n) = DevNum::parse(dev) {
        DeviceSpec::Number(n)
    } else {
        return Err(lerr(
            key,
            s,
            format!("{dev:?} is neither a device path (/dev/...) nor MAJ:MIN"),
            accepted,
        ));
    };
    let rate = if is_max(rate) {
        Rate::Max
    } else {
        let v = if bw {
            parse_bytes(rate)
        } else {
            parse_iops(rate)
        }
        .map_err(|p| lerr(key, s, p, accepted))?;
        Rate::Value(v)
    };
    let l = IoLimit { device, rate };
    check_io(key, s, &l)?;
    Ok(l)
}

fn check_io(key: &str, s: &str, l: &IoLimit) -> Result<(), LimitError> {
    let accepted = io_accepted(key);
    let min = if accepted == ACCEPT_IO_BW {
        MIN_IO_BANDWIDTH
    } else {
        1
    };
    match l.rate {
        Rate::Value(v) if v < min => Err(lerr(
            key,
            s,
            format!("{v} is below the minimum of {min} (use max for no limit)"),
            accepted,
        )),
        _ => Ok(()),
    }
}

impl Limits {
    /// Sets one key from its text value, systemd-run `-p KEY=VALUE` style. IO keys append (one
    /// entry per device). Nothing is changed when the value is invalid.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), LimitError> {
        match key {
            MEMORY_MAX => self.memory_max = Some(parse_memory(key, value)?),
            MEMORY_HIGH => self.memory_high = Some(parse_memory(key, value)?),
            MEMORY_SWAP_MAX => self.memory_swap_max = Some(parse_memory(key, value)?),
            CPU_QUOTA => self.cpu_quota = Some(parse_cpu_quota(value)?),
            CPU_WEIGHT => self.cpu_weight = Some(parse_cpu_weight(value)?),
            IO_READ_BANDWIDTH_MAX => self.io_read_bandwidth_max.push(parse_io(key, value)?),
            IO_WRITE_BANDWIDTH_MAX => self.io_write_bandwidth_max.push(parse_io(key, value)?),
            IO_READ_IOPS_MAX => self.io_read_iops_max.push(parse_io(key, value)?),
            IO_WRITE_IOPS_MAX => self.io_write_iops_max.push(parse_io(key, value)?),
            TASKS_MAX => self.tasks_max = Some(parse_tasks(value)?),
            _ => {
                let hint = KEYS
                    .iter()
                    .find(|k| k.eq_ignore_ascii_case(key))
                    .map(|k| format!("unknown key (did you mean {k}?)"))
                    .unwrap_or_else(|| "unknown key".to_string());
                return Err(LimitError {
                    key: key.to_string(),
                    value: value.to_string(),
                    problem: hint,
                    accepted: ACCEPT_KEYS,
                });
            }
        }
        Ok(())
    }

    /// Parses `KEY=VALUE` (systemd-run `-p` style).
    pub fn set_property(&mut self, prop: &str) -> Result<(), LimitError> {
        match prop.split_once('=') {
            Some((k, v)) => self.set(k.trim(), v),
            None => Err(LimitError {
                key: prop.to_string(),
                value: String::new(),
                problem: "expected KEY=VALUE, e.g. MemoryMax=512M".into(),
                accepted: ACCEPT_KEYS,
            }),
        }
    }

    /// Builds limits from `KEY=VALUE` properties.
    pub fn from_properties<'a>(
        props: impl IntoIterator<Item = &'a str>,
    ) -> Result<Limits, LimitError> {
        let mut l = Limits::default();
        for p in props {
            l.set_property(p)?;
        }
        Ok(l)
    }

    /// True when no key is set.
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// Re-checks every range (the fields are public, so a value built in code, not parsed,
    /// is checked here too). [`Limits::plan`] calls this first.
    pub fn validate(&self) -> Result<(), LimitError> {
        for (key, v) in [
            (MEMORY_MAX, self.memory_max),
            (MEMORY_HIGH, self.memory_high),
            (MEMORY_SWAP_MAX, self.memory_swap_max),
        ] {
            if let Some(v) = v {
                check_memory(key, &fmt_memory(v), v)?;
            }
        }
        if let Some(q) = self.cpu_quota {
            check_cpu_quota(&fmt_cpu_quota(q), q)?;
        }
        if let Some(w) = self.cpu_weight {
            check_cpu_weight(&w.to_string(), w)?;
        }
        if let Some(t) = self.tasks_max {
            check_tasks(&fmt_tasks(t), t)?;
        }
        for (key, list) in self.io_lists() {
            for l in list {
                check_io(key, &fmt_io(key, l), l)?;
            }
        }
        Ok(())
    }

    fn io_lists(&self) -> [(&'static str, &Vec<IoLimit>); 4] {
        [
            (IO_READ_BANDWIDTH_MAX, &self.io_read_bandwidth_max),
            (IO_WRITE_BANDWIDTH_MAX, &self.io_write_bandwidth_max),
            (IO_READ_IOPS_MAX, &self.io_read_iops_max),
            (IO_WRITE_IOPS_MAX, &self.io_write_iops_max),
        ]
    }

    /// The keys that are set, with their values as text, in print order.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mem = [
            (MEMORY_MAX, self.memory_max),
            (MEMORY_HIGH, self.memory_high),
            (MEMORY_SWAP_MAX, self.memory_swap_max),
        ];
        for (k, v) in mem {
            if let Some(v) = v {
                out.push((k, fmt_memory(v)));
            }
        }
        if let Some(q) = self.cpu_quota {
            out.push((CPU_QUOTA, fmt_cpu_quota(q)));
        }
        if let Some(w) = self.cpu_weight {
            out.push((CPU_WEIGHT, w.to_string()));
        }
        for (k, list) in self.io_lists() {
            for l in list {
                out.push((k, fmt_io(k, l)));
            }
        }
        if let Some(t) = self.tasks_max {
            out.push((TASKS_MAX, fmt_tasks(t)));
        }
        out
    }

    /// Controllers the set keys need.
    pub fn controllers(&self) -> BTreeSet<Controller> {
        self.entries()
            .into_iter()
            .map(|(k, _)| controller_of(k))
            .collect()
    }
}

/// The controller that enforces `key`.
pub fn controller_of(key: &str) -> Controller {
    match key {
        MEMORY_MAX | MEMORY_HIGH | MEMORY_SWAP_MAX => Controller::Memory,
        CPU_QUOTA | CPU_WEIGHT => Controller::Cpu,
        TASKS_MAX => Controller::Pids,
        _ => Controller::Io,
    }
}

// ---------------------------------------------------------------------------------------
// Printing (the same human forms the parser accepts)

/// Prints bytes in the largest exact 1024-based unit: 536870912 -> `512M`.
pub fn fmt_bytes(b: u64) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if b != 0 && b.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", b >> shift);
        }
    }
    b.to_string()
}

fn fmt_memory(v: MemoryValue) -> String {
    match v {
        MemoryValue::Max => "max".into(),
        MemoryValue::Bytes(b) => fmt_bytes(b),
        MemoryValue::Percent(p) => p.to_string(),
    }
}

fn fmt_cpu_quota(q: CpuQuota) -> String {
    match q {
        CpuQuota::Max => "max".into(),
        CpuQuota::OneCpu(p) => p.to_string(),
        CpuQuota::Machine(p) => format!("{p} of machine"),
    }
}

fn fmt_tasks(t: TasksMax) -> String {
    match t {
        TasksMax::Max => "max".into(),
        TasksMax::Count(n) => n.to_string(),
        TasksMax::Percent(p) => p.to_string(),
    }
}

fn fmt_io(key: &str, l: &IoLimit) -> String {
    let rate = match l.rate {
        Rate::Max => "max".to_string(),
        Rate::Value(v) if io_accepted(key) == ACCEPT_IO_BW => fmt_bytes(v),
        Rate::Value(v) => v.to_string(),
    };
    format!("{} {rate}", l.device)
}

impl fmt::Display for Limits {
    /// `MemoryMax=512M CPUQuota=20%` (systemd property style; `(none)` when empty).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.entries();
        if e.is_empty() {
            return f.write_str("(none)");
        }
        for (i, (k, v)) in e.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            if v.contains(' ') {
                write!(f, "{k}=\"{v}\"")?;
            } else {
                write!(f, "{k}={v}")?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// serde: a table with systemd's key names; values are strings or numbers, IO keys a string
// or a list of strings. Serializes back to the same human forms.

struct Values(Vec<String>, bool /* was a list */);

impl<'de> Deserialize<'de> for Values {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Values;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a string such as \"512M\", \"50%\" or \"max\", a number, or a list of \
                     strings (IO keys)",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Values, E> {
                Ok(Values(vec![v.to_string()], false))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Values, E> {
                Ok(Values(vec![v.to_string()], false))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Values, E> {
                Ok(Values(vec![v.to_string()], false))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Values, E> {
                Ok(Values(vec![v.to_string()], false))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Values, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(Values(out, true))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Limits {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Limits;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a table of limits with keys {ACCEPT_KEYS}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Limits, A::Error> {
                let mut l = Limits::default();
                let mut seen = BTreeSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    let Values(vals, list) = map.next_value()?;
                    if !seen.insert(key.clone()) {
                        return Err(de::Error::custom(format!("{key} is given twice")));
                    }
                    let multi = key.starts_with("IO") && KEYS.contains(&key.as_str());
                    if list && !multi {
                        return Err(de::Error::custom(LimitError {
                            problem: "expects one value, not a list".into(),
                            value: format!("{vals:?}"),
                            accepted: accepted_for(&key),
                            key,
                        }));
                    }
                    for v in &vals {
                        l.set(&key, v).map_err(de::Error::custom)?;
                    }
                }
                Ok(l)
            }
        }
        d.deserialize_map(V)
    }
}

fn accepted_for(key: &str) -> &'static str {
    match key {
        MEMORY_MAX | MEMORY_HIGH => ACCEPT_MEMORY,
        MEMORY_SWAP_MAX => ACCEPT_SWAP,
        CPU_QUOTA => ACCEPT_CPU_QUOTA,
        CPU_WEIGHT => ACCEPT_CPU_WEIGHT,
        TASKS_MAX => ACCEPT_TASKS,
        IO_READ_BANDWIDTH_MAX | IO_WRITE_BANDWIDTH_MAX => ACCEPT_IO_BW,
        IO_READ_IOPS_MAX | IO_WRITE_IOPS_MAX => ACCEPT_IO_IOPS,
        _ => ACCEPT_KEYS,
    }
}

impl Serialize for Limits {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut grouped: BTreeMap<usize, (&str, Vec<String>)> = BTreeMap::new();
        for (k, v) in self.entries() {
            let idx = KEYS.iter().position(|x| *x == k).unwrap_or(KEYS.len());
            grouped.entry(idx).or_insert((k, Vec::new())).1.push(v);
        }
        let mut m = s.serialize_map(Some(grouped.len()))?;
        for (_, (k, vals)) in grouped {
            if k.starts_with("IO") {
                m.serialize_entry(k, &vals)?;
            } else {
                m.serialize_entry(k, &vals[0])?;
            }
        }
        m.end()
    }
}

// ---------------------------------------------------------------------------------------
// Rendering to cgroup file writes

/// Facts about the machine that percentages resolve against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    /// MemTotal in bytes.
    pub mem_total: u64,
    /// Online CPUs.
    pub cpus: u32,
    /// The system-wide task limit: min(kernel.pid_max, kernel.threads-max).
    pub pid_max: u64,
}

impl Machine {
    /// Reads /proc/meminfo, sysconf(_SC_NPROCESSORS_ONLN), /proc/sys/kernel/{pid_max,threads-max}.
    pub fn detect() -> Result<Machine, super::CgroupError> {
        use super::CgroupError;
        let meminfo = Path::new("/proc/meminfo");
        let text = super::fs::read_string(meminfo)?;
        let mem_total = text
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .ok_or_else(|| CgroupError::Malformed {
                path: meminfo.into(),
                detail: "no `MemTotal: N kB` line".into(),
            })?;
        // SAFETY: sysconf has no memory-safety preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        let cpus = u32::try_from(n).ok().filter(|n| *n > 0).unwrap_or(1);
        let read_num = |p: &str| -> Result<u64, CgroupError> {
            let s = super::fs::read_string(Path::new(p))?;
            s.trim().parse().map_err(|_| CgroupError::Malformed {
                path: p.into(),
                detail: format!("{:?} is not a number", s.trim()),
            })
        };
        let pid_max =
            read_num("/proc/sys/kernel/pid_max")?.min(read_num("/proc/sys/kernel/threads-max")?);
        Ok(Machine {
            mem_total,
            cpus,
            pid_max,
        })
    }
}

/// Turns a [`DeviceSpec`] into a whole-disk device number. `Err` is the problem, in words.
pub trait ResolveDevice {
    fn resolve(&self, dev: &DeviceSpec) -> Result<DevNum, String>;
}

/// The real resolver: stat(2) for paths, /sys/dev/block for numbers; refuses partitions
/// (the kernel applies io.max to whole disks only).
#[derive(Debug, Clone)]
pub struct SysBlockDevices {
    /// Usually `/sys`.
    pub sys: PathBuf,
}

impl Default for SysBlockDevices {
    fn default() -> Self {
        SysBlockDevices { sys: "/sys".into() }
    }
}

impl ResolveDevice for SysBlockDevices {
    fn resolve(&self, dev: &DeviceSpec) -> Result<DevNum, String> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let n = match dev {
            DeviceSpec::Number(n) => *n,
            DeviceSpec::Path(p) => {
                let md = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
                if !md.file_type().is_block_device() {
                    return Err(format!("{} is not a block device", p.display()));
                }
                let rdev = md.rdev();
                DevNum {
                    major: libc::major(rdev),
                    minor: libc::minor(rdev),
                }
            }
        };
        let sysdir = self.sys.join(format!("dev/block/{n}"));
        if !sysdir.exists() {
            return Err(format!(
                "no block device {n} ({} is missing)",
                sysdir.display()
            ));
        }
        if sysdir.join("partition").exists() {
            return Err(format!(
                "{dev} ({n}) is a partition; io.max applies to whole disks: name the disk"
            ));
        }
        Ok(n)
    }
}

/// One cgroup interface-file write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileWrite {
    pub controller: Controller,
    /// The interface file, relative to the slice directory.
    pub file: &'static str,
    pub value: String,
    /// The key(s) and user value this write comes from; `None` for a reset of an absent key
    /// to the kernel default.
    pub from: Option<(&'static str, String)>,
}

/// The four rates of one device (rbps, wbps, riops, wiops) and the entries they came from.
type IoLine = ([Rate; 4], Vec<(&'static str, String)>);

/// Renders `io.max` lines: one per device, all four keys on it (absent ones `max`).
fn io_lines(
    l: &Limits,
    devices: &dyn ResolveDevice,
) -> Result<BTreeMap<DevNum, IoLine>, LimitError> {
    let mut out: BTreeMap<DevNum, IoLine> = BTreeMap::new();
    for (slot, (key, list)) in l.io_lists().into_iter().enumerate() {
        for e in list {
            let text = fmt_io(key, e);
            let n = devices
                .resolve(&e.device)
                .map_err(|p| lerr(key, &text, p, io_accepted(key)))?;
            let entry = out.entry(n).or_insert(([Rate::Max; 4], Vec::new()));
            if entry.1.iter().any(|(k, _)| *k == key) {
                return Err(lerr(
                    key,
                    &text,
                    format!("device {n} is limited twice by {key}"),
                    io_accepted(key),
                ));
            }
            entry.0[slot] = e.rate;
            entry.1.push((key, text));
        }
    }
    Ok(out)
}

fn rate_str(r: Rate) -> String {
    match r {
        Rate::Max => "max".into(),
        Rate::Value(v) => v.to_string(),
    }
}

/// `MAJ:MIN rbps=.. wbps=.. riops=.. wiops=..`
pub fn io_max_line(n: DevNum, r: [Rate; 4]) -> String {
    format!(
        "{n} rbps={} wbps={} riops={} wiops={}",
        rate_str(r[0]),
        rate_str(r[1]),
        rate_str(r[2]),
        rate_str(r[3])
    )
}

/// Devices that have an `io.max` entry in `current` (the file's text).
pub fn io_max_devices(current: &str) -> BTreeSet<DevNum> {
    current
        .lines()
        .filter_map(|l| l.split_whitespace().next().and_then(DevNum::parse))
        .collect()
}

impl Limits {
    /// Validates, resolves percentages and devices, and renders the full set of writes for
    /// the four controllers (absent keys reset to the kernel default). Pure apart from the
    /// device resolver; writes nothing. IO resets for devices no longer limited are added by
    /// the caller, which knows the current `io.max` ([`io_max_devices`]).
    pub fn plan(
        &self,
        machine: &Machine,
        devices: &dyn ResolveDevice,
    ) -> Result<Vec<FileWrite>, LimitError> {
        self.validate()?;
        let mut w = Vec::new();
        let mem = |key: &'static str, v: Option<MemoryValue>| -> Result<String, LimitError> {
            Ok(match v {
                None | Some(MemoryValue::Max) => "max".into(),
                Some(MemoryValue::Bytes(b)) => b.to_string(),
                Some(MemoryValue::Percent(p)) => {
                    let b = p.of(machine.mem_total);
                    if key != MEMORY_SWAP_MAX && b < MIN_MEMORY {
                        return Err(lerr(
                            key,
                            &p.to_string(),
                            format!(
                                "{p} of {} is {b} bytes, below 1M",
                                fmt_bytes(machine.mem_total)
                            ),
                            ACCEPT_MEMORY,
                        ));
                    }
                    b.to_string()
                }
            })
        };
        for (key, file, v) in [
            (MEMORY_MAX, "memory.max", self.memory_max),
            (MEMORY_HIGH, "memory.high", self.memory_high),
            (MEMORY_SWAP_MAX, "memory.swap.max", self.memory_swap_max),
        ] {
            w.push(FileWrite {
                controller: Controller::Memory,
                file,
                value: mem(key, v)?,
                from: v.map(|v| (key, fmt_memory(v))),
            });
        }
        let quota = match self.cpu_quota {
            None | Some(CpuQuota::Max) => "max".to_string(),
            Some(CpuQuota::OneCpu(p)) => p.of(CPU_PERIOD_US).to_string(),
            Some(CpuQuota::Machine(p)) => {
                p.of(CPU_PERIOD_US * machine.cpus.max(1) as u64).to_string()
            }
        };
        w.push(FileWrite {
            controller: Controller::Cpu,
            file: "cpu.max",
            value: format!("{quota} {CPU_PERIOD_US}"),
            from: self.cpu_quota.map(|q| (CPU_QUOTA, fmt_cpu_quota(q))),
        });
        w.push(FileWrite {
            controller: Controller::Cpu,
            file: "cpu.weight",
            value: self.cpu_weight.unwrap_or(DEFAULT_CPU_WEIGHT).to_string(),
            from: self.cpu_weight.map(|v| (CPU_WEIGHT, v.to_string())),
        });
        let tasks = match self.tasks_max {
            None | Some(TasksMax::Max) => "max".to_string(),
            Some(TasksMax::Count(n)) => n.to_string(),
            Some(TasksMax::Percent(p)) => p.of(machine.pid_max).clamp(1, MAX_TASKS).to_string(),
        };
        w.push(FileWrite {
            controller: Controller::Pids,
            file: "pids.max",
            value: tasks,
            from: self.tasks_max.map(|t| (TASKS_MAX, fmt_tasks(t))),
        });
        for (n, (rates, from)) in io_lines(self, devices)? {
            let key = from[0].0;
            let text = from
                .iter()
                .map(|(_, t)| t.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            w.push(FileWrite {
                controller: Controller::Io,
                file: "io.max",
                value: io_max_line(n, rates),
                from: Some((key, text)),
            });
        }
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Machine = Machine {
        mem_total: 4 << 30,
        cpus: 2,
        pid_max: 32768,
    };

    struct FakeDevs;
    impl ResolveDevice for FakeDevs {
        fn resolve(&self, dev: &DeviceSpec) -> Result<DevNum, String> {
            match dev {
                DeviceSpec::Path(p) if p == Path::new("/dev/vda") => Ok(DevNum {
                    major: 254,
                    minor: 0,
                }),
                DeviceSpec::Path(p) if p == Path::new("/dev/vda1") => {
                    Err("/dev/vda1 (254:1) is a partition; io.max applies to whole disks".into())
                }
                DeviceSpec::Number(n) if n.major == 8 => Ok(*n),
                DeviceSpec::Number(n) if n.major == 254 && n.minor == 0 => Ok(*n),
                other => Err(format!("no block device {other}")),
            }
        }
    }

    fn one(key: &str, v: &str) -> Result<Limits, LimitError> {
        let mut l = Limits::default();
        l.set(key, v)?;
        Ok(l)
    }

    fn write_of(l: &Limits, file: &str) -> Vec<String> {
        l.plan(&M, &FakeDevs)
            .unwrap()
            .into_iter()
            .filter(|w| w.file == file)
            .map(|w| w.value)
            .collect()
    }

    fn assert_err(key: &str, v: &str, needle: &str) {
        let e = one(key, v).expect_err(&format!("{key}={v} should be refused"));
        let msg = e.to_string();
        assert!(msg.contains(&format!("{v:?}")), "value missing in: {msg}");
        assert!(msg.contains(key), "key missing in: {msg}");
        assert!(
            msg.contains("accepted forms:"),
            "accepted forms missing in: {msg}"
        );
        assert!(msg.contains(needle), "{needle:?} missing in: {msg}");
    }

    #[test]
    fn bytes_units() {
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes("1073741824"), Ok(1 << 30));
        assert_eq!(parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert_eq!(parse_bytes("1.5G"), Ok(3 << 29));
        assert_eq!(parse_bytes("4K"), Ok(4096));
        assert_eq!(parse_bytes("1T"), Ok(1 << 40));
        assert_eq!(parse_bytes("100B"), Ok(100));
        assert_eq!(parse_bytes("10 M"), Ok(10 << 20));
        assert!(parse_bytes("2GB").unwrap_err().contains("ambiguous"));
        assert!(parse_bytes("2g").unwrap_err().contains("upper case"));
        assert!(parse_bytes("2X").unwrap_err().contains("unknown unit"));
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("-5M").unwrap_err().contains("negative"));
        assert!(parse_bytes("1.2.3M").is_err());
        assert!(parse_bytes("5.M").is_err());
        assert!(parse_bytes("99999999999T")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_bytes("18446744073709551615").is_err());
        assert_eq!(fmt_bytes(512 << 20), "512M");
        assert_eq!(fmt_bytes(3 << 29), "1536M");
        assert_eq!(fmt_bytes(1000), "1000");
        assert_eq!(fmt_bytes(0), "0");
    }

    #[test]
    fn memory_max_and_high() {
        for key in [MEMORY_MAX, MEMORY_HIGH] {
            let file = if key == MEMORY_MAX {
                "memory.max"
            } else {
                "memory.high"
            };
            assert_eq!(write_of(&one(key, "512M").unwrap(), file), ["536870912"]);
            assert_eq!(write_of(&one(key, "2GiB").unwrap(), file), ["2147483648"]);
            assert_eq!(write_of(&one(key, "max").unwrap(), file), ["max"]);
            assert_eq!(write_of(&one(key, "infinity").unwrap(), file), ["max"]);
            assert_eq!(write_of(&one(key, "50%").unwrap(), file), ["2147483648"]);
            assert_eq!(write_of(&one(key, "12.5%").unwrap(), file), ["536870912"]);
            assert_eq!(write_of(&Limits::default(), file), ["max"]);
            assert_err(key, "512", "below the minimum of 1M");
            assert_err(key, "lots", "not a number");
            assert_err(key, "-1G", "negative");
            assert_err(key, "0%", "outside 0%");
            assert_err(key, "150%", "outside 0%");
            assert_err(key, "1.234%", "two decimals");
            assert_err(key, "2GB", "ambiguous");
            assert_err(key, "", "not a number");
        }
    }

    #[test]
    fn memory_percent_below_minimum_after_resolution() {
        let tiny = Machine {
            mem_total: 64 << 20,
            ..M
        };
        let l = one(MEMORY_MAX, "1%").unwrap();
        let e = l.plan(&tiny, &FakeDevs).unwrap_err().to_string();
        assert!(e.contains("below 1M") && e.contains("1%"), "{e}");
    }

    #[test]
    fn memory_swap_max() {
        let l = one(MEMORY_SWAP_MAX, "0").unwrap();
        assert_eq!(write_of(&l, "memory.swap.max"), ["0"]);
        assert_eq!(
            write_of(&one(MEMORY_SWAP_MAX, "1G").unwrap(), "memory.swap.max"),
            ["1073741824"]
        );
        assert_err(MEMORY_SWAP_MAX, "much", "not a number");
    }

    #[test]
    fn cpu_quota() {
        let q = |v: &str| write_of(&one(CPU_QUOTA, v).unwrap(), "cpu.max");
        assert_eq!(q("20%"), ["20000 100000"]);
        assert_eq!(q("1%"), ["1000 100000"]);
        assert_eq!(q("12.5%"), ["12500 100000"]);
        assert_eq!(q("250%"), ["250000 100000"]);
        assert_eq!(q("50% of machine"), ["100000 100000"]); // 2 CPUs
        assert_eq!(q("100% of machine"), ["200000 100000"]);
        assert_eq!(q("max"), ["max 100000"]);
        assert_eq!(write_of(&Limits::default(), "cpu.max"), ["max 100000"]);
        assert_err(CPU_QUOTA, "0.5%", "below 1%");
        assert_err(CPU_QUOTA, "20", "bare number is ambiguous");
        assert_err(CPU_QUOTA, "fast", "not a percentage");
        assert_err(CPU_QUOTA, "150% of machine", "outside 1% to 100%");
        assert_err(CPU_QUOTA, "999999999%", "percentage is too large");
        assert_err(CPU_QUOTA, "900000%", "more than 8192 CPUs");
        assert_err(CPU_QUOTA, "x% of machine", "not a number");
    }

    #[test]
    fn cpu_weight() {
        assert_eq!(
            write_of(&one(CPU_WEIGHT, "500").unwrap(), "cpu.weight"),
            ["500"]
        );
        assert_eq!(
            write_of(&one(CPU_WEIGHT, "1").unwrap(), "cpu.weight"),
            ["1"]
        );
        assert_eq!(
            write_of(&one(CPU_WEIGHT, "10000").unwrap(), "cpu.weight"),
            ["10000"]
        );
        assert_eq!(write_of(&Limits::default(), "cpu.weight"), ["100"]);
        assert_err(CPU_WEIGHT, "0", "outside 1 to 10000");
        assert_err(CPU_WEIGHT, "10001", "outside 1 to 10000");
        assert_err(CPU_WEIGHT, "99999999999999999999999", "outside 1 to 10000");
        assert_err(CPU_WEIGHT, "-3", "negative");
        assert_err(CPU_WEIGHT, "high", "not an integer");
    }

    #[test]
    fn tasks_max() {
        assert_eq!(write_of(&one(TASKS_MAX, "64").unwrap(), "pids.max"), ["64"]);
        assert_eq!(
            write_of(&one(TASKS_MAX, "max").unwrap(), "pids.max"),
            ["max"]
        );
        assert_eq!(
            write_of(&one(TASKS_MAX, "10%").unwrap(), "pids.max"),
            ["3276"]
        );
        assert_eq!(
            write_of(&one(TASKS_MAX, "4194304").unwrap(), "pids.max"),
            ["4194304"]
        );
        assert_eq!(write_of(&Limits::default(), "pids.max"), ["max"]);
        assert_err(TASKS_MAX, "0", "outside 1 to 4194304");
        assert_err(TASKS_MAX, "4194305", "outside 1 to 4194304");
        assert_err(TASKS_MAX, "-1", "negative");
        assert_err(TASKS_MAX, "many", "not an integer");
        assert_err(TASKS_MAX, "101%", "outside 0%");
    }

    #[test]
    fn io_limits() {
        let mut l = Limits::default();
        l.set(IO_WRITE_BANDWIDTH_MAX, "/dev/vda 4M").unwrap();
        l.set(IO_READ_BANDWIDTH_MAX, "254:0 2M").unwrap();
        l.set(IO_READ_IOPS_MAX, "8:16 1K").unwrap();
        l.set(IO_WRITE_IOPS_MAX, "8:16 max").unwrap();
        assert_eq!(
            write_of(&l, "io.max"),
            [
                "8:16 rbps=max wbps=max riops=1000 wiops=max",
                "254:0 rbps=2097152 wbps=4194304 riops=max wiops=max"
            ]
        );
        assert!(write_of(&Limits::default(), "io.max").is_empty());
        assert_err(IO_READ_BANDWIDTH_MAX, "/dev/vda", "device and a rate");
        assert_err(
            IO_READ_BANDWIDTH_MAX,
            "/dev/vda 1M extra",
            "device and a rate",
        );
        assert_err(IO_READ_BANDWIDTH_MAX, "vda 1M", "neither a device path");
        assert_err(
            IO_READ_BANDWIDTH_MAX,
            "/dev/../etc 1M",
            "must not contain ..",
        );
        assert_err(
            IO_READ_BANDWIDTH_MAX,
            "254:0 100",
            "below the minimum of 4096",
        );
        assert_err(IO_READ_BANDWIDTH_MAX, "254:0 fast", "not a number");
        assert_err(IO_WRITE_IOPS_MAX, "254:0 0", "below the minimum of 1");
        assert_err(IO_WRITE_IOPS_MAX, "254:0 1X", "unknown IOPS suffix");
        assert_err(IO_WRITE_IOPS_MAX, "254:0 -1", "negative");
        assert_err(IO_WRITE_IOPS_MAX, "254: 5", "neither a device path");
    }

    #[test]
    fn io_device_resolution_errors_name_the_value() {
        let mut l = Limits::default();
        l.set(IO_READ_BANDWIDTH_MAX, "/dev/vda1 1M").unwrap();
        let e = l.plan(&M, &FakeDevs).unwrap_err().to_string();
        assert!(
            e.contains("\"/dev/vda1 1M\"") && e.contains("partition"),
            "{e}"
        );
        let mut l = Limits::default();
        l.set(IO_READ_BANDWIDTH_MAX, "9:9 1M").unwrap();
        let e = l.plan(&M, &FakeDevs).unwrap_err().to_string();
        assert!(e.contains("no block device 9:9"), "{e}");
        // The same disk twice under two names.
        let mut l = Limits::default();
        l.set(IO_READ_BANDWIDTH_MAX, "/dev/vda 1M").unwrap();
        l.set(IO_READ_BANDWIDTH_MAX, "254:0 2M").unwrap();
        let e = l.plan(&M, &FakeDevs).unwrap_err().to_string();
        assert!(e.contains("limited twice"), "{e}");
    }

    #[test]
    fn real_resolver_refuses_non_devices() {
        let r = SysBlockDevices::default();
        let e = r
            .resolve(&DeviceSpec::Path("/etc/hostname".into()))
            .unwrap_err();
        assert!(e.contains("not a block device"), "{e}");
        let e = r
            .resolve(&DeviceSpec::Path("/nonexistent/dev".into()))
            .unwrap_err();
        assert!(e.contains("/nonexistent/dev"), "{e}");
        let e = r
            .resolve(&DeviceSpec::Number(DevNum {
                major: 4000,
                minor: 4000,
            }))
            .unwrap_err();
        assert!(e.contains("no block device 4000:4000"), "{e}");
    }

    #[test]
    fn unknown_key() {
        let e = one("memorymax", "1G").unwrap_err().to_string();
        assert!(e.contains("did you mean MemoryMax"), "{e}");
        let e = one("Bogus", "1").unwrap_err().to_string();
        assert!(e.contains("unknown key") && e.contains("TasksMax"), "{e}");
    }

    #[test]
    fn properties_and_display_round_trip() {
        let l = Limits::from_properties([
            "MemoryMax=512M",
            "MemoryHigh=50%",
            "CPUQuota=20%",
            "CPUWeight=200",
            "IOWriteBandwidthMax=/dev/vda 4M",
            "TasksMax=64",
        ])
        .unwrap();
        let shown = l.to_string();
        assert_eq!(
            shown,
            "MemoryMax=512M MemoryHigh=50% CPUQuota=20% CPUWeight=200 \
             IOWriteBandwidthMax=\"/dev/vda 4M\" TasksMax=64"
        );
        assert_eq!(Limits::default().to_string(), "(none)");
        assert!(Limits::default().is_empty());
        assert!(Limits::from_properties(["MemoryMax"]).is_err());
        assert_eq!(
            l.controllers().into_iter().collect::<Vec<_>>(),
            [
                Controller::Cpu,
                Controller::Memory,
                Controller::Io,
                Controller::Pids
            ]
        );
    }

    #[test]
    fn toml_config() {
        let t = r#"
            MemoryMax = "512M"
            MemoryHigh = 268435456
            CPUQuota = "50% of machine"
            CPUWeight = 300
            IOReadBandwidthMax = ["/dev/vda 2M", "8:0 max"]
            IOWriteIOPSMax = "/dev/vda 100"
            TasksMax = "max"
        "#;
        let l: Limits = toml::from_str(t).unwrap();
        assert_eq!(l.memory_max, Some(MemoryValue::Bytes(512 << 20)));
        assert_eq!(l.memory_high, Some(MemoryValue::Bytes(256 << 20)));
        assert_eq!(l.cpu_quota, Some(CpuQuota::Machine(Percent(5000))));
        assert_eq!(l.cpu_weight, Some(300));
        assert_eq!(l.io_read_bandwidth_max.len(), 2);
        assert_eq!(l.io_write_iops_max.len(), 1);
        assert_eq!(l.tasks_max, Some(TasksMax::Max));
        // Back to TOML/JSON in the same forms, and parsed again to the same value.
        let out = toml::to_string(&l).unwrap();
        assert!(out.contains("MemoryHigh = \"256M\""), "{out}");
        assert!(out.contains("CPUQuota = \"50% of machine\""), "{out}");
        let again: Limits = toml::from_str(&out).unwrap();
        assert_eq!(again, l);
        let j = serde_json::to_string(&l).unwrap();
        assert_eq!(serde_json::from_str::<Limits>(&j).unwrap(), l);
    }

    #[test]
    fn toml_errors_name_key_value_and_forms() {
        for (t, needles) in [
            (
                "MemoryMax = \"lots\"",
                &["MemoryMax", "\"lots\"", "512M"][..],
            ),
            ("MemoryMax = -5", &["MemoryMax", "\"-5\"", "negative"][..]),
            ("MemoryMax = true", &["a string such as"][..]),
            ("CPUQuota = 20", &["CPUQuota", "ambiguous", "20%"][..]),
            ("CPUQuota = 0.5", &["CPUQuota", "\"0.5\""][..]),
            ("Memorymax = \"1G\"", &["did you mean MemoryMax"][..]),
            ("TasksMax = [\"1\", \"2\"]", &["TasksMax", "not a list"][..]),
            (
                "IOReadBandwidthMax = [\"/dev/vda\"]",
                &["IOReadBandwidthMax", "device and a rate"][..],
            ),
        ] {
            let e = toml::from_str::<Limits>(t).unwrap_err().to_string();
            for n in needles {
                assert!(e.contains(n), "{t}: {n:?} missing in {e}");
            }
        }
    }

    #[test]
    fn validate_catches_values_built_in_code() {
        let l = Limits {
            cpu_weight: Some(0),
            ..Limits::default()
        };
        let e = l.plan(&M, &FakeDevs).unwrap_err().to_string();
        assert!(e.contains("CPUWeight") && e.contains("\"0\""), "{e}");
        let l = Limits {
            memory_max: Some(MemoryValue::Bytes(10)),
            ..Limits::default()
        };
        assert!(l.validate().is_err());
        let l = Limits {
            tasks_max: Some(TasksMax::Count(0)),
            ..Limits::default()
        };
        assert!(l.validate().is_err());
    }

    #[test]
    fn io_max_helpers() {
        let cur =
            "254:0 rbps=2097152 wbps=max riops=max wiops=max\n8:0 rbps=max wbps=1 riops=max wiops=max\n";
        let d = io_max_devices(cur);
        assert_eq!(d.len(), 2);
        assert!(d.contains(&DevNum { major: 8, minor: 0 }));
        assert!(io_max_devices("").is_empty());
        assert_eq!(
            io_max_line(DevNum { major: 1, minor: 2 }, [Rate::Max; 4]),
            "1:2 rbps=max wbps=max riops=max wiops=max"
        );
    }

    #[test]
    fn percent_display() {
        assert_eq!(Percent(2000).to_string(), "20%");
        assert_eq!(Percent(1250).to_string(), "12.5%");
        assert_eq!(Percent(1205).to_string(), "12.05%");
        assert_eq!(parse_percent("12.05%"), Ok(Percent(1205)));
        assert_eq!(parse_percent("7 %"), Ok(Percent(700)));
    }

    #[test]
    fn machine_detect_reads_this_host() {
        let m = Machine::detect().unwrap();
        assert!(m.mem_total > 0 && m.cpus >= 1 && m.pid_max >= 300, "{m:?}");
    }
}

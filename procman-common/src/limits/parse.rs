//! Per-key parsers and range checks, the accepted-forms texts of their errors, and the same
//! human forms printed back. Sizes and percentages go through [`crate::units`]; what is
//! checked here is what they mean for a limit.
use std::path::Path;

use crate::units::{self, Decimal, Percent};

use super::{
    shorten, CpuQuota, DevNum, DeviceSpec, InvalidLimit, IoLimit, LimitKey, MemoryValue, Rate,
    TasksMax, MAX_CPU_WEIGHT, MAX_TASKS, MIN_IO_BANDWIDTH, MIN_MEMORY,
};

const ACCEPT_MEMORY: &str = "bytes with an optional K, M, G or T suffix (1024-based, like \
systemd; KiB, MiB, GiB, TiB also accepted; KB, MB, GB, TB are 1000-based), e.g. \"512M\", \
\"2GiB\", \"1.5G\", \"1073741824\", at least 1M; a percentage of physical memory, e.g. \"50%\"; \
or \"max\"";
const ACCEPT_SWAP: &str = "bytes with an optional K, M, G or T suffix (1024-based, like \
systemd; KiB, MiB, GiB, TiB also accepted; KB, MB, GB, TB are 1000-based), e.g. \"0\", \
\"512M\", \"2GiB\"; a percentage of physical memory, e.g. \"50%\"; or \"max\"";
const ACCEPT_CPU_QUOTA: &str = "a percentage of one CPU, e.g. \"20%\" (\"250%\" = two and a half \
CPUs, at least 1%); a percentage of the whole machine, e.g. \"50% of machine\" (1% to 100%); or \
\"max\"";
const ACCEPT_CPU_WEIGHT: &str = "an integer from 1 to 10000 (default 100), e.g. 100 or \"500\"";
const ACCEPT_IO_BW: &str = "\"DEVICE RATE\" where DEVICE is a block device path like \
\"/dev/vda\" or \"MAJ:MIN\" like \"254:0\" and RATE is bytes per second with an optional K, M, \
G or T suffix (1024-based; KB, MB, GB, TB are 1000-based), at least 4K, or \"max\", e.g. \
\"/dev/vda 10M\"; a list of such strings for several devices";
const ACCEPT_IO_IOPS: &str = "\"DEVICE IOPS\" where DEVICE is a block device path like \
\"/dev/vda\" or \"MAJ:MIN\" like \"254:0\" and IOPS is an integer of at least 1 with an \
optional K, M or G suffix (1000-based) or \"max\", e.g. \"/dev/vda 500\"; a list of such \
strings for several devices";
const ACCEPT_TASKS: &str = "an integer from 1 to 4194304, e.g. 512; a percentage of the \
kernel's pid limit, e.g. \"10%\"; or \"max\"";

/// 100% in hundredths of a percent.
const HUNDRED_PERCENT: u32 = Percent::HUNDRED.0;
/// Upper bound of a one-CPU percentage (8192 CPUs).
const MAX_CPU_PERCENT_CENTI: u32 = 8192 * 100 * 100;

/// The accepted forms of `key`'s values, as its errors print them.
pub fn accepted_forms(key: LimitKey) -> &'static str {
    use LimitKey::*;
    match key {
        MemoryMax | MemoryHigh => ACCEPT_MEMORY,
        MemorySwapMax => ACCEPT_SWAP,
        CPUQuota => ACCEPT_CPU_QUOTA,
        CPUWeight => ACCEPT_CPU_WEIGHT,
        TasksMax => ACCEPT_TASKS,
        IOReadBandwidthMax | IOWriteBandwidthMax => ACCEPT_IO_BW,
        IOReadIOPSMax | IOWriteIOPSMax => ACCEPT_IO_IOPS,
    }
}

/// `key = value` is refused because of `problem`.
pub fn invalid(key: LimitKey, value: &str, problem: impl Into<String>) -> InvalidLimit {
    InvalidLimit {
        key,
        value: shorten(value, 128),
        problem: problem.into(),
        accepted: accepted_forms(key),
    }
}

fn is_max(s: &str) -> bool {
    s == "max" || s == "infinity"
}

pub fn is_bandwidth(key: LimitKey) -> bool {
    matches!(
        key,
        LimitKey::IOReadBandwidthMax | LimitKey::IOWriteBandwidthMax
    )
}

fn percent(key: LimitKey, value: &str, text: &str) -> Result<Percent, InvalidLimit> {
    Percent::parse(text).map_err(|e| invalid(key, value, e.problem))
}

pub fn memory(key: LimitKey, s: &str) -> Result<MemoryValue, InvalidLimit> {
    let t = s.trim();
    let v = if is_max(t) {
        MemoryValue::Max
    } else if t.ends_with('%') {
        MemoryValue::Percent(percent(key, s, t)?)
    } else {
        MemoryValue::Bytes(units::parse_bytes(t).map_err(|e| invalid(key, s, e.problem))?)
    };
    check_memory(key, s, v)?;
    Ok(v)
}

pub fn check_memory(key: LimitKey, s: &str, v: MemoryValue) -> Result<(), InvalidLimit> {
    let swap = key == LimitKey::MemorySwapMax;
    match v {
        MemoryValue::Max => Ok(()),
        MemoryValue::Bytes(b) if !swap && b < MIN_MEMORY => Err(invalid(
            key,
            s,
            format!(
                "{b} bytes is below the minimum of 1M (a value this small is usually a \
                 missing unit, and would OOM-kill the slice at once)"
            ),
        )),
        MemoryValue::Bytes(_) => Ok(()),
        MemoryValue::Percent(p) if p.0 == 0 || p.0 > HUNDRED_PERCENT => Err(invalid(
            key,
            s,
            format!("{p} is outside 0% (exclusive) to 100%"),
        )),
        MemoryValue::Percent(_) => Ok(()),
    }
}

pub fn cpu_quota(s: &str) -> Result<CpuQuota, InvalidLimit> {
    let key = LimitKey::CPUQuota;
    let t = s.trim();
    let v = if is_max(t) {
        CpuQuota::Max
    } else if let Some(p) = t.strip_suffix("of machine") {
        CpuQuota::Machine(percent(key, s, p.trim_end())?)
    } else if t.ends_with('%') {
        CpuQuota::OneCpu(percent(key, s, t)?)
    } else if Decimal::parse(t).is_some() {
        return Err(invalid(
            key,
            s,
            "a bare number is ambiguous; add % (of one CPU)",
        ));
    } else {
        return Err(invalid(key, s, "not a percentage"));
    };
    check_cpu_quota(s, v)?;
    Ok(v)
}

pub fn check_cpu_quota(s: &str, v: CpuQuota) -> Result<(), InvalidLimit> {
    let key = LimitKey::CPUQuota;
    match v {
        CpuQuota::Max => Ok(()),
        CpuQuota::OneCpu(p) if p.0 < 100 => Err(invalid(
            key,
            s,
            format!("{p} is below 1% (the kernel's smallest quota is 1 ms per 100 ms)"),
        )),
        CpuQuota::OneCpu(p) if p.0 > MAX_CPU_PERCENT_CENTI => {
            Err(invalid(key, s, format!("{p} is more than 8192 CPUs")))
        }
        CpuQuota::Machine(p) if p.0 < 100 || p.0 > HUNDRED_PERCENT => Err(invalid(
            key,
            s,
            format!("{p} of machine is outside 1% to 100%"),
        )),
        _ => Ok(()),
    }
}

/// A plain non-negative integer; `Ok(None)` when it does not fit a u64 (out of any range).
fn integer(key: LimitKey, s: &str, t: &str) -> Result<Option<u64>, InvalidLimit> {
    if t.starts_with('-') {
        Err(invalid(key, s, "negative"))
    } else if !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit()) {
        Ok(t.parse().ok())
    } else {
        Err(invalid(key, s, "not an integer"))
    }
}

pub fn cpu_weight(s: &str) -> Result<u32, InvalidLimit> {
    let n = integer(LimitKey::CPUWeight, s, s.trim())?;
    let w = n.and_then(|n| u32::try_from(n).ok()).unwrap_or(u32::MAX);
    check_cpu_weight(s, w)?;
    Ok(w)
}

pub fn check_cpu_weight(s: &str, w: u32) -> Result<(), InvalidLimit> {
    if !(1..=MAX_CPU_WEIGHT).contains(&w) {
        return Err(invalid(LimitKey::CPUWeight, s, "outside 1 to 10000"));
    }
    Ok(())
}

pub fn tasks(s: &str) -> Result<TasksMax, InvalidLimit> {
    let key = LimitKey::TasksMax;
    let t = s.trim();
    let v = if is_max(t) {
        TasksMax::Max
    } else if t.ends_with('%') {
        TasksMax::Percent(percent(key, s, t)?)
    } else {
        TasksMax::Count(integer(key, s, t)?.unwrap_or(u64::MAX))
    };
    check_tasks(s, v)?;
    Ok(v)
}

pub fn check_tasks(s: &str, v: TasksMax) -> Result<(), InvalidLimit> {
    let key = LimitKey::TasksMax;
    match v {
        TasksMax::Count(n) if n == 0 || n > MAX_TASKS => {
            Err(invalid(key, s, "outside 1 to 4194304"))
        }
        TasksMax::Percent(p) if p.0 == 0 || p.0 > HUNDRED_PERCENT => Err(invalid(
            key,
            s,
            format!("{p} is outside 0% (exclusive) to 100%"),
        )),
        _ => Ok(()),
    }
}

/// An IOPS count with an optional 1000-based K/M/G suffix (a count, not bytes: systemd's
/// meaning). `Err(problem)`.
fn iops(s: &str) -> Result<u64, String> {
    if s.starts_with('-') {
        return Err("negative amounts are not allowed".into());
    }
    let at = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = (&s[..at], &s[at..]);
    let mult: u128 = match unit {
        "" => 1,
        "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => return Err(format!("unknown IOPS suffix {:?}", shorten(unit, 16))),
    };
    let d = Decimal::parse(num).ok_or_else(|| format!("{:?} is not a number", shorten(num, 32)))?;
    d.times(mult)
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| "too large".into())
}

pub fn io(key: LimitKey, s: &str) -> Result<IoLimit, InvalidLimit> {
    let mut it = s.split_whitespace();
    let (dev, rate) = match (it.next(), it.next(), it.next()) {
        (Some(d), Some(r), None) => (d, r),
        _ => {
            return Err(invalid(
                key,
                s,
                "expected a device and a rate separated by a space",
            ))
        }
    };
    let device = if dev.starts_with('/') {
        let p = Path::new(dev);
        if p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(invalid(key, s, "the device path must not contain .."));
        }
        DeviceSpec::Path(p.to_path_buf())
    } else if let Some(n) = DevNum::parse(dev) {
        DeviceSpec::Number(n)
    } else {
        return Err(invalid(
            key,
            s,
            format!(
                "{:?} is neither a device path (/dev/...) nor MAJ:MIN",
                shorten(dev, 64)
            ),
        ));
    };
    let rate = if is_max(rate) {
        Rate::Max
    } else if is_bandwidth(key) {
        Rate::Value(units::parse_bytes(rate).map_err(|e| invalid(key, s, e.problem))?)
    } else {
        Rate::Value(iops(rate).map_err(|p| invalid(key, s, p))?)
    };
    let l = IoLimit { device, rate };
    check_io(key, s, &l)?;
    Ok(l)
}

pub fn check_io(key: LimitKey, s: &str, l: &IoLimit) -> Result<(), InvalidLimit> {
    let min = if is_bandwidth(key) {
        MIN_IO_BANDWIDTH
    } else {
        1
    };
    match l.rate {
        Rate::Value(v) if v < min => Err(invalid(
            key,
            s,
            format!("{v} is below the minimum of {min} (use max for no limit)"),
        )),
        _ => Ok(()),
    }
}

// ---- printing (the same human forms the parsers accept) ----

pub fn fmt_memory(v: MemoryValue) -> String {
    match v {
        MemoryValue::Max => "max".into(),
        MemoryValue::Bytes(b) => units::fmt_bytes(b),
        MemoryValue::Percent(p) => p.to_string(),
    }
}

pub fn fmt_cpu_quota(q: CpuQuota) -> String {
    match q {
        CpuQuota::Max => "max".into(),
        CpuQuota::OneCpu(p) => p.to_string(),
        CpuQuota::Machine(p) => format!("{p} of machine"),
    }
}

pub fn fmt_tasks(t: TasksMax) -> String {
    match t {
        TasksMax::Max => "max".into(),
        TasksMax::Count(n) => n.to_string(),
        TasksMax::Percent(p) => p.to_string(),
    }
}

pub fn fmt_io(key: LimitKey, l: &IoLimit) -> String {
    let rate = match l.rate {
        Rate::Max => "max".to_string(),
        Rate::Value(v) if is_bandwidth(key) => units::fmt_bytes(v),
        Rate::Value(v) => v.to_string(),
    };
    format!("{} {rate}", l.device)
}

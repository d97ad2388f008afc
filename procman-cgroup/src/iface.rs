//! The values of the limit interface files as the kernel writes and reads them: device
//! numbers, `max`-or-number rates, `cpu.max` and `io.max` lines. Pure text; [`crate::Cgroup`]
//! reads and writes the files, [`crate::Limits`] turns human forms into these.
use std::fmt;

pub use procman_common::limits::{DevNum, Rate};

/// A `max`-or-number value (`memory.max`, `pids.max`): `None` is `max`.
pub fn parse_max(s: &str) -> Option<Option<u64>> {
    match s.trim() {
        "max" => Some(None),
        t => t.parse().ok().map(Some),
    }
}

/// Prints a `max`-or-number value.
pub fn fmt_max(v: Option<u64>) -> String {
    v.map_or_else(|| "max".to_string(), |v| v.to_string())
}

/// `cpu.max`: a quota per period, both in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CpuMax {
    /// `None` is `max` (no quota).
    pub quota_us: Option<u64>,
    pub period_us: u64,
}

impl CpuMax {
    /// Parses `QUOTA PERIOD` or `max PERIOD`; the period must be positive.
    pub fn parse(s: &str) -> Option<CpuMax> {
        let mut it = s.split_whitespace();
        let quota = it.next()?;
        let period_us: u64 = it.next()?.parse().ok()?;
        if it.next().is_some() || period_us == 0 {
            return None;
        }
        let quota_us = match quota {
            "max" => None,
            q => Some(q.parse().ok()?),
        };
        Some(CpuMax {
            quota_us,
            period_us,
        })
    }
}

impl fmt::Display for CpuMax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", fmt_max(self.quota_us), self.period_us)
    }
}

/// One line of `io.max`: the four rates of one device (absent ones are `max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IoMax {
    pub device: DevNum,
    /// Read bytes per second.
    pub rbps: Rate,
    /// Write bytes per second.
    pub wbps: Rate,
    /// Read IOs per second.
    pub riops: Rate,
    /// Write IOs per second.
    pub wiops: Rate,
}

impl IoMax {
    /// No limit on `device` (the line that resets it).
    pub fn unlimited(device: DevNum) -> IoMax {
        IoMax {
            device,
            rbps: Rate::Max,
            wbps: Rate::Max,
            riops: Rate::Max,
            wiops: Rate::Max,
        }
    }

    /// The rates in file order: rbps, wbps, riops, wiops.
    pub fn rates(&self) -> [Rate; 4] {
        [self.rbps, self.wbps, self.riops, self.wiops]
    }

    /// Parses one line, `MAJ:MIN rbps=N wbps=max ...`; keys not given are `max`, unknown keys
    /// are ignored (newer kernels).
    pub fn parse_line(line: &str) -> Option<IoMax> {
        let mut it = line.split_whitespace();
        let mut out = IoMax::unlimited(DevNum::parse(it.next()?)?);
        for kv in it {
            let (k, v) = kv.split_once('=')?;
            let rate = Rate::parse(v)?;
            match k {
                "rbps" => out.rbps = rate,
                "wbps" => out.wbps = rate,
                "riops" => out.riops = rate,
                "wiops" => out.wiops = rate,
                _ => {}
            }
        }
        Some(out)
    }
}

impl fmt::Display for IoMax {
    /// `MAJ:MIN rbps=.. wbps=.. riops=.. wiops=..`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} rbps={} wbps={} riops={} wiops={}",
            self.device, self.rbps, self.wbps, self.riops, self.wiops
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_numbers() {
        assert_eq!(
            DevNum::parse("254:0"),
            Some(DevNum {
                major: 254,
                minor: 0
            })
        );
        for bad in [
            "",
            ":",
            "254:",
            ":0",
            "a:b",
            "1:2:3",
            "-1:0",
            "99999999999:0",
        ] {
            assert_eq!(DevNum::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn cpu_max_lines() {
        let c = CpuMax::parse("20000 100000").unwrap();
        assert_eq!(c.quota_us, Some(20000));
        assert_eq!(c.to_string(), "20000 100000");
        assert_eq!(CpuMax::parse("max 100000").unwrap().quota_us, None);
        for bad in ["", "max", "max 0", "x 100000", "1 2 3", "garbage"] {
            assert_eq!(CpuMax::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn io_max_lines() {
        let l = IoMax::parse_line("8:16 rbps=max wbps=1 riops=max wiops=7 future=3").unwrap();
        assert_eq!(l.wbps, Rate::Value(1));
        assert_eq!(l.wiops, Rate::Value(7));
        assert_eq!(l.to_string(), "8:16 rbps=max wbps=1 riops=max wiops=7");
        assert_eq!(
            IoMax::unlimited(DevNum { major: 1, minor: 2 }).to_string(),
            "1:2 rbps=max wbps=max riops=max wiops=max"
        );
        for bad in ["", "vda rbps=1", "8:0 rbps", "8:0 rbps=-1"] {
            assert_eq!(IoMax::parse_line(bad), None, "{bad}");
        }
    }

    #[test]
    fn max_values() {
        assert_eq!(parse_max("max\n"), Some(None));
        assert_eq!(parse_max("42\n"), Some(Some(42)));
        assert_eq!(parse_max("4x"), None);
        assert_eq!(fmt_max(None), "max");
        assert_eq!(fmt_max(Some(3)), "3");
    }
}

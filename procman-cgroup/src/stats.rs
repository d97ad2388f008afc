//! Parsers of the statistics files: cpu.stat, memory.events, io.stat, the pressure (PSI)
//! files, cgroup.events and the single-number files. They produce the wire types of
//! [`procman_common::api`] ([`CpuStat`], [`MemoryEvents`], [`IoStat`], [`Pressure`]), so what
//! the API sends is what was parsed. A present but malformed file is an error naming the file
//! and the line; [`crate::Cgroup`] reads the files.
use std::collections::BTreeMap;
use std::path::Path;

use procman_common::api::{CpuStat, IoStat, MemoryEvents, Pressure, PressureLine};

use crate::error::{CgroupError, Result};
use crate::iface::DevNum;

/// A statistics file format: `T::parse(path, text)`, `path` only naming the file in errors.
pub trait ParseFile: Sized {
    fn parse(path: &Path, text: &str) -> Result<Self>;
}

/// A flat-keyed file (`key value` per line): cpu.stat, memory.events, cgroup.events.
pub fn parse_flat_keyed(path: &Path, text: &str) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut it = line.split_whitespace();
        let (k, v) = match (it.next(), it.next(), it.next()) {
            (Some(k), Some(v), None) => (k, v),
            _ => return Err(malformed(path, line, "expected `key value`")),
        };
        let v = v
            .parse::<u64>()
            .map_err(|_| malformed(path, line, "the value is not an unsigned integer"))?;
        out.insert(k.to_string(), v);
    }
    Ok(out)
}

pub(crate) fn malformed(path: &Path, line: &str, why: &str) -> CgroupError {
    CgroupError::Malformed {
        path: path.to_path_buf(),
        detail: format!("line {line:?}: {why}"),
    }
}

/// A single-value file that may hold `max` (`memory.max`, `pids.max`); `max` reads as `None`.
pub fn parse_single(path: &Path, text: &str) -> Result<Option<u64>> {
    crate::iface::parse_max(text)
        .ok_or_else(|| malformed(path, text.trim(), "not an unsigned integer or `max`"))
}

/// A single-counter file (`memory.current`, `pids.current`, `memory.peak`).
pub fn parse_counter(path: &Path, text: &str) -> Result<u64> {
    let t = text.trim();
    t.parse()
        .map_err(|_| malformed(path, t, "not an unsigned integer"))
}

/// `cgroup.events`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupEvents {
    /// Any process in the cgroup or below.
    pub populated: bool,
    /// The freezer has frozen it (false where the freezer is absent).
    pub frozen: bool,
}

impl ParseFile for CgroupEvents {
    fn parse(path: &Path, text: &str) -> Result<CgroupEvents> {
        let m = parse_flat_keyed(path, text)?;
        Ok(CgroupEvents {
            populated: m.get("populated").copied().unwrap_or(0) == 1,
            frozen: m.get("frozen").copied().unwrap_or(0) == 1,
        })
    }
}

impl ParseFile for CpuStat {
    fn parse(path: &Path, text: &str) -> Result<CpuStat> {
        let m = parse_flat_keyed(path, text)?;
        let need = |k: &str| {
            m.get(k).copied().ok_or_else(|| {
                malformed(path, text.lines().next().unwrap_or(""), &format!("no {k}"))
            })
        };
        Ok(CpuStat {
            usage_usec: need("usage_usec")?,
            user_usec: need("user_usec")?,
            system_usec: need("system_usec")?,
            nr_periods: m.get("nr_periods").copied(),
            nr_throttled: m.get("nr_throttled").copied(),
            throttled_usec: m.get("throttled_usec").copied(),
        })
    }
}

impl ParseFile for MemoryEvents {
    fn parse(path: &Path, text: &str) -> Result<MemoryEvents> {
        let m = parse_flat_keyed(path, text)?;
        let g = |k: &str| m.get(k).copied().unwrap_or(0);
        if !m.contains_key("oom_kill") {
            return Err(malformed(path, text.trim(), "no oom_kill counter"));
        }
        Ok(MemoryEvents {
            low: g("low"),
            high: g("high"),
            max: g("max"),
            oom: g("oom"),
            oom_kill: g("oom_kill"),
            oom_group_kill: g("oom_group_kill"),
        })
    }
}

/// `pids.events`: the `max` counter (forks refused by pids.max).
pub fn parse_pids_events(path: &Path, text: &str) -> Result<u64> {
    Ok(parse_flat_keyed(path, text)?
        .get("max")
        .copied()
        .unwrap_or(0))
}

/// Parses io.stat: `MAJ:MIN rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N` per line.
/// Unknown `key=value` pairs (newer kernels, io.cost) are ignored.
pub fn parse_io_stat(path: &Path, text: &str) -> Result<Vec<IoStat>> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut it = line.split_whitespace();
        let dev = it.next().unwrap_or("");
        if DevNum::parse(dev).is_none() {
            return Err(malformed(path, line, "does not start with MAJ:MIN"));
        }
        let mut s = IoStat {
            device: dev.to_string(),
            ..IoStat::default()
        };
        for kv in it {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| malformed(path, line, "expected key=value pairs"))?;
            let slot = match k {
                "rbytes" => &mut s.rbytes,
                "wbytes" => &mut s.wbytes,
                "rios" => &mut s.rios,
                "wios" => &mut s.wios,
                "dbytes" => &mut s.dbytes,
                "dios" => &mut s.dios,
                _ => continue,
            };
            *slot = v
                .parse()
                .map_err(|_| malformed(path, line, "a counter is not an unsigned integer"))?;
        }
        out.push(s);
    }
    Ok(out)
}

impl ParseFile for Vec<IoStat> {
    fn parse(path: &Path, text: &str) -> Result<Vec<IoStat>> {
        parse_io_stat(path, text)
    }
}

/// Which pressure file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PressureKind {
    Cpu,
    Memory,
    Io,
}

impl PressureKind {
    pub const ALL: [PressureKind; 3] = [PressureKind::Cpu, PressureKind::Memory, PressureKind::Io];

    /// The file in a cgroup directory (`cpu.pressure`).
    pub fn file(self) -> &'static str {
        match self {
            PressureKind::Cpu => "cpu.pressure",
            PressureKind::Memory => "memory.pressure",
            PressureKind::Io => "io.pressure",
        }
    }

    /// The system-wide file (`/proc/pressure/cpu`).
    pub fn proc_file(self) -> &'static str {
        match self {
            PressureKind::Cpu => "/proc/pressure/cpu",
            PressureKind::Memory => "/proc/pressure/memory",
            PressureKind::Io => "/proc/pressure/io",
        }
    }
}

/// A PSI file, a cgroup's (`cpu.pressure`) or the system's (`/proc/pressure/cpu`): the one
/// parser of that format, for the agent's sampler too.
impl ParseFile for Pressure {
    fn parse(path: &Path, text: &str) -> Result<Pressure> {
        let mut some = None;
        let mut full = None;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut it = line.split_whitespace();
            let kind = it.next().unwrap_or("");
            let mut pl = PressureLine::default();
            let mut seen = 0;
            for kv in it {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| malformed(path, line, "expected key=value pairs"))?;
                let bad = || malformed(path, line, "a value is not a number");
                let avg = |v: &str| -> Result<f64> {
                    v.parse::<f64>()
                        .ok()
                        .filter(|x| x.is_finite() && *x >= 0.0)
                        .ok_or_else(bad)
                };
                match k {
                    "avg10" => pl.avg10 = avg(v)?,
                    "avg60" => pl.avg60 = avg(v)?,
                    "avg300" => pl.avg300 = avg(v)?,
                    "total" => pl.total = v.parse().map_err(|_| bad())?,
                    _ => continue,
                }
                seen += 1;
            }
            if seen != 4 {
                return Err(malformed(
                    path,
                    line,
                    "expected avg10, avg60, avg300 and total",
                ));
            }
            match kind {
                "some" => some = Some(pl),
                "full" => full = Some(pl),
                _ => return Err(malformed(path, line, "expected a `some` or `full` line")),
            }
        }
        Ok(Pressure {
            some: some.ok_or_else(|| malformed(path, text.trim(), "no `some` line"))?,
            full,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("/fake/x")
    }

    #[test]
    fn cpu_stat() {
        let t = "usage_usec 100\nuser_usec 60\nsystem_usec 40\nnr_periods 5\nnr_throttled 2\nthrottled_usec 900\nnr_bursts 0\nburst_usec 0\n";
        let s = CpuStat::parse(p(), t).unwrap();
        assert_eq!(s.usage_usec, 100);
        assert_eq!(s.nr_throttled, Some(2));
        let core_only = CpuStat::parse(p(), "usage_usec 1\nuser_usec 1\nsystem_usec 0\n").unwrap();
        assert_eq!(core_only.nr_periods, None);
        let e = CpuStat::parse(p(), "usage_usec x\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/fake/x") && e.contains("usage_usec x"), "{e}");
        assert!(CpuStat::parse(p(), "user_usec 1\n").is_err());
        assert!(CpuStat::parse(p(), "a b c\n").is_err());
    }

    #[test]
    fn memory_events() {
        let t = "low 0\nhigh 3\nmax 7\noom 1\noom_kill 1\noom_group_kill 0\n";
        let e = MemoryEvents::parse(p(), t).unwrap();
        assert_eq!((e.high, e.max, e.oom_kill), (3, 7, 1));
        assert!(MemoryEvents::parse(p(), "low 0\n").is_err());
        assert!(MemoryEvents::parse(p(), "oom_kill -1\n").is_err());
    }

    #[test]
    fn cgroup_and_pids_events() {
        let e = CgroupEvents::parse(p(), "populated 1\nfrozen 0\n").unwrap();
        assert!(e.populated && !e.frozen);
        // No `frozen` line before Linux 5.2.
        assert!(!CgroupEvents::parse(p(), "populated 0\n").unwrap().frozen);
        assert!(CgroupEvents::parse(p(), "populated yes\n").is_err());
        assert_eq!(parse_pids_events(p(), "max 4\n").unwrap(), 4);
        assert_eq!(parse_pids_events(p(), "").unwrap(), 0);
    }

    #[test]
    fn single_values() {
        assert_eq!(parse_single(p(), "123\n").unwrap(), Some(123));
        assert_eq!(parse_single(p(), "max\n").unwrap(), None);
        assert!(parse_single(p(), "12a\n").is_err());
        assert_eq!(parse_counter(p(), "77\n").unwrap(), 77);
        let e = parse_counter(p(), "max\n").unwrap_err().to_string();
        assert!(e.contains("/fake/x") && e.contains("\"max\""), "{e}");
    }

    #[test]
    fn io_stat() {
        let t = "254:0 rbytes=1048576 wbytes=4096 rios=10 wios=1 dbytes=0 dios=0\n8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=5 dios=6 cost.vrate=100.00\n";
        let v = parse_io_stat(p(), t).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].device, "254:0");
        assert_eq!(v[0].rbytes, 1 << 20);
        assert_eq!(v[1].dios, 6);
        assert_eq!(Vec::<IoStat>::parse(p(), t).unwrap(), v);
        assert!(parse_io_stat(p(), "").unwrap().is_empty());
        assert!(parse_io_stat(p(), "vda rbytes=1\n").is_err());
        assert!(parse_io_stat(p(), "254:0 rbytes\n").is_err());
        assert!(parse_io_stat(p(), "254:0 rbytes=-1\n").is_err());
    }

    #[test]
    fn pressure() {
        let t = "some avg10=1.50 avg60=0.20 avg300=0.00 total=12345\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n";
        let pr = Pressure::parse(p(), t).unwrap();
        assert_eq!(pr.some.avg10, 1.5);
        assert_eq!(pr.some.total, 12345);
        assert_eq!(pr.full.unwrap().total, 7);
        let only_some =
            Pressure::parse(p(), "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n").unwrap();
        assert!(only_some.full.is_none());
        assert!(Pressure::parse(p(), "").is_err());
        assert!(Pressure::parse(p(), "some avg10=x avg60=0 avg300=0 total=0\n").is_err());
        assert!(Pressure::parse(p(), "some avg10=NaN avg60=0 avg300=0 total=0\n").is_err());
        assert!(Pressure::parse(p(), "some avg10=0 total=0\n").is_err());
        assert!(Pressure::parse(p(), "half avg10=0 avg60=0 avg300=0 total=0\n").is_err());
    }

    #[test]
    fn system_pressure_file_parses() {
        // /proc/pressure exists with CONFIG_PSI (and psi=1); skip where it does not.
        let f = PressureKind::Cpu.proc_file();
        if let Ok(t) = std::fs::read_to_string(f) {
            Pressure::parse(Path::new(f), &t).unwrap();
        }
    }
}

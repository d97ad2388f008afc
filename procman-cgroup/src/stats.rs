//! Slice statistics: cpu.stat, memory.current/peak/events, io.stat, pids.current/peak/events,
//! the pressure (PSI) files, and cgroup.events. A file that is absent (its controller is off,
//! or the kernel is older) gives `None`; a file that is present but malformed is an error
//! naming the file and the line.
use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::error::{CgroupError, Result};
use super::fs::read_optional;
use super::limits::DevNum;

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

fn malformed(path: &Path, line: &str, why: &str) -> CgroupError {
    CgroupError::Malformed {
        path: path.to_path_buf(),
        detail: format!("line {line:?}: {why}"),
    }
}

/// A single-value file (`memory.current`, `pids.current`); `max` reads as `None`.
pub fn parse_single(path: &Path, text: &str) -> Result<Option<u64>> {
    let t = text.trim();
    if t == "max" {
        return Ok(None);
    }
    t.parse()
        .map(Some)
        .map_err(|_| malformed(path, t, "not an unsigned integer or `max`"))
}

/// cpu.stat (usage is there even without the cpu controller; throttling needs it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuStat {
    pub usage_usec: u64,
    pub user_usec: u64,
    pub system_usec: u64,
    pub nr_periods: Option<u64>,
    pub nr_throttled: Option<u64>,
    pub throttled_usec: Option<u64>,
}

impl CpuStat {
    pub fn parse(path: &Path, text: &str) -> Result<CpuStat> {
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

/// memory.events counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemoryEvents {
    pub low: u64,
    pub high: u64,
    pub max: u64,
    pub oom: u64,
    pub oom_kill: u64,
    pub oom_group_kill: u64,
}

impl MemoryEvents {
    pub fn parse(path: &Path, text: &str) -> Result<MemoryEvents> {
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

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemoryStats {
    pub current: u64,
    /// memory.peak (Linux 5.19+).
    pub peak: Option<u64>,
    /// memory.swap.current (needs swap accounting).
    pub swap_current: Option<u64>,
    pub events: MemoryEvents,
}

/// One device line of io.stat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IoStat {
    pub device: String,
    pub rbytes: u64,
    pub wbytes: u64,
    pub rios: u64,
    pub wios: u64,
    pub dbytes: u64,
    pub dios: u64,
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

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PidsStats {
    pub current: u64,
    /// pids.peak (Linux 6.1+... where present).
    pub peak: Option<u64>,
    /// pids.events `max`: forks refused by pids.max.
    pub max_events: u64,
}

/// One line of a pressure file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PressureLine {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    /// Total stall time in microseconds.
    pub total: u64,
}

/// A PSI file (`cpu.pressure`, `memory.pressure`, `io.pressure`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Pressure {
    pub some: PressureLine,
    /// Absent in cpu.pressure on older kernels.
    pub full: Option<PressureLine>,
}

impl Pressure {
    pub fn parse(path: &Path, text: &str) -> Result<Pressure> {
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
                match k {
                    "avg10" => pl.avg10 = v.parse().map_err(|_| bad())?,
                    "avg60" => pl.avg60 = v.parse().map_err(|_| bad())?,
                    "avg300" => pl.avg300 = v.parse().map_err(|_| bad())?,
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

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PressureStats {
    pub cpu: Option<Pressure>,
    pub memory: Option<Pressure>,
    pub io: Option<Pressure>,
}

/// Everything the agent samples from one slice.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SliceStats {
    /// cgroup.events `populated`: any process in the slice.
    pub populated: bool,
    /// cgroup.events `frozen` (false where the freezer is absent).
    pub frozen: bool,
    pub cpu: Option<CpuStat>,
    pub memory: Option<MemoryStats>,
    pub io: Option<Vec<IoStat>>,
    pub pids: Option<PidsStats>,
    pub pressure: PressureStats,
}

fn read_with<T>(dir: &Path, file: &str, f: impl Fn(&Path, &str) -> Result<T>) -> Result<Option<T>> {
    let p = dir.join(file);
    match read_optional(&p)? {
        Some(t) => f(&p, &t).map(Some),
        None => Ok(None),
    }
}

/// Reads the stats of the cgroup directory `dir`.
pub fn read_stats(dir: &Path) -> Result<SliceStats> {
    let events = read_with(dir, "cgroup.events", parse_flat_keyed)?.ok_or_else(|| {
        CgroupError::io(
            "reading",
            dir.join("cgroup.events"),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
    })?;
    let memory = match read_with(dir, "memory.current", parse_single)? {
        Some(current) => {
            let ev = read_with(dir, "memory.events", MemoryEvents::parse)?.unwrap_or_default();
            Some(MemoryStats {
                current: current.unwrap_or(0),
                peak: read_with(dir, "memory.peak", parse_single)?.flatten(),
                swap_current: read_with(dir, "memory.swap.current", parse_single)?.flatten(),
                events: ev,
            })
        }
        None => None,
    };
    let pids = match read_with(dir, "pids.current", parse_single)? {
        Some(current) => Some(PidsStats {
            current: current.unwrap_or(0),
            peak: read_with(dir, "pids.peak", parse_single)?.flatten(),
            max_events: read_with(dir, "pids.events", parse_flat_keyed)?
                .and_then(|m| m.get("max").copied())
                .unwrap_or(0),
        }),
        None => None,
    };
    Ok(SliceStats {
        populated: events.get("populated").copied().unwrap_or(0) == 1,
        frozen: events.get("frozen").copied().unwrap_or(0) == 1,
        cpu: read_with(dir, "cpu.stat", CpuStat::parse)?,
        memory,
        io: read_with(dir, "io.stat", parse_io_stat)?,
        pids,
        pressure: PressureStats {
            cpu: read_with(dir, "cpu.pressure", Pressure::parse)?,
            memory: read_with(dir, "memory.pressure", Pressure::parse)?,
            io: read_with(dir, "io.pressure", Pressure::parse)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

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
    fn single_values() {
        assert_eq!(parse_single(p(), "123\n").unwrap(), Some(123));
        assert_eq!(parse_single(p(), "max\n").unwrap(), None);
        assert!(parse_single(p(), "12a\n").is_err());
    }

    #[test]
    fn io_stat() {
        let t = "254:0 rbytes=1048576 wbytes=4096 rios=10 wios=1 dbytes=0 dios=0\n8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=5 dios=6 cost.vrate=100.00\n";
        let v = parse_io_stat(p(), t).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].device, "254:0");
        assert_eq!(v[0].rbytes, 1 << 20);
        assert_eq!(v[1].dios, 6);
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
        assert!(Pressure::parse(p(), "some avg10=0 total=0\n").is_err());
        assert!(Pressure::parse(p(), "half avg10=0 avg60=0 avg300=0 total=0\n").is_err());
    }

    #[test]
    fn read_stats_from_a_fake_dir() {
        let d = tempfile::tempdir().unwrap();
        let w = |f: &str, t: &str| fs::write(d.path().join(f), t).unwrap();
        w("cgroup.events", "populated 1\nfrozen 0\n");
        w("cpu.stat", "usage_usec 5\nuser_usec 3\nsystem_usec 2\n");
        w("memory.current", "4096\n");
        w("memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 2\n");
        w("pids.current", "3\n");
        w("pids.events", "max 4\n");
        w(
            "cpu.pressure",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=1\n",
        );
        let s = read_stats(d.path()).unwrap();
        assert!(s.populated && !s.frozen);
        assert_eq!(s.cpu.unwrap().usage_usec, 5);
        let m = s.memory.unwrap();
        assert_eq!((m.current, m.peak, m.events.oom_kill), (4096, None, 2));
        assert_eq!(s.pids.unwrap().max_events, 4);
        assert!(s.io.is_none());
        assert!(s.pressure.cpu.is_some() && s.pressure.io.is_none());
        // Malformed present file: an error naming the file.
        w("memory.current", "lots\n");
        let e = read_stats(d.path()).unwrap_err().to_string();
        assert!(e.contains("memory.current"), "{e}");
        // No cgroup.events: not a cgroup directory.
        let empty = tempfile::tempdir().unwrap();
        assert!(read_stats(empty.path()).is_err());
    }
}

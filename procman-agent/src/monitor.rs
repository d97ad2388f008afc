//! The sampler: per-process usage (CPU%, RSS, IO rates, threads, state, nice) and system
//! totals, read from /proc on its own cadence (default every 2 s), never on the event path.
//!
//! Which processes exist comes from the process table (kept by events); the sampler only
//! measures them. Expensive per-process facts (open fds, sockets, cwd) are not sampled for
//! every process: they are read on demand for the detail view (`info`), because walking
//! /proc/PID/fd of 10,000 processes every 2 s would cost more than everything else together.
use crate::{
    events::bpf::SchedReader,
    history::{History, Sample},
    tree::ProcTable,
};
use procfs::{Current, CurrentSI};
use procman_common::api::{SchedInfo as Sched, SystemInfo};
use serde::Serialize;
use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

/// The latest sample of one process.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    #[serde(skip)]
    pub start_ticks: u64,
    /// One-letter state as in ps (R, S, D, Z, T, I, ...).
    pub state: char,
    /// Percent of one CPU over the last interval (can exceed 100 for multi-threaded processes).
    pub cpu_pct: f32,
    pub rss_bytes: u64,
    /// RSS as a percentage of the machine's memory.
    pub mem_pct: f32,
    pub threads: u32,
    pub nice: i32,
    /// Cumulative storage bytes (/proc/PID/io read_bytes, write_bytes; 0 when unreadable).
    pub read_bytes: u64,
    pub write_bytes: u64,
    /// Rates over the last interval, bytes per second.
    pub read_bps: f64,
    pub write_bps: f64,
    /// Total CPU time used, seconds.
    pub cpu_time_s: f64,
    /// The command line (read once per process: it only changes at exec).
    pub cmdline: Arc<str>,
    /// The cgroup v2 path (`0::` line of /proc/PID/cgroup).
    pub cgroup: Option<Arc<str>>,
    /// In-kernel scheduling statistics (BPF `sched_switch`), when collected.
    pub sched: Option<Sched>,
    #[serde(skip)]
    cpu_ticks: u64,
    #[serde(skip)]
    at: Option<Instant>,
}

/// System totals: the API's [`SystemInfo`] plus the /proc/stat counters the next CPU% needs.
#[derive(Debug, Clone, Default)]
pub struct SystemUsage {
    pub info: SystemInfo,
    /// (busy, total) jiffies of all CPUs at this sample.
    cpu_busy_total: (u64, u64),
}

pub struct Monitor {
    /// Per-process usage history (bounded rings, see `history`).
    pub history: std::sync::Mutex<History>,
    pub usage: RwLock<HashMap<u32, Usage>>,
    pub system: RwLock<SystemUsage>,
    /// Table entries whose process could not be found at the last sample.
    missing: std::sync::Mutex<std::collections::HashSet<(u32, u64)>>,
}

fn page_size() -> u64 {
    procfs::page_size()
}

fn ticks() -> f64 {
    procfs::ticks_per_second() as f64
}

/// Reads one process's usage; `prev` gives the deltas for rates.
fn sample_process(
    pid: u32,
    start_ticks: u64,
    prev: Option<&Usage>,
    mem_total: u64,
    now: Instant,
    sched: Option<&SchedReader>,
) -> Option<Usage> {
    let p = procfs::process::Process::new(pid as i32).ok()?;
    let stat = p.stat().ok()?;
    if start_ticks != 0 && stat.starttime != start_ticks {
        return None; // the pid now names another process; the table will learn it from events
    }
    let cpu_ticks = stat.utime + stat.stime;
    let rss_bytes = stat.rss * page_size();
    let (read_bytes, write_bytes) = p
        .io()
        .map(|io| (io.read_bytes, io.write_bytes))
        .unwrap_or((0, 0));
    let prev = prev.filter(|u| u.start_ticks == stat.starttime);
    let cmdline: Arc<str> = match prev {
        Some(u) => u.cmdline.clone(),
        None => p.cmdline().map(|v| v.join(" ")).unwrap_or_default().into(),
    };
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .and_then(|t| procman_cgroup::parse_proc_cgroup(&t))
        .map(Arc::from);
    let (cpu_pct, read_bps, write_bps) = match prev.and_then(|u| u.at.map(|at| (u, now - at))) {
        Some((u, dt)) if dt > Duration::from_millis(10) => {
            let secs = dt.as_secs_f64();
            (
                (cpu_ticks.saturating_sub(u.cpu_ticks) as f64 / ticks() / secs * 100.0) as f32,
                read_bytes.saturating_sub(u.read_bytes) as f64 / secs,
                write_bytes.saturating_sub(u.write_bytes) as f64 / secs,
            )
        }
        _ => (0.0, 0.0, 0.0),
    };
    let sched = sched.and_then(|r| r.get(pid)).map(|st| {
        let runq_wait_s = st.runq_ns as f64 / 1e9;
        let runq_wait_pct = match prev.and_then(|u| u.sched.map(|s| (s, u.at))) {
            Some((ps, Some(at))) if now > at => {
                ((runq_wait_s - ps.runq_wait_s).max(0.0) / (now - at).as_secs_f64() * 100.0) as f32
            }
            _ => 0.0,
        };
        Sched {
            oncpu_s: st.oncpu_ns as f64 / 1e9,
            runq_wait_s,
            runq_waits: st.runq_count,
            runq_max_ms: st.runq_max_ns as f64 / 1e6,
            runq_wait_pct,
        }
    });
    Some(Usage {
        sched,
        start_ticks: stat.starttime,
        state: stat.state,
        cpu_pct,
        rss_bytes,
        mem_pct: if mem_total > 0 {
            (rss_bytes as f64 / mem_total as f64 * 100.0) as f32
        } else {
            0.0
        },
        threads: stat.num_threads.max(0) as u32,
        nice: stat.nice as i32,
        read_bytes,
        write_bytes,
        read_bps,
        write_bps,
        cpu_time_s: cpu_ticks as f64 / ticks(),
        cmdline,
        cgroup,
        cpu_ticks,
        at: Some(now),
    })
}

/// Unix time, seconds.
pub fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

/// The pids /proc lists right now.
fn live_pids() -> std::collections::HashSet<u32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether /proc still shows the process (pid, start ticks), zombie or not.
fn still_there(pid: u32, start_ticks: u64) -> bool {
    procfs::process::Process::new(pid as i32)
        .and_then(|p| p.stat())
        .is_ok_and(|st| start_ticks == 0 || st.starttime == start_ticks)
}

fn psi_some10(kind: procman_cgroup::PressureKind) -> Option<f64> {
    use procman_cgroup::{ParseFile, Pressure};
    let path = std::path::Path::new(kind.proc_file());
    let text = std::fs::read_to_string(path).ok()?;
    Pressure::parse(path, &text).ok().map(|p| p.some.avg10)
}

fn sample_system(prev: &SystemUsage) -> SystemUsage {
    let mut s = SystemInfo {
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        ..Default::default()
    };
    if let Ok(m) = procfs::Meminfo::current() {
        s.mem_total_bytes = m.mem_total;
        s.mem_available_bytes = m.mem_available.unwrap_or(m.mem_free);
        s.mem_used_pct = if m.mem_total > 0 {
            ((m.mem_total - s.mem_available_bytes) as f64 / m.mem_total as f64 * 100.0) as f32
        } else {
            0.0
        };
        s.swap_total_bytes = m.swap_total;
        s.swap_free_bytes = m.swap_free;
    }
    if let Ok(l) = procfs::LoadAverage::current() {
        s.load = [l.one as f64, l.five as f64, l.fifteen as f64];
    }
    let mut cpu_busy_total = (0, 0);
    if let Ok(k) = procfs::KernelStats::current() {
        let t = &k.total;
        let idle = t.idle + t.iowait.unwrap_or(0);
        let total = t.user
            + t.nice
            + t.system
            + idle
            + t.irq.unwrap_or(0)
            + t.softirq.unwrap_or(0)
            + t.steal.unwrap_or(0);
        let busy = total - idle;
        cpu_busy_total = (busy, total);
        let (pb, pt) = prev.cpu_busy_total;
        if total > pt && pt > 0 {
            s.cpu_pct = (busy.saturating_sub(pb) as f64 / (total - pt) as f64 * 100.0) as f32;
        }
    }
    s.psi_cpu_some10 = psi_some10(procman_cgroup::PressureKind::Cpu);
    s.psi_memory_some10 = psi_some10(procman_cgroup::PressureKind::Memory);
    s.psi_io_some10 = psi_some10(procman_cgroup::PressureKind::Io);
    s.uptime_s = procfs::Uptime::current().map(|u| u.uptime).unwrap_or(0.0);
    SystemUsage {
        info: s,
        cpu_busy_total,
    }
}

impl Monitor {
    /// Samples every process in the table and the system totals (blocking /proc reads).
    ///
    /// Returns the table entries (pid, start ticks) that are gone: exited processes (zombies)
    /// that /proc no longer shows, i.e. were reaped; and live entries missing from /proc at
    /// this sample and the previous one, for which no exit event will come.
    pub fn sample(
        &self,
        table: &RwLock<ProcTable>,
        sched: Option<&SchedReader>,
    ) -> Vec<(u32, u64)> {
        let now = Instant::now();
        let prev_sys = self.system.read().map(|s| s.clone()).unwrap_or_default();
        let sys = sample_system(&prev_sys);
        // Which processes to sample: a snapshot of the table, taken without holding the lock
        // during the /proc reads.
        let ids: Vec<(u32, u64, bool)> = table // (pid, start, exited)
            .read()
            .map(|t| t.iter().map(|e| (e.pid, e.start_ticks, e.exited)).collect())
            .unwrap_or_default();
        let mut next = HashMap::with_capacity(ids.len());
        let mut missing = std::collections::HashSet::new();
        let mut reaped = Vec::new();
        {
            // readers (the API) share this lock; only the swap below excludes them
            let prev = self.usage.read().unwrap_or_else(|e| e.into_inner());
            // One readdir of /proc tells which pids exist: entries of processes that are gone
            // (most exited ones during a spawn storm) cost no per-process open.
            let live = live_pids();
            for &(pid, start, exited) in &ids {
                if !live.contains(&pid) {
                    if exited {
                        reaped.push((pid, start));
                    } else {
                        missing.insert((pid, start));
                    }
                    continue;
                }
                if exited {
                    // a zombie: nothing to measure; gone from /proc means reaped
                    if !still_there(pid, start) {
                        reaped.push((pid, start));
                    }
                    continue;
                }
                match sample_process(
                    pid,
                    start,
                    prev.get(&pid),
                    sys.info.mem_total_bytes,
                    now,
                    sched,
                ) {
                    Some(u) => {
                        next.insert(pid, u);
                    }
                    None => {
                        missing.insert((pid, start));
                    }
                }
            }
        }
        let mut vanished = {
            let mut prev_missing = self.missing.lock().unwrap_or_else(|e| e.into_inner());
            let v: Vec<(u32, u64)> = missing.intersection(&prev_missing).copied().collect();
            *prev_missing = missing;
            v
        };
        vanished.extend(reaped);
        self.record_history(&next, &ids, &vanished);
        if let Ok(mut u) = self.usage.write() {
            *u = next;
        }
        if let Ok(mut s) = self.system.write() {
            *s = sys;
        }
        vanished
    }

    pub fn new(history_samples: usize, history_retention_s: u32) -> Monitor {
        Monitor {
            history: std::sync::Mutex::new(History::new(history_samples, history_retention_s)),
            usage: Default::default(),
            system: Default::default(),
            missing: Default::default(),
        }
    }

    /// Appends this sample to each process's history; marks ended processes.
    fn record_history(
        &self,
        usage: &HashMap<u32, Usage>,
        ids: &[(u32, u64, bool)],
        gone: &[(u32, u64)],
    ) {
        let now = unix_now();
        let mut h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        for u in usage.iter().map(|(pid, u)| ((*pid, u.start_ticks), u)) {
            let (id, u) = u;
            h.push(
                id,
                Sample {
                    t: now,
                    repeat: 1,
                    cpu_pct: u.cpu_pct,
                    rss_kib: (u.rss_bytes / 1024).min(u32::MAX as u64) as u32,
                    read_bps: u.read_bps as f32,
                    write_bps: u.write_bps as f32,
                },
            );
        }
        for &(pid, start, exited) in ids {
            if exited {
                h.mark_exited((pid, start), now);
            }
        }
        for &id in gone {
            h.mark_exited(id, now);
        }
        h.prune(now);
    }

    pub fn get(&self, pid: u32) -> Option<Usage> {
        self.usage.read().ok()?.get(&pid).cloned()
    }
}

//! The sampler: per-process usage (CPU%, RSS, IO rates, threads, state, nice, run-queue wait)
//! and system totals, on its own cadence (default every 2 s), never on the event path.
//!
//! Two sources, chosen at start ([`Sampler::start`]) and reported by `procman status`:
//! - **iter** (the default where it loads): one BPF task-iterator sweep per tick
//!   ([`iter::TaskIter`]) reports, per process, CPU time, RSS, threads, state, nice, IO bytes,
//!   run-queue wait and its cgroup id, summed over threads in the kernel. Sweeps report only
//!   the processes whose usage changed since they were last reported; every
//!   `full_sweep_every`-th sweep reports all of them and reconciles. The command line is read
//!   from /proc once per process; the cgroup path once per cgroup id (and again when a
//!   process's cgroup id changes).
//! - **proc** (the fallback, or `[monitor] sampler = "proc"`): /proc/PID/{stat,io,schedstat,
//!   cgroup} per process per tick, ~22 µs each.
//!
//! Which processes exist comes from the process table (kept by events); the sampler only
//! measures them. Expensive per-process facts (open fds, sockets, cwd) are not sampled for
//! every process: they are read on demand for the detail view (`info`).
pub mod iter;

use crate::{
    events::sched::SchedReader,
    history::{History, IdHasher, IdMap, Sample},
    tree::{ns_to_ticks, ProcTable},
};

/// The latest usage per pid.
pub type UsageMap = IdMap<u32, Usage>;
type IdSet<T> = std::collections::HashSet<T, std::hash::BuildHasherDefault<IdHasher>>;
use anyhow::{bail, Result};
use procfs::{Current, CurrentSI};
use procman_common::{
    abi::{self, PmTaskSample},
    api::{SamplerKind, SamplerStatus, SchedInfo as Sched, SystemInfo},
};
use serde::Serialize;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

/// `[monitor] sampler`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SamplerChoice {
    /// The task iterator, falling back to /proc when it cannot be loaded (the reason is logged
    /// and shown by `procman status`).
    Auto,
    /// The task iterator or nothing: the agent refuses to start without it.
    Iter,
    /// /proc only.
    Proc,
}

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
    /// RSS growth over the last interval, bytes per second (negative when it shrank; 0 for
    /// a first sample): the policy engine's `mem_growth`.
    pub mem_growth_bps: f64,
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
    /// Scheduling statistics (on-CPU time, run-queue wait), when the kernel keeps them.
    pub sched: Option<Sched>,
    /// Total CPU time, ns (ticks * 10 ms from /proc).
    #[serde(skip)]
    cpu_ns: u64,
    /// The cgroup id the path was resolved for (iter; 0 when unknown).
    #[serde(skip)]
    cgroup_id: u64,
    /// Run-queue wait and runs as the kernel last reported them (sums over live threads, which
    /// drop when a thread exits), and the monotonic totals accumulated from their increases.
    #[serde(skip)]
    sched_raw: (u64, u64),
    #[serde(skip)]
    sched_total: (u64, u64),
    /// When these values were read, CLOCK_MONOTONIC ns (the clock of bpf_ktime_get_ns).
    #[serde(skip)]
    at_ns: u64,
    /// The sample that last set or carried this entry (entries not carried are dropped).
    #[serde(skip)]
    generation: u64,
}

impl Usage {
    /// Carries this usage one interval on, for a process the iterator did not report (nothing
    /// it measures changed): the same totals, zero rates.
    fn carry(&mut self, generation: u64) {
        self.cpu_pct = 0.0;
        self.mem_growth_bps = 0.0;
        self.read_bps = 0.0;
        self.write_bps = 0.0;
        if let Some(s) = &mut self.sched {
            s.runq_wait_percent = 0.0;
        }
        // at_ns stays: the values are the ones read then
        self.generation = generation;
    }
}

/// System totals: the API's [`SystemInfo`] plus the /proc/stat counters the next CPU% needs.
#[derive(Debug, Clone, Default)]
pub struct SystemUsage {
    pub info: SystemInfo,
    /// (busy, total) jiffies of all CPUs at this sample.
    cpu_busy_total: (u64, u64),
}

/// The iterator's state between sweeps.
struct IterState {
    iter: iter::TaskIter,
    /// Sweeps done; every `full_every`-th one is full.
    sweeps: u64,
    full_every: u32,
    /// Records of processes that had no live table entry when reported (their fork event was
    /// still on its way): used once the entry appears, until the next full sweep.
    pending: IdMap<u32, PmTaskSample>,
    /// cgroup id -> path (`0::` line of /proc/PID/cgroup), cleared at each full sweep so that
    /// a renamed cgroup is seen within one cycle.
    cgroup_paths: HashMap<u64, Option<Arc<str>>>,
    /// Live processes that /proc shows but the last full sweep did not report (seen: the init
    /// of a sandboxed host, hidden from task iterators): sampled from /proc every tick.
    proc_only: IdSet<(u32, u64)>,
}

/// The active sampling source.
pub struct Sampler {
    kind: SamplerKind,
    fallback_reason: Option<String>,
    iter: Option<IterState>,
}

impl Sampler {
    /// Starts the chosen source. `Auto` falls back to /proc with the reason logged.
    pub fn start(choice: SamplerChoice, full_sweep_every: u32) -> Result<Sampler> {
        if choice == SamplerChoice::Proc {
            return Ok(Sampler::proc(None));
        }
        match iter::TaskIter::load() {
            Ok(it) => Ok(Sampler {
                kind: SamplerKind::Iter,
                fallback_reason: None,
                iter: Some(IterState {
                    iter: it,
                    sweeps: 0, // the first tick's sweep is a full one
                    full_every: full_sweep_every.max(1),
                    pending: IdMap::default(),
                    cgroup_paths: HashMap::new(),
                    proc_only: IdSet::default(),
                }),
            }),
            Err(e) if choice == SamplerChoice::Iter => {
                bail!("monitor.sampler = \"iter\": the BPF task iterator is unavailable: {e:#}")
            }
            Err(e) => {
                let reason = format!("{e:#}");
                log::warn!(
                    "BPF task iterator unavailable: {reason}; sampling usage from /proc instead"
                );
                Ok(Sampler::proc(Some(reason)))
            }
        }
    }

    /// The /proc sampler (`reason`: why not the iterator, when it was wanted).
    pub fn proc(reason: Option<String>) -> Sampler {
        Sampler {
            kind: SamplerKind::Proc,
            fallback_reason: reason,
            iter: None,
        }
    }

    pub fn kind(&self) -> SamplerKind {
        self.kind
    }

    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }
}

/// The scheduling tracer as the monitor sees it: attached, failed, or not requested.
#[derive(Default)]
pub struct SchedTracer {
    pub reader: Option<SchedReader>,
    pub error: Option<String>,
}

#[derive(Default)]
struct Counters {
    samples: u64,
    last_ms: f64,
    last_cpu_ms: f64,
    last_sweep_cpu_ms: f64,
    last_records: u64,
}

/// CPU time of the calling thread (user + system), ms.
fn thread_cpu_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}

pub struct Monitor {
    /// Per-process usage history (bounded rings, see `history`).
    pub history: Mutex<History>,
    pub usage: RwLock<UsageMap>,
    pub system: RwLock<SystemUsage>,
    /// Table entries whose process could not be found at the last (full) sample.
    missing: Mutex<IdSet<(u32, u64)>>,
    /// Locked by the sampling task only.
    sampler: Mutex<Sampler>,
    sched: SchedTracer,
    interval: Duration,
    counters: Mutex<Counters>,
}

fn page_size() -> u64 {
    procfs::page_size()
}

fn ticks() -> f64 {
    procfs::ticks_per_second() as f64
}

fn pct(part: f64, whole: f64) -> f32 {
    if whole > 0.0 {
        (part / whole * 100.0) as f32
    } else {
        0.0
    }
}

/// The cgroup v2 path of `pid` (`0::` line of /proc/PID/cgroup).
fn read_cgroup(pid: u32) -> Option<Arc<str>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    procman_cgroup::parse_proc_cgroup(&text).map(Arc::from)
}

/// The command line of `pid`, arguments joined by spaces ("" for kernel threads).
fn read_cmdline(pid: u32) -> Arc<str> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let parts: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    parts.join(" ").into()
}

/// (run_delay ns, pcount) of the main thread, from /proc/PID/schedstat
/// ("sum_exec_runtime run_delay pcount").
fn read_schedstat(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
    let mut f = text.split_whitespace().skip(1).map(|v| v.parse::<u64>());
    Some((f.next()?.ok()?, f.next()?.ok()?))
}

/// Run-queue wait statistics from the kernel's cumulative counters: `raw` is (run_delay ns,
/// pcount) as read now; the totals only grow (a thread's share leaves the live sum when it
/// exits).
fn sched_from(
    raw: (u64, u64),
    max_ns: Option<u64>,
    cpu_ns: u64,
    prev: Option<&Usage>,
    dt_ns: u64,
) -> (Sched, (u64, u64)) {
    let total = match prev {
        Some(p) => (
            p.sched_total.0 + raw.0.saturating_sub(p.sched_raw.0),
            p.sched_total.1 + raw.1.saturating_sub(p.sched_raw.1),
        ),
        None => raw,
    };
    let runq_wait_pct = match prev {
        Some(p) if dt_ns > MIN_DT_NS => {
            pct(total.0.saturating_sub(p.sched_total.0) as f64, dt_ns as f64)
        }
        _ => 0.0,
    };
    (
        Sched {
            oncpu_seconds: cpu_ns as f64 / 1e9,
            runq_wait_seconds: total.0 as f64 / 1e9,
            runq_waits: total.1,
            runq_max_seconds: max_ns.map(|m| m as f64 / 1e9),
            runq_wait_percent: runq_wait_pct,
        },
        total,
    )
}

/// Rates are computed over at least this span.
const MIN_DT_NS: u64 = 10_000_000;

/// CLOCK_MONOTONIC now, ns: the clock bpf_ktime_get_ns() reads, so iterator records and /proc
/// reads share one time line.
fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Rates over `dt_ns` since `prev` was read: (cpu %, read B/s, write B/s).
fn rates(prev: Option<&Usage>, dt_ns: u64, cpu_ns: u64, rd: u64, wr: u64) -> (f32, f64, f64) {
    match prev {
        Some(u) if dt_ns > MIN_DT_NS => {
            let secs = dt_ns as f64 / 1e9;
            (
                pct(cpu_ns.saturating_sub(u.cpu_ns) as f64 / 1e9, secs),
                rd.saturating_sub(u.read_bytes) as f64 / secs,
                wr.saturating_sub(u.write_bytes) as f64 / secs,
            )
        }
        _ => (0.0, 0.0, 0.0),
    }
}

/// RSS growth since `prev` over `dt_ns`, bytes per second.
fn growth(prev: Option<&Usage>, dt_ns: u64, rss_bytes: u64) -> f64 {
    match prev {
        Some(u) if dt_ns > MIN_DT_NS => {
            (rss_bytes as f64 - u.rss_bytes as f64) / (dt_ns as f64 / 1e9)
        }
        _ => 0.0,
    }
}

/// Reads one process's usage from /proc; `prev` gives the deltas for rates.
fn sample_process(
    pid: u32,
    start_ticks: u64,
    prev: Option<&Usage>,
    mem_total: u64,
    tracer: Option<&SchedReader>,
) -> Option<Usage> {
    sample_process_in(pid, start_ticks, prev, mem_total, tracer, None)
}

/// [`sample_process`], with the cgroup (id, path) already known when `cgroup` is given (an
/// iterator record's id that the previous sample resolved): /proc/PID/cgroup is not read.
fn sample_process_in(
    pid: u32,
    start_ticks: u64,
    prev: Option<&Usage>,
    mem_total: u64,
    tracer: Option<&SchedReader>,
    cgroup: Option<(u64, Option<Arc<str>>)>,
) -> Option<Usage> {
    let p = procfs::process::Process::new(pid as i32).ok()?;
    // this process's own reading time: a sample of 10,000 processes takes most of a second
    let now = mono_ns();
    let stat = p.stat().ok()?;
    if start_ticks != 0 && stat.starttime != start_ticks {
        return None; // the pid now names another process; the table will learn it from events
    }
    let cpu_ns = ((stat.utime + stat.stime) as f64 / ticks() * 1e9) as u64;
    let rss_bytes = stat.rss * page_size();
    let (read_bytes, write_bytes) = p
        .io()
        .map(|io| (io.read_bytes, io.write_bytes))
        .unwrap_or((0, 0));
    let prev = prev.filter(|u| u.start_ticks == stat.starttime);
    let cmdline = match prev {
        Some(u) => u.cmdline.clone(),
        None => read_cmdline(pid),
    };
    let (cgroup_id, cgroup) = cgroup.unwrap_or_else(|| (0, read_cgroup(pid)));
    let dt_ns = prev.map_or(0, |u| now.saturating_sub(u.at_ns));
    let (cpu_pct, read_bps, write_bps) = rates(prev, dt_ns, cpu_ns, read_bytes, write_bytes);
    let traced = tracer.and_then(|r| r.get(pid));
    let (sched, sched_raw, sched_total) = match read_schedstat(pid) {
        Some(raw) => {
            let (s, total) = sched_from(raw, traced.map(|t| t.runq_max_ns), cpu_ns, prev, dt_ns);
            (Some(s), raw, total)
        }
        None => (None, (0, 0), (0, 0)),
    };
    Some(Usage {
        sched,
        start_ticks: stat.starttime,
        state: stat.state,
        cpu_pct,
        mem_growth_bps: growth(prev, dt_ns, rss_bytes),
        rss_bytes,
        mem_pct: pct(rss_bytes as f64, mem_total as f64),
        threads: stat.num_threads.max(0) as u32,
        nice: stat.nice as i32,
        read_bytes,
        write_bytes,
        read_bps,
        write_bps,
        cpu_time_s: cpu_ns as f64 / 1e9,
        cmdline,
        cgroup,
        cpu_ns,
        cgroup_id,
        sched_raw,
        sched_total,
        at_ns: now,
        generation: 0,
    })
}

/// One process's usage from an iterator record; `prev` gives the deltas for rates.
fn usage_from_record(
    r: &PmTaskSample,
    prev: Option<&Usage>,
    mem_total: u64,
    tracer: Option<&SchedReader>,
    cgroup_paths: &mut HashMap<u64, Option<Arc<str>>>,
) -> Usage {
    let start_ticks = ns_to_ticks(r.start_ns);
    let prev = prev.filter(|u| u.start_ticks == start_ticks);
    let rss_bytes = r.rss_pages * page_size();
    let (read_bytes, write_bytes) = if r.flags & abi::PM_TS_IO != 0 {
        (r.read_bytes, r.write_bytes)
    } else {
        (0, 0)
    };
    // the values were unchanged when the previous sweep passed by (or when prev was read)
    let dt_ns = prev.map_or(0, |u| r.ts_ns.saturating_sub(r.prev_ts_ns.max(u.at_ns)));
    let (cpu_pct, read_bps, write_bps) = rates(prev, dt_ns, r.oncpu_ns, read_bytes, write_bytes);
    let cmdline = match prev {
        Some(u) => u.cmdline.clone(),
        None => read_cmdline(r.tgid),
    };
    let cgroup = match prev {
        Some(u) if u.cgroup_id == r.cgroup_id => u.cgroup.clone(),
        _ => cgroup_paths
            .entry(r.cgroup_id)
            .or_insert_with(|| read_cgroup(r.tgid))
            .clone(),
    };
    let max_ns = tracer
        .and_then(|t| t.get(r.tgid))
        .map(|t| t.runq_max_ns)
        .or((r.flags & abi::PM_TS_MAX_DELAY != 0).then_some(r.max_delay_ns));
    let raw = (r.run_delay_ns, r.pcount);
    let (sched, sched_total) = if r.flags & abi::PM_TS_SCHED_INFO != 0 {
        let (s, t) = sched_from(raw, max_ns, r.oncpu_ns, prev, dt_ns);
        (Some(s), t)
    } else {
        (None, (0, 0))
    };
    Usage {
        start_ticks,
        state: r.state_char(),
        cpu_pct,
        mem_growth_bps: growth(prev, dt_ns, rss_bytes),
        rss_bytes,
        mem_pct: pct(rss_bytes as f64, mem_total as f64),
        threads: r.nr_threads,
        nice: r.nice,
        read_bytes,
        write_bytes,
        read_bps,
        write_bps,
        cpu_time_s: r.oncpu_ns as f64 / 1e9,
        cmdline,
        cgroup,
        sched,
        cpu_ns: r.oncpu_ns,
        cgroup_id: r.cgroup_id,
        sched_raw: raw,
        sched_total,
        at_ns: r.ts_ns,
        generation: 0,
    }
}

/// Unix time, seconds.
pub fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

/// The pids /proc lists right now.
fn live_pids() -> IdSet<u32> {
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
        s.memory_total_bytes = m.mem_total;
        s.memory_available_bytes = m.mem_available.unwrap_or(m.mem_free);
        s.memory_percent = if m.mem_total > 0 {
            ((m.mem_total - s.memory_available_bytes) as f64 / m.mem_total as f64 * 100.0) as f32
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
            s.cpu_percent = (busy.saturating_sub(pb) as f64 / (total - pt) as f64 * 100.0) as f32;
        }
    }
    s.psi_cpu_some_avg10 = psi_some10(procman_cgroup::PressureKind::Cpu);
    s.psi_memory_some_avg10 = psi_some10(procman_cgroup::PressureKind::Memory);
    s.psi_io_some_avg10 = psi_some10(procman_cgroup::PressureKind::Io);
    s.uptime_seconds = procfs::Uptime::current().map(|u| u.uptime).unwrap_or(0.0);
    SystemUsage {
        info: s,
        cpu_busy_total,
    }
}

/// The new usage one sample found.
enum NewUsage {
    /// Every process, replacing the map (the /proc sampler).
    All(UsageMap),
    /// The processes that changed (the iterator): `set` replaces their entries; the live
    /// entries in `keep` (pid, start) keep their totals with zero rates; all others go. Applied
    /// in place, so that an idle process costs no copy.
    Changed {
        set: Vec<(u32, Usage)>,
        keep: Vec<(u32, u64)>,
    },
}

/// What one sample found, for the bookkeeping shared by both sources.
struct Sweep {
    usage: NewUsage,
    /// Live entries not found (only known at /proc samples and full sweeps).
    missing: Option<IdSet<(u32, u64)>>,
    /// Exited entries no longer shown: reaped.
    reaped: Vec<(u32, u64)>,
    records: u64,
    /// CPU time of the iterator sweep (kernel side), ms.
    sweep_cpu_ms: f64,
}

impl Monitor {
    pub fn new(
        history_samples: usize,
        history_retention_s: u32,
        interval: Duration,
        sampler: Sampler,
        sched: SchedTracer,
    ) -> Monitor {
        Monitor {
            history: Mutex::new(History::new(history_samples, history_retention_s)),
            usage: Default::default(),
            system: Default::default(),
            missing: Default::default(),
            sampler: Mutex::new(sampler),
            sched,
            interval,
            counters: Default::default(),
        }
    }

    /// Which sampler runs, how it did, and the scheduling tracer's state.
    /// Samples completed since the agent started.
    pub fn samples(&self) -> u64 {
        self.counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .samples
    }

    pub fn status(&self) -> SamplerStatus {
        let (kind, fallback_reason, full_sweep_every) = {
            let s = self.sampler.lock().unwrap_or_else(|e| e.into_inner());
            (
                s.kind,
                s.fallback_reason.clone(),
                s.iter.as_ref().map_or(0, |i| i.full_every),
            )
        };
        let c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        SamplerStatus {
            kind,
            fallback_reason,
            interval_seconds: self.interval.as_secs_f64(),
            full_sweep_every,
            samples: c.samples,
            last_sample_seconds: c.last_ms / 1000.0,
            last_sample_cpu_seconds: c.last_cpu_ms / 1000.0,
            last_sweep_cpu_seconds: c.last_sweep_cpu_ms / 1000.0,
            last_records: c.last_records,
            sched_tracing: self.sched.reader.is_some(),
            sched_tracing_error: self.sched.error.clone(),
        }
    }

    /// Samples every process in the table and the system totals (blocking: BPF iterator
    /// reads or /proc reads; run it off the async workers).
    ///
    /// Returns the table entries (pid, start ticks) that are gone: exited processes (zombies)
    /// that the kernel no longer shows, i.e. were reaped; and live entries missing at this
    /// sample and the previous one (full sweeps only, for the iterator), for which no exit
    /// event will come.
    pub fn sample(&self, table: &RwLock<ProcTable>) -> Vec<(u32, u64)> {
        let t0 = Instant::now();
        let cpu0 = thread_cpu_ms();
        let prev_sys = self.system.read().map(|s| s.clone()).unwrap_or_default();
        let sys = sample_system(&prev_sys);
        // Which processes to sample: a snapshot of the table, taken without holding the lock
        // during the reads.
        let ids: Vec<(u32, u64, bool)> = table // (pid, start, exited)
            .read()
            .map(|t| t.iter().map(|e| (e.pid, e.start_ticks, e.exited)).collect())
            .unwrap_or_default();
        let mem_total = sys.info.memory_total_bytes;
        let sweep = {
            let mut sampler = self.sampler.lock().unwrap_or_else(|e| e.into_inner());
            // readers (the API) share this lock; only the swap below excludes them
            let prev = self.usage.read().unwrap_or_else(|e| e.into_inner());
            let iter_result = sampler
                .iter
                .as_mut()
                .map(|st| self.sample_iter(st, &ids, &prev, mem_total));
            match iter_result {
                Some(Ok(s)) => s,
                Some(Err(e)) => {
                    let reason = format!("the task iterator failed: {e:#}");
                    log::error!("{reason}; sampling usage from /proc from now on");
                    *sampler = Sampler::proc(Some(reason));
                    self.sample_proc(&ids, &prev, mem_total)
                }
                None => self.sample_proc(&ids, &prev, mem_total),
            }
        };
        let mut vanished = match sweep.missing {
            Some(missing) => {
                let mut prev_missing = self.missing.lock().unwrap_or_else(|e| e.into_inner());
                let v: Vec<(u32, u64)> = missing.intersection(&prev_missing).copied().collect();
                *prev_missing = missing;
                v
            }
            None => Vec::new(),
        };
        vanished.extend(sweep.reaped);
        {
            // readers wait only for these in-memory updates
            let mut u = self.usage.write().unwrap_or_else(|e| e.into_inner());
            match sweep.usage {
                NewUsage::All(next) => *u = next,
                NewUsage::Changed { set, keep } => {
                    let generation = self
                        .counters
                        .lock()
                        .map(|c| c.samples + 1)
                        .unwrap_or_default();
                    for (pid, mut usage) in set {
                        usage.generation = generation;
                        u.insert(pid, usage);
                    }
                    for (pid, start) in keep {
                        if let Some(e) = u.get_mut(&pid) {
                            if e.generation != generation && (e.start_ticks == start || start == 0)
                            {
                                e.carry(generation);
                            }
                        }
                    }
                    u.retain(|_, e| e.generation == generation);
                }
            }
        }
        self.record_history(&ids, &vanished);
        if let Ok(mut s) = self.system.write() {
            *s = sys;
        }
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        c.samples += 1;
        c.last_ms = t0.elapsed().as_secs_f64() * 1e3;
        c.last_records = sweep.records;
        c.last_cpu_ms = thread_cpu_ms() - cpu0;
        c.last_sweep_cpu_ms = sweep.sweep_cpu_ms;
        vanished
    }

    /// The /proc sampler: every table entry's files, every tick.
    fn sample_proc(&self, ids: &[(u32, u64, bool)], prev: &UsageMap, mem_total: u64) -> Sweep {
        let mut next = UsageMap::with_capacity_and_hasher(ids.len(), Default::default());
        let mut missing = IdSet::default();
        let mut reaped = Vec::new();
        // One readdir of /proc tells which pids exist: entries of processes that are gone
        // (most exited ones during a spawn storm) cost no per-process open.
        let live = live_pids();
        for &(pid, start, exited) in ids {
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
                mem_total,
                self.sched.reader.as_ref(),
            ) {
                Some(u) => {
                    next.insert(pid, u);
                }
                None => {
                    missing.insert((pid, start));
                }
            }
        }
        let records = next.len() as u64;
        Sweep {
            usage: NewUsage::All(next),
            missing: Some(missing),
            reaped,
            records,
            sweep_cpu_ms: 0.0,
        }
    }

    /// The iterator sampler: one sweep; processes it did not report keep their totals with
    /// zero rates.
    fn sample_iter(
        &self,
        st: &mut IterState,
        ids: &[(u32, u64, bool)],
        prev: &UsageMap,
        mem_total: u64,
    ) -> Result<Sweep> {
        let full = st.sweeps.is_multiple_of(u64::from(st.full_every));
        st.sweeps += 1;
        let cpu0 = thread_cpu_ms();
        let records = st.iter.sweep(full)?;
        let sweep_cpu_ms = thread_cpu_ms() - cpu0;
        if full {
            st.pending.clear();
            st.cgroup_paths.clear();
            st.proc_only.clear();
        }
        // tgid -> index of its record
        let reported: IdMap<u32, usize> = records
            .iter()
            .enumerate()
            .map(|(i, r)| (r.tgid, i))
            .collect();
        let tracer = self.sched.reader.as_ref();
        let mut set = Vec::with_capacity(records.len());
        let mut keep = Vec::with_capacity(ids.len());
        let mut missing = IdSet::default();
        let mut reaped = Vec::new();
        let mut matched = IdSet::default();
        let mut proc_reads = 0u64;
        for &(pid, start, exited) in ids {
            let same = |r: &PmTaskSample| start == 0 || ns_to_ticks(r.start_ns) == start;
            let rec = reported
                .get(&pid)
                .and_then(|&i| records.get(i))
                .filter(same);
            if exited {
                // exiting processes and zombies are in every sweep: absent means reaped
                if rec.is_none() {
                    reaped.push((pid, start));
                }
                continue;
            }
            let Some(r) = rec.or_else(|| st.pending.get(&pid).copied().filter(same)) else {
                // not reported: unchanged since the last sweep, gone, or not visible to the
                // iterator (then /proc tells)
                if full || st.proc_only.contains(&(pid, start)) {
                    proc_reads += 1;
                    match sample_process(pid, start, prev.get(&pid), mem_total, tracer) {
                        Some(u) => {
                            st.proc_only.insert((pid, start));
                            set.push((pid, u));
                        }
                        None => {
                            missing.insert((pid, start));
                        }
                    }
                } else {
                    keep.push((pid, start));
                }
                continue;
            };
            matched.insert(pid);
            if r.flags & abi::PM_TS_TRUNCATED != 0 {
                // more threads than the kernel side walks: /proc has the exact sums (the
                // record is counted once; the cgroup path is read again only when it moved)
                let p = prev.get(&pid);
                let path = match p {
                    Some(u) if u.cgroup_id != 0 && u.cgroup_id == r.cgroup_id => u.cgroup.clone(),
                    _ => st
                        .cgroup_paths
                        .entry(r.cgroup_id)
                        .or_insert_with(|| read_cgroup(pid))
                        .clone(),
                };
                let known = Some((r.cgroup_id, path));
                if let Some(u) = sample_process_in(pid, start, p, mem_total, tracer, known) {
                    set.push((pid, u));
                }
                continue;
            }
            let u = usage_from_record(&r, prev.get(&pid), mem_total, tracer, &mut st.cgroup_paths);
            set.push((pid, u));
        }
        // reported before the table knew them: keep for when their entry appears
        for r in records.iter() {
            if !matched.contains(&r.tgid) && r.flags & abi::PM_TS_EXITING == 0 {
                st.pending.insert(r.tgid, r);
            }
        }
        st.pending.retain(|pid, _| !matched.contains(pid));
        Ok(Sweep {
            usage: NewUsage::Changed { set, keep },
            missing: full.then_some(missing),
            reaped,
            records: records.len() as u64 + proc_reads,
            sweep_cpu_ms,
        })
    }

    /// Appends this sample to each process's history; marks ended processes.
    fn record_history(&self, ids: &[(u32, u64, bool)], gone: &[(u32, u64)]) {
        let now = unix_now();
        let usage = self.usage.read().unwrap_or_else(|e| e.into_inner());
        let mut h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        for (pid, u) in usage.iter() {
            h.push(
                (*pid, u.start_ticks),
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

    /// One process's usage read from /proc now (no rates), for a process the sampler has not
    /// seen yet; `None` when it is gone or `start_ticks` no longer matches.
    pub fn read_now(&self, pid: u32, start_ticks: u64) -> Option<Usage> {
        let mem_total = self
            .system
            .read()
            .map(|s| s.info.memory_total_bytes)
            .unwrap_or(0);
        sample_process(pid, start_ticks, None, mem_total, None)
    }
}

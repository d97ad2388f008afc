//! Hold-at-exec: a matched program is stopped before it runs a single instruction, placed, and
//! resumed, so nothing it does (allocate, fork, spin) happens outside its slice.
//!
//! **Mechanism.** The BPF exec program (`procman-ebpf/src/procman.bpf.c`, `handle_exec`) looks
//! the new comm up in `hold_comms` (the `comm` of every rule with `hold = "auto"`, set with the
//! other exec filters by `crate::events::ExecControl`). On a hit it
//! records the task in the `held` map (tgid → start time, time held), sends it SIGSTOP with
//! `bpf_send_signal` and flags its exec record. The signal is taken on the way back to user
//! space, so the new program has executed nothing. Placement (`crate::placement`) moves the
//! process through the slice's open `cgroup.procs` and then calls [`Holds::release`]: SIGCONT
//! through a pidfd opened and checked against the recorded start time (a reused pid is never
//! signalled). A held exec that no rule ends up matching (the `comm` prefilter passed, a
//! `cmdline` condition did not) is released the same way, without a move.
//!
//! **What may observe the stop.** A stop is a job-control event: the parent gets SIGCHLD
//! (`CLD_STOPPED`, then `CLD_CONTINUED`) unless it set `SA_NOCLDSTOP`, and a parent blocked in
//! `waitpid(…, WUNTRACED)` returns with the stop. Hence what is never held (decided in BPF):
//! tasks with a controlling terminal (an interactive shell's job control waits with `WUNTRACED`
//! and would print "Stopped"), traced tasks (the tracer would see the signal), pid 1 and the
//! agent. What is left (daemons, services, batch jobs, anything started without a terminal)
//! sees a stop only through a parent that waits with `WUNTRACED` or counts `SIGCHLD`s; rules
//! for such parents' children take `hold = "never"`. A parent's plain `waitpid`/`wait4`
//! without `WUNTRACED`, and `SIGCHLD` handlers that reap with `WNOHANG`, see nothing.
//!
//! **Bounds.** The map is pinned under [`PIN_DIR`] (one pin per agent, named by its cgroup
//! root) so it outlives the agent: an agent killed while a
//! task was held is replaced by one that finds the entry and releases the task after its start
//! sweep has placed it ([`Holds::take_orphans`]). A watchdog thread releases any hold older
//! than [`TIMEOUT`] (counted as `timed_out`), so a stuck mover delays a program by at most that.
//! Without a BPF filesystem to pin in, holding is off ([`availability`]): an unpinned hold
//! could outlive a killed agent with nobody left to release it.
use crate::actions::pidfd::Pidfd;
use crate::events::monotonic_now_ns as now_monotonic_ns;
use anyhow::{Context, Result};
use aya::{
    maps::{HashMap as BpfHashMap, Map, MapData},
    Ebpf,
};
use procman_common::abi::PmHold;
use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::Duration,
};

/// Where the `held` maps are pinned: `<PIN_DIR>/<cgroup root>/held`.
pub const PIN_DIR: &str = "/sys/fs/bpf/procman";
/// The longest a task stays held: the watchdog releases it after this.
pub const TIMEOUT: Duration = Duration::from_millis(250);
/// How often the watchdog looks.
const WATCHDOG_EVERY: Duration = Duration::from_millis(50);
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// `struct pm_hold` as a map value (aya's Pod is implemented here because the type lives in
/// procman-common, which does not depend on aya).
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct HoldValue(pub PmHold);

// SAFETY: repr(C) struct of two u64, no padding; every bit pattern is valid.
unsafe impl aya::Pod for HoldValue {}

/// The pin directory's name for an agent managing cgroup root `root` (bpffs refuses names
/// with a dot, which it reserves: `procman.slice` -> `procman-slice`).
pub fn instance_name(root: &str) -> String {
    root.replace(['/', '.'], "-")
}

/// Why holding cannot work on this machine, if it cannot.
pub fn availability() -> std::result::Result<(), String> {
    let bpffs = Path::new(PIN_DIR).parent().unwrap_or(Path::new("/"));
    match nix::sys::statfs::statfs(bpffs) {
        Ok(s) if s.filesystem_type().0 == BPF_FS_MAGIC => Ok(()),
        _ => Err(format!(
            "no BPF filesystem at {} (held tasks are recorded in a pinned map, so that an agent \
             killed while holding one is replaced by one that releases it; mount it with \
             `mount -t bpf bpf {}`, as systemd does at boot)",
            bpffs.display(),
            bpffs.display()
        )),
    }
}

/// Whether execs can be held here: the running [`Holds`], or why not.
#[derive(Clone)]
pub enum Support {
    Active(std::sync::Arc<Holds>),
    Off(String),
}

impl Support {
    pub fn holds(&self) -> Option<&std::sync::Arc<Holds>> {
        match self {
            Support::Active(h) => Some(h),
            Support::Off(_) => None,
        }
    }
}

/// Counters, read by the API and metrics.
#[derive(Default, Debug)]
pub struct HoldStats {
    /// Released after placement (or after no rule matched).
    pub released: AtomicU64,
    /// Released by the watchdog after [`TIMEOUT`].
    pub timed_out: AtomicU64,
    /// Left by a previous agent and released by this one.
    pub orphans: AtomicU64,
    /// Exited (killed) while held.
    pub gone: AtomicU64,
}

/// The held tasks of the running BPF object (the comm names to hold are set with the other
/// exec filters, `crate::events::ExecControl`).
pub struct Holds {
    held: Mutex<BpfHashMap<MapData, u32, HoldValue>>,
    /// Entries a previous agent left in its pinned map (released after the start sweep).
    orphans: Mutex<Vec<(u32, PmHold)>>,
    /// Where `held` is pinned.
    pin: PathBuf,
    pub stats: HoldStats,
}

impl Holds {
    /// Takes the `held` map of the loaded event object and pins it at
    /// `<PIN_DIR>/<instance>/held`, after reading (and unpinning) what a previous agent of the
    /// same instance left there.
    pub fn attach(ebpf: &mut Ebpf, instance: &str) -> Result<Holds> {
        availability().map_err(anyhow::Error::msg)?;
        let dir = Path::new(PIN_DIR).join(instance);
        let pin = dir.join("held");
        let pin = pin.as_path();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let orphans = if pin.exists() {
            let old = read_pinned(pin);
            std::fs::remove_file(pin).with_context(|| format!("unpinning {}", pin.display()))?;
            old
        } else {
            Vec::new()
        };
        let held = ebpf.take_map("held").context("map held missing")?;
        held.pin(pin)
            .with_context(|| format!("pinning the held map at {}", pin.display()))?;
        let held = BpfHashMap::try_from(held)?;
        if !orphans.is_empty() {
            log::warn!(
                "{} task(s) held by a previous agent: they are released after the start sweep",
                orphans.len()
            );
        }
        Ok(Holds {
            held: Mutex::new(held),
            orphans: Mutex::new(orphans),
            pin: pin.to_path_buf(),
            stats: HoldStats::default(),
        })
    }

    /// Where the held map is pinned.
    pub fn pin(&self) -> &Path {
        &self.pin
    }

    /// Tasks held now.
    pub fn count(&self) -> usize {
        let map = self.held.lock().unwrap_or_else(|e| e.into_inner());
        map.keys().count()
    }

    /// Resumes the held process `pid` (started at `start_ns`), if it is still held. Returns how
    /// long it was held. The entry goes first, so the watchdog and the mover never both signal.
    pub fn release(&self, pid: u32, start_ns: u64) -> Option<Duration> {
        let entry = {
            let mut map = self.held.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(&pid, 0) {
                Ok(v) if v.0.start_ns == start_ns => {
                    let _ = map.remove(&pid);
                    v.0
                }
                _ => return None, // released already (the watchdog), or another process
            }
        };
        if self.resume(pid, entry) {
            self.stats.released.fetch_add(1, Ordering::Relaxed);
        }
        Some(Duration::from_nanos(
            now_monotonic_ns().saturating_sub(entry.held_ns),
        ))
    }

    /// What a previous agent left held, taken once: the caller releases each after the start
    /// sweep's moves ([`crate::placement::Placement::release_after_moves`] queues the release
    /// behind them on the mover).
    pub fn take_orphans(&self) -> Vec<(u32, PmHold)> {
        std::mem::take(&mut *self.orphans.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Resumes an orphan (see [`Holds::take_orphans`]).
    pub fn release_orphan(&self, pid: u32, hold: PmHold) {
        if self.resume(pid, hold) {
            self.stats.orphans.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Releases every hold older than [`TIMEOUT`]; returns how many.
    pub fn expire(&self) -> usize {
        let now = now_monotonic_ns();
        let bound = TIMEOUT.as_nanos() as u64;
        let stale: Vec<(u32, PmHold)> = {
            let mut map = self.held.lock().unwrap_or_else(|e| e.into_inner());
            let stale: Vec<(u32, PmHold)> = map
                .iter()
                .filter_map(|r| r.ok())
                .filter(|(_, v)| now.saturating_sub(v.0.held_ns) > bound)
                .map(|(k, v)| (k, v.0))
                .collect();
            for (pid, _) in &stale {
                let _ = map.remove(pid);
            }
            stale
        };
        for &(pid, hold) in &stale {
            log::warn!("pid {pid}: held for more than {TIMEOUT:?} without being placed; released");
            if self.resume(pid, hold) {
                self.stats.timed_out.fetch_add(1, Ordering::Relaxed);
            }
        }
        stale.len()
    }

    /// Starts the watchdog thread ([`Holds::expire`] every 50 ms).
    pub fn start_watchdog(self: &std::sync::Arc<Self>) -> Result<()> {
        let me = std::sync::Arc::downgrade(self);
        std::thread::Builder::new()
            .name("hold-watchdog".into())
            .spawn(move || {
                while let Some(h) = me.upgrade() {
                    h.expire();
                    drop(h);
                    std::thread::sleep(WATCHDOG_EVERY);
                }
            })?;
        Ok(())
    }

    /// At a clean exit (after the exec program was told to hold nothing more): every task
    /// still held is resumed, and the pin is removed.
    pub fn shutdown(&self) {
        let all: Vec<(u32, PmHold)> = {
            let mut map = self.held.lock().unwrap_or_else(|e| e.into_inner());
            let all: Vec<(u32, PmHold)> = map
                .iter()
                .filter_map(|r| r.ok())
                .map(|(k, v)| (k, v.0))
                .collect();
            for (pid, _) in &all {
                let _ = map.remove(pid);
            }
            all
        };
        for (pid, hold) in all {
            if self.resume(pid, hold) {
                self.stats.released.fetch_add(1, Ordering::Relaxed);
            }
        }
        let _ = std::fs::remove_file(&self.pin);
        if let Some(dir) = self.pin.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }

    /// SIGCONT through a pidfd, to the process that was held: the pidfd first, then its start
    /// time from /proc/PID/stat (one read; a reused pid is never signalled). Not the actions'
    /// full target check: the kernel side never holds pid 1, kernel threads or the agent.
    /// False when it is gone (counted) or could not be signalled.
    fn resume(&self, pid: u32, hold: PmHold) -> bool {
        let same = |fd: &Pidfd| {
            procman_cgroup::procs::start_time_of(pid)
                .is_ok_and(|t| t == crate::tree::ns_to_ticks(hold.start_ns))
                && !fd.exited()
        };
        match Pidfd::open(pid) {
            Ok(fd) if same(&fd) => match fd.signal(libc::SIGCONT) {
                Ok(()) => true,
                Err(e) => {
                    log::warn!("pid {pid}: resuming a held process: {e}");
                    false
                }
            },
            _ => {
                // exited (killed while held), or the pid is another process now
                self.stats.gone.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

/// The entries of a pinned `held` map (a previous agent's).
fn read_pinned(pin: &Path) -> Vec<(u32, PmHold)> {
    let map = MapData::from_pin(pin)
        .map_err(anyhow::Error::from)
        .and_then(|d| Ok(Map::from_map_data(d)?))
        .and_then(|m| Ok(BpfHashMap::<MapData, u32, HoldValue>::try_from(m)?));
    match map {
        Ok(m) => m
            .iter()
            .filter_map(|r| r.ok())
            .map(|(k, v)| (k, v.0))
            .collect(),
        Err(e) => {
            log::warn!(
                "reading the held tasks a previous agent pinned at {}: {e:#}",
                pin.display()
            );
            Vec::new()
        }
    }
}

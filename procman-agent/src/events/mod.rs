//! Event sources: the kernel's process lifecycle events as a stream of [`SourceMsg`].
//!
//! The preferred source is BPF ([`bpf`]); when it cannot be loaded (no BTF, no CAP_BPF, old
//! kernel) the agent says exactly why and falls back to the netlink proc connector
//! ([`netlink`]). Both push into the same bounded channel; the consumer (the agent core) does
//! not know which one is active except through [`SourceInfo`].
pub mod bpf;
pub mod netlink;
pub mod sched;

use procman_common::api::{ProcEvent, SourceKind};
use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};
use tokio::sync::mpsc;

/// Now on CLOCK_MONOTONIC, in ns: the clock of the kernel's event timestamps
/// ([`ProcEvent::ts_ns`], the BPF `bpf_ktime_get_ns()`), for latencies measured against them.
pub fn monotonic_now_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// What a source sends to the agent core.
#[derive(Debug)]
pub enum SourceMsg {
    Event(ProcEvent),
    /// `n` records were lost since the last report (ring full, ENOBUFS). The consumer must
    /// resynchronise its view from /proc.
    Lost(u64),
}

/// Which source requested in the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceChoice {
    /// BPF, falling back to netlink when BPF cannot be loaded.
    Auto,
    Bpf,
    Netlink,
}

/// Options that shape what the sources deliver.
#[derive(Clone, Debug)]
pub struct SourceOptions {
    /// Report thread fork/exit too.
    pub threads: bool,
    /// BPF ring buffer size in bytes (a power of two, multiple of the page size).
    pub ring_bytes: u32,
    /// Records pending before the kernel wakes the reader.
    pub wakeup_batch: u32,
    /// Timer poll of the ring, so batched records never wait long.
    pub poll_interval: std::time::Duration,
    /// Attach the scheduling tracer (sched_switch/sched_wakeup; see [`sched`]).
    pub sched_stats: bool,
    /// Which agent this is (its cgroup root): names the pin of its held-task map, so agents
    /// managing different roots never release each other's holds.
    pub instance: String,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            threads: false,
            ring_bytes: 4 << 20,
            wakeup_batch: 64,
            poll_interval: std::time::Duration::from_millis(50),
            sched_stats: false,
            instance: crate::hold::instance_name(procman_cgroup::DEFAULT_ROOT),
        }
    }
}

/// Counters a source keeps, readable at any time (API, metrics).
#[derive(Default, Debug)]
pub struct SourceCounters {
    /// Records the kernel side wrote (BPF only).
    pub kernel_submitted: AtomicU64,
    /// Records the kernel side could not deliver.
    pub dropped: AtomicU64,
}

impl SourceCounters {
    pub fn submitted(&self) -> u64 {
        self.kernel_submitted.load(Ordering::Relaxed)
    }
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// What placement tells the kernel's exec program (BPF source only): the comm names whose
/// exec wakes the reader at once, those held until placed, and the held tasks. Set from the
/// rules at every placement start (so a reload's rules apply at once) and cleared without
/// rules.
#[derive(Clone)]
pub struct ExecControl {
    pub comms: Option<Arc<bpf::CommFilters>>,
    pub hold: crate::hold::Support,
}

impl ExecControl {
    /// Makes `urgent` and `hold` the comm names the exec program acts on (`hold` only where
    /// holding is available).
    pub fn set(&self, urgent: &[String], hold: &[String]) -> anyhow::Result<()> {
        match &self.comms {
            Some(c) => c.set(urgent, if self.holds().is_some() { hold } else { &[] }),
            None => Ok(()),
        }
    }

    /// The held tasks, where holding is available.
    pub fn holds(&self) -> Option<&Arc<crate::hold::Holds>> {
        self.hold.holds()
    }
}

/// The running source.
pub struct SourceInfo {
    pub kind: SourceKind,
    /// Why BPF is not in use (set when the netlink fallback is active).
    pub fallback_reason: Option<String>,
    pub counters: Arc<SourceCounters>,
    /// What placement can tell the kernel's exec program (BPF only).
    pub exec: ExecControl,
    /// Keeps the source alive (BPF links, sockets); dropping it detaches.
    _guard: Box<dyn Send + Sync>,
}

impl SourceInfo {
    pub(crate) fn new(
        kind: SourceKind,
        counters: Arc<SourceCounters>,
        guard: Box<dyn Send + Sync>,
    ) -> Self {
        SourceInfo {
            kind,
            fallback_reason: None,
            counters,
            exec: ExecControl {
                comms: None,
                hold: crate::hold::Support::Off(
                    "the netlink event source cannot stop a task at exec (BPF only)".into(),
                ),
            },
            _guard: guard,
        }
    }
}

/// Capacity of the channel between a source and the core. The BPF ring is the real buffer;
/// this only smooths bursts.
pub const CHANNEL_CAPACITY: usize = 16 * 1024;

/// Starts the chosen source. With [`SourceChoice::Auto`], a BPF failure is logged with its
/// reason and the netlink connector is tried; if both fail, both reasons are returned.
pub fn start(
    choice: SourceChoice,
    opts: &SourceOptions,
) -> anyhow::Result<(SourceInfo, mpsc::Receiver<SourceMsg>)> {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    match choice {
        SourceChoice::Bpf => Ok((bpf::start(opts, tx)?, rx)),
        SourceChoice::Netlink => Ok((netlink::start(opts, tx)?, rx)),
        SourceChoice::Auto => match bpf::start(opts, tx.clone()) {
            Ok(info) => Ok((info, rx)),
            Err(bpf_err) => {
                let reason = format!("{bpf_err:#}");
                log::warn!(
                    "BPF event source unavailable: {reason}; falling back to the netlink proc connector"
                );
                match netlink::start(opts, tx) {
                    Ok(mut info) => {
                        info.fallback_reason = Some(reason);
                        Ok((info, rx))
                    }
                    Err(nl_err) => Err(anyhow::anyhow!(
                        "no event source available: BPF: {reason}; netlink proc connector: {nl_err:#}"
                    )),
                }
            }
        },
    }
}

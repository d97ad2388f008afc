//! JSON types of the agent's HTTP API. `procman --json` prints exactly these, so they are a
//! stable interface: add fields, never rename or remove them.
use crate::units::Timestamp;
use serde::{Deserialize, Serialize};
use std::{fmt, sync::Arc};

/// What happened to a process.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Fork,
    Exec,
    Exit,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Fork => "fork",
            EventKind::Exec => "exec",
            EventKind::Exit => "exit",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fork" => Ok(EventKind::Fork),
            "exec" => Ok(EventKind::Exec),
            "exit" => Ok(EventKind::Exit),
            _ => Err(format!(
                "unknown event kind {s:?}: expected fork, exec or exit"
            )),
        }
    }
}

/// The order of a process list (`?sort=`, `procman ps --sort`): cpu, mem, io, time (CPU time
/// used) biggest first, pid ascending, age oldest first.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SortKey {
    #[default]
    Cpu,
    #[serde(alias = "memory", alias = "rss")]
    Mem,
    Io,
    /// CPU time used (user + system), like top's `TIME+`.
    Time,
    Pid,
    Age,
}

impl SortKey {
    pub const ALL: [SortKey; 6] = [
        SortKey::Cpu,
        SortKey::Mem,
        SortKey::Io,
        SortKey::Time,
        SortKey::Pid,
        SortKey::Age,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::Cpu => "cpu",
            SortKey::Mem => "mem",
            SortKey::Io => "io",
            SortKey::Time => "time",
            SortKey::Pid => "pid",
            SortKey::Age => "age",
        }
    }
}

impl fmt::Display for SortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SortKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "cpu" => SortKey::Cpu,
            "mem" | "memory" | "rss" => SortKey::Mem,
            "io" => SortKey::Io,
            "time" => SortKey::Time,
            "pid" => SortKey::Pid,
            "age" => SortKey::Age,
            _ => {
                return Err(format!(
                    "unknown sort key {s:?}: expected cpu, mem, io, time, pid or age"
                ))
            }
        })
    }
}

/// A task's comm (at most 15 bytes), kept inline so decoding an event does not allocate.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Comm {
    len: u8,
    bytes: [u8; 16],
}

impl Comm {
    /// From a NUL-terminated (or full) kernel buffer.
    pub fn from_bytes(b: &[u8]) -> Comm {
        let mut c = Comm::default();
        let end = b.iter().position(|&x| x == 0).unwrap_or(b.len()).min(16);
        c.bytes[..end].copy_from_slice(&b[..end]);
        c.len = end as u8;
        c
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
    pub fn to_str_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.as_bytes())
    }
}

impl From<&str> for Comm {
    fn from(s: &str) -> Comm {
        Comm::from_bytes(s.as_bytes())
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_str_lossy())
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_str_lossy())
    }
}

impl Serialize for Comm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_str_lossy())
    }
}

/// On the wire a comm is a string (at most 15 bytes of the kernel's name).
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Comm {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::units::openapi::string("A task's comm: the kernel's process name, at most 15 bytes.")
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Comm {}

impl<'de> Deserialize<'de> for Comm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Comm, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Comm::from(s.as_str()))
    }
}

/// One process lifecycle event, as decoded by the agent from either event source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProcEvent {
    pub kind: EventKind,
    /// CLOCK_MONOTONIC nanoseconds when the kernel saw the event.
    pub ts_ns: u64,
    /// Process id (tgid).
    pub pid: u32,
    /// Thread id (equals `pid` for a process's main thread).
    pub tid: u32,
    /// Parent process id: for fork the forking process, otherwise the real parent. On the
    /// wire `parent_pid`, as in every other process object.
    #[serde(rename = "parent_pid", alias = "ppid")]
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// cgroup v2 id (the inode number of the cgroup directory); 0 when unknown.
    pub cgroup_id: u64,
    /// Process start time, ns since boot (matches /proc/PID/stat starttime); with `pid` this
    /// is the process identity. 0 when the source does not know it.
    pub start_ns: u64,
    /// The comm; on the wire `name`, as in every other process object.
    #[serde(rename = "name", alias = "comm")]
    pub comm: Comm,
    /// exec: the file that was executed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub filename: Option<Arc<str>>,
    /// exit: the exit code when the process exited normally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// exit: the signal that killed the process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_signal: Option<i32>,
    /// The event concerns a thread (only reported when thread events are enabled).
    #[serde(default)]
    pub thread: bool,
    /// exec: the process was stopped before running (hold-at-exec) until placed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
}

impl ProcEvent {
    /// Splits a raw wait status (`code << 8 | signal`) into (exit code, signal).
    pub fn split_status(status: u32) -> (Option<i32>, Option<i32>) {
        let sig = (status & 0x7f) as i32;
        if sig == 0 {
            (Some(((status >> 8) & 0xff) as i32), None)
        } else {
            (None, Some(sig))
        }
    }
}

/// Which kernel interface delivers events.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// BPF programs on BTF tracepoints writing into a ring buffer.
    Bpf,
    /// The netlink proc connector (fallback; no filenames from the kernel, comm read from /proc).
    Netlink,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceKind::Bpf => "bpf",
            SourceKind::Netlink => "netlink",
        })
    }
}

/// How per-process usage is sampled.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SamplerKind {
    /// A BPF task iterator (`iter/task`): one sweep over the kernel's task list per tick.
    Iter,
    /// Reading /proc/PID/{stat,io,schedstat,...} per process (the fallback).
    Proc,
}

impl fmt::Display for SamplerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SamplerKind::Iter => "iter",
            SamplerKind::Proc => "proc",
        })
    }
}

/// The sampler's part of `GET /api/status`.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SamplerStatus {
    pub kind: SamplerKind,
    /// Why the BPF task iterator is not in use, when it is not (and was not refused by config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// Seconds between samples.
    pub interval_seconds: f64,
    /// Every how many samples the iterator reports every process (the others report only
    /// processes whose usage changed).
    #[serde(default)]
    pub full_sweep_every: u32,
    /// Samples taken since the agent started.
    pub samples: u64,
    /// Wall time of the last sample (the sweep or /proc reads plus bookkeeping), seconds.
    pub last_sample_seconds: f64,
    /// CPU time the last sample took (user + system, on the sampling thread), seconds.
    #[serde(default)]
    pub last_sample_cpu_seconds: f64,
    /// Of it, the task-iterator sweep itself (creating and reading the iterator fd: almost all
    /// kernel time), seconds; 0 with the /proc sampler.
    #[serde(default)]
    pub last_sweep_cpu_seconds: f64,
    /// Processes reported by the kernel in the last sweep (iter), or read from /proc (proc).
    pub last_records: u64,
    /// The scheduling tracer (`events.sched_stats`: sched_switch/sched_wakeup) is attached.
    #[serde(default)]
    pub sched_tracing: bool,
    /// Why the scheduling tracer was requested but is not attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sched_tracing_error: Option<String>,
}

/// `GET /api/status`.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentStatus {
    pub version: String,
    pub pid: u32,
    pub uptime_seconds: f64,
    pub source: SourceKind,
    /// Why the preferred source (BPF) is not in use, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// Events decoded by the agent since it started.
    pub events_received: u64,
    /// Records the kernel side could not deliver (ring buffer full, netlink ENOBUFS).
    pub events_dropped: u64,
    /// Records the kernel side wrote (BPF only; 0 for netlink).
    pub kernel_submitted: u64,
    /// Times the process table was resynchronised from /proc after a drop.
    pub resyncs: u64,
    /// Corrections those resyncs made (processes added, removed or fixed).
    pub resync_corrections: u64,
    /// Table entries dropped because their process vanished from /proc without an exit
    /// event (zombies found at start and reaped later; anything else here is a bug).
    #[serde(default)]
    pub vanished: u64,
    /// Live processes in the agent's table.
    pub processes: usize,
    /// Whether thread events are reported.
    pub threads: bool,
    /// The audit log's path.
    #[serde(default)]
    pub audit_log: String,
    /// Audit lines that could not be written since the agent started.
    #[serde(default)]
    pub audit_failures: u64,
    /// Why the last audit write failed, while it keeps failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_error: Option<String>,
    /// API connections closed at once because too many non-root ones were open.
    #[serde(default)]
    pub refused_connections: u64,
    /// Open event streams (`procman events`, `GET /api/events`).
    #[serde(default)]
    pub event_subscribers: usize,
    /// What enforcement can do on this host.
    #[serde(default)]
    pub enforcement: EnforcementStatus,
    /// Which sampler is active and why a fallback was taken (absent from older agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler: Option<SamplerStatus>,
}

/// `AgentStatus.enforcement`: the cgroup side as the agent found it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnforcementStatus {
    /// `full`, `degraded` (some controllers or features missing), `unavailable` (no usable
    /// cgroup2), or `unused` (no slice, rule or request has needed cgroups yet).
    pub state: String,
    /// The managed root's directory, when opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Controller name -> `enabled`, or why it is missing.
    #[serde(default)]
    pub controllers: std::collections::BTreeMap<String, String>,
    /// Limit keys that cannot be enforced here (their controller is missing).
    #[serde(default)]
    pub unenforced_keys: Vec<String>,
    /// `cgroup.freeze` (5.2+) and `cgroup.kill` (5.14+) are there.
    #[serde(default)]
    pub freeze: bool,
    #[serde(default)]
    pub kill: bool,
    /// Why enforcement is unavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The cgroup2 mount's `favordynmods` and the move latency to expect (absent without a
    /// cgroup2 mount, and from older agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moves: Option<MoveStatus>,
}

/// `EnforcementStatus.moves`: how long a move into a slice takes here, and why.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MoveStatus {
    /// Whether the cgroup2 mount has `favordynmods` (as found at start, after any remount).
    pub favordynmods: bool,
    /// `[cgroup] favordynmods`: `auto`, `on` or `off`.
    pub favordynmods_setting: String,
    /// The agent remounted the cgroup2 mount with `favordynmods` at start (`on`).
    #[serde(default)]
    pub remounted: bool,
    /// Why a move takes as long as it does: each move waits for an RCU grace period
    /// (`cgroup_threadgroup_rwsem`), or `favordynmods` lets it skip that.
    pub reason: String,
    /// The move latency to expect when this agent has not measured any yet.
    pub expected: String,
    /// The kernel's part of this agent's placements (the write to `cgroup.procs`), measured:
    /// absent before the first placement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured: Option<MoveLatency>,
}

/// Measured move latencies (the kernel's part of a placement), microseconds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MoveLatency {
    pub moves: usize,
    pub p50_us: u32,
    pub p99_us: u32,
}

/// `GET /api/whoami`: who the caller is to the agent and what it may do (the dashboard shows
/// action buttons only when they are allowed).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Caller {
    /// `root`, `uid 1000`, or `token holder (TCP)`.
    pub who: String,
    /// The caller's uid (Unix socket only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// `unix` or `tcp`.
    pub via: String,
    /// The actions it may take: `read` and those granted (`limit`, `move`, `freeze`, `kill`, …).
    pub allowed: Vec<String>,
    /// Its grants apply only to its own processes.
    pub only_own: bool,
}

/// Body of every error response: `{"success": false, "error": "...", "pid": 1234}` (`pid`
/// on the routes of one process), the shape of seed 004's errors.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    #[serde(default)]
    pub success: bool,
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_roundtrip_and_truncation() {
        let c = Comm::from_bytes(b"bash\0garbage");
        assert_eq!(c.to_string(), "bash");
        let long = Comm::from_bytes(b"0123456789abcdefXYZ");
        assert_eq!(long.as_bytes().len(), 16);
        let j = serde_json::to_string(&c).unwrap();
        assert_eq!(j, "\"bash\"");
        assert_eq!(serde_json::from_str::<Comm>(&j).unwrap(), c);
    }

    /// The JSON of slice statistics keeps the field names clients read
    /// (`stats.memory.current`, `stats.cpu.usage_usec`, ...), and `null` stats still parse.
    #[test]
    fn slice_stats_json() {
        let st = SliceStats {
            populated: true,
            cpu: Some(CpuStat {
                usage_usec: 7,
                ..CpuStat::default()
            }),
            memory: Some(MemoryStats {
                current: 4096,
                peak: Some(8192),
                events: MemoryEvents {
                    oom_kill: 2,
                    ..MemoryEvents::default()
                },
                ..MemoryStats::default()
            }),
            io: Some(vec![IoStat {
                device: "254:0".into(),
                wbytes: 1,
                ..IoStat::default()
            }]),
            pids: Some(PidsStats {
                current: 3,
                max_events: 1,
                ..PidsStats::default()
            }),
            pressure: PressureStats {
                cpu: Some(Pressure {
                    some: PressureLine {
                        avg10: 1.5,
                        ..PressureLine::default()
                    },
                    full: None,
                }),
                ..PressureStats::default()
            },
            ..SliceStats::default()
        };
        let v = serde_json::to_value(&st).unwrap();
        assert_eq!(v["memory"]["current"], 4096);
        assert_eq!(v["memory"]["peak"], 8192);
        assert_eq!(v["memory"]["swap_current"], serde_json::Value::Null);
        assert_eq!(v["memory"]["events"]["oom_kill"], 2);
        assert_eq!(v["cpu"]["usage_usec"], 7);
        assert_eq!(v["io"][0]["device"], "254:0");
        assert_eq!(v["pids"]["max_events"], 1);
        assert_eq!(v["pressure"]["cpu"]["some"]["avg10"], 1.5);
        assert_eq!(v["pressure"]["io"], serde_json::Value::Null);
        assert_eq!(v["populated"], true);
        assert_eq!(serde_json::from_value::<SliceStats>(v).unwrap(), st);
        let info: SliceInfo = serde_json::from_str(
            r#"{"name":"a","path":"/x","pids":[],"limits":[["MemoryMax","1G"]],"stats":null}"#,
        )
        .unwrap();
        assert!(info.stats.is_none());
    }

    #[test]
    fn wait_status_split() {
        assert_eq!(ProcEvent::split_status(3 << 8), (Some(3), None));
        assert_eq!(ProcEvent::split_status(9), (None, Some(9)));
        assert_eq!(ProcEvent::split_status(0), (Some(0), None));
    }
}

/// One line of the `GET /api/events` NDJSON stream: an event, or a notice that this
/// subscriber fell behind and `lagged` events were skipped for it.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum EventStreamItem {
    Event(ProcEvent),
    Lagged { lagged: u64 },
}

/// One process as the read API shows it (`GET /api/processes`, `procman ps --json`).
///
/// Field names follow seed 004's contract where it has the field (`cpu_percent`,
/// `memory_mb`, `status`, `started_at`, `username`, `num_threads`, `parent_pid`), and the
/// same style for procman's own: units spelled out as suffixes (`_percent`, `_bytes`,
/// `_seconds`, `_per_second`), wall-clock times as ISO 8601 UTC ([`Timestamp`]), durations
/// in seconds.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProcessInfo {
    pub pid: u32,
    pub parent_pid: u32,
    /// The comm (kernel process name, at most 15 bytes).
    pub name: String,
    pub username: String,
    pub uid: u32,
    /// CPU use over the last sampling interval, percent of one CPU (can exceed 100).
    pub cpu_percent: f32,
    /// Resident memory, percent of RAM.
    pub memory_percent: f32,
    /// Resident memory, MiB (2^20 bytes), as seed 004 shows it.
    pub memory_mb: f64,
    /// Resident memory, bytes.
    pub memory_bytes: u64,
    /// `running`, `sleeping`, `disk-sleep`, `stopped`, `tracing-stop`, `zombie`, `dead`,
    /// `idle`, `parked`, `waking`, `wake-kill` (psutil's words for the kernel's state
    /// letters), or `unknown` before the first sample.
    pub status: ProcessStatus,
    /// When the process started.
    pub started_at: Timestamp,
    #[serde(default)]
    pub cmdline: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    pub num_threads: u32,
    pub nice: i32,
    pub read_bytes_per_second: f64,
    pub write_bytes_per_second: f64,
    /// Bytes read and written in total (storage IO, /proc/PID/io `read_bytes`/`write_bytes`).
    pub read_bytes: u64,
    pub write_bytes: u64,
    /// CPU time used (user + system), seconds.
    pub cpu_time_seconds: f64,
    pub age_seconds: f64,
    /// The cgroup v2 path (from /proc/PID/cgroup), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    pub kthread: bool,
    /// Its procman slice is frozen (the cgroup freezer): it cannot run until thawed.
    #[serde(default)]
    pub frozen: bool,
    /// In-kernel scheduling statistics (BPF task iterator or /proc/PID/schedstat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sched: Option<SchedInfo>,
}

/// A process's scheduler state, in the words `ps`/psutil users know. Serialized as the word
/// (`"running"`); [`ProcessStatus::letter`] gives the `ps` STAT letter back.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ProcessStatus {
    Running,
    Sleeping,
    DiskSleep,
    Stopped,
    TracingStop,
    Zombie,
    Dead,
    Idle,
    Parked,
    Waking,
    WakeKill,
    #[default]
    Unknown,
}

impl ProcessStatus {
    pub const ALL: [ProcessStatus; 12] = [
        ProcessStatus::Running,
        ProcessStatus::Sleeping,
        ProcessStatus::DiskSleep,
        ProcessStatus::Stopped,
        ProcessStatus::TracingStop,
        ProcessStatus::Zombie,
        ProcessStatus::Dead,
        ProcessStatus::Idle,
        ProcessStatus::Parked,
        ProcessStatus::Waking,
        ProcessStatus::WakeKill,
        ProcessStatus::Unknown,
    ];

    /// From the state letter of /proc/PID/stat (or the task iterator's mapping of it).
    pub fn from_letter(c: char) -> ProcessStatus {
        match c {
            'R' => ProcessStatus::Running,
            'S' => ProcessStatus::Sleeping,
            'D' => ProcessStatus::DiskSleep,
            'T' => ProcessStatus::Stopped,
            't' => ProcessStatus::TracingStop,
            'Z' => ProcessStatus::Zombie,
            'X' | 'x' => ProcessStatus::Dead,
            'I' => ProcessStatus::Idle,
            'P' => ProcessStatus::Parked,
            'W' => ProcessStatus::Waking,
            'K' => ProcessStatus::WakeKill,
            _ => ProcessStatus::Unknown,
        }
    }

    /// The `ps` STAT letter (`?` for unknown).
    pub fn letter(self) -> char {
        match self {
            ProcessStatus::Running => 'R',
            ProcessStatus::Sleeping => 'S',
            ProcessStatus::DiskSleep => 'D',
            ProcessStatus::Stopped => 'T',
            ProcessStatus::TracingStop => 't',
            ProcessStatus::Zombie => 'Z',
            ProcessStatus::Dead => 'X',
            ProcessStatus::Idle => 'I',
            ProcessStatus::Parked => 'P',
            ProcessStatus::Waking => 'W',
            ProcessStatus::WakeKill => 'K',
            ProcessStatus::Unknown => '?',
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProcessStatus::Running => "running",
            ProcessStatus::Sleeping => "sleeping",
            ProcessStatus::DiskSleep => "disk-sleep",
            ProcessStatus::Stopped => "stopped",
            ProcessStatus::TracingStop => "tracing-stop",
            ProcessStatus::Zombie => "zombie",
            ProcessStatus::Dead => "dead",
            ProcessStatus::Idle => "idle",
            ProcessStatus::Parked => "parked",
            ProcessStatus::Waking => "waking",
            ProcessStatus::WakeKill => "wake-kill",
            ProcessStatus::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ProcessStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Scheduling statistics of a process, from the kernel's own accounting (`sched_info`, read by
/// the task iterator over all live threads, or /proc/PID/schedstat for the main thread).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SchedInfo {
    /// Time on a CPU, seconds.
    pub oncpu_seconds: f64,
    /// Time runnable but waiting for a CPU (run-queue latency), seconds.
    pub runq_wait_seconds: f64,
    /// Times the process was run on a CPU (each after a wait, possibly of zero length).
    pub runq_waits: u64,
    /// Longest single run-queue wait, seconds: from the kernel's `max_run_delay` (6.14+)
    /// or the opt-in scheduling tracer (`events.sched_stats`); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runq_max_seconds: Option<f64>,
    /// Share of the last sampling interval spent waiting for a CPU, percent.
    pub runq_wait_percent: f32,
}

/// How many processes `top_cpu` and `top_ram` hold unless `?limit=` says otherwise (seed 004).
pub const DEFAULT_TOP: usize = 10;

/// `GET /api/processes`: seed 004's overview (the top 10 by CPU and by memory), plus the
/// full (filtered, sorted, limited) list when asked with `?filter=`, `?sort=` or `?user=`.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProcessList {
    /// When the answer was made.
    pub timestamp: Timestamp,
    pub total_processes: usize,
    pub zombie_count: usize,
    pub top_cpu: Vec<ProcessInfo>,
    /// Sorted by `memory_percent`.
    pub top_ram: Vec<ProcessInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<Vec<ProcessInfo>>,
}

/// A node of `GET /api/tree` and of the `tree` in `GET /api/processes/{pid}/tree`.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TreeNode {
    #[serde(flatten)]
    pub process: ProcessInfo,
    #[cfg_attr(feature = "openapi", schema(no_recursion))]
    pub children: Vec<TreeNode>,
}

/// `GET /api/processes/{pid}/tree`: seed 004's parent and children, plus the nested subtree.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProcessTree {
    pub success: bool,
    pub pid: u32,
    pub name: String,
    /// The parent (absent for the roots: init and kthreadd).
    pub parent: Option<ProcessInfo>,
    /// Every descendant, depth first (each with its `parent_pid`).
    pub children: Vec<ProcessInfo>,
    pub total_children: usize,
    /// The process and its descendants as a tree.
    pub tree: TreeNode,
}

/// `GET /api/processes/{pid}`: a process with the facts that are read on demand.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProcessDetail {
    pub success: bool,
    #[serde(flatten)]
    pub process: ProcessInfo,
    /// Open file descriptors (`null` when /proc/PID/fd is unreadable or hidden).
    pub num_fds: Option<u32>,
    /// Of those, sockets (seed 004's `connections`).
    pub connections: Option<u32>,
    /// Of those, regular files (seed 004's `open_files`).
    pub open_files: Option<u32>,
    pub cwd: Option<String>,
    /// Pids of its children.
    #[serde(rename = "children_pids")]
    pub children: Vec<u32>,
    /// Set when RSS has been growing steadily ("leak suspected").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leak_suspected: Option<LeakReport>,
}

/// `GET /api/system`.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SystemInfo {
    pub timestamp: Timestamp,
    pub cpu_percent: f32,
    pub cpus: usize,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
    pub memory_percent: f32,
    pub swap_total_bytes: u64,
    pub swap_free_bytes: u64,
    /// Load averages over 1, 5 and 15 minutes.
    #[cfg_attr(feature = "openapi", schema(min_items = 3, max_items = 3))]
    pub load: [f64; 3],
    /// `some avg10` of /proc/pressure/{cpu,memory,io}, percent.
    pub psi_cpu_some_avg10: Option<f64>,
    pub psi_memory_some_avg10: Option<f64>,
    pub psi_io_some_avg10: Option<f64>,
    pub uptime_seconds: f64,
    pub processes: usize,
}

// ---- usage history (`GET /api/processes/{pid}/history`) ----

/// One sample (or a run of identical ones), as seed 004's history entries plus procman's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryPoint {
    /// Time of the (first) sample.
    pub timestamp: Timestamp,
    pub cpu_percent: f32,
    pub memory_percent: f32,
    pub memory_mb: f64,
    pub memory_bytes: u64,
    pub read_bytes_per_second: f32,
    pub write_bytes_per_second: f32,
    /// How many consecutive samples this entry stands for (an idle process repeats).
    pub repeat: u32,
}

/// avg/min/max/p95 of one metric over a window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stat {
    pub avg: f64,
    pub min: f64,
    pub max: f64,
    pub p95: f64,
}

/// Statistics of a window of samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WindowStats {
    pub samples: u64,
    pub cpu_percent: Stat,
    pub memory_bytes: Stat,
    pub read_bytes_per_second: Stat,
    pub write_bytes_per_second: Stat,
}

/// Seed 004's `statistics`: CPU in percent of one CPU, memory in percent of RAM.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryStatistics {
    pub avg_cpu: f64,
    pub max_cpu: f64,
    pub avg_memory: f64,
    pub max_memory: f64,
}

/// Evidence that a process's memory keeps growing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeakReport {
    /// Least-squares growth of RSS, bytes per hour.
    pub bytes_per_hour: f64,
    /// How well a straight line fits (R², 0..1).
    pub r_squared: f64,
    /// Time span the fit covers, seconds.
    pub span_seconds: u64,
    pub from_bytes: u64,
    pub to_bytes: u64,
}

/// A whole number as a JSON integer (`24`, not `24.0`), anything else as it is.
fn whole_as_integer<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(v) {
        s.serialize_u64(*v as u64)
    } else {
        s.serialize_f64(*v)
    }
}

/// `GET /api/processes/{pid}/history?hours=N` (default 24, at most 48).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProcessHistory {
    pub success: bool,
    pub pid: u32,
    /// The window, hours: an integer when whole (`24`), as the document shows it.
    #[serde(serialize_with = "whole_as_integer")]
    pub hours: f64,
    pub history: Vec<HistoryPoint>,
    pub statistics: HistoryStatistics,
    /// Entries in `history`.
    pub data_points: usize,
    /// Whether the process has exited (its history is kept for the retention time).
    pub exited: bool,
    /// avg/min/max/p95 of each metric over the window.
    pub window: WindowStats,
    /// Set when RSS has been growing steadily (see `procman info`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leak_suspected: Option<LeakReport>,
}

// ---- enforcement ----

/// `POST /api/limit`: create or update a slice and move processes into it. Unknown fields
/// are refused (a typo must not silently drop part of the request).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LimitRequest {
    /// Processes to move (with their descendants).
    #[serde(default)]
    pub pids: Vec<u32>,
    /// Move every process with this comm.
    #[serde(default)]
    pub name: Option<String>,
    /// Move every process matching this filter expression.
    #[serde(default)]
    pub filter: Option<String>,
    /// The slice; default `pid-PID` or `name-NAME`.
    #[serde(default)]
    pub slice: Option<String>,
    /// systemd-style limits to set (merged over the slice's current ones), e.g.
    /// `{"MemoryMax": "512M", "CPUQuota": "50%"}`.
    #[serde(default)]
    pub limits: std::collections::BTreeMap<String, String>,
}

/// The answer to `POST /api/limit` and `POST /api/slices/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SliceAnswer {
    pub slice: String,
    /// The slice's cgroup directory.
    pub path: String,
    pub created: bool,
    /// Pids moved into it.
    #[serde(default)]
    pub moved: Vec<u32>,
    /// The slice's limits now (systemd names, human values).
    pub limits: Vec<(String, String)>,
}

/// The answer to `POST /api/processes/{pid}/freeze` and `/thaw`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProcessFreezeAnswer {
    pub pid: u32,
    /// The slice that was frozen or thawed (the process is alone in it).
    pub slice: String,
    pub frozen: bool,
    /// The cgroup the process was moved out of, when it was outside procman's slices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_from: Option<String>,
}

/// `GET /api/slices`: one slice with its limits and usage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SliceInfo {
    pub name: String,
    pub path: String,
    pub pids: Vec<u32>,
    pub limits: Vec<(String, String)>,
    /// cgroup statistics (cpu.stat, memory.current/peak/events, io.stat, pids, pressure);
    /// `null` when they could not be read.
    #[serde(default)]
    pub stats: Option<SliceStats>,
}

// ---- cgroup statistics (`SliceInfo.stats`); procman-cgroup parses the files into these ----

/// Everything the agent samples from one slice. A part whose file is absent (its controller
/// is off, or the kernel is older) is `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
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

/// cpu.stat (usage is there even without the cpu controller; throttling needs it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct CpuStat {
    pub usage_usec: u64,
    pub user_usec: u64,
    pub system_usec: u64,
    pub nr_periods: Option<u64>,
    pub nr_throttled: Option<u64>,
    pub throttled_usec: Option<u64>,
}

/// memory.events counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct MemoryEvents {
    pub low: u64,
    pub high: u64,
    pub max: u64,
    pub oom: u64,
    pub oom_kill: u64,
    pub oom_group_kill: u64,
}

/// memory.current, memory.peak, memory.swap.current and memory.events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct MemoryStats {
    pub current: u64,
    /// memory.peak (Linux 5.19+).
    pub peak: Option<u64>,
    /// memory.swap.current (needs swap accounting).
    pub swap_current: Option<u64>,
    pub events: MemoryEvents,
}

/// One device line of io.stat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct IoStat {
    /// `MAJ:MIN`.
    pub device: String,
    pub rbytes: u64,
    pub wbytes: u64,
    pub rios: u64,
    pub wios: u64,
    pub dbytes: u64,
    pub dios: u64,
}

/// pids.current, pids.peak and pids.events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct PidsStats {
    pub current: u64,
    /// pids.peak (Linux 6.1+... where present).
    pub peak: Option<u64>,
    /// pids.events `max`: forks refused by pids.max.
    pub max_events: u64,
}

/// One line (`some` or `full`) of a pressure (PSI) file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct PressureLine {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    /// Total stall time in microseconds.
    pub total: u64,
}

/// A PSI file (`cpu.pressure`, `memory.pressure`, `io.pressure`, or `/proc/pressure/*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Pressure {
    pub some: PressureLine,
    /// Absent in cpu.pressure on older kernels.
    pub full: Option<PressureLine>,
}

/// The three pressure files of a cgroup.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct PressureStats {
    pub cpu: Option<Pressure>,
    pub memory: Option<Pressure>,
    pub io: Option<Pressure>,
}

/// `GET /api/placement`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlacementReport {
    pub rules: Vec<String>,
    pub placed: u64,
    pub exited_before_placement: u64,
    pub failed: u64,
    pub followers: u64,
    /// Running processes placed by a sweep: at agent start (started while it was down) and
    /// after a resync (execs whose events were lost).
    #[serde(default)]
    pub swept: u64,
    /// Latency percentiles over the latest placements, microseconds: kernel exec timestamp
    /// to move completed.
    pub latency_us: LatencySummary,
    /// The kernel's part of it: how long the write to `cgroup.procs` took. On kernels where a
    /// migration waits for an RCU grace period (no `favordynmods`), this dominates.
    #[serde(default)]
    pub move_us: LatencySummary,
    /// Hold-at-exec: whether matched execs are stopped until placed, and its counters.
    #[serde(default)]
    pub hold: HoldReport,
}

/// Hold-at-exec (see the agent's `hold` module): a matched program is stopped before its first
/// instruction, moved, and resumed.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HoldReport {
    /// Whether execs can be held here.
    pub active: bool,
    /// Why not, when not active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Rules whose execs are held (`hold = "auto"` with a `comm` condition).
    #[serde(default)]
    pub rules: Vec<String>,
    /// Tasks held right now.
    #[serde(default)]
    pub held_now: u64,
    /// Held tasks resumed after their placement (or after no rule matched).
    #[serde(default)]
    pub released: u64,
    /// Held tasks the watchdog resumed unplaced after the hold timeout.
    #[serde(default)]
    pub timed_out: u64,
    /// Tasks a previous (killed) agent left held, resumed at start.
    #[serde(default)]
    pub orphans: u64,
    /// Held tasks that exited (were killed) before their release.
    #[serde(default)]
    pub gone: u64,
    /// How long tasks stayed stopped, microseconds (exec to resumed).
    #[serde(default)]
    pub held_us: LatencySummary,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LatencySummary {
    pub count: usize,
    /// Sum of all latencies, microseconds (from the histogram: 2 significant digits).
    #[serde(default)]
    pub sum_us: u64,
    pub p50: u32,
    pub p90: u32,
    pub p99: u32,
    pub max: u32,
    /// Counts per power-of-two bucket: `buckets[i]` counts latencies < 2^i µs (and >= 2^(i-1)).
    pub buckets: Vec<u64>,
}

/// One line of the audit log (`GET /api/audit`, `procman audit`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditRecord {
    /// When (ISO 8601 UTC, milliseconds).
    pub time: Timestamp,
    /// Sequence number since the agent started.
    pub seq: u64,
    /// Who.
    pub actor: AuditActor,
    /// What: `limit`, `move+limit`, `freeze`, …
    pub action: String,
    /// On what: the request (`POST /api/limit`).
    pub target: String,
    /// The request's arguments (its JSON body).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub args: serde_json::Value,
    /// `ok`, `denied` or `error`.
    pub result: String,
    /// The HTTP status answered.
    pub status: u16,
    /// The error or denial message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Who did something: a peer's credentials (`via = "api"`), or `config`, `policy:<name>`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditActor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    pub via: String,
}

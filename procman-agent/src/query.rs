//! Read-side views for the API: joins the process table (structure, from events) with the
//! monitor's latest samples (usage, from /proc) into [`ProcessInfo`] lists and trees.
use crate::{
    monitor::{Monitor, Usage},
    tree::{ProcEntry, ProcTable},
};
use procman_common::api::{ProcessInfo, ProcessList, ProcessStatus, SortKey, TreeNode};
use procman_common::filter::{Field, Fields, Filter};
use procman_common::units::Timestamp;
use std::borrow::Cow;
use std::{collections::HashMap, sync::OnceLock};

/// Seconds since the epoch at boot (/proc/stat btime).
fn boot_time() -> f64 {
    static BT: OnceLock<f64> = OnceLock::new();
    *BT.get_or_init(|| procfs::boot_time_secs().map(|s| s as f64).unwrap_or(0.0))
}

/// A start time in clock ticks since boot as Unix seconds (what `ProcessInfo::start_time`
/// shows).
pub fn start_epoch(start_ticks: u64) -> f64 {
    boot_time() + start_ticks as f64 / procfs::ticks_per_second() as f64
}

fn now_epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// uid -> user name, cached (user databases rarely change; a miss prints the number).
pub fn user_name(uid: u32) -> String {
    static CACHE: OnceLock<std::sync::Mutex<HashMap<u32, String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
    c.entry(uid)
        .or_insert_with(|| {
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_else(|| uid.to_string())
        })
        .clone()
}

/// user name -> uid.
pub fn uid_of(name: &str) -> Option<u32> {
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
}

/// Bytes in seed 004's `memory_mb` (MiB).
const MIB: f64 = 1024.0 * 1024.0;

pub fn process_info(e: &ProcEntry, u: Option<&Usage>) -> ProcessInfo {
    let start = start_epoch(e.start_ticks);
    let mut p = ProcessInfo {
        pid: e.pid,
        parent_pid: e.ppid,
        name: e.comm.to_string(),
        exe: e.exe.as_deref().map(String::from),
        username: user_name(e.uid),
        uid: e.uid,
        status: ProcessStatus::Unknown,
        started_at: Timestamp::from_unix(start),
        age_seconds: (now_epoch() - start).max(0.0),
        kthread: e.kthread,
        ..Default::default()
    };
    if let Some(u) = u {
        p.status = ProcessStatus::from_letter(u.state);
        p.cpu_percent = u.cpu_pct;
        p.memory_percent = u.mem_pct;
        set_memory(&mut p, u.rss_bytes, None);
        p.num_threads = u.threads;
        p.nice = u.nice;
        p.read_bytes_per_second = u.read_bps;
        p.write_bytes_per_second = u.write_bps;
        p.read_bytes = u.read_bytes;
        p.write_bytes = u.write_bytes;
        p.cpu_time_seconds = u.cpu_time_s;
        p.cmdline = u.cmdline.to_string();
        p.cgroup = u.cgroup.as_deref().map(String::from);
        p.sched = u.sched;
    }
    if e.exited {
        p.status = ProcessStatus::Zombie; // exited, not reaped yet
    }
    p
}

/// Sets a process's resident memory in every unit the API shows it in; with the machine's
/// total, also its percent of RAM.
pub fn set_memory(p: &mut ProcessInfo, rss_bytes: u64, total_bytes: Option<u64>) {
    p.memory_bytes = rss_bytes;
    p.memory_mb = rss_bytes as f64 / MIB;
    if let Some(total) = total_bytes.filter(|&t| t > 0) {
        p.memory_percent = (rss_bytes as f64 / total as f64 * 100.0) as f32;
    }
}

/// The sort key of a row: smaller sorts first (descending keys are negated), ties by pid.
/// cpu, mem, io, time: biggest first; pid: ascending; age: oldest first.
fn sort_key(e: &ProcEntry, u: Option<&Usage>, key: SortKey) -> f64 {
    match key {
        SortKey::Cpu => -(u.map_or(0.0, |u| u.cpu_pct as f64)),
        SortKey::Mem => -(u.map_or(0.0, |u| u.rss_bytes as f64)),
        SortKey::Io => -(u.map_or(0.0, |u| u.read_bps + u.write_bps)),
        SortKey::Time => -(u.map_or(0.0, |u| u.cpu_time_s)),
        SortKey::Pid => e.pid as f64,
        SortKey::Age => e.start_ticks as f64,
    }
}

/// The latest usage of a table entry (only if it measured the same process).
pub fn usage_of<'a>(map: &'a crate::monitor::UsageMap, e: &ProcEntry) -> Option<&'a Usage> {
    map.get(&e.pid)
        .filter(|u| u.start_ticks == e.start_ticks || e.start_ticks == 0)
}

/// The processes accepted by `keep`, sorted by `key`, at most `limit`. It sorts compact
/// (key, pid) pairs and builds [`ProcessInfo`] only for the rows returned, so a `--top 10`
/// over 10,000 processes allocates for 10.
pub fn select(
    table: &ProcTable,
    mon: &Monitor,
    key: SortKey,
    limit: Option<usize>,
    keep: impl Fn(&ProcEntry, Option<&Usage>) -> bool,
) -> Vec<ProcessInfo> {
    let usage = mon.usage.read().unwrap_or_else(|e| e.into_inner());
    let mut keys: Vec<(f64, u32)> = table
        .iter()
        .filter(|e| keep(e, usage_of(&usage, e)))
        .map(|e| (sort_key(e, usage_of(&usage, e), key), e.pid))
        .collect();
    let cmp = |a: &(f64, u32), b: &(f64, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    let n = limit.unwrap_or(keys.len()).min(keys.len());
    if n > 0 && n < keys.len() {
        keys.select_nth_unstable_by(n - 1, cmp);
    }
    keys.truncate(n);
    keys.sort_unstable_by(cmp);
    keys.iter()
        .filter_map(|(_, pid)| table.get(*pid))
        .map(|e| process_info(e, usage_of(&usage, e)))
        .collect()
}

/// Every process as [`ProcessInfo`], by pid (for the tree view).
pub fn all(table: &ProcTable, mon: &Monitor) -> Vec<ProcessInfo> {
    select(table, mon, SortKey::Pid, None, |_, _| true)
}

/// The overview: counts, and the `top` biggest by CPU and by memory.
pub fn overview(table: &ProcTable, mon: &Monitor, top: usize) -> ProcessList {
    ProcessList {
        timestamp: Timestamp::now(),
        total_processes: table.len(),
        zombie_count: zombie_count(table, mon),
        top_cpu: select(table, mon, SortKey::Cpu, Some(top), |_, _| true),
        top_ram: select(table, mon, SortKey::Mem, Some(top), |_, _| true),
        processes: None,
    }
}

/// Processes that exited and are not reaped yet.
pub fn zombie_count(table: &ProcTable, mon: &Monitor) -> usize {
    let usage = mon.usage.read().unwrap_or_else(|e| e.into_inner());
    table
        .iter()
        .filter(|e| e.exited || usage_of(&usage, e).is_some_and(|u| u.state == 'Z'))
        .count()
}

/// The subtree under `root` (all processes when `root` is None: one tree per process whose
/// parent is not in the table, i.e. init and kthreadd).
pub fn tree(all: Vec<ProcessInfo>, root: Option<u32>) -> Vec<TreeNode> {
    let pids: std::collections::HashSet<u32> = all.iter().map(|p| p.pid).collect();
    let mut children: HashMap<u32, Vec<ProcessInfo>> = HashMap::new();
    let mut roots = Vec::new();
    for p in all {
        if Some(p.pid) == root
            || (root.is_none() && (p.pid == p.parent_pid || !pids.contains(&p.parent_pid)))
        {
            roots.push(p.clone());
        }
        if p.pid != p.parent_pid {
            children.entry(p.parent_pid).or_default().push(p);
        }
    }
    fn build(
        p: ProcessInfo,
        children: &mut HashMap<u32, Vec<ProcessInfo>>,
        depth: usize,
    ) -> TreeNode {
        let mut kids = if depth < 512 {
            children.remove(&p.pid).unwrap_or_default()
        } else {
            Vec::new()
        };
        kids.sort_by_key(|k| k.pid);
        TreeNode {
            children: kids
                .into_iter()
                .map(|k| build(k, children, depth + 1))
                .collect(),
            process: p,
        }
    }
    roots.sort_by_key(|p| p.pid);
    roots
        .into_iter()
        .map(|r| build(r, &mut children, 0))
        .collect()
}

/// A table entry with its latest sample, as the filter language sees it.
pub struct Row<'a> {
    pub entry: &'a ProcEntry,
    pub usage: Option<&'a Usage>,
    pub ctx: &'a RowContext<'a>,
}

/// What a filter needs besides the row, the same for every row of one request.
#[derive(Default)]
pub struct RowContext<'a> {
    /// The configured managed root (`[cgroup] root`), for the `slice` field.
    pub slice_root: &'a str,
    /// Open fds per pid, read beforehand (without the table lock) when the filter uses `fds`.
    pub fds: Option<HashMap<u32, u32>>,
    /// A non-root caller's uid: other users' command lines are hidden from it, in answers
    /// and in what its filters can match (like `hidepid=2`).
    pub viewer: Option<u32>,
}

impl RowContext<'_> {
    /// Whether `uid`'s command lines are hidden from the caller.
    pub fn hides(&self, uid: u32) -> bool {
        self.viewer.is_some_and(|v| v != uid)
    }
}

impl Fields for Row<'_> {
    fn number(&self, f: Field) -> Option<f64> {
        let (e, u) = (self.entry, self.usage);
        Some(match f {
            Field::Pid => e.pid as f64,
            Field::Ppid => e.ppid as f64,
            Field::Uid => e.uid as f64,
            Field::Threads => u?.threads as f64,
            // read beforehand: only filters that mention fds pay for the directory walk
            Field::Fds => *self.ctx.fds.as_ref()?.get(&e.pid)? as f64,
            Field::Cpu => u?.cpu_pct as f64,
            Field::Memory => u?.mem_pct as f64,
            Field::Rss => u?.rss_bytes as f64,
            Field::IoRead => u?.read_bps,
            Field::IoWrite => u?.write_bps,
            Field::Age => {
                let start = boot_time() + e.start_ticks as f64 / procfs::ticks_per_second() as f64;
                (now_epoch() - start).max(0.0)
            }
            _ => return None,
        })
    }

    fn text(&self, f: Field) -> Option<Cow<'_, str>> {
        let (e, u) = (self.entry, self.usage);
        Some(match f {
            Field::Name => e.comm.to_str_lossy(),
            Field::Exe => Cow::Borrowed(e.exe.as_deref()?),
            Field::Cmdline if self.ctx.hides(e.uid) => return None,
            Field::Cmdline => Cow::Borrowed(&*u?.cmdline),
            Field::User => Cow::Owned(user_name(e.uid)),
            Field::State => {
                if e.exited {
                    Cow::Borrowed("Z")
                } else {
                    Cow::Owned(u?.state.to_string())
                }
            }
            Field::Status => {
                let letter = if e.exited { 'Z' } else { u?.state };
                Cow::Borrowed(ProcessStatus::from_letter(letter).as_str())
            }
            Field::Cgroup => Cow::Borrowed(u?.cgroup.as_deref()?),
            Field::Slice => {
                Cow::Borrowed(slice_of_cgroup(u?.cgroup.as_deref()?, self.ctx.slice_root)?)
            }
            _ => return None,
        })
    }
}

/// The procman slice a cgroup path is in: with the managed root `procman.slice`,
/// `/procman.slice/web/...` is in `web`. `root` is the configured `[cgroup] root` (a path
/// below the cgroup2 mount, without a leading `/`).
pub fn slice_of_cgroup<'a>(path: &'a str, root: &str) -> Option<&'a str> {
    let rest = path
        .strip_prefix('/')?
        .strip_prefix(root.trim_matches('/'))?
        .strip_prefix('/')?;
    rest.split('/').next().filter(|s| !s.is_empty())
}

/// Pids of the processes `filter` accepts.
pub fn matching(
    table: &ProcTable,
    mon: &Monitor,
    filter: &Filter,
    ctx: &RowContext,
) -> std::collections::HashSet<u32> {
    let usage = mon.usage.read().unwrap_or_else(|e| e.into_inner());
    table
        .iter()
        .filter(|e| {
            filter.matches(&Row {
                entry: e,
                usage: usage_of(&usage, e),
                ctx,
            })
        })
        .map(|e| e.pid)
        .collect()
}

/// Open fds per pid, read from /proc without holding the table lock (only the pid list is
/// copied under it), when `filter` mentions `fds`; `None` otherwise.
pub fn fd_counts(
    table: &std::sync::RwLock<ProcTable>,
    filter: Option<&Filter>,
) -> Option<HashMap<u32, u32>> {
    if !filter.is_some_and(|f| f.uses(Field::Fds)) {
        return None;
    }
    let pids: Vec<u32> = table
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|e| e.pid)
        .collect();
    Some(
        pids.into_iter()
            .filter_map(|p| Some((p, count_fds(p)?.total)))
            .collect(),
    )
}

/// Resident bytes of `pid` from /proc/PID/statm (what `ps` and `top` show).
pub fn statm_rss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * procfs::page_size())
}

/// A process's open file descriptors by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FdCounts {
    pub total: u32,
    pub sockets: u32,
    /// Regular files (what psutil's `open_files` lists).
    pub files: u32,
}

/// The open fds of a process: a walk of /proc/PID/fd (`readlink` of each), on demand only.
pub fn count_fds(pid: u32) -> Option<FdCounts> {
    let rd = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let mut c = FdCounts::default();
    for e in rd.flatten() {
        c.total += 1;
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        let t = target.as_os_str().as_encoded_bytes();
        if t.starts_with(b"socket:") {
            c.sockets += 1;
        } else if t.starts_with(b"/")
            && !t.starts_with(b"/dev/")
            && !t.starts_with(b"/proc/")
            && !t.ends_with(b" (deleted)")
        {
            c.files += 1;
        }
    }
    Some(c)
}

/// Keeps the nodes in `keep` and the ancestors of those (so the tree keeps its shape).
pub fn prune(nodes: Vec<TreeNode>, keep: &std::collections::HashSet<u32>) -> Vec<TreeNode> {
    nodes
        .into_iter()
        .filter_map(|mut n| {
            n.children = prune(std::mem::take(&mut n.children), keep);
            (keep.contains(&n.process.pid) || !n.children.is_empty()).then_some(n)
        })
        .collect()
}

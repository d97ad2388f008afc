//! Read-side views for the API: joins the process table (structure, from events) with the
//! monitor's latest samples (usage, from /proc) into [`ProcessInfo`] lists and trees.
use crate::{
    monitor::{Monitor, Usage},
    tree::{ProcEntry, ProcTable},
};
use procman_common::api::{ProcessInfo, ProcessList, TreeNode};
use std::{collections::HashMap, sync::OnceLock};

/// Seconds since the epoch at boot (/proc/stat btime).
fn boot_time() -> f64 {
    static BT: OnceLock<f64> = OnceLock::new();
    *BT.get_or_init(|| procfs::boot_time_secs().map(|s| s as f64).unwrap_or(0.0))
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

pub fn process_info(e: &ProcEntry, u: Option<&Usage>) -> ProcessInfo {
    let start_time = boot_time() + e.start_ticks as f64 / procfs::ticks_per_second() as f64;
    let mut p = ProcessInfo {
        pid: e.pid,
        ppid: e.ppid,
        name: e.comm.to_string(),
        exe: e.exe.as_deref().map(String::from),
        user: user_name(e.uid),
        uid: e.uid,
        state: "?".into(),
        start_time,
        age_s: (now_epoch() - start_time).max(0.0),
        kthread: e.kthread,
        ..Default::default()
    };
    if let Some(u) = u {
        p.state = u.state.to_string();
        p.cpu_pct = u.cpu_pct;
        p.mem_pct = u.mem_pct;
        p.rss_bytes = u.rss_bytes;
        p.threads = u.threads;
        p.nice = u.nice;
        p.read_bps = u.read_bps;
        p.write_bps = u.write_bps;
        p.read_bytes = u.read_bytes;
        p.write_bytes = u.write_bytes;
        p.cpu_time_s = u.cpu_time_s;
        p.cmdline = u.cmdline.to_string();
        p.cgroup = u.cgroup.as_deref().map(String::from);
        p.sched = u.sched;
    }
    p
}

/// Sort orders for lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    Cpu,
    Mem,
    Io,
    Pid,
    Age,
}

impl std::str::FromStr for Sort {
    type Err = String;
    fn from_str(s: &str) -> Result<Sort, String> {
        Ok(match s {
            "cpu" => Sort::Cpu,
            "mem" | "memory" | "rss" => Sort::Mem,
            "io" => Sort::Io,
            "pid" => Sort::Pid,
            "age" => Sort::Age,
            _ => {
                return Err(format!(
                    "unknown sort key {s:?}: expected cpu, mem, io, pid or age"
                ))
            }
        })
    }
}

/// Sorts: cpu, mem, io descending (biggest first), pid ascending, age descending (oldest first).
pub fn sort(list: &mut [ProcessInfo], key: Sort) {
    let f = |x: f64| ordered(x);
    match key {
        Sort::Cpu => list.sort_by(|a, b| {
            f(b.cpu_pct as f64)
                .cmp(&f(a.cpu_pct as f64))
                .then(a.pid.cmp(&b.pid))
        }),
        Sort::Mem => list.sort_by(|a, b| b.rss_bytes.cmp(&a.rss_bytes).then(a.pid.cmp(&b.pid))),
        Sort::Io => list.sort_by(|a, b| {
            f(b.read_bps + b.write_bps)
                .cmp(&f(a.read_bps + a.write_bps))
                .then(a.pid.cmp(&b.pid))
        }),
        Sort::Pid => list.sort_by_key(|p| p.pid),
        Sort::Age => list.sort_by(|a, b| f(b.age_s).cmp(&f(a.age_s)).then(a.pid.cmp(&b.pid))),
    }
}

/// Total order for floats (NaN last).
fn ordered(x: f64) -> i64 {
    if x.is_nan() {
        i64::MIN
    } else {
        (x * 1000.0) as i64
    }
}

/// Every process as [`ProcessInfo`].
pub fn all(table: &ProcTable, mon: &Monitor) -> Vec<ProcessInfo> {
    let usage = mon.usage.read().unwrap_or_else(|e| e.into_inner());
    table
        .iter()
        .map(|e| {
            process_info(
                e,
                usage
                    .get(&e.pid)
                    .filter(|u| u.start_ticks == e.start_ticks || e.start_ticks == 0),
            )
        })
        .collect()
}

/// The overview (`top_cpu`, `top_ram` with 5 entries each, counts).
pub fn overview(all: Vec<ProcessInfo>, mon: &Monitor) -> ProcessList {
    let zombie_count = all.iter().filter(|p| p.state == "Z").count();
    let total_processes = all.len();
    let mut by_cpu = all.clone();
    sort(&mut by_cpu, Sort::Cpu);
    by_cpu.truncate(5);
    let mut by_mem = all;
    sort(&mut by_mem, Sort::Mem);
    by_mem.truncate(5);
    let _ = mon;
    ProcessList {
        timestamp: now_epoch(),
        total_processes,
        zombie_count,
        top_cpu: by_cpu,
        top_ram: by_mem,
        processes: None,
    }
}

/// The subtree under `root` (all processes when `root` is None: one tree per process whose
/// parent is not in the table, i.e. init and kthreadd).
pub fn tree(all: Vec<ProcessInfo>, root: Option<u32>) -> Vec<TreeNode> {
    let pids: std::collections::HashSet<u32> = all.iter().map(|p| p.pid).collect();
    let mut children: HashMap<u32, Vec<ProcessInfo>> = HashMap::new();
    let mut roots = Vec::new();
    for p in all {
        if Some(p.pid) == root || (root.is_none() && (p.pid == p.ppid || !pids.contains(&p.ppid))) {
            roots.push(p.clone());
        }
        if p.pid != p.ppid {
            children.entry(p.ppid).or_default().push(p);
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

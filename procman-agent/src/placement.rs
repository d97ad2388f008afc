//! Exec-time placement: rules that move a process into a slice when it execs, escape-free.
//!
//! On each exec event the rules are tried in order (first match wins). A match moves the
//! process, and every descendant the table knows (forked before the exec), into the slice.
//! Children the process forks before the move lands are followed through their fork events:
//! a placed process stays "watched" for a while, and any fork from a watched process whose
//! child was born outside the slice (the fork event's cgroup id) is moved too; grandchildren
//! likewise. Moves run on a dedicated thread fed by a channel, so cgroup writes never stall
//! the event loop; each placement's latency (kernel exec timestamp to move completed) goes
//! into the stats the API reports.
use crate::events::{monotonic_now_ns as now_monotonic_ns, ExecControl};
use crate::hold::{self, Holds};
use crate::tree::ProcTable;
use anyhow::{bail, Context, Result};
use procman_cgroup::{CgroupError, Manager, ProcsFile};
use procman_common::abi::PmHold;
use procman_common::api::{EventKind, HoldReport, LatencySummary, PlacementReport, ProcEvent};
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::{
    collections::{hash_map::Entry, HashMap},
    os::unix::fs::MetadataExt,
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc, Mutex,
    },
    time::{Duration, Instant},
};

/// `[[rule]]` in the config.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// A label for logs and the API.
    pub name: Option<String>,
    /// The process name (comm, at most 15 characters), exactly.
    pub comm: Option<String>,
    /// The executed file, a glob such as `/usr/bin/python3*`.
    pub exe: Option<String>,
    /// A regex searched in the command line (arguments joined by spaces).
    pub cmdline: Option<String>,
    /// The user name (or uid).
    pub user: Option<String>,
    pub uid: Option<u32>,
    /// The parent's comm, exactly.
    pub parent: Option<String>,
    /// The comm of any ancestor, exactly.
    pub ancestor: Option<String>,
    /// A regex searched in the process's current cgroup path.
    pub cgroup: Option<String>,
    /// The slice to place matching processes in (a `[[slice]]` name).
    pub slice: String,
    /// Hold-at-exec (see the `hold` module): `auto` (default) stops a matched program before
    /// its first instruction until it is placed, where the kernel and the rule allow it (a
    /// `comm` condition, the in-kernel prefilter); `never` places it while it runs.
    #[serde(default)]
    pub hold: HoldMode,
}

/// `hold` of a `[[rule]]`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HoldMode {
    #[default]
    Auto,
    Never,
}

/// A validated rule.
#[derive(Debug)]
pub struct Rule {
    pub label: String,
    comm: Option<String>,
    exe: Option<glob::Pattern>,
    cmdline: Option<Regex>,
    uid: Option<u32>,
    parent: Option<String>,
    ancestor: Option<String>,
    cgroup: Option<Regex>,
    pub slice: String,
    /// Execs it matches are held (`hold = "auto"` and a `comm` condition).
    pub hold: bool,
}

impl Rule {
    /// Validates a rule; errors name the rule, the key and the value.
    pub fn compile(i: usize, r: &RuleConfig) -> Result<Rule> {
        let label = r.name.clone().unwrap_or_else(|| format!("rule #{}", i + 1));
        let ctx = |k: &str| format!("{label}: {k}");
        if let Some(c) = &r.comm {
            if c.is_empty() || c.len() > 15 {
                bail!(
                    "{}: comm = {c:?}: a process name has 1 to 15 characters",
                    ctx("comm")
                );
            }
        }
        let exe = r
            .exe
            .as_deref()
            .map(|g| {
                glob::Pattern::new(g)
                    .map_err(|e| anyhow::anyhow!("{}: exe = {g:?}: not a valid glob ({e})", label))
            })
            .transpose()?;
        let re = |k: &str, v: &Option<String>| -> Result<Option<Regex>> {
            v.as_deref()
                .map(|x| {
                    Regex::new(x).map_err(|e| {
                        anyhow::anyhow!("{label}: {k} = {x:?}: not a valid regex ({e})")
                    })
                })
                .transpose()
        };
        let cmdline = re("cmdline", &r.cmdline)?;
        let cgroup = re("cgroup", &r.cgroup)?;
        let uid = match (&r.user, r.uid) {
            (Some(_), Some(_)) => bail!("{label}: give user or uid, not both"),
            (Some(u), None) => Some(
                u.parse::<u32>()
                    .ok()
                    .or_else(|| crate::query::uid_of(u))
                    .with_context(|| format!("{}: user = {u:?}: no such user", label))?,
            ),
            (None, u) => u,
        };
        if [
            &r.comm,
            &r.exe,
            &r.cmdline,
            &r.parent,
            &r.ancestor,
            &r.cgroup,
        ]
        .iter()
        .all(|x| x.is_none())
            && uid.is_none()
        {
            bail!("{label}: a rule needs at least one condition (comm, exe, cmdline, user, uid, parent, ancestor, cgroup)");
        }
        procman_cgroup::validate_name("slice", &r.slice).with_context(|| ctx("slice"))?;
        Ok(Rule {
            label,
            comm: r.comm.clone(),
            exe,
            cmdline,
            uid,
            parent: r.parent.clone(),
            ancestor: r.ancestor.clone(),
            cgroup,
            slice: r.slice.clone(),
            hold: r.hold == HoldMode::Auto && r.comm.is_some(),
        })
    }

    /// The conditions answered from the event and the table alone (comm, uid, an absolute
    /// exe, parent, ancestor): checked under the table lock, no I/O.
    fn matches_in_memory(&self, ev: &ProcEvent, table: &ProcTable) -> bool {
        if self
            .comm
            .as_deref()
            .is_some_and(|c| c.as_bytes() != ev.comm.as_bytes())
        {
            return false;
        }
        if self.uid.is_some_and(|u| u != ev.uid) {
            return false;
        }
        if let (Some(g), Some(exe)) = (&self.exe, ev.filename.as_deref()) {
            if exe.starts_with('/') && !g.matches(exe) {
                return false;
            }
        }
        if let Some(p) = &self.parent {
            if table
                .get(ev.ppid)
                .is_none_or(|e| e.comm.as_bytes() != p.as_bytes())
            {
                return false;
            }
        }
        if let Some(a) = &self.ancestor {
            let mut cur = ev.ppid;
            let mut found = false;
            for _ in 0..64 {
                let Some(e) = table.get(cur) else { break };
                if e.comm.as_bytes() == a.as_bytes() {
                    found = true;
                    break;
                }
                if e.ppid == cur || e.ppid == 0 {
                    break;
                }
                cur = e.ppid;
            }
            if !found {
                return false;
            }
        }
        true
    }

    /// The conditions that read /proc (a relative exe, cmdline, cgroup): checked after
    /// [`Rule::matches_in_memory`], without any lock held.
    fn matches_proc(&self, ev: &ProcEvent) -> bool {
        if let Some(g) = &self.exe {
            let exe = ev.filename.as_deref().unwrap_or("");
            if !exe.starts_with('/') {
                let abs = std::fs::read_link(format!("/proc/{}/exe", ev.pid))
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if !g.matches(&abs) {
                    return false;
                }
            }
        }
        if let Some(r) = &self.cmdline {
            let cmd = std::fs::read(format!("/proc/{}/cmdline", ev.pid)).unwrap_or_default();
            let cmd: String = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if !r.is_match(cmd.trim_end()) {
                return false;
            }
        }
        if let Some(r) = &self.cgroup {
            let cg =
                std::fs::read_to_string(format!("/proc/{}/cgroup", ev.pid)).unwrap_or_default();
            let path = procman_cgroup::parse_proc_cgroup(&cg).unwrap_or_default();
            if !r.is_match(&path) {
                return false;
            }
        }
        true
    }

    /// Whether deciding this rule for `ev` reads /proc.
    fn needs_proc(&self, ev: &ProcEvent) -> bool {
        self.cmdline.is_some()
            || self.cgroup.is_some()
            || (self.exe.is_some() && !ev.filename.as_deref().is_some_and(|f| f.starts_with('/')))
    }
}

/// Placement outcomes and latencies.
#[derive(Default)]
pub struct Stats {
    pub placed: AtomicU64,
    /// The process exited (or its pid was reused) before the move landed.
    pub exited_before_placement: AtomicU64,
    pub failed: AtomicU64,
    /// Descendants moved along with a placed process.
    pub followers: AtomicU64,
    /// Running processes placed by a sweep (at start, after a resync).
    pub swept: AtomicU64,
    /// Latencies (µs, exec timestamp to move completed).
    latency: Window,
    /// Kernel move times (µs, the write to cgroup.procs alone) of placed processes.
    moves: Window,
    /// How long held execs stayed stopped (µs, exec to resumed).
    held: Window,
}

impl Stats {
    /// The kernel's part of the placements so far (the write to `cgroup.procs`), µs.
    pub fn move_summary(&self) -> LatencySummary {
        self.moves.summary()
    }
}

/// Latencies in µs, as an HDR histogram (2 significant digits, 1 µs to 1 h): recording is
/// O(1) and percentiles need no sort, however many placements were made.
struct Window(Mutex<hdrhistogram::Histogram<u64>>);

impl Default for Window {
    fn default() -> Self {
        let h = hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 2)
            .expect("static histogram bounds are valid");
        Window(Mutex::new(h))
    }
}

impl Window {
    fn record(&self, us: u64) {
        let mut h = self.0.lock().unwrap_or_else(|e| e.into_inner());
        h.saturating_record(us.max(1));
    }

    pub fn summary(&self) -> LatencySummary {
        let h = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if h.is_empty() {
            return LatencySummary::default();
        }
        let pct = |p: f64| h.value_at_quantile(p).min(u64::from(u32::MAX)) as u32;
        let mut buckets = vec![0u64; 24];
        for v in h.iter_recorded() {
            let x = v.value_iterated_to();
            let b = (64 - x.leading_zeros()) as usize;
            buckets[b.min(23)] += v.count_at_value();
        }
        LatencySummary {
            count: h.len() as usize,
            sum_us: (h.mean() * h.len() as f64) as u64,
            p50: pct(0.5),
            p90: pct(0.9),
            p99: pct(0.99),
            max: h.max().min(u64::from(u32::MAX)) as u32,
            buckets,
        }
    }
}

/// An exec whose placement depends on /proc (see [`Placement::plan`]).
pub struct Deferred {
    exec: ProcEvent,
    /// Rules whose in-memory half matched, in rule order.
    candidates: Vec<usize>,
    /// (pid, start ticks) of the descendants the table knew at the exec.
    descendants: Vec<(u32, u64)>,
    /// Forks in the same batch by the exec'd process or its new children.
    forks: Vec<ProcEvent>,
}

impl Deferred {
    /// The first candidate rule whose /proc half matches too (reads /proc; no lock held).
    fn decide<'r>(&self, rules: &'r [Rule]) -> Option<&'r Rule> {
        self.candidates
            .iter()
            .map(|&i| &rules[i])
            .find(|r| r.matches_proc(&self.exec))
    }
}

struct Job {
    pid: u32,
    start_ticks: u64,
    /// Where to move it (None: only release it).
    slice: Option<Arc<str>>,
    /// CLOCK_MONOTONIC ns of the exec event (None for followers).
    exec_ts_ns: Option<u64>,
    /// Resume it once moved: it was held at exec.
    release: Release,
}

/// What the mover does after a job's move.
#[derive(Clone, Copy)]
enum Release {
    No,
    /// Held at exec (its start time, as the held map has it).
    Held(u64),
    /// Left held by a previous agent.
    Orphan(PmHold),
}

/// How long a placed process's forks are followed.
const WATCH: Duration = Duration::from_secs(5);

pub struct Placement {
    pub rules: Vec<Rule>,
    pub stats: Arc<Stats>,
    jobs: mpsc::Sender<Job>,
    /// Slice name -> its cgroup inode (the cgroup id BPF reports).
    slice_ids: HashMap<String, u64>,
    /// Slice name -> its path as /proc/PID/cgroup shows it (`/procman.slice/web`).
    slice_cgpaths: HashMap<String, String>,
    /// Recently placed processes whose forks are followed: tgid -> (slice, placed at).
    watched: Mutex<HashMap<u32, (Arc<str>, Instant)>>,
    /// The exec program's filters and hold-at-exec.
    exec: ExecControl,
}

/// (pid, start ticks) of the process an exec event is about.
fn exec_identity(ev: &ProcEvent) -> (u32, u64) {
    (ev.pid, crate::tree::ns_to_ticks(ev.start_ns))
}

impl Placement {
    /// Starts the mover thread. The rules' slices must exist.
    /// `stats`: the counters of the placement this one replaces (a reload), if any.
    pub fn start(
        rules: Vec<Rule>,
        manager: Arc<Manager>,
        stats: Option<Arc<Stats>>,
        exec: ExecControl,
    ) -> Result<Placement> {
        let mut slice_ids = HashMap::new();
        let mut slice_cgpaths = HashMap::new();
        for r in &rules {
            let path = manager.slice_path(&r.slice)?;
            let ino = std::fs::metadata(&path)
                .with_context(|| format!("{}: slice {:?}", r.label, r.slice))?
                .ino();
            slice_ids.insert(r.slice.clone(), ino);
            if let Ok(rel) = path.strip_prefix(&manager.mount().path) {
                slice_cgpaths.insert(r.slice.clone(), format!("/{}", rel.display()));
            }
        }
        let stats = stats.unwrap_or_default();
        let open = warm(&rules, &manager);
        let (tx, rx) = mpsc::channel::<Job>();
        exec.set(&Self::urgent_comms(&rules), &Self::hold_comms(&rules))?;
        let st = stats.clone();
        let holds = exec.holds().cloned();
        std::thread::Builder::new()
            .name("placement".into())
            .spawn(move || mover(rx, manager, st, holds, open))?;
        Ok(Placement {
            rules,
            stats,
            jobs: tx,
            slice_ids,
            slice_cgpaths,
            watched: Mutex::new(HashMap::new()),
            exec,
        })
    }

    /// Places every running process a rule matches, as if it had just exec'd: at start (for
    /// processes started while the agent was down) and after a resync (for execs whose
    /// events were lost). The table is read under its lock in memory only; /proc is read
    /// after (cmdline/cgroup rules, and the current cgroup, so processes already in their
    /// slice are not moved again). Returns how many moves were queued.
    pub fn sweep(&self, table: &std::sync::RwLock<ProcTable>) -> u64 {
        let me = std::process::id();
        let candidates: Vec<Deferred> = {
            let table = table.read().unwrap_or_else(|e| e.into_inner());
            table
                .iter()
                .filter(|e| !e.exited && !e.kthread && e.pid != 1 && e.pid != me)
                .filter_map(|e| {
                    let exec = ProcEvent {
                        kind: EventKind::Exec,
                        ts_ns: 0,
                        pid: e.pid,
                        tid: e.pid,
                        ppid: e.ppid,
                        uid: e.uid,
                        gid: 0,
                        cgroup_id: 0,
                        start_ns: crate::tree::ticks_to_ns(e.start_ticks),
                        comm: e.comm,
                        filename: e.exe.clone(),
                        exit_code: None,
                        exit_signal: None,
                        thread: false,
                        held: false,
                    };
                    let candidates: Vec<usize> = (0..self.rules.len())
                        .filter(|&i| self.rules[i].matches_in_memory(&exec, &table))
                        .collect();
                    if candidates.is_empty() {
                        return None;
                    }
                    let descendants = table
                        .descendants(e.pid)
                        .into_iter()
                        .map(|d| (d, table.get(d).map(|x| x.start_ticks).unwrap_or(0)))
                        .collect();
                    Some(Deferred {
                        exec,
                        candidates,
                        descendants,
                        forks: Vec::new(),
                    })
                })
                .collect()
        };
        let mut queued = 0;
        for d in candidates {
            let Some(rule) = d.decide(&self.rules) else {
                continue;
            };
            let here = procman_cgroup::procs::cgroup_of(d.exec.pid).ok();
            if here.is_some() && here.as_ref() == self.slice_cgpaths.get(&rule.slice) {
                continue; // already there (placed before a restart)
            }
            if here
                .as_deref()
                .is_some_and(crate::services::owns_cgroup_path)
            {
                continue; // a service's process stays in its slice
            }
            let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
            self.place(
                exec_identity(&d.exec),
                None,
                None,
                rule,
                d.descendants,
                &mut watched,
            );
            queued += 1;
        }
        self.stats.swept.fetch_add(queued, Ordering::Relaxed);
        queued
    }

    /// comm names the rules match on exactly (the BPF side wakes the agent at once for them).
    fn urgent_comms(rules: &[Rule]) -> Vec<String> {
        rules.iter().filter_map(|r| r.comm.clone()).collect()
    }

    /// comm names whose exec the BPF side holds until placed (rules with `hold`).
    fn hold_comms(rules: &[Rule]) -> Vec<String> {
        rules
            .iter()
            .filter(|r| r.hold)
            .filter_map(|r| r.comm.clone())
            .collect()
    }

    /// Resumes, after the moves queued so far, a process a previous agent left held.
    pub fn release_after_moves(&self, pid: u32, hold: PmHold) {
        self.queue_release(pid, Release::Orphan(hold));
    }

    /// Resumes a held exec that is not placed (no rule matched in the end).
    fn release_unplaced(&self, ev: &ProcEvent) {
        if ev.held {
            self.queue_release(ev.pid, Release::Held(ev.start_ns));
        }
    }

    /// A job that only resumes a held process (its identity is checked by the release).
    fn queue_release(&self, pid: u32, release: Release) {
        self.queue(Job {
            pid,
            start_ticks: 0,
            slice: None,
            exec_ts_ns: None,
            release,
        });
    }

    /// First half of a batch (already applied to `table`), under the table's read lock and
    /// without I/O: execs whose first matching rule is decided in memory are queued to the
    /// mover at once; forks of placed processes are followed; execs that need /proc to decide
    /// (cmdline, cgroup, relative exe) come back as [`Deferred`] for [`Placement::finish`].
    pub fn plan(&self, batch: &[ProcEvent], table: &ProcTable) -> Vec<Deferred> {
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        let mut deferred: Vec<Deferred> = Vec::new();
        // pid -> index in `deferred` of the exec it descends from (forks in this batch)
        let mut deferred_of: HashMap<u32, usize> = HashMap::new();
        for ev in batch.iter().filter(|e| !e.thread) {
            match ev.kind {
                EventKind::Exec => {
                    if crate::services::owns_cgroup(ev.cgroup_id) {
                        self.release_unplaced(ev);
                        continue; // a service's process stays in its slice
                    }
                    let candidates: Vec<usize> = (0..self.rules.len())
                        .filter(|&i| self.rules[i].matches_in_memory(ev, table))
                        .collect();
                    let Some(&first) = candidates.first() else {
                        self.release_unplaced(ev);
                        continue;
                    };
                    let descendants = table
                        .descendants(ev.pid)
                        .into_iter()
                        .map(|d| (d, table.get(d).map(|e| e.start_ticks).unwrap_or(0)))
                        .collect();
                    if !self.rules[first].needs_proc(ev) {
                        self.place(
                            exec_identity(ev),
                            Some(ev.ts_ns),
                            ev.held.then_some(ev.start_ns),
                            &self.rules[first],
                            descendants,
                            &mut watched,
                        );
                    } else {
                        deferred_of.insert(ev.pid, deferred.len());
                        deferred.push(Deferred {
                            exec: ev.clone(),
                            candidates,
                            descendants,
                            forks: Vec::new(),
                        });
                    }
                }
                EventKind::Fork => {
                    if let Some(&i) = deferred_of.get(&ev.ppid) {
                        deferred[i].forks.push(ev.clone());
                        deferred_of.insert(ev.pid, i);
                    } else {
                        self.follow(ev, &mut watched);
                    }
                }
                EventKind::Exit => {
                    watched.remove(&ev.pid);
                }
            }
        }
        if watched.len() > 4096 {
            watched.retain(|_, (_, at)| at.elapsed() < WATCH);
        }
        deferred
    }

    /// Second half, with no lock held: decides the deferred execs (reading /proc) and queues
    /// their moves, then follows the forks they made in the same batch.
    pub fn finish(&self, deferred: Vec<Deferred>) {
        for d in deferred {
            let Some(rule) = d.decide(&self.rules) else {
                self.release_unplaced(&d.exec);
                continue;
            };
            let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
            self.place(
                exec_identity(&d.exec),
                Some(d.exec.ts_ns),
                d.exec.held.then_some(d.exec.start_ns),
                rule,
                d.descendants,
                &mut watched,
            );
            for f in &d.forks {
                self.follow(f, &mut watched);
            }
        }
    }

    /// Hands a move to the mover thread. If that thread is gone (it panicked), placement is
    /// dead: the agent exits non-zero so that its supervisor restarts it, instead of running on
    /// without enforcing the rules.
    fn queue(&self, job: Job) {
        if self.jobs.send(job).is_err() {
            log::error!(
                "the placement mover thread has died; exiting so that the agent is restarted with placement working"
            );
            std::process::exit(70);
        }
    }

    /// Queues the move of a process (`exec_ts_ns`: the exec it is placed for; `None` for a
    /// sweep; `held`: its start time when it was held at exec, to resume it once moved) and of
    /// the descendants it forked before, and watches them all.
    fn place(
        &self,
        (pid, start_ticks): (u32, u64),
        exec_ts_ns: Option<u64>,
        held: Option<u64>,
        rule: &Rule,
        descendants: Vec<(u32, u64)>,
        watched: &mut HashMap<u32, (Arc<str>, Instant)>,
    ) {
        let slice: Arc<str> = Arc::from(rule.slice.as_str());
        self.queue(Job {
            pid,
            start_ticks,
            slice: Some(slice.clone()),
            exec_ts_ns,
            release: held.map_or(Release::No, Release::Held),
        });
        watched.insert(pid, (slice.clone(), Instant::now()));
        for (d, start_ticks) in descendants {
            self.queue(Job {
                pid: d,
                start_ticks,
                slice: Some(slice.clone()),
                exec_ts_ns: None,
                release: Release::No,
            });
            self.stats.followers.fetch_add(1, Ordering::Relaxed);
            watched.insert(d, (slice.clone(), Instant::now()));
        }
    }

    /// A fork of a watched process: the child is watched too, and moved unless the kernel
    /// already created it inside the slice.
    fn follow(&self, ev: &ProcEvent, watched: &mut HashMap<u32, (Arc<str>, Instant)>) {
        let Some((slice, _)) = watched.get(&ev.ppid).cloned() else {
            return;
        };
        let in_slice = self
            .slice_ids
            .get(&*slice)
            .is_some_and(|id| *id == ev.cgroup_id);
        watched.insert(ev.pid, (slice.clone(), Instant::now()));
        if !in_slice {
            self.queue(Job {
                pid: ev.pid,
                start_ticks: crate::tree::ns_to_ticks(ev.start_ns),
                slice: Some(slice),
                exec_ts_ns: None,
                release: Release::No,
            });
            self.stats.followers.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn report(&self) -> PlacementReport {
        let s = &self.stats;
        PlacementReport {
            rules: self
                .rules
                .iter()
                .map(|r| format!("{} -> {}", r.label, r.slice))
                .collect(),
            placed: s.placed.load(Ordering::Relaxed),
            exited_before_placement: s.exited_before_placement.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            followers: s.followers.load(Ordering::Relaxed),
            swept: s.swept.load(Ordering::Relaxed),
            latency_us: s.latency.summary(),
            move_us: s.moves.summary(),
            hold: self.hold_report(),
        }
    }

    fn hold_report(&self) -> HoldReport {
        let rules = self
            .rules
            .iter()
            .filter(|r| r.hold)
            .map(|r| r.label.clone())
            .collect();
        hold_report(&self.exec.hold, rules, Some(&self.stats))
    }
}

/// The hold part of the placement report (`stats`: the running placement's, if any).
pub fn hold_report(
    support: &hold::Support,
    rules: Vec<String>,
    stats: Option<&Stats>,
) -> HoldReport {
    let held_us = stats.map(|s| s.held.summary()).unwrap_or_default();
    match support {
        hold::Support::Off(reason) => HoldReport {
            active: false,
            reason: Some(reason.clone()),
            rules,
            held_us,
            ..HoldReport::default()
        },
        hold::Support::Active(h) => {
            let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
            HoldReport {
                active: true,
                reason: None,
                rules,
                held_now: h.count() as u64,
                released: n(&h.stats.released),
                timed_out: n(&h.stats.timed_out),
                orphans: n(&h.stats.orphans),
                gone: n(&h.stats.gone),
                held_us,
            }
        }
    }
}

/// Whether the process has exited (gone, or a zombie that cannot be moved).
fn gone_or_zombie(pid: u32) -> bool {
    procfs::process::Process::new(pid as i32)
        .and_then(|p| p.stat())
        .map(|s| s.state == 'Z')
        .unwrap_or(true)
}

/// One move through the slice's cached `cgroup.procs` (opened now if `warm` could not).
/// Returns (the kernel's move, the time before it: fd lookup or open and the /proc identity
/// check); the same steps as [`Manager::move_with`], timed apart.
fn move_cached(
    open: &mut HashMap<Arc<str>, ProcsFile>,
    manager: &Manager,
    job: &Job,
    slice: &Arc<str>,
) -> std::result::Result<(Duration, Duration), CgroupError> {
    let t0 = Instant::now();
    let procs = match open.entry(slice.clone()) {
        Entry::Occupied(o) => o.into_mut(),
        Entry::Vacant(v) => v.insert(manager.procs_file(slice)?),
    };
    let start = (job.start_ticks != 0).then_some(job.start_ticks);
    let info = procman_cgroup::procs::check_mutable_process(job.pid, start)?;
    let before = t0.elapsed();
    Ok((procs.write_checked(job.pid, &info)?, before))
}

/// Where a placement's time went, µs (for the log).
#[derive(Default)]
struct Parts {
    /// Exec (kernel timestamp) until the mover took the job.
    to_mover: u64,
    /// In the mover before the kernel's move (fd lookup or open, the /proc identity check).
    before: u64,
    /// The kernel's move.
    kernel: u64,
    /// After it (the pid-reuse re-check).
    after: u64,
}

/// Opens every rule slice's `cgroup.procs` before the first exec needs it (at start and at
/// each reload, whose placement starts afresh), so the first placement pays no path walk and
/// open. A slice that cannot be opened now is opened on first use (and its error reported
/// then, per move).
fn warm(rules: &[Rule], manager: &Manager) -> HashMap<Arc<str>, ProcsFile> {
    let mut open: HashMap<Arc<str>, ProcsFile> = HashMap::new();
    for r in rules {
        if open.contains_key(r.slice.as_str()) {
            continue;
        }
        match manager.procs_file(&r.slice) {
            Ok(f) => {
                open.insert(Arc::from(r.slice.as_str()), f);
            }
            Err(e) => log::warn!("{}: slice {}: {e}", r.label, r.slice),
        }
    }
    open
}

fn mover(
    rx: mpsc::Receiver<Job>,
    manager: Arc<Manager>,
    stats: Arc<Stats>,
    holds: Option<Arc<Holds>>,
    mut open: HashMap<Arc<str>, ProcsFile>,
) {
    // A placement is a short burst after a long sleep: at nice -10 the woken mover preempts
    // whatever runs on the CPU instead of queueing behind it (the hop from the event loop
    // went from ~340 to ~90 µs at p90 on the 2-core host). It sleeps otherwise.
    // SAFETY: setpriority on this thread's own tid.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as u32, -10) };
    // Run the move's /proc steps once now, on the agent itself (refused: it never moves
    // itself), so that the first placement does not pay for their first run: paging the code
    // in, and under an emulator translating it (measured in the TCG VM: the first placement's
    // identity checks took 3-11 ms against about 1.5 ms for the later ones).
    let me = std::process::id();
    let _ = procman_cgroup::procs::check_mutable_process(me, None);
    let _ = procman_cgroup::procs::proc_info(me);
    // each slice's cgroup.procs stays open (pre-opened by `warm`): no path walk and open per move
    let mut first = true;
    for job in rx {
        if let Some(slice) = &job.slice {
            move_one(&mut open, &manager, &stats, &job, slice, &mut first);
        }
        match (job.release, &holds) {
            (Release::No, _) | (_, None) => {}
            (Release::Held(start_ns), Some(h)) => {
                if let Some(took) = h.release(job.pid, start_ns) {
                    stats.held.record(took.as_micros() as u64);
                }
            }
            (Release::Orphan(hold), Some(h)) => h.release_orphan(job.pid, hold),
        }
    }
}

/// One job's move, counted in `stats`; the first placement's parts are logged at info
/// (`first`), the others at debug.
fn move_one(
    open: &mut HashMap<Arc<str>, ProcsFile>,
    manager: &Manager,
    stats: &Stats,
    job: &Job,
    slice: &Arc<str>,
    first: &mut bool,
) {
    let picked_ns = now_monotonic_ns();
    let picked = Instant::now();
    let was_open = open.contains_key(slice);
    let mut result = move_cached(open, manager, job, slice);
    // a slice removed and made again behind our back: open it afresh, once
    if matches!(result, Err(CgroupError::Write { .. })) {
        open.remove(slice);
        result = move_cached(open, manager, job, slice);
    }
    match result {
        Ok((took, before)) => {
            if let Some(ts) = job.exec_ts_ns {
                stats.moves.record(took.as_micros() as u64);
                stats.placed.fetch_add(1, Ordering::Relaxed);
                let us = now_monotonic_ns().saturating_sub(ts) / 1000;
                stats.latency.record(us);
                let p = Parts {
                    to_mover: picked_ns.saturating_sub(ts) / 1000,
                    before: before.as_micros() as u64,
                    kernel: took.as_micros() as u64,
                    after: picked.elapsed().saturating_sub(before + took).as_micros() as u64,
                };
                let what = if std::mem::take(first) {
                    log::Level::Info
                } else {
                    log::Level::Debug
                };
                log::log!(
                    what,
                    "placement of pid {} into {slice}{}: {us} µs from exec: {} µs to reach the mover, {} µs before the move ({}), {} µs the kernel's move, {} µs after it",
                    job.pid,
                    if what == log::Level::Info { " (the first of this placement)" } else { "" },
                    p.to_mover,
                    p.before,
                    if was_open { "cgroup.procs already open" } else { "cgroup.procs opened now" },
                    p.kernel,
                    p.after
                );
            }
        }
        Err(CgroupError::NoSuchProcess { .. }) | Err(CgroupError::PidReused { .. }) => {
            if job.exec_ts_ns.is_some() {
                stats
                    .exited_before_placement
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        Err(CgroupError::PidReusedDuringMove { .. }) => {
            stats
                .exited_before_placement
                .fetch_add(u64::from(job.exec_ts_ns.is_some()), Ordering::Relaxed);
        }
        Err(e) => {
            // a zombie (exited, not reaped) cannot be moved either: count it as exited
            if gone_or_zombie(job.pid) {
                stats
                    .exited_before_placement
                    .fetch_add(u64::from(job.exec_ts_ns.is_some()), Ordering::Relaxed);
            } else {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                log::warn!("placing pid {} into slice {slice}: {e}", job.pid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_window_percentiles_without_sorting() {
        let w = Window::default();
        assert_eq!(w.summary().count, 0);
        for us in 1..=1000 {
            w.record(us);
        }
        w.record(0); // counted as 1 µs
        let s = w.summary();
        assert_eq!(s.count, 1001);
        // two significant digits: within 1%
        assert!((495..=505).contains(&s.p50), "{s:?}");
        assert!((891..=909).contains(&s.p90), "{s:?}");
        assert!((980..=1000).contains(&s.p99), "{s:?}");
        assert!((990..=1010).contains(&s.max), "{s:?}");
        assert_eq!(s.buckets.iter().sum::<u64>(), 1001);
    }
}

//! The policy engine: `[[policy]]` rules of the form "when this holds for that long, take
//! these steps" (issue #12).
//!
//! - [`config`]: the entries as written and their validation into [`config::Policy`].
//! - [`engine`]: the state machine, pure over rows and a clock ([`engine::Engine::tick`]).
//! - [`actuator`]: what actions do ([`actuator::Actuator`]; [`actuator::SysActuator`] is the
//!   real one).
//! - this module: the glue with the agent. After each sample the sampler calls
//!   [`Policies::tick`]: it copies the rows it needs out of the table and the usage map (read
//!   locks, memory only), releases them, reads what only /proc or cgroupfs has (open fds when
//!   a policy asks for them, slice stats for slice-scope policies), evaluates, and hands the
//!   actions due to the `policy-actions` thread, which carries them out through the actuator
//!   and writes one audit record and one log line per action (dry-run ones too).
pub mod actuator;
pub mod config;
pub mod engine;

use crate::{
    audit::{Actor, Record},
    core::Agent,
    query::{self, usage_of},
};
use actuator::{Actuator, Target};
use config::{Action, Mode, Policy, Scope};
use engine::{Engine, EvalRow, Now, Planned, TargetKey};
use procman_common::{
    api::{Comm, SliceStats},
    filter::{Field, Fields},
    policy::{
        Explain, PolicyList, PolicyStatus, PolicyTestReport, PolicyTestResult, RuleExplain,
        TargetStatus, TestHit,
    },
};
use std::{
    borrow::Cow,
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc, Arc, Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

fn now_epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Seconds since the epoch at boot.
fn boot_time() -> f64 {
    static BT: OnceLock<f64> = OnceLock::new();
    *BT.get_or_init(|| procfs::boot_time_secs().map(|s| s as f64).unwrap_or(0.0))
}

/// What a process offers to policies: copied out of the table and the usage map, so that
/// evaluation holds no lock.
#[derive(Debug, Clone)]
pub struct ProcRow {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub start_ticks: u64,
    pub comm: Comm,
    pub exe: Option<Arc<str>>,
    pub user: Arc<str>,
    pub protected: Option<&'static str>,
    /// Unix time the process started, and of this row.
    pub started: f64,
    pub now: f64,
    pub usage: Option<RowUsage>,
    pub fds: Option<u32>,
    pub zombies: u32,
    /// The managed root (`[cgroup] root`), for the `slice` field.
    pub slice_root: Arc<str>,
}

/// The sampler's figures for a row.
#[derive(Debug, Clone, Default)]
pub struct RowUsage {
    pub state: char,
    pub cpu_pct: f32,
    pub mem_pct: f32,
    pub rss_bytes: u64,
    pub mem_growth_bps: f64,
    pub threads: u32,
    pub read_bps: f64,
    pub write_bps: f64,
    pub runq_pct: Option<f32>,
    pub cmdline: Arc<str>,
    pub cgroup: Option<Arc<str>>,
}

impl Fields for ProcRow {
    fn number(&self, f: Field) -> Option<f64> {
        let u = self.usage.as_ref();
        Some(match f {
            Field::Pid => self.pid as f64,
            Field::Ppid => self.ppid as f64,
            Field::Uid => self.uid as f64,
            Field::Threads => u?.threads as f64,
            Field::Fds => self.fds? as f64,
            Field::Cpu => u?.cpu_pct as f64,
            Field::Memory => u?.mem_pct as f64,
            Field::Rss => u?.rss_bytes as f64,
            Field::IoRead => u?.read_bps,
            Field::IoWrite => u?.write_bps,
            Field::Age => (self.now - self.started).max(0.0),
            Field::MemGrowth => u?.mem_growth_bps,
            Field::Runq => u?.runq_pct? as f64,
            Field::Zombies => self.zombies as f64,
            _ => return None,
        })
    }

    fn text(&self, f: Field) -> Option<Cow<'_, str>> {
        let u = self.usage.as_ref();
        Some(match f {
            Field::Name => self.comm.to_str_lossy(),
            Field::Exe => Cow::Borrowed(self.exe.as_deref()?),
            Field::Cmdline => Cow::Borrowed(&*u?.cmdline),
            Field::User => Cow::Borrowed(&*self.user),
            Field::State => Cow::Owned(u?.state.to_string()),
            Field::Status => {
                Cow::Borrowed(procman_common::api::ProcessStatus::from_letter(u?.state).as_str())
            }
            Field::Cgroup => Cow::Borrowed(u?.cgroup.as_deref()?),
            Field::Slice => Cow::Borrowed(query::slice_of_cgroup(
                u?.cgroup.as_deref()?,
                &self.slice_root,
            )?),
            _ => return None,
        })
    }
}

impl EvalRow for ProcRow {
    fn key(&self) -> TargetKey {
        TargetKey::Process {
            pid: self.pid,
            start_ticks: self.start_ticks,
        }
    }
    fn label(&self) -> String {
        format!("pid {} ({})", self.pid, self.comm.to_str_lossy())
    }
    fn protected(&self) -> Option<&'static str> {
        self.protected
    }
}

/// Why no policy may touch a process, if so: pid 1, kernel threads, the agent.
pub fn protection(pid: u32, ppid: u32, kthread: bool) -> Option<&'static str> {
    if pid <= 1 {
        Some("pid 1 is never acted on")
    } else if kthread || pid == 2 || ppid == 2 {
        Some("kernel threads are never acted on")
    } else if pid == std::process::id() {
        Some("the agent never acts on itself")
    } else {
        None
    }
}

/// A managed slice as slice-scope policies see it.
#[derive(Debug, Clone)]
pub struct SliceRow {
    pub name: Arc<str>,
    pub path: String,
    pub stats: SliceStats,
}

impl Fields for SliceRow {
    fn number(&self, f: Field) -> Option<f64> {
        let p = &self.stats.pressure;
        match f {
            Field::PsiCpu => p.cpu.as_ref().map(|x| x.some.avg10),
            Field::PsiMemory => p.memory.as_ref().map(|x| x.some.avg10),
            Field::PsiIo => p.io.as_ref().map(|x| x.some.avg10),
            Field::MemoryCurrent => self.stats.memory.as_ref().map(|m| m.current as f64),
            _ => None,
        }
    }
    fn text(&self, f: Field) -> Option<Cow<'_, str>> {
        match f {
            Field::Slice | Field::Name => Some(Cow::Borrowed(&*self.name)),
            Field::Cgroup => Some(Cow::Borrowed(&self.path)),
            _ => None,
        }
    }
}

impl EvalRow for SliceRow {
    fn key(&self) -> TargetKey {
        TargetKey::Slice(self.name.clone())
    }
    fn label(&self) -> String {
        format!("slice {}", self.name)
    }
}

/// Which costly facts the rows need.
#[derive(Debug, Clone, Copy, Default)]
struct Needs {
    fds: bool,
    zombies: bool,
}

impl Needs {
    fn of<'a>(policies: impl Iterator<Item = &'a Policy>) -> Needs {
        let mut n = Needs::default();
        for p in policies.filter(|p| p.scope == Scope::Process) {
            n.fds |= p.uses(Field::Fds);
            n.zombies |= p.uses(Field::Zombies);
        }
        n
    }
}

/// Copies the live processes out of the table and the usage map (read locks, memory only);
/// `only` restricts to one pid.
fn process_rows(agent: &Agent, needs: Needs, only: Option<u32>) -> Vec<ProcRow> {
    let root: Arc<str> = Arc::from(agent.enforcer.root());
    let now = now_epoch();
    let hz = procfs::ticks_per_second() as f64;
    let mut users: HashMap<u32, Arc<str>> = HashMap::new();
    let mut rows = Vec::new();
    {
        let table = agent.table.read().unwrap_or_else(|e| e.into_inner());
        let usage = agent
            .monitor
            .usage
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let mut zombies: HashMap<u32, u32> = HashMap::new();
        if needs.zombies {
            for e in table.iter() {
                if e.exited || usage_of(&usage, e).is_some_and(|u| u.state == 'Z') {
                    *zombies.entry(e.ppid).or_default() += 1;
                }
            }
        }
        let entries: Box<dyn Iterator<Item = _>> = match only {
            Some(pid) => Box::new(table.get(pid).into_iter()),
            None => Box::new(table.iter()),
        };
        rows.reserve(if only.is_some() { 1 } else { table.len() });
        for e in entries.filter(|e| !e.exited) {
            let u = usage_of(&usage, e);
            let user = users
                .entry(e.uid)
                .or_insert_with(|| Arc::from(query::user_name(e.uid)))
                .clone();
            rows.push(ProcRow {
                pid: e.pid,
                ppid: e.ppid,
                uid: e.uid,
                start_ticks: e.start_ticks,
                comm: e.comm,
                exe: e.exe.clone(),
                user,
                protected: protection(e.pid, e.ppid, e.kthread),
                started: boot_time() + e.start_ticks as f64 / hz,
                now,
                usage: u.map(|u| RowUsage {
                    state: u.state,
                    cpu_pct: u.cpu_pct,
                    mem_pct: u.mem_pct,
                    rss_bytes: u.rss_bytes,
                    mem_growth_bps: u.mem_growth_bps,
                    threads: u.threads,
                    read_bps: u.read_bps,
                    write_bps: u.write_bps,
                    runq_pct: u.sched.map(|s| s.runq_wait_percent),
                    cmdline: u.cmdline.clone(),
                    cgroup: u.cgroup.clone(),
                }),
                fds: None,
                zombies: zombies.get(&e.pid).copied().unwrap_or(0),
                slice_root: root.clone(),
            });
        }
    }
    if needs.fds {
        // /proc/PID/fd walks, after the locks are gone
        for r in rows.iter_mut().filter(|r| r.protected.is_none()) {
            r.fds = query::count_fds(r.pid).map(|c| c.total);
        }
    }
    rows
}

/// The managed slices with their stats (cgroupfs reads; opens the managed root).
fn slice_rows(agent: &Agent) -> Vec<SliceRow> {
    let Ok(m) = agent.enforcer.manager() else {
        return Vec::new();
    };
    let Ok(names) = m.list_slices() else {
        return Vec::new();
    };
    names
        .into_iter()
        .filter_map(|name| {
            Some(SliceRow {
                path: m.slice_path(&name).ok()?.display().to_string(),
                stats: m.stats(&name).ok()?,
                name: Arc::from(name),
            })
        })
        .collect()
}

/// Notify commands running in threads of their own, at most [`MAX_NOTIFYING`]; more run in
/// line on the actions thread.
static NOTIFYING: AtomicUsize = AtomicUsize::new(0);
const MAX_NOTIFYING: usize = 16;

/// The last evaluation's cost, for `GET /api/policies`.
#[derive(Debug, Default, Clone, Copy)]
pub struct TickCost {
    pub rows: usize,
    pub build_ms: f64,
    pub eval_ms: f64,
}

/// The agent's policy engine: the rules, their state, and the thread that carries out
/// their actions.
pub struct Policies {
    engine: Mutex<Engine>,
    origin: Instant,
    jobs: Mutex<Option<mpsc::Sender<Planned>>>,
    pub last: Mutex<TickCost>,
}

impl Policies {
    pub fn new(policies: Vec<Policy>) -> Policies {
        Policies {
            engine: Mutex::new(Engine::new(policies)),
            origin: Instant::now(),
            jobs: Mutex::new(None),
            last: Mutex::default(),
        }
    }

    fn now(&self) -> Now {
        self.origin.elapsed()
    }

    fn engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the thread that carries out actions with `actuator`.
    pub fn start(&self, agent: &Arc<Agent>, actuator: Arc<dyn Actuator>) {
        let (tx, rx) = mpsc::channel::<Planned>();
        let weak = Arc::downgrade(agent);
        let spawned = std::thread::Builder::new()
            .name("policy-actions".into())
            .spawn(move || {
                while let Ok(p) = rx.recv() {
                    let Some(agent) = weak.upgrade() else { return };
                    if matches!(p.action, Action::Notify(_))
                        && !p.dry_run
                        && NOTIFYING.fetch_add(1, Ordering::Relaxed) < MAX_NOTIFYING
                    {
                        // a slow notify command must not hold back a kill
                        let act = actuator.clone();
                        let spawned = std::thread::Builder::new()
                            .name("policy-notify".into())
                            .spawn(move || {
                                execute(&agent, &*act, p);
                                NOTIFYING.fetch_sub(1, Ordering::Relaxed);
                            });
                        if spawned.is_err() {
                            NOTIFYING.fetch_sub(1, Ordering::Relaxed);
                        }
                    } else {
                        if matches!(p.action, Action::Notify(_)) && !p.dry_run {
                            // more than MAX_NOTIFYING running: this one runs in line
                            NOTIFYING.fetch_sub(1, Ordering::Relaxed);
                        }
                        execute(&agent, &*actuator, p);
                    }
                }
            });
        match spawned {
            Ok(_) => *self.jobs.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx),
            Err(e) => {
                log::error!("cannot start the policy-actions thread: {e}; policies will not act")
            }
        }
    }

    /// Replaces the rules (a reload); unchanged policies keep their state.
    pub fn replace(&self, policies: Vec<Policy>) {
        self.engine().replace(policies);
    }

    pub fn len(&self) -> usize {
        self.engine().policies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One evaluation, after a sample (blocking: /proc and cgroupfs reads when asked for).
    pub fn tick(&self, agent: &Agent) {
        let (needs, slices_needed) = {
            let e = self.engine();
            if e.is_empty() {
                return;
            }
            (
                Needs::of(e.policies.iter().map(|p| &**p)),
                e.has_scope(Scope::Slice),
            )
        };
        let t0 = Instant::now();
        let procs = process_rows(agent, needs, None);
        let slices = if slices_needed {
            slice_rows(agent)
        } else {
            Vec::new()
        };
        let t1 = Instant::now();
        let planned = self.engine().tick(self.now(), &procs, &slices);
        let t2 = Instant::now();
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = TickCost {
            rows: procs.len() + slices.len(),
            build_ms: (t1 - t0).as_secs_f64() * 1e3,
            eval_ms: (t2 - t1).as_secs_f64() * 1e3,
        };
        if planned.is_empty() {
            return;
        }
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        for p in planned {
            match jobs.as_ref() {
                Some(tx) => {
                    let _ = tx.send(p);
                }
                None => log::warn!(
                    "policy {}: {} due for {}, but the actions thread is not running",
                    p.policy.name,
                    p.action_text,
                    p.label
                ),
            }
        }
    }

    /// `GET /api/policies`.
    pub fn list(&self) -> PolicyList {
        let now = self.now();
        let epoch = now_epoch();
        let cost = *self.last.lock().unwrap_or_else(|e| e.into_inner());
        let mut e = self.engine();
        let Engine {
            policies, state, ..
        } = &mut *e;
        PolicyList {
            last_rows: cost.rows,
            last_build_seconds: cost.build_ms / 1e3,
            last_eval_seconds: cost.eval_ms / 1e3,
            policies: policies
                .iter()
                .zip(state.iter_mut())
                .map(|(p, st)| {
                    let free_at = st.budget_free_at(now, p);
                    let budget_left = st.budget_left(now, p);
                    let (effective, note) = match (p.mode, free_at) {
                        (Mode::DryRun, _) => (Mode::DryRun, None),
                        (Mode::Enforce, Some(at)) => (
                            Mode::DryRun,
                            Some(format!(
                                "budget spent ({}): dry-run until {}",
                                p.budget,
                                clock(epoch + at.saturating_sub(now).as_secs_f64())
                            )),
                        ),
                        (Mode::Enforce, None) => (Mode::Enforce, None),
                    };
                    let mut targets: Vec<TargetStatus> = st
                        .targets
                        .iter()
                        .map(|(k, t)| target_status(p, k, t, now))
                        .collect();
                    targets.sort_by(|a, b| a.target.cmp(&b.target));
                    PolicyStatus {
                        name: p.name.clone(),
                        scope: p.scope.as_str().into(),
                        mode: p.mode.as_str().into(),
                        effective_mode: effective.as_str().into(),
                        note,
                        match_: p.match_.as_ref().map_or("", |m| m.source()).into(),
                        when: p.when.source().into(),
                        for_seconds: p.for_.as_secs_f64(),
                        then: p.then_text.clone(),
                        recheck_seconds: p.recheck.as_secs_f64(),
                        cooldown_seconds: p.cooldown.as_secs_f64(),
                        max_actions: p.budget.to_string(),
                        budget_left,
                        hits: st.hits,
                        actions_taken: st.actions_taken,
                        actions_failed: st.actions_failed,
                        dry_run_actions: st.dry_run_actions,
                        targets,
                    }
                })
                .collect(),
        }
    }

    /// `GET /api/policies/explain/{pid}`: `None` when the table has no such live process.
    pub fn explain(&self, agent: &Agent, pid: u32) -> Option<Explain> {
        let needs = {
            let e = self.engine();
            Needs::of(e.policies.iter().map(|p| &**p))
        };
        let row = process_rows(agent, needs, Some(pid)).pop()?;
        let now = self.now();
        let mut e = self.engine();
        let Engine {
            policies, state, ..
        } = &mut *e;
        let key = row.key();
        let policies = policies
            .iter()
            .zip(state.iter_mut())
            .map(|(p, st)| {
                let effective = if p.mode == Mode::Enforce && st.budget_left(now, p) > 0 {
                    Mode::Enforce
                } else {
                    Mode::DryRun
                };
                explain_one(p, effective, st.targets.get(&key), &row, now)
            })
            .collect();
        Some(Explain {
            pid,
            name: row.comm.to_str_lossy().into_owned(),
            protected: row.protected.map(String::from),
            policies,
        })
    }
}

/// `POST /api/policies/test`: what `policies` would hit now, without acting or keeping state.
pub fn test(agent: &Agent, policies: &[Policy]) -> PolicyTestReport {
    const MAX_HITS: usize = 200;
    let needs = Needs::of(policies.iter());
    let procs = process_rows(agent, needs, None);
    let slices = if policies.iter().any(|p| p.scope == Scope::Slice) {
        slice_rows(agent)
    } else {
        Vec::new()
    };
    fn run<R: EvalRow>(p: &Policy, rows: &[R]) -> PolicyTestResult {
        let mut r = PolicyTestResult {
            name: p.name.clone(),
            scope: p.scope.as_str().into(),
            mode: p.mode.as_str().into(),
            then: p.then_text.clone(),
            ..Default::default()
        };
        for row in rows {
            if row.protected().is_some() || p.match_.as_ref().is_some_and(|m| !m.matches(row)) {
                continue;
            }
            r.matched += 1;
            if p.when.matches(row) && r.hits.len() < MAX_HITS {
                let pid = match row.key() {
                    TargetKey::Process { pid, .. } => Some(pid),
                    TargetKey::Slice(_) => None,
                };
                r.hits.push(TestHit {
                    target: row.label(),
                    pid,
                    conditions: p.when.explain(row),
                    would: format!(
                        "{}{} after {} more of this",
                        if p.mode == Mode::DryRun {
                            "log (dry-run) "
                        } else {
                            ""
                        },
                        p.then_text[0],
                        procman_common::units::fmt_duration(p.for_)
                    ),
                });
            }
        }
        r
    }
    PolicyTestReport {
        policies: policies
            .iter()
            .map(|p| match p.scope {
                Scope::Process => run(p, &procs),
                Scope::Slice => run(p, &slices),
            })
            .collect(),
    }
}

/// `HH:MM:SS UTC` of a Unix time.
fn clock(epoch: f64) -> String {
    let s = epoch.max(0.0) as u64 % 86400;
    format!("{:02}:{:02}:{:02} UTC", s / 3600, s % 3600 / 60, s % 60)
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

fn target_status(p: &Policy, key: &TargetKey, t: &engine::Tracked, now: Now) -> TargetStatus {
    let cooling = t.cooldown_until.filter(|c| now < *c);
    let (next_action, next_in_seconds) = match (cooling, t.first_true) {
        (None, Some(first)) => {
            let due = if t.step == 0 {
                first + p.for_
            } else {
                t.next_at.unwrap_or(now)
            };
            (
                p.then_text.get(t.step).cloned(),
                Some(secs(due.saturating_sub(now))),
            )
        }
        _ => (None, None),
    };
    TargetStatus {
        target: t.label.clone(),
        pid: match key {
            TargetKey::Process { pid, .. } => Some(*pid),
            TargetKey::Slice(_) => None,
        },
        state: if cooling.is_some() {
            "cooldown"
        } else if t.step > 0 {
            "escalating"
        } else {
            "pending"
        }
        .into(),
        true_for_seconds: t.first_true.map(|f| secs(now.saturating_sub(f))),
        steps_taken: t.step,
        next_action,
        next_in_seconds,
        cooldown_left_seconds: cooling.map(|c| secs(c - now)),
    }
}

fn explain_one(
    p: &Policy,
    effective: Mode,
    tracked: Option<&engine::Tracked>,
    row: &ProcRow,
    now: Now,
) -> RuleExplain {
    let mut r = RuleExplain {
        policy: p.name.clone(),
        scope: p.scope.as_str().into(),
        effective_mode: effective.as_str().into(),
        match_: p.match_.as_ref().map_or("", |m| m.source()).into(),
        when: p.when.source().into(),
        for_seconds: p.for_.as_secs_f64(),
        ..Default::default()
    };
    if p.scope == Scope::Slice {
        r.next = "nothing: this policy watches slices, not processes".into();
        return r;
    }
    r.match_terms = p
        .match_
        .as_ref()
        .map(|m| m.explain(row))
        .unwrap_or_default();
    r.matches = p.match_.as_ref().is_none_or(|m| m.matches(row));
    r.conditions = p.when.explain(row);
    let when = p.when.matches(row);
    r.holds = r.matches && when && row.protected.is_none();
    let verb = |a: &str| {
        if effective == Mode::DryRun {
            format!("log `{a}` (dry-run)")
        } else {
            format!("`{a}`")
        }
    };
    if let Some(why) = row.protected {
        r.next = format!("never: {why}");
        return r;
    }
    if !r.matches {
        r.next = "nothing: `match` does not select this process".into();
        return r;
    }
    let t = tracked;
    r.steps_taken = t.map_or(0, |t| t.step);
    if let Some(c) = t.and_then(|t| t.cooldown_until).filter(|c| now < *c) {
        r.next = format!(
            "nothing: cooling down for {} more (then `for` starts over)",
            procman_common::units::fmt_duration(c - now)
        );
        r.next_in_seconds = Some(secs(c - now));
        return r;
    }
    let first = t.and_then(|t| t.first_true);
    r.true_for_seconds = first.map(|f| secs(now.saturating_sub(f)));
    let step = r.steps_taken;
    let action = &p.then_text[step];
    r.next_action = Some(action.clone());
    match (when, first) {
        (false, _) => {
            r.next = format!(
                "nothing while `when` is false; once it holds for {}: {}",
                procman_common::units::fmt_duration(p.for_),
                verb(&p.then_text[0])
            );
            r.next_action = Some(p.then_text[0].clone());
        }
        (true, None) => {
            r.next = format!(
                "{} once `when` has held for {} (from the next sample)",
                verb(action),
                procman_common::units::fmt_duration(p.for_)
            );
            r.next_in_seconds = Some(secs(p.for_));
        }
        (true, Some(first)) => {
            let due = if step == 0 {
                first + p.for_
            } else {
                t.and_then(|t| t.next_at).unwrap_or(now)
            };
            let left = due.saturating_sub(now);
            r.next = format!(
                "{} in {} if `when` still holds (step {} of {})",
                verb(action),
                procman_common::units::fmt_duration(left),
                step + 1,
                p.then.len()
            );
            r.next_in_seconds = Some(secs(left));
        }
    }
    r
}

/// What a planned action does: in dry-run, nothing (the actuator is not called); otherwise
/// the actuator's method for the action and target.
pub fn perform(act: &dyn Actuator, p: &Planned, event_json: &str) -> Result<String, String> {
    if p.dry_run {
        return Ok(format!(
            "dry-run: would {}{}",
            p.action_text,
            p.why_dry
                .as_deref()
                .map(|w| format!(" ({w})"))
                .unwrap_or_default()
        ));
    }
    let policy = &p.policy;
    match (&p.key, &p.action) {
        (_, Action::Notify(cmd)) => act.notify(cmd, event_json, policy.notify_timeout),
        (TargetKey::Process { pid, start_ticks }, a) => {
            let t = Target {
                pid: *pid,
                start_ticks: *start_ticks,
            };
            match a {
                Action::Renice(n) => act.renice(t, *n),
                Action::Ionice(c) => act.ionice(t, *c),
                Action::Signal(s) => act.signal(t, *s),
                Action::Limit(l) => act.limit(t, &policy.slice_name(), l),
                Action::Freeze => act.freeze(t),
                Action::Restart => act.restart(t),
                Action::Notify(_) => unreachable!("handled above"),
            }
        }
        (TargetKey::Slice(name), a) => match a {
            Action::Limit(l) => act.limit_slice(name, l),
            Action::Freeze => act.freeze_slice(name),
            Action::Signal(actuator::Signal::Kill) => act.kill_slice(name),
            Action::Restart => act.restart_slice(name),
            other => Err(format!("`{}` does not apply to slices", other.verb())),
        },
    }
}

/// Carries out (or, in dry-run, only records) one planned action: one audit record and one
/// log line.
fn execute(agent: &Agent, act: &dyn Actuator, p: Planned) {
    let p_name = &p.policy.name;
    let conditions: Vec<String> = p.conditions.iter().map(|c| c.to_string()).collect();
    let (pid, start_ticks) = match &p.key {
        TargetKey::Process { pid, start_ticks } => (Some(*pid), Some(*start_ticks)),
        TargetKey::Slice(_) => (None, None),
    };
    let event = serde_json::json!({
        "policy": p_name,
        "target": p.label,
        "pid": pid,
        "start_ticks": start_ticks,
        "step": p.step + 1,
        "steps": p.policy.then.len(),
        "action": p.action_text,
        "mode": if p.dry_run { "dry-run" } else { "enforce" },
        "why_dry_run": p.why_dry,
        "conditions": p.conditions,
        "when": p.policy.when.source(),
        "true_for_seconds": secs(p.true_for),
        "time": now_epoch(),
    });
    let result = perform(act, &p, &event.to_string());
    let why = format!(
        "step {}/{} after {:.1}s; {}",
        p.step + 1,
        p.policy.then.len(),
        p.true_for.as_secs_f64(),
        conditions.join(", ")
    );
    match &result {
        Ok(d) if p.dry_run => log::info!("policy {p_name}: {}: {d} ({why})", p.label),
        Ok(d) => log::info!(
            "policy {p_name}: {}: {}: {d} ({why})",
            p.label,
            p.action_text
        ),
        Err(e) => {
            log::warn!(
                "policy {p_name}: {}: {} failed: {e} ({why})",
                p.label,
                p.action_text
            );
            bump_failed(agent, &p.policy);
        }
    }
    agent.audit.record(Record {
        time: Default::default(),
        seq: 0,
        actor: Actor {
            uid: None,
            gid: None,
            pid: None,
            exe: None,
            via: format!("policy:{p_name}"),
        },
        action: p.action.verb().into(),
        target: match (pid, start_ticks) {
            (Some(_), Some(st)) => format!("{} start {st}", p.label),
            _ => p.label.clone(),
        },
        args: event,
        result: match (&result, p.dry_run) {
            (_, true) => "dry-run",
            (Ok(_), false) => "ok",
            (Err(_), false) => "error",
        }
        .into(),
        status: match (&result, p.dry_run) {
            (_, true) => 0,
            (Ok(_), false) => 200,
            (Err(_), false) => 500,
        },
        detail: Some(match result {
            Ok(d) => d,
            Err(e) => e,
        }),
    });
}

fn bump_failed(agent: &Agent, policy: &Arc<Policy>) {
    let mut e = agent.policies.engine();
    if let Some(i) = e.policies.iter().position(|q| Arc::ptr_eq(q, policy)) {
        e.state[i].actions_failed += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::actuator::{IoPrio, Signal};
    use super::*;
    use procman_cgroup::Limits;

    /// Records every call instead of acting.
    #[derive(Default)]
    struct Fake(Mutex<Vec<String>>);

    impl Fake {
        fn log(&self, s: String) -> Result<String, String> {
            self.0.lock().unwrap().push(s);
            Ok("done".into())
        }
    }

    impl Actuator for Fake {
        fn renice(&self, t: Target, nice: i32) -> Result<String, String> {
            self.log(format!("renice {} {} {nice}", t.pid, t.start_ticks))
        }
        fn ionice(&self, t: Target, c: IoPrio) -> Result<String, String> {
            self.log(format!("ionice {} {c}", t.pid))
        }
        fn signal(&self, t: Target, s: Signal) -> Result<String, String> {
            self.log(format!("signal {} {s:?}", t.pid))
        }
        fn limit(&self, t: Target, slice: &str, l: &Limits) -> Result<String, String> {
            self.log(format!("limit {} {slice} {l}", t.pid))
        }
        fn freeze(&self, t: Target) -> Result<String, String> {
            self.log(format!("freeze {}", t.pid))
        }
        fn notify(&self, cmd: &[String], ev: &str, _: Duration) -> Result<String, String> {
            self.log(format!("notify {} {ev}", cmd.join(" ")))
        }
        fn limit_slice(&self, s: &str, l: &Limits) -> Result<String, String> {
            self.log(format!("limit_slice {s} {l}"))
        }
        fn freeze_slice(&self, s: &str) -> Result<String, String> {
            self.log(format!("freeze_slice {s}"))
        }
        fn kill_slice(&self, s: &str) -> Result<String, String> {
            self.log(format!("kill_slice {s}"))
        }
        fn restart(&self, t: Target) -> Result<String, String> {
            self.log(format!("restart {}", t.pid))
        }
        fn restart_slice(&self, s: &str) -> Result<String, String> {
            self.log(format!("restart_slice {s}"))
        }
    }

    fn row(pid: u32, start: u64, cpu: f32) -> ProcRow {
        ProcRow {
            pid,
            ppid: 50,
            uid: 1000,
            start_ticks: start,
            comm: Comm::from("spin"),
            exe: None,
            user: Arc::from("alice"),
            protected: protection(pid, 50, false),
            started: 0.0,
            now: 100.0,
            usage: Some(RowUsage {
                cpu_pct: cpu,
                ..Default::default()
            }),
            fds: None,
            zombies: 0,
            slice_root: Arc::from("procman.slice"),
        }
    }

    fn engine(mode: &str) -> Engine {
        Engine::new(
            config::PolicyFile::parse(&format!(
                "[[policy]]\nname = \"p\"\nmatch = 'user == alice'\nwhen = 'cpu > 90%'\nfor = \"2s\"\nthen = [\"renice 10\", \"limit CPUQuota=50%\", \"notify /bin/true\", \"term\", \"kill\"]\nrecheck = \"1s\"\nmode = \"{mode}\""
            ))
            .unwrap(),
        )
    }

    fn drive(mode: &str) -> Vec<String> {
        let fake = Fake::default();
        let mut e = engine(mode);
        let none: &[SliceRow] = &[];
        for t in 0..=10 {
            for p in e.tick(Duration::from_secs(t), &[row(4242, 77, 99.0)], none) {
                perform(&fake, &p, "{}").unwrap();
            }
        }
        fake.0.into_inner().unwrap()
    }

    #[test]
    fn enforce_calls_the_actuator_step_by_step_with_the_identity() {
        assert_eq!(
            drive("enforce"),
            vec![
                "renice 4242 77 10",
                "limit 4242 policy-p CPUQuota=50%",
                "notify /bin/true {}",
                "signal 4242 Term",
                "signal 4242 Kill"
            ]
        );
    }

    #[test]
    fn dry_run_never_calls_the_actuator() {
        assert!(drive("dry-run").is_empty());
    }

    #[test]
    fn the_agent_itself_and_pid_1_are_never_targets() {
        let fake = Fake::default();
        let mut e = engine("enforce");
        let none: &[SliceRow] = &[];
        let me = row(std::process::id(), 1, 99.0);
        let init = row(1, 1, 99.0);
        for t in 0..=10 {
            for p in e.tick(Duration::from_secs(t), &[me.clone(), init.clone()], none) {
                perform(&fake, &p, "{}").unwrap();
            }
        }
        assert!(fake.0.into_inner().unwrap().is_empty());
    }
}

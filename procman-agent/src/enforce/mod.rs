//! The Enforcer: the one owner of cgroup decisions. It opens the managed subtree (at start
//! when the config declares slices or rules, else on the first request that needs it),
//! creates or re-adopts the configured slices, runs exec-time placement, and carries out the
//! API's limit / move / freeze / thaw requests.
//!
//! Every method here is blocking (cgroupfs and /proc I/O): the API calls them on the blocking
//! pool, never on an async worker. They return [`EnforceError`]s whose [`ErrorKind`] the API
//! maps to a status in one place.
pub mod error;
pub mod targets;

pub use error::{EnforceError, ErrorKind, Result};

use crate::{
    config::{Config, FavorDynmodsChoice},
    monitor::Monitor,
    placement::{Placement, Rule},
    tree::ProcTable,
};
use procman_cgroup::{Cgroup2Mount, CgroupError, Ensured, FavorDynmods, Limits, Manager};
use procman_common::{
    api::{
        EnforcementStatus, LimitRequest, MoveLatency, MoveStatus, PlacementReport,
        ProcessFreezeAnswer, ProcessInfo, SliceAnswer, SliceInfo,
    },
    filter::Filter,
};
use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, OnceLock, RwLock},
    time::Duration,
};

/// How long freeze waits for the kernel to report the slice frozen.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Enforcer {
    root: String,
    /// The cgroup2 mount's `favordynmods` as set up at start (None: no cgroup2 mount).
    favor: Option<Favor>,
    manager: OnceLock<Result<Arc<Manager>, String>>,
    /// Exec-time placement, replaced as a whole when a reload changes the rules.
    placement: RwLock<Option<Arc<Placement>>>,
    /// Slices the config declares (never removed by the agent).
    declared: RwLock<HashSet<String>>,
    /// Transient slices seen empty by the last [`Enforcer::remove_empty_transient`] pass.
    seen_empty: std::sync::Mutex<HashSet<String>>,
    /// One lock per slice: requests on the same slice (two `limit`s, a freeze and the
    /// janitor) run one after the other; different slices do not wait for each other.
    slice_locks: std::sync::Mutex<std::collections::HashMap<String, Arc<std::sync::Mutex<()>>>>,
    /// Hold-at-exec (from the event source), handed to each placement.
    exec: crate::events::ExecControl,
}

/// Whether a slice is one the agent made for a request (`procman limit --pid/--name`,
/// `procman run`) rather than one a user named.
pub fn is_transient(name: &str) -> bool {
    ["pid-", "name-", "run-"]
        .iter()
        .any(|p| name.strip_prefix(p).is_some_and(|rest| !rest.is_empty()))
}

/// `favordynmods` on the cgroup2 mount, as found (or set) at start.
#[derive(Debug, Clone, Copy)]
struct Favor {
    setting: FavorDynmodsChoice,
    active: bool,
    remounted: bool,
}

/// Applies `[cgroup] favordynmods` once at start: `on` remounts the cgroup2 mount with it
/// (an error refuses the start), `auto` and `off` only look.
fn favordynmods_at_start(setting: FavorDynmodsChoice) -> anyhow::Result<Option<Favor>> {
    let mount = match Cgroup2Mount::discover() {
        Ok(m) => m,
        Err(e) if setting == FavorDynmodsChoice::On => {
            anyhow::bail!("[cgroup] favordynmods = \"on\": {e}")
        }
        Err(_) => return Ok(None), // reported by the Enforcer when something needs cgroups
    };
    let path = mount.path.display().to_string();
    let favor = match setting {
        FavorDynmodsChoice::On => {
            let done = mount.ensure_favordynmods()?;
            if done == FavorDynmods::Remounted {
                log::warn!(
                    "cgroup2 mount {path}: remounted with favordynmods ([cgroup] favordynmods = \"on\"): moves into slices skip the RCU grace period; fork and exit are slightly slower host-wide"
                );
            }
            Favor {
                setting,
                active: true,
                remounted: done == FavorDynmods::Remounted,
            }
        }
        FavorDynmodsChoice::Auto | FavorDynmodsChoice::Off => Favor {
            setting,
            active: mount.favordynmods().unwrap_or(false),
            remounted: false,
        },
    };
    log::info!(
        "cgroup2 mount {path}: favordynmods {} ([cgroup] favordynmods = \"{}\"): {}",
        if favor.active { "on" } else { "off" },
        setting.as_str(),
        move_reason(favor.active)
    );
    Ok(Some(favor))
}

/// Why a move takes as long as it does.
fn move_reason(favordynmods: bool) -> &'static str {
    if favordynmods {
        "favordynmods: moves skip the grace period"
    } else {
        "each move waits for an RCU grace period (cgroup_threadgroup_rwsem)"
    }
}

fn open(root: &str) -> Result<Arc<Manager>, String> {
    let mount = Cgroup2Mount::discover().map_err(|e| format!("{e}"))?;
    let m = Manager::open(mount, root).map_err(|e| format!("{e}"))?;
    let caps = m.capabilities();
    if caps.is_degraded() {
        log::warn!("cgroup v2 degraded mode: {caps}");
    } else {
        log::info!("cgroup v2: {caps}");
    }
    Ok(Arc::new(m))
}

impl Enforcer {
    /// Sets up what the config asks for: opens the managed subtree, creates or re-adopts the
    /// declared slices (a slice whose limits cannot be enforced here is refused loudly and its
    /// rules disabled; the agent still starts) and starts placement.
    pub fn start(
        cfg: &Config,
        rules: Vec<Rule>,
        exec: crate::events::ExecControl,
    ) -> anyhow::Result<Enforcer> {
        let e = Enforcer {
            root: cfg.cgroup.root.clone(),
            favor: favordynmods_at_start(cfg.cgroup.favordynmods)?,
            manager: OnceLock::new(),
            placement: RwLock::new(None),
            declared: RwLock::new(HashSet::new()),
            seen_empty: Default::default(),
            slice_locks: Default::default(),
            exec,
        };
        e.apply(cfg, rules)?;
        Ok(e)
    }

    /// Applies the slices and rules of `cfg` (at start, and on a reload): each declared slice
    /// is created or its limits re-applied; placement restarts with the rules whose slice is
    /// usable, keeping its counters. Slices no longer declared are left alone (the kernel
    /// keeps them and their processes).
    pub fn apply(&self, cfg: &Config, rules: Vec<Rule>) -> anyhow::Result<()> {
        *self.declared.write().unwrap_or_else(|e| e.into_inner()) =
            cfg.slice.iter().map(|s| s.name.clone()).collect();
        if cfg.slice.is_empty() && rules.is_empty() {
            self.stop_placement();
            return Ok(());
        }
        let m = match self.manager() {
            Ok(m) => m,
            Err(err) => {
                log::error!("{err}; slices and placement rules are disabled");
                self.stop_placement();
                return Ok(());
            }
        };
        let mut ok = std::collections::HashSet::new();
        for s in &cfg.slice {
            match m.ensure_slice(&s.name, &s.limits) {
                Ok(Ensured::Created) => log::info!("slice {}: created ({})", s.name, s.limits),
                Ok(Ensured::Adopted) => log::info!(
                    "slice {}: re-adopted, limits re-applied ({})",
                    s.name,
                    s.limits
                ),
                Err(err) => {
                    log::error!(
                        "slice {}: refused: {err}; rules placing into it are disabled",
                        s.name
                    );
                    continue;
                }
            }
            ok.insert(s.name.clone());
        }
        let rules: Vec<Rule> = rules
            .into_iter()
            .filter(|r| ok.contains(&r.slice))
            .collect();
        if rules.is_empty() {
            self.stop_placement();
            return Ok(());
        }
        let mut current = self.placement.write().unwrap_or_else(|e| e.into_inner());
        use anyhow::Context;
        let stats = current.as_ref().map(|p| p.stats.clone());
        *current = Some(Arc::new(
            Placement::start(rules, m, stats, self.exec.clone()).context("starting placement")?,
        ));
        Ok(())
    }

    /// No placement: nothing is held any more either.
    fn stop_placement(&self) {
        *self.placement.write().unwrap_or_else(|e| e.into_inner()) = None;
        if let Err(e) = self.exec.set(&[], &[]) {
            log::warn!("clearing the exec filters: {e:#}");
        }
    }

    /// At a clean exit: the exec program holds nothing more, and what it holds is resumed.
    pub fn release_all(&self) {
        let _ = self.exec.set(&[], &[]);
        if let Some(h) = self.exec.holds() {
            h.shutdown();
        }
    }

    /// Hold-at-exec, if this machine has it.
    pub fn holds(&self) -> Option<&Arc<crate::hold::Holds>> {
        self.exec.holds()
    }

    /// Removes transient slices that were empty at the previous pass and still are (so each
    /// gets at least one period of grace), and remembers the newly empty ones. Declared
    /// slices are never touched. Called periodically; returns the slices removed.
    pub fn remove_empty_transient(&self) -> Result<Vec<String>> {
        let m = match self.manager.get() {
            Some(Ok(m)) => m.clone(),
            Some(Err(_)) => return Ok(Vec::new()),
            None => {
                // not opened yet: a previous agent may have left slices, if the root exists
                let root_exists =
                    Cgroup2Mount::discover().is_ok_and(|mnt| mnt.path.join(&self.root).is_dir());
                if !root_exists {
                    return Ok(Vec::new());
                }
                self.manager()?
            }
        };
        let declared = self
            .declared
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut seen = self.seen_empty.lock().unwrap_or_else(|e| e.into_inner());
        let mut now_empty = HashSet::new();
        let mut removed = Vec::new();
        for name in m.list_slices()? {
            if declared.contains(&name) || !is_transient(&name) || !m.pids(&name)?.is_empty() {
                continue;
            }
            if seen.contains(&name) {
                match self.with_slice(&name, || Ok(m.remove_slice(&name)?)) {
                    Ok(_) => {
                        self.slice_locks
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&name);
                        removed.push(name)
                    }
                    // a process arrived meanwhile: keep it
                    Err(EnforceError::Cgroup(CgroupError::SliceBusy { .. })) => {}
                    Err(e) => log::warn!("removing empty slice {name}: {e}"),
                }
            } else {
                now_empty.insert(name);
            }
        }
        *seen = now_empty;
        Ok(removed)
    }

    /// Runs `f` holding slice `name`'s lock.
    fn with_slice<T>(&self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let lock = self
            .slice_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone();
        let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
        f()
    }

    /// What enforcement can do here, for `procman status` (without opening the managed root
    /// if nothing needed it yet: status never creates cgroups).
    pub fn status(&self) -> EnforcementStatus {
        EnforcementStatus {
            moves: self.move_status(),
            ..self.cgroup_status()
        }
    }

    /// `favordynmods` and the move latency to expect: measured by placement when it has
    /// placed anything, else the typical figure.
    pub fn move_status(&self) -> Option<MoveStatus> {
        let f = self.favor?;
        let measured = self
            .placement()
            .map(|p| p.stats.move_summary())
            .filter(|l| l.count > 0)
            .map(|l| MoveLatency {
                moves: l.count,
                p50_us: l.p50,
                p99_us: l.p99,
            });
        Some(MoveStatus {
            favordynmods: f.active,
            favordynmods_setting: f.setting.as_str().into(),
            remounted: f.remounted,
            reason: move_reason(f.active).into(),
            expected: if f.active {
                "tens of microseconds per move"
            } else {
                "one RCU grace period per move: a few ms on an idle host (~6 ms measured on 6.18), ~17 ms under a slow VM; back-to-back moves share one"
            }
            .into(),
            measured,
        })
    }

    fn cgroup_status(&self) -> EnforcementStatus {
        let m = match self.manager.get() {
            None => {
                return EnforcementStatus {
                    state: "unused".into(),
                    ..Default::default()
                }
            }
            Some(Err(e)) => {
                return EnforcementStatus {
                    state: "unavailable".into(),
                    error: Some(e.clone()),
                    ..Default::default()
                }
            }
            Some(Ok(m)) => m,
        };
        let caps = m.capabilities();
        EnforcementStatus {
            state: if caps.is_degraded() {
                "degraded"
            } else {
                "full"
            }
            .into(),
            root: Some(caps.root.display().to_string()),
            controllers: caps
                .controllers
                .iter()
                .map(|(c, a)| {
                    let v = match a {
                        procman_cgroup::Availability::Enabled => "enabled".to_string(),
                        procman_cgroup::Availability::Missing(r) => r.clone(),
                    };
                    (c.name().to_string(), v)
                })
                .collect(),
            unenforced_keys: caps
                .unenforced_keys()
                .iter()
                .map(|k| k.as_str().to_string())
                .collect(),
            freeze: caps.freeze,
            kill: caps.kill,
            error: None,
            moves: None,
        }
    }

    /// Marks the processes whose procman slice is frozen (one read of `cgroup.events` per
    /// distinct slice; nothing when cgroups were never opened).
    pub fn mark_frozen<'a>(&self, procs: impl Iterator<Item = &'a mut ProcessInfo>) {
        let Some(Ok(m)) = self.manager.get() else {
            return;
        };
        let mut known: std::collections::HashMap<String, bool> = Default::default();
        for p in procs {
            let Some(slice) = p
                .cgroup
                .as_deref()
                .and_then(|c| crate::query::slice_of_cgroup(c, &self.root))
            else {
                continue;
            };
            let frozen = *known
                .entry(slice.to_string())
                .or_insert_with(|| m.slice(slice).and_then(|cg| cg.frozen()).unwrap_or(false));
            p.frozen = frozen;
        }
    }

    /// The running placement, if any rule is active.
    pub fn placement(&self) -> Option<Arc<Placement>> {
        self.placement
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The manager, opened on first use.
    pub fn manager(&self) -> Result<Arc<Manager>> {
        self.manager
            .get_or_init(|| open(&self.root))
            .clone()
            .map_err(EnforceError::Unavailable)
    }

    /// The managed root below the cgroup2 mount (`procman.slice`), as configured.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The managed slices, if the managed root has been opened already (empty otherwise): for
    /// readers that must not create it, like a metrics scrape.
    pub fn open_slices(&self) -> Vec<SliceInfo> {
        match self.manager.get() {
            Some(Ok(_)) => self.slices().unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Every managed slice with its limits and usage.
    pub fn slices(&self) -> Result<Vec<SliceInfo>> {
        let m = self.manager()?;
        let mut out = Vec::new();
        for name in m.list_slices()? {
            let stats = m.stats(&name).ok();
            out.push(SliceInfo {
                path: m.slice_path(&name)?.display().to_string(),
                pids: m.pids(&name).unwrap_or_default(),
                limits: m.read_limits(&name).map(limit_pairs).unwrap_or_default(),
                stats,
                name,
            });
        }
        Ok(out)
    }

    /// With `only_uid`, refuses unless every process in the slice belongs to that user (a
    /// caller granted actions on its own processes only).
    fn check_slice_owned(&self, m: &Manager, name: &str, only_uid: Option<u32>) -> Result<()> {
        let Some(uid) = only_uid else { return Ok(()) };
        if !m.list_slices()?.iter().any(|s| s == name) {
            return Ok(()); // a new slice holds nobody's processes
        }
        for pid in m.pids(name)? {
            check_owned(pid, uid)?;
        }
        Ok(())
    }

    /// Creates a slice, or updates its limits (`updates` merged over the current ones).
    pub fn ensure_slice(
        &self,
        name: &str,
        updates: &BTreeMap<String, String>,
        only_uid: Option<u32>,
    ) -> Result<SliceAnswer> {
        let m = self.manager()?;
        procman_cgroup::validate_name("slice", name).map_err(CgroupError::from)?;
        self.with_slice(name, || {
            self.check_slice_owned(&m, name, only_uid)?;
            let limits = merged_limits(&m, name, updates)?;
            let created = m.ensure_slice(name, &limits)? == Ensured::Created;
            answer(&m, name, created, vec![])
        })
    }

    /// Moves the requested processes (and their descendants) into a slice, creating or
    /// updating it with the requested limits. Everything is validated before anything is
    /// written; the table lock is held only while choosing the targets in memory.
    pub fn limit(
        &self,
        req: &LimitRequest,
        table: &RwLock<ProcTable>,
        mon: &Monitor,
        only_uid: Option<u32>,
    ) -> Result<SliceAnswer> {
        let m = self.manager()?;
        let filter = req
            .filter
            .as_deref()
            .map(|f| {
                Filter::parse(f)
                    .map_err(|e| EnforceError::Invalid(format!("invalid filter {f:?}: {e}")))
            })
            .transpose()?;
        let ctx = crate::query::RowContext {
            slice_root: &self.root,
            fds: crate::query::fd_counts(table, filter.as_ref()),
            viewer: only_uid,
        };
        let selection = {
            let table = table.read().unwrap_or_else(|e| e.into_inner());
            targets::select(req, filter.as_ref(), &table, mon, &ctx)?
        };
        let targets = selection.resolve()?;
        if let Some(uid) = only_uid {
            for &(pid, _) in &targets {
                check_owned(pid, uid)?;
            }
        }
        let slice = match (&req.slice, req.pids.first(), &req.name) {
            (Some(s), _, _) => s.clone(),
            (None, Some(p), _) => format!("pid-{p}"),
            (None, None, Some(n)) => format!("name-{n}"),
            (None, None, None) => {
                return Err(EnforceError::Invalid(
                    "with --filter, give --slice NAME".into(),
                ))
            }
        };
        procman_cgroup::validate_name("slice", &slice).map_err(CgroupError::from)?;
        self.with_slice(&slice, || {
            self.check_slice_owned(&m, &slice, only_uid)?;
            if req.slice.is_none()
                && m.list_slices()?.contains(&slice)
                && m.pids(&slice)?.is_empty()
            {
                // a stale pid-N / name-X slice of an earlier process: start afresh, without the
                // limits that process was given
                m.remove_slice(&slice)?;
            }
            let limits = merged_limits(&m, &slice, &req.limits)?;
            let created = m.ensure_slice(&slice, &limits)? == Ensured::Created;
            let mut moved = Vec::new();
            for (pid, start) in targets {
                match m.move_process(&slice, pid, Some(start)) {
                    Ok(()) => moved.push(pid),
                    // a pid the caller named is now another process: refuse (409), touch nothing
                    Err(e @ CgroupError::PidReused { .. }) if req.pids.contains(&pid) => {
                        return Err(e.into())
                    }
                    // exited meanwhile (a descendant or a match of a name or filter)
                    Err(CgroupError::NoSuchProcess { .. }) | Err(CgroupError::PidReused { .. }) => {
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            answer(&m, &slice, created, moved)
        })
    }

    /// Lifts every limit of a slice (its processes stay).
    pub fn unlimit(&self, name: &str, only_uid: Option<u32>) -> Result<SliceAnswer> {
        let m = self.manager()?;
        self.with_slice(name, || {
            self.check_slice_owned(&m, name, only_uid)?;
            m.update_slice(name, &Limits::default())?;
            answer(&m, name, false, vec![])
        })
    }

    /// Freezes a slice and waits until the kernel reports it frozen.
    pub fn freeze(&self, name: &str, only_uid: Option<u32>) -> Result<()> {
        let m = self.manager()?;
        self.with_slice(name, || {
            self.check_slice_owned(&m, name, only_uid)?;
            m.freeze(name)?;
            if let Err(e) = m.wait_frozen(name, true, FREEZE_TIMEOUT) {
                // never leave a slice half frozen: undo, then report
                if let Err(t) = m.thaw(name) {
                    log::error!("slice {name}: freeze timed out and thawing failed too: {t}");
                }
                return Err(e.into());
            }
            Ok(())
        })
    }

    pub fn thaw(&self, name: &str, only_uid: Option<u32>) -> Result<()> {
        let m = self.manager()?;
        self.with_slice(name, || {
            self.check_slice_owned(&m, name, only_uid)?;
            m.thaw(name)?;
            Ok(())
        })
    }

    /// Kills every process of a slice and keeps the slice: `cgroup.kill` (no child escapes by
    /// forking), or on kernels before 5.14 a freeze-then-SIGKILL sweep until it is empty.
    /// Returns the pids that were in it and how it was done.
    pub fn kill_slice(
        &self,
        name: &str,
        only_uid: Option<u32>,
    ) -> Result<(Vec<u32>, &'static str)> {
        let m = self.manager()?;
        procman_cgroup::validate_name("slice", name).map_err(CgroupError::from)?;
        self.with_slice(name, || {
            if !m.list_slices()?.iter().any(|s| s == name) {
                return Err(EnforceError::NotFound(format!("no slice {name:?}")));
            }
            self.check_slice_owned(&m, name, only_uid)?;
            let pids = m.pids(name)?;
            let how = m.kill_all(name, FREEZE_TIMEOUT)?;
            Ok((pids, how))
        })
    }

    /// Removes a slice. One with processes is refused unless `kill`: then every process in
    /// it is killed at once through `cgroup.kill` (no child escapes by forking; on kernels
    /// before 5.14 a freeze-then-SIGKILL sweep) and the slice removed once empty. Returns the
    /// pids that were in it.
    pub fn remove_slice(&self, name: &str, kill: bool, only_uid: Option<u32>) -> Result<Vec<u32>> {
        let m = self.manager()?;
        procman_cgroup::validate_name("slice", name).map_err(CgroupError::from)?;
        self.with_slice(name, || {
            if !m.list_slices()?.iter().any(|s| s == name) {
                return Err(EnforceError::NotFound(format!("no slice {name:?}")));
            }
            self.check_slice_owned(&m, name, only_uid)?;
            let pids = m.pids(name)?;
            if !pids.is_empty() {
                if !kill {
                    return Err(EnforceError::Invalid(format!(
                        "slice {name} has {} process(es) ({}): move them elsewhere first, or \
                         remove it with --kill to kill them",
                        pids.len(),
                        pids.iter().take(5).map(u32::to_string).collect::<Vec<_>>().join(", ")
                    )));
                }
                m.kill_all(name, FREEZE_TIMEOUT)?;
            }
            m.remove_slice(name)?;
            if self.declared.read().unwrap_or_else(|e| e.into_inner()).contains(name) {
                log::warn!("slice {name} was removed but the config declares it: a restart or reload creates it again");
            }
            Ok(pids)
        })
    }

    /// Freezes (or thaws) one process where it is: the managed slice it is alone in. A
    /// process sharing its slice is refused (freezing it would freeze the others, and moving
    /// it out would change its limits): the caller is told to freeze the slice. A process
    /// outside every managed slice is moved into a slice of its own, `pid-N`, and the answer
    /// says where it came from.
    pub fn freeze_process(
        &self,
        pid: u32,
        freeze: bool,
        table: &RwLock<ProcTable>,
        mon: &Monitor,
        only_uid: Option<u32>,
    ) -> Result<ProcessFreezeAnswer> {
        let m = self.manager()?;
        let info = procman_cgroup::procs::check_mutable(pid, None)?;
        if let Some(uid) = only_uid {
            check_owned(pid, uid)?;
        }
        let path = procman_cgroup::procs::cgroup_of(pid)?;
        let slice = crate::query::slice_of_cgroup(&path, &self.root).map(str::to_string);
        let answer = |slice: String, moved_from: Option<String>| ProcessFreezeAnswer {
            pid,
            slice,
            frozen: freeze,
            moved_from,
        };
        match slice {
            Some(slice) => {
                let others: Vec<u32> = m.pids(&slice)?.into_iter().filter(|p| *p != pid).collect();
                if !others.is_empty() {
                    return Err(EnforceError::Invalid(format!(
                        "process {pid} shares slice {slice} with {} other process(es) ({}): \
                         {verb} the whole slice with `procman {verb} --slice {slice}`, or move \
                         the process to a slice of its own first",
                        others.len(),
                        others
                            .iter()
                            .take(5)
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                        verb = if freeze { "freeze" } else { "thaw" },
                    )));
                }
                if freeze {
                    self.freeze(&slice, only_uid)?;
                } else {
                    if !m.slice(&slice)?.frozen()? {
                        return Err(EnforceError::Invalid(format!(
                            "process {pid} is not frozen (its slice {slice} is not)"
                        )));
                    }
                    self.thaw(&slice, only_uid)?;
                }
                Ok(answer(slice, None))
            }
            None if !freeze => Err(EnforceError::Invalid(format!(
                "process {pid} is not frozen (it is in {path}, outside procman's slices)"
            ))),
            None => {
                let req = LimitRequest {
                    pids: vec![info.tgid],
                    ..Default::default()
                };
                let ans = self.limit(&req, table, mon, only_uid)?;
                self.freeze(&ans.slice, only_uid)?;
                Ok(answer(ans.slice, Some(path)))
            }
        }
    }

    /// Placement rules, counters and latencies (empty when no rule is active).
    pub fn placement_report(&self) -> PlacementReport {
        self.placement()
            .map(|p| p.report())
            .unwrap_or_else(|| PlacementReport {
                hold: crate::placement::hold_report(&self.exec.hold, Vec::new(), None),
                ..PlacementReport::default()
            })
    }
}

/// Refuses a process that does not belong to `uid` (its real uid, as kill(1) checks).
fn check_owned(pid: u32, uid: u32) -> Result<()> {
    let owner = procfs::process::Process::new(pid as i32)
        .and_then(|p| p.uid())
        .map_err(|_| EnforceError::NotFound(format!("no process with pid {pid}")))?;
    if owner != uid {
        return Err(EnforceError::Forbidden(format!(
            "process {pid} belongs to uid {owner}: your grant covers only your own processes (uid {uid})"
        )));
    }
    Ok(())
}

fn limit_pairs(l: Limits) -> Vec<(String, String)> {
    l.entries()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// The slice's current limits with `updates` (systemd keys) applied; nothing is written.
fn merged_limits(m: &Manager, slice: &str, updates: &BTreeMap<String, String>) -> Result<Limits> {
    let mut l = if m.list_slices()?.iter().any(|s| s == slice) {
        m.read_limits(slice)?
    } else {
        Limits::default()
    };
    for (k, v) in updates {
        l.set_pair(k, v)?;
    }
    l.validate()?;
    m.check_enforceable(&l)?;
    Ok(l)
}

fn answer(m: &Manager, slice: &str, created: bool, moved: Vec<u32>) -> Result<SliceAnswer> {
    Ok(SliceAnswer {
        slice: slice.to_string(),
        path: m.slice_path(slice)?.display().to_string(),
        created,
        moved,
        limits: limit_pairs(m.read_limits(slice)?),
    })
}

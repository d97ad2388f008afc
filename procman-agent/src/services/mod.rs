//! The supervisor: `[[service]]` entries started, watched, restarted and stopped, each in its
//! own slice `svc-NAME` under the managed root.
//!
//! - **Start**: the slice is created (or re-adopted) with the service's limits, then the
//!   command is cloned straight into it (`clone3(CLONE_INTO_CGROUP)`, the spawner `procman
//!   run` uses: [`procman_common::spawn::spawn_with`]) with a pidfd, its own session,
//!   stdin on /dev/null, stdout and stderr on one pipe, `NOTIFY_SOCKET` set. The service and
//!   every child are limited from their first instruction.
//! - **Watch**: one tokio task per service waits on the main process's pidfd (readable at
//!   exit; the status comes from `waitid(P_PIDFD)`), on commands from the API, on its
//!   `NOTIFY_SOCKET` (`READY=1`) and on its probe task's results.
//! - **End**: when the main process exits, what is left of the slice is killed
//!   (`cgroup.kill`: no orphan survives its service); `stop` sends the stop signal to the
//!   main process, waits up to the stop timeout, then kills the slice. The restart policy
//!   and a capped exponential backoff decide what follows; more starts than the start limit
//!   within its interval leave the service `failed`, with the reason.
//! - **Logs**: [`logs`], a thread per run reading the pipe into a rotated file. The pipe's
//!   read end is also kept open inside the service (at fd [`KEEP_FD`]), so that while the
//!   agent is down the service's writes wait in the pipe (up to 1 MiB, then they block)
//!   instead of failing with EPIPE; a restarted agent reopens the pipe through
//!   `/proc/PID/fd/KEEP_FD` and reads what waited.
//! - **Agent restart**: services live in their slices, not under the agent: the agent
//!   leaves them running when it exits. At start it re-adopts each service whose slice has
//!   processes (the main pid from its state file when it still names the same process, else
//!   the oldest process of the slice whose parent is outside it), watching it through a
//!   pidfd from `pidfd_open`; it is not that process's parent, so the exit status of an
//!   adopted process is unknown and counts as a failure for the restart policy.
pub mod config;
pub mod logs;
pub mod pidfd;
pub mod probe;

use config::{Readiness, RestartPolicy, ServiceSpec};
use logs::LogFile;
use procman_cgroup::Manager;
use procman_common::{
    service::{ExitStatus, ProbeStatus, ServiceInfo, ServiceLogs, ServiceState},
    units::Timestamp,
};
use std::{
    collections::{BTreeMap, VecDeque},
    os::fd::{AsRawFd, OwnedFd},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant, SystemTime},
};
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, watch},
};

/// Where the service's copy of its output pipe's read end lives (see the module docs).
pub const KEEP_FD: i32 = 1000;
/// The output pipe's buffer: what a service may write while the agent is down.
const PIPE_SIZE: i32 = 1 << 20;
/// How long a killed slice may take to empty.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// A request to a service's task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    Start,
    Stop,
    Restart,
    /// Stop it and end its task (removed from the config).
    Remove,
}

/// Why a request about a service was refused.
#[derive(Debug, thiserror::Error)]
pub enum SvcError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Io(String),
}

#[derive(Debug, Clone)]
struct Status {
    state: ServiceState,
    pid: Option<u32>,
    since: SystemTime,
    restarts: u32,
    last_exit: Option<ExitStatus>,
    reason: Option<String>,
    next_attempt: Option<SystemTime>,
    ready: bool,
    probe: Option<ProbeStatus>,
    adopted: bool,
}

/// One supervised service.
pub struct Service {
    name: String,
    spec: RwLock<Arc<ServiceSpec>>,
    status: watch::Sender<Status>,
    cmds: mpsc::UnboundedSender<Cmd>,
    log: Arc<Mutex<LogFile>>,
    /// The log file's path (read without the log's lock, which its writer holds).
    log_path: PathBuf,
    /// Created through the API (`POST /api/services`), not declared in the config.
    transient: bool,
}

impl Service {
    fn spec(&self) -> Arc<ServiceSpec> {
        self.spec.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Changes the status; a new state restarts `since`.
    fn set(&self, f: impl FnOnce(&mut Status)) {
        self.status.send_modify(|s| {
            let before = s.state;
            f(s);
            if s.state != before {
                s.since = SystemTime::now();
                log::info!("service {}: {}", self.name, s.state);
            }
        });
    }

    fn info(&self) -> ServiceInfo {
        let spec = self.spec();
        let s = self.status.borrow().clone();
        ServiceInfo {
            name: self.name.clone(),
            state: s.state,
            pid: s.pid,
            since: Timestamp(s.since),
            restarts: s.restarts,
            last_exit: s.last_exit.map(|e| e.to_string()),
            last_exit_status: s.last_exit,
            reason: s.reason,
            next_attempt: s.next_attempt.map(Timestamp),
            ready: s.ready,
            probe: s.probe,
            slice: spec.slice(),
            adopted: s.adopted,
            after: spec.after.clone(),
            log_file: self.log_path.display().to_string(),
            transient: self.transient,
        }
    }
}

/// What the state file keeps across agent restarts.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Saved {
    pid: Option<u32>,
    start_time: Option<u64>,
    ready: bool,
    restarts: u32,
    /// Stopped by a command, or failed: a restarted agent does not start it on its own.
    #[serde(default)]
    held: bool,
}

/// Everything the services need from the agent.
pub struct Supervisor {
    /// The agent, for its Enforcer's cgroup manager (opened on first use).
    agent: std::sync::Weak<crate::core::Agent>,
    log_dir: PathBuf,
    state_dir: PathBuf,
    services: RwLock<BTreeMap<String, Arc<Service>>>,
}

/// A running main process being watched.
struct Running {
    pid: u32,
    pidfd: AsyncFd<OwnedFd>,
    /// Ours (we can read its exit status), or adopted from a previous agent.
    child: bool,
    started: Instant,
    /// The slice's `memory.events` oom_kill count when the run started (None without the
    /// memory controller): a SIGKILL with a higher count at exit was the OOM killer.
    oom_kills: Option<u64>,
}

impl Supervisor {
    /// Re-adopts services that still run in their slices and starts the supervising tasks
    /// (on the current tokio runtime). Services whose `autostart` is set and that do not run
    /// are started.
    pub fn start(
        agent: &Arc<crate::core::Agent>,
        section: &config::ServicesSection,
        specs: Vec<ServiceSpec>,
    ) -> Arc<Supervisor> {
        let sup = Arc::new(Supervisor {
            agent: Arc::downgrade(agent),
            log_dir: section.log_dir.clone(),
            state_dir: section.state_dir.clone(),
            services: RwLock::new(BTreeMap::new()),
        });
        // the state directory is made when a service needs it: an agent without services
        // creates nothing
        for spec in specs {
            sup.add(spec, false);
        }
        sup.load_transient();
        sup
    }

    /// Transient services saved by a previous agent (`state_dir/NAME.service.json`).
    fn load_transient(self: &Arc<Self>) {
        let Ok(rd) = std::fs::read_dir(&self.state_dir) else {
            return;
        };
        for e in rd.flatten() {
            let path = e.path();
            if !path.to_string_lossy().ends_with(".service.json") {
                continue;
            }
            let spec = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    serde_json::from_slice::<config::ServiceConfig>(&b).map_err(|e| e.to_string())
                })
                .and_then(|c| c.validate().map_err(|e| format!("{e:#}")));
            match spec {
                Ok(spec) if self.get_service(&spec.name).is_none() => self.add(spec, true),
                Ok(spec) => log::warn!(
                    "transient service {}: the config declares one by that name; {} ignored",
                    spec.name,
                    path.display()
                ),
                Err(e) => log::warn!("transient service {}: not loaded: {e}", path.display()),
            }
        }
    }

    fn transient_file(&self, name: &str) -> PathBuf {
        self.state_dir.join(format!("{name}.service.json"))
    }

    /// Creates a transient service (`POST /api/services`, blocking: call on the blocking
    /// pool) and starts it unless `autostart` is false. It is kept across agent restarts
    /// until deleted. A caller other than root may only create services that run as itself
    /// (`user` unset or its own uid); `caller` is None for TCP clients, who may not create
    /// any.
    pub fn create(
        self: &Arc<Self>,
        mut cfg: config::ServiceConfig,
        caller: Option<u32>,
    ) -> Result<(), SvcError> {
        let Some(uid) = caller else {
            return Err(SvcError::Forbidden(
                "services run commands: create them over the Unix socket".into(),
            ));
        };
        if uid != 0 {
            match cfg.user.as_deref() {
                None => cfg.user = Some(uid.to_string()),
                Some(u) if u == uid.to_string() => {}
                Some(u) => {
                    let same = nix::unistd::User::from_name(u)
                        .ok()
                        .flatten()
                        .is_some_and(|x| x.uid.as_raw() == uid);
                    if !same {
                        return Err(SvcError::Forbidden(format!(
                            "user = {u:?}: you (uid {uid}) may only create services that run as yourself"
                        )));
                    }
                }
            }
            if cfg.group.is_some() {
                return Err(SvcError::Forbidden(
                    "group: only root may choose a service's group".into(),
                ));
            }
        }
        let spec = cfg
            .validate()
            .map_err(|e| SvcError::Invalid(format!("{e:#}")))?;
        for a in &spec.after {
            if self.get_service(a).is_none() {
                return Err(SvcError::Invalid(format!(
                    "after = {:?}: no service named {a:?}",
                    spec.after
                )));
            }
        }
        if self.get_service(&spec.name).is_some() {
            return Err(SvcError::Conflict(format!(
                "a service named {:?} exists already",
                spec.name
            )));
        }
        let body = serde_json::to_vec_pretty(&cfg).map_err(|e| SvcError::Io(e.to_string()))?;
        let path = self.transient_file(&spec.name);
        std::fs::create_dir_all(&self.state_dir)
            .and_then(|_| std::fs::write(&path, body))
            .map_err(|e| SvcError::Io(format!("saving {}: {e}", path.display())))?;
        log::info!("transient service {} created", spec.name);
        self.add(spec, true);
        Ok(())
    }

    /// Stops a transient service and forgets it (`DELETE /api/services/{name}`).
    pub async fn delete(&self, name: &str) -> Result<ServiceInfo, SvcError> {
        let svc = self.service(name)?;
        if !svc.transient {
            return Err(SvcError::Invalid(format!(
                "service {name} is declared in the config: remove it there and reload (SIGHUP), or stop it"
            )));
        }
        let info = self.command(name, Cmd::Remove).await?;
        self.services
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        let path = self.transient_file(name);
        let _ = tokio::fs::remove_file(&path).await;
        log::info!("transient service {name} deleted");
        Ok(info)
    }

    /// Waits (bounded) until a service just created is up or failed.
    pub async fn wait_started(&self, name: &str) -> Result<ServiceInfo, SvcError> {
        let svc = self.service(name)?;
        if svc.spec().autostart {
            let mut rx = svc.status.subscribe();
            let _ = tokio::time::timeout(
                Duration::from_secs(10),
                rx.wait_for(|s| started(s) || s.state == ServiceState::Failed),
            )
            .await;
        }
        Ok(svc.info())
    }

    /// Refuses a caller whose grant covers only its own processes (`only_uid`) acting on a
    /// service that runs as another user.
    pub fn check_owner(&self, name: &str, only_uid: Option<u32>) -> Result<(), SvcError> {
        let Some(uid) = only_uid else { return Ok(()) };
        let runs_as = self.service(name)?.spec().uid.unwrap_or(0);
        if runs_as != uid {
            return Err(SvcError::Forbidden(format!(
                "service {name} runs as uid {runs_as}: your grant covers only your own (uid {uid})"
            )));
        }
        Ok(())
    }

    fn add(self: &Arc<Self>, spec: ServiceSpec, transient: bool) {
        let name = spec.name.clone();
        let log_path = self.log_dir.join(format!("{name}.log"));
        let log = Arc::new(Mutex::new(LogFile::new(
            log_path.clone(),
            spec.log_max_size,
            spec.log_keep,
        )));
        let saved = self.load_saved(&name);
        let adopted = match self.adopt(&spec, &saved, &log) {
            Ok(a) => a,
            Err(e) => {
                log::warn!("service {name}: not re-adopted: {e}");
                None
            }
        };
        let (cmds, rx) = mpsc::unbounded_channel();
        let status = Status {
            state: ServiceState::Stopped,
            pid: None,
            since: SystemTime::now(),
            restarts: saved.restarts,
            last_exit: None,
            reason: None,
            next_attempt: None,
            ready: false,
            probe: None,
            adopted: false,
        };
        let svc = Arc::new(Service {
            name: name.clone(),
            spec: RwLock::new(Arc::new(spec)),
            status: watch::channel(status).0,
            cmds,
            log,
            log_path,
            transient,
        });
        if let Some(r) = &adopted {
            let spec = svc.spec();
            let same = saved.pid == Some(r.pid);
            let ready = spec.ready == Readiness::Started || (same && saved.ready);
            log::info!(
                "service {name}: re-adopted its running main process {} from slice {}",
                r.pid,
                spec.slice()
            );
            svc.set(|s| {
                s.pid = Some(r.pid);
                s.adopted = true;
                s.ready = ready;
                s.state = up_state(&spec, ready);
            });
        }
        self.services
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone(), svc.clone());
        if saved.held && adopted.is_none() {
            log::info!("service {name}: not started: it was stopped or failed before the agent restarted (`procman service start {name}`)");
        }
        tokio::spawn(supervise(self.clone(), svc, rx, adopted, saved.held));
    }

    /// Applies a reloaded config: new services are added (and started if `autostart`),
    /// removed ones stopped, changed ones take their new settings at their next start.
    pub fn reload(self: &Arc<Self>, specs: Vec<ServiceSpec>) -> (usize, usize, usize) {
        let r = self.reload_inner(specs);
        if r != (0, 0, 0) {
            log::info!(
                "services reloaded: {} added, {} changed (from their next start), {} removed",
                r.0,
                r.1,
                r.2
            );
        }
        r
    }

    fn reload_inner(self: &Arc<Self>, specs: Vec<ServiceSpec>) -> (usize, usize, usize) {
        let (mut added, mut changed, mut removed) = (0, 0, 0);
        let mut keep = std::collections::HashSet::new();
        for spec in specs {
            keep.insert(spec.name.clone());
            let existing = self.get_service(&spec.name);
            match existing {
                Some(svc) if svc.transient => log::error!(
                    "service {}: a transient service has that name; delete it first (the config entry is ignored)",
                    spec.name
                ),
                Some(svc) => {
                    let mut cur = svc.spec.write().unwrap_or_else(|e| e.into_inner());
                    if **cur != spec {
                        svc.log
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .set_limits(spec.log_max_size, spec.log_keep);
                        *cur = Arc::new(spec);
                        changed += 1;
                    }
                }
                None => {
                    self.add(spec, false);
                    added += 1;
                }
            }
        }
        let mut map = self.services.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|name, svc| {
            if keep.contains(name) || svc.transient {
                return true;
            }
            let _ = svc.cmds.send(Cmd::Remove);
            removed += 1;
            false
        });
        (added, changed, removed)
    }

    fn get_service(&self, name: &str) -> Option<Arc<Service>> {
        self.services
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    fn service(&self, name: &str) -> Result<Arc<Service>, SvcError> {
        self.get_service(name).ok_or_else(|| {
            SvcError::NotFound(format!(
                "no service named {name:?}; `procman service list` shows them"
            ))
        })
    }

    pub fn list(&self) -> Vec<ServiceInfo> {
        self.services
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|s| s.info())
            .collect()
    }

    pub fn get(&self, name: &str) -> Result<ServiceInfo, SvcError> {
        Ok(self.service(name)?.info())
    }

    /// Sends `cmd` and waits until the service got there: up (or failed) after a start,
    /// down after a stop, a new main process after a restart.
    pub async fn command(&self, name: &str, cmd: Cmd) -> Result<ServiceInfo, SvcError> {
        let svc = self.service(name)?;
        let spec = svc.spec();
        let mut rx = svc.status.subscribe();
        let before = rx.borrow_and_update().clone();
        svc.cmds.send(cmd).map_err(|_| {
            SvcError::Unavailable(format!("service {name}: its supervisor stopped"))
        })?;
        let timeout = spec.stop_timeout + KILL_WAIT + Duration::from_secs(5);
        let done = |s: &Status| match cmd {
            Cmd::Stop | Cmd::Remove => !s.state.is_up() && s.state != ServiceState::BackingOff,
            Cmd::Start => {
                started(s) && s.state != ServiceState::Stopping
                    || s.state == ServiceState::Failed && s.since > before.since
            }
            Cmd::Restart => {
                (s.pid.is_some() && s.pid != before.pid && s.state != ServiceState::Stopping)
                    || (s.state == ServiceState::Failed && s.since > before.since)
            }
        };
        let _ = tokio::time::timeout(timeout, rx.wait_for(done)).await;
        Ok(svc.info())
    }

    /// The last `n` lines of a service's log (blocking: call on the blocking pool).
    pub fn logs(&self, name: &str, n: usize, since: Option<&str>) -> Result<ServiceLogs, SvcError> {
        let svc = self.service(name)?;
        let keep = svc.spec().log_keep;
        let path = svc.log_path.clone();
        let lines = logs::tail(&path, keep, n, since)
            .map_err(|e| SvcError::Io(format!("reading {}: {e}", path.display())))?;
        Ok(ServiceLogs {
            name: name.to_string(),
            file: path.display().to_string(),
            lines,
        })
    }

    /// The log file of a service and how many rotated files it keeps (for following it).
    pub fn log_path(&self, name: &str) -> Result<(PathBuf, u32), SvcError> {
        let svc = self.service(name)?;
        Ok((svc.log_path.clone(), svc.spec().log_keep))
    }

    fn manager(&self) -> Result<Arc<Manager>, String> {
        let agent = self.agent.upgrade().ok_or("the agent is shutting down")?;
        agent
            .enforcer
            .manager()
            .map_err(|e| format!("cgroups unavailable: {e}"))
    }

    fn state_file(&self, name: &str) -> PathBuf {
        self.state_dir.join(format!("{name}.json"))
    }

    fn notify_path(&self, name: &str) -> PathBuf {
        self.state_dir.join(format!("{name}.notify"))
    }

    fn load_saved(&self, name: &str) -> Saved {
        std::fs::read(self.state_file(name))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Records the main process and counters (small and rare: done inline, on the blocking
    /// pool when called from a task).
    fn save(&self, name: &str, st: &Status) {
        let start_time = st
            .pid
            .and_then(|p| procman_cgroup::procs::proc_info(p).ok())
            .map(|i| i.start_time);
        let saved = Saved {
            pid: st.pid,
            start_time,
            ready: st.ready,
            restarts: st.restarts,
            held: matches!(st.state, ServiceState::Stopped | ServiceState::Failed),
        };
        let path = self.state_file(name);
        let tmp = path.with_extension("json.tmp");
        let r = std::fs::create_dir_all(&self.state_dir)
            .and_then(|_| serde_json::to_vec(&saved).map_err(std::io::Error::other))
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = r {
            log::warn!("service {name}: cannot write {}: {e}", path.display());
        }
    }

    /// Finds a service's main process in its slice, left by a previous agent.
    fn adopt(
        &self,
        spec: &ServiceSpec,
        saved: &Saved,
        log: &Arc<Mutex<LogFile>>,
    ) -> Result<Option<Running>, String> {
        let m = self.manager()?;
        let slice = spec.slice();
        if !m.list_slices().map_err(|e| e.to_string())?.contains(&slice) {
            return Ok(None);
        }
        let pids = m.pids(&slice).map_err(|e| e.to_string())?;
        if pids.is_empty() {
            return Ok(None);
        }
        note_service_cgroup(&m, &slice);
        let infos: Vec<procman_cgroup::procs::ProcInfo> = pids
            .iter()
            .filter_map(|&p| procman_cgroup::procs::proc_info(p).ok())
            .collect();
        let main = match (saved.pid, saved.start_time) {
            (Some(p), Some(t)) if infos.iter().any(|i| i.pid == p && i.start_time == t) => p,
            _ => infos
                .iter()
                .filter(|i| !pids.contains(&i.ppid))
                .min_by_key(|i| i.start_time)
                .map(|i| i.pid)
                .ok_or("no process of the slice has its parent outside it")?,
        };
        let fd = pidfd::open(main).map_err(|e| format!("pidfd_open({main}): {e}"))?;
        let pidfd = watch_fd(fd).map_err(|e| e.to_string())?;
        // the output pipe, kept open in the service (see the module docs)
        let keep = PathBuf::from(format!("/proc/{main}/fd/{KEEP_FD}"));
        match std::fs::read_link(&keep) {
            Ok(l) if l.to_string_lossy().starts_with("pipe:") => {
                match std::fs::OpenOptions::new().read(true).open(&keep) {
                    Ok(f) => {
                        logs::spawn_reader(&spec.name, OwnedFd::from(f), log.clone());
                    }
                    Err(e) => log::warn!(
                        "service {}: cannot reopen its output pipe {}: {e}",
                        spec.name,
                        keep.display()
                    ),
                }
            }
            _ => log::warn!(
                "service {}: its output pipe is gone (fd {KEEP_FD} closed); its output is not captured until it restarts",
                spec.name
            ),
        }
        log.lock()
            .unwrap_or_else(|e| e.into_inner())
            .note(&format!("re-adopted running main process {main}"));
        Ok(Some(Running {
            pid: main,
            pidfd,
            child: false,
            started: Instant::now(),
            oom_kills: oom_kills(&m, &slice),
        }))
    }

    /// Creates the slice and starts the main process in it (blocking).
    fn spawn(
        &self,
        spec: &ServiceSpec,
        log: &Arc<Mutex<LogFile>>,
    ) -> Result<(u32, OwnedFd, Option<u64>), String> {
        let m = self.manager()?;
        let slice = spec.slice();
        m.ensure_slice(&slice, &spec.limits)
            .map_err(|e| format!("slice {slice}: {e}"))?;
        note_service_cgroup(&m, &slice);
        // what a previous run left (its main process was not ours to watch): gone first
        if !m.pids(&slice).map_err(|e| e.to_string())?.is_empty() {
            kill_slice(&m, &slice)?;
        }
        let dir = m.slice_fd(&slice).map_err(|e| e.to_string())?;
        let (rd, wr) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
        // SAFETY: fcntl on a pipe we own; failure only leaves the default size.
        unsafe {
            libc::fcntl(rd.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE);
        }
        let env_file = match &spec.env_file {
            Some(p) => config::read_env_file(p)?,
            None => Vec::new(),
        };
        let setup = procman_common::spawn::ChildSetup {
            env: Some(child_env(spec, &env_file, &self.notify_path(&spec.name))),
            cwd: spec.cwd.clone(),
            uid: spec.uid,
            gid: spec.gid,
            stdin_null: true,
            output: Some(wr.as_raw_fd()),
            keep: Some(rd.as_raw_fd()),
            keep_at: KEEP_FD,
            close_other_fds: true,
            setsid: true,
            pidfd: true,
        };
        let child = procman_common::spawn::spawn_with(
            &spec.argv,
            procman_common::spawn::SpawnOpts {
                cgroup: Some(dir.as_raw_fd()),
                pid: None,
            },
            &setup,
        )
        .map_err(|e| format!("starting {:?}: {e}", spec.argv[0]))?;
        drop(wr);
        log.lock()
            .unwrap_or_else(|e| e.into_inner())
            .note(&format!("started {:?} as pid {}", spec.argv, child.pid));
        logs::spawn_reader(&spec.name, rd, log.clone());
        let pidfd = child.pidfd.ok_or("clone3 returned no pidfd")?;
        Ok((child.pid as u32, pidfd, oom_kills(&m, &slice)))
    }
}

/// The cgroups of the services' slices (ids and `/root/svc-NAME` paths), for exec-time
/// placement: a rule must not move a service's process out of its slice (its stop would no
/// longer reach it). Updated at each start and adoption; a removed slice's entry stays (its
/// id is never reused while the agent runs, and the path is the service's for good).
static SERVICE_CGROUPS: RwLock<
    Option<(
        std::collections::HashSet<u64>,
        std::collections::HashSet<String>,
    )>,
> = RwLock::new(None);

fn note_service_cgroup(m: &Manager, slice: &str) {
    use std::os::unix::fs::MetadataExt;
    let Ok(path) = m.slice_path(slice) else {
        return;
    };
    let Ok(md) = std::fs::metadata(&path) else {
        return;
    };
    let rel = path
        .strip_prefix(&m.mount().path)
        .map(|r| format!("/{}", r.display()))
        .unwrap_or_default();
    let mut g = SERVICE_CGROUPS.write().unwrap_or_else(|e| e.into_inner());
    let (ids, paths) = g.get_or_insert_with(Default::default);
    ids.insert(md.ino());
    paths.insert(rel);
}

/// Whether cgroup `id` (an exec event's) is a service's slice.
pub fn owns_cgroup(id: u64) -> bool {
    id != 0
        && SERVICE_CGROUPS
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|(ids, _)| ids.contains(&id))
}

/// Whether the cgroup path (from /proc/PID/cgroup, e.g. `/procman.slice/svc-web`) is a
/// service's slice.
pub fn owns_cgroup_path(path: &str) -> bool {
    SERVICE_CGROUPS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_some_and(|(_, paths)| paths.contains(path))
}

/// Registers a pidfd with the reactor (readable once the process has exited).
fn watch_fd(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns `fd`, so it stays open as long as it is registered.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

/// The environment a service starts with: a fixed base (like systemd's), then its
/// `env_file`, then its `env`.
fn child_env(spec: &ServiceSpec, env_file: &[(String, String)], notify: &Path) -> Vec<String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert(
        "PATH".into(),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
    );
    if let Ok(lang) = std::env::var("LANG") {
        env.insert("LANG".into(), lang);
    }
    let uid = spec.uid.unwrap_or(0);
    if let Ok(Some(u)) = nix::unistd::User::from_uid(uid.into()) {
        env.insert("HOME".into(), u.dir.display().to_string());
        env.insert("USER".into(), u.name.clone());
        env.insert("LOGNAME".into(), u.name);
    }
    env.insert("NOTIFY_SOCKET".into(), notify.display().to_string());
    env.insert("PROCMAN_SERVICE".into(), spec.name.clone());
    for (k, v) in env_file.iter().map(|(k, v)| (k, v)).chain(spec.env.iter()) {
        env.insert(k.clone(), v.clone());
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Kills every process of `slice`, waits until it is empty, and removes it (blocking; the
/// next start creates it afresh with the service's limits).
///
/// Removing it is not tidiness: on kernels with the `kill_seq` fix of the fork/`cgroup.kill`
/// race (6.14 and its stable backports; seen on 6.18), `clone3(CLONE_INTO_CGROUP)` compares
/// the target cgroup's kill counter with the *caller's* cgroup's (`cgroup_css_set_fork`
/// reads `kargs->cgrp` before it is set), so every process cloned into a cgroup that was
/// ever killed is SIGKILLed at birth. A new cgroup starts at zero.
fn kill_slice(m: &Manager, slice: &str) -> Result<(), String> {
    match m.pids(slice) {
        Ok(p) if p.is_empty() => return Ok(()),
        Err(procman_cgroup::CgroupError::NoSuchSlice { .. }) => return Ok(()),
        _ => {}
    }
    m.kill(slice)
        .map_err(|e| format!("killing slice {slice}: {e}"))?;
    m.wait_empty(slice, KILL_WAIT)
        .map_err(|e| format!("slice {slice} after cgroup.kill: {e}"))?;
    m.remove_slice(slice)
        .map(|_| ())
        .map_err(|e| format!("removing slice {slice} after cgroup.kill: {e}"))
}

/// The slice's OOM kill count (`memory.events` oom_kill), when it has the memory controller.
fn oom_kills(m: &Manager, slice: &str) -> Option<u64> {
    let cg = m.slice(slice).ok()?;
    if !cg.has("memory.events") {
        return None;
    }
    cg.memory_events().ok().map(|e| e.oom_kill)
}

/// A service's probe before its first result.
fn fresh_probe(spec: &ServiceSpec) -> Option<ProbeStatus> {
    spec.probe.as_ref().map(|p| ProbeStatus {
        kind: p.kind.name().into(),
        target: p.kind.target(),
        failure_threshold: p.failure_threshold,
        ..Default::default()
    })
}

/// Started: a main process runs, or it waits for the services it comes `after`.
fn started(s: &Status) -> bool {
    s.state.is_up() && s.pid.is_some() || s.state == ServiceState::Starting && s.reason.is_some()
}

/// The state of a running service: `ready` once ready, `running` when nothing is awaited.
fn up_state(spec: &ServiceSpec, ready: bool) -> ServiceState {
    match (spec.ready, ready) {
        (Readiness::Started, _) => ServiceState::Running,
        (_, true) => ServiceState::Ready,
        (_, false) => ServiceState::Starting,
    }
}

/// Whether the main process ended well: a clean status (exit 0 or HUP/INT/TERM/PIPE), or an
/// exit code listed in `success_exit_codes`; never after a failed probe.
fn is_clean(spec: &ServiceSpec, st: ExitStatus, probe_failed: bool) -> bool {
    !probe_failed
        && (st.is_clean()
            || matches!(st, ExitStatus::Exited { code } if spec.success_exit_codes.contains(&code)))
}

/// Whether the service starts again after `st` (`probe_failed`: ended by its probe): an exit
/// code in `restart_exit_codes` always does, otherwise the restart policy decides.
fn should_restart(spec: &ServiceSpec, st: ExitStatus, probe_failed: bool) -> bool {
    if matches!(st, ExitStatus::Exited { code } if spec.restart_exit_codes.contains(&code)) {
        return true;
    }
    let clean = is_clean(spec, st, probe_failed);
    match spec.restart {
        RestartPolicy::No => false,
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => !clean,
        RestartPolicy::OnAbnormal => {
            probe_failed
                || matches!(st, ExitStatus::Unknown | ExitStatus::OomKilled)
                || matches!(st, ExitStatus::Killed { .. }) && !clean
        }
    }
}

/// The delay before restart number `n` (1-based) of a crash loop: `initial × 2^(n-1)`,
/// at most `max`.
pub fn backoff(initial: Duration, max: Duration, n: u32) -> Duration {
    let factor = 1u32
        .checked_shl(n.saturating_sub(1).min(31))
        .unwrap_or(u32::MAX);
    initial.checked_mul(factor).unwrap_or(max).min(max)
}

/// How a run ended.
enum End {
    Exited {
        status: ExitStatus,
        probe_failed: bool,
    },
    Stopped,
    Restart,
    Remove,
}

/// Blocking work of a service task, on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Some(v),
        Err(e) => {
            log::error!("services: a blocking step failed: {e}");
            None
        }
    }
}

fn bind_notify(path: &Path, uid: Option<u32>) -> std::io::Result<tokio::net::UnixDatagram> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let s = std::os::unix::net::UnixDatagram::bind(path)?;
    s.set_nonblocking(true)?;
    if let Some(u) = uid {
        std::os::unix::fs::chown(path, Some(u), None)?;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    tokio::net::UnixDatagram::from_std(s)
}

async fn recv_notify(sock: Option<&tokio::net::UnixDatagram>, buf: &mut [u8]) -> usize {
    match sock {
        Some(s) => s.recv(buf).await.unwrap_or(0),
        None => std::future::pending().await,
    }
}

/// One service's life, forever (until removed).
async fn supervise(
    sup: Arc<Supervisor>,
    svc: Arc<Service>,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    adopted: Option<Running>,
    held: bool,
) {
    let name = svc.name.clone();
    let notify = {
        let (p, uid) = (sup.notify_path(&name), svc.spec().uid);
        match blocking(move || bind_notify(&p, uid)).await {
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                log::error!("service {name}: cannot create its NOTIFY_SOCKET: {e}");
                None
            }
            None => None,
        }
    };
    let mut want = adopted.is_some() || (svc.spec().autostart && !held);
    let mut running = adopted;
    let mut starts: VecDeque<Instant> = VecDeque::new();
    let mut fails_in_row: u32 = 0;
    let mut started_once = running.is_some();
    loop {
        let spec = svc.spec();
        if running.is_none() {
            if !want {
                persist(&sup, &svc).await;
                match rx.recv().await {
                    None | Some(Cmd::Remove) => return,
                    Some(Cmd::Stop) => continue,
                    Some(Cmd::Start) | Some(Cmd::Restart) => {
                        want = true;
                        starts.clear();
                        fails_in_row = 0;
                    }
                }
            }
            // `after`: wait until each dependency is ready
            if !spec.after.is_empty() {
                match wait_for_deps(&sup, &svc, &spec, &mut rx).await {
                    Some(Cmd::Start) | None => {}
                    Some(Cmd::Remove) => return,
                    Some(_) => {
                        want = false;
                        svc.set(|s| {
                            s.state = ServiceState::Stopped;
                            s.reason = None;
                        });
                        continue;
                    }
                }
            }
            let now = Instant::now();
            while starts
                .front()
                .is_some_and(|t| now.duration_since(*t) > spec.start_interval)
            {
                starts.pop_front();
            }
            if starts.len() as u32 >= spec.start_burst {
                want = false;
                svc.set(|s| {
                    s.state = ServiceState::Failed;
                    s.next_attempt = None;
                    s.reason = Some(format!(
                        "start limit hit: {} starts within {}{}",
                        spec.start_burst,
                        procman_common::units::HumanDuration(spec.start_interval),
                        s.last_exit
                            .map(|e| format!("; last: {e}"))
                            .unwrap_or_default()
                    ));
                });
                continue;
            }
            starts.push_back(now);
            if let Some(n) = &notify {
                let mut buf = [0u8; 512];
                while n.try_recv(&mut buf).is_ok() {} // stale messages of a previous run
            }
            svc.set(|s| {
                s.state = ServiceState::Starting;
                s.next_attempt = None;
                s.ready = false;
                s.probe = fresh_probe(&spec);
                s.adopted = false;
            });
            let (sp, lg, s2) = (spec.clone(), svc.log.clone(), sup.clone());
            let started = blocking(move || s2.spawn(&sp, &lg))
                .await
                .unwrap_or_else(|| Err("the start step failed".into()));
            match started {
                Ok((pid, fd, oom_base)) => {
                    let pidfd = match watch_fd(fd) {
                        Ok(f) => f,
                        Err(e) => {
                            // unwatched, it must not run: end it with its slice
                            log::error!("service {name}: cannot watch pid {pid}: {e}");
                            if let Ok(m) = sup.manager() {
                                let s = spec.slice();
                                blocking(move || kill_slice(&m, &s)).await;
                            }
                            want = false;
                            svc.set(|s| {
                                s.state = ServiceState::Failed;
                                s.reason = Some(format!("cannot watch its main process: {e}"));
                            });
                            continue;
                        }
                    };
                    let ready = spec.ready == Readiness::Started;
                    svc.set(|s| {
                        if started_once {
                            s.restarts += 1;
                        }
                        s.pid = Some(pid);
                        s.ready = ready;
                        s.reason = None;
                        s.state = up_state(&spec, ready);
                    });
                    started_once = true;
                    let (s2, st) = (sup.clone(), svc.status.borrow().clone());
                    let n2 = name.clone();
                    blocking(move || s2.save(&n2, &st)).await;
                    running = Some(Running {
                        pid,
                        pidfd,
                        child: true,
                        started: Instant::now(),
                        oom_kills: oom_base,
                    });
                }
                Err(e) => {
                    log::error!("service {name}: cannot start: {e}");
                    note(&svc, format!("cannot start: {e}")).await;
                    want = false;
                    svc.set(|s| {
                        s.state = ServiceState::Failed;
                        s.reason = Some(e);
                        s.pid = None;
                    });
                    continue;
                }
            }
        }
        let r = running.take().expect("started or adopted above");
        let mut end = watch_run(&sup, &svc, &r, &mut rx, notify.as_ref()).await;
        let ran = r.started.elapsed();
        let slice = spec.slice();
        // a SIGKILL while the slice's OOM kill count grew: the OOM killer (memory.max)
        if let (
            End::Exited {
                status:
                    status @ ExitStatus::Killed {
                        signal: libc::SIGKILL,
                        ..
                    },
                probe_failed: false,
            },
            Some(base),
            Ok(m),
        ) = (&mut end, r.oom_kills, sup.manager())
        {
            let s = slice.clone();
            if blocking(move || oom_kills(&m, &s)).await.flatten() > Some(base) {
                *status = ExitStatus::OomKilled;
            }
        }
        // nothing of a run outlives its main process
        if let Ok(m) = sup.manager() {
            let s = slice.clone();
            if let Some(Err(e)) = blocking(move || kill_slice(&m, &s)).await {
                log::warn!("service {name}: {e}");
            }
        }
        svc.set(|s| {
            s.pid = None;
            s.ready = false;
        });
        {
            let (s2, st, n2) = (sup.clone(), svc.status.borrow().clone(), name.clone());
            blocking(move || s2.save(&n2, &st)).await;
        }
        match end {
            End::Remove => {
                svc.set(|s| s.state = ServiceState::Stopped);
                if let Ok(m) = sup.manager() {
                    let s = slice.clone();
                    blocking(move || m.remove_slice(&s)).await;
                }
                return;
            }
            End::Stopped => {
                want = false;
                svc.set(|s| {
                    s.state = ServiceState::Stopped;
                    s.reason = None;
                });
            }
            End::Restart => {
                want = true;
            }
            End::Exited {
                status,
                probe_failed,
            } => {
                let text = if probe_failed {
                    format!("{status} after its probe failed")
                } else {
                    status.to_string()
                };
                note(&svc, format!("main process {} {text}", r.pid)).await;
                log::info!("service {name}: main process {} {text}", r.pid);
                if ran >= spec.reset_after {
                    fails_in_row = 0;
                }
                if should_restart(&spec, status, probe_failed) {
                    fails_in_row += 1;
                    let delay = backoff(spec.backoff_initial, spec.backoff_max, fails_in_row);
                    let next = SystemTime::now() + delay;
                    svc.set(|s| {
                        s.last_exit = Some(status);
                        s.state = ServiceState::BackingOff;
                        s.next_attempt = Some(next);
                        s.reason = probe_failed.then(|| "liveness probe failed".to_string());
                    });
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        c = rx.recv() => match c {
                            None | Some(Cmd::Remove) => return,
                            Some(Cmd::Stop) => {
                                want = false;
                                svc.set(|s| { s.state = ServiceState::Stopped; s.next_attempt = None; });
                            }
                            Some(Cmd::Start) | Some(Cmd::Restart) => {}
                        }
                    }
                } else {
                    want = false;
                    svc.set(|s| {
                        s.last_exit = Some(status);
                        if is_clean(&spec, status, probe_failed) {
                            s.state = ServiceState::Stopped;
                            s.reason = None;
                        } else {
                            s.state = ServiceState::Failed;
                            s.reason = Some(text.clone());
                        }
                    });
                }
            }
        }
    }
}

/// A `[procman]` line in the service's log (on the blocking pool: a file write).
async fn note(svc: &Service, text: String) {
    let log = svc.log.clone();
    blocking(move || log.lock().unwrap_or_else(|p| p.into_inner()).note(&text)).await;
}

/// Writes the service's state file (on the blocking pool).
async fn persist(sup: &Arc<Supervisor>, svc: &Service) {
    let (s2, st, name) = (sup.clone(), svc.status.borrow().clone(), svc.name.clone());
    blocking(move || s2.save(&name, &st)).await;
}

/// Waits until every service in `after` is ready; `None` when they are, or the command that
/// interrupted the wait (`Start` is absorbed).
async fn wait_for_deps(
    sup: &Supervisor,
    svc: &Service,
    spec: &ServiceSpec,
    rx: &mut mpsc::UnboundedReceiver<Cmd>,
) -> Option<Cmd> {
    for dep in &spec.after {
        let Some(d) = sup.get_service(dep) else {
            continue;
        };
        let mut w = d.status.subscribe();
        if w.borrow_and_update().ready {
            continue;
        }
        svc.set(|s| {
            s.state = ServiceState::Starting;
            s.next_attempt = None;
            s.reason = Some(format!("waiting for {dep} to be ready"));
        });
        loop {
            tokio::select! {
                r = w.wait_for(|s| s.ready) => { if r.is_err() { return None; } break; }
                c = rx.recv() => match c {
                    Some(Cmd::Start) => {}
                    None => return Some(Cmd::Remove),
                    Some(c) => return Some(c),
                }
            }
        }
    }
    svc.set(|s| s.reason = None);
    None
}

/// Sends the stop signal, waits up to the stop timeout, then kills the slice; returns how the
/// main process ended.
async fn stop_run(sup: &Supervisor, svc: &Service, r: &Running) -> ExitStatus {
    let spec = svc.spec();
    svc.set(|s| s.state = ServiceState::Stopping);
    if let Err(e) = pidfd::signal(r.pidfd.get_ref(), spec.stop_signal) {
        log::warn!("service {}: stop signal: {e}", svc.name);
    }
    let exited = tokio::time::timeout(spec.stop_timeout, r.pidfd.readable())
        .await
        .is_ok();
    if !exited {
        log::warn!(
            "service {}: still running {:?} after the stop signal; killing its slice",
            svc.name,
            spec.stop_timeout
        );
    }
    if let Ok(m) = sup.manager() {
        let slice = spec.slice();
        if let Some(Err(e)) = blocking(move || kill_slice(&m, &slice)).await {
            log::warn!("service {}: {e}", svc.name);
        }
    }
    let _ = tokio::time::timeout(KILL_WAIT, r.pidfd.readable()).await;
    exit_status(r)
}

fn exit_status(r: &Running) -> ExitStatus {
    if !r.child {
        return ExitStatus::Unknown;
    }
    match pidfd::reap(r.pidfd.get_ref()) {
        Ok(Some(st)) => st,
        Ok(None) => ExitStatus::Unknown,
        Err(e) => {
            log::warn!("waitid(P_PIDFD) for pid {}: {e}", r.pid);
            ExitStatus::Unknown
        }
    }
}

/// Watches one run until it ends.
async fn watch_run(
    sup: &Supervisor,
    svc: &Service,
    r: &Running,
    rx: &mut mpsc::UnboundedReceiver<Cmd>,
    notify: Option<&tokio::net::UnixDatagram>,
) -> End {
    let spec = svc.spec();
    let (ptx, mut prx) = mpsc::channel::<Result<(), String>>(4);
    let probe_task = spec.probe.clone().map(|p| {
        let (uid, gid) = (spec.uid, spec.gid);
        tokio::spawn(async move {
            tokio::time::sleep(p.initial_delay).await;
            let mut tick = tokio::time::interval(p.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let res = probe::run(&p, uid, gid).await;
                if ptx.send(res).await.is_err() {
                    return;
                }
            }
        })
    });
    struct Abort(Option<tokio::task::JoinHandle<()>>);
    impl Drop for Abort {
        fn drop(&mut self) {
            if let Some(t) = &self.0 {
                t.abort();
            }
        }
    }
    let _probe = Abort(probe_task);
    if spec.probe.is_some() && svc.status.borrow().probe.is_none() {
        svc.set(|s| s.probe = fresh_probe(&spec));
    }
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            g = r.pidfd.readable() => {
                if let Ok(mut g) = g {
                    g.retain_ready();
                }
                return End::Exited { status: exit_status(r), probe_failed: false };
            }
            c = rx.recv() => match c {
                Some(Cmd::Start) => {}
                Some(Cmd::Stop) => { stop_run(sup, svc, r).await; return End::Stopped; }
                Some(Cmd::Restart) => { stop_run(sup, svc, r).await; return End::Restart; }
                None | Some(Cmd::Remove) => { stop_run(sup, svc, r).await; return End::Remove; }
            },
            n = recv_notify(notify, &mut buf) => {
                let msg = String::from_utf8_lossy(&buf[..n]);
                if msg.lines().any(|l| l.trim() == "READY=1") && !svc.status.borrow().ready {
                    log::info!("service {}: READY=1", svc.name);
                    svc.set(|s| { s.ready = true; s.state = ServiceState::Ready; });
                    // rare and small: written inline, the worker marked as blocking
                    let st = svc.status.borrow().clone();
                    tokio::task::block_in_place(|| sup.save(&svc.name, &st));
                }
            }
            Some(res) = prx.recv() => {
                let Some(p) = &spec.probe else { continue };
                let mut failed_out = false;
                svc.set(|s| {
                    let ps = s.probe.get_or_insert_with(Default::default);
                    ps.last_at = Some(Timestamp::now());
                    match &res {
                        Ok(()) => {
                            ps.ok = Some(true);
                            ps.consecutive_failures = 0;
                            ps.last_error = None;
                            if spec.ready == Readiness::Probe {
                                s.ready = true;
                            }
                            s.state = up_state(&spec, s.ready);
                        }
                        Err(e) => {
                            ps.ok = Some(false);
                            ps.consecutive_failures += 1;
                            ps.last_error = Some(e.clone());
                            if ps.consecutive_failures >= p.failure_threshold {
                                failed_out = true;
                            } else if s.state != ServiceState::Starting {
                                s.state = ServiceState::Unhealthy;
                            }
                        }
                    }
                });
                if failed_out {
                    log::warn!(
                        "service {}: probe failed {} times in a row ({}); restarting it",
                        svc.name,
                        p.failure_threshold,
                        res.err().unwrap_or_default()
                    );
                    let status = stop_run(sup, svc, r).await;
                    return End::Exited { status, probe_failed: true };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = Duration::from_secs;
        let d: Vec<Duration> = (1..=8).map(|n| backoff(s(1), s(20), n)).collect();
        assert_eq!(d, [s(1), s(2), s(4), s(8), s(16), s(20), s(20), s(20)]);
        assert_eq!(backoff(s(1), s(120), 100), s(120));
    }

    #[test]
    fn restart_policies() {
        let exit = |c| ExitStatus::Exited { code: c };
        let sig = |s| ExitStatus::Killed {
            signal: s,
            core_dumped: false,
        };
        let mut spec = config::ServiceConfig {
            name: "t".into(),
            exec: vec!["true".into()],
            cwd: None,
            user: None,
            group: None,
            env: Default::default(),
            env_file: None,
            limits: Default::default(),
            restart: RestartPolicy::No,
            success_exit_codes: vec![],
            restart_exit_codes: vec![],
            backoff: Default::default(),
            start_limit: Default::default(),
            stop: Default::default(),
            ready: Default::default(),
            probe: None,
            after: vec![],
            log: Default::default(),
            autostart: true,
        }
        .validate()
        .unwrap();
        let with = |spec: &ServiceSpec, p: RestartPolicy| ServiceSpec {
            restart: p,
            ..spec.clone()
        };
        use RestartPolicy::*;
        assert!(!should_restart(&with(&spec, No), exit(1), true));
        assert!(should_restart(&with(&spec, Always), exit(0), false));
        let of = with(&spec, OnFailure);
        assert!(should_restart(&of, exit(3), false));
        assert!(!should_restart(&of, exit(0), false));
        assert!(!should_restart(&of, sig(libc::SIGTERM), false));
        assert!(should_restart(&of, sig(libc::SIGKILL), false));
        assert!(should_restart(&of, ExitStatus::Unknown, false));
        assert!(should_restart(&of, ExitStatus::OomKilled, false));
        assert!(should_restart(&of, exit(0), true));
        let oa = with(&spec, OnAbnormal);
        assert!(!should_restart(&oa, exit(3), false));
        assert!(should_restart(&oa, sig(libc::SIGSEGV), false));
        assert!(should_restart(&oa, exit(0), true));
        // success_exit_codes: clean, no restart on failure; restart_exit_codes: always
        spec.success_exit_codes = vec![2];
        spec.restart_exit_codes = vec![75];
        let of = with(&spec, OnFailure);
        assert!(!should_restart(&of, exit(2), false));
        assert!(is_clean(&of, exit(2), false));
        assert!(should_restart(&with(&spec, No), exit(75), false));
        assert!(!is_clean(&of, exit(75), false));
    }
}

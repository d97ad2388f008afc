//! Acting on processes: kill (SIGTERM, grace, SIGKILL; a signal; a whole subtree), renice and
//! ionice of every thread. Slices are ended by the Enforcer (`cgroup.kill`, or freeze and
//! signal on kernels before 5.14).
//!
//! Every action targets one process identity, (pid, start time), through a pidfd:
//! [`open_target`] opens the pidfd first, then reads /proc, then checks that the pidfd's
//! process is still alive, so the /proc facts (start time, owner, flags) are the pidfd's
//! process's and never a successor's with the same pid. A start time the caller gives
//! (`started_at`/`start_ns`) that differs is a 409; so is a process that is gone by the time
//! the signal is sent through its pidfd (a new process with its pid is never touched).
//!
//! Refused with 403 ([`EnforceError::Forbidden`]): pid 1, kernel threads, the agent itself
//! (and a subtree holding it), processes matching the `[actions] protect` filter, and other
//! users' processes for a caller whose grant is `only_own`.
//!
//! Every function here blocks (signals, waits, /proc): the API runs them on the blocking pool,
//! a policy engine on its own thread. Each taken action is sent to the `GET /api/actions`
//! stream ([`Actions::publish`]); the API's guard writes its audit line.
pub mod kill;
pub mod pidfd;
pub mod priority;

use crate::{
    core::Agent,
    enforce::{EnforceError, Result},
    query,
};
use pidfd::Pidfd;
use procman_common::{action::ActionRecord, filter::Filter, units::HumanDuration};
use std::{sync::RwLock, time::Duration};
use tokio::sync::broadcast;

/// Records kept for a slow `/api/actions` subscriber before it is told it lagged.
const STREAM_CAPACITY: usize = 1024;

/// The `[actions]` settings, parsed once (at start and on reload).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Processes never acted on besides pid 1, kernel threads and the agent.
    pub protect: Option<Filter>,
    /// Between SIGTERM and SIGKILL when a kill gives no `grace`.
    pub kill_grace: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            protect: None,
            kill_grace: Duration::from_secs(5),
        }
    }
}

/// The agent's action state: the settings and the live stream of taken actions.
pub struct Actions {
    settings: RwLock<Settings>,
    pub stream: broadcast::Sender<ActionRecord>,
}

impl Actions {
    pub fn new(settings: Settings) -> Actions {
        Actions {
            settings: RwLock::new(settings),
            stream: broadcast::channel(STREAM_CAPACITY).0,
        }
    }

    pub fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the settings (a reload).
    pub fn set(&self, s: Settings) {
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = s;
    }

    /// Sends a record to the `/api/actions` subscribers (none listening is fine).
    pub fn publish(&self, rec: ActionRecord) {
        let _ = self.stream.send(rec);
    }
}

/// Parses `[actions]`: the protect filter compiles and the grace is at most 5 minutes.
pub fn settings_of(protect: &str, kill_grace: HumanDuration) -> anyhow::Result<Settings> {
    let protect = match protect.trim() {
        "" => None,
        p => Some(
            Filter::parse(p)
                .map_err(|e| anyhow::anyhow!("[actions] protect = {p:?}: invalid filter: {e}"))?,
        ),
    };
    if kill_grace.0 > procman_common::action::MAX_GRACE {
        anyhow::bail!("[actions] kill_grace = \"{kill_grace}\": at most 5m (default \"5s\")");
    }
    Ok(Settings {
        protect,
        kill_grace: kill_grace.0,
    })
}

/// The start time a caller says it saw, if any: `start_ns` (ns since boot, exact) or
/// `started_at` (as the process list shows it, in Unix seconds here).
#[derive(Debug, Clone, Copy, Default)]
pub struct Expect {
    pub start_ns: Option<u64>,
    pub start_time: Option<f64>,
}

impl Expect {
    /// What an action request says it saw: `start_ns` and/or `started_at`.
    pub fn of(start_ns: Option<u64>, started_at: Option<procman_common::units::Timestamp>) -> Self {
        Expect {
            start_ns,
            start_time: started_at.map(|t| t.unix()),
        }
    }

    /// Refuses (409) a process whose start time is not the expected one.
    fn check(&self, pid: u32, start_ticks: u64) -> Result<()> {
        let hz = procfs::ticks_per_second() as f64;
        if let Some(ns) = self.start_ns {
            let want = crate::tree::ns_to_ticks(ns);
            if want != start_ticks {
                return Err(reused(pid, &format!("start_ns {ns}"), start_ticks));
            }
        }
        if let Some(t) = self.start_time {
            // the list shows boot time + ticks / HZ: equal to within half a tick
            if !t.is_finite() || (query::start_epoch(start_ticks) - t).abs() > 0.5 / hz {
                return Err(reused(pid, &format!("start_time {t}"), start_ticks));
            }
        }
        Ok(())
    }
}

fn reused(pid: u32, expected: &str, found_ticks: u64) -> EnforceError {
    EnforceError::Conflict(format!(
        "pid {pid} is now another process (started at {:.2}, Unix time; you meant the one with \
         {expected}): nothing was done; look the process up again",
        query::start_epoch(found_ticks)
    ))
}

/// One process to act on: its pidfd and what /proc said about it after the pidfd was opened.
#[derive(Debug)]
pub struct Target {
    pub pid: u32,
    pub start_ticks: u64,
    pub ppid: u32,
    pub name: String,
    /// Real uid.
    pub uid: u32,
    pub pidfd: Pidfd,
}

fn not_found(pid: u32) -> EnforceError {
    EnforceError::NotFound(format!("no process with pid {pid}"))
}

/// Opens `pid` for an action: pidfd first, then /proc, then a check that the pidfd's process
/// is still alive (so /proc described it). Refuses pid 0 and 1, thread ids that are not a
/// process, zombies, and a start time other than `expect`'s. Does not check protection (see
/// [`guard`]).
pub fn open_target(pid: u32, expect: Expect) -> Result<Target> {
    match pid {
        0 => return Err(EnforceError::Invalid("pid 0 is not a process".into())),
        1 => return Err(protected(pid, "it is pid 1 (init)")),
        _ => {}
    }
    let pidfd = Pidfd::open(pid).map_err(|e| match e.raw_os_error() {
        Some(libc::ESRCH) => not_found(pid),
        Some(libc::EINVAL) => {
            let tgid = procman_cgroup::procs::proc_info(pid).map(|i| i.tgid).ok();
            match tgid {
                Some(t) if t != pid => EnforceError::Invalid(format!(
                    "{pid} is a thread of process {t}: act on the process, pid {t}"
                )),
                _ => not_found(pid),
            }
        }
        _ => EnforceError::Failed(format!("pidfd_open({pid}): {e}")),
    })?;
    let proc_ = procfs::process::Process::new(pid as i32).map_err(|_| not_found(pid))?;
    let stat = proc_.stat().map_err(|_| not_found(pid))?;
    let status = proc_.status().map_err(|_| not_found(pid))?;
    if pidfd.exited() || stat.state == 'Z' || stat.state == 'X' {
        return Err(EnforceError::NotFound(format!(
            "process {pid} ({}) has already exited",
            stat.comm
        )));
    }
    let info = procman_cgroup::procs::ProcInfo {
        pid,
        tgid: status.tgid as u32,
        ppid: stat.ppid as u32,
        flags: stat.flags as u64,
        start_time: stat.starttime,
    };
    // the agent (or one of its threads), kernel threads
    if let Some(why) = procman_cgroup::procs::protection(&info, std::process::id()) {
        return Err(protected(pid, &format!("{why}")));
    }
    expect.check(pid, stat.starttime)?;
    Ok(Target {
        pid,
        start_ticks: stat.starttime,
        ppid: info.ppid,
        name: stat.comm,
        uid: status.ruid,
        pidfd,
    })
}

fn protected(pid: u32, why: &str) -> EnforceError {
    EnforceError::Forbidden(format!(
        "process {pid} is protected: {why}; procman never acts on it"
    ))
}

/// Refuses a target the `[actions] protect` filter matches, or (with `only_uid`) one the
/// caller does not own. The filter sees the same row as `procman ps --filter` (the table's
/// entry and the sampler's usage, read from /proc now if the sampler has not seen it yet).
pub fn guard(
    agent: &Agent,
    t: &Target,
    protect: Option<&Filter>,
    only_uid: Option<u32>,
) -> Result<()> {
    if let Some(uid) = only_uid {
        if t.uid != uid {
            return Err(EnforceError::Forbidden(format!(
                "process {} ({}) belongs to uid {}: your grant covers only your own processes (uid {uid})",
                t.pid, t.name, t.uid
            )));
        }
    }
    let Some(f) = protect else { return Ok(()) };
    let entry = agent
        .table
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(t.pid)
        .filter(|e| e.start_ticks == t.start_ticks)
        .cloned()
        .or_else(|| crate::tree::read_proc(t.pid).filter(|e| e.start_ticks == t.start_ticks))
        .ok_or_else(|| not_found(t.pid))?;
    let usage = agent
        .monitor
        .get(t.pid)
        .filter(|u| u.start_ticks == t.start_ticks)
        .or_else(|| agent.monitor.read_now(t.pid, t.start_ticks));
    let ctx = query::RowContext {
        slice_root: agent.enforcer.root(),
        fds: f
            .uses(procman_common::filter::Field::Fds)
            .then(|| query::count_fds(t.pid).map(|c| [(t.pid, c.total)].into()))
            .flatten(),
        viewer: None,
    };
    let row = query::Row {
        entry: &entry,
        usage: usage.as_ref(),
        ctx: &ctx,
    };
    if f.matches(&row) {
        return Err(EnforceError::Forbidden(format!(
            "process {} ({}) matches the [actions] protect filter of the agent's config; procman \
             does not act on it",
            t.pid, t.name
        )));
    }
    Ok(())
}

/// Opens and guards one target: [`open_target`] then [`guard`].
pub fn resolve(agent: &Agent, pid: u32, expect: Expect, only_uid: Option<u32>) -> Result<Target> {
    let t = open_target(pid, expect)?;
    let s = agent.actions.settings();
    guard(agent, &t, s.protect.as_ref(), only_uid)?;
    Ok(t)
}

/// Now, as Unix seconds.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

//! What a policy's actions do to the world, behind a trait: the engine decides, an
//! [`Actuator`] acts. [`SysActuator`] is the real one: `limit` and `freeze` through the
//! [`Enforcer`](crate::enforce::Enforcer), `notify` by running a command, and renice, ionice
//! and signals through a small pidfd-based implementation here (to be replaced by the actions
//! module's primitives). Every process action targets a [`Target`] (pid + start time): the
//! pidfd is opened first, then /proc confirms the start time, so a reused pid is never hit;
//! pid 1, kernel threads and the agent itself are refused.
use crate::core::Agent;
use procman_cgroup::Limits;
use std::{
    io::Write,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    process::{Command, Stdio},
    sync::Weak,
    time::{Duration, Instant},
};

/// A process as (pid, start time in clock ticks since boot, /proc/PID/stat field 22): the
/// identity every action checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    pub pid: u32,
    pub start_ticks: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Term,
    Kill,
}

impl Signal {
    fn number(self) -> i32 {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
        }
    }
}

/// An IO scheduling class (ionice(1)'s): realtime and best-effort have a level 0 (highest)
/// to 7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoClass {
    Realtime(u8),
    BestEffort(u8),
    Idle,
}

impl IoClass {
    /// `idle`, `best-effort[:N]` (`be`), `realtime[:N]` (`rt`); the level defaults to 4.
    pub fn parse(s: &str) -> Result<IoClass, String> {
        let (class, level) = match s.split_once(':') {
            Some((c, l)) => (c, Some(l)),
            None => (s, None),
        };
        let level = match level {
            None => 4,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= 7)
                .ok_or_else(|| format!("ionice level {l:?}: expected 0 (highest) to 7"))?,
        };
        match class {
            "idle" if s.contains(':') => Err("the idle class has no level".into()),
            "idle" => Ok(IoClass::Idle),
            "best-effort" | "be" => Ok(IoClass::BestEffort(level)),
            "realtime" | "rt" => Ok(IoClass::Realtime(level)),
            _ => Err(format!(
                "ionice class {class:?}: expected idle, best-effort[:0-7] or realtime[:0-7]"
            )),
        }
    }

    /// The ioprio value (class << 13 | level).
    fn ioprio(self) -> i32 {
        match self {
            IoClass::Realtime(l) => (1 << 13) | i32::from(l),
            IoClass::BestEffort(l) => (2 << 13) | i32::from(l),
            IoClass::Idle => 3 << 13,
        }
    }
}

impl std::fmt::Display for IoClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IoClass::Realtime(l) => write!(f, "realtime:{l}"),
            IoClass::BestEffort(l) => write!(f, "best-effort:{l}"),
            IoClass::Idle => f.write_str("idle"),
        }
    }
}

/// The effects a policy can have. Each returns what it did (for the audit record) or why it
/// could not.
pub trait Actuator: Send + Sync {
    fn renice(&self, t: Target, nice: i32) -> Result<String, String>;
    fn ionice(&self, t: Target, class: IoClass) -> Result<String, String>;
    fn signal(&self, t: Target, sig: Signal) -> Result<String, String>;
    /// Moves the process into the per-policy slice `slice` with `limits`.
    fn limit(&self, t: Target, slice: &str, limits: &Limits) -> Result<String, String>;
    fn freeze(&self, t: Target) -> Result<String, String>;
    fn notify(&self, cmd: &[String], event_json: &str, timeout: Duration)
        -> Result<String, String>;
    /// Slice scope: sets `limits` on the managed slice itself.
    fn limit_slice(&self, slice: &str, limits: &Limits) -> Result<String, String>;
    fn freeze_slice(&self, slice: &str) -> Result<String, String>;
    /// Kills every process in the slice at once (`cgroup.kill`).
    fn kill_slice(&self, slice: &str) -> Result<String, String>;
}

/// A pidfd whose process was confirmed to be the target after it was opened.
struct PidFd(OwnedFd);

impl PidFd {
    fn open(t: Target) -> Result<PidFd, String> {
        if t.pid <= 1 {
            return Err(format!("pid {} is protected", t.pid));
        }
        // SAFETY: pidfd_open takes a pid and flags; it returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, t.pid as libc::pid_t, 0) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::ESRCH) {
                format!("process {} has exited", t.pid)
            } else {
                format!("pidfd_open({}): {e}", t.pid)
            });
        }
        // SAFETY: fd is a new descriptor we own.
        let fd = PidFd(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        // the fd now pins whatever process had the pid: confirm it is ours and not protected
        procman_cgroup::procs::check_mutable_process(t.pid, Some(t.start_ticks))
            .map_err(|e| e.to_string())?;
        Ok(fd)
    }

    fn send(&self, sig: i32) -> std::io::Result<()> {
        // SAFETY: pidfd_send_signal(pidfd, sig, NULL info, 0 flags).
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Whether the process is still running (a pidfd polls readable once it exits).
    fn alive(&self) -> bool {
        let mut p = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd, no wait.
        unsafe { libc::poll(&mut p, 1, 0) == 0 }
    }
}

/// The thread ids of `pid`.
fn threads(pid: u32) -> Result<Vec<i32>, String> {
    let rd = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map_err(|e| format!("listing the threads of {pid}: {e}"))?;
    Ok(rd
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect())
}

/// Applies `f` to every thread of the pidfd's process; fails if the process exits meanwhile.
fn each_thread(
    fd: &PidFd,
    t: Target,
    what: &str,
    f: impl Fn(i32) -> std::io::Result<()>,
) -> Result<usize, String> {
    let tids = threads(t.pid)?;
    let mut done = 0;
    for tid in &tids {
        match f(*tid) {
            Ok(()) => done += 1,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {} // that thread exited
            Err(e) => return Err(format!("{what} of thread {tid} of {}: {e}", t.pid)),
        }
    }
    if !fd.alive() {
        return Err(format!("process {} exited meanwhile", t.pid));
    }
    Ok(done)
}

/// The real actuator, acting for the agent.
pub struct SysActuator {
    pub agent: Weak<Agent>,
}

impl SysActuator {
    fn agent(&self) -> Result<std::sync::Arc<Agent>, String> {
        self.agent
            .upgrade()
            .ok_or_else(|| "the agent is shutting down".to_string())
    }
}

impl Actuator for SysActuator {
    fn renice(&self, t: Target, nice: i32) -> Result<String, String> {
        let fd = PidFd::open(t)?;
        let n = each_thread(&fd, t, "setpriority", |tid| {
            // SAFETY: setpriority on one thread id.
            let r = unsafe { libc::setpriority(libc::PRIO_PROCESS as _, tid as libc::id_t, nice) };
            if r < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        })?;
        Ok(format!("nice {nice} on {n} thread(s)"))
    }

    fn ionice(&self, t: Target, class: IoClass) -> Result<String, String> {
        let fd = PidFd::open(t)?;
        const IOPRIO_WHO_PROCESS: i32 = 1;
        let n = each_thread(&fd, t, "ioprio_set", |tid| {
            // SAFETY: ioprio_set(IOPRIO_WHO_PROCESS, tid, prio) on one thread id.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_ioprio_set,
                    IOPRIO_WHO_PROCESS,
                    tid,
                    class.ioprio(),
                )
            };
            if r < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        })?;
        Ok(format!("io class {class} on {n} thread(s)"))
    }

    fn signal(&self, t: Target, sig: Signal) -> Result<String, String> {
        let fd = PidFd::open(t)?;
        fd.send(sig.number())
            .map_err(|e| format!("pidfd_send_signal({}): {e}", t.pid))?;
        Ok(format!(
            "sent {}",
            if sig == Signal::Kill {
                "SIGKILL"
            } else {
                "SIGTERM"
            }
        ))
    }

    fn limit(&self, t: Target, slice: &str, limits: &Limits) -> Result<String, String> {
        let _fd = PidFd::open(t)?;
        let agent = self.agent()?;
        let pairs = super::config::limit_pairs(limits);
        agent
            .enforcer
            .ensure_slice(slice, &pairs, None)
            .map_err(|e| e.to_string())?;
        let m = agent.enforcer.manager().map_err(|e| e.to_string())?;
        m.move_process(slice, t.pid, Some(t.start_ticks))
            .map_err(|e| e.to_string())?;
        Ok(format!("moved into slice {slice} ({limits})"))
    }

    fn freeze(&self, t: Target) -> Result<String, String> {
        let _fd = PidFd::open(t)?;
        let agent = self.agent()?;
        let a = agent
            .enforcer
            .freeze_process(t.pid, true, &agent.table, &agent.monitor, None)
            .map_err(|e| e.to_string())?;
        Ok(format!("frozen in slice {}", a.slice))
    }

    fn notify(
        &self,
        cmd: &[String],
        event_json: &str,
        timeout: Duration,
    ) -> Result<String, String> {
        run_notify(cmd, event_json, timeout)
    }

    fn limit_slice(&self, slice: &str, limits: &Limits) -> Result<String, String> {
        let agent = self.agent()?;
        agent
            .enforcer
            .ensure_slice(slice, &super::config::limit_pairs(limits), None)
            .map_err(|e| e.to_string())?;
        Ok(format!("slice {slice} limited ({limits})"))
    }

    fn freeze_slice(&self, slice: &str) -> Result<String, String> {
        let agent = self.agent()?;
        agent
            .enforcer
            .freeze(slice, None)
            .map_err(|e| e.to_string())?;
        Ok(format!("slice {slice} frozen"))
    }

    fn kill_slice(&self, slice: &str) -> Result<String, String> {
        let agent = self.agent()?;
        let m = agent.enforcer.manager().map_err(|e| e.to_string())?;
        let n = m.pids(slice).map(|p| p.len()).unwrap_or(0);
        m.kill(slice).map_err(|e| e.to_string())?;
        Ok(format!("cgroup.kill on slice {slice} ({n} process(es))"))
    }
}

/// Runs `cmd` with `event_json` on its stdin; kills it after `timeout`. Its output is
/// discarded (the audit record says how it ended).
pub fn run_notify(cmd: &[String], event_json: &str, timeout: Duration) -> Result<String, String> {
    let (prog, args) = cmd.split_first().ok_or("notify: no command")?;
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("notify: cannot run {prog}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // a command that does not read its stdin is fine: EPIPE is ignored
        let _ = stdin.write_all(event_json.as_bytes());
        let _ = stdin.write_all(b"\n");
    }
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(format!("{prog} exited 0")),
            Ok(Some(st)) => return Err(format!("notify: {prog} failed ({st})")),
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "notify: {prog} was killed after the timeout ({})",
                    procman_common::units::fmt_duration(timeout)
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("notify: waiting for {prog}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ionice_classes() {
        assert_eq!(IoClass::parse("rt").unwrap(), IoClass::Realtime(4));
        assert_eq!(IoClass::parse("be:0").unwrap().ioprio(), 2 << 13);
        assert_eq!(IoClass::Idle.ioprio(), 3 << 13);
        assert!(IoClass::parse("idle:3").is_err());
        assert!(IoClass::parse("fast").is_err());
    }

    #[test]
    fn notify_gets_the_event_and_is_time_limited() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("event.json");
        let cmd = vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            format!("cat > {}", out.display()),
        ];
        run_notify(&cmd, "{\"policy\":\"x\"}", Duration::from_secs(10)).unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap().trim(),
            "{\"policy\":\"x\"}"
        );
        let slow = vec!["/bin/sleep".to_string(), "30".to_string()];
        let t0 = Instant::now();
        let e = run_notify(&slow, "{}", Duration::from_millis(200)).unwrap_err();
        assert!(e.contains("killed after the timeout"), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(10));
        assert!(run_notify(&["/nonexistent".to_string()], "{}", Duration::from_secs(1)).is_err());
    }

    #[test]
    fn protected_and_reused_targets_are_refused() {
        let a = SysActuator { agent: Weak::new() };
        assert!(a
            .renice(
                Target {
                    pid: 1,
                    start_ticks: 0
                },
                5
            )
            .unwrap_err()
            .contains("protected"));
        // ourselves (the agent in production)
        let me = std::process::id();
        let start = procman_cgroup::procs::proc_info(me).unwrap().start_time;
        assert!(a
            .signal(
                Target {
                    pid: me,
                    start_ticks: start
                },
                Signal::Term
            )
            .is_err());
        // a child of ours, named with a wrong start time: a reused pid
        let mut child = Command::new("/bin/sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let start = procman_cgroup::procs::proc_info(pid).unwrap().start_time;
        let e = a
            .signal(
                Target {
                    pid,
                    start_ticks: start + 1,
                },
                Signal::Kill,
            )
            .unwrap_err();
        assert!(e.contains("reused") || e.contains("start"), "{e}");
        assert!(child.try_wait().unwrap().is_none(), "not signalled");
        a.renice(
            Target {
                pid,
                start_ticks: start,
            },
            7,
        )
        .unwrap();
        a.ionice(
            Target {
                pid,
                start_ticks: start,
            },
            IoClass::Idle,
        )
        .unwrap();
        // SAFETY: ioprio_get(IOPRIO_WHO_PROCESS, pid) reads the class of one thread.
        let prio = unsafe { libc::syscall(libc::SYS_ioprio_get, 1, pid as i32) };
        assert_eq!(prio >> 13, 3, "idle class");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let nice: i32 = stat[stat.rfind(')').unwrap() + 2..]
            .split_whitespace()
            .nth(16)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(nice, 7);
        a.signal(
            Target {
                pid,
                start_ticks: start,
            },
            Signal::Kill,
        )
        .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(child.wait().unwrap().signal(), Some(9));
        let e = a
            .signal(
                Target {
                    pid,
                    start_ticks: start,
                },
                Signal::Kill,
            )
            .unwrap_err();
        assert!(e.contains("exited") || e.contains("no such"), "{e}");
    }
}

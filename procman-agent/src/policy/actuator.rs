//! What a policy's actions do to the world, behind a trait: the engine decides, an
//! [`Actuator`] acts. [`SysActuator`] is the real one: `limit` and `freeze` through the
//! [`Enforcer`](crate::enforce::Enforcer), `notify` by running a command, and renice, ionice
//! and signals through the [`actions`](crate::actions) module, the same code as the API's
//! kill, renice and ionice. Every process action targets a [`Target`] (pid + start time):
//! the pidfd is opened first, then /proc confirms the start time, so a reused pid is never
//! hit; pid 1, kernel threads, the agent itself and the `[actions] protect` filter's
//! processes are refused.
use crate::core::Agent;
use procman_cgroup::Limits;
pub use procman_common::action::IoPrio;
use procman_common::action::{IoniceRequest, KillRequest, ReniceRequest};
use std::{
    io::Write,
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

impl Target {
    /// The start time in ns since boot, as the actions module takes it.
    pub fn start_ns(self) -> u64 {
        crate::tree::ticks_to_ns(self.start_ticks)
    }

    /// The process through a pidfd, confirmed to be this target and not protected (the
    /// actions module's checks, `[actions] protect` included); held while acting on it.
    fn open(self, agent: &Agent) -> Result<crate::actions::Target, String> {
        let expect = crate::actions::Expect {
            start_ns: Some(self.start_ns()),
            start_time: None,
        };
        crate::actions::resolve(agent, self.pid, expect, None).map_err(|e| e.to_string())
    }
}

/// The effects a policy can have. Each returns what it did (for the audit record) or why it
/// could not.
pub trait Actuator: Send + Sync {
    fn renice(&self, t: Target, nice: i32) -> Result<String, String>;
    fn ionice(&self, t: Target, prio: IoPrio) -> Result<String, String>;
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
    /// Restarts the service whose slice (`svc-NAME`) the process is in.
    fn restart(&self, t: Target) -> Result<String, String>;
    /// Slice scope: restarts the service of a `svc-NAME` slice.
    fn restart_slice(&self, slice: &str) -> Result<String, String>;
}

/// The real actuator, acting for the agent.
pub struct SysActuator {
    pub agent: Weak<Agent>,
    /// The agent's runtime, for the supervisor's async commands (`restart`): actions run on
    /// a thread of their own, outside it.
    pub runtime: tokio::runtime::Handle,
}

impl SysActuator {
    fn agent(&self) -> Result<std::sync::Arc<Agent>, String> {
        self.agent
            .upgrade()
            .ok_or_else(|| "the agent is shutting down".to_string())
    }

    /// Restarts service `name` through the supervisor (as `procman service restart`).
    fn restart_service(&self, agent: &Agent, name: &str) -> Result<String, String> {
        let sup = agent
            .services
            .get()
            .ok_or("services are not started yet")?
            .clone();
        let cmd = sup.command(name, crate::services::Cmd::Restart);
        let info = self.runtime.block_on(cmd).map_err(|e| e.to_string())?;
        Ok(format!(
            "service {name} restarted ({}, restart #{})",
            info.state, info.restarts
        ))
    }
}

/// The service a `svc-NAME` slice belongs to.
fn service_of_slice(slice: &str) -> Result<&str, String> {
    slice
        .strip_prefix("svc-")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("slice {slice} is not a service's (svc-NAME): nothing to restart"))
}

impl Actuator for SysActuator {
    fn renice(&self, t: Target, nice: i32) -> Result<String, String> {
        let a = self.agent()?;
        let req = ReniceRequest {
            nice: Some(nice),
            start_ns: Some(t.start_ns()),
            ..Default::default()
        };
        crate::actions::priority::renice(&a, t.pid, &req, None)
            .map(|r| r.message)
            .map_err(|e| e.to_string())
    }

    fn ionice(&self, t: Target, prio: IoPrio) -> Result<String, String> {
        let a = self.agent()?;
        let req = IoniceRequest {
            class: prio.class,
            level: prio.level,
            started_at: None,
            start_ns: Some(t.start_ns()),
        };
        crate::actions::priority::ionice(&a, t.pid, &req, None)
            .map(|r| r.message)
            .map_err(|e| e.to_string())
    }

    fn signal(&self, t: Target, sig: Signal) -> Result<String, String> {
        let a = self.agent()?;
        // `term` sends SIGTERM and nothing after it (the chain's next step decides);
        // `kill` is SIGKILL at once
        let req = KillRequest {
            force: sig == Signal::Kill,
            signal: (sig == Signal::Term).then(|| "TERM".to_string()),
            start_ns: Some(t.start_ns()),
            ..Default::default()
        };
        crate::actions::kill::kill(&a, t.pid, &req, None)
            .map(|r| r.message)
            .map_err(|e| e.to_string())
    }

    fn limit(&self, t: Target, slice: &str, limits: &Limits) -> Result<String, String> {
        let agent = self.agent()?;
        let _held = t.open(&agent)?;
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
        let agent = self.agent()?;
        let _held = t.open(&agent)?;
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

    fn restart(&self, t: Target) -> Result<String, String> {
        let agent = self.agent()?;
        let _held = t.open(&agent)?;
        let text = std::fs::read_to_string(format!("/proc/{}/cgroup", t.pid))
            .map_err(|e| format!("/proc/{}/cgroup: {e}", t.pid))?;
        let cgroup = procman_cgroup::parse_proc_cgroup(&text)
            .ok_or_else(|| format!("process {} has no cgroup v2 path", t.pid))?;
        let slice =
            crate::query::slice_of_cgroup(&cgroup, agent.enforcer.root()).ok_or_else(|| {
                format!(
                    "process {} is in no procman slice ({cgroup}): not a service's",
                    t.pid
                )
            })?;
        let name = service_of_slice(slice)?.to_string();
        self.restart_service(&agent, &name)
    }

    fn restart_slice(&self, slice: &str) -> Result<String, String> {
        let agent = self.agent()?;
        let name = service_of_slice(slice)?.to_string();
        self.restart_service(&agent, &name)
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
}

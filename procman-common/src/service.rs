//! JSON types of the services API (`/api/services`), what `procman service ... --json`
//! prints: a stable interface (add fields, never rename or remove them), and the way exit
//! statuses are told (systemd's words: `exited 3`, `killed by SIGSEGV`, `core dumped`).
use crate::units::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a service is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ServiceState {
    /// Started, not ready yet (`ready = "notify"` waits for READY=1, `"probe"` for a
    /// successful probe); also while waiting for the services it comes `after`.
    Starting,
    /// Running, with no readiness to wait for (`ready = "started"`).
    Running,
    /// Running and ready (READY=1 received, or the probe succeeded).
    Ready,
    /// Running, but its liveness probe failed recently (restarted at the threshold).
    Unhealthy,
    /// Exited; the next start is scheduled (`next_attempt`).
    BackingOff,
    /// Stop signal sent; waiting for the slice to empty.
    Stopping,
    /// Not running, on purpose or after a clean exit.
    Stopped,
    /// Not running, given up: see `reason` and `last_exit`.
    Failed,
}

impl ServiceState {
    pub const ALL: [ServiceState; 8] = [
        ServiceState::Starting,
        ServiceState::Running,
        ServiceState::Ready,
        ServiceState::Unhealthy,
        ServiceState::BackingOff,
        ServiceState::Stopping,
        ServiceState::Stopped,
        ServiceState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Starting => "starting",
            ServiceState::Running => "running",
            ServiceState::Ready => "ready",
            ServiceState::Unhealthy => "unhealthy",
            ServiceState::BackingOff => "backing-off",
            ServiceState::Stopping => "stopping",
            ServiceState::Stopped => "stopped",
            ServiceState::Failed => "failed",
        }
    }

    /// Whether a main process runs in this state.
    pub fn is_up(self) -> bool {
        matches!(
            self,
            ServiceState::Starting
                | ServiceState::Running
                | ServiceState::Ready
                | ServiceState::Unhealthy
                | ServiceState::Stopping
        )
    }
}

impl fmt::Display for ServiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a main process ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ExitStatus {
    Exited {
        code: i32,
    },
    Killed {
        signal: i32,
        core_dumped: bool,
    },
    /// SIGKILLed by the kernel's OOM killer: its slice reached `MemoryMax`.
    OomKilled,
    /// The process was adopted from a previous agent: only its parent could read its status.
    Unknown,
}

impl ExitStatus {
    /// From waitid's `si_code` and `si_status` (CLD_EXITED, CLD_KILLED, CLD_DUMPED).
    pub fn from_siginfo(code: i32, status: i32) -> ExitStatus {
        match code {
            libc::CLD_EXITED => ExitStatus::Exited { code: status },
            libc::CLD_DUMPED => ExitStatus::Killed {
                signal: status,
                core_dumped: true,
            },
            _ => ExitStatus::Killed {
                signal: status,
                core_dumped: false,
            },
        }
    }

    /// A clean exit in systemd's sense: code 0, or SIGHUP, SIGINT, SIGTERM, SIGPIPE.
    pub fn is_clean(self) -> bool {
        match self {
            ExitStatus::Exited { code } => code == 0,
            ExitStatus::Killed {
                signal,
                core_dumped,
            } => {
                !core_dumped
                    && matches!(
                        signal,
                        libc::SIGHUP | libc::SIGINT | libc::SIGTERM | libc::SIGPIPE
                    )
            }
            ExitStatus::OomKilled | ExitStatus::Unknown => false,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Exited { code } => write!(f, "exited {code}"),
            ExitStatus::Killed {
                signal,
                core_dumped,
            } => {
                write!(f, "killed by {}", signal_name(signal))?;
                if core_dumped {
                    f.write_str(" (core dumped)")?;
                }
                Ok(())
            }
            ExitStatus::OomKilled => f.write_str("killed by the OOM killer (memory.max)"),
            ExitStatus::Unknown => f.write_str("exit status unknown (adopted)"),
        }
    }
}

const SIGNALS: &[(i32, &str)] = &[
    (libc::SIGHUP, "SIGHUP"),
    (libc::SIGINT, "SIGINT"),
    (libc::SIGQUIT, "SIGQUIT"),
    (libc::SIGILL, "SIGILL"),
    (libc::SIGTRAP, "SIGTRAP"),
    (libc::SIGABRT, "SIGABRT"),
    (libc::SIGBUS, "SIGBUS"),
    (libc::SIGFPE, "SIGFPE"),
    (libc::SIGKILL, "SIGKILL"),
    (libc::SIGUSR1, "SIGUSR1"),
    (libc::SIGSEGV, "SIGSEGV"),
    (libc::SIGUSR2, "SIGUSR2"),
    (libc::SIGPIPE, "SIGPIPE"),
    (libc::SIGALRM, "SIGALRM"),
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGCHLD, "SIGCHLD"),
    (libc::SIGCONT, "SIGCONT"),
    (libc::SIGSTOP, "SIGSTOP"),
    (libc::SIGTSTP, "SIGTSTP"),
    (libc::SIGTTIN, "SIGTTIN"),
    (libc::SIGTTOU, "SIGTTOU"),
    (libc::SIGURG, "SIGURG"),
    (libc::SIGXCPU, "SIGXCPU"),
    (libc::SIGXFSZ, "SIGXFSZ"),
    (libc::SIGVTALRM, "SIGVTALRM"),
    (libc::SIGPROF, "SIGPROF"),
    (libc::SIGWINCH, "SIGWINCH"),
    (libc::SIGIO, "SIGIO"),
    (libc::SIGPWR, "SIGPWR"),
    (libc::SIGSYS, "SIGSYS"),
];

/// `SIGSEGV` for 11; `SIGRTMIN+3`, or `signal 70` for what has no name.
pub fn signal_name(sig: i32) -> String {
    if let Some((_, n)) = SIGNALS.iter().find(|(s, _)| *s == sig) {
        return (*n).to_string();
    }
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    if (min..=max).contains(&sig) {
        return format!("SIGRTMIN+{}", sig - min);
    }
    format!("signal {sig}")
}

/// A signal by name (`TERM`, `SIGTERM`, `term`) or number.
pub fn parse_signal(s: &str) -> Result<i32, String> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=libc::SIGRTMAX()).contains(&n) {
            return Ok(n);
        }
    }
    let up = s.to_ascii_uppercase();
    let full = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    SIGNALS
        .iter()
        .find(|(_, n)| *n == full)
        .map(|(s, _)| *s)
        .ok_or_else(|| {
            format!(
                "{s:?} is not a signal name: expected e.g. \"TERM\", \"INT\", \"QUIT\" or a number"
            )
        })
}

/// The last result of a service's probe.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProbeStatus {
    /// `http`, `tcp` or `exec`.
    pub kind: String,
    /// The URL, address or command probed.
    pub target: String,
    /// The last probe's outcome (`None` before the first one).
    pub ok: Option<bool>,
    /// Failures in a row (reset by a success).
    pub consecutive_failures: u32,
    pub failure_threshold: u32,
    /// Why the last probe failed.
    pub last_error: Option<String>,
    pub last_at: Option<Timestamp>,
}

/// One service, as `GET /api/services[/{name}]` answers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceInfo {
    pub name: String,
    pub state: ServiceState,
    /// The main process (while it runs).
    pub pid: Option<u32>,
    /// When the service entered its state.
    pub since: Timestamp,
    /// Starts after the first, since the agent loaded the service (kept across agent restarts).
    pub restarts: u32,
    /// How the last main process ended, e.g. `exited 3`, `killed by SIGSEGV`.
    pub last_exit: Option<String>,
    /// The structured form of `last_exit`.
    pub last_exit_status: Option<ExitStatus>,
    /// Why it failed (state `failed`), or why the last start failed.
    pub reason: Option<String>,
    /// When the next start is due (state `backing-off`).
    pub next_attempt: Option<Timestamp>,
    /// Ready: started (`ready = "started"`), READY=1 received, or the probe succeeded.
    pub ready: bool,
    pub probe: Option<ProbeStatus>,
    /// Its slice under the managed root (`svc-NAME`).
    pub slice: String,
    /// The main process was found running in its slice when this agent started (its exit
    /// status will be unknown).
    pub adopted: bool,
    /// The services it starts after.
    pub after: Vec<String>,
    /// The log file.
    pub log_file: String,
    /// Created through the API (`POST /api/services`) rather than declared in the config.
    #[serde(default)]
    pub transient: bool,
}

/// `GET /api/services/{name}/logs`: the last lines of the log, oldest first, each
/// `TIMESTAMP LINE` as written.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceLogs {
    pub name: String,
    pub file: String,
    pub lines: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_read_like_systemd() {
        assert_eq!(ExitStatus::Exited { code: 3 }.to_string(), "exited 3");
        assert_eq!(
            ExitStatus::from_siginfo(libc::CLD_KILLED, libc::SIGSEGV).to_string(),
            "killed by SIGSEGV"
        );
        assert_eq!(
            ExitStatus::from_siginfo(libc::CLD_DUMPED, libc::SIGABRT).to_string(),
            "killed by SIGABRT (core dumped)"
        );
        assert_eq!(
            ExitStatus::Unknown.to_string(),
            "exit status unknown (adopted)"
        );
        assert!(ExitStatus::Exited { code: 0 }.is_clean());
        assert!(ExitStatus::from_siginfo(libc::CLD_KILLED, libc::SIGTERM).is_clean());
        assert!(!ExitStatus::from_siginfo(libc::CLD_KILLED, libc::SIGKILL).is_clean());
        assert!(!ExitStatus::Exited { code: 1 }.is_clean());
        assert_eq!(signal_name(libc::SIGRTMIN() + 2), "SIGRTMIN+2");
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("TERM"), Ok(libc::SIGTERM));
        assert_eq!(parse_signal("sigint"), Ok(libc::SIGINT));
        assert_eq!(parse_signal("9"), Ok(9));
        assert!(parse_signal("TERMINATE").is_err());
        assert!(parse_signal("0").is_err());
    }

    #[test]
    fn states_are_kebab_case() {
        assert_eq!(
            serde_json::to_string(&ServiceState::BackingOff).unwrap(),
            "\"backing-off\""
        );
        let s: ServiceState = serde_json::from_str("\"failed\"").unwrap();
        assert_eq!(s, ServiceState::Failed);
    }
}

//! Wire types of the process actions (`POST /api/processes/{pid}/kill|renice|ionice`,
//! `POST /api/slices/{name}/kill`, the `GET /api/actions` stream) and the parsers of their
//! values (signal names, nice levels, IO priorities), shared by the agent and the CLI so a
//! value is refused the same way on both sides.
//!
//! The kill request and answer are seed 004's (`{"force": false}` →
//! `{"success": true, "message": ..., "pid", "name", "forced"}`), with procman's extras.
use serde::{Deserialize, Deserializer, Serialize};
use std::{fmt, time::Duration};

/// The longest grace a kill may wait between SIGTERM and SIGKILL.
pub const MAX_GRACE: Duration = Duration::from_secs(300);

/// `POST /api/processes/{pid}/kill`. Every field is optional: an empty body is `{}` (SIGTERM,
/// then SIGKILL after the configured grace).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct KillRequest {
    /// SIGKILL at once (seed 004).
    #[serde(default)]
    pub force: bool,
    /// Send this signal instead of SIGTERM (`HUP`, `SIGHUP`, `1`). Without `grace` nothing
    /// follows it; with `grace`, SIGKILL follows if the process is still there after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// How long to wait after the first signal before SIGKILL: seconds (a number) or a
    /// duration string (`"10s"`, `"500ms"`); at most 5 minutes.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "grace_de",
        serialize_with = "grace_ser"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>))]
    pub grace: Option<Duration>,
    /// End the whole subtree (the descendants first).
    #[serde(default)]
    pub tree: bool,
    /// The process the caller means: its start time as `procman ps --json` shows it (Unix
    /// seconds). A pid that now names another process is refused (409).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<crate::units::Timestamp>,
    /// The same as `start_time`, exactly: ns since boot, as the event stream's `start_ns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ns: Option<u64>,
}

fn grace_de<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum G {
        Secs(f64),
        Text(String),
    }
    let d = match Option::<G>::deserialize(d)? {
        None => return Ok(None),
        Some(G::Secs(s)) => {
            if !s.is_finite() || s < 0.0 || s > MAX_GRACE.as_secs_f64() {
                return Err(serde::de::Error::custom(format!(
                    "grace {s}: expected seconds between 0 and {} (or a duration like \"10s\")",
                    MAX_GRACE.as_secs()
                )));
            }
            Duration::from_secs_f64(s)
        }
        Some(G::Text(t)) => parse_grace(&t).map_err(serde::de::Error::custom)?,
    };
    Ok(Some(d))
}

fn grace_ser<S: serde::Serializer>(g: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match g {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// A grace period: a duration (`5s`, `500ms`, `1m`; a bare number is seconds), at most 5 min.
pub fn parse_grace(s: &str) -> Result<Duration, String> {
    let d = crate::units::parse_duration(s).map_err(|e| format!("grace: {e}"))?;
    if d > MAX_GRACE {
        return Err(format!(
            "grace {s:?}: at most {}s (5m)",
            MAX_GRACE.as_secs()
        ));
    }
    Ok(d)
}

/// The answer to a kill: seed 004's fields first, then procman's.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KillAnswer {
    pub success: bool,
    /// `Process python3 (PID: 1234) terminated successfully`.
    pub message: String,
    pub pid: u32,
    pub name: String,
    /// Ended by SIGKILL: asked for (`force`), or the escalation after the grace.
    pub forced: bool,
    /// The last signal sent to it (`SIGTERM`, `SIGKILL`, `SIGHUP`).
    pub signal: String,
    /// Whether it is gone (exited; a zombie until its parent reaps it counts as gone). A
    /// signal other than TERM/KILL without a grace does not wait, and says `false`.
    pub exited: bool,
    /// SIGKILL followed the first signal because the process outlived the grace.
    #[serde(default)]
    pub escalated: bool,
    /// How long from the first signal until it was gone (or the answer), seconds.
    #[serde(default)]
    pub waited_seconds: f64,
    /// With `tree`: the descendants that were signalled too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tree_killed: Vec<u32>,
    /// With `tree`: how it was done (`cgroup.kill of slice X`, or `pidfd signals`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// `POST /api/processes/{pid}/renice`: `{"nice": N}` or `{"level": "low"}`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReniceRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nice: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<NiceLevel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<crate::units::Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ns: Option<u64>,
}

impl ReniceRequest {
    /// The nice value asked for, checked (-20..=19; exactly one of `nice` and `level`).
    pub fn target_nice(&self) -> Result<i32, String> {
        match (self.nice, self.level) {
            (Some(n), None) => check_nice(n),
            (None, Some(l)) => Ok(l.nice()),
            (Some(_), Some(_)) => Err("give either nice or level, not both".into()),
            (None, None) => Err(
                "say what nice value: {\"nice\": N} (-20..19) or {\"level\": \"low|normal|high\"}"
                    .into(),
            ),
        }
    }
}

/// Refuses a nice value outside -20..=19.
pub fn check_nice(n: i32) -> Result<i32, String> {
    if (-20..=19).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "nice {n}: must be between -20 (highest priority) and 19 (lowest)"
        ))
    }
}

/// Seed 000's priority levels, each a nice value.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum NiceLevel {
    /// nice 10: background work.
    Low,
    /// nice 0: the default.
    Normal,
    /// nice -5: ahead of ordinary processes, short of real-time-ish -20.
    High,
}

impl NiceLevel {
    pub fn nice(self) -> i32 {
        match self {
            NiceLevel::Low => 10,
            NiceLevel::Normal => 0,
            NiceLevel::High => -5,
        }
    }
}

impl std::str::FromStr for NiceLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "low" => Ok(NiceLevel::Low),
            "normal" => Ok(NiceLevel::Normal),
            "high" => Ok(NiceLevel::High),
            _ => Err(format!(
                "level {s:?}: expected low (nice 10), normal (0) or high (-5)"
            )),
        }
    }
}

/// The answer to a renice.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReniceAnswer {
    pub success: bool,
    pub message: String,
    pub pid: u32,
    pub name: String,
    /// The main thread's nice value before.
    pub old_nice: i32,
    pub new_nice: i32,
    /// Threads set.
    pub threads: u32,
}

/// An IO scheduling class (ioprio_set(2)).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum IoClass {
    /// No class set: the kernel derives best-effort from the nice value.
    None,
    Realtime,
    BestEffort,
    Idle,
}

impl IoClass {
    /// The kernel's `IOPRIO_CLASS_*` number.
    pub fn number(self) -> u16 {
        match self {
            IoClass::None => 0,
            IoClass::Realtime => 1,
            IoClass::BestEffort => 2,
            IoClass::Idle => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IoClass::None => "none",
            IoClass::Realtime => "realtime",
            IoClass::BestEffort => "best-effort",
            IoClass::Idle => "idle",
        }
    }
}

impl std::str::FromStr for IoClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "0" => Ok(IoClass::None),
            "realtime" | "rt" | "1" => Ok(IoClass::Realtime),
            "best-effort" | "besteffort" | "be" | "2" => Ok(IoClass::BestEffort),
            "idle" | "3" => Ok(IoClass::Idle),
            _ => Err(format!(
                "IO class {s:?}: expected none, realtime, best-effort or idle"
            )),
        }
    }
}

/// An IO priority: class and level (0 highest .. 7 lowest; realtime and best-effort only).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IoPrio {
    pub class: IoClass,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u8>,
}

impl IoPrio {
    /// Checks the level against the class: 0..=7 for realtime and best-effort (default 4),
    /// none for `none` and `idle`.
    pub fn new(class: IoClass, level: Option<u8>) -> Result<IoPrio, String> {
        match (class, level) {
            (IoClass::Realtime | IoClass::BestEffort, Some(l)) if l > 7 => Err(format!(
                "IO level {l}: must be between 0 (highest) and 7 (lowest)"
            )),
            (IoClass::Realtime | IoClass::BestEffort, l) => Ok(IoPrio {
                class,
                level: Some(l.unwrap_or(4)),
            }),
            (IoClass::None | IoClass::Idle, Some(l)) => Err(format!(
                "IO class {} takes no level (got {l}); levels apply to realtime and best-effort",
                class.as_str()
            )),
            (_, None) => Ok(IoPrio { class, level: None }),
        }
    }

    /// The value for ioprio_set(2): class << 13 | level.
    pub fn raw(self) -> u16 {
        self.class.number() << 13 | u16::from(self.level.unwrap_or(0))
    }

    /// From ioprio_get(2)'s value.
    pub fn from_raw(v: u16) -> IoPrio {
        let class = match v >> 13 {
            1 => IoClass::Realtime,
            2 => IoClass::BestEffort,
            3 => IoClass::Idle,
            _ => IoClass::None,
        };
        let level =
            matches!(class, IoClass::Realtime | IoClass::BestEffort).then_some((v & 0x7) as u8);
        IoPrio { class, level }
    }
}

impl fmt::Display for IoPrio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.level {
            Some(l) => write!(f, "{}:{l}", self.class.as_str()),
            None => f.write_str(self.class.as_str()),
        }
    }
}

impl std::str::FromStr for IoPrio {
    type Err = String;
    /// `CLASS[:LEVEL]`: `best-effort:4`, `idle`, `rt:0`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (c, l) = match s.split_once(':') {
            Some((c, l)) => {
                let l: u8 = l.trim().parse().map_err(|_| {
                    format!("IO level {l:?} in {s:?}: expected a number from 0 to 7")
                })?;
                (c, Some(l))
            }
            None => (s, None),
        };
        IoPrio::new(c.trim().parse()?, l)
    }
}

/// `POST /api/processes/{pid}/ionice`: `{"class": "best-effort", "level": 4}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct IoniceRequest {
    pub class: IoClass,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<crate::units::Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ns: Option<u64>,
}

/// The answer to an ionice.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IoniceAnswer {
    pub success: bool,
    pub message: String,
    pub pid: u32,
    pub name: String,
    /// The main thread's IO priority before (`best-effort:4`, `none`, ...).
    pub old: String,
    pub new: String,
    pub threads: u32,
}

/// The answer to `POST /api/slices/{name}/kill`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SliceKillAnswer {
    pub success: bool,
    pub message: String,
    pub slice: String,
    /// The processes that were in it.
    pub killed: Vec<u32>,
    /// `cgroup.kill`, or `freeze+SIGKILL` on kernels before 5.14.
    pub method: String,
}

/// One line of `GET /api/actions`: an action taken (or refused) on a process or slice.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActionRecord {
    /// Unix time, seconds.
    pub time: f64,
    /// `kill`, `renice`, `ionice`, `slice-kill`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<String>,
    /// The process's name (comm), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Who asked: `uid 1000`, `token`, `policy:NAME`.
    pub actor: String,
    /// The request.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub args: serde_json::Value,
    /// `ok`, `denied` (403) or `error`.
    pub result: String,
    /// The answer's message, or the error.
    pub message: String,
    /// The whole answer when it succeeded (a [`KillAnswer`], ...).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub answer: serde_json::Value,
}

/// One line of the `GET /api/actions` stream: a record, or a notice that this subscriber fell
/// behind and `lagged` records were skipped for it.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum ActionStreamItem {
    Action(Box<ActionRecord>),
    Lagged { lagged: u64 },
}

/// The standard signals by name, as kill(1) knows them (numbers for x86-64/arm64 Linux, read
/// from libc).
const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// A signal from its name (`TERM`, `SIGTERM`, `sigterm`) or number (`15`): the standard
/// signals 1..=31. Signal 0 (which only checks that a process exists) and real-time signals
/// are refused.
pub fn parse_signal(s: &str) -> Result<i32, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        return SIGNALS
            .iter()
            .find(|(_, v)| *v == n)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("signal {n}: expected a standard signal number 1..31"));
    }
    let up = t.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    SIGNALS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            format!("signal {t:?}: expected a name such as TERM, KILL, HUP, INT, USR1 or a number 1..31")
        })
}

/// `SIGTERM` for 15.
pub fn signal_name(sig: i32) -> String {
    SIGNALS
        .iter()
        .find(|(_, v)| *v == sig)
        .map(|(n, _)| format!("SIG{n}"))
        .unwrap_or_else(|| format!("signal {sig}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_004_kill_bodies() {
        let r: KillRequest = serde_json::from_str(r#"{"force": false}"#).unwrap();
        assert_eq!(r, KillRequest::default());
        let r: KillRequest = serde_json::from_str(r#"{"force": true}"#).unwrap();
        assert!(r.force);
        let r: KillRequest = serde_json::from_str("{}").unwrap();
        assert!(!r.force && r.grace.is_none());
        let r: KillRequest =
            serde_json::from_str(r#"{"grace": 2.5, "signal": "HUP", "tree": true}"#).unwrap();
        assert_eq!(r.grace, Some(Duration::from_millis(2500)));
        let r: KillRequest = serde_json::from_str(r#"{"grace": "500ms"}"#).unwrap();
        assert_eq!(r.grace, Some(Duration::from_millis(500)));
        for bad in [
            r#"{"grace": -1}"#,
            r#"{"grace": 301}"#,
            r#"{"grace": "6m"}"#,
            r#"{"grace": "soon"}"#,
            r#"{"forse": true}"#,
            r#"{"force": "yes"}"#,
        ] {
            assert!(serde_json::from_str::<KillRequest>(bad).is_err(), "{bad}");
        }
        let a = KillAnswer {
            success: true,
            message: "Process python3 (PID: 1234) terminated successfully".into(),
            pid: 1234,
            name: "python3".into(),
            ..Default::default()
        };
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["success"], true);
        assert_eq!(v["forced"], false);
        assert!(v.get("tree_killed").is_none());
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("TERM"), Ok(libc::SIGTERM));
        assert_eq!(parse_signal("sigkill"), Ok(libc::SIGKILL));
        assert_eq!(parse_signal(" HUP "), Ok(libc::SIGHUP));
        assert_eq!(parse_signal("9"), Ok(9));
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("64").is_err());
        assert!(parse_signal("-9").is_err());
        assert!(parse_signal("SIGFOO").is_err());
        assert!(parse_signal("").is_err());
        assert_eq!(signal_name(libc::SIGTERM), "SIGTERM");
    }

    #[test]
    fn nice_values() {
        let r = |j: &str| {
            serde_json::from_str::<ReniceRequest>(j)
                .unwrap()
                .target_nice()
        };
        assert_eq!(r(r#"{"nice": 5}"#), Ok(5));
        assert_eq!(r(r#"{"level": "low"}"#), Ok(10));
        assert_eq!(r(r#"{"level": "high"}"#), Ok(-5));
        assert!(r(r#"{"nice": 20}"#).is_err());
        assert!(r(r#"{"nice": -21}"#).is_err());
        assert!(r("{}").is_err());
        assert!(r(r#"{"nice": 1, "level": "low"}"#).is_err());
        assert!(serde_json::from_str::<ReniceRequest>(r#"{"level": "urgent"}"#).is_err());
    }

    #[test]
    fn io_priorities() {
        let p: IoPrio = "best-effort:4".parse().unwrap();
        assert_eq!(p.raw(), 2 << 13 | 4);
        assert_eq!(IoPrio::from_raw(p.raw()), p);
        assert_eq!(p.to_string(), "best-effort:4");
        let p: IoPrio = "idle".parse().unwrap();
        assert_eq!(p.raw(), 3 << 13);
        assert_eq!(p.to_string(), "idle");
        let p: IoPrio = "rt".parse().unwrap();
        assert_eq!(p.level, Some(4));
        assert!("best-effort:8".parse::<IoPrio>().is_err());
        assert!("idle:3".parse::<IoPrio>().is_err());
        assert!("fast".parse::<IoPrio>().is_err());
        assert!("be:x".parse::<IoPrio>().is_err());
        assert_eq!(IoPrio::from_raw(0).to_string(), "none");
    }
}

//! `[[service]]` and `[services]` in the config: the TOML as written ([`ServiceConfig`],
//! unknown keys refused) and the validated form the supervisor runs ([`ServiceSpec`]): the
//! command resolved in PATH, the user and group resolved to ids, limits checked, durations
//! and sizes typed, `after` checked for unknown names and cycles. Every refusal names the
//! service and the key.
use anyhow::{bail, Context, Result};
use procman_common::units::{ByteSize, HumanDuration};
use serde::{Deserialize, Serialize};
use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    time::Duration,
};

/// `[services]`: where services keep their logs and state.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServicesSection {
    /// One `<name>.log` per service (rotated `<name>.log.1` … `.N`).
    pub log_dir: PathBuf,
    /// State that must outlive the agent (main pid, counters) and the services'
    /// `NOTIFY_SOCKET`s.
    pub state_dir: PathBuf,
}

impl Default for ServicesSection {
    fn default() -> Self {
        ServicesSection {
            log_dir: PathBuf::from("/var/log/procman/services"),
            state_dir: PathBuf::from("/run/procman/services"),
        }
    }
}

/// When a service is started again after its main process ended (systemd's `Restart=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    No,
    /// After an unclean exit: a code other than 0, a signal other than HUP/INT/TERM/PIPE, a
    /// failed liveness probe, an unknown status (adopted).
    #[default]
    OnFailure,
    /// After a signal (not HUP/INT/TERM/PIPE), a failed liveness probe or an unknown status;
    /// not after an exit code.
    OnAbnormal,
    Always,
}

/// What makes a service ready (gates the services that come `after` it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Readiness {
    /// Ready as soon as it runs.
    #[default]
    Started,
    /// Ready when it sends `READY=1` to `$NOTIFY_SOCKET` (sd_notify).
    Notify,
    /// Ready at the first successful probe.
    Probe,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffConfig {
    pub initial: HumanDuration,
    pub max: HumanDuration,
    /// Running this long resets the delay to `initial`.
    pub reset_after: HumanDuration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: HumanDuration(Duration::from_secs(1)),
            max: HumanDuration(Duration::from_secs(120)),
            reset_after: HumanDuration(Duration::from_secs(300)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StartLimitConfig {
    /// At most this many starts within `interval`; one more and the service is `failed`.
    pub burst: u32,
    pub interval: HumanDuration,
}

impl Default for StartLimitConfig {
    fn default() -> Self {
        StartLimitConfig {
            burst: 5,
            interval: HumanDuration(Duration::from_secs(60)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StopConfig {
    /// Sent to the main process first.
    pub signal: String,
    /// Then, after this long, every process of the slice is killed (`cgroup.kill`).
    pub timeout: HumanDuration,
}

impl Default for StopConfig {
    fn default() -> Self {
        StopConfig {
            signal: "TERM".into(),
            timeout: HumanDuration(Duration::from_secs(10)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Rotate past this size.
    pub max_size: ByteSize,
    /// Rotated files kept.
    pub keep: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_size: ByteSize(10 << 20),
            keep: 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// `http://HOST:PORT/PATH`: a 2xx or 3xx answer is healthy.
    pub http: Option<String>,
    /// `HOST:PORT`: a connection is healthy.
    pub tcp: Option<String>,
    /// A command (argv): exit code 0 is healthy.
    pub exec: Option<Vec<String>>,
    #[serde(default = "ten_seconds")]
    pub interval: HumanDuration,
    #[serde(default = "two_seconds")]
    pub timeout: HumanDuration,
    #[serde(default = "three")]
    pub failure_threshold: u32,
    #[serde(default)]
    pub initial_delay: HumanDuration,
}

fn ten_seconds() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn two_seconds() -> HumanDuration {
    HumanDuration(Duration::from_secs(2))
}
fn three() -> u32 {
    3
}
fn yes() -> bool {
    true
}

/// `[[service]]` as written (and the body of `POST /api/services`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub name: String,
    /// The command and its arguments (no shell: `["sh", "-c", "..."]` asks for one).
    pub exec: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub user: Option<String>,
    pub group: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// A file of `KEY=VALUE` lines (`#` comments, optional quotes), read at each start;
    /// `env` wins over it.
    pub env_file: Option<PathBuf>,
    /// Limits of its slice, the keys of `[[slice]]`.
    #[serde(default)]
    pub limits: procman_cgroup::Limits,
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Exit codes that count as a clean exit besides 0 (systemd's `SuccessExitStatus=`).
    #[serde(default)]
    pub success_exit_codes: Vec<i32>,
    /// Exit codes after which it is always restarted, whatever `restart` says (systemd's
    /// `RestartForceExitStatus=`).
    #[serde(default)]
    pub restart_exit_codes: Vec<i32>,
    #[serde(default)]
    pub backoff: BackoffConfig,
    #[serde(default)]
    pub start_limit: StartLimitConfig,
    #[serde(default)]
    pub stop: StopConfig,
    #[serde(default)]
    pub ready: Readiness,
    pub probe: Option<ProbeConfig>,
    #[serde(default)]
    pub after: Vec<String>,
    #[serde(default)]
    pub log: LogConfig,
    /// Start it when the agent starts (else on `procman service start`).
    #[serde(default = "yes")]
    pub autostart: bool,
}

/// What a probe checks.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeKind {
    Http {
        host: String,
        port: u16,
        path: String,
    },
    Tcp(String),
    Exec(Vec<String>),
}

impl ProbeKind {
    pub fn name(&self) -> &'static str {
        match self {
            ProbeKind::Http { .. } => "http",
            ProbeKind::Tcp(_) => "tcp",
            ProbeKind::Exec(_) => "exec",
        }
    }

    pub fn target(&self) -> String {
        match self {
            ProbeKind::Http { host, port, path } => format!("http://{host}:{port}{path}"),
            ProbeKind::Tcp(a) => a.clone(),
            ProbeKind::Exec(argv) => argv.join(" "),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSpec {
    pub kind: ProbeKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub initial_delay: Duration,
}

/// A validated service: what the supervisor runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    pub name: String,
    pub argv: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub env: BTreeMap<String, String>,
    pub env_file: Option<PathBuf>,
    pub limits: procman_cgroup::Limits,
    pub restart: RestartPolicy,
    pub success_exit_codes: Vec<i32>,
    pub restart_exit_codes: Vec<i32>,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub reset_after: Duration,
    pub start_burst: u32,
    pub start_interval: Duration,
    pub stop_signal: i32,
    pub stop_timeout: Duration,
    pub ready: Readiness,
    pub probe: Option<ProbeSpec>,
    pub after: Vec<String>,
    pub log_max_size: u64,
    pub log_keep: u32,
    pub autostart: bool,
}

impl ServiceSpec {
    /// The slice the service runs in, under the managed root.
    pub fn slice(&self) -> String {
        slice_of(&self.name)
    }
}

pub fn slice_of(name: &str) -> String {
    format!("svc-{name}")
}

/// Finds `cmd` the way execvp will: as a path when it has a `/`, else in `path`.
fn find_command(cmd: &str, path: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if cmd.contains('/') {
        let p = PathBuf::from(cmd);
        return runnable(&p).then_some(p);
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(cmd))
        .find(|p| runnable(p))
}

fn positive(name: &str, key: &str, d: &HumanDuration) -> Result<Duration> {
    if d.0.is_zero() || d.0 > Duration::from_secs(7 * 86400) {
        bail!("[[service]] {name:?}: {key} = \"{d}\": must be more than 0 and at most 7d");
    }
    Ok(d.0)
}

impl ServiceConfig {
    /// Validates one entry (not `after`, which needs the others: see [`validate_all`]).
    pub fn validate(&self) -> Result<ServiceSpec> {
        let n = &self.name;
        let name_ok = !n.is_empty()
            && n.len() <= 64
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && n.starts_with(|c: char| c.is_ascii_alphanumeric());
        if !name_ok {
            bail!("[[service]] name = {n:?}: 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit");
        }
        procman_cgroup::validate_name("slice", &slice_of(n))
            .with_context(|| format!("[[service]] name = {n:?}"))?;
        let Some(cmd) = self.exec.first() else {
            bail!("[[service]] {n:?}: exec = []: give the command and its arguments, e.g. [\"/usr/bin/python3\", \"app.py\"]");
        };
        if self.exec.iter().any(|a| a.contains('\0')) {
            bail!("[[service]] {n:?}: exec has a NUL byte");
        }
        let path = self
            .env
            .get("PATH")
            .cloned()
            .or_else(|| std::env::var("PATH").ok())
            .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        if find_command(cmd, &path).is_none() {
            bail!(
                "[[service]] {n:?}: exec = {:?}: {cmd:?} is not an executable file{}",
                self.exec,
                if cmd.contains('/') {
                    String::new()
                } else {
                    format!(" in PATH ({path})")
                }
            );
        }
        if let Some(d) = &self.cwd {
            if !d.is_absolute() || !d.is_dir() {
                bail!("[[service]] {n:?}: cwd = {d:?}: must be an existing directory, given as an absolute path");
            }
        }
        let (mut uid, mut gid) = (None, None);
        if let Some(u) = &self.user {
            let user = match u.parse::<u32>() {
                Ok(id) => nix::unistd::User::from_uid(id.into()),
                Err(_) => nix::unistd::User::from_name(u),
            }
            .ok()
            .flatten()
            .with_context(|| format!("[[service]] {n:?}: user = {u:?}: no such user"))?;
            uid = Some(user.uid.as_raw());
            gid = Some(user.gid.as_raw());
        }
        if let Some(g) = &self.group {
            let group = match g.parse::<u32>() {
                Ok(id) => nix::unistd::Group::from_gid(id.into()),
                Err(_) => nix::unistd::Group::from_name(g),
            }
            .ok()
            .flatten()
            .with_context(|| format!("[[service]] {n:?}: group = {g:?}: no such group"))?;
            gid = Some(group.gid.as_raw());
        }
        for k in self.env.keys() {
            if k.is_empty() || k.contains(['=', '\0']) {
                bail!("[[service]] {n:?}: env key {k:?}: must be non-empty without '=' or NUL");
            }
        }
        if self.env.values().any(|v| v.contains('\0')) {
            bail!("[[service]] {n:?}: an env value has a NUL byte");
        }
        if let Some(f) = &self.env_file {
            read_env_file(f).map_err(|e| anyhow::anyhow!("[[service]] {n:?}: env_file: {e}"))?;
        }
        for (key, codes) in [
            ("success_exit_codes", &self.success_exit_codes),
            ("restart_exit_codes", &self.restart_exit_codes),
        ] {
            if let Some(c) = codes.iter().find(|c| !(0..=255).contains(*c)) {
                bail!("[[service]] {n:?}: {key} = {codes:?}: {c} is not an exit code (0 to 255)");
            }
        }
        self.limits
            .validate()
            .map_err(|e| anyhow::anyhow!("[[service]] {n:?}: limits: {e}"))?;
        let b = &self.backoff;
        let backoff_initial = positive(n, "backoff.initial", &b.initial)?;
        let backoff_max = positive(n, "backoff.max", &b.max)?;
        if backoff_max < backoff_initial {
            bail!(
                "[[service]] {n:?}: backoff.max = \"{}\" is less than backoff.initial = \"{}\"",
                b.max,
                b.initial
            );
        }
        let reset_after = positive(n, "backoff.reset_after", &b.reset_after)?;
        if self.start_limit.burst == 0 || self.start_limit.burst > 1000 {
            bail!(
                "[[service]] {n:?}: start_limit.burst = {}: must be between 1 and 1000",
                self.start_limit.burst
            );
        }
        let start_interval = positive(n, "start_limit.interval", &self.start_limit.interval)?;
        let stop_signal = procman_common::service::parse_signal(&self.stop.signal)
            .map_err(|e| anyhow::anyhow!("[[service]] {n:?}: stop.signal: {e}"))?;
        let stop_timeout = positive(n, "stop.timeout", &self.stop.timeout)?;
        let probe = self.probe.as_ref().map(|p| probe_spec(n, p)).transpose()?;
        if self.ready == Readiness::Probe && probe.is_none() {
            bail!("[[service]] {n:?}: ready = \"probe\" needs a probe = {{ http = ..., tcp = ... or exec = [...] }}");
        }
        if self.log.max_size.0 < 4096 || self.log.keep > 100 {
            bail!(
                "[[service]] {n:?}: log = {{ max_size = \"{}\", keep = {} }}: max_size must be at least 4K, keep at most 100",
                self.log.max_size,
                self.log.keep
            );
        }
        Ok(ServiceSpec {
            name: n.clone(),
            argv: self.exec.clone(),
            cwd: self.cwd.clone(),
            uid,
            gid,
            env: self.env.clone(),
            env_file: self.env_file.clone(),
            limits: self.limits.clone(),
            restart: self.restart,
            success_exit_codes: self.success_exit_codes.clone(),
            restart_exit_codes: self.restart_exit_codes.clone(),
            backoff_initial,
            backoff_max,
            reset_after,
            start_burst: self.start_limit.burst,
            start_interval,
            stop_signal,
            stop_timeout,
            ready: self.ready,
            probe,
            after: self.after.clone(),
            log_max_size: self.log.max_size.0,
            log_keep: self.log.keep,
            autostart: self.autostart,
        })
    }
}

/// Reads an environment file: `KEY=VALUE` lines, blank lines and `#` comments skipped, an
/// optional `export `, values optionally in single or double quotes (no expansion).
pub fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let l = l.strip_prefix("export ").unwrap_or(l);
        let (k, v) = l.split_once('=').ok_or_else(|| {
            format!(
                "{} line {}: {line:?} is not KEY=VALUE",
                path.display(),
                i + 1
            )
        })?;
        let k = k.trim();
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "{} line {}: {k:?} is not a variable name",
                path.display(),
                i + 1
            ));
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
            .unwrap_or(v);
        if v.contains('\0') {
            return Err(format!("{} line {}: a NUL byte", path.display(), i + 1));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

fn probe_spec(n: &str, p: &ProbeConfig) -> Result<ProbeSpec> {
    let kind = match (&p.http, &p.tcp, &p.exec) {
        (Some(url), None, None) => {
            let bad = || {
                anyhow::anyhow!("[[service]] {n:?}: probe.http = {url:?}: expected http://HOST:PORT/PATH (plain http only)")
            };
            let rest = url.strip_prefix("http://").ok_or_else(bad)?;
            let (hostport, path) = match rest.find('/') {
                Some(i) => (&rest[..i], rest[i..].to_string()),
                None => (rest, "/".to_string()),
            };
            let (host, port) = match hostport.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() => (h, p.parse::<u16>().map_err(|_| bad())?),
                None if !hostport.is_empty() => (hostport, 80),
                _ => return Err(bad()),
            };
            if path.contains([' ', '\r', '\n']) {
                return Err(bad());
            }
            ProbeKind::Http {
                host: host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                port,
                path,
            }
        }
        (None, Some(addr), None) => {
            match addr.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => {}
                _ => bail!("[[service]] {n:?}: probe.tcp = {addr:?}: expected HOST:PORT, e.g. \"127.0.0.1:5432\""),
            }
            ProbeKind::Tcp(addr.clone())
        }
        (None, None, Some(argv)) => {
            if argv.is_empty() {
                bail!("[[service]] {n:?}: probe.exec = []: give a command");
            }
            ProbeKind::Exec(argv.clone())
        }
        _ => bail!("[[service]] {n:?}: probe: give exactly one of http, tcp or exec"),
    };
    let interval = positive(n, "probe.interval", &p.interval)?;
    let timeout = positive(n, "probe.timeout", &p.timeout)?;
    if p.failure_threshold == 0 || p.failure_threshold > 1000 {
        bail!(
            "[[service]] {n:?}: probe.failure_threshold = {}: must be between 1 and 1000",
            p.failure_threshold
        );
    }
    Ok(ProbeSpec {
        kind,
        interval,
        timeout,
        failure_threshold: p.failure_threshold,
        initial_delay: p.initial_delay.0,
    })
}

/// Validates every entry, then the names (unique) and `after` (known names, no cycle).
pub fn validate_all(entries: &[ServiceConfig]) -> Result<Vec<ServiceSpec>> {
    let mut specs = Vec::new();
    let mut index = HashMap::new();
    for e in entries {
        let s = e.validate()?;
        if index.insert(s.name.clone(), specs.len()).is_some() {
            bail!("[[service]] {:?} is declared twice", s.name);
        }
        specs.push(s);
    }
    for s in &specs {
        for a in &s.after {
            if !index.contains_key(a) {
                bail!(
                    "[[service]] {:?}: after = {:?}: no service named {a:?}",
                    s.name,
                    s.after
                );
            }
        }
    }
    // a cycle in `after`: depth-first, 0 unvisited, 1 on the path, 2 done
    fn visit(
        i: usize,
        specs: &[ServiceSpec],
        index: &HashMap<String, usize>,
        mark: &mut [u8],
        path: &mut Vec<String>,
    ) -> Result<()> {
        match mark[i] {
            2 => return Ok(()),
            1 => {
                path.push(specs[i].name.clone());
                bail!("[[service]] after: a cycle: {}", path.join(" -> "));
            }
            _ => {}
        }
        mark[i] = 1;
        path.push(specs[i].name.clone());
        for a in &specs[i].after {
            visit(index[a], specs, index, mark, path)?;
        }
        path.pop();
        mark[i] = 2;
        Ok(())
    }
    let mut mark = vec![0u8; specs.len()];
    for i in 0..specs.len() {
        visit(i, &specs, &index, &mut mark, &mut Vec::new())?;
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<ServiceSpec>> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Doc {
            service: Vec<ServiceConfig>,
        }
        let d: Doc = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        validate_all(&d.service)
    }

    fn err(text: &str) -> String {
        format!("{:#}", parse(text).unwrap_err())
    }

    #[test]
    fn a_full_entry_is_typed() {
        let s = parse(
            r#"
[[service]]
name = "web"
exec = ["sh", "-c", "exit 0"]
cwd = "/"
user = "root"
env = { A = "1" }
limits = { MemoryMax = "1G", CPUQuota = "150%" }
restart = "always"
backoff = { initial = "1s", max = "2m", reset_after = "5m" }
start_limit = { burst = 3, interval = "1m" }
stop = { signal = "INT", timeout = "5s" }
ready = "probe"
probe = { http = "http://127.0.0.1:8080/health", interval = "1s", timeout = "500ms", failure_threshold = 2, initial_delay = "2s" }
log = { max_size = "1MiB", keep = 2 }

[[service]]
name = "db"
exec = ["true"]
after = []
"#,
        )
        .unwrap();
        let w = &s[0];
        assert_eq!(w.uid, Some(0));
        assert_eq!(w.restart, RestartPolicy::Always);
        assert_eq!(w.stop_signal, libc::SIGINT);
        assert_eq!(w.backoff_max, Duration::from_secs(120));
        let p = w.probe.as_ref().unwrap();
        assert_eq!(
            p.kind,
            ProbeKind::Http {
                host: "127.0.0.1".into(),
                port: 8080,
                path: "/health".into()
            }
        );
        assert_eq!(p.timeout, Duration::from_millis(500));
        assert_eq!(w.log_max_size, 1 << 20);
        assert_eq!(s[1].restart, RestartPolicy::OnFailure);
        assert_eq!(s[1].ready, Readiness::Started);
        assert!(s[1].autostart);
    }

    #[test]
    fn bad_entries_are_refused_with_the_key() {
        let e = err("[[service]]\nname = \"a\"\nexec = [\"/nonexistent/bin\"]\n");
        assert!(e.contains("exec") && e.contains("/nonexistent/bin"), "{e}");
        let e = err("[[service]]\nname = \"a\"\nexec = [\"no-such-command-here\"]\n");
        assert!(e.contains("PATH"), "{e}");
        let e = err("[[service]]\nname = \"a\"\nexec = [\"true\"]\nuser = \"no-such-user-xyz\"\n");
        assert!(e.contains("user") && e.contains("no-such-user-xyz"), "{e}");
        let e = err("[[service]]\nname = \"a\"\nexec = [\"true\"]\nrestrat = \"no\"\n");
        assert!(e.contains("restrat"), "{e}");
        let e = err("[[service]]\nname = \"a\"\nexec = [\"true\"]\nrestart = \"sometimes\"\n");
        assert!(e.contains("sometimes"), "{e}");
        let e = err("[[service]]\nname = \"a\"\nexec = [\"true\"]\nbackoff = { initial = \"5s\", max = \"1s\" }\n");
        assert!(e.contains("backoff.max"), "{e}");
        let e = err("[[service]]\nname = \"a\"\nexec = [\"true\"]\nstop = { signal = \"NOPE\" }\n");
        assert!(e.contains("stop.signal"), "{e}");
        let e = err("[[service]]\nname = \"a\"\nexec = [\"true\"]\nready = \"probe\"\n");
        assert!(e.contains("probe"), "{e}");
        let e = err("[[service]]\nname = \"a\"\nexec = [\"true\"]\nprobe = { tcp = \"nohost\" }\n");
        assert!(e.contains("probe.tcp"), "{e}");
        let e = err("[[service]]\nname = \"a\"\nexec = [\"true\"]\nprobe = { tcp = \"h:1\", http = \"http://h/\" }\n");
        assert!(e.contains("exactly one"), "{e}");
        let e = err(
            "[[service]]\nname = \"a\"\nexec = [\"true\"]\nlimits = { MemoryMax = \"lots\" }\n",
        );
        assert!(e.contains("MemoryMax"), "{e}");
        let e = err("[[service]]\nname = \"../x\"\nexec = [\"true\"]\n");
        assert!(e.contains("name"), "{e}");
        let e = err("[[service]]\nname = \"a\"\nexec = [\"true\"]\nafter = [\"b\"]\n");
        assert!(e.contains("after") && e.contains("\"b\""), "{e}");
        let e = err("[[service]]\nname = \"a\"\nexec = [\"true\"]\n[[service]]\nname = \"a\"\nexec = [\"true\"]\n");
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn env_files_and_exit_codes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("app.env");
        std::fs::write(&f, "# comment\n\nA=1\nexport B=\"two words\"\nC='x=y'\n").unwrap();
        assert_eq!(
            read_env_file(&f).unwrap(),
            [
                ("A".to_string(), "1".to_string()),
                ("B".into(), "two words".into()),
                ("C".into(), "x=y".into())
            ]
        );
        std::fs::write(&f, "A=1\nnot a pair\n").unwrap();
        assert!(read_env_file(&f).unwrap_err().contains("line 2"));
        let e = err(&format!(
            "[[service]]\nname = \"a\"\nexec = [\"true\"]\nenv_file = {:?}\n",
            dir.path().join("missing.env")
        ));
        assert!(e.contains("env_file") && e.contains("missing.env"), "{e}");
        let e = err("[[service]]\nname = \"a\"\nexec = [\"true\"]\nsuccess_exit_codes = [300]\n");
        assert!(e.contains("success_exit_codes"), "{e}");
        let s = parse("[[service]]\nname = \"a\"\nexec = [\"true\"]\nrestart_exit_codes = [75]\n")
            .unwrap();
        assert_eq!(s[0].restart_exit_codes, [75]);
    }

    #[test]
    fn after_cycles_are_refused() {
        let e = err(
            "[[service]]\nname = \"a\"\nexec = [\"true\"]\nafter = [\"b\"]\n\
             [[service]]\nname = \"b\"\nexec = [\"true\"]\nafter = [\"c\"]\n\
             [[service]]\nname = \"c\"\nexec = [\"true\"]\nafter = [\"a\"]\n",
        );
        assert!(e.contains("cycle") && e.contains("a -> b -> c -> a"), "{e}");
        let e = err("[[service]]\nname = \"a\"\nexec = [\"true\"]\nafter = [\"a\"]\n");
        assert!(e.contains("cycle"), "{e}");
    }
}

//! The agent's TOML configuration: parsing and validation.
//!
//! Every field has a default, so an empty file is a valid config. Unknown keys are errors (a
//! typo must not silently change behaviour). Validation happens before anything is applied.
use crate::events::{SourceChoice, SourceOptions};
use anyhow::{bail, Context, Result};
use procman_common::units::{ByteSize, HumanDuration};
use serde::Deserialize;
use std::{path::PathBuf, time::Duration};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub agent: AgentSection,
    pub events: EventsSection,
    pub monitor: MonitorSection,
    pub cgroup: CgroupSection,
    /// `[[slice]]`: slices the agent creates (or re-adopts) at start, with their limits.
    pub slice: Vec<SliceConfig>,
    /// `[[rule]]`: exec-time placement rules, first match wins.
    pub rule: Vec<crate::placement::RuleConfig>,
    /// `[[access]]`: actions granted to non-root users and groups (root may do everything;
    /// other callers may only read).
    pub access: Vec<crate::access::GrantConfig>,
    pub audit: AuditSection,
    pub api: ApiSection,
    /// `[[policy]]`: rules acting on what the sampler sees (see `policy`).
    pub policy: Vec<crate::policy::config::PolicyConfig>,
    /// `[[service]]`: programs the agent starts and supervises, each in its own slice.
    pub service: Vec<crate::services::config::ServiceConfig>,
    /// `[services]`: where their logs and state go.
    pub services: crate::services::config::ServicesSection,
    pub actions: ActionsSection,
}

/// `[actions]`: kill, renice and ionice.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActionsSection {
    /// A filter (the `procman ps --filter` language) of processes never acted on, besides pid 1,
    /// kernel threads and the agent, which always are protected. Empty: none.
    pub protect: String,
    /// How long a kill waits after SIGTERM before SIGKILL, when the request gives no grace
    /// (at most 5m).
    pub kill_grace: HumanDuration,
}

impl Default for ActionsSection {
    fn default() -> Self {
        ActionsSection {
            protect: String::new(),
            kill_grace: HumanDuration(Duration::from_secs(5)),
        }
    }
}

/// `[api]`: the optional TCP listener (seed 004's clients use port 8754).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// `host:port` to listen on, e.g. `127.0.0.1:8754`; empty (the default): no TCP.
    pub listen: String,
    /// A file holding the bearer token TCP clients must send (`Authorization: Bearer ...`);
    /// owned by root and not readable by group or others. Required with `listen`.
    pub token_file: PathBuf,
    /// Actions the token holder may take besides reading (default: none).
    pub token_allow: Vec<crate::access::Action>,
    /// Allow `listen` on an address other than loopback (the token then crosses the network
    /// in clear text: put a TLS proxy in front).
    pub allow_remote: bool,
    /// Web origins (`scheme://host[:port]`) whose pages may call the TCP API from a browser
    /// (CORS). None by default; `*` is refused: name each dashboard's origin. Reloadable.
    pub cors_origins: Vec<Origin>,
}

/// A web origin, validated: `http` or `https`, a host, an optional port, nothing else.
/// Compared as the browser sends it in the `Origin` header (lowercase, no default port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(String);

impl Origin {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Origin {
    type Err = String;
    fn from_str(s: &str) -> Result<Origin, String> {
        let bad = |why: &str| {
            format!("{s:?} is not a web origin ({why}): expected scheme://host[:port], e.g. \"https://dash.example.com\"")
        };
        if s == "*" || s == "null" {
            return Err(format!(
                "{s:?}: wildcard and null origins are refused; list each dashboard's origin, e.g. \"https://dash.example.com\""
            ));
        }
        if s.len() > 255 {
            return Err(bad("too long"));
        }
        let (scheme, rest) = s.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(bad("the scheme must be http or https"));
        }
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
            return Err(bad(
                "only a host and an optional port may follow the scheme",
            ));
        }
        // `[v6]:port` keeps its colons inside the brackets
        let split = match rest.strip_prefix('[').and_then(|r| r.find(']')) {
            Some(end) => {
                let (h, tail) = rest.split_at(end + 2);
                match tail {
                    "" => (h, None),
                    t => (
                        h,
                        Some(
                            t.strip_prefix(':')
                                .ok_or_else(|| bad("junk after the host"))?,
                        ),
                    ),
                }
            }
            None => match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            },
        };
        let host = split.0;
        let port = split
            .1
            .map(|p| {
                p.parse::<u16>()
                    .map_err(|_| bad("the port must be a number"))
            })
            .transpose()?;
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
        {
            return Err(bad("the host has characters a host name cannot have"));
        }
        let default = if scheme == "http" { 80 } else { 443 };
        let host = host.to_ascii_lowercase();
        Ok(Origin(match port {
            Some(p) if p != default => format!("{scheme}://{host}:{p}"),
            _ => format!("{scheme}://{host}"),
        }))
    }
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Origin, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl ApiSection {
    /// The TCP address to listen on, validated (None: no TCP listener).
    pub fn listen_addr(&self) -> Result<Option<std::net::SocketAddr>> {
        if self.listen.is_empty() {
            return Ok(None);
        }
        let addr: std::net::SocketAddr = self.listen.parse().map_err(|_| {
            anyhow::anyhow!(
                "[api] listen = {:?}: expected an address and port, e.g. \"127.0.0.1:8754\"",
                self.listen
            )
        })?;
        if !addr.ip().is_loopback() && !self.allow_remote {
            bail!(
                "[api] listen = {:?} is not a loopback address: set allow_remote = true to expose the API beyond this host",
                self.listen
            );
        }
        if self.token_file.as_os_str().is_empty() {
            bail!("[api] listen is set: token_file must name the file holding the API token");
        }
        Ok(Some(addr))
    }

    /// Reads the token: the file must be a regular file owned by root, without group or
    /// other permissions, holding at least 16 characters.
    pub fn token(&self) -> Result<String> {
        use std::os::unix::fs::MetadataExt;
        let f = &self.token_file;
        let md = std::fs::metadata(f)
            .with_context(|| format!("[api] token_file {}: cannot read it", f.display()))?;
        if !md.is_file() || md.uid() != 0 || md.mode() & 0o077 != 0 {
            bail!(
                "[api] token_file {}: must be a regular file owned by root with mode 0600 (it is uid {}, mode {:o})",
                f.display(),
                md.uid(),
                md.mode() & 0o7777
            );
        }
        let token = std::fs::read_to_string(f)
            .with_context(|| format!("[api] token_file {}", f.display()))?
            .trim()
            .to_string();
        if token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bail!(
                "[api] token_file {}: the token must be at least 16 characters without spaces (e.g. `openssl rand -hex 32`)",
                f.display()
            );
        }
        Ok(token)
    }
}

/// `[audit]`: where every mutation and denied attempt is recorded.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    /// The JSON-lines file.
    pub path: PathBuf,
    /// Rotate past this size.
    pub max_size: ByteSize,
    /// Rotated files kept (`audit.jsonl.1` … `.N`).
    pub keep: u32,
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection {
            path: PathBuf::from("/var/log/procman/audit.jsonl"),
            max_size: ByteSize(10 << 20),
            keep: 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CgroupSection {
    /// The managed subtree below the cgroup2 mount (e.g. `procman.slice`; under systemd,
    /// `system.slice/procman-agent.service/procman.slice` with `Delegate=yes`).
    pub root: String,
    /// How long a transient slice (`pid-*`, `name-*`, `run-*`, made by `procman limit` and
    /// `procman run`, not declared here) may stay empty before the agent removes it.
    pub transient_grace: HumanDuration,
    /// The cgroup2 mount option `favordynmods` (moves skip an RCU grace period; fork and
    /// exit get slightly slower): `auto` uses what the mount has, `on` remounts with it at
    /// start when it is absent, `off` never remounts. Takes effect at start.
    pub favordynmods: FavorDynmodsChoice,
}

/// `[cgroup] favordynmods`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FavorDynmodsChoice {
    /// Use the mount as it is; never remount (the default: the mount is the host's).
    #[default]
    Auto,
    /// Remount the cgroup2 mount adding `favordynmods` (every other option kept) when it is
    /// absent, once at start; the agent refuses to start where that fails (kernel < 6.0).
    On,
    /// Never remount. (A mount that already has it keeps it: the host's choice.)
    Off,
}

impl FavorDynmodsChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            FavorDynmodsChoice::Auto => "auto",
            FavorDynmodsChoice::On => "on",
            FavorDynmodsChoice::Off => "off",
        }
    }
}

impl Default for CgroupSection {
    fn default() -> Self {
        CgroupSection {
            root: procman_cgroup::DEFAULT_ROOT.to_string(),
            transient_grace: HumanDuration(Duration::from_secs(30)),
            favordynmods: FavorDynmodsChoice::Auto,
        }
    }
}

/// `[[slice]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SliceConfig {
    pub name: String,
    /// systemd-style limits: `{ MemoryMax = "512M", CPUQuota = "50%", TasksMax = 100 }`.
    #[serde(default)]
    pub limits: procman_cgroup::Limits,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorSection {
    /// How often usage is sampled from /proc, e.g. "2s".
    pub interval: HumanDuration,
    /// Samples kept per process (a bounded ring; identical consecutive samples share one entry).
    pub history_samples: usize,
    /// How long the history of an exited process is kept, e.g. "1h" (at most 48h).
    pub history_retention: HumanDuration,
    /// `auto` (the BPF task iterator, falling back to /proc), `iter` or `proc`.
    pub sampler: crate::monitor::SamplerChoice,
    /// Every how many samples the task iterator reports every process (the others report
    /// only processes whose usage changed).
    pub full_sweep_every: u32,
}

impl Default for MonitorSection {
    fn default() -> Self {
        MonitorSection {
            interval: HumanDuration(Duration::from_secs(2)),
            history_samples: 1000,
            history_retention: HumanDuration(Duration::from_secs(3600)),
            sampler: crate::monitor::SamplerChoice::Auto,
            full_sweep_every: 15,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSection {
    /// Path of the API's Unix socket.
    pub socket: PathBuf,
    /// Unix group allowed to use the socket (besides root). Empty: root only.
    pub socket_group: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsSection {
    /// `auto` (BPF, falling back to the netlink proc connector), `bpf` or `netlink`.
    pub source: SourceChoice,
    /// Also report thread creation and exit.
    pub threads: bool,
    /// BPF ring buffer size, e.g. "4MiB" (power of two, at least 64KiB).
    pub ring_size: ByteSize,
    /// Records the kernel batches before waking the agent.
    pub wakeup_batch: u32,
    /// How often the agent polls the ring anyway, e.g. "50ms".
    pub poll_interval: HumanDuration,
    /// The scheduling tracer (sched_switch/sched_wakeup programs): the longest single
    /// run-queue wait per process. Off by default: it runs on every context switch. On-CPU
    /// time and run-queue wait come from the sampler without it.
    pub sched_stats: bool,
}

impl Default for AgentSection {
    fn default() -> Self {
        AgentSection {
            socket: PathBuf::from(procman_common::DEFAULT_SOCKET),
            socket_group: String::new(),
        }
    }
}

impl Default for EventsSection {
    fn default() -> Self {
        EventsSection {
            source: SourceChoice::Auto,
            threads: false,
            ring_size: ByteSize(4 << 20),
            wakeup_batch: 64,
            poll_interval: HumanDuration(Duration::from_millis(50)),
            sched_stats: false,
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &std::path::Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config> {
        let cfg: Config =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
        cfg.source_options()?; // validates the event settings
        cfg.sample_interval()?;
        cfg.rules()?;
        cfg.policies()?;
        cfg.history()?;
        cfg.access_policy()?;
        cfg.api.listen_addr()?;
        cfg.service_specs()?;
        cfg.action_settings()?;
        if !cfg.audit.path.is_absolute() || cfg.audit.max_size.0 < 4096 || cfg.audit.keep > 100 {
            bail!(
                "[audit] path = {:?}, max_size = \"{}\", keep = {}: the path must be absolute, max_size at least 4K, keep at most 100",
                cfg.audit.path,
                cfg.audit.max_size,
                cfg.audit.keep
            );
        }
        if cfg.agent.socket.as_os_str().is_empty() || !cfg.agent.socket.is_absolute() {
            bail!(
                "agent.socket = {:?}: the socket path must be absolute, e.g. \"{}\"",
                cfg.agent.socket,
                procman_common::DEFAULT_SOCKET
            );
        }
        Ok(cfg)
    }

    /// The `[[service]]` entries, validated (commands, users, limits, `after`), and
    /// `[services]`.
    pub fn service_specs(&self) -> Result<Vec<crate::services::config::ServiceSpec>> {
        let s = &self.services;
        if !s.log_dir.is_absolute() || !s.state_dir.is_absolute() {
            bail!(
                "[services] log_dir = {:?}, state_dir = {:?}: both must be absolute paths",
                s.log_dir,
                s.state_dir
            );
        }
        crate::services::config::validate_all(&self.service)
    }

    /// The `[actions]` settings, validated (the protect filter compiled).
    pub fn action_settings(&self) -> Result<crate::actions::Settings> {
        crate::actions::settings_of(&self.actions.protect, self.actions.kill_grace)
    }

    /// The `[[access]]` grants and the token's, validated (user and group names resolved).
    pub fn access_policy(&self) -> Result<crate::access::Policy> {
        Ok(crate::access::Policy::from_config(&self.access)?
            .with_token_allow(&self.api.token_allow))
    }

    /// The sampling interval, validated (100ms..1h).
    pub fn sample_interval(&self) -> Result<Duration> {
        let d = self.monitor.interval.0;
        if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
            bail!(
                "monitor.interval = \"{}\": must be between 100ms and 1h (default \"2s\")",
                self.monitor.interval
            );
        }
        Ok(d)
    }

    /// The placement rules, validated: every rule compiles and names a declared slice.
    pub fn rules(&self) -> Result<Vec<crate::placement::Rule>> {
        let mut names = std::collections::HashSet::new();
        for s in &self.slice {
            procman_cgroup::validate_name("slice", &s.name)
                .with_context(|| format!("[[slice]] name = {:?}", s.name))?;
            if !names.insert(s.name.as_str()) {
                bail!("[[slice]] {:?} is declared twice", s.name);
            }
            s.limits
                .validate()
                .map_err(|e| anyhow::anyhow!("[[slice]] {:?}: {e}", s.name))?;
        }
        let mut rules = Vec::new();
        for (i, r) in self.rule.iter().enumerate() {
            let rule = crate::placement::Rule::compile(i, r).context("[[rule]]")?;
            if !names.contains(rule.slice.as_str()) {
                bail!(
                    "[[rule]] {}: slice = {:?} is not declared; add a [[slice]] with name = {:?}",
                    rule.label,
                    rule.slice,
                    rule.slice
                );
            }
            rules.push(rule);
        }
        Ok(rules)
    }

    /// The `[[policy]]` rules, validated (errors name the policy and the key).
    pub fn policies(&self) -> Result<Vec<crate::policy::config::Policy>> {
        crate::policy::config::compile_all(&self.policy)
    }

    /// (samples per process, retention of exited processes), validated (with the rest of
    /// `[monitor]`).
    pub fn history(&self) -> Result<(usize, Duration)> {
        let m = &self.monitor;
        if !(10..=100_000).contains(&m.history_samples) {
            bail!(
                "monitor.history_samples = {}: must be between 10 and 100000 (default 1000)",
                m.history_samples
            );
        }
        if !(1..=1000).contains(&m.full_sweep_every) {
            bail!(
                "monitor.full_sweep_every = {}: must be between 1 and 1000 (default 15)",
                m.full_sweep_every
            );
        }
        let r = m.history_retention.0;
        if r > Duration::from_secs(48 * 3600) {
            bail!(
                "monitor.history_retention = \"{}\": at most 48h (default \"1h\")",
                m.history_retention
            );
        }
        Ok((m.history_samples, r))
    }

    /// The event source settings, validated.
    pub fn source_options(&self) -> Result<SourceOptions> {
        let e = &self.events;
        let ring = e.ring_size.0;
        if !ring.is_power_of_two() || !(64 << 10..=1 << 30).contains(&ring) {
            bail!(
                "events.ring_size = \"{}\" ({ring} bytes): must be a power of two between 64KiB and 1GiB, e.g. \"8MiB\"",
                e.ring_size
            );
        }
        if e.wakeup_batch == 0 || e.wakeup_batch > 4096 {
            bail!(
                "events.wakeup_batch = {}: must be between 1 and 4096 (default 64)",
                e.wakeup_batch
            );
        }
        let poll = e.poll_interval.0;
        if poll < Duration::from_millis(1) || poll > Duration::from_secs(10) {
            bail!(
                "events.poll_interval = \"{}\": must be between 1ms and 10s (default \"50ms\")",
                e.poll_interval
            );
        }
        Ok(SourceOptions {
            threads: e.threads,
            ring_bytes: ring as u32,
            wakeup_batch: e.wakeup_batch,
            poll_interval: poll,
            sched_stats: e.sched_stats,
            instance: crate::hold::instance_name(&self.cgroup.root),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// Any text is an origin or refused; an accepted one is a bounded, normalised
        /// `scheme://host[:port]` that parses to itself.
        #[test]
        fn any_text_is_an_origin_or_refused(s in "\\PC{0,300}") {
            if let Ok(o) = s.parse::<Origin>() {
                proptest::prop_assert!(o.as_str().len() <= 270);
                proptest::prop_assert!(o.as_str().starts_with("http"));
                proptest::prop_assert_eq!(o.as_str().parse::<Origin>().unwrap(), o.clone());
            }
        }
    }

    #[test]
    fn cors_origins_are_validated_and_normalised() {
        let ok = [
            ("https://dash.example.com", "https://dash.example.com"),
            ("HTTP://Dash.Example.com:80", "http://dash.example.com"),
            ("http://127.0.0.1:3000", "http://127.0.0.1:3000"),
            ("https://[::1]:8443", "https://[::1]:8443"),
            ("http://[::1]", "http://[::1]"),
        ];
        for (i, want) in ok {
            assert_eq!(i.parse::<Origin>().unwrap().as_str(), want, "{i}");
        }
        for bad in [
            "*",
            "null",
            "dash.example.com",
            "ftp://x",
            "https://x/path",
            "https://user@x",
            "https://x:port",
            "https://",
            "https://x y",
        ] {
            assert!(bad.parse::<Origin>().is_err(), "{bad}");
        }
        let e = toml::from_str::<Config>("[api]\ncors_origins = [\"*\"]\n").unwrap_err();
        assert!(e.to_string().contains("wildcard"), "{e}");
    }

    #[test]
    fn empty_config_is_default() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.events.source, SourceChoice::Auto);
        assert_eq!(c.source_options().unwrap().ring_bytes, 4 << 20);
        assert!(
            !c.source_options().unwrap().sched_stats,
            "the tracer is opt-in"
        );
        assert_eq!(c.monitor.sampler, crate::monitor::SamplerChoice::Auto);
        assert_eq!(c.monitor.full_sweep_every, 15);
    }

    #[test]
    fn example_config_parses() {
        let text = include_str!("../../procman.example.toml");
        Config::parse(text).unwrap();
    }

    #[test]
    fn bad_values_are_named() {
        let e = format!(
            "{:#}",
            Config::parse("[events]\nring_size = \"3MiB\"").unwrap_err()
        );
        assert!(e.contains("\"3M\"") && e.contains("power of two"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse("[events]\nring_size = \"8XB\"").unwrap_err()
        );
        assert!(e.contains("8XB"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse("[events]\npoll_interval = \"1d\"").unwrap_err()
        );
        assert!(e.contains("1d"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse("[events]\nsource = \"dtrace\"").unwrap_err()
        );
        assert!(e.contains("dtrace"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse("[monitor]\nsampler = \"ebpf\"").unwrap_err()
        );
        assert!(e.contains("ebpf") && e.contains("proc"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse("[monitor]\nfull_sweep_every = 0").unwrap_err()
        );
        assert!(e.contains("full_sweep_every"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse("[agent]\nsockt = \"/x\"").unwrap_err()
        );
        assert!(e.contains("sockt"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse("[agent]\nsocket = \"rel/x.sock\"").unwrap_err()
        );
        assert!(e.contains("absolute"), "{e}");
    }

    #[test]
    fn favordynmods_setting() {
        assert_eq!(
            Config::parse("").unwrap().cgroup.favordynmods,
            FavorDynmodsChoice::Auto
        );
        for (v, want) in [
            ("auto", FavorDynmodsChoice::Auto),
            ("on", FavorDynmodsChoice::On),
            ("off", FavorDynmodsChoice::Off),
        ] {
            let c = Config::parse(&format!("[cgroup]\nfavordynmods = \"{v}\"\n")).unwrap();
            assert_eq!(c.cgroup.favordynmods, want);
            assert_eq!(want.as_str(), v);
        }
        for bad in ["\"yes\"", "true", "1"] {
            let e = format!(
                "{:#}",
                Config::parse(&format!("[cgroup]\nfavordynmods = {bad}\n")).unwrap_err()
            );
            assert!(e.contains("favordynmods") || e.contains("auto"), "{e}");
        }
    }

    #[test]
    fn actions_section() {
        let c = Config::parse(
            "[actions]\nprotect = 'name == sshd or user == postgres'\nkill_grace = \"10s\"\n",
        )
        .unwrap();
        let s = c.action_settings().unwrap();
        assert!(s.protect.is_some());
        assert_eq!(s.kill_grace, Duration::from_secs(10));
        assert!(Config::parse("")
            .unwrap()
            .action_settings()
            .unwrap()
            .protect
            .is_none());
        let e = format!(
            "{:#}",
            Config::parse("[actions]\nprotect = 'cpu >'").unwrap_err()
        );
        assert!(e.contains("protect") && e.contains("cpu >"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse("[actions]\nkill_grace = \"1h\"").unwrap_err()
        );
        assert!(e.contains("kill_grace"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse("[actions]\nprotekt = 'x'").unwrap_err()
        );
        assert!(e.contains("protekt"), "{e}");
    }

    #[test]
    fn units_are_typed_at_parse_time() {
        let c = Config::parse(
            "[events]\nring_size = \"8MiB\"\npoll_interval = \"20ms\"\n[monitor]\ninterval = \"5s\"\n",
        )
        .unwrap();
        assert_eq!(c.source_options().unwrap().ring_bytes, 8 << 20);
        assert_eq!(
            c.source_options().unwrap().poll_interval,
            Duration::from_millis(20)
        );
        assert_eq!(c.sample_interval().unwrap(), Duration::from_secs(5));
        let e = format!(
            "{:#}",
            Config::parse("[monitor]\ninterval = \"1e400s\"").unwrap_err()
        );
        assert!(e.contains("1e400s") && e.contains("interval"), "{e}");
    }

    /// Arbitrary text and arbitrary values under every known key: the config parser answers
    /// with a config or an error, never a panic.
    mod fuzz {
        use super::Config;
        use proptest::prelude::*;

        const KEYS: &[&str] = &[
            "[agent]\nsocket",
            "[agent]\nsocket_group",
            "[events]\nring_size",
            "[events]\npoll_interval",
            "[events]\nwakeup_batch",
            "[events]\nsource",
            "[monitor]\ninterval",
            "[monitor]\nhistory_samples",
            "[monitor]\nhistory_retention",
            "[cgroup]\nroot",
            "[cgroup]\nfavordynmods",
            "[audit]\nmax_size",
            "[[slice]]\nname = \"s\"\nlimits.MemoryMax",
            "[[slice]]\nname = \"s\"\nlimits.CPUQuota",
            "[[slice]]\nname = \"s\"\nlimits.IOReadBandwidthMax",
            "[[rule]]\nslice = \"s\"\ncomm",
            "[[access]]\nusers = [\"root\"]\nallow",
            "[[policy]]\nname = \"p\"\nthen = [\"kill\"]\nwhen",
            "[[policy]]\nname = \"p\"\nwhen = \"cpu > 1\"\nthen",
            "[[policy]]\nname = \"p\"\nwhen = \"cpu > 1\"\nthen = [\"kill\"]\nmax_actions",
            "[[policy]]\nname = \"p\"\nwhen = \"cpu > 1\"\nthen = [\"kill\"]\nfor",
            "[[service]]\nname = \"s\"\nexec = [\"true\"]\nbackoff.initial",
            "[[service]]\nname = \"s\"\nexec = [\"true\"]\nprobe.http",
            "[[service]]\nname = \"s\"\nexec = [\"true\"]\nlog.max_size",
            "[[service]]\nname = \"s\"\nexec",
            "[actions]\nprotect",
            "[actions]\nkill_grace",
        ];

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn any_text_is_a_config_or_an_error(s in "\\PC{0,200}") {
                let _ = Config::parse(&s);
            }

            #[test]
            fn any_value_under_any_key(
                key in proptest::sample::select(KEYS),
                v in prop_oneof![
                    "-?[0-9]{0,25}(\\.[0-9]{0,5})?".prop_map(|n| n.to_string()),
                    "[ -~]{0,40}".prop_map(|t| format!("{t:?}")),
                    Just("[]".to_string()),
                    Just("{}".to_string()),
                    Just("true".to_string()),
                    Just("1e400".to_string()),
                ],
            ) {
                let text = format!("{key} = {v}\n");
                if let Err(e) = Config::parse(&text) {
                    let msg = format!("{e:#}");
                    prop_assert!(!msg.is_empty());
                }
            }
        }
    }
}

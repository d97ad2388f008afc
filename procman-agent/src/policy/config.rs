//! `[[policy]]` entries: parsed once into a validated [`Policy`]. A bad entry is refused with
//! the policy's name and the offending key, at start and on a reload (which then keeps the
//! running configuration).
use anyhow::{bail, Context, Result};
use procman_cgroup::Limits;
use procman_common::{
    filter::{Field, Filter},
    units::HumanDuration,
};
use serde::Deserialize;
use std::{collections::BTreeMap, time::Duration};

use super::actuator::{IoPrio, Signal};

/// `[[policy]]` as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub name: String,
    /// Which targets (filter language); everything when absent.
    #[serde(rename = "match", default)]
    pub match_: Option<String>,
    /// The condition over metrics (filter language).
    pub when: String,
    /// How long `when` must hold continuously before the first action (default 0: at once).
    #[serde(rename = "for", default)]
    pub for_: Option<HumanDuration>,
    /// The escalation chain, e.g. `["renice 10", "limit CPUQuota=50%", "term", "kill"]`.
    pub then: Vec<String>,
    /// The next step runs only if the condition still holds this long after the previous
    /// one (default 30s).
    #[serde(default)]
    pub recheck: Option<HumanDuration>,
    /// Per target: nothing more after the chain's last step, or after it recovers mid-chain,
    /// for this long (default 10m).
    #[serde(default)]
    pub cooldown: Option<HumanDuration>,
    /// The policy's budget, `N/DURATION` (`10/h`, `3/30m`); when spent, the policy acts as
    /// dry-run until the window frees up (default `10/h`).
    #[serde(default)]
    pub max_actions: Option<String>,
    /// `enforce` (default) or `dry-run` (evaluates and logs each would-be action).
    #[serde(default)]
    pub mode: Mode,
    /// `process` (default) or `slice` (managed slices: PSI, memory.current).
    #[serde(default)]
    pub scope: Scope,
    /// The command the `notify` action runs (the event as JSON on its stdin).
    #[serde(default)]
    pub notify: Option<Vec<String>>,
    /// How long a notify command may run before it is killed (default 10s).
    #[serde(default)]
    pub notify_timeout: Option<HumanDuration>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    Enforce,
    DryRun,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::DryRun => "dry-run",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    #[default]
    Process,
    Slice,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Process => "process",
            Scope::Slice => "slice",
        }
    }
}

/// One step of a chain.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Notify(Vec<String>),
    Renice(i32),
    Ionice(IoPrio),
    /// Limits for the per-policy slice (`policy-<name>`, or the slice itself at slice scope).
    Limit(Box<Limits>),
    Freeze,
    Signal(Signal),
    /// Restarts the service the process (or the `svc-NAME` slice) belongs to.
    Restart,
}

impl Action {
    /// The verb, for audit records.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Notify(_) => "notify",
            Action::Renice(_) => "renice",
            Action::Ionice(_) => "ionice",
            Action::Limit(_) => "limit",
            Action::Freeze => "freeze",
            Action::Signal(Signal::Term) => "term",
            Action::Signal(Signal::Kill) => "kill",
            Action::Restart => "restart",
        }
    }
}

/// The budget: at most `max` actions per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub max: u32,
    pub window: Duration,
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let w = match self.window.as_secs() {
            3600 => "h".to_string(),
            60 => "m".to_string(),
            86400 => "d".to_string(),
            1 => "s".to_string(),
            _ => procman_common::units::fmt_duration(self.window),
        };
        write!(f, "{}/{w}", self.max)
    }
}

/// A validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub match_: Option<Filter>,
    pub when: Filter,
    pub for_: Duration,
    /// The chain as written (for answers) and as parsed.
    pub then_text: Vec<String>,
    pub then: Vec<Action>,
    pub recheck: Duration,
    pub cooldown: Duration,
    pub budget: Budget,
    pub mode: Mode,
    pub scope: Scope,
    pub notify_timeout: Duration,
    /// The entry as written: a reload keeps a policy's state only if this is unchanged.
    pub source: PolicyConfig,
    /// `when`'s necessary numeric bounds: the engine scans these columns first.
    pub prefilter: Option<Vec<procman_common::filter::Bound>>,
}

impl Policy {
    /// The slice a process-scope `limit` moves targets into.
    pub fn slice_name(&self) -> String {
        format!("policy-{}", self.name)
    }

    /// Whether the policy mentions `f` in `match` or `when`.
    pub fn uses(&self, f: Field) -> bool {
        self.when.uses(f) || self.match_.as_ref().is_some_and(|m| m.uses(f))
    }
}

/// The most steps a chain may have.
pub const MAX_STEPS: usize = 16;
/// The most policies a config may declare.
pub const MAX_POLICIES: usize = 1000;

/// Fields a slice-scope policy can use.
const SLICE_FIELDS: &[Field] = &[
    Field::Slice,
    Field::Name,
    Field::Cgroup,
    Field::PsiCpu,
    Field::PsiMemory,
    Field::PsiIo,
    Field::MemoryCurrent,
];
/// Fields only slices have.
const SLICE_ONLY: &[Field] = &[
    Field::PsiCpu,
    Field::PsiMemory,
    Field::PsiIo,
    Field::MemoryCurrent,
];

fn filter(key: &str, text: &str, scope: Scope) -> Result<Filter> {
    let f = Filter::parse(text).map_err(|e| anyhow::anyhow!("{key} = {text:?}: {e}"))?;
    for field in f.fields() {
        match scope {
            Scope::Slice if !SLICE_FIELDS.contains(&field) => bail!(
                "{key} = {text:?}: `{}` is a process field; a scope = \"slice\" policy can use {}",
                field.name(),
                SLICE_FIELDS
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Scope::Process if SLICE_ONLY.contains(&field) => bail!(
                "{key} = {text:?}: `{}` is a slice field: set scope = \"slice\" to use it",
                field.name()
            ),
            _ => {}
        }
    }
    Ok(f)
}

/// Parses `N/DURATION`: `10/h`, `3/30m`, `100/d`.
pub fn parse_budget(s: &str) -> Result<Budget, String> {
    let forms = "N/DURATION, e.g. \"10/h\", \"3/30m\" or \"100/d\"";
    let (n, w) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: expected {forms}"))?;
    let max: u32 = n
        .trim()
        .parse()
        .ok()
        .filter(|n| (1..=1_000_000).contains(n))
        .ok_or_else(|| {
            format!("{s:?}: the count must be a whole number from 1 to 1000000 ({forms})")
        })?;
    let w = w.trim();
    let window = match w {
        "s" => Duration::from_secs(1),
        "m" | "min" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        "d" => Duration::from_secs(86400),
        _ => procman_common::units::parse_duration(w).map_err(|e| format!("{s:?}: {e}"))?,
    };
    if window < Duration::from_secs(1) || window > Duration::from_secs(30 * 86400) {
        return Err(format!("{s:?}: the window must be between 1s and 30d"));
    }
    Ok(Budget { max, window })
}

/// Parses one step of a chain.
pub fn parse_action(
    text: &str,
    scope: Scope,
    notify: Option<&Vec<String>>,
) -> Result<Action, String> {
    let mut words = text.split_whitespace();
    let verb = words.next().unwrap_or("");
    let rest: Vec<&str> = words.collect();
    let arg = rest.join(" ");
    let no_arg = |a: Action| {
        if rest.is_empty() {
            Ok(a)
        } else {
            Err(format!("{text:?}: `{verb}` takes no argument"))
        }
    };
    let process_only = |what: &str| {
        if scope == Scope::Slice {
            Err(format!(
                "{text:?}: `{what}` acts on a process; a scope = \"slice\" policy can use notify, limit, freeze and kill"
            ))
        } else {
            Ok(())
        }
    };
    match verb {
        "notify" => match (rest.is_empty(), notify) {
            (false, _) => Ok(Action::Notify(rest.iter().map(|s| s.to_string()).collect())),
            (true, Some(cmd)) if !cmd.is_empty() && !cmd[0].is_empty() => {
                Ok(Action::Notify(cmd.clone()))
            }
            (true, _) => Err(format!(
                "{text:?}: give the command (`notify /usr/local/bin/page-me --urgent`) or set notify = [\"cmd\", \"arg\"]"
            )),
        },
        "renice" => {
            process_only("renice")?;
            arg.parse::<i32>()
                .ok()
                .filter(|n| (-20..=19).contains(n))
                .map(Action::Renice)
                .ok_or_else(|| format!("{text:?}: expected `renice N` with N from -20 to 19"))
        }
        "ionice" => {
            process_only("ionice")?;
            arg.parse::<IoPrio>()
                .map(Action::Ionice)
                .map_err(|e| format!("{text:?}: {e}"))
        }
        "limit" => {
            if arg.is_empty() {
                return Err(format!(
                    "{text:?}: expected `limit KEY=VALUE[,KEY=VALUE]`, e.g. `limit CPUQuota=50%,MemoryMax=1G`"
                ));
            }
            let mut l = Limits::default();
            for pair in arg.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("{text:?}: `{pair}` is not KEY=VALUE"))?;
                l.set_pair(k.trim(), v.trim())
                    .map_err(|e| format!("{text:?}: {e}"))?;
            }
            l.validate().map_err(|e| format!("{text:?}: {e}"))?;
            Ok(Action::Limit(Box::new(l)))
        }
        "freeze" => no_arg(Action::Freeze),
        "term" => {
            process_only("term")?;
            no_arg(Action::Signal(Signal::Term))
        }
        "kill" => no_arg(Action::Signal(Signal::Kill)),
        "restart" => no_arg(Action::Restart),
        "" => Err("an empty step".into()),
        other => Err(format!(
            "{text:?}: unknown action `{other}`; actions: notify, renice N, ionice CLASS[:LEVEL], limit KEY=VALUE[,...], freeze, term, kill, restart"
        )),
    }
}

impl Policy {
    /// Validates one entry; errors name the key.
    pub fn compile(c: &PolicyConfig) -> Result<Policy> {
        let label = format!("[[policy]] {:?}", c.name);
        (|| -> Result<Policy> {
            if c.name.is_empty()
                || c.name.len() > 48
                || !c
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                bail!("name = {:?}: 1 to 48 letters, digits, - or _", c.name);
            }
            let match_ = c
                .match_
                .as_deref()
                .map(|m| filter("match", m, c.scope))
                .transpose()?;
            let when = filter("when", &c.when, c.scope)?;
            if c.then.is_empty() || c.then.len() > MAX_STEPS {
                bail!("then: give 1 to {MAX_STEPS} actions, e.g. then = [\"renice 10\", \"kill\"]");
            }
            if c.notify.as_ref().is_some_and(|n| n.is_empty() || n[0].is_empty()) {
                bail!("notify = {:?}: give the command and its arguments, e.g. [\"/usr/local/bin/page-me\", \"--urgent\"]", c.notify.as_ref().unwrap());
            }
            let then = c
                .then
                .iter()
                .map(|t| parse_action(t, c.scope, c.notify.as_ref()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("then: {e}"))?;
            let budget = parse_budget(c.max_actions.as_deref().unwrap_or("10/h"))
                .map_err(|e| anyhow::anyhow!("max_actions = {e}"))?;
            let notify_timeout = c.notify_timeout.map_or(Duration::from_secs(10), |d| d.0);
            if notify_timeout.is_zero() || notify_timeout > Duration::from_secs(600) {
                bail!("notify_timeout = \"{}\": between 1ms and 10m", c.notify_timeout.unwrap());
            }
            let p = Policy {
                name: c.name.clone(),
                match_,
                for_: c.for_.map_or(Duration::ZERO, |d| d.0),
                then_text: c.then.iter().map(|t| t.split_whitespace().collect::<Vec<_>>().join(" ")).collect(),
                then,
                recheck: c.recheck.map_or(Duration::from_secs(30), |d| d.0),
                cooldown: c.cooldown.map_or(Duration::from_secs(600), |d| d.0),
                budget,
                mode: c.mode,
                scope: c.scope,
                notify_timeout,
                source: c.clone(),
                prefilter: when.necessary_bounds(),
                when,
            };
            procman_cgroup::validate_name("slice", &p.slice_name())
                .map_err(|e| anyhow::anyhow!("name = {:?}: {e}", c.name))?;
            Ok(p)
        })()
        .with_context(|| label)
    }
}

/// Validates every entry: each compiles, names are unique.
pub fn compile_all(entries: &[PolicyConfig]) -> Result<Vec<Policy>> {
    if entries.len() > MAX_POLICIES {
        bail!(
            "[[policy]]: {} entries; at most {MAX_POLICIES}",
            entries.len()
        );
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for c in entries {
        if !seen.insert(c.name.as_str()) {
            bail!("[[policy]] {:?} is declared twice", c.name);
        }
        out.push(Policy::compile(c)?);
    }
    Ok(out)
}

/// A TOML document holding only `[[policy]]` entries (`POST /api/policies/test`,
/// `procman policy test FILE`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    #[serde(default)]
    pub policy: Vec<PolicyConfig>,
}

impl PolicyFile {
    pub fn parse(text: &str) -> Result<Vec<Policy>> {
        let f: PolicyFile =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
        if f.policy.is_empty() {
            bail!("no [[policy]] entries: give at least one, e.g.\n[[policy]]\nname = \"hot\"\nwhen = \"cpu > 90%\"\nthen = [\"renice 10\"]");
        }
        compile_all(&f.policy)
    }
}

/// The limits as systemd key/value pairs (what `Enforcer::ensure_slice` takes).
pub fn limit_pairs(l: &Limits) -> BTreeMap<String, String> {
    l.entries()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(toml: &str) -> Result<Policy> {
        PolicyFile::parse(toml).map(|mut v| v.remove(0))
    }

    fn err(toml: &str) -> String {
        format!("{:#}", one(toml).unwrap_err())
    }

    #[test]
    fn the_issue_example_parses() {
        let p = one(r#"
[[policy]]
name  = "runaway-cpu"
match = 'user != "root" and name != "postgres"'
when  = 'cpu > 90%'
for   = "5m"
then  = ["renice 10", "limit CPUQuota=50%", "term", "kill"]
recheck = "30s"
cooldown = "10m"
max_actions = "10/h"
mode = "enforce"
"#)
        .unwrap();
        assert_eq!(p.for_, Duration::from_secs(300));
        assert_eq!(p.then.len(), 4);
        assert_eq!(p.then[0], Action::Renice(10));
        assert_eq!(p.then[3], Action::Signal(Signal::Kill));
        assert_eq!(p.budget.to_string(), "10/h");
        assert_eq!(p.slice_name(), "policy-runaway-cpu");
    }

    #[test]
    fn bad_entries_name_the_key() {
        let base = "[[policy]]\nname = \"x\"\n";
        let e = err(&format!("{base}when = \"cpu > 9O%\"\nthen = [\"kill\"]"));
        assert!(
            e.contains("\"x\"") && e.contains("when") && e.contains("9O%"),
            "{e}"
        );
        let e = err(&format!(
            "{base}when = \"cpu > 90\"\nthen = [\"renice 99\"]"
        ));
        assert!(e.contains("then") && e.contains("-20 to 19"), "{e}");
        let e = err(&format!(
            "{base}when = \"cpu > 90\"\nthen = [\"restart now\"]"
        ));
        assert!(e.contains("restart"), "{e}");
        let e = err(&format!(
            "{base}when = \"cpu > 90\"\nthen = [\"limit CPUQuota=abc\"]"
        ));
        assert!(e.contains("CPUQuota"), "{e}");
        let e = err(&format!("{base}when = \"cpu > 90\"\nthen = []"));
        assert!(e.contains("then"), "{e}");
        let e = err(&format!(
            "{base}when = \"cpu > 90\"\nthen = [\"kill\"]\nmax_actions = \"ten/h\""
        ));
        assert!(e.contains("max_actions") && e.contains("ten/h"), "{e}");
        let e = err(&format!(
            "{base}when = \"cpu > 90\"\nthen = [\"kill\"]\nfor = \"5 parsecs\""
        ));
        assert!(e.contains("for") || e.contains("parsecs"), "{e}");
        let e = err(&format!("{base}whn = \"cpu > 90\"\nthen = [\"kill\"]"));
        assert!(e.contains("whn"), "{e}");
        let e = err(&format!(
            "{base}when = \"psi_memory > 10\"\nthen = [\"kill\"]"
        ));
        assert!(
            e.contains("scope = \\\"slice\\\"") || e.contains("slice field"),
            "{e}"
        );
        let e = err(&format!(
            "{base}scope = \"slice\"\nwhen = \"cpu > 10\"\nthen = [\"kill\"]"
        ));
        assert!(e.contains("process field"), "{e}");
        let e = err(&format!(
            "{base}scope = \"slice\"\nwhen = \"psi_memory > 10\"\nthen = [\"renice 5\"]"
        ));
        assert!(e.contains("renice"), "{e}");
        let e = err(&format!("{base}when = \"cpu > 90\"\nthen = [\"notify\"]"));
        assert!(e.contains("notify"), "{e}");
        let e = err("[[policy]]\nname = \"a b\"\nwhen = \"cpu > 1\"\nthen = [\"kill\"]");
        assert!(e.contains("name"), "{e}");
        let e = format!(
            "{:#}",
            PolicyFile::parse("[[policy]]\nname = \"a\"\nwhen = \"cpu > 1\"\nthen = [\"kill\"]\n[[policy]]\nname = \"a\"\nwhen = \"cpu > 1\"\nthen = [\"kill\"]").unwrap_err()
        );
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn actions_and_budgets() {
        let s = Scope::Process;
        assert_eq!(
            parse_action("ionice idle", s, None).unwrap(),
            Action::Ionice("idle".parse().unwrap())
        );
        assert_eq!(
            parse_action("ionice best-effort:7", s, None).unwrap(),
            Action::Ionice("best-effort:7".parse().unwrap())
        );
        assert!(parse_action("ionice realtime:9", s, None).is_err());
        assert_eq!(
            parse_action("notify /bin/echo hi", s, None).unwrap(),
            Action::Notify(vec!["/bin/echo".into(), "hi".into()])
        );
        let n = vec!["/bin/true".to_string()];
        assert_eq!(
            parse_action("notify", s, Some(&n)).unwrap(),
            Action::Notify(n.clone())
        );
        assert!(parse_action("kill -9", s, None).is_err());
        assert!(matches!(
            parse_action("limit MemoryMax=64M, CPUQuota=50%", s, None).unwrap(),
            Action::Limit(_)
        ));
        assert_eq!(
            parse_budget("3/30m").unwrap().window,
            Duration::from_secs(1800)
        );
        assert_eq!(parse_budget("5/d").unwrap().max, 5);
        for bad in ["0/h", "x", "10/", "10/0s", "-1/h", "10/1y"] {
            assert!(parse_budget(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Hostile steps and budgets are refused with a message, never a panic.
        #[test]
        fn any_step_or_budget_is_parsed_or_refused(s in "\\PC{0,60}") {
            for scope in [Scope::Process, Scope::Slice] {
                if let Err(e) = parse_action(&s, scope, None) {
                    proptest::prop_assert!(!e.is_empty());
                }
            }
            let _ = parse_budget(&s);
            let _ = s.parse::<IoPrio>();
        }

        #[test]
        fn structured_steps(
            verb in "(notify|renice|ionice|limit|freeze|term|kill|restart|x)",
            arg in "[-0-9a-zA-Z:=%,. ]{0,30}",
        ) {
            let _ = parse_action(&format!("{verb} {arg}"), Scope::Process, None);
        }
    }
}

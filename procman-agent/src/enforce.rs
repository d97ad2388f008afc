//! Enforcement state of the agent: the cgroup manager (opened at start when the config
//! declares slices or rules, else on the first request that needs it), the configured slices
//! and the placement engine.
use crate::{
    config::Config,
    placement::{Placement, Rule},
};
use anyhow::{Context, Result};
use procman_cgroup::{Cgroup2Mount, Ensured, Manager};
use std::sync::{Arc, OnceLock};

pub struct Enforcer {
    root: String,
    manager: OnceLock<Result<Arc<Manager>, String>>,
    pub placement: Option<Placement>,
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
    pub fn start(cfg: &Config, rules: Vec<Rule>) -> Result<Enforcer> {
        let mut e = Enforcer {
            root: cfg.cgroup.root.clone(),
            manager: OnceLock::new(),
            placement: None,
        };
        if cfg.slice.is_empty() && rules.is_empty() {
            return Ok(e);
        }
        let m = match e.manager() {
            Ok(m) => m,
            Err(err) => {
                log::error!(
                    "cgroup v2 unavailable ({err}); slices and placement rules are disabled"
                );
                return Ok(e);
            }
        };
        let mut ok = std::collections::HashSet::new();
        for s in &cfg.slice {
            match m.ensure_slice(&s.name, &s.limits) {
                Ok(Ensured::Created) => {
                    log::info!("slice {}: created ({})", s.name, describe(&s.limits))
                }
                Ok(Ensured::Adopted) => log::info!(
                    "slice {}: re-adopted, limits re-applied ({})",
                    s.name,
                    describe(&s.limits)
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
        if !rules.is_empty() {
            e.placement = Some(Placement::start(rules, m).context("starting placement")?);
        }
        Ok(e)
    }

    /// The manager, opened on first use.
    pub fn manager(&self) -> Result<Arc<Manager>, String> {
        self.manager.get_or_init(|| open(&self.root)).clone()
    }
}

fn describe(l: &procman_cgroup::Limits) -> String {
    let e = l.entries();
    if e.is_empty() {
        "no limits".into()
    } else {
        e.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

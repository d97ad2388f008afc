//! Reloading the configuration (SIGHUP, `systemctl reload`): the file is read and validated
//! as a whole first; an invalid one is refused, logged and audited, and the running
//! configuration stays. A valid one replaces the access grants and the `[actions]` settings, re-applies every declared
//! slice's limits, restarts placement with the new rules and replaces the `[[policy]]` rules
//! (a policy whose entry is unchanged keeps its state and budget). Settings that only take effect
//! at start (the socket, the event source, sampling, the managed root, the audit log) are
//! named in the log when they differ.
use crate::{
    audit::{Actor, Record},
    config::Config,
    core::Agent,
};
use anyhow::{Context, Result};
use std::path::Path;

/// What a reload changed, for the log.
#[derive(Debug, Default)]
pub struct Reloaded {
    pub slices: usize,
    pub rules: usize,
    pub grants: usize,
    pub policies: usize,
    /// Sections that changed but need a restart.
    pub need_restart: Vec<&'static str>,
}

fn load(path: Option<&Path>) -> Result<Config> {
    match path {
        Some(p) => Config::load(p),
        None => Ok(Config::default()),
    }
}

/// Reloads from `path` (None: the built-in defaults, when the agent started without a file).
/// `running` is the configuration in effect; on success it is replaced.
pub fn reload(agent: &Agent, path: Option<&Path>, running: &mut Config) -> Result<Reloaded> {
    let result = (|| -> Result<(Config, Reloaded)> {
        let mut new = load(path)?;
        // command-line overrides stay as they were at start
        new.agent.socket = running.agent.socket.clone();
        new.events.source = running.events.source;
        new.events.threads = running.events.threads;
        let rules = new.rules()?;
        let policy = new.access_policy()?;
        let policies = new.policies()?;
        let services = new.service_specs()?;
        let actions = new.action_settings()?;
        let mut r = Reloaded {
            slices: new.slice.len(),
            rules: rules.len(),
            grants: new.access.len(),
            policies: policies.len(),
            ..Default::default()
        };
        for (name, changed) in [
            ("[agent]", new.agent != running.agent),
            ("[events]", new.events != running.events),
            ("[monitor]", new.monitor != running.monitor),
            ("[cgroup]", new.cgroup != running.cgroup),
            ("[audit]", new.audit != running.audit),
            ("[services]", new.services != running.services),
            (
                "[api]",
                crate::config::ApiSection {
                    cors_origins: Vec::new(),
                    ..new.api.clone()
                } != crate::config::ApiSection {
                    cors_origins: Vec::new(),
                    ..running.api.clone()
                },
            ),
        ] {
            if changed {
                r.need_restart.push(name);
            }
        }
        agent
            .enforcer
            .apply(&new, rules)
            .context("applying slices and rules")?;
        *agent.access.write().unwrap_or_else(|e| e.into_inner()) = policy;
        if let Some(s) = agent.services.get() {
            s.reload(services);
        }
        *agent
            .cors_origins
            .write()
            .unwrap_or_else(|e| e.into_inner()) = new.api.cors_origins.clone();
        agent.policies.replace(policies);
        agent.actions.set(actions);
        Ok((new, r))
    })();
    let shown = path.map_or("(defaults)".into(), |p| p.display().to_string());
    let (ok, detail) = match &result {
        Ok((_, r)) => (
            true,
            format!(
                "{shown}: {} slice(s), {} rule(s), {} grant(s), {} polic(ies){}",
                r.slices,
                r.rules,
                r.grants,
                r.policies,
                if r.need_restart.is_empty() {
                    String::new()
                } else {
                    format!("; restart to apply {}", r.need_restart.join(" "))
                }
            ),
        ),
        Err(e) => (
            false,
            format!("{shown}: {e:#}; the running configuration stays"),
        ),
    };
    agent.audit.record(Record {
        time: Default::default(),
        seq: 0,
        actor: Actor {
            uid: None,
            gid: None,
            pid: None,
            exe: None,
            via: "config".into(),
        },
        action: "reload".into(),
        target: shown,
        args: serde_json::Value::Null,
        result: if ok { "ok" } else { "error" }.into(),
        status: if ok { 200 } else { 400 },
        detail: Some(detail),
    });
    let (new, r) = result?;
    *running = new;
    Ok(r)
}

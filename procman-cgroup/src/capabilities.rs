//! What this host's cgroup2 offers the managed subtree ([`Capabilities`]), probed when the
//! [`crate::Manager`] opens: which controllers are enabled, and for each missing one the
//! reason in words (not offered by the hierarchy, bound to v1, not delegated by the parent).
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::cgroup::Cgroup;
use crate::error::{CgroupError, Result};
use crate::key::{Controller, LimitKey};
use crate::mount::Cgroup2Mount;

/// Whether one controller is usable in the managed subtree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "lowercase")]
pub enum Availability {
    Enabled,
    /// Missing, with the reason in words (what was seen, and what would fix it).
    Missing(String),
}

/// What this host's cgroup2 offers the managed subtree. `Display` is the start-up
/// announcement (one line when complete, a degraded-mode report otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    pub mount: PathBuf,
    pub root: PathBuf,
    pub controllers: BTreeMap<Controller, Availability>,
    /// Controllers the hierarchy offers that procman does not use (e.g. `hugetlb`).
    pub other_controllers: BTreeSet<String>,
    /// `cgroup.freeze` exists (Linux 5.2+).
    pub freeze: bool,
    /// `cgroup.kill` exists (Linux 5.14+).
    pub kill: bool,
}

impl Capabilities {
    /// Probes the managed root `root` on `mount`, enabling in the root's
    /// `cgroup.subtree_control` every controller its parent delegates (the root is ours; its
    /// parent is not, and is never written).
    pub fn probe(mount: &Cgroup2Mount, root: &Cgroup) -> Result<Capabilities> {
        let hierarchy = mount.root_controllers()?;
        let root_ctrls = root.controllers()?;
        let mut subtree = root.subtree_control()?;
        let parent = root.path().parent().unwrap_or(&mount.path);
        let mut controllers = BTreeMap::new();
        for c in Controller::ALL {
            let name = c.name();
            let avail = if !hierarchy.contains(name) {
                Availability::Missing(missing_from_hierarchy(mount, &hierarchy, c))
            } else if !root_ctrls.contains(name) {
                Availability::Missing(format!(
                    "it is not delegated to {}: {}/cgroup.subtree_control does not enable it, \
                     and procman does not change cgroups it does not own; enable it there \
                     (on systemd: run the agent with Delegate=yes and put the managed root \
                     below its cgroup)",
                    root.path().display(),
                    parent.display()
                ))
            } else if subtree.contains(name) {
                Availability::Enabled
            } else {
                match root.set_subtree_control(&format!("+{name}")) {
                    Ok(()) => {
                        subtree.insert(name.to_string());
                        Availability::Enabled
                    }
                    Err(e) => Availability::Missing(enable_failed(root, e)),
                }
            };
            controllers.insert(c, avail);
        }
        let ours: BTreeSet<&str> = Controller::ALL.iter().map(|c| c.name()).collect();
        Ok(Capabilities {
            mount: mount.path.clone(),
            root: root.path().to_path_buf(),
            controllers,
            other_controllers: hierarchy
                .into_iter()
                .filter(|c| !ours.contains(c.as_str()))
                .collect(),
            freeze: root.has("cgroup.freeze"),
            kill: root.has("cgroup.kill"),
        })
    }

    pub fn is_enabled(&self, c: Controller) -> bool {
        matches!(self.controllers.get(&c), Some(Availability::Enabled))
    }

    /// Why `c` is missing, or `None` when it is enabled.
    pub fn missing_reason(&self, c: Controller) -> Option<&str> {
        match self.controllers.get(&c) {
            Some(Availability::Enabled) => None,
            Some(Availability::Missing(r)) => Some(r),
            None => Some("not probed"),
        }
    }

    /// Missing controllers, in order.
    pub fn missing(&self) -> Vec<Controller> {
        Controller::ALL
            .into_iter()
            .filter(|c| !self.is_enabled(*c))
            .collect()
    }

    pub fn is_degraded(&self) -> bool {
        !self.missing().is_empty() || !self.freeze || !self.kill
    }

    /// Limit keys that cannot be enforced here.
    pub fn unenforced_keys(&self) -> Vec<LimitKey> {
        self.missing()
            .into_iter()
            .flat_map(|c| c.limit_keys().iter().copied())
            .collect()
    }
}

/// Why writing `+controller` into the root's `cgroup.subtree_control` failed, in words.
fn enable_failed(root: &Cgroup, e: CgroupError) -> String {
    let (path, source) = match &e {
        CgroupError::Write { path, source, .. } => (path.clone(), source),
        other => return other.to_string(),
    };
    let why = if source.raw_os_error() == Some(libc::EBUSY) {
        let pids = root.procs().unwrap_or_default();
        format!(
            " (the managed root has processes of its own {pids:?}: the no-internal-processes \
             rule forbids controllers then; move them into a slice)"
        )
    } else {
        String::new()
    };
    format!("enabling it in {} failed: {source}{why}", path.display())
}

fn missing_from_hierarchy(mount: &Cgroup2Mount, have: &BTreeSet<String>, c: Controller) -> String {
    let offered = if have.is_empty() {
        "none".to_string()
    } else {
        have.iter().cloned().collect::<Vec<_>>().join(" ")
    };
    let base = format!(
        "the cgroup2 hierarchy at {} does not offer it (its cgroup.controllers: {offered})",
        mount.path.display()
    );
    match mount.v1_mounts.iter().find(|(k, _)| *k == c) {
        Some((_, v1)) => format!(
            "{base}; it is bound to the cgroup v1 hierarchy at {} (hybrid v1/v2 layout); boot \
             with systemd.unified_cgroup_hierarchy=1 or cgroup_no_v1=all to give it to cgroup2",
            v1.display()
        ),
        None => format!(
            "{base}; the kernel lacks it, or it is disabled (cgroup_disable=) or bound to a v1 \
             hierarchy"
        ),
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let enabled: Vec<&str> = Controller::ALL
            .into_iter()
            .filter(|c| self.is_enabled(*c))
            .map(Controller::name)
            .collect();
        let missing = self.missing();
        if !self.is_degraded() {
            return write!(
                f,
                "cgroup2 at {}, managed root {}: controllers {} enabled; freeze and kill \
                 available",
                self.mount.display(),
                self.root.display(),
                enabled.join(", ")
            );
        }
        write!(
            f,
            "cgroup2 at {}, managed root {}: DEGRADED MODE",
            self.mount.display(),
            self.root.display()
        )?;
        if !missing.is_empty() {
            let names: Vec<&str> = missing.iter().map(|c| c.name()).collect();
            let keys: Vec<&str> = self.unenforced_keys().iter().map(|k| k.as_str()).collect();
            write!(
                f,
                "; controllers missing: {}; limits NOT enforced (requests are refused): {}",
                names.join(", "),
                keys.join(", ")
            )?;
        }
        if !enabled.is_empty() {
            write!(f, "; controllers enabled: {}", enabled.join(", "))?;
        }
        for c in &missing {
            write!(f, "\n  {c}: {}", self.missing_reason(*c).unwrap_or(""))?;
        }
        if !self.freeze {
            write!(f, "\n  freeze: cgroup.freeze is absent (needs Linux 5.2+)")?;
        }
        if !self.kill {
            write!(f, "\n  kill: cgroup.kill is absent (needs Linux 5.14+)")?;
        }
        Ok(())
    }
}

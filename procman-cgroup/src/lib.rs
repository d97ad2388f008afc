//! cgroup v2 enforcement: slices (leaf cgroups under one managed subtree), their limits,
//! process moves, freeze/thaw, kill, and stats. The kernel is the source of truth: a
//! restarted agent lists its slices from the filesystem ([`Manager::list_slices`]),
//! re-applies its config idempotently ([`Manager::ensure_slice`]) and never moves processes
//! out or lifts limits when it stops (this module does nothing on drop).
//!
//! # Layout
//! ```text
//! <cgroup2 mount>/                         e.g. /sys/fs/cgroup (hybrid hosts: .../unified)
//!   procman.slice/                         managed root: no processes, controllers enabled
//!     cgroup.subtree_control  "+cpu +memory +io +pids" (those available)
//!     <slice>/                             one leaf per slice: processes + limits
//! ```
//! Slices are leaves (the no-internal-processes rule): processes live only in slices, and
//! slices have no children. The managed root's path below the mount is configurable.
//!
//! On a systemd host, run the agent as a unit with `Delegate=yes` so systemd never fights
//! over the subtree, and point the managed root below the unit's cgroup, e.g.
//! ```ini
//! [Service]
//! ExecStart=/usr/bin/procman-agent
//! Delegate=yes
//! # systemd >= 254 keeps the agent itself in a leaf so the unit's cgroup can delegate:
//! DelegateSubgroup=agent
//! # stopping the agent must not kill or un-limit the slices it manages:
//! KillMode=process
//! ```
//! with the managed root `system.slice/procman-agent.service/procman.slice`. Without systemd
//! the default `procman.slice` directly under the mount root is used. The module only ever
//! creates the last component of the managed root; it never enables controllers in a parent
//! it does not own: a controller the parent does not delegate is reported missing.
//!
//! # Degraded mode
//! [`Manager::open`] works on any cgroup2 mount, even one without controllers (the hybrid
//! v1/v2 hosts this project is developed on offer only `hugetlb` in cgroup2).
//! [`Capabilities`] says which controllers are missing, which limit keys are therefore not
//! enforced, and why; its `Display` is the announcement the agent logs at start. A limit
//! request needing a missing controller is refused with that reason
//! ([`CgroupError::Unenforceable`]), never silently accepted. Moves, freeze and kill do not
//! need controllers (they are cgroup2 core files) and keep working.
//!
//! # Why not `cgroups-rs`
//! `cgroups-rs` 0.5.1 (the current release; builds with Rust 1.95) was evaluated and not
//! used:
//! - it decides v1 vs v2 by statfs on a hard-coded `/sys/fs/cgroup`, which is tmpfs on a
//!   hybrid host, so it falls back to v1 and would drive the v1 hierarchies (forbidden here),
//!   and its v2 hierarchy root is a private field fixed to `/sys/fs/cgroup`, so the real mount
//!   (`/sys/fs/cgroup/unified`) cannot be used;
//! - creating a v2 cgroup writes `+<every controller>` into `cgroup.subtree_control` of the
//!   mount root and of every ancestor: it changes cgroups it does not own;
//! - it offers no directory fd for `clone3(CLONE_INTO_CGROUP)`, no degraded-mode reasons, no
//!   validation with the accepted forms, and no rollback of partial writes;
//! - it always pulls in zbus (systemd D-Bus), nix 0.25 and thiserror 1 beside ours.
//!
//! The cgroup2 interface is a handful of text files, so the code here is thin: read and
//! write them with one `write(2)` per value, validate everything first.
//!
//! # Invalid input writes nothing
//! [`Manager::ensure_slice`]/[`Manager::update_slice`] parse and range-check every limit,
//! check that each needed controller and file is there, and only then write. If the kernel
//! still refuses a value midway, the files already written are restored to their old
//! contents, and a slice created by that call is removed again.
mod error;
pub mod fs;
pub mod limits;
pub mod procs;
pub mod stats;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use error::{CgroupError, Protected, Result};
pub use fs::{Cgroup2Mount, Controller};
pub use limits::{
    CpuQuota, DevNum, DeviceSpec, IoLimit, LimitError, Limits, Machine, MemoryValue, Percent, Rate,
    ResolveDevice, SysBlockDevices, TasksMax,
};
pub use stats::SliceStats;

use fs::{read_optional, read_pids, read_string, read_word_set, write_raw};
use limits::FileWrite;

/// Default managed root, directly under the cgroup2 mount.
pub const DEFAULT_ROOT: &str = "procman.slice";
/// Longest slice (or root component) name.
pub const MAX_NAME_LEN: usize = 64;

/// Interface-file prefixes a child cgroup name must not start with (they would read like
/// interface files, e.g. a slice called `memory.max`).
const RESERVED_PREFIXES: [&str; 10] = [
    "cgroup.", "cpu.", "cpuset.", "memory.", "io.", "pids.", "hugetlb.", "rdma.", "misc.", "irq.",
];

/// Checks a slice name (or one component of the managed root's path).
pub fn validate_name(what: &'static str, name: &str) -> Result<()> {
    let bad = |reason| CgroupError::InvalidName {
        what,
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name == "." || name == ".." {
        return Err(bad("`.` and `..` are not names"));
    }
    if name.contains('/') {
        return Err(bad("it contains `/`"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(bad("it is too long"));
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(bad("it must start with a letter or digit"));
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'@'))
    {
        return Err(bad("it contains a character outside A-Z a-z 0-9 _ - . @"));
    }
    if RESERVED_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Err(bad("it starts with a cgroup interface-file prefix"));
    }
    Ok(())
}

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
    pub fn unenforced_keys(&self) -> Vec<&'static str> {
        self.missing()
            .into_iter()
            .flat_map(|c| c.limit_keys().iter().copied())
            .collect()
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
            write!(
                f,
                "; controllers missing: {}; limits NOT enforced (requests are refused): {}",
                names.join(", "),
                self.unenforced_keys().join(", ")
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

/// What [`Manager::ensure_slice`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    Created,
    /// The slice already existed (re-adopted); its limits were re-applied.
    Adopted,
}

/// The cgroup2 managed subtree. Cheap to share by reference; every method reads the
/// filesystem afresh, so state survives agent restarts.
pub struct Manager {
    mount: Cgroup2Mount,
    root_rel: PathBuf,
    root: PathBuf,
    caps: Capabilities,
    machine: Machine,
    devices: Box<dyn ResolveDevice + Send + Sync>,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("root", &self.root)
            .field("caps", &self.caps)
            .field("machine", &self.machine)
            .finish_non_exhaustive()
    }
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

impl Manager {
    /// Opens (creating if needed) the managed root `root` (a relative path below the mount,
    /// e.g. [`DEFAULT_ROOT`]), enables every available controller in its
    /// `cgroup.subtree_control`, and probes what is available. Works in degraded mode when
    /// controllers are missing; fails only when the subtree itself cannot be used.
    pub fn open(mount: Cgroup2Mount, root: impl AsRef<Path>) -> Result<Manager> {
        let root_rel = root.as_ref().to_path_buf();
        let comps: Vec<&str> = root_rel
            .components()
            .map(|c| match c {
                Component::Normal(s) => s.to_str().unwrap_or("\u{fffd}"),
                Component::RootDir => "/",
                Component::ParentDir => "..",
                Component::CurDir => ".",
                Component::Prefix(_) => "?",
            })
            .collect();
        if comps.is_empty() {
            return Err(CgroupError::InvalidName {
                what: "managed root",
                name: root_rel.display().to_string(),
                reason: "it is empty (the mount root itself cannot be managed)",
            });
        }
        for c in &comps {
            validate_name("managed root component", c).map_err(|e| match e {
                CgroupError::InvalidName { reason, .. } => CgroupError::InvalidName {
                    what: "managed root",
                    name: root_rel.display().to_string(),
                    reason,
                },
                e => e,
            })?;
        }
        let root = mount.path.join(&root_rel);
        let parent = root.parent().unwrap_or(&mount.path).to_path_buf();
        if !parent.is_dir() {
            return Err(CgroupError::NoParent { path: parent });
        }
        match std::fs::create_dir(&root) {
            Ok(()) => log::info!("cgroup: created managed root {}", root.display()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(CgroupError::io("creating the managed root", &root, e)),
        }
        let machine = Machine::detect()?;
        let mut m = Manager {
            caps: Capabilities {
                mount: mount.path.clone(),
                root: root.clone(),
                controllers: BTreeMap::new(),
                other_controllers: BTreeSet::new(),
                freeze: false,
                kill: false,
            },
            mount,
            root_rel,
            root,
            machine,
            devices: Box::new(SysBlockDevices::default()),
        };
        m.caps = m.probe_and_enable()?;
        Ok(m)
    }

    /// [`Manager::open`] on the discovered cgroup2 mount with the default root.
    pub fn open_default() -> Result<Manager> {
        Manager::open(Cgroup2Mount::discover()?, DEFAULT_ROOT)
    }

    /// Replaces the machine facts percentages resolve against (tests).
    pub fn with_machine(mut self, machine: Machine) -> Manager {
        self.machine = machine;
        self
    }

    /// Replaces the block-device resolver (tests).
    pub fn with_devices(mut self, devices: Box<dyn ResolveDevice + Send + Sync>) -> Manager {
        self.devices = devices;
        self
    }

    fn probe_and_enable(&self) -> Result<Capabilities> {
        let hierarchy = self.mount.root_controllers()?;
        let root_ctrls = read_word_set(&self.root.join("cgroup.controllers"))?;
        let subtree_file = self.root.join("cgroup.subtree_control");
        let mut subtree = read_word_set(&subtree_file)?;
        let parent = self.root.parent().unwrap_or(&self.mount.path);
        let mut controllers = BTreeMap::new();
        for c in Controller::ALL {
            let name = c.name();
            let avail = if !hierarchy.contains(name) {
                Availability::Missing(missing_from_hierarchy(&self.mount, &hierarchy, c))
            } else if !root_ctrls.contains(name) {
                Availability::Missing(format!(
                    "it is not delegated to {}: {}/cgroup.subtree_control does not enable it, \
                     and procman does not change cgroups it does not own; enable it there \
                     (on systemd: run the agent with Delegate=yes and put the managed root \
                     below its cgroup)",
                    self.root.display(),
                    parent.display()
                ))
            } else if subtree.contains(name) {
                Availability::Enabled
            } else {
                match write_raw(&subtree_file, &format!("+{name}")) {
                    Ok(()) => {
                        subtree.insert(name.to_string());
                        Availability::Enabled
                    }
                    Err(e) => {
                        let why = if e.raw_os_error() == Some(libc::EBUSY) {
                            let pids =
                                read_pids(&self.root.join("cgroup.procs")).unwrap_or_default();
                            format!(
                                " (the managed root has processes of its own {pids:?}: the \
                                 no-internal-processes rule forbids controllers then; move \
                                 them into a slice)"
                            )
                        } else {
                            String::new()
                        };
                        Availability::Missing(format!(
                            "enabling it in {} failed: {e}{why}",
                            subtree_file.display()
                        ))
                    }
                }
            };
            controllers.insert(c, avail);
        }
        let ours: BTreeSet<&str> = Controller::ALL.iter().map(|c| c.name()).collect();
        Ok(Capabilities {
            mount: self.mount.path.clone(),
            root: self.root.clone(),
            controllers,
            other_controllers: hierarchy
                .into_iter()
                .filter(|c| !ours.contains(c.as_str()))
                .collect(),
            freeze: self.root.join("cgroup.freeze").exists(),
            kill: self.root.join("cgroup.kill").exists(),
        })
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// The managed root's absolute path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn mount(&self) -> &Cgroup2Mount {
        &self.mount
    }

    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    /// The directory of slice `name` (validated; it may not exist).
    pub fn slice_path(&self, name: &str) -> Result<PathBuf> {
        validate_name("slice name", name)?;
        Ok(self.root.join(name))
    }

    fn existing(&self, name: &str) -> Result<PathBuf> {
        let p = self.slice_path(name)?;
        if !p.is_dir() {
            return Err(CgroupError::NoSuchSlice {
                name: name.to_string(),
                path: p,
            });
        }
        Ok(p)
    }

    /// The slices that exist now, read from the filesystem (re-adoption after a restart).
    pub fn list_slices(&self) -> Result<Vec<String>> {
        let rd =
            std::fs::read_dir(&self.root).map_err(|e| CgroupError::io("listing", &self.root, e))?;
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| CgroupError::io("listing", &self.root, e))?;
            let is_dir = ent
                .file_type()
                .map_err(|e| CgroupError::io("listing", ent.path(), e))?
                .is_dir();
            if let (true, Some(n)) = (is_dir, ent.file_name().to_str()) {
                if validate_name("slice name", n).is_ok() {
                    out.push(n.to_string());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Refuses limits this host cannot enforce (missing controller), with the reason.
    pub fn check_enforceable(&self, limits: &Limits) -> Result<()> {
        for (key, value) in limits.entries() {
            let c = limits::controller_of(key);
            if let Some(reason) = self.caps.missing_reason(c) {
                return Err(CgroupError::Unenforceable {
                    key,
                    value,
                    controller: c,
                    reason: reason.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Validates `limits` for this host and renders the writes, before anything is touched.
    fn plan(&self, limits: &Limits) -> Result<Vec<FileWrite>> {
        self.check_enforceable(limits)?;
        let mut writes = limits.plan(&self.machine, &*self.devices)?;
        writes.retain(|w| self.caps.is_enabled(w.controller));
        Ok(writes)
    }

    /// Creates slice `name` with `limits`, or re-adopts it if it exists and re-applies
    /// `limits` (declaratively: keys absent from `limits` go back to the kernel default).
    /// Invalid or unenforceable limits are refused before the directory is created.
    pub fn ensure_slice(&self, name: &str, limits: &Limits) -> Result<Ensured> {
        let dir = self.slice_path(name)?;
        let writes = self.plan(limits)?;
        let created = match std::fs::create_dir(&dir) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(CgroupError::io("creating slice", &dir, e)),
        };
        if let Err(e) = self.apply(&dir, writes) {
            if created {
                if let Err(rm) = std::fs::remove_dir(&dir) {
                    log::warn!("cgroup: could not remove {} again: {rm}", dir.display());
                }
            }
            return Err(e);
        }
        Ok(if created {
            Ensured::Created
        } else {
            Ensured::Adopted
        })
    }

    /// Sets the limits of an existing slice (declaratively, as [`Manager::ensure_slice`]).
    pub fn update_slice(&self, name: &str, limits: &Limits) -> Result<()> {
        let dir = self.existing(name)?;
        let writes = self.plan(limits)?;
        self.apply(&dir, writes)
    }

    fn apply(&self, dir: &Path, mut writes: Vec<FileWrite>) -> Result<()> {
        // io.max: reset devices limited now but absent from the new limits.
        if self.caps.is_enabled(Controller::Io) {
            let cur = read_optional(&dir.join("io.max"))?.unwrap_or_default();
            let wanted: BTreeSet<DevNum> = writes
                .iter()
                .filter(|w| w.file == "io.max")
                .filter_map(|w| w.value.split_whitespace().next().and_then(DevNum::parse))
                .collect();
            for n in limits::io_max_devices(&cur) {
                if !wanted.contains(&n) {
                    writes.push(FileWrite {
                        controller: Controller::Io,
                        file: "io.max",
                        value: limits::io_max_line(n, [Rate::Max; 4]),
                        from: None,
                    });
                }
            }
        }
        // Every file must be there before the first write.
        let mut checked = Vec::with_capacity(writes.len());
        for w in writes {
            let p = dir.join(w.file);
            if p.exists() {
                checked.push((p, w));
            } else if let Some((key, value)) = w.from {
                return Err(CgroupError::MissingFile {
                    key,
                    value,
                    path: p,
                    why: if w.file == "memory.swap.max" {
                        "the kernel does not account swap (CONFIG_MEMCG_SWAP, swapaccount=1)"
                    } else {
                        "the controller's interface file is absent from the slice"
                    },
                });
            }
            // An absent file for a reset: nothing to reset (e.g. no swap accounting).
        }
        // Snapshot everything first, then write; on failure restore what was written.
        let mut snap = Vec::with_capacity(checked.len());
        for (p, w) in checked {
            let old = read_string(&p)?;
            snap.push((p, w, old));
        }
        let mut done: Vec<(PathBuf, String)> = Vec::new();
        for (p, w, old) in snap {
            let restore = if w.file == "io.max" {
                let dev = w.value.split_whitespace().next().unwrap_or("");
                old.lines()
                    .find(|l| l.split_whitespace().next() == Some(dev))
                    .map(str::to_string)
                    .unwrap_or_else(|| {
                        DevNum::parse(dev)
                            .map(|n| limits::io_max_line(n, [Rate::Max; 4]))
                            .unwrap_or_default()
                    })
            } else {
                old.trim().to_string()
            };
            if w.file != "io.max" && restore == w.value {
                continue; // already so: idempotent re-apply writes nothing
            }
            if let Err(source) = write_raw(&p, &w.value) {
                let rolled_back = rollback(&done);
                return Err(CgroupError::Write {
                    path: p,
                    value: w.value,
                    rolled_back,
                    source,
                });
            }
            done.push((p, restore));
        }
        Ok(())
    }

    /// Reads the limits the kernel holds for slice `name` now (for `show`, and to see what a
    /// restarted agent adopted). Files of missing controllers are skipped.
    pub fn read_limits(&self, name: &str) -> Result<Limits> {
        let dir = self.existing(name)?;
        read_limits_in(&dir)
    }

    /// Removes slice `name`. `Ok(false)` when it did not exist. A slice with processes is
    /// refused ([`CgroupError::SliceBusy`]): kill it ([`Manager::kill`]) and wait
    /// ([`Manager::wait_empty`]) first.
    pub fn remove_slice(&self, name: &str) -> Result<bool> {
        let dir = self.slice_path(name)?;
        match std::fs::remove_dir(&dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Err(CgroupError::SliceBusy {
                name: name.to_string(),
                pids: read_pids(&dir.join("cgroup.procs")).unwrap_or_default(),
                path: dir,
            }),
            Err(e) => Err(CgroupError::io("removing slice", dir, e)),
        }
    }

    /// Removes the managed root itself (uninstall, tests). Refused while slices exist.
    pub fn remove_root(self) -> Result<()> {
        let slices = self.list_slices()?;
        if !slices.is_empty() {
            return Err(CgroupError::RootNotEmpty {
                path: self.root,
                slices,
            });
        }
        std::fs::remove_dir(&self.root).map_err(|e| CgroupError::io("removing", &self.root, e))
    }

    /// Opens slice `name`'s `cgroup.procs` for [`Manager::move_with`]: a caller that moves
    /// many processes into one slice (exec-time placement) keeps it and skips the path walk
    /// and the open on every move.
    pub fn procs_file(&self, name: &str) -> Result<ProcsFile> {
        let dir = self.existing(name)?;
        let path = dir.join("cgroup.procs");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| CgroupError::io("opening", &path, e))?;
        Ok(ProcsFile { file, dir })
    }

    /// Moves process `tgid` through an open `cgroup.procs` ([`Manager::procs_file`]). For
    /// the placement fast path: the caller passes a thread-group id it got from a
    /// process-level event, so one read of /proc/PID/stat is enough for the guard (pid 1,
    /// kernel threads, the agent itself) and the identity check against `start_time`.
    /// Returns how long the kernel took for the write itself.
    pub fn move_with(
        &self,
        procs: &ProcsFile,
        tgid: u32,
        start_time: Option<u64>,
    ) -> Result<Duration> {
        let info = procs::check_mutable_process(tgid, start_time)?;
        procs.write_checked(tgid, &info)
    }

    /// Moves process `pid` (all its threads: written to `cgroup.procs`; a thread id moves its
    /// whole process) into slice `name`. Refuses pid 1, kernel threads and the agent itself.
    /// With `start_time` (field 22 of /proc/PID/stat), a reused pid is refused.
    pub fn move_process(&self, name: &str, pid: u32, start_time: Option<u64>) -> Result<()> {
        let procs = self.procs_file(name)?;
        let info = procs::check_mutable(pid, start_time)?;
        procs.write_checked(pid, &info).map(|_| ())
    }

    /// The pids in slice `name`.
    pub fn pids(&self, name: &str) -> Result<Vec<u32>> {
        read_pids(&self.existing(name)?.join("cgroup.procs"))
    }

    /// The slice `pid` is in, if it is in one of ours (from /proc/PID/cgroup; assumes the
    /// agent runs in the initial cgroup namespace and the mount shows the whole tree).
    pub fn slice_of(&self, pid: u32) -> Result<Option<String>> {
        let cg = procs::cgroup_of(pid)?;
        let rel = Path::new(cg.trim_start_matches('/'));
        Ok(rel.strip_prefix(&self.root_rel).ok().and_then(|r| {
            let mut it = r.components();
            match (it.next(), it.next()) {
                (Some(Component::Normal(s)), None) => s.to_str().map(str::to_string),
                _ => None,
            }
        }))
    }

    /// An fd of the slice directory for `clone3(CLONE_INTO_CGROUP)`: the child starts inside
    /// the slice, with no window outside it. Opened `O_RDONLY|O_DIRECTORY|O_CLOEXEC` (an
    /// `O_PATH` fd is refused by the kernel for this).
    pub fn slice_fd(&self, name: &str) -> Result<OwnedFd> {
        let dir = self.existing(name)?;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&dir)
            .map(OwnedFd::from)
            .map_err(|e| CgroupError::io("opening", dir, e))
    }

    /// Refuses an action on a slice that holds pid 1 or the agent itself.
    fn guard_members(&self, action: &'static str, name: &str, dir: &Path) -> Result<()> {
        let me = std::process::id();
        for pid in read_pids(&dir.join("cgroup.procs"))? {
            let why = if pid == 1 {
                Some(Protected::Init)
            } else if pid == me {
                Some(Protected::Myself)
            } else {
                None
            };
            if let Some(why) = why {
                return Err(CgroupError::ProtectedMember {
                    action,
                    name: name.to_string(),
                    pid,
                    why,
                });
            }
        }
        Ok(())
    }

    fn core_write(
        &self,
        name: &str,
        file: &'static str,
        value: &str,
        needs: &'static str,
    ) -> Result<()> {
        let dir = self.existing(name)?;
        let p = dir.join(file);
        if !p.exists() {
            return Err(CgroupError::Unsupported {
                feature: file,
                path: p,
                needs,
            });
        }
        if value == "1" {
            let action = if file == "cgroup.kill" {
                "kill"
            } else {
                "freeze"
            };
            self.guard_members(action, name, &dir)?;
        }
        write_raw(&p, value).map_err(|source| CgroupError::Write {
            path: p,
            value: value.to_string(),
            rolled_back: false,
            source,
        })
    }

    /// Freezes every process of slice `name` (`cgroup.freeze`). Returns once requested; use
    /// [`Manager::wait_frozen`] to wait until the kernel reports it done.
    pub fn freeze(&self, name: &str) -> Result<()> {
        self.core_write(name, "cgroup.freeze", "1", "Linux 5.2+")
    }

    /// Thaws slice `name`.
    pub fn thaw(&self, name: &str) -> Result<()> {
        self.core_write(name, "cgroup.freeze", "0", "Linux 5.2+")
    }

    /// SIGKILLs every process of slice `name` at once (`cgroup.kill`, Linux 5.14+; no process
    /// can fork away during it).
    pub fn kill(&self, name: &str) -> Result<()> {
        self.core_write(name, "cgroup.kill", "1", "Linux 5.14+")
    }

    fn events(&self, dir: &Path) -> Result<BTreeMap<String, u64>> {
        let p = dir.join("cgroup.events");
        let t = read_string(&p)?;
        stats::parse_flat_keyed(&p, &t)
    }

    /// Waits until `cgroup.events` shows `frozen` = `want`.
    pub fn wait_frozen(&self, name: &str, want: bool, timeout: Duration) -> Result<()> {
        let dir = self.existing(name)?;
        self.wait_event(name, &dir, "frozen", want, timeout)
    }

    /// Waits until slice `name` has no processes (`populated 0`).
    pub fn wait_empty(&self, name: &str, timeout: Duration) -> Result<()> {
        let dir = self.existing(name)?;
        self.wait_event(name, &dir, "populated", false, timeout)
    }

    fn wait_event(
        &self,
        name: &str,
        dir: &Path,
        key: &str,
        want: bool,
        timeout: Duration,
    ) -> Result<()> {
        let start = Instant::now();
        loop {
            if (self.events(dir)?.get(key).copied().unwrap_or(0) == 1) == want {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                if key == "frozen" {
                    return Err(CgroupError::FreezeTimeout {
                        name: name.to_string(),
                        path: dir.join("cgroup.events"),
                        want,
                        waited_ms: timeout.as_millis() as u64,
                    });
                }
                return Err(CgroupError::SliceBusy {
                    name: name.to_string(),
                    pids: read_pids(&dir.join("cgroup.procs")).unwrap_or_default(),
                    path: dir.to_path_buf(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Statistics of slice `name`.
    pub fn stats(&self, name: &str) -> Result<SliceStats> {
        stats::read_stats(&self.existing(name)?)
    }
}

/// Restores `done` (path, old value) in reverse order. True when every restore worked.
fn rollback(done: &[(PathBuf, String)]) -> bool {
    let mut ok = true;
    for (p, old) in done.iter().rev() {
        if let Err(e) = write_raw(p, old) {
            log::error!(
                "cgroup: could not restore {:?} in {}: {e}",
                old,
                p.display()
            );
            ok = false;
        }
    }
    ok
}

/// Reads the limits held in the cgroup directory `dir`.
pub fn read_limits_in(dir: &Path) -> Result<Limits> {
    let mut l = Limits::default();
    let read = |f: &str| -> Result<Option<String>> {
        Ok(read_optional(&dir.join(f))?.map(|s| s.trim().to_string()))
    };
    let bad = |f: &str, v: &str| CgroupError::Malformed {
        path: dir.join(f),
        detail: format!("unexpected value {v:?}"),
    };
    let mem = |f: &str, v: &str| -> Result<Option<MemoryValue>> {
        if v == "max" {
            Ok(None)
        } else {
            v.parse()
                .map(|b| Some(MemoryValue::Bytes(b)))
                .map_err(|_| bad(f, v))
        }
    };
    if let Some(v) = read("memory.max")? {
        l.memory_max = mem("memory.max", &v)?;
    }
    if let Some(v) = read("memory.high")? {
        l.memory_high = mem("memory.high", &v)?;
    }
    if let Some(v) = read("memory.swap.max")? {
        l.memory_swap_max = mem("memory.swap.max", &v)?;
    }
    if let Some(v) = read("cpu.max")? {
        let mut it = v.split_whitespace();
        match (it.next(), it.next().map(str::parse::<u64>)) {
            (Some("max"), Some(Ok(_))) => {}
            (Some(q), Some(Ok(period))) if period > 0 => {
                let q: u64 = q.parse().map_err(|_| bad("cpu.max", &v))?;
                let centi = (q as u128 * 10_000 / period as u128) as u32;
                l.cpu_quota = Some(CpuQuota::OneCpu(Percent(centi)));
            }
            _ => return Err(bad("cpu.max", &v)),
        }
    }
    if let Some(v) = read("cpu.weight")? {
        let w: u32 = v.parse().map_err(|_| bad("cpu.weight", &v))?;
        if w != limits::DEFAULT_CPU_WEIGHT {
            l.cpu_weight = Some(w);
        }
    }
    if let Some(v) = read("pids.max")? {
        if v != "max" {
            l.tasks_max = Some(TasksMax::Count(v.parse().map_err(|_| bad("pids.max", &v))?));
        }
    }
    if let Some(v) = read("io.max")? {
        for line in v.lines() {
            let mut it = line.split_whitespace();
            let n = it
                .next()
                .and_then(DevNum::parse)
                .ok_or_else(|| bad("io.max", line))?;
            for kv in it {
                let (k, val) = kv.split_once('=').ok_or_else(|| bad("io.max", line))?;
                if val == "max" {
                    continue;
                }
                let rate = Rate::Value(val.parse().map_err(|_| bad("io.max", line))?);
                let e = IoLimit {
                    device: DeviceSpec::Number(n),
                    rate,
                };
                match k {
                    "rbps" => l.io_read_bandwidth_max.push(e),
                    "wbps" => l.io_write_bandwidth_max.push(e),
                    "riops" => l.io_read_iops_max.push(e),
                    "wiops" => l.io_write_iops_max.push(e),
                    _ => {}
                }
            }
        }
    }
    Ok(l)
}

/// An open `cgroup.procs` of one slice ([`Manager::procs_file`]).
#[derive(Debug)]
pub struct ProcsFile {
    file: std::fs::File,
    /// The slice directory.
    dir: PathBuf,
}

impl ProcsFile {
    /// Writes `info.tgid` (checked by the caller) and verifies afterwards that the pid was not
    /// reused in between. `pid` is what the caller asked for (errors name it). Returns how
    /// long the kernel took for the write.
    fn write_checked(&self, pid: u32, info: &procs::ProcInfo) -> Result<Duration> {
        let value = info.tgid.to_string();
        let t0 = Instant::now();
        let written = std::os::unix::fs::FileExt::write_at(&self.file, value.as_bytes(), 0);
        let took = t0.elapsed();
        let fail = |source| CgroupError::Write {
            path: self.dir.join("cgroup.procs"),
            value: value.clone(),
            rolled_back: false,
            source,
        };
        match written {
            Ok(n) if n == value.len() => {}
            Ok(n) => {
                let short = format!("short write: {n} of {} bytes", value.len());
                return Err(fail(io::Error::new(io::ErrorKind::WriteZero, short)));
            }
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                return Err(CgroupError::NoSuchProcess { pid })
            }
            Err(e) => return Err(fail(e)),
        }
        // A pid reused between the check and the write: report it (the new process moved).
        if let Ok(after) = procs::proc_info(info.tgid) {
            if after.start_time != info.start_time {
                return Err(CgroupError::PidReusedDuringMove {
                    pid,
                    path: self.dir.clone(),
                    expected: info.start_time,
                    found: after.start_time,
                });
            }
        }
        Ok(took)
    }
}

#[cfg(test)]
mod tests;

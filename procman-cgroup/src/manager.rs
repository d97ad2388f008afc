//! [`Manager`]: the managed subtree. Slices (create, re-adopt, list, remove), their limits
//! (validated and planned before anything is written, rolled back if the kernel refuses
//! midway), moves, freeze/thaw/kill and stats, all through [`Cgroup`].
use std::collections::BTreeSet;
use std::fmt;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use procman_common::api::SliceStats;

use crate::capabilities::Capabilities;
use crate::cgroup::{Cgroup, ProcsFile};
use crate::error::{CgroupError, Protected, Result};
use crate::iface::{DevNum, IoMax};
use crate::key::Controller;
use crate::limits::{io_max_devices, FileWrite, Limits, Machine, ResolveDevice, SysBlockDevices};
use crate::mount::Cgroup2Mount;
use crate::name::{validate_name, NameError};
use crate::procs;

/// Default managed root, directly under the cgroup2 mount.
pub const DEFAULT_ROOT: &str = "procman.slice";

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
    root: Cgroup,
    caps: Capabilities,
    machine: Machine,
    devices: Box<dyn ResolveDevice + Send + Sync>,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("root", &self.root.path())
            .field("caps", &self.caps)
            .field("machine", &self.machine)
            .finish_non_exhaustive()
    }
}

impl Manager {
    /// Opens (creating if needed) the managed root `root` (a relative path below the mount,
    /// e.g. [`DEFAULT_ROOT`]), enables every available controller in its
    /// `cgroup.subtree_control`, and probes what is available. Works in degraded mode when
    /// controllers are missing; fails only when the subtree itself cannot be used.
    pub fn open(mount: Cgroup2Mount, root: impl AsRef<Path>) -> Result<Manager> {
        let root_rel = root.as_ref().to_path_buf();
        let shown = root_rel.display().to_string();
        let bad = |reason| NameError {
            what: "managed root",
            name: shown.clone(),
            reason,
        };
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
            return Err(bad("it is empty (the mount root itself cannot be managed)").into());
        }
        for c in &comps {
            validate_name("managed root component", c).map_err(|e| bad(e.reason))?;
        }
        let root = Cgroup::new(mount.path.join(&root_rel));
        let parent = root.path().parent().unwrap_or(&mount.path).to_path_buf();
        if !parent.is_dir() {
            return Err(CgroupError::NoParent { path: parent });
        }
        if root.create()? {
            log::info!("cgroup: created managed root {}", root.path().display());
        }
        let machine = Machine::detect()?;
        let caps = Capabilities::probe(&mount, &root)?;
        Ok(Manager {
            caps,
            mount,
            root_rel,
            root,
            machine,
            devices: Box::new(SysBlockDevices::default()),
        })
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

    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// The managed root's absolute path.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The managed root as a [`Cgroup`].
    pub fn root_cgroup(&self) -> &Cgroup {
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
        Ok(self.root.child(name)?.path().to_path_buf())
    }

    /// Slice `name` as a [`Cgroup`], which must exist ([`CgroupError::NoSuchSlice`]).
    pub fn slice(&self, name: &str) -> Result<Cgroup> {
        let cg = self.root.child(name)?;
        if !cg.exists() {
            return Err(CgroupError::NoSuchSlice {
                name: name.to_string(),
                path: cg.path().to_path_buf(),
            });
        }
        Ok(cg)
    }

    /// The slices that exist now, read from the filesystem (re-adoption after a restart).
    pub fn list_slices(&self) -> Result<Vec<String>> {
        self.root.children()
    }

    /// Refuses limits this host cannot enforce (missing controller), with the reason.
    pub fn check_enforceable(&self, limits: &Limits) -> Result<()> {
        for (key, value) in limits.entries() {
            let c = key.controller();
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
        let cg = self.root.child(name)?;
        let writes = self.plan(limits)?;
        let created = cg.create()?;
        if let Err(e) = self.apply(&cg, writes) {
            if created {
                if let Err(rm) = cg.remove() {
                    log::warn!(
                        "cgroup: could not remove {} again: {rm}",
                        cg.path().display()
                    );
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
        let cg = self.slice(name)?;
        let writes = self.plan(limits)?;
        self.apply(&cg, writes)
    }

    fn apply(&self, cg: &Cgroup, mut writes: Vec<FileWrite>) -> Result<()> {
        // io.max: reset devices limited now but absent from the new limits.
        if self.caps.is_enabled(Controller::Io) {
            let cur = crate::fs::read_optional(&cg.file("io.max"))?.unwrap_or_default();
            let wanted: BTreeSet<DevNum> = writes
                .iter()
                .filter(|w| w.file == "io.max")
                .filter_map(|w| w.value.split_whitespace().next().and_then(DevNum::parse))
                .collect();
            for n in io_max_devices(&cur) {
                if !wanted.contains(&n) {
                    writes.push(FileWrite {
                        controller: Controller::Io,
                        file: "io.max",
                        value: IoMax::unlimited(n).to_string(),
                        from: None,
                    });
                }
            }
        }
        // Every file must be there before the first write.
        let mut checked = Vec::with_capacity(writes.len());
        for w in writes {
            if cg.has(w.file) {
                checked.push(w);
            } else if let Some((key, value)) = w.from {
                return Err(CgroupError::MissingFile {
                    key,
                    value,
                    path: cg.file(w.file),
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
        for w in checked {
            let old = crate::fs::read_string(&cg.file(w.file))?;
            snap.push((w, old));
        }
        let mut done: Vec<(&'static str, String)> = Vec::new();
        for (w, old) in snap {
            let restore = if w.file == "io.max" {
                let dev = w.value.split_whitespace().next().unwrap_or("");
                old.lines()
                    .find(|l| l.split_whitespace().next() == Some(dev))
                    .map(str::to_string)
                    .unwrap_or_else(|| {
                        DevNum::parse(dev)
                            .map(|n| IoMax::unlimited(n).to_string())
                            .unwrap_or_default()
                    })
            } else {
                old.trim().to_string()
            };
            if w.file != "io.max" && restore == w.value {
                continue; // already so: idempotent re-apply writes nothing
            }
            if let Err(source) = cg.write_raw(w.file, &w.value) {
                let rolled_back = rollback(cg, &done);
                return Err(CgroupError::Write {
                    path: cg.file(w.file),
                    value: w.value,
                    key: w.from.map(|(k, _)| k),
                    rolled_back,
                    source,
                });
            }
            done.push((w.file, restore));
        }
        Ok(())
    }

    /// Reads the limits the kernel holds for slice `name` now (for `show`, and to see what a
    /// restarted agent adopted). Files of missing controllers are skipped.
    pub fn read_limits(&self, name: &str) -> Result<Limits> {
        Limits::read_from(&self.slice(name)?)
    }

    /// Removes slice `name`. `Ok(false)` when it did not exist. A slice with processes is
    /// refused ([`CgroupError::SliceBusy`]): kill it ([`Manager::kill`]) and wait
    /// ([`Manager::wait_empty`]) first.
    pub fn remove_slice(&self, name: &str) -> Result<bool> {
        let cg = self.root.child(name)?;
        cg.remove().map_err(|e| match e {
            CgroupError::Io { source, .. } if source.raw_os_error() == Some(libc::EBUSY) => {
                self.busy(name, &cg)
            }
            CgroupError::Io { source, path, .. } => CgroupError::io("removing slice", path, source),
            e => e,
        })
    }

    fn busy(&self, name: &str, cg: &Cgroup) -> CgroupError {
        CgroupError::SliceBusy {
            name: name.to_string(),
            pids: cg.procs().unwrap_or_default(),
            path: cg.path().to_path_buf(),
        }
    }

    /// Removes the managed root itself (uninstall, tests). Refused while slices exist.
    pub fn remove_root(self) -> Result<()> {
        let slices = self.list_slices()?;
        if !slices.is_empty() {
            return Err(CgroupError::RootNotEmpty {
                path: self.root.path().to_path_buf(),
                slices,
            });
        }
        self.root.remove().map(|_| ())
    }

    /// Opens slice `name`'s `cgroup.procs` for [`Manager::move_with`]: a caller that moves
    /// many processes into one slice (exec-time placement) keeps it and skips the path walk
    /// and the open on every move.
    pub fn procs_file(&self, name: &str) -> Result<ProcsFile> {
        self.slice(name)?.procs_file()
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
        self.slice(name)?.procs()
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
    /// the slice, with no window outside it.
    pub fn slice_fd(&self, name: &str) -> Result<OwnedFd> {
        self.slice(name)?.dir_fd()
    }

    /// Refuses an action on a slice that holds pid 1 or the agent itself.
    fn guard_members(&self, action: &'static str, name: &str, cg: &Cgroup) -> Result<()> {
        let me = std::process::id();
        for pid in cg.procs()? {
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

    /// Freezes every process of slice `name` (`cgroup.freeze`). Returns once requested; use
    /// [`Manager::wait_frozen`] to wait until the kernel reports it done.
    pub fn freeze(&self, name: &str) -> Result<()> {
        let cg = self.slice(name)?;
        if cg.has("cgroup.freeze") {
            self.guard_members("freeze", name, &cg)?;
        }
        cg.freeze(true)
    }

    /// Thaws slice `name`.
    pub fn thaw(&self, name: &str) -> Result<()> {
        self.slice(name)?.freeze(false)
    }

    /// SIGKILLs every process of slice `name` at once (`cgroup.kill`, Linux 5.14+; no process
    /// can fork away during it).
    pub fn kill(&self, name: &str) -> Result<()> {
        let cg = self.slice(name)?;
        if cg.has("cgroup.kill") {
            self.guard_members("kill", name, &cg)?;
        }
        cg.kill()
    }

    /// Kills every process of slice `name` and waits until it is empty: `cgroup.kill` where the
    /// kernel has it (5.14+), else [`Manager::kill_by_signals`]. Refuses a slice holding pid 1
    /// or the agent. Returns how it was done (`cgroup.kill` or `freeze+SIGKILL`).
    pub fn kill_all(&self, name: &str, timeout: Duration) -> Result<&'static str> {
        let cg = self.slice(name)?;
        self.guard_members("kill", name, &cg)?;
        if cg.has("cgroup.kill") {
            cg.kill()?;
            self.wait_empty(name, timeout)?;
            return Ok("cgroup.kill");
        }
        self.kill_by_signals(name, timeout)
    }

    /// The sweep for kernels without `cgroup.kill` (before 5.14): freeze the slice (so nobody
    /// in it can fork), SIGKILL every pid in `cgroup.procs` (through pidfds), thaw, and again
    /// until the slice is empty or `timeout` passes. Frozen processes cannot fork or exit on
    /// their own, so the list read while frozen is complete and no pid in it can be reused
    /// before its signal. Without `cgroup.freeze` (before 5.2) it signals and rescans.
    pub fn kill_by_signals(&self, name: &str, timeout: Duration) -> Result<&'static str> {
        let cg = self.slice(name)?;
        let can_freeze = cg.has("cgroup.freeze");
        let start = std::time::Instant::now();
        loop {
            self.guard_members("kill", name, &cg)?;
            if can_freeze {
                cg.freeze(true)?;
                let left = timeout.saturating_sub(start.elapsed());
                // frozen, or already empty; a frozen-wait timeout still signals what is there
                cg.wait_events(left.min(Duration::from_secs(1)), |e| {
                    e.frozen || !e.populated
                })?;
            }
            let pids = cg.procs()?;
            for &pid in &pids {
                procs::sigkill(pid).map_err(|e| {
                    CgroupError::io(
                        "sending SIGKILL to a process of",
                        cg.file("cgroup.procs"),
                        e,
                    )
                })?;
            }
            if can_freeze {
                cg.freeze(false)?;
            }
            let left = timeout.saturating_sub(start.elapsed());
            let drained = pids.is_empty()
                || cg.wait_events(left.min(Duration::from_millis(200)), |e| !e.populated)?;
            if drained && cg.procs()?.is_empty() {
                return Ok(if can_freeze {
                    "freeze+SIGKILL"
                } else {
                    "SIGKILL sweep"
                });
            }
            if start.elapsed() >= timeout {
                return Err(self.busy(name, &cg));
            }
        }
    }

    /// Waits until `cgroup.events` shows `frozen` = `want`.
    pub fn wait_frozen(&self, name: &str, want: bool, timeout: Duration) -> Result<()> {
        let cg = self.slice(name)?;
        if cg.wait_events(timeout, |e| e.frozen == want)? {
            return Ok(());
        }
        Err(CgroupError::FreezeTimeout {
            name: name.to_string(),
            path: cg.file("cgroup.events"),
            want,
            waited_ms: timeout.as_millis() as u64,
        })
    }

    /// Waits until slice `name` has no processes (`populated 0`).
    pub fn wait_empty(&self, name: &str, timeout: Duration) -> Result<()> {
        let cg = self.slice(name)?;
        if cg.wait_events(timeout, |e| !e.populated)? {
            return Ok(());
        }
        Err(self.busy(name, &cg))
    }

    /// Statistics of slice `name`.
    pub fn stats(&self, name: &str) -> Result<SliceStats> {
        self.slice(name)?.stats()
    }
}

/// Restores `done` (file, old value) in reverse order. True when every restore worked.
fn rollback(cg: &Cgroup, done: &[(&'static str, String)]) -> bool {
    let mut ok = true;
    for (file, old) in done.iter().rev() {
        if let Err(e) = cg.write_raw(file, old) {
            log::error!(
                "cgroup: could not restore {:?} in {}: {e}",
                old,
                cg.file(file).display()
            );
            ok = false;
        }
    }
    ok
}

#[cfg(test)]
mod tests;

//! cgroup v2 as a library: procman's slices (leaf cgroups under one managed subtree), their
//! limits in systemd's vocabulary, process moves, freeze/thaw, kill, and stats. No tokio, no
//! global state; every call reads or writes cgroupfs afresh.
//!
//! # What this crate owns
//! - [`Cgroup`]: one reader/writer per cgroup directory, one method per interface file
//!   (`memory_max`/`set_memory_max`, `cpu_max`, `io_max`, `pids_max`, `procs`, `freeze`,
//!   `kill`, `memory_events`, `cpu_stat`, `io_stat`, `pressure`, `subtree_control`, ...).
//! - [`LimitKey`] and [`Limits`]: the limit keys (`MemoryMax`, `CPUQuota`, ...) and their
//!   values, parsed and range-checked with the accepted forms in every error, rendered into
//!   interface-file writes.
//! - [`Manager`]: the managed subtree: slices created or re-adopted, limits applied
//!   all-or-nothing, moves guarded against pid 1, kernel threads and the agent itself.
//! - [`Capabilities`]: which controllers this host offers the subtree, and why not.
//! - The parsers of the kernel's formats: mountinfo ([`Cgroup2Mount`]), `/proc/PID/cgroup`
//!   ([`parse_proc_cgroup`]), PSI ([`Pressure`]`::parse`, through [`ParseFile`]), cpu.stat,
//!   memory.events, io.stat. The statistics are the API's wire types
//!   ([`procman_common::api::SliceStats`] and its parts), so what the agent sends is what was
//!   parsed here.
//!
//! Human units (sizes, percentages) are parsed by [`procman_common::units`], the one parser
//! of them in procman; this crate adds what they mean for a limit (minimums, ranges).
//!
//! # Module order
//! Each module uses only those before it:
//! `key` (Controller, LimitKey) → `iface` (interface-file values: DevNum, Rate, CpuMax, IoMax)
//! → `name` (slice names) → `error` → `fs` (read/write helpers) → `mount` (finding cgroup2)
//! → `procs` (/proc and the guard) → `stats` (file parsers) → `cgroup` ([`Cgroup`]) →
//! `limits` ([`Limits`]: parse, render, serde, read back) → `capabilities` → `manager`.
//!
//! # Layout
//! ```text
//! <cgroup2 mount>/                         e.g. /sys/fs/cgroup (hybrid hosts: .../unified)
//!   procman.slice/                         managed root: no processes, controllers enabled
//!     cgroup.subtree_control  "+cpu +memory +io +pids" (those available)
//!     <slice>/                             one leaf per slice: processes + limits
//! ```
//! Slices are leaves (the no-internal-processes rule): processes live only in slices, and
//! slices have no children. The managed root's path below the mount is configurable. The
//! kernel is the source of truth: a restarted agent lists its slices from the filesystem
//! ([`Manager::list_slices`]), re-applies its config idempotently ([`Manager::ensure_slice`])
//! and never moves processes out or lifts limits when it stops (nothing happens on drop).
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
//! the default `procman.slice` directly under the mount root is used. The crate only ever
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
//! # Invalid input writes nothing
//! [`Manager::ensure_slice`]/[`Manager::update_slice`] parse and range-check every limit,
//! check that each needed controller and file is there, and only then write. If the kernel
//! still refuses a value midway, the files already written are restored to their old
//! contents, and a slice created by that call is removed again.
//!
//! # Why hand-written, not `cgroups-rs`
//! `cgroups-rs` 0.5.1 (the current release; builds with Rust 1.95) was evaluated and not
//! used:
//! - it cannot target a cgroup2 mount other than `/sys/fs/cgroup`: it decides v1 vs v2 by
//!   statfs on that hard-coded path, which is tmpfs on a hybrid host, so it falls back to v1
//!   and would drive the v1 hierarchies (forbidden here); its v2 root is a private field
//!   fixed to `/sys/fs/cgroup`, so the real mount (`/sys/fs/cgroup/unified`) is out of reach;
//! - creating a v2 cgroup writes `+<every controller>` into `cgroup.subtree_control` of the
//!   mount root and of every ancestor: it changes cgroups it does not own;
//! - it offers no directory fd for `clone3(CLONE_INTO_CGROUP)`, no degraded-mode reasons, no
//!   validation with the accepted forms, and no rollback of partial writes;
//! - it always pulls in zbus (systemd D-Bus), nix 0.25 and thiserror 1 beside ours.
//!
//! The cgroup2 interface is a handful of text files, so the code here is thin: read and write
//! them with one `write(2)` per value, validate everything first.
mod capabilities;
mod cgroup;
mod error;
pub mod fs;
mod iface;
mod key;
pub mod limits;
mod manager;
pub mod mount;
mod name;
pub mod procs;
pub mod stats;

pub use capabilities::{Availability, Capabilities};
pub use cgroup::{Cgroup, ProcsFile};
pub use error::{CgroupError, LimitError, Optional, Protected, Result};
pub use iface::{CpuMax, DevNum, IoMax, Rate};
pub use key::{Controller, LimitKey, UnknownKey};
pub use limits::{
    CpuQuota, DeviceSpec, FileWrite, IoLimit, Limits, Machine, MemoryValue, ResolveDevice,
    SysBlockDevices, TasksMax,
};
pub use manager::{Ensured, Manager, DEFAULT_ROOT};
pub use mount::{Cgroup2Mount, FavorDynmods};
pub use name::{validate_name, NameError, MAX_NAME_LEN};
pub use procman_common::api::{
    CpuStat, IoStat, MemoryEvents, MemoryStats, PidsStats, Pressure, PressureLine, PressureStats,
    SliceStats,
};
pub use procman_common::units::Percent;
pub use procs::parse_proc_cgroup;
pub use stats::{CgroupEvents, ParseFile, PressureKind};

#[cfg(test)]
mod tests {
    /// The module order in the crate docs holds: each module imports (`crate::m`) only
    /// modules before it.
    #[test]
    fn module_order_is_one_way() {
        const ORDER: [&str; 12] = [
            "key",
            "iface",
            "name",
            "error",
            "fs",
            "mount",
            "procs",
            "stats",
            "cgroup",
            "limits",
            "capabilities",
            "manager",
        ];
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        for (i, m) in ORDER.iter().enumerate() {
            let mut files = vec![src.join(format!("{m}.rs"))];
            if let Ok(rd) = std::fs::read_dir(src.join(m)) {
                files.extend(rd.map(|e| e.unwrap().path()));
            }
            for f in files.iter().filter(|f| f.exists()) {
                if f.file_name().is_some_and(|n| n == "tests.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(f).unwrap();
                for later in &ORDER[i + 1..] {
                    let pat = format!("crate::{later}");
                    let bad = text
                        .lines()
                        .filter(|l| !l.trim_start().starts_with("//"))
                        .any(|l| l.contains(&pat));
                    assert!(!bad, "{} uses {pat}, which comes after it", f.display());
                }
            }
        }
    }
}

//! Resource limits in systemd's vocabulary, parsed and range-checked before anything is
//! written, then rendered to cgroup2 interface-file writes.
//!
//! | key | cgroup file | accepted forms |
//! |---|---|---|
//! | `MemoryMax`, `MemoryHigh` | `memory.max`, `memory.high` | bytes `536870912`, `512M`, `2GiB`, `1.5G` (K/M/G/T are 1024-based, like systemd; KB/MB/GB/TB 1000-based), `50%` of physical memory, `max` (also `infinity`); at least 1M |
//! | `MemorySwapMax` | `memory.swap.max` | as above, `0` allowed |
//! | `CPUQuota` | `cpu.max` | `20%` of one CPU (`250%` = 2.5 CPUs), `50% of machine` (all online CPUs), `max`; period 100 ms |
//! | `CPUWeight` | `cpu.weight` | integer 1..=10000 (kernel default 100) |
//! | `IOReadBandwidthMax`, `IOWriteBandwidthMax` | `io.max` `rbps`/`wbps` | `"DEVICE RATE"`, DEVICE a block device path (`/dev/vda`) or `MAJ:MIN` (`254:0`), RATE bytes/s like `10M` or `max`; a list for several devices |
//! | `IOReadIOPSMax`, `IOWriteIOPSMax` | `io.max` `riops`/`wiops` | `"DEVICE IOPS"`, IOPS an integer, `K`/`M`/`G` suffixes 1000-based (like systemd: a count, not bytes), or `max` |
//! | `TasksMax` | `pids.max` | integer 1..=4194304, `10%` of the kernel's pid limit, `max` |
//!
//! Each value is parsed and range-checked by [`procman_common::limits`], the one parser of
//! limit values (the CLI checks its flags with it too); sizes and percentages inside them by
//! [`procman_common::units`].
//!
//! Limits are declarative: [`Limits::plan`] renders every file of the controllers it covers,
//! resetting keys that are absent to the kernel default (`max`, weight 100), so re-applying
//! the same config is idempotent and removing a key from the config lifts that one limit.
//!
//! Submodules: `parse` (the common parsers' errors as [`LimitError`]),
//! `render` (percentages and devices resolved into [`FileWrite`]s), `serde` (the config's
//! table form), `read` (what the kernel holds, back into [`Limits`]).
use std::collections::BTreeSet;
use std::fmt;

use crate::error::LimitError;
use crate::key::{Controller, LimitKey};

mod parse;
mod read;
mod render;
mod serde;
#[cfg(test)]
mod tests;

pub use parse::accepted_forms;
pub use render::{io_max_devices, FileWrite, Machine, ResolveDevice, SysBlockDevices};

pub use procman_common::limits::{
    CpuQuota, DeviceSpec, IoLimit, MemoryValue, TasksMax, CPU_PERIOD_US, DEFAULT_CPU_WEIGHT,
    MAX_CPU_WEIGHT, MAX_TASKS, MIN_IO_BANDWIDTH, MIN_MEMORY,
};

/// The limits of one slice. `None`/empty = not limited (the kernel default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory_max: Option<MemoryValue>,
    pub memory_high: Option<MemoryValue>,
    pub memory_swap_max: Option<MemoryValue>,
    pub cpu_quota: Option<CpuQuota>,
    pub cpu_weight: Option<u32>,
    pub io_read_bandwidth_max: Vec<IoLimit>,
    pub io_write_bandwidth_max: Vec<IoLimit>,
    pub io_read_iops_max: Vec<IoLimit>,
    pub io_write_iops_max: Vec<IoLimit>,
    pub tasks_max: Option<TasksMax>,
}

impl Limits {
    /// Sets `key` from its text value, systemd-run `-p KEY=VALUE` style. IO keys append (one
    /// entry per device). Nothing is changed when the value is invalid.
    pub fn set(&mut self, key: LimitKey, value: &str) -> Result<(), LimitError> {
        use LimitKey::*;
        match key {
            MemoryMax => self.memory_max = Some(parse::memory(key, value)?),
            MemoryHigh => self.memory_high = Some(parse::memory(key, value)?),
            MemorySwapMax => self.memory_swap_max = Some(parse::memory(key, value)?),
            CPUQuota => self.cpu_quota = Some(parse::cpu_quota(value)?),
            CPUWeight => self.cpu_weight = Some(parse::cpu_weight(value)?),
            TasksMax => self.tasks_max = Some(parse::tasks(value)?),
            IOReadBandwidthMax | IOWriteBandwidthMax | IOReadIOPSMax | IOWriteIOPSMax => {
                // one entry per device: setting a device again replaces its rate
                let entry = parse::io(key, value)?;
                let list = self.io_list_mut(key);
                list.retain(|e| e.device != entry.device);
                list.push(entry);
            }
        }
        Ok(())
    }

    /// [`Limits::set`] with the key as text (a config table, an API request): an unknown key
    /// is refused with the accepted keys and the nearest one.
    pub fn set_pair(&mut self, key: &str, value: &str) -> Result<(), LimitError> {
        let k = key
            .parse::<LimitKey>()
            .map_err(|e| LimitError::unknown(e, value))?;
        self.set(k, value)
    }

    /// Lifts `key` (all its devices, for an IO key).
    pub fn clear(&mut self, key: LimitKey) {
        use LimitKey::*;
        match key {
            MemoryMax => self.memory_max = None,
            MemoryHigh => self.memory_high = None,
            MemorySwapMax => self.memory_swap_max = None,
            CPUQuota => self.cpu_quota = None,
            CPUWeight => self.cpu_weight = None,
            TasksMax => self.tasks_max = None,
            IOReadBandwidthMax | IOWriteBandwidthMax | IOReadIOPSMax | IOWriteIOPSMax => {
                self.io_list_mut(key).clear()
            }
        }
    }

    /// Parses `KEY=VALUE` (systemd-run `-p` style).
    pub fn set_property(&mut self, prop: &str) -> Result<(), LimitError> {
        match prop.split_once('=') {
            Some((k, v)) => self.set_pair(k.trim(), v),
            None => Err(LimitError::NotAProperty {
                property: crate::key::shorten(prop, 128),
            }),
        }
    }

    /// Builds limits from `KEY=VALUE` properties.
    pub fn from_properties<'a>(
        props: impl IntoIterator<Item = &'a str>,
    ) -> Result<Limits, LimitError> {
        let mut l = Limits::default();
        for p in props {
            l.set_property(p)?;
        }
        Ok(l)
    }

    /// True when no key is set.
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// Re-checks every range (the fields are public, so a value built in code, not parsed,
    /// is checked here too). [`Limits::plan`] calls this first.
    pub fn validate(&self) -> Result<(), LimitError> {
        for (key, v) in [
            (LimitKey::MemoryMax, self.memory_max),
            (LimitKey::MemoryHigh, self.memory_high),
            (LimitKey::MemorySwapMax, self.memory_swap_max),
        ] {
            if let Some(v) = v {
                parse::check_memory(key, &parse::fmt_memory(v), v)?;
            }
        }
        if let Some(q) = self.cpu_quota {
            parse::check_cpu_quota(&parse::fmt_cpu_quota(q), q)?;
        }
        if let Some(w) = self.cpu_weight {
            parse::check_cpu_weight(&w.to_string(), w)?;
        }
        if let Some(t) = self.tasks_max {
            parse::check_tasks(&parse::fmt_tasks(t), t)?;
        }
        for (key, list) in self.io_lists() {
            for l in list {
                parse::check_io(key, &parse::fmt_io(key, l), l)?;
            }
        }
        Ok(())
    }

    pub(crate) fn io_lists(&self) -> [(LimitKey, &Vec<IoLimit>); 4] {
        [
            (LimitKey::IOReadBandwidthMax, &self.io_read_bandwidth_max),
            (LimitKey::IOWriteBandwidthMax, &self.io_write_bandwidth_max),
            (LimitKey::IOReadIOPSMax, &self.io_read_iops_max),
            (LimitKey::IOWriteIOPSMax, &self.io_write_iops_max),
        ]
    }

    fn io_list_mut(&mut self, key: LimitKey) -> &mut Vec<IoLimit> {
        match key {
            LimitKey::IOReadBandwidthMax => &mut self.io_read_bandwidth_max,
            LimitKey::IOWriteBandwidthMax => &mut self.io_write_bandwidth_max,
            LimitKey::IOReadIOPSMax => &mut self.io_read_iops_max,
            _ => &mut self.io_write_iops_max,
        }
    }

    /// The keys that are set, with their values as text, in print order (an IO key once per
    /// device).
    pub fn entries(&self) -> Vec<(LimitKey, String)> {
        let mut out = Vec::new();
        let mem = [
            (LimitKey::MemoryMax, self.memory_max),
            (LimitKey::MemoryHigh, self.memory_high),
            (LimitKey::MemorySwapMax, self.memory_swap_max),
        ];
        for (k, v) in mem {
            if let Some(v) = v {
                out.push((k, parse::fmt_memory(v)));
            }
        }
        if let Some(q) = self.cpu_quota {
            out.push((LimitKey::CPUQuota, parse::fmt_cpu_quota(q)));
        }
        if let Some(w) = self.cpu_weight {
            out.push((LimitKey::CPUWeight, w.to_string()));
        }
        for (k, list) in self.io_lists() {
            for l in list {
                out.push((k, parse::fmt_io(k, l)));
            }
        }
        if let Some(t) = self.tasks_max {
            out.push((LimitKey::TasksMax, parse::fmt_tasks(t)));
        }
        out
    }

    /// Controllers the set keys need.
    pub fn controllers(&self) -> BTreeSet<Controller> {
        self.entries()
            .into_iter()
            .map(|(k, _)| k.controller())
            .collect()
    }
}

impl fmt::Display for Limits {
    /// `MemoryMax=512M CPUQuota=20%` (systemd property style; `(none)` when empty).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.entries();
        if e.is_empty() {
            return f.write_str("(none)");
        }
        for (i, (k, v)) in e.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            if v.contains(' ') {
                write!(f, "{k}=\"{v}\"")?;
            } else {
                write!(f, "{k}={v}")?;
            }
        }
        Ok(())
    }
}

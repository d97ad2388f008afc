//! Rendering [`Limits`] into interface-file writes: percentages resolved against the machine,
//! devices resolved to whole-disk numbers, one `io.max` line per device.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use procman_common::units::fmt_bytes;

use super::parse::{fmt_cpu_quota, fmt_io, fmt_memory, fmt_tasks, lerr, quota_us};
use super::{CpuQuota, DeviceSpec, Limits, MemoryValue, TasksMax};
use super::{CPU_PERIOD_US, DEFAULT_CPU_WEIGHT, MAX_TASKS, MIN_MEMORY};
use crate::error::{CgroupError, LimitError};
use crate::fs::read_string;
use crate::iface::{fmt_max, CpuMax, DevNum, IoMax};
use crate::key::{Controller, LimitKey};

/// Facts about the machine that percentages resolve against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    /// MemTotal in bytes.
    pub mem_total: u64,
    /// Online CPUs.
    pub cpus: u32,
    /// The system-wide task limit: min(kernel.pid_max, kernel.threads-max).
    pub pid_max: u64,
}

impl Machine {
    /// Reads /proc/meminfo, sysconf(_SC_NPROCESSORS_ONLN), /proc/sys/kernel/{pid_max,threads-max}.
    pub fn detect() -> Result<Machine, CgroupError> {
        let meminfo = Path::new("/proc/meminfo");
        let text = read_string(meminfo)?;
        let mem_total = text
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .ok_or_else(|| CgroupError::Malformed {
                path: meminfo.into(),
                detail: "no `MemTotal: N kB` line".into(),
            })?;
        // SAFETY: sysconf has no memory-safety preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        let cpus = u32::try_from(n).ok().filter(|n| *n > 0).unwrap_or(1);
        let read_num = |p: &str| -> Result<u64, CgroupError> {
            let s = read_string(Path::new(p))?;
            s.trim().parse().map_err(|_| CgroupError::Malformed {
                path: p.into(),
                detail: format!("{:?} is not a number", s.trim()),
            })
        };
        let pid_max =
            read_num("/proc/sys/kernel/pid_max")?.min(read_num("/proc/sys/kernel/threads-max")?);
        Ok(Machine {
            mem_total,
            cpus,
            pid_max,
        })
    }
}

/// Turns a [`DeviceSpec`] into a whole-disk device number. `Err` is the problem, in words.
pub trait ResolveDevice {
    fn resolve(&self, dev: &DeviceSpec) -> Result<DevNum, String>;
}

/// The real resolver: stat(2) for paths, /sys/dev/block for numbers; refuses partitions
/// (the kernel applies io.max to whole disks only).
#[derive(Debug, Clone)]
pub struct SysBlockDevices {
    /// Usually `/sys`.
    pub sys: PathBuf,
}

impl Default for SysBlockDevices {
    fn default() -> Self {
        SysBlockDevices { sys: "/sys".into() }
    }
}

impl ResolveDevice for SysBlockDevices {
    fn resolve(&self, dev: &DeviceSpec) -> Result<DevNum, String> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let n = match dev {
            DeviceSpec::Number(n) => *n,
            DeviceSpec::Path(p) => {
                let md = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
                if !md.file_type().is_block_device() {
                    return Err(format!("{} is not a block device", p.display()));
                }
                let rdev = md.rdev();
                DevNum {
                    major: libc::major(rdev),
                    minor: libc::minor(rdev),
                }
            }
        };
        let sysdir = self.sys.join(format!("dev/block/{n}"));
        if !sysdir.exists() {
            return Err(format!(
                "no block device {n} ({} is missing)",
                sysdir.display()
            ));
        }
        if sysdir.join("partition").exists() {
            return Err(format!(
                "{dev} ({n}) is a partition; io.max applies to whole disks: name the disk"
            ));
        }
        Ok(n)
    }
}

/// One cgroup interface-file write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileWrite {
    pub controller: Controller,
    /// The interface file, relative to the cgroup directory.
    pub file: &'static str,
    pub value: String,
    /// The key and user value this write comes from (for `io.max`, the first key, with the
    /// values of every key on that device); `None` for a reset of an absent key to the
    /// kernel default.
    pub from: Option<(LimitKey, String)>,
}

/// The `io.max` line of one device and the entries it came from.
type IoLine = (IoMax, Vec<(LimitKey, String)>);

/// Renders `io.max` lines: one per device, all four keys on it (absent ones `max`).
fn io_lines(
    l: &Limits,
    devices: &dyn ResolveDevice,
) -> Result<BTreeMap<DevNum, IoLine>, LimitError> {
    let mut out: BTreeMap<DevNum, IoLine> = BTreeMap::new();
    for (key, list) in l.io_lists() {
        for e in list {
            let text = fmt_io(key, e);
            let n = devices
                .resolve(&e.device)
                .map_err(|p| lerr(key, &text, p))?;
            let (line, from) = out
                .entry(n)
                .or_insert_with(|| (IoMax::unlimited(n), Vec::new()));
            if from.iter().any(|(k, _)| *k == key) {
                return Err(lerr(
                    key,
                    &text,
                    format!("device {n} is limited twice by {key}"),
                ));
            }
            let slot = match key {
                LimitKey::IOReadBandwidthMax => &mut line.rbps,
                LimitKey::IOWriteBandwidthMax => &mut line.wbps,
                LimitKey::IOReadIOPSMax => &mut line.riops,
                _ => &mut line.wiops,
            };
            *slot = e.rate;
            from.push((key, text));
        }
    }
    Ok(out)
}

/// Devices that have an `io.max` entry in `current` (the file's text).
pub fn io_max_devices(current: &str) -> BTreeSet<DevNum> {
    current
        .lines()
        .filter_map(|l| l.split_whitespace().next().and_then(DevNum::parse))
        .collect()
}

impl Limits {
    /// Validates, resolves percentages and devices, and renders the full set of writes for
    /// the four controllers (absent keys reset to the kernel default). Pure apart from the
    /// device resolver; writes nothing. IO resets for devices no longer limited are added by
    /// the caller, which knows the current `io.max` ([`io_max_devices`]).
    pub fn plan(
        &self,
        machine: &Machine,
        devices: &dyn ResolveDevice,
    ) -> Result<Vec<FileWrite>, LimitError> {
        self.validate()?;
        let mut w = Vec::new();
        let mem = |key: LimitKey, v: Option<MemoryValue>| -> Result<Option<u64>, LimitError> {
            Ok(match v {
                None | Some(MemoryValue::Max) => None,
                Some(MemoryValue::Bytes(b)) => Some(b),
                Some(MemoryValue::Percent(p)) => {
                    let b = p.of(machine.mem_total);
                    if key != LimitKey::MemorySwapMax && b < MIN_MEMORY {
                        return Err(lerr(
                            key,
                            &p.to_string(),
                            format!(
                                "{p} of {} is {b} bytes, below 1M",
                                fmt_bytes(machine.mem_total)
                            ),
                        ));
                    }
                    Some(b)
                }
            })
        };
        for (key, v) in [
            (LimitKey::MemoryMax, self.memory_max),
            (LimitKey::MemoryHigh, self.memory_high),
            (LimitKey::MemorySwapMax, self.memory_swap_max),
        ] {
            w.push(FileWrite {
                controller: Controller::Memory,
                file: key.file(),
                value: fmt_max(mem(key, v)?),
                from: v.map(|v| (key, fmt_memory(v))),
            });
        }
        let quota = match self.cpu_quota {
            None | Some(CpuQuota::Max) => None,
            Some(CpuQuota::OneCpu(p)) => Some(quota_us(p, 1)),
            Some(CpuQuota::Machine(p)) => Some(quota_us(p, machine.cpus)),
        };
        w.push(FileWrite {
            controller: Controller::Cpu,
            file: LimitKey::CPUQuota.file(),
            value: CpuMax {
                quota_us: quota,
                period_us: CPU_PERIOD_US,
            }
            .to_string(),
            from: self
                .cpu_quota
                .map(|q| (LimitKey::CPUQuota, fmt_cpu_quota(q))),
        });
        w.push(FileWrite {
            controller: Controller::Cpu,
            file: LimitKey::CPUWeight.file(),
            value: self.cpu_weight.unwrap_or(DEFAULT_CPU_WEIGHT).to_string(),
            from: self
                .cpu_weight
                .map(|v| (LimitKey::CPUWeight, v.to_string())),
        });
        let tasks = match self.tasks_max {
            None | Some(TasksMax::Max) => None,
            Some(TasksMax::Count(n)) => Some(n),
            Some(TasksMax::Percent(p)) => Some(p.of(machine.pid_max).clamp(1, MAX_TASKS)),
        };
        w.push(FileWrite {
            controller: Controller::Pids,
            file: LimitKey::TasksMax.file(),
            value: fmt_max(tasks),
            from: self.tasks_max.map(|t| (LimitKey::TasksMax, fmt_tasks(t))),
        });
        for (_, (line, from)) in io_lines(self, devices)? {
            let key = from[0].0;
            let text = from
                .iter()
                .map(|(_, t)| t.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            w.push(FileWrite {
                controller: Controller::Io,
                file: "io.max",
                value: line.to_string(),
                from: Some((key, text)),
            });
        }
        Ok(w)
    }
}

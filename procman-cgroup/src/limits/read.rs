//! What the kernel holds, back into [`Limits`]: for `show`, and to see what a restarted
//! agent adopted.
use procman_common::units::Percent;

use super::{CpuQuota, DeviceSpec, IoLimit, Limits, MemoryValue, TasksMax, DEFAULT_CPU_WEIGHT};
use crate::cgroup::Cgroup;
use crate::error::{Optional, Result};
use crate::iface::Rate;
use crate::key::LimitKey;

impl Limits {
    /// Reads the limits held in cgroup `cg`. Files of controllers that are off are skipped;
    /// `max` and the default weight read as "not set"; `cpu.max` reads as a one-CPU
    /// percentage.
    pub fn read_from(cg: &Cgroup) -> Result<Limits> {
        let mut l = Limits::default();
        let bytes = |v: Option<u64>| v.map(MemoryValue::Bytes);
        if let Some(v) = cg.memory_max().optional()? {
            l.memory_max = bytes(v);
        }
        if let Some(v) = cg.memory_high().optional()? {
            l.memory_high = bytes(v);
        }
        if let Some(v) = cg.memory_swap_max().optional()? {
            l.memory_swap_max = bytes(v);
        }
        if let Some(c) = cg.cpu_max().optional()? {
            if let Some(q) = c.quota_us {
                let centi = u128::from(q) * 10_000 / u128::from(c.period_us);
                let centi = u32::try_from(centi).unwrap_or(u32::MAX);
                l.cpu_quota = Some(CpuQuota::OneCpu(Percent(centi)));
            }
        }
        if let Some(w) = cg.cpu_weight().optional()? {
            if w != DEFAULT_CPU_WEIGHT {
                l.cpu_weight = Some(w);
            }
        }
        if let Some(Some(n)) = cg.pids_max().optional()? {
            l.tasks_max = Some(TasksMax::Count(n));
        }
        for line in cg.io_max().optional()?.unwrap_or_default() {
            let keys = [
                LimitKey::IOReadBandwidthMax,
                LimitKey::IOWriteBandwidthMax,
                LimitKey::IOReadIOPSMax,
                LimitKey::IOWriteIOPSMax,
            ];
            for (key, rate) in keys.into_iter().zip(line.rates()) {
                if let Rate::Value(_) = rate {
                    l.io_list_mut(key).push(IoLimit {
                        device: DeviceSpec::Number(line.device),
                        rate,
                    });
                }
            }
        }
        Ok(l)
    }
}

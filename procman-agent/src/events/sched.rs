//! The opt-in scheduling tracer (`events.sched_stats = true`): `procman-ebpf`'s sched object,
//! whose `sched_switch` / `sched_wakeup` programs keep per-process run-queue wait and the
//! longest single wait in a BPF map (the agent uses the longest wait; totals come from the
//! sampler).
//!
//! Off by default because it runs on every context switch of the machine; the sampler reads
//! the kernel's own `sched_info` accounting instead. Its own object: a kernel that cannot load
//! it (task storage needs 5.11+) keeps event capture and sampling, and says why.
use super::bpf::{attach_tracepoints, explain, preflight};
use anyhow::{Context, Result};
use aya::{
    maps::{HashMap as BpfHashMap, MapData},
    Btf, Ebpf, EbpfLoader,
};
use procman_common::abi;

/// `struct pm_sched_stat` as a map value (aya's Pod is implemented here because the type
/// lives in procman-common, which does not depend on aya).
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct SchedStatValue(pub abi::PmSchedStat);

// SAFETY: repr(C) struct of four u64, no padding; every bit pattern is valid.
unsafe impl aya::Pod for SchedStatValue {}

/// The attached tracer: reads its per-process totals. Dropping it detaches the programs.
pub struct SchedReader {
    map: std::sync::Mutex<BpfHashMap<MapData, u32, SchedStatValue>>,
    _ebpf: std::sync::Mutex<Ebpf>,
}

impl SchedReader {
    /// Loads and attaches the tracer.
    pub fn start() -> Result<SchedReader> {
        Self::load().map_err(explain)
    }

    fn load() -> Result<SchedReader> {
        preflight()?;
        let btf = Btf::from_sys_fs().context("reading kernel BTF")?;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            // task_ts is task-local storage, which aya 0.14 has no Rust type for; only the
            // kernel side uses it
            .allow_unsupported_maps()
            .load(procman_ebpf::SCHED_OBJECT)
            .context("loading the scheduling tracer's BPF object")?;
        attach_tracepoints(&mut ebpf, procman_ebpf::SCHED_PROGRAMS, &btf)?;
        let map = BpfHashMap::try_from(
            ebpf.take_map("sched_stats")
                .context("map sched_stats missing")?,
        )?;
        Ok(SchedReader {
            map: std::sync::Mutex::new(map),
            _ebpf: std::sync::Mutex::new(ebpf),
        })
    }

    /// Totals of process `tgid` (None when it has not been scheduled since the agent started).
    pub fn get(&self, tgid: u32) -> Option<abi::PmSchedStat> {
        let map = self.map.lock().ok()?;
        map.get(&tgid, 0).ok().map(|v| v.0)
    }
}

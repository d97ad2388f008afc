//! The BPF event source: loads `procman-ebpf`'s object, attaches the three BTF tracepoints and
//! drains the ring buffer from a tokio task.
//!
//! The reader wakes on the ring's epoll readiness (the kernel side batches wakeups) and on a
//! timer (`poll_interval`), so batched records wait at most one interval. After each timer poll
//! it reads the per-CPU counters; any increase of the drop counter is reported as
//! [`SourceMsg::Lost`] so the consumer resynchronises.
use super::{SourceCounters, SourceInfo, SourceMsg, SourceOptions};
use crate::hold::{self, Holds};
use anyhow::{anyhow, bail, Context, Result};
use aya::{
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::BtfTracePoint,
    Btf, Ebpf, EbpfLoader,
};
use procman_common::{
    abi::{self, PmEvent},
    api::{Comm, EventKind, ProcEvent, SourceKind},
};
use std::{
    path::Path,
    sync::{atomic::Ordering, Arc},
};
use tokio::{io::unix::AsyncFd, sync::mpsc};

const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

/// Decodes one ring-buffer record.
pub fn decode(e: &PmEvent) -> Option<ProcEvent> {
    let kind = match e.kind {
        abi::PM_EV_FORK => EventKind::Fork,
        abi::PM_EV_EXEC => EventKind::Exec,
        abi::PM_EV_EXIT => EventKind::Exit,
        _ => return None,
    };
    let (exit_code, exit_signal) = if kind == EventKind::Exit {
        ProcEvent::split_status(e.exit_code)
    } else {
        (None, None)
    };
    let filename = (kind == EventKind::Exec).then(|| abi::cstr_lossy(&e.filename).into());
    Some(ProcEvent {
        kind,
        ts_ns: e.ts_ns,
        pid: e.tgid,
        tid: e.pid,
        ppid: e.ppid,
        uid: e.uid,
        gid: e.gid,
        cgroup_id: e.cgroup_id,
        start_ns: e.start_ns,
        comm: Comm::from_bytes(&e.comm),
        filename,
        exit_code,
        exit_signal,
        thread: e.flags & abi::PM_F_THREAD != 0,
        held: e.flags & abi::PM_F_HELD != 0,
    })
}

/// Why BPF cannot work here, checked before loading so the message names the real cause.
pub(crate) fn preflight() -> Result<()> {
    if !Path::new(BTF_PATH).exists() {
        bail!(
            "the kernel exposes no BTF ({BTF_PATH} is missing; a kernel built with \
             CONFIG_DEBUG_INFO_BTF=y, 5.8 or newer, is needed for BTF tracepoints)"
        );
    }
    Ok(())
}

/// Rewrites a load error into one sentence about its cause.
pub(crate) fn explain(err: anyhow::Error) -> anyhow::Error {
    let text = format!("{err:#}");
    // EPERM is a missing privilege; EACCES from BPF_PROG_LOAD is the verifier rejecting a
    // program, which is a bug (or an unsupported kernel), not a permission problem.
    let eperm = err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.raw_os_error() == Some(libc::EPERM))
    }) || text.contains("Operation not permitted");
    if eperm {
        let euid = nix::unistd::geteuid();
        return anyhow!(
            "the kernel refused to load BPF programs (permission denied; running as uid {euid}: \
             run procman-agent as root or with CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE)"
        );
    }
    if text.contains("Verifier output") || text.contains("verifier") {
        // keep the verifier's conclusion (its last lines), not the whole instruction dump
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(12)..].join("\n");
        return anyhow!(
            "the kernel's BPF verifier rejected a procman program (kernel {}); please report \
             this with the output below:\n{tail}",
            nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default()
        );
    }
    err
}

fn load(opts: &SourceOptions) -> Result<(Ebpf, Btf)> {
    preflight()?;
    let btf = Btf::from_sys_fs().with_context(|| format!("reading kernel BTF from {BTF_PATH}"))?;
    let threads: u8 = opts.threads.into();
    let wakeup_bytes: u64 = u64::from(opts.wakeup_batch.max(1)) * PmEvent::SIZE as u64;
    let mut ebpf = EbpfLoader::new()
        .btf(Some(&btf))
        .override_global("emit_threads", &threads, true)
        .override_global("wakeup_bytes", &wakeup_bytes, true)
        .override_global("agent_tgid", &std::process::id(), true)
        .map_max_entries("events", opts.ring_bytes)
        .load(procman_ebpf::OBJECT)
        .context("loading the BPF object")?;
    attach_tracepoints(&mut ebpf, procman_ebpf::PROGRAMS, &btf)?;
    Ok((ebpf, btf))
}

/// Loads and attaches the BPF programs and spawns the ring reader.
pub fn start(opts: &SourceOptions, tx: mpsc::Sender<SourceMsg>) -> Result<SourceInfo> {
    let (mut ebpf, _btf) = load(opts).map_err(explain)?;
    let comms = Arc::new(CommFilters::take(&mut ebpf)?);
    let hold = match Holds::attach(&mut ebpf, &opts.instance) {
        Ok(h) => {
            let h = Arc::new(h);
            h.start_watchdog()?;
            hold::Support::Active(h)
        }
        Err(e) => hold::Support::Off(format!("{e:#}")),
    };
    let ring = RingBuf::try_from(ebpf.take_map("events").context("map events missing")?)?;
    let counters_map: PerCpuArray<MapData, u64> =
        PerCpuArray::try_from(ebpf.take_map("counters").context("map counters missing")?)?;
    let counters = Arc::new(SourceCounters::default());
    // SAFETY: the RingBuf owns the map fd and lives inside the AsyncFd, so the fd stays open
    // for as long as it is registered.
    let afd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| {
            anyhow!(
                "registering the ring buffer with tokio: {}",
                e.into_parts().1
            )
        })?;
    tokio::spawn(reader(
        afd,
        counters_map,
        counters.clone(),
        opts.poll_interval,
        tx,
    ));
    // The Ebpf object owns the program links: keep it alive as long as the source is.
    let mut info = SourceInfo::new(
        SourceKind::Bpf,
        counters,
        Box::new(std::sync::Mutex::new(ebpf)),
    );
    info.exec = super::ExecControl {
        comms: Some(comms),
        hold,
    };
    Ok(info)
}

/// The exec program's comm filters: `urgent_comms` (wake the reader at once) and `hold_comms`
/// (hold until placed), replaced as a whole from the rules.
pub struct CommFilters {
    urgent: std::sync::Mutex<BpfHashMap<MapData, [u8; 16], u8>>,
    hold: std::sync::Mutex<BpfHashMap<MapData, [u8; 16], u8>>,
}

impl CommFilters {
    fn take(ebpf: &mut Ebpf) -> Result<CommFilters> {
        let mut map = |name: &str| -> Result<_> {
            let m = ebpf
                .take_map(name)
                .with_context(|| format!("map {name} missing"))?;
            Ok(std::sync::Mutex::new(BpfHashMap::try_from(m)?))
        };
        Ok(CommFilters {
            urgent: map("urgent_comms")?,
            hold: map("hold_comms")?,
        })
    }

    /// Makes `urgent` and `hold` the names in the two maps.
    pub fn set(&self, urgent: &[String], hold: &[String]) -> Result<()> {
        for (map, names, what) in [
            (&self.urgent, urgent, "urgent_comms"),
            (&self.hold, hold, "hold_comms"),
        ] {
            let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
            let new: Vec<[u8; 16]> = names.iter().map(|n| comm_key(n)).collect();
            let old: Vec<[u8; 16]> = map.keys().filter_map(|k| k.ok()).collect();
            for k in old.iter().filter(|k| !new.contains(k)) {
                let _ = map.remove(k);
            }
            for (k, n) in new.iter().zip(names) {
                map.insert(k, 1, 0)
                    .with_context(|| format!("adding {n:?} to {what}"))?;
            }
        }
        Ok(())
    }
}

/// A comm name as the BPF maps key it (NUL-padded, at most 15 bytes).
fn comm_key(name: &str) -> [u8; 16] {
    let mut key = [0u8; 16];
    let n = name.len().min(15);
    key[..n].copy_from_slice(&name.as_bytes()[..n]);
    key
}

fn sum_counter(map: &PerCpuArray<MapData, u64>, idx: u32) -> u64 {
    map.get(&idx, 0).map(|v| v.iter().sum()).unwrap_or(0)
}

/// Moves every pending record into `batch`.
fn drain(ring: &mut RingBuf<MapData>, batch: &mut Vec<ProcEvent>) {
    while let Some(item) = ring.next() {
        if let Some(ev) = PmEvent::from_bytes(&item).as_ref().and_then(decode) {
            batch.push(ev);
        }
    }
}

async fn reader(
    mut afd: AsyncFd<RingBuf<MapData>>,
    counters_map: PerCpuArray<MapData, u64>,
    counters: Arc<SourceCounters>,
    poll: std::time::Duration,
    tx: mpsc::Sender<SourceMsg>,
) {
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(1024);
    let mut seen_dropped = 0u64;
    loop {
        let timer = tokio::select! {
            r = afd.readable_mut() => {
                match r {
                    Ok(mut guard) => {
                        drain(guard.get_inner_mut(), &mut batch);
                        guard.clear_ready();
                    }
                    Err(e) => {
                        log::error!("ring buffer poll failed: {e}; stopping the BPF reader");
                        return;
                    }
                }
                false
            }
            _ = tick.tick() => {
                drain(afd.get_mut(), &mut batch);
                true
            }
        };
        for ev in batch.drain(..) {
            if tx.send(SourceMsg::Event(ev)).await.is_err() {
                return; // the consumer is gone: the agent is shutting down
            }
        }
        if timer {
            let dropped = sum_counter(&counters_map, abi::PM_CNT_DROPPED);
            counters.kernel_submitted.store(
                sum_counter(&counters_map, abi::PM_CNT_SUBMITTED),
                Ordering::Relaxed,
            );
            counters.dropped.store(dropped, Ordering::Relaxed);
            if dropped > seen_dropped {
                let lost = dropped - seen_dropped;
                seen_dropped = dropped;
                if tx.send(SourceMsg::Lost(lost)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Loads and attaches `(program, tp_btf tracepoint)` pairs of a loaded object; an error
/// names the program and the tracepoint.
pub(super) fn attach_tracepoints(
    ebpf: &mut Ebpf,
    programs: &[(&str, &str)],
    btf: &Btf,
) -> Result<()> {
    for (prog, tp) in programs {
        let p: &mut BtfTracePoint = ebpf
            .program_mut(prog)
            .with_context(|| format!("BPF program {prog} missing from the object"))?
            .try_into()?;
        p.load(tp, btf)
            .with_context(|| format!("loading {prog} for tp_btf/{tp}"))?;
        p.attach()
            .with_context(|| format!("attaching {prog} to tp_btf/{tp}"))?;
    }
    Ok(())
}

//! The compiled BPF object (see `src/procman.bpf.c`), embedded with 8-byte alignment so the
//! ELF parser can read it in place.

/// The BPF ELF object: programs `handle_fork`, `handle_exec`, `handle_exit`; maps `events`
/// (ring buffer), `counters` (per-CPU u64: submitted, dropped), `urgent_comms` (hash).
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/procman.bpf.o"));

/// Program names as aya sees them (the C function names) and the tracepoint each attaches to.
pub const PROGRAMS: &[(&str, &str)] = &[
    ("handle_fork", "sched_process_fork"),
    ("handle_exec", "sched_process_exec"),
    ("handle_exit", "sched_process_exit"),
];

/// The scheduling-statistics programs (optional: `events.sched_stats`), which fill the
/// `sched_stats` map (per-process on-CPU time and run-queue wait).
pub const SCHED_PROGRAMS: &[(&str, &str)] = &[
    ("handle_wakeup", "sched_wakeup"),
    ("handle_wakeup_new", "sched_wakeup_new"),
    ("handle_switch", "sched_switch"),
];

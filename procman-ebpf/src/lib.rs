//! The compiled BPF objects, embedded with 8-byte alignment so the ELF parser can read them in
//! place. One object per feature, so that a kernel lacking one still loads the others.

/// Event capture (`src/procman.bpf.c`): programs `handle_fork`, `handle_exec`, `handle_exit`;
/// maps `events` (ring buffer), `counters` (per-CPU u64: submitted, dropped, held, hold_full),
/// `urgent_comms` and `hold_comms` (hash, by comm), `held` (hash, tgid -> `struct pm_hold`:
/// tasks stopped at exec, pinned by the agent). Needs BTF tracepoints and the BPF ring buffer
/// (5.8+); holding uses `bpf_send_signal` (5.3+).
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/procman.bpf.o"));

/// Program names as aya sees them (the C function names) and the tracepoint each attaches to.
pub const PROGRAMS: &[(&str, &str)] = &[
    ("handle_fork", "sched_process_fork"),
    ("handle_exec", "sched_process_exec"),
    ("handle_exit", "sched_process_exit"),
];

/// The optional scheduling tracer (`src/sched.bpf.c`, `events.sched_stats`): fills the
/// `sched_stats` map (per-process on-CPU time, run-queue wait, longest wait) from every context
/// switch. Needs task storage (5.11+).
pub static SCHED_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sched.bpf.o"));

/// The scheduling tracer's programs and their tracepoints.
pub const SCHED_PROGRAMS: &[(&str, &str)] = &[
    ("handle_wakeup", "sched_wakeup"),
    ("handle_wakeup_new", "sched_wakeup_new"),
    ("handle_switch", "sched_switch"),
];

/// The sampler's task iterator (`src/sampler.bpf.c`): programs `sample_all` (every process)
/// and `sample_changed` (only processes whose usage changed since they were last reported),
/// both `iter/task`, writing `struct pm_task_sample` records; map `last_seen` (task storage).
/// Needs BPF iterators (5.8+) and task storage in tracing programs (5.11+).
pub static SAMPLER_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sampler.bpf.o"));

/// The sampler's programs: a full sweep and a sweep of changed processes only.
pub const SAMPLER_ALL: &str = "sample_all";
pub const SAMPLER_CHANGED: &str = "sample_changed";

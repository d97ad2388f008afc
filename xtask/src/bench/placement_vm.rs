//! The VM half of `cargo xtask bench placement`: the same exec-time placement workload,
//! placed once by procman and once by libcgroup's `cgrulesengd` (Debian `cgroup-tools`,
//! one equivalent rule), in one run of the cgroup v2 test VM.
//!
//! Both daemons are measured the same way, by the kernel (tracefs, `mono` clock): per exec'd
//! process, the `sched:sched_process_exec` tracepoint, a kprobe on `cgroup_procs_write` (the
//! daemon starts the move: its reaction time) and the `cgroup:cgroup_attach_task` tracepoint
//! (the kernel finished the move). On Debian's 6.1/6.12 kernels the move itself costs an RCU
//! grace period (`cgroup_threadgroup_rwsem`, ~17 ms under TCG), which no user-space daemon can
//! shorten, so the table shows reaction and move separately.
//!
//! Escapes are counted by the workload itself: every process of it (the exec'd parent and the
//! children it forks right after exec, half of which exec another program, `pmb-kid`, at once:
//! the launcher pattern) reads `/proc/self/cgroup` after `--hold-ms` and reports where it is.
//!
//! Pieces: [`host`] compiles the workload (`pmb_work.c`, one small C program under two names),
//! boots the VM and prints the table; inside the VM, `cargo xtask`'s hidden `bench-guest`
//! subcommand runs [`guest`].
//!
//! Besides latency and escapes, each run reports the daemon's CPU time per placement
//! (utime+stime of the daemon over the run, divided by the exec'd processes it placed) and
//! the CPU time each placed process ran outside its target before the move: the sum of the
//! `sched:sched_stat_runtime` records of that pid between its exec and its attach (the
//! scheduler emits one whenever it accounts a task's run time: at every tick, switch-out and
//! at a cpu-controller move itself, so time run up to the attach is counted and time after it
//! is not; a task running through the move is cut at the move).
//!
//! procman runs in one or more named [`AgentMode`]s (a mode is an agent-config variant:
//! `[cgroup]` and `[[rule]]` keys added to the same rule), so a new placement strategy is one
//! more entry in [`AGENT_MODES`].
use super::{api_get, RunningAgent};
use crate::{deps, vm};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// One way of running procman in `bench placement`: a name for the tables and what it adds
/// to the agent's config (the same slice and rule otherwise).
#[derive(Clone, Copy, Debug)]
pub struct AgentMode {
    pub name: &'static str,
    /// Lines added to `[cgroup]`.
    pub cgroup: &'static str,
    /// Lines added to the `[[rule]]`.
    pub rule: &'static str,
}

/// The modes every `bench placement` run measures, in this order (the host and each VM mount).
pub const AGENT_MODES: &[AgentMode] = &[
    AgentMode {
        name: "reactive",
        cgroup: "",
        rule: "hold = \"never\"",
    },
    AgentMode {
        name: "hold",
        cgroup: "",
        rule: "hold = \"auto\"",
    },
];

impl AgentMode {
    /// Whether the mode needs hold-at-exec (and is pointless where the agent reports it off).
    pub fn holds(&self) -> bool {
        self.rule.contains("hold = \"auto\"")
    }
}

/// The agent's config for one mode: managed root `root`, one slice `bench`, one rule on the
/// workload's comm. `favordynmods`: the `[cgroup] favordynmods` value (`on` in the VM's
/// favordynmods runs, where the agent remounts itself; never on the host).
pub fn agent_config(root: &str, favordynmods: &str, mode: &AgentMode) -> String {
    format!(
        "[cgroup]\nroot = \"{root}\"\nfavordynmods = \"{favordynmods}\"\n{}\n\
         [[slice]]\nname = \"bench\"\n\
         [[rule]]\ncomm = \"{WORKLOAD}\"\nslice = \"bench\"\n{}\n",
        mode.cgroup, mode.rule
    )
}

/// utime + stime of process `pid` (all its threads, live and exited), seconds.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// utime + stime per thread name of process `pid` (threads alive now), seconds.
pub fn thread_cpu_secs(pid: u32) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    for e in rd.flatten() {
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map(|x| x.1).unwrap_or("?").to_string();
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0.0);
        *out.entry(name).or_insert(0.0) += ticks / hz;
    }
    out
}

/// A daemon's CPU over a run: its idle rate measured just before (same process, no
/// workload), the run's total, and per thread name (threads alive at both ends).
#[derive(Default, Debug, Clone)]
pub struct DaemonCpu {
    pub idle_per_s: f64,
    pub run_s: f64,
    pub run_secs: f64,
    pub threads: HashMap<String, f64>,
}

impl DaemonCpu {
    /// Measures `pid` idle for `idle`, then runs `f` and measures it again.
    pub fn around<T>(
        pid: u32,
        idle: Duration,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<(T, DaemonCpu)> {
        let c0 = cpu_secs(pid);
        std::thread::sleep(idle);
        let c1 = cpu_secs(pid);
        let th0 = thread_cpu_secs(pid);
        let t0 = Instant::now();
        let r = f()?;
        let run_secs = t0.elapsed().as_secs_f64();
        let c2 = cpu_secs(pid);
        let th1 = thread_cpu_secs(pid);
        let threads = th1
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v - th0.get(k)?)))
            .collect();
        Ok((
            r,
            DaemonCpu {
                idle_per_s: (c1 - c0) / idle.as_secs_f64(),
                run_s: c2 - c1,
                run_secs,
                threads,
            },
        ))
    }

    /// CPU per placement, µs: all of it, and above the idle rate.
    pub fn per_placement_us(&self, placed: usize) -> (u64, u64) {
        let n = placed.max(1) as f64;
        let above = (self.run_s - self.idle_per_s * self.run_secs).max(0.0);
        (
            (self.run_s * 1e6 / n).round() as u64,
            (above * 1e6 / n).round() as u64,
        )
    }
}

/// The workload's parameters (both halves of the bench).
#[derive(Clone, Debug)]
pub struct Workload {
    pub exe: PathBuf,
    pub spawns: usize,
    pub rate: f64,
    pub kids: usize,
    pub hold_ms: u64,
}

impl Workload {
    /// Launches `spawns` copies paced at `rate`/s, waits for all of them, returns their
    /// report lines (`out` is truncated first).
    pub fn run(&self, out: &Path) -> Result<String> {
        std::fs::write(out, "")?;
        let mut kids: Vec<Child> = Vec::new();
        let t0 = Instant::now();
        for i in 0..self.spawns {
            let due = t0 + Duration::from_secs_f64(i as f64 / self.rate);
            if let Some(w) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(w);
            }
            kids.push(
                Command::new(&self.exe)
                    .env("PMB_KIDS", self.kids.to_string())
                    .env("PMB_HOLD_MS", self.hold_ms.to_string())
                    .env("PMB_OUT", out)
                    .stdin(Stdio::null())
                    .spawn()
                    .context("spawning the workload")?,
            );
            kids.retain_mut(|k| !matches!(k.try_wait(), Ok(Some(_))));
        }
        for mut k in kids {
            let _ = k.wait();
        }
        Ok(std::fs::read_to_string(out)?)
    }
}

/// Where the workload's processes said they were.
#[derive(Default, Debug)]
pub struct Tally {
    pub parents_reported: usize,
    /// (pid, in the target)
    pub parents: Vec<(u32, bool)>,
    /// children that only forked: (reported, escaped)
    pub fork_kids: (usize, usize),
    /// children that forked and exec'd pmb-kid: (reported, escaped)
    pub exec_kids: (usize, usize),
}

/// Counts the workload's report lines against `target` (a cgroup path as /proc shows it).
pub fn tally(report: &str, target: &str) -> Result<Tally> {
    let mut t = Tally::default();
    for l in report.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        match f.as_slice() {
            ["P", pid, cg] => {
                t.parents_reported += 1;
                t.parents.push((pid.parse()?, *cg == target));
            }
            ["C", _, _, how, cg] => {
                let k = if *how == "exec" {
                    &mut t.exec_kids
                } else {
                    &mut t.fork_kids
                };
                k.0 += 1;
                if *cg != target {
                    k.1 += 1;
                }
            }
            _ => bail!("bad workload report line {l:?}"),
        }
    }
    Ok(t)
}

/// The workload's file name; its comm is what both daemons' rules match.
const WORKLOAD: &str = "pmb-work";
/// The program half of the workload's children exec right after fork (matches no rule).
const KID: &str = "pmb-kid";
const TRACING: &str = "/sys/kernel/tracing";

#[derive(Args, Clone)]
pub struct GuestArgs {
    /// Directory holding procman-agent and procman.
    #[arg(long)]
    pub bin: PathBuf,
    /// The compiled workload (pmb_work.c).
    #[arg(long)]
    pub workload: PathBuf,
    /// Exec'd processes per daemon and mount mode.
    #[arg(long, default_value_t = 300)]
    pub spawns: usize,
    /// Execs per second.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Children each exec'd process forks right after exec (odd ones exec `pmb-kid`).
    #[arg(long, default_value_t = 2)]
    pub kids: usize,
    /// How long every process lives before it reports its cgroup, in ms.
    #[arg(long, default_value_t = 2000)]
    pub hold_ms: u64,
    /// Where to write the results (JSON).
    #[arg(long)]
    pub out: PathBuf,
}

/// One daemon's run, as measured in the guest.
#[derive(Default)]
struct Outcome {
    execs: usize,
    traced_execs: usize,
    parents_placed: usize,
    parents_reported: usize,
    /// children that only forked: (reported, escaped)
    fork_kids: (usize, usize),
    /// children that forked and exec'd pmb-kid: (reported, escaped)
    exec_kids: (usize, usize),
    /// exec -> attach to the target, microseconds, sorted
    latency_us: Vec<u64>,
    /// exec -> the daemon's write to cgroup.procs begins
    reaction_us: Vec<u64>,
    /// write begins -> attach done (the kernel's part)
    move_us: Vec<u64>,
    /// CPU time each placed process ran between its exec and its attach, µs, sorted
    outside_us: Vec<u64>,
    /// The daemon's first placement (its ready probe): exec -> attached, µs.
    first_us: Option<u64>,
    /// The daemon's CPU time over the run.
    cpu: DaemonCpu,
    /// the daemon's own view, when it has one (procman's /api/placement)
    own: Option<serde_json::Value>,
}

impl Outcome {
    fn json(&self) -> serde_json::Value {
        let placed = self.parents_placed.max(1) as f64;
        serde_json::json!({
            "execs": self.execs,
            "traced_execs": self.traced_execs,
            "parents_placed": self.parents_placed,
            "parents_reported": self.parents_reported,
            "fork_kids": self.fork_kids.0,
            "fork_kids_escaped": self.fork_kids.1,
            "exec_kids": self.exec_kids.0,
            "exec_kids_escaped": self.exec_kids.1,
            "moves_traced": self.latency_us.len(),
            "p50_us": pct(&self.latency_us, 0.5),
            "p90_us": pct(&self.latency_us, 0.9),
            "p99_us": pct(&self.latency_us, 0.99),
            "max_us": self.latency_us.last().copied().unwrap_or(0),
            "first_us": self.first_us,
            "reaction_p50_us": pct(&self.reaction_us, 0.5),
            "reaction_p99_us": pct(&self.reaction_us, 0.99),
            "move_p50_us": pct(&self.move_us, 0.5),
            "move_p99_us": pct(&self.move_us, 0.99),
            "outside_p50_us": pct(&self.outside_us, 0.5),
            "outside_p99_us": pct(&self.outside_us, 0.99),
            "outside_max_us": self.outside_us.last().copied().unwrap_or(0),
            "daemon_cpu_s": self.cpu.run_s,
            "daemon_idle_cpu_per_s": self.cpu.idle_per_s,
            "run_secs": self.cpu.run_secs,
            "cpu_per_placement_us": self.cpu.per_placement_us(self.parents_placed).0,
            "cpu_above_idle_per_placement_us": self.cpu.per_placement_us(self.parents_placed).1,
            "mover_cpu_per_placement_us": self.cpu.threads.get("placement").map(|s| (s * 1e6 / placed).round() as u64),
            "threads_cpu_s": self.cpu.threads,
            "own": self.own,
        })
    }
}

/// Nearest-rank percentile of a sorted slice (0 when empty).
fn pct(v: &[u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
}

fn trace_write(file: &str, v: &str) -> Result<()> {
    let p = Path::new(TRACING).join(file);
    std::fs::write(&p, v).with_context(|| format!("writing {v:?} to {}", p.display()))
}

/// Per pid, in µs: exec, first write to cgroup.procs naming it, first attach into `target`;
/// and its run-time records (µs timestamp, ns run).
#[derive(Default)]
struct Trace {
    exec: HashMap<u32, u64>,
    write: HashMap<u32, u64>,
    attach: HashMap<u32, u64>,
    runtime: HashMap<u32, Vec<(u64, u64)>>,
}

impl Trace {
    /// CPU time `pid` ran between its exec and its attach, µs (None: either is missing).
    fn outside_us(&self, pid: u32) -> Option<u64> {
        let (e, a) = (*self.exec.get(&pid)?, *self.attach.get(&pid)?);
        let ns: u64 = self
            .runtime
            .get(&pid)
            .map(|v| {
                v.iter()
                    .filter(|(ts, _)| (e..=a).contains(ts))
                    .map(|(_, ns)| ns)
                    .sum()
            })
            .unwrap_or(0);
        Some(ns / 1000)
    }
}

/// Parses the trace text. Lines look like
/// `pmb-work-123 [001] ..... 12.345678: sched_process_exec: filename=/x/pmb-work pid=123 old_pid=123`
/// `procman-mover-80 [000] ..... 12.345900: procs_write: (cgroup_procs_write+0x0/0x20) buf="123"`
/// `procman-mover-80 [000] ..... 12.346000: cgroup_attach_task: dst_root=0 ... dst_path=/s pid=123 comm=pmb-work`
/// `pmb-work-123 [001] ..... 12.346100: sched_stat_runtime: comm=pmb-work pid=123 runtime=51234 [ns]`
fn parse_trace(text: &str, target: &str) -> Trace {
    let mut t = Trace::default();
    for l in text.lines() {
        let (kind, head, args) = if let Some((h, a)) = l.split_once(": sched_process_exec: ") {
            (0, h, a)
        } else if let Some((h, a)) = l.split_once(": procs_write: ") {
            (1, h, a)
        } else if let Some((h, a)) = l.split_once(": cgroup_attach_task: ") {
            (2, h, a)
        } else if let Some((h, a)) = l.split_once(": sched_stat_runtime: ") {
            (3, h, a)
        } else {
            continue;
        };
        let Some(ts) = head
            .rsplit(' ')
            .next()
            .and_then(|t| t.trim_end_matches(':').parse::<f64>().ok())
        else {
            continue;
        };
        let us = (ts * 1e6).round() as u64;
        let field = |k: &str| {
            args.split(' ')
                .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
        };
        let pid = match kind {
            1 => field("buf").map(|b| b.trim_matches(|c: char| !c.is_ascii_digit())),
            _ => field("pid"),
        };
        let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        match kind {
            0 => {
                t.exec.entry(pid).or_insert(us);
            }
            1 => {
                t.write.entry(pid).or_insert(us);
            }
            2 if field("dst_path") == Some(target) => {
                t.attach.entry(pid).or_insert(us);
            }
            3 => {
                if let Some(ns) = field("runtime").and_then(|r| r.parse::<u64>().ok()) {
                    t.runtime.entry(pid).or_default().push((us, ns));
                }
            }
            _ => {}
        }
    }
    t
}

fn start_tracing() -> Result<()> {
    trace_write("trace", "")?;
    trace_write("tracing_on", "1")
}

fn stop_tracing(target: &str) -> Result<Trace> {
    trace_write("tracing_on", "0")?;
    let text = std::fs::read_to_string(Path::new(TRACING).join("trace"))?;
    Ok(parse_trace(&text, target))
}

/// Runs the workload once against whatever daemon is running (`daemon`: its pid) and
/// measures it.
fn measure(a: &GuestArgs, w: &Workload, work: &Path, target: &str, daemon: u32) -> Result<Outcome> {
    let out = work.join(format!("report{}.txt", target.replace('/', "_")));
    start_tracing()?;
    let (report, cpu) = DaemonCpu::around(daemon, Duration::from_secs(5), || {
        let r = w.run(&out)?;
        std::thread::sleep(Duration::from_millis(300));
        Ok(r)
    })?;
    let t = stop_tracing(target)?;
    let tl = tally(&report, target)?;
    let mut o = Outcome {
        execs: a.spawns,
        traced_execs: t.exec.len(),
        parents_reported: tl.parents_reported,
        parents_placed: tl.parents.iter().filter(|p| p.1).count(),
        fork_kids: tl.fork_kids,
        exec_kids: tl.exec_kids,
        cpu,
        ..Default::default()
    };
    for &(pid, _) in &tl.parents {
        if let (Some(e), Some(m)) = (t.exec.get(&pid), t.attach.get(&pid)) {
            o.latency_us.push(m.saturating_sub(*e));
            if let Some(w) = t.write.get(&pid).filter(|w| (*e..=*m).contains(*w)) {
                o.reaction_us.push(w - e);
                o.move_us.push(m - w);
            }
        }
        if let Some(c) = t.outside_us(pid) {
            o.outside_us.push(c);
        }
    }
    o.latency_us.sort_unstable();
    o.reaction_us.sort_unstable();
    o.move_us.sort_unstable();
    o.outside_us.sort_unstable();
    Ok(o)
}

/// Runs probe execs (no children) until one lands in `target`: the daemon is ready. Returns
/// the first probe's exec -> attached time (the daemon's first placement), from the trace.
fn wait_ready(exe: &Path, work: &Path, target: &str, who: &str) -> Result<Option<u64>> {
    let out = work.join("probe.txt");
    let deadline = Instant::now() + Duration::from_secs(30);
    start_tracing()?;
    let mut first_pid = None;
    while Instant::now() < deadline {
        std::fs::write(&out, "")?;
        Command::new(exe)
            .env("PMB_KIDS", "0")
            .env("PMB_HOLD_MS", "300")
            .env("PMB_OUT", &out)
            .status()?;
        let line = std::fs::read_to_string(&out)?;
        let pid = line.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok());
        first_pid = first_pid.or(pid);
        if line.trim_end().ends_with(&format!(" {target}")) {
            let t = stop_tracing(target)?;
            return Ok(first_pid.and_then(|p| Some(t.attach.get(&p)? - t.exec.get(&p)?)));
        }
    }
    bail!("{who} did not place a probe process into {target} within 30 s")
}

/// Inside the VM: procman in each [`AGENT_MODES`] entry, then cgrulesengd, on the same
/// workload, on the default cgroup2 mount and then with favordynmods; writes JSON to `--out`.
pub fn guest(a: GuestArgs) -> Result<()> {
    if std::env::var("VMTEST").as_deref() != Ok("1") {
        bail!(
            "bench-guest runs inside the test VM only (it writes /etc/cgrules.conf and the \
             cgroup2 root); run `cargo xtask bench placement` instead"
        );
    }
    let work = PathBuf::from("/tmp/procman-bench-placement");
    std::fs::create_dir_all(&work)?;
    let exe = work.join(WORKLOAD);
    std::fs::copy(&a.workload, &exe).context("copying the workload binary")?;
    std::fs::hard_link(&exe, work.join(KID)).context("linking pmb-kid")?;
    let w = Workload {
        exe: exe.clone(),
        spawns: a.spawns,
        rate: a.rate,
        kids: a.kids,
        hold_ms: a.hold_ms,
    };

    trace_write("trace_clock", "mono")?;
    trace_write("buffer_size_kb", "16384")?;
    let filter = format!("filename ~ \"*/{WORKLOAD}\"");
    trace_write("events/sched/sched_process_exec/filter", &filter)?;
    let comm = format!("comm == \"{WORKLOAD}\"");
    trace_write("events/cgroup/cgroup_attach_task/filter", &comm)?;
    trace_write("events/sched/sched_stat_runtime/filter", &comm)?;
    trace_write("events/sched/sched_process_exec/enable", "1")?;
    trace_write("events/cgroup/cgroup_attach_task/enable", "1")?;
    trace_write("events/sched/sched_stat_runtime/enable", "1")?;
    // the daemon's move begins: cgroup_procs_write(of, buf, ...) with the pid text in buf (%si)
    trace_write(
        "kprobe_events",
        "p:pmb/procs_write cgroup_procs_write buf=+0(%si):string\n",
    )?;
    trace_write("events/pmb/procs_write/enable", "1")?;

    // cgrulesengd's configuration: the same rule, destination a cgroup it does not create
    let target_cg = "/cgred-bench";
    std::fs::create_dir_all(format!("/sys/fs/cgroup{target_cg}"))?;
    std::fs::create_dir_all("/etc/cgconfig.d")?; // cgrulesengd refuses to start without them
    std::fs::write("/etc/cgconfig.conf", "")?;
    std::fs::write(
        "/etc/cgrules.conf",
        format!("# written by cargo xtask bench placement\n*:{WORKLOAD}\tcpu\tcgred-bench/\n"),
    )?;

    let mut modes = Vec::new();
    for mount in ["default", "favordynmods"] {
        // the favordynmods runs: the agent remounts the guest's cgroup2 itself
        // ([cgroup] favordynmods = "on"), and cgrulesengd then runs on the same mount
        let setting = if mount == "favordynmods" { "on" } else { "off" };
        let mut procman = Vec::new();
        for m in AGENT_MODES {
            let o = run_procman(&a, &w, &work, m, setting)?;
            procman.push(serde_json::json!({"mode": m.name, "outcome": o.json()}));
        }
        let has = mount_has_favordynmods()?;
        if has != (mount == "favordynmods") {
            bail!("the {mount} runs found favordynmods {has} on /sys/fs/cgroup");
        }
        let cg = run_cgrulesengd(&w, &exe, &work, target_cg, &a)?;
        modes.push(
            serde_json::json!({"mount": mount, "procman": procman, "cgrulesengd": cg.json()}),
        );
    }
    let doc = serde_json::json!({
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease")?.trim(),
        "spawns": a.spawns, "rate": a.rate, "kids": a.kids, "hold_ms": a.hold_ms,
        "modes": modes,
    });
    std::fs::write(&a.out, serde_json::to_vec_pretty(&doc)?)?;
    Ok(())
}

/// procman in mode `m` with its default managed root, one slice and one rule on the comm.
fn run_procman(
    a: &GuestArgs,
    w: &Workload,
    work: &Path,
    m: &AgentMode,
    favordynmods: &str,
) -> Result<Outcome> {
    let target = "/procman.slice/bench";
    let agent = RunningAgent::start_with(&a.bin, &agent_config("procman.slice", favordynmods, m))?;
    let first = wait_ready(&w.exe, work, target, "procman")?;
    let status = agent.status()?;
    let before = api_get(&agent.socket, "/api/placement")?;
    let mut pm = measure(a, w, work, target, agent.pid())?;
    pm.first_us = first;
    let after = api_get(&agent.socket, "/api/placement")?;
    let d = |k: &str| after[k].as_u64().unwrap_or(0) - before[k].as_u64().unwrap_or(0);
    pm.own = Some(serde_json::json!({
        "placed": d("placed"),
        "exited_before_placement": d("exited_before_placement"),
        "failed": d("failed"),
        "latency_us": after["latency_us"],
        "moves": status["enforcement"]["moves"],
        "hold": after["hold"],
    }));
    Ok(pm)
}

fn run_cgrulesengd(
    w: &Workload,
    exe: &Path,
    work: &Path,
    target: &str,
    a: &GuestArgs,
) -> Result<Outcome> {
    let mut cgred = Command::new("cgrulesengd")
        .args(["--nodaemon", "--nolog"])
        .spawn()
        .context("starting cgrulesengd (Debian package cgroup-tools)")?;
    let r = wait_ready(exe, work, target, "cgrulesengd").and_then(|first| {
        let mut o = measure(a, w, work, target, cgred.id())?;
        o.first_us = first;
        Ok(o)
    });
    let _ = cgred.kill();
    let _ = cgred.wait();
    r
}

/// Whether the guest's cgroup2 at /sys/fs/cgroup has favordynmods now.
fn mount_has_favordynmods() -> Result<bool> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo")?;
    let opts = mi
        .lines()
        .filter_map(|l| l.split_once(" - "))
        .find(|(pre, post)| {
            post.starts_with("cgroup2 ") && pre.split(' ').nth(4) == Some("/sys/fs/cgroup")
        })
        .and_then(|(_, post)| post.split(' ').nth(2))
        .context("no cgroup2 mount at /sys/fs/cgroup")?;
    Ok(opts.split(',').any(|o| o == "favordynmods"))
}

/// Builds `pmb_work.c` with the BPF toolchain's clang into target/bench/pmb-work.
pub fn compile_workload() -> Result<PathBuf> {
    let src = crate::workspace_root().join("xtask/src/bench/pmb_work.c");
    let dir = crate::workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let out = dir.join(WORKLOAD);
    let cc = ["clang-19", "clang", "cc"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok())
        .context("no C compiler (clang-19, clang or cc) for the bench workload")?;
    let st = Command::new(cc)
        .args(["-O2", "-Wall", "-Werror", "-o"])
        .arg(&out)
        .arg(&src)
        .status()?;
    if !st.success() {
        bail!("compiling {} failed ({st})", src.display());
    }
    Ok(out)
}

/// The kernels `sel` names: `6.1`, `6.12`, or `all` (both).
fn kernels(sel: &str) -> Vec<&str> {
    match sel {
        "all" => vec!["6.1", "6.12"],
        k => vec![k],
    }
}

/// On the host: boots the VM on each kernel `kernel` names, runs [`guest`] there and prints
/// the comparison.
pub fn host(bin: &Path, kernel: &str, spawns: Option<usize>) -> Result<()> {
    deps::ensure(deps::VM)?;
    deps::ensure(deps::BENCH_VM)?;
    let spawns = spawns.map(|n| n.min(1000)).unwrap_or(200);
    let workload = compile_workload()?;
    let body = format!(
        "{} bench-guest --bin {} --workload {} --spawns {spawns} --out /run/procman-job/placement.json\n",
        vm::quote_all(&[std::env::current_exe()?.to_string_lossy()]),
        vm::quote_all(&[bin.to_string_lossy()]),
        vm::quote_all(&[workload.to_string_lossy()]),
    );
    for kernel in kernels(kernel) {
        println!();
        println!(
            "bench placement, VM (kernel {kernel}, TCG, 2 vCPUs): {spawns} execs at 10/s, each forking 2 \
             children right after exec (one of which execs pmb-kid); procman ({}), then cgrulesengd \
             with the same rule, on the default cgroup2 mount and then with favordynmods (the agent \
             remounts it: [cgroup] favordynmods = \"on\"); measured by kernel tracepoints (exec, \
             cgroup_procs_write kprobe, cgroup_attach_task, sched_stat_runtime)",
            AGENT_MODES.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
        );
        let share = vm::guest_job(kernel, &body, "bench-placement", Duration::from_secs(1800))?;
        let r: serde_json::Value = serde_json::from_slice(
            &std::fs::read(share.join("placement.json")).context("reading the guest's results")?,
        )?;
        println!("guest kernel {}", r["kernel"].as_str().unwrap_or("?"));
        for m in r["modes"]
            .as_array()
            .context("no modes in the guest's results")?
        {
            print_mode(m);
        }
    }
    Ok(())
}

/// Prints one mount's table (markdown): a column per procman mode, then cgrulesengd.
fn print_mode(m: &serde_json::Value) {
    let mut cols: Vec<(String, &serde_json::Value)> = m["procman"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|p| {
                    (
                        format!("procman ({})", p["mode"].as_str().unwrap_or("?")),
                        &p["outcome"],
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let c = &m["cgrulesengd"];
    cols.push(("cgrulesengd".into(), c));
    println!();
    println!(
        "cgroup2 mount: {}",
        if m["mount"] == "favordynmods" {
            "favordynmods (migrations skip the RCU grace period)"
        } else {
            "default options (as Debian boots it)"
        }
    );
    println!();
    let head: Vec<&str> = cols.iter().map(|c| c.0.as_str()).collect();
    println!("| metric | {} |", head.join(" | "));
    println!("|---|{}", "---|".repeat(cols.len()));
    let row = |name: &str, f: &dyn Fn(&serde_json::Value) -> String| {
        let v: Vec<String> = cols.iter().map(|c| f(c.1)).collect();
        println!("| {name} | {} |", v.join(" | "));
    };
    let n = |k: &'static str| move |v: &serde_json::Value| v[k].to_string();
    let us = |k: &'static str| move |v: &serde_json::Value| fmt_us(v[k].as_u64());
    row("execs (seen by the exec tracepoint)", &|v| {
        format!("{} ({})", v["execs"], v["traced_execs"])
    });
    row(
        "exec'd processes in the target cgroup",
        &n("parents_placed"),
    );
    row("children that only forked: escaped (goal 0)", &|v| {
        format!("{} of {}", v["fork_kids_escaped"], v["fork_kids"])
    });
    row("children that exec'd pmb-kid: escaped (goal 0)", &|v| {
        format!("{} of {}", v["exec_kids_escaped"], v["exec_kids"])
    });
    row("latency p50 (exec -> attached)", &us("p50_us"));
    row("latency p90", &us("p90_us"));
    row("latency p99", &us("p99_us"));
    row("latency max", &us("max_us"));
    row("first placement (the ready probe)", &us("first_us"));
    row(
        "reaction p50 (exec -> write to cgroup.procs)",
        &us("reaction_p50_us"),
    );
    row("reaction p99", &us("reaction_p99_us"));
    row("kernel move p50 (write -> attached)", &us("move_p50_us"));
    row("kernel move p99", &us("move_p99_us"));
    row(
        "CPU run outside the slice before the move, p50",
        &us("outside_p50_us"),
    );
    row("  p99", &us("outside_p99_us"));
    row("  max", &us("outside_max_us"));
    row("daemon CPU over the run (its idle rate)", &|v| {
        format!(
            "{:.2} s over {:.0} s ({:.1}% of a CPU idle)",
            v["daemon_cpu_s"].as_f64().unwrap_or(0.0),
            v["run_secs"].as_f64().unwrap_or(0.0),
            v["daemon_idle_cpu_per_s"].as_f64().unwrap_or(0.0) * 100.0
        )
    });
    row(
        "daemon CPU per placement (all of it)",
        &us("cpu_per_placement_us"),
    );
    row(
        "daemon CPU per placement above its idle rate",
        &us("cpu_above_idle_per_placement_us"),
    );
    row(
        "  of it procman's mover thread",
        &us("mover_cpu_per_placement_us"),
    );
    for (name, k) in [
        (
            "cgrulesengd / procman, CPU per placement (goal >= 10x)",
            "cpu_per_placement_us",
        ),
        ("cgrulesengd / procman, latency p50", "p50_us"),
        ("cgrulesengd / procman, latency p99", "p99_us"),
    ] {
        row(name, &|v| {
            if std::ptr::eq(v, c) {
                "-".to_string()
            } else {
                let of = |x: &serde_json::Value| x[k].as_f64().unwrap_or(0.0);
                format!("{:.1}x", of(c) / of(v).max(1.0))
            }
        });
    }
    row("procman's own count: placed/exited/failed", &|v| {
        let own = &v["own"];
        if own.is_null() {
            "-".into()
        } else {
            format!(
                "{}/{}/{}",
                own["placed"], own["exited_before_placement"], own["failed"]
            )
        }
    });
    row(
        "procman's holds: released / timed out (held p50, p99)",
        &|v| {
            let h = &v["own"]["hold"];
            if h.is_null() {
                "-".into()
            } else if h["active"] != true || h["rules"].as_array().is_none_or(|r| r.is_empty()) {
                "not held".into()
            } else {
                format!(
                    "{} / {} ({}, {})",
                    h["released"],
                    h["timed_out"],
                    fmt_us(h["held_us"]["p50"].as_u64()),
                    fmt_us(h["held_us"]["p99"].as_u64())
                )
            }
        },
    );
    row("procman's own histogram p50 / p99 (BPF ts)", &|v| {
        let l = &v["own"]["latency_us"];
        if l.is_null() {
            "-".into()
        } else {
            format!(
                "{} / {}",
                fmt_us(l["p50"].as_u64()),
                fmt_us(l["p99"].as_u64())
            )
        }
    });
}

/// µs as `850 µs` or `12.3 ms` (`-` when absent).
pub fn fmt_us(v: Option<u64>) -> String {
    match v {
        None => "-".into(),
        Some(us) if us < 10_000 => format!("{us} µs"),
        Some(us) => format!("{:.1} ms", us as f64 / 1000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_lines_give_exec_and_first_attach_into_the_target() {
        let t = r#"# tracer: nop
        pmb-work-123     [001] .....    12.345678: sched_process_exec: filename=/t/pmb-work pid=123 old_pid=123
   procman-mover-80  [000] .....    12.345900: procs_write: (cgroup_procs_write+0x0/0x20) buf="123"
   procman-mover-80  [000] .....    12.346000: cgroup_attach_task: dst_root=0 dst_id=5 dst_level=2 dst_path=/other pid=123 comm=pmb-work
   procman-mover-80  [000] .....    12.346100: cgroup_attach_task: dst_root=0 dst_id=6 dst_level=2 dst_path=/procman.slice/bench pid=123 comm=pmb-work
   procman-mover-80  [000] .....    12.347100: cgroup_attach_task: dst_root=0 dst_id=6 dst_level=2 dst_path=/procman.slice/bench pid=123 comm=pmb-work
"#;
        let t = parse_trace(t, "/procman.slice/bench");
        assert_eq!(t.exec[&123], 12_345_678);
        assert_eq!(t.write[&123] - t.exec[&123], 222);
        assert_eq!(t.attach[&123] - t.exec[&123], 422);
        assert_eq!(t.attach.len(), 1);
    }

    #[test]
    fn cpu_outside_the_slice_is_the_run_time_between_exec_and_attach() {
        let t = r#"
        pmb-work-123     [001] .....    10.000000: sched_process_exec: filename=/t/pmb-work pid=123 old_pid=123
        pmb-work-123     [001] .....    10.000400: sched_stat_runtime: comm=pmb-work pid=123 runtime=300000 [ns] vruntime=123 [ns]
        pmb-work-123     [001] .....    10.001000: sched_stat_runtime: comm=pmb-work pid=123 runtime=250000 [ns]
   procman-mover-80  [000] .....    10.002000: cgroup_attach_task: dst_root=0 dst_id=6 dst_level=2 dst_path=/procman.slice/bench pid=123 comm=pmb-work
        pmb-work-123     [001] .....    10.003000: sched_stat_runtime: comm=pmb-work pid=123 runtime=900000 [ns]
        pmb-work-124     [001] .....    10.003000: sched_process_exec: filename=/t/pmb-work pid=124 old_pid=124
"#;
        let t = parse_trace(t, "/procman.slice/bench");
        assert_eq!(t.outside_us(123), Some(550));
        assert_eq!(t.outside_us(124), None, "never attached");
    }

    #[test]
    fn workload_reports_are_tallied_against_the_target() {
        let r = "P 10 /s/bench\nP 11 /other\nC 12 10 fork /s/bench\nC 13 10 exec /other\n";
        let t = tally(r, "/s/bench").unwrap();
        assert_eq!(t.parents, vec![(10, true), (11, false)]);
        assert_eq!((t.fork_kids, t.exec_kids), ((1, 0), (1, 1)));
        assert!(tally("junk", "/s").is_err());
    }

    #[test]
    fn agent_modes_have_unique_names_and_build_a_config() {
        let mut names: Vec<&str> = AGENT_MODES.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), AGENT_MODES.len());
        let c = agent_config("r.slice", "off", &AGENT_MODES[0]);
        assert!(
            c.contains("root = \"r.slice\"") && c.contains("favordynmods = \"off\""),
            "{c}"
        );
        assert!(c.contains("comm = \"pmb-work\""), "{c}");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!((pct(&v, 0.5), pct(&v, 0.99), pct(&v, 1.0)), (50, 99, 100));
        assert_eq!(pct(&[], 0.5), 0);
    }
}

//! `cargo xtask bench <name>`: benchmarks that print tables.
//!
//! - `events`: spawn-storm rate without and with the agent (same run, alternating rounds),
//!   agent CPU per 10k events, events lost, agent CPU at a paced 1k exec/s, BPF cost per run.
//! - `ps`: `procman ps --top 10` against `ps` with ~10,000 live processes; the agent's RSS.
//! - `placement`: exec-to-placement latency on the host (move-only), then in the test VM
//!   against libcgroup's cgrulesengd on the same workload ([`placement_vm`]).
//! - `switch`: a pipe ping-pong pinned to one CPU (two context switches per round trip)
//!   without the agent, with its defaults and with the scheduling tracer, alternating.
//! - `sampler`: N idle processes; the agent's CPU, RSS and sweep time with the task-iterator
//!   sampler and with the /proc sampler, in the same run.
//! - `policy`: the policy engine's evaluation time per tick, 50 policies over 10k synthetic
//!   process rows (the `policy_bench` example of procman-agent; no agent, no root).
mod overhead;
pub mod placement_vm;
pub mod tasks;

use crate::{deps, run::build_bins};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

#[derive(Clone, Copy, ValueEnum)]
pub enum Bench {
    /// Event capture overhead and loss.
    Events,
    /// `procman ps --top 10` against `ps` with ~10,000 live processes; the agent's RSS.
    Ps,
    /// Exec-to-placement latency on the host (move-only, in a private cgroup2 child), then in
    /// the test VM against libcgroup's cgrulesengd with the same rule (escaped children too).
    Placement,
    /// One-CPU pipe ping-pong round trips/s: no agent, agent defaults, agent with
    /// `events.sched_stats = true` (the context-switch tracer), alternating.
    Switch,
    /// Agent CPU, RSS and sweep time with `--procs` idle processes, `sampler = "iter"` against
    /// `sampler = "proc"` in the same run.
    Sampler,
    /// Policy evaluation per tick: `--policies` (50) over `--procs` (10,000) synthetic process
    /// rows, p50/p99, beside evaluating only the `match` (or `when`) filters.
    Policy,
}

#[derive(Args)]
pub struct BenchArgs {
    pub bench: Bench,
    /// Rounds of (without agent, with agent).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Spawns per storm (events), live sleepers (ps).
    #[arg(long)]
    pub spawns: Option<usize>,
    /// Run the agent with the scheduling tracer on or off (events.sched_stats; default off).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub sched_stats: bool,
    /// Use the procman-agent and procman binaries in DIR instead of building them (e.g. a
    /// build of another commit, to compare).
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// sampler: idle processes to start.
    #[arg(long, default_value_t = 10_000)]
    pub procs: usize,
    /// sampler: of them, busy loops (a nice-19 `while :; do :; done`).
    #[arg(long, default_value_t = 0)]
    pub busy: usize,
    /// sampler: make each idle process hold this many idle threads (the main one included)
    /// instead of being a `sleep`, to reach many tasks with few processes (e.g. `--procs 1000
    /// --threads-per-proc 100`: 100k tasks); kernel.pid_max is raised for the run if needed
    /// and restored after it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub threads_per_proc: u32,
    /// policy: policies evaluated per tick.
    #[arg(long, default_value_t = 50)]
    pub policies: usize,
    /// switch: seconds per measurement; sampler: seconds of agent CPU measured per sampler.
    #[arg(long)]
    pub secs: Option<f64>,
    /// switch: an extra agent configuration to measure, `LABEL=TOML` (`\n` separates lines),
    /// e.g. `quiet=[events]\npoll_interval = "1s"`. Repeatable.
    #[arg(long, value_name = "LABEL=TOML")]
    pub variant: Vec<String>,
    /// placement: the VM kernel(s) for the comparison with cgrulesengd (6.1, 6.12 or all),
    /// or `none` to measure on the host only.
    #[arg(long, default_value = "all")]
    pub kernel: String,
    /// placement: execs in the VM half (default 200; TCG is slow).
    #[arg(long)]
    pub vm_spawns: Option<usize>,
}

pub fn run(a: BenchArgs) -> Result<()> {
    if let Bench::Policy = a.bench {
        return policy(&a); // pure computation: no root, no agent
    }
    if !deps::nix_is_root() {
        bail!("benchmarks load BPF programs: run as root");
    }
    deps::ensure(deps::BUILD)?;
    match a.bench {
        Bench::Events => events(&a),
        Bench::Ps => ps(&a),
        Bench::Placement => placement(&a),
        Bench::Switch => overhead::switch(&a),
        Bench::Sampler => overhead::sampler(&a),
        Bench::Policy => policy(&a),
    }
}

/// Runs procman-agent's `policy_bench` example (release build) and passes its table through;
/// it fails when the p99 exceeds 5 ms per tick.
fn policy(a: &BenchArgs) -> Result<()> {
    let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(crate::workspace_root())
        .args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "procman-agent",
            "--example",
            "policy_bench",
            "--",
            "--rows",
            &a.procs.to_string(),
            "--policies",
            &a.policies.to_string(),
            "--ticks",
            &(a.rounds.max(1) * 40).to_string(),
        ])
        .status()
        .context("running the policy_bench example")?;
    if !st.success() {
        bail!("bench policy failed ({st})");
    }
    Ok(())
}

/// The binaries to benchmark: `--bin-dir`, else a release build of this tree.
fn bins(a: &BenchArgs) -> Result<PathBuf> {
    match &a.bin_dir {
        Some(d) => {
            for b in ["procman-agent", "procman"] {
                if !d.join(b).exists() {
                    bail!("--bin-dir {}: no {b} there", d.display());
                }
            }
            Ok(d.clone())
        }
        None => build_bins(true),
    }
}

/// Spawns `n` `/bin/true` from `workers` threads; returns spawns per second.
fn storm(n: usize, workers: usize) -> f64 {
    let t0 = Instant::now();
    let hs: Vec<_> = (0..workers)
        .map(|_| {
            let per = n / workers;
            std::thread::spawn(move || {
                for _ in 0..per {
                    let _ = Command::new("/bin/true").status();
                }
            })
        })
        .collect();
    for h in hs {
        let _ = h.join();
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

/// Spawns `/bin/true` at `rate` per second for `secs` seconds (one paced thread).
fn paced(rate: u32, secs: u32) -> usize {
    let t0 = Instant::now();
    let total = (rate * secs) as usize;
    for i in 0..total {
        let due = t0 + Duration::from_secs_f64(i as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let _ = Command::new("/bin/true").status();
    }
    total
}

struct RunningAgent {
    child: Child,
    socket: PathBuf,
    procman: PathBuf,
    _dir: PathBuf,
}

impl RunningAgent {
    fn start(bin: &Path, sched_stats: bool) -> Result<RunningAgent> {
        Self::start_with(bin, &format!("[events]\nsched_stats = {sched_stats}\n"))
    }

    fn start_with(bin: &Path, config_toml: &str) -> Result<RunningAgent> {
        let dir = std::env::temp_dir().join(format!("procman-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let socket = dir.join("procman.sock");
        let config = dir.join("procman.toml");
        std::fs::write(&config, config_toml)?;
        // SIGTERM (the agent's clean stop) if the bench dies without dropping us
        let child =
            tasks::die_with_parent(&mut Command::new(bin.join("procman-agent")), libc::SIGTERM)
                .arg("--config")
                .arg(&config)
                .args(["--source", "bpf", "--socket"])
                .arg(&socket)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting procman-agent")?;
        let a = RunningAgent {
            child,
            socket,
            procman: bin.join("procman"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while a.status().is_err() {
            if Instant::now() > deadline {
                bail!("procman-agent did not come up");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(a)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn status(&self) -> Result<serde_json::Value> {
        let out = Command::new(&self.procman)
            .arg("--socket")
            .arg(&self.socket)
            .args(["status", "--json"])
            .output()?;
        if !out.status.success() {
            bail!("status failed");
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// utime + stime of the agent, in seconds.
    fn cpu_secs(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0.0);
        // SAFETY: sysconf has no preconditions.
        ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
    }

    /// (run_time_ns, run_cnt) summed over the agent's BPF program fds (needs bpf_stats_enabled).
    fn bpf_stats(&self) -> (u64, u64) {
        let mut t = (0, 0);
        let Ok(rd) = std::fs::read_dir(format!("/proc/{}/fdinfo", self.child.id())) else {
            return t;
        };
        for e in rd.flatten() {
            let s = std::fs::read_to_string(e.path()).unwrap_or_default();
            if !s.contains("prog_type") {
                continue;
            }
            for l in s.lines() {
                if let Some(v) = l.strip_prefix("run_time_ns:") {
                    t.0 += v.trim().parse::<u64>().unwrap_or(0);
                }
                if let Some(v) = l.strip_prefix("run_cnt:") {
                    t.1 += v.trim().parse::<u64>().unwrap_or(0);
                }
            }
        }
        t
    }

    /// Waits until the agent has received everything the kernel submitted.
    fn settle(&self) -> Result<serde_json::Value> {
        std::thread::sleep(Duration::from_millis(200));
        for _ in 0..100 {
            let s = self.status()?;
            if s["events_received"] == s["kernel_submitted"] {
                return Ok(s);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.status()
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Enables kernel.bpf_stats_enabled for the bench and restores the old value on drop.
struct BpfStats(String);
impl BpfStats {
    fn enable() -> BpfStats {
        let old = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
            .unwrap_or_else(|_| "0".into());
        let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1");
        BpfStats(old.trim().to_string())
    }
}
impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", &self.0);
    }
}

fn events(a: &BenchArgs) -> Result<()> {
    let bin = bins(a)?;
    let _stats = BpfStats::enable();
    let workers = 2;
    let spawns = a.spawns.unwrap_or(6000);
    println!(
        "bench events: {} rounds x {spawns} spawns of /bin/true from {workers} workers, alternating; \
         scheduling stats {}",
        a.rounds,
        if a.sched_stats { "on" } else { "off" }
    );
    println!();
    println!(
        "{:<6} {:<8} {:>10} {:>12} {:>10} {:>8} {:>9}",
        "round", "agent", "spawns/s", "agent CPU s", "events", "lost", "ns/BPF run"
    );
    let (mut without, mut with) = (Vec::new(), Vec::new());
    let (mut cpu_total, mut ev_total, mut lost_total) = (0.0, 0u64, 0u64);
    let (mut bpf_ns, mut bpf_runs) = (0u64, 0u64);
    storm(500, workers); // warm-up
    for r in 0..a.rounds {
        // alternate the order so drift on a noisy machine hits both sides alike
        let order = if r % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for with_agent in order {
            if !with_agent {
                let rate = storm(spawns, workers);
                without.push(rate);
                println!(
                    "{:<6} {:<8} {:>10.0} {:>12} {:>10} {:>8} {:>9}",
                    r + 1,
                    "off",
                    rate,
                    "-",
                    "-",
                    "-",
                    "-"
                );
                continue;
            }
            let agent = RunningAgent::start(&bin, a.sched_stats)?;
            let s0 = agent.settle()?;
            let c0 = agent.cpu_secs();
            let b0 = agent.bpf_stats();
            let rate = storm(spawns, workers);
            let s1 = agent.settle()?;
            let cpu = agent.cpu_secs() - c0;
            let b1 = agent.bpf_stats();
            let events = s1["events_received"].as_u64().unwrap_or(0)
                - s0["events_received"].as_u64().unwrap_or(0);
            let lost = s1["events_dropped"].as_u64().unwrap_or(0)
                - s0["events_dropped"].as_u64().unwrap_or(0);
            let per_run = (b1.0 - b0.0) as f64 / (b1.1 - b0.1).max(1) as f64;
            bpf_ns += b1.0 - b0.0;
            bpf_runs += b1.1 - b0.1;
            with.push(rate);
            cpu_total += cpu;
            ev_total += events;
            lost_total += lost;
            println!(
                "{:<6} {:<8} {:>10.0} {:>12.3} {:>10} {:>8} {:>9.0}",
                r + 1,
                "on",
                rate,
                cpu,
                events,
                lost,
                per_run
            );
        }
    }
    // agent CPU at a paced 1k exec/s
    let agent = RunningAgent::start(&bin, a.sched_stats)?;
    let c0 = agent.cpu_secs();
    let t0 = Instant::now();
    let n = paced(1000, 10);
    let secs = t0.elapsed().as_secs_f64();
    let paced_cpu = agent.cpu_secs() - c0;
    drop(agent);

    let (m_off, m_on) = (median(&mut without), median(&mut with));
    println!();
    println!("{:<44} {:>12}", "metric", "value");
    println!("{:<44} {:>12.0}", "median spawns/s without agent", m_off);
    println!("{:<44} {:>12.0}", "median spawns/s with agent", m_on);
    println!(
        "{:<44} {:>11.1}%",
        "slowdown (goal <= 3%)",
        (1.0 - m_on / m_off) * 100.0
    );
    println!(
        "{:<44} {:>12.3}",
        "agent CPU s per 10k events",
        cpu_total / ev_total.max(1) as f64 * 10_000.0
    );
    println!("{:<44} {:>12}", "events lost (goal 0)", lost_total);
    println!(
        "{:<44} {:>12.0}",
        "BPF ns per program run",
        bpf_ns as f64 / bpf_runs.max(1) as f64
    );
    println!(
        "{:<44} {:>11.2}%",
        format!("agent CPU at {:.0} exec/s (goal <= 5%)", n as f64 / secs),
        paced_cpu / secs * 100.0
    );
    Ok(())
}

/// Resident set size of a process, bytes.
fn rss_bytes(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// Median wall time of `n` runs of a shell command line (output discarded).
fn time_cmd(cmdline: &str) -> Result<Duration> {
    let t0 = Instant::now();
    let st = Command::new("/bin/sh")
        .args(["-c", cmdline])
        .stdout(Stdio::null())
        .status()?;
    if !st.success() {
        bail!("`{cmdline}` failed ({st})");
    }
    Ok(t0.elapsed())
}

fn ps(a: &BenchArgs) -> Result<()> {
    let bin = bins(a)?;
    let n = a.spawns.unwrap_or(10_000);
    println!(
        "bench ps: {n} sleepers, {} alternating runs each",
        a.rounds.max(5)
    );
    let mut sleepers = Vec::with_capacity(n);
    for _ in 0..n {
        match Command::new("sleep")
            .arg("600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
        {
            Ok(c) => sleepers.push(c),
            Err(e) => {
                eprintln!("xtask: spawned {} sleepers, then: {e}", sleepers.len());
                break;
            }
        }
    }
    let result = (|| -> Result<()> {
        let agent = RunningAgent::start(&bin, a.sched_stats)?;
        std::thread::sleep(Duration::from_millis(4500)); // two samples: CPU% needs a delta
        let procman = format!(
            "{} --socket {} ps --top 10 --sort cpu",
            bin.join("procman").display(),
            agent.socket.display()
        );
        let ps = "ps -eo pid,comm,%cpu,rss --sort=-%cpu | head";
        let (mut t_pm, mut t_ps) = (Vec::new(), Vec::new());
        for _ in 0..a.rounds.max(5) {
            t_pm.push(time_cmd(&procman)?.as_secs_f64() * 1e3);
            t_ps.push(time_cmd(ps)?.as_secs_f64() * 1e3);
        }
        let live = agent.status()?["processes"].as_u64().unwrap_or(0);
        let rss = rss_bytes(agent.child.id());
        // the sampler's cost: agent CPU while nothing else happens
        let c0 = agent.cpu_secs();
        std::thread::sleep(Duration::from_secs(10));
        let idle_cpu = (agent.cpu_secs() - c0) / 10.0 * 100.0;
        let (m_pm, m_ps) = (median(&mut t_pm), median(&mut t_ps));
        println!();
        println!("{:<52} {:>12}", "metric", "value");
        println!("{:<52} {:>12}", "processes in the agent's table", live);
        println!(
            "{:<52} {:>10.1}ms",
            "median `procman ps --top 10 --sort cpu`", m_pm
        );
        println!(
            "{:<52} {:>10.1}ms",
            "median `ps -eo pid,comm,%cpu,rss --sort=-%cpu | head`", m_ps
        );
        println!("{:<52} {:>11.1}x", "speedup (goal >= 10x)", m_ps / m_pm);
        println!(
            "{:<52} {:>10.1}MB",
            "agent RSS (goal <= 30 MB)",
            rss as f64 / 1e6
        );
        println!(
            "{:<52} {:>11.1}%",
            "agent CPU while sampling every 2 s (of one core)", idle_cpu
        );
        Ok(())
    })();
    for mut s in sleepers {
        let _ = s.kill();
        let _ = s.wait();
    }
    result
}

/// The host's cgroup2 mount point (from /proc/self/mountinfo).
fn cgroup2_mount() -> Result<PathBuf> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo")?;
    for l in mi.lines() {
        if let Some((pre, post)) = l.split_once(" - ") {
            if post.starts_with("cgroup2 ") {
                if let Some(p) = pre.split_whitespace().nth(4) {
                    return Ok(PathBuf::from(p));
                }
            }
        }
    }
    bail!("no cgroup2 mount on this host")
}

/// The host half of `bench placement`: the VM's workload (pmb-work, forking two children
/// right after exec) placed by procman in each [`placement_vm::AGENT_MODES`] entry, in a
/// private managed root under the host's cgroup2 mount (never remounted: the agent runs with
/// `favordynmods = "auto"` and reports what the mount has). The host has no tracefs, so
/// latency is the agent's own: its BPF exec timestamp to the completed move (the
/// `/api/placement` histogram); escapes from the workload's reports; the agent's CPU per
/// placement from its utime+stime over the run.
fn placement(a: &BenchArgs) -> Result<()> {
    use placement_vm::{agent_config, fmt_us, tally, Workload, AGENT_MODES};
    let bin = bins(a)?;
    let n = a.spawns.unwrap_or(1000);
    let rate = 50.0;
    let mount = cgroup2_mount()?;
    let work = std::env::temp_dir().join(format!("procman-bench-placement-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let exe = work.join("pmb-work");
    std::fs::copy(placement_vm::compile_workload()?, &exe)?;
    std::fs::hard_link(&exe, work.join("pmb-kid"))?;
    let w = Workload {
        exe: exe.clone(),
        spawns: n,
        rate,
        kids: 2,
        hold_ms: 500,
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")?;
    println!(
        "bench placement, host (kernel {}, cgroup2 at {}): {n} execs at {rate}/s, each forking 2 children right after exec (one of which execs pmb-kid); latency from the agent's own timestamps (BPF exec timestamp -> move done)",
        kernel.trim(),
        mount.display()
    );
    let mut results = Vec::new();
    for m in AGENT_MODES {
        // a private, uniquely named root per mode, removed afterwards
        let root = format!("procman-bench-{}-{}.slice", std::process::id(), m.name);
        let target = format!("/{root}/bench");
        let root_path = mount.join(&root);
        let _cleanup = RemoveOnDrop(vec![root_path.join("bench"), root_path.clone()]);
        let agent = RunningAgent::start_with(&bin, &agent_config(&root, "auto", m))?;
        let hold = api_get(&agent.socket, "/api/placement")?["hold"].clone();
        if m.holds() && hold["active"] != true {
            println!(
                "mode {}: skipped here: hold at exec is off ({})",
                m.name,
                hold["reason"].as_str().unwrap_or("?")
            );
            continue;
        }
        // the first placement, alone
        let probe = Workload {
            spawns: 1,
            kids: 0,
            hold_ms: 300,
            ..w.clone()
        };
        probe.run(&work.join("probe.txt"))?;
        std::thread::sleep(Duration::from_millis(200));
        let first = api_get(&agent.socket, "/api/placement")?;
        let (report, cpu) =
            placement_vm::DaemonCpu::around(agent.pid(), Duration::from_secs(5), || {
                let r = w.run(&work.join("report.txt"))?;
                std::thread::sleep(Duration::from_millis(300));
                Ok(r)
            })?;
        let rep = api_get(&agent.socket, "/api/placement")?;
        let status = agent.status()?;
        drop(agent);
        let t = tally(&report, &target)?;
        results.push((m.name, first, rep, status, cpu, t));
    }
    let _ = std::fs::remove_dir_all(&work);
    println!();
    let head: Vec<String> = results
        .iter()
        .map(|r| format!("procman ({})", r.0))
        .collect();
    println!("| metric | {} |", head.join(" | "));
    println!("|---|{}", "---|".repeat(results.len()));
    let row = |name: &str, f: &dyn Fn(&Row) -> String| {
        let v: Vec<String> = results.iter().map(f).collect();
        println!("| {name} | {} |", v.join(" | "));
    };
    let l = |k: &'static str, q: &'static str| move |r: &Row| fmt_us(r.2[k][q].as_u64());
    row("cgroup2 favordynmods", &|r| {
        r.3["enforcement"]["moves"]["favordynmods"].to_string()
    });
    row("exec'd processes in the target cgroup", &|r| {
        format!(
            "{} of {}",
            r.5.parents.iter().filter(|p| p.1).count(),
            r.5.parents_reported
        )
    });
    row("children that only forked: escaped (goal 0)", &|r| {
        format!("{} of {}", r.5.fork_kids.1, r.5.fork_kids.0)
    });
    row("children that exec'd pmb-kid: escaped (goal 0)", &|r| {
        format!("{} of {}", r.5.exec_kids.1, r.5.exec_kids.0)
    });
    row("placed / exited before placement / failed", &|r| {
        format!(
            "{}/{}/{}",
            r.2["placed"], r.2["exited_before_placement"], r.2["failed"]
        )
    });
    row("latency p50 (exec -> moved)", &l("latency_us", "p50"));
    row("latency p90", &l("latency_us", "p90"));
    row("latency p99", &l("latency_us", "p99"));
    row("latency max", &l("latency_us", "max"));
    row("first placement (alone, before the run)", &|r| {
        fmt_us(r.1["latency_us"]["max"].as_u64())
    });
    row("  of it the kernel's move", &|r| {
        fmt_us(r.1["move_us"]["max"].as_u64())
    });
    row("kernel's move p50", &l("move_us", "p50"));
    row("kernel's move p99", &l("move_us", "p99"));
    row("agent CPU over the run (its idle rate)", &|r| {
        format!(
            "{:.2} s over {:.0} s ({:.1}% of a CPU idle)",
            r.4.run_s,
            r.4.run_secs,
            r.4.idle_per_s * 100.0
        )
    });
    let placed = |r: &Row| {
        r.2["placed"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(r.1["placed"].as_u64().unwrap_or(0)) as usize
    };
    row("agent CPU per placement (all of it)", &|r| {
        fmt_us(Some(r.4.per_placement_us(placed(r)).0))
    });
    row("agent CPU per placement above its idle rate", &|r| {
        fmt_us(Some(r.4.per_placement_us(placed(r)).1))
    });
    row("  of it the mover thread", &|r| {
        fmt_us(
            r.4.threads
                .get("placement")
                .map(|s| (s * 1e6 / placed(r).max(1) as f64).round() as u64),
        )
    });
    if a.kernel == "none" {
        return Ok(());
    }
    placement_vm::host(&bin, &a.kernel, a.vm_spawns)
}

/// One mode's host results: name, /api/placement after the first placement and after the
/// run, the status, the agent's CPU, the workload's tally.
type Row = (
    &'static str,
    serde_json::Value,
    serde_json::Value,
    serde_json::Value,
    placement_vm::DaemonCpu,
    placement_vm::Tally,
);

/// Removes the given (empty) directories on drop, in order.
struct RemoveOnDrop(Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// One GET on the agent's socket (HTTP/1.0, so the answer ends at EOF).
fn api_get(socket: &Path, path: &str) -> Result<serde_json::Value> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket)?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: procman\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    Ok(serde_json::from_str(body)?)
}

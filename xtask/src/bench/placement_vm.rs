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
    /// the daemon's own view, when it has one (procman's /api/placement)
    own: Option<serde_json::Value>,
}

impl Outcome {
    fn json(&self) -> serde_json::Value {
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
            "reaction_p50_us": pct(&self.reaction_us, 0.5),
            "reaction_p99_us": pct(&self.reaction_us, 0.99),
            "move_p50_us": pct(&self.move_us, 0.5),
            "move_p99_us": pct(&self.move_us, 0.99),
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

/// Per pid, in µs: exec, first write to cgroup.procs naming it, first attach into `target`.
#[derive(Default)]
struct Trace {
    exec: HashMap<u32, u64>,
    write: HashMap<u32, u64>,
    attach: HashMap<u32, u64>,
}

/// Parses the trace text. Lines look like
/// `pmb-work-123 [001] ..... 12.345678: sched_process_exec: filename=/x/pmb-work pid=123 old_pid=123`
/// `procman-mover-80 [000] ..... 12.345900: procs_write: (cgroup_procs_write+0x0/0x20) buf="123"`
/// `procman-mover-80 [000] ..... 12.346000: cgroup_attach_task: dst_root=0 ... dst_path=/s pid=123 comm=pmb-work`
fn parse_trace(text: &str, target: &str) -> Trace {
    let mut t = Trace::default();
    for l in text.lines() {
        let (kind, head, args) = if let Some((h, a)) = l.split_once(": sched_process_exec: ") {
            (0, h, a)
        } else if let Some((h, a)) = l.split_once(": procs_write: ") {
            (1, h, a)
        } else if let Some((h, a)) = l.split_once(": cgroup_attach_task: ") {
            (2, h, a)
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
            0 => t.exec.entry(pid).or_insert(us),
            1 => t.write.entry(pid).or_insert(us),
            _ if field("dst_path") == Some(target) => t.attach.entry(pid).or_insert(us),
            _ => continue,
        };
    }
    t
}

/// Runs the workload once against whatever daemon is running and measures it.
fn measure(a: &GuestArgs, exe: &Path, work: &Path, target: &str) -> Result<Outcome> {
    let out = work.join(format!("report{}.txt", target.replace('/', "_")));
    std::fs::write(&out, "")?;
    trace_write("trace", "")?;
    trace_write("tracing_on", "1")?;
    let mut kids: Vec<Child> = Vec::new();
    let t0 = Instant::now();
    for i in 0..a.spawns {
        let due = t0 + Duration::from_secs_f64(i as f64 / a.rate);
        if let Some(w) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
        kids.push(
            Command::new(exe)
                .env("PMB_KIDS", a.kids.to_string())
                .env("PMB_HOLD_MS", a.hold_ms.to_string())
                .env("PMB_OUT", &out)
                .stdin(Stdio::null())
                .spawn()
                .context("spawning the workload")?,
        );
        kids.retain_mut(|k| !matches!(k.try_wait(), Ok(Some(_))));
    }
    for mut k in kids {
        let _ = k.wait();
    }
    std::thread::sleep(Duration::from_millis(300));
    trace_write("tracing_on", "0")?;
    let text = std::fs::read_to_string(Path::new(TRACING).join("trace"))?;
    let t = parse_trace(&text, target);
    let mut o = Outcome {
        execs: a.spawns,
        traced_execs: t.exec.len(),
        ..Default::default()
    };
    for l in std::fs::read_to_string(&out)?.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        match f.as_slice() {
            ["P", pid, cg] => {
                o.parents_reported += 1;
                if *cg == target {
                    o.parents_placed += 1;
                }
                let pid: u32 = pid.parse()?;
                if let (Some(e), Some(m)) = (t.exec.get(&pid), t.attach.get(&pid)) {
                    o.latency_us.push(m.saturating_sub(*e));
                    if let Some(w) = t.write.get(&pid).filter(|w| (*e..=*m).contains(*w)) {
                        o.reaction_us.push(w - e);
                        o.move_us.push(m - w);
                    }
                }
            }
            ["C", _, _, how, cg] => {
                let k = if *how == "exec" {
                    &mut o.exec_kids
                } else {
                    &mut o.fork_kids
                };
                k.0 += 1;
                if *cg != target {
                    k.1 += 1;
                }
            }
            _ => bail!("bad workload report line {l:?}"),
        }
    }
    o.latency_us.sort_unstable();
    o.reaction_us.sort_unstable();
    o.move_us.sort_unstable();
    Ok(o)
}

/// Runs one probe exec (no children) until it lands in `target`: the daemon is ready.
fn wait_ready(exe: &Path, work: &Path, target: &str, who: &str) -> Result<()> {
    let out = work.join("probe.txt");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        std::fs::write(&out, "")?;
        Command::new(exe)
            .env("PMB_KIDS", "0")
            .env("PMB_HOLD_MS", "300")
            .env("PMB_OUT", &out)
            .status()?;
        if std::fs::read_to_string(&out)?
            .trim_end()
            .ends_with(&format!(" {target}"))
        {
            return Ok(());
        }
    }
    bail!("{who} did not place a probe process into {target} within 30 s")
}

/// Inside the VM: procman, then cgrulesengd, on the same workload; writes JSON to `--out`.
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

    trace_write("trace_clock", "mono")?;
    trace_write("buffer_size_kb", "8192")?;
    let filter = format!("filename ~ \"*/{WORKLOAD}\"");
    trace_write("events/sched/sched_process_exec/filter", &filter)?;
    trace_write(
        "events/cgroup/cgroup_attach_task/filter",
        &format!("comm == \"{WORKLOAD}\""),
    )?;
    trace_write("events/sched/sched_process_exec/enable", "1")?;
    trace_write("events/cgroup/cgroup_attach_task/enable", "1")?;
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
        if mount == "favordynmods" {
            remount_favordynmods()?;
        }
        let pm = run_procman(&a, &exe, &work)?;
        let cg = run_cgrulesengd(&a, &exe, &work, target_cg)?;
        modes.push(
            serde_json::json!({"mount": mount, "procman": pm.json(), "cgrulesengd": cg.json()}),
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

/// procman with its default managed root, one slice and one rule on the comm.
fn run_procman(a: &GuestArgs, exe: &Path, work: &Path) -> Result<Outcome> {
    let target = "/procman.slice/bench";
    let cfg = format!(
        "[cgroup]\nroot = \"procman.slice\"\n[[slice]]\nname = \"bench\"\n\
         [[rule]]\ncomm = \"{WORKLOAD}\"\nslice = \"bench\"\n"
    );
    let agent = RunningAgent::start_with(&a.bin, &cfg)?;
    wait_ready(exe, work, target, "procman")?;
    let before = api_get(&agent.socket, "/api/placement")?;
    let mut pm = measure(a, exe, work, target)?;
    let after = api_get(&agent.socket, "/api/placement")?;
    let d = |k: &str| after[k].as_u64().unwrap_or(0) - before[k].as_u64().unwrap_or(0);
    pm.own = Some(serde_json::json!({
        "placed": d("placed"),
        "exited_before_placement": d("exited_before_placement"),
        "failed": d("failed"),
        "latency_us": after["latency_us"],
    }));
    Ok(pm)
}

fn run_cgrulesengd(a: &GuestArgs, exe: &Path, work: &Path, target: &str) -> Result<Outcome> {
    let mut cgred = Command::new("cgrulesengd")
        .args(["--nodaemon", "--nolog"])
        .spawn()
        .context("starting cgrulesengd (Debian package cgroup-tools)")?;
    let r =
        wait_ready(exe, work, target, "cgrulesengd").and_then(|_| measure(a, exe, work, target));
    let _ = cgred.kill();
    let _ = cgred.wait();
    r
}

/// Remounts the guest's cgroup2 with `favordynmods` (keeping its other options): migrations
/// stop waiting for an RCU grace period, at some cost to fork and exit. Guest only.
fn remount_favordynmods() -> Result<()> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo")?;
    let opts = mi
        .lines()
        .filter_map(|l| l.split_once(" - "))
        .find(|(pre, post)| {
            post.starts_with("cgroup2 ") && pre.split(' ').nth(4) == Some("/sys/fs/cgroup")
        })
        .and_then(|(_, post)| post.split(' ').nth(2))
        .context("no cgroup2 mount at /sys/fs/cgroup")?
        .split(',')
        .filter(|o| *o != "rw" && *o != "ro")
        .collect::<Vec<_>>()
        .join(",");
    let opts = format!("remount,{opts},favordynmods").replace(",,", ",");
    let st = Command::new("mount")
        .args(["-o", &opts, "/sys/fs/cgroup"])
        .status()?;
    if !st.success() {
        bail!("mount -o {opts} /sys/fs/cgroup failed ({st})");
    }
    Ok(())
}

/// Builds `pmb_work.c` with the BPF toolchain's clang into target/bench/pmb-work.
fn compile_workload() -> Result<PathBuf> {
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

/// On the host: boots the VM on `kernel`, runs [`guest`] there and prints the comparison.
pub fn host(bin: &Path, kernel: &str, spawns: Option<usize>) -> Result<()> {
    deps::ensure(deps::VM)?;
    deps::ensure(deps::BENCH_VM)?;
    let spawns = spawns.map(|n| n.min(1000)).unwrap_or(300);
    let workload = compile_workload()?;
    let body = format!(
        "{} bench-guest --bin {} --workload {} --spawns {spawns} --out /run/procman-job/placement.json\n",
        vm::quote_all(&[std::env::current_exe()?.to_string_lossy()]),
        vm::quote_all(&[bin.to_string_lossy()]),
        vm::quote_all(&[workload.to_string_lossy()]),
    );
    println!();
    println!(
        "bench placement, VM (kernel {kernel}, TCG, 2 vCPUs): {spawns} execs at 10/s, each forking 2 \
         children right after exec (one of which execs pmb-kid); procman, then cgrulesengd with the \
         same rule, on the default cgroup2 mount and then with favordynmods; measured by kernel \
         tracepoints (exec, cgroup_procs_write kprobe, cgroup_attach_task)"
    );
    let share = vm::guest_job(kernel, &body, "bench-placement", Duration::from_secs(900))?;
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
    Ok(())
}

fn print_mode(m: &serde_json::Value) {
    let (p, c) = (&m["procman"], &m["cgrulesengd"]);
    println!();
    println!(
        "cgroup2 mount: {}",
        if m["mount"] == "favordynmods" {
            "favordynmods (migrations skip the RCU grace period)"
        } else {
            "default options (as Debian boots it)"
        }
    );
    println!("{:<48} {:>12} {:>12}", "metric", "procman", "cgrulesengd");
    let row = |name: &str, k: &str| {
        println!(
            "{:<48} {:>12} {:>12}",
            name,
            p[k].to_string(),
            c[k].to_string()
        );
    };
    row("execs", "execs");
    row("execs seen by the exec tracepoint", "traced_execs");
    row("exec'd processes in the target cgroup", "parents_placed");
    row("children that only forked", "fork_kids");
    row("  of them escaped (goal 0)", "fork_kids_escaped");
    row("children that forked and exec'd pmb-kid", "exec_kids");
    row("  of them escaped (goal 0)", "exec_kids_escaped");
    row("moves traced (exec -> attach)", "moves_traced");
    let us = |name: &str, k: &str| {
        println!(
            "{:<48} {:>10}us {:>10}us",
            name,
            p[k].as_u64().unwrap_or(0),
            c[k].as_u64().unwrap_or(0)
        );
    };
    us("latency p50 (exec -> attached)", "p50_us");
    us("latency p90", "p90_us");
    us("latency p99", "p99_us");
    us("latency max", "max_us");
    us(
        "reaction p50 (exec -> write to cgroup.procs)",
        "reaction_p50_us",
    );
    us("reaction p99", "reaction_p99_us");
    us("kernel move p50 (write -> attached)", "move_p50_us");
    us("kernel move p99", "move_p99_us");
    let ratio = |k: &str| c[k].as_f64().unwrap_or(0.0) / p[k].as_f64().unwrap_or(1.0).max(1.0);
    for (name, k) in [
        ("latency p50", "p50_us"),
        ("latency p99", "p99_us"),
        ("reaction p50", "reaction_p50_us"),
        ("reaction p99", "reaction_p99_us"),
    ] {
        println!(
            "{:<48} {:>11.1}x",
            format!("cgrulesengd / procman, {name} (goal >= 3x)"),
            ratio(k)
        );
    }
    let own = &p["own"];
    println!(
        "{:<48} {:>12}",
        "procman's own count: placed/exited/failed",
        format!(
            "{}/{}/{}",
            own["placed"], own["exited_before_placement"], own["failed"]
        )
    );
    println!(
        "{:<48} {:>10}us {:>10}us",
        "procman's own histogram p50 / p99 (BPF ts)",
        own["latency_us"]["p50"].as_u64().unwrap_or(0),
        own["latency_us"]["p99"].as_u64().unwrap_or(0)
    );
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
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!((pct(&v, 0.5), pct(&v, 0.99), pct(&v, 1.0)), (50, 99, 100));
        assert_eq!(pct(&[], 0.5), 0);
    }
}

//! What the agent costs the rest of the machine: `bench switch` (context-switch tax) and
//! `bench sampler` (the sampler's own CPU with many processes).
use super::{median, rss_bytes, BenchArgs, RunningAgent};
use anyhow::{bail, Context, Result};
use std::{
    io::{Read, Write},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: usize) -> Result<()> {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity(0, ..) affects the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!(
                "sched_setaffinity(cpu {cpu}): {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// Round trips per second of a one-byte pipe ping-pong between two threads pinned to `cpu`
/// (every round trip is two context switches on that CPU), over `secs`.
fn ping_pong(cpu: usize, secs: f64) -> Result<f64> {
    let (mut a_r, mut a_w) = std::io::pipe()?;
    let (mut b_r, mut b_w) = std::io::pipe()?;
    let echo = std::thread::spawn(move || -> Result<()> {
        pin_to(cpu)?;
        let mut byte = [0u8; 1];
        // EOF (the pinger closed its end) ends the echo
        while a_r.read(&mut byte)? == 1 {
            b_w.write_all(&byte)?;
        }
        Ok(())
    });
    let ping = std::thread::spawn(move || -> Result<f64> {
        pin_to(cpu)?;
        let mut byte = [0u8; 1];
        let t0 = Instant::now();
        let end = Duration::from_secs_f64(secs);
        let mut n = 0u64;
        loop {
            for _ in 0..256 {
                a_w.write_all(&byte)?;
                b_r.read_exact(&mut byte)?;
            }
            n += 256;
            let el = t0.elapsed();
            if el >= end {
                return Ok(n as f64 / el.as_secs_f64());
            }
        }
    });
    let rate = ping
        .join()
        .map_err(|_| anyhow::anyhow!("pinger panicked"))??;
    echo.join()
        .map_err(|_| anyhow::anyhow!("echo panicked"))??;
    Ok(rate)
}

/// Starts the agent and waits until its start-up work (seed scan, first sample) is over.
fn start_quiet(bin: &Path, config: &str) -> Result<RunningAgent> {
    let agent = RunningAgent::start_with(bin, config)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    // agents that report their sampler: until one sample is done; older ones: a fixed wait
    loop {
        let s = agent.status()?;
        match s["sampler"]["samples"].as_u64() {
            Some(n) if n >= 1 => break,
            None => {
                std::thread::sleep(Duration::from_millis(2500));
                break;
            }
            _ => {}
        }
        if Instant::now() > deadline {
            bail!("the agent took no sample within 20 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    Ok(agent)
}

/// `bench switch`.
pub fn switch(a: &BenchArgs) -> Result<()> {
    let bin = super::bins(a)?;
    let secs = a.secs.unwrap_or(3.0);
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let cpu = cpus - 1;
    let mut configs: Vec<(String, Option<String>)> = vec![
        ("no agent".into(), None),
        ("agent, defaults".into(), Some(String::new())),
        (
            "agent, sched_stats = false".into(),
            Some("[events]\nsched_stats = false\n".into()),
        ),
        (
            "agent, sched_stats = true".into(),
            Some("[events]\nsched_stats = true\n".into()),
        ),
    ];
    for v in &a.variant {
        let Some((label, toml)) = v.split_once('=') else {
            bail!("--variant {v:?}: expected LABEL=TOML");
        };
        configs.push((format!("agent, {label}"), Some(toml.replace("\\n", "\n"))));
    }
    println!(
        "bench switch: pipe ping-pong between two threads pinned to CPU {cpu} of {cpus}, {secs} s per \
         measurement, {} rounds, configurations in rotating order; agent: {}",
        a.rounds,
        bin.join("procman-agent").display()
    );
    println!();
    println!(
        "{:<6} {:<36} {:>14} {:>12}",
        "round", "configuration", "round trips/s", "agent CPU %"
    );
    ping_pong(cpu, 0.5)?; // warm-up
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    for r in 0..a.rounds {
        for k in 0..configs.len() {
            let i = (k + r) % configs.len();
            let (name, config) = &configs[i];
            let agent = match config {
                Some(c) => Some(start_quiet(&bin, c)?),
                None => None,
            };
            let c0 = agent.as_ref().map(|g| g.cpu_secs());
            let t0 = Instant::now();
            let rate = ping_pong(cpu, secs)?;
            let cpu_pct = match (&agent, c0) {
                (Some(g), Some(c0)) => {
                    format!(
                        "{:.2}",
                        (g.cpu_secs() - c0) / t0.elapsed().as_secs_f64() * 100.0
                    )
                }
                _ => "-".into(),
            };
            drop(agent);
            results[i].push(rate);
            println!("{:<6} {:<36} {:>14.0} {:>12}", r + 1, name, rate, cpu_pct);
        }
    }
    let base = median(&mut results[0].clone());
    println!();
    println!(
        "{:<36} {:>16} {:>12} {:>18}",
        "configuration", "median trips/s", "vs no agent", "paired, median"
    );
    for (i, (name, _)) in configs.iter().enumerate() {
        // each round's rate against the same round's no-agent rate: slow drift cancels
        let mut ratios: Vec<f64> = results[i]
            .iter()
            .zip(&results[0])
            .map(|(x, b)| x / b)
            .collect();
        let paired = median(&mut ratios);
        let m = median(&mut results[i]);
        println!(
            "{:<36} {:>16.0} {:>11.1}% {:>17.1}%",
            name,
            m,
            (m / base - 1.0) * 100.0,
            (paired - 1.0) * 100.0
        );
    }
    println!("(goal: agent defaults within 1% of no agent)");
    Ok(())
}

/// Idle sleepers (or thread holders) and busy loops for `bench sampler`; killed on drop.
struct Load(Vec<Child>);

impl Load {
    /// `threads`: tasks per idle process (1: a `sleep`; more: a [`super::tasks`] holder).
    fn start(idle: usize, busy: usize, threads: usize) -> Result<Load> {
        let mut kids = Load(Vec::with_capacity(idle + busy));
        for i in 0..idle + busy {
            let spawned = if i < busy {
                super::tasks::die_with_parent(&mut Command::new("nice"), libc::SIGKILL)
                    .args(["-n", "19", "/bin/sh", "-c", "while :; do :; done"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
            } else if threads > 1 {
                super::tasks::spawn_holder(threads)
            } else {
                super::tasks::die_with_parent(&mut Command::new("sleep"), libc::SIGKILL)
                    .arg("3600")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
            };
            // on error the Load drops here and stops what it started
            kids.0.push(
                spawned
                    .with_context(|| format!("starting process {} of {}", i + 1, idle + busy))?,
            );
        }
        if threads > 1 {
            for k in &mut kids.0[busy..] {
                super::tasks::wait_ready(k)?;
            }
        }
        Ok(kids)
    }

    fn stop(&mut self) {
        for k in &mut self.0 {
            let _ = k.kill();
        }
        for k in &mut self.0 {
            let _ = k.wait();
        }
        self.0.clear();
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One sampler's measurement.
struct SamplerRun {
    cpu_pct: f64,
    rss: u64,
    kind: String,
    fallback: Option<String>,
    /// CPU time per sample, ms (the sampling thread's user + system time; wall time from
    /// agents that do not report it): medians of the samples reporting fewer than `procs`
    /// processes (changed-only sweeps) and of those reporting all of them.
    delta_ms: Option<f64>,
    full_ms: Option<f64>,
    /// Of the changed-only samples' CPU time, the kernel's sweep (iterator only).
    sweep_ms: Option<f64>,
    records: f64,
    samples: u64,
}

/// `config`: the `[monitor]` section's extra lines.
fn measure_sampler(bin: &Path, config: &str, procs: usize, secs: f64) -> Result<SamplerRun> {
    let agent = RunningAgent::start_with(bin, &format!("[monitor]\n{config}\n"))?;
    let sampling = !config.contains("1h");
    // until the table holds the load and two samples are done (cmdlines read once)
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = agent.status()?;
        let n = s["processes"].as_u64().unwrap_or(0) as usize;
        let want = if sampling { 2 } else { 1 };
        if n >= procs && s["sampler"]["samples"].as_u64().unwrap_or(0) >= want {
            break;
        }
        if Instant::now() > deadline {
            bail!("the agent ({config}) did not settle: {s}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let c0 = agent.cpu_secs();
    let t0 = Instant::now();
    let (mut delta, mut full, mut records, mut sweep) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut seen = 0;
    let mut last = serde_json::Value::Null;
    while t0.elapsed().as_secs_f64() < secs {
        std::thread::sleep(Duration::from_millis(250));
        let s = agent.status()?;
        let m = &s["sampler"];
        let n = m["samples"].as_u64().unwrap_or(0);
        if n != seen {
            seen = n;
            let ms = m["last_sample_cpu_seconds"]
                .as_f64()
                .or(m["last_sample_seconds"].as_f64())
                .unwrap_or(0.0)
                * 1e3;
            let rec = m["last_records"].as_u64().unwrap_or(0);
            records.push(rec as f64);
            // the iterator's sweep k (from 0) is full when k % full_sweep_every == 0; the
            // /proc sampler reports 0 there (every sample is full); agents that do not say:
            // a sample reporting every process was full
            let is_full = match m["full_sweep_every"].as_u64() {
                Some(0) => true,
                Some(every) => (n - 1) % every == 0,
                None => rec as usize >= procs,
            };
            if is_full {
                full.push(ms);
            } else {
                delta.push(ms);
                if let Some(sw) = m["last_sweep_cpu_seconds"].as_f64() {
                    sweep.push(sw * 1e3);
                }
            }
        }
        last = s;
    }
    let cpu = agent.cpu_secs() - c0;
    let el = t0.elapsed().as_secs_f64();
    let rss = rss_bytes(agent.child.id());
    let m = &last["sampler"];
    let med = |v: &mut Vec<f64>| (!v.is_empty()).then(|| median(v));
    Ok(SamplerRun {
        cpu_pct: cpu / el * 100.0,
        rss,
        kind: m["kind"].as_str().unwrap_or("?").to_string(),
        fallback: m["fallback_reason"].as_str().map(String::from),
        delta_ms: med(&mut delta),
        full_ms: med(&mut full),
        sweep_ms: med(&mut sweep),
        records: if records.is_empty() {
            0.0
        } else {
            records.iter().sum::<f64>() / records.len() as f64
        },
        samples: (delta.len() + full.len()) as u64,
    })
}

/// `bench sampler`.
pub fn sampler(a: &BenchArgs) -> Result<()> {
    let bin = super::bins(a)?;
    let secs = a.secs.unwrap_or(20.0);
    let rounds = a.rounds.clamp(1, 3);
    let threads = a.threads_per_proc as usize;
    let busy = a.busy.min(a.procs);
    let idle = a.procs - busy;
    println!(
        "bench sampler: {} {}processes{}, agent CPU over {secs} s per sampler (default 2 s \
         interval, full sweep every 15), {rounds} round(s), iter and proc alternating",
        a.procs,
        if threads > 1 { "" } else { "idle " },
        match (busy, threads) {
            (0, 1) => String::new(),
            (b, 1) => format!(" of which {b} nice-19 busy loops"),
            (b, t) => format!(
                ": {idle} holding {t} idle threads each ({} tasks){}",
                idle * t,
                if b > 0 {
                    format!(", {b} nice-19 busy loops")
                } else {
                    String::new()
                }
            ),
        }
    );
    // pids for every task of the load (and the agents' and tools'): raised for the run,
    // restored when `pid_max` drops (also on an error below) or on SIGINT/SIGTERM/SIGHUP
    let extra = idle * threads + busy;
    let current: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")?
        .trim()
        .parse()?;
    let pid_max = super::tasks::PidMaxGuard::raise_to(super::tasks::needed_pid_max(
        current,
        super::tasks::tasks_now(),
        extra,
    ))?;
    let t_load = Instant::now();
    let mut load = Load::start(idle, busy, threads)?;
    let total = std::fs::read_dir("/proc")?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .count();
    println!(
        "processes on the host now: {total}, tasks: {} (load started in {:.1} s)",
        super::tasks::tasks_now(),
        t_load.elapsed().as_secs_f64()
    );
    println!();
    println!(
        "{:<6} {:<10} {:>12} {:>8} {:>14} {:>12} {:>13} {:>12} {:>8}",
        "round",
        "sampler",
        "agent CPU %",
        "RSS MB",
        "changed-only",
        "its sweep",
        "full sample",
        "reported",
        "samples"
    );
    // iter, proc, and the agent without sampling (one sample an hour): the rest of its cost
    let configs = [
        ("iter", "sampler = \"iter\""),
        ("proc", "sampler = \"proc\""),
        ("none (1h)", "interval = \"1h\""),
    ];
    let mut by: [Vec<SamplerRun>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let result = (|| -> Result<()> {
        for r in 0..rounds {
            for k in 0..configs.len() {
                let i = (k + r) % configs.len();
                let (name, config) = configs[i];
                let run = measure_sampler(&bin, config, a.procs, secs)?;
                let ms = |v: Option<f64>| v.map_or("-".to_string(), |m| format!("{m:.1} ms"));
                println!(
                    "{:<6} {:<10} {:>12.2} {:>8.1} {:>14} {:>12} {:>13} {:>12.0} {:>8}",
                    r + 1,
                    name,
                    run.cpu_pct,
                    run.rss as f64 / 1e6,
                    ms(run.delta_ms),
                    ms(run.sweep_ms),
                    ms(run.full_ms),
                    run.records,
                    run.samples
                );
                if run.kind != name && i < 2 {
                    println!("       (active sampler: {})", run.kind);
                }
                if let Some(f) = &run.fallback {
                    println!("       (fallback: {f})");
                }
                by[i].push(run);
            }
        }
        Ok(())
    })();
    load.stop();
    drop(pid_max);
    result?;
    println!();
    println!(
        "{:<48} {:>10} {:>10} {:>10}",
        "median over rounds", "iter", "proc", "none (1h)"
    );
    // issue 14's goals: 10k idle <= 2%, 10k with 500 busy <= 4%, 100k tasks <= 10% and 150 MB
    let (cpu_goal, rss_goal) = if extra >= 100_000 {
        (
            "agent CPU, % of one core (goal <= 10%)",
            "agent RSS, MB (goal <= 150)",
        )
    } else if busy > 0 {
        ("agent CPU, % of one core (goal <= 4%)", "agent RSS, MB")
    } else {
        ("agent CPU, % of one core (goal <= 2%)", "agent RSS, MB")
    };
    type Metric = dyn Fn(&SamplerRun) -> Option<f64>;
    let col = |f: &Metric, i: usize| {
        let mut v: Vec<f64> = by[i].iter().filter_map(f).collect();
        if v.is_empty() {
            "-".to_string()
        } else {
            format!("{:.2}", median(&mut v))
        }
    };
    let rows: [(&str, &Metric); 6] = [
        (cpu_goal, &|r| Some(r.cpu_pct)),
        (rss_goal, &|r| Some(r.rss as f64 / 1e6)),
        ("CPU per changed-only sample, ms", &|r| r.delta_ms),
        ("  of it the kernel's sweep, ms", &|r| r.sweep_ms),
        ("CPU per full sample (iter) / any sample (proc), ms", &|r| {
            r.full_ms
        }),
        ("processes reported per sample", &|r| Some(r.records)),
    ];
    for (name, f) in rows {
        println!(
            "{:<48} {:>10} {:>10} {:>10}",
            name,
            col(f, 0),
            col(f, 1),
            col(f, 2)
        );
    }
    Ok(())
}

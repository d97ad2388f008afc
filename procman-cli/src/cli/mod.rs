//! The `procman` command-line client: argument parsing and output formatting.
pub mod actions;
pub mod enforce;
pub mod output;
pub mod policy;
pub mod services;
pub mod top;

use crate::client::{CliError, Client};
use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use output::{cut, paint, paint_status, Output, Paint};
use procman_common::api::{
    AgentStatus, EventKind, EventStreamItem, ProcEvent, ProcessDetail, ProcessInfo, ProcessList,
    SortKey, TreeNode,
};
use std::io::Write;

#[derive(Parser)]
#[command(
    name = "procman",
    version,
    about = "Watch processes and keep them inside CPU, memory, IO and pids budgets",
    long_about = "procman talks to procman-agent over its Unix socket (HTTP/JSON). The agent watches \
                  every process through eBPF and manages cgroup v2 slices.\n\n\
                  Examples:\n  procman events                  # live exec/fork/exit lines\n  \
                  procman events --comm sshd --json\n  procman status"
)]
pub struct Cli {
    /// Path of the agent's API socket.
    #[arg(long, global = true, env = "PROCMAN_SOCKET", default_value = procman_common::DEFAULT_SOCKET)]
    pub socket: String,
    /// When to colour the output: auto (on a terminal, unless NO_COLOR is set to anything;
    /// CLICOLOR_FORCE=1 forces it), always, or never.
    #[arg(long, global = true, value_name = "WHEN", value_enum, default_value_t = output::ColorWhen::Auto)]
    pub color: output::ColorWhen,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Stream process events (exec, fork, exit) live, like execsnoop.
    Events(EventsArgs),
    /// Show the agent's state: event source, counters, drops.
    Status(StatusArgs),
    /// List processes with their usage, like ps.
    Ps(PsArgs),
    /// Show one process in detail.
    Info(InfoArgs),
    /// Show the process tree.
    Tree(TreeArgs),
    /// A refreshing full-screen view like top/htop: sort, filter, tree, follow, kill, renice (h for the keys).
    Top(top::TopArgs),
    /// Usage history of a process: sparklines and avg/min/max/p95 over a window.
    History(HistoryArgs),
    /// Put processes into a slice with limits (creates or updates the slice).
    Limit(enforce::LimitArgs),
    /// Lift every limit of a slice (its processes stay in it).
    Unlimit(enforce::SliceArgs),
    /// List the managed slices with their usage and limits.
    Slices(enforce::SlicesArgs),
    /// Show the exec-time placement rules, their counters and exec-to-placement latency.
    Placement(enforce::PlacementArgs),
    /// Freeze a process (in its own slice) or a whole slice.
    Freeze(enforce::FreezeArgs),
    /// Thaw a frozen process or slice.
    Thaw(enforce::FreezeArgs),
    /// Run a command inside a slice from its first instruction, like `systemd-run --scope`.
    Run(enforce::RunArgs),
    /// Show the audit log: every change made through the agent and every refused attempt.
    Audit(AuditArgs),
    /// Print a shell completion script: `procman completions bash > /etc/bash_completion.d/procman`.
    Completions(CompletionsArgs),
    /// Print the procman(1) man page (roff), for packaging.
    #[command(hide = true)]
    Man,
    /// Policies ([[policy]] rules): their state, why a process is (not) acted on, and a dry
    /// test of new rules.
    #[command(subcommand)]
    Policy(policy::PolicyCmd),
    /// Supervised services: list, status, start, stop, restart.
    Service(services::ServiceArgs),
    /// A service's output (stdout and stderr, time-stamped): the last lines, or follow it.
    Logs(services::LogsArgs),
    /// End a process (SIGTERM, then SIGKILL after a grace), its subtree, or a slice's processes.
    Kill(actions::KillArgs),
    /// Change the nice value of every thread of a process.
    Renice(actions::ReniceArgs),
    /// Change the IO priority of every thread of a process: CLASS[:LEVEL].
    Ionice(actions::IoniceArgs),
    /// Follow the actions taken (kill, renice, ionice, slice kill) live.
    Actions(actions::ActionsArgs),
}

#[derive(Args)]
pub struct AuditArgs {
    /// Only records from the last DURATION, e.g. 1h or 30m.
    #[arg(long, value_name = "DURATION", value_parser = procman_common::units::parse_duration)]
    pub since: Option<std::time::Duration>,
    /// At most the last N records.
    #[arg(long, short = 'n', default_value_t = 50)]
    pub limit: usize,
    #[command(flatten)]
    pub out: Output,
}

#[derive(Args)]
pub struct HistoryArgs {
    /// The process id (a live process, or one that exited within the retention time).
    pub pid: u32,
    /// Window, in hours back from now (at most 48).
    #[arg(long, default_value_t = 1.0)]
    pub hours: f64,
    #[command(flatten)]
    pub out: Output,
}

#[derive(Args)]
pub struct PsArgs {
    /// Sort key: cpu, mem, io, time (CPU time used; biggest first), pid, age (oldest first).
    #[arg(long, short = 's', default_value = "cpu")]
    pub sort: SortKey,
    /// Show only the first N processes.
    #[arg(long, short = 'n', value_name = "N")]
    pub top: Option<usize>,
    /// Only processes of this user (name or uid).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Only processes matching EXPR, e.g. 'cpu > 50% and name ~ "^nginx"' (see README: Filters).
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    #[command(flatten)]
    pub out: Output,
}

#[derive(Args)]
pub struct InfoArgs {
    /// The process id.
    #[arg(required_unless_present = "name", conflicts_with = "name")]
    pub pid: Option<u32>,
    /// Look the process up by name (comm) instead; all matches are shown.
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub out: Output,
}

#[derive(Args)]
pub struct TreeArgs {
    /// Show only the subtree under this pid.
    #[arg(long, value_name = "PID")]
    pub root_pid: Option<u32>,
    /// Show only processes matching EXPR (and their ancestors, to keep the shape).
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    #[command(flatten)]
    pub out: Output,
}

#[derive(Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub out: Output,
    /// Only events of this process id (repeatable).
    #[arg(long, value_name = "PID")]
    pub pid: Vec<u32>,
    /// Only events whose comm (process name, max 15 chars) is NAME (repeatable).
    #[arg(long, value_name = "NAME")]
    pub comm: Vec<String>,
    /// Only these event kinds (repeatable): exec, fork, exit.
    #[arg(long, value_name = "KIND")]
    pub kind: Vec<EventKind>,
    /// Stop after this many events.
    #[arg(long, short = 'n', value_name = "N")]
    pub count: Option<u64>,
}

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub out: Output,
}

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

/// `procman completions SHELL` and `procman man`: generated from the clap definition, so they
/// cannot drift from the commands.
fn generate(cmd: &Cmd) -> Result<()> {
    use clap::CommandFactory;
    let mut command = Cli::command();
    let mut out = std::io::stdout().lock();
    match cmd {
        Cmd::Completions(a) => clap_complete::generate(a.shell, &mut command, "procman", &mut out),
        _ => clap_mangen::Man::new(command).render(&mut out)?,
    }
    Ok(())
}

pub async fn run(cli: Cli) -> Result<()> {
    if matches!(cli.cmd, Cmd::Completions(_) | Cmd::Man) {
        return generate(&cli.cmd);
    }
    let client = Client::new(&cli.socket);
    match cli.cmd {
        Cmd::Events(a) => events(&client, a).await,
        Cmd::Status(a) => status(&client, a).await,
        Cmd::Ps(a) => ps(&client, a).await,
        Cmd::Info(a) => info(&client, a).await,
        Cmd::Tree(a) => tree(&client, a).await,
        Cmd::Top(a) => top::run(&client, a).await,
        Cmd::History(a) => history(&client, a).await,
        Cmd::Limit(a) => enforce::limit(&client, a).await,
        Cmd::Unlimit(a) => enforce::unlimit(&client, a).await,
        Cmd::Slices(a) => enforce::slices(&client, a).await,
        Cmd::Placement(a) => enforce::placement(&client, a).await,
        Cmd::Freeze(a) => enforce::freeze(&client, a, true).await,
        Cmd::Thaw(a) => enforce::freeze(&client, a, false).await,
        Cmd::Audit(a) => audit(&client, a).await,
        Cmd::Completions(_) | Cmd::Man => unreachable!("handled above"),
        Cmd::Policy(c) => policy::run(&client, c).await,
        Cmd::Service(a) => services::service(&client, a).await,
        Cmd::Logs(a) => services::logs(&client, a).await,
        Cmd::Kill(a) => actions::kill(&client, a).await,
        Cmd::Renice(a) => actions::renice(&client, a).await,
        Cmd::Ionice(a) => actions::ionice(&client, a).await,
        Cmd::Actions(a) => actions::actions(&client, a).await,
        Cmd::Run(a) => {
            let code = enforce::run(&client, a).await?;
            std::process::exit(code);
        }
    }
}

fn join<T: ToString>(v: &[T]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Query string for the events endpoint (values are numbers, kinds or comm names; comm names
/// are percent-encoded).
pub fn events_query(pids: &[u32], comms: &[String], kinds: &[EventKind]) -> String {
    let mut q = Vec::new();
    if !pids.is_empty() {
        q.push(format!("pid={}", join(pids)));
    }
    if !comms.is_empty() {
        let enc: Vec<String> = comms.iter().map(|c| percent_encode(c)).collect();
        q.push(format!("comm={}", enc.join(",")));
    }
    if !kinds.is_empty() {
        q.push(format!("kind={}", join(kinds)));
    }
    if q.is_empty() {
        "/api/events".into()
    } else {
        format!("/api/events?{}", q.join("&"))
    }
}

pub(crate) fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Monotonic-to-wall-clock offset, to print kernel timestamps as local time.
fn wall_offset_ns() -> i128 {
    let now = |c| {
        let t = nix::time::clock_gettime(c).unwrap_or(nix::sys::time::TimeSpec::new(0, 0));
        t.tv_sec() as i128 * 1_000_000_000 + t.tv_nsec() as i128
    };
    now(nix::time::ClockId::CLOCK_REALTIME) - now(nix::time::ClockId::CLOCK_MONOTONIC)
}

fn local_hms(wall_ns: i128) -> String {
    let secs = (wall_ns / 1_000_000_000) as libc::time_t;
    let ms = (wall_ns % 1_000_000_000) / 1_000_000;
    // SAFETY: localtime_r writes into the tm we pass and reads only `secs`.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&secs, &mut tm) };
    format!(
        "{:02}:{:02}:{:02}.{ms:03}",
        tm.tm_hour, tm.tm_min, tm.tm_sec
    )
}

/// `2026-12-01 04:05:06` in local time.
fn local_datetime(secs: i64) -> String {
    let secs = secs as libc::time_t;
    // SAFETY: localtime_r writes into the tm we pass and reads only `secs`.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&secs, &mut tm) };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

pub fn format_event(ev: &ProcEvent, offset: i128) -> String {
    let detail = match ev.kind {
        EventKind::Exec => ev.filename.as_deref().unwrap_or("").to_string(),
        EventKind::Fork => String::new(),
        EventKind::Exit => match (ev.exit_code, ev.exit_signal) {
            (_, Some(sig)) => format!("killed by {}", signal_name(sig)),
            (Some(code), None) => format!("exit code {code}"),
            _ => String::new(),
        },
    };
    let thread = if ev.thread {
        format!(" (thread {})", ev.tid)
    } else {
        String::new()
    };
    format!(
        "{:<12}  {:<5}  {:>7}  {:>7}  {:>5}  {:<15}  {detail}{thread}",
        local_hms(ev.ts_ns as i128 + offset),
        ev.kind.as_str(),
        ev.pid,
        ev.ppid,
        ev.uid,
        ev.comm.to_string()
    )
}

async fn events(client: &Client, a: EventsArgs) -> Result<()> {
    let path = events_query(&a.pid, &a.comm, &a.kind);
    let offset = wall_offset_ns();
    let mut out = std::io::stdout().lock();
    let width = a.out.width();
    if !a.out.json() {
        let header = format!(
            "{:<12}  {:<5}  {:>7}  {:>7}  {:>5}  {:<15}  DETAILS",
            "TIME", "EVENT", "PID", "PPID", "UID", "COMM"
        );
        let _ = writeln!(out, "{}", cut(&paint(&header, Paint::Header), width));
        let _ = out.flush();
    }
    let mut seen = 0u64;
    let mut ok = true;
    client
        .stream_lines(&path, |line| {
            let item: EventStreamItem = match serde_json::from_slice(line) {
                Ok(i) => i,
                Err(e) => {
                    eprintln!("procman: skipping an unreadable event line: {e}");
                    return true;
                }
            };
            let written = match &item {
                EventStreamItem::Lagged { lagged } => {
                    eprintln!("procman: this stream fell behind; {lagged} event(s) were skipped");
                    if a.out.json() {
                        writeln!(out, "{}", String::from_utf8_lossy(line))
                    } else {
                        Ok(())
                    }
                }
                EventStreamItem::Event(ev) => {
                    seen += 1;
                    if a.out.json() {
                        writeln!(out, "{}", String::from_utf8_lossy(line))
                    } else {
                        writeln!(out, "{}", cut(&format_event(ev, offset), width))
                    }
                }
            };
            // Stop quietly when stdout is closed (e.g. `| head`).
            ok = written.and_then(|_| out.flush()).is_ok();
            ok && a.count.is_none_or(|c| seen < c)
        })
        .await?;
    let _ = ok;
    Ok(())
}

async fn status(client: &Client, a: StatusArgs) -> Result<()> {
    let s: AgentStatus = client.get("/api/status").await?;
    if a.out.json() {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!(
        "procman-agent {} (pid {}), up {}",
        s.version,
        s.pid,
        human_age(s.uptime_seconds)
    );
    match &s.fallback_reason {
        Some(r) => println!("event source:     {} (BPF unavailable: {r})", s.source),
        None => println!("event source:     {}", s.source),
    }
    println!("events received:  {}", s.events_received);
    println!("events dropped:   {}", s.events_dropped);
    if s.kernel_submitted > 0 {
        println!("kernel submitted: {}", s.kernel_submitted);
    }
    println!(
        "resyncs:          {} ({} corrections)",
        s.resyncs, s.resync_corrections
    );
    println!("processes:        {}", s.processes);
    if let Some(m) = &s.sampler {
        match &m.fallback_reason {
            Some(r) => println!(
                "sampler:          {} (task iterator unavailable: {r})",
                m.kind
            ),
            None => println!("sampler:          {}", m.kind),
        }
        let full = if m.kind == procman_common::api::SamplerKind::Iter {
            format!(", full sweep every {}", m.full_sweep_every)
        } else {
            String::new()
        };
        let sweep = if m.kind == procman_common::api::SamplerKind::Iter {
            format!(
                ", {:.1} ms of it the kernel's sweep",
                m.last_sweep_cpu_seconds * 1e3
            )
        } else {
            String::new()
        };
        println!(
            "samples:          {} every {}s{full}; last: {} processes reported, {:.1} ms CPU{sweep} ({:.1} ms wall)",
            m.samples, m.interval_seconds, m.last_records, m.last_sample_cpu_seconds * 1e3, m.last_sample_seconds * 1e3
        );
        match (&m.sched_tracing_error, m.sched_tracing) {
            (Some(e), _) => println!("sched tracing:    off (failed to attach: {e})"),
            (None, true) => println!("sched tracing:    on (sched_switch/sched_wakeup)"),
            (None, false) => {}
        }
    }
    println!("thread events:    {}", if s.threads { "on" } else { "off" });
    let e = &s.enforcement;
    match e.state.as_str() {
        "unused" => println!("enforcement:      not in use yet (no slice, rule or limit so far)"),
        "unavailable" => println!(
            "enforcement:      {}: {}",
            paint("unavailable", Paint::Warn),
            e.error.as_deref().unwrap_or("?")
        ),
        state => {
            println!(
                "enforcement:      {} ({})",
                paint_status(state),
                e.root.as_deref().unwrap_or("?")
            );
            for (c, v) in &e.controllers {
                println!("  {c:<7} {v}");
            }
            if !e.unenforced_keys.is_empty() {
                println!("  not enforceable here: {}", e.unenforced_keys.join(", "));
            }
            println!(
                "  freeze {}, cgroup.kill {}",
                if e.freeze { "yes" } else { "no (kernel < 5.2)" },
                if e.kill { "yes" } else { "no (kernel < 5.14)" }
            );
        }
    }
    if let Some(m) = &e.moves {
        println!(
            "cgroup moves:     favordynmods {} ([cgroup] favordynmods = \"{}\"{})",
            if m.favordynmods { "on" } else { "off" },
            m.favordynmods_setting,
            if m.remounted {
                "; remounted with it at start"
            } else {
                ""
            }
        );
        println!("  {}", m.reason);
        match &m.measured {
            Some(l) => println!(
                "  measured: p50 {} p99 {} over {} placement move(s)",
                fmt_us(l.p50_us),
                fmt_us(l.p99_us),
                l.moves
            ),
            None => println!("  expected: {} (no placement measured yet)", m.expected),
        }
    }
    if let Some(err) = &s.audit_error {
        println!("audit log:        {}: {err}", paint("FAILING", Paint::Bad));
    }
    Ok(())
}

/// Microseconds, in µs below 10 ms, else ms.
fn fmt_us(us: u32) -> String {
    if us < 10_000 {
        format!("{us} µs")
    } else {
        format!("{:.1} ms", f64::from(us) / 1000.0)
    }
}

/// Bytes for a table column (`512B`, `3.0M`), the units the rest of procman accepts.
pub fn human_bytes(b: u64) -> String {
    procman_common::units::fmt_bytes_approx(b)
}

pub(crate) fn human_age(s: f64) -> String {
    procman_common::units::fmt_duration(
        std::time::Duration::try_from_secs_f64(s).unwrap_or_default(),
    )
}

fn ps_header() -> String {
    format!(
        "{:>7} {:>7} {:<10} {:>1} {:>6} {:>5} {:>7} {:>8} {:>8} {:>4} {:>8}  {}",
        "PID",
        "PPID",
        "USER",
        "S",
        "%CPU",
        "%MEM",
        "RSS",
        "READ/s",
        "WRITE/s",
        "THR",
        "AGE",
        "COMMAND"
    )
}

/// One `ps` row; `wide` keeps user names longer than the column whole (like the command).
fn ps_line(p: &ProcessInfo, wide: bool) -> String {
    let cmd = if p.cmdline.is_empty() {
        format!("[{}]", p.name)
    } else {
        p.cmdline.clone()
    };
    let user: String = if wide {
        p.username.clone()
    } else {
        p.username.chars().take(10).collect()
    };
    let state = if p.frozen {
        paint("F", Paint::Frozen)
    } else {
        p.status.letter().to_string()
    };
    format!(
        "{:>7} {:>7} {:<10} {} {:>6.1} {:>5.1} {:>7} {:>8} {:>8} {:>4} {:>8}  {}",
        p.pid,
        p.parent_pid,
        user,
        state,
        p.cpu_percent,
        p.memory_percent,
        human_bytes(p.memory_bytes),
        human_bytes(p.read_bytes_per_second as u64),
        human_bytes(p.write_bytes_per_second as u64),
        p.num_threads,
        human_age(p.age_seconds),
        cmd
    )
}

fn percent_query(pairs: &[(&str, Option<String>)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", percent_encode(v))))
        .collect();
    q.join("&")
}

/// Checks a --filter locally, so a mistake is shown with a caret under its column.
fn check_filter(f: &Option<String>) -> Result<()> {
    if let Some(f) = f {
        procman_common::filter::Filter::parse(f).map_err(|e| CliError {
            code: 2,
            message: format!("invalid --filter:\n{}", e.render(f)),
        })?;
    }
    Ok(())
}

async fn ps(client: &Client, a: PsArgs) -> Result<()> {
    check_filter(&a.filter)?;
    let q = percent_query(&[
        ("sort", Some(a.sort.to_string())),
        ("limit", a.top.map(|n| n.to_string())),
        ("user", a.user.clone()),
        ("filter", a.filter.clone()),
    ]);
    let list: ProcessList = client.get(&format!("/api/processes?{q}")).await?;
    let procs = list.processes.unwrap_or_default();
    if a.out.json() {
        println!("{}", serde_json::to_string_pretty(&procs)?);
        return Ok(());
    }
    let width = a.out.width();
    let wide = a.out.format == output::Format::Wide;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", cut(&paint(&ps_header(), Paint::Header), width));
    for p in &procs {
        if writeln!(out, "{}", cut(&ps_line(p, wide), width)).is_err() {
            break; // stdout closed (`| head`)
        }
    }
    Ok(())
}

fn print_detail(d: &ProcessDetail) {
    let p = &d.process;
    let opt = |o: Option<u32>| o.map(|v| v.to_string()).unwrap_or_else(|| "?".into());
    println!("pid {}  ({})", p.pid, p.name);
    println!(
        "  command:   {}",
        if p.cmdline.is_empty() {
            "-"
        } else {
            &p.cmdline
        }
    );
    println!("  exe:       {}", p.exe.as_deref().unwrap_or("-"));
    println!("  cwd:       {}", d.cwd.as_deref().unwrap_or("-"));
    println!("  parent:    {}", p.parent_pid);
    println!(
        "  children:  {}",
        if d.children.is_empty() {
            "-".into()
        } else {
            join(&d.children)
        }
    );
    println!("  user:      {} (uid {})", p.username, p.uid);
    println!(
        "  state:     {} ({}){}{}",
        p.status,
        p.status.letter(),
        if p.kthread { " (kernel thread)" } else { "" },
        if p.frozen {
            format!(
                " {} (its slice is frozen: `procman thaw` it)",
                paint("FROZEN", Paint::Frozen)
            )
        } else {
            String::new()
        }
    );
    println!(
        "  started:   {} ({} ago)",
        p.started_at,
        human_age(p.age_seconds)
    );
    println!(
        "  cpu:       {:.1}% now, {} total",
        p.cpu_percent,
        human_age(p.cpu_time_seconds)
    );
    println!(
        "  memory:    {} RSS ({:.1}% of RAM)",
        human_bytes(p.memory_bytes),
        p.memory_percent
    );
    println!(
        "  io:        read {}/s, write {}/s (total {} / {})",
        human_bytes(p.read_bytes_per_second as u64),
        human_bytes(p.write_bytes_per_second as u64),
        human_bytes(p.read_bytes),
        human_bytes(p.write_bytes)
    );
    println!("  threads:   {}   nice: {}", p.num_threads, p.nice);
    println!(
        "  fds:       {} ({} sockets, {} files)",
        opt(d.num_fds),
        opt(d.connections),
        opt(d.open_files)
    );
    if let Some(l) = &d.leak_suspected {
        println!(
            "  {}: RSS grew {} -> {} over {}, {}/h (fit R² {:.2})",
            paint("LEAK SUSPECTED", Paint::Bad),
            human_bytes(l.from_bytes),
            human_bytes(l.to_bytes),
            human_age(l.span_seconds as f64),
            human_bytes(l.bytes_per_hour.max(0.0) as u64),
            l.r_squared
        );
    }
    if let Some(s) = &p.sched {
        let max = s
            .runq_max_seconds
            .map(|m| format!("longest {:.2} ms, ", m * 1e3))
            .unwrap_or_default();
        println!(
            "  sched:     {:.2}s on CPU, {:.3}s waiting for a CPU over {} runs ({max}{:.1}% of the last interval)",
            s.oncpu_seconds, s.runq_wait_seconds, s.runq_waits, s.runq_wait_percent
        );
    }
    println!("  cgroup:    {}", p.cgroup.as_deref().unwrap_or("-"));
}

async fn info(client: &Client, a: InfoArgs) -> Result<()> {
    let pids: Vec<u32> = match (a.pid, &a.name) {
        (Some(pid), _) => vec![pid],
        (None, Some(name)) => {
            let list: ProcessList = client.get("/api/processes?sort=pid").await?;
            let found: Vec<u32> = list
                .processes
                .unwrap_or_default()
                .into_iter()
                .filter(|p| &p.name == name)
                .map(|p| p.pid)
                .collect();
            if found.is_empty() {
                return Err(CliError {
                    code: 3,
                    message: format!(
                        "no process named {name:?} (names are the 15-character comm, as in `procman ps`)"
                    ),
                }
                .into());
            }
            found
        }
        (None, None) => unreachable!("clap requires a pid or --name"),
    };
    let mut details = Vec::new();
    for pid in pids {
        let d: ProcessDetail = client.get(&format!("/api/processes/{pid}")).await?;
        details.push(d);
    }
    if a.out.json() {
        let v = if details.len() == 1 {
            serde_json::to_value(&details[0])?
        } else {
            serde_json::to_value(&details)?
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for (i, d) in details.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print_detail(d);
    }
    Ok(())
}

fn print_tree(
    out: &mut impl Write,
    n: &TreeNode,
    prefix: &str,
    last: bool,
    top: bool,
) -> std::io::Result<()> {
    let p = &n.process;
    let branch = if top {
        ""
    } else if last {
        "└─ "
    } else {
        "├─ "
    };
    writeln!(
        out,
        "{prefix}{branch}{} {} [{:.1}% {}]",
        p.pid,
        p.name,
        p.cpu_percent,
        human_bytes(p.memory_bytes)
    )?;
    let child_prefix = if top {
        prefix.to_string()
    } else {
        format!("{prefix}{}", if last { "   " } else { "│  " })
    };
    for (i, c) in n.children.iter().enumerate() {
        print_tree(out, c, &child_prefix, i + 1 == n.children.len(), false)?;
    }
    Ok(())
}

async fn tree(client: &Client, a: TreeArgs) -> Result<()> {
    check_filter(&a.filter)?;
    let q = percent_query(&[
        ("root", a.root_pid.map(|r| r.to_string())),
        ("filter", a.filter.clone()),
    ]);
    let path = format!("/api/tree?{q}");
    let nodes: Vec<TreeNode> = client.get(&path).await?;
    if a.out.json() {
        println!("{}", serde_json::to_string_pretty(&nodes)?);
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    for n in &nodes {
        if print_tree(&mut out, n, "", true, true).is_err() {
            break;
        }
    }
    Ok(())
}

async fn audit(client: &Client, a: AuditArgs) -> Result<()> {
    let since = a.since.map_or(0.0, |d| {
        std::time::SystemTime::now()
            .checked_sub(d)
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0.0, |t| t.as_secs_f64())
    });
    let recs: Vec<procman_common::api::AuditRecord> = client
        .get(&format!("/api/audit?since={since}&limit={}", a.limit))
        .await?;
    if a.out.json() {
        println!("{}", serde_json::to_string_pretty(&recs)?);
        return Ok(());
    }
    let width = a.out.width();
    let mut out = std::io::stdout().lock();
    for r in &recs {
        let who = match (r.actor.uid, &r.actor.exe) {
            (Some(uid), Some(exe)) => format!("uid {uid} ({exe})"),
            (Some(uid), None) => format!("uid {uid}"),
            _ => r.actor.via.clone(),
        };
        let when = local_datetime(r.time.unix() as i64);
        let line = format!(
            "{when}  #{:<5} {} {:<12} {:<30} {who}{}",
            r.seq,
            paint_status(&format!("{:<7}", r.result)),
            r.action,
            r.target,
            r.detail
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        );
        if writeln!(out, "{}", cut(&line, width)).is_err() {
            break;
        }
    }
    Ok(())
}

/// A text sparkline of `v` scaled to its own maximum, at most `width` cells (averaged).
pub fn sparkline(v: &[f64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    if v.is_empty() || width == 0 {
        return String::new();
    }
    let per = v.len().div_ceil(width);
    let cells: Vec<f64> = v
        .chunks(per)
        .map(|c| c.iter().sum::<f64>() / c.len() as f64)
        .collect();
    let max = cells.iter().cloned().fold(0.0, f64::max);
    cells
        .iter()
        .map(|x| {
            if max <= 0.0 {
                BARS[0]
            } else {
                BARS[((x / max) * 7.0).round().clamp(0.0, 7.0) as usize]
            }
        })
        .collect()
}

async fn history(client: &Client, a: HistoryArgs) -> Result<()> {
    let h: procman_common::api::ProcessHistory = client
        .get(&format!(
            "/api/processes/{}/history?hours={}",
            a.pid, a.hours
        ))
        .await?;
    if a.out.json() {
        println!("{}", serde_json::to_string_pretty(&h)?);
        return Ok(());
    }
    // expand runs of identical samples so the sparkline's x axis is time
    let expand = |f: &dyn Fn(&procman_common::api::HistoryPoint) -> f64| -> Vec<f64> {
        h.history
            .iter()
            .flat_map(|s| std::iter::repeat_n(f(s), s.repeat.max(1) as usize))
            .collect()
    };
    let st = &h.window;
    println!(
        "pid {}{}: {} samples over the last {}h",
        h.pid,
        if h.exited { " (exited)" } else { "" },
        st.samples,
        h.hours
    );
    let header = format!(
        "{:<8} {:>10} {:>10} {:>10} {:>10}  trend",
        "", "avg", "min", "max", "p95"
    );
    println!("{}", paint(&header, Paint::Header));
    fn pct(x: f64) -> String {
        format!("{x:.1}%")
    }
    fn bytes(x: f64) -> String {
        human_bytes(x.max(0.0) as u64)
    }
    fn rate(x: f64) -> String {
        format!("{}/s", human_bytes(x.max(0.0) as u64))
    }
    type Row<'a> = (
        &'a str,
        &'a procman_common::api::Stat,
        fn(f64) -> String,
        Vec<f64>,
    );
    let rows: [Row; 4] = [
        (
            "cpu",
            &st.cpu_percent,
            pct,
            expand(&|s| s.cpu_percent as f64),
        ),
        (
            "rss",
            &st.memory_bytes,
            bytes,
            expand(&|s| s.memory_bytes as f64),
        ),
        (
            "read",
            &st.read_bytes_per_second,
            rate,
            expand(&|s| s.read_bytes_per_second as f64),
        ),
        (
            "write",
            &st.write_bytes_per_second,
            rate,
            expand(&|s| s.write_bytes_per_second as f64),
        ),
    ];
    for (name, s, f, series) in rows {
        println!(
            "{:<8} {:>10} {:>10} {:>10} {:>10}  {}",
            name,
            f(s.avg),
            f(s.min),
            f(s.max),
            f(s.p95),
            sparkline(&series, 40)
        );
    }
    if let Some(l) = &h.leak_suspected {
        println!(
            "leak suspected: RSS {} -> {} over {} ({}/h, R² {:.2})",
            human_bytes(l.from_bytes),
            human_bytes(l.to_bytes),
            human_age(l.span_seconds as f64),
            human_bytes(l.bytes_per_hour.max(0.0) as u64),
            l.r_squared
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_scales_to_its_maximum() {
        assert_eq!(sparkline(&[0.0, 1.0, 2.0, 4.0], 4), "▁▃▅█");
        assert_eq!(sparkline(&[0.0; 3], 3), "▁▁▁");
        assert_eq!(
            sparkline(&(0..100).map(f64::from).collect::<Vec<_>>(), 10)
                .chars()
                .count(),
            10
        );
        assert_eq!(sparkline(&[], 10), "");
    }

    #[test]
    fn the_command_tree_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(512), "512B");
        assert_eq!(human_bytes(3 << 20), "3.0M");
        assert_eq!(human_bytes(40 << 30), "40G");
    }
}

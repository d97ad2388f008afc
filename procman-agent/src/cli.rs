//! The `procman` command-line client: argument parsing and output formatting.
use crate::client::Client;
use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use procman_common::api::{AgentStatus, EventKind, EventStreamItem, ProcEvent};
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
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Stream process events (exec, fork, exit) live, like execsnoop.
    Events(EventsArgs),
    /// Show the agent's state: event source, counters, drops.
    Status(StatusArgs),
}

#[derive(Args)]
pub struct EventsArgs {
    /// Print one JSON object per line instead of aligned text.
    #[arg(long)]
    pub json: bool,
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
    #[arg(long)]
    pub json: bool,
}

pub async fn run(cli: Cli) -> Result<()> {
    let client = Client::new(&cli.socket);
    match cli.cmd {
        Cmd::Events(a) => events(&client, a).await,
        Cmd::Status(a) => status(&client, a).await,
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

fn percent_encode(s: &str) -> String {
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
    if !a.json {
        let _ = writeln!(
            out,
            "{:<12}  {:<5}  {:>7}  {:>7}  {:>5}  {:<15}  DETAILS",
            "TIME", "EVENT", "PID", "PPID", "UID", "COMM"
        );
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
                    if a.json {
                        writeln!(out, "{}", String::from_utf8_lossy(line))
                    } else {
                        Ok(())
                    }
                }
                EventStreamItem::Event(ev) => {
                    seen += 1;
                    if a.json {
                        writeln!(out, "{}", String::from_utf8_lossy(line))
                    } else {
                        writeln!(out, "{}", format_event(ev, offset))
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
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!(
        "procman-agent {} (pid {}), up {:.0}s",
        s.version, s.pid, s.uptime_s
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
    println!("thread events:    {}", if s.threads { "on" } else { "off" });
    Ok(())
}

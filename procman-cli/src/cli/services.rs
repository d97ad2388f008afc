//! `procman service list|status|start|stop|restart` and `procman logs`.
use super::output::{cut, paint, paint_status, Output, Paint};
use crate::client::Client;
use anyhow::Result;
use clap::{Args, Subcommand};
use hyper::Method;
use procman_common::{
    service::{ServiceInfo, ServiceLogs, ServiceState},
    units::{fmt_duration, Timestamp},
};
use std::io::Write;

#[derive(Args)]
pub struct ServiceArgs {
    #[command(subcommand)]
    pub cmd: ServiceCmd,
}

#[derive(Subcommand)]
pub enum ServiceCmd {
    /// Every service: state, main pid, for how long, restarts, last exit.
    List(JsonArg),
    /// One service in detail (state, reason, probe, next attempt).
    Status(NameArg),
    /// Start a service (also one that `failed`: its start limit starts afresh).
    Start(NameArg),
    /// Stop a service: its stop signal, then after the timeout every process of its slice is killed.
    Stop(NameArg),
    /// Stop and start a service.
    Restart(NameArg),
    /// Create a transient service (kept across agent restarts until removed) and start it.
    Add(Box<AddArgs>),
    /// Stop a transient service and forget it.
    Remove(NameArg),
}

#[derive(Args)]
pub struct AddArgs {
    /// The service's name.
    pub name: String,
    /// The command and its arguments (after --), run without a shell.
    #[arg(last = true, required = true)]
    pub exec: Vec<String>,
    /// no, on-failure (default), on-abnormal or always.
    #[arg(long)]
    pub restart: Option<String>,
    /// started (default), notify or probe.
    #[arg(long)]
    pub ready: Option<String>,
    /// Working directory.
    #[arg(long)]
    pub cwd: Option<String>,
    /// Run as this user (root only; others' services run as themselves).
    #[arg(long)]
    pub user: Option<String>,
    /// KEY=VALUE for its environment (repeatable).
    #[arg(long, short = 'e', value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// A limit of its slice, e.g. -p MemoryMax=512M (repeatable).
    #[arg(long = "property", short = 'p', value_name = "KEY=VALUE")]
    pub limits: Vec<String>,
    /// Start it once this service is ready (repeatable).
    #[arg(long)]
    pub after: Vec<String>,
    /// A liveness probe: http://HOST:PORT/PATH, or HOST:PORT for a TCP connect.
    #[arg(long, alias = "health-check", value_name = "URL|HOST:PORT")]
    pub probe: Option<String>,
    /// How often the probe runs (default 10s).
    #[arg(long, value_name = "DURATION")]
    pub probe_interval: Option<String>,
    /// Probe failures in a row that restart it (default 3).
    #[arg(long, value_name = "N")]
    pub probe_failures: Option<u32>,
    /// Create it without starting it.
    #[arg(long)]
    pub no_start: bool,
    #[command(flatten)]
    pub out: Output,
}

fn pairs(what: &str, v: &[String]) -> Result<serde_json::Map<String, serde_json::Value>> {
    let mut m = serde_json::Map::new();
    for kv in v {
        let (k, val) = kv.split_once('=').ok_or_else(|| {
            anyhow::Error::new(crate::client::CliError {
                code: 2,
                message: format!("{what} {kv:?}: expected KEY=VALUE"),
            })
        })?;
        m.insert(k.to_string(), serde_json::Value::String(val.to_string()));
    }
    Ok(m)
}

async fn add(client: &Client, a: AddArgs) -> Result<()> {
    let mut body = serde_json::json!({
        "name": a.name,
        "exec": a.exec,
        "env": pairs("--env", &a.env)?,
        "limits": pairs("--property", &a.limits)?,
        "after": a.after,
        "autostart": !a.no_start,
    });
    if let Some(p) = &a.probe {
        let kind = if p.starts_with("http://") {
            "http"
        } else {
            "tcp"
        };
        let mut probe = serde_json::json!({ kind: p });
        if let Some(i) = &a.probe_interval {
            probe["interval"] = serde_json::Value::String(i.clone());
        }
        if let Some(n) = a.probe_failures {
            probe["failure_threshold"] = n.into();
        }
        body["probe"] = probe;
    }
    for (k, v) in [
        ("restart", &a.restart),
        ("ready", &a.ready),
        ("cwd", &a.cwd),
        ("user", &a.user),
    ] {
        if let Some(v) = v {
            body[k] = serde_json::Value::String(v.clone());
        }
    }
    let s: ServiceInfo = client.call(Method::POST, "/api/services", &body).await?;
    print_outcome(&s, a.out.json())
}

#[derive(Args)]
pub struct JsonArg {
    #[command(flatten)]
    pub out: Output,
}

#[derive(Args)]
pub struct NameArg {
    /// The service's name (as in `[[service]] name`).
    pub name: String,
    #[command(flatten)]
    pub out: Output,
}

#[derive(Args)]
pub struct LogsArgs {
    /// The service's name.
    pub name: String,
    /// Keep printing new lines as they come (across rotations) until interrupted.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// The last N lines.
    #[arg(long, short = 'n', default_value_t = 50)]
    pub lines: usize,
    /// Only lines of the last DURATION, e.g. 10m or 1h.
    #[arg(long, value_name = "DURATION", value_parser = procman_common::units::parse_duration)]
    pub since: Option<std::time::Duration>,
    #[command(flatten)]
    pub out: Output,
}

fn path(name: &str) -> String {
    format!("/api/services/{}", super::percent_encode(name))
}

pub async fn service(client: &Client, a: ServiceArgs) -> Result<()> {
    match a.cmd {
        ServiceCmd::List(j) => {
            let list: Vec<ServiceInfo> = client.get("/api/services").await?;
            if j.out.json() {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            if list.is_empty() {
                println!("no services (declare them with [[service]] in the agent's config)");
                return Ok(());
            }
            let width = j.out.width();
            let header = format!(
                "{:<20} {:<12} {:>8} {:>8} {:>8}  DETAIL",
                "NAME", "STATE", "PID", "SINCE", "RESTARTS"
            );
            println!("{}", cut(&paint(&header, Paint::Header), width));
            for s in &list {
                let line = format!(
                    "{:<20} {} {:>8} {:>8} {:>8}  {}",
                    s.name,
                    paint_status(&format!("{:<12}", s.state.as_str())),
                    s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                    ago(s.since),
                    s.restarts,
                    detail(s)
                );
                println!("{}", cut(&line, width));
            }
            Ok(())
        }
        ServiceCmd::Status(n) => {
            let s: ServiceInfo = client.get(&path(&n.name)).await?;
            print_one(&s, n.out.json())
        }
        ServiceCmd::Start(n) => act(client, &n, "start").await,
        ServiceCmd::Stop(n) => act(client, &n, "stop").await,
        ServiceCmd::Restart(n) => act(client, &n, "restart").await,
        ServiceCmd::Add(a) => add(client, *a).await,
        ServiceCmd::Remove(n) => {
            let s: ServiceInfo = client
                .call(Method::DELETE, &path(&n.name), &serde_json::json!({}))
                .await?;
            if n.out.json() {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!("removed service {} (it was {})", s.name, s.state);
            }
            Ok(())
        }
    }
}

async fn act(client: &Client, n: &NameArg, verb: &str) -> Result<()> {
    let s: ServiceInfo = client
        .call(
            Method::POST,
            &format!("{}/{verb}", path(&n.name)),
            &serde_json::json!({}),
        )
        .await?;
    print_outcome(&s, n.out.json())
}

/// Prints the service after a command; a service that ended `failed` makes it an error.
fn print_outcome(s: &ServiceInfo, json: bool) -> Result<()> {
    print_one(s, json)?;
    if s.state == ServiceState::Failed {
        anyhow::bail!(
            "service {} failed: {}",
            s.name,
            s.reason.as_deref().unwrap_or("no reason given")
        );
    }
    Ok(())
}

fn ago(t: Timestamp) -> String {
    std::time::SystemTime::now()
        .duration_since(t.0)
        .map(fmt_duration)
        .unwrap_or_else(|_| "0s".into())
}

fn detail(s: &ServiceInfo) -> String {
    let mut parts = Vec::new();
    if let Some(r) = &s.reason {
        parts.push(r.clone());
    } else if let Some(e) = &s.last_exit {
        parts.push(format!("last: {e}"));
    }
    if let Some(t) = s.next_attempt {
        let left =
            t.0.duration_since(std::time::SystemTime::now())
                .map(|d| format!("{:.1}s", d.as_secs_f64()))
                .unwrap_or_else(|_| "now".into());
        parts.push(format!("next attempt in {left}"));
    }
    if let Some(p) = &s.probe {
        if p.ok == Some(false) {
            parts.push(format!(
                "probe failing {}/{}: {}",
                p.consecutive_failures,
                p.failure_threshold,
                p.last_error.as_deref().unwrap_or("")
            ));
        }
    }
    if s.adopted {
        parts.push("adopted".into());
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join("; ")
    }
}

fn print_one(s: &ServiceInfo, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(s)?);
        return Ok(());
    }
    println!("{} - {}", s.name, paint_status(s.state.as_str()));
    println!("  since:     {} ({} ago)", s.since, ago(s.since));
    if let Some(p) = s.pid {
        println!("  main pid:  {p}");
    }
    println!("  ready:     {}", if s.ready { "yes" } else { "no" });
    println!("  restarts:  {}", s.restarts);
    if let Some(e) = &s.last_exit {
        println!("  last exit: {e}");
    }
    if let Some(r) = &s.reason {
        println!("  reason:    {r}");
    }
    if let Some(t) = s.next_attempt {
        println!("  next:      {t}");
    }
    if let Some(p) = &s.probe {
        let res = match p.ok {
            None => "not run yet".to_string(),
            Some(true) => "ok".to_string(),
            Some(false) => format!(
                "failing {}/{} ({})",
                p.consecutive_failures,
                p.failure_threshold,
                p.last_error.as_deref().unwrap_or("")
            ),
        };
        println!("  probe:     {} {}: {res}", p.kind, p.target);
    }
    if !s.after.is_empty() {
        println!("  after:     {}", s.after.join(", "));
    }
    println!("  slice:     {}", s.slice);
    println!("  log:       {}", s.log_file);
    if s.adopted {
        println!(
            "  adopted:   yes (found running at agent start; its exit status will be unknown)"
        );
    }
    Ok(())
}

pub async fn logs(client: &Client, a: LogsArgs) -> Result<()> {
    if a.follow && a.out.json() {
        return Err(crate::client::CliError {
            code: 2,
            message: "--follow prints the lines as they come, not JSON: drop -o json, or \
                      --follow for the JSON of the last lines"
                .into(),
        }
        .into());
    }
    let mut q = format!("{}/logs?lines={}", path(&a.name), a.lines);
    if let Some(d) = a.since {
        q.push_str(&format!("&since={}s", d.as_secs().max(1)));
    }
    if a.follow {
        q.push_str("&follow=true");
        let mut out = std::io::stdout().lock();
        return client
            .stream_lines(&q, |line| {
                writeln!(out, "{}", String::from_utf8_lossy(line)).is_ok() && out.flush().is_ok()
            })
            .await;
    }
    let l: ServiceLogs = client.get(&q).await?;
    if a.out.json() {
        println!("{}", serde_json::to_string_pretty(&l)?);
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    for line in &l.lines {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

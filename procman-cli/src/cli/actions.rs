//! `procman kill | renice | ionice | actions`: acting on processes. Every value is checked
//! here, with the same parsers as the agent, before the agent is asked.
use super::output::{cut, paint, paint_status, Output, Paint};
use crate::client::{CliError, Client};
use anyhow::Result;
use clap::Args;
use hyper::Method;
use procman_common::action::{
    parse_grace, parse_signal, signal_name, ActionRecord, ActionStreamItem, IoPrio, IoniceAnswer,
    IoniceRequest, KillAnswer, KillRequest, NiceLevel, ReniceAnswer, ReniceRequest,
    SliceKillAnswer,
};
use std::io::Write;

fn bad_value(message: String) -> anyhow::Error {
    CliError { code: 2, message }.into()
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["pid", "slice"])))]
pub struct KillArgs {
    /// The process to end.
    pub pid: Option<u32>,
    /// Kill every process of this slice instead (cgroup.kill; the slice stays).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["force", "signal", "grace", "tree"])]
    pub slice: Option<String>,
    /// SIGKILL at once, without SIGTERM first.
    #[arg(long, short = 'f', conflicts_with_all = ["signal", "grace"])]
    pub force: bool,
    /// Send this signal instead of SIGTERM (TERM, HUP, INT, USR1, 9, ...). Nothing follows it
    /// unless --grace is given.
    #[arg(long, short = 's', value_name = "NAME", value_parser = parse_signal)]
    pub signal: Option<i32>,
    /// Wait this long after the first signal before SIGKILL (default: the agent's
    /// [actions] kill_grace, 5s; at most 5m).
    #[arg(long, value_name = "DUR", value_parser = parse_grace)]
    pub grace: Option<std::time::Duration>,
    /// End the whole subtree (descendants first).
    #[arg(long)]
    pub tree: bool,
    #[command(flatten)]
    pub out: Output,
}

pub async fn kill(client: &Client, a: KillArgs) -> Result<()> {
    if let Some(slice) = a.slice {
        let ans: SliceKillAnswer = client
            .call(Method::POST, &format!("/api/slices/{slice}/kill"), &())
            .await?;
        if a.out.json() {
            println!("{}", serde_json::to_string_pretty(&ans)?);
        } else {
            println!("{}", ans.message);
        }
        return Ok(());
    }
    let pid = a.pid.expect("clap requires a pid or --slice");
    let req = KillRequest {
        force: a.force,
        signal: a.signal.map(signal_name),
        grace: a.grace,
        tree: a.tree,
        ..Default::default()
    };
    let ans: KillAnswer = client
        .call(Method::POST, &format!("/api/processes/{pid}/kill"), &req)
        .await?;
    if a.out.json() {
        println!("{}", serde_json::to_string_pretty(&ans)?);
        return Ok(());
    }
    println!("{}", ans.message);
    if !ans.tree_killed.is_empty() {
        println!(
            "descendants: {}",
            ans.tree_killed
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(())
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("value").required(true).args(["nice", "level"])))]
pub struct ReniceArgs {
    pub pid: u32,
    /// The nice value, -20 (highest priority) .. 19 (lowest).
    #[arg(allow_negative_numbers = true, value_parser = parse_nice)]
    pub nice: Option<i32>,
    /// Or a level: low (nice 10), normal (0), high (-5).
    #[arg(long, value_parser = |s: &str| s.parse::<NiceLevel>())]
    pub level: Option<NiceLevel>,
    #[command(flatten)]
    pub out: Output,
}

fn parse_nice(s: &str) -> Result<i32, String> {
    let n: i32 = s
        .parse()
        .map_err(|_| format!("nice {s:?}: expected a number from -20 to 19"))?;
    procman_common::action::check_nice(n)
}

pub async fn renice(client: &Client, a: ReniceArgs) -> Result<()> {
    let req = ReniceRequest {
        nice: a.nice,
        level: a.level,
        ..Default::default()
    };
    req.target_nice().map_err(bad_value)?;
    let ans: ReniceAnswer = client
        .call(
            Method::POST,
            &format!("/api/processes/{}/renice", a.pid),
            &req,
        )
        .await?;
    if a.out.json() {
        println!("{}", serde_json::to_string_pretty(&ans)?);
    } else {
        println!("{}", ans.message);
    }
    Ok(())
}

#[derive(Args)]
pub struct IoniceArgs {
    pub pid: u32,
    /// CLASS[:LEVEL]: none, realtime, best-effort, idle; level 0 (highest) .. 7 for realtime
    /// and best-effort (default 4). E.g. best-effort:7, idle.
    #[arg(value_name = "CLASS[:LEVEL]", value_parser = |s: &str| s.parse::<IoPrio>())]
    pub prio: IoPrio,
    #[command(flatten)]
    pub out: Output,
}

pub async fn ionice(client: &Client, a: IoniceArgs) -> Result<()> {
    let req = IoniceRequest {
        class: a.prio.class,
        level: a.prio.level,
        started_at: None,
        start_ns: None,
    };
    let ans: IoniceAnswer = client
        .call(
            Method::POST,
            &format!("/api/processes/{}/ionice", a.pid),
            &req,
        )
        .await?;
    if a.out.json() {
        println!("{}", serde_json::to_string_pretty(&ans)?);
    } else {
        println!("{}", ans.message);
    }
    Ok(())
}

#[derive(Args)]
pub struct ActionsArgs {
    #[command(flatten)]
    pub out: Output,
    /// Stop after this many actions.
    #[arg(long, short = 'n', value_name = "N")]
    pub count: Option<u64>,
}

fn format_action(r: &ActionRecord) -> String {
    let target = match (&r.pid, &r.slice) {
        (Some(p), _) => format!(
            "pid {p}{}",
            r.name
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        ),
        (None, Some(s)) => format!("slice {s}"),
        (None, None) => "-".into(),
    };
    let secs = r.time as i64;
    format!(
        "{}  {:<10}  {}  {:<24}  {:<18}  {}",
        super::local_datetime(secs),
        r.action,
        paint_status(&format!("{:<6}", r.result)),
        target,
        r.actor,
        r.message
    )
}

/// Follows `GET /api/actions`, like `procman events`.
pub async fn actions(client: &Client, a: ActionsArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let width = a.out.width();
    if !a.out.json() {
        let header = format!(
            "{:<19}  {:<10}  {:<6}  {:<24}  {:<18}  MESSAGE",
            "TIME", "ACTION", "RESULT", "TARGET", "BY"
        );
        let _ = writeln!(out, "{}", cut(&paint(&header, Paint::Header), width));
        let _ = out.flush();
    }
    let mut seen = 0u64;
    client
        .stream_lines("/api/actions", |line| {
            let item: ActionStreamItem = match serde_json::from_slice(line) {
                Ok(i) => i,
                Err(e) => {
                    eprintln!("procman: skipping an unreadable action line: {e}");
                    return true;
                }
            };
            let written = match &item {
                ActionStreamItem::Lagged { lagged } => {
                    eprintln!("procman: this stream fell behind; {lagged} action(s) were skipped");
                    Ok(())
                }
                ActionStreamItem::Action(r) => {
                    seen += 1;
                    if a.out.json() {
                        writeln!(out, "{}", String::from_utf8_lossy(line))
                    } else {
                        writeln!(out, "{}", cut(&format_action(r), width))
                    }
                }
            };
            written.and_then(|_| out.flush()).is_ok() && a.count.is_none_or(|c| seen < c)
        })
        .await
}

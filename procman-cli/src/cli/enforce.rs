//! `procman limit | unlimit | slices | placement | freeze | thaw | run`.
use super::human_bytes;
use super::output::{cut, paint, Output, Paint};
use crate::client::Client;
use anyhow::{Context, Result};
use clap::Args;
use hyper::Method;
use procman_common::api::{LatencySummary, PlacementReport};
use procman_common::api::{LimitRequest, ProcessFreezeAnswer, SliceAnswer, SliceInfo};
use procman_common::limits::{parse_property, LimitKey, LimitValue};
use std::collections::BTreeMap;

/// Limits as flags; each maps to a systemd key (also settable with `-p KEY=VALUE`).
#[derive(Args, Default, Clone)]
pub struct LimitFlags {
    /// MemoryMax: hard memory limit (OOM kill above it), e.g. 512M, 2G, 50%, max.
    #[arg(long, value_name = "SIZE", value_parser = limit_value(LimitKey::MemoryMax))]
    pub memory: Option<String>,
    /// MemoryHigh: throttling threshold, e.g. 1G.
    #[arg(long, value_name = "SIZE", value_parser = limit_value(LimitKey::MemoryHigh))]
    pub memory_high: Option<String>,
    /// MemorySwapMax, e.g. 0 or 1G.
    #[arg(long, value_name = "SIZE", value_parser = limit_value(LimitKey::MemorySwapMax))]
    pub memory_swap: Option<String>,
    /// CPUQuota: percent of one CPU (200% = two CPUs), or "50% of machine".
    #[arg(long, value_name = "PERCENT", value_parser = limit_value(LimitKey::CPUQuota))]
    pub cpu: Option<String>,
    /// CPUWeight: 1..10000 (default 100).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=10000))]
    pub cpu_weight: Option<u16>,
    /// IOReadBandwidthMax as RATE:DEVICE, e.g. 100M:/dev/vda or 10M:254:0 (repeatable).
    #[arg(long, value_name = "RATE:DEV")]
    pub io_read: Vec<String>,
    /// IOWriteBandwidthMax as RATE:DEVICE (repeatable).
    #[arg(long, value_name = "RATE:DEV")]
    pub io_write: Vec<String>,
    /// IOReadIOPSMax as N:DEVICE (repeatable).
    #[arg(long, value_name = "N:DEV")]
    pub io_read_iops: Vec<String>,
    /// IOWriteIOPSMax as N:DEVICE (repeatable).
    #[arg(long, value_name = "N:DEV")]
    pub io_write_iops: Vec<String>,
    /// TasksMax: most processes+threads in the slice: a number, a percentage of the
    /// kernel's pid limit, or max.
    #[arg(long, value_name = "N", value_parser = limit_value(LimitKey::TasksMax))]
    pub pids: Option<String>,
    /// Any limit in systemd's form, e.g. -p MemoryMax=1G (repeatable).
    #[arg(short = 'p', long = "property", value_name = "KEY=VALUE")]
    pub property: Vec<String>,
}

impl LimitFlags {
    /// systemd key -> value; IO flags become "DEVICE RATE".
    pub fn to_map(&self) -> Result<BTreeMap<String, String>> {
        let mut m = BTreeMap::new();
        let mut one = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                m.insert(k.to_string(), v.clone());
            }
        };
        one("MemoryMax", &self.memory);
        one("MemoryHigh", &self.memory_high);
        one("MemorySwapMax", &self.memory_swap);
        one("CPUQuota", &self.cpu);
        one("CPUWeight", &self.cpu_weight.map(|w| w.to_string()));
        one("TasksMax", &self.pids);
        for (key, vals) in [
            ("IOReadBandwidthMax", &self.io_read),
            ("IOWriteBandwidthMax", &self.io_write),
            ("IOReadIOPSMax", &self.io_read_iops),
            ("IOWriteIOPSMax", &self.io_write_iops),
        ] {
            for v in vals {
                let Some((rate, dev)) = v
                    .rsplit_once(':')
                    .filter(|(_, d)| d.starts_with('/'))
                    .or_else(|| {
                        // RATE:MAJ:MIN
                        let mut it = v.splitn(2, ':');
                        Some((it.next()?, it.next()?))
                    })
                else {
                    return Err(usage(format!(
                        "{key} {v:?}: expected RATE:DEVICE, e.g. 100M:/dev/vda or 100M:254:0"
                    )));
                };
                let entry = format!("{dev} {rate}");
                let k: LimitKey = key.parse().expect("a known key");
                LimitValue::parse(k, &entry).map_err(|e| usage(e.to_string()))?;
                if m.contains_key(key) {
                    return Err(usage(format!(
                        "{key}: give one device per slice and flag (got {v:?} too)"
                    )));
                }
                m.insert(key.to_string(), entry);
            }
        }
        for p in &self.property {
            let (k, _) = parse_property(p).map_err(|e| usage(format!("-p {p:?}: {e}")))?;
            let (_, v) = p.split_once('=').expect("parse_property found the =");
            m.insert(k.to_string(), v.trim().to_string());
        }
        Ok(m)
    }
}

/// A clap value parser for one limit key: [`LimitValue::parse`], the parser the agent
/// uses for the config and the API, so a value is refused here (exit 2, with the accepted
/// forms) before the agent is asked, and accepted here exactly when the agent accepts it.
fn limit_value(key: LimitKey) -> impl Fn(&str) -> Result<String, String> + Clone {
    move |s: &str| {
        LimitValue::parse(key, s)
            .map(|_| s.trim().to_string())
            .map_err(|e| e.to_string())
    }
}

/// A mistake in the command line: exit code 2, before the agent is asked.
fn usage(message: String) -> anyhow::Error {
    crate::client::CliError { code: 2, message }.into()
}

#[derive(Args)]
pub struct LimitArgs {
    /// The process to limit (with its descendants; repeatable).
    #[arg(long, value_name = "PID", required_unless_present_any = ["name", "filter"])]
    pub pid: Vec<u32>,
    /// Every process with this name (comm).
    #[arg(long)]
    pub name: Option<String>,
    /// Every process matching this filter expression (needs --slice).
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// The slice to create or update (default pid-PID or name-NAME).
    #[arg(long)]
    pub slice: Option<String>,
    #[command(flatten)]
    pub limits: LimitFlags,
    #[command(flatten)]
    pub out: Output,
}

#[derive(Args)]
pub struct SliceArgs {
    /// The slice.
    #[arg(long)]
    pub slice: String,
    #[command(flatten)]
    pub out: Output,
}

#[derive(Args)]
pub struct FreezeArgs {
    /// A process: acted on where it is, in the procman slice it is alone in (one sharing a
    /// slice is refused: use --slice). `freeze` first moves a process outside procman's
    /// slices into a slice of its own, pid-PID, and says so.
    #[arg(required_unless_present = "slice", conflicts_with = "slice")]
    pub pid: Option<u32>,
    /// A slice, as a whole (every process in it).
    #[arg(long)]
    pub slice: Option<String>,
    #[command(flatten)]
    pub out: Output,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SlicesArgs {
    #[command(flatten)]
    pub out: Output,
    #[command(subcommand)]
    pub cmd: Option<SlicesCmd>,
}

#[derive(clap::Subcommand)]
pub enum SlicesCmd {
    /// Remove a slice. One with processes is refused unless --kill.
    Rm {
        /// The slice.
        name: String,
        /// Kill every process in it first (through cgroup.kill: no child escapes).
        #[arg(long)]
        kill: bool,
    },
}

#[derive(Args)]
pub struct PlacementArgs {
    #[command(flatten)]
    pub out: Output,
}

/// `procman placement`: the rules, what they did, and how fast.
pub async fn placement(client: &Client, a: PlacementArgs) -> Result<()> {
    let rep: PlacementReport = client.get("/api/placement").await?;
    if a.out.json() {
        println!("{}", serde_json::to_string_pretty(&rep)?);
        return Ok(());
    }
    if rep.rules.is_empty() {
        println!("no placement rules configured ([[rule]] in the agent's config)");
        return Ok(());
    }
    println!("rules (first match wins):");
    for r in &rep.rules {
        println!("  {r}");
    }
    println!();
    println!("placed                    {}", rep.placed);
    println!("followers moved with them {}", rep.followers);
    println!("exited before placement   {}", rep.exited_before_placement);
    println!("failed                    {}", rep.failed);
    let row = |name: &str, l: &LatencySummary| {
        println!(
            "{name:<26}{:>8}us p50 {:>8}us p90 {:>8}us p99 {:>8}us max  ({} samples)",
            l.p50, l.p90, l.p99, l.max, l.count
        );
    };
    println!();
    row("exec -> placed", &rep.latency_us);
    row("of it the kernel's move", &rep.move_us);
    println!();
    let h = &rep.hold;
    match (&h.reason, h.rules.is_empty()) {
        (Some(why), _) => println!("hold at exec: off ({why})"),
        (None, true) => println!(
            "hold at exec: available, used by no rule (a rule needs a comm condition and not \
             hold = \"never\")"
        ),
        (None, false) => {
            println!("hold at exec: on for {}", h.rules.join(", "));
            println!(
                "  released {}, timed out {}, left by a killed agent {}, exited while held {}, \
                 held now {}",
                h.released, h.timed_out, h.orphans, h.gone, h.held_now
            );
            row("held (exec -> resumed)", &h.held_us);
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct RunArgs {
    /// The slice to run in (default run-<pid of this command>).
    #[arg(long)]
    pub slice: Option<String>,
    #[command(flatten)]
    pub limits: LimitFlags,
    /// The command and its arguments (`--` before it is optional: needed only when the
    /// command's first word starts with `-`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "CMD"
    )]
    pub cmd: Vec<String>,
}

fn print_answer(a: &SliceAnswer, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(a)?);
        return Ok(());
    }
    let lim = if a.limits.is_empty() {
        "no limits".to_string()
    } else {
        a.limits
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "slice {} ({}): {lim}",
        a.slice,
        if a.created { "created" } else { "updated" }
    );
    if !a.moved.is_empty() {
        println!(
            "moved: {}",
            a.moved
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(())
}

pub async fn limit(client: &Client, a: LimitArgs) -> Result<()> {
    let req = LimitRequest {
        pids: a.pid.clone(),
        name: a.name.clone(),
        filter: a.filter.clone(),
        slice: a.slice.clone(),
        limits: a.limits.to_map()?,
    };
    let ans: SliceAnswer = client.call(Method::POST, "/api/limit", &req).await?;
    print_answer(&ans, a.out.json())
}

pub async fn unlimit(client: &Client, a: SliceArgs) -> Result<()> {
    let ans: SliceAnswer = client
        .call(
            Method::DELETE,
            &format!("/api/slices/{}/limits", a.slice),
            &(),
        )
        .await?;
    print_answer(&ans, a.out.json())
}

pub async fn freeze(client: &Client, a: FreezeArgs, on: bool) -> Result<()> {
    let verb = if on { "freeze" } else { "thaw" };
    let done = if on { "frozen" } else { "thawed" };
    match (a.pid, a.slice.clone()) {
        (_, Some(slice)) => {
            let ans: serde_json::Value = client
                .call(Method::POST, &format!("/api/slices/{slice}/{verb}"), &())
                .await?;
            if a.out.json() {
                println!("{}", serde_json::to_string_pretty(&ans)?);
                return Ok(());
            }
            println!("slice {slice}: {done}");
        }
        (Some(pid), None) => {
            let ans: ProcessFreezeAnswer = client
                .call(Method::POST, &format!("/api/processes/{pid}/{verb}"), &())
                .await?;
            if a.out.json() {
                println!("{}", serde_json::to_string_pretty(&ans)?);
                return Ok(());
            }
            match &ans.moved_from {
                Some(from) => println!(
                    "process {pid}: moved from {from} into slice {} (the limits of {from} no longer apply to it) and {done}",
                    ans.slice
                ),
                None => println!("process {pid}: {done} (slice {})", ans.slice),
            }
        }
        (None, None) => unreachable!("clap requires a pid or --slice"),
    }
    Ok(())
}

pub async fn slices(client: &Client, a: SlicesArgs) -> Result<()> {
    if let Some(SlicesCmd::Rm { name, kill }) = a.cmd {
        let path = format!("/api/slices/{name}{}", if kill { "?kill=true" } else { "" });
        let ans: serde_json::Value = client.call(Method::DELETE, &path, &()).await?;
        let killed = ans["killed"].as_array().map_or(0, |k| k.len());
        if killed > 0 {
            println!("slice {name}: removed ({killed} process(es) killed)");
        } else {
            println!("slice {name}: removed");
        }
        return Ok(());
    }
    let list: Vec<SliceInfo> = client.get("/api/slices").await?;
    if a.out.json() {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let width = a.out.width();
    let header = format!(
        "{:<20} {:>6} {:>10} {:>10} {:>8}  LIMITS",
        "SLICE", "PROCS", "MEMORY", "PEAK", "CPU"
    );
    println!("{}", cut(&paint(&header, Paint::Header), width));
    for s in &list {
        let st = s.stats.as_ref();
        let memory = st.and_then(|st| st.memory.as_ref());
        let mem = memory
            .map(|m| human_bytes(m.current))
            .unwrap_or_else(|| "-".into());
        let peak = memory
            .and_then(|m| m.peak)
            .map(human_bytes)
            .unwrap_or_else(|| "-".into());
        let cpu = st
            .and_then(|st| st.cpu.as_ref())
            .map(|c| super::human_age(c.usage_usec as f64 / 1e6))
            .unwrap_or_else(|| "-".into());
        let lim = s
            .limits
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let frozen = st.is_some_and(|st| st.frozen);
        let line = format!(
            "{:<20} {:>6} {:>10} {:>10} {:>8}  {}{}",
            s.name,
            s.pids.len(),
            mem,
            peak,
            cpu,
            if frozen {
                format!("{}  ", paint("FROZEN", Paint::Frozen))
            } else {
                String::new()
            },
            if lim.is_empty() { "-" } else { &lim }
        );
        println!("{}", cut(&line, width));
    }
    Ok(())
}

/// Runs the command inside the slice from its first instruction (clone3 CLONE_INTO_CGROUP),
/// passing stdio through and returning its exit status (128+signal when killed).
pub async fn run(client: &Client, a: RunArgs) -> Result<i32> {
    let slice = a
        .slice
        .clone()
        .unwrap_or_else(|| format!("run-{}", std::process::id()));
    let body = serde_json::json!({ "limits": a.limits.to_map()? });
    let ans: SliceAnswer = client
        .call(Method::POST, &format!("/api/slices/{slice}"), &body)
        .await?;
    let dir = std::fs::File::open(&ans.path)
        .with_context(|| format!("opening slice directory {}", ans.path))?;
    spawn_into(&dir, &a.cmd)
}

fn spawn_into(dir: &std::fs::File, cmd: &[String]) -> Result<i32> {
    use std::os::fd::AsRawFd;
    let pid = procman_common::spawn::spawn(
        cmd,
        procman_common::spawn::SpawnOpts {
            cgroup: Some(dir.as_raw_fd()),
            pid: None,
        },
    )
    .context("clone3(CLONE_INTO_CGROUP)")?;
    // Like a shell: the terminal's ^C goes to the child; we only wait for it.
    // SAFETY: ignoring SIGINT/SIGQUIT in this process only.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
    }
    procman_common::spawn::wait_status(pid).context("waiting for the command")
}

//! `procman policy list | explain PID | test FILE`.
use super::output::{paint, paint_status, Output, Paint};
use crate::client::{CliError, Client};
use anyhow::Result;
use clap::{Args, Subcommand};
use procman_common::{
    filter::Comparison,
    policy::{Explain, PolicyList, PolicyTestReport},
};

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Each policy: mode (and whether its budget is spent), hits, actions, targets in progress.
    List(ListArgs),
    /// Each policy against one process: does `match` select it, each condition's value
    /// against its threshold, how long it has held, and what would happen next and when.
    Explain(ExplainArgs),
    /// Validate a TOML file of [[policy]] entries and show what they would hit right now,
    /// without acting (the agent's running policies are not changed).
    Test(TestArgs),
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub out: Output,
}

#[derive(Args)]
pub struct ExplainArgs {
    /// The process id.
    pub pid: u32,
    #[command(flatten)]
    pub out: Output,
}

#[derive(Args)]
pub struct TestArgs {
    /// A TOML file with [[policy]] entries (`-` reads standard input).
    pub file: std::path::PathBuf,
    #[command(flatten)]
    pub out: Output,
}

pub async fn run(client: &Client, cmd: PolicyCmd) -> Result<()> {
    match cmd {
        PolicyCmd::List(a) => list(client, a).await,
        PolicyCmd::Explain(a) => explain(client, a).await,
        PolicyCmd::Test(a) => test(client, a).await,
    }
}

fn secs(s: f64) -> String {
    procman_common::units::fmt_duration(std::time::Duration::from_secs_f64(s.max(0.0)))
}

async fn list(client: &Client, a: ListArgs) -> Result<()> {
    let l: PolicyList = client.get("/api/policies").await?;
    if a.out.json() {
        println!("{}", serde_json::to_string_pretty(&l)?);
        return Ok(());
    }
    if l.policies.is_empty() {
        println!("no policies configured ([[policy]] in the agent's config)");
        return Ok(());
    }
    let header = format!(
        "{:<20} {:<8} {:<8} {:<8} {:>5} {:>7} {:>6} {:>7} {:>8}",
        "POLICY", "SCOPE", "MODE", "NOW", "HITS", "ACTIONS", "FAILED", "DRY-RUN", "BUDGET"
    );
    println!("{}", paint(&header, Paint::Header));
    for p in &l.policies {
        println!(
            "{:<20} {:<8} {:<8} {} {:>5} {:>7} {:>6} {:>7} {:>8}",
            p.name,
            p.scope,
            p.mode,
            paint_status(&format!("{:<8}", p.effective_mode)),
            p.hits,
            p.actions_taken,
            p.actions_failed,
            p.dry_run_actions,
            format!("{} left", p.budget_left),
        );
    }
    println!(
        "(last evaluation: {} rows, {:.2} ms to copy them, {:.2} ms to evaluate)",
        l.last_rows,
        l.last_build_seconds * 1e3,
        l.last_eval_seconds * 1e3
    );
    for p in &l.policies {
        println!();
        println!("{}: when {} for {}", p.name, p.when, secs(p.for_seconds));
        if !p.match_.is_empty() {
            println!("  match   {}", p.match_);
        }
        println!(
            "  then    {}  (recheck {}, cooldown {}, max {})",
            p.then.join(" -> "),
            secs(p.recheck_seconds),
            secs(p.cooldown_seconds),
            p.max_actions
        );
        if let Some(n) = &p.note {
            println!("  NOTE    {n}");
        }
        for t in &p.targets {
            let mut line = format!("  {:<26} {:<10}", t.target, t.state);
            if let Some(s) = t.true_for_seconds {
                line.push_str(&format!(" true for {}", secs(s)));
            }
            line.push_str(&format!(", {} step(s) taken", t.steps_taken));
            if let (Some(a), Some(s)) = (&t.next_action, t.next_in_seconds) {
                line.push_str(&format!(", next `{a}` in {}", secs(s)));
            }
            if let Some(c) = t.cooldown_left_seconds {
                line.push_str(&format!(", cooldown {} left", secs(c)));
            }
            println!("{line}");
        }
    }
    Ok(())
}

fn term(c: &Comparison) -> String {
    format!(
        "{} {} {}: now {} {}",
        c.field,
        c.op,
        c.threshold,
        c.value.as_deref().unwrap_or("(no value)"),
        if c.holds {
            paint("✓", Paint::Good)
        } else {
            paint("✗", Paint::Bad)
        }
    )
}

async fn explain(client: &Client, a: ExplainArgs) -> Result<()> {
    let e: Explain = client
        .get(&format!("/api/policies/explain/{}", a.pid))
        .await?;
    if a.out.json() {
        println!("{}", serde_json::to_string_pretty(&e)?);
        return Ok(());
    }
    println!("process {} ({})", e.pid, e.name);
    if let Some(p) = &e.protected {
        println!("  protected: {p}");
    }
    if e.policies.is_empty() {
        println!("  no policies configured");
    }
    for r in &e.policies {
        println!();
        println!("policy {} ({}, {})", r.policy, r.scope, r.effective_mode);
        if !r.match_.is_empty() {
            println!(
                "  match  {}  -> {}",
                r.match_,
                if r.matches {
                    "matches"
                } else {
                    "does not match"
                }
            );
            for t in &r.match_terms {
                println!("           {}", term(t));
            }
        }
        println!(
            "  when   {}  -> {}",
            r.when,
            if r.conditions.iter().all(|c| c.holds) && !r.conditions.is_empty() {
                "true"
            } else {
                "false"
            }
        );
        for t in &r.conditions {
            println!("           {}", term(t));
        }
        match r.true_for_seconds {
            Some(s) => println!(
                "  held   for {} of the {} required",
                secs(s),
                secs(r.for_seconds)
            ),
            None => println!("  held   not now ({} required)", secs(r.for_seconds)),
        }
        if r.steps_taken > 0 {
            println!("  steps  {} taken", r.steps_taken);
        }
        println!("  next   {}", r.next);
    }
    Ok(())
}

async fn test(client: &Client, a: TestArgs) -> Result<()> {
    let text = if a.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| CliError {
            code: 2,
            message: format!("reading the policies from standard input: {e}"),
        })?
    } else {
        std::fs::read_to_string(&a.file).map_err(|e| CliError {
            code: if e.kind() == std::io::ErrorKind::NotFound {
                3
            } else {
                2
            },
            message: format!("cannot read {}: {e}", a.file.display()),
        })?
    };
    let r: PolicyTestReport = client.post_text("/api/policies/test", text).await?;
    if a.out.json() {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "{}: {} polic(ies) valid",
        a.file.display(),
        r.policies.len()
    );
    for p in &r.policies {
        println!();
        println!(
            "policy {} ({}, {}): `match` selects {} {}; `when` holds now for {}",
            p.name,
            p.scope,
            p.mode,
            p.matched,
            if p.scope == "slice" {
                "slice(s)"
            } else {
                "process(es)"
            },
            p.hits.len()
        );
        println!("  then {}", p.then.join(" -> "));
        for h in &p.hits {
            let conds: Vec<String> = h
                .conditions
                .iter()
                .map(|c| format!("{} {}", c.field, c.value.as_deref().unwrap_or("-")))
                .collect();
            println!("  {:<26} {}  => {}", h.target, conds.join(", "), h.would);
        }
    }
    Ok(())
}

//! `procman top`: a refreshing terminal view of the agent's process table (ratatui), with
//! the keys top and htop users reach for (see [`keys::KEYS`]).
//!
//! - `state`: what the screen shows and what each key does, without a terminal or an agent
//!   (unit-tested key by key);
//! - `view`: drawing the state (tested with ratatui's test backend);
//! - this module: the event loop: keys from a reader thread, refreshes on the interval, and
//!   the kill and renice actions sent to the agent without blocking the screen.
//!
//! Kill and renice go through the agent's actions (`POST /api/processes/{pid}/kill|renice`)
//! with the process's `started_at`, so a pid reused since the screen showed it is refused
//! (409) instead of hitting another process.
mod keys;
mod state;
mod view;

use super::percent_encode;
use crate::client::{AgentError, Client};
use anyhow::{bail, Result};
use clap::Args;
use hyper::Method;
use procman_common::{
    action::{signal_name, KillAnswer, KillRequest, ReniceAnswer, ReniceRequest},
    api::{ProcessList, SortKey, SystemInfo, TreeNode},
};
use ratatui::crossterm::event::{self, Event, KeyEventKind};
use state::{Command, Line, Target, TopState};
use std::{future::Future, pin::Pin, time::Duration};
use tokio::time::Instant;

/// At most this many rows are fetched in the list view.
const LIMIT: usize = 500;

#[derive(Args)]
#[command(after_help = keys::help_text())]
pub struct TopArgs {
    /// Refresh interval, e.g. 2s or 500ms.
    #[arg(long, default_value = "2s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Initial sort key: cpu, mem, io, time (CPU time used), pid, age.
    #[arg(long, short = 's', default_value = "cpu")]
    pub sort: SortKey,
    /// Initial filter expression (as in `procman ps --filter`).
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    procman_common::units::parse_duration(s)
        .map_err(|e| e.to_string())
        .and_then(|d| {
            if d >= Duration::from_millis(100) {
                Ok(d)
            } else {
                Err(format!("{s}: at least 100ms"))
            }
        })
}

/// Fetches the list (or the tree) and the system totals; a failure is shown, never fatal.
async fn refresh(client: &Client, s: &mut TopState) {
    let mut error = None;
    let mut note = |e: anyhow::Error| {
        error.get_or_insert(format!("{e:#}"));
    };
    match client.get::<SystemInfo>("/api/system").await {
        Ok(sys) => s.system = Some(sys),
        Err(e) => note(e),
    }
    let filter = if s.filter.is_empty() {
        String::new()
    } else {
        format!("filter={}", percent_encode(&s.filter))
    };
    if s.tree {
        match client.get::<ProcessList>("/api/processes?limit=0").await {
            Ok(l) => (s.total, s.zombies) = (l.total_processes, l.zombie_count),
            Err(e) => note(e),
        }
        match client
            .get::<Vec<TreeNode>>(&format!("/api/tree?{filter}"))
            .await
        {
            Ok(t) => s.set_rows(state::flatten(&t, s.sort)),
            Err(e) => note(e),
        }
    } else {
        let path = format!("/api/processes?sort={}&limit={LIMIT}&{filter}", s.sort);
        match client.get::<ProcessList>(&path).await {
            Ok(l) => {
                (s.total, s.zombies) = (l.total_processes, l.zombie_count);
                let rows = l.processes.unwrap_or_default().into_iter();
                s.set_rows(
                    rows.map(|p| Line {
                        prefix: String::new(),
                        p,
                    })
                    .collect(),
                );
            }
            Err(e) => note(e),
        }
    }
    s.fetch_error = error;
}

/// An action's refusal in one line: what, on which process, why (the agent's words).
fn refusal(what: &str, t: &Target, e: &anyhow::Error) -> String {
    let why = match e.downcast_ref::<AgentError>().map(|a| a.status.as_u16()) {
        Some(403) => "denied",
        Some(409) => "refused: not the process shown any more",
        Some(404) => "failed: no such process",
        _ => "failed",
    };
    format!("{what} {} ({}) {why}: {e:#}", t.pid, t.name)
}

async fn kill(client: &Client, t: Target, signal: i32) -> Result<String, String> {
    // exactly the signal asked for, like top and htop (no SIGKILL after a grace)
    let req = KillRequest {
        signal: Some(signal_name(signal)),
        started_at: Some(t.started_at),
        ..Default::default()
    };
    client
        .call::<KillAnswer>(
            Method::POST,
            &format!("/api/processes/{}/kill", t.pid),
            &req,
        )
        .await
        .map(|a| a.message)
        .map_err(|e| refusal("kill", &t, &e))
}

async fn renice(client: &Client, t: Target, nice: i32) -> Result<String, String> {
    let req = ReniceRequest {
        nice: Some(nice),
        started_at: Some(t.started_at),
        ..Default::default()
    };
    client
        .call::<ReniceAnswer>(
            Method::POST,
            &format!("/api/processes/{}/renice", t.pid),
            &req,
        )
        .await
        .map(|a| a.message)
        .map_err(|e| refusal("renice", &t, &e))
}

type Pending<'a> = Pin<Box<dyn Future<Output = Result<String, String>> + 'a>>;

async fn event_loop(
    client: &Client,
    interval: Duration,
    s: &mut TopState,
    terminal: &mut ratatui::DefaultTerminal,
    keys: &mut tokio::sync::mpsc::UnboundedReceiver<std::io::Result<Event>>,
) -> Result<()> {
    let mut next = Instant::now();
    let mut pending: Option<Pending<'_>> = None;
    loop {
        if Instant::now() >= next {
            refresh(client, s).await;
            next = Instant::now() + interval;
        }
        terminal.draw(|f| view::render(s, f))?;
        tokio::select! {
            ev = keys.recv() => match ev {
                None => bail!("the terminal's input ended"),
                Some(Err(e)) => bail!("reading the terminal's input: {e}"),
                Some(Ok(Event::Key(k))) if k.kind == KeyEventKind::Press => match s.key(k) {
                    Command::Quit => return Ok(()),
                    Command::Refresh => next = Instant::now(),
                    Command::Nothing => {}
                    Command::Kill { target, signal } => {
                        pending = Some(Box::pin(kill(client, target, signal)));
                    }
                    Command::Renice { target, nice } => {
                        pending = Some(Box::pin(renice(client, target, nice)));
                    }
                },
                Some(Ok(_)) => {} // a resize or a release: draw again
            },
            r = async { pending.as_mut().expect("guarded by is_some").await }, if pending.is_some() => {
                pending = None;
                s.action_done(r);
                next = Instant::now();
            }
            _ = tokio::time::sleep_until(next) => {}
        }
    }
}

pub async fn run(client: &Client, a: TopArgs) -> Result<()> {
    // Fail before taking over the terminal when the agent is unreachable or the filter bad.
    let _: SystemInfo = client.get("/api/system").await?;
    super::check_filter(&a.filter)?;
    let mut state = TopState::new(a.sort, a.filter.unwrap_or_default());
    let mut terminal = ratatui::init();
    // Keys are read on their own thread (crossterm's read blocks), so that a refresh or an
    // action on its way never delays a key and a key never waits for the interval.
    let (tx, mut keys) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || loop {
        let ev = event::read();
        let failed = ev.is_err();
        if tx.send(ev).is_err() || failed {
            break;
        }
    });
    let result = event_loop(client, a.interval, &mut state, &mut terminal, &mut keys).await;
    ratatui::restore();
    result
}

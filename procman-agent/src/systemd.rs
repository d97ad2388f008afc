//! The agent as a systemd service (`Type=notify`, `packaging/procman-agent.service`), through
//! the `sd-notify` crate. Outside systemd (no `NOTIFY_SOCKET`) every call here does nothing.
//!
//! - `READY=1` once the event source is attached, the process table seeded, the start-up
//!   placement sweep done and the API socket bound: a unit ordered after procman-agent finds
//!   it answering.
//! - `WATCHDOG=1` every half `WatchdogSec`, but only while the agent makes progress: the
//!   sampler completed a sample since the last check (it runs every `[monitor] interval`,
//!   so the check looks back at least three intervals), and the process table's lock can be
//!   taken within a second (the dispatcher holds it only for in-memory updates). A wedged
//!   agent stops pinging and systemd restarts it.
//! - `RELOADING=1` / `READY=1` around a SIGHUP reload, `STOPPING=1` on the way out, and a
//!   one-line `STATUS=` for `systemctl status`.
use crate::core::Agent;
use sd_notify::NotifyState;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        log::warn!("cannot notify systemd: {e}");
    }
}

/// Started and serving.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn reloading() {
    send(&[NotifyState::Reloading]);
}

pub fn reloaded(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// `WatchdogSec` of the unit, when systemd asked for pings: `WATCHDOG_USEC`, for this
/// process when `WATCHDOG_PID` names it or is unset (libsystemd's `sd_watchdog_enabled`
/// rule; the crate's helper insists on `WATCHDOG_PID`).
fn watchdog_period() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Pings systemd's watchdog while the agent makes progress (see the module docs). Returns at
/// once when the unit has no `WatchdogSec`.
pub async fn watchdog(agent: Arc<Agent>, sample_every: Duration) {
    let Some(period) = watchdog_period() else {
        return;
    };
    let every = period / 2;
    log::info!(
        "systemd watchdog: {period:?}, pinging every {every:?} while the agent makes progress"
    );
    let mut tick = tokio::time::interval(every);
    let mut last_samples = agent.monitor.samples();
    let mut last_progress = Instant::now();
    loop {
        tick.tick().await;
        let samples = agent.monitor.samples();
        if samples != last_samples {
            last_samples = samples;
            last_progress = Instant::now();
        }
        let sampler_ok = last_progress.elapsed() <= (sample_every * 3).max(period);
        let a = agent.clone();
        let table_ok = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(1);
            loop {
                if a.table.try_read().is_ok() {
                    return true;
                }
                if Instant::now() >= deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
        .await
        .unwrap_or(false);
        if sampler_ok && table_ok {
            send(&[NotifyState::Watchdog]);
        } else {
            log::error!(
                "not pinging the systemd watchdog: {}",
                if !table_ok {
                    "the process table's lock was held for over a second"
                } else {
                    "the sampler made no progress"
                }
            );
        }
    }
}

//! The agent core: consumes the event source, keeps the process table current, fans events
//! out to subscribers (the API's event streams) and keeps the counters the API reports.
//!
//! One task owns the consuming side; the table sits behind a std RwLock that is only held
//! for a batch of in-memory updates, never across an await.
use crate::{
    events::{SourceInfo, SourceMsg},
    monitor::Monitor,
    tree::ProcTable,
};
use procman_common::api::{AgentStatus, ProcEvent};
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
    time::Instant,
};
use tokio::sync::{broadcast, mpsc};

/// Capacity of the fan-out channel. A subscriber more than this many events behind is told
/// how many it missed (`lagged`).
pub const BROADCAST_CAPACITY: usize = 16 * 1024;
const BATCH: usize = 512;

/// State shared between the core task and the API.
pub struct Agent {
    pub started: Instant,
    pub source: SourceInfo,
    pub threads: bool,
    pub table: RwLock<ProcTable>,
    pub events: broadcast::Sender<ProcEvent>,
    pub received: AtomicU64,
    pub resyncs: AtomicU64,
    pub resync_corrections: AtomicU64,
    /// Entries dropped because their process vanished without an exit event.
    pub vanished: AtomicU64,
    pub monitor: Monitor,
    pub enforcer: crate::enforce::Enforcer,
    /// API connections closed at once because too many were open.
    pub refused_connections: AtomicU64,
    /// Who may do what (`[[access]]`); replaced by a reload.
    pub access: RwLock<crate::access::Policy>,
    pub audit: crate::audit::Audit,
    /// The bearer token TCP clients must send (`[api] token_file`), when TCP is on.
    pub api_token: Option<String>,
    /// Web origins allowed to call the TCP API from a browser (`[api] cors_origins`);
    /// replaced by a reload.
    pub cors_origins: RwLock<Vec<crate::config::Origin>>,
    /// API requests answered, by method, route pattern and status (for `/metrics`).
    pub api_requests: RequestCounts,
    /// `[[policy]]` rules, evaluated after each sample.
    pub policies: crate::policy::Policies,
    /// The services' supervisor, set once at start (after the agent exists).
    pub services: std::sync::OnceLock<Arc<crate::services::Supervisor>>,
    /// Kill, renice, ionice: their settings and the `/api/actions` stream.
    pub actions: crate::actions::Actions,
}

/// Requests answered per (method, route pattern, status). The keys are bounded by the
/// router's routes and the statuses the API answers.
#[derive(Default)]
pub struct RequestCounts(std::sync::Mutex<std::collections::BTreeMap<(String, String, u16), u64>>);

impl RequestCounts {
    pub fn count(&self, method: &str, route: &str, status: u16) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((method.to_string(), route.to_string(), status))
            .or_default() += 1;
    }

    pub fn snapshot(&self) -> Vec<((String, String, u16), u64)> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// What the agent is made of, besides its event source (see [`Agent::new`]).
pub struct Parts {
    pub table: ProcTable,
    pub monitor: Monitor,
    pub enforcer: crate::enforce::Enforcer,
    pub access: crate::access::Policy,
    pub audit: crate::audit::Audit,
    pub api_token: Option<String>,
    pub cors_origins: Vec<crate::config::Origin>,
    pub policies: crate::policy::Policies,
    pub actions: crate::actions::Actions,
}

impl Agent {
    pub fn new(source: SourceInfo, threads: bool, parts: Parts) -> Arc<Agent> {
        let Parts {
            table,
            monitor,
            enforcer,
            access,
            audit,
            api_token,
            cors_origins,
            policies,
            actions,
        } = parts;
        let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
        Arc::new(Agent {
            started: Instant::now(),
            source,
            threads,
            table: RwLock::new(table),
            events,
            received: AtomicU64::new(0),
            resyncs: AtomicU64::new(0),
            resync_corrections: AtomicU64::new(0),
            vanished: AtomicU64::new(0),
            refused_connections: AtomicU64::new(0),
            monitor,
            enforcer,
            access: RwLock::new(access),
            audit,
            api_token,
            cors_origins: RwLock::new(cors_origins),
            api_requests: RequestCounts::default(),
            policies,
            services: std::sync::OnceLock::new(),
            actions,
        })
    }

    pub fn status(&self) -> AgentStatus {
        AgentStatus {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            source: self.source.kind,
            fallback_reason: self.source.fallback_reason.clone(),
            events_received: self.received.load(Ordering::Relaxed),
            events_dropped: self.source.counters.dropped(),
            kernel_submitted: self.source.counters.submitted(),
            resyncs: self.resyncs.load(Ordering::Relaxed),
            resync_corrections: self.resync_corrections.load(Ordering::Relaxed),
            vanished: self.vanished.load(Ordering::Relaxed),
            processes: self.table.read().map(|t| t.len()).unwrap_or(0),
            threads: self.threads,
            audit_log: self.audit.path().display().to_string(),
            audit_failures: self.audit.failures.load(Ordering::Relaxed),
            audit_error: self.audit.last_error(),
            refused_connections: self.refused_connections.load(Ordering::Relaxed),
            event_subscribers: self.events.receiver_count(),
            enforcement: self.enforcer.status(),
            sampler: Some(self.monitor.status()),
        }
    }

    /// Reads the new parents of orphans from /proc, then applies them under the lock.
    fn fix_reparents(&self) {
        let pending = self
            .table
            .read()
            .map(|t| t.pending_reparents())
            .unwrap_or_default();
        let found = crate::tree::check_reparents(&pending);
        self.table
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .apply_reparents(&found);
    }

    /// Resynchronises the table from /proc after `lost` events were dropped.
    fn resync(&self, lost: u64) {
        log::warn!(
            "{lost} event(s) lost by the kernel side; resynchronising the process table from /proc"
        );
        let t0 = Instant::now();
        let fresh = crate::tree::scan_proc(); // /proc first, then the lock
        let corrections = self
            .table
            .write()
            .map(|mut t| t.reconcile_with(fresh))
            .unwrap_or(0);
        self.resyncs.fetch_add(1, Ordering::Relaxed);
        self.resync_corrections
            .fetch_add(corrections, Ordering::Relaxed);
        log::warn!(
            "resync done in {:.1} ms: {corrections} correction(s) to the process table",
            t0.elapsed().as_secs_f64() * 1e3
        );
        // execs whose events were lost may have matched a rule
        if let Some(p) = self.enforcer.placement() {
            let n = p.sweep(&self.table);
            if n > 0 {
                log::warn!("placement sweep after the resync: {n} process(es) queued");
            }
        }
    }
}

/// Runs until the source closes.
pub async fn run(agent: Arc<Agent>, mut rx: mpsc::Receiver<SourceMsg>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut events: Vec<ProcEvent> = Vec::with_capacity(BATCH);
    loop {
        let pending = agent
            .table
            .read()
            .map(|t| t.has_pending_reparents())
            .unwrap_or(false);
        let received = if pending {
            // orphans wait for the kernel to reparent them: look again shortly even if idle
            tokio::time::timeout(
                std::time::Duration::from_millis(20),
                rx.recv_many(&mut batch, BATCH),
            )
            .await
            .ok()
        } else {
            Some(rx.recv_many(&mut batch, BATCH).await)
        };
        if received == Some(0) {
            log::error!("the event source stopped");
            return;
        }
        // /proc reads below run through block_in_place: this worker tells the runtime it
        // blocks, so other tasks move to another worker meanwhile.
        if pending {
            tokio::task::block_in_place(|| agent.fix_reparents());
        }
        // The dispatcher: every consumer sees the batch, in this order.
        // 1. the table (write lock, in memory only)
        let mut lost = 0;
        for msg in batch.drain(..) {
            match msg {
                SourceMsg::Event(ev) => events.push(ev),
                SourceMsg::Lost(n) => lost += n,
            }
        }
        agent
            .table
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .apply_all(&events);
        // 2. placement: decided in memory under the read lock, /proc only after it
        if let Some(p) = agent.enforcer.placement() {
            let deferred = p.plan(
                &events,
                &agent.table.read().unwrap_or_else(|e| e.into_inner()),
            );
            if !deferred.is_empty() {
                tokio::task::block_in_place(|| p.finish(deferred));
            }
        } else if let Some(h) = agent.enforcer.holds() {
            // held just before a reload removed every rule: nothing to place, resume them
            for ev in events.iter().filter(|e| e.held) {
                h.release(ev.pid, ev.start_ns);
            }
        }
        // 3. subscribers (the API's event streams; an error only means nobody listens)
        agent
            .received
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        for ev in events.drain(..) {
            let _ = agent.events.send(ev);
        }
        if lost > 0 {
            tokio::task::block_in_place(|| agent.resync(lost));
        }
    }
}

/// Samples usage every `interval` on a blocking thread (iterator or /proc reads), forever.
pub async fn run_sampler(agent: Arc<Agent>, interval: std::time::Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let a = agent.clone();
        // the policies evaluate each fresh sample on the same blocking thread (in memory; they
        // hand their actions to their own thread)
        let sampled = tokio::task::spawn_blocking(move || {
            let vanished = a.monitor.sample(&a.table);
            a.policies.tick(&a);
            vanished
        });
        match sampled.await {
            Ok(vanished) if !vanished.is_empty() => {
                let n = agent
                    .table
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .drop_vanished(&vanished);
                if n > 0 {
                    agent.vanished.fetch_add(n, Ordering::Relaxed);
                    log::debug!("{n} process(es) vanished from /proc without an exit event");
                }
            }
            Ok(_) => {}
            Err(e) => log::error!("the sampler failed: {e}"),
        }
        trim_heap(); // the sample replaced every Usage: give the old ones' memory back
    }
}

/// Returns freed heap memory to the kernel (see `tame_malloc` in main.rs: bursts on different
/// threads would otherwise stay resident).
pub fn trim_heap() {
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

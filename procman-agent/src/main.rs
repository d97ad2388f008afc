//! `procman-agent`: the privileged host agent.
use anyhow::{Context, Result};
use clap::Parser;
use procman_agent::{api, config::Config, core, events, monitor, tree::ProcTable};
use procman_common::api::SamplerKind;
use std::path::PathBuf;

const DEFAULT_CONFIG: &str = "/etc/procman/procman.toml";

#[derive(Parser)]
#[command(
    name = "procman-agent",
    version,
    about = "procman's host agent: watches every process through eBPF and serves the procman API",
    long_about = "procman-agent watches every process on the host (fork/exec/exit through BPF \
                  tracepoints, or the netlink proc connector when BPF is unavailable), keeps a live \
                  process table, and serves an HTTP/JSON API on a Unix socket for the `procman` CLI.\n\n\
                  It must run as root. Configuration: a TOML file (see procman.example.toml); \
                  command-line flags override it."
)]
struct Args {
    /// Configuration file (TOML). Default: /etc/procman/procman.toml if it exists, else built-in defaults.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// API socket path (overrides agent.socket).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Event source (overrides events.source): auto, bpf or netlink.
    #[arg(long, value_parser = ["auto", "bpf", "netlink"])]
    source: Option<String>,
    /// Also report thread creation/exit (overrides events.threads).
    #[arg(long)]
    threads: bool,
    /// Check the configuration and exit.
    #[arg(long)]
    check_config: bool,
    /// Print the procman-agent(8) man page (roff) and exit, for packaging.
    #[arg(long, hide = true)]
    man: bool,
}

/// The config file in use: `--config`, else the default path if it exists.
fn config_path(args: &Args) -> Option<PathBuf> {
    args.config.clone().or_else(|| {
        let p = PathBuf::from(DEFAULT_CONFIG);
        p.exists().then_some(p)
    })
}

fn load_config(args: &Args) -> Result<Config> {
    let mut cfg = match config_path(args) {
        Some(p) => Config::load(&p)?,
        None => Config::default(),
    };
    if let Some(s) = &args.socket {
        cfg.agent.socket = s.clone();
    }
    if let Some(s) = &args.source {
        cfg.events.source = toml::Value::String(s.clone())
            .try_into()
            .context("--source")?;
    }
    cfg.events.threads |= args.threads;
    Ok(cfg)
}

/// Every `grace`, removes transient slices that have been empty for a whole period (also
/// those left by a previous agent).
async fn remove_empty_transient(agent: std::sync::Arc<core::Agent>, grace: std::time::Duration) {
    let mut tick = tokio::time::interval(grace.max(std::time::Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let a = agent.clone();
        match tokio::task::spawn_blocking(move || a.enforcer.remove_empty_transient()).await {
            Ok(Ok(removed)) if !removed.is_empty() => {
                log::info!("removed empty transient slice(s): {}", removed.join(", "))
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => log::warn!("cleaning transient slices: {e}"),
            Err(e) => log::error!("cleaning transient slices failed: {e}"),
        }
    }
}

/// Reloads the config on every SIGHUP; a bad one is refused and the running one kept.
async fn reload_on_hup(agent: std::sync::Arc<core::Agent>, path: Option<PathBuf>, cfg: Config) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot handle SIGHUP ({e}); config reload is unavailable");
            return;
        }
    };
    let running = std::sync::Arc::new(std::sync::Mutex::new(cfg));
    while hup.recv().await.is_some() {
        procman_agent::systemd::reloading();
        let (a, p, r) = (agent.clone(), path.clone(), running.clone());
        let done = tokio::task::spawn_blocking(move || {
            let mut running = r.lock().unwrap_or_else(|e| e.into_inner());
            procman_agent::reload::reload(&a, p.as_deref(), &mut running)
        })
        .await;
        match done {
            Ok(Ok(r)) => {
                log::info!(
                    "configuration reloaded: {} slice(s), {} rule(s), {} access grant(s), {} polic(ies)",
                    r.slices,
                    r.rules,
                    r.grants,
                    r.policies
                );
                if !r.need_restart.is_empty() {
                    log::warn!(
                        "changes to {} take effect at the next restart",
                        r.need_restart.join(" ")
                    );
                }
            }
            Ok(Err(e)) => {
                log::error!("configuration reload refused: {e:#}; the running configuration stays")
            }
            Err(e) => log::error!("configuration reload failed: {e}"),
        }
        // READY=1 either way: a refused reload leaves the running configuration serving
        procman_agent::systemd::reloaded("configuration reloaded (see the log)");
    }
}

async fn run(cfg: Config, path: Option<PathBuf>) -> Result<()> {
    let opts = cfg.source_options()?;
    let rules = cfg.rules()?;
    // Bind first: a second agent must fail before it loads anything.
    let listener = api::bind(&cfg.agent.socket, &cfg.agent.socket_group).await?;
    let _socket_guard = api::SocketGuard(cfg.agent.socket.clone());
    let (tcp, api_token) = match cfg.api.listen_addr()? {
        None => (None, None),
        Some(addr) => {
            let token = cfg.api.token()?;
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("[api] listen = {addr}: cannot listen"))?;
            log::info!(
                "TCP API listening on {} (bearer token from {})",
                l.local_addr()?,
                cfg.api.token_file.display()
            );
            (Some(l), Some(token))
        }
    };
    let (source, rx) = events::start(cfg.events.source, &opts)?;
    match &source.fallback_reason {
        None => log::info!(
            "event source: {} (ring {} KiB, wakeup batch {}, poll {:?}, threads {})",
            source.kind,
            opts.ring_bytes >> 10,
            opts.wakeup_batch,
            opts.poll_interval,
            if opts.threads { "on" } else { "off" }
        ),
        Some(r) => log::warn!(
            "event source: {} (fallback; BPF unavailable: {r})",
            source.kind
        ),
    }
    // Seed after the source is attached, so nothing that starts in between is missed.
    let table = ProcTable::seed();
    log::info!("process table seeded from /proc: {} processes", table.len());
    let (samples, retention) = cfg.history()?;
    let sample_every = cfg.sample_interval()?;
    let sampler = monitor::Sampler::start(cfg.monitor.sampler, cfg.monitor.full_sweep_every)?;
    match sampler.fallback_reason() {
        None => log::info!(
            "sampler: {} every {sample_every:?}{}",
            sampler.kind(),
            if sampler.kind() == SamplerKind::Iter {
                format!(
                    " (full sweep every {} samples)",
                    cfg.monitor.full_sweep_every
                )
            } else {
                String::new()
            }
        ),
        Some(r) => log::warn!(
            "sampler: {} every {sample_every:?} (fallback; task iterator unavailable: {r})",
            sampler.kind()
        ),
    }
    let sched = if opts.sched_stats {
        match events::sched::SchedReader::start() {
            Ok(r) => {
                log::info!("scheduling tracer attached (sched_switch, sched_wakeup)");
                monitor::SchedTracer {
                    reader: Some(r),
                    error: None,
                }
            }
            Err(e) => {
                log::warn!("scheduling tracer unavailable: {e:#}; the longest run-queue wait is not measured");
                monitor::SchedTracer {
                    reader: None,
                    error: Some(format!("{e:#}")),
                }
            }
        }
    } else {
        monitor::SchedTracer::default()
    };
    let monitor = monitor::Monitor::new(
        samples,
        retention.as_secs() as u32,
        sample_every,
        sampler,
        sched,
    );
    match &source.exec.hold {
        procman_agent::hold::Support::Active(h) => log::info!(
            "hold-at-exec: available (held tasks pinned at {})",
            h.pin().display()
        ),
        procman_agent::hold::Support::Off(why) => {
            log::info!("hold-at-exec: off ({why}); matched programs are placed while they run")
        }
    }
    let enforcer = procman_agent::enforce::Enforcer::start(&cfg, rules, source.exec.clone())?;
    let access = cfg.access_policy()?;
    let actions = procman_agent::actions::Actions::new(cfg.action_settings()?);
    let audit =
        procman_agent::audit::Audit::new(&cfg.audit.path, cfg.audit.max_size.0, cfg.audit.keep);
    let policies = procman_agent::policy::Policies::new(cfg.policies()?);
    let agent = core::Agent::new(
        source,
        opts.threads,
        core::Parts {
            table,
            monitor,
            enforcer,
            access,
            audit,
            api_token,
            cors_origins: cfg.api.cors_origins.clone(),
            policies,
            actions,
        },
    );
    agent.policies.start(
        &agent,
        std::sync::Arc::new(procman_agent::policy::actuator::SysActuator {
            agent: std::sync::Arc::downgrade(&agent),
            runtime: tokio::runtime::Handle::current(),
        }),
    );
    if !agent.policies.is_empty() {
        log::info!(
            "policy engine: {} polic(ies), evaluated after each sample",
            agent.policies.len()
        );
    }
    // services: re-adopted from their slices (before the placement sweep, which must leave
    // their processes where they are), or started
    let services = cfg.service_specs()?;
    let n = services.len();
    let sup = {
        let a = agent.clone();
        let section = cfg.services.clone();
        // adoption reads cgroupfs and /proc: off the async workers, inside the runtime
        tokio::task::block_in_place(|| {
            procman_agent::services::Supervisor::start(&a, &section, services)
        })
    };
    let _ = agent.services.set(sup);
    if n > 0 {
        log::info!("services: {n} supervised");
    }
    // processes started while the agent was down go to their slices before anything else
    if agent.enforcer.placement().is_some() {
        let a = agent.clone();
        let n = tokio::task::spawn_blocking(move || {
            a.enforcer.placement().map_or(0, |p| p.sweep(&a.table))
        })
        .await?;
        log::info!("placement sweep at start: {n} running process(es) queued for their slices");
    }
    // tasks a killed agent left held: resumed once the sweep has placed them
    if let Some(h) = agent.enforcer.holds() {
        for (pid, hold) in h.take_orphans() {
            match agent.enforcer.placement() {
                Some(p) => p.release_after_moves(pid, hold),
                None => h.release_orphan(pid, hold),
            }
        }
    }
    core::trim_heap(); // BTF parsing and the seed scan are done
    log::info!("API listening on {}", cfg.agent.socket.display());
    procman_agent::systemd::ready(&format!(
        "watching {} processes ({} events, {} sampler); API on {}",
        agent.table.read().map(|t| t.len()).unwrap_or(0),
        agent.source.kind,
        agent.monitor.status().kind,
        cfg.agent.socket.display()
    ));
    tokio::spawn(procman_agent::systemd::watchdog(
        agent.clone(),
        sample_every,
    ));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // The event loop and the sampler run as tasks on the runtime's workers, not inside this
    // block_on future: the worker that sees the ring become readable then runs the event loop
    // itself (tokio's LIFO slot), with no hop to the main thread before a placement.
    tokio::spawn(reload_on_hup(agent.clone(), path, cfg.clone()));
    tokio::spawn(remove_empty_transient(
        agent.clone(),
        cfg.cgroup.transient_grace.0,
    ));
    let events = tokio::spawn(core::run(agent.clone(), rx));
    let sampler = tokio::spawn(core::run_sampler(agent.clone(), sample_every));
    let r = tokio::select! {
        _ = events => Err(anyhow::anyhow!("the event source stopped unexpectedly")),
        _ = sampler => Err(anyhow::anyhow!("the sampler stopped unexpectedly")),
        r = api::serve(listener, tcp, agent.clone()) => r,
        _ = tokio::signal::ctrl_c() => { log::info!("interrupted; exiting"); Ok(()) }
        _ = term.recv() => { log::info!("terminated; exiting"); Ok(()) }
    };
    procman_agent::systemd::stopping();
    agent.enforcer.release_all();
    r
}

/// Keeps the heap small: glibc gives each thread that allocates its own arena and keeps freed
/// memory in it; an agent whose bursts (seed scan, BTF parsing, big API answers) happen on
/// different threads would hold all of those peaks forever. Two arenas and a trim after
/// bursts keep the RSS near what is live.
fn tame_malloc() {
    // SAFETY: mallopt only changes allocator tunables; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// The agent protects the host, so it is the last thing the OOM killer should pick, and it
/// needs more than the default 1024 fds (API connections, one cgroup.procs per slice).
fn harden_self() {
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", "-900") {
        log::warn!("cannot set oom_score_adj to -900: {e}");
    }
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let want = hard.min(1 << 20);
        if soft < want {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, want, hard) {
                log::warn!("cannot raise the open-file limit from {soft} to {want}: {e}");
            }
        }
    }
}

fn main() {
    tame_malloc();
    let args = Args::parse();
    if args.man {
        use clap::CommandFactory;
        let page = clap_mangen::Man::new(Args::command()).section("8");
        match page.render(&mut std::io::stdout().lock()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                eprintln!("procman-agent: {e}");
                std::process::exit(1);
            }
            _ => {}
        }
        return;
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    let cfg = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("procman-agent: {e:#}");
            std::process::exit(2);
        }
    };
    if args.check_config {
        println!("configuration OK");
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "procman-agent: must run as root (it loads BPF programs and manages cgroups); try `sudo procman-agent`"
        );
        std::process::exit(1);
    }
    harden_self();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(run(cfg, config_path(&args))) {
        eprintln!("procman-agent: {e:#}");
        std::process::exit(1);
    }
}

//! `GET /metrics`: the Prometheus text exposition format, on the Unix socket and the TCP
//! listener (with the token: Prometheus's `authorization` scrape setting).
//!
//! Everything is read at scrape time from the state the agent keeps anyway (its counters, the
//! monitor's system sample, the placement histograms, the managed slices' cgroup files), by
//! one `prometheus_client` [`Collector`]: nothing is counted twice. Names follow Prometheus's
//! conventions: `procman_` prefix, base units (`_seconds`, `_bytes`, ratios 0..1), `_total`
//! counters. There are no per-pid labels: label values are the configured slices, the
//! router's routes, and fixed sets (resources, results).
//!
//! Reading the slices touches cgroupfs, so the handler runs on the blocking pool; it never
//! creates the managed root (a scrape of an agent that manages nothing shows no slices).
use super::{error::ApiErr, processes::blocking};
use crate::core::Agent;
use axum::{
    extract::State,
    http::{header, HeaderMap},
    response::IntoResponse,
};
use procman_common::api::{AgentStatus, LatencySummary, PlacementReport, SliceInfo, SystemInfo};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
    registry::{Registry, Unit},
};
use std::{fmt::Error, sync::Arc};

/// OpenMetrics, what `prometheus_client` writes and Prometheus asks for first.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The classic text format (0.0.4), for every other scraper and `promtool check metrics`.
const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prometheus metrics: OpenMetrics when the `Accept` header asks for it, else the classic
/// text format.
#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses(
        (status = 200, description = "The metrics (no per-pid labels).", content(
            (String = "text/plain; version=0.0.4; charset=utf-8"),
            (String = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )),
    ))]
pub async fn metrics(
    State(agent): State<Arc<Agent>>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiErr> {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let text = blocking(agent, |a| {
        let snapshot = Snapshot::take(a);
        let mut registry = Registry::with_prefix("procman");
        registry.register_collector(Box::new(snapshot));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .map_err(|e| ApiErr::internal(format!("encoding metrics: {e}")))?;
        Ok(out)
    })
    .await?;
    Ok(if openmetrics {
        ([(header::CONTENT_TYPE, OPENMETRICS)], text)
    } else {
        ([(header::CONTENT_TYPE, CLASSIC)], to_classic(&text))
    })
}

/// OpenMetrics text to the classic format: counters' HELP and TYPE name their samples
/// (`x_total`), and the `# UNIT` and `# EOF` lines go. (`prometheus_client` writes only
/// OpenMetrics; the two differ in nothing else this module emits.)
fn to_classic(om: &str) -> String {
    let counters: std::collections::HashSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// What one scrape reports, read once.
#[derive(Debug)]
struct Snapshot {
    status: AgentStatus,
    system: SystemInfo,
    zombies: usize,
    placement: Option<PlacementReport>,
    slices: Vec<SliceInfo>,
    requests: Vec<((String, String, u16), u64)>,
    services: Vec<procman_common::service::ServiceInfo>,
    policies: procman_common::policy::PolicyList,
}

impl Snapshot {
    fn take(a: &Agent) -> Snapshot {
        // the zombie count alone: the top lists would sort every process for nothing
        let zombies = {
            let table = a.table.read().unwrap_or_else(|e| e.into_inner());
            crate::query::zombie_count(&table, &a.monitor)
        };
        Snapshot {
            status: a.status(),
            system: a
                .monitor
                .system
                .read()
                .map(|s| s.info.clone())
                .unwrap_or_default(),
            zombies,
            placement: a
                .enforcer
                .placement()
                .is_some()
                .then(|| a.enforcer.placement_report()),
            slices: a.enforcer.open_slices(),
            requests: a.api_requests.snapshot(),
            services: a.services.get().map(|s| s.list()).unwrap_or_default(),
            policies: a.policies.list(),
        }
    }
}

/// Writes one metric family without labels.
fn one(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    m: impl EncodeMetric,
) -> Result<(), Error> {
    let d = e.encode_descriptor(name, help, unit, m.metric_type())?;
    m.encode(d)
}

/// Writes one metric family with a value per label set.
fn family<L, M>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    kind: MetricType,
    rows: impl IntoIterator<Item = (L, M)>,
) -> Result<(), Error>
where
    L: prometheus_client::encoding::EncodeLabelSet,
    M: EncodeMetric,
{
    let mut d = e.encode_descriptor(name, help, unit, kind)?;
    for (labels, m) in rows {
        m.encode(d.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

fn gauge(v: f64) -> ConstGauge<f64> {
    ConstGauge::new(v)
}

/// A histogram read from a latency summary's power-of-two µs buckets (the placement
/// module's HDR histogram, cumulative since start), in seconds.
#[derive(Debug)]
struct ConstHistogram {
    sum: f64,
    count: u64,
    /// (upper bound, count in this bucket alone).
    buckets: Vec<(f64, u64)>,
}

fn histogram(l: &LatencySummary) -> ConstHistogram {
    // bucket i counts latencies below 2^i µs (and at least 2^(i-1))
    let mut buckets: Vec<(f64, u64)> = l
        .buckets
        .iter()
        .enumerate()
        .map(|(i, &n)| ((1u64 << i) as f64 / 1e6, n))
        .collect();
    // the last bucket also holds everything above it: +Inf
    if let Some(last) = buckets.last_mut() {
        last.0 = f64::INFINITY;
    }
    ConstHistogram {
        sum: l.sum_us as f64 / 1e6,
        count: l.count as u64,
        buckets,
    }
}

impl EncodeMetric for ConstHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), Error> {
        encoder.encode_histogram::<()>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), Error> {
        let s = &self.status;
        let sec = Some(&Unit::Seconds);
        let bytes = Some(&Unit::Bytes);
        let ratio_unit = Unit::Other("ratio".into());
        let ratio = Some(&ratio_unit);
        // the agent
        // an info metric in the classic form (a gauge of 1), which every parser reads
        family(
            &mut e,
            "build_info",
            "The agent's version, event source and sampler.",
            None,
            MetricType::Gauge,
            [(
                [
                    ("version", s.version.clone()),
                    ("source", s.source.to_string()),
                    (
                        "sampler",
                        s.sampler
                            .as_ref()
                            .map_or("none".into(), |m| m.kind.to_string()),
                    ),
                ],
                ConstGauge::new(1i64),
            )],
        )?;
        one(
            &mut e,
            "uptime",
            "Time since the agent started.",
            sec,
            gauge(s.uptime_seconds),
        )?;
        one(
            &mut e,
            "events_received",
            "Process events decoded.",
            None,
            counter(s.events_received),
        )?;
        one(
            &mut e,
            "events_lost",
            "Event records the kernel side could not deliver (ring full, netlink ENOBUFS).",
            None,
            counter(s.events_dropped),
        )?;
        one(
            &mut e,
            "resyncs",
            "Times the process table was resynchronised from /proc after a loss.",
            None,
            counter(s.resyncs),
        )?;
        one(
            &mut e,
            "resync_corrections",
            "Corrections the resyncs made.",
            None,
            counter(s.resync_corrections),
        )?;
        one(
            &mut e,
            "processes",
            "Live processes in the agent's table.",
            None,
            ConstGauge::new(s.processes as i64),
        )?;
        one(
            &mut e,
            "zombie_processes",
            "Processes that exited and are not reaped yet.",
            None,
            ConstGauge::new(self.zombies as i64),
        )?;
        one(
            &mut e,
            "event_subscribers",
            "Open event streams.",
            None,
            ConstGauge::new(s.event_subscribers as i64),
        )?;
        one(
            &mut e,
            "api_connections_refused",
            "API connections closed at once: too many open.",
            None,
            counter(s.refused_connections),
        )?;
        one(
            &mut e,
            "audit_write_failures",
            "Audit lines that could not be written.",
            None,
            counter(s.audit_failures),
        )?;
        family(
            &mut e,
            "api_requests",
            "API requests answered, by method, route and status.",
            None,
            MetricType::Counter,
            self.requests.iter().map(|((method, route, status), n)| {
                (
                    [
                        ("method", method.clone()),
                        ("route", route.clone()),
                        ("status", status.to_string()),
                    ],
                    counter(*n),
                )
            }),
        )?;
        if let Some(m) = &s.sampler {
            one(
                &mut e,
                "sampler_samples",
                "Usage samples taken.",
                None,
                counter(m.samples),
            )?;
            one(
                &mut e,
                "sampler_last_sample_cpu",
                "CPU time the last sample took.",
                sec,
                gauge(m.last_sample_cpu_seconds),
            )?;
            one(
                &mut e,
                "sampler_last_sample_duration",
                "Wall time the last sample took.",
                sec,
                gauge(m.last_sample_seconds),
            )?;
            one(
                &mut e,
                "sampler_last_records",
                "Processes reported by the last sample.",
                None,
                ConstGauge::new(m.last_records as i64),
            )?;
        }
        if let Some(m) = &s.enforcement.moves {
            one(
                &mut e,
                "cgroup_favordynmods",
                "1 when the cgroup2 mount has favordynmods (moves skip an RCU grace period), else 0.",
                None,
                ConstGauge::new(i64::from(m.favordynmods)),
            )?;
        }
        // placement
        if let Some(p) = &self.placement {
            family(
                &mut e,
                "placements",
                "Exec-time placement outcomes.",
                None,
                MetricType::Counter,
                [
                    ("placed", p.placed),
                    ("exited_before_placement", p.exited_before_placement),
                    ("failed", p.failed),
                    ("followers", p.followers),
                    ("swept", p.swept),
                ]
                .map(|(r, n)| ([("result", r)], counter(n))),
            )?;
            one(
                &mut e,
                "placement_latency",
                "Exec (kernel timestamp) to the move into the slice completed.",
                sec,
                histogram(&p.latency_us),
            )?;
            one(
                &mut e,
                "placement_move_duration",
                "The kernel's part of a placement: the write to cgroup.procs.",
                sec,
                histogram(&p.move_us),
            )?;
            let h = &p.hold;
            one(
                &mut e,
                "placement_hold_active",
                "Whether matched execs are held (stopped before their first instruction) until placed.",
                None,
                ConstGauge::new(i64::from(h.active)),
            )?;
            family(
                &mut e,
                "placement_holds",
                "Held execs by how their hold ended.",
                None,
                MetricType::Counter,
                [
                    ("released", h.released),
                    ("timed_out", h.timed_out),
                    ("orphan", h.orphans),
                    ("gone", h.gone),
                ]
                .map(|(r, n)| ([("result", r)], counter(n))),
            )?;
            one(
                &mut e,
                "placement_hold_duration",
                "How long held execs stayed stopped (exec to resumed).",
                sec,
                histogram(&h.held_us),
            )?;
        }
        // the host
        let y = &self.system;
        one(
            &mut e,
            "host_cpu_utilization",
            "Share of all CPUs busy at the last sample.",
            ratio,
            gauge(f64::from(y.cpu_percent) / 100.0),
        )?;
        one(
            &mut e,
            "host_cpus",
            "Online CPUs.",
            None,
            ConstGauge::new(y.cpus as i64),
        )?;
        one(
            &mut e,
            "host_memory_total",
            "Physical memory.",
            bytes,
            gauge(y.memory_total_bytes as f64),
        )?;
        one(
            &mut e,
            "host_memory_available",
            "MemAvailable.",
            bytes,
            gauge(y.memory_available_bytes as f64),
        )?;
        one(
            &mut e,
            "host_swap_total",
            "Swap.",
            bytes,
            gauge(y.swap_total_bytes as f64),
        )?;
        one(
            &mut e,
            "host_swap_free",
            "Free swap.",
            bytes,
            gauge(y.swap_free_bytes as f64),
        )?;
        family(
            &mut e,
            "host_load",
            "Load average.",
            None,
            MetricType::Gauge,
            [("1m", y.load[0]), ("5m", y.load[1]), ("15m", y.load[2])]
                .map(|(w, v)| ([("window", w)], gauge(v))),
        )?;
        family(
            &mut e,
            "host_pressure_some_avg10",
            "Share of the last 10 s some task stalled on the resource (PSI).",
            ratio,
            MetricType::Gauge,
            [
                ("cpu", y.psi_cpu_some_avg10),
                ("memory", y.psi_memory_some_avg10),
                ("io", y.psi_io_some_avg10),
            ]
            .into_iter()
            .filter_map(|(r, v)| Some(([("resource", r)], gauge(v? / 100.0)))),
        )?;
        self.encode_slices(&mut e)?;
        self.encode_services(&mut e)?;
        self.encode_policies(&mut e)
    }
}

impl Snapshot {
    fn encode_services(&self, e: &mut DescriptorEncoder) -> Result<(), Error> {
        use procman_common::service::ServiceState;
        let with = |n: &str| [("service", n.to_string())];
        family(
            e,
            "service_state",
            "1 for the service's current state (starting, running, ready, unhealthy, backing-off, stopping, stopped, failed).",
            None,
            MetricType::Gauge,
            self.services.iter().flat_map(|svc| {
                ServiceState::ALL.iter().map(move |st| {
                    (
                        [
                            ("service", svc.name.clone()),
                            ("state", st.as_str().to_string()),
                        ],
                        ConstGauge::new(i64::from(svc.state == *st)),
                    )
                })
            }),
        )?;
        family(
            e,
            "service_ready",
            "1 when the service is ready (started, READY=1, or its probe succeeded).",
            None,
            MetricType::Gauge,
            self.services
                .iter()
                .map(|svc| (with(&svc.name), ConstGauge::new(i64::from(svc.ready)))),
        )?;
        family(
            e,
            "service_restarts",
            "Starts after the first.",
            None,
            MetricType::Counter,
            self.services
                .iter()
                .map(|svc| (with(&svc.name), counter(u64::from(svc.restarts)))),
        )
    }

    fn encode_policies(&self, e: &mut DescriptorEncoder) -> Result<(), Error> {
        let p = &self.policies.policies;
        let with = |n: &str| [("policy", n.to_string())];
        family(
            e,
            "policy_hits",
            "Times a target's condition held for `for` (each starts the chain).",
            None,
            MetricType::Counter,
            p.iter().map(|x| (with(&x.name), counter(x.hits))),
        )?;
        family(
            e,
            "policy_actions",
            "Actions taken (result ok or failed) and would-be actions logged in dry-run.",
            None,
            MetricType::Counter,
            p.iter().flat_map(|x| {
                let ok = x
                    .actions_taken
                    .saturating_sub(x.actions_failed)
                    .saturating_sub(x.dry_run_actions);
                [
                    ("ok", ok),
                    ("failed", x.actions_failed),
                    ("dry_run", x.dry_run_actions),
                ]
                .map(|(r, n)| {
                    (
                        [("policy", x.name.clone()), ("result", r.to_string())],
                        counter(n),
                    )
                })
            }),
        )?;
        family(
            e,
            "policy_budget_left",
            "Actions the policy's budget still allows in its window.",
            None,
            MetricType::Gauge,
            p.iter()
                .map(|x| (with(&x.name), ConstGauge::new(i64::from(x.budget_left)))),
        )?;
        family(
            e,
            "policy_dry_run",
            "1 when the policy only logs: configured dry-run, or an enforcing policy whose budget is spent.",
            None,
            MetricType::Gauge,
            p.iter().map(|x| {
                (
                    [("policy", x.name.clone()), ("mode", x.mode.clone())],
                    ConstGauge::new(i64::from(x.effective_mode == "dry-run")),
                )
            }),
        )?;
        if !p.is_empty() {
            one(
                e,
                "policy_last_evaluation",
                "CPU time of the last evaluation of every policy (copying rows and the engine).",
                Some(&Unit::Seconds),
                gauge(self.policies.last_build_seconds + self.policies.last_eval_seconds),
            )?;
        }
        Ok(())
    }

    fn encode_slices(&self, e: &mut DescriptorEncoder) -> Result<(), Error> {
        let sec = Some(&Unit::Seconds);
        let bytes = Some(&Unit::Bytes);
        let with = |s: &SliceInfo| [("slice", s.name.clone())];
        let stats = || {
            self.slices
                .iter()
                .filter_map(|s| Some((s, s.stats.as_ref()?)))
        };
        family(
            e,
            "slice_processes",
            "Processes in the slice.",
            None,
            MetricType::Gauge,
            self.slices
                .iter()
                .map(|s| (with(s), ConstGauge::new(s.pids.len() as i64))),
        )?;
        family(
            e,
            "slice_frozen",
            "1 when the slice is frozen.",
            None,
            MetricType::Gauge,
            stats().map(|(s, st)| (with(s), ConstGauge::new(i64::from(st.frozen)))),
        )?;
        family(
            e,
            "slice_cpu_usage",
            "CPU time used by the slice (cpu.stat usage_usec).",
            sec,
            MetricType::Counter,
            stats().filter_map(|(s, st)| {
                Some((
                    with(s),
                    ConstCounter::new(st.cpu.as_ref()?.usage_usec as f64 / 1e6),
                ))
            }),
        )?;
        family(
            e,
            "slice_cpu_throttled",
            "Time the slice was throttled by its CPU quota.",
            sec,
            MetricType::Counter,
            stats().filter_map(|(s, st)| {
                let t = st.cpu.as_ref()?.throttled_usec?;
                Some((with(s), ConstCounter::new(t as f64 / 1e6)))
            }),
        )?;
        family(
            e,
            "slice_memory",
            "Memory charged to the slice (memory.current).",
            bytes,
            MetricType::Gauge,
            stats()
                .filter_map(|(s, st)| Some((with(s), gauge(st.memory.as_ref()?.current as f64)))),
        )?;
        family(
            e,
            "slice_memory_events",
            "memory.events counters (high: throttled, max: hit the limit, oom_kill: processes killed).",
            None,
            MetricType::Counter,
            stats().filter_map(|(s, st)| st.memory.as_ref().map(|m| (s, m))).flat_map(|(s, m)| {
                let ev = &m.events;
                [
                    ("low", ev.low),
                    ("high", ev.high),
                    ("max", ev.max),
                    ("oom", ev.oom),
                    ("oom_kill", ev.oom_kill),
                ]
                .map(|(k, n)| ([("slice", s.name.clone()), ("event", k.to_string())], counter(n)))
            }),
        )?;
        for (name, help, read) in [
            (
                "slice_io_read",
                "Bytes the slice read from block devices.",
                true,
            ),
            (
                "slice_io_written",
                "Bytes the slice wrote to block devices.",
                false,
            ),
        ] {
            family(
                e,
                name,
                help,
                bytes,
                MetricType::Counter,
                stats().flat_map(|(s, st)| {
                    st.io.iter().flatten().map(move |d| {
                        (
                            [("slice", s.name.clone()), ("device", d.device.clone())],
                            counter(if read { d.rbytes } else { d.wbytes }),
                        )
                    })
                }),
            )?;
        }
        family(
            e,
            "slice_pids_limit_hits",
            "Forks refused by the slice's TasksMax (pids.events max).",
            None,
            MetricType::Counter,
            stats().filter_map(|(s, st)| Some((with(s), counter(st.pids.as_ref()?.max_events)))),
        )?;
        family(
            e,
            "slice_pressure_some_stalled",
            "Time some task of the slice stalled on the resource (PSI some total).",
            sec,
            MetricType::Counter,
            stats().flat_map(|(s, st)| {
                let p = &st.pressure;
                [("cpu", p.cpu), ("memory", p.memory), ("io", p.io)]
                    .into_iter()
                    .filter_map(move |(r, v)| {
                        Some((
                            [("slice", s.name.clone()), ("resource", r.to_string())],
                            ConstCounter::new(v?.some.total as f64 / 1e6),
                        ))
                    })
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn classic_format_names_counters_by_their_samples() {
        let om = "# HELP procman_x Things.\n# TYPE procman_x counter\nprocman_x_total 3\n\
                  # HELP procman_up_seconds Up.\n# TYPE procman_up_seconds gauge\n\
                  # UNIT procman_up_seconds seconds\nprocman_up_seconds 1.5\n# EOF\n";
        assert_eq!(
            super::to_classic(om),
            "# HELP procman_x_total Things.\n# TYPE procman_x_total counter\nprocman_x_total 3\n\
             # HELP procman_up_seconds Up.\n# TYPE procman_up_seconds gauge\nprocman_up_seconds 1.5\n"
        );
    }
}

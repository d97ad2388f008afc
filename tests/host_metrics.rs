//! `GET /metrics`: the Prometheus text format, checked by Prometheus's own parser and linter
//! (`promtool check metrics`, Debian's prometheus package), with the families a dashboard
//! needs and values that follow what happened.
use procman_tests::{http_request, wait_until, Agent, TestRoot};
use std::{
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

fn scrape(agent: &Agent) -> (u16, Option<String>, String) {
    let s = std::os::unix::net::UnixStream::connect(&agent.socket).unwrap();
    let a = http_request(s, "GET", "/metrics", &[], "");
    (a.status, a.header("content-type").map(String::from), a.text)
}

/// The value of the first sample line starting with `prefix` (name and labels).
fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn promtool(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (cargo xtask test installs Debian's prometheus package)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
#[ignore = "needs root: loads BPF programs and creates a cgroup for its slice"]
fn metrics_pass_promtool_and_follow_the_agent() {
    let root = TestRoot::new("metrics");
    let state = tempfile::tempdir().unwrap();
    let cfg = format!(
        "[monitor]\ninterval = \"500ms\"\n[cgroup]\nroot = \"{}\"\n[[slice]]\nname = \"m\"\n[[rule]]\nname = \"t\"\ncomm = \"pmt-metrics\"\nslice = \"m\"\n\
         [services]\nlog_dir = \"{}\"\nstate_dir = \"{}\"\n\
         [[service]]\nname = \"msvc\"\nexec = [\"sleep\", \"600\"]\n\
         [[policy]]\nname = \"quiet\"\nmode = \"dry-run\"\nmatch = 'name == \"pmt-none\"'\nwhen = 'cpu > 90%'\nfor = \"5s\"\nthen = [\"term\"]\n",
        root.name,
        state.path().join("logs").display(),
        state.path().join("state").display()
    );
    let agent = Agent::start(&cfg, &[]);
    // one request of each kind, so the request counter has rows
    let _ = agent.status();
    wait_until("a sample", Duration::from_secs(10), || {
        match agent.status()["sampler"]["samples"].as_u64() {
            Some(n) if n >= 1 => Ok(()),
            v => Err(format!("{v:?}")),
        }
    });
    let (status, ct, text) = scrape(&agent);
    assert_eq!(status, 200);
    assert!(
        ct.as_deref()
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{ct:?}"
    );
    // Prometheus asks for OpenMetrics first and gets it
    let s = std::os::unix::net::UnixStream::connect(&agent.socket).unwrap();
    let om = http_request(
        s,
        "GET",
        "/metrics",
        &[(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )],
        "",
    );
    assert!(
        om.header("content-type")
            .is_some_and(|c| c.starts_with("application/openmetrics-text")),
        "{om:?}"
    );
    assert!(om.text.ends_with("# EOF\n"), "{}", om.text);
    let (ok, lint) = promtool(&text);
    assert!(ok, "promtool check metrics:\n{lint}\n--- metrics:\n{text}");
    for family in [
        "procman_build_info{",
        "procman_events_received_total ",
        "procman_events_lost_total ",
        "procman_processes ",
        "procman_uptime_seconds ",
        "procman_sampler_samples_total ",
        "procman_host_memory_total_bytes ",
        "procman_host_cpu_utilization_ratio ",
        "procman_slice_processes{slice=\"m\"} ",
        "procman_slice_cpu_usage_seconds_total{slice=\"m\"} ",
        "procman_placements_total{result=\"placed\"} ",
        "procman_placement_latency_seconds_count ",
        "procman_api_requests_total{method=\"GET\",route=\"/api/status\",status=\"200\"} ",
        "procman_service_state{service=\"msvc\",state=\"running\"} 1",
        "procman_service_state{service=\"msvc\",state=\"failed\"} 0",
        "procman_service_restarts_total{service=\"msvc\"} 0",
        "procman_policy_hits_total{policy=\"quiet\"} 0",
        "procman_policy_actions_total{policy=\"quiet\",result=\"dry_run\"} 0",
        "procman_policy_dry_run{policy=\"quiet\",mode=\"dry-run\"} 1",
        "procman_policy_budget_left{policy=\"quiet\"} ",
    ] {
        assert!(text.contains(family), "no {family:?} in:\n{text}");
    }
    assert!(!text.contains("pid=\""), "no per-pid labels:\n{text}");
    let received = value(&text, "procman_events_received_total ").unwrap();
    let requests = value(
        &text,
        "procman_api_requests_total{method=\"GET\",route=\"/api/status\",status=\"200\"} ",
    )
    .unwrap();

    // a placed process shows in the slice's and placement's numbers; counters only grow
    let dash = agent.dir.path().join("pmt-metrics");
    std::fs::copy("/bin/sleep", &dash).unwrap();
    let mut child = Command::new(&dash).arg("600").spawn().unwrap();
    let text = wait_until(
        "the placed sleep in the metrics",
        Duration::from_secs(10),
        || {
            let (_, _, t) = scrape(&agent);
            match value(&t, "procman_slice_processes{slice=\"m\"} ") {
                Some(n) if n >= 1.0 => Ok(t),
                _ => Err(t),
            }
        },
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(value(&text, "procman_placements_total{result=\"placed\"} ").unwrap() >= 1.0);
    assert!(value(&text, "procman_placement_latency_seconds_count ").unwrap() >= 1.0);
    assert!(value(&text, "procman_events_received_total ").unwrap() > received);
    assert!(
        value(
            &text,
            "procman_api_requests_total{method=\"GET\",route=\"/api/status\",status=\"200\"} "
        )
        .unwrap()
            >= requests
    );
    let (ok, lint) = promtool(&text);
    assert!(ok, "promtool check metrics:\n{lint}\n--- metrics:\n{text}");
}

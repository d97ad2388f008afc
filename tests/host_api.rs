//! The API under load it did not ask for: floods of idle connections and of event
//! subscribers that never read.
use procman_tests::{wait_until, Agent};
use std::{
    io::Write,
    os::unix::net::UnixStream,
    process::Command,
    time::{Duration, Instant},
};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard.min(65536), hard).unwrap();
}

/// 2,000 connections held open and idle do not delay the operator's `procman ps`.
#[test]
#[ignore = "needs root: loads BPF programs"]
fn idle_connections_do_not_delay_root() {
    raise_nofile();
    let agent = Agent::start("", &[]);
    let idle: Vec<UnixStream> = (0..2000)
        .map(|i| {
            UnixStream::connect(&agent.socket)
                .unwrap_or_else(|e| panic!("connection {i}: {e}\n{}", agent.log()))
        })
        .collect();
    let t0 = Instant::now();
    let out = agent.cli(&["ps", "--top", "5"]);
    let took = t0.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        took < Duration::from_secs(1),
        "procman ps took {took:?} with 2000 idle connections"
    );
    drop(idle);
}

/// 500 event subscribers that never read their stream do not make the agent hoard events:
/// its RSS grows by less than 50 MB through a 6,000-process storm, and it keeps answering.
#[test]
#[ignore = "needs root: loads BPF programs"]
fn stalled_event_subscribers_do_not_grow_memory_without_bound() {
    raise_nofile();
    let agent = Agent::start("", &[]);
    let pid = agent.child.id();
    let before = rss_kib(pid);
    let mut subs: Vec<UnixStream> = (0..500)
        .map(|_| {
            let mut s = UnixStream::connect(&agent.socket).unwrap();
            s.write_all(b"GET /api/events HTTP/1.1\r\nHost: procman\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    // every subscriber is registered before the storm starts
    wait_until("500 subscribers", Duration::from_secs(20), || {
        let s = agent.status();
        let n = s["event_subscribers"].as_u64().unwrap_or(0);
        (n >= 500).then_some(()).ok_or(format!("{n} subscribers"))
    });
    let received = |a: &Agent| a.status()["events_received"].as_u64().unwrap();
    let start = received(&agent);
    let storm = Command::new("sh")
        .args([
            "-c",
            "i=0; while [ $i -lt 6000 ]; do /bin/true; i=$((i+1)); done",
        ])
        .status()
        .unwrap();
    assert!(storm.success());
    // every process of the storm made a fork, an exec and an exit
    wait_until("the storm's events", Duration::from_secs(30), || {
        let n = received(&agent) - start;
        (n >= 18_000).then_some(()).ok_or(format!("{n} events"))
    });
    let after = rss_kib(pid);
    let grown_mib = after.saturating_sub(before) / 1024;
    assert!(
        grown_mib < 50,
        "agent RSS grew {grown_mib} MiB ({before} -> {after} KiB) with 500 stalled subscribers"
    );
    let out = agent.cli(&["status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    subs.clear();
}

/// `(status, body)` of a raw HTTP/1.0 request on the agent's socket.
fn raw(socket: &std::path::Path, request: &str) -> (u16, serde_json::Value) {
    use std::io::Read;
    let mut s = UnixStream::connect(socket).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or_default())
}

/// Every error is JSON, 405 included; a JSON body needs no Content-Type header.
#[test]
#[ignore = "needs root: loads BPF programs"]
fn every_error_is_json_and_bodies_need_no_content_type() {
    // a managed root of its own: the limit request below opens the cgroup side
    let root = procman_tests::TestRoot::new("json");
    let agent = Agent::start(&format!("[cgroup]\nroot = \"{}\"\n", root.name), &[]);
    let (code, v) = raw(&agent.socket, "DELETE /api/status HTTP/1.0\r\n\r\n");
    assert_eq!(code, 405, "{v}");
    assert!(v["error"].as_str().unwrap().contains("DELETE"), "{v}");
    let body = r#"{"pids": [4194999], "slice": "x"}"#;
    let (code, v) = raw(
        &agent.socket,
        &format!(
            "POST /api/limit HTTP/1.0\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    // parsed without a Content-Type: the pid is looked up (and not found)
    assert_eq!(code, 404, "{v}");
    assert!(v["error"].as_str().unwrap().contains("4194999"), "{v}");
    let bad = r#"{"pids": [1], "slise": "x"}"#;
    let (code, v) = raw(
        &agent.socket,
        &format!(
            "POST /api/limit HTTP/1.0\r\nContent-Length: {}\r\n\r\n{bad}",
            bad.len()
        ),
    );
    assert_eq!(code, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("slise"), "{v}");
}

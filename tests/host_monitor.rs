//! Host tests of the process table and the read API, against the real agent and socket.
use procman_tests::{http_get, Agent};
use serde_json::Value;
use std::{
    collections::HashSet,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

fn proc_pids() -> HashSet<u64> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect()
}

fn api_pids(agent: &Agent) -> Vec<Value> {
    let (code, v) = http_get(&agent.socket, "/api/processes?sort=pid&limit=1000000");
    assert_eq!(code, 200, "{v}");
    v["processes"].as_array().unwrap().clone()
}

/// After a storm of 5,000 short-lived processes (and 50 that stay), the agent's table holds
/// the same live pids as /proc, with the right parents; none of the storm's pids linger.
#[test]
#[ignore = "needs root: loads BPF programs"]
fn table_matches_proc_after_a_storm() {
    let agent = Agent::start("", &["--source", "bpf"]);
    let me = std::process::id() as u64;
    let mut sleepers: Vec<_> = (0..50)
        .map(|_| {
            Command::new("sleep")
                .arg("60")
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(|| {
                (0..2500)
                    .map(|_| {
                        let mut c = Command::new("/bin/true").spawn().unwrap();
                        let pid = c.id() as u64;
                        c.wait().unwrap();
                        pid
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let storm: HashSet<u64> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    // let the agent drain its ring (batched wakeups + 50 ms poll)
    // Compare with /proc read just before and just after the table: a pid that appears or
    // vanishes in between (other tests, host churn; pids wrap quickly) proves nothing either way.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = agent.status();
        let before = proc_pids();
        let table: Vec<Value> = api_pids(&agent);
        let after = proc_pids();
        let tset: HashSet<u64> = table.iter().map(|p| p["pid"].as_u64().unwrap()).collect();
        let extra: Vec<&Value> = table
            .iter()
            .filter(|p| {
                let pid = p["pid"].as_u64().unwrap();
                !before.contains(&pid) && !after.contains(&pid)
            })
            .collect();
        let missing: Vec<&u64> = before
            .intersection(&after)
            .filter(|p| !tset.contains(p))
            .collect();
        let lingering: Vec<&u64> = storm
            .iter()
            .filter(|p| tset.contains(p) && !before.contains(p) && !after.contains(p))
            .collect();
        let settled = s["events_received"] == s["kernel_submitted"];
        if settled && extra.is_empty() && missing.is_empty() {
            for sl in &sleepers {
                let p = table
                    .iter()
                    .find(|p| p["pid"] == sl.id() as u64)
                    .expect("sleeper in the table");
                assert_eq!(p["ppid"], me);
                assert_eq!(p["name"], "sleep");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "table vs /proc: missing {missing:?}, extra {extra:?}, lingering storm pids {lingering:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for s in &mut sleepers {
        s.kill().unwrap();
        s.wait().unwrap();
    }
}

/// A process whose parent exits is reparented (here to the test process, a subreaper): the
/// table shows the new parent.
#[test]
#[ignore = "needs root: loads BPF programs"]
fn orphans_are_reparented_to_the_subreaper() {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) only changes this process's reaper flag.
    assert_eq!(
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) },
        0
    );
    let agent = Agent::start("", &["--source", "bpf"]);
    let me = std::process::id() as u64;
    let out = Command::new("/bin/sh")
        .args(["-c", "sleep 30 >/dev/null 2>&1 & echo $!"])
        .output()
        .unwrap();
    let orphan: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ppid = Value::Null;
    while Instant::now() < deadline {
        let (code, v) = http_get(&agent.socket, &format!("/api/processes/{orphan}"));
        if code == 200 {
            ppid = v["ppid"].clone();
            if ppid == me {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: kill + waitpid of our own (adopted) child.
    unsafe {
        libc::kill(orphan as i32, libc::SIGKILL);
        libc::waitpid(orphan as i32, std::ptr::null_mut(), 0);
    }
    assert_eq!(
        ppid, me,
        "the orphan {orphan} was reparented to the subreaper {me}"
    );
}

/// The read API answers 200 with the documented shape, 404 for an unknown pid and 400 for
/// malformed input, each with an `error` message.
#[test]
#[ignore = "needs root: starts the agent (loads BPF programs)"]
fn read_api_status_codes_and_shapes() {
    let agent = Agent::start("[monitor]\ninterval = \"200ms\"\n", &[]);
    let me = std::process::id();
    std::thread::sleep(Duration::from_millis(700)); // two samples, so rates exist
    let (code, v) = http_get(&agent.socket, "/api/processes");
    assert_eq!(code, 200);
    for k in [
        "top_cpu",
        "top_ram",
        "total_processes",
        "zombie_count",
        "timestamp",
    ] {
        assert!(v.get(k).is_some(), "missing {k}: {v}");
    }
    assert!(v["total_processes"].as_u64().unwrap() > 10);
    assert!(
        v.get("processes").is_none(),
        "the overview has no full list"
    );
    let (code, v) = http_get(&agent.socket, &format!("/api/processes/{me}"));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["pid"], me);
    assert!(v["rss_bytes"].as_u64().unwrap() > 0, "sampled: {v}");
    assert!(v["fds"].as_u64().unwrap() >= 3);
    assert!(v["cmdline"].as_str().unwrap().contains("host_monitor"));
    let (code, v) = http_get(&agent.socket, &format!("/api/processes/{me}/tree"));
    assert_eq!(code, 200);
    assert_eq!(v["tree"]["pid"], me);
    assert!(v["parent"]["pid"].as_u64().is_some());
    let (code, v) = http_get(&agent.socket, &format!("/api/tree?root={me}"));
    assert_eq!(code, 200);
    assert_eq!(v[0]["pid"], me);
    let (code, v) = http_get(&agent.socket, "/api/system");
    assert_eq!(code, 200);
    assert!(
        v["mem_total_bytes"].as_u64().unwrap() > 0 && v["cpus"].as_u64().unwrap() >= 1,
        "{v}"
    );
    let (code, v) = http_get(&agent.socket, "/api/processes?sort=cpu&limit=3");
    assert_eq!(code, 200);
    assert_eq!(v["processes"].as_array().unwrap().len(), 3);

    for (path, want) in [
        ("/api/processes/4194999", 404),
        ("/api/processes/4194999/tree", 404),
        ("/api/tree?root=4194999", 404),
        ("/api/processes/abc", 400),
        ("/api/processes?sort=colour", 400),
        ("/api/events?pid=x", 400),
        ("/api/nothing", 404),
    ] {
        let (code, v) = http_get(&agent.socket, path);
        assert_eq!(code, want, "{path}: {v}");
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {v}"
        );
    }
    let (_, v) = http_get(&agent.socket, "/api/processes?sort=colour");
    assert!(v["error"].as_str().unwrap().contains("colour"));
}

/// The in-kernel scheduling statistics agree with /proc's CPU time, and show run-queue wait
/// when more busy loops than CPUs compete.
#[test]
#[ignore = "needs root: loads BPF programs"]
fn sched_stats_measure_oncpu_time_and_runqueue_wait() {
    let agent = Agent::start("[monitor]\ninterval = \"500ms\"\n", &["--source", "bpf"]);
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let mut loops: Vec<_> = (0..cpus + 1)
        .map(|_| {
            Command::new("/bin/sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let mut total_wait = 0.0;
    for l in &loops {
        let (code, v) = http_get(&agent.socket, &format!("/api/processes/{}", l.id()));
        assert_eq!(code, 200, "{v}");
        let sched = &v["sched"];
        let oncpu = sched["oncpu_s"].as_f64().expect("sched stats present");
        let cpu = v["cpu_time_s"].as_f64().unwrap();
        // /proc's utime+stime (ticks) and the BPF on-CPU sum measure the same thing, sampled
        // at slightly different moments
        assert!(
            oncpu > 0.5 && (oncpu - cpu).abs() < 0.35 + 0.2 * cpu,
            "on-CPU {oncpu}s vs /proc {cpu}s: {v}"
        );
        total_wait += sched["runq_wait_s"].as_f64().unwrap();
        assert!(sched["runq_waits"].as_u64().unwrap() > 0);
    }
    for l in &mut loops {
        l.kill().unwrap();
        l.wait().unwrap();
    }
    // cpus+1 loops on cpus CPUs: about one loop's worth of time is spent waiting
    assert!(
        total_wait > 0.5,
        "run-queue wait {total_wait}s with {} loops on {cpus} CPUs",
        cpus + 1
    );
}

/// An exited process that its parent has not reaped is listed as a zombie (state Z, counted
/// in zombie_count) and leaves the table once reaped.
#[test]
#[ignore = "needs root: loads BPF programs"]
fn zombies_are_listed_until_reaped() {
    let agent = Agent::start("[monitor]\ninterval = \"300ms\"\n", &["--source", "bpf"]);
    let mut child = Command::new("/bin/sh")
        .args(["-c", "exit 4"])
        .spawn()
        .unwrap();
    let pid = child.id();
    // not reaped yet: wait for the exit without reaping (WNOWAIT)
    // SAFETY: waitid on our own child with WNOWAIT leaves it a zombie.
    let rc = unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT)
    };
    assert_eq!(rc, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (code, v) = http_get(&agent.socket, &format!("/api/processes/{pid}"));
        if code == 200 && v["state"] == "Z" {
            let (_, o) = http_get(&agent.socket, "/api/processes");
            assert!(o["zombie_count"].as_u64().unwrap() >= 1, "{o}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "zombie {pid} not shown as Z: {code} {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(child.wait().unwrap().code(), Some(4));
    let deadline = Instant::now() + Duration::from_secs(5);
    while http_get(&agent.socket, &format!("/api/processes/{pid}")).0 != 404 {
        assert!(
            Instant::now() < deadline,
            "reaped pid {pid} still in the table"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The history endpoint returns the samples of a busy process with window statistics that
/// reflect it; bad windows are 400, unknown pids 404.
#[test]
#[ignore = "needs root: loads BPF programs"]
fn history_of_a_busy_loop() {
    let agent = Agent::start("[monitor]\ninterval = \"200ms\"\n", &["--source", "bpf"]);
    let mut busy = Command::new("/bin/sh")
        .args(["-c", "while :; do :; done"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let (code, v) = http_get(
        &agent.socket,
        &format!("/api/processes/{}/history?hours=1", busy.id()),
    );
    busy.kill().unwrap();
    busy.wait().unwrap();
    assert_eq!(code, 200, "{v}");
    let n = v["stats"]["samples"].as_u64().unwrap();
    assert!(n >= 6, "about 12 samples in 2.5 s at 200 ms: {v}");
    let entries: u64 = v["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["repeat"].as_u64().unwrap())
        .sum();
    assert_eq!(
        entries, n,
        "entries with their repeat counts add up to the sample count"
    );
    assert!(
        v["stats"]["cpu_pct"]["max"].as_f64().unwrap() > 50.0,
        "a busy loop: {v}"
    );
    assert!(
        v["stats"]["cpu_pct"]["p95"].as_f64().unwrap()
            >= v["stats"]["cpu_pct"]["avg"].as_f64().unwrap()
    );
    assert!(v["stats"]["rss_bytes"]["min"].as_f64().unwrap() > 0.0);
    assert_eq!(v["exited"], false);
    for (path, want) in [
        ("/api/processes/1/history?hours=0", 400),
        ("/api/processes/1/history?hours=x", 400),
        ("/api/processes/4194999/history", 404),
    ] {
        let (code, v) = http_get(&agent.socket, path);
        assert_eq!(code, want, "{path}: {v}");
        assert!(v["error"].is_string());
    }
}

/// `?filter=` selects processes through the real API; a malformed filter is a 400 whose
/// message names the column; the CLI shows a caret under it.
#[test]
#[ignore = "needs root: loads BPF programs"]
fn filters_select_processes_and_errors_name_the_column() {
    let agent = Agent::start("[monitor]\ninterval = \"200ms\"\n", &["--source", "bpf"]);
    let mut sleepers: Vec<_> = (0..3)
        .map(|_| Command::new("sleep").arg("30").spawn().unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(600));
    let me = std::process::id();
    let q = format!("name%20%3D%3D%20sleep%20and%20ppid%20%3D%3D%20{me}"); // name == sleep and ppid == ME
    let (code, v) = http_get(
        &agent.socket,
        &format!("/api/processes?filter={q}&sort=pid"),
    );
    assert_eq!(code, 200, "{v}");
    let mut got: Vec<u64> = v["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_u64().unwrap())
        .collect();
    let mut want: Vec<u64> = sleepers.iter().map(|s| s.id() as u64).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // not + regex + units
    let (code, v) = http_get(
        &agent.socket,
        "/api/processes?filter=not%20name%20~%20%22.%22&limit=5",
    );
    assert_eq!(code, 200);
    assert!(
        v["processes"].as_array().unwrap().is_empty(),
        "every process has a name: {v}"
    );
    // the tree keeps matching processes and their ancestors
    let (code, v) = http_get(
        &agent.socket,
        &format!("/api/tree?filter=pid%20%3D%3D%20{}", want[0]),
    );
    assert_eq!(code, 200);
    let mut node = &v[0];
    while !node["children"].as_array().unwrap().is_empty() {
        assert_eq!(
            node["children"].as_array().unwrap().len(),
            1,
            "only the path to the match: {v}"
        );
        node = &node["children"][0];
    }
    assert_eq!(node["pid"], want[0]);
    // errors
    let (code, v) = http_get(&agent.socket, "/api/processes?filter=rss%20%3E%205XB");
    assert_eq!(code, 400);
    assert!(v["error"].as_str().unwrap().contains("column 7"), "{v}");
    let out = agent.cli(&["ps", "--filter", "(cpu > 5"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("(cpu > 5\n        ^") && err.contains("column 9"),
        "{err}"
    );
    for s in &mut sleepers {
        s.kill().unwrap();
        s.wait().unwrap();
    }
}

/// A child with exactly pid `pid` (clone3 `set_tid`) that execs `argv`; false if taken.
fn spawn_with_pid(pid: i32, argv: &[&str]) -> bool {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    procman_common::spawn::spawn(
        &argv,
        procman_common::spawn::SpawnOpts {
            cgroup: None,
            pid: Some(pid),
        },
    )
    .is_ok_and(|p| p == pid)
}

/// A pid reused by a new process never merges with the old one: the table shows the new
/// process (name, start time) and the history of each stays separate.
#[test]
#[ignore = "needs root: loads BPF programs and picks a pid (clone3 set_tid)"]
fn pid_reuse_never_merges_two_processes() {
    let agent = Agent::start("[monitor]\ninterval = \"200ms\"\n", &["--source", "bpf"]);
    let mut old = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = old.id();
    let wait_for = |cond: &dyn Fn(u16, &Value) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (code, v) = http_get(&agent.socket, &format!("/api/processes/{pid}"));
            if cond(code, &v) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out: {code} {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let before = wait_for(&|c, v| c == 200 && v["state"] != "?");
    assert_eq!(before["name"], "sleep");
    std::thread::sleep(Duration::from_millis(500)); // a few history samples
    old.kill().unwrap();
    old.wait().unwrap();
    wait_for(&|c, _| c == 404);
    // the same pid, a new process
    assert!(
        spawn_with_pid(pid as i32, &["/usr/bin/tail", "-f", "/dev/null"]),
        "pid {pid} was taken meanwhile"
    );
    let after = wait_for(&|c, v| c == 200 && v["name"] == "tail");
    assert!(
        after["start_time"].as_f64().unwrap() > before["start_time"].as_f64().unwrap(),
        "{before} vs {after}"
    );
    assert_eq!(after["ppid"], std::process::id());
    std::thread::sleep(Duration::from_millis(600));
    let (code, h) = http_get(&agent.socket, &format!("/api/processes/{pid}/history"));
    assert_eq!(code, 200);
    assert_eq!(
        h["exited"], false,
        "the live process's history, not the old one's"
    );
    let n = h["stats"]["samples"].as_u64().unwrap();
    assert!(
        (1..=5).contains(&n),
        "only the new process's samples (~3 at 200 ms): {h}"
    );
    // SAFETY: kill + reap our own child.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
        libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
    }
}

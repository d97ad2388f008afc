//! Host tests of the process table and the read API, against the real agent and socket.
use procman_tests::{http_get, wait_until, Agent};
use serde_json::Value;
use std::{
    collections::HashSet,
    process::{Command, Stdio},
    time::Duration,
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
    // (status over the socket: a `procman status` process per probe would itself show up as
    // an extra entry, a reaped zombie until the agent's next sample)
    let table = wait_until("the table to match /proc", Duration::from_secs(10), || {
        let (_, s) = http_get(&agent.socket, "/api/status");
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
            Ok(table)
        } else {
            Err(format!(
                "table vs /proc: missing {missing:?}, extra {extra:?}, lingering storm pids \
                 {lingering:?}; agent received {} of {} submitted",
                s["events_received"], s["kernel_submitted"]
            ))
        }
    });
    for sl in &sleepers {
        let p = table
            .iter()
            .find(|p| p["pid"] == sl.id() as u64)
            .expect("sleeper in the table");
        assert_eq!(p["parent_pid"], me);
        assert_eq!(p["name"], "sleep");
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
    let reparented = procman_tests::try_wait_until(
        &format!("the orphan {orphan} to show the subreaper {me} as its parent"),
        Duration::from_secs(10),
        || match http_get(&agent.socket, &format!("/api/processes/{orphan}")) {
            (200, v) if v["parent_pid"] == me => Ok(()),
            (code, v) => Err(format!("{code} {v}")),
        },
    );
    // SAFETY: kill + waitpid of our own (adopted) child.
    unsafe {
        libc::kill(orphan as i32, libc::SIGKILL);
        libc::waitpid(orphan as i32, std::ptr::null_mut(), 0);
    }
    reparented.unwrap_or_else(|e| panic!("{e}"));
}

/// The read API answers 200 with the documented shape, 404 for an unknown pid and 400 for
/// malformed input, each with an `error` message.
#[test]
#[ignore = "needs root: starts the agent (loads BPF programs)"]
fn read_api_status_codes_and_shapes() {
    let agent = Agent::start("[monitor]\ninterval = \"200ms\"\n", &[]);
    let me = std::process::id();
    // two samples of this process, so rates exist
    wait_until(
        "two samples of the test process",
        Duration::from_secs(10),
        || match http_get(&agent.socket, &format!("/api/processes/{me}/history")) {
            (200, h) if h["window"]["samples"].as_u64() >= Some(2) => Ok(()),
            (code, h) => Err(format!("{code} {h}")),
        },
    );
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
    assert!(v["memory_bytes"].as_u64().unwrap() > 0, "sampled: {v}");
    assert!(v["num_fds"].as_u64().unwrap() >= 3);
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
        v["memory_total_bytes"].as_u64().unwrap() > 0 && v["cpus"].as_u64().unwrap() >= 1,
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

    // hostile input is a 400, and the agent keeps answering
    let nested = format!(
        "/api/processes?filter={}cpu%3E1{}",
        "%28".repeat(5000),
        "%29".repeat(5000)
    );
    let long = format!(
        "/api/tree?filter={}",
        vec!["cpu%3E1"; 1000].join("%20or%20")
    );
    for path in [
        nested.as_str(),
        long.as_str(),
        "/api/processes?limit=-1",
        "/api/events?kind=exec,boom",
    ] {
        let (code, v) = http_get(&agent.socket, path);
        assert_eq!(code, 400, "{}: {v}", &path[..60.min(path.len())]);
        assert!(v["error"].is_string(), "{v}");
    }
    let (code, _) = http_get(&agent.socket, "/api/status");
    assert_eq!(code, 200, "the agent survived");
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
    // Each loop's sample, once every loop has over 0.5 s on CPU and (cpus+1 loops on cpus
    // CPUs: about one loop's worth of time is spent waiting) over 0.5 s of run-queue wait
    // adds up across them.
    let ids: Vec<u32> = loops.iter().map(|l| l.id()).collect();
    let seen = procman_tests::try_wait_until(
        &format!(
            "0.5 s on CPU for each of {} loops and 0.5 s of run-queue wait in all",
            cpus + 1
        ),
        Duration::from_secs(30),
        || {
            let mut seen = Vec::new();
            for pid in &ids {
                let (code, v) = http_get(&agent.socket, &format!("/api/processes/{pid}"));
                if code != 200 || v["sched"]["oncpu_seconds"].as_f64().unwrap_or(0.0) <= 0.5 {
                    return Err(format!("{code} {v}"));
                }
                seen.push(v);
            }
            let wait: f64 = seen
                .iter()
                .map(|v| v["sched"]["runq_wait_seconds"].as_f64().unwrap())
                .sum();
            if wait > 0.5 {
                Ok(seen)
            } else {
                Err(format!("run-queue wait {wait}s in all"))
            }
        },
    );
    for l in &mut loops {
        l.kill().unwrap();
        l.wait().unwrap();
    }
    for v in seen.unwrap_or_else(|e| panic!("{e}")) {
        let sched = &v["sched"];
        let oncpu = sched["oncpu_seconds"]
            .as_f64()
            .expect("sched stats present");
        let cpu = v["cpu_time_seconds"].as_f64().unwrap();
        // /proc's utime+stime (ticks) and the BPF on-CPU sum measure the same thing, sampled
        // at slightly different moments
        assert!(
            (oncpu - cpu).abs() < 0.35 + 0.2 * cpu,
            "on-CPU {oncpu}s vs /proc {cpu}s: {v}"
        );
        assert!(sched["runq_waits"].as_u64().unwrap() > 0, "{v}");
    }
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
    wait_until(
        &format!("zombie {pid} shown as Z"),
        Duration::from_secs(5),
        || match http_get(&agent.socket, &format!("/api/processes/{pid}")) {
            (200, v) if v["status"] == "zombie" => Ok(()),
            (code, v) => Err(format!("{code} {v}")),
        },
    );
    // the detail may answer from /proc before the table has the events: the overview counts
    // the table's zombies
    wait_until("zombie_count >= 1", Duration::from_secs(5), || {
        let (_, o) = http_get(&agent.socket, "/api/processes");
        (o["zombie_count"].as_u64().unwrap_or(0) >= 1)
            .then_some(())
            .ok_or_else(|| o["zombie_count"].to_string())
    });
    assert_eq!(child.wait().unwrap().code(), Some(4));
    wait_until(
        &format!("reaped pid {pid} to leave the table"),
        Duration::from_secs(5),
        || match http_get(&agent.socket, &format!("/api/processes/{pid}")) {
            (404, _) => Ok(()),
            (code, v) => Err(format!("{code} {v}")),
        },
    );
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
    // At least 6 samples (1.2 s at 200 ms), one of them over 50% CPU: the other tests' busy
    // loops and storms compete for the 2 CPUs, so that can take a few seconds.
    let history = procman_tests::try_wait_until(
        "6 samples of the busy loop, one over 50% CPU",
        Duration::from_secs(20),
        || match http_get(
            &agent.socket,
            &format!("/api/processes/{}/history?hours=1", busy.id()),
        ) {
            (200, v)
                if v["window"]["samples"].as_u64() >= Some(6)
                    && v["window"]["cpu_percent"]["max"].as_f64() > Some(50.0) =>
            {
                Ok(v)
            }
            (code, v) => Err(format!("{code} {v}")),
        },
    );
    busy.kill().unwrap();
    busy.wait().unwrap();
    let v = history.unwrap_or_else(|e| panic!("{e}"));
    let n = v["window"]["samples"].as_u64().unwrap();
    let entries: u64 = v["history"]
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
        v["window"]["cpu_percent"]["max"].as_f64().unwrap() > 50.0,
        "a busy loop: {v}"
    );
    assert!(
        v["window"]["cpu_percent"]["p95"].as_f64().unwrap()
            >= v["window"]["cpu_percent"]["avg"].as_f64().unwrap()
    );
    assert!(v["window"]["memory_bytes"]["min"].as_f64().unwrap() > 0.0);
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
    for s in &sleepers {
        let pid = s.id();
        // the list shows the table alone (the detail endpoint answers from /proc for a process
        // whose events are not applied yet, which would end this wait too early)
        wait_until(
            &format!("sleeper {pid} in the table as sleep"),
            Duration::from_secs(10),
            || match http_get(
                &agent.socket,
                &format!("/api/processes?filter=pid%20%3D%3D%20{pid}"),
            ) {
                (200, v) if v["processes"][0]["name"] == "sleep" => Ok(()),
                (code, v) => Err(format!("{code} {v}")),
            },
        );
    }
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
    assert_eq!(out.status.code(), Some(2), "a bad filter is a usage error");
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
    let wait_for = |what: &str, path: &str, cond: &dyn Fn(u16, &Value) -> bool| {
        wait_until(what, Duration::from_secs(10), || {
            match http_get(&agent.socket, &format!("/api/processes/{pid}{path}")) {
                (code, v) if cond(code, &v) => Ok(v),
                (code, v) => Err(format!("{code} {v}")),
            }
        })
    };
    let before = wait_for("the first process in the table", "", &|c, v| {
        c == 200 && v["status"] != "unknown"
    });
    assert_eq!(before["name"], "sleep");
    // a few history samples of the first process
    let old_samples = wait_for("5 samples of the first process", "/history", &|c, h| {
        c == 200 && h["window"]["samples"].as_u64() >= Some(5)
    })["window"]["samples"]
        .as_u64()
        .unwrap();
    old.kill().unwrap();
    old.wait().unwrap();
    wait_for("the first process to leave the table", "", &|c, _| c == 404);
    // the same pid, a new process
    assert!(
        spawn_with_pid(pid as i32, &["/usr/bin/tail", "-f", "/dev/null"]),
        "pid {pid} was taken meanwhile"
    );
    let after = wait_for("the second process in the table", "", &|c, v| {
        c == 200 && v["name"] == "tail"
    });
    assert!(
        started_at(&after) > started_at(&before),
        "{before} vs {after}"
    );
    assert_eq!(after["parent_pid"], std::process::id());
    // The live process's history (until its first sample the pid's history is the exited
    // one's); merged with the first process's it would count more than that one alone had.
    let h = wait_for("the second process's history", "/history", &|c, h| {
        c == 200 && h["exited"] == false && h["window"]["samples"].as_u64() >= Some(1)
    });
    let n = h["window"]["samples"].as_u64().unwrap();
    assert!(
        n < old_samples,
        "only the new process's samples (the first had {old_samples}): {h}"
    );
    // SAFETY: kill + reap our own child.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
        libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
    }
}

/// A process's `started_at` (ISO 8601) as Unix seconds.
fn started_at(v: &serde_json::Value) -> f64 {
    let t: procman_common::units::Timestamp = v["started_at"]
        .as_str()
        .unwrap_or_else(|| panic!("no started_at: {v}"))
        .parse()
        .unwrap_or_else(|e| panic!("started_at of {v}: {e}"));
    t.unix()
}

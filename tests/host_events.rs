//! Host tests of the event pipeline: BPF -> agent -> API socket -> `procman events --json`.
//! They need root (BPF) but no cgroup controllers.
use procman_tests::{wait_until, Agent};
use serde_json::Value;
use std::{
    collections::{HashMap, HashSet},
    process::Command,
    time::{Duration, Instant},
};

fn kind(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or("")
}

/// 200 processes with known parents and exit statuses: every fork, exec and exit is reported
/// with the right pid, parent, comm, filename and status.
#[test]
#[ignore = "needs root: loads BPF programs"]
fn lifecycle_of_200_processes() {
    let agent = Agent::start("", &["--source", "bpf"]);
    let stream = agent.events(&[]);
    stream.sync();

    let me = std::process::id() as u64;
    let sh = std::fs::canonicalize("/bin/sh").unwrap();
    // 40 parents, each running 4 children `sh -c "exit J"` (J = 1..4) one after the other, then
    // ending with its own status: exit 10+i, or SIGTERM for every 8th.
    let mut parents = Vec::new();
    for i in 0..40u64 {
        let end = if i % 8 == 7 {
            "kill -TERM $$".to_string()
        } else {
            format!("exit {}", 10 + i)
        };
        let script = format!(
            "/bin/sh -c 'exit 1'; /bin/sh -c 'exit 2'; /bin/sh -c 'exit 3'; /bin/sh -c 'exit 4'; {end}"
        );
        let mut c = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .spawn()
            .unwrap();
        let pid = c.id() as u64;
        c.wait().unwrap();
        parents.push((pid, i));
    }
    let last = parents.last().unwrap().0;
    let events = stream.collect_until(Duration::from_secs(20), |v| {
        kind(v) == "exit" && v["pid"] == last
    });

    let mut by_pid: HashMap<u64, Vec<&Value>> = HashMap::new();
    for v in &events {
        by_pid
            .entry(v["pid"].as_u64().unwrap())
            .or_default()
            .push(v);
    }
    let one = |pid: u64, k: &str| -> &Value {
        let evs: Vec<_> = by_pid
            .get(&pid)
            .map(|v| v.iter().filter(|e| kind(e) == k).collect())
            .unwrap_or_default();
        assert_eq!(
            evs.len(),
            1,
            "pid {pid}: expected one {k} event, got {evs:?}"
        );
        evs[0]
    };
    let mut checked = 0;
    for &(p, i) in &parents {
        let fork = one(p, "fork");
        assert_eq!(fork["parent_pid"], me, "parent {p} forked by the test");
        let exec = one(p, "exec");
        assert_eq!(exec["name"], "sh");
        assert_eq!(exec["filename"], "/bin/sh");
        assert_eq!(exec["parent_pid"], me);
        let exit = one(p, "exit");
        assert_eq!(exit["parent_pid"], me);
        if i % 8 == 7 {
            assert_eq!(exit["exit_signal"], 15, "{exit}");
            assert!(exit.get("exit_code").is_none());
        } else {
            assert_eq!(exit["exit_code"], 10 + i, "{exit}");
        }
        checked += 1;
        // its 4 children, in fork order
        let mut kids: Vec<&Value> = events
            .iter()
            .filter(|v| kind(v) == "fork" && v["parent_pid"] == p)
            .collect();
        kids.sort_by_key(|v| v["ts_ns"].as_u64());
        assert_eq!(kids.len(), 4, "parent {p} forked 4 children: {kids:?}");
        for (j, k) in kids.iter().enumerate() {
            let c = k["pid"].as_u64().unwrap();
            assert_eq!(k["name"], "sh", "a fork's comm is the parent's");
            let exec = one(c, "exec");
            assert_eq!(exec["parent_pid"], p);
            assert_eq!(exec["filename"], "/bin/sh");
            assert_eq!(exec["name"], "sh");
            let exit = one(c, "exit");
            assert_eq!(exit["exit_code"], j as u64 + 1, "child {c} of {p}");
            assert_eq!(exit["parent_pid"], p);
            assert!(exit["start_ns"].as_u64().unwrap() > 0);
            checked += 1;
        }
    }
    assert_eq!(checked, 200);
    // The filename the kernel reports is the path given to execve, which resolves to sh.
    assert!(sh.exists());
}

/// 20,000 spawns from 2 workers: every one of the 60,000 records (fork, exec, exit) is either
/// received or counted as dropped, and the agent received everything the kernel submitted.
#[test]
#[ignore = "needs root: loads BPF programs"]
fn storm_of_20000_spawns_is_accounted_exactly() {
    const PER_WORKER: usize = 10_000;
    let agent = Agent::start("", &["--source", "bpf"]);
    // Forks carry the forking thread's comm (the workers are named), execs and exits "true".
    let stream = agent.events(&["--comm", "true", "--comm", "pm-storm-w"]);
    // sync with a `true` of our own: the filter lets only it through
    let marker = loop {
        let mut c = Command::new("/bin/true").spawn().unwrap();
        let pid = c.id() as u64;
        c.wait().unwrap();
        let got = stream.collect_until(Duration::from_millis(500), |v| {
            kind(v) == "exit" && v["pid"] == pid
        });
        if got.iter().any(|v| kind(v) == "exit" && v["pid"] == pid) {
            break pid;
        }
    };
    let before = agent.status();

    let t0 = Instant::now();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            std::thread::Builder::new()
                .name("pm-storm-w".into())
                .spawn(|| {
                    let mut pids = Vec::with_capacity(PER_WORKER);
                    for _ in 0..PER_WORKER {
                        let mut c = Command::new("/bin/true").spawn().unwrap();
                        pids.push(c.id() as u64);
                        c.wait().unwrap();
                    }
                    pids
                })
                .unwrap()
        })
        .collect();
    let pids: HashSet<u64> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let spawn_secs = t0.elapsed().as_secs_f64();
    assert_eq!(
        pids.len(),
        2 * PER_WORKER,
        "pids are unique while the storm runs"
    );
    let produced = 3 * pids.len() as u64;

    let mut received: HashMap<String, HashSet<u64>> = HashMap::new();
    let mut count = 0u64;
    let mut lagged = 0u64;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut idle_rounds = 0;
    loop {
        let batch = stream.collect_until(Duration::from_millis(500), |_| false);
        let idle = batch.is_empty();
        for v in batch {
            if let Some(n) = v.get("lagged").and_then(Value::as_u64) {
                lagged += n;
                continue;
            }
            let pid = v["pid"].as_u64().unwrap();
            if pid != marker
                && pids.contains(&pid)
                && received
                    .entry(kind(&v).to_string())
                    .or_default()
                    .insert(pid)
            {
                count += 1;
            }
        }
        if count >= produced || Instant::now() > deadline {
            break;
        }
        // give up waiting only when the agent has everything the kernel submitted and the
        // stream stayed quiet for 2 s
        let s = agent.status();
        idle_rounds = if idle && s["events_received"] == s["kernel_submitted"] {
            idle_rounds + 1
        } else {
            0
        };
        if idle_rounds >= 4 {
            break;
        }
    }
    let after = agent.status();
    let dropped =
        after["events_dropped"].as_u64().unwrap() - before["events_dropped"].as_u64().unwrap();
    eprintln!(
        "storm: {} spawns in {spawn_secs:.1}s ({:.0}/s); records produced {produced}, received {count}, \
         dropped (all processes) {dropped}, stream lagged {lagged}; agent received {} of {} submitted",
        pids.len(),
        pids.len() as f64 / spawn_secs,
        after["events_received"],
        after["kernel_submitted"]
    );
    assert_eq!(lagged, 0, "the API stream fell behind");
    assert_eq!(
        after["events_received"], after["kernel_submitted"],
        "the agent received every record the kernel submitted"
    );
    if dropped == 0 {
        assert_eq!(
            count, produced,
            "no drops: every fork, exec and exit of the storm was received"
        );
    } else {
        // drops may hit other processes' records too, so only bounds hold for our share
        assert!(
            count < produced && count + dropped >= produced,
            "received {count} + dropped {dropped} < {produced}"
        );
    }
    for k in ["fork", "exec", "exit"] {
        let n = received.get(k).map_or(0, |s| s.len());
        eprintln!("  {k}: {n}");
    }
}

/// A ring too small for a burst, with wakeups and polls far apart, drops records: the drops
/// are counted, the agent says it resynchronises from /proc, and its table matches /proc again.
#[test]
#[ignore = "needs root: loads BPF programs"]
fn drops_are_counted_and_trigger_a_resync() {
    let agent = Agent::start(
        "[events]\nring_size = \"64KiB\"\nwakeup_batch = 4096\npoll_interval = \"2s\"\n",
        &["--source", "bpf"],
    );
    for _ in 0..600 {
        Command::new("/bin/true").status().unwrap();
    }
    // the counters are read on each (2 s) poll: wait for one after the burst
    let s = wait_until(
        "a poll that counts the burst's 1,800 records and a resync",
        Duration::from_secs(15),
        || {
            let (_, s) = procman_tests::http_get(&agent.socket, "/api/status");
            let seen =
                s["kernel_submitted"].as_u64().unwrap() + s["events_dropped"].as_u64().unwrap();
            if s["resyncs"].as_u64().unwrap() >= 1 && seen >= 1800 {
                Ok(s)
            } else {
                Err(format!("status {s}"))
            }
        },
    );
    let dropped = s["events_dropped"].as_u64().unwrap();
    let submitted = s["kernel_submitted"].as_u64().unwrap();
    assert!(dropped > 0, "a 64KiB ring cannot hold 1,800 records: {s}");
    // 64KiB holds at most 195 records of 336 bytes between two polls
    assert!(
        submitted + dropped >= 1800,
        "every record is either submitted or dropped: {s}"
    );
    assert!(
        s["resyncs"].as_u64().unwrap() >= 1,
        "a drop triggers a resync: {s}"
    );
    let log = agent.log();
    assert!(
        log.contains("resynchronising the process table from /proc"),
        "the agent says so:\n{log}"
    );
    assert!(log.contains("resync done"), "{log}");
    // the resynced table has the same number of processes as /proc (within what changes meanwhile)
    let live = procfs_count();
    let table = s["processes"].as_u64().unwrap() as i64;
    assert!((table - live).abs() <= 10, "table {table} vs /proc {live}");
}

fn procfs_count() -> i64 {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .count() as i64
}

/// A process whose last thread to exit is not its leader (the leader left first with
/// exit(2); a renamed worker calls exit_group later): the exit record still carries the
/// process's identity (start time, comm), and the table drops the process.
#[test]
#[ignore = "needs root: loads BPF programs"]
fn exit_by_a_non_leader_thread_keeps_the_process_identity() {
    let agent = Agent::start("", &["--source", "bpf"]);
    let stream = agent.events(&[]);
    stream.sync();
    let script = r#"
import ctypes, os, threading, time
libc = ctypes.CDLL(None)
def worker():
    libc.prctl(15, b"pm-worker", 0, 0, 0)
    time.sleep(0.3)
    os._exit(5)
threading.Thread(target=worker).start()
libc.syscall(60, 0)  # SYS_exit: only the leader thread leaves
"#;
    let mut c = Command::new("python3")
        .args(["-c", script])
        .spawn()
        .expect("python3");
    let pid = c.id() as u64;
    let st = c.wait().unwrap();
    assert_eq!(st.code(), Some(5));
    let evs = stream.collect_until(Duration::from_secs(10), |v| {
        kind(v) == "exit" && v["pid"] == pid
    });
    let exec = evs
        .iter()
        .rev()
        .find(|v| kind(v) == "exec" && v["pid"] == pid)
        .expect("exec event");
    let exit = evs
        .iter()
        .find(|v| kind(v) == "exit" && v["pid"] == pid)
        .expect("exit event");
    assert_eq!(exit["exit_code"], 5);
    assert_eq!(
        exit["start_ns"], exec["start_ns"],
        "exit carries the process start time, not the thread's"
    );
    assert_eq!(
        exit["name"], exec["name"],
        "exit carries the process comm, not the worker's"
    );
    assert_eq!(exit["thread"], false);
    wait_until(
        &format!("pid {pid} to leave the table after its exit"),
        Duration::from_secs(5),
        || match procman_tests::http_get(&agent.socket, &format!("/api/processes/{pid}")) {
            (404, _) => Ok(()),
            (code, v) => Err(format!("{code} {v}")),
        },
    );
}

/// Drops the capabilities BPF needs (CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF) from the bounding
/// set of a child before it execs, so a root child runs without them.
fn without_bpf_caps(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl(PR_CAPBSET_DROP) is async-signal-safe and only affects the child.
    unsafe {
        cmd.pre_exec(|| {
            for cap in [21, 38, 39] {
                if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        })
    }
}

/// Without the capabilities BPF needs, the agent says why and falls back to the netlink proc
/// connector, which still delivers the events.
#[test]
#[ignore = "needs root: starts the agent without BPF capabilities (proc connector)"]
fn falls_back_to_netlink_when_bpf_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("procman.sock");
    let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    let mut agent = without_bpf_caps(
        Command::new(procman_tests::bin("procman-agent"))
            .arg("--socket")
            .arg(&socket),
    )
    .stderr(log)
    .spawn()
    .unwrap();
    wait_until("the agent's API", Duration::from_secs(20), || {
        if procman_tests::api_answers(&socket) {
            return Ok(());
        }
        assert!(
            agent.try_wait().unwrap().is_none(),
            "agent exited: {}",
            std::fs::read_to_string(dir.path().join("agent.log")).unwrap()
        );
        Err("no 200 from GET /api/status".into())
    });
    let (_, status) = procman_tests::http_get(&socket, "/api/status");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = agent.wait();
    let log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap();
    assert_eq!(status["source"], "netlink", "{status}");
    let reason = status["fallback_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("permission denied") && reason.contains("CAP_BPF"),
        "{reason}"
    );
    assert!(
        log.contains("falling back to the netlink proc connector"),
        "{log}"
    );
}

/// The netlink source (forced) delivers fork, exec and exit for 20 children, with parents,
/// comm, filename and exit codes.
#[test]
#[ignore = "needs root: the proc connector needs CAP_NET_ADMIN"]
fn netlink_source_delivers_lifecycles() {
    let agent = Agent::start("", &["--source", "netlink"]);
    assert_eq!(agent.status()["source"], "netlink");
    let stream = agent.events(&[]);
    stream.sync();
    let me = std::process::id() as u64;
    let mut kids = Vec::new();
    // The connector gives pids only; comm and filename are read from /proc when the notice
    // arrives, so the children live long enough (0.1 s) for that to be deterministic.
    for i in 0..20u64 {
        let mut c = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("sleep 0.1; exit {i}"))
            .spawn()
            .unwrap();
        kids.push((c.id() as u64, i));
        c.wait().unwrap();
    }
    let last = kids.last().unwrap().0;
    let evs = stream.collect_until(Duration::from_secs(20), |v| {
        kind(v) == "exit" && v["pid"] == last
    });
    for (pid, code) in kids {
        let of = |k: &str| {
            evs.iter()
                .find(|v| kind(v) == k && v["pid"] == pid)
                .unwrap_or_else(|| panic!("{k} of {pid}"))
        };
        assert_eq!(of("fork")["parent_pid"], me);
        let exec = of("exec");
        assert_eq!(exec["name"], "sh");
        assert!(exec["filename"].as_str().unwrap().ends_with("sh"), "{exec}");
        assert_eq!(of("exit")["exit_code"], code);
    }
}

/// A 3,000-spawn storm through the netlink source: with no overflow reported, every spawned
/// pid's fork, exec and exit arrived.
#[test]
#[ignore = "needs root: the proc connector needs CAP_NET_ADMIN"]
fn netlink_storm_is_complete_without_overflow() {
    let agent = Agent::start("", &["--source", "netlink"]);
    // no comm filter: the connector gives pids only, and a process that is gone before its
    // notice is decoded has no name to filter on
    let stream = agent.events(&[]);
    let marker = loop {
        let mut c = Command::new("/bin/true").spawn().unwrap();
        let pid = c.id() as u64;
        c.wait().unwrap();
        let got = stream.collect_until(Duration::from_millis(500), |v| {
            kind(v) == "exit" && v["pid"] == pid
        });
        if got.iter().any(|v| kind(v) == "exit" && v["pid"] == pid) {
            break pid;
        }
    };
    let pids: HashSet<u64> = std::thread::Builder::new()
        .name("pm-nl-storm".into())
        .spawn(|| {
            (0..3000)
                .map(|_| {
                    let mut c = Command::new("/bin/true").spawn().unwrap();
                    let pid = c.id() as u64;
                    c.wait().unwrap();
                    pid
                })
                .collect()
        })
        .unwrap()
        .join()
        .unwrap();
    // exits are what matter here (comm of fork/exec is read from /proc and may race)
    let mut exits = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while exits.len() < pids.len() && Instant::now() < deadline {
        for v in stream.collect_until(Duration::from_millis(500), |_| false) {
            let pid = v["pid"].as_u64().unwrap_or(0);
            if kind(&v) == "exit" && pid != marker && pids.contains(&pid) {
                exits.insert(pid);
            }
        }
    }
    let dropped = agent.status()["events_dropped"].as_u64().unwrap();
    eprintln!(
        "netlink storm: {} of {} exits, overflows {dropped}",
        exits.len(),
        pids.len()
    );
    if dropped == 0 {
        assert_eq!(
            exits.len(),
            pids.len(),
            "no overflow reported, so nothing may be missing"
        );
    }
}

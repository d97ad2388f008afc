//! Host tests of placement and the enforcement commands. The host's cgroup2 mount has no
//! controllers, so these prove moves, placement and refusals; limits are proved in the VM.
//! Each test manages its own uniquely named subtree under the cgroup2 mount and removes it.
use procman_tests::{bin, cgroup_of, http_get, try_wait_until, wait_until, Agent, TestRoot};
use std::{path::PathBuf, process::Command, time::Duration};

/// A copy of a system binary under a new name, so a rule can match its comm and nothing else.
fn renamed(dir: &std::path::Path, from: &str, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::copy(from, &p).unwrap();
    p
}

/// Spawns `cmd`, a binary `renamed` just wrote. Exec can fail with ETXTBSY for a moment: a
/// child that another test thread forked while the copy was open for writing holds that fd
/// until it execs. Waits for that instead of failing.
fn spawn_copied(cmd: &mut Command) -> std::process::Child {
    wait_until(
        "the copied binary to stop being busy (ETXTBSY)",
        Duration::from_secs(10),
        || match cmd.spawn() {
            Ok(c) => Ok(c),
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => Err(e.to_string()),
            Err(e) => panic!("spawning {cmd:?}: {e}"),
        },
    )
}

fn config(root: &TestRoot, comm: &str) -> String {
    format!(
        "[cgroup]\nroot = \"{}\"\n[[slice]]\nname = \"placed\"\n[[rule]]\nname = \"test\"\ncomm = \"{comm}\"\nslice = \"placed\"\n",
        root.name
    )
}

/// A program that forks 100 children right after exec ends with itself and all 100
/// children in the rule's slice.
#[test]
#[ignore = "needs root: loads BPF programs and moves processes between cgroups"]
fn placement_is_escape_free_for_100_children() {
    let root = TestRoot::new("forker");
    let agent = Agent::start(&config(&root, "pmt-forker"), &["--source", "bpf"]);
    let sh = renamed(agent.dir.path(), "/bin/dash", "pmt-forker");
    let mut parent = spawn_copied(
        Command::new(&sh).args(["-c", "for i in $(seq 100); do sleep 30 & done; wait"]),
    );
    let pid = parent.id();
    let kids = wait_until("the 100 children", Duration::from_secs(20), || {
        let kids: Vec<u32> = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .map(|s| s.parse().unwrap())
            .collect();
        if kids.len() == 100 {
            Ok(kids)
        } else {
            Err(format!("{} children", kids.len()))
        }
    });
    let want = root.cgroup_line("placed");
    wait_until(
        "all 101 processes in the slice",
        Duration::from_secs(10),
        || {
            let outside: Vec<u32> = std::iter::once(pid)
                .chain(kids.iter().copied())
                .filter(|p| cgroup_of(*p) != want)
                .collect();
            if outside.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} of 101 processes outside the slice: {outside:?}",
                    outside.len()
                ))
            }
        },
    );
    let (_, rep) = http_get(&agent.socket, "/api/placement");
    assert_eq!(rep["placed"], 1, "{rep}");
    assert_eq!(rep["failed"], 0, "{rep}");
    // the same through the CLI, with the kernel's part of the one placement timed
    let (code, out, err) = procman(&agent, &["placement", "--json"]);
    assert_eq!(code, 0, "{err}");
    let cli: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(cli["placed"], 1, "{cli}");
    assert_eq!(cli["move_us"]["count"], 1, "{cli}");
    assert!(cli["move_us"]["max"].as_u64().unwrap() <= cli["latency_us"]["max"].as_u64().unwrap());
    let (code, out, _) = procman(&agent, &["placement"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("-> placed") && out.contains("exec -> placed"),
        "{out}"
    );
    let _ = std::fs::write(root.slice("placed").join("cgroup.kill"), "1");
    let _ = parent.wait();
}

/// A thousand short-lived matching processes: each is placed or counted as exited before
/// placement; none is missed and none fails.
#[test]
#[ignore = "needs root: loads BPF programs and moves processes between cgroups"]
fn a_thousand_short_lived_processes_are_all_accounted() {
    let root = TestRoot::new("storm");
    let agent = Agent::start(&config(&root, "pmt-true"), &["--source", "bpf"]);
    let t = renamed(agent.dir.path(), "/bin/true", "pmt-true");
    for _ in 0..1000 {
        spawn_copied(&mut Command::new(&t)).wait().unwrap();
    }
    let rep = wait_until(
        "placed + exited before placement + failed to reach 1000",
        Duration::from_secs(20),
        || {
            let (_, rep) = http_get(&agent.socket, "/api/placement");
            let done = rep["placed"].as_u64().unwrap()
                + rep["exited_before_placement"].as_u64().unwrap()
                + rep["failed"].as_u64().unwrap();
            if done >= 1000 {
                Ok(rep)
            } else {
                Err(format!("{rep}"))
            }
        },
    );
    eprintln!("1000 short-lived: {rep}");
    assert_eq!(rep["failed"], 0, "{rep}");
    assert_eq!(
        rep["placed"].as_u64().unwrap() + rep["exited_before_placement"].as_u64().unwrap(),
        1000,
        "{rep}"
    );
}

fn procman(agent: &Agent, args: &[&str]) -> (i32, String, String) {
    let out = agent.cli(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Bad input is refused with a clear message and writes nothing; on this host (no memory
/// controller in cgroup2) a memory limit is refused with the degraded-mode reason.
#[test]
#[ignore = "needs root: starts the agent (loads BPF programs)"]
fn bad_limit_requests_are_refused_and_write_nothing() {
    let root = TestRoot::new("bad");
    let agent = Agent::start(&format!("[cgroup]\nroot = \"{}\"\n", root.name), &[]);
    let mut victim = Command::new("sleep").arg("30").spawn().unwrap();
    let v = victim.id().to_string();
    let cases: &[(&[&str], &str)] = &[
        // refused by the CLI's own check of the flag's value
        (
            &["limit", "--pid", &v, "--slice", "s1", "--memory", "lots"],
            "--memory",
        ),
        (
            &["limit", "--pid", &v, "--slice", "s1", "--cpu", "150"],
            "--cpu",
        ),
        // -p values are checked by the CLI with the agent's own parser, naming the key
        (
            &[
                "limit",
                "--pid",
                &v,
                "--slice",
                "s1",
                "-p",
                "MemoryMax=lots",
            ],
            "MemoryMax",
        ),
        (
            &["limit", "--pid", &v, "--slice", "s1", "-p", "CPUQuota=150"],
            "CPUQuota",
        ),
        (
            &[
                "limit",
                "--pid",
                &v,
                "--slice",
                "s1",
                "--io-read",
                "1M:/dev/nonexistent",
            ],
            "/dev/nonexistent",
        ),
        (&["limit", "--pid", &v, "--slice", "a/b"], "a/b"),
        (&["limit", "--pid", &v, "--slice", ".."], ".."),
        (&["limit", "--pid", "4194999", "--slice", "s1"], "4194999"),
        (&["limit", "--pid", "1", "--slice", "s1"], "pid 1"),
        (
            &["limit", "--pid", &v, "--slice", "s1", "--memory", "512M"],
            "memory",
        ),
    ];
    for (args, needle) in cases {
        let (code, _, err) = procman(&agent, args);
        // exit codes: 3 for what does not exist, 2 for a refused value
        let want = if *needle == "4194999" { 3 } else { 2 };
        assert_eq!(code, want, "{args:?}: {err}");
        assert!(
            err.contains(needle) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
        assert!(!root.slice("s1").exists(), "{args:?} created the slice");
    }
    let (_, _, err) = procman(
        &agent,
        &["limit", "--pid", &v, "--slice", "s1", "--memory", "512M"],
    );
    assert!(
        err.contains("cgroup v1") || err.contains("not offer"),
        "the degraded-mode reason: {err}"
    );
    assert_eq!(cgroup_of(victim.id()), "0::/", "the victim was not moved");
    victim.kill().unwrap();
    victim.wait().unwrap();
}

/// `procman limit` moves a process (and its children) into a slice; `procman slices` lists
/// it; after `kill -9` of the agent and a restart everything is still in place and listed.
#[test]
#[ignore = "needs root: starts the agent and moves processes between cgroups"]
fn limit_then_agent_kill_and_restart_keeps_everything() {
    let root = TestRoot::new("adopt");
    let cfg = format!("[cgroup]\nroot = \"{}\"\n", root.name);
    let mut agent = Agent::start(&cfg, &[]);
    let mut p = Command::new("/bin/sh")
        .args(["-c", "sleep 30 & wait"])
        .spawn()
        .unwrap();
    // `procman limit` takes the descendants from the agent's table: wait until it has the sleep
    let shell = p.id();
    wait_until(
        "the agent to see the shell's child",
        Duration::from_secs(10),
        || match http_get(&agent.socket, &format!("/api/processes/{shell}")) {
            (200, v) if v["children_pids"].as_array().is_some_and(|c| !c.is_empty()) => Ok(()),
            (code, v) => Err(format!("{code} {v}")),
        },
    );
    let (code, out, err) = procman(
        &agent,
        &[
            "limit",
            "--pid",
            &p.id().to_string(),
            "--slice",
            "keep",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let ans: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        ans["moved"].as_array().unwrap().len(),
        2,
        "the shell and its sleep: {ans}"
    );
    assert_eq!(cgroup_of(p.id()), root.cgroup_line("keep"));
    // kill -9 the agent, start a new one on the same config
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    assert_eq!(
        cgroup_of(p.id()),
        root.cgroup_line("keep"),
        "a dead agent moves nothing out"
    );
    let agent2 = Agent::start(&cfg, &[]);
    let (code, out, _) = procman(&agent2, &["slices", "--json"]);
    assert_eq!(code, 0);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let keep = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "keep")
        .expect("re-adopted slice listed");
    assert!(
        keep["pids"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| *x == p.id()),
        "{keep}"
    );
    drop(agent2);
    drop(agent);
    let _ = std::fs::write(root.slice("keep").join("cgroup.kill"), "1");
    let _ = p.wait();
}

/// `procman run` starts the command inside the slice (it sees itself there from its first
/// instruction) and passes its exit status and output through.
#[test]
#[ignore = "needs root: starts the agent and spawns into a cgroup"]
fn run_starts_inside_the_slice_and_passes_the_status() {
    let root = TestRoot::new("run");
    let agent = Agent::start(&format!("[cgroup]\nroot = \"{}\"\n", root.name), &[]);
    let out = Command::new(bin("procman"))
        .arg("--socket")
        .arg(&agent.socket)
        .args([
            "run",
            "--slice",
            "job",
            "--",
            "/bin/sh",
            "-c",
            "grep ^0:: /proc/self/cgroup; exit 7",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        root.cgroup_line("job")
    );
    let out = Command::new(bin("procman"))
        .arg("--socket")
        .arg(&agent.socket)
        .args(["run", "--slice", "job", "--", "/bin/sh", "-c", "kill -9 $$"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(137), "128 + SIGKILL");
    // without `--`, and a command that does not exist is named, with the shell's status
    let (code, out, _) = procman(&agent, &["run", "--slice", "job", "sh", "-c", "echo ok"]);
    assert_eq!((code, out.trim()), (0, "ok"));
    let (code, _, err) = procman(&agent, &["run", "--slice", "job", "no-such-cmd-pm"]);
    assert_eq!(code, 127, "{err}");
    assert!(err.contains("no-such-cmd-pm: command not found"), "{err}");
    let (code, _, err) = procman(&agent, &["run", "--slice", "job", "/etc/passwd"]);
    assert_eq!(code, 126, "{err}");
    assert!(err.contains("/etc/passwd: permission denied"), "{err}");
}

/// A process that a rule matches but that started while no agent was running is in its slice
/// within a second of the agent's start; one already in its slice is not moved again.
#[test]
#[ignore = "needs root: loads BPF programs, creates cgroups and moves processes between them"]
fn processes_started_while_the_agent_was_down_are_placed_at_start() {
    let root = TestRoot::new("sweep");
    let dir = tempfile::tempdir().unwrap();
    let sh = renamed(dir.path(), "/bin/dash", "pmt-early");
    let mut early = spawn_copied(Command::new(&sh).args(["-c", "sleep 300 & wait"]));
    let pid = early.id();
    let agent = Agent::start(&config(&root, "pmt-early"), &[]);
    let want = root.cgroup_line("placed");
    wait_until(
        "the early process in its slice",
        Duration::from_secs(1),
        || {
            let now = cgroup_of(pid);
            (now == want).then_some(()).ok_or(now)
        },
    );
    // its child (forked before the agent started) followed it
    let kid: u32 = wait_until("the shell's child", Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .map_err(|e| e.to_string())?
            .split_whitespace()
            .next()
            .and_then(|k| k.parse().ok())
            .ok_or_else(|| "no child yet".to_string())
    });
    wait_until("the child in the slice", Duration::from_secs(1), || {
        let now = cgroup_of(kid);
        (now == want).then_some(()).ok_or(now)
    });
    let (_, rep) = http_get(&agent.socket, "/api/placement");
    assert_eq!(rep["swept"], 1, "{rep}");
    // a restarted agent finds it already placed: nothing to move
    drop(agent);
    let agent = Agent::start(&config(&root, "pmt-early"), &[]);
    let (_, rep) = http_get(&agent.socket, "/api/placement");
    assert_eq!(rep["swept"], 0, "{rep}");
    assert_eq!(cgroup_of(pid), want);
    let _ = early.kill();
    let _ = early.wait();
}

/// SIGHUP reloads the config: a bad one is refused (the agent runs on with the old rules and
/// says why, in its log and its audit log); a good one replaces the rules at once. The ring
/// is polled only every 10 s here, so a placement within 3 s also proves that the new rule's
/// comm reached the kernel's urgent list (it used to be filled at start only).
#[test]
#[ignore = "needs root: loads BPF programs, creates cgroups and moves processes between them"]
fn sighup_reloads_rules_and_refuses_a_bad_config() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let root = TestRoot::new("reload");
    let config = |root: &TestRoot, comm: &str| {
        format!(
            "{}[events]\npoll_interval = \"10s\"\nwakeup_batch = 4096\n",
            config(root, comm)
        )
    };
    let agent = Agent::start(&config(&root, "pmt-old"), &[]);
    let old = renamed(agent.dir.path(), "/bin/sleep", "pmt-old");
    let new = renamed(agent.dir.path(), "/bin/sleep", "pmt-new");
    let want = root.cgroup_line("placed");
    let hup = || kill(Pid::from_raw(agent.child.id() as i32), Signal::SIGHUP).unwrap();
    let reloads = |result: &str| {
        agent
            .audit()
            .iter()
            .filter(|r| r["action"] == "reload" && r["result"] == result)
            .count()
    };
    let placed = |bin: &PathBuf| {
        let mut c = spawn_copied(Command::new(bin).arg("300"));
        let pid = c.id();
        let r = try_wait_until("placement", Duration::from_secs(3), || {
            let now = cgroup_of(pid);
            (now == want).then_some(()).ok_or(now)
        });
        let _ = c.kill();
        let _ = c.wait();
        r.is_ok()
    };
    assert!(placed(&old));

    // a typo: refused, old rules kept
    agent.rewrite_config(&config(&root, "pmt-new").replace(
        "[[slice]]\nname = \"placed\"",
        "[[slice]]\nname = \"placed\"\nlimits = { MemoryMaxx = \"1G\" }",
    ));
    hup();
    wait_until(
        "the refused reload in the audit log",
        Duration::from_secs(10),
        || {
            (reloads("error") == 1)
                .then_some(())
                .ok_or(format!("{:?}", agent.audit()))
        },
    );
    // the refusal is audited before it is logged: wait for the log line
    wait_until("the refusal in the log", Duration::from_secs(10), || {
        agent
            .log()
            .contains("MemoryMaxx")
            .then_some(())
            .ok_or(agent.log())
    });
    assert!(placed(&old), "the old rule still places");
    assert!(!placed(&new), "the refused rule does not");

    // a good one: the new rule replaces the old
    agent.rewrite_config(&config(&root, "pmt-new"));
    hup();
    wait_until(
        "the reload in the audit log",
        Duration::from_secs(10),
        || {
            (reloads("ok") == 1)
                .then_some(())
                .ok_or(format!("{:?}", agent.audit()))
        },
    );
    assert!(placed(&new));
    assert!(!placed(&old));
    let (_, rep) = http_get(&agent.socket, "/api/placement");
    assert_eq!(rep["placed"], 3, "counters survive the reload: {rep}");
    assert!(
        rep["rules"][0].as_str().unwrap().contains("test -> placed"),
        "{rep}"
    );
}

/// A transient slice (`procman limit --pid`) is removed once its processes are gone and it
/// stayed empty for a grace period; a declared slice stays even when empty.
#[test]
#[ignore = "needs root: loads BPF programs, creates cgroups and moves processes between them"]
fn empty_transient_slices_are_removed_declared_ones_stay() {
    let root = TestRoot::new("janitor");
    let cfg = format!(
        "[cgroup]\nroot = \"{}\"\ntransient_grace = \"1s\"\n[[slice]]\nname = \"kept\"\n",
        root.name
    );
    let agent = Agent::start(&cfg, &[]);
    let mut victim = Command::new("sleep").arg("300").spawn().unwrap();
    let pid = victim.id();
    let (code, _, err) = procman(&agent, &["limit", "--pid", &pid.to_string()]);
    assert_eq!(code, 0, "{err}");
    let slice = root.slice(&format!("pid-{pid}"));
    assert!(slice.is_dir());
    victim.kill().unwrap();
    victim.wait().unwrap();
    wait_until(
        "the empty transient slice removed",
        Duration::from_secs(10),
        || {
            (!slice.exists())
                .then_some(())
                .ok_or_else(|| format!("{} still exists", slice.display()))
        },
    );
    assert!(root.slice("kept").is_dir(), "declared slices stay");
    assert!(
        agent.log().contains("removed empty transient slice"),
        "{}",
        agent.log()
    );
}

/// `freeze PID` acts where the process is: alone in its slice, that slice is frozen and the
/// process stays in it; sharing a slice, the request is refused and names `--slice`.
#[test]
#[ignore = "needs root: loads BPF programs, creates cgroups and moves processes between them"]
fn freeze_pid_acts_in_place_and_never_moves_a_placed_process() {
    let root = TestRoot::new("frzpid");
    let agent = Agent::start(&format!("[cgroup]\nroot = \"{}\"\n", root.name), &[]);
    let mut a = Command::new("sleep").arg("300").spawn().unwrap();
    let mut b = Command::new("sleep").arg("300").spawn().unwrap();
    let (pa, pb) = (a.id().to_string(), b.id().to_string());
    let (code, _, err) = procman(
        &agent,
        &["limit", "--pid", &pa, "--pid", &pb, "--slice", "two"],
    );
    assert_eq!(code, 0, "{err}");
    // sharing a slice: refused, nothing moved or frozen
    let (code, _, err) = procman(&agent, &["freeze", &pa]);
    assert_eq!(code, 2);
    assert!(
        err.contains("shares slice two") && err.contains("--slice two"),
        "{err}"
    );
    assert_eq!(cgroup_of(a.id()), root.cgroup_line("two"));
    // alone in its slice: frozen in place
    b.kill().unwrap();
    b.wait().unwrap();
    let (code, out, err) = procman(&agent, &["freeze", &pa]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("frozen (slice two)"), "{out}");
    assert_eq!(
        cgroup_of(a.id()),
        root.cgroup_line("two"),
        "it stayed in its slice"
    );
    let events = std::fs::read_to_string(root.slice("two").join("cgroup.events")).unwrap();
    assert!(events.contains("frozen 1"), "{events}");
    // frozen is visible: ps state F, info, slices
    // (once the sampler has seen the process and its cgroup)
    wait_until("ps to show state F", Duration::from_secs(10), || {
        let (_, out, _) = procman(&agent, &["ps", "--filter", &format!("pid == {pa}")]);
        let line = out.lines().nth(1).unwrap_or_default().to_string();
        (line.split_whitespace().nth(3) == Some("F"))
            .then_some(())
            .ok_or(out)
    });
    let (_, out, _) = procman(&agent, &["info", &pa]);
    assert!(out.contains("FROZEN"), "{out}");
    let (_, out, _) = procman(&agent, &["slices"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("two") && l.contains("FROZEN")),
        "{out}"
    );
    let (code, out, err) = procman(&agent, &["thaw", &pa]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("thawed"), "{out}");
    let (code, _, err) = procman(&agent, &["thaw", &pa]);
    assert_eq!(code, 2);
    assert!(err.contains("is not frozen"), "{err}");
    a.kill().unwrap();
    a.wait().unwrap();
}

/// `procman status` says what enforcement can do here: on this host's cgroup2 (no
/// controllers), degraded, with each missing controller's reason and the keys it cannot
/// enforce; an agent that never needed cgroups says so and creates nothing.
#[test]
#[ignore = "needs root: loads BPF programs, creates cgroups"]
fn status_reports_enforcement() {
    let root = TestRoot::new("status");
    let agent = Agent::start(&format!("[cgroup]\nroot = \"{}\"\n", root.name), &[]);
    assert_eq!(agent.status()["enforcement"]["state"], "unused");
    assert!(!root.path.exists(), "status created nothing");
    drop(agent);
    let cfg = format!(
        "[cgroup]\nroot = \"{}\"\n[[slice]]\nname = \"s\"\n",
        root.name
    );
    let agent = Agent::start(&cfg, &[]);
    let e = agent.status()["enforcement"].clone();
    let controllers = e["controllers"].as_object().unwrap();
    assert_eq!(controllers.len(), 4, "{e}");
    let missing = controllers.values().filter(|v| *v != "enabled").count();
    let state = e["state"].as_str().unwrap();
    assert_eq!(
        state == "degraded",
        missing > 0 || e["kill"] == false,
        "{e}"
    );
    if controllers["memory"] != "enabled" {
        assert!(
            e["unenforced_keys"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k == "MemoryMax"),
            "{e}"
        );
    }
    let (code, out, _) = procman(&agent, &["status"]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("enforcement:      {state}")), "{out}");
}

/// `procman slices rm` removes an empty slice, refuses one with processes unless --kill, and
/// says when there is no such slice (exit code 3).
#[test]
#[ignore = "needs root: loads BPF programs, creates cgroups and moves processes between them"]
fn slices_rm_refuses_a_busy_slice_unless_kill() {
    let root = TestRoot::new("rm");
    let agent = Agent::start(&format!("[cgroup]\nroot = \"{}\"\n", root.name), &[]);
    let mut victim = Command::new("sleep").arg("300").spawn().unwrap();
    let pid = victim.id().to_string();
    let (code, _, err) = procman(&agent, &["limit", "--pid", &pid, "--slice", "busy"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = procman(&agent, &["slices", "rm", "busy"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("has 1 process(es)") && err.contains("--kill"),
        "{err}"
    );
    assert!(root.slice("busy").is_dir());
    let (code, out, err) = procman(&agent, &["slices", "rm", "busy", "--kill"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 process(es) killed"), "{out}");
    assert!(!root.slice("busy").exists());
    let status = victim.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "killed by cgroup.kill"
    );
    let (code, _, err) = procman(&agent, &["slices", "rm", "busy"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no slice"), "{err}");
    let audit = agent.audit();
    assert!(
        audit
            .iter()
            .any(|r| r["action"] == "limit+kill" && r["result"] == "ok"),
        "{audit:?}"
    );
}

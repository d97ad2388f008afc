//! Acting on processes through the real agent and socket: seed 004's kill endpoint (exact
//! request and answer shapes, over the Unix socket and the TCP listener), the SIGTERM → SIGKILL
//! escalation, the (pid, start time) identity, protected targets, renice and ionice of every
//! thread, access control, the `/api/actions` stream and the audit log.
//!
//! Every process signalled here was started by the test itself.
use procman_tests::{bin, tcp_api, wait_until, Agent, TestRoot, TestUser};
use std::{
    os::unix::{fs::PermissionsExt, process::ExitStatusExt},
    path::Path,
    process::{Child, Command},
    time::Duration,
};

/// `(status, JSON body)` of one HTTP/1.0 request on the agent's socket.
fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("connect to the agent");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let req = match body {
        // seed 004's curl: a JSON body with its Content-Type
        Some(b) => format!(
            "{method} {path} HTTP/1.0\r\nHost: procman\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ),
        // no body and no Content-Type at all
        None => format!("{method} {path} HTTP/1.0\r\nHost: procman\r\n\r\n"),
    };
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or_default())
}

fn kill(agent: &Agent, pid: u32, body: Option<&str>) -> (u16, serde_json::Value) {
    request(
        &agent.socket,
        "POST",
        &format!("/api/processes/{pid}/kill"),
        body,
    )
}

fn sleeper() -> Child {
    Command::new("sleep").arg("600").spawn().unwrap()
}

fn alive(c: &mut Child) -> bool {
    c.try_wait().unwrap().is_none()
}

/// The signal that ended `c` (waits for it: the agent answered only once it was gone).
fn killed_by(c: &mut Child) -> Option<i32> {
    c.wait().unwrap().signal()
}

fn stop(c: &mut Child) {
    let _ = c.kill();
    let _ = c.wait();
}

/// Field `n` (1-based, as in proc(5)) of /proc/PID[/task/TID]/stat.
fn stat_field(path: &str, n: usize) -> String {
    let text = std::fs::read_to_string(format!("{path}/stat")).unwrap();
    let rest = &text[text.rfind(')').unwrap() + 1..];
    rest.split_whitespace().nth(n - 3).unwrap().to_string()
}

fn start_ns(pid: u32) -> u64 {
    let ticks: u64 = stat_field(&format!("/proc/{pid}"), 22).parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    ticks * (1_000_000_000 / hz)
}

/// Seed 004: `{"force": false}` and `{"force": true}` with its exact answers; an empty body
/// without a Content-Type is `{}`; errors carry `success: false`, `error` and `pid`.
#[test]
#[ignore = "needs root: loads BPF programs, signals through pidfds"]
fn seed_004_kill_request_and_answer_shapes() {
    let agent = Agent::start("", &[]);

    let mut c = sleeper();
    let pid = c.id();
    let (code, v) = kill(&agent, pid, Some(r#"{"force": false}"#));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(
        v["message"],
        format!("Process sleep (PID: {pid}) terminated successfully"),
        "{v}"
    );
    assert_eq!(v["pid"], pid);
    assert_eq!(v["name"], "sleep");
    assert_eq!(v["forced"], false);
    assert_eq!(v["signal"], "SIGTERM");
    assert_eq!(v["exited"], true);
    assert_eq!(killed_by(&mut c), Some(libc::SIGTERM));

    let mut c = sleeper();
    let pid = c.id();
    let (code, v) = kill(&agent, pid, Some(r#"{"force": true}"#));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(
        v["message"],
        format!("Process sleep (PID: {pid}) terminated successfully")
    );
    assert_eq!(
        (v["pid"].as_u64(), &v["name"]),
        (Some(pid as u64), &"sleep".into())
    );
    assert_eq!(v["forced"], true, "{v}");
    assert_eq!(v["signal"], "SIGKILL");
    assert_eq!(killed_by(&mut c), Some(libc::SIGKILL));

    // no body, no Content-Type: SIGTERM
    let mut c = sleeper();
    let (code, v) = kill(&agent, c.id(), None);
    assert_eq!((code, &v["signal"]), (200, &"SIGTERM".into()), "{v}");
    assert_eq!(killed_by(&mut c), Some(libc::SIGTERM));

    // another signal: sent, nothing follows, nothing waits
    let mut c = Command::new("sh")
        .args(["-c", "trap 'exit 7' HUP; while :; do sleep 1; done"])
        .spawn()
        .unwrap();
    wait_until("the shell's HUP trap", Duration::from_secs(10), || {
        sig_caught(c.id(), libc::SIGHUP)
    });
    let (code, v) = kill(&agent, c.id(), Some(r#"{"signal": "HUP"}"#));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["signal"], "SIGHUP", "{v}");
    assert_eq!(v["forced"], false, "{v}");
    assert_eq!(c.wait().unwrap().code(), Some(7), "the trap ran");

    // errors: seed 004's shape
    let (code, v) = kill(&agent, 4_194_999, Some(r#"{"force": false}"#));
    assert_eq!(code, 404, "{v}");
    assert_eq!(v["success"], false, "{v}");
    assert_eq!(v["pid"], 4_194_999, "{v}");
    assert!(v["error"].as_str().unwrap().contains("4194999"), "{v}");
    let mut c = sleeper();
    for bad in [
        r#"{"forse": true}"#,
        r#"{"force": true, "signal": "TERM"}"#,
        r#"{"signal": "SIGBOGUS"}"#,
        r#"{"grace": "1h"}"#,
        "not json",
    ] {
        let (code, v) = kill(&agent, c.id(), Some(bad));
        assert_eq!(code, 400, "{bad}: {v}");
        assert_eq!(v["success"], false, "{v}");
        assert_eq!(v["pid"], c.id(), "{v}");
        assert!(!v["error"].as_str().unwrap().is_empty(), "{v}");
    }
    assert!(alive(&mut c), "a refused request changes nothing");
    let (code, v) = kill(&agent, 0, None);
    assert_eq!(code, 400, "{v}");
    stop(&mut c);
}

/// Whether `pid`'s /proc status shows `sig` caught (SigCgt) or ignored (SigIgn).
fn sig_mask_has(pid: u32, key: &str, sig: i32) -> Result<(), String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .ok_or("no mask")?;
    if mask & (1 << (sig - 1)) != 0 {
        Ok(())
    } else {
        Err(format!("{key} {mask:x}"))
    }
}

fn sig_caught(pid: u32, sig: i32) -> Result<(), String> {
    sig_mask_has(pid, "SigCgt:", sig)
}

/// A process that ignores SIGTERM is SIGKILLed after the grace, and the answer says so; the
/// TCP listener with a token that may kill answers the same.
#[test]
#[ignore = "needs root: loads BPF programs; the token file must be owned by root"]
fn term_ignoring_process_is_escalated_to_sigkill_after_the_grace() {
    let addr = format!("127.0.0.1:{}", procman_tests::free_port());
    let dir = tempfile::tempdir().unwrap();
    let (token_file, token) = procman_tests::token_file(dir.path());
    let token = token.as_str();
    let agent = Agent::start(
        &format!(
            "[actions]\nkill_grace = \"1s\"\n[api]\nlisten = \"{addr}\"\ntoken_file = \"{}\"\ntoken_allow = [\"kill\"]\n",
            token_file.display()
        ),
        &[],
    );
    // an ignored signal stays ignored across exec
    let stubborn = || {
        let c = Command::new("sh")
            .args(["-c", "trap '' TERM; exec sleep 600"])
            .spawn()
            .unwrap();
        wait_until("SIGTERM ignored", Duration::from_secs(10), || {
            sig_mask_has(c.id(), "SigIgn:", libc::SIGTERM)?;
            (std::fs::read_to_string(format!("/proc/{}/comm", c.id()))
                .map_err(|e| e.to_string())?
                == "sleep\n")
                .then_some(())
                .ok_or_else(|| "not exec'd yet".to_string())
        });
        c
    };

    let mut c = stubborn();
    let (code, v) = kill(&agent, c.id(), Some(r#"{"force": false, "grace": 0.5}"#));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["success"], true);
    assert_eq!(v["forced"], true, "{v}");
    assert_eq!(v["escalated"], true, "{v}");
    assert_eq!(v["signal"], "SIGKILL", "{v}");
    assert!(v["waited_seconds"].as_f64().unwrap() >= 0.5, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("SIGKILL after"),
        "{v}"
    );
    assert_eq!(killed_by(&mut c), Some(libc::SIGKILL));

    // the configured grace (1s) when the request gives none, over TCP with the token
    let mut c = stubborn();
    let (code, v) = tcp_api(
        &addr,
        "POST",
        &format!("/api/processes/{}/kill", c.id()),
        Some(token),
        r#"{"force": false}"#,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["signal"], "SIGKILL", "{v}");
    assert!(v["waited_seconds"].as_f64().unwrap() >= 1.0, "{v}");
    assert_eq!(killed_by(&mut c), Some(libc::SIGKILL));
    // without the token: 401, nothing done
    let mut c = sleeper();
    let (code, v) = tcp_api(
        &addr,
        "POST",
        &format!("/api/processes/{}/kill", c.id()),
        None,
        r#"{"force": true}"#,
    );
    assert_eq!(code, 401, "{v}");
    assert!(alive(&mut c));
    stop(&mut c);
}

/// A start time other than the process's own (what a caller saw before the pid was reused)
/// is refused with 409 and nothing is signalled; the right one is accepted.
#[test]
#[ignore = "needs root: loads BPF programs, signals through pidfds"]
fn a_reused_pid_is_not_killed() {
    let agent = Agent::start("", &[]);
    let mut c = sleeper();
    let pid = c.id();
    let ns = start_ns(pid);
    // what `procman ps --json` shows as started_at
    let listed = wait_until("the process in the table", Duration::from_secs(10), || {
        let out = agent.cli(&["info", &pid.to_string(), "--json"]);
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        v["started_at"]
            .as_str()
            .and_then(|t| t.parse::<procman_common::units::Timestamp>().ok())
            .ok_or_else(|| v.to_string())
    });
    for body in [
        format!(r#"{{"force": true, "start_ns": {}}}"#, ns + 3_000_000_000),
        format!(
            r#"{{"force": true, "started_at": "{}"}}"#,
            procman_common::units::Timestamp::from_unix(listed.unix() - 60.0)
        ),
    ] {
        let (code, v) = kill(&agent, pid, Some(&body));
        assert_eq!(code, 409, "{body}: {v}");
        assert_eq!(v["success"], false, "{v}");
        assert!(
            v["error"].as_str().unwrap().contains("another process"),
            "{v}"
        );
        assert!(alive(&mut c), "a 409 signals nothing");
    }
    // the renice and ionice routes check it the same way
    let (code, v) = request(
        &agent.socket,
        "POST",
        &format!("/api/processes/{pid}/renice"),
        Some(&format!(
            r#"{{"nice": 5, "start_ns": {}}}"#,
            ns + 3_000_000_000
        )),
    );
    assert_eq!(code, 409, "{v}");
    assert_eq!(
        stat_field(&format!("/proc/{pid}"), 19),
        "0",
        "nice unchanged"
    );
    // the identity it really has
    let (code, v) = kill(
        &agent,
        pid,
        Some(&format!(r#"{{"force": true, "started_at": "{listed}"}}"#)),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(killed_by(&mut c), Some(libc::SIGKILL));
    let mut c = sleeper();
    let (code, v) = kill(
        &agent,
        c.id(),
        Some(&format!(
            r#"{{"force": true, "start_ns": {}}}"#,
            start_ns(c.id())
        )),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(killed_by(&mut c), Some(libc::SIGKILL));
}

/// pid 1, a kernel thread, the agent itself, a process the `protect` filter matches, and a
/// tree holding one: 403, and nothing is signalled.
#[test]
#[ignore = "needs root: loads BPF programs, signals through pidfds"]
fn protected_targets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let protected_bin = dir.path().join("pmprotected");
    std::fs::copy("/bin/sleep", &protected_bin).unwrap();
    let agent = Agent::start("[actions]\nprotect = 'name == pmprotected'\n", &[]);
    let agent_pid = agent.child.id();
    let mut guarded = Command::new(&protected_bin).arg("600").spawn().unwrap();
    // a shell whose child is protected: its tree may not be ended
    let mut parent = Command::new("sh")
        .arg("-c")
        .arg(format!("{} 600 & wait", protected_bin.display()))
        .spawn()
        .unwrap();
    let grandchild: u32 = wait_until(
        "the shell's protected child",
        Duration::from_secs(10),
        || {
            let kids = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", parent.id()))
                .map_err(|e| e.to_string())?;
            let kid: u32 = kids
                .split_whitespace()
                .next()
                .and_then(|k| k.parse().ok())
                .ok_or_else(|| "no child yet".to_string())?;
            // the forked shell first, pmprotected once it has exec'd
            let comm = std::fs::read_to_string(format!("/proc/{kid}/comm")).unwrap_or_default();
            (comm.trim() == "pmprotected")
                .then_some(kid)
                .ok_or(format!("child {kid} is {comm:?}, not yet pmprotected"))
        },
    );
    let cases: [(u32, &str, &str); 5] = [
        (1, r#"{"force": true}"#, "pid 1"),
        (2, r#"{"force": true}"#, "kernel thread"),
        (agent_pid, r#"{"force": true}"#, "the agent itself"),
        (guarded.id(), r#"{"force": true}"#, "protect"),
        (parent.id(), r#"{"force": true, "tree": true}"#, "protect"),
    ];
    for (pid, body, why) in cases {
        let (code, v) = kill(&agent, pid, Some(body));
        assert_eq!(code, 403, "pid {pid}: {v}");
        assert_eq!(v["success"], false, "{v}");
        assert_eq!(v["pid"], pid, "{v}");
        assert!(v["error"].as_str().unwrap().contains(why), "{why}: {v}");
    }
    // renice and ionice too
    for route in ["renice", "ionice"] {
        let body = if route == "renice" {
            r#"{"nice": 19}"#
        } else {
            r#"{"class": "idle"}"#
        };
        let (code, v) = request(
            &agent.socket,
            "POST",
            &format!("/api/processes/{}/{route}", guarded.id()),
            Some(body),
        );
        assert_eq!(code, 403, "{route}: {v}");
    }
    assert!(alive(&mut guarded) && alive(&mut parent));
    assert!(
        agent.status()["pid"] == agent_pid,
        "the agent still answers"
    );
    // the shell alone (not its tree) is not protected
    let (code, v) = kill(&agent, parent.id(), Some(r#"{"force": true}"#));
    assert_eq!(code, 200, "{v}");
    assert_eq!(killed_by(&mut parent), Some(libc::SIGKILL));
    // its child (started by this test, now an orphan) goes too
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(grandchild as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    stop(&mut guarded);
}

/// `tree: true` ends the process and every descendant, children first.
#[test]
#[ignore = "needs root: loads BPF programs, signals through pidfds"]
fn a_tree_kill_ends_every_descendant() {
    let root = TestRoot::new("acttree");
    let agent = Agent::start(&format!("[cgroup]\nroot = \"{}\"\n", root.name), &[]);
    // sh -> (sh -> sleep) + sleep
    let mut top = Command::new("sh")
        .args(["-c", "sh -c 'sleep 600 & wait' & sleep 600 & wait"])
        .spawn()
        .unwrap();
    let all = wait_until("three descendants", Duration::from_secs(10), || {
        let d = descendants(top.id());
        (d.len() == 3).then_some(d.clone()).ok_or(format!("{d:?}"))
    });
    let (code, v) = kill(&agent, top.id(), Some(r#"{"tree": true}"#));
    assert_eq!(code, 200, "{v}");
    let mut listed: Vec<u32> = v["tree_killed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap() as u32)
        .collect();
    listed.sort_unstable();
    let mut want = all.clone();
    want.sort_unstable();
    assert_eq!(listed, want, "{v}");
    assert_eq!(v["method"], "pidfd signals", "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("3 descendant(s)"),
        "{v}"
    );
    assert_eq!(killed_by(&mut top), Some(libc::SIGTERM));
    // the orphans are reaped by init (or a subreaper): each is gone or a zombie
    for pid in all {
        wait_until(
            "a descendant gone",
            Duration::from_secs(10),
            || match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => Ok(()),
                Ok(s) if s.contains(") Z ") => Ok(()),
                Ok(s) => Err(s),
            },
        );
    }

    // a tree alone in a procman slice is SIGKILLed through cgroup.kill: no fork escapes
    let mut run = Command::new(bin("procman"))
        .arg("--socket")
        .arg(&agent.socket)
        .args([
            "run",
            "--slice",
            "tree",
            "--",
            "sh",
            "-c",
            "sleep 600 & sleep 600 & wait",
        ])
        .spawn()
        .unwrap();
    let procs = root.slice("tree").join("cgroup.procs");
    let sh = wait_until(
        "the shell and its two sleeps in the slice",
        Duration::from_secs(10),
        || {
            let pids: Vec<u32> = std::fs::read_to_string(&procs)
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            let sh = pids.iter().copied().find(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c == "sh\n")
            });
            match sh {
                Some(sh) if pids.len() == 3 => Ok(sh),
                _ => Err(format!("{pids:?}")),
            }
        },
    );
    let (code, v) = kill(&agent, sh, Some(r#"{"force": true, "tree": true}"#));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["method"], "cgroup.kill of slice tree", "{v}");
    assert_eq!(v["tree_killed"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(std::fs::read_to_string(&procs).unwrap().trim(), "");
    assert_eq!(run.wait().unwrap().code(), Some(128 + libc::SIGKILL));
}

/// The descendants of `pid` (from /proc's children lists).
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let kids =
            std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
        for k in kids.split_whitespace().filter_map(|k| k.parse().ok()) {
            out.push(k);
            todo.push(k);
        }
    }
    out
}

fn thread_ids(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

fn ioprio_get(tid: u32) -> i64 {
    // SAFETY: ioprio_get(IOPRIO_WHO_PROCESS, tid) has no pointers.
    unsafe { libc::syscall(libc::SYS_ioprio_get, 1, tid as libc::c_int) }
}

/// renice and ionice change every thread: read back from /proc/PID/task/*/stat and
/// ioprio_get(2) per thread; seed 000's levels map to nice 10 / 0 / -5.
#[test]
#[ignore = "needs root: loads BPF programs; raising priority needs CAP_SYS_NICE"]
fn renice_and_ionice_set_every_thread() {
    let agent = Agent::start("", &[]);
    let mut c = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import threading, time\n\
             for _ in range(3): threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n\
             time.sleep(600)",
        ])
        .spawn()
        .unwrap();
    let pid = c.id();
    wait_until("four threads", Duration::from_secs(20), || {
        let t = thread_ids(pid);
        (t.len() == 4).then_some(()).ok_or(format!("{t:?}"))
    });
    let nices = || -> Vec<String> {
        thread_ids(pid)
            .iter()
            .map(|t| stat_field(&format!("/proc/{pid}/task/{t}"), 19))
            .collect()
    };
    let (code, v) = request(
        &agent.socket,
        "POST",
        &format!("/api/processes/{pid}/renice"),
        Some(r#"{"nice": 7}"#),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (v["old_nice"].as_i64(), v["new_nice"].as_i64()),
        (Some(0), Some(7)),
        "{v}"
    );
    assert_eq!(v["threads"], 4, "{v}");
    assert_eq!(v["success"], true);
    assert_eq!(nices(), vec!["7"; 4]);
    for (level, want) in [("low", "10"), ("high", "-5"), ("normal", "0")] {
        let out = agent.cli(&["renice", &pid.to_string(), "--level", level]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(nices(), vec![want; 4], "level {level}");
    }
    let out = agent.cli(&["renice", &pid.to_string(), "-3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("to -3"));
    assert_eq!(nices(), vec!["-3"; 4]);
    let (code, v) = request(
        &agent.socket,
        "POST",
        &format!("/api/processes/{pid}/renice"),
        Some(r#"{"nice": 20}"#),
    );
    assert_eq!(code, 400, "{v}");
    assert_eq!(nices(), vec!["-3"; 4], "a refused value changes nothing");

    let (code, v) = request(
        &agent.socket,
        "POST",
        &format!("/api/processes/{pid}/ionice"),
        Some(r#"{"class": "best-effort", "level": 6}"#),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["new"], "best-effort:6", "{v}");
    assert_eq!(v["threads"], 4, "{v}");
    for t in thread_ids(pid) {
        assert_eq!(ioprio_get(t), 2 << 13 | 6, "thread {t}");
    }
    let out = agent.cli(&["ionice", &pid.to_string(), "idle", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&v["old"], &v["new"]),
        (&"best-effort:6".into(), &"idle".into()),
        "{v}"
    );
    for t in thread_ids(pid) {
        assert_eq!(ioprio_get(t), 3 << 13, "thread {t}");
    }
    // util-linux agrees, when it is installed
    if let Ok(out) = Command::new("ionice")
        .args(["-p", &pid.to_string()])
        .output()
    {
        if out.status.success() {
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "idle");
        }
    }
    let (code, v) = request(
        &agent.socket,
        "POST",
        &format!("/api/processes/{pid}/ionice"),
        Some(r#"{"class": "idle", "level": 3}"#),
    );
    assert_eq!(code, 400, "{v}");
    stop(&mut c);
}

/// A non-root user without a kill grant is refused (403, exit code 4); with a `kill` grant
/// limited to its own processes it may end its own, never root's. Each attempt is audited and
/// streamed on `/api/actions`; the audit line of a kill says which signal ended it.
#[test]
#[ignore = "needs root: creates a user and group, loads BPF programs"]
fn access_audit_and_the_action_stream() {
    let user = TestUser::create("k");
    let config = |grant: &str| format!("[agent]\nsocket_group = \"{}\"\n{grant}", user.name);
    let agent = Agent::start(&config(""), &[]);
    std::fs::set_permissions(agent.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let procman = agent.dir.path().join("procman");
    std::fs::copy(bin("procman"), &procman).unwrap();
    std::fs::set_permissions(&procman, std::fs::Permissions::from_mode(0o755)).unwrap();

    // the stream, followed by root through the CLI
    let mut stream = Command::new(bin("procman"))
        .arg("--socket")
        .arg(&agent.socket)
        .args(["actions", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = stream.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let v: serde_json::Value = serde_json::from_str(&line).expect("action JSON");
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    wait_until(
        "the action stream's subscriber",
        Duration::from_secs(10),
        || {
            // the stream answers once subscribed; a refused request shows up on it
            let (code, _) = kill(&agent, 1, None);
            assert_eq!(code, 403);
            rx.try_recv()
                .map(|_| ())
                .map_err(|e| format!("nothing on the stream yet: {e}"))
        },
    );
    while rx.try_recv().is_ok() {}

    let mut mine = user.sleeper();
    let out = user.procman(&procman, &agent.socket, &["kill", &mine.id().to_string()]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("may not kill"));
    assert!(alive(&mut mine));

    let hup = || {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(agent.child.id() as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap()
    };
    let reloads = |result: &str| {
        agent
            .audit()
            .iter()
            .filter(|l| l["action"] == "reload" && l["result"] == result)
            .count()
    };
    // an invalid [actions] section is refused on reload; the running settings stay
    agent.rewrite_config(&config("[actions]\nprotect = 'cpu >'\n"));
    hup();
    wait_until("the refused reload", Duration::from_secs(10), || {
        (reloads("error") == 1)
            .then_some(())
            .ok_or_else(|| "no refused reload yet".to_string())
    });
    let refused = agent.audit();
    let line = refused.iter().find(|l| l["action"] == "reload").unwrap();
    assert!(
        line["detail"].as_str().unwrap().contains("protect"),
        "{line}"
    );

    // a grant to kill its own processes (reloaded)
    agent.rewrite_config(&config(&format!(
        "[[access]]\nusers = [\"{}\"]\nallow = [\"kill\"]\nonly_own = true\n",
        user.name
    )));
    hup();
    wait_until("the reload", Duration::from_secs(10), || {
        (reloads("ok") == 1)
            .then_some(())
            .ok_or_else(|| "no reload line yet".to_string())
    });
    let mut roots = sleeper();
    let out = user.procman(
        &procman,
        &agent.socket,
        &["kill", "--force", &roots.id().to_string()],
    );
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("belongs to uid 0"));
    assert!(alive(&mut roots));
    let out = user.procman(&procman, &agent.socket, &["kill", &mine.id().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("terminated successfully"));
    assert_eq!(killed_by(&mut mine), Some(libc::SIGTERM));
    // renice needs `limit`, not granted
    let out = user.procman(
        &procman,
        &agent.socket,
        &["renice", &roots.id().to_string(), "5"],
    );
    assert_eq!(out.status.code(), Some(4));

    // the stream: the refusal (403 in the handler) and the kill, with the actor
    // (the probes on pid 1 above may still be arriving)
    let got: Vec<serde_json::Value> =
        std::iter::from_fn(|| rx.recv_timeout(Duration::from_secs(10)).ok())
            .filter(|v| v["pid"] != 1)
            .take(2)
            .collect();
    assert_eq!(got[0]["action"], "kill", "{got:?}");
    assert_eq!(got[0]["result"], "denied", "{got:?}");
    assert_eq!(got[0]["pid"], roots.id(), "{got:?}");
    assert_eq!(got[1]["result"], "ok", "{got:?}");
    assert_eq!(got[1]["pid"], mine.id(), "{got:?}");
    assert_eq!(got[1]["name"], "sleep", "{got:?}");
    assert_eq!(got[1]["answer"]["signal"], "SIGTERM", "{got:?}");
    assert!(got[1]["actor"]
        .as_str()
        .unwrap()
        .starts_with(&format!("uid {}", user.uid)));

    // the audit log: one line per attempt, the kill's detail says how it ended
    let lines = agent.audit();
    let kills: Vec<&serde_json::Value> = lines.iter().filter(|l| l["action"] == "kill").collect();
    let summary: Vec<(u64, &str)> = kills
        .iter()
        .map(|l| {
            (
                l["actor"]["uid"].as_u64().unwrap(),
                l["result"].as_str().unwrap(),
            )
        })
        .collect();
    let u = user.uid as u64;
    assert_eq!(
        summary[summary.len() - 3..],
        [(u, "denied"), (u, "error"), (u, "ok")],
        "{kills:?}"
    );
    let ok = kills.last().unwrap();
    assert_eq!(
        ok["target"],
        format!("POST /api/processes/{}/kill", mine.id())
    );
    assert!(
        ok["detail"]
            .as_str()
            .unwrap()
            .contains("terminated successfully"),
        "{ok}"
    );
    assert_eq!(ok["status"], 200);
    stop(&mut roots);
    stop(&mut stream);
}

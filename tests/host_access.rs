//! Access control and the audit log, through the real socket as a real non-root user: a
//! throwaway user and group are created for the test and removed afterwards.
use procman_tests::{bin, cgroup_of, tcp_api, wait_until, Agent, TestRoot, TestUser};
use std::{
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

/// The agent's directory (socket, audit log) opened to the user, and a copy of `procman` in it.
fn open_to(agent: &Agent) -> PathBuf {
    std::fs::set_permissions(agent.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let p = agent.dir.path().join("procman");
    std::fs::copy(bin("procman"), &p).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn audit_lines(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("audit/audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("an audit line is JSON"))
        .collect()
}

fn config(root: &TestRoot, user: &TestUser, dir: &Path, grant: &str) -> String {
    format!(
        "[agent]\nsocket_group = \"{g}\"\n[cgroup]\nroot = \"{root}\"\n[audit]\npath = \"{audit}\"\n{grant}",
        g = user.name,
        root = root.name,
        audit = dir.join("audit/audit.jsonl").display(),
    )
}

/// A socket_group member reads but cannot change anything; it does not see root's command
/// lines; each refused attempt leaves an audit line naming it.
#[test]
#[ignore = "needs root: creates a user and group, moves processes between cgroups"]
fn group_members_read_but_may_not_act_and_are_audited() {
    let user = TestUser::create("r");
    let root = TestRoot::new("acl-ro");
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&config(&root, &user, dir.path(), ""), &[]);
    let procman = open_to(&agent);
    // a shell waiting on its stdin (no child of its own to leave behind when it is killed)
    let mut secret = Command::new("sh")
        .args(["-c", "read x; : pm-secret-arg"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let secret_pid = secret.id();
    let mut mine = user.sleeper();
    // root sees the command line once the agent has sampled it
    wait_for("root to see the command line", || {
        let out = agent.cli(&["info", &secret_pid.to_string(), "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["cmdline"]
            .as_str()
            .filter(|c| c.contains("pm-secret-arg"))
            .map(|_| ())
    });

    let out = user.procman(&procman, &agent.socket, &["ps", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = |pid: u32| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|p| p["pid"] == pid)
            .cloned()
            .unwrap_or_else(|| panic!("pid {pid} in ps: {list}"))
    };
    // root's command line is hidden from the user; its own is not
    wait_for("the user to see its own command line", || {
        let out = user.procman(
            &procman,
            &agent.socket,
            &["info", &mine.id().to_string(), "--json"],
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["cmdline"]
            .as_str()
            .filter(|c| c.contains("300"))
            .map(|_| ())
    });
    assert_eq!(row(secret_pid)["cmdline"], "", "{}", row(secret_pid));
    let out = user.procman(
        &procman,
        &agent.socket,
        &["info", &secret_pid.to_string(), "--json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["cmdline"], "", "{v}");
    assert!(v["cwd"].is_null(), "{v}");
    // a filter cannot probe other users' command lines either
    let out = user.procman(
        &procman,
        &agent.socket,
        &["ps", "--json", "--filter", "cmdline ~ pm-secret"],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");

    // no action is allowed
    let out = user.procman(
        &procman,
        &agent.socket,
        &["limit", "--pid", &mine.id().to_string(), "--slice", "mine"],
    );
    assert_eq!(out.status.code(), Some(4), "exit code 4: permission denied");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("may not move") && !err.contains("HTTP"),
        "{err}"
    );
    assert!(!cgroup_of(mine.id()).contains(&root.name), "nothing moved");
    let out = user.procman(&procman, &agent.socket, &["freeze", "--slice", "mine"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = user.procman(&procman, &agent.socket, &["audit"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("may not audit"));
    // someone outside the group is told which group to join
    let out = Command::new(&procman)
        .arg("--socket")
        .arg(&agent.socket)
        .arg("ps")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("permission denied") && err.contains(&format!("usermod -aG {}", user.name)),
        "{err}"
    );

    let lines = audit_lines(dir.path());
    let denied: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["result"] == "denied").collect();
    assert_eq!(denied.len(), 3, "{lines:?}");
    for d in &denied {
        assert_eq!(d["actor"]["uid"], user.uid, "{d}");
        assert_eq!(d["status"], 403, "{d}");
    }
    assert_eq!(denied[0]["action"], "move");
    assert_eq!(denied[0]["args"]["pids"][0], mine.id(), "{}", denied[0]);
    // root reads the same log through the API
    let out = agent.cli(&["audit", "--json"]);
    let recs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(recs.as_array().unwrap().len(), 3, "{recs}");

    for c in [&mut mine, &mut secret] {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A grant with `only_own` lets the user move its own processes, never root's; both attempts
/// are audited with their outcome.
#[test]
#[ignore = "needs root: creates a user and group, moves processes between cgroups"]
fn a_grant_allows_acting_on_own_processes_only() {
    let user = TestUser::create("g");
    let root = TestRoot::new("acl-grant");
    let dir = tempfile::tempdir().unwrap();
    let grant = format!(
        "[[access]]\nusers = [\"{}\"]\nallow = [\"move\", \"freeze\"]\nonly_own = true\n",
        user.name
    );
    let agent = Agent::start(&config(&root, &user, dir.path(), &grant), &[]);
    let procman = open_to(&agent);
    let mut mine = user.sleeper();
    let mut roots = Command::new("sleep").arg("300").spawn().unwrap();

    let out = user.procman(
        &procman,
        &agent.socket,
        &["limit", "--pid", &mine.id().to_string(), "--slice", "mine"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(cgroup_of(mine.id()), root.cgroup_line("mine"));

    let out = user.procman(
        &procman,
        &agent.socket,
        &["limit", "--pid", &roots.id().to_string(), "--slice", "mine"],
    );
    assert_eq!(out.status.code(), Some(4), "exit code 4: permission denied");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("belongs to uid 0") && !err.contains("HTTP"),
        "{err}"
    );
    assert!(
        !cgroup_of(roots.id()).contains(&root.name),
        "root's process stayed"
    );
    // setting limits was not granted
    let out = user.procman(
        &procman,
        &agent.socket,
        &[
            "limit",
            "--pid",
            &mine.id().to_string(),
            "--slice",
            "mine",
            "--pids",
            "50",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("may not limit"));

    let lines = audit_lines(dir.path());
    let results: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l["action"].as_str().unwrap(), l["result"].as_str().unwrap()))
        .collect();
    assert_eq!(
        results,
        [("move", "ok"), ("move", "error"), ("move+limit", "denied")],
        "{lines:?}"
    );
    assert!(lines[1]["detail"]
        .as_str()
        .unwrap()
        .contains("belongs to uid 0"));

    for c in [&mut mine, &mut roots] {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Polls `probe` until it answers, for up to 10 s.
fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    wait_until(what, Duration::from_secs(10), || {
        probe().ok_or_else(|| "not yet".to_string())
    })
}

/// The TCP listener answers only requests carrying the token, is read-only unless the config
/// grants the token actions, and audits every refusal; a token file others could read stops
/// the agent from starting.
#[test]
#[ignore = "needs root: loads BPF programs; the token file must be owned by root"]
fn tcp_api_needs_the_token_and_is_read_only_by_default() {
    let addr = format!("127.0.0.1:{}", procman_tests::free_port());
    let dir = tempfile::tempdir().unwrap();
    let (token_file, token) = procman_tests::token_file(dir.path());
    let token = token.as_str();
    let cfg = format!(
        "[api]\nlisten = \"{addr}\"\ntoken_file = \"{}\"\n",
        token_file.display()
    );
    let agent = Agent::start(&cfg, &[]);

    let (code, v) = tcp_api(&addr, "GET", "/api/status", None, "");
    assert_eq!(code, 401, "{v}");
    assert!(v["error"].as_str().unwrap().contains("Bearer"), "{v}");
    let (code, _) = tcp_api(
        &addr,
        "GET",
        "/api/status",
        Some("0123456789abcdef0123456789abcdeX"),
        "",
    );
    assert_eq!(code, 401);
    let (code, v) = tcp_api(&addr, "GET", "/api/status", Some(token), "");
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["pid"], agent.child.id());
    let (code, v) = tcp_api(
        &addr,
        "GET",
        "/api/processes?sort=pid&limit=3",
        Some(token),
        "",
    );
    assert_eq!(code, 200, "{v}");
    let (code, v) = tcp_api(&addr, "POST", "/api/limit", Some(token), r#"{"pids": [1]}"#);
    assert_eq!(code, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("token_allow"), "{v}");

    let audit = agent.audit();
    let results: Vec<(&str, &str)> = audit
        .iter()
        .map(|r| (r["action"].as_str().unwrap(), r["result"].as_str().unwrap()))
        .collect();
    assert_eq!(
        results,
        [("auth", "denied"), ("auth", "denied"), ("move", "denied")],
        "{audit:?}"
    );
    drop(agent);

    // a token file readable by others is refused at start, naming the file
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg_path = dir.path().join("procman.toml");
    std::fs::write(&cfg_path, &cfg).unwrap();
    let out = Command::new(bin("procman-agent"))
        .arg("--config")
        .arg(&cfg_path)
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("api.token") && err.contains("0600"), "{err}");
}

/// Services and access: a user granted `service` with `only_own` reads every service, creates
/// transient services that run as itself only, stops its own and not root's; the refusals
/// are audited.
#[test]
#[ignore = "needs root: creates a user and group, creates cgroups and starts services"]
fn service_grants_cover_the_users_own_services() {
    let user = TestUser::create("s");
    let root = TestRoot::new("acl-svc");
    let dir = tempfile::tempdir().unwrap();
    let services = format!(
        "[services]\nlog_dir = \"{d}/logs\"\nstate_dir = \"{d}/state\"\n\
         [[service]]\nname = \"rootsvc\"\nexec = [\"sleep\", \"1000\"]\n\
         [[access]]\nusers = [\"{u}\"]\nallow = [\"service\"]\nonly_own = true\n",
        d = dir.path().display(),
        u = user.name
    );
    let agent = Agent::start(&config(&root, &user, dir.path(), &services), &[]);
    let procman = open_to(&agent);
    let run = |args: &[&str]| user.procman(&procman, &agent.socket, args);
    wait_for("rootsvc running", || {
        let out = run(&["service", "status", "rootsvc", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (v["state"] == "running").then_some(())
    });
    // its own service: runs as itself
    let out = run(&["service", "add", "mine", "--json", "--", "sleep", "1000"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pid = v["pid"].as_u64().expect("a main pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|u| u == user.uid.to_string()),
        "{uid_line}"
    );
    // someone else's: refused
    let out = run(&[
        "service", "add", "evil", "--user", "root", "--", "sleep", "1000",
    ]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["service", "stop", "rootsvc"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("runs as uid 0"));
    // its own: stopped and removed
    let out = run(&["service", "remove", "mine"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = audit_lines(dir.path());
    let refused: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["action"] == "service" && l["status"] == 403)
        .collect();
    assert_eq!(refused.len(), 2, "{lines:#?}");
    assert!(refused.iter().all(|l| l["actor"]["uid"] == user.uid));
}

//! The binaries' behaviour on bad input: one clear sentence, the right exit status, no
//! backtrace. Runs the real binaries.
use procman_tests::{bin, Agent};
use std::{os::unix::process::CommandExt, process::Command};

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.env_remove("RUST_BACKTRACE").output().expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn no_backtrace(stderr: &str) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("stack backtrace"),
        "{stderr}"
    );
}

#[test]
fn unknown_flags_are_refused_clearly() {
    for b in ["procman", "procman-agent"] {
        let (code, _, err) = run(Command::new(bin(b)).arg("--frobnicate"));
        assert_eq!(code, 2, "{b}: {err}");
        assert!(
            err.contains("unexpected argument '--frobnicate'"),
            "{b}: {err}"
        );
        no_backtrace(&err);
    }
    let (code, _, err) = run(Command::new(bin("procman")).args(["events", "--kind", "spawn"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("spawn") && err.contains("fork, exec or exit"),
        "{err}"
    );
}

#[test]
fn missing_agent_is_one_sentence() {
    let (code, _, err) =
        run(Command::new(bin("procman")).args(["--socket", "/nonexistent/procman.sock", "status"]));
    assert_eq!(code, 5, "exit code 5: the agent is not running");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("/nonexistent/procman.sock does not exist") && err.contains("procman-agent"),
        "{err}"
    );
    no_backtrace(&err);
    // a stale socket file with no listener
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let (code, _, err) = run(Command::new(bin("procman"))
        .arg("--socket")
        .arg(&sock)
        .arg("events"));
    assert_eq!(code, 5);
    assert!(err.contains("not running"), "{err}");
}

#[test]
fn version_and_help_are_informative() {
    for b in ["procman", "procman-agent"] {
        let (code, out, _) = run(Command::new(bin(b)).arg("--version"));
        assert_eq!(code, 0);
        assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
        let (code, out, _) = run(Command::new(bin(b)).arg("--help"));
        assert_eq!(code, 0);
        assert!(out.contains("Usage:") && out.len() > 300, "{out}");
    }
    let (_, out, _) = run(Command::new(bin("procman-agent")).arg("--help"));
    assert!(out.contains("--config") && out.contains("root"), "{out}");
}

#[test]
#[ignore = "needs root: switches to uid 65534 to start the agent unprivileged"]
fn agent_refuses_to_start_without_root() {
    let (code, _, err) = run(Command::new(bin("procman-agent"))
        .args(["--socket", "/tmp/procman-nonroot.sock"])
        .uid(65534)
        .gid(65534));
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("must run as root"), "{err}");
    assert!(!std::path::Path::new("/tmp/procman-nonroot.sock").exists());
}

#[test]
fn invalid_config_is_refused_with_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[events]\nring_size = \"3MiB\"\n").unwrap();
    let (code, _, err) = run(Command::new(bin("procman-agent"))
        .arg("--config")
        .arg(&cfg)
        .arg("--check-config"));
    assert_eq!(code, 2);
    // the value is named (in its canonical form, with the byte count)
    assert!(
        err.contains("\"3M\" (3145728 bytes)") && err.contains("power of two"),
        "{err}"
    );
    std::fs::write(&cfg, "[events]\nsource = \"bpf\"\n").unwrap();
    let (code, out, _) = run(Command::new(bin("procman-agent"))
        .arg("--config")
        .arg(&cfg)
        .arg("--check-config"));
    assert_eq!(code, 0);
    assert!(out.contains("configuration OK"));
}

#[test]
#[ignore = "needs root: starts the agent (loads BPF programs)"]
fn a_second_agent_on_the_same_socket_is_refused() {
    let agent = Agent::start("", &[]);
    let (code, _, err) = run(Command::new(bin("procman-agent"))
        .arg("--socket")
        .arg(&agent.socket));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already serving"), "{err}");
    // the first one is unharmed
    assert_eq!(agent.status()["source"], "bpf");
}

/// Like other Unix tools, procman ends quietly when its reader goes away, and a process
/// started a moment ago is found even if the agent has not applied its events yet.
#[test]
#[ignore = "needs root: loads BPF programs"]
fn closed_stdout_is_quiet_and_new_processes_are_found() {
    let agent = Agent::start("", &[]);
    let sock = agent.socket.display().to_string();
    let procman = bin("procman").display().to_string();
    for cmd in ["ps", "tree", "info 1", "status"] {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("{procman} --socket {sock} {cmd} | true"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.is_empty(), "procman {cmd} | true: {err}");
    }
    for _ in 0..3 {
        let mut child = Command::new("sleep").arg("600").spawn().unwrap();
        let out = agent.cli(&["info", &child.id().to_string(), "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["pid"], child.id());
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// A --socket that is not a socket is named as such, not as "a stale socket".
#[test]
fn a_socket_path_that_is_no_socket_is_named() {
    for (path, kind) in [("/tmp", "a directory"), ("/etc/passwd", "a regular file")] {
        let (code, _, err) = run(Command::new(bin("procman")).args(["--socket", path, "ps"]));
        assert_eq!(code, 2, "a bad --socket is a usage error");
        assert!(
            err.contains(&format!("{path} is not a socket ({kind})")),
            "{err}"
        );
    }
}

/// Limit values are checked by the CLI with the units everyone uses, before any agent is
/// asked: a bad one exits 2 naming the accepted forms even when no agent runs (which would
/// be exit 5), and good ones get as far as the (missing) agent.
#[test]
fn limit_values_are_checked_before_the_agent_is_asked() {
    let sock = tempfile::tempdir().unwrap();
    let socket = sock.path().join("none.sock");
    let limit = |args: &[&str]| {
        run(Command::new(bin("procman"))
            .arg("--socket")
            .arg(&socket)
            .args(["limit", "--pid", "1"])
            .args(args))
    };
    for (bad, says) in [
        (&["--memory", "12XB"][..], "512K"),
        (&["--memory=-1G"][..], "negative"),
        (&["--cpu", "fast"][..], "50%"),
        (&["--cpu-weight", "0"][..], "1..=10000"),
        (&["--pids", "0"][..], "1 to 4194304"),
        (&["--io-read", "lots:/dev/vda"][..], "512K"),
        (
            &["--io-write-iops", "x:/dev/vda"][..],
            "operations per second",
        ),
        (&["-p", "MemoryMax"][..], "KEY=VALUE"),
    ] {
        let (code, _, err) = limit(bad);
        assert_eq!(code, 2, "{bad:?}: {err}");
        assert!(err.contains(says), "{bad:?}: {err}");
        no_backtrace(&err);
    }
    for good in [
        &["--memory", "2GB"][..],
        &["--memory", "1.5G", "--memory-high", "50%"][..],
        &["--cpu", "50% of machine"][..],
        &["--cpu", "max", "--pids", "10%"][..],
        &["--io-read", "10M:/dev/vda"][..],
    ] {
        let (code, _, err) = limit(good);
        assert_eq!(code, 5, "{good:?} reaches for the agent: {err}");
    }
}

/// Shell completions and man pages come from the clap definitions: bash accepts the script
/// and completes the subcommands; the man pages name every command and option.
#[test]
fn completions_and_man_pages_are_generated() {
    let (code, script, err) = run(Command::new(bin("procman")).args(["completions", "bash"]));
    assert_eq!(code, 0, "{err}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("procman.bash");
    std::fs::write(&file, &script).unwrap();
    // source it, then ask bash's completion for `procman li<TAB>`
    let probe = format!(
        "source {}; COMP_WORDS=(procman li); COMP_CWORD=1; COMP_LINE='procman li'; COMP_POINT=10; \
         _procman procman li procman; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display()
    );
    let (code, out, err) = run(Command::new("bash").args(["-c", &probe]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "limit", "completions of `procman li`: {out:?}");
    let (code, _, err) = run(Command::new(bin("procman")).args(["completions", "tcsh"]));
    assert_eq!(code, 2, "{err}");

    let (code, page, err) = run(Command::new(bin("procman")).arg("man"));
    assert_eq!(code, 0, "{err}");
    assert!(
        page.starts_with(".ie") && page.contains(".TH procman 1"),
        "{page}"
    );
    for sub in ["ps", "limit", "freeze", "audit", "completions"] {
        assert!(
            page.contains(&format!("procman\\-{sub}(1)")),
            "{sub}: {page}"
        );
    }
    let (code, page, err) = run(Command::new(bin("procman-agent")).arg("--man"));
    assert_eq!(code, 0, "{err}");
    assert!(
        page.contains(".TH procman-agent 8") && page.contains("check\\-config"),
        "{page}"
    );
}

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
    // the agent's own parser (procman_common::limits) and its accepted forms: what the
    // config and the API would refuse is refused here, with the same words
    for (bad, says) in [
        (&["--memory", "12XB"][..], "accepted forms: bytes"),
        (&["--memory", "12XB"][..], "unknown unit \"XB\""),
        (&["--memory=-1G"][..], "negative"),
        (&["--memory", "512"][..], "below the minimum of 1M"),
        (&["--cpu", "fast"][..], "50% of machine"),
        (&["--cpu", "20"][..], "add %"),
        (&["--cpu-weight", "0"][..], "1..=10000"),
        (&["--pids", "0"][..], "1 to 4194304"),
        (&["--io-read", "lots:/dev/vda"][..], "\"/dev/vda 10M\""),
        (
            &["--io-read", "1K:/dev/vda"][..],
            "below the minimum of 4096",
        ),
        (&["--io-write-iops", "x:/dev/vda"][..], "IOPS"),
        (&["-p", "MemoryMax"][..], "KEY=VALUE"),
        (&["-p", "MemoryMax=12XB"][..], "accepted forms: bytes"),
        (&["-p", "MemoryMaxx=1G"][..], "did you mean MemoryMax?"),
        (&["-p", "CPUQuota=20"][..], "ambiguous"),
        (&["-p", "TasksMax=-3"][..], "negative"),
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
        &["-p", "MemoryMax=2GB", "-p", "IOReadIOPSMax=/dev/vda 2K"][..],
        &["-o", "json", "--memory", "2GB"][..],
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

/// `--output` is the one validated choice of format: a bad one is a usage error (exit 2)
/// before anything is asked, and the other exit codes hold whatever the format.
#[test]
fn output_formats_are_validated_and_keep_the_exit_codes() {
    let (code, _, err) = run(Command::new(bin("procman")).args(["ps", "-o", "yaml"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("table, wide, json"), "{err}");
    for args in [
        &["ps", "-o", "json"][..],
        &["status", "-j"],
        &["slices", "-o", "wide"],
    ] {
        let (code, _, err) = run(Command::new(bin("procman"))
            .args(["--socket", "/nonexistent/procman.sock"])
            .args(args));
        assert_eq!(code, 5, "{args:?}: {err}");
        assert!(
            err.contains("agent not running") && err.contains("systemctl start procman-agent"),
            "{err}"
        );
    }
    // every command that prints a list or a record describes --output in its --help
    for cmd in [
        &["ps"][..],
        &["tree"],
        &["info"],
        &["status"],
        &["history"],
        &["events"],
        &["slices"],
        &["placement"],
        &["limit"],
        &["unlimit"],
        &["freeze"],
        &["thaw"],
        &["audit"],
        &["actions"],
        &["kill"],
        &["renice"],
        &["ionice"],
        &["logs"],
        &["policy", "list"],
        &["policy", "explain"],
        &["policy", "test"],
        &["service", "list"],
        &["service", "status"],
        &["service", "add"],
    ] {
        let (code, out, _) = run(Command::new(bin("procman")).args(cmd).arg("--help"));
        assert_eq!(code, 0, "{cmd:?}");
        assert!(
            out.contains("-o, --output <FORMAT>")
                && out.contains("table")
                && out.contains("wide")
                && out.contains("-j, --json")
                && out.contains("same as `-o json`"),
            "{cmd:?} --help:\n{out}"
        );
    }
}

/// Runs `procman ARGS` on a terminal (a pty from script(1), 120 columns) and returns what it
/// printed.
fn on_a_tty(socket: &std::path::Path, args: &str, env: &[(&str, &str)]) -> String {
    let cmd = format!(
        "stty cols 120 rows 50; {} --socket {} {args}",
        bin("procman").display(),
        socket.display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env("TERM", "xterm")
        .envs(env.iter().copied())
        .output()
        .expect("script(1) from bsdutils");
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The output formats against a real agent: `-o json` is the API's objects with the
/// documented keys (and `-j` is the same), `-o wide` keeps a long command line whole on a
/// 120-column terminal where the table cuts it, colour appears on a terminal and never with
/// NO_COLOR (or in a pipe), unless `--color always` asks for it.
#[test]
#[ignore = "needs root: starts the agent (loads BPF programs) with a private cgroup root"]
fn output_formats_and_colour_against_the_agent() {
    let root = procman_tests::TestRoot::new("cli-output");
    let agent = Agent::start(&format!("[cgroup]\nroot = \"{}\"\n", root.name), &[]);
    // sleep sums its operands: a long command line that stays what it is
    let zeros = vec!["0"; 100];
    let marker = format!("sleep 600 {}", zeros.join(" "));
    let mut child = Command::new("sleep")
        .arg("600")
        .args(&zeros)
        .spawn()
        .unwrap();
    let pid = child.id();
    let filter = format!("pid == {pid}");
    // the table sees the process once the agent has it (no fixed sleep)
    let json = |args: &[&str]| -> serde_json::Value {
        let out = agent.cli(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?} is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    };
    let procs = procman_tests::wait_until(
        "the process in ps -o json",
        std::time::Duration::from_secs(10),
        || {
            let v = json(&["ps", "-o", "json", "--filter", &filter]);
            match v.as_array() {
                Some(a) if a.len() == 1 => Ok(v),
                _ => Err(format!("{v}")),
            }
        },
    );
    let p = &procs[0];
    for key in [
        "pid",
        "parent_pid",
        "name",
        "username",
        "uid",
        "cpu_percent",
        "memory_percent",
        "memory_bytes",
        "status",
        "started_at",
        "cmdline",
        "num_threads",
        "age_seconds",
    ] {
        assert!(p.get(key).is_some(), "ps -o json lacks {key}: {p}");
    }
    assert_eq!(p["pid"], pid);
    // -j and --json are the same choice as -o json; the last one given wins
    assert_eq!(json(&["ps", "-j", "--filter", &filter])[0]["pid"], pid);
    assert_eq!(
        json(&["ps", "-o", "table", "--json", "--filter", &filter])[0]["pid"],
        pid
    );
    let out = agent.cli(&["ps", "--json", "-o", "table", "--filter", &filter]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("    PID"),
        "the last flag wins"
    );
    // records and lists of the other commands
    let info = json(&["info", &pid.to_string(), "-o", "json"]);
    assert_eq!(info["pid"], pid);
    assert!(
        info.get("children_pids").is_some() && info.get("cwd").is_some(),
        "{info}"
    );
    let status = json(&["status", "-o", "json"]);
    for key in [
        "version",
        "pid",
        "source",
        "events_received",
        "processes",
        "enforcement",
    ] {
        assert!(
            status.get(key).is_some(),
            "status -o json lacks {key}: {status}"
        );
    }
    assert!(json(&["tree", "-o", "json", "--root-pid", &pid.to_string()]).is_array());
    assert!(json(&["slices", "-o", "json"]).is_array());
    assert!(json(&["service", "list", "-o", "json"]).is_array());
    assert!(json(&["audit", "-o", "json"]).is_array());
    assert!(json(&["policy", "list", "-o", "json"])
        .get("policies")
        .is_some());
    assert!(json(&["placement", "-o", "json"]).get("rules").is_some());
    // history once the sampler has seen the process (every [monitor] interval)
    let h = procman_tests::wait_until(
        "a history sample",
        std::time::Duration::from_secs(15),
        || {
            let out = agent.cli(&["history", &pid.to_string(), "-o", "json"]);
            if out.status.success() {
                serde_json::from_slice::<serde_json::Value>(&out.stdout).map_err(|e| e.to_string())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        },
    );
    assert_eq!(h["pid"], pid);
    // exit codes hold with --output: 3 for no such process
    let out = agent.cli(&["info", "4194303", "-o", "json"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // wide: the whole command line on a 120-column terminal; table: cut to 120
    let args = format!("ps --filter '{filter}'");
    let table = on_a_tty(&agent.socket, &args, &[("NO_COLOR", "1")]);
    assert!(
        table.contains("sleep 600 0 0") && !table.contains(&marker),
        "{table}"
    );
    assert!(
        table.lines().all(|l| l.trim_end().chars().count() <= 120),
        "{table}"
    );
    let wide = on_a_tty(
        &agent.socket,
        &format!("{args} -o wide"),
        &[("NO_COLOR", "1")],
    );
    assert!(wide.contains(&marker), "{wide}");
    let wide = on_a_tty(&agent.socket, &format!("{args} -w"), &[("NO_COLOR", "1")]);
    assert!(wide.contains(&marker), "-w is -o wide: {wide}");

    // colour: on a terminal yes, with NO_COLOR (any non-empty value) no, in a pipe no,
    // --color always yes (the command line beats the environment)
    let esc = |s: &str| s.contains("\x1b[");
    assert!(
        esc(&on_a_tty(&agent.socket, &args, &[])),
        "colour on a terminal"
    );
    for v in ["1", "true", "0"] {
        let plain = on_a_tty(&agent.socket, &args, &[("NO_COLOR", v)]);
        assert!(!esc(&plain), "NO_COLOR={v}: {plain:?}");
    }
    assert!(!esc(&on_a_tty(
        &agent.socket,
        &format!("--color never {args}"),
        &[]
    )));
    let piped = agent.cli(&["ps", "--filter", &filter]);
    assert!(
        !esc(&String::from_utf8_lossy(&piped.stdout)),
        "no colour into a pipe"
    );
    let forced = agent.cli(&["--color", "always", "ps", "--filter", &filter]);
    assert!(
        esc(&String::from_utf8_lossy(&forced.stdout)),
        "--color always"
    );
    let forced = Command::new(bin("procman"))
        .args(["--socket"])
        .arg(&agent.socket)
        .args(["ps", "--filter", &filter])
        .env("CLICOLOR_FORCE", "1")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    assert!(
        esc(&String::from_utf8_lossy(&forced.stdout)),
        "CLICOLOR_FORCE=1"
    );
    // JSON is never coloured
    let j = on_a_tty(&agent.socket, &format!("{args} -o json"), &[]);
    assert!(!esc(&j), "{j:?}");
    child.kill().unwrap();
    child.wait().unwrap();
}

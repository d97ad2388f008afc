//! `procman top` for real: the TUI runs in a detached tmux session of a fixed size against a
//! real agent; the test types keys (`tmux send-keys`) and reads the screen
//! (`tmux capture-pane -p`), waiting on what the screen shows, never for a fixed time.
//!
//! Every process signalled or reniced here was started by the test itself: copies of
//! `sleep` under distinctive names, found through top's own filter.
use procman_tests::{bin, http_get, try_wait_until, wait_until, Agent, TestRoot};
use std::{
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Child, Command},
    time::Duration,
};

const SCREEN_WAIT: Duration = Duration::from_secs(20);

/// A private tmux server (its own socket name) with one session of 120x40; killed on drop.
struct Tmux {
    server: String,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        // -u and a UTF-8 locale: the sort marks (▼ ▲) and tree branches come back intact
        c.args(["-u", "-L", &self.server])
            .env("LANG", "C.UTF-8")
            .env_remove("TMUX");
        c
    }

    /// Starts `command` (a shell command line) in a detached 120x40 session.
    fn start(command: &str) -> Tmux {
        let t = Tmux {
            server: format!("procman-top-test-{}", std::process::id()),
        };
        let st = t
            .cmd()
            .args([
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "120",
                "-y",
                "40",
            ])
            .args(["-s", "top", command])
            .status()
            .expect("run tmux (cargo xtask test installs it)");
        assert!(st.success(), "tmux new-session failed: {st}");
        t
    }

    /// `tmux send-keys` of key names (`Enter`, `Escape`, `C-u`, `h`).
    fn keys(&self, keys: &[&str]) {
        let st = self
            .cmd()
            .args(["send-keys", "-t", "top"])
            .args(keys)
            .status()
            .unwrap();
        assert!(st.success(), "tmux send-keys {keys:?}: {st}");
    }

    /// Types `text` literally.
    fn text(&self, text: &str) {
        let st = self
            .cmd()
            .args(["send-keys", "-t", "top", "-l", text])
            .status()
            .unwrap();
        assert!(st.success(), "tmux send-keys -l {text:?}: {st}");
    }

    /// The screen as text.
    fn screen(&self) -> Result<String, String> {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "top"])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits until the screen satisfies `ok`; on timeout fails with the last screen.
    #[track_caller]
    fn wait(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let r = try_wait_until(what, SCREEN_WAIT, || {
            let s = self.screen()?;
            if ok(&s) {
                Ok(s)
            } else {
                Err(format!("the screen:\n{s}"))
            }
        });
        r.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits until the screen shows `text`.
    #[track_caller]
    fn wait_for(&self, text: &str) -> String {
        self.wait(&format!("{text:?} on the screen"), |s| s.contains(text))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // only this test's server (its own -L socket); gone already when top quit
        let _ = self.cmd().arg("kill-server").output();
    }
}

/// A copy of `sleep` named `name` (so its comm is `name`), started by the test.
fn victim(dir: &Path, name: &str) -> Child {
    let exe = dir.join(name);
    std::fs::copy("/bin/sleep", &exe).expect("copy /bin/sleep");
    Command::new(&exe).arg("600").spawn().expect("start victim")
}

/// Field `n` (1-based, as in proc(5)) of /proc/PID/stat.
fn stat_field(pid: u32, n: usize) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = &text[text.rfind(')').map_or(0, |i| i + 1)..];
    rest.split_whitespace()
        .nth(n - 3)
        .unwrap_or_default()
        .to_string()
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Waits until the agent's table lists `pid` under the filter `name == NAME`.
fn agent_sees(agent: &Agent, name: &str, pid: u32) {
    let path = format!(
        "/api/processes?filter={}",
        percent(&format!("name == {name}"))
    );
    wait_until(
        &format!("the agent to list {name} ({pid})"),
        Duration::from_secs(20),
        || {
            let (code, v) = http_get(&agent.socket, &path);
            let listed = v["processes"]
                .as_array()
                .is_some_and(|a| a.iter().any(|p| p["pid"] == pid));
            if code == 200 && listed {
                Ok(())
            } else {
                Err(format!("{code} {v}"))
            }
        },
    );
}

/// Sets top's filter with `/` (the prompt starts with the old filter: Ctrl-U clears it).
fn set_filter(t: &Tmux, filter: &str) {
    t.keys(&["/"]);
    t.wait_for("filter> ");
    t.keys(&["C-u"]);
    t.text(filter);
    t.wait_for(&format!("filter> {filter}_"));
    t.keys(&["Enter"]);
}

/// The pids of the process table: the rows under the `PID ...` header, up to the first
/// blank line.
fn table_pids(screen: &str) -> Vec<u32> {
    screen
        .lines()
        .skip_while(|l| !l.starts_with("PID"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
#[ignore = "needs root: loads BPF programs, signals and renices through pidfds"]
fn top_keys_drive_the_agent_under_tmux() {
    let root = TestRoot::new("top");
    let agent = Agent::start(
        &format!(
            "[cgroup]\nroot = \"{}\"\n[actions]\nprotect = 'name == pmtopguarded'\n",
            root.name
        ),
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let mut victim_ = victim(dir.path(), "pmtopvictim");
    let mut guarded = victim(dir.path(), "pmtopguarded");
    let mut gone = victim(dir.path(), "pmtopgone");
    let (pid, guarded_pid, gone_pid) = (victim_.id(), guarded.id(), gone.id());
    agent_sees(&agent, "pmtopvictim", pid);
    agent_sees(&agent, "pmtopguarded", guarded_pid);
    agent_sees(&agent, "pmtopgone", gone_pid);

    let exit_file: PathBuf = dir.path().join("top.exit");
    let t = Tmux::start(&format!(
        "{} --socket {} top --interval 300ms; echo $? > {}",
        bin("procman").display(),
        agent.socket.display(),
        exit_file.display()
    ));
    let first = t.wait("top's first screen", |s| {
        s.contains("processes,") && s.contains("%CPU▼") && s.contains("sort: cpu")
    });
    assert!(first.contains("h help"), "{first}");

    // h: the help overlay; any key closes it
    t.keys(&["h"]);
    t.wait("the help overlay", |s| {
        s.contains("procman top: keys")
            && s.contains("kill the selected process")
            && s.contains("any key closes this help")
    });
    t.keys(&["x"]);
    t.wait("the help to close", |s| !s.contains("procman top: keys"));

    // M marks the memory column; T the CPU time (the agent sorts by it: sort=time)
    t.keys(&["M"]);
    let s = t.wait("%MEM marked", |s| {
        s.contains("%MEM▼") && s.contains("sort: mem")
    });
    assert!(!s.contains("%CPU▼"), "{s}");
    t.keys(&["T"]);
    t.wait("TIME+ marked", |s| {
        s.contains("TIME+▼") && s.contains("sort: time")
    });
    let (code, v) = http_get(&agent.socket, "/api/processes?sort=time&limit=50");
    assert_eq!(code, 200, "{v}");
    let times: Vec<f64> = v["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["cpu_time_seconds"].as_f64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "sort=time: {times:?}"
    );

    // / name == ...: only the victim
    set_filter(&t, "name == pmtopvictim");
    t.wait("only the victim listed", |s| {
        s.contains("1 shown") && s.contains("filter: name == pmtopvictim") && table_pids(s) == [pid]
    });

    // t: the tree view keeps the filter: the victim under its ancestors (this test's
    // process among them), drawn with branches
    t.keys(&["t"]);
    let me = std::process::id();
    t.wait("the tree", |s| {
        s.contains("   tree   filter: name == pmtopvictim")
            && s.contains("└─ ")
            && table_pids(s).ends_with(&[me, pid])
    });
    t.keys(&["F5"]);
    t.wait("the list again", |s| {
        s.contains("   list   filter:") && table_pids(s) == [pid]
    });
    // F: follow the selected process
    t.keys(&["F"]);
    t.wait_for(&format!("following {pid}"));
    t.keys(&["F"]);
    t.wait_for(&format!("no longer following {pid}"));

    // / with a bad filter: the error next to the input, the old filter still in force
    set_filter(&t, "name ==");
    t.wait("the filter's error next to it, the old filter kept", |s| {
        s.contains("filter> name ==_   invalid filter: column 8")
            && s.contains("filter: name == pmtopvictim")
    });
    t.keys(&["Escape"]);
    t.wait("the prompt closed, the filter unchanged", |s| {
        !s.contains("filter> ")
            && s.contains("filter: name == pmtopvictim")
            && table_pids(s) == [pid]
    });

    // r: renice the selected (only) process to 5 (from what it inherited, 0 unless the test
    // itself runs niced)
    let old = stat_field(pid, 19);
    let new = if old == "5" { "6" } else { "5" };
    t.keys(&["r"]);
    t.wait("the renice prompt", |s| {
        s.contains(&format!("Renice {pid} (pmtopvictim)"))
            && s.contains(&format!("nice now {old}"))
            && s.contains("new nice: _")
    });
    t.text(new);
    t.keys(&["Enter"]);
    t.wait_for(&format!("(PID: {pid}) reniced from {old} to {new}"));
    assert_eq!(stat_field(pid, 19), new, "the kernel's nice of {pid}");

    // k: the confirmation names the process, its start and the signal; Enter sends SIGTERM
    t.keys(&["k"]);
    t.wait("the kill confirmation", |s| {
        s.contains(&format!("Kill {pid} (pmtopvictim)?"))
            && s.contains("started 20")
            && s.contains(&format!("Enter: send SIGTERM to {pid}"))
    });
    assert!(victim_.try_wait().unwrap().is_none(), "not before Enter");
    t.keys(&["Enter"]);
    let st = wait_until("the victim to end", SCREEN_WAIT, || {
        victim_
            .try_wait()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "still running".to_string())
    });
    assert_eq!(st.signal(), Some(libc::SIGTERM), "{st:?}");
    t.wait("the kill's answer", |s| {
        s.contains(&format!("(PID: {pid}) terminated successfully"))
            || s.contains(&format!("Sent SIGTERM to process pmtopvictim (PID: {pid})"))
    });

    // a refusal (403, a protected process) shows in the status line; top stays
    set_filter(&t, "name == pmtopguarded");
    t.wait("only the guarded one", |s| table_pids(s) == [guarded_pid]);
    t.keys(&["k"]);
    t.wait_for(&format!("Kill {guarded_pid} (pmtopguarded)?"));
    t.keys(&["Enter"]);
    let s = t.wait_for(&format!("error: kill {guarded_pid} (pmtopguarded) denied"));
    assert!(guarded.try_wait().unwrap().is_none(), "{s}");

    // the process ended between the prompt and Enter: refused, nothing else signalled
    set_filter(&t, "name == pmtopgone");
    t.wait("only the doomed one", |s| table_pids(s) == [gone_pid]);
    t.keys(&["k"]);
    t.wait_for(&format!("Kill {gone_pid} (pmtopgone)?"));
    gone.kill().unwrap();
    gone.wait().unwrap();
    t.keys(&["Enter"]);
    t.wait_for(&format!("error: kill {gone_pid} (pmtopgone) failed"));

    // q quits with status 0
    t.keys(&["q"]);
    let code = wait_until("top to exit", SCREEN_WAIT, || {
        std::fs::read_to_string(&exit_file)
            .ok()
            .filter(|s| s.ends_with('\n'))
            .ok_or_else(|| "no exit status yet".to_string())
    });
    assert_eq!(code.trim(), "0", "procman top's exit status");

    let _ = guarded.kill();
    let _ = guarded.wait();
    drop(t);
    drop(agent);
}

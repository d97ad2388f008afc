//! The policy engine on the host, through the real agent and CLI: a CPU spinner this test
//! starts is reniced after `for`, not before; in dry-run nothing changes but the audit log
//! has the would-be action; a spent budget flips the policy to dry-run; `procman policy
//! explain` and `procman policy test` show the values. Only processes the test started are
//! matched (by a marker in their command line), and only renice is used (no cgroup is touched).
use procman_tests::{http_get, wait_until, Agent};
use std::{
    process::{Child, Command},
    time::{Duration, Instant},
};

/// A busy loop with `marker` in its command line; killed when dropped.
struct Spinner(Child);

impl Spinner {
    fn start(marker: &str) -> Spinner {
        Spinner(
            Command::new("/bin/sh")
                .args(["-c", &format!("while :; do :; done # {marker}")])
                .spawn()
                .expect("start the spinner"),
        )
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The nice value of `pid` (/proc/PID/stat field 19).
fn nice(pid: u32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .nth(16)
        .unwrap()
        .parse()
        .unwrap()
}

fn config(marker: &str, extra: &str) -> String {
    format!(
        r#"[monitor]
interval = "500ms"

[[policy]]
name = "spin"
match = 'cmdline ~ "{marker}"'
when = 'cpu > 30%'
for = "3s"
then = ["renice 10"]
cooldown = "1h"
{extra}
"#
    )
}

fn policy_records(agent: &Agent, name: &str) -> Vec<serde_json::Value> {
    agent
        .audit()
        .into_iter()
        .filter(|r| r["actor"]["via"] == format!("policy:{name}"))
        .collect()
}

#[test]
#[ignore = "needs root: the agent loads BPF programs"]
fn a_spinner_is_reniced_after_for_not_before() {
    let marker = format!("host-policy-{}-enforce", std::process::id());
    let agent = Agent::start(&config(&marker, ""), &[]);
    let spin = Spinner::start(&marker);
    let pid = spin.pid();
    let path = format!("/api/policies/explain/{pid}");
    // watch: the condition's age as the agent reports it, and the nice value, until renice
    let mut held_without_renice = 0.0f64;
    let t0 = Instant::now();
    wait_until("the spinner's renice", Duration::from_secs(60), || {
        let n = nice(pid);
        if n == 10 {
            return Ok(());
        }
        let (status, e) = http_get(&agent.socket, &path);
        if status == 200 {
            if let Some(s) = e["policies"][0]["true_for_seconds"].as_f64() {
                held_without_renice = held_without_renice.max(s);
            }
        }
        Err(format!(
            "nice {n} after {:.1}s; explain: {e}",
            t0.elapsed().as_secs_f64()
        ))
    });
    assert!(
        held_without_renice >= 2.0,
        "the condition held {held_without_renice}s without a renice before it came: `for` was respected"
    );
    let recs = wait_until("the audit record", Duration::from_secs(10), || {
        let r = policy_records(&agent, "spin");
        if r.is_empty() {
            Err("none yet".into())
        } else {
            Ok(r)
        }
    });
    let r = &recs[0];
    assert_eq!(r["action"], "renice");
    assert_eq!(r["result"], "ok", "{r}");
    assert_eq!(r["args"]["pid"], pid);
    assert!(
        r["args"]["true_for_seconds"].as_f64().unwrap() >= 3.0,
        "{r}"
    );
    assert_eq!(r["args"]["conditions"][0]["field"], "cpu");
    assert!(r["target"]
        .as_str()
        .unwrap()
        .contains(&format!("pid {pid}")));
    // the list shows the hit and the action; the target cools down
    let (_, l) = http_get(&agent.socket, "/api/policies");
    let p = &l["policies"][0];
    assert_eq!(
        (p["hits"].as_u64(), p["actions_taken"].as_u64()),
        (Some(1), Some(1)),
        "{p}"
    );
    assert_eq!(p["targets"][0]["state"], "cooldown", "{p}");
    assert!(agent.log().contains("policy spin"), "{}", agent.log());

    // explain shows each value against its threshold
    let out = agent.cli(&["policy", "explain", &pid.to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&format!("process {pid} (sh)")), "{text}");
    assert!(text.contains("cpu > 30%: now"), "{text}");
    assert!(
        text.contains("cmdline ~") && text.contains("matches"),
        "{text}"
    );
    assert!(text.contains("cooling down"), "{text}");
    println!("{text}");
    let out = agent.cli(&["policy", "explain", "999999999"]);
    assert_eq!(out.status.code(), Some(3), "no such process: exit code 3");
}

#[test]
#[ignore = "needs root: the agent loads BPF programs"]
fn dry_run_changes_nothing_but_logs_the_would_be_action() {
    let marker = format!("host-policy-{}-dry", std::process::id());
    let agent = Agent::start(&config(&marker, "mode = \"dry-run\""), &[]);
    let spin = Spinner::start(&marker);
    let pid = spin.pid();
    let recs = wait_until("the dry-run audit record", Duration::from_secs(60), || {
        let r = policy_records(&agent, "spin");
        if r.is_empty() {
            Err(format!("none yet; nice {}", nice(pid)))
        } else {
            Ok(r)
        }
    });
    assert_eq!(recs[0]["result"], "dry-run", "{}", recs[0]);
    assert_eq!(recs[0]["args"]["mode"], "dry-run");
    assert!(recs[0]["detail"]
        .as_str()
        .unwrap()
        .contains("would renice 10"));
    assert_eq!(nice(pid), 0, "dry-run acted on nothing");
    let out = agent.cli(&["policy", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("dry-run"), "{text}");
}

#[test]
#[ignore = "needs root: the agent loads BPF programs"]
fn a_spent_budget_flips_the_policy_to_dry_run() {
    let marker = format!("host-policy-{}-budget", std::process::id());
    let cfg = config(&marker, "max_actions = \"1/h\"").replace("for = \"3s\"", "for = \"0s\"");
    let agent = Agent::start(&cfg, &[]);
    let a = Spinner::start(&marker);
    let b = Spinner::start(&marker);
    let recs = wait_until("two policy records", Duration::from_secs(60), || {
        let r = policy_records(&agent, "spin");
        if r.len() >= 2 {
            Ok(r)
        } else {
            Err(format!("{} so far", r.len()))
        }
    });
    let results: Vec<&str> = recs.iter().map(|r| r["result"].as_str().unwrap()).collect();
    assert_eq!(results, vec!["ok", "dry-run"], "{recs:?}");
    assert!(recs[1]["args"]["why_dry_run"]
        .as_str()
        .unwrap()
        .contains("budget spent"));
    let niced: Vec<i32> = [a.pid(), b.pid()].iter().map(|p| nice(*p)).collect();
    assert!(
        niced.contains(&10) && niced.contains(&0),
        "one reniced, one not: {niced:?}"
    );
    let (_, l) = http_get(&agent.socket, "/api/policies");
    let p = &l["policies"][0];
    assert_eq!(p["mode"], "enforce");
    assert_eq!(p["effective_mode"], "dry-run", "{p}");
    assert_eq!(p["budget_left"], 0);
    assert!(p["note"].as_str().unwrap().contains("dry-run until"), "{p}");
    let out = agent.cli(&["policy", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("budget spent"), "{text}");
    assert!(agent.log().contains("budget spent"), "{}", agent.log());
}

#[test]
#[ignore = "needs root: the agent loads BPF programs"]
fn policy_test_shows_hits_without_acting_and_refuses_bad_rules() {
    let marker = format!("host-policy-{}-test", std::process::id());
    let agent = Agent::start("[monitor]\ninterval = \"500ms\"\n", &[]);
    let spin = Spinner::start(&marker);
    let pid = spin.pid();
    let file = agent.dir.path().join("rules.toml");
    std::fs::write(
        &file,
        format!(
            "[[policy]]\nname = \"try\"\nmatch = 'cmdline ~ \"{marker}\"'\nwhen = 'cpu > 30%'\nfor = \"1m\"\nthen = [\"kill\"]\n"
        ),
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let j = wait_until(
        "the spinner among the hits",
        Duration::from_secs(30),
        || {
            let out = agent.cli(&["policy", "test", f, "--json"]);
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).into_owned());
            }
            let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if j["policies"][0]["hits"][0]["pid"] == pid {
                Ok(j)
            } else {
                Err(j.to_string())
            }
        },
    );
    assert_eq!(j["policies"][0]["matched"], 1);
    assert!(j["policies"][0]["hits"][0]["would"]
        .as_str()
        .unwrap()
        .starts_with("kill"));
    let out = agent.cli(&["policy", "test", f]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("pid {pid} (sh)")) && text.contains("=> kill"),
        "{text}"
    );
    println!("{text}");
    assert!(spin_alive(pid), "test acts on nothing");
    let (_, l) = http_get(&agent.socket, "/api/policies");
    assert_eq!(
        l["policies"].as_array().unwrap().len(),
        0,
        "nothing was installed"
    );
    // a bad rule: exit code 2 and the key named
    std::fs::write(
        &file,
        "[[policy]]\nname = \"bad\"\nwhen = 'cpu > 9O%'\nthen = [\"kill\"]\n",
    )
    .unwrap();
    let out = agent.cli(&["policy", "test", f]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("when") && err.contains("9O%") && err.contains("\"bad\""),
        "{err}"
    );
    let out = agent.cli(&["policy", "test", "/nonexistent/rules.toml"]);
    assert_eq!(out.status.code(), Some(3));

    // zombie children: a parent that never reaps its two exited children
    let mut parent = Command::new("/bin/sh")
        .args(["-c", "sleep 0 & sleep 0 & exec sleep 100"])
        .spawn()
        .unwrap();
    let ppid = parent.id();
    std::fs::write(
        &file,
        format!("[[policy]]\nname = \"reaper\"\nmatch = 'pid == {ppid}'\nwhen = 'zombies >= 2'\nthen = [\"kill\"]\n"),
    )
    .unwrap();
    let j = wait_until(
        "two zombies under the parent",
        Duration::from_secs(30),
        || {
            let out = agent.cli(&["policy", "test", f, "--json"]);
            let j: serde_json::Value =
                serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
            if j["policies"][0]["hits"][0]["pid"] == ppid {
                Ok(j)
            } else {
                Err(j.to_string())
            }
        },
    );
    assert_eq!(j["policies"][0]["hits"][0]["conditions"][0]["value"], "2");
    let _ = parent.kill();
    let _ = parent.wait();
}

fn spin_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z"))
}

#[test]
#[ignore = "needs root: the agent loads BPF programs"]
fn a_bad_policy_is_refused_at_start_and_on_reload_the_running_one_stays() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[[policy]]\nname = \"x\"\nwhen = 'cpu > 1'\nthen = [\"reboot\"]\n",
    )
    .unwrap();
    let out = Command::new(procman_tests::bin("procman-agent"))
        .args(["--check-config", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("unknown action `reboot`") && err.contains("then"),
        "{err}"
    );

    let good = "[[policy]]\nname = \"keep\"\nwhen = 'cpu > 99'\nthen = [\"renice 1\"]\n";
    let agent = Agent::start(good, &[]);
    agent.rewrite_config("[[policy]]\nname = \"keep\"\nwhn = 'cpu > 99'\nthen = [\"renice 1\"]\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_until(
        "the refused reload in the log",
        Duration::from_secs(20),
        || {
            if agent.log().contains("configuration reload refused") {
                Ok(())
            } else {
                Err(agent.log())
            }
        },
    );
    assert!(agent.log().contains("whn"), "{}", agent.log());
    let (_, l) = http_get(&agent.socket, "/api/policies");
    assert_eq!(l["policies"][0]["name"], "keep", "the running policy stays");
    // a good reload replaces it
    agent.rewrite_config("[[policy]]\nname = \"new\"\nwhen = 'cpu > 99'\nthen = [\"renice 1\"]\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_until("the new policy", Duration::from_secs(20), || {
        let (_, l) = http_get(&agent.socket, "/api/policies");
        if l["policies"][0]["name"] == "new" {
            Ok(())
        } else {
            Err(l.to_string())
        }
    });
}

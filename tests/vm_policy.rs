//! The policy engine on a real cgroup v2 kernel (the test VM): a memory-growing process is
//! limited, then killed; a slice-scope rule fires on memory pressure in a slice with a tight
//! MemoryHigh. Each test runs its own agent with its own managed root.
use procman_tests::{require_vm, wait_until, Agent};
use std::{
    process::{Child, Command},
    sync::Mutex,
    time::Duration,
};

/// One at a time: they measure memory growth and pressure.
static SERIAL: Mutex<()> = Mutex::new(());

use procman_tests::VmRoot as Root;

/// The root's config, sampling every second.
fn config(root: &Root) -> String {
    format!("{}[monitor]\ninterval = \"1s\"\n", root.config())
}

/// A child killed when dropped.
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn policy_records(agent: &Agent, name: &str) -> Vec<serde_json::Value> {
    agent
        .audit()
        .into_iter()
        .filter(|r| r["actor"]["via"] == format!("policy:{name}"))
        .collect()
}

#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn a_memory_leak_is_limited_then_killed() {
    require_vm();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = Root::new("policy-leak");
    let cfg = format!(
        "{}\n[[policy]]\nname = \"leak\"\nmatch = 'cmdline ~ \"vm-policy-leak\"'\nwhen = 'mem_growth > 20MiB/s'\nfor = \"3s\"\nthen = [\"limit MemoryMax=768M\", \"kill\"]\nrecheck = \"2s\"\n",
        config(&root)
    );
    let agent = Agent::start(&cfg, &[]);
    // grows by 12 MiB (touched) every 0.2 s: ~50 MiB/s (less under TCG)
    let mut kid = Kid(Command::new("python3")
        .args([
            "-c",
            "import time\nb = []\nwhile True:\n    b.append(b'x' * (12 << 20))\n    time.sleep(0.2)\n",
            "vm-policy-leak",
        ])
        .spawn()
        .unwrap());
    let pid = kid.0.id();
    let st = wait_until(
        "the leaking process's end",
        Duration::from_secs(120),
        || {
            kid.0.try_wait().map_err(|e| e.to_string())?.ok_or_else(|| {
                format!("still running; audit: {:?}", policy_records(&agent, "leak"))
            })
        },
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(9), "killed: {st:?}");
    let recs = policy_records(&agent, "leak");
    let steps: Vec<(&str, &str)> = recs
        .iter()
        .map(|r| (r["action"].as_str().unwrap(), r["result"].as_str().unwrap()))
        .collect();
    assert_eq!(steps, vec![("limit", "ok"), ("kill", "ok")], "{recs:?}");
    assert_eq!(recs[0]["args"]["pid"], pid);
    assert_eq!(recs[0]["args"]["conditions"][0]["field"], "mem_growth");
    assert!(recs[0]["args"]["true_for_seconds"].as_f64().unwrap() >= 3.0);
    assert_eq!(
        root.read("policy-leak", "memory.max").trim(),
        (768u64 << 20).to_string(),
        "the per-policy slice has the limit"
    );
    let ev = root.read("policy-leak", "memory.events");
    assert!(
        ev.contains("oom_kill 0"),
        "killed by the policy, not the OOM killer: {ev}"
    );
    assert!(
        recs[0]["detail"].as_str().unwrap().contains("policy-leak"),
        "{}",
        recs[0]
    );
}

#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn a_slice_rule_fires_on_memory_pressure() {
    require_vm();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = Root::new("policy-psi");
    let event_file = tempfile::NamedTempFile::new().unwrap();
    let cfg = format!(
        "{}\n[[slice]]\nname = \"squeeze\"\nlimits = {{ MemoryHigh = \"16M\" }}\n\n[[policy]]\nname = \"pressure\"\nscope = \"slice\"\nmatch = 'slice == squeeze'\nwhen = 'psi_memory > 1'\nfor = \"2s\"\nthen = [\"notify\", \"kill\"]\nrecheck = \"1s\"\nnotify = [\"/bin/sh\", \"-c\", \"cat > {}\"]\n",
        config(&root),
        event_file.path().display()
    );
    let agent = Agent::start(&cfg, &[]);
    // touches 64 MiB over and over inside a 16 MiB MemoryHigh: reclaim stalls it
    let kid = Kid(Command::new("python3")
        .args([
            "-c",
            "import time\ntime.sleep(1)\nb = bytearray(64 << 20)\nwhile True:\n    for i in range(0, len(b), 4096):\n        b[i] = (b[i] + 1) & 255\n",
        ])
        .spawn()
        .unwrap());
    let out = agent.cli(&[
        "limit",
        "--pid",
        &kid.0.id().to_string(),
        "--slice",
        "squeeze",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut kid = kid;
    let st = wait_until(
        "the slice's processes killed by the rule",
        Duration::from_secs(120),
        || {
            kid.0.try_wait().map_err(|e| e.to_string())?.ok_or_else(|| {
                format!(
                    "running; memory.pressure: {}; audit: {:?}",
                    root.read("squeeze", "memory.pressure"),
                    policy_records(&agent, "pressure")
                )
            })
        },
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(9), "{st:?}");
    let recs = policy_records(&agent, "pressure");
    let steps: Vec<(&str, &str)> = recs
        .iter()
        .map(|r| (r["action"].as_str().unwrap(), r["result"].as_str().unwrap()))
        .collect();
    assert_eq!(steps, vec![("notify", "ok"), ("kill", "ok")], "{recs:?}");
    assert_eq!(recs[0]["target"], "slice squeeze");
    let ev: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(event_file.path()).unwrap()).unwrap();
    assert_eq!(ev["policy"], "pressure");
    assert_eq!(ev["target"], "slice squeeze");
    assert_eq!(ev["conditions"][0]["field"], "psi_memory");
    assert!(ev["conditions"][0]["holds"].as_bool().unwrap());
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

/// A spinner matched by its command line: reniced after `for` (not before) in enforce mode;
/// in dry-run only the audit log and the agent's log show the would-be action.
fn spinner_case(mode: &str) {
    require_vm();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = Root::new(&format!("policy-spin-{mode}"));
    let marker = format!("vm-policy-spin-{mode}");
    let cfg = format!(
        "{}\n[[policy]]\nname = \"spin\"\nmatch = 'cmdline ~ \"{marker}\"'\nwhen = 'cpu > 30%'\nfor = \"3s\"\nthen = [\"renice 10\"]\nmode = \"{mode}\"\n",
        config(&root)
    );
    let agent = Agent::start(&cfg, &[]);
    let spin = Kid(Command::new("/bin/sh")
        .args(["-c", &format!("while :; do :; done # {marker}")])
        .spawn()
        .unwrap());
    let pid = spin.0.id();
    let mut held_before = 0.0f64;
    let recs = wait_until("the policy's record", Duration::from_secs(90), || {
        let r = policy_records(&agent, "spin");
        if !r.is_empty() {
            return Ok(r);
        }
        let (_, e) =
            procman_tests::http_get(&agent.socket, &format!("/api/policies/explain/{pid}"));
        if nice(pid) == 0 {
            if let Some(s) = e["policies"][0]["true_for_seconds"].as_f64() {
                held_before = held_before.max(s);
            }
        }
        Err(format!("nice {}; explain {e}", nice(pid)))
    });
    assert!(
        held_before >= 2.0,
        "held {held_before}s before acting: `for` respected"
    );
    assert!(
        recs[0]["args"]["true_for_seconds"].as_f64().unwrap() >= 3.0,
        "{}",
        recs[0]
    );
    if mode == "enforce" {
        assert_eq!(recs[0]["result"], "ok", "{}", recs[0]);
        wait_until("nice 10", Duration::from_secs(10), || {
            (nice(pid) == 10).then_some(()).ok_or("not yet".to_string())
        });
    } else {
        assert_eq!(recs[0]["result"], "dry-run", "{}", recs[0]);
        assert_eq!(nice(pid), 0, "dry-run acts on nothing");
        assert!(agent.log().contains("would renice 10"), "{}", agent.log());
    }
}

#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn a_spinner_is_reniced_after_for_not_before() {
    spinner_case("enforce");
}

#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn dry_run_logs_the_would_be_action_and_changes_nothing() {
    spinner_case("dry-run");
}

#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn a_spent_budget_flips_the_policy_to_dry_run() {
    require_vm();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = Root::new("policy-budget");
    let cfg = format!(
        "{}\n[[policy]]\nname = \"budget\"\nmatch = 'cmdline ~ \"vm-policy-budget\"'\nwhen = 'threads >= 1'\nthen = [\"limit CPUWeight=10\"]\nmax_actions = \"1/h\"\n",
        config(&root)
    );
    let agent = Agent::start(&cfg, &[]);
    let kids: Vec<Kid> = (0..2)
        .map(|_| {
            Kid(Command::new("/bin/sh")
                .args(["-c", "while :; do sleep 1; done # vm-policy-budget"])
                .spawn()
                .unwrap())
        })
        .collect();
    let recs = wait_until("two policy records", Duration::from_secs(60), || {
        let r = policy_records(&agent, "budget");
        if r.len() >= 2 {
            Ok(r)
        } else {
            Err(format!("{r:?}"))
        }
    });
    let results: Vec<&str> = recs.iter().map(|r| r["result"].as_str().unwrap()).collect();
    assert_eq!(results, vec!["ok", "dry-run"], "{recs:?}");
    let in_slice = kids
        .iter()
        .filter(|k| procman_tests::cgroup_of(k.0.id()).contains("/policy-budget"))
        .count();
    assert_eq!(in_slice, 1, "one moved, the other only logged");
    let (_, l) = procman_tests::http_get(&agent.socket, "/api/policies");
    assert_eq!(l["policies"][0]["effective_mode"], "dry-run", "{l}");
    assert!(l["policies"][0]["note"]
        .as_str()
        .unwrap()
        .contains("budget spent"));
}

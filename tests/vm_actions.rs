//! Ending whole slices on a real cgroup v2 kernel (the test VM): a fork bomb contained by
//! `TasksMax` is ended by `POST /api/slices/{name}/kill` (`procman kill --slice`) with no
//! process left behind, and the freeze-then-SIGKILL sweep that kernels without `cgroup.kill`
//! (before 5.14) get is exercised directly through `procman-cgroup`.
use procman_cgroup::{Cgroup2Mount, Limits, Manager};
use procman_tests::{bin, require_vm, wait_until, Agent};
use std::{
    os::unix::process::ExitStatusExt,
    process::{Command, Stdio},
    time::Duration,
};

/// A fork bomb that cannot hurt the VM once its slice has a pids limit: every round leaves an
/// orphaned `sleep` behind, and failed forks are retried forever (quietly).
const BOMB: &str = "exec 2>/dev/null; while :; do (sleep 600 &); done";

use procman_tests::VmRoot as Root;

/// Waits until the bomb has filled its slice up to the limit (forks refused).
fn wait_for_the_bomb(root: &Root, slice: &str, at_least: usize) {
    wait_until(
        "the fork bomb at its pids limit",
        Duration::from_secs(60),
        || {
            let n = root.procs(slice).len();
            let refused = root.keyed(slice, "pids.events", "max");
            if n >= at_least && refused > 0 {
                Ok(())
            } else {
                Err(format!("{n} processes, {refused} forks refused"))
            }
        },
    );
}

#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn slice_kill_ends_a_fork_bomb_and_leaves_nothing() {
    require_vm();
    let root = Root::new("bomb");
    let agent = Agent::start(&format!("[cgroup]\nroot = \"{}\"\n", root.name), &[]);
    let mut run = Command::new(bin("procman"))
        .arg("--socket")
        .arg(&agent.socket)
        .args([
            "run", "--slice", "bomb", "--pids", "48", "--", "sh", "-c", BOMB,
        ])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_the_bomb(&root, "bomb", 40);
    let out = agent.cli(&["kill", "--slice", "bomb", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!(
        "kernel {}: {} process(es) killed by {}",
        std::env::var("PROCMAN_VM_KERNEL").unwrap_or_default(),
        v["killed"].as_array().map_or(0, |k| k.len()),
        v["method"]
    );
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["method"], "cgroup.kill", "both test kernels have it: {v}");
    assert!(v["killed"].as_array().unwrap().len() >= 40, "{v}");
    // nothing left, and nothing comes back: the slice stays, empty
    assert_eq!(root.procs("bomb"), Vec::<u32>::new());
    assert_eq!(root.keyed("bomb", "cgroup.events", "populated"), 0);
    assert!(root.path().join("bomb").is_dir(), "the slice itself stays");
    // `procman run` passes the shell's end through: killed by SIGKILL
    let st = run.wait().unwrap();
    assert_eq!(st.code(), Some(128 + libc::SIGKILL), "{st:?}");
    // the audit line says how it was done
    let audit = agent.audit();
    let line = audit
        .iter()
        .find(|l| l["target"] == "POST /api/slices/bomb/kill")
        .unwrap_or_else(|| panic!("{audit:?}"));
    assert_eq!(line["result"], "ok");
    assert!(
        line["detail"].as_str().unwrap().contains("cgroup.kill"),
        "{line}"
    );
    // the answer for an empty slice, and for one that does not exist
    let out = agent.cli(&["kill", "--slice", "bomb", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["killed"], serde_json::json!([]), "{v}");
    let out = agent.cli(&["kill", "--slice", "no-such-slice"]);
    assert_eq!(out.status.code(), Some(3), "not found");
    let _ = run.kill();
}

/// The sweep for kernels without `cgroup.kill`: freeze, SIGKILL every pid in cgroup.procs,
/// thaw, again until empty. Run here on kernels that have cgroup.kill, through the function
/// the agent falls back to.
#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn freeze_and_sigkill_sweep_ends_a_fork_bomb() {
    require_vm();
    let root = Root::new("sweep");
    let m = Manager::open(Cgroup2Mount::discover().unwrap(), &root.name).unwrap();
    let mut limits = Limits::default();
    limits.set_pair("TasksMax", "48").unwrap();
    m.ensure_slice("bomb", &limits).unwrap();
    let procs = root.path().join("bomb/cgroup.procs");
    // the shell moves itself in, then becomes the bomb
    let mut sh = Command::new("sh")
        .arg("-c")
        .arg(format!("echo $$ > {}; {BOMB}", procs.display()))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_the_bomb(&root, "bomb", 40);
    let how = m.kill_by_signals("bomb", Duration::from_secs(30)).unwrap();
    assert_eq!(how, "freeze+SIGKILL");
    assert_eq!(root.procs("bomb"), Vec::<u32>::new());
    assert_eq!(root.keyed("bomb", "cgroup.events", "populated"), 0);
    assert_eq!(
        root.read("bomb", "cgroup.freeze").trim(),
        "0",
        "thawed again"
    );
    assert_eq!(sh.wait().unwrap().signal(), Some(libc::SIGKILL));
    m.remove_slice("bomb").unwrap();
}

//! Services on a real cgroup v2 kernel (the test VM): a service's limits are its slice's, from
//! its first instruction. A service with `MemoryMax = "64M"` that touches 256 MiB is killed by
//! the OOM killer, reported as such, and restarted per its policy.
use procman_tests::{http_get, require_vm, wait_until, Agent};
use std::{path::PathBuf, time::Duration};

/// The test's managed root, killed and removed at the end.
struct Root(String);

impl Drop for Root {
    fn drop(&mut self) {
        let path = PathBuf::from("/sys/fs/cgroup").join(&self.0);
        if let Ok(rd) = std::fs::read_dir(&path) {
            for e in rd.flatten().filter(|e| e.path().is_dir()) {
                let _ = std::fs::write(e.path().join("cgroup.kill"), "1");
                let _ =
                    procman_tests::try_wait_until("slice removal", Duration::from_secs(5), || {
                        std::fs::remove_dir(e.path()).map_err(|e| e.to_string())
                    });
            }
        }
        let _ = std::fs::remove_dir(&path);
    }
}

#[test]
#[ignore = "needs the cgroup v2 test VM (cargo xtask vm-test)"]
fn oom_killed_service_is_reported_and_restarted() {
    require_vm();
    let root = Root("procman-vm-svc-oom.slice".into());
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        r#"[cgroup]
root = "{}"
[services]
log_dir = "{d}/logs"
state_dir = "{d}/state"

[[service]]
name = "hog"
exec = ["python3", "-c", "import time; b = b'a' * (256 << 20); time.sleep(1000)"]
limits = {{ MemoryMax = "64M", MemorySwapMax = "0" }}
restart = "on-failure"
backoff = {{ initial = "500ms" }}
"#,
        root.0,
        d = dir.path().display()
    );
    let agent = Agent::start(&cfg, &["--source", "netlink"]);
    let v = wait_until(
        "the OOM kill and a restart",
        Duration::from_secs(120),
        || {
            let (_, v) = http_get(&agent.socket, "/api/services/hog");
            if v["restarts"].as_u64() >= Some(1) && v["last_exit"].is_string() {
                Ok(v)
            } else {
                Err(v.to_string())
            }
        },
    );
    assert_eq!(
        v["last_exit"], "killed by the OOM killer (memory.max)",
        "{v}"
    );
    assert_eq!(v["last_exit_status"]["kind"], "oom_killed", "{v}");
    let out = agent.cli(&["service", "status", "hog"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("killed by the OOM killer (memory.max)"),
        "{text}"
    );
    let limit = std::fs::read_to_string(format!("/sys/fs/cgroup/{}/svc-hog/memory.max", root.0))
        .unwrap_or_default();
    assert_eq!(
        limit.trim(),
        (64u64 << 20).to_string(),
        "the slice has the service's limit"
    );
}

/// A restart kills the slice (the main process leaves a child behind) and the new main
/// process lives: no SIGKILL at birth from the killed cgroup (see `services::kill_slice`).
#[test]
#[ignore = "needs the cgroup v2 test VM (cargo xtask vm-test)"]
fn restart_after_a_slice_kill_starts_a_living_process() {
    require_vm();
    let root = Root("procman-vm-svc-restart.slice".into());
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        r#"[cgroup]
root = "{}"
[services]
log_dir = "{d}/logs"
state_dir = "{d}/state"

[[service]]
name = "pair"
exec = ["sh", "-c", "trap '' TERM; sleep 1000 & wait"]
stop = {{ timeout = "1s" }}
"#,
        root.0,
        d = dir.path().display()
    );
    let agent = Agent::start(&cfg, &["--source", "netlink"]);
    let first = wait_until("pair running", Duration::from_secs(60), || {
        let (_, v) = http_get(&agent.socket, "/api/services/pair");
        v["pid"].as_u64().ok_or(v.to_string())
    });
    for round in 0..2 {
        let out = agent.cli(&["service", "restart", "pair", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["state"], "running", "round {round}: {v}");
        assert_ne!(v["pid"].as_u64(), Some(first));
        // still the same process a moment later: not killed at birth
        let pid = v["pid"].as_u64().unwrap();
        let (_, again) = http_get(&agent.socket, "/api/services/pair");
        assert_eq!(again["pid"].as_u64(), Some(pid), "round {round}: {again}");
        assert_eq!(again["last_exit"], serde_json::Value::Null, "{again}");
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}

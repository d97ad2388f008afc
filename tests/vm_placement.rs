//! `[cgroup] favordynmods` on a real cgroup v2 kernel (the test VM, both kernels): `auto`
//! leaves the mount alone and reports what it has; `on` remounts the cgroup2 mount with it
//! (every other option kept) and `procman status` says so, with the move latency the agent
//! measured; `off` never remounts. Remounting is done only here, inside the throwaway VM,
//! never on a host whose cgroups belong to someone else.
use procman_tests::{require_vm, wait_until, Agent, VmRoot};
use std::time::Duration;

/// `(per-mount options, superblock options)` of the VM's cgroup2 mount at /sys/fs/cgroup.
fn mount_options() -> (String, String) {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mi.lines()
        .filter_map(|l| l.split_once(" - "))
        .filter(|(pre, post)| {
            post.starts_with("cgroup2 ") && pre.split(' ').nth(4) == Some("/sys/fs/cgroup")
        })
        .map(|(pre, post)| {
            (
                pre.split(' ').nth(5).unwrap().to_string(),
                post.split(' ').nth(2).unwrap().to_string(),
            )
        })
        .next_back()
        .expect("a cgroup2 mount at /sys/fs/cgroup in the VM")
}

fn has_favordynmods() -> bool {
    mount_options().1.split(',').any(|o| o == "favordynmods")
}

/// Remounts the VM's cgroup2 with its options minus `favordynmods`, through mount(2) itself:
/// a cgroup2 reconfigure clears the root flags it is not given (util-linux's `mount -o
/// remount` would add back the ones mountinfo shows). The same flags and data the agent's
/// remount uses, less `favordynmods`.
fn try_remount_without_favordynmods() -> Result<(), String> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let entries = procman_cgroup::mount::parse_mountinfo(&mi);
    let e = entries
        .iter()
        .rev()
        .find(|e| e.fs_type == "cgroup2" && e.mount_point == std::path::Path::new("/sys/fs/cgroup"))
        .ok_or("no cgroup2 mount at /sys/fs/cgroup")?;
    let (flags, data) = e.favordynmods_remount();
    let data: Vec<&str> = data.split(',').filter(|o| *o != "favordynmods").collect();
    let data = data.join(",");
    nix::mount::mount(
        None::<&str>,
        "/sys/fs/cgroup",
        None::<&str>,
        flags,
        Some(data.as_str()),
    )
    .map_err(|err| format!("remount with {data:?}: {err}"))
}

fn remount_without_favordynmods() {
    try_remount_without_favordynmods().unwrap();
    assert!(!has_favordynmods(), "{:?}", mount_options());
}

/// Leaves the VM's mount as the test found it (without favordynmods).
struct RestoreMount;

impl Drop for RestoreMount {
    fn drop(&mut self) {
        // no assertion here: this also runs while a failed test unwinds
        if has_favordynmods() {
            if let Err(e) = try_remount_without_favordynmods() {
                eprintln!("warning: the VM's cgroup2 keeps favordynmods: {e}");
            }
        }
    }
}

fn config(root: &VmRoot, setting: &str) -> String {
    format!(
        "{}favordynmods = \"{setting}\"\n[[slice]]\nname = \"fdm\"\n[[rule]]\ncomm = \"pm-fdm-sleep\"\nslice = \"fdm\"\n",
        root.config()
    )
}

fn moves(agent: &Agent) -> serde_json::Value {
    agent.status()["enforcement"]["moves"].clone()
}

#[test]
#[ignore = "needs the cgroup v2 test VM (cargo xtask vm-test): remounts the VM's cgroup2"]
fn favordynmods_auto_leaves_the_mount_on_remounts_with_it_off_never_remounts() {
    require_vm();
    let _restore = RestoreMount;
    if has_favordynmods() {
        remount_without_favordynmods();
    }
    let before = mount_options();
    let root = VmRoot::new("fdm");

    // auto: the mount as it is, reported, untouched
    {
        let agent = Agent::start(&config(&root, "auto"), &["--source", "bpf"]);
        let m = moves(&agent);
        assert_eq!(m["favordynmods"], false, "{m}");
        assert_eq!(m["favordynmods_setting"], "auto", "{m}");
        assert_eq!(m["remounted"], false, "{m}");
        assert!(
            m["reason"].as_str().unwrap().contains("RCU grace period"),
            "{m}"
        );
        assert_eq!(mount_options(), before, "auto must not change the mount");
        let text = String::from_utf8_lossy(&agent.cli(&["status"]).stdout).into_owned();
        assert!(text.contains("favordynmods off"), "{text}");
    }
    assert_eq!(mount_options(), before);

    // on: remounted with it at start, every other option kept, and placement measured
    {
        let agent = Agent::start(&config(&root, "on"), &["--source", "bpf"]);
        let after = mount_options();
        assert!(has_favordynmods(), "{after:?}");
        assert_eq!(after.0, before.0, "the per-mount options are kept");
        for o in before.1.split(',') {
            assert!(after.1.split(',').any(|x| x == o), "{o} lost: {after:?}");
        }
        let m = moves(&agent);
        assert_eq!(m["favordynmods"], true, "{m}");
        assert_eq!(m["favordynmods_setting"], "on", "{m}");
        assert_eq!(m["remounted"], true, "{m}");
        assert!(m["reason"].as_str().unwrap().contains("skip"), "{m}");
        assert!(
            agent.log().contains("remounted with favordynmods"),
            "{}",
            agent.log()
        );
        // a placement: the status then shows the measured move latency
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("pm-fdm-sleep");
        std::fs::copy("/bin/sleep", &exe).unwrap();
        let mut child = std::process::Command::new(&exe).arg("30").spawn().unwrap();
        let pid = child.id();
        wait_until("the placement", Duration::from_secs(30), || {
            if root.procs("fdm").contains(&pid) {
                Ok(())
            } else {
                Err(procman_tests::cgroup_of(pid))
            }
        });
        let m = wait_until("a measured move", Duration::from_secs(10), || {
            let m = moves(&agent);
            if m["measured"]["moves"].as_u64() >= Some(1) {
                Ok(m)
            } else {
                Err(m.to_string())
            }
        });
        assert!(m["measured"]["p50_us"].as_u64().unwrap() > 0, "{m}");
        let text = String::from_utf8_lossy(&agent.cli(&["status"]).stdout).into_owned();
        assert!(
            text.contains("favordynmods on") && text.contains("remounted with it at start"),
            "{text}"
        );
        assert!(text.contains("measured: p50"), "{text}");
        let _ = child.kill();
        let _ = child.wait();
    }

    // on again: already there, nothing to do
    {
        let agent = Agent::start(&config(&root, "on"), &["--source", "bpf"]);
        let m = moves(&agent);
        assert_eq!(
            (&m["favordynmods"], &m["remounted"]),
            (&true.into(), &false.into()),
            "{m}"
        );
    }

    // off: never remounts (a mount that has it keeps it, and it is reported)
    {
        let agent = Agent::start(&config(&root, "off"), &["--source", "bpf"]);
        let m = moves(&agent);
        assert_eq!(m["favordynmods"], true, "{m}");
        assert_eq!(m["favordynmods_setting"], "off", "{m}");
        assert_eq!(m["remounted"], false, "{m}");
    }
    remount_without_favordynmods();
    {
        let agent = Agent::start(&config(&root, "off"), &["--source", "bpf"]);
        assert_eq!(moves(&agent)["favordynmods"], false);
        assert!(!has_favordynmods(), "off must not remount");
    }
}

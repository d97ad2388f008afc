//! Host tests of the `cgroup` module against the real cgroup2 mount (root needed).
//!
//! Allowed on the host: create our own uniquely named subtree under the cgroup2 mount, move
//! processes these tests started into it, remove it. Never: mount/unmount, v1 hierarchies,
//! other processes, controllers (those are proven in tests/vm_cgroup.rs).
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use procman_cgroup::{Cgroup2Mount, CgroupError, Controller, Ensured, Limits, Manager};
use procman_tests::try_wait_until;

/// A unique managed root for one test: `procman-test-<pid>-<tag>.slice`.
fn unique_root(tag: &str) -> String {
    format!("procman-test-{}-{tag}.slice", std::process::id())
}

/// Removes our test subtree even when a test fails halfway: kill what we put there (only
/// our own children can be in it), remove the slices, then the root.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(rd) = std::fs::read_dir(&self.0) else {
            return;
        };
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let d = e.path();
                let _ = std::fs::write(d.join("cgroup.kill"), "1");
                // rmdir succeeds once the killed processes are gone
                let removed =
                    try_wait_until("the killed slice's removal", Duration::from_secs(2), || {
                        std::fs::remove_dir(&d).map_err(|e| e.to_string())
                    });
                if let Err(e) = removed {
                    eprintln!("warning: {}: {e}", d.display());
                }
            }
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn open(tag: &str) -> (Manager, Cleanup) {
    let mount = Cgroup2Mount::discover().expect("a cgroup2 mount");
    let m = Manager::open(mount, unique_root(tag)).expect("open the managed subtree");
    let c = Cleanup(m.root().to_path_buf());
    (m, c)
}

fn sleeper() -> Child {
    Command::new("sleep")
        .arg("60")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sleep")
}

fn proc_cgroup(pid: u32) -> String {
    let t = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    t.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap()
        .to_string()
}

#[test]
#[ignore = "needs root: creates cgroups under the cgroup2 mount"]
fn host_finds_the_mount_and_reports_degraded_mode() {
    let mount = Cgroup2Mount::discover().expect("a cgroup2 mount");
    eprintln!("cgroup2 mount: {}", mount.path.display());
    let offered = mount.root_controllers().unwrap();
    eprintln!("cgroup2 root controllers: {offered:?}");
    let (m, _c) = open("caps");
    let caps = m.capabilities();
    eprintln!("{caps}");
    for c in Controller::ALL {
        if !offered.contains(c.name()) {
            let r = caps.missing_reason(c).expect("missing");
            assert!(r.contains("does not offer it"), "{c}: {r}");
        }
    }
    // Probing never changes anything we do not own: the mount root's subtree_control.
    let before = std::fs::read_to_string(mount.path.join("cgroup.subtree_control")).unwrap();
    let (_m2, _c2) = open("caps2");
    let after = std::fs::read_to_string(mount.path.join("cgroup.subtree_control")).unwrap();
    assert_eq!(before, after);

    if !caps.is_enabled(Controller::Memory) {
        // This project's hybrid hosts: cgroup2 offers hugetlb only.
        assert!(caps.is_degraded());
        let text = caps.to_string();
        assert!(text.contains("DEGRADED MODE"), "{text}");
        for c in caps.missing() {
            assert!(text.contains(c.name()), "{c} missing from report:\n{text}");
        }
        let l = Limits::from_properties(["MemoryMax=512M"]).unwrap();
        let e = m.ensure_slice("mem", &l).unwrap_err();
        let msg = e.to_string();
        eprintln!("memory limit request refused: {msg}");
        assert!(matches!(e, CgroupError::Unenforceable { .. }), "{msg}");
        assert!(
            msg.contains("MemoryMax") && msg.contains("\"512M\""),
            "{msg}"
        );
        assert!(
            msg.contains(caps.missing_reason(Controller::Memory).unwrap()),
            "{msg}"
        );
        assert!(
            !m.root().join("mem").exists(),
            "refused slice must not exist"
        );
    } else {
        eprintln!("memory controller available on this host: refusal path not exercised here");
    }
}

#[test]
#[ignore = "needs root: creates cgroups and moves processes between them"]
fn host_slice_lifecycle_move_freeze_kill_remove() {
    let (m, _c) = open("life");
    let root_rel = format!("/{}", unique_root("life"));
    let rel = m
        .root()
        .strip_prefix(&m.mount().path)
        .unwrap()
        .to_path_buf();
    assert_eq!(format!("/{}", rel.display()), root_rel);

    assert_eq!(
        m.ensure_slice("s1", &Limits::default()).unwrap(),
        Ensured::Created
    );
    assert_eq!(m.list_slices().unwrap(), ["s1"]);

    let mut child = sleeper();
    let pid = child.id();
    let start = procman_cgroup::procs::proc_info(pid).unwrap().start_time;
    m.move_process("s1", pid, Some(start)).unwrap();
    assert_eq!(proc_cgroup(pid), format!("{root_rel}/s1"));
    assert_eq!(m.slice_of(pid).unwrap().as_deref(), Some("s1"));
    assert_eq!(m.slice_of(std::process::id()).unwrap(), None);
    assert_eq!(m.pids("s1").unwrap(), [pid]);
    let st = m.stats("s1").unwrap();
    assert!(st.populated);
    assert!(st.cpu.is_some(), "cpu.stat is a core file");

    // A populated slice is not removed.
    let e = m.remove_slice("s1").unwrap_err();
    assert!(
        matches!(&e, CgroupError::SliceBusy { pids, .. } if pids == &[pid]),
        "{e}"
    );

    if m.capabilities().freeze {
        m.freeze("s1").unwrap();
        m.wait_frozen("s1", true, Duration::from_secs(5)).unwrap();
        assert!(m.stats("s1").unwrap().frozen);
        m.thaw("s1").unwrap();
        m.wait_frozen("s1", false, Duration::from_secs(5)).unwrap();
    } else {
        eprintln!("SKIPPED freeze part: no cgroup.freeze on this kernel");
    }

    if m.capabilities().kill {
        m.kill("s1").unwrap();
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    } else {
        eprintln!("SKIPPED cgroup.kill part: kernel older than 5.14");
        child.kill().unwrap();
        child.wait().unwrap();
    }
    m.wait_empty("s1", Duration::from_secs(5)).unwrap();
    assert!(m.remove_slice("s1").unwrap());
    assert!(!m.remove_slice("s1").unwrap(), "second remove is a no-op");
    assert!(m.list_slices().unwrap().is_empty());
    m.remove_root().unwrap();
}

#[test]
#[ignore = "needs root: creates cgroups under the cgroup2 mount"]
fn host_protected_pids_are_refused() {
    let (m, _c) = open("prot");
    m.ensure_slice("s", &Limits::default()).unwrap();
    let me = std::process::id();
    for (pid, needle) in [(1, "pid 1"), (2, "kernel thread"), (me, "the agent itself")] {
        let e = m.move_process("s", pid, None).unwrap_err().to_string();
        assert!(e.contains(needle), "{pid}: {e}");
    }
    // A kernel thread other than kthreadd: the first child of pid 2.
    let kthread = std::fs::read_to_string("/proc/2/task/2/children")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|p| p.parse::<u32>().ok())
        });
    if let Some(k) = kthread {
        let e = m.move_process("s", k, None).unwrap_err().to_string();
        assert!(e.contains("kernel thread"), "{k}: {e}");
    }
    // One of our own threads: writing it to cgroup.procs would move the whole agent.
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let h = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        tx.send(unsafe { libc::gettid() } as u32).unwrap();
        let _ = done_rx.recv();
    });
    let tid = rx.recv().unwrap();
    let e = m.move_process("s", tid, None).unwrap_err().to_string();
    assert!(e.contains("the agent itself"), "{tid}: {e}");
    done_tx.send(()).unwrap();
    h.join().unwrap();
    assert!(m.pids("s").unwrap().is_empty());
    assert!(
        !proc_cgroup(me).contains("procman-test"),
        "the test process was not moved"
    );
}

#[test]
#[ignore = "needs root: creates cgroups and moves processes between them"]
fn host_readoption_after_restart() {
    let (m, _c) = open("adopt");
    m.ensure_slice("a", &Limits::default()).unwrap();
    m.ensure_slice("b", &Limits::default()).unwrap();
    let mut child = sleeper();
    m.move_process("a", child.id(), None).unwrap();
    drop(m); // the agent "stops": nothing is moved out, nothing removed

    let mount = Cgroup2Mount::discover().unwrap();
    let m2 = Manager::open(mount, unique_root("adopt")).unwrap();
    assert_eq!(m2.list_slices().unwrap(), ["a", "b"]);
    assert_eq!(m2.pids("a").unwrap(), [child.id()]);
    assert_eq!(
        m2.ensure_slice("a", &Limits::default()).unwrap(),
        Ensured::Adopted
    );
    assert_eq!(
        m2.pids("a").unwrap(),
        [child.id()],
        "re-apply never moves processes"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    m2.wait_empty("a", Duration::from_secs(5)).unwrap();
    assert!(m2.remove_slice("a").unwrap());
    assert!(m2.remove_slice("b").unwrap());
    m2.remove_root().unwrap();
}

/// Starts `/usr/bin/sleep 60` directly inside the cgroup `fd` with clone3(CLONE_INTO_CGROUP).
fn spawn_into(fd: &OwnedFd) -> libc::pid_t {
    let argv = vec!["/usr/bin/sleep".to_string(), "60".to_string()];
    procman_common::spawn::spawn(
        &argv,
        procman_common::spawn::SpawnOpts {
            cgroup: Some(fd.as_raw_fd()),
            pid: None,
        },
    )
    .expect("clone3(CLONE_INTO_CGROUP)")
}

#[test]
#[ignore = "needs root: creates cgroups and spawns into one (clone3)"]
fn host_clone_into_cgroup_with_slice_fd() {
    let (m, _c) = open("clone");
    m.ensure_slice("run", &Limits::default()).unwrap();
    let fd = m.slice_fd("run").unwrap();
    let pid = spawn_into(&fd);
    // The child was born in the slice: no window outside it.
    assert_eq!(m.slice_of(pid as u32).unwrap().as_deref(), Some("run"));
    assert_eq!(m.pids("run").unwrap(), [pid as u32]);
    if m.capabilities().kill {
        m.kill("run").unwrap();
    } else {
        // SAFETY: our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL);
    m.wait_empty("run", Duration::from_secs(5)).unwrap();
    drop(fd);
    assert!(m.remove_slice("run").unwrap());
    m.remove_root().unwrap();
}

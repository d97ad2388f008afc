//! `Cgroup` over a fake cgroupfs in a temp dir: one test per file kind, success and
//! malformed. Never proof of enforcement (that is tests/vm_cgroup.rs, in the VM).
use std::fs;

use super::*;
use crate::iface::{DevNum, Rate};

fn fake() -> (tempfile::TempDir, Cgroup) {
    let d = tempfile::tempdir().unwrap();
    let cg = Cgroup::new(d.path());
    (d, cg)
}

fn w(cg: &Cgroup, f: &str, t: &str) {
    fs::write(cg.file(f), t).unwrap();
}

#[test]
fn stats_from_a_fake_dir() {
    let (_d, cg) = fake();
    w(&cg, "cgroup.events", "populated 1\nfrozen 0\n");
    w(
        &cg,
        "cpu.stat",
        "usage_usec 5\nuser_usec 3\nsystem_usec 2\n",
    );
    w(&cg, "memory.current", "4096\n");
    w(
        &cg,
        "memory.events",
        "low 0\nhigh 0\nmax 0\noom 0\noom_kill 2\n",
    );
    w(&cg, "pids.current", "3\n");
    w(&cg, "pids.events", "max 4\n");
    w(
        &cg,
        "cpu.pressure",
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=1\n",
    );
    let s = cg.stats().unwrap();
    assert!(s.populated && !s.frozen);
    assert_eq!(s.cpu.unwrap().usage_usec, 5);
    let m = s.memory.unwrap();
    assert_eq!((m.current, m.peak, m.events.oom_kill), (4096, None, 2));
    assert_eq!(s.pids.unwrap().max_events, 4);
    assert!(s.io.is_none());
    assert!(s.pressure.cpu.is_some() && s.pressure.io.is_none());
    // Malformed present file: an error naming the file.
    w(&cg, "memory.current", "lots\n");
    let e = cg.stats().unwrap_err().to_string();
    assert!(
        e.contains(&cg.file("memory.current").display().to_string()),
        "{e}"
    );
    // No cgroup.events: not a cgroup directory.
    let (_e, empty) = fake();
    assert!(empty.stats().is_err());
}

#[test]
fn limit_files_read_and_write() {
    let (_d, cg) = fake();
    for (f, v) in [
        ("memory.max", "max\n"),
        ("memory.high", "1048576\n"),
        ("cpu.max", "max 100000\n"),
        ("cpu.weight", "100\n"),
        ("pids.max", "max\n"),
        (
            "io.max",
            "254:0 rbps=2097152 wbps=max riops=max wiops=max\n",
        ),
    ] {
        w(&cg, f, v);
    }
    assert_eq!(cg.memory_max().unwrap(), None);
    assert_eq!(cg.memory_high().unwrap(), Some(1 << 20));
    assert_eq!(cg.cpu_max().unwrap().quota_us, None);
    assert_eq!(cg.cpu_weight().unwrap(), 100);
    assert_eq!(cg.pids_max().unwrap(), None);
    let io = cg.io_max().unwrap();
    assert_eq!(io.len(), 1);
    assert_eq!(io[0].rbps, Rate::Value(2 << 20));

    cg.set_memory_max(Some(512 << 20)).unwrap();
    cg.set_memory_high(None).unwrap();
    cg.set_cpu_max(CpuMax {
        quota_us: Some(20_000),
        period_us: 100_000,
    })
    .unwrap();
    cg.set_cpu_weight(50).unwrap();
    cg.set_pids_max(Some(64)).unwrap();
    cg.set_io_max(&IoMax::unlimited(DevNum { major: 8, minor: 0 }))
        .unwrap();
    assert_eq!(cg.memory_max().unwrap(), Some(512 << 20));
    assert_eq!(cg.memory_high().unwrap(), None);
    assert_eq!(cg.cpu_max().unwrap().to_string(), "20000 100000");
    assert_eq!(cg.cpu_weight().unwrap(), 50);
    assert_eq!(cg.pids_max().unwrap(), Some(64));
    assert_eq!(
        fs::read_to_string(cg.file("io.max")).unwrap(),
        "8:0 rbps=max wbps=max riops=max wiops=max"
    );

    // Malformed values name the full path of the file.
    for (f, v) in [
        ("memory.max", "lots"),
        ("cpu.max", "garbage"),
        ("cpu.weight", "-1"),
        ("pids.max", "1.5"),
        ("io.max", "vda rbps=1"),
    ] {
        w(&cg, f, v);
        let e = match f {
            "memory.max" => cg.memory_max().map(|_| ()),
            "cpu.max" => cg.cpu_max().map(|_| ()),
            "cpu.weight" => cg.cpu_weight().map(|_| ()),
            "pids.max" => cg.pids_max().map(|_| ()),
            _ => cg.io_max().map(|_| ()),
        }
        .unwrap_err();
        assert!(matches!(e, CgroupError::Malformed { .. }), "{f}: {e}");
        let msg = e.to_string();
        assert!(
            msg.contains(&cg.file(f).display().to_string()) && msg.contains(v),
            "{msg}"
        );
    }
}

#[test]
fn absent_files_are_not_found_and_never_created() {
    let (_d, cg) = fake();
    let e = cg.memory_peak().unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains("memory.peak"), "{e}");
    assert_eq!(cg.memory_peak().optional().unwrap(), None);
    // A write to an absent file fails with the path and the key, and creates nothing.
    let e = cg.set_memory_max(Some(1 << 30)).unwrap_err();
    match &e {
        CgroupError::Write { path, key, .. } => {
            assert_eq!(path, &cg.file("memory.max"));
            assert_eq!(*key, Some(LimitKey::MemoryMax));
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("MemoryMax"), "{e}");
    assert!(!cg.has("memory.max"));
    // freeze/kill without their files: unsupported, with the kernel that has them.
    let e = cg.kill().unwrap_err().to_string();
    assert!(e.contains("cgroup.kill") && e.contains("5.14"), "{e}");
    let e = cg.freeze(true).unwrap_err().to_string();
    assert!(e.contains("cgroup.freeze") && e.contains("5.2"), "{e}");
}

#[test]
fn core_files() {
    let (_d, cg) = fake();
    w(&cg, "cgroup.controllers", "cpu memory pids\n");
    w(&cg, "cgroup.subtree_control", "");
    w(&cg, "cgroup.procs", "12\n34\n");
    w(&cg, "cgroup.events", "populated 1\nfrozen 1\n");
    w(&cg, "cgroup.freeze", "0");
    assert_eq!(cg.controllers().unwrap().len(), 3);
    assert!(cg.subtree_control().unwrap().is_empty());
    cg.set_subtree_control("+cpu").unwrap();
    assert_eq!(
        fs::read_to_string(cg.file("cgroup.subtree_control")).unwrap(),
        "+cpu"
    );
    assert_eq!(cg.procs().unwrap(), [12, 34]);
    assert!(cg.frozen().unwrap());
    assert!(cg.wait_events(Duration::ZERO, |e| e.populated).unwrap());
    assert!(!cg
        .wait_events(Duration::from_millis(20), |e| !e.populated)
        .unwrap());
    cg.freeze(true).unwrap();
    assert_eq!(fs::read_to_string(cg.file("cgroup.freeze")).unwrap(), "1");

    let child = cg.child("web").unwrap();
    assert!(!child.exists());
    assert!(child.create().unwrap());
    assert!(!child.create().unwrap());
    fs::create_dir(cg.file(".hidden")).unwrap();
    assert_eq!(cg.children().unwrap(), ["web"]);
    assert!(child.remove().unwrap());
    assert!(!child.remove().unwrap());
    assert!(cg.child("../x").is_err());
    assert!(cg.child("memory.max").is_err());
}

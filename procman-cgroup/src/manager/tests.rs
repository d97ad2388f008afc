//! Unit tests over a fake cgroupfs in a temp dir: parsing, validation, rendering, "invalid
//! input writes nothing", rollback, degraded-mode reasons. Never proof of enforcement (that
//! is tests/vm_cgroup.rs, in the VM).
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::*;

const ALL: &str = "cpu memory io pids";

struct FakeDevs;
impl ResolveDevice for FakeDevs {
    fn resolve(&self, dev: &DeviceSpec) -> std::result::Result<DevNum, String> {
        match dev {
            DeviceSpec::Path(p) if p == Path::new("/dev/vda") => Ok(DevNum {
                major: 254,
                minor: 0,
            }),
            DeviceSpec::Number(n) if n.major == 254 || n.major == 8 => Ok(*n),
            other => Err(format!("no block device {other}")),
        }
    }
}

const MACHINE: Machine = Machine {
    mem_total: 4 << 30,
    cpus: 2,
    pid_max: 32768,
};

struct Fake {
    _tmp: tempfile::TempDir,
    mount: PathBuf,
}

impl Fake {
    /// A fake mount whose hierarchy offers `hierarchy` and delegates `delegated` to the
    /// managed root `procman.slice`.
    fn new(hierarchy: &str, delegated: &str) -> Fake {
        let tmp = tempfile::tempdir().unwrap();
        let mount = tmp.path().to_path_buf();
        fs::write(mount.join("cgroup.controllers"), hierarchy).unwrap();
        let root = mount.join(DEFAULT_ROOT);
        fs::create_dir(&root).unwrap();
        for (f, v) in [
            ("cgroup.controllers", delegated),
            ("cgroup.subtree_control", ""),
            ("cgroup.procs", ""),
            ("cgroup.freeze", "0"),
            ("cgroup.kill", ""),
        ] {
            fs::write(root.join(f), v).unwrap();
        }
        Fake { _tmp: tmp, mount }
    }

    fn manager(&self) -> Manager {
        Manager::open(Cgroup2Mount::fake(&self.mount), DEFAULT_ROOT)
            .unwrap()
            .with_machine(MACHINE)
            .with_devices(Box::new(FakeDevs))
    }

    /// Pre-creates slice `name` with the files the kernel would create (mkdir on a plain
    /// directory creates none).
    fn slice(&self, name: &str, with_swap: bool) -> PathBuf {
        let d = self.mount.join(DEFAULT_ROOT).join(name);
        fs::create_dir(&d).unwrap();
        let mut files = vec![
            ("cgroup.procs", ""),
            ("cgroup.events", "populated 0\nfrozen 0\n"),
            ("cgroup.freeze", "0"),
            ("cgroup.kill", ""),
            ("memory.max", "max\n"),
            ("memory.high", "max\n"),
            ("cpu.max", "max 100000\n"),
            ("cpu.weight", "100\n"),
            ("pids.max", "max\n"),
            ("io.max", ""),
        ];
        if with_swap {
            files.push(("memory.swap.max", "max\n"));
        }
        for (f, v) in files {
            fs::write(d.join(f), v).unwrap();
        }
        d
    }
}

fn snapshot(dir: &Path) -> BTreeMap<String, (String, SystemTime)> {
    fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let md = e.metadata().unwrap();
            md.is_file().then(|| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    (
                        fs::read_to_string(e.path()).unwrap(),
                        md.modified().unwrap(),
                    ),
                )
            })
        })
        .collect()
}

fn read(dir: &Path, f: &str) -> String {
    fs::read_to_string(dir.join(f)).unwrap()
}

fn every_kind() -> Limits {
    Limits::from_properties([
        "MemoryMax=512M",
        "MemoryHigh=256M",
        "MemorySwapMax=0",
        "CPUQuota=20%",
        "CPUWeight=50",
        "IOReadBandwidthMax=/dev/vda 2M",
        "IOWriteBandwidthMax=254:0 4M",
        "IOReadIOPSMax=8:0 100",
        "IOWriteIOPSMax=8:0 1K",
        "TasksMax=64",
    ])
    .unwrap()
}

#[test]
fn managed_root_paths_are_validated() {
    let f = Fake::new(ALL, ALL);
    for bad in ["", "/abs", "..", "a/../b", "./x", "memory.x"] {
        let e = Manager::open(Cgroup2Mount::fake(&f.mount), bad).unwrap_err();
        assert!(matches!(e, CgroupError::InvalidName { .. }), "{bad:?}: {e}");
    }
    let e = Manager::open(
        Cgroup2Mount::fake(&f.mount),
        "nonexistent.slice/procman.slice",
    )
    .unwrap_err();
    assert!(matches!(e, CgroupError::NoParent { .. }), "{e}");
}

#[test]
fn full_capabilities() {
    let f = Fake::new("cpuset cpu io memory hugetlb pids", ALL);
    let m = f.manager();
    let c = m.capabilities();
    assert!(!c.is_degraded(), "{c}");
    assert!(c.missing().is_empty());
    assert_eq!(
        c.other_controllers.iter().collect::<Vec<_>>(),
        ["cpuset", "hugetlb"]
    );
    assert!(
        c.to_string()
            .contains("controllers cpu, memory, io, pids enabled"),
        "{c}"
    );
    // The fake's subtree_control received the enabling writes.
    assert!(read(m.root(), "cgroup.subtree_control").starts_with('+'));
    m.check_enforceable(&every_kind()).unwrap();
}

#[test]
fn degraded_hybrid_host_refuses_with_reason_and_writes_nothing() {
    let f = Fake::new("hugetlb", "");
    let mut mount = Cgroup2Mount::fake(&f.mount);
    mount.v1_mounts = vec![(Controller::Memory, "/sys/fs/cgroup/memory".into())];
    let m = Manager::open(mount, DEFAULT_ROOT)
        .unwrap()
        .with_machine(MACHINE);
    let c = m.capabilities();
    assert!(c.is_degraded());
    assert_eq!(c.missing(), Controller::ALL.to_vec());
    let text = c.to_string();
    for needle in [
        "DEGRADED MODE",
        "controllers missing: cpu, memory, io, pids",
        "MemoryMax",
        "CPUQuota",
        "IOReadBandwidthMax",
        "TasksMax",
        "cgroup v1 hierarchy at /sys/fs/cgroup/memory",
        "its cgroup.controllers: hugetlb",
    ] {
        assert!(text.contains(needle), "{needle:?} missing in:\n{text}");
    }
    // Nothing was written to the root's subtree_control.
    assert_eq!(read(m.root(), "cgroup.subtree_control"), "");

    let l = Limits::from_properties(["MemoryMax=512M"]).unwrap();
    let e = m.ensure_slice("web", &l).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, CgroupError::Unenforceable { .. }), "{msg}");
    for needle in [
        "MemoryMax",
        "\"512M\"",
        "`memory` controller is missing",
        "hybrid",
        "nothing was written",
    ] {
        assert!(msg.contains(needle), "{needle:?} missing in: {msg}");
    }
    assert!(
        !m.root().join("web").exists(),
        "a refused slice must not be created"
    );

    // No limits: fine (placement still works in degraded mode).
    let d = f.slice("web", false);
    let before = snapshot(&d);
    assert_eq!(
        m.ensure_slice("web", &Limits::default()).unwrap(),
        Ensured::Adopted
    );
    assert_eq!(snapshot(&d), before);
}

#[test]
fn not_delegated_controllers_are_reported() {
    let f = Fake::new(ALL, "cpu memory");
    let m = f.manager();
    let c = m.capabilities();
    assert!(c.is_enabled(Controller::Cpu) && c.is_enabled(Controller::Memory));
    let r = c.missing_reason(Controller::Io).unwrap();
    assert!(
        r.contains("not delegated") && r.contains("Delegate=yes"),
        "{r}"
    );
    let e = m
        .ensure_slice("x", &Limits::from_properties(["TasksMax=5"]).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("TasksMax") && e.contains("`pids`"), "{e}");
}

#[test]
fn every_limit_kind_is_written() {
    let f = Fake::new(ALL, ALL);
    let m = f.manager();
    let d = f.slice("web", true);
    assert_eq!(
        m.ensure_slice("web", &every_kind()).unwrap(),
        Ensured::Adopted
    );
    assert_eq!(read(&d, "memory.max"), "536870912");
    assert_eq!(read(&d, "memory.high"), "268435456");
    assert_eq!(read(&d, "memory.swap.max"), "0");
    assert_eq!(read(&d, "cpu.max"), "20000 100000");
    assert_eq!(read(&d, "cpu.weight"), "50");
    assert_eq!(read(&d, "pids.max"), "64");
    // One write per device; the fake file keeps the last one.
    assert_eq!(
        read(&d, "io.max"),
        "254:0 rbps=2097152 wbps=4194304 riops=max wiops=max"
    );
}

#[test]
fn invalid_limits_write_nothing() {
    let f = Fake::new(ALL, ALL);
    let m = f.manager();
    let d = f.slice("web", false);
    fs::write(d.join("memory.max"), "1073741824\n").unwrap();
    let before = snapshot(&d);

    // A device that does not resolve, after valid keys.
    let mut l = Limits::from_properties(["MemoryMax=512M", "CPUQuota=20%"]).unwrap();
    l.set(LimitKey::IOReadBandwidthMax, "/dev/nope 1M").unwrap();
    let e = m.update_slice("web", &l).unwrap_err().to_string();
    assert!(
        e.contains("\"/dev/nope 1M\"") && e.contains("accepted forms"),
        "{e}"
    );
    assert_eq!(snapshot(&d), before);

    // Out of range values built in code (not parsed).
    let l = Limits {
        memory_max: Some(MemoryValue::Bytes(512 << 20)),
        cpu_weight: Some(20_000),
        ..Limits::default()
    };
    let e = m.update_slice("web", &l).unwrap_err().to_string();
    assert!(e.contains("CPUWeight") && e.contains("\"20000\""), "{e}");
    assert_eq!(snapshot(&d), before);

    // memory.swap.max absent (no swap accounting): refused, nothing else written.
    let l = Limits::from_properties(["MemoryMax=512M", "MemorySwapMax=0"]).unwrap();
    let e = m.update_slice("web", &l).unwrap_err().to_string();
    assert!(e.contains("MemorySwapMax") && e.contains("swap"), "{e}");
    assert_eq!(snapshot(&d), before);

    // A bad config value never even becomes Limits.
    assert!(toml::from_str::<Limits>("MemoryMax = \"12 parsecs\"").is_err());

    // A bad slice name: nothing created.
    let e = m.ensure_slice("../etc", &Limits::default()).unwrap_err();
    assert!(matches!(e, CgroupError::InvalidName { .. }), "{e}");
    // A missing slice for update: nothing created.
    let e = m.update_slice("ghost", &Limits::default()).unwrap_err();
    assert!(matches!(e, CgroupError::NoSuchSlice { .. }), "{e}");
    assert!(!m.root().join("ghost").exists());
}

#[test]
fn kernel_refusal_midway_rolls_back() {
    let f = Fake::new(ALL, ALL);
    let m = f.manager();
    let d = f.slice("web", false);
    fs::write(d.join("memory.max"), "1073741824\n").unwrap();
    // pids.max is written after memory.* and cpu.*: make it readable but unwritable (like
    // a kernel refusing a value) with a symlink to a read-only procfs file.
    fs::remove_file(d.join("pids.max")).unwrap();
    std::os::unix::fs::symlink("/proc/version", d.join("pids.max")).unwrap();
    let l = Limits::from_properties(["MemoryMax=512M", "CPUQuota=50%", "TasksMax=10"]).unwrap();
    let e = m.update_slice("web", &l).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            CgroupError::Write {
                rolled_back: true,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("pids.max") && msg.contains("\"10\"") && msg.contains("restored"),
        "{msg}"
    );
    assert_eq!(read(&d, "memory.max"), "1073741824");
    assert_eq!(read(&d, "cpu.max"), "max 100000");
}

#[test]
fn new_slice_is_removed_when_apply_fails() {
    let f = Fake::new(ALL, ALL);
    let m = f.manager();
    // On the fake fs mkdir creates no interface files, so applying a limit fails: the slice
    // this call created must be gone afterwards.
    let e = m
        .ensure_slice("fresh", &Limits::from_properties(["MemoryMax=1G"]).unwrap())
        .unwrap_err();
    assert!(matches!(e, CgroupError::MissingFile { .. }), "{e}");
    assert!(!m.root().join("fresh").exists());
}

#[test]
fn declarative_reapply_resets_and_is_idempotent() {
    let f = Fake::new(ALL, ALL);
    let m = f.manager();
    let d = f.slice("web", true);
    fs::write(
        d.join("io.max"),
        "8:0 rbps=1048576 wbps=max riops=max wiops=max\n",
    )
    .unwrap();
    let l = Limits::from_properties(["MemoryMax=512M", "TasksMax=64"]).unwrap();
    m.update_slice("web", &l).unwrap();
    assert_eq!(read(&d, "memory.max"), "536870912");
    // The device no longer limited was reset.
    assert_eq!(
        read(&d, "io.max"),
        "8:0 rbps=max wbps=max riops=max wiops=max"
    );
    fs::write(d.join("io.max"), "").unwrap();

    // Re-applying the same limits writes nothing.
    std::thread::sleep(Duration::from_millis(20));
    let before = snapshot(&d);
    m.update_slice("web", &l).unwrap();
    assert_eq!(snapshot(&d), before);

    // Removing a key lifts that limit only.
    let l2 = Limits::from_properties(["TasksMax=64"]).unwrap();
    m.update_slice("web", &l2).unwrap();
    assert_eq!(read(&d, "memory.max"), "max");
    assert_eq!(read(&d, "pids.max"), "64");
}

#[test]
fn read_limits_back() {
    let f = Fake::new(ALL, ALL);
    let m = f.manager();
    let d = f.slice("web", true);
    m.update_slice("web", &every_kind()).unwrap();
    // The fake io.max holds only the last line written; make it look like the kernel's.
    fs::write(
        d.join("io.max"),
        "8:0 rbps=max wbps=max riops=100 wiops=1000\n254:0 rbps=2097152 wbps=4194304 riops=max wiops=max\n",
    )
    .unwrap();
    let l = m.read_limits("web").unwrap();
    assert_eq!(
        l.to_string(),
        "MemoryMax=512M MemoryHigh=256M MemorySwapMax=0 CPUQuota=20% CPUWeight=50 \
         IOReadBandwidthMax=\"254:0 2M\" IOWriteBandwidthMax=\"254:0 4M\" \
         IOReadIOPSMax=\"8:0 100\" IOWriteIOPSMax=\"8:0 1000\" TasksMax=64"
    );
    fs::write(d.join("cpu.max"), "garbage").unwrap();
    let e = m.read_limits("web").unwrap_err().to_string();
    assert!(e.contains("cpu.max") && e.contains("garbage"), "{e}");
}

#[test]
fn list_slices_from_the_fs() {
    let f = Fake::new(ALL, ALL);
    let m = f.manager();
    assert!(m.list_slices().unwrap().is_empty());
    f.slice("web", false);
    f.slice("batch", false);
    fs::create_dir(m.root().join(".weird name")).unwrap();
    assert_eq!(m.list_slices().unwrap(), ["batch", "web"]);
    // A second manager (a restarted agent) sees the same.
    assert_eq!(f.manager().list_slices().unwrap(), ["batch", "web"]);
}

#[test]
fn freeze_kill_guards_and_support() {
    let f = Fake::new(ALL, ALL);
    let m = f.manager();
    let d = f.slice("web", false);
    m.freeze("web").unwrap();
    assert_eq!(read(&d, "cgroup.freeze"), "1");
    m.thaw("web").unwrap();
    assert_eq!(read(&d, "cgroup.freeze"), "0");
    m.kill("web").unwrap();
    assert_eq!(read(&d, "cgroup.kill"), "1");
    fs::write(d.join("cgroup.kill"), "").unwrap();

    // A slice holding the agent itself or pid 1 is never frozen or killed.
    fs::write(d.join("cgroup.procs"), format!("{}\n", std::process::id())).unwrap();
    let e = m.kill("web").unwrap_err().to_string();
    assert!(e.contains("the agent itself") && e.contains("kill"), "{e}");
    fs::write(d.join("cgroup.procs"), "1\n").unwrap();
    let e = m.freeze("web").unwrap_err().to_string();
    assert!(e.contains("pid 1"), "{e}");
    assert_eq!(read(&d, "cgroup.kill"), "");
    assert_eq!(read(&d, "cgroup.freeze"), "0");
    // Thawing is always allowed.
    m.thaw("web").unwrap();

    fs::remove_file(d.join("cgroup.kill")).unwrap();
    let e = m.kill("web").unwrap_err().to_string();
    assert!(e.contains("cgroup.kill") && e.contains("5.14"), "{e}");

    // wait_frozen reads cgroup.events.
    fs::write(d.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
    m.wait_frozen("web", true, Duration::from_millis(50))
        .unwrap();
    let e = m
        .wait_frozen("web", false, Duration::from_millis(30))
        .unwrap_err();
    assert!(matches!(e, CgroupError::FreezeTimeout { .. }), "{e}");
    let e = m.wait_empty("web", Duration::from_millis(30)).unwrap_err();
    assert!(matches!(e, CgroupError::SliceBusy { .. }), "{e}");
}

#[test]
fn moves_refuse_protected_pids_before_writing() {
    let f = Fake::new(ALL, ALL);
    let m = f.manager();
    let d = f.slice("web", false);
    for pid in [0, 1, 2, std::process::id()] {
        let e = m.move_process("web", pid, None).unwrap_err();
        assert!(matches!(e, CgroupError::ProtectedPid { .. }), "{pid}: {e}");
    }
    assert_eq!(read(&d, "cgroup.procs"), "");
    let e = m.move_process("nope", 4242, None).unwrap_err();
    assert!(matches!(e, CgroupError::NoSuchSlice { .. }), "{e}");
}

#[test]
fn slice_fd_is_a_directory_fd() {
    use std::os::fd::AsRawFd;
    let f = Fake::new(ALL, ALL);
    let m = f.manager();
    f.slice("web", false);
    let fd = m.slice_fd("web").unwrap();
    // SAFETY: fcntl on an fd we own.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
    assert_ne!(flags & libc::FD_CLOEXEC, 0);
    assert!(m.slice_fd("ghost").is_err());
}

#[test]
fn stats_of_a_fake_slice() {
    let f = Fake::new(ALL, ALL);
    let m = f.manager();
    let d = f.slice("web", false);
    fs::write(d.join("pids.current"), "3\n").unwrap();
    let s = m.stats("web").unwrap();
    assert_eq!(s.pids.unwrap().current, 3);
    assert!(!s.populated);
}

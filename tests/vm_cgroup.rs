//! In-VM tests of the `cgroup` module: every limit kind is set through the module's API and
//! the kernel's enforcement is measured (OOM kill counted, CPU share measured, fork refused,
//! IO rate measured, freeze stops progress, cgroup.kill empties the slice).
//!
//! They run inside the throwaway VM of `cargo xtask vm-test` (VMTEST=1, cgroup2 at
//! /sys/fs/cgroup with cpu, memory, io, pids enabled at the root); run on the host (with
//! `--ignored`) they fail and say so. The IO tests need `PROCMAN_VM_DISK`, a SCRATCH whole
//! disk (e.g. /dev/vda, set by vm-test); they overwrite its first 64 MiB.
//!
//! Workloads are forked children of this test process: each waits on a pipe until the parent
//! has moved it into its slice (so everything it allocates or does is charged there), and
//! does only raw syscalls and arithmetic after fork (no allocation: the parent is
//! multi-threaded). Tests are serialized by a lock: measured shares must not compete with
//! each other on the 2 vCPUs.
use std::ffi::CString;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use procman_cgroup::{Cgroup2Mount, Controller, DevNum, Limits, Manager, MemoryValue, SliceStats};
use procman_tests::{try_wait_until, wait_until};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The managed subtree of one test, removed afterwards (slices killed first: only our own
/// children are ever in them).
struct Subtree {
    m: Manager,
}

impl Drop for Subtree {
    fn drop(&mut self) {
        for s in self.m.list_slices().unwrap_or_default() {
            let _ = self.m.kill(&s);
            let _ = self.m.wait_empty(&s, Duration::from_secs(10));
            let _ = self.m.remove_slice(&s);
        }
        let _ = std::fs::remove_dir(self.m.root());
    }
}

/// Opens a fresh managed subtree for one test and checks the controllers it `needs`.
fn open(tag: &str, needs: &[Controller]) -> Subtree {
    let mount = Cgroup2Mount::discover().expect("cgroup2 mount in the VM");
    let root = format!("procman-vmtest-{}-{tag}.slice", std::process::id());
    let t = Subtree {
        m: Manager::open(mount, root).expect("open managed subtree"),
    };
    eprintln!("{}", t.m.capabilities());
    for c in needs {
        assert!(
            t.m.capabilities().is_enabled(*c),
            "the VM must offer {c}: {}",
            t.m.capabilities()
        );
    }
    t
}

fn limits(props: &[&str]) -> Limits {
    Limits::from_properties(props.iter().copied()).expect("valid limits")
}

/// Forks a child that waits until it is moved into `slice`, then runs `work` and exits with
/// its return value. `work` must not allocate (the parent is multi-threaded).
fn spawn_in(m: &Manager, slice: &str, work: impl FnOnce() -> i32) -> libc::pid_t {
    let mut fds = [0; 2];
    // SAFETY: plain syscalls on fds we own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        unsafe {
            libc::close(fds[1]);
            let mut b = 0u8;
            if libc::read(fds[0], (&mut b as *mut u8).cast(), 1) != 1 {
                libc::_exit(120);
            }
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or(121);
            libc::_exit(code);
        }
    }
    unsafe { libc::close(fds[0]) };
    let moved = m.move_process(slice, pid as u32, None);
    if moved.is_ok() {
        unsafe { libc::write(fds[1], b"g".as_ptr().cast(), 1) };
    }
    unsafe { libc::close(fds[1]) };
    if let Err(e) = moved {
        reap(pid, Duration::from_secs(5));
        panic!("moving pid {pid} into {slice}: {e}");
    }
    pid
}

/// Waits up to `timeout` for `pid`; returns its wait status, or None if still running.
fn wait_for(pid: libc::pid_t, timeout: Duration) -> Option<i32> {
    try_wait_until(&format!("pid {pid} to end"), timeout, || {
        let mut st = 0;
        // SAFETY: our own child.
        let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
        assert!(r >= 0, "waitpid {pid}: {}", std::io::Error::last_os_error());
        if r == pid {
            Ok(st)
        } else {
            Err("still running".into())
        }
    })
    .ok()
}

/// Kills and reaps a child that may still run.
fn reap(pid: libc::pid_t, timeout: Duration) -> i32 {
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_for(pid, timeout).expect("child reaped after SIGKILL")
}

fn still_running(pid: libc::pid_t) -> bool {
    wait_for(pid, Duration::ZERO).is_none()
}

fn busy_loop() -> i32 {
    let mut x: u64 = 1;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

fn usage_usec(m: &Manager, slice: &str) -> u64 {
    m.stats(slice).unwrap().cpu.expect("cpu.stat").usage_usec
}

/// Waits until the workload in `slice` has been on a CPU (cpu.stat usage_usec > 0).
fn wait_running(m: &Manager, slice: &str) {
    wait_until(
        &format!("the workload in {slice} to run"),
        Duration::from_secs(10),
        || match usage_usec(m, slice) {
            0 => Err("usage_usec 0".into()),
            _ => Ok(()),
        },
    );
}

/// CPU share of `slice` over `window` (CPU seconds per wall second).
fn cpu_share(m: &Manager, slice: &str, window: Duration) -> f64 {
    let (u0, t0) = (usage_usec(m, slice), Instant::now());
    // a measurement window: the share is a rate over time
    std::thread::sleep(window);
    let (u1, dt) = (usage_usec(m, slice), t0.elapsed());
    (u1 - u0) as f64 / 1e6 / dt.as_secs_f64()
}

#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn vm_memory_max_oom_kills_and_counts() {
    procman_tests::require_vm();
    let _g = serial();
    let t = open("mem", &[Controller::Memory]);
    let m = &t.m;
    let mut props = vec!["MemoryMax=32M"];
    // memory.swap.max exists only with swap accounting: probe it on a scratch slice, and
    // forbid swap when it is there so the OOM kill is deterministic.
    m.ensure_slice("probe", &Limits::default()).unwrap();
    if m.slice_path("probe")
        .unwrap()
        .join("memory.swap.max")
        .exists()
    {
        props.push("MemorySwapMax=0");
    } else {
        eprintln!("note: no memory.swap.max (no swap accounting); MemorySwapMax not set");
    }
    m.remove_slice("probe").unwrap();
    m.ensure_slice("mem", &limits(&props)).unwrap();
    assert_eq!(
        m.read_limits("mem").unwrap().memory_max,
        Some(MemoryValue::Bytes(32 << 20))
    );
    let before = m.stats("mem").unwrap().memory.unwrap().events.oom_kill;

    const LEN: usize = 128 << 20;
    let pid = spawn_in(m, "mem", || unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            LEN,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return 3;
        }
        let p = p.cast::<u8>();
        let mut off = 0;
        while off < LEN {
            std::ptr::write_volatile(p.add(off), 1);
            off += 4096;
        }
        0 // survived: the limit was not enforced
    });
    let st = match wait_for(pid, Duration::from_secs(60)) {
        Some(st) => st,
        None => panic!(
            "over-allocating child still alive after 60 s (status {})",
            reap(pid, Duration::from_secs(5))
        ),
    };
    assert!(
        libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGKILL,
        "child should be OOM-killed (SIGKILL); wait status {st:#x}"
    );
    let mem = m.stats("mem").unwrap().memory.unwrap();
    eprintln!("memory stats after OOM: {mem:?}");
    assert!(
        mem.events.oom_kill > before,
        "memory.events oom_kill did not increase: {:?}",
        mem.events
    );
    if let Some(peak) = mem.peak {
        assert!(
            peak <= (32 << 20) + (1 << 20),
            "peak {peak} over the 32M limit"
        );
    }
}

#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn vm_memory_high_throttles_without_killing() {
    procman_tests::require_vm();
    let _g = serial();
    let t = open("high", &[Controller::Memory]);
    let m = &t.m;
    m.ensure_slice("high", &limits(&["MemoryHigh=16M"]))
        .unwrap();
    const LEN: usize = 48 << 20;
    let pid = spawn_in(m, "high", || unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            LEN,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return 3;
        }
        let p = p.cast::<u8>();
        let mut off = 0;
        while off < LEN {
            std::ptr::write_volatile(p.add(off), 1);
            off += 4096;
        }
        libc::pause();
        0
    });
    wait_until(
        "memory.events high to count",
        Duration::from_secs(20),
        || {
            let events = m.stats("high").unwrap().memory.unwrap().events;
            if events.high > 0 {
                Ok(())
            } else {
                Err(format!("{events:?}"))
            }
        },
    );
    let mem = m.stats("high").unwrap().memory.unwrap();
    eprintln!("memory stats with MemoryHigh=16M: {mem:?}");
    assert_eq!(
        mem.events.oom_kill, 0,
        "memory.high must throttle, not kill"
    );
    assert!(still_running(pid), "memory.high must not kill the child");
    m.kill("high").unwrap();
    assert!(wait_for(pid, Duration::from_secs(10)).is_some());
}

#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn vm_cpu_quota_20_percent_is_held() {
    procman_tests::require_vm();
    let _g = serial();
    let t = open("cpu", &[Controller::Cpu]);
    let m = &t.m;
    m.ensure_slice("cpu", &limits(&["CPUQuota=20%"])).unwrap();
    let cpu_max = std::fs::read_to_string(m.slice_path("cpu").unwrap().join("cpu.max")).unwrap();
    assert_eq!(cpu_max.trim(), "20000 100000");
    let pid = spawn_in(m, "cpu", busy_loop);
    wait_running(m, "cpu");
    let share = cpu_share(m, "cpu", Duration::from_secs(3));
    let st = m.stats("cpu").unwrap().cpu.unwrap();
    eprintln!("CPUQuota=20%: measured share {share:.3} of one CPU; {st:?}");
    assert!(still_running(pid));
    m.kill("cpu").unwrap();
    wait_for(pid, Duration::from_secs(10)).expect("killed");
    assert!(
        (0.1..=0.3).contains(&share),
        "share {share:.3} outside 0.1..0.3"
    );
    assert!(st.nr_throttled.unwrap_or(0) > 0, "never throttled: {st:?}");

    // The machine form renders against the VM's CPU count.
    m.update_slice("cpu", &limits(&["CPUQuota=50% of machine"]))
        .unwrap();
    let n = m.machine().cpus as u64;
    let cpu_max = std::fs::read_to_string(m.slice_path("cpu").unwrap().join("cpu.max")).unwrap();
    assert_eq!(cpu_max.trim(), format!("{} 100000", 50_000 * n));
}

#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn vm_cpu_weight_splits_a_contended_cpu() {
    procman_tests::require_vm();
    let _g = serial();
    let t = open("weight", &[Controller::Cpu]);
    let m = &t.m;
    m.ensure_slice("lo", &limits(&["CPUWeight=100"])).unwrap();
    m.ensure_slice("hi", &limits(&["CPUWeight=400"])).unwrap();
    let pinned = || unsafe {
        // Both on CPU 0 so the weights decide the split.
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return 4;
        }
        busy_loop()
    };
    let a = spawn_in(m, "lo", pinned);
    let b = spawn_in(m, "hi", pinned);
    wait_running(m, "lo");
    wait_running(m, "hi");
    let (lo0, hi0, t0) = (usage_usec(m, "lo"), usage_usec(m, "hi"), Instant::now());
    // a measurement window: the shares are rates over time
    std::thread::sleep(Duration::from_secs(3));
    let (lo1, hi1) = (usage_usec(m, "lo"), usage_usec(m, "hi"));
    let dt = t0.elapsed().as_secs_f64();
    let (lo, hi) = ((lo1 - lo0) as f64 / 1e6 / dt, (hi1 - hi0) as f64 / 1e6 / dt);
    eprintln!("CPUWeight 100 vs 400 on one CPU: shares {lo:.3} vs {hi:.3}");
    assert!(still_running(a) && still_running(b));
    m.kill("lo").unwrap();
    m.kill("hi").unwrap();
    wait_for(a, Duration::from_secs(10)).expect("killed");
    wait_for(b, Duration::from_secs(10)).expect("killed");
    assert!(lo > 0.0, "the low-weight slice got no CPU at all");
    let ratio = hi / lo;
    assert!(
        (2.0..=8.0).contains(&ratio),
        "ratio {ratio:.2} outside 2..8 (expected ~4)"
    );
}

#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn vm_tasks_max_refuses_fork_with_eagain() {
    procman_tests::require_vm();
    let _g = serial();
    let t = open("pids", &[Controller::Pids]);
    let m = &t.m;
    m.ensure_slice("pids", &limits(&["TasksMax=4"])).unwrap();
    // The child (1 task) forks sleepers until fork fails: exits with the count when the
    // failure is EAGAIN, 200 + errno otherwise.
    let pid = spawn_in(m, "pids", || unsafe {
        let mut n = 0;
        loop {
            let c = libc::fork();
            if c == 0 {
                libc::pause();
                libc::_exit(0);
            }
            if c < 0 {
                let e = *libc::__errno_location();
                return if e == libc::EAGAIN {
                    n
                } else {
                    200 + e.min(50)
                };
            }
            n += 1;
            if n > 50 {
                return 199;
            }
        }
    });
    let st = wait_for(pid, Duration::from_secs(30)).expect("fork-counting child finished");
    assert!(libc::WIFEXITED(st), "wait status {st:#x}");
    let code = libc::WEXITSTATUS(st);
    let pids = m.stats("pids").unwrap().pids.unwrap();
    eprintln!("TasksMax=4: {code} forks succeeded; pids stats {pids:?}");
    assert_eq!(code, 3, "expected 3 forks then EAGAIN (exit code {code})");
    assert!(pids.max_events > 0, "pids.events max not counted: {pids:?}");
    // The sleepers are still there (3 tasks), then cgroup.kill removes them all.
    assert_eq!(pids.current, 3);
    m.kill("pids").unwrap();
    m.wait_empty("pids", Duration::from_secs(10)).unwrap();
}

#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn vm_freeze_stops_progress_and_thaw_resumes() {
    procman_tests::require_vm();
    let _g = serial();
    let t = open("freeze", &[]);
    let m = &t.m;
    m.ensure_slice("fz", &Limits::default()).unwrap();
    let pid = spawn_in(m, "fz", busy_loop);
    wait_running(m, "fz");
    m.freeze("fz").unwrap();
    m.wait_frozen("fz", true, Duration::from_secs(10)).unwrap();
    let frozen_share = cpu_share(m, "fz", Duration::from_secs(1));
    m.thaw("fz").unwrap();
    m.wait_frozen("fz", false, Duration::from_secs(10)).unwrap();
    let thawed_share = cpu_share(m, "fz", Duration::from_secs(1));
    eprintln!("busy loop share: frozen {frozen_share:.3}, thawed {thawed_share:.3}");
    assert!(still_running(pid));
    m.kill("fz").unwrap();
    wait_for(pid, Duration::from_secs(10)).expect("killed");
    assert!(
        frozen_share < 0.01,
        "frozen slice still ran: {frozen_share:.3}"
    );
    assert!(
        thawed_share > 0.3,
        "thawed slice did not run: {thawed_share:.3}"
    );
}

#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn vm_kill_empties_the_slice_including_forks() {
    procman_tests::require_vm();
    let _g = serial();
    let t = open("kill", &[]);
    let m = &t.m;
    m.ensure_slice("k", &Limits::default()).unwrap();
    let pid = spawn_in(m, "k", || unsafe {
        for _ in 0..3 {
            if libc::fork() == 0 {
                loop {
                    libc::pause();
                }
            }
        }
        loop {
            libc::pause();
        }
    });
    wait_until(
        "the child and its 3 forks in the slice",
        Duration::from_secs(20),
        || match m.pids("k").unwrap() {
            p if p.len() == 4 => Ok(()),
            p => Err(format!("pids {p:?}")),
        },
    );
    m.kill("k").unwrap();
    let st = wait_for(pid, Duration::from_secs(10)).expect("killed");
    assert!(libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGKILL);
    m.wait_empty("k", Duration::from_secs(10)).unwrap();
    assert!(m.remove_slice("k").unwrap());
}

/// The scratch disk for IO tests (`PROCMAN_VM_DISK`, set by vm-test).
fn vm_disk() -> (String, DevNum) {
    let disk = std::env::var("PROCMAN_VM_DISK")
        .expect("PROCMAN_VM_DISK is set by vm-test (a scratch whole disk, e.g. /dev/vda)");
    use std::os::unix::fs::MetadataExt;
    let rdev = std::fs::metadata(&disk)
        .unwrap_or_else(|e| panic!("PROCMAN_VM_DISK={disk}: {e}"))
        .rdev();
    (
        disk,
        DevNum {
            major: libc::major(rdev),
            minor: libc::minor(rdev),
        },
    )
}

const IO_SPAN: u64 = 64 << 20;

/// Forks a child doing O_DIRECT IO of `bs` bytes in a loop on `disk` (write when `write`).
fn spawn_io(m: &Manager, slice: &str, disk: &str, write: bool, bs: usize) -> libc::pid_t {
    let path = CString::new(disk).unwrap();
    // Only addresses go into the child: it must not free (or allocate) after fork.
    let path_addr = path.as_ptr() as usize;
    let layout = std::alloc::Layout::from_size_align(bs, 4096).unwrap();
    // SAFETY: non-zero size; freed by the child's exit / below in the parent.
    let buf = unsafe { std::alloc::alloc_zeroed(layout) };
    assert!(!buf.is_null());
    let buf_addr = buf as usize;
    let pid = spawn_in(m, slice, move || unsafe {
        let flags = if write {
            libc::O_WRONLY
        } else {
            libc::O_RDONLY
        };
        let fd = libc::open(
            path_addr as *const libc::c_char,
            flags | libc::O_DIRECT | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return 3;
        }
        let mut off: u64 = 0;
        loop {
            let p = buf_addr as *mut libc::c_void;
            let r = if write {
                libc::pwrite(fd, p, bs, off as libc::off_t)
            } else {
                libc::pread(fd, p, bs, off as libc::off_t)
            };
            if r != bs as isize {
                return 4;
            }
            off = (off + bs as u64) % IO_SPAN;
        }
    });
    // SAFETY: allocated above with this layout; the child has its own copy.
    unsafe { std::alloc::dealloc(buf, layout) };
    drop(path);
    pid
}

fn io_counters(st: &SliceStats, dev: DevNum) -> (u64, u64, u64, u64) {
    st.io
        .as_ref()
        .and_then(|v| v.iter().find(|e| e.device == dev.to_string()))
        .map(|e| (e.rbytes, e.wbytes, e.rios, e.wios))
        .unwrap_or_default()
}

/// Measures (read B/s, write B/s, read IO/s, write IO/s) of `slice` on `dev` over `window`.
fn io_rates(m: &Manager, slice: &str, dev: DevNum, window: Duration) -> [f64; 4] {
    let (a, t0) = (io_counters(&m.stats(slice).unwrap(), dev), Instant::now());
    // a measurement window: the rates are over time
    std::thread::sleep(window);
    let b = io_counters(&m.stats(slice).unwrap(), dev);
    let dt = t0.elapsed().as_secs_f64();
    [
        (b.0 - a.0) as f64 / dt,
        (b.1 - a.1) as f64 / dt,
        (b.2 - a.2) as f64 / dt,
        (b.3 - a.3) as f64 / dt,
    ]
}

fn run_io(m: &Manager, slice: &str, disk: &str, dev: DevNum, write: bool, bs: usize) -> [f64; 4] {
    let pid = spawn_io(m, slice, disk, write, bs);
    wait_until(
        &format!("IO by the child in {slice} on {dev}"),
        Duration::from_secs(10),
        || {
            let (rb, wb, _, _) = io_counters(&m.stats(slice).unwrap(), dev);
            if rb + wb > 0 {
                return Ok(());
            }
            if let Some(st) = wait_for(pid, Duration::ZERO) {
                panic!(
                    "IO child ended before any IO: wait status {st:#x} (exit 3 = open failed, 4 = IO failed)"
                );
            }
            Err("no bytes counted in io.stat yet".into())
        },
    );
    let r = io_rates(m, slice, dev, Duration::from_secs(3));
    let alive = still_running(pid);
    m.kill(slice).unwrap();
    let st = wait_for(pid, Duration::from_secs(20)).expect("IO child killed");
    assert!(
        alive,
        "IO child ended early: wait status {st:#x} (exit 3 = open failed, 4 = IO failed)"
    );
    r
}

#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn vm_io_bandwidth_limits_hold() {
    procman_tests::require_vm();
    let (disk, dev) = vm_disk();
    let _g = serial();
    let t = open("iobw", &[Controller::Io]);
    let m = &t.m;
    let w = format!("IOWriteBandwidthMax={disk} 4M");
    let r = format!("IOReadBandwidthMax={dev} 2M");
    m.ensure_slice("io", &limits(&[&w, &r])).unwrap();
    let io_max = std::fs::read_to_string(m.slice_path("io").unwrap().join("io.max")).unwrap();
    eprintln!("io.max: {io_max}");
    assert!(
        io_max.contains(&format!("{dev} rbps=2097152 wbps=4194304")),
        "{io_max}"
    );

    let mib = (1u64 << 20) as f64;
    let wr = run_io(m, "io", &disk, dev, true, 256 << 10)[1] / mib;
    m.wait_empty("io", Duration::from_secs(20)).unwrap();
    let rd = run_io(m, "io", &disk, dev, false, 256 << 10)[0] / mib;
    eprintln!("IO bandwidth: write {wr:.2} MiB/s (limit 4), read {rd:.2} MiB/s (limit 2)");
    assert!(
        (2.0..=5.0).contains(&wr),
        "write rate {wr:.2} MiB/s not held near 4 MiB/s"
    );
    assert!(
        (1.0..=2.5).contains(&rd),
        "read rate {rd:.2} MiB/s not held near 2 MiB/s"
    );

    // Lifting the limits (declarative re-apply) resets the device line.
    m.update_slice("io", &Limits::default()).unwrap();
    let io_max = std::fs::read_to_string(m.slice_path("io").unwrap().join("io.max")).unwrap();
    assert!(!io_max.contains("wbps=4194304"), "{io_max}");
}

#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn vm_io_iops_limits_hold() {
    procman_tests::require_vm();
    let (disk, dev) = vm_disk();
    let _g = serial();
    let t = open("iops", &[Controller::Io]);
    let m = &t.m;
    let w = format!("IOWriteIOPSMax={disk} 50");
    let r = format!("IOReadIOPSMax={disk} 50");
    m.ensure_slice("iops", &limits(&[&w, &r])).unwrap();
    let wr = run_io(m, "iops", &disk, dev, true, 4096)[3];
    m.wait_empty("iops", Duration::from_secs(20)).unwrap();
    let rd = run_io(m, "iops", &disk, dev, false, 4096)[2];
    eprintln!("IOPS: write {wr:.1}/s, read {rd:.1}/s (limit 50 each)");
    assert!(
        (25.0..=65.0).contains(&wr),
        "write IOPS {wr:.1} not held near 50"
    );
    assert!(
        (25.0..=65.0).contains(&rd),
        "read IOPS {rd:.1} not held near 50"
    );
}

#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn vm_unknown_device_is_refused_before_writing() {
    procman_tests::require_vm();
    let _g = serial();
    let t = open("part", &[Controller::Io]);
    let m = &t.m;
    m.ensure_slice("p", &Limits::default()).unwrap();
    // A device number that does not exist is refused with the value named; nothing written.
    let e = m
        .update_slice("p", &limits(&["IOReadBandwidthMax=4000:4000 1M"]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("4000:4000") && e.contains("accepted forms"),
        "{e}"
    );
    let io_max = std::fs::read_to_string(m.slice_path("p").unwrap().join("io.max")).unwrap();
    assert_eq!(io_max.trim(), "");
}

#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn vm_restart_readopts_slices_and_keeps_limits() {
    procman_tests::require_vm();
    let _g = serial();
    let t = open(
        "adopt",
        &[Controller::Memory, Controller::Cpu, Controller::Pids],
    );
    let m = &t.m;
    let l = limits(&[
        "MemoryMax=64M",
        "CPUQuota=20%",
        "CPUWeight=300",
        "TasksMax=10",
    ]);
    m.ensure_slice("svc", &l).unwrap();
    let pid = spawn_in(m, "svc", || unsafe {
        libc::pause();
        0
    });
    // A restarted agent: a new Manager on the same subtree.
    let mount = Cgroup2Mount::discover().unwrap();
    let m2 = Manager::open(mount, m.root().file_name().unwrap()).unwrap();
    assert_eq!(m2.list_slices().unwrap(), ["svc"]);
    assert_eq!(
        m2.read_limits("svc").unwrap(),
        l,
        "limits survive the agent"
    );
    assert_eq!(
        m2.ensure_slice("svc", &l).unwrap(),
        procman_cgroup::Ensured::Adopted
    );
    assert_eq!(
        m2.pids("svc").unwrap(),
        [pid as u32],
        "re-apply moves nothing"
    );
    drop(m2);
    m.kill("svc").unwrap();
    wait_for(pid, Duration::from_secs(10)).expect("killed");
}

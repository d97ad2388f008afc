//! Kernel facts procman relies on, proven on a real cgroup v2 kernel inside the test VM
//! (`cargo xtask vm-test`; run on the host with `--ignored`, every test fails and says so).
//!
//! The tests write cgroup files directly (not through procman's cgroup module) so they
//! pin down the kernel's behaviour itself: memory.max OOM-kills, cpu.max throttles, pids.max
//! refuses forks, io.max throttles direct IO, cgroup.freeze stops a process, and the BPF
//! object loads and reports exec/exit. Each test uses its own uniquely named cgroup and
//! removes it afterwards. Budgets are loose: the VM runs under TCG, 10-30x slower than
//! native.
use std::{
    fs,
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    thread::sleep,
    time::{Duration, Instant},
};

use procman_tests::{try_wait_until, wait_until};

const CG_ROOT: &str = "/sys/fs/cgroup";

/// A cgroup created for one test, killed and removed on drop.
struct Cg {
    path: PathBuf,
}

impl Cg {
    fn new(tag: &str) -> Cg {
        let path = Path::new(CG_ROOT).join(format!("procman-vmtest-{tag}-{}", std::process::id()));
        if path.exists() {
            let _ = fs::remove_dir(&path);
        }
        fs::create_dir(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        Cg { path }
    }
    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
    fn write(&self, name: &str, value: &str) {
        fs::write(self.file(name), value)
            .unwrap_or_else(|e| panic!("writing {value:?} to {}: {e}", self.file(name).display()));
    }
    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.file(name))
            .unwrap_or_else(|e| panic!("reading {}: {e}", self.file(name).display()))
    }
    /// The value of `key` in a flat-keyed file (`key value` lines: memory.events, cpu.stat).
    fn keyed(&self, name: &str, key: &str) -> u64 {
        let text = self.read(name);
        text.lines()
            .filter_map(|l| l.split_once(' '))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {}:\n{text}", self.file(name).display()))
    }
}

impl Drop for Cg {
    fn drop(&mut self) {
        let _ = fs::write(self.file("cgroup.freeze"), "0");
        let _ = fs::write(self.file("cgroup.kill"), "1");
        // rmdir succeeds once the killed processes are gone
        let removed = try_wait_until(
            &format!("the removal of {}", self.path.display()),
            Duration::from_secs(10),
            || fs::remove_dir(&self.path).map_err(|e| e.to_string()),
        );
        if let Err(e) = removed {
            eprintln!("warning: {e}");
        }
    }
}

/// A forked child placed into a cgroup before it runs its body.
struct Child {
    pid: libc::pid_t,
    reaped: bool,
}

impl Child {
    /// Forks; the child waits until the parent has moved it into `cg`, then runs `body` and
    /// exits with its return value. `body` runs in a forked copy of a multi-threaded process:
    /// it must only make raw system calls (no allocation, no locks).
    fn spawn_in<F: FnOnce() -> i32>(cg: &Cg, body: F) -> Child {
        let mut fds = [0; 2];
        // SAFETY: plain pipe/fork; the child only does raw syscalls and _exit.
        unsafe {
            assert_eq!(libc::pipe(fds.as_mut_ptr()), 0, "pipe");
            let pid = libc::fork();
            assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
            if pid == 0 {
                libc::close(fds[1]);
                let mut b = 0u8;
                if libc::read(fds[0], (&mut b as *mut u8).cast(), 1) != 1 {
                    libc::_exit(120);
                }
                libc::_exit(body());
            }
            libc::close(fds[0]);
            let child = Child { pid, reaped: false };
            cg.write("cgroup.procs", &pid.to_string());
            assert_eq!(
                libc::write(fds[1], [1u8].as_ptr().cast(), 1),
                1,
                "releasing the child"
            );
            libc::close(fds[1]);
            child
        }
    }

    /// Waits for the child; returns the raw wait status.
    fn wait(&mut self) -> i32 {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
        assert_eq!(r, self.pid, "waitpid: {}", std::io::Error::last_os_error());
        self.reaped = true;
        status
    }

    /// CPU time (utime + stime, clock ticks) from /proc/PID/stat.
    fn cpu_ticks(&self) -> u64 {
        let stat =
            fs::read_to_string(format!("/proc/{}/stat", self.pid)).expect("reading /proc/PID/stat");
        let after = &stat[stat.rfind(')').expect("comm") + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        // after ")": field 3 (state) is f[0]; utime = field 14 -> f[11], stime -> f[12].
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

fn busy_loop() -> i32 {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

/// Waits until `key` in the flat-keyed file `name` of `cg` satisfies `ok`; returns the value.
fn wait_keyed(cg: &Cg, name: &str, key: &str, ok: impl Fn(u64) -> bool) -> u64 {
    wait_until(
        &format!("{name} {key} to change"),
        Duration::from_secs(10),
        || match cg.keyed(name, key) {
            v if ok(v) => Ok(v),
            v => Err(format!("{key} {v}")),
        },
    )
}

#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn memory_max_oom_kills_an_over_allocating_child() {
    procman_tests::require_vm();
    let cg = Cg::new("mem");
    cg.write("memory.max", &(32u64 << 20).to_string());
    if cg.file("memory.swap.max").exists() {
        cg.write("memory.swap.max", "0");
    }
    assert_eq!(cg.keyed("memory.events", "oom_kill"), 0);
    let mut child = Child::spawn_in(&cg, || {
        let len = 256usize << 20;
        // SAFETY: anonymous mapping touched page by page.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if p == libc::MAP_FAILED {
                return 2;
            }
            let p = p.cast::<u8>();
            for off in (0..len).step_by(4096) {
                std::ptr::write_volatile(p.add(off), 1);
            }
        }
        0 // survived 256 MiB under a 32 MiB limit: the limit did not work
    });
    let status = child.wait();
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
        "the child should be SIGKILLed by the OOM killer, wait status {status:#x}"
    );
    let kills = cg.keyed("memory.events", "oom_kill");
    let peak = cg
        .file("memory.peak")
        .exists()
        .then(|| cg.read("memory.peak").trim().to_string());
    println!(
        "memory.max=32MiB: child SIGKILLed, memory.events oom_kill={kills}, memory.peak={peak:?}"
    );
    assert!(
        kills >= 1,
        "memory.events oom_kill should count the kill:\n{}",
        cg.read("memory.events")
    );
}

#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn cpu_max_holds_a_busy_loop_near_its_quota() {
    procman_tests::require_vm();
    let cg = Cg::new("cpu");
    let _child = Child::spawn_in(&cg, busy_loop);
    let share = |secs: f64| {
        let u0 = cg.keyed("cpu.stat", "usage_usec");
        let t0 = Instant::now();
        // a measurement window: the share is a rate over time
        sleep(Duration::from_secs_f64(secs));
        let u1 = cg.keyed("cpu.stat", "usage_usec");
        (u1 - u0) as f64 / t0.elapsed().as_micros() as f64
    };
    wait_keyed(&cg, "cpu.stat", "usage_usec", |u| u > 0); // the loop runs
    let unlimited = share(2.0);
    cg.write("cpu.max", "20000 100000");
    wait_keyed(&cg, "cpu.stat", "nr_throttled", |n| n > 0); // the quota bites
    let thr0 = cg.keyed("cpu.stat", "nr_throttled");
    let limited = share(4.0);
    let throttled = cg.keyed("cpu.stat", "nr_throttled") - thr0;
    println!(
        "cpu.max=20%: busy loop share unlimited {unlimited:.3} CPU, limited {limited:.3} CPU, \
         throttled {throttled} periods"
    );
    assert!(
        unlimited > 0.5,
        "an unlimited busy loop should use most of a CPU, got {unlimited:.3}"
    );
    assert!(
        (0.10..=0.30).contains(&limited),
        "20% quota: measured share {limited:.3} outside 0.10..0.30"
    );
    assert!(
        throttled > 0,
        "cpu.stat nr_throttled should grow under the quota"
    );
}

#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn pids_max_refuses_forks() {
    procman_tests::require_vm();
    let cg = Cg::new("pids");
    cg.write("pids.max", "5");
    // The child itself counts: it may create 4 more processes.
    let mut child = Child::spawn_in(&cg, || {
        let mut kids = [0 as libc::pid_t; 16];
        let mut n = 0;
        let mut result = 0;
        // SAFETY: raw fork/pause/kill/waitpid only.
        unsafe {
            while n < kids.len() {
                let pid = libc::fork();
                if pid == 0 {
                    libc::pause();
                    libc::_exit(0);
                }
                if pid < 0 {
                    let errno = *libc::__errno_location();
                    result = if errno == libc::EAGAIN {
                        n as i32
                    } else {
                        100 + errno
                    };
                    break;
                }
                kids[n] = pid;
                n += 1;
            }
            if n == kids.len() {
                result = 99; // never refused
            }
            for &k in &kids[..n] {
                libc::kill(k, libc::SIGKILL);
                libc::waitpid(k, std::ptr::null_mut(), 0);
            }
        }
        result
    });
    let status = child.wait();
    assert!(
        libc::WIFEXITED(status),
        "child died: wait status {status:#x}"
    );
    let code = libc::WEXITSTATUS(status);
    let refused = cg.keyed("pids.events", "max");
    println!("pids.max=5: {code} forks succeeded before EAGAIN, pids.events max={refused}");
    assert!(
        code < 99,
        "fork failed with errno {} instead of EAGAIN (99 = never refused)",
        code - 100
    );
    assert_eq!(code, 4, "with pids.max=5 the child plus 4 forks fit");
    assert!(
        refused >= 1,
        "pids.events max should count the refused fork"
    );
}

/// Bytes per second of `total` bytes of direct IO by a child in `cg`.
fn direct_io_rate(cg: &Cg, disk: &Path, write: bool, total: usize) -> f64 {
    const BLOCK: usize = 1 << 20;
    let f = fs::OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_DIRECT)
        .open(disk)
        .unwrap_or_else(|e| panic!("opening {} with O_DIRECT: {e}", disk.display()));
    use std::os::fd::AsRawFd;
    let fd = f.as_raw_fd();
    // SAFETY: an anonymous, page-aligned buffer (O_DIRECT needs alignment).
    let buf = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            BLOCK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(buf, libc::MAP_FAILED);
    let t0 = Instant::now();
    let mut child = Child::spawn_in(cg, move || {
        for i in 0..total / BLOCK {
            let off = (i * BLOCK) as libc::off_t;
            // SAFETY: raw pread/pwrite on an inherited fd into a mapped buffer.
            let n = unsafe {
                if write {
                    libc::pwrite(fd, buf, BLOCK, off)
                } else {
                    libc::pread(fd, buf, BLOCK, off)
                }
            };
            if n != BLOCK as isize {
                return 3;
            }
        }
        0
    });
    let status = child.wait();
    let secs = t0.elapsed().as_secs_f64();
    // SAFETY: unmapping our own mapping.
    unsafe { libc::munmap(buf, BLOCK) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "direct IO child failed: {status:#x}"
    );
    total as f64 / secs
}

#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn io_max_limits_direct_io_on_the_virtio_disk() {
    procman_tests::require_vm();
    let disk =
        PathBuf::from(std::env::var("PROCMAN_VM_DISK").expect("PROCMAN_VM_DISK is set by vm-test"));
    let rdev = fs::metadata(&disk)
        .unwrap_or_else(|e| panic!("{}: {e}", disk.display()))
        .rdev();
    let dev = format!("{}:{}", libc::major(rdev), libc::minor(rdev));
    let cg = Cg::new("io");
    const MIB: f64 = 1048576.0;
    let base_w = direct_io_rate(&cg, &disk, true, 16 << 20) / MIB;
    let base_r = direct_io_rate(&cg, &disk, false, 16 << 20) / MIB;
    cg.write(
        "io.max",
        &format!("{dev} wbps={} rbps={}", 4 << 20, 2 << 20),
    );
    let w = direct_io_rate(&cg, &disk, true, 8 << 20) / MIB;
    let r = direct_io_rate(&cg, &disk, false, 4 << 20) / MIB;
    let stat = cg.read("io.stat");
    println!(
        "io.max on {} ({dev}): write {w:.2} MiB/s (limit 4, unlimited {base_w:.1}), \
         read {r:.2} MiB/s (limit 2, unlimited {base_r:.1}); io.stat: {}",
        disk.display(),
        stat.trim()
    );
    assert!(
        stat.contains(&dev),
        "io.stat should account IO on {dev}:\n{stat}"
    );
    assert!(
        w <= 4.0 * 1.3,
        "write rate {w:.2} MiB/s exceeds the 4 MiB/s limit"
    );
    assert!(
        r <= 2.0 * 1.3,
        "read rate {r:.2} MiB/s exceeds the 2 MiB/s limit"
    );
    assert!(
        w >= 4.0 * 0.3 && r >= 2.0 * 0.3,
        "throttled IO far below its limit: {w:.2}/{r:.2}"
    );
    assert!(
        base_w > 4.0 * 1.5,
        "unlimited write {base_w:.1} MiB/s too slow to prove the limit"
    );
    assert!(
        base_r > 2.0 * 1.5,
        "unlimited read {base_r:.1} MiB/s too slow to prove the limit"
    );
}

#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn cgroup_freeze_stops_a_process() {
    procman_tests::require_vm();
    let cg = Cg::new("freeze");
    let child = Child::spawn_in(&cg, busy_loop);
    wait_until(
        "the busy loop to run",
        Duration::from_secs(10),
        || match child.cpu_ticks() {
            0 => Err("0 CPU ticks".into()),
            _ => Ok(()),
        },
    );
    cg.write("cgroup.freeze", "1");
    wait_keyed(&cg, "cgroup.events", "frozen", |f| f == 1);
    let t1 = child.cpu_ticks();
    // a measurement window: no CPU time at all over 1.5 s
    sleep(Duration::from_millis(1500));
    let t2 = child.cpu_ticks();
    cg.write("cgroup.freeze", "0");
    wait_keyed(&cg, "cgroup.events", "frozen", |f| f == 0);
    let t3 = wait_until(
        "the thawed busy loop to run again",
        Duration::from_secs(10),
        || match child.cpu_ticks() {
            t if t > t2 => Ok(t),
            t => Err(format!("CPU ticks {t}, {t2} when frozen")),
        },
    );
    println!("cgroup.freeze: CPU ticks frozen {t1} -> {t2} over 1.5 s, thawed -> {t3}");
    assert_eq!(t1, t2, "a frozen process must not run");
}

#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn bpf_reports_exec_and_exit_in_the_guest() {
    procman_tests::require_vm();
    use procman_agent::events::{bpf, SourceMsg, SourceOptions, CHANNEL_CAPACITY};
    use procman_common::api::{EventKind, SourceKind};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::channel(CHANNEL_CAPACITY);
        let info =
            bpf::start(&SourceOptions::default(), tx).expect("the BPF object loads and attaches");
        assert_eq!(info.kind, SourceKind::Bpf);
        let status = std::process::Command::new("/bin/sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        let pid = status.id();
        let out = status.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(7));
        let (mut fork, mut exec, mut exit) = (None, None, None);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while exec.is_none() || exit.is_none() {
            let msg = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .unwrap_or_else(|_| panic!("no exec+exit events for pid {pid} within 30 s"))
                .expect("event source closed");
            let SourceMsg::Event(ev) = msg else { continue };
            if ev.pid != pid {
                continue;
            }
            match ev.kind {
                EventKind::Fork => fork = Some(ev),
                EventKind::Exec => exec = Some(ev),
                EventKind::Exit => exit = Some(ev),
            }
        }
        let (exec, exit) = (exec.unwrap(), exit.unwrap());
        println!(
            "bpf: pid {pid}: fork seen={} (ppid {:?}), exec {:?} comm {:?}, exit code {:?}; \
             kernel submitted {} records, dropped {}",
            fork.is_some(),
            fork.as_ref().map(|f| f.ppid),
            exec.filename,
            exec.comm,
            exit.exit_code,
            info.counters.submitted(),
            info.counters.dropped()
        );
        assert_eq!(exec.filename.as_deref(), Some("/bin/sh"));
        assert_eq!(exit.exit_code, Some(7));
        assert_eq!(exit.exit_signal, None);
        if let Some(f) = fork {
            assert_eq!(
                f.ppid,
                std::process::id(),
                "fork event names the test as the parent"
            );
        }
    });
}

/// statm's resident pages of `pid`.
fn statm_rss_pages(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/statm"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

/// The sampler's task iterator loads on this kernel (CO-RE: `mm->rss_stat` is an atomic array
/// before 6.2 and percpu counters after) and reports RSS as statm does (within the percpu
/// counters' batch), for a single-threaded
/// child (the direct-load path) and for this multi-threaded test process holding 64 MiB (the
/// thread walk), with the thread count /proc shows; the opt-in scheduling tracer loads too.
#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn task_iterator_reads_rss_and_threads_in_the_guest() {
    procman_tests::require_vm();
    use procman_agent::monitor::iter::TaskIter;
    let mut it = TaskIter::load().expect("the sampler's task iterator loads");
    let held: Vec<u8> = std::hint::black_box(vec![1u8; 64 << 20]); // touched: every page resident
                                                                   // a single-threaded child that holds a few MiB and waits
    let mut child = std::process::Command::new("/bin/sh")
        .args([
            "-c",
            "x=$(head -c 4194304 /dev/zero | tr '\\0' a); echo ready; read line",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(procman_tests::first_line(&mut child), "ready");
    let me = std::process::id();
    for (pid, min_pages) in [(child.id(), 1024), (me, 16384)] {
        // statm and the iterator read the same counters: retry until two reads agree in time
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let before = statm_rss_pages(pid);
            let r = it
                .sweep(true)
                .unwrap()
                .iter()
                .find(|r| r.tgid == pid)
                .expect("the process is reported");
            let after = statm_rss_pages(pid);
            let threads = fs::read_dir(format!("/proc/{pid}/task")).unwrap().count() as u32;
            // statm sums the percpu counters' CPU-local parts too since "mm: fix the
            // inaccurate memory statistics issue for users" (6.16, backported to Debian's
            // 6.12); the iterator reads their shared part, up to a batch (32 pages, or
            // 2 x CPUs) per CPU behind
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            let slack = 32f64.max(2.0 * cpus) * cpus;
            let lo = before.min(after) as f64 * 0.99 - slack;
            let hi = before.max(after) as f64 * 1.01 + slack;
            println!(
                "iter: pid {pid}: rss {} pages (statm {before}..{after}), threads {} (/proc {threads}), flags {:#x}",
                r.rss_pages, r.nr_threads, r.flags
            );
            if (lo..=hi).contains(&(r.rss_pages as f64)) {
                assert!(r.rss_pages >= min_pages, "{r:?}");
                assert_eq!(r.nr_threads, threads, "{r:?}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "RSS never agreed with statm: {r:?}"
            );
            sleep(Duration::from_millis(200));
        }
    }
    drop(held);
    drop(child.stdin.take());
    let _ = child.kill();
    child.wait().unwrap();
    let tracer = procman_agent::events::sched::SchedReader::start();
    assert!(
        tracer.is_ok(),
        "the scheduling tracer loads: {:#}",
        tracer.err().unwrap()
    );
}

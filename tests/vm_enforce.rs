//! Enforcement through the product's own commands, on a real cgroup v2 kernel (the test VM):
//! the real `procman-agent` and `procman` binaries set each limit kind and the kernel enforces
//! it. Each test runs its own agent with its own managed root; budgets are loose (TCG).
use procman_tests::{http_get, require_vm, wait_until, Agent};
use std::{
    process::Command,
    sync::Mutex,
    time::{Duration, Instant},
};

/// One at a time: they measure CPU and IO shares.
static SERIAL: Mutex<()> = Mutex::new(());

use procman_tests::VmRoot as Root;

fn procman(agent: &Agent, args: &[&str]) -> std::process::Output {
    let out = agent.cli(args);
    assert!(
        out.status.success() || args[0] == "run",
        "procman {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn limit_memory_oom_kills_an_over_allocating_process() {
    require_vm();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = Root::new("mem");
    let agent = Agent::start(&root.config(), &[]);
    // waits a moment (to be limited first), then allocates and touches 256 MiB
    let mut hog = Command::new("python3")
        .args([
            "-c",
            "import time; time.sleep(1.5); b = bytearray(256 << 20); time.sleep(5)",
        ])
        .spawn()
        .unwrap();
    procman(
        &agent,
        &[
            "limit",
            "--pid",
            &hog.id().to_string(),
            "--slice",
            "mem",
            "--memory",
            "64M",
        ],
    );
    assert_eq!(
        root.read("mem", "memory.max").trim(),
        (64u64 << 20).to_string()
    );
    let st = hog.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(9), "OOM-killed: {st:?}");
    assert!(
        root.keyed("mem", "memory.events", "oom_kill") >= 1,
        "{}",
        root.read("mem", "memory.events")
    );
}

#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn run_with_cpu_quota_holds_a_busy_loop_near_it() {
    require_vm();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = Root::new("cpu");
    let agent = Agent::start(&root.config(), &[]);
    let t0 = Instant::now();
    let out = procman(
        &agent,
        &[
            "run",
            "--slice",
            "cpu",
            "--cpu",
            "20%",
            "--",
            "timeout",
            "4",
            "sh",
            "-c",
            "while :; do :; done",
        ],
    );
    let wall = t0.elapsed().as_secs_f64();
    assert_eq!(
        out.status.code(),
        Some(124),
        "timeout's status passes through"
    );
    let used = root.keyed("cpu", "cpu.stat", "usage_usec") as f64 / 1e6;
    let share = used / wall;
    eprintln!("cpu 20%: {used:.2}s of CPU in {wall:.2}s = {share:.3}");
    assert!((0.1..=0.3).contains(&share), "share {share}");
    assert!(root.keyed("cpu", "cpu.stat", "nr_throttled") > 0);
}

#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn run_with_tasks_max_stops_a_fork_bomb() {
    require_vm();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = Root::new("pids");
    let agent = Agent::start(&root.config(), &[]);
    let bomb = "import os, time\nn = 0\nfor i in range(60):\n    try:\n        if os.fork() == 0:\n            time.sleep(3)\n            os._exit(0)\n        n += 1\n    except OSError:\n        pass\nprint(n)\n";
    let out = procman(
        &agent,
        &[
            "run", "--slice", "pids", "--pids", "10", "--", "python3", "-c", bomb,
        ],
    );
    let forks: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_eq!(
        forks, 9,
        "TasksMax=10 with python itself: 9 forks, the other 51 refused"
    );
    assert!(root.keyed("pids", "pids.events", "max") > 0);
}

#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn run_with_io_write_limit_holds_direct_io_near_it() {
    require_vm();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let disk = std::env::var("PROCMAN_VM_DISK").expect("PROCMAN_VM_DISK is set by vm-test");
    let root = Root::new("io");
    let agent = Agent::start(&root.config(), &[]);
    let t0 = Instant::now();
    let dd = format!("dd if=/dev/zero of={disk} bs=1M count=12 oflag=direct status=none");
    let out = procman(
        &agent,
        &[
            "run",
            "--slice",
            "io",
            "--io-write",
            &format!("4M:{disk}"),
            "--",
            "sh",
            "-c",
            &dd,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rate = 12.0 / t0.elapsed().as_secs_f64();
    eprintln!("io write 4M/s: measured {rate:.2} MiB/s");
    assert!((2.0..=5.0).contains(&rate), "rate {rate}");
}

#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn freeze_and_thaw_a_process() {
    require_vm();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = Root::new("frz");
    let agent = Agent::start(&root.config(), &[]);
    let mut busy = Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .spawn()
        .unwrap();
    let pid = busy.id().to_string();
    let cpu = || {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let f: Vec<&str> = s.rsplit_once(')').unwrap().1.split_whitespace().collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    };
    procman(&agent, &["freeze", &pid]);
    let slice = format!("pid-{pid}");
    assert_eq!(root.keyed(&slice, "cgroup.events", "frozen"), 1);
    let a = cpu();
    // a measurement window: no CPU time at all over 1.5 s
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(cpu(), a, "no CPU time while frozen");
    procman(&agent, &["thaw", &pid]);
    wait_until(
        "the thawed loop to run again",
        Duration::from_secs(10),
        || match cpu() {
            t if t > a => Ok(()),
            t => Err(format!("CPU ticks {t}, {a} when frozen")),
        },
    );
    busy.kill().unwrap();
    busy.wait().unwrap();
}

/// kill -9 of the agent during a placement storm: every placed process is still in its
/// slice and the limits are unchanged after a restart, which lists the slice again.
#[test]
#[ignore = "needs the cgroup v2 test VM: run `cargo xtask vm-test`"]
fn agent_killed_during_placement_storm_loses_nothing() {
    require_vm();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = Root::new("adopt");
    let cfg = format!(
        "{}[[slice]]\nname = \"workers\"\nlimits = {{ MemoryMax = \"256M\", TasksMax = 500 }}\n[[rule]]\ncomm = \"pmt-worker\"\nslice = \"workers\"\n",
        root.config()
    );
    let mut agent = Agent::start(&cfg, &[]);
    let worker = agent.dir.path().join("pmt-worker");
    std::fs::copy("/bin/sleep", &worker).unwrap();
    let mut kids = Vec::new();
    for i in 0..60 {
        kids.push(Command::new(&worker).arg("60").spawn().unwrap());
        if i == 30 {
            agent.child.kill().unwrap(); // mid-storm
            agent.child.wait().unwrap();
        }
    }
    let agent2 = Agent::start(&cfg, &[]);
    // Workers exec'd while no agent ran are not placed (no agent saw their exec); what
    // matters is that nothing already placed left its slice and no limit was lifted.
    let placed: Vec<u32> = std::fs::read_to_string(root.path().join("workers/cgroup.procs"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(
        placed.len() >= 20,
        "most of the first 31 workers were placed before the kill: {}",
        placed.len()
    );
    assert_eq!(
        root.read("workers", "memory.max").trim(),
        (256u64 << 20).to_string(),
        "limits unchanged"
    );
    assert_eq!(root.read("workers", "pids.max").trim(), "500");
    let (code, list) = http_get(&agent2.socket, "/api/slices");
    assert_eq!(code, 200);
    let w = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "workers")
        .expect("listed");
    for p in &placed {
        assert!(
            w["pids"].as_array().unwrap().iter().any(|x| x == p),
            "{p} listed"
        );
    }
    for k in &mut kids {
        let _ = k.kill();
        let _ = k.wait();
    }
}

//! Helpers shared by procman's integration tests.
//!
//! Two kinds of tests live in this crate, and neither ever passes by skipping:
//! - host tests (`tests/*.rs` not starting with `vm_`): most need root on the host (BPF,
//!   the proc connector, moves under the cgroup2 mount) but never touch controllers. Those are
//!   `#[ignore = "needs root: <why>"]`, so a non-root `cargo test` lists them as ignored;
//!   `cargo xtask test` run as root (CI) includes them with `--include-ignored`.
//! - VM tests (`tests/vm_*.rs`): need a real cgroup v2 kernel with controllers; they run inside
//!   the throwaway VM booted by `cargo xtask vm-test` (which sets `VMTEST=1` and runs them
//!   with `--include-ignored`). They are `#[ignore = "needs the cgroup v2 test VM ..."]`, so a
//!   host `cargo test` lists them as ignored with that reason; `require_vm()` fails them if
//!   someone runs `--ignored` on the host.
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// True inside the test VM (`cargo xtask vm-test` sets VMTEST=1).
pub fn in_vm() -> bool {
    std::env::var_os("VMTEST").is_some_and(|v| v == "1")
}

/// Fails the calling test unless it runs inside the test VM: a VM test run on the host
/// (`cargo test -- --ignored`) must fail, not pass without having tested anything.
#[track_caller]
pub fn require_vm() {
    assert!(
        in_vm(),
        "this test needs the cgroup v2 test VM (VMTEST=1): run `cargo xtask vm-test`"
    );
}

/// How often `wait_until` asks again.
const POLL: Duration = Duration::from_millis(25);

/// Asks `probe` every 25 ms until it answers `Ok`, and returns that value. After `timeout`,
/// returns `Err` naming `what` and the probe's last error (what it last saw). For `Drop`
/// impls and callers that add context; tests mostly want [`wait_until`].
pub fn try_wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let start = Instant::now();
    loop {
        let last = match probe() {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(format!(
                "timed out after {:.1}s waiting for {what}; last seen: {last}",
                waited.as_secs_f64()
            ));
        }
        std::thread::sleep(POLL.min(timeout - waited));
    }
}

/// Waits for a condition instead of sleeping a fixed time: asks `probe` every 25 ms until it
/// answers `Ok`, and returns that value. Panics after `timeout` with `what` and the probe's
/// last error, so a failure says what was last seen.
#[track_caller]
pub fn wait_until<T>(what: &str, timeout: Duration, probe: impl FnMut() -> Result<T, String>) -> T {
    try_wait_until(what, timeout, probe).unwrap_or_else(|e| panic!("{e}"))
}

/// Path of a workspace binary (`procman-agent`, `procman`) next to the running test
/// executable (target/<profile>/deps/<test> -> target/<profile>/<name>).
/// `cargo xtask test` builds the binaries before running tests.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: build the binaries first (`cargo build --bins`; `cargo xtask test` does it)",
        p.display()
    );
    p
}

/// A procman-agent started by a test, on its own socket; stopped (SIGTERM) when dropped.
pub struct Agent {
    pub child: std::process::Child,
    pub socket: PathBuf,
    pub dir: tempfile::TempDir,
    /// Already killed and reaped ([`Agent::kill_hard`]): nothing to stop on drop.
    pub dead: bool,
}

impl Agent {
    /// Starts the agent with `config` (TOML text; the socket is set by this function, and the
    /// audit log goes to `audit.jsonl` in the agent's directory unless the config has an
    /// `[audit]` section) and extra arguments, and waits until its API answers.
    pub fn start(config: &str, args: &[&str]) -> Agent {
        Self::start_with_env(config, args, &[])
    }

    /// [`Agent::start`] with extra environment variables (e.g. systemd's `NOTIFY_SOCKET`).
    pub fn start_with_env(config: &str, args: &[&str], env: &[(&str, &str)]) -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("procman.sock");
        let cfg = dir.path().join("procman.toml");
        std::fs::write(&cfg, Self::with_audit(config, dir.path())).expect("write config");
        let log = std::fs::File::create(dir.path().join("agent.log")).expect("log file");
        let child = std::process::Command::new(bin("procman-agent"))
            .arg("--config")
            .arg(&cfg)
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .envs(env.iter().copied())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start procman-agent");
        let mut agent = Agent {
            child,
            socket,
            dir,
            dead: false,
        };
        // the socket is bound before the event source is attached; the API answers after
        let up = try_wait_until("the agent's API", Duration::from_secs(30), || {
            if api_answers(&agent.socket) {
                return Ok(());
            }
            if let Ok(Some(st)) = agent.child.try_wait() {
                let log = agent.dir.path().join("agent.log");
                let log = std::fs::read_to_string(log).unwrap_or_default();
                panic!("procman-agent exited early ({st}):\n{log}");
            }
            Err("no 200 from GET /api/status".into())
        });
        if let Err(e) = up {
            panic!("agent did not start: {e}\n{}", agent.log());
        }
        agent
    }

    fn with_audit(config: &str, dir: &std::path::Path) -> String {
        if config.contains("[audit]") {
            config.to_string()
        } else {
            format!(
                "{config}\n[audit]\npath = \"{}\"\n",
                dir.join("audit.jsonl").display()
            )
        }
    }

    /// Replaces the agent's config file (the audit log stays in its directory).
    pub fn rewrite_config(&self, config: &str) {
        std::fs::write(
            self.dir.path().join("procman.toml"),
            Self::with_audit(config, self.dir.path()),
        )
        .expect("write config");
    }

    /// The agent's audit records, parsed (when the config did not set its own path).
    pub fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("an audit line is JSON"))
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// Runs `procman --socket <this agent> ARGS` to completion.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(bin("procman"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run procman")
    }

    /// `GET /api/status` through the CLI.
    pub fn status(&self) -> serde_json::Value {
        let out = self.cli(&["status", "--json"]);
        assert!(
            out.status.success(),
            "procman status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status JSON")
    }

    /// Starts `procman events --json ARGS` and returns a receiver of its parsed lines.
    pub fn events(&self, args: &[&str]) -> EventStream {
        let mut child = std::process::Command::new(bin("procman"))
            .arg("--socket")
            .arg(&self.socket)
            .arg("events")
            .arg("--json")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run procman events");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::with_capacity(1 << 20, stdout).lines() {
                let Ok(line) = line else { break };
                let v: serde_json::Value = serde_json::from_str(&line).expect("event JSON");
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        EventStream { child, rx }
    }
}

impl Agent {
    /// `kill -9` of the agent (a crash): SIGKILL, then reaped; its directory stays.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.dead = true;
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.dead {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        // a test that stopped the agent (SIGSTOP) and failed before resuming it
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
        let _ = self.child.wait();
    }
}

/// A running `procman events --json`.
pub struct EventStream {
    pub child: std::process::Child,
    pub rx: std::sync::mpsc::Receiver<serde_json::Value>,
}

impl EventStream {
    /// Receives events until `done` says so or `timeout` passes; returns them all.
    pub fn collect_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&serde_json::Value) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok(v) => {
                    let stop = done(&v);
                    out.push(v);
                    if stop {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        out
    }

    /// Blocks until the stream is live: spawns `sh -c 'exit 99'` until its exit shows up.
    pub fn sync(&self) {
        for _ in 0..100 {
            let child = std::process::Command::new("/bin/sh")
                .args(["-c", "exit 99"])
                .spawn()
                .unwrap();
            let pid = child.id() as u64;
            let mut child = child;
            child.wait().unwrap();
            let got = self.collect_until(Duration::from_millis(500), |v| {
                v["kind"] == "exit" && v["pid"] == pid && v["exit_code"] == 99
            });
            if got.iter().any(|v| v["kind"] == "exit" && v["pid"] == pid) {
                return;
            }
        }
        panic!("the event stream never delivered the sync marker");
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True when `GET /api/status` on `socket` answers 200.
pub fn api_answers(socket: &std::path::Path) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /api/status HTTP/1.0\r\nHost: procman\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.") && &buf[9..12] == b"200"
}

/// One HTTP GET on the agent's socket through the project's client: (status, JSON body).
pub fn http_get(socket: &std::path::Path, path: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("connect to the agent");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: procman\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read answer");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP answer");
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let json = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// An HTTP answer: status, headers (names lowercase), the body as JSON (`Null` if not) and
/// as text.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
    pub text: String,
}

impl Answer {
    /// The first header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.0 request over any stream (the Unix socket or TCP).
pub fn http_request<S: std::io::Read + std::io::Write>(
    mut s: S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: procman\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    write!(s, "{head}\r\n{body}").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read answer");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP answer");
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        text: body.to_string(),
    }
}

/// One request to the agent's TCP listener (`addr` is `host:port`).
pub fn tcp_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let s = std::net::TcpStream::connect(addr).expect("connect to the TCP API");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    http_request(s, method, path, headers, body)
}

/// A free TCP port on 127.0.0.1 (bound and released; the caller binds it again at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A root-owned 0600 token file in `dir` for the TCP API, and the token.
pub fn token_file(dir: &std::path::Path) -> (PathBuf, String) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("api.token");
    let token = "0123456789abcdef0123456789abcdef".to_string();
    std::fs::write(&path, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (path, token)
}

/// The DOM of `url` after its scripts ran (headless Chromium, `--dump-dom`, 15 s of virtual
/// time: timers and fetches complete without waiting in real time).
pub fn chromium_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=15000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .env("HOME", profile.path())
        .output()
        .expect("run chromium (cargo xtask test installs Debian's chromium package)");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        dom.contains("<html"),
        "chromium printed no DOM for {url} ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

/// A 1300x900 screenshot of `url` after its scripts ran, written to `to` (PNG).
pub fn chromium_screenshot(url: &str, to: &std::path::Path) {
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1300,900",
            "--virtual-time-budget=15000",
        ])
        .arg(format!("--screenshot={}", to.display()))
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .env("HOME", profile.path())
        .output()
        .expect("run chromium");
    let png = std::fs::read(to).unwrap_or_default();
    assert!(
        png.starts_with(b"\x89PNG"),
        "no screenshot of {url} at {} ({}): {}",
        to.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The first line a child started with a piped stdout prints (trimmed): the "ready" handshake
/// of a helper process. Its stdout is taken; a child that prints nothing fails the test.
pub fn first_line(child: &mut std::process::Child) -> String {
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout piped")),
        &mut line,
    )
    .expect("reading the child's first line");
    line.trim().to_string()
}

/// A managed root of its own for one VM test (`/sys/fs/cgroup/procman-vm-TAG.slice`): the
/// agent's `[cgroup] root`; on drop every slice below it is thawed, killed and removed.
pub struct VmRoot {
    pub name: String,
}

impl VmRoot {
    pub fn new(tag: &str) -> VmRoot {
        VmRoot {
            name: format!("procman-vm-{tag}.slice"),
        }
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/sys/fs/cgroup").join(&self.name)
    }

    /// The config naming it as the managed root.
    pub fn config(&self) -> String {
        format!("[cgroup]\nroot = \"{}\"\n", self.name)
    }

    /// A file of a slice below it ("" when unreadable).
    pub fn read(&self, slice: &str, file: &str) -> String {
        std::fs::read_to_string(self.path().join(slice).join(file)).unwrap_or_default()
    }

    /// The pids in a slice's cgroup.procs.
    pub fn procs(&self, slice: &str) -> Vec<u32> {
        self.read(slice, "cgroup.procs")
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// One key of a flat-keyed file (`memory.events`, `pids.events`, ...); 0 when absent.
    pub fn keyed(&self, slice: &str, file: &str, key: &str) -> u64 {
        self.read(slice, file)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for VmRoot {
    fn drop(&mut self) {
        if let Ok(rd) = std::fs::read_dir(self.path()) {
            for e in rd.flatten().filter(|e| e.path().is_dir()) {
                let _ = std::fs::write(e.path().join("cgroup.freeze"), "0");
                let _ = std::fs::write(e.path().join("cgroup.kill"), "1");
                // rmdir succeeds once the killed processes are gone
                let removed =
                    try_wait_until("the killed slice's removal", Duration::from_secs(5), || {
                        std::fs::remove_dir(e.path()).map_err(|e| e.to_string())
                    });
                if let Err(err) = removed {
                    eprintln!("warning: {}: {err}", e.path().display());
                }
            }
        }
        let _ = std::fs::remove_dir(self.path());
    }
}

/// The cgroup2 mount of this host (`/sys/fs/cgroup/unified` on hybrid hosts).
pub fn cgroup2_mount() -> PathBuf {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for l in mi.lines() {
        let (pre, post) = l.split_once(" - ").unwrap();
        if post.starts_with("cgroup2 ") {
            return PathBuf::from(pre.split_whitespace().nth(4).unwrap());
        }
    }
    panic!("no cgroup2 mount");
}

/// A managed root for one test; on drop kills what is left in it and removes it.
pub struct TestRoot {
    pub name: String,
    pub path: PathBuf,
}

impl TestRoot {
    pub fn new(tag: &str) -> TestRoot {
        let name = format!("procman-test-{}-{tag}.slice", std::process::id());
        TestRoot {
            path: cgroup2_mount().join(&name),
            name,
        }
    }
    pub fn slice(&self, s: &str) -> PathBuf {
        self.path.join(s)
    }
    pub fn cgroup_line(&self, s: &str) -> String {
        format!("0::/{}/{s}", self.name)
    }
}

impl Drop for TestRoot {
    fn drop(&mut self) {
        if let Ok(rd) = std::fs::read_dir(&self.path) {
            for e in rd.flatten().filter(|e| e.path().is_dir()) {
                let _ = std::fs::write(e.path().join("cgroup.kill"), "1");
                // rmdir succeeds once the killed processes are gone
                let removed = try_wait_until(
                    "the killed slice's removal",
                    std::time::Duration::from_secs(2),
                    || std::fs::remove_dir(e.path()).map_err(|e| e.to_string()),
                );
                if let Err(err) = removed {
                    eprintln!("warning: {}: {err}", e.path().display());
                }
            }
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}

pub fn cgroup_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("0::"))
        .unwrap_or("")
        .to_string()
}

/// A throwaway system user in its own group (for access tests as a real non-root caller),
/// removed (with the group) on drop.
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl TestUser {
    /// `tag` keeps the names of tests running in parallel apart.
    pub fn create(tag: &str) -> TestUser {
        let name = format!("pmacl{}{tag}", std::process::id());
        let ok = |c: &mut Command| {
            let o = c.output().expect("run useradd/groupadd");
            assert!(
                o.status.success(),
                "{c:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        ok(Command::new("groupadd").args(["--system", &name]));
        ok(Command::new("useradd").args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "--gid",
            &name,
            &name,
        ]));
        let u = nix::unistd::User::from_name(&name)
            .unwrap()
            .expect("the new user");
        TestUser {
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            name,
        }
    }

    /// Runs `procman` (a copy the user can execute) as this user.
    pub fn procman(&self, procman: &Path, socket: &Path, args: &[&str]) -> Output {
        Command::new(procman)
            .arg("--socket")
            .arg(socket)
            .args(args)
            .uid(self.uid)
            .gid(self.gid)
            .output()
            .expect("run procman as the test user")
    }

    /// A `sleep` owned by this user.
    pub fn sleeper(&self) -> std::process::Child {
        Command::new("sleep")
            .arg("300")
            .uid(self.uid)
            .gid(self.gid)
            .spawn()
            .unwrap()
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // --force: even if a process of the user is still exiting
        let out = Command::new("userdel")
            .args(["--force", &self.name])
            .output();
        if !out.is_ok_and(|o| o.status.success()) {
            eprintln!("could not remove the test user {}", self.name);
        }
        // userdel removes the user's private group; remove it if it stayed
        if nix::unistd::Group::from_name(&self.name).is_ok_and(|g| g.is_some()) {
            let _ = Command::new("groupdel").arg(&self.name).output();
        }
    }
}

/// `(status, JSON body)` of one JSON request to the TCP listener, with the token if given.
pub fn tcp_api(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    let a = tcp_request(addr, method, path, &headers, body);
    (a.status, a.body)
}

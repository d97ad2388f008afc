//! Boots one test VM under qemu (TCG), runs a job script in it and collects the outcome.
//!
//! Guest layout (see init.sh): the host's `/` over 9p (read-only) under a tmpfs overlay, so
//! host-built binaries run at their host paths; a read-write 9p "job" share at
//! `/run/procman-job` carrying `job.sh` in and `exit_code` out; a raw scratch disk as
//! virtio-blk (`/dev/vda`, also in `$PROCMAN_VM_DISK`). The serial console is streamed to
//! stdout and saved to `console.log`.
use super::assets::Kernel;
use anyhow::{Context, Result};
use std::{
    fs,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

pub struct BootOptions {
    pub mem_mb: u32,
    pub cpus: u32,
    pub timeout: Duration,
    /// Make the guest kernel panic right after loading modules (checks that a panic is
    /// reported as a failure, not a hang).
    pub panic: bool,
    pub disk_mb: u64,
}

impl Default for BootOptions {
    fn default() -> Self {
        BootOptions {
            mem_mb: 1024,
            cpus: 2,
            timeout: Duration::from_secs(900),
            panic: false,
            disk_mb: 256,
        }
    }
}

#[derive(Debug, Default)]
pub struct Outcome {
    /// The job's exit code as the guest wrote it; None when the VM died first.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub kernel_panic: bool,
    /// Why init gave up (its PROCMAN-VM-FAIL line).
    pub init_failure: Option<String>,
    /// Sums of the guest's `test result:` lines.
    pub passed: u64,
    pub failed: u64,
    pub test_binaries: u64,
    pub wall: Duration,
    pub console: PathBuf,
}

impl Outcome {
    /// One sentence on what went wrong (for the summary).
    pub fn problem(&self) -> Option<String> {
        if self.timed_out {
            return Some("timed out (VM killed)".into());
        }
        if self.kernel_panic {
            return Some("guest kernel panic".into());
        }
        if let Some(f) = &self.init_failure {
            return Some(format!("guest init failed: {f}"));
        }
        if self.failed > 0 {
            return Some(format!("{} test(s) failed", self.failed));
        }
        match self.exit_code {
            None => Some("the VM stopped without reporting an exit code".into()),
            Some(0) => None,
            Some(c) => Some(format!("guest job exited with {c}")),
        }
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Quotes a command line for the guest's /bin/sh.
pub fn quote_all<S: AsRef<str>>(args: &[S]) -> String {
    args.iter()
        .map(|a| shell_quote(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `body` (shell) inside a fresh VM booted from `k`. `run_dir` receives the job share,
/// the disk and console.log.
pub fn run_job(k: &Kernel, body: &str, run_dir: &Path, opts: &BootOptions) -> Result<Outcome> {
    let _ = fs::remove_dir_all(run_dir);
    let share = run_dir.join("share");
    fs::create_dir_all(&share).with_context(|| format!("creating {}", share.display()))?;
    let console = run_dir.join("console.log");
    let disk = run_dir.join("disk.img");
    fs::File::create(&disk)?.set_len(opts.disk_mb << 20)?;

    let cwd = crate::workspace_root();
    let mut script = String::from("#!/bin/sh\n# written by cargo xtask (vm)\n");
    script += "export VMTEST=1 PROCMAN_VM_DISK=/dev/vda HOME=/root TERM=dumb\n";
    script += "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n";
    script += &format!("export PROCMAN_VM_KERNEL={}\n", shell_quote(&k.series));
    for var in ["RUST_BACKTRACE", "RUST_LOG"] {
        let v = std::env::var(var).unwrap_or_default();
        if !v.is_empty() {
            script += &format!("export {var}={}\n", shell_quote(&v));
        }
    }
    script += &format!("cd {} || exit 125\n", shell_quote(&cwd.to_string_lossy()));
    script += body;
    script += "\n";
    fs::write(share.join("job.sh"), script)?;

    let mut append = String::from(
        "console=ttyS0 quiet loglevel=3 panic=-1 cgroup_no_v1=all mitigations=off tsc=reliable \
         cryptomgr.notests=1 rdinit=/init",
    );
    if opts.panic {
        append += " procman.panic=1";
    }
    let fsdev = |id: &str, path: &Path, ro: bool| {
        format!(
            "local,id={id},path={},security_model=none,multidevs=remap{}",
            path.display(),
            if ro { ",readonly=on" } else { "" }
        )
    };
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-machine",
        "pc",
        "-accel",
        "tcg,thread=multi",
        "-cpu",
        "max",
    ])
    .args([
        "-smp",
        &opts.cpus.to_string(),
        "-m",
        &opts.mem_mb.to_string(),
    ])
    .args([
        "-nodefaults",
        "-no-user-config",
        "-no-reboot",
        "-display",
        "none",
    ])
    .args([
        "-chardev",
        "stdio,id=con,signal=off",
        "-serial",
        "chardev:con",
    ])
    .arg("-kernel")
    .arg(k.image())
    .arg("-initrd")
    .arg(k.initramfs())
    .args(["-append", &append])
    .args(["-fsdev", &fsdev("hostroot", Path::new("/"), true)])
    .args(["-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot"])
    .args(["-fsdev", &fsdev("job", &share, false)])
    .args(["-device", "virtio-9p-pci,fsdev=job,mount_tag=job"])
    .arg("-drive")
    .arg(format!(
        "file={},format=raw,if=none,id=scratch,cache=none,aio=threads",
        disk.display()
    ))
    .args(["-device", "virtio-blk-pci,drive=scratch"])
    .stdin(Stdio::null())
    .stdout(Stdio::piped());

    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .context("starting qemu-system-x86_64 (apt-get install qemu-system-x86)")?;
    let stdout = child.stdout.take().expect("piped stdout");
    let log_path = console.clone();
    let reader = std::thread::spawn(move || -> Outcome {
        let mut o = Outcome::default();
        let mut log = fs::File::create(&log_path).ok();
        let mut r = BufReader::new(stdout);
        let mut raw = Vec::new();
        let out = std::io::stdout();
        while r.read_until(b'\n', &mut raw).unwrap_or(0) > 0 {
            if let Some(l) = log.as_mut() {
                let _ = l.write_all(&raw);
            }
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\n', '\r']).trim_start_matches('\r');
            {
                let mut out = out.lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
            scan(line, &mut o);
            raw.clear();
        }
        o
    });

    let mut timed_out = false;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if t0.elapsed() > opts.timeout {
            eprintln!(
                "vm: {}: timed out after {} s; killing qemu",
                k.series,
                opts.timeout.as_secs()
            );
            timed_out = true;
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let wall = t0.elapsed();
    let mut o = reader.join().unwrap_or_default();
    o.timed_out = timed_out;
    o.wall = wall;
    o.console = console;
    // The exit code file is the authority; the console marker is a fallback (9p write lost).
    if let Ok(text) = fs::read_to_string(share.join("exit_code")) {
        if let Ok(c) = text.trim().parse() {
            o.exit_code = Some(c);
        }
    }
    Ok(o)
}

/// Picks the markers out of one console line.
fn scan(line: &str, o: &mut Outcome) {
    if let Some(rest) = line.strip_prefix("PROCMAN-VM-EXIT: ") {
        o.exit_code = rest.trim().parse().ok();
    } else if let Some(rest) = line.strip_prefix("PROCMAN-VM-FAIL: ") {
        o.init_failure = Some(rest.trim().to_string());
    } else if line.contains("Kernel panic - not syncing") {
        o.kernel_panic = true;
    } else if let Some(rest) = line.strip_prefix("test result: ") {
        // test result: ok. 6 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; ...
        o.test_binaries += 1;
        for part in rest.split(';') {
            let mut w = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (w.next(), w.next()) else {
                continue;
            };
            let n: u64 = n.parse().unwrap_or(0);
            match what {
                "passed" => o.passed += n,
                "failed" => o.failed += n,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_cargo_test_summaries_and_markers() {
        let mut o = Outcome::default();
        scan("test result: ok. 6 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 30.1s", &mut o);
        scan(
            "test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out",
            &mut o,
        );
        scan("PROCMAN-VM-EXIT: 1", &mut o);
        scan(
            "[   12.3] Kernel panic - not syncing: sysrq triggered crash",
            &mut o,
        );
        assert_eq!((o.passed, o.failed, o.test_binaries), (7, 2, 2));
        assert_eq!(o.exit_code, Some(1));
        assert!(o.kernel_panic);
    }

    #[test]
    fn quotes_for_sh() {
        assert_eq!(quote_all(&["a b", "it's"]), r"'a b' 'it'\''s'");
    }
}

//! Many tasks for `bench sampler --threads-per-proc K`: processes that each hold K idle
//! threads (the xtask binary itself, hidden subcommand `bench-threads`), and a guard that
//! raises `kernel.pid_max` for the run and puts the old value back afterwards, also when the
//! bench fails or is interrupted.
use anyhow::{bail, Context, Result};
use std::{
    io::{BufRead, BufReader, Read, Write},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU64, Ordering},
};

const PID_MAX: &str = "/proc/sys/kernel/pid_max";
/// The kernel's ceiling for pid_max on 64-bit (PID_MAX_LIMIT).
const PID_MAX_LIMIT: u64 = 4 * 1024 * 1024;
/// Stack of each idle thread: it only parks (the kernel's minimum is 16 KiB + a guard page).
const THREAD_STACK: usize = 64 << 10;

/// The hidden `bench-threads K` subcommand: starts K - 1 threads that park (K tasks with the
/// main one), prints `ready`, and exits when its stdin closes (the bench stopped or died).
pub fn holder(threads: usize) -> Result<()> {
    for i in 1..threads {
        std::thread::Builder::new()
            .stack_size(THREAD_STACK)
            .spawn(|| loop {
                std::thread::park();
            })
            .with_context(|| format!("starting thread {} of {threads}", i + 1))?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    // blocks until the bench closes our stdin (or exits)
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    std::process::exit(0);
}

/// Makes the command's process get `sig` when the bench (the thread that starts it) ends,
/// however it ends: a bench killed or interrupted leaves no load or agent behind. Kept
/// across exec (not for set-user-ID programs).
pub fn die_with_parent(cmd: &mut Command, sig: libc::c_int) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, sig) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Starts a holder of `threads` tasks (not yet waited for: see [`wait_ready`]).
pub fn spawn_holder(threads: usize) -> std::io::Result<Child> {
    die_with_parent(&mut Command::new(std::env::current_exe()?), libc::SIGKILL)
        .args(["bench-threads", &threads.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
}

/// Waits until a holder has started all its threads.
pub fn wait_ready(c: &mut Child) -> Result<()> {
    let out = c.stdout.take().context("holder without stdout")?;
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line)?;
    if line.trim() != "ready" {
        bail!(
            "thread holder {} did not start its threads (said {line:?})",
            c.id()
        );
    }
    Ok(())
}

/// Tasks (threads of every process) on the host now.
pub fn tasks_now() -> usize {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                .map(|e| std::fs::read_dir(e.path().join("task")).map_or(1, |t| t.count().max(1)))
                .sum()
        })
        .unwrap_or(0)
}

/// The pid_max a run adding `extra` tasks to `existing` ones needs: room for all of them
/// twice over (pids are handed out cyclically and the agents and tools of the run take some),
/// at least `current` (never lowered), at most the kernel's limit.
pub fn needed_pid_max(current: u64, existing: usize, extra: usize) -> u64 {
    let want = (existing as u64 + extra as u64) * 2 + 4096;
    want.clamp(current, PID_MAX_LIMIT)
}

/// The pid_max to put back from a signal handler (0: nothing to restore).
static RESTORE: AtomicU64 = AtomicU64::new(0);

/// Raises kernel.pid_max for the run; restores the old value on drop and on SIGINT, SIGTERM
/// or SIGHUP (the handler writes it back, then lets the signal kill us as before).
pub struct PidMaxGuard {
    old: u64,
}

impl PidMaxGuard {
    /// `None` when pid_max is already large enough.
    pub fn raise_to(want: u64) -> Result<Option<PidMaxGuard>> {
        let old: u64 = std::fs::read_to_string(PID_MAX)
            .context("reading kernel.pid_max")?
            .trim()
            .parse()
            .context("parsing kernel.pid_max")?;
        if want <= old {
            return Ok(None);
        }
        RESTORE.store(old, Ordering::SeqCst);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: installs an async-signal-safe handler (open/write/close/signal/raise).
            unsafe { libc::signal(sig, restore_and_die as *const () as libc::sighandler_t) };
        }
        std::fs::write(PID_MAX, want.to_string())
            .with_context(|| format!("raising kernel.pid_max from {old} to {want}"))?;
        println!("raised kernel.pid_max from {old} to {want} for this run (restored at the end)");
        Ok(Some(PidMaxGuard { old }))
    }
}

impl Drop for PidMaxGuard {
    fn drop(&mut self) {
        match std::fs::write(PID_MAX, self.old.to_string()) {
            Ok(()) => println!("restored kernel.pid_max to {}", self.old),
            Err(e) => eprintln!(
                "xtask: could not restore kernel.pid_max to {}: {e}; run `sysctl kernel.pid_max={}`",
                self.old, self.old
            ),
        }
        RESTORE.store(0, Ordering::SeqCst);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: back to the default disposition.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
}

extern "C" fn restore_and_die(sig: libc::c_int) {
    let old = RESTORE.load(Ordering::SeqCst);
    if old != 0 {
        // format without allocating
        let mut buf = [0u8; 24];
        let mut i = buf.len();
        let mut v = old;
        loop {
            i -= 1;
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        // SAFETY: open/write/close are async-signal-safe; the path is a NUL-terminated literal.
        unsafe {
            let fd = libc::open(c"/proc/sys/kernel/pid_max".as_ptr(), libc::O_WRONLY);
            if fd >= 0 {
                libc::write(fd, buf[i..].as_ptr().cast(), buf.len() - i);
                libc::close(fd);
                let msg = b"\nxtask: interrupted; kernel.pid_max restored\n";
                libc::write(2, msg.as_ptr().cast(), msg.len());
            }
        }
    }
    // SAFETY: back to the default action and re-raised: the process ends as the signal says
    // (the thread holders see their stdin close and exit; sleepers get the terminal's SIGINT).
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_max_needed() {
        // 100k threads on a host with 300 tasks and pid_max 32768: raised, with room
        let n = needed_pid_max(32768, 300, 100_000);
        assert!(n >= 2 * 100_300, "{n}");
        // never lowered
        assert_eq!(needed_pid_max(4_000_000, 10, 10), 4_000_000);
        // never above the kernel's limit
        assert_eq!(needed_pid_max(32768, 10, 5_000_000), PID_MAX_LIMIT);
        // a small run on a large pid_max: unchanged
        assert_eq!(needed_pid_max(4_194_304, 500, 10_000), 4_194_304);
    }
}

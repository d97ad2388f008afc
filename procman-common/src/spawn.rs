//! Starting a command with clone3(2): inside a cgroup from its first instruction
//! (`CLONE_INTO_CGROUP`, what `procman run` does) or with a chosen pid (`set_tid`, which tests
//! use to reuse a pid on purpose). libc has no `clone_args` for glibc targets and std's
//! `Command` cannot pass either option, hence this small wrapper.
use std::{ffi::CString, io, os::fd::RawFd};

/// `struct clone_args`, version 2 (with `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Where and how the child starts.
#[derive(Default, Clone, Copy)]
pub struct SpawnOpts {
    /// An open cgroup2 directory (O_RDONLY|O_DIRECTORY) to start the child in.
    pub cgroup: Option<RawFd>,
    /// The pid the child must get (root only; fails if it is taken).
    pub pid: Option<i32>,
}

/// Forks with clone3 and execs `argv` (searched in PATH) in the child; returns its pid.
/// Standard input, output and error are inherited.
pub fn spawn(argv: &[String], opts: SpawnOpts) -> io::Result<i32> {
    let cargs: Vec<CString> = argv
        .iter()
        .map(|a| {
            CString::new(a.as_str()).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the command")
            })
        })
        .collect::<io::Result<_>>()?;
    if cargs.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
    }
    let mut ptrs: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let tids = [opts.pid.unwrap_or(0)];
    let mut args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(fd) = opts.cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    if opts.pid.is_some() {
        args.set_tid = tids.as_ptr() as u64;
        args.set_tid_size = 1;
    }
    // the child's error message, prepared here: after clone3 it may only call
    // async-signal-safe functions
    let prefix = format!("procman: {}: ", argv[0]).into_bytes();
    // SAFETY: clone3 without CLONE_VM duplicates the process; the child only calls execvp,
    // write and _exit (async-signal-safe) on memory prepared before the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r == 0 {
        unsafe {
            libc::execvp(ptrs[0], ptrs.as_ptr());
            // like a shell: name the command and why, 127 when it is not found, else 126
            let errno = *libc::__errno_location();
            let (why, code): (&[u8], i32) = match errno {
                libc::ENOENT => (b"command not found\n", 127),
                libc::EACCES => (b"permission denied\n", 126),
                libc::ENOEXEC => (b"exec format error\n", 126),
                libc::ENOTDIR => (b"not a directory\n", 126),
                libc::E2BIG => (b"argument list too long\n", 126),
                _ => (b"cannot execute it\n", 126),
            };
            libc::write(2, prefix.as_ptr().cast(), prefix.len());
            libc::write(2, why.as_ptr().cast(), why.len());
            libc::_exit(code);
        }
    }
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as i32)
}

/// Waits for `pid` and returns its status the way a shell does: the exit code, or 128+signal.
pub fn wait_status(pid: i32) -> io::Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child, into a local.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
    Ok(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    })
}

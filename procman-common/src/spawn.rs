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
    spawn_with(argv, opts, &ChildSetup::default()).map(|s| s.pid)
}

/// What the child sets up between clone3 and exec (a supervised service's environment).
/// Everything is prepared before the fork: the child only makes async-signal-safe calls.
#[derive(Debug, Default, Clone)]
pub struct ChildSetup {
    /// The whole environment (`KEY=VALUE`); `None` inherits the caller's.
    pub env: Option<Vec<String>>,
    /// Working directory.
    pub cwd: Option<std::path::PathBuf>,
    /// Switch to this gid (and it as the only supplementary group), then this uid.
    pub gid: Option<u32>,
    pub uid: Option<u32>,
    /// Standard input from /dev/null instead of the caller's.
    pub stdin_null: bool,
    /// Becomes standard output and standard error (e.g. a pipe's write end).
    pub output: Option<RawFd>,
    /// Kept open across exec at fd [`ChildSetup::keep_at`] (e.g. the read end of the output
    /// pipe, so the pipe outlives its reader).
    pub keep: Option<RawFd>,
    /// The fd number `keep` gets in the child.
    pub keep_at: RawFd,
    /// Close every fd but 0, 1, 2 and `keep_at` before exec (`close_range`): nothing the
    /// caller inherited or opened without O_CLOEXEC leaks into the child.
    pub close_other_fds: bool,
    /// A session of its own (`setsid`): the caller's terminal signals do not reach it.
    pub setsid: bool,
    /// Also return a pidfd for the child (`CLONE_PIDFD`).
    pub pidfd: bool,
}

/// A started child: its pid and, when asked for, a pidfd referring to it.
#[derive(Debug)]
pub struct Spawned {
    pub pid: i32,
    pub pidfd: Option<std::os::fd::OwnedFd>,
}

fn cstring(s: &str, what: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a NUL byte in the {what}"),
        )
    })
}

/// [`spawn`] with a [`ChildSetup`]: environment, directory, user, output and session.
/// In the child, a failing setup step writes `procman: <argv0>: <step> failed` to standard
/// error and exits with 126 (127 when the command is not found), like a shell.
pub fn spawn_with(argv: &[String], opts: SpawnOpts, setup: &ChildSetup) -> io::Result<Spawned> {
    let cargs: Vec<CString> = argv
        .iter()
        .map(|a| cstring(a, "command"))
        .collect::<io::Result<_>>()?;
    if cargs.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
    }
    let mut ptrs: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let cenv: Option<Vec<CString>> = setup
        .env
        .as_ref()
        .map(|e| e.iter().map(|kv| cstring(kv, "environment")).collect())
        .transpose()?;
    let mut envp: Vec<*const libc::c_char> = Vec::new();
    if let Some(e) = &cenv {
        envp = e.iter().map(|c| c.as_ptr()).collect();
        envp.push(std::ptr::null());
    }
    let ccwd = setup
        .cwd
        .as_ref()
        .map(|d| {
            use std::os::unix::ffi::OsStrExt;
            CString::new(d.as_os_str().as_bytes()).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the directory")
            })
        })
        .transpose()?;
    let devnull = if setup.stdin_null {
        Some(std::fs::File::open("/dev/null")?)
    } else {
        None
    };
    let tids = [opts.pid.unwrap_or(0)];
    let mut pidfd: libc::c_int = -1;
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
    if setup.pidfd {
        args.flags |= libc::CLONE_PIDFD as u64;
        args.pidfd = &mut pidfd as *mut libc::c_int as u64;
    }
    // the child's error message, prepared here: after clone3 it may only call
    // async-signal-safe functions
    let prefix = format!("procman: {}: ", argv[0]).into_bytes();
    // SAFETY: clone3 without CLONE_VM duplicates the process; the child only calls
    // async-signal-safe functions (dup2, chdir, setsid, set*id, sigprocmask, execvp[e],
    // write, _exit) on memory prepared before the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r == 0 {
        // SAFETY: see above; every pointer was prepared before the fork and stays valid.
        unsafe {
            let fail = |step: &[u8]| child_fail(&prefix, step);
            // a clean signal state: std ignores SIGPIPE in the caller, and ignored signals
            // stay ignored across exec
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            if setup.setsid && libc::setsid() < 0 {
                fail(b"setsid failed\n");
            }
            if let Some(f) = &devnull {
                use std::os::fd::AsRawFd;
                if libc::dup2(f.as_raw_fd(), 0) < 0 {
                    fail(b"redirecting standard input failed\n");
                }
            }
            if let Some(keep) = setup.keep {
                if libc::dup2(keep, setup.keep_at) < 0 {
                    fail(b"keeping the output pipe failed\n");
                }
            }
            if let Some(out) = setup.output {
                if libc::dup2(out, 1) < 0 || libc::dup2(out, 2) < 0 {
                    fail(b"redirecting output failed\n");
                }
            }
            if setup.close_other_fds {
                let keep = if setup.keep.is_some() {
                    setup.keep_at as u32
                } else {
                    u32::MAX
                };
                // [3, keep) and (keep, max]: close_range(2), Linux 5.9+
                if keep > 3 {
                    libc::syscall(libc::SYS_close_range, 3u32, keep - 1, 0u32);
                }
                if keep < u32::MAX {
                    libc::syscall(libc::SYS_close_range, keep + 1, u32::MAX, 0u32);
                }
            }
            if let Some(gid) = setup.gid {
                let groups = [gid as libc::gid_t];
                if libc::setgroups(1, groups.as_ptr()) < 0 || libc::setgid(gid) < 0 {
                    fail(b"switching group failed\n");
                }
            }
            if let Some(uid) = setup.uid {
                if libc::setuid(uid) < 0 {
                    fail(b"switching user failed\n");
                }
            }
            if let Some(d) = &ccwd {
                if libc::chdir(d.as_ptr()) < 0 {
                    fail(b"changing to its working directory failed\n");
                }
            }
            if cenv.is_some() {
                libc::execvpe(ptrs[0], ptrs.as_ptr(), envp.as_ptr());
            } else {
                libc::execvp(ptrs[0], ptrs.as_ptr());
            }
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
    let pidfd = if setup.pidfd && pidfd >= 0 {
        use std::os::fd::FromRawFd;
        // SAFETY: the kernel just created this fd for us (CLONE_PIDFD); we own it.
        Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(pidfd) })
    } else {
        None
    };
    Ok(Spawned {
        pid: r as i32,
        pidfd,
    })
}

/// In the child after clone3: says which step failed and exits with 126.
///
/// # Safety
/// Only async-signal-safe calls: usable between clone3 and exec.
unsafe fn child_fail(prefix: &[u8], step: &[u8]) -> ! {
    // SAFETY: write and _exit are async-signal-safe; the slices are valid.
    unsafe {
        libc::write(2, prefix.as_ptr().cast(), prefix.len());
        libc::write(2, step.as_ptr().cast(), step.len());
        libc::_exit(126)
    }
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

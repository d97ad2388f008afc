//! The few pidfd calls the supervisor needs (libc has the syscall numbers, nix 0.29 no
//! wrappers): open a pidfd for an adopted process, signal through it, and read the exit
//! status of our own child with `waitid(P_PIDFD)`. A pidfd names one process for its whole
//! life, so a reused pid is never signalled.
use procman_common::service::ExitStatus;
use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

/// `pidfd_open(pid, 0)`.
pub fn open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: a plain syscall; on success it returns a new fd we own.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: r is a new, valid fd.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// `pidfd_send_signal(fd, sig, NULL, 0)`. `ESRCH` (already exited) is not an error.
pub fn signal(fd: &OwnedFd, sig: i32) -> io::Result<()> {
    // SAFETY: a plain syscall on an fd we own.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            return Err(e);
        }
    }
    Ok(())
}

/// Reaps our exited child through its pidfd (`waitid(P_PIDFD, WEXITED | WNOHANG)`). `None`
/// when it has not exited yet.
pub fn reap(fd: &OwnedFd) -> io::Result<Option<ExitStatus>> {
    // SAFETY: siginfo_t is plain data; waitid fills it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waitid on a pidfd we own, into a local.
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                fd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG,
            )
        };
        if r == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
    // SAFETY: waitid filled the SIGCHLD fields (or left si_pid 0 when nothing exited).
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some(ExitStatus::from_siginfo(info.si_code, status)))
}

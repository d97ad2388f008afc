//! Process file descriptors (Linux 5.3+): a handle on one process that a reused pid can never
//! redirect. Signals go through `pidfd_send_signal`; exit is waited for with poll(2) on the
//! fd (readable once the process has exited, zombie or reaped), never with fixed sleeps.
use std::{
    io,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

/// An open pidfd.
#[derive(Debug)]
pub struct Pidfd {
    pub pid: u32,
    fd: OwnedFd,
}

impl Pidfd {
    /// `pidfd_open(pid, 0)`: ESRCH when there is no such process, EINVAL when `pid` is a
    /// thread that does not lead its thread group.
    pub fn open(pid: u32) -> io::Result<Pidfd> {
        let pid_t =
            libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid_t, 0 as libc::c_uint) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just gave us this fd; nobody else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(Pidfd { pid, fd })
    }

    /// `pidfd_send_signal(fd, sig, NULL, 0)`. ESRCH: the process has exited.
    pub fn signal(&self, sig: i32) -> io::Result<()> {
        // SAFETY: a valid fd, a signal number, no siginfo, no flags.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0 as libc::c_uint,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Whether the process has exited (now, without waiting).
    pub fn exited(&self) -> bool {
        wait_all(&[self], Duration::ZERO)
    }

    /// Waits up to `timeout` for the process to exit; true once it has.
    pub fn wait(&self, timeout: Duration) -> bool {
        wait_all(&[self], timeout)
    }
}

/// Waits up to `timeout` until every process of `fds` has exited; true when all have.
pub fn wait_all(fds: &[&Pidfd], timeout: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let start = Instant::now();
    let mut pending: Vec<&Pidfd> = fds.to_vec();
    loop {
        let mut polls: Vec<PollFd> = pending
            .iter()
            .map(|p| PollFd::new(p.fd.as_fd(), PollFlags::POLLIN))
            .collect();
        let left = timeout.saturating_sub(start.elapsed());
        // poll's timeout is in ms: round up so a short wait is not a busy loop
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        match poll(
            &mut polls,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            // cannot poll: report what is known, not a false exit
            Err(_) => return false,
        }
        let done: Vec<bool> = polls
            .iter()
            .map(|p| {
                p.revents()
                    .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP))
            })
            .collect();
        drop(polls);
        let mut i = 0;
        pending.retain(|_| {
            let keep = !done[i];
            i += 1;
            keep
        });
        if pending.is_empty() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_and_wait_for_a_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let p = Pidfd::open(child.id()).unwrap();
        assert!(!p.exited());
        assert!(!p.wait(Duration::from_millis(30)));
        p.signal(libc::SIGTERM).unwrap();
        assert!(p.wait(Duration::from_secs(10)), "sleep ignores nothing");
        // a zombie counts as exited; reaping it changes nothing
        child.wait().unwrap();
        assert!(p.exited());
        assert_eq!(
            p.signal(libc::SIGKILL).unwrap_err().raw_os_error(),
            Some(libc::ESRCH)
        );
        assert_eq!(
            Pidfd::open(u32::MAX - 1).unwrap_err().raw_os_error(),
            Some(libc::ESRCH)
        );
    }
}

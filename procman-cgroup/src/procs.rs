//! What the crate needs from /proc: who a pid is (thread group, parent, kernel-thread flag,
//! start time) and which cgroup2 path it is in; and the guard that refuses pid 1, kernel
//! threads and the agent itself.
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{CgroupError, Protected, Result};

/// `PF_KTHREAD` from include/linux/sched.h.
pub const PF_KTHREAD: u64 = 0x0020_0000;
/// kthreadd's pid: every kernel thread but itself is its child.
pub const KTHREADD: u32 = 2;

/// The facts about one process that a mutating action needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    /// Thread-group id: the process a thread id belongs to.
    pub tgid: u32,
    pub ppid: u32,
    /// `task->flags` (field 9 of /proc/PID/stat).
    pub flags: u64,
    /// Start time in clock ticks since boot (field 22): with the pid, the process identity.
    pub start_time: u64,
}

/// Parses the fields we use out of /proc/PID/stat text: (ppid, flags, starttime). The comm
/// field may hold spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat(text: &str) -> Option<(u32, u64, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] = state (field 3), f[1] = ppid (4), f[6] = flags (9), f[19] = starttime (22).
    Some((
        f.get(1)?.parse().ok()?,
        f.get(6)?.parse().ok()?,
        f.get(19)?.parse().ok()?,
    ))
}

/// Parses `Tgid:` out of /proc/PID/status text.
pub fn parse_tgid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Parses the cgroup2 path (the `0::/path` line) out of /proc/PID/cgroup text: the one parser
/// of that file, for the agent's sampler too. `None` without a cgroup2 line (a v1-only host).
pub fn parse_proc_cgroup(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim().to_string())
}

fn read_proc(proc_root: &Path, pid: u32, file: &str) -> Result<String> {
    let p: PathBuf = proc_root.join(pid.to_string()).join(file);
    std::fs::read_to_string(&p).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => CgroupError::NoSuchProcess { pid },
        // ESRCH shows up when the process dies between open and read.
        _ if e.raw_os_error() == Some(libc::ESRCH) => CgroupError::NoSuchProcess { pid },
        _ => CgroupError::io("reading", p, e),
    })
}

/// (ppid, flags, starttime) of `pid` from `proc_root/PID/stat`.
fn read_stat(proc_root: &Path, pid: u32) -> Result<(u32, u64, u64)> {
    let stat = read_proc(proc_root, pid, "stat")?;
    parse_stat(&stat).ok_or_else(|| CgroupError::Malformed {
        path: proc_root.join(format!("{pid}/stat")),
        detail: "fewer fields than expected".into(),
    })
}

/// Reads [`ProcInfo`] for `pid` (a process or a thread id) from `proc_root` (`/proc`).
pub fn proc_info_in(proc_root: &Path, pid: u32) -> Result<ProcInfo> {
    let (ppid, flags, start_time) = read_stat(proc_root, pid)?;
    let status = read_proc(proc_root, pid, "status")?;
    let tgid = parse_tgid(&status).ok_or_else(|| CgroupError::Malformed {
        path: proc_root.join(format!("{pid}/status")),
        detail: "no Tgid: line".into(),
    })?;
    Ok(ProcInfo {
        pid,
        tgid,
        ppid,
        flags,
        start_time,
    })
}

/// The start time (field 22 of /proc/PID/stat) of `pid`: one read.
pub fn start_time_of(pid: u32) -> Result<u64> {
    Ok(read_stat(Path::new("/proc"), pid)?.2)
}

pub fn proc_info(pid: u32) -> Result<ProcInfo> {
    proc_info_in(Path::new("/proc"), pid)
}

/// Why `info` must not be touched, if it must not. `me` is the caller's own pid.
pub fn protection(info: &ProcInfo, me: u32) -> Option<Protected> {
    if info.pid == 1 || info.tgid == 1 {
        Some(Protected::Init)
    } else if info.flags & PF_KTHREAD != 0 || info.pid == KTHREADD || info.ppid == KTHREADD {
        Some(Protected::KernelThread)
    } else if info.tgid == me || info.pid == me {
        Some(Protected::Myself)
    } else {
        None
    }
}

/// Checks that `pid` may be moved/frozen/killed: exists, is not pid 1, not a kernel thread,
/// not the agent (nor one of its threads); and, when given, still has `start_time` (so a
/// reused pid is never hit). Returns the process info (its `tgid` is what gets moved).
pub fn check_mutable(pid: u32, start_time: Option<u64>) -> Result<ProcInfo> {
    refuse_init_and_zero(pid)?;
    guard(proc_info(pid)?, start_time)
}

/// [`check_mutable`] for a pid the caller knows to be a thread-group id (from a process
/// exec/fork event): one read of /proc/PID/stat instead of stat + status.
pub fn check_mutable_process(tgid: u32, start_time: Option<u64>) -> Result<ProcInfo> {
    refuse_init_and_zero(tgid)?;
    let (ppid, flags, start) = read_stat(Path::new("/proc"), tgid)?;
    let info = ProcInfo {
        pid: tgid,
        tgid,
        ppid,
        flags,
        start_time: start,
    };
    guard(info, start_time)
}

/// Refuses 0 (writing 0 to cgroup.procs means "the writer itself") and 1 before any read.
fn refuse_init_and_zero(pid: u32) -> Result<()> {
    let why = match pid {
        0 => Protected::Myself,
        1 => Protected::Init,
        _ => return Ok(()),
    };
    Err(CgroupError::ProtectedPid { pid, why })
}

/// Refuses protected processes and, when `start_time` is given, a reused pid.
fn guard(info: ProcInfo, start_time: Option<u64>) -> Result<ProcInfo> {
    if let Some(why) = protection(&info, std::process::id()) {
        return Err(CgroupError::ProtectedPid { pid: info.pid, why });
    }
    match start_time {
        Some(expected) if expected != info.start_time => Err(CgroupError::PidReused {
            pid: info.pid,
            expected,
            found: info.start_time,
        }),
        _ => Ok(info),
    }
}

/// Sends SIGKILL to `pid` through a pidfd (so a pid reused meanwhile is never hit), or with
/// kill(2) on kernels without pidfds (before 5.3). `Ok` also when the process is already gone.
pub fn sigkill(pid: u32) -> io::Result<()> {
    let gone = |e: io::Error| {
        if e.raw_os_error() == Some(libc::ESRCH) {
            Ok(())
        } else {
            Err(e)
        }
    };
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return Ok(());
    };
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, p, 0 as libc::c_uint) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOSYS) {
            return gone(e);
        }
        // SAFETY: kill(2) has no pointers.
        if unsafe { libc::kill(p, libc::SIGKILL) } < 0 {
            return gone(io::Error::last_os_error());
        }
        return Ok(());
    }
    // SAFETY: the fd was just returned by the kernel and is owned here.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
    // SAFETY: a valid pidfd, a signal, no siginfo, no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    };
    if r < 0 {
        return gone(io::Error::last_os_error());
    }
    Ok(())
}

/// The cgroup2 path of `pid` as /proc/PID/cgroup shows it (relative to the cgroup namespace
/// root, which is the mount root for the agent).
pub fn cgroup_of(pid: u32) -> Result<String> {
    let text = read_proc(Path::new("/proc"), pid, "cgroup")?;
    parse_proc_cgroup(&text).ok_or_else(|| CgroupError::Malformed {
        path: format!("/proc/{pid}/cgroup").into(),
        detail: "no `0::` (cgroup2) line".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_SLEEP: &str = "4242 (sle ep) S 100 4242 100 0 -1 4194304 95 0 0 0 0 0 0 0 20 0 1 0 123456 5804032 224 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
    const STAT_KTHREAD: &str = "15 (ksoftirqd/0)) S 2 0 0 0 -1 69238848 0 0 0 0 0 3 0 0 20 0 1 0 9 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 17 0 0 0 0 0 0";

    fn info(pid: u32, tgid: u32, ppid: u32, flags: u64) -> ProcInfo {
        ProcInfo {
            pid,
            tgid,
            ppid,
            flags,
            start_time: 1,
        }
    }

    #[test]
    fn stat_parsing() {
        assert_eq!(parse_stat(STAT_SLEEP), Some((100, 4194304, 123456)));
        let (ppid, flags, _) = parse_stat(STAT_KTHREAD).unwrap();
        assert_eq!(ppid, 2);
        assert_ne!(flags & PF_KTHREAD, 0);
        assert_eq!(parse_stat("1 (x) S 0"), None);
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn status_and_cgroup_parsing() {
        assert_eq!(parse_tgid("Name:\tx\nTgid:\t77\nPid:\t78\n"), Some(77));
        assert_eq!(parse_tgid("Name:\tx\n"), None);
        assert_eq!(
            parse_proc_cgroup("4:memory:/a\n0::/procman.slice/web\n").as_deref(),
            Some("/procman.slice/web")
        );
        assert_eq!(parse_proc_cgroup("0::/\n").as_deref(), Some("/"));
        assert_eq!(parse_proc_cgroup("4:memory:/a\n"), None);
        assert_eq!(parse_proc_cgroup(""), None);
    }

    #[test]
    fn protection_rules() {
        let me = 500;
        assert_eq!(protection(&info(1, 1, 0, 0), me), Some(Protected::Init));
        assert_eq!(
            protection(&info(2, 2, 0, PF_KTHREAD), me),
            Some(Protected::KernelThread)
        );
        assert_eq!(
            protection(&info(15, 15, 2, 0), me),
            Some(Protected::KernelThread)
        );
        assert_eq!(
            protection(&info(99, 99, 7, PF_KTHREAD), me),
            Some(Protected::KernelThread)
        );
        assert_eq!(
            protection(&info(500, 500, 7, 0), me),
            Some(Protected::Myself)
        );
        // A thread of the agent: moving it would move the agent's whole thread group.
        assert_eq!(
            protection(&info(501, 500, 7, 0), me),
            Some(Protected::Myself)
        );
        assert_eq!(protection(&info(4242, 4242, 100, 4194304), me), None);
    }

    #[test]
    fn live_checks() {
        let e = check_mutable(1, None).unwrap_err();
        assert!(e.to_string().contains("pid 1"), "{e}");
        let e = check_mutable(0, None).unwrap_err();
        assert!(matches!(e, CgroupError::ProtectedPid { pid: 0, .. }), "{e}");
        let e = check_mutable(std::process::id(), None).unwrap_err();
        assert!(e.to_string().contains("the agent itself"), "{e}");
        let e = check_mutable(KTHREADD, None).unwrap_err();
        assert!(e.to_string().contains("kernel thread"), "{e}");
        let e = check_mutable(u32::MAX - 1, None).unwrap_err();
        assert!(matches!(e, CgroupError::NoSuchProcess { .. }), "{e}");

        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let i = check_mutable(pid, None).unwrap();
        assert_eq!(i.tgid, pid);
        assert!(check_mutable(pid, Some(i.start_time)).is_ok());
        let e = check_mutable(pid, Some(i.start_time + 1)).unwrap_err();
        assert!(matches!(e, CgroupError::PidReused { .. }), "{e}");
        assert!(cgroup_of(pid).unwrap().starts_with('/'));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

//! The netlink proc connector: the fallback event source when BPF cannot be loaded.
//!
//! The kernel multicasts fork/exec/exit notices (`CONFIG_PROC_EVENTS`) to NETLINK_CONNECTOR
//! sockets bound to the CN_IDX_PROC group; this is what libcgroup's cgrulesengd uses. The
//! notices carry pids and, for exit, the status; the rest of a [`ProcEvent`] (comm, parent,
//! uid, start time, exec filename) is read from /proc when the notice is decoded, best effort:
//! a process that is already gone keeps the fields the notice had.
//!
//! The wire format is decoded by hand: it is three fixed C structs (nlmsghdr, cn_msg,
//! proc_event from <linux/cn_proc.h>) and no maintained crate covers the connector (the
//! `netlink-*` crates do rtnetlink/genetlink, `cnproc` is unmaintained and blocking).
use super::{SourceCounters, SourceInfo, SourceMsg, SourceOptions};
use anyhow::{bail, Result};
use procman_common::api::{Comm, EventKind, ProcEvent, SourceKind};
use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    os::unix::fs::MetadataExt,
    sync::{atomic::Ordering, Arc},
};
use tokio::{io::unix::AsyncFd, sync::mpsc};

const NETLINK_CONNECTOR: libc::c_int = 11;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_CN_MCAST_IGNORE: u32 = 2;
const PROC_EVENT_FORK: u32 = 0x1;
const PROC_EVENT_EXEC: u32 = 0x2;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;

const NLMSG_HDRLEN: usize = 16;
const CN_MSG_LEN: usize = 20;
/// Offset of `struct proc_event` in a message; its union starts 16 bytes further.
const EV_OFF: usize = NLMSG_HDRLEN + CN_MSG_LEN;
const RCVBUF: libc::c_int = 8 << 20;

/// A decoded connector notice, before /proc enrichment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Fork {
        ts_ns: u64,
        parent_tgid: u32,
        child_pid: u32,
        child_tgid: u32,
    },
    Exec {
        ts_ns: u64,
        pid: u32,
        tgid: u32,
    },
    Exit {
        ts_ns: u64,
        pid: u32,
        tgid: u32,
        status: u32,
        parent_tgid: u32,
    },
}

impl Notice {
    pub fn is_thread(&self) -> bool {
        match *self {
            Notice::Fork {
                child_pid,
                child_tgid,
                ..
            } => child_pid != child_tgid,
            Notice::Exec { .. } => false,
            Notice::Exit { pid, tgid, .. } => pid != tgid,
        }
    }
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4)
        .map(|s| u32::from_ne_bytes(s.try_into().unwrap()))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    b.get(off..off + 8)
        .map(|s| u64::from_ne_bytes(s.try_into().unwrap()))
}

/// Decodes every proc notice in one datagram (it may hold several netlink messages).
/// Truncated or foreign messages are skipped, never a panic.
pub fn parse(buf: &[u8]) -> Vec<Notice> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let Some(len) = u32_at(buf, off).map(|l| l as usize) else {
            break;
        };
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            break;
        }
        let msg = &buf[off..off + len];
        if let Some(n) = parse_one(msg) {
            out.push(n);
        }
        off += (len + 3) & !3; // NLMSG_ALIGN
    }
    out
}

fn parse_one(msg: &[u8]) -> Option<Notice> {
    // cn_msg: id.idx, id.val, seq, ack, len, flags
    if u32_at(msg, NLMSG_HDRLEN)? != CN_IDX_PROC || u32_at(msg, NLMSG_HDRLEN + 4)? != CN_VAL_PROC {
        return None;
    }
    let what = u32_at(msg, EV_OFF)?;
    let ts_ns = u64_at(msg, EV_OFF + 8)?;
    let d = EV_OFF + 16;
    Some(match what {
        PROC_EVENT_FORK => Notice::Fork {
            ts_ns,
            parent_tgid: u32_at(msg, d + 4)?,
            child_pid: u32_at(msg, d + 8)?,
            child_tgid: u32_at(msg, d + 12)?,
        },
        PROC_EVENT_EXEC => Notice::Exec {
            ts_ns,
            pid: u32_at(msg, d)?,
            tgid: u32_at(msg, d + 4)?,
        },
        PROC_EVENT_EXIT => Notice::Exit {
            ts_ns,
            pid: u32_at(msg, d)?,
            tgid: u32_at(msg, d + 4)?,
            status: u32_at(msg, d + 8)?,
            parent_tgid: u32_at(msg, d + 20)?,
        },
        _ => return None,
    })
}

/// What /proc still tells about a process.
#[derive(Default)]
struct ProcFacts {
    comm: Comm,
    ppid: u32,
    start_ns: u64,
    uid: u32,
    gid: u32,
}

fn facts(pid: u32) -> Option<ProcFacts> {
    let p = procfs::process::Process::new(pid as i32).ok()?;
    let stat = p.stat().ok()?;
    let meta = std::fs::metadata(format!("/proc/{pid}")).ok();
    let tck = procfs::ticks_per_second();
    Some(ProcFacts {
        comm: Comm::from(stat.comm.as_str()),
        ppid: stat.ppid as u32,
        start_ns: stat.starttime * (1_000_000_000 / tck),
        uid: meta.as_ref().map_or(0, |m| m.uid()),
        gid: meta.as_ref().map_or(0, |m| m.gid()),
    })
}

/// Turns a notice into a [`ProcEvent`], reading what the notice lacks from /proc.
pub fn enrich(n: Notice) -> ProcEvent {
    let thread = n.is_thread();
    let (kind, ts_ns, pid, tid, ppid) = match n {
        Notice::Fork {
            ts_ns,
            parent_tgid,
            child_pid,
            child_tgid,
        } => (EventKind::Fork, ts_ns, child_tgid, child_pid, parent_tgid),
        Notice::Exec { ts_ns, pid, tgid } => (EventKind::Exec, ts_ns, tgid, pid, 0),
        Notice::Exit {
            ts_ns,
            pid,
            tgid,
            parent_tgid,
            ..
        } => (EventKind::Exit, ts_ns, tgid, pid, parent_tgid),
    };
    let f = facts(pid).unwrap_or_default();
    let (exit_code, exit_signal) = match n {
        Notice::Exit { status, .. } => ProcEvent::split_status(status),
        _ => (None, None),
    };
    let filename = (kind == EventKind::Exec).then(|| {
        std::fs::read_link(format!("/proc/{pid}/exe"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
            .into()
    });
    ProcEvent {
        kind,
        ts_ns,
        pid,
        tid,
        ppid: if ppid != 0 { ppid } else { f.ppid },
        uid: f.uid,
        gid: f.gid,
        cgroup_id: 0,
        start_ns: f.start_ns,
        comm: f.comm,
        filename,
        exit_code,
        exit_signal,
        thread,
        held: false,
    }
}

/// The comm of every live process as last seen, so an exit (when /proc is often already
/// gone) still names its process: filled from fork (the parent's name) and exec notices.
#[derive(Default)]
struct Names(std::collections::HashMap<u32, Comm>);

impl Names {
    fn fill(&mut self, ev: &mut ProcEvent) {
        if ev.thread {
            return;
        }
        match ev.kind {
            EventKind::Fork => {
                if ev.comm.as_bytes().is_empty() {
                    ev.comm = self.0.get(&ev.ppid).copied().unwrap_or_default();
                }
                self.0.insert(ev.pid, ev.comm);
            }
            EventKind::Exec => {
                self.0.insert(ev.pid, ev.comm);
            }
            EventKind::Exit => {
                if let Some(c) = self.0.remove(&ev.pid) {
                    if ev.comm.as_bytes().is_empty() {
                        ev.comm = c;
                    }
                }
            }
        }
    }
}

fn errno_msg(what: &str) -> anyhow::Error {
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => anyhow::anyhow!(
            "the netlink proc connector needs CAP_NET_ADMIN ({what}: permission denied; run as root)"
        ),
        Some(libc::EPROTONOSUPPORT) => {
            anyhow::anyhow!("the kernel has no proc connector ({what}: CONFIG_PROC_EVENTS is off)")
        }
        _ => anyhow::anyhow!("netlink proc connector: {what}: {e}"),
    }
}

/// Sends PROC_CN_MCAST_LISTEN or _IGNORE.
fn send_op(fd: RawFd, op: u32) -> std::io::Result<()> {
    let mut msg = [0u8; NLMSG_HDRLEN + CN_MSG_LEN + 4];
    let len = msg.len() as u32;
    msg[0..4].copy_from_slice(&len.to_ne_bytes());
    msg[4..6].copy_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
    msg[12..16].copy_from_slice(&std::process::id().to_ne_bytes());
    msg[16..20].copy_from_slice(&CN_IDX_PROC.to_ne_bytes());
    msg[20..24].copy_from_slice(&CN_VAL_PROC.to_ne_bytes());
    msg[32..34].copy_from_slice(&4u16.to_ne_bytes()); // cn_msg.len
    msg[36..40].copy_from_slice(&op.to_ne_bytes());
    // SAFETY: sends `msg.len()` bytes from a live buffer on an open socket.
    let n = unsafe { libc::send(fd, msg.as_ptr().cast(), msg.len(), 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The subscribed socket; unsubscribes when dropped.
struct Subscription(OwnedFd);

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = send_op(self.0.as_raw_fd(), PROC_CN_MCAST_IGNORE);
    }
}

fn open() -> Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right after.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            NETLINK_CONNECTOR,
        )
    };
    if raw < 0 {
        return Err(errno_msg("socket"));
    }
    // SAFETY: raw is a fresh, valid fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // A big receive buffer so storms do not overflow it (SO_RCVBUFFORCE needs CAP_NET_ADMIN).
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt with a pointer to a live c_int of the right size.
        let r = unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                opt,
                (&RCVBUF as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        if r == 0 {
            break;
        }
    }
    // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as u16;
    sa.nl_groups = CN_IDX_PROC;
    // SAFETY: bind with a pointer to a live sockaddr_nl and its size.
    let r = unsafe {
        libc::bind(
            raw,
            (&sa as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if r < 0 {
        return Err(errno_msg("bind"));
    }
    send_op(raw, PROC_CN_MCAST_LISTEN)
        .map_err(|_| errno_msg("subscribe (PROC_CN_MCAST_LISTEN)"))?;
    Ok(fd)
}

/// Subscribes to the proc connector and spawns the reader.
pub fn start(opts: &SourceOptions, tx: mpsc::Sender<SourceMsg>) -> Result<SourceInfo> {
    let fd = open()?;
    let dup = fd.try_clone()?;
    let counters = Arc::new(SourceCounters::default());
    // SAFETY: the AsyncFd owns `dup`, so the fd stays open as long as it is registered.
    let afd = match unsafe { AsyncFd::register_with_interest(dup, tokio::io::Interest::READABLE) } {
        Ok(a) => a,
        Err(e) => bail!(
            "registering the netlink socket with tokio: {}",
            e.into_parts().1
        ),
    };
    tokio::spawn(reader(afd, counters.clone(), opts.threads, tx));
    Ok(SourceInfo::new(
        SourceKind::Netlink,
        counters,
        Box::new(Subscription(fd)),
    ))
}

async fn reader(
    afd: AsyncFd<OwnedFd>,
    counters: Arc<SourceCounters>,
    threads: bool,
    tx: mpsc::Sender<SourceMsg>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut names = Names::default();
    loop {
        let mut guard = match afd.readable().await {
            Ok(g) => g,
            Err(e) => {
                log::error!("netlink proc connector poll failed: {e}; stopping");
                return;
            }
        };
        loop {
            // SAFETY: recv into a live buffer of buf.len() bytes.
            let n = unsafe {
                libc::recv(
                    afd.get_ref().as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => {
                        guard.clear_ready();
                        break;
                    }
                    Some(libc::ENOBUFS) => {
                        // The socket overflowed: an unknown number of notices is lost.
                        counters.dropped.fetch_add(1, Ordering::Relaxed);
                        if tx.send(SourceMsg::Lost(1)).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Some(libc::EINTR) => continue,
                    _ => {
                        log::error!("netlink proc connector recv failed: {e}; stopping");
                        return;
                    }
                }
            }
            for notice in parse(&buf[..n as usize]) {
                if notice.is_thread() && !threads {
                    continue;
                }
                let mut ev = enrich(notice);
                names.fill(&mut ev);
                if tx.send(SourceMsg::Event(ev)).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(what: u32, ts: u64, words: &[u32]) -> Vec<u8> {
        let mut m = vec![0u8; EV_OFF + 16 + 4 * words.len()];
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        m[16..20].copy_from_slice(&CN_IDX_PROC.to_ne_bytes());
        m[20..24].copy_from_slice(&CN_VAL_PROC.to_ne_bytes());
        m[EV_OFF..EV_OFF + 4].copy_from_slice(&what.to_ne_bytes());
        m[EV_OFF + 8..EV_OFF + 16].copy_from_slice(&ts.to_ne_bytes());
        for (i, w) in words.iter().enumerate() {
            let o = EV_OFF + 16 + 4 * i;
            m[o..o + 4].copy_from_slice(&w.to_ne_bytes());
        }
        m
    }

    #[test]
    fn parses_several_messages_in_one_datagram() {
        let mut buf = msg(PROC_EVENT_FORK, 5, &[10, 10, 11, 11]);
        buf.extend(msg(PROC_EVENT_EXEC, 6, &[11, 11]));
        buf.extend(msg(PROC_EVENT_EXIT, 7, &[11, 11, 3 << 8, 17, 10, 10]));
        let n = parse(&buf);
        assert_eq!(
            n,
            vec![
                Notice::Fork {
                    ts_ns: 5,
                    parent_tgid: 10,
                    child_pid: 11,
                    child_tgid: 11
                },
                Notice::Exec {
                    ts_ns: 6,
                    pid: 11,
                    tgid: 11
                },
                Notice::Exit {
                    ts_ns: 7,
                    pid: 11,
                    tgid: 11,
                    status: 3 << 8,
                    parent_tgid: 10
                },
            ]
        );
    }

    #[test]
    fn truncated_and_foreign_messages_are_skipped() {
        let full = msg(PROC_EVENT_EXIT, 7, &[11, 11, 0, 17, 10, 10]);
        for cut in 0..full.len() {
            let _ = parse(&full[..cut]); // never panics
        }
        let mut short = full.clone();
        short.truncate(EV_OFF + 20); // claims a length it does not have
        assert!(parse(&short).is_empty());
        let mut foreign = full.clone();
        foreign[16..20].copy_from_slice(&7u32.to_ne_bytes()); // another connector index
        assert!(parse(&foreign).is_empty());
        let ack = msg(0, 1, &[0]); // PROC_EVENT_NONE (the subscription ack)
        assert!(parse(&ack).is_empty());
    }

    #[test]
    fn threads_are_recognised() {
        assert!(Notice::Fork {
            ts_ns: 0,
            parent_tgid: 1,
            child_pid: 12,
            child_tgid: 11
        }
        .is_thread());
        assert!(!Notice::Fork {
            ts_ns: 0,
            parent_tgid: 1,
            child_pid: 11,
            child_tgid: 11
        }
        .is_thread());
        assert!(Notice::Exit {
            ts_ns: 0,
            pid: 12,
            tgid: 11,
            status: 0,
            parent_tgid: 1
        }
        .is_thread());
    }

    /// The real connector (root): a child's fork, exec and exit arrive with its pid, parent,
    /// comm, filename and status.
    #[tokio::test]
    #[ignore = "needs root: the proc connector needs CAP_NET_ADMIN"]
    async fn delivers_a_childs_lifecycle() {
        let (tx, mut rx) = mpsc::channel(4096);
        let _src = start(&SourceOptions::default(), tx).expect("proc connector");
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", "exec sleep 0.2"])
            .spawn()
            .unwrap();
        let pid = child.id();
        let me = std::process::id();
        let status = tokio::task::spawn_blocking(move || {
            let mut c = child;
            c.wait().unwrap()
        });
        let (mut fork, mut exec, mut exit) = (None, None, None);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while exit.is_none() {
            let m = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .expect("events in time")
                .unwrap();
            if let SourceMsg::Event(e) = m {
                if e.pid != pid {
                    continue;
                }
                match e.kind {
                    EventKind::Fork => fork = Some(e),
                    EventKind::Exec => exec = Some(e),
                    EventKind::Exit => exit = Some(e),
                }
            }
        }
        assert!(status.await.unwrap().success());
        let fork = fork.expect("fork");
        assert_eq!(fork.ppid, me);
        let exec = exec.expect("exec");
        assert_eq!(exec.comm.to_string(), "sleep");
        assert!(
            exec.filename.as_deref().unwrap().ends_with("/sleep"),
            "{exec:?}"
        );
        let exit = exit.unwrap();
        assert_eq!(exit.exit_code, Some(0));
        assert_eq!(exit.ppid, me);
    }
}

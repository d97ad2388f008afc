//! `renice` and `ionice`: CPU nice value and IO priority of every thread of a process.
//!
//! Both are per-thread in Linux (setpriority(PRIO_PROCESS, tid) and ioprio_set(
//! IOPRIO_WHO_PROCESS, tid) change one task), so each thread in /proc/PID/task is set, and
//! the list is read again until every thread shows the new value (a thread created meanwhile
//! inherits its creator's value, which may still have been the old one). The process is
//! checked alive through its pidfd afterwards: alive then means it held its pid (and its
//! threads their tids) all along, so no other process was touched.
use super::{resolve, Expect, Target};
use crate::{
    core::Agent,
    enforce::{EnforceError, Result},
};
use procman_common::action::{
    IoClass, IoPrio, IoniceAnswer, IoniceRequest, ReniceAnswer, ReniceRequest,
};

/// Passes over the thread list before giving up on threads that keep appearing.
const ROUNDS: usize = 8;
/// `IOPRIO_WHO_PROCESS`: one task (thread) by id.
const IOPRIO_WHO_PROCESS: libc::c_int = 1;

/// The thread ids of `pid`.
fn threads(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Field 19 (nice) of /proc/PID/task/TID/stat.
pub fn thread_nice(pid: u32, tid: u32) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    // rest starts at field 3 (state): field 19 is index 16
    rest.split_whitespace().nth(16)?.parse().ok()
}

fn ioprio_get(tid: u32) -> std::io::Result<u16> {
    // SAFETY: ioprio_get(which, who) has no pointers.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, tid as libc::c_int) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(r as u16)
}

fn ioprio_set(tid: u32, raw: u16) -> std::io::Result<()> {
    // SAFETY: ioprio_set(which, who, ioprio) has no pointers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            tid as libc::c_int,
            raw as libc::c_int,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn set_nice(tid: u32, nice: i32) -> std::io::Result<()> {
    // SAFETY: setpriority has no pointers.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS as _, tid as libc::id_t, nice) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Applies `set` to every thread until `is_set` holds for all (a thread that exits meanwhile
/// is skipped). Returns how many threads there are.
fn every_thread(
    t: &Target,
    what: &str,
    set: impl Fn(u32) -> std::io::Result<()>,
    is_set: impl Fn(u32) -> Option<bool>,
) -> Result<u32> {
    for _ in 0..ROUNDS {
        let tids = threads(t.pid);
        for &tid in &tids {
            match set(tid) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {} // the thread exited
                Err(e) => {
                    return Err(EnforceError::Failed(format!(
                        "{what} of thread {tid} of process {} ({}): {e}",
                        t.pid, t.name
                    )))
                }
            }
        }
        if t.pidfd.exited() {
            return Err(EnforceError::NotFound(format!(
                "process {} ({}) exited during the {what}",
                t.pid, t.name
            )));
        }
        let now = threads(t.pid);
        // a thread that vanished between listing and reading (None) no longer matters
        if now.iter().all(|&tid| is_set(tid) != Some(false)) {
            return Ok(now.len() as u32);
        }
    }
    Err(EnforceError::Failed(format!(
        "{what} of process {} ({}): new threads kept appearing with the old value after {ROUNDS} passes",
        t.pid, t.name
    )))
}

/// Sets the nice value of every thread of `pid`.
pub fn renice(
    agent: &Agent,
    pid: u32,
    req: &ReniceRequest,
    only_uid: Option<u32>,
) -> Result<ReniceAnswer> {
    let nice = req.target_nice().map_err(EnforceError::Invalid)?;
    let t = resolve(
        agent,
        pid,
        Expect::of(req.start_ns, req.started_at),
        only_uid,
    )?;
    let old = thread_nice(pid, pid)
        .ok_or_else(|| EnforceError::NotFound(format!("process {pid} ({}) exited", t.name)))?;
    let n = every_thread(
        &t,
        "renice",
        |tid| set_nice(tid, nice),
        |tid| thread_nice(pid, tid).map(|v| v == nice),
    )?;
    Ok(ReniceAnswer {
        success: true,
        message: format!(
            "Process {} (PID: {pid}) reniced from {old} to {nice} ({n} thread(s))",
            t.name
        ),
        pid,
        name: t.name,
        old_nice: old,
        new_nice: nice,
        threads: n,
    })
}

/// Sets the IO priority of every thread of `pid`.
pub fn ionice(
    agent: &Agent,
    pid: u32,
    req: &IoniceRequest,
    only_uid: Option<u32>,
) -> Result<IoniceAnswer> {
    let prio = IoPrio::new(req.class, req.level).map_err(EnforceError::Invalid)?;
    let t = resolve(
        agent,
        pid,
        Expect::of(req.start_ns, req.started_at),
        only_uid,
    )?;
    let old = ioprio_get(pid).map_err(|e| {
        EnforceError::Failed(format!("ioprio_get of process {pid} ({}): {e}", t.name))
    })?;
    let raw = prio.raw();
    let n = every_thread(
        &t,
        "ionice",
        |tid| ioprio_set(tid, raw),
        |tid| {
            ioprio_get(tid).ok().map(|v| {
                let now = IoPrio::from_raw(v);
                // some kernels report an unset class as the best-effort level nice implies
                now == prio || (prio.class == IoClass::None && now.class == IoClass::BestEffort)
            })
        },
    )?;
    let old = IoPrio::from_raw(old).to_string();
    Ok(IoniceAnswer {
        success: true,
        message: format!(
            "Process {} (PID: {pid}) IO priority set from {old} to {prio} ({n} thread(s))",
            t.name
        ),
        pid,
        name: t.name,
        old,
        new: prio.to_string(),
        threads: n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_threads_are_listed_and_their_nice_read() {
        let me = std::process::id();
        let tids = threads(me);
        assert!(tids.contains(&me));
        let n = thread_nice(me, me).unwrap();
        assert!((-20..=19).contains(&n));
        let p = IoPrio::from_raw(ioprio_get(me).unwrap());
        assert!(!p.to_string().is_empty());
    }
}

//! The live process table: seeded by one /proc scan, then kept current by events alone.
//!
//! Identity is (pid, start time): a pid reused by a new process replaces the old entry, never
//! merges with it. After a lost event the table is reconciled with /proc and the corrections
//! are counted.
use procman_common::api::{Comm, EventKind, ProcEvent};
use std::{collections::HashMap, sync::Arc};

/// One live process.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcEntry {
    pub pid: u32,
    pub ppid: u32,
    /// Start time in clock ticks since boot (/proc/PID/stat field 22); 0 when unknown.
    pub start_ticks: u64,
    pub comm: Comm,
    pub uid: u32,
    /// The executed file, when an exec was seen (or /proc/PID/exe at seed time).
    pub exe: Option<Arc<str>>,
    pub kthread: bool,
    /// The process exited (its exit event was seen) and is a zombie until its parent reaps
    /// it; the sampler removes it once /proc no longer shows it.
    pub exited: bool,
}

impl ProcEntry {
    /// A new live entry from a fork or exec event.
    fn from_event(ev: &ProcEvent, start_ticks: u64, exe: Option<Arc<str>>) -> ProcEntry {
        ProcEntry {
            pid: ev.pid,
            ppid: ev.ppid,
            start_ticks,
            comm: ev.comm,
            uid: ev.uid,
            exe,
            kthread: false,
            exited: false,
        }
    }
}

/// Clock ticks per second (USER_HZ), to compare BPF's ns start times with /proc's ticks.
fn ticks_per_sec() -> u64 {
    procfs::ticks_per_second()
}

/// Converts a start time in ns since boot to /proc's clock ticks (the kernel truncates the
/// same way in nsec_to_clock_t).
pub fn ns_to_ticks(ns: u64) -> u64 {
    ns / (1_000_000_000 / ticks_per_sec())
}

/// The inverse of [`ns_to_ticks`] (to the tick).
pub fn ticks_to_ns(ticks: u64) -> u64 {
    ticks.saturating_mul(1_000_000_000 / ticks_per_sec())
}

const PF_KTHREAD: u32 = 0x0020_0000;

fn entry_from_proc(p: &procfs::process::Process) -> Option<ProcEntry> {
    let stat = p.stat().ok()?;
    let uid = p.uid().unwrap_or(u32::MAX);
    let kthread = stat.flags & PF_KTHREAD != 0;
    let exe = if kthread {
        None
    } else {
        p.exe()
            .ok()
            .map(|e| Arc::from(e.to_string_lossy().as_ref()))
    };
    Some(ProcEntry {
        pid: stat.pid as u32,
        ppid: stat.ppid as u32,
        start_ticks: stat.starttime,
        comm: Comm::from(stat.comm.as_str()),
        uid,
        exe,
        kthread,
        exited: stat.state == 'Z',
    })
}

/// One process read from /proc (for a lookup the table cannot answer yet: a process started
/// a moment ago whose events are still on their way).
pub fn read_proc(pid: u32) -> Option<ProcEntry> {
    entry_from_proc(&procfs::process::Process::new(pid as i32).ok()?)
}

pub fn scan_proc() -> HashMap<u32, ProcEntry> {
    let mut map = HashMap::new();
    if let Ok(all) = procfs::process::all_processes() {
        for p in all.flatten() {
            if let Some(e) = entry_from_proc(&p) {
                map.insert(e.pid, e);
            }
        }
    }
    map
}

#[derive(Debug, Default)]
pub struct ProcTable {
    procs: HashMap<u32, ProcEntry>,
    /// ppid -> pids of its children in `procs` (kept with every insert, removal and
    /// reparenting, so exit handling and descendant walks never scan the whole table).
    children: HashMap<u32, std::collections::HashSet<u32>>,
    /// Orphans whose new parent the kernel had not set yet when their parent's exit was
    /// processed (the exit tracepoint fires before exit_notify reparents): child -> dead parent.
    pending_reparent: HashMap<u32, u32>,
}

/// Reads the parents of orphans from /proc (no lock held): `(child, Some(new parent))` once
/// the kernel has reparented it, `(child, None)` when it is gone; still waiting: not listed.
pub fn check_reparents(pending: &[(u32, u32)]) -> Vec<(u32, Option<u32>)> {
    pending
        .iter()
        .filter_map(|&(kid, dead)| {
            match procfs::process::Process::new(kid as i32).and_then(|p| p.stat()) {
                Ok(st) if st.ppid as u32 != dead => Some((kid, Some(st.ppid as u32))),
                Ok(_) => None,
                Err(_) => Some((kid, None)),
            }
        })
        .collect()
}

impl ProcTable {
    /// Seeds the table with one scan of /proc.
    pub fn seed() -> ProcTable {
        let mut t = ProcTable {
            procs: scan_proc(),
            ..Default::default()
        };
        t.rebuild_children();
        t
    }

    fn rebuild_children(&mut self) {
        self.children.clear();
        for e in self.procs.values() {
            self.children.entry(e.ppid).or_default().insert(e.pid);
        }
    }

    fn link(&mut self, pid: u32, ppid: u32) {
        self.children.entry(ppid).or_default().insert(pid);
    }

    fn unlink(&mut self, pid: u32, ppid: u32) {
        if let Some(set) = self.children.get_mut(&ppid) {
            set.remove(&pid);
            if set.is_empty() {
                self.children.remove(&ppid);
            }
        }
    }

    /// Inserts or replaces an entry, keeping the children index.
    fn put(&mut self, e: ProcEntry) {
        let (pid, ppid) = (e.pid, e.ppid);
        if let Some(old) = self.procs.insert(pid, e) {
            self.unlink(pid, old.ppid);
        }
        self.link(pid, ppid);
    }

    fn set_ppid(&mut self, pid: u32, ppid: u32) {
        let Some(e) = self.procs.get_mut(&pid) else {
            return;
        };
        let old = std::mem::replace(&mut e.ppid, ppid);
        if old != ppid {
            self.unlink(pid, old);
            self.link(pid, ppid);
        }
    }

    fn take(&mut self, pid: u32) -> Option<ProcEntry> {
        let e = self.procs.remove(&pid)?;
        self.unlink(pid, e.ppid);
        Some(e)
    }

    /// Pids of the direct children of `pid` in the table.
    pub fn children_of(&self, pid: u32) -> impl Iterator<Item = u32> + '_ {
        self.children
            .get(&pid)
            .into_iter()
            .flatten()
            .copied()
            .filter(move |&c| c != pid)
    }

    /// Every descendant of `pid` (children, their children, ...), breadth first.
    pub fn descendants(&self, pid: u32) -> Vec<u32> {
        let mut seen = std::collections::HashSet::from([pid]);
        let mut out: Vec<u32> = Vec::new();
        let mut cur = pid;
        let mut i = 0;
        loop {
            for c in self.children_of(cur) {
                if seen.insert(c) {
                    out.push(c);
                }
            }
            let Some(&next) = out.get(i) else { break };
            cur = next;
            i += 1;
        }
        out
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    pub fn get(&self, pid: u32) -> Option<&ProcEntry> {
        self.procs.get(&pid)
    }

    pub fn iter(&self) -> impl Iterator<Item = &ProcEntry> {
        self.procs.values()
    }

    /// Applies one event. Thread events do not change the process table.
    /// Applies a batch of events in order.
    pub fn apply_all(&mut self, events: &[ProcEvent]) {
        for ev in events {
            self.apply(ev);
        }
    }

    pub fn apply(&mut self, ev: &ProcEvent) {
        if ev.thread {
            return;
        }
        let start_ticks = if ev.start_ns != 0 {
            ns_to_ticks(ev.start_ns)
        } else {
            0
        };
        match ev.kind {
            EventKind::Fork => {
                // A fork event always names a new process: whatever had this pid is gone.
                let exe = self.procs.get(&ev.ppid).and_then(|p| p.exe.clone());
                self.put(ProcEntry::from_event(ev, start_ticks, exe));
            }
            EventKind::Exec => {
                if !self.procs.contains_key(&ev.pid) {
                    self.put(ProcEntry::from_event(ev, start_ticks, None));
                }
                self.set_ppid(ev.pid, ev.ppid);
                let Some(e) = self.procs.get_mut(&ev.pid) else {
                    return;
                };
                if start_ticks != 0 && e.start_ticks != 0 && e.start_ticks != start_ticks {
                    // The fork of this process was missed and the pid was reused.
                    e.start_ticks = start_ticks;
                }
                e.comm = ev.comm;
                e.uid = ev.uid;
                e.exe = ev.filename.clone();
            }
            EventKind::Exit => {
                let same = self.procs.get(&ev.pid).is_some_and(|e| {
                    start_ticks == 0 || e.start_ticks == 0 || e.start_ticks == start_ticks
                });
                if let Some(e) = self.procs.get_mut(&ev.pid).filter(|_| same) {
                    e.exited = true;
                    self.reparent_children_of(ev.pid);
                }
            }
        }
    }

    /// Children of an exited process are reparented by the kernel (to a subreaper or init),
    /// after the exit tracepoint fired: they wait in `pending_reparent` until /proc shows their
    /// new parent ([`check_reparents`], read without the table lock, then
    /// [`ProcTable::apply_reparents`]).
    fn reparent_children_of(&mut self, pid: u32) {
        let kids: Vec<u32> = self.children_of(pid).collect();
        for kid in kids {
            self.pending_reparent.insert(kid, pid);
        }
    }

    /// Whether some orphans still wait for their new parent.
    pub fn has_pending_reparents(&self) -> bool {
        !self.pending_reparent.is_empty()
    }

    /// Orphans waiting for their new parent, as (child, dead parent).
    pub fn pending_reparents(&self) -> Vec<(u32, u32)> {
        self.pending_reparent
            .iter()
            .filter(|(kid, _)| self.procs.contains_key(kid))
            .map(|(k, d)| (*k, *d))
            .collect()
    }

    /// Applies what [`check_reparents`] found: a new parent, or gone (its exit event removes
    /// it). Orphans not listed keep waiting.
    pub fn apply_reparents(&mut self, found: &[(u32, Option<u32>)]) {
        let procs = &self.procs;
        self.pending_reparent
            .retain(|kid, _| procs.contains_key(kid));
        for &(kid, ppid) in found {
            self.pending_reparent.remove(&kid);
            if let Some(ppid) = ppid {
                self.set_ppid(kid, ppid);
            }
        }
    }

    /// Removes entries whose process is gone from /proc: reaped zombies, and processes that
    /// vanished without an exit event. Returns how many of the latter there were.
    pub fn drop_vanished(&mut self, vanished: &[(u32, u64)]) -> u64 {
        let mut without_exit = 0;
        for (pid, start) in vanished {
            if self.procs.get(pid).is_some_and(|e| e.start_ticks == *start) {
                let e = self.take(*pid);
                without_exit += u64::from(e.is_some_and(|e| !e.exited));
            }
        }
        without_exit
    }

    /// Makes the table match /proc; returns the number of corrections (added, removed or
    /// changed entries).
    pub fn reconcile(&mut self) -> u64 {
        self.reconcile_with(scan_proc())
    }

    /// [`ProcTable::reconcile`] with a scan of /proc made beforehand (without the lock).
    pub fn reconcile_with(&mut self, fresh: HashMap<u32, ProcEntry>) -> u64 {
        let mut corrections = 0;
        self.procs.retain(|pid, _| {
            let keep = fresh.contains_key(pid);
            corrections += u64::from(!keep);
            keep
        });
        for (pid, f) in fresh {
            match self.procs.get_mut(&pid) {
                Some(e) if e.start_ticks == f.start_ticks && e.ppid == f.ppid => {}
                Some(e) => {
                    *e = f;
                    corrections += 1;
                }
                None => {
                    self.procs.insert(pid, f);
                    corrections += 1;
                }
            }
        }
        self.rebuild_children();
        corrections
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, pid: u32, ppid: u32, start_ns: u64) -> ProcEvent {
        ProcEvent {
            kind,
            ts_ns: 0,
            pid,
            tid: pid,
            ppid,
            uid: 0,
            gid: 0,
            cgroup_id: 0,
            start_ns,
            comm: Comm::from("x"),
            filename: (kind == EventKind::Exec).then(|| Arc::from("/bin/x")),
            exit_code: None,
            exit_signal: None,
            thread: false,
            held: false,
        }
    }

    #[test]
    fn fork_exec_exit() {
        let mut t = ProcTable::default();
        t.apply(&ev(EventKind::Fork, 4_000_001, 1, 5_000_000_000));
        assert_eq!(t.get(4_000_001).unwrap().ppid, 1);
        t.apply(&ev(EventKind::Exec, 4_000_001, 1, 5_000_000_000));
        assert_eq!(t.get(4_000_001).unwrap().exe.as_deref(), Some("/bin/x"));
        t.apply(&ev(EventKind::Exit, 4_000_001, 1, 5_000_000_000));
        assert!(t.get(4_000_001).unwrap().exited, "a zombie until reaped");
        assert_eq!(
            t.drop_vanished(&[(4_000_001, ns_to_ticks(5_000_000_000))]),
            0,
            "reaped, not vanished"
        );
        assert!(t.get(4_000_001).is_none());
    }

    #[test]
    fn exit_of_an_older_process_with_a_reused_pid_keeps_the_new_one() {
        let mut t = ProcTable::default();
        t.apply(&ev(EventKind::Fork, 4_000_002, 1, 9_000_000_000));
        // a late exit record of a previous process with the same pid and another start time
        t.apply(&ev(EventKind::Exit, 4_000_002, 1, 1_000_000_000));
        assert!(!t.get(4_000_002).unwrap().exited);
    }

    #[test]
    fn children_index_follows_forks_reparenting_and_removal() {
        let mut t = ProcTable::default();
        t.apply(&ev(EventKind::Fork, 4_100_001, 4_100_000, 1));
        t.apply(&ev(EventKind::Fork, 4_100_002, 4_100_001, 2));
        t.apply(&ev(EventKind::Fork, 4_100_003, 4_100_002, 3));
        assert_eq!(
            t.children_of(4_100_001).collect::<Vec<_>>(),
            vec![4_100_002]
        );
        assert_eq!(t.descendants(4_100_001), vec![4_100_002, 4_100_003]);
        // pid reuse: a new process with pid 4_100_002 under another parent
        t.apply(&ev(EventKind::Fork, 4_100_002, 4_100_000, 9_000_000_000));
        assert_eq!(t.children_of(4_100_001).count(), 0);
        assert!(t.children_of(4_100_000).any(|c| c == 4_100_002));
        t.drop_vanished(&[(4_100_002, ns_to_ticks(9_000_000_000))]);
        assert!(!t.children_of(4_100_000).any(|c| c == 4_100_002));
    }

    #[test]
    fn seed_and_reconcile_match_proc() {
        let mut t = ProcTable::seed();
        let me = std::process::id();
        assert!(
            t.get(me).is_some(),
            "the test process itself is in the seeded table"
        );
        assert!(t.get(1).is_some());
        // a bogus entry is removed by reconcile
        t.apply(&ev(EventKind::Fork, 4_000_003, me, 1));
        let c = t.reconcile();
        assert!(c >= 1);
        assert!(t.get(4_000_003).is_none());
    }
}

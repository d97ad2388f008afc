//! Which processes an enforcement request means: pids, a name, a filter, and the
//! descendants of each (so nothing escapes by having forked before the move).
//!
//! Resolution runs in two steps so that no /proc read happens under the table lock: the
//! table is consulted in memory ([`select`]), then pids the table has not seen yet (started
//! a moment ago) are looked up in /proc ([`Selection::resolve`]).
use super::error::{EnforceError, Result};
use crate::{monitor::Monitor, query, tree::ProcTable};
use procman_common::{api::LimitRequest, filter::Filter};

/// A process as (pid, start time in clock ticks): what every mutating action targets.
pub type Target = (u32, u64);

/// What the table knew; `unknown` pids still need a /proc lookup.
pub struct Selection {
    pub found: Vec<Target>,
    unknown: Vec<u32>,
}

/// Picks the request's processes from the table (in memory only; call with the lock held).
pub fn select(
    req: &LimitRequest,
    filter: Option<&Filter>,
    table: &ProcTable,
    mon: &Monitor,
    ctx: &query::RowContext,
) -> Result<Selection> {
    let mut found = Vec::new();
    let mut unknown = Vec::new();
    for &pid in &req.pids {
        match table.get(pid) {
            Some(e) if !e.exited => found.push((pid, e.start_ticks)),
            Some(_) => return Err(EnforceError::NotFound(format!("process {pid} has exited"))),
            // a process started a moment ago may not be in the table yet: ask /proc later
            None => unknown.push(pid),
        }
    }
    if let Some(n) = &req.name {
        let before = found.len();
        found.extend(
            table
                .iter()
                .filter(|e| !e.exited && e.comm.as_bytes() == n.as_bytes())
                .map(|e| (e.pid, e.start_ticks)),
        );
        if found.len() == before {
            return Err(EnforceError::NotFound(format!("no process named {n:?}")));
        }
    }
    if let Some(f) = filter {
        let keep = query::matching(table, mon, f, ctx);
        found.extend(
            keep.into_iter()
                .filter_map(|p| table.get(p))
                .filter(|e| !e.exited)
                .map(|e| (e.pid, e.start_ticks)),
        );
    }
    if found.is_empty() && unknown.is_empty() {
        return Err(EnforceError::Invalid(
            "say which processes: pids, name or filter".into(),
        ));
    }
    // descendants follow (escape-free)
    let roots: Vec<u32> = found.iter().map(|t| t.0).collect();
    for pid in roots {
        for d in table.descendants(pid) {
            if let Some(e) = table.get(d).filter(|e| !e.exited) {
                found.push((d, e.start_ticks));
            }
        }
    }
    Ok(Selection { found, unknown })
}

impl Selection {
    /// Looks up the pids the table did not know in /proc (no lock held), and checks that
    /// every target may be acted on (not pid 1, a kernel thread or the agent, and still the
    /// same process). Sorted, without duplicates.
    pub fn resolve(mut self) -> Result<Vec<Target>> {
        for pid in self.unknown {
            let info = procman_cgroup::procs::proc_info(pid)
                .map_err(|_| EnforceError::NotFound(format!("no process with pid {pid}")))?;
            self.found.push((pid, info.start_time));
        }
        self.found.sort_unstable();
        self.found.dedup();
        for &(pid, start) in &self.found {
            procman_cgroup::procs::check_mutable(pid, Some(start))?;
        }
        Ok(self.found)
    }
}

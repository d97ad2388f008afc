//! `kill`: seed 004's endpoint. SIGTERM, then SIGKILL if the process is still there after
//! the grace (default `[actions] kill_grace`, 5 s); `force` sends SIGKILL at once; `signal`
//! sends another signal (then nothing follows unless a `grace` is given); `tree` ends the
//! whole subtree.
//!
//! Every signal goes through the target's pidfd, and every wait is a poll on pidfds.
//!
//! # Subtrees and the fork race
//! The subtree is a snapshot of the process table (/proc's parent links), descendants first,
//! each opened as a pidfd and checked like the root (a protected or foreign descendant refuses
//! the whole request before anything is signalled). A member can fork between the snapshot and
//! its signal, so after signalling, the agent scans again for children of the members and
//! signals those too, until a scan finds none (bounded rounds). What this cannot catch: a
//! child forked and orphaned (its parent already dead, so it was reparented to a subreaper or
//! init) between two scans. When the root is alone in a procman slice with its descendants
//! (nothing else in the slice), SIGKILL is sent through the slice instead (`cgroup.kill`, or
//! the freeze-and-signal sweep on older kernels), which no fork escapes. For an escape-free
//! end of any tree, put it in a slice first (`procman limit --pid PID`) and kill the slice.
use super::{guard, open_target, pidfd::wait_all, Expect, Target};
use crate::{
    core::Agent,
    enforce::{EnforceError, Result},
};
use procman_common::action::{parse_signal, signal_name, KillAnswer, KillRequest};
use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

/// How long a SIGKILLed process may take to be gone before the kill is reported failed.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// Scans for children forked while a subtree is being signalled.
const SWEEP_ROUNDS: usize = 64;

/// What a request asks for: the first signal and, when SIGKILL may follow, after how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    pub first: i32,
    pub grace: Option<Duration>,
}

impl Plan {
    /// Checks the request: `force` excludes `signal` and `grace`; SIGKILL takes no grace.
    pub fn of(req: &KillRequest, default_grace: Duration) -> Result<Plan> {
        let invalid = |m: &str| Err(EnforceError::Invalid(m.to_string()));
        if req.force {
            if req.signal.is_some() {
                return invalid("force sends SIGKILL: give either force or signal, not both");
            }
            if req.grace.is_some() {
                return invalid("force sends SIGKILL at once: a grace does not apply");
            }
            return Ok(Plan {
                first: libc::SIGKILL,
                grace: None,
            });
        }
        match &req.signal {
            None => Ok(Plan {
                first: libc::SIGTERM,
                grace: Some(req.grace.unwrap_or(default_grace)),
            }),
            Some(s) => {
                let sig = parse_signal(s).map_err(EnforceError::Invalid)?;
                if sig == libc::SIGKILL && req.grace.is_some() {
                    return invalid("SIGKILL cannot be caught: a grace does not apply");
                }
                Ok(Plan {
                    first: sig,
                    grace: if sig == libc::SIGKILL {
                        None
                    } else {
                        req.grace
                    },
                })
            }
        }
    }
}

/// Sends `sig` through the pidfd; `Ok(true)` when the process had already exited.
fn send(t: &Target, sig: i32) -> Result<bool> {
    match t.pidfd.signal(sig) {
        Ok(()) => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(true),
        Err(e) => Err(EnforceError::Failed(format!(
            "sending {} to process {} ({}): {e}",
            signal_name(sig),
            t.pid,
            t.name
        ))),
    }
}

/// The error for a target gone before its first signal: its pid reused (409), or simply gone.
fn vanished(t: &Target) -> EnforceError {
    match procman_cgroup::procs::proc_info(t.pid) {
        Ok(i) if i.start_time != t.start_ticks => EnforceError::Conflict(format!(
            "process {} ({}) exited and its pid was reused before the signal; the new process \
             was not touched",
            t.pid, t.name
        )),
        _ => EnforceError::NotFound(format!(
            "process {} ({}) exited before it was signalled",
            t.pid, t.name
        )),
    }
}

/// Kills process `pid` as `req` asks (see the module docs).
pub fn kill(
    agent: &Agent,
    pid: u32,
    req: &KillRequest,
    only_uid: Option<u32>,
) -> Result<KillAnswer> {
    let settings = agent.actions.settings();
    let plan = Plan::of(req, settings.kill_grace)?;
    let expect = Expect::of(req.start_ns, req.started_at);
    let root = open_target(pid, expect)?;
    guard(agent, &root, settings.protect.as_ref(), only_uid)?;
    if req.tree {
        return kill_tree(agent, root, plan, settings.protect.as_ref(), only_uid);
    }
    let t0 = Instant::now();
    if send(&root, plan.first)? {
        return Err(vanished(&root));
    }
    let mut last = plan.first;
    let exited = if plan.first == libc::SIGKILL {
        root.pidfd.wait(KILL_WAIT)
    } else if let Some(grace) = plan.grace {
        if root.pidfd.wait(grace) {
            true
        } else {
            last = libc::SIGKILL;
            send(&root, libc::SIGKILL)? || root.pidfd.wait(KILL_WAIT)
        }
    } else {
        root.pidfd.exited()
    };
    let escalated = last != plan.first;
    finish(&root, plan, last, escalated, exited, t0, Vec::new(), None)
}

/// The answer, or the error for a SIGKILL that did not end the process.
#[allow(clippy::too_many_arguments)]
fn finish(
    root: &Target,
    plan: Plan,
    last: i32,
    escalated: bool,
    exited: bool,
    t0: Instant,
    tree_killed: Vec<u32>,
    method: Option<String>,
) -> Result<KillAnswer> {
    let waited = t0.elapsed();
    let (pid, name) = (root.pid, &root.name);
    if last == libc::SIGKILL && !exited {
        return Err(EnforceError::Failed(format!(
            "process {pid} ({name}) was sent SIGKILL but is still there after {:.1}s (stuck in \
             the kernel, state D?)",
            waited.as_secs_f64()
        )));
    }
    let others = if tree_killed.is_empty() {
        String::new()
    } else {
        format!(" and its {} descendant(s)", tree_killed.len())
    };
    let message = if !exited {
        format!(
            "Sent {} to process {name} (PID: {pid}){others}",
            signal_name(plan.first)
        )
    } else if escalated {
        format!(
            "Process {name} (PID: {pid}){others} terminated successfully (SIGKILL after a {} grace: {} was not enough)",
            procman_common::units::HumanDuration(plan.grace.unwrap_or_default()),
            signal_name(plan.first)
        )
    } else {
        format!("Process {name} (PID: {pid}){others} terminated successfully")
    };
    Ok(KillAnswer {
        success: true,
        message,
        pid,
        name: name.clone(),
        forced: last == libc::SIGKILL,
        signal: signal_name(last),
        exited,
        escalated,
        waited_seconds: (waited.as_secs_f64() * 1000.0).round() / 1000.0,
        tree_killed,
        method,
    })
}

/// pid → its children, from one pass over /proc (processes only; kernel threads are
/// kthreadd's children and never in a tree we act on).
fn children_map() -> HashMap<u32, Vec<u32>> {
    let mut map: HashMap<u32, Vec<u32>> = HashMap::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return map;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        if let Some((ppid, _, _)) = procman_cgroup::procs::parse_stat(&stat) {
            map.entry(ppid).or_default().push(pid);
        }
    }
    map
}

/// The descendants of `roots` not in `known`, with their depth below the roots.
fn descendants(
    map: &HashMap<u32, Vec<u32>>,
    roots: &[u32],
    known: &HashSet<u32>,
) -> Vec<(u32, usize)> {
    let mut out = Vec::new();
    let mut seen: HashSet<u32> = roots.iter().copied().collect();
    let mut level: Vec<u32> = roots.to_vec();
    let mut depth = 0;
    while !level.is_empty() && depth < 4096 {
        depth += 1;
        let mut next = Vec::new();
        for p in &level {
            for &c in map.get(p).into_iter().flatten() {
                if seen.insert(c) {
                    next.push(c);
                    if !known.contains(&c) {
                        out.push((c, depth));
                    }
                }
            }
        }
        level = next;
    }
    out
}

/// Opens the descendants found by a scan. In the first scan (`strict`) a protected or foreign
/// descendant refuses the whole request; later (after signals went out) it is skipped and
/// logged. Processes that exited meanwhile are skipped.
fn open_members(
    agent: &Agent,
    root: &Target,
    found: Vec<(u32, usize)>,
    protect: Option<&procman_common::filter::Filter>,
    only_uid: Option<u32>,
    strict: bool,
) -> Result<Vec<(Target, usize)>> {
    let mut out = Vec::new();
    for (pid, depth) in found {
        let checked = open_target(pid, Expect::default())
            .and_then(|t| guard(agent, &t, protect, only_uid).map(|_| t));
        match checked {
            Ok(t) => out.push((t, depth)),
            Err(EnforceError::NotFound(_)) => {}
            Err(e) if strict => {
                return Err(EnforceError::Forbidden(format!(
                    "the subtree of process {} ({}) holds process {pid}, which may not be acted \
                     on ({e}); nothing was signalled",
                    root.pid, root.name
                )))
            }
            Err(e) => log::warn!(
                "kill tree of {}: process {pid} appeared in the subtree but is spared: {e}",
                root.pid
            ),
        }
    }
    Ok(out)
}

/// The procman slice holding the root, when it holds nothing but the root and `members`.
fn alone_in_slice(agent: &Agent, root: &Target, members: &[(Target, usize)]) -> Option<String> {
    let cg = procman_cgroup::procs::cgroup_of(root.pid).ok()?;
    let slice = crate::query::slice_of_cgroup(&cg, agent.enforcer.root())?.to_string();
    let m = agent.enforcer.manager().ok()?;
    let mine: HashSet<u32> = members
        .iter()
        .map(|(t, _)| t.pid)
        .chain([root.pid])
        .collect();
    let pids = m.pids(&slice).ok()?;
    pids.iter().all(|p| mine.contains(p)).then_some(slice)
}

/// Signals members deepest first, then scans for children forked meanwhile and signals
/// those, until a scan finds none. Returns the members added.
fn signal_all(
    agent: &Agent,
    root: &Target,
    members: &mut Vec<(Target, usize)>,
    sig: i32,
    protect: Option<&procman_common::filter::Filter>,
    only_uid: Option<u32>,
) -> Result<()> {
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(members[i].1));
    for i in order {
        send(&members[i].0, sig)?;
    }
    send(root, sig)?;
    for _ in 0..SWEEP_ROUNDS {
        let map = children_map();
        let known: HashSet<u32> = members.iter().map(|(t, _)| t.pid).collect();
        let mut roots: Vec<u32> = known.iter().copied().collect();
        roots.push(root.pid);
        let found = descendants(&map, &roots, &known);
        if found.is_empty() {
            return Ok(());
        }
        let mut new = open_members(agent, root, found, protect, only_uid, false)?;
        new.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
        for (t, _) in &new {
            send(t, sig)?;
        }
        if new.is_empty() {
            return Ok(());
        }
        members.extend(new);
    }
    log::warn!(
        "kill tree of {}: still finding new children after {SWEEP_ROUNDS} scans",
        root.pid
    );
    Ok(())
}

fn kill_tree(
    agent: &Agent,
    root: Target,
    plan: Plan,
    protect: Option<&procman_common::filter::Filter>,
    only_uid: Option<u32>,
) -> Result<KillAnswer> {
    let found = descendants(&children_map(), &[root.pid], &HashSet::new());
    let mut members = open_members(agent, &root, found, protect, only_uid, true)?;
    let t0 = Instant::now();
    let all_gone = |members: &[(Target, usize)], root: &Target, wait: Duration| {
        let fds: Vec<_> = members
            .iter()
            .map(|(t, _)| &t.pidfd)
            .chain([&root.pidfd])
            .collect();
        wait_all(&fds, wait)
    };
    // SIGKILL through the slice, when the tree has one to itself
    let kill_slice = |members: &[(Target, usize)]| -> Result<Option<String>> {
        match alone_in_slice(agent, &root, members) {
            Some(slice) => {
                let (_, how) = agent.enforcer.kill_slice(&slice, only_uid)?;
                Ok(Some(format!("{how} of slice {slice}")))
            }
            None => Ok(None),
        }
    };
    let mut method = None;
    let mut last = plan.first;
    let exited = if plan.first == libc::SIGKILL {
        method = kill_slice(&members)?;
        if method.is_none() {
            signal_all(agent, &root, &mut members, libc::SIGKILL, protect, only_uid)?;
        }
        all_gone(&members, &root, KILL_WAIT)
    } else {
        signal_all(agent, &root, &mut members, plan.first, protect, only_uid)?;
        match plan.grace {
            Some(grace) if !all_gone(&members, &root, grace) => {
                last = libc::SIGKILL;
                members.retain(|(t, _)| !t.pidfd.exited());
                method = kill_slice(&members)?;
                if method.is_none() {
                    signal_all(agent, &root, &mut members, libc::SIGKILL, protect, only_uid)?;
                }
                all_gone(&members, &root, KILL_WAIT)
            }
            Some(_) => true,
            None => root.pidfd.exited(),
        }
    };
    let escalated = last != plan.first;
    let mut killed: Vec<u32> = members.iter().map(|(t, _)| t.pid).collect();
    killed.sort_unstable();
    killed.dedup();
    let method = method.or_else(|| Some("pidfd signals".into()));
    finish(&root, plan, last, escalated, exited, t0, killed, method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        let g = Duration::from_secs(5);
        let p = |j: &str| Plan::of(&serde_json::from_str(j).unwrap(), g);
        assert_eq!(
            p("{}").unwrap(),
            Plan {
                first: libc::SIGTERM,
                grace: Some(g)
            }
        );
        assert_eq!(p(r#"{"force": true}"#).unwrap().first, libc::SIGKILL);
        assert_eq!(p(r#"{"force": true}"#).unwrap().grace, None);
        let hup = p(r#"{"signal": "HUP"}"#).unwrap();
        assert_eq!((hup.first, hup.grace), (libc::SIGHUP, None));
        let hup = p(r#"{"signal": "HUP", "grace": 1}"#).unwrap();
        assert_eq!(hup.grace, Some(Duration::from_secs(1)));
        assert_eq!(
            p(r#"{"grace": "2s"}"#).unwrap().grace,
            Some(Duration::from_secs(2))
        );
        assert!(p(r#"{"force": true, "signal": "TERM"}"#).is_err());
        assert!(p(r#"{"force": true, "grace": 1}"#).is_err());
        assert!(p(r#"{"signal": "KILL", "grace": 1}"#).is_err());
        assert!(p(r#"{"signal": "BOGUS"}"#).is_err());
    }

    #[test]
    fn descendants_by_depth() {
        let map: HashMap<u32, Vec<u32>> = [
            (10, vec![11, 12]),
            (11, vec![13]),
            (13, vec![14]),
            (99, vec![100]),
        ]
        .into();
        let d = descendants(&map, &[10], &HashSet::new());
        assert_eq!(d, vec![(11, 1), (12, 1), (13, 2), (14, 3)]);
        let known: HashSet<u32> = [11, 13].into();
        assert_eq!(descendants(&map, &[10], &known), vec![(12, 1), (14, 3)]);
        // a cycle (cannot happen in /proc, but the walk must end)
        let cyc: HashMap<u32, Vec<u32>> = [(1, vec![2]), (2, vec![1])].into();
        assert_eq!(descendants(&cyc, &[1], &HashSet::new()), vec![(2, 1)]);
    }
}

//! The read side: process lists, one process, its tree and history, the whole tree, system
//! totals. Handlers hold the table's read lock only for in-memory work; /proc reads (fds,
//! cwd) happen on the blocking pool without it.
use super::{
    error::ApiErr,
    extract::{Pid, Query},
};
use crate::{access::Scope, core::Agent, query};
use axum::{
    extract::{Extension, State},
    Json,
};
use procman_common::{
    api::{
        ApiError, HistoryPoint, HistoryStatistics, ProcessDetail, ProcessHistory, ProcessInfo,
        ProcessList, ProcessStatus, ProcessTree, SortKey, SystemInfo, TreeNode, DEFAULT_TOP,
    },
    filter::Filter,
};
use std::sync::Arc;

#[derive(serde::Deserialize, Default, utoipa::IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The order of `processes` (asking for it adds the full list).
    #[param(inline)]
    sort: Option<SortKey>,
    /// Entries in `top_cpu` and `top_ram` (default 10), and at most this many in `processes`.
    limit: Option<usize>,
    /// Only this user's processes, by name or uid (adds the full list).
    user: Option<String>,
    /// A filter expression, as `procman ps --filter` (adds the full list).
    filter: Option<String>,
}

/// Parses `?filter=`; a bad one is a 400 naming the column.
fn parse_filter(f: Option<&str>) -> Result<Option<Filter>, ApiErr> {
    f.filter(|f| !f.trim().is_empty())
        .map(|f| {
            Filter::parse(f).map_err(|e| ApiErr::bad_request(format!("invalid filter {f:?}: {e}")))
        })
        .transpose()
}

/// A non-root caller's uid: other users' command lines, cwd and fds are hidden from it.
fn viewer(scope: &Scope) -> Option<u32> {
    (!scope.sees_all).then_some(scope.peer.uid)
}

fn redact(p: &mut ProcessInfo, viewer: Option<u32>) {
    if viewer.is_some_and(|v| v != p.uid) {
        p.cmdline.clear();
    }
}

/// Every process of a tree, depth first.
fn tree_procs<'a>(nodes: &'a mut [TreeNode], out: &mut Vec<&'a mut ProcessInfo>) {
    for n in nodes {
        out.push(&mut n.process);
        tree_procs(&mut n.children, out);
    }
}

fn redact_tree(nodes: &mut [TreeNode], viewer: Option<u32>) {
    if viewer.is_none() {
        return;
    }
    for n in nodes {
        redact(&mut n.process, viewer);
        redact_tree(&mut n.children, viewer);
    }
}

fn not_found(pid: u32) -> ApiErr {
    ApiErr::process_not_found(pid)
}

/// The machine's RAM, bytes (0 before the first system sample).
fn mem_total(agent: &Agent) -> u64 {
    agent
        .monitor
        .system
        .read()
        .map(|s| s.info.memory_total_bytes)
        .unwrap_or(0)
}

/// Runs `f` on the blocking pool (it may read /proc or wait on locks).
pub async fn blocking<T: Send + 'static>(
    agent: Arc<Agent>,
    f: impl FnOnce(&Agent) -> Result<T, ApiErr> + Send + 'static,
) -> Result<T, ApiErr> {
    tokio::task::spawn_blocking(move || f(&agent)).await?
}

/// The overview (top 10 by CPU and by memory), plus the full list when asked.
#[utoipa::path(get, path = "/api/processes", tag = "processes", params(ListQuery),
    responses(
        (status = 200, description = "The overview; `processes` with `sort`, `user` or `filter`.", body = ProcessList),
        (status = 400, description = "A malformed query, filter or unknown user.", body = ApiError),
    ))]
pub async fn processes(
    State(agent): State<Arc<Agent>>,
    Extension(scope): Extension<Scope>,
    Query(q): Query<ListQuery>,
) -> Result<Json<ProcessList>, ApiErr> {
    let viewer = viewer(&scope);
    // `limit` sizes the top lists (seed 004: 10); the full list is there when asked for
    let full = q.sort.is_some() || q.user.is_some() || q.filter.is_some();
    let top = q.limit.unwrap_or(DEFAULT_TOP);
    let filter = parse_filter(q.filter.as_deref())?;
    let key = q.sort.unwrap_or_default();
    let uid_of_user = match q.user.as_deref() {
        None => None,
        Some(u) => Some(
            u.parse::<u32>()
                .ok()
                .or_else(|| query::uid_of(u))
                .ok_or_else(|| {
                    ApiErr::bad_request(format!("unknown user {u:?}: give a user name or a uid"))
                })?,
        ),
    };
    blocking(agent, move |agent| {
        let ctx = query::RowContext {
            slice_root: agent.enforcer.root(),
            fds: query::fd_counts(&agent.table, filter.as_ref()),
            viewer,
        };
        let table = agent.table.read().unwrap_or_else(|e| e.into_inner());
        let mut overview = query::overview(&table, &agent.monitor, top);
        if full {
            overview.processes = Some(query::select(
                &table,
                &agent.monitor,
                key,
                q.limit,
                |e, u| {
                    uid_of_user.is_none_or(|uid| e.uid == uid)
                        && filter.as_ref().is_none_or(|f| {
                            f.matches(&query::Row {
                                entry: e,
                                usage: u,
                                ctx: &ctx,
                            })
                        })
                },
            ));
        }
        drop(table);
        for p in overview
            .top_cpu
            .iter_mut()
            .chain(overview.top_ram.iter_mut())
            .chain(overview.processes.iter_mut().flatten())
        {
            redact(p, viewer);
        }
        agent.enforcer.mark_frozen(
            overview
                .top_cpu
                .iter_mut()
                .chain(overview.top_ram.iter_mut())
                .chain(overview.processes.iter_mut().flatten()),
        );
        Ok(Json(overview))
    })
    .await
}

/// One process, with the facts read on demand (fds, cwd, children).
#[utoipa::path(get, path = "/api/processes/{pid}", tag = "processes", params(Pid),
    responses(
        (status = 200, description = "The process.", body = ProcessDetail),
        (status = 400, description = "The pid is not a positive number.", body = ApiError),
        (status = 404, description = "No such process (`\"error\": \"Process not found\"`).", body = ApiError),
    ))]
pub async fn process(
    State(agent): State<Arc<Agent>>,
    Extension(scope): Extension<Scope>,
    Pid(pid): Pid,
) -> Result<Json<ProcessDetail>, ApiErr> {
    let viewer = viewer(&scope);
    blocking(agent, move |agent| {
        let known = {
            let table = agent.table.read().unwrap_or_else(|e| e.into_inner());
            table.get(pid).map(|e| {
                let u = agent.monitor.get(pid);
                let kids: Vec<u32> = table.children_of(pid).collect();
                (query::process_info(e, u.as_ref()), kids)
            })
        };
        // started a moment ago, its events not applied yet: /proc knows it already
        let (mut info, mut children) = match known {
            Some(k) => k,
            None => {
                let e = crate::tree::read_proc(pid).ok_or_else(|| not_found(pid))?;
                (query::process_info(&e, None), Vec::new())
            }
        };
        // The sampler's RSS is the kernel's cheap counter (since 6.2 a percpu counter's shared
        // part, up to a batch per CPU behind); one process's detail gets statm's figure.
        if info.status != ProcessStatus::Zombie {
            if let Some(rss) = query::statm_rss_bytes(pid) {
                query::set_memory(&mut info, rss, Some(mem_total(agent)));
            }
        }
        let leak = {
            let h = agent
                .monitor
                .history
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            h.find(pid).and_then(|id| h.leak_suspected(id))
        };
        let hidden = viewer.is_some_and(|v| v != info.uid);
        let fds = if hidden { None } else { query::count_fds(pid) };
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))
            .ok()
            .filter(|_| !hidden)
            .map(|p| p.to_string_lossy().into_owned());
        children.sort_unstable();
        redact(&mut info, viewer);
        agent.enforcer.mark_frozen(std::iter::once(&mut info));
        Ok(Json(ProcessDetail {
            success: true,
            process: info,
            num_fds: fds.map(|f| f.total),
            connections: fds.map(|f| f.sockets),
            open_files: fds.map(|f| f.files),
            cwd,
            children,
            leak_suspected: leak,
        }))
    })
    .await
}

/// A process's parent, its descendants, and its subtree.
#[utoipa::path(get, path = "/api/processes/{pid}/tree", tag = "processes", params(Pid),
    responses(
        (status = 200, description = "The parent, the descendants and the subtree.", body = ProcessTree),
        (status = 400, description = "The pid is not a positive number.", body = ApiError),
        (status = 404, description = "No such process.", body = ApiError),
    ))]
pub async fn process_tree(
    State(agent): State<Arc<Agent>>,
    Extension(scope): Extension<Scope>,
    Pid(pid): Pid,
) -> Result<Json<ProcessTree>, ApiErr> {
    let viewer = viewer(&scope);
    blocking(agent, move |agent| {
        let all = snapshot(agent);
        let me = all
            .iter()
            .find(|p| p.pid == pid)
            .ok_or_else(|| not_found(pid))?;
        let name = me.name.clone();
        let mut parent = all
            .iter()
            .find(|p| p.pid == me.parent_pid && p.pid != pid)
            .cloned();
        let mut node = query::tree(all, Some(pid))
            .into_iter()
            .next()
            .ok_or_else(|| not_found(pid))?;
        redact_tree(std::slice::from_mut(&mut node), viewer);
        if let Some(p) = parent.as_mut() {
            redact(p, viewer);
        }
        let mut procs = Vec::new();
        tree_procs(std::slice::from_mut(&mut node), &mut procs);
        agent.enforcer.mark_frozen(procs.into_iter());
        let mut children = Vec::new();
        descendants(&node.children, &mut children);
        Ok(Json(ProcessTree {
            success: true,
            pid,
            name,
            parent,
            total_children: children.len(),
            children,
            tree: node,
        }))
    })
    .await
}

/// Every process under `nodes`, depth first, without their subtrees.
fn descendants(nodes: &[TreeNode], out: &mut Vec<ProcessInfo>) {
    for n in nodes {
        out.push(n.process.clone());
        descendants(&n.children, out);
    }
}

#[derive(serde::Deserialize, Default, utoipa::IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// The window, hours: more than 0, at most 48 (default 24).
    #[param(exclusive_minimum = 0, maximum = 48)]
    hours: Option<f64>,
}

/// Seed 004's default window.
const DEFAULT_HISTORY_HOURS: f64 = 24.0;

/// A process's usage samples over a window, their statistics, and a leak verdict.
#[utoipa::path(get, path = "/api/processes/{pid}/history", tag = "processes", params(Pid, HistoryQuery),
    responses(
        (status = 200, description = "The samples (a run of identical ones is one entry with `repeat`) and statistics.", body = ProcessHistory),
        (status = 400, description = "A malformed pid or `hours`.", body = ApiError),
        (status = 404, description = "No history for the pid (not sampled yet, or exited longer ago than the retention).", body = ApiError),
    ))]
pub async fn process_history(
    State(agent): State<Arc<Agent>>,
    Pid(pid): Pid,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<ProcessHistory>, ApiErr> {
    let hours = match q.hours {
        None => DEFAULT_HISTORY_HOURS,
        Some(h) if h > 0.0 && h <= 48.0 => h,
        Some(h) => {
            return Err(ApiErr::bad_request(format!(
                "invalid hours {h}: expected a number of hours, more than 0 and at most 48"
            ))
            .with_pid(pid))
        }
    };
    let total = mem_total(&agent) as f64;
    let since = crate::monitor::unix_now().saturating_sub((hours * 3600.0) as u32);
    let h = agent
        .monitor
        .history
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let id = h.find(pid).ok_or_else(|| {
        ApiErr::not_found(format!(
            "no history for pid {pid} (not sampled yet, or exited longer ago than the retention)"
        ))
        .with_pid(pid)
    })?;
    let history: Vec<HistoryPoint> = h
        .samples(id, since)
        .into_iter()
        .map(|s| {
            let bytes = u64::from(s.rss_kib) * 1024;
            HistoryPoint {
                timestamp: procman_common::units::Timestamp::from_unix(f64::from(s.t)),
                cpu_percent: s.cpu_pct,
                memory_percent: if total > 0.0 {
                    (bytes as f64 / total * 100.0) as f32
                } else {
                    0.0
                },
                memory_mb: bytes as f64 / (1024.0 * 1024.0),
                memory_bytes: bytes,
                read_bytes_per_second: s.read_bps,
                write_bytes_per_second: s.write_bps,
                repeat: s.repeat,
            }
        })
        .collect();
    let window = h.window(id, since).unwrap_or_default();
    let pct = |b: f64| if total > 0.0 { b / total * 100.0 } else { 0.0 };
    Ok(Json(ProcessHistory {
        success: true,
        pid,
        hours,
        statistics: HistoryStatistics {
            avg_cpu: window.cpu_percent.avg,
            max_cpu: window.cpu_percent.max,
            avg_memory: pct(window.memory_bytes.avg),
            max_memory: pct(window.memory_bytes.max),
        },
        data_points: history.len(),
        history,
        exited: h.exited_at(id).is_some(),
        window,
        leak_suspected: h.leak_suspected(id),
    }))
}

#[derive(serde::Deserialize, Default, utoipa::IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TreeQuery {
    /// Only the subtree under this pid.
    root: Option<String>,
    /// Only the processes matching this filter expression, and their ancestors.
    filter: Option<String>,
}

fn snapshot(agent: &Agent) -> Vec<procman_common::api::ProcessInfo> {
    let table = agent.table.read().unwrap_or_else(|e| e.into_inner());
    query::all(&table, &agent.monitor)
}

/// The whole process tree (or the subtree under `root`; with a filter, the matches and
/// their ancestors).
#[utoipa::path(get, path = "/api/tree", tag = "processes", params(TreeQuery),
    responses(
        (status = 200, description = "The roots of the tree.", body = Vec<TreeNode>),
        (status = 400, description = "A malformed query, root or filter.", body = ApiError),
        (status = 404, description = "`root` names no process.", body = ApiError),
    ))]
pub async fn whole_tree(
    State(agent): State<Arc<Agent>>,
    Extension(scope): Extension<Scope>,
    Query(q): Query<TreeQuery>,
) -> Result<Json<Vec<TreeNode>>, ApiErr> {
    let viewer = viewer(&scope);
    let root = q
        .root
        .as_deref()
        .map(super::extract::parse_pid)
        .transpose()?;
    let filter = parse_filter(q.filter.as_deref())?;
    blocking(agent, move |agent| {
        let keep = filter.map(|f| {
            let ctx = query::RowContext {
                slice_root: agent.enforcer.root(),
                fds: query::fd_counts(&agent.table, Some(&f)),
                viewer,
            };
            let table = agent.table.read().unwrap_or_else(|e| e.into_inner());
            query::matching(&table, &agent.monitor, &f, &ctx)
        });
        let all = snapshot(agent);
        if let Some(r) = root {
            if !all.iter().any(|p| p.pid == r) {
                return Err(not_found(r));
            }
        }
        let mut nodes = query::tree(all, root);
        if let Some(keep) = keep {
            nodes = query::prune(nodes, &keep);
        }
        redact_tree(&mut nodes, viewer);
        let mut procs = Vec::new();
        tree_procs(&mut nodes, &mut procs);
        agent.enforcer.mark_frozen(procs.into_iter());
        Ok(Json(nodes))
    })
    .await
}

/// System totals: CPU, memory, swap, load, pressure, uptime.
#[utoipa::path(get, path = "/api/system", tag = "system",
    responses((status = 200, description = "The latest system sample.", body = SystemInfo)))]
pub async fn system(State(agent): State<Arc<Agent>>) -> Json<SystemInfo> {
    let mut info = agent
        .monitor
        .system
        .read()
        .map(|s| s.info.clone())
        .unwrap_or_default();
    info.timestamp = procman_common::units::Timestamp::now();
    info.processes = agent.table.read().map(|t| t.len()).unwrap_or(0);
    Json(info)
}

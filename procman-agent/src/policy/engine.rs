//! The policy engine's core: pure functions over rows and a clock, usable without a running
//! agent (the unit tests and `cargo xtask bench policy` drive it directly).
//!
//! Per (policy, target identity) it keeps since when the condition (`match` and `when`) has
//! held, the chain step, when the next step is due and the cooldown. Each [`Engine::tick`]
//! evaluates every policy over the rows of one sample and returns the actions due
//! ([`Planned`]); carrying them out is someone else's job (the engine never acts, and holds
//! no lock of the agent's). Targets absent from a tick's rows (exited) are dropped.
use super::config::{Action, Mode, Policy, Scope};
use crate::history::IdMap;
use procman_common::filter::Field;
use procman_common::filter::{Comparison, Fields};
use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};

/// Tables keyed by target, hashed cheaply (pids are not attacker-chosen hash keys worth
/// SipHash's cost at 10,000 rows per tick).
type KeySet =
    std::collections::HashSet<TargetKey, std::hash::BuildHasherDefault<crate::history::IdHasher>>;

/// Monotonic time since an arbitrary origin (the caller's clock).
pub type Now = Duration;

/// Who a policy tracks: a process by (pid, start time), or a managed slice by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetKey {
    Process { pid: u32, start_ticks: u64 },
    Slice(Arc<str>),
}

/// A row the engine evaluates: the filter fields plus identity.
pub trait EvalRow: Fields {
    fn key(&self) -> TargetKey;
    /// `pid 1234 (spin)` or `slice web`.
    fn label(&self) -> String;
    /// Why no policy may act on it (pid 1, kernel threads, the agent), if so.
    fn protected(&self) -> Option<&'static str> {
        None
    }
}

/// One target's progress through a policy.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub label: String,
    /// Since when `match` and `when` have held (None: not now, or the chain just ended).
    pub first_true: Option<Now>,
    /// Steps of the chain taken.
    pub step: usize,
    /// When the next step is due (steps after the first).
    pub next_at: Option<Now>,
    pub cooldown_until: Option<Now>,
    touched: u64,
}

/// What one policy has done, and its targets.
#[derive(Debug, Default)]
pub struct PolicyState {
    pub targets: IdMap<TargetKey, Tracked>,
    /// Times of the enforced actions inside the budget window.
    budget: VecDeque<Now>,
    /// Whether the last action found the budget spent (to log the flip once).
    pub budget_spent: bool,
    pub hits: u64,
    pub actions_taken: u64,
    pub actions_failed: u64,
    pub dry_run_actions: u64,
}

fn prune(budget: &mut VecDeque<Now>, now: Now, window: Duration) {
    while budget
        .front()
        .is_some_and(|t| now.saturating_sub(*t) >= window)
    {
        budget.pop_front();
    }
}

impl PolicyState {
    fn prune_budget(&mut self, now: Now, window: Duration) {
        prune(&mut self.budget, now, window)
    }

    /// Actions the budget still allows now.
    pub fn budget_left(&mut self, now: Now, p: &Policy) -> u32 {
        self.prune_budget(now, p.budget.window);
        p.budget.max.saturating_sub(self.budget.len() as u32)
    }

    /// When the budget frees up again, if it is spent.
    pub fn budget_free_at(&mut self, now: Now, p: &Policy) -> Option<Now> {
        if self.budget_left(now, p) > 0 {
            return None;
        }
        self.budget.front().map(|t| *t + p.budget.window)
    }
}

/// An action the engine decided on.
#[derive(Debug, Clone)]
pub struct Planned {
    pub policy: Arc<Policy>,
    pub key: TargetKey,
    pub label: String,
    /// 0-based step of the chain.
    pub step: usize,
    pub action: Action,
    pub action_text: String,
    /// Logged, not carried out: the policy is in dry-run mode, or its budget is spent.
    pub dry_run: bool,
    /// Why it is dry-run although the policy enforces (the budget).
    pub why_dry: Option<String>,
    /// `when`'s comparisons with the values that triggered it.
    pub conditions: Vec<Comparison>,
    /// How long the condition had held.
    pub true_for: Duration,
}

/// The policies and their state.
#[derive(Default)]
pub struct Engine {
    pub policies: Vec<Arc<Policy>>,
    pub state: Vec<PolicyState>,
    generation: u64,
}

impl Engine {
    pub fn new(policies: Vec<Policy>) -> Engine {
        let n = policies.len();
        Engine {
            policies: policies.into_iter().map(Arc::new).collect(),
            state: (0..n).map(|_| PolicyState::default()).collect(),
            generation: 0,
        }
    }

    /// Replaces the policies (a reload): a policy whose entry is unchanged keeps its state
    /// and budget; a changed or new one starts afresh.
    pub fn replace(&mut self, policies: Vec<Policy>) {
        let mut old: HashMap<String, (Arc<Policy>, PolicyState)> = self
            .policies
            .drain(..)
            .zip(self.state.drain(..))
            .map(|(p, s)| (p.name.clone(), (p, s)))
            .collect();
        for p in policies {
            let state = match old.remove(&p.name) {
                Some((q, s)) if q.source == p.source => s,
                _ => PolicyState::default(),
            };
            self.policies.push(Arc::new(p));
            self.state.push(state);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Whether any policy has this scope.
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.policies.iter().any(|p| p.scope == scope)
    }

    /// Evaluates every policy over one sample's rows at `now`; returns the actions due, in
    /// policy order.
    pub fn tick<P: EvalRow, S: EvalRow>(
        &mut self,
        now: Now,
        procs: &[P],
        slices: &[S],
    ) -> Vec<Planned> {
        self.generation += 1;
        let generation = self.generation;
        let mut planned = Vec::new();
        let mut present: Option<KeySet> = None;
        // one column of values per field some policy pre-filters on, built on first use
        let mut columns: HashMap<Field, Vec<f64>> = HashMap::new();
        for (p, st) in self.policies.iter().zip(self.state.iter_mut()) {
            match p.scope {
                Scope::Process => {
                    step_policy(p, st, now, procs, &mut columns, generation, &mut planned)
                }
                Scope::Slice => step_policy(
                    p,
                    st,
                    now,
                    slices,
                    &mut HashMap::new(),
                    generation,
                    &mut planned,
                ),
            }
            // targets not touched this tick: the condition stopped holding, or they are gone
            if st.targets.values().any(|t| t.touched != generation) {
                let present = present.get_or_insert_with(|| {
                    procs
                        .iter()
                        .map(|r| r.key())
                        .chain(slices.iter().map(|r| r.key()))
                        .collect()
                });
                st.targets.retain(|key, t| {
                    if t.touched == generation {
                        return true;
                    }
                    if !present.contains(key) {
                        return false; // exited: its state goes with it
                    }
                    if t.step > 0 {
                        // recovered mid-chain: cool down before starting over
                        t.cooldown_until = Some(now + p.cooldown);
                    }
                    t.step = 0;
                    t.first_true = None;
                    t.next_at = None;
                    t.cooldown_until.is_some_and(|c| now < c)
                });
            }
        }
        planned
    }
}

/// Below this many rows, every row is evaluated (columns would cost more than they save).
const COLUMNS_FROM: usize = 64;

fn step_policy<R: EvalRow>(
    p: &Arc<Policy>,
    st: &mut PolicyState,
    now: Now,
    rows: &[R],
    columns: &mut HashMap<Field, Vec<f64>>,
    generation: u64,
    planned: &mut Vec<Planned>,
) {
    match &p.prefilter {
        Some(bounds) if rows.len() >= COLUMNS_FROM => {
            for b in bounds {
                columns.entry(b.field).or_insert_with(|| {
                    rows.iter()
                        .map(|r| r.number(b.field).unwrap_or(f64::NAN))
                        .collect()
                });
            }
            if let [b] = bounds.as_slice() {
                let col = &columns[&b.field];
                for (i, v) in col.iter().enumerate() {
                    if b.admits(*v) {
                        visit(p, st, now, &rows[i], generation, planned);
                    }
                }
            } else {
                let cols: Vec<(&procman_common::filter::Bound, &Vec<f64>)> =
                    bounds.iter().map(|b| (b, &columns[&b.field])).collect();
                for (i, row) in rows.iter().enumerate() {
                    if cols.iter().any(|(b, c)| b.admits(c[i])) {
                        visit(p, st, now, row, generation, planned);
                    }
                }
            }
        }
        _ => {
            for row in rows {
                visit(p, st, now, row, generation, planned);
            }
        }
    }
}

/// One row against one policy: the state machine's step.
fn visit<R: EvalRow>(
    p: &Arc<Policy>,
    st: &mut PolicyState,
    now: Now,
    row: &R,
    generation: u64,
    planned: &mut Vec<Planned>,
) {
    let PolicyState {
        targets: st_targets,
        budget,
        budget_spent,
        hits,
        actions_taken,
        dry_run_actions,
        ..
    } = st;
    {
        // `when` first: it is usually a numeric comparison that fails for most rows
        if !p.when.matches(row) {
            return;
        }
        if p.match_.as_ref().is_some_and(|m| !m.matches(row)) || row.protected().is_some() {
            return;
        }
        let t = st_targets.entry(row.key()).or_insert_with(|| Tracked {
            label: row.label(),
            first_true: None,
            step: 0,
            next_at: None,
            cooldown_until: None,
            touched: generation,
        });
        t.touched = generation;
        if let Some(c) = t.cooldown_until {
            if now < c {
                return;
            }
            t.cooldown_until = None;
        }
        let first = *t.first_true.get_or_insert(now);
        let due = if t.step == 0 {
            now.saturating_sub(first) >= p.for_
        } else {
            t.next_at.is_some_and(|n| now >= n)
        };
        if !due {
            return;
        }
        if t.step == 0 {
            *hits += 1;
        }
        let step = t.step;
        let (dry_run, why_dry) = match p.mode {
            Mode::DryRun => (true, None),
            Mode::Enforce => {
                prune(budget, now, p.budget.window);
                if (budget.len() as u32) < p.budget.max {
                    budget.push_back(now);
                    if *budget_spent {
                        log::info!("policy {}: budget available again: enforcing", p.name);
                    }
                    *budget_spent = false;
                    (false, None)
                } else {
                    let free = budget.front().map_or(now, |t| *t + p.budget.window);
                    let why = format!(
                        "budget spent ({}): dry-run for {} more",
                        p.budget,
                        procman_common::units::fmt_duration(free.saturating_sub(now))
                    );
                    if !*budget_spent {
                        log::warn!("policy {}: {why}", p.name);
                    }
                    *budget_spent = true;
                    (true, Some(why))
                }
            }
        };
        if dry_run {
            *dry_run_actions += 1;
        } else {
            *actions_taken += 1;
        }
        planned.push(Planned {
            policy: p.clone(),
            key: row.key(),
            label: t.label.clone(),
            step,
            action: p.then[step].clone(),
            action_text: p.then_text[step].clone(),
            dry_run,
            why_dry,
            conditions: p.when.explain(row),
            true_for: now.saturating_sub(first),
        });
        t.step += 1;
        if t.step >= p.then.len() {
            // the chain is done: cool down, then start over if it still holds
            t.step = 0;
            t.first_true = None;
            t.next_at = None;
            t.cooldown_until = Some(now + p.cooldown);
        } else {
            t.next_at = Some(now + p.recheck);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::PolicyFile;
    use super::*;
    use procman_common::filter::Field;
    use std::borrow::Cow;

    #[derive(Clone)]
    struct Row {
        pid: u32,
        start: u64,
        name: &'static str,
        cpu: f64,
    }

    impl Fields for Row {
        fn number(&self, f: Field) -> Option<f64> {
            match f {
                Field::Cpu => Some(self.cpu),
                Field::Pid => Some(self.pid as f64),
                _ => None,
            }
        }
        fn text(&self, f: Field) -> Option<Cow<'_, str>> {
            (f == Field::Name).then(|| self.name.into())
        }
    }

    impl EvalRow for Row {
        fn key(&self) -> TargetKey {
            TargetKey::Process {
                pid: self.pid,
                start_ticks: self.start,
            }
        }
        fn label(&self) -> String {
            format!("pid {} ({})", self.pid, self.name)
        }
        fn protected(&self) -> Option<&'static str> {
            (self.pid == 1).then_some("pid 1")
        }
    }

    const NO_SLICES: &[Row] = &[];

    fn engine(extra: &str) -> Engine {
        let text = format!(
            "[[policy]]\nname = \"hot\"\nmatch = 'name == spin'\nwhen = 'cpu > 90%'\nfor = \"5s\"\nthen = [\"renice 10\", \"term\", \"kill\"]\nrecheck = \"3s\"\ncooldown = \"60s\"\n{extra}"
        );
        Engine::new(PolicyFile::parse(&text).unwrap())
    }

    fn spin(cpu: f64) -> Row {
        Row {
            pid: 100,
            start: 7,
            name: "spin",
            cpu,
        }
    }

    fn s(secs: u64) -> Now {
        Duration::from_secs(secs)
    }

    /// Ticks every second from `from` to `to` (inclusive) with `rows`; returns (time, verb) of
    /// each planned action.
    fn run(e: &mut Engine, from: u64, to: u64, rows: &[Row]) -> Vec<(u64, String, bool)> {
        let mut out = Vec::new();
        for t in from..=to {
            for p in e.tick(s(t), rows, NO_SLICES) {
                out.push((t, p.action_text.clone(), p.dry_run));
            }
        }
        out
    }

    #[test]
    fn for_is_respected_then_recheck_steps_the_chain_then_cooldown() {
        let mut e = engine("");
        let hot = [spin(99.0)];
        // true from t=0: nothing before t=5
        assert!(run(&mut e, 0, 4, &hot).is_empty());
        let got = run(&mut e, 5, 20, &hot);
        assert_eq!(
            got,
            vec![
                (5, "renice 10".into(), false),
                (8, "term".into(), false),
                (11, "kill".into(), false)
            ]
        );
        // cooldown 60s after the last step: nothing until t=71, then `for` again (5s)
        assert!(run(&mut e, 21, 70, &hot).is_empty());
        assert_eq!(
            run(&mut e, 71, 76, &hot),
            vec![(76, "renice 10".into(), false)]
        );
        assert_eq!(e.state[0].hits, 2);
        assert_eq!(e.state[0].actions_taken, 4);
    }

    #[test]
    fn a_dip_restarts_for_and_a_recovery_mid_chain_cools_down() {
        let mut e = engine("");
        assert!(run(&mut e, 0, 3, &[spin(99.0)]).is_empty());
        assert!(run(&mut e, 4, 4, &[spin(10.0)]).is_empty(), "dip");
        assert!(
            run(&mut e, 5, 9, &[spin(99.0)]).is_empty(),
            "for restarts at 5"
        );
        assert_eq!(
            run(&mut e, 10, 10, &[spin(99.0)]),
            vec![(10, "renice 10".into(), false)]
        );
        // recovers before the recheck: no term; cooldown from then
        assert!(run(&mut e, 11, 11, &[spin(5.0)]).is_empty());
        let st = &e.state[0].targets[&spin(0.0).key()];
        assert_eq!((st.step, st.cooldown_until), (0, Some(s(71))));
        assert!(
            run(&mut e, 12, 70, &[spin(99.0)]).is_empty(),
            "cooling down"
        );
        // the cooldown over, `for` runs again from 71
        assert_eq!(
            run(&mut e, 71, 76, &[spin(99.0)]),
            vec![(76, "renice 10".into(), false)]
        );
    }

    #[test]
    fn match_filters_and_protected_rows_are_skipped() {
        let mut e = engine("");
        let other = Row {
            name: "postgres",
            pid: 200,
            ..spin(99.0)
        };
        let init = Row {
            pid: 1,
            ..spin(99.0)
        };
        assert!(run(&mut e, 0, 30, &[other, init]).is_empty());
        assert!(e.state[0].targets.is_empty());
    }

    #[test]
    fn budget_spent_flips_to_dry_run_until_the_window_frees() {
        let mut e = Engine::new(
            PolicyFile::parse(
                "[[policy]]\nname = \"b\"\nwhen = 'cpu > 90'\nthen = [\"renice 5\"]\ncooldown = \"1s\"\nmax_actions = \"2/100s\"",
            )
            .unwrap(),
        );
        let rows: Vec<Row> = (0..4)
            .map(|i| Row {
                pid: 100 + i,
                ..spin(99.0)
            })
            .collect();
        let got = run(&mut e, 0, 0, &rows);
        assert_eq!(
            got.iter().map(|g| g.2).collect::<Vec<_>>(),
            vec![false, false, true, true],
            "two enforced, then dry-run"
        );
        let p = e.policies[0].clone();
        assert_eq!(e.state[0].budget_left(s(0), &p), 0);
        assert_eq!(e.state[0].budget_free_at(s(0), &p), Some(s(100)));
        assert!(e.state[0].budget_spent);
        // the window frees at t=100: enforcing again
        let got = run(&mut e, 100, 100, &rows[..1]);
        assert_eq!(got, vec![(100, "renice 5".into(), false)]);
        assert!(!e.state[0].budget_spent);
    }

    #[test]
    fn dry_run_plans_every_step_as_dry_and_spends_no_budget() {
        let mut e = engine("mode = \"dry-run\"\nmax_actions = \"1/h\"");
        let got = run(&mut e, 0, 20, &[spin(99.0)]);
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|g| g.2));
        let p = e.policies[0].clone();
        assert_eq!(e.state[0].budget_left(s(20), &p), 1);
        assert_eq!(e.state[0].dry_run_actions, 3);
        assert_eq!(e.state[0].actions_taken, 0);
    }

    #[test]
    fn an_exited_target_is_dropped_and_a_reused_pid_is_a_new_target() {
        let mut e = engine("");
        assert!(run(&mut e, 0, 4, &[spin(99.0)]).is_empty());
        // pid 100 exits; a new process gets pid 100 with another start time
        let reborn = Row {
            start: 8,
            ..spin(99.0)
        };
        assert!(
            run(&mut e, 5, 5, std::slice::from_ref(&reborn)).is_empty(),
            "its own `for` starts now"
        );
        assert_eq!(e.state[0].targets.len(), 1, "the old identity is gone");
        assert!(e.state[0].targets.contains_key(&reborn.key()));
        assert_eq!(
            run(&mut e, 6, 10, &[reborn]),
            vec![(10, "renice 10".into(), false)]
        );
        // and when it exits, nothing is left
        assert!(run(&mut e, 11, 11, &[]).is_empty());
        assert!(e.state[0].targets.is_empty());
    }

    #[test]
    fn a_reload_keeps_unchanged_policies_state() {
        let mut e = engine("");
        run(&mut e, 0, 3, &[spin(99.0)]);
        let text = "[[policy]]\nname = \"hot\"\nmatch = 'name == spin'\nwhen = 'cpu > 90%'\nfor = \"5s\"\nthen = [\"renice 10\", \"term\", \"kill\"]\nrecheck = \"3s\"\ncooldown = \"60s\"\n";
        e.replace(PolicyFile::parse(text).unwrap());
        assert_eq!(e.state[0].targets.len(), 1, "same entry: state kept");
        assert_eq!(run(&mut e, 4, 5, &[spin(99.0)]).len(), 1);
        e.replace(PolicyFile::parse(&text.replace("5s", "6s")).unwrap());
        assert!(e.state[0].targets.is_empty(), "changed entry: fresh state");
    }

    #[test]
    fn the_column_prefilter_plans_what_full_evaluation_plans() {
        let text = "[[policy]]\nname = \"a\"\nwhen = 'cpu > 50 and name == spin'\nthen = [\"renice 1\"]\n\n[[policy]]\nname = \"b\"\nwhen = 'cpu > 80 or pid < 110'\nthen = [\"renice 2\"]\n\n[[policy]]\nname = \"c\"\nwhen = 'not cpu < 30'\nthen = [\"renice 3\"]\n";
        let mut fast = Engine::new(PolicyFile::parse(text).unwrap());
        let mut slow = Engine::new(PolicyFile::parse(text).unwrap());
        assert!(fast.policies[0].prefilter.is_some() && fast.policies[1].prefilter.is_some());
        assert!(fast.policies[2].prefilter.is_none());
        for p in &mut slow.policies {
            Arc::get_mut(p).unwrap().prefilter = None;
        }
        let rows: Vec<Row> = (0..200)
            .map(|i| Row {
                pid: 100 + i,
                start: 1,
                name: if i % 3 == 0 { "spin" } else { "other" },
                cpu: (i * 7 % 100) as f64,
            })
            .collect();
        let plan = |e: &mut Engine| {
            let mut v: Vec<(String, String)> = e
                .tick(s(1), &rows, NO_SLICES)
                .into_iter()
                .map(|p| (p.policy.name.clone(), p.label))
                .collect();
            v.sort();
            v
        };
        let (f, sl) = (plan(&mut fast), plan(&mut slow));
        assert!(!f.is_empty());
        assert_eq!(f, sl);
    }
}

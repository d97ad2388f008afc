//! Wire types of the policy engine's API (`/api/policies...`), shared by the agent and the
//! CLI. Times are seconds; `*_in_s` fields are relative to the answer (negative: past), and
//! `*_at` fields are Unix times, so a client needs no clock of the agent's.
use crate::filter::Comparison;
use serde::{Deserialize, Serialize};

/// `GET /api/policies`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct PolicyList {
    pub policies: Vec<PolicyStatus>,
    /// The last evaluation: rows (processes and slices) it saw, the time spent copying them
    /// out of the table (and reading fds or slice stats), and the engine's time, seconds.
    pub last_rows: usize,
    pub last_build_seconds: f64,
    pub last_eval_seconds: f64,
}

/// One `[[policy]]` and what it has done.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct PolicyStatus {
    pub name: String,
    /// `process` or `slice`.
    pub scope: String,
    /// The configured mode: `enforce` or `dry-run`.
    pub mode: String,
    /// What it does now: `dry-run` also when an enforcing policy spent its budget.
    pub effective_mode: String,
    /// Why the effective mode differs, e.g. `budget spent: dry-run until 11:32 UTC`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(rename = "match")]
    pub match_: String,
    pub when: String,
    pub for_seconds: f64,
    pub then: Vec<String>,
    pub recheck_seconds: f64,
    pub cooldown_seconds: f64,
    /// `10/h`.
    pub max_actions: String,
    /// Actions the budget still allows in its current window.
    pub budget_left: u32,
    /// Times a target's condition held for `for` (each starts the chain).
    pub hits: u64,
    /// Actions carried out (whatever their result) and would-be actions logged in dry-run.
    pub actions_taken: u64,
    pub actions_failed: u64,
    pub dry_run_actions: u64,
    /// Targets whose condition holds now or that are escalating or cooling down.
    pub targets: Vec<TargetStatus>,
}

/// A target a policy is tracking.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct TargetStatus {
    /// `pid 1234 (spin)` or `slice web`.
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// `pending` (true, waiting for `for`), `escalating` (waiting for `recheck`),
    /// `cooldown`.
    pub state: String,
    /// How long the condition has held, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub true_for_seconds: Option<f64>,
    /// Chain steps already taken.
    pub steps_taken: usize,
    /// The next action and in how many seconds it is due (if the condition still holds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_in_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_left_seconds: Option<f64>,
}

/// `GET /api/policies/explain/{pid}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Explain {
    pub pid: u32,
    pub name: String,
    /// Set when no policy may act on it (pid 1, a kernel thread, the agent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protected: Option<String>,
    pub policies: Vec<RuleExplain>,
}

/// One policy against one process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct RuleExplain {
    pub policy: String,
    pub scope: String,
    pub effective_mode: String,
    /// Whether `match` accepts the process (always false for slice-scope policies).
    pub matches: bool,
    #[serde(rename = "match")]
    pub match_: String,
    /// Each comparison of `match`, with the process's value.
    pub match_terms: Vec<Comparison>,
    pub when: String,
    /// Each comparison of `when`, with the process's value.
    pub conditions: Vec<Comparison>,
    /// `match` and `when` both hold now.
    pub holds: bool,
    /// How long they have held (as of the last evaluation), seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub true_for_seconds: Option<f64>,
    pub for_seconds: f64,
    pub steps_taken: usize,
    /// What would happen next and when, in words.
    pub next: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_in_seconds: Option<f64>,
}

/// `POST /api/policies/test` (body: TOML with `[[policy]]` entries).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct PolicyTestReport {
    pub policies: Vec<PolicyTestResult>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct PolicyTestResult {
    pub name: String,
    pub scope: String,
    pub mode: String,
    pub then: Vec<String>,
    /// Targets matched by `match` now.
    pub matched: usize,
    /// Targets for which `match` and `when` hold now: what the first action would hit once
    /// they hold for `for`.
    pub hits: Vec<TestHit>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct TestHit {
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    pub conditions: Vec<Comparison>,
    /// The first action, as it would run after `for`.
    pub would: String,
}

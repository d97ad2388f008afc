//! What `procman top` shows and how keys change it: no terminal and no agent here, so every
//! key is unit-tested. A key returns a [`Command`] for the event loop (refetch, quit, or an
//! action for the agent); the loop feeds the answers back ([`TopState::set_list`],
//! [`TopState::action_done`]).
use procman_common::{
    action::{check_nice, parse_signal, signal_name},
    api::{ProcessInfo, SortKey, SystemInfo, TreeNode},
    filter::Filter,
    units::Timestamp,
};
use ratatui::{
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
    widgets::TableState,
};
use std::cmp::Ordering;

/// One line of the table: the process and, in the tree view, the branch drawn before its
/// command.
#[derive(Clone, Debug)]
pub struct Line {
    pub prefix: String,
    pub p: ProcessInfo,
}

/// The process an action is aimed at, as it was on screen when the key was pressed: the
/// agent refuses the action (409) if the pid names another process by then.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub pid: u32,
    pub name: String,
    pub cmdline: String,
    pub started_at: Timestamp,
    pub nice: i32,
}

impl Target {
    fn of(p: &ProcessInfo) -> Target {
        Target {
            pid: p.pid,
            name: p.name.clone(),
            cmdline: p.cmdline.clone(),
            started_at: p.started_at,
            nice: p.nice,
        }
    }
}

/// A line being typed; `error` is the last refusal of it, shown next to it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Input {
    pub text: String,
    pub error: Option<String>,
}

impl Input {
    fn new(text: impl Into<String>) -> Input {
        Input {
            text: text.into(),
            error: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    /// `/`: a filter expression.
    Filter(Input),
    /// `k`: the signal to send (a name or number; TERM when empty).
    Kill(Target, Input),
    /// `r`: the new nice value.
    Renice(Target, Input),
}

/// What the event loop does after a key.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Redraw only.
    Nothing,
    /// Fetch the list again now (sort, filter or view changed).
    Refresh,
    Quit,
    Kill {
        target: Target,
        signal: i32,
    },
    Renice {
        target: Target,
        nice: i32,
    },
}

/// A message in the status line until the next key.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    pub text: String,
    pub error: bool,
}

/// The sort keys in the order of their columns, for `<` and `>`.
pub const COLUMN_ORDER: [SortKey; 6] = [
    SortKey::Pid,
    SortKey::Cpu,
    SortKey::Mem,
    SortKey::Io,
    SortKey::Time,
    SortKey::Age,
];

/// Everything the screen shows; `view::render` draws it.
#[derive(Default)]
pub struct TopState {
    pub sort: SortKey,
    pub tree: bool,
    /// The filter in force (what the agent is asked for).
    pub filter: String,
    pub system: Option<SystemInfo>,
    pub total: usize,
    pub zombies: usize,
    pub rows: Vec<Line>,
    /// The last refresh's failure (agent unreachable, ...); cleared by the next success.
    pub fetch_error: Option<String>,
    pub status: Option<Status>,
    pub prompt: Option<Prompt>,
    pub help: bool,
    /// The pid the selection follows (`F`).
    pub follow: Option<u32>,
    /// The selected row and the scroll offset (kept by the table widget).
    pub table: TableState,
    /// Rows visible in the last draw (the step of PgUp/PgDn).
    pub page: usize,
    /// An action sent to the agent and not answered yet.
    pub busy: bool,
}

/// Orders two processes as the agent orders `?sort=`: cpu, mem, io, time biggest first, pid
/// ascending, age oldest first; ties by pid.
pub fn compare(key: SortKey, a: &ProcessInfo, b: &ProcessInfo) -> Ordering {
    let desc = |x: f64, y: f64| y.total_cmp(&x);
    match key {
        SortKey::Cpu => desc(a.cpu_percent.into(), b.cpu_percent.into()),
        SortKey::Mem => b.memory_bytes.cmp(&a.memory_bytes),
        SortKey::Io => desc(
            a.read_bytes_per_second + a.write_bytes_per_second,
            b.read_bytes_per_second + b.write_bytes_per_second,
        ),
        SortKey::Time => desc(a.cpu_time_seconds, b.cpu_time_seconds),
        SortKey::Pid => Ordering::Equal,
        SortKey::Age => a.started_at.cmp(&b.started_at),
    }
    .then(a.pid.cmp(&b.pid))
}

/// The tree as lines, siblings sorted by `key`, with `├─`/`└─` branches.
pub fn flatten(nodes: &[TreeNode], key: SortKey) -> Vec<Line> {
    fn walk(nodes: &[TreeNode], key: SortKey, indent: &str, top: bool, out: &mut Vec<Line>) {
        let mut sorted: Vec<&TreeNode> = nodes.iter().collect();
        sorted.sort_by(|a, b| compare(key, &a.process, &b.process));
        for (i, n) in sorted.iter().enumerate() {
            let last = i + 1 == sorted.len();
            let (branch, next) = match (top, last) {
                (true, _) => (String::new(), String::new()),
                (false, false) => (format!("{indent}├─ "), format!("{indent}│  ")),
                (false, true) => (format!("{indent}└─ "), format!("{indent}   ")),
            };
            out.push(Line {
                prefix: branch,
                p: n.process.clone(),
            });
            walk(&n.children, key, &next, false, out);
        }
    }
    let mut out = Vec::new();
    walk(nodes, key, "", true, &mut out);
    out
}

fn sort_of(c: char) -> Option<SortKey> {
    Some(match c {
        'P' | 'c' => SortKey::Cpu,
        'M' | 'm' => SortKey::Mem,
        'T' => SortKey::Time,
        'i' => SortKey::Io,
        'N' | 'p' => SortKey::Pid,
        'a' => SortKey::Age,
        _ => return None,
    })
}

impl TopState {
    pub fn new(sort: SortKey, filter: String) -> TopState {
        TopState {
            sort,
            filter,
            ..Default::default()
        }
    }

    /// The selected process.
    pub fn selected(&self) -> Option<&ProcessInfo> {
        self.table
            .selected()
            .and_then(|i| self.rows.get(i))
            .map(|l| &l.p)
    }

    fn info(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: false,
        });
    }

    fn error(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: true,
        });
    }

    /// New rows from the agent. The selection keeps its row, or follows its pid with `F`;
    /// a followed process that is gone ends the following, saying so.
    pub fn set_rows(&mut self, rows: Vec<Line>) {
        self.rows = rows;
        if let Some(pid) = self.follow {
            match self.rows.iter().position(|l| l.p.pid == pid) {
                Some(i) => self.table.select(Some(i)),
                None => {
                    self.follow = None;
                    self.error(format!(
                        "process {pid} is gone (or filtered out): no longer following it"
                    ));
                }
            }
        }
        let sel = match (self.table.selected(), self.rows.len()) {
            (_, 0) => None,
            (None, _) => Some(0),
            (Some(i), n) => Some(i.min(n - 1)),
        };
        self.table.select(sel);
    }

    /// The answer to an action: the agent's message, or its refusal.
    pub fn action_done(&mut self, result: Result<String, String>) {
        self.busy = false;
        match result {
            Ok(m) => self.info(m),
            Err(e) => self.error(e),
        }
    }

    fn select(&mut self, i: usize) {
        if self.rows.is_empty() {
            return;
        }
        if let Some(pid) = self.follow.take() {
            self.info(format!("no longer following {pid}"));
        }
        self.table.select(Some(i.min(self.rows.len() - 1)));
    }

    fn set_sort(&mut self, key: SortKey) -> Command {
        self.sort = key;
        Command::Refresh
    }

    /// Applies a key press.
    pub fn key(&mut self, k: KeyEvent) -> Command {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && k.code == KeyCode::Char('c') {
            return Command::Quit;
        }
        if self.help {
            self.help = false;
            return Command::Nothing;
        }
        if self.prompt.is_some() {
            return self.prompt_key(k.code, ctrl);
        }
        self.status = None;
        let cur = self.selected().cloned();
        match k.code {
            KeyCode::Char('q') | KeyCode::Esc | KeyCode::F(10) => Command::Quit,
            KeyCode::Char('l') if ctrl => Command::Refresh,
            KeyCode::Char(' ') => Command::Refresh,
            KeyCode::Char('h' | '?') | KeyCode::F(1) => {
                self.help = true;
                Command::Nothing
            }
            KeyCode::Char(c) if !ctrl && sort_of(c).is_some() => {
                self.set_sort(sort_of(c).unwrap_or_default())
            }
            KeyCode::Char('<' | '>') | KeyCode::F(6) => {
                let i = COLUMN_ORDER
                    .iter()
                    .position(|&s| s == self.sort)
                    .unwrap_or(0);
                let n = COLUMN_ORDER.len();
                let next = if k.code == KeyCode::Char('<') {
                    (i + n - 1) % n
                } else {
                    (i + 1) % n
                };
                self.set_sort(COLUMN_ORDER[next])
            }
            KeyCode::Char('t') | KeyCode::F(5) => {
                self.tree = !self.tree;
                Command::Refresh
            }
            KeyCode::Char('/') => {
                self.prompt = Some(Prompt::Filter(Input::new(self.filter.clone())));
                Command::Nothing
            }
            KeyCode::Char('F') => {
                match (self.follow, cur) {
                    (Some(pid), _) => {
                        self.follow = None;
                        self.info(format!("no longer following {pid}"));
                    }
                    (None, Some(p)) => {
                        self.follow = Some(p.pid);
                        self.info(format!("following {} ({})", p.pid, p.name));
                    }
                    (None, None) => self.error("no process selected"),
                }
                Command::Nothing
            }
            KeyCode::Char('k') | KeyCode::F(9) => {
                self.on_selected(cur, |t| Prompt::Kill(t, Input::new("")))
            }
            KeyCode::Char('r') => self.on_selected(cur, |t| Prompt::Renice(t, Input::new(""))),
            KeyCode::F(7) | KeyCode::F(8) => {
                let Some(p) = cur else {
                    self.error("no process selected");
                    return Command::Nothing;
                };
                let step = if k.code == KeyCode::F(7) { -1 } else { 1 };
                match check_nice(p.nice + step) {
                    Ok(nice) => self.act(Command::Renice {
                        target: Target::of(&p),
                        nice,
                    }),
                    Err(e) => {
                        self.error(format!("{} ({}): {e}", p.pid, p.name));
                        Command::Nothing
                    }
                }
            }
            KeyCode::Up => {
                self.select(self.table.selected().unwrap_or(0).saturating_sub(1));
                Command::Nothing
            }
            KeyCode::Down => {
                self.select(self.table.selected().map_or(0, |i| i + 1));
                Command::Nothing
            }
            KeyCode::PageUp => {
                let page = self.page.max(2) - 1;
                self.select(self.table.selected().unwrap_or(0).saturating_sub(page));
                Command::Nothing
            }
            KeyCode::PageDown => {
                let page = self.page.max(2) - 1;
                self.select(self.table.selected().unwrap_or(0) + page);
                Command::Nothing
            }
            KeyCode::Home => {
                self.select(0);
                Command::Nothing
            }
            KeyCode::End => {
                self.select(usize::MAX);
                Command::Nothing
            }
            _ => Command::Nothing,
        }
    }

    /// Opens a prompt about the selected process.
    fn on_selected(
        &mut self,
        cur: Option<ProcessInfo>,
        prompt: impl FnOnce(Target) -> Prompt,
    ) -> Command {
        match cur {
            Some(p) => self.prompt = Some(prompt(Target::of(&p))),
            None => self.error("no process selected"),
        }
        Command::Nothing
    }

    /// An action for the agent, unless one is still on its way.
    fn act(&mut self, c: Command) -> Command {
        if self.busy {
            self.error("the previous action is not answered yet");
            return Command::Nothing;
        }
        self.busy = true;
        match &c {
            Command::Kill { target, signal } => self.info(format!(
                "sending {} to {} ({})...",
                signal_name(*signal),
                target.pid,
                target.name
            )),
            Command::Renice { target, nice } => self.info(format!(
                "renicing {} ({}) to {nice}...",
                target.pid, target.name
            )),
            _ => {}
        }
        c
    }

    fn prompt_key(&mut self, code: KeyCode, ctrl: bool) -> Command {
        let Some(prompt) = &mut self.prompt else {
            return Command::Nothing;
        };
        let input = match prompt {
            Prompt::Filter(i) | Prompt::Kill(_, i) | Prompt::Renice(_, i) => i,
        };
        match code {
            KeyCode::Esc => {
                self.prompt = None;
                return Command::Nothing;
            }
            KeyCode::Enter => {}
            KeyCode::Backspace => {
                input.text.pop();
                input.error = None;
                return Command::Nothing;
            }
            KeyCode::Char('u') if ctrl => {
                input.text.clear();
                input.error = None;
                return Command::Nothing;
            }
            KeyCode::Char(c) if !ctrl => {
                input.text.push(c);
                input.error = None;
                return Command::Nothing;
            }
            _ => return Command::Nothing,
        }
        // Enter: check the input; a refusal stays in the prompt, next to the input
        let text = input.text.trim().to_string();
        let checked =
            match &*prompt {
                Prompt::Filter(_) => {
                    if text.is_empty() {
                        Ok(Command::Refresh)
                    } else {
                        Filter::parse(&text)
                            .map(|_| Command::Refresh)
                            .map_err(|e| e.to_string())
                    }
                }
                Prompt::Kill(t, _) => parse_signal(if text.is_empty() { "TERM" } else { &text })
                    .map(|signal| Command::Kill {
                        target: t.clone(),
                        signal,
                    }),
                Prompt::Renice(t, _) => text
                    .parse::<i32>()
                    .map_err(|_| format!("nice {text:?}: expected a number from -20 to 19"))
                    .and_then(check_nice)
                    .map(|nice| Command::Renice {
                        target: t.clone(),
                        nice,
                    }),
            };
        match checked {
            Err(e) => {
                if let Some(Prompt::Filter(i) | Prompt::Kill(_, i) | Prompt::Renice(_, i)) =
                    &mut self.prompt
                {
                    i.error = Some(e);
                }
                Command::Nothing
            }
            Ok(Command::Refresh) => {
                self.prompt = None;
                self.filter = text;
                self.table.select(Some(0));
                Command::Refresh
            }
            Ok(c) => {
                self.prompt = None;
                self.act(c)
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use procman_common::api::ProcessStatus;

    /// A process row for the tests of the state and of the view.
    pub fn proc(pid: u32, name: &str, cpu: f32) -> ProcessInfo {
        ProcessInfo {
            pid,
            name: name.into(),
            cmdline: format!("/usr/bin/{name} --flag"),
            username: "root".into(),
            status: ProcessStatus::Sleeping,
            cpu_percent: cpu,
            memory_bytes: 3 << 20,
            started_at: Timestamp::from_unix(1_700_000_000.0 + pid as f64),
            ..Default::default()
        }
    }

    fn lines(ps: &[ProcessInfo]) -> Vec<Line> {
        ps.iter()
            .map(|p| Line {
                prefix: String::new(),
                p: p.clone(),
            })
            .collect()
    }

    fn press(s: &mut TopState, code: KeyCode) -> Command {
        s.key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn typ(s: &mut TopState, text: &str) {
        for c in text.chars() {
            assert_eq!(press(s, KeyCode::Char(c)), Command::Nothing, "{c}");
        }
    }

    fn three() -> TopState {
        let mut s = TopState::new(SortKey::Cpu, String::new());
        s.page = 10;
        s.set_rows(lines(&[
            proc(10, "a", 3.0),
            proc(20, "b", 2.0),
            proc(30, "c", 1.0),
        ]));
        s
    }

    #[test]
    fn sort_keys_like_top_and_htop() {
        let mut s = three();
        for (c, key) in [
            ('M', SortKey::Mem),
            ('T', SortKey::Time),
            ('P', SortKey::Cpu),
            ('N', SortKey::Pid),
            ('m', SortKey::Mem),
            ('i', SortKey::Io),
            ('a', SortKey::Age),
            ('p', SortKey::Pid),
            ('c', SortKey::Cpu),
        ] {
            assert_eq!(press(&mut s, KeyCode::Char(c)), Command::Refresh, "{c}");
            assert_eq!(s.sort, key, "{c}");
        }
        // `>` and F6 walk the columns left to right, `<` back, wrapping
        s.sort = SortKey::Pid;
        press(&mut s, KeyCode::Char('>'));
        assert_eq!(s.sort, SortKey::Cpu);
        press(&mut s, KeyCode::F(6));
        assert_eq!(s.sort, SortKey::Mem);
        press(&mut s, KeyCode::Char('<'));
        press(&mut s, KeyCode::Char('<'));
        assert_eq!(s.sort, SortKey::Pid);
        press(&mut s, KeyCode::Char('<'));
        assert_eq!(s.sort, SortKey::Age);
        press(&mut s, KeyCode::Char('>'));
        assert_eq!(s.sort, SortKey::Pid);
    }

    #[test]
    fn help_opens_with_h_question_mark_f1_and_any_key_closes_it() {
        let mut s = three();
        for k in [KeyCode::Char('h'), KeyCode::Char('?'), KeyCode::F(1)] {
            assert_eq!(press(&mut s, k), Command::Nothing);
            assert!(s.help);
            // the closing key does nothing else: Esc closes the help, not top
            assert_eq!(press(&mut s, KeyCode::Esc), Command::Nothing);
            assert!(!s.help);
        }
    }

    #[test]
    fn quit_keys() {
        for k in [KeyCode::Char('q'), KeyCode::Esc, KeyCode::F(10)] {
            assert_eq!(press(&mut three(), k), Command::Quit);
        }
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(three().key(ctrl_c), Command::Quit);
        // even inside a prompt
        let mut s = three();
        press(&mut s, KeyCode::Char('/'));
        assert_eq!(s.key(ctrl_c), Command::Quit);
    }

    #[test]
    fn selection_moves_and_stays_in_bounds() {
        let mut s = three();
        assert_eq!(s.selected().map(|p| p.pid), Some(10));
        press(&mut s, KeyCode::Down);
        assert_eq!(s.selected().map(|p| p.pid), Some(20));
        press(&mut s, KeyCode::End);
        assert_eq!(s.selected().map(|p| p.pid), Some(30));
        press(&mut s, KeyCode::Down);
        assert_eq!(s.selected().map(|p| p.pid), Some(30));
        press(&mut s, KeyCode::Home);
        assert_eq!(s.selected().map(|p| p.pid), Some(10));
        press(&mut s, KeyCode::Up);
        assert_eq!(s.selected().map(|p| p.pid), Some(10));
        press(&mut s, KeyCode::PageDown);
        assert_eq!(s.selected().map(|p| p.pid), Some(30));
        press(&mut s, KeyCode::PageUp);
        assert_eq!(s.selected().map(|p| p.pid), Some(10));
        // fewer rows: the selection is clamped; none: nothing selected
        press(&mut s, KeyCode::End);
        s.set_rows(lines(&[proc(10, "a", 3.0)]));
        assert_eq!(s.selected().map(|p| p.pid), Some(10));
        s.set_rows(Vec::new());
        assert!(s.selected().is_none());
        assert_eq!(press(&mut s, KeyCode::Char('k')), Command::Nothing);
        assert!(s.prompt.is_none());
        assert_eq!(s.status.as_ref().map(|s| s.error), Some(true));
    }

    #[test]
    fn without_follow_the_selection_keeps_its_row_with_follow_its_pid() {
        let mut s = three();
        press(&mut s, KeyCode::Down); // 20
        let resorted = lines(&[proc(20, "b", 9.0), proc(10, "a", 3.0), proc(30, "c", 1.0)]);
        s.set_rows(resorted.clone());
        assert_eq!(s.selected().map(|p| p.pid), Some(10), "row kept");
        press(&mut s, KeyCode::Char('F'));
        assert_eq!(s.follow, Some(10));
        s.set_rows(lines(&[
            proc(30, "c", 9.0),
            proc(20, "b", 3.0),
            proc(10, "a", 1.0),
        ]));
        assert_eq!(s.selected().map(|p| p.pid), Some(10), "pid followed");
        // gone: following ends, saying so
        s.set_rows(lines(&[proc(30, "c", 9.0), proc(20, "b", 3.0)]));
        assert_eq!(s.follow, None);
        let st = s.status.clone().unwrap();
        assert!(st.error && st.text.contains("process 10 is gone"), "{st:?}");
        // moving by hand ends following too
        press(&mut s, KeyCode::Char('F'));
        assert!(s.follow.is_some());
        press(&mut s, KeyCode::Up);
        assert_eq!(s.follow, None);
    }

    #[test]
    fn filter_prompt_keeps_the_old_filter_on_error() {
        let mut s = three();
        s.filter = "cpu > 1".into();
        press(&mut s, KeyCode::Char('/'));
        assert_eq!(s.prompt, Some(Prompt::Filter(Input::new("cpu > 1"))));
        let ctrl_u = KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL);
        s.key(ctrl_u);
        typ(&mut s, "(cpu > 5");
        assert_eq!(press(&mut s, KeyCode::Enter), Command::Nothing);
        match &s.prompt {
            Some(Prompt::Filter(i)) => {
                assert_eq!(i.text, "(cpu > 5");
                let e = i.error.as_deref().unwrap();
                assert!(e.starts_with("column 9: expected `)`"), "{e}");
            }
            p => panic!("{p:?}"),
        }
        assert_eq!(s.filter, "cpu > 1", "old filter kept");
        // editing clears the error; Enter applies a good one
        typ(&mut s, ")");
        assert!(matches!(&s.prompt, Some(Prompt::Filter(i)) if i.error.is_none()));
        assert_eq!(press(&mut s, KeyCode::Enter), Command::Refresh);
        assert_eq!(s.filter, "(cpu > 5)");
        assert!(s.prompt.is_none());
        // Esc keeps the filter; an empty one shows all
        press(&mut s, KeyCode::Char('/'));
        typ(&mut s, " and name == x");
        assert_eq!(press(&mut s, KeyCode::Esc), Command::Nothing);
        assert_eq!(s.filter, "(cpu > 5)");
        press(&mut s, KeyCode::Char('/'));
        s.key(ctrl_u);
        assert_eq!(press(&mut s, KeyCode::Enter), Command::Refresh);
        assert_eq!(s.filter, "");
    }

    #[test]
    fn kill_asks_for_the_signal_and_names_the_process_by_start_time() {
        let mut s = three();
        press(&mut s, KeyCode::Down);
        press(&mut s, KeyCode::Char('k'));
        let target = Target::of(&proc(20, "b", 2.0));
        assert_eq!(s.prompt, Some(Prompt::Kill(target.clone(), Input::new(""))));
        // the list changes under the prompt: the target stays
        s.set_rows(lines(&[proc(30, "c", 9.0), proc(10, "a", 3.0)]));
        // a bad signal stays in the prompt
        typ(&mut s, "FOO");
        assert_eq!(press(&mut s, KeyCode::Enter), Command::Nothing);
        assert!(
            matches!(&s.prompt, Some(Prompt::Kill(_, i)) if i.error.as_deref().unwrap_or("").contains("signal \"FOO\""))
        );
        // empty: TERM
        for _ in 0..3 {
            press(&mut s, KeyCode::Backspace);
        }
        assert_eq!(
            press(&mut s, KeyCode::Enter),
            Command::Kill {
                target: target.clone(),
                signal: libc::SIGTERM
            }
        );
        assert!(s.busy && s.prompt.is_none());
        assert!(s
            .status
            .as_ref()
            .unwrap()
            .text
            .contains("sending SIGTERM to 20 (b)"));
        // one action at a time
        press(&mut s, KeyCode::F(9));
        typ(&mut s, "KILL");
        assert_eq!(press(&mut s, KeyCode::Enter), Command::Nothing);
        assert!(s.status.as_ref().unwrap().error);
        s.action_done(Err("kill 10 (a) refused: identity changed".into()));
        assert!(!s.busy);
        assert_eq!(
            s.status,
            Some(Status {
                text: "kill 10 (a) refused: identity changed".into(),
                error: true
            })
        );
        press(&mut s, KeyCode::F(9));
        typ(&mut s, "9");
        assert!(matches!(
            press(&mut s, KeyCode::Enter),
            Command::Kill {
                signal: libc::SIGKILL,
                ..
            }
        ));
        // Esc cancels
        s.action_done(Ok("done".into()));
        press(&mut s, KeyCode::Char('k'));
        assert_eq!(press(&mut s, KeyCode::Esc), Command::Nothing);
        assert!(s.prompt.is_none() && !s.busy);
    }

    #[test]
    fn renice_by_prompt_and_by_f7_f8() {
        let mut s = three();
        press(&mut s, KeyCode::Char('r'));
        typ(&mut s, "20");
        assert_eq!(press(&mut s, KeyCode::Enter), Command::Nothing);
        assert!(
            matches!(&s.prompt, Some(Prompt::Renice(_, i)) if i.error.as_deref().unwrap_or("").contains("between -20"))
        );
        press(&mut s, KeyCode::Backspace);
        press(&mut s, KeyCode::Backspace);
        typ(&mut s, "x");
        press(&mut s, KeyCode::Enter);
        assert!(matches!(&s.prompt, Some(Prompt::Renice(_, i)) if i.error.is_some()));
        press(&mut s, KeyCode::Backspace);
        typ(&mut s, "-5");
        let target = Target::of(&proc(10, "a", 3.0));
        assert_eq!(
            press(&mut s, KeyCode::Enter),
            Command::Renice {
                target: target.clone(),
                nice: -5
            }
        );
        s.action_done(Ok("ok".into()));
        assert_eq!(
            press(&mut s, KeyCode::F(8)),
            Command::Renice {
                target: target.clone(),
                nice: 1
            }
        );
        s.action_done(Ok("ok".into()));
        assert_eq!(
            press(&mut s, KeyCode::F(7)),
            Command::Renice { target, nice: -1 }
        );
        s.action_done(Ok("ok".into()));
        // at the bound: refused here
        s.rows[0].p.nice = 19;
        assert_eq!(press(&mut s, KeyCode::F(8)), Command::Nothing);
        assert!(s.status.as_ref().unwrap().error);
    }

    #[test]
    fn tree_toggles_and_flattens_sorted() {
        let mut s = three();
        assert_eq!(press(&mut s, KeyCode::Char('t')), Command::Refresh);
        assert!(s.tree);
        assert_eq!(press(&mut s, KeyCode::F(5)), Command::Refresh);
        assert!(!s.tree);
        let node = |p: ProcessInfo, children| TreeNode {
            process: p,
            children,
        };
        let t = vec![node(
            proc(1, "init", 0.0),
            vec![
                node(proc(5, "low", 1.0), vec![]),
                node(
                    proc(7, "high", 5.0),
                    vec![node(proc(9, "leaf", 0.0), vec![])],
                ),
            ],
        )];
        let got: Vec<(String, u32)> = flatten(&t, SortKey::Cpu)
            .into_iter()
            .map(|l| (l.prefix, l.p.pid))
            .collect();
        assert_eq!(
            got,
            [
                (String::new(), 1),
                ("├─ ".into(), 7),
                ("│  └─ ".into(), 9),
                ("└─ ".into(), 5)
            ]
        );
        let pids: Vec<u32> = flatten(&t, SortKey::Pid).iter().map(|l| l.p.pid).collect();
        assert_eq!(pids, [1, 5, 7, 9]);
    }

    #[test]
    fn compare_matches_the_agents_order() {
        let mut a = proc(1, "a", 1.0);
        let mut b = proc(2, "b", 2.0);
        assert_eq!(compare(SortKey::Cpu, &a, &b), Ordering::Greater);
        assert_eq!(compare(SortKey::Pid, &a, &b), Ordering::Less);
        assert_eq!(compare(SortKey::Age, &a, &b), Ordering::Less, "older first");
        a.cpu_time_seconds = 5.0;
        assert_eq!(compare(SortKey::Time, &a, &b), Ordering::Less);
        b.memory_bytes = 10 << 20;
        assert_eq!(compare(SortKey::Mem, &a, &b), Ordering::Greater);
        b.write_bytes_per_second = 1.0;
        assert_eq!(compare(SortKey::Io, &a, &b), Ordering::Greater);
    }
}

//! `procman top`: a refreshing terminal view of the agent's process table (ratatui).
//!
//! Keys: `c` `m` `i` `p` `a` sort by cpu, memory, io, pid, age; `t` toggles the tree; `/` edits
//! the filter expression (Enter applies, Esc cancels); `q` or Ctrl-C quits.
use super::{human_age, human_bytes, percent_encode};
use crate::client::Client;
use anyhow::Result;
use clap::Args;
use procman_common::api::{ProcessInfo, ProcessList, SortKey, SystemInfo, TreeNode};
use ratatui::{
    crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers},
    layout::{Constraint, Layout},
    style::{Modifier, Style},
    text::Line,
    widgets::{Paragraph, Row, Table},
    Frame,
};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct TopArgs {
    /// Refresh interval, e.g. 2s or 500ms.
    #[arg(long, default_value = "2s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Initial sort key: cpu, mem, io, pid, age.
    #[arg(long, default_value = "cpu")]
    pub sort: SortKey,
    /// Initial filter expression (as in `procman ps --filter`).
    #[arg(long)]
    pub filter: Option<String>,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    procman_common::units::parse_duration(s)
        .map_err(|e| e.to_string())
        .and_then(|d| {
            if d >= Duration::from_millis(100) {
                Ok(d)
            } else {
                Err(format!("{s}: at least 100ms"))
            }
        })
}

/// What the screen shows; rendering is a pure function of it (tested with a test backend).
#[derive(Default)]
pub struct TopState {
    pub sort: SortKey,
    pub tree: bool,
    pub filter: String,
    /// Some while the filter is being edited.
    pub editing: Option<String>,
    pub system: Option<SystemInfo>,
    pub total: usize,
    pub zombies: usize,
    pub rows: Vec<(String, ProcessInfo)>,
    pub error: Option<String>,
}

fn flatten(nodes: &[TreeNode], depth: usize, out: &mut Vec<(String, ProcessInfo)>) {
    for n in nodes {
        out.push(("  ".repeat(depth), n.process.clone()));
        flatten(&n.children, depth + 1, out);
    }
}

impl TopState {
    async fn refresh(&mut self, client: &Client) {
        self.error = None;
        match client.get::<SystemInfo>("/api/system").await {
            Ok(s) => self.system = Some(s),
            Err(e) => self.error = Some(format!("{e:#}")),
        }
        let filter = if self.filter.is_empty() {
            String::new()
        } else {
            format!("&filter={}", percent_encode(&self.filter))
        };
        let list: Result<ProcessList> = client
            .get(&format!(
                "/api/processes?sort={}&limit=500{filter}",
                self.sort
            ))
            .await;
        match list {
            Ok(l) => {
                self.total = l.total_processes;
                self.zombies = l.zombie_count;
                if !self.tree {
                    self.rows = l
                        .processes
                        .unwrap_or_default()
                        .into_iter()
                        .map(|p| (String::new(), p))
                        .collect();
                }
            }
            Err(e) => self.error = Some(format!("{e:#}")),
        }
        if self.tree {
            match client.get::<Vec<TreeNode>>("/api/tree").await {
                Ok(t) => {
                    self.rows.clear();
                    flatten(&t, 0, &mut self.rows);
                }
                Err(e) => self.error = Some(format!("{e:#}")),
            }
        }
    }

    pub fn render(&self, f: &mut Frame) {
        let [head, body, foot] = Layout::vertical([
            Constraint::Length(2),
            Constraint::Min(1),
            Constraint::Length(1),
        ])
        .areas(f.area());
        let sys = match &self.system {
            Some(s) => format!(
                "cpu {:.1}% of {} CPUs   mem {:.1}% of {}   load {:.2} {:.2} {:.2}   up {}",
                s.cpu_percent,
                s.cpus,
                s.memory_percent,
                human_bytes(s.memory_total_bytes),
                s.load[0],
                s.load[1],
                s.load[2],
                human_age(s.uptime_seconds)
            ),
            None => "connecting...".into(),
        };
        let info = format!(
            "{} processes, {} zombies   sort: {}   {}   filter: {}",
            self.total,
            self.zombies,
            self.sort,
            if self.tree { "tree" } else { "list" },
            if self.filter.is_empty() {
                "-"
            } else {
                &self.filter
            }
        );
        f.render_widget(
            Paragraph::new(vec![Line::from(sys), Line::from(info)]),
            head,
        );
        let header = Row::new([
            "PID", "USER", "S", "%CPU", "%MEM", "RSS", "READ/s", "WRITE/s", "THR", "COMMAND",
        ])
        .style(Style::default().add_modifier(Modifier::REVERSED));
        let rows = self.rows.iter().map(|(indent, p)| {
            let cmd = if p.cmdline.is_empty() {
                format!("[{}]", p.name)
            } else {
                p.cmdline.clone()
            };
            Row::new(vec![
                p.pid.to_string(),
                p.username.chars().take(9).collect(),
                p.status.letter().to_string(),
                format!("{:.1}", p.cpu_percent),
                format!("{:.1}", p.memory_percent),
                human_bytes(p.memory_bytes),
                human_bytes(p.read_bytes_per_second as u64),
                human_bytes(p.write_bytes_per_second as u64),
                p.num_threads.to_string(),
                format!("{indent}{cmd}"),
            ])
        });
        let widths = [
            Constraint::Length(7),
            Constraint::Length(9),
            Constraint::Length(1),
            Constraint::Length(6),
            Constraint::Length(5),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(4),
            Constraint::Min(10),
        ];
        f.render_widget(Table::new(rows, widths).header(header), body);
        let footer = match (&self.editing, &self.error) {
            (Some(buf), _) => format!("filter> {buf}_   (Enter apply, Esc cancel)"),
            (None, Some(e)) => format!("error: {e}"),
            (None, None) => "c/m/i/p/a sort   t tree   / filter   q quit".into(),
        };
        f.render_widget(Paragraph::new(footer), foot);
    }

    /// Applies a key; returns false to quit and true when the data must be refetched.
    fn key(&mut self, code: KeyCode, mods: KeyModifiers) -> Option<bool> {
        if let Some(buf) = &mut self.editing {
            match code {
                KeyCode::Enter => {
                    self.filter = std::mem::take(buf);
                    self.editing = None;
                    return Some(true);
                }
                KeyCode::Esc => self.editing = None,
                KeyCode::Backspace => {
                    buf.pop();
                }
                KeyCode::Char(c) => buf.push(c),
                _ => {}
            }
            return Some(false);
        }
        let sort = Some;
        let new_sort = match code {
            KeyCode::Char('q') | KeyCode::Esc => return None,
            KeyCode::Char('c') if mods.contains(KeyModifiers::CONTROL) => return None,
            KeyCode::Char('c') => sort(SortKey::Cpu),
            KeyCode::Char('m') => sort(SortKey::Mem),
            KeyCode::Char('i') => sort(SortKey::Io),
            KeyCode::Char('p') => sort(SortKey::Pid),
            KeyCode::Char('a') => sort(SortKey::Age),
            KeyCode::Char('t') => {
                self.tree = !self.tree;
                return Some(true);
            }
            KeyCode::Char('/') => {
                self.editing = Some(self.filter.clone());
                return Some(false);
            }
            _ => None,
        };
        match new_sort {
            Some(s) => {
                self.sort = s;
                Some(true)
            }
            None => Some(false),
        }
    }
}

pub async fn run(client: &Client, a: TopArgs) -> Result<()> {
    // Fail before taking over the terminal when the agent is unreachable.
    let _: SystemInfo = client.get("/api/system").await?;
    let mut state = TopState {
        sort: a.sort,
        filter: a.filter.unwrap_or_default(),
        ..Default::default()
    };
    let mut terminal = ratatui::init();
    let result: Result<()> = async {
        let mut next = Instant::now();
        loop {
            if Instant::now() >= next {
                state.refresh(client).await;
                next = Instant::now() + a.interval;
            }
            terminal.draw(|f| state.render(f))?;
            if event::poll(Duration::from_millis(100))? {
                if let Event::Key(k) = event::read()? {
                    if k.kind != KeyEventKind::Press {
                        continue;
                    }
                    match state.key(k.code, k.modifiers) {
                        None => return Ok(()),
                        Some(true) => next = Instant::now(),
                        Some(false) => {}
                    }
                }
            }
        }
    }
    .await;
    ratatui::restore();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::{backend::TestBackend, Terminal};

    fn proc(pid: u32, name: &str, cpu: f32) -> ProcessInfo {
        ProcessInfo {
            pid,
            name: name.into(),
            cmdline: format!("/usr/bin/{name} --flag"),
            username: "root".into(),
            status: procman_common::api::ProcessStatus::Sleeping,
            cpu_percent: cpu,
            memory_bytes: 3 << 20,
            ..Default::default()
        }
    }

    fn screen(state: &TopState) -> String {
        let mut t = Terminal::new(TestBackend::new(100, 8)).unwrap();
        t.draw(|f| state.render(f)).unwrap();
        let buf = t.backend().buffer().clone();
        (0..buf.area.height)
            .map(|y| {
                (0..buf.area.width)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn renders_rows_and_keys() {
        let mut s = TopState {
            sort: SortKey::Cpu,
            total: 2,
            ..Default::default()
        };
        s.rows = vec![
            (String::new(), proc(42, "nginx", 12.5)),
            ("  ".into(), proc(43, "worker", 1.0)),
        ];
        let out = screen(&s);
        assert!(
            out.contains("2 processes, 0 zombies   sort: cpu   list"),
            "{out}"
        );
        assert!(
            out.contains("42") && out.contains("12.5") && out.contains("/usr/bin/nginx --flag"),
            "{out}"
        );
        assert!(out.contains("  /usr/bin/worker"), "tree indentation: {out}");
        assert!(out.contains("q quit"), "{out}");
    }

    #[test]
    fn keys_change_sort_tree_and_filter() {
        let mut s = TopState {
            sort: SortKey::Cpu,
            ..Default::default()
        };
        assert_eq!(s.key(KeyCode::Char('m'), KeyModifiers::NONE), Some(true));
        assert_eq!(s.sort, SortKey::Mem);
        assert_eq!(s.key(KeyCode::Char('t'), KeyModifiers::NONE), Some(true));
        assert!(s.tree);
        s.key(KeyCode::Char('/'), KeyModifiers::NONE);
        for c in "cpu > 5".chars() {
            s.key(KeyCode::Char(c), KeyModifiers::NONE);
        }
        assert!(screen(&s).contains("filter> cpu > 5_"));
        assert_eq!(s.key(KeyCode::Enter, KeyModifiers::NONE), Some(true));
        assert_eq!(s.filter, "cpu > 5");
        assert_eq!(s.key(KeyCode::Char('q'), KeyModifiers::NONE), None);
    }
}

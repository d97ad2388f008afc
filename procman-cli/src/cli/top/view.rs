//! Drawing `procman top`: a function of [`TopState`] (tested with ratatui's test backend).
//! No colours, only reverse/bold/underline, so it reads the same with NO_COLOR and on any
//! terminal.
use super::keys::KEYS;
use super::state::{Prompt, Target, TopState};
use crate::cli::{human_age, human_bytes};
use procman_common::api::{ProcessInfo, SortKey};
use ratatui::{
    layout::{Constraint, Layout, Rect},
    style::{Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Clear, Padding, Paragraph, Row, Table},
    Frame,
};

/// Header, width, and the sort key the column shows (if any).
const COLUMNS: [(&str, u16, Option<SortKey>); 13] = [
    ("PID", 7, Some(SortKey::Pid)),
    ("USER", 9, None),
    ("S", 1, None),
    ("NI", 3, None),
    ("%CPU", 6, Some(SortKey::Cpu)),
    ("%MEM", 5, Some(SortKey::Mem)),
    ("RSS", 7, None),
    ("READ/s", 7, Some(SortKey::Io)),
    ("WRITE/s", 8, Some(SortKey::Io)),
    ("THR", 4, None),
    ("TIME+", 9, Some(SortKey::Time)),
    ("AGE", 7, Some(SortKey::Age)),
    ("COMMAND", 0, None),
];

/// The mark after the sorted column's name: `▼` biggest (oldest) first, `▲` smallest first.
pub fn sort_mark(key: SortKey) -> &'static str {
    match key {
        SortKey::Pid => "▲",
        _ => "▼",
    }
}

/// CPU time as top's TIME+ (`M:SS.hh`), or `H:MM:SS` from 100 minutes on.
pub fn cpu_time(secs: f64) -> String {
    let secs = secs.max(0.0);
    if secs < 6000.0 {
        let cs = (secs * 100.0) as u64;
        format!("{}:{:02}.{:02}", cs / 6000, cs / 100 % 60, cs % 100)
    } else {
        let s = secs as u64;
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    }
}

fn cells(prefix: &str, p: &ProcessInfo) -> Vec<String> {
    let cmd = if p.cmdline.is_empty() {
        format!("[{}]", p.name)
    } else {
        p.cmdline.clone()
    };
    let state = if p.frozen {
        "F".to_string()
    } else {
        p.status.letter().to_string()
    };
    vec![
        p.pid.to_string(),
        p.username.chars().take(9).collect(),
        state,
        p.nice.to_string(),
        format!("{:.1}", p.cpu_percent),
        format!("{:.1}", p.memory_percent),
        human_bytes(p.memory_bytes),
        human_bytes(p.read_bytes_per_second as u64),
        human_bytes(p.write_bytes_per_second as u64),
        p.num_threads.to_string(),
        cpu_time(p.cpu_time_seconds),
        human_age(p.age_seconds),
        format!("{prefix}{cmd}"),
    ]
}

fn header_line(s: &TopState) -> String {
    let filter = if s.filter.is_empty() { "-" } else { &s.filter };
    let mut line = format!(
        "{} processes, {} zombies, {} shown   sort: {} {}   {}   filter: {filter}",
        s.total,
        s.zombies,
        s.rows.len(),
        s.sort,
        sort_mark(s.sort),
        if s.tree { "tree" } else { "list" },
    );
    if let Some(pid) = s.follow {
        line.push_str(&format!("   following {pid}"));
    }
    line
}

fn system_line(s: &TopState) -> String {
    match &s.system {
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
    }
}

/// The bottom line: the filter being typed (with its error next to it), else the status
/// message, else the last refresh's error, else a reminder of the main keys.
fn footer(s: &TopState) -> Line<'static> {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    if let Some(Prompt::Filter(i)) = &s.prompt {
        let mut spans = vec![
            Span::styled("filter> ", bold),
            Span::raw(format!("{}_", i.text)),
        ];
        match &i.error {
            Some(e) => spans.push(Span::styled(format!("   invalid filter: {e}"), bold)),
            None => spans.push(Span::raw(
                "   (Enter apply, empty = all, Esc keep the old filter)",
            )),
        }
        return Line::from(spans);
    }
    if let Some(st) = &s.status {
        return if st.error {
            Line::from(Span::styled(format!("error: {}", st.text), bold))
        } else {
            Line::from(st.text.clone())
        };
    }
    if let Some(e) = &s.fetch_error {
        return Line::from(Span::styled(format!("error: {e}"), bold));
    }
    Line::from(
        "h help  P/M/T sort  </> column  / filter  k kill  r renice  t tree  F follow  q quit",
    )
}

/// A box of `w` x `h` in the middle of `area` (smaller if the screen is).
fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn popup(f: &mut Frame, title: &str, lines: Vec<Line<'_>>, width: u16) {
    let area = centered(f.area(), width, lines.len() as u16 + 2);
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .padding(Padding::horizontal(1))
                .title(format!(" {title} ")),
        ),
        area,
    );
}

fn target_lines(t: &Target) -> Vec<Line<'static>> {
    let started = t.started_at.unix();
    let mut cmd = t.cmdline.clone();
    if cmd.len() > 60 {
        cmd = format!("{}...", cmd.chars().take(57).collect::<String>());
    }
    vec![
        Line::from(format!("process {} ({})", t.pid, t.name)),
        Line::from(format!(
            "started {}",
            crate::cli::local_datetime(started as i64)
        )),
        Line::from(format!("command {cmd}")),
    ]
}

fn input_line<'a>(label: &str, text: &str, error: Option<&str>) -> Vec<Line<'a>> {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let mut v = vec![Line::from(vec![
        Span::styled(label.to_string(), bold),
        Span::raw(format!("{text}_")),
    ])];
    if let Some(e) = error {
        v.push(Line::from(Span::styled(format!("error: {e}"), bold)));
    }
    v
}

fn render_prompt(f: &mut Frame, p: &Prompt) {
    match p {
        Prompt::Filter(_) => {}
        Prompt::Kill(t, i) => {
            let sig = procman_common::action::parse_signal(if i.text.trim().is_empty() {
                "TERM"
            } else {
                i.text.trim()
            })
            .map(procman_common::action::signal_name);
            let mut lines = target_lines(t);
            lines.push(Line::from(""));
            lines.extend(input_line(
                "signal (name or number, empty = TERM): ",
                &i.text,
                i.error.as_deref(),
            ));
            lines.push(Line::from(match sig {
                Ok(s) => format!("Enter: send {s} to {}   Esc: cancel", t.pid),
                Err(_) => "Enter: send   Esc: cancel".to_string(),
            }));
            popup(f, &format!("Kill {} ({})?", t.pid, t.name), lines, 76);
        }
        Prompt::Renice(t, i) => {
            let mut lines = target_lines(t);
            lines.push(Line::from(format!(
                "nice now {} (-20 most CPU .. 19 least)",
                t.nice
            )));
            lines.push(Line::from(""));
            lines.extend(input_line("new nice: ", &i.text, i.error.as_deref()));
            lines.push(Line::from("Enter: renice   Esc: cancel"));
            popup(f, &format!("Renice {} ({})", t.pid, t.name), lines, 76);
        }
    }
}

fn render_help(f: &mut Frame) {
    let w = KEYS.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut lines: Vec<Line> = KEYS
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(
                    format!("{k:<w$}  "),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::from("any key closes this help"));
    let d = KEYS.iter().map(|(_, d)| d.len()).max().unwrap_or(0);
    popup(f, "procman top: keys", lines, (w + d + 8) as u16);
}

/// Draws the whole screen; remembers how many rows fit (PgUp/PgDn) and the scroll offset.
pub fn render(s: &mut TopState, f: &mut Frame) {
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(f.area());
    f.render_widget(
        Paragraph::new(vec![Line::from(system_line(s)), Line::from(header_line(s))]),
        head,
    );
    let reversed = Style::default().add_modifier(Modifier::REVERSED);
    let header = Row::new(COLUMNS.iter().map(|(name, _, key)| {
        if *key == Some(s.sort) {
            Cell::from(format!("{name}{}", sort_mark(s.sort)))
                .style(Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED))
        } else {
            Cell::from(*name)
        }
    }))
    .style(reversed);
    let rows = s.rows.iter().map(|l| Row::new(cells(&l.prefix, &l.p)));
    let widths = COLUMNS.map(|(_, w, _)| {
        if w == 0 {
            Constraint::Min(10)
        } else {
            Constraint::Length(w)
        }
    });
    s.page = body.height.saturating_sub(1) as usize;
    f.render_stateful_widget(
        Table::new(rows, widths)
            .header(header)
            .row_highlight_style(reversed),
        body,
        &mut s.table,
    );
    f.render_widget(Paragraph::new(footer(s)), foot);
    if let Some(p) = &s.prompt {
        render_prompt(f, p);
    }
    if s.help {
        render_help(f);
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::{tests, Command, Line as Row_, TopState};
    use super::*;
    use ratatui::{
        backend::TestBackend,
        crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
        Terminal,
    };

    /// The state tests' row, with a CPU time (the TIME+ column).
    fn proc(pid: u32, name: &str, cpu: f32) -> ProcessInfo {
        ProcessInfo {
            cpu_time_seconds: 65.5,
            ..tests::proc(pid, name, cpu)
        }
    }

    fn screen(state: &mut TopState, w: u16, h: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| render(state, f)).unwrap();
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

    fn press(s: &mut TopState, code: KeyCode) -> Command {
        s.key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn state() -> TopState {
        let mut s = TopState::new(SortKey::Cpu, String::new());
        s.total = 2;
        s.set_rows(vec![
            Row_ {
                prefix: String::new(),
                p: proc(42, "nginx", 12.5),
            },
            Row_ {
                prefix: "└─ ".into(),
                p: proc(43, "worker", 1.0),
            },
        ]);
        s
    }

    #[test]
    fn renders_rows_and_marks_the_sorted_column() {
        let mut s = state();
        let out = screen(&mut s, 120, 10);
        assert!(
            out.contains("2 processes, 0 zombies, 2 shown   sort: cpu ▼   list"),
            "{out}"
        );
        assert!(out.contains("%CPU▼"), "{out}");
        assert!(!out.contains("%MEM▼"), "{out}");
        assert!(
            out.contains("42") && out.contains("12.5") && out.contains("/usr/bin/nginx --flag"),
            "{out}"
        );
        assert!(out.contains("1:05.50"), "TIME+: {out}");
        assert!(out.contains("└─ /usr/bin/worker"), "tree branch: {out}");
        assert!(out.contains("h help"), "{out}");
        for (key, col) in [
            ('M', "%MEM▼"),
            ('T', "TIME+▼"),
            ('a', "AGE▼"),
            ('N', "PID▲"),
            ('i', "READ/s▼"),
        ] {
            press(&mut s, KeyCode::Char(key));
            let out = screen(&mut s, 120, 10);
            assert!(out.contains(col), "{key}: {out}");
            assert_eq!(out.matches('▼').count() + out.matches('▲').count(), {
                // the header line's mark, and the column's (IO marks both of its columns)
                if key == 'i' {
                    3
                } else {
                    2
                }
            });
        }
    }

    #[test]
    fn help_overlay_lists_the_keys() {
        let mut s = state();
        press(&mut s, KeyCode::Char('h'));
        let out = screen(&mut s, 120, 30);
        assert!(out.contains("procman top: keys"), "{out}");
        assert!(out.contains("kill the selected process"), "{out}");
        press(&mut s, KeyCode::Char('x'));
        assert!(!screen(&mut s, 120, 30).contains("procman top: keys"));
    }

    #[test]
    fn prompts_show_the_target_and_errors() {
        let mut s = state();
        press(&mut s, KeyCode::Char('k'));
        let out = screen(&mut s, 120, 16);
        assert!(out.contains("Kill 42 (nginx)?"), "{out}");
        assert!(out.contains("Enter: send SIGTERM to 42"), "{out}");
        press(&mut s, KeyCode::Char('X'));
        press(&mut s, KeyCode::Enter);
        let out = screen(&mut s, 120, 16);
        assert!(out.contains("error: signal \"X\""), "{out}");
        press(&mut s, KeyCode::Esc);
        press(&mut s, KeyCode::Char('/'));
        for c in "cpu >".chars() {
            press(&mut s, KeyCode::Char(c));
        }
        press(&mut s, KeyCode::Enter);
        let out = screen(&mut s, 120, 16);
        assert!(
            out.contains("filter> cpu >_   invalid filter: column 6: expected"),
            "{out}"
        );
        press(&mut s, KeyCode::Esc);
        press(&mut s, KeyCode::Char('r'));
        let out = screen(&mut s, 120, 16);
        assert!(
            out.contains("Renice 42 (nginx)") && out.contains("new nice: _"),
            "{out}"
        );
    }

    #[test]
    fn cpu_time_like_top() {
        assert_eq!(cpu_time(0.0), "0:00.00");
        assert_eq!(cpu_time(65.5), "1:05.50");
        assert_eq!(cpu_time(5999.99), "99:59.99");
        assert_eq!(cpu_time(7384.0), "2:03:04");
    }
}

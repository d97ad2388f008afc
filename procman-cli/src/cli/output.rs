//! How `procman` prints: the output format every listing and record command takes
//! (`-o table|wide|json`, with `-j`/`--json` and `-w`/`--wide` as aliases), the width a table
//! is cut to, and colour. The raw flags are resolved once into an [`Output`]; the commands
//! only ever see that.
//!
//! Colour is decided in one place ([`init_color`], from `--color`, `NO_COLOR`,
//! `CLICOLOR_FORCE`, `TERM` and whether the stream is a terminal) and applied through one
//! function ([`paint`]); no other code writes escape sequences.
use clap::{Args, ValueEnum};
use std::sync::atomic::{AtomicBool, Ordering};

/// The output format, parsed once from `-o`, `-j`/`--json` or `-w`/`--wide`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// Aligned text; on a terminal each line is cut to its width.
    #[default]
    Table,
    /// Aligned text with whole lines (long commands, messages and names are never cut).
    Wide,
    /// JSON, the API's own objects (stable, documented keys).
    Json,
}

/// `-o/--output FORMAT` and its aliases. The last one given wins (`-j -o table` is a table).
#[derive(Args, Debug, Clone, Default)]
pub struct OutputArgs {
    /// Output format: table (aligned, cut to the terminal's width on a terminal), wide (whole
    /// lines, never cut) or json (the API's own objects, stable).
    #[arg(
        long = "output",
        short = 'o',
        value_name = "FORMAT",
        value_enum,
        overrides_with_all = ["output_json", "output_wide"]
    )]
    output: Option<Format>,
    /// Print JSON (the API's own format, stable) instead of text; same as `-o json`.
    #[arg(long = "json", short = 'j', overrides_with_all = ["output", "output_wide"])]
    output_json: bool,
    /// Print whole lines, never cut to the terminal's width; same as `-o wide`.
    #[arg(long = "wide", short = 'w', overrides_with_all = ["output", "output_json"])]
    output_wide: bool,
}

impl OutputArgs {
    /// The one validated choice.
    pub fn resolve(&self) -> Output {
        let format = match (self.output, self.output_json, self.output_wide) {
            (Some(f), _, _) => f,
            (None, true, _) => Format::Json,
            (None, false, true) => Format::Wide,
            (None, false, false) => Format::Table,
        };
        Output { format }
    }
}

/// What a command prints in: the flags of [`OutputArgs`], resolved. A command flattens this
/// type itself (`#[command(flatten)] out: Output`), so clap hands it the validated choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Output {
    pub format: Format,
}

impl clap::FromArgMatches for Output {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        OutputArgs::from_arg_matches(m).map(|a| a.resolve())
    }
    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl Args for Output {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        OutputArgs::augment_args(cmd)
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        OutputArgs::augment_args_for_update(cmd)
    }
}

impl Output {
    pub fn json(self) -> bool {
        self.format == Format::Json
    }

    /// The width lines are cut to: the terminal's for a table on a terminal, else none.
    pub fn width(self) -> Option<usize> {
        match self.format {
            Format::Table => terminal_width(),
            Format::Wide | Format::Json => None,
        }
    }
}

/// The terminal's width in columns when stdout is a terminal, else `None` (pipes get whole
/// lines).
pub fn terminal_width() -> Option<usize> {
    // SAFETY: TIOCGWINSZ fills the winsize we pass; fd 1 may not be a tty (then it fails).
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0).then_some(ws.ws_col as usize)
}

/// `line` cut to `width` visible characters (None: whole). Escape sequences from [`paint`]
/// take no columns and are kept; a cut line ends with a reset so colour never leaks.
pub fn cut(line: &str, width: Option<usize>) -> std::borrow::Cow<'_, str> {
    let Some(w) = width else {
        return line.into();
    };
    let mut out = String::new();
    let (mut cols, mut in_esc, mut styled, mut was_cut) = (0, false, false, false);
    for c in line.chars() {
        if in_esc {
            out.push(c);
            in_esc = c != 'm';
            continue;
        }
        if c == '\x1b' {
            out.push(c);
            in_esc = true;
            styled = true;
            continue;
        }
        if cols == w {
            was_cut = true;
            break;
        }
        out.push(c);
        cols += 1;
    }
    if !was_cut {
        return line.into();
    }
    if styled {
        out.push_str(&anstyle::Reset.render().to_string());
    }
    out.into()
}

/// `--color`: when to colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ColorWhen {
    /// On a terminal, unless NO_COLOR is set to anything (https://no-color.org) or TERM is
    /// dumb; CLICOLOR_FORCE=1 forces it.
    #[default]
    Auto,
    /// Always, even into a pipe and with NO_COLOR set.
    Always,
    /// Never.
    Never,
}

static COLOR_OUT: AtomicBool = AtomicBool::new(false);
static COLOR_ERR: AtomicBool = AtomicBool::new(false);

/// The colour decision for a stream, from the flag and the environment (pure, for tests).
pub fn color_wanted(when: ColorWhen, env: impl Fn(&str) -> Option<String>, is_tty: bool) -> bool {
    let set = |k: &str| env(k).is_some_and(|v| !v.is_empty());
    match when {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto if set("NO_COLOR") => false,
        ColorWhen::Auto if env("CLICOLOR_FORCE").is_some_and(|v| !v.is_empty() && v != "0") => true,
        ColorWhen::Auto => is_tty && env("TERM").is_none_or(|t| t != "dumb"),
    }
}

/// Decides colour for stdout and stderr once, at start.
pub fn init_color(when: ColorWhen) {
    let env = |k: &str| std::env::var(k).ok();
    // SAFETY: isatty only inspects the descriptor.
    let tty = |fd| unsafe { libc::isatty(fd) } == 1;
    COLOR_OUT.store(color_wanted(when, env, tty(1)), Ordering::Relaxed);
    COLOR_ERR.store(color_wanted(when, env, tty(2)), Ordering::Relaxed);
}

/// Styles of procman's output: what a colour means is decided here.
#[derive(Debug, Clone, Copy)]
pub enum Paint {
    /// Table headers.
    Header,
    /// Healthy: ok, ready, running.
    Good,
    /// Needs a look: starting, backing-off, dry-run, FROZEN.
    Warn,
    /// Failed, denied, error, LEAK SUSPECTED.
    Bad,
    /// Frozen processes and slices.
    Frozen,
}

impl Paint {
    fn style(self) -> anstyle::Style {
        use anstyle::{AnsiColor, Style};
        match self {
            Paint::Header => Style::new().bold(),
            Paint::Good => Style::new().fg_color(Some(AnsiColor::Green.into())),
            Paint::Warn => Style::new().fg_color(Some(AnsiColor::Yellow.into())),
            Paint::Bad => Style::new().fg_color(Some(AnsiColor::Red.into())).bold(),
            Paint::Frozen => Style::new().fg_color(Some(AnsiColor::Cyan.into())),
        }
    }
}

fn render(text: &str, p: Paint, on: bool) -> String {
    if !on || text.is_empty() {
        return text.to_string();
    }
    let s = p.style();
    format!("{}{text}{}", s.render(), s.render_reset())
}

/// `text` in style `p` on stdout when colour is on, else as is. Pad before painting.
pub fn paint(text: &str, p: Paint) -> String {
    render(text, p, COLOR_OUT.load(Ordering::Relaxed))
}

/// [`paint`] for stderr.
pub fn paint_err(text: &str, p: Paint) -> String {
    render(text, p, COLOR_ERR.load(Ordering::Relaxed))
}

/// The style of a status word (service states, audit and action results).
pub fn status_paint(word: &str) -> Option<Paint> {
    Some(match word {
        "ok" | "ready" | "running" | "enforce" => Paint::Good,
        "starting" | "stopping" | "backing-off" | "unhealthy" | "dry-run" | "degraded" => {
            Paint::Warn
        }
        "failed" | "denied" | "error" | "refused" => Paint::Bad,
        _ => return None,
    })
}

/// `padded` (a status word with its padding) painted by its trimmed word.
pub fn paint_status(padded: &str) -> String {
    match status_paint(padded.trim()) {
        Some(p) => {
            let word = padded.trim();
            let at = padded.find(word).unwrap_or(0);
            format!(
                "{}{}{}",
                &padded[..at],
                paint(word, p),
                &padded[at + word.len()..]
            )
        }
        None => padded.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_resolve_to_one_format_and_the_last_wins() {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            out: Output,
        }
        let f = |args: &[&str]| {
            let mut v = vec!["t"];
            v.extend(args);
            T::try_parse_from(v).map(|t| t.out.format)
        };
        assert_eq!(f(&[]).unwrap(), Format::Table);
        assert_eq!(f(&["-j"]).unwrap(), Format::Json);
        assert_eq!(f(&["--json"]).unwrap(), Format::Json);
        assert_eq!(f(&["-w"]).unwrap(), Format::Wide);
        assert_eq!(f(&["-o", "json"]).unwrap(), Format::Json);
        assert_eq!(f(&["--output=wide"]).unwrap(), Format::Wide);
        assert_eq!(f(&["-j", "-o", "table"]).unwrap(), Format::Table);
        assert_eq!(f(&["-o", "table", "-j"]).unwrap(), Format::Json);
        assert_eq!(f(&["-w", "-j"]).unwrap(), Format::Json);
        let e = f(&["-o", "yaml"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("table, wide, json"), "{e}");
    }

    #[test]
    fn colour_follows_no_color_the_flag_and_the_terminal() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(color_wanted(ColorWhen::Auto, env(&[]), true));
        assert!(!color_wanted(ColorWhen::Auto, env(&[]), false));
        assert!(!color_wanted(
            ColorWhen::Auto,
            env(&[("NO_COLOR", "1")]),
            true
        ));
        assert!(!color_wanted(
            ColorWhen::Auto,
            env(&[("NO_COLOR", "no")]),
            true
        ));
        // an empty NO_COLOR is not set (no-color.org)
        assert!(color_wanted(
            ColorWhen::Auto,
            env(&[("NO_COLOR", "")]),
            true
        ));
        assert!(!color_wanted(
            ColorWhen::Auto,
            env(&[("TERM", "dumb")]),
            true
        ));
        assert!(color_wanted(
            ColorWhen::Auto,
            env(&[("CLICOLOR_FORCE", "1")]),
            false
        ));
        assert!(!color_wanted(
            ColorWhen::Auto,
            env(&[("CLICOLOR_FORCE", "0")]),
            false
        ));
        // the command line beats the environment
        assert!(color_wanted(
            ColorWhen::Always,
            env(&[("NO_COLOR", "1")]),
            false
        ));
        assert!(!color_wanted(ColorWhen::Never, env(&[]), true));
    }

    #[test]
    fn cutting_counts_columns_not_escapes() {
        assert_eq!(cut("abcdef", Some(4)), "abcd");
        assert_eq!(cut("abc", Some(4)), "abc");
        assert_eq!(cut("abcdef", None), "abcdef");
        assert_eq!(cut("ééééé", Some(2)), "éé");
        let red = render("abc", Paint::Bad, true);
        assert_eq!(cut(&red, Some(3)), red);
        let long = format!("{red}defg");
        let c = cut(&long, Some(4));
        assert!(c.starts_with(&red) && c.ends_with("d\x1b[0m"), "{c:?}");
        assert_eq!(render("abc", Paint::Bad, false), "abc");
    }
}

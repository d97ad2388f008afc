//! The filter expression language shared by the CLI (`--filter`), the API (`?filter=`) and,
//! later, placement rules.
//!
//! ```text
//! expr    := or
//! or      := and ("or" and)*
//! and     := not ("and" not)*
//! not     := "not" not | primary
//! primary := "(" expr ")" | FIELD OP VALUE
//! OP      := == | != | < | <= | > | >= | ~        (~ is a regex match, strings only)
//! ```
//!
//! Fields and their values:
//! - the API's names work too: `parent_pid`, `num_threads`, `num_fds`, `cpu_percent`,
//!   `memory_percent`, `memory_bytes`, `username`;
//! - counts: `pid`, `ppid`, `uid`, `threads`, `fds` (integers);
//! - `cpu` (percent of one CPU) and `memory` (percent of RAM): `80`, `80%`, `12.5%`;
//! - `rss` (bytes) and `io_read`, `io_write` (bytes per second): `4096`, `512K`, `512KiB`,
//!   `1.5G`; `K M G T` and `KiB MiB GiB TiB` are 1024-based (as systemd and the limits),
//!   `KB MB GB TB` are 1000-based;
//! - `age` (seconds): `30`, `30s`, `5m`, `2h`, `1d`;
//! - for policies (`[[policy]]`, also usable anywhere): `mem_growth` (RSS growth in bytes per
//!   second over the last sample interval: `20MiB/s`, `20M`), `runq` (percent of the interval
//!   spent waiting to run), `zombies` (unreaped children); and, for `scope = "slice"` rules,
//!   `psi_cpu`, `psi_memory`, `psi_io` (the slice's pressure `some avg10`, percent) and
//!   `memory_current` (the slice's `memory.current`, bytes);
//! - strings: `name` (comm), `exe`, `cmdline`, `user`, `state` (R, S, D, Z, T, I...),
//!   `status` (running, sleeping, disk-sleep, zombie, stopped, idle...), `cgroup`, `slice`:
//!   bare words or quoted ("..." or '...'); `==`/`!=` compare exactly, `~`
//!   matches a regex anywhere in the value.
//!
//! Parse errors name the 1-based column and what was expected. A comparison whose field has no
//! value for a process (e.g. `exe` of a kernel thread) is false. Written by hand: the grammar is
//! tiny, and a parser generator would not give these column-accurate messages for free.
use regex::Regex;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    Pid,
    Ppid,
    Uid,
    Threads,
    Fds,
    Cpu,
    Memory,
    Rss,
    IoRead,
    IoWrite,
    Age,
    Name,
    Exe,
    Cmdline,
    User,
    State,
    Cgroup,
    Slice,
    Status,
    // ---- policy engine fields (procman-agent/src/policy): rates and counts the sampler's
    // recent samples give, and slice-only facts for `scope = "slice"` rules ----
    /// RSS growth, bytes per second over the last sample interval (negative when shrinking).
    MemGrowth,
    /// Run-queue wait, percent of the last interval spent runnable but not running.
    Runq,
    /// Children of the process that exited and were not reaped yet.
    Zombies,
    /// A slice's `cpu.pressure` / `memory.pressure` / `io.pressure` `some avg10`, percent.
    PsiCpu,
    PsiMemory,
    PsiIo,
    /// A slice's `memory.current`, bytes.
    MemoryCurrent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Count,
    Percent,
    Bytes,
    /// Bytes per second: a size with an optional `/s` (`20MiB/s`).
    Rate,
    Duration,
    Text,
}

const FIELDS: &[(&str, Field)] = &[
    ("pid", Field::Pid),
    ("ppid", Field::Ppid),
    ("uid", Field::Uid),
    ("threads", Field::Threads),
    ("fds", Field::Fds),
    ("cpu", Field::Cpu),
    ("memory", Field::Memory),
    ("rss", Field::Rss),
    ("io_read", Field::IoRead),
    ("io_write", Field::IoWrite),
    ("age", Field::Age),
    ("name", Field::Name),
    ("exe", Field::Exe),
    ("cmdline", Field::Cmdline),
    ("user", Field::User),
    ("state", Field::State),
    ("cgroup", Field::Cgroup),
    ("slice", Field::Slice),
    ("status", Field::Status),
    // the API's field names (seed 004's) for the same values; listed after the short names,
    // which stay the ones `Field::name` prints
    ("parent_pid", Field::Ppid),
    ("num_threads", Field::Threads),
    ("num_fds", Field::Fds),
    ("cpu_percent", Field::Cpu),
    ("memory_percent", Field::Memory),
    ("memory_bytes", Field::Rss),
    ("username", Field::User),
    // policy engine fields
    ("mem_growth", Field::MemGrowth),
    ("runq", Field::Runq),
    ("zombies", Field::Zombies),
    ("psi_cpu", Field::PsiCpu),
    ("psi_memory", Field::PsiMemory),
    ("psi_io", Field::PsiIo),
    ("memory_current", Field::MemoryCurrent),
];

impl Field {
    fn kind(self) -> Kind {
        use Field::*;
        match self {
            Pid | Ppid | Uid | Threads | Fds | Zombies => Kind::Count,
            Cpu | Memory | Runq | PsiCpu | PsiMemory | PsiIo => Kind::Percent,
            Rss | MemoryCurrent => Kind::Bytes,
            IoRead | IoWrite | MemGrowth => Kind::Rate,
            Age => Kind::Duration,
            Name | Exe | Cmdline | User | State | Cgroup | Slice | Status => Kind::Text,
        }
    }

    /// Formats a value of this field in its unit, as the filter language reads it back
    /// (`93.5%`, `1.2G`, `25M/s`, `5m03s`).
    pub fn format(self, v: f64) -> String {
        use crate::units::{fmt_bytes_approx, fmt_duration};
        match self.kind() {
            Kind::Count => format!("{v:.0}"),
            Kind::Percent => format!("{v:.1}%"),
            Kind::Bytes => fmt_bytes_approx(v.max(0.0) as u64),
            Kind::Rate if v < 0.0 => format!("-{}/s", fmt_bytes_approx((-v) as u64)),
            Kind::Rate => format!("{}/s", fmt_bytes_approx(v as u64)),
            Kind::Duration => fmt_duration(std::time::Duration::from_secs_f64(v.clamp(0.0, 1e12))),
            Kind::Text => v.to_string(),
        }
    }

    /// Every field, in the order of the language's table.
    pub fn all() -> impl Iterator<Item = Field> {
        FIELDS.iter().map(|(_, f)| *f)
    }

    pub fn name(self) -> &'static str {
        FIELDS
            .iter()
            .find(|(_, f)| *f == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

/// What a process offers to a filter. Numeric fields in their base unit (bytes, bytes/s,
/// seconds, percent); `None` when unknown.
pub trait Fields {
    fn number(&self, f: Field) -> Option<f64>;
    fn text(&self, f: Field) -> Option<std::borrow::Cow<'_, str>>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Match,
}

#[derive(Debug, Clone)]
enum Value {
    Num(f64),
    Text(String),
    Re(Regex),
}

#[derive(Debug, Clone)]
enum Node {
    /// field, operator, value, and the value as written (for `explain`).
    Cmp(Field, Op, Value, String),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
}

/// A parsed filter.
#[derive(Debug, Clone)]
pub struct Filter {
    root: Node,
    source: String,
}

/// A parse error at a 1-based column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub column: usize,
    pub expected: String,
    pub found: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "column {}: expected {}, found {}",
            self.column, self.expected, self.found
        )
    }
}

impl std::error::Error for ParseError {}

impl ParseError {
    /// The input with a caret under the column, then the message.
    pub fn render(&self, input: &str) -> String {
        format!(
            "{input}\n{}^\n{self}",
            " ".repeat(self.column.saturating_sub(1))
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Op(Op),
    LParen,
    RParen,
    End,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Word(w) => format!("`{w}`"),
        Tok::Str(s) => format!("\"{s}\""),
        Tok::Op(o) => format!("`{}`", op_str(*o)),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::End => "end of input".into(),
    }
}

fn op_str(o: Op) -> &'static str {
    match o {
        Op::Eq => "==",
        Op::Ne => "!=",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Match => "~",
    }
}

/// (token, 1-based column)
fn lex(input: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let op2 = match two.as_str() {
            "==" => Some(Op::Eq),
            "!=" => Some(Op::Ne),
            "<=" => Some(Op::Le),
            ">=" => Some(Op::Ge),
            _ => None,
        };
        if let Some(o) = op2 {
            out.push((Tok::Op(o), col));
            i += 2;
            continue;
        }
        match c {
            '<' => out.push((Tok::Op(Op::Lt), col)),
            '>' => out.push((Tok::Op(Op::Gt), col)),
            '~' => out.push((Tok::Op(Op::Match), col)),
            '=' => {
                return Err(ParseError {
                    column: col,
                    expected: "`==` (comparison)".into(),
                    found: "`=`".into(),
                })
            }
            '(' => out.push((Tok::LParen, col)),
            ')' => out.push((Tok::RParen, col)),
            '"' | '\'' => {
                let mut s = String::new();
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => {
                            return Err(ParseError {
                                column: col,
                                expected: format!("a closing {c}"),
                                found: "end of input".into(),
                            })
                        }
                        Some('\\') if chars.get(j + 1) == Some(&c) => {
                            s.push(c);
                            j += 2;
                        }
                        Some(&d) if d == c => break,
                        Some(&d) => {
                            s.push(d);
                            j += 1;
                        }
                    }
                }
                out.push((Tok::Str(s), col));
                i = j + 1;
                continue;
            }
            _ => {
                let mut j = i;
                while j < chars.len()
                    && !chars[j].is_whitespace()
                    && !"()<>=!~\"'".contains(chars[j])
                {
                    j += 1;
                }
                if j == i {
                    return Err(ParseError {
                        column: col,
                        expected: "a field, value or operator".into(),
                        found: format!("`{c}`"),
                    });
                }
                out.push((Tok::Word(chars[i..j].iter().collect()), col));
                i = j;
                continue;
            }
        }
        i += 1;
    }
    out.push((Tok::End, chars.len() + 1));
    Ok(out)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Parses a number with an optional unit into the field's base unit, with the units every
/// other part of procman uses ([`crate::units`]).
fn number(kind: Kind, text: &str) -> Result<f64, String> {
    use crate::units;
    let e = |e: units::UnitError| e.problem;
    match kind {
        Kind::Count => text
            .parse::<u64>()
            .map(|n| n as f64)
            .map_err(|_| String::new()),
        Kind::Percent => units::Percent::parse_optional_sign(text)
            .map(units::Percent::as_f64)
            .map_err(e),
        Kind::Bytes => units::parse_bytes(text).map(|b| b as f64).map_err(e),
        Kind::Rate => units::parse_bytes(text.strip_suffix("/s").unwrap_or(text))
            .map(|b| b as f64)
            .map_err(e),
        Kind::Duration => units::parse_duration(text)
            .map(|d| d.as_secs_f64())
            .map_err(e),
        Kind::Text => Err(String::new()),
    }
}

fn forms(kind: Kind) -> &'static str {
    match kind {
        Kind::Count => "a whole number, e.g. 1234",
        Kind::Percent => "a percentage, e.g. 80 or 80%",
        Kind::Bytes => "a size, e.g. 4096, 512K, 512MiB, 1.5G or 2GB",
        Kind::Rate => "a rate in bytes per second, e.g. 512K, 20MiB/s or 1G/s",
        Kind::Duration => "a duration, e.g. 30s, 5m, 2h or 1d",
        Kind::Text => "a word or a quoted string",
    }
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    /// Current nesting of `(` and `not`, bounded by [`MAX_DEPTH`].
    depth: usize,
}

/// Deepest nesting of parentheses and `not` a filter may have: the parser and the evaluator
/// recurse, so hostile input (`((((...`) must not reach the stack's end.
pub const MAX_DEPTH: usize = 64;
/// Longest filter accepted, in bytes.
pub const MAX_LEN: usize = 4096;
/// Most memory one compiled `~` regex may take (a hostile `a{9999}{9999}` is refused).
pub const MAX_REGEX_BYTES: usize = 1 << 20;

impl Parser {
    fn peek(&self) -> &(Tok, usize) {
        &self.toks[self.pos]
    }
    fn next(&mut self) -> (Tok, usize) {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }
    fn err<T>(&self, expected: &str) -> Result<T, ParseError> {
        let (t, col) = self.peek();
        Err(ParseError {
            column: *col,
            expected: expected.into(),
            found: describe(t),
        })
    }
    fn keyword(&self, k: &str) -> bool {
        matches!(&self.peek().0, Tok::Word(w) if w.eq_ignore_ascii_case(k))
    }

    fn or(&mut self) -> Result<Node, ParseError> {
        let mut n = self.and()?;
        while self.keyword("or") {
            self.next();
            n = Node::Or(Box::new(n), Box::new(self.and()?));
        }
        Ok(n)
    }
    fn and(&mut self) -> Result<Node, ParseError> {
        let mut n = self.not()?;
        while self.keyword("and") {
            self.next();
            n = Node::And(Box::new(n), Box::new(self.not()?));
        }
        Ok(n)
    }
    fn not(&mut self) -> Result<Node, ParseError> {
        if self.keyword("not") {
            self.enter()?;
            self.next();
            let n = Node::Not(Box::new(self.not()?));
            self.depth -= 1;
            return Ok(n);
        }
        self.primary()
    }
    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err(&format!("at most {MAX_DEPTH} nested parentheses or `not`s"));
        }
        Ok(())
    }
    fn primary(&mut self) -> Result<Node, ParseError> {
        match self.peek().0.clone() {
            Tok::LParen => {
                self.enter()?;
                self.next();
                let n = self.or()?;
                if self.peek().0 != Tok::RParen {
                    return self.err("`)` or `and`/`or`");
                }
                self.next();
                self.depth -= 1;
                Ok(n)
            }
            Tok::Word(w) => {
                let col = self.peek().1;
                let Some(&(_, field)) = FIELDS.iter().find(|(n, _)| n.eq_ignore_ascii_case(&w))
                else {
                    let names: Vec<&str> = FIELDS.iter().map(|f| f.0).collect();
                    let best = names
                        .iter()
                        .min_by_key(|n| edit_distance(&w.to_lowercase(), n))
                        .unwrap();
                    let hint = if edit_distance(&w.to_lowercase(), best) <= 2 {
                        format!(" (did you mean `{best}`?)")
                    } else {
                        String::new()
                    };
                    return Err(ParseError {
                        column: col,
                        expected: format!("a field: {}{hint}", names.join(", ")),
                        found: format!("`{w}`"),
                    });
                };
                self.next();
                let (op, op_col) = match self.next() {
                    (Tok::Op(o), c) => (o, c),
                    (t, c) => {
                        return Err(ParseError {
                            column: c,
                            expected: format!(
                                "an operator after `{}` (== != < <= > >= ~)",
                                field.name()
                            ),
                            found: describe(&t),
                        })
                    }
                };
                let kind = field.kind();
                if kind == Kind::Text && !matches!(op, Op::Eq | Op::Ne | Op::Match) {
                    return Err(ParseError {
                        column: op_col,
                        expected: format!("==, != or ~ for the text field `{}`", field.name()),
                        found: format!("`{}`", op_str(op)),
                    });
                }
                if kind != Kind::Text && op == Op::Match {
                    return Err(ParseError {
                        column: op_col,
                        expected: format!(
                            "== != < <= > >= for the numeric field `{}` (~ is for text)",
                            field.name()
                        ),
                        found: "`~`".into(),
                    });
                }
                let (tok, vcol) = self.next();
                let text = match tok {
                    Tok::Word(s) | Tok::Str(s) => s,
                    t => {
                        return Err(ParseError {
                            column: vcol,
                            expected: format!("a value after `{}`: {}", op_str(op), forms(kind)),
                            found: describe(&t),
                        })
                    }
                };
                let written = text.clone();
                let value = match (kind, op) {
                    (Kind::Text, Op::Match) => Value::Re(
                        regex::RegexBuilder::new(&text)
                            .size_limit(MAX_REGEX_BYTES)
                            .dfa_size_limit(MAX_REGEX_BYTES)
                            .build()
                            .map_err(|e| ParseError {
                                column: vcol,
                                expected: "a valid regular expression".into(),
                                found: format!(
                                    "\"{text}\" ({})",
                                    e.to_string().lines().last().unwrap_or("invalid")
                                ),
                            })?,
                    ),
                    (Kind::Text, _) => Value::Text(text),
                    _ => Value::Num(number(kind, &text).map_err(|_| ParseError {
                        column: vcol,
                        expected: format!("{} for `{}`", forms(kind), field.name()),
                        found: format!("`{text}`"),
                    })?),
                };
                Ok(Node::Cmp(field, op, value, written))
            }
            _ => self.err("a field name, `not` or `(`"),
        }
    }
}

impl Filter {
    pub fn parse(input: &str) -> Result<Filter, ParseError> {
        if input.len() > MAX_LEN {
            return Err(ParseError {
                column: MAX_LEN + 1,
                expected: format!("a filter of at most {MAX_LEN} bytes"),
                found: format!("{} bytes", input.len()),
            });
        }
        let toks = lex(input)?;
        let mut p = Parser {
            toks,
            pos: 0,
            depth: 0,
        };
        if p.peek().0 == Tok::End {
            return p.err("a condition, e.g. `cpu > 50%` or `name ~ \"^nginx\"`");
        }
        let root = p.or()?;
        if p.peek().0 != Tok::End {
            return p.err("`and`, `or` or the end of the filter");
        }
        Ok(Filter {
            root,
            source: input.to_string(),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the filter mentions `f` (callers skip expensive fields nobody asked for).
    pub fn uses(&self, f: Field) -> bool {
        fn walk(n: &Node, f: Field) -> bool {
            match n {
                Node::Cmp(g, _, _, _) => *g == f,
                Node::And(a, b) | Node::Or(a, b) => walk(a, f) || walk(b, f),
                Node::Not(a) => walk(a, f),
            }
        }
        walk(&self.root, f)
    }

    pub fn matches(&self, p: &dyn Fields) -> bool {
        fn eval(n: &Node, p: &dyn Fields) -> bool {
            match n {
                Node::And(a, b) => eval(a, p) && eval(b, p),
                Node::Or(a, b) => eval(a, p) || eval(b, p),
                Node::Not(a) => !eval(a, p),
                Node::Cmp(f, op, v, _) => compare(*f, *op, v, p),
            }
        }
        eval(&self.root, p)
    }

    /// The fields the filter mentions, each once, in order of appearance.
    pub fn fields(&self) -> Vec<Field> {
        let mut out = Vec::new();
        self.walk(&mut |n| {
            if let Node::Cmp(f, ..) = n {
                if !out.contains(f) {
                    out.push(*f);
                }
            }
        });
        out
    }

    /// Each comparison of the filter, in order, with the value `p` has for its field and
    /// whether it holds (what `procman policy explain` shows).
    pub fn explain(&self, p: &dyn Fields) -> Vec<Comparison> {
        let mut out = Vec::new();
        self.walk(&mut |n| {
            if let Node::Cmp(f, op, v, written) = n {
                let value = match v {
                    Value::Num(_) => p.number(*f).map(|x| f.format(x)),
                    Value::Text(_) | Value::Re(_) => p.text(*f).map(|s| s.into_owned()),
                };
                out.push(Comparison {
                    field: f.name().to_string(),
                    op: op_str(*op).to_string(),
                    threshold: written.clone(),
                    value,
                    holds: compare(*f, *op, v, p),
                });
            }
        });
        out
    }

    /// Numeric comparisons at least one of which holds for every process the filter
    /// accepts, when the filter has such a set: a cheap pre-filter over a column of values
    /// (the policy engine scans one `f64` column instead of evaluating the whole filter for
    /// every process). `cpu > 90 and name == x` gives `[cpu > 90]`; `cpu > 90 or rss > 1G`
    /// gives both; `not cpu > 90` or `name == x` give none. A missing value (`NaN`) is
    /// admitted by no bound, as it makes the comparison false.
    pub fn necessary_bounds(&self) -> Option<Vec<Bound>> {
        fn go(n: &Node) -> Option<Vec<Bound>> {
            match n {
                Node::Cmp(field, op, Value::Num(x), _) if *op != Op::Ne => Some(vec![Bound {
                    field: *field,
                    op: *op,
                    value: *x,
                }]),
                Node::And(a, b) => go(a).or_else(|| go(b)),
                Node::Or(a, b) => {
                    let mut v = go(a)?;
                    v.extend(go(b)?);
                    Some(v)
                }
                _ => None,
            }
        }
        go(&self.root)
    }

    fn walk(&self, visit: &mut dyn FnMut(&Node)) {
        fn go(n: &Node, visit: &mut dyn FnMut(&Node)) {
            visit(n);
            match n {
                Node::And(a, b) | Node::Or(a, b) => {
                    go(a, visit);
                    go(b, visit);
                }
                Node::Not(a) => go(a, visit),
                Node::Cmp(..) => {}
            }
        }
        go(&self.root, visit)
    }
}

/// One numeric comparison (see [`Filter::necessary_bounds`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound {
    pub field: Field,
    op: Op,
    value: f64,
}

impl Bound {
    /// Whether a value passes the comparison (`NaN`, a missing value, never does).
    #[inline]
    pub fn admits(&self, y: f64) -> bool {
        let x = self.value;
        match self.op {
            Op::Eq => y == x,
            Op::Lt => y < x,
            Op::Le => y <= x,
            Op::Gt => y > x,
            Op::Ge => y >= x,
            Op::Ne | Op::Match => true,
        }
    }
}

fn compare(f: Field, op: Op, v: &Value, p: &dyn Fields) -> bool {
    match v {
        Value::Num(x) => p.number(f).is_some_and(|y| match op {
            Op::Eq => y == *x,
            Op::Ne => y != *x,
            Op::Lt => y < *x,
            Op::Le => y <= *x,
            Op::Gt => y > *x,
            Op::Ge => y >= *x,
            Op::Match => false,
        }),
        Value::Text(t) => p
            .text(f)
            .is_some_and(|s| (s == t.as_str()) == (op == Op::Eq)),
        Value::Re(r) => p.text(f).is_some_and(|s| r.is_match(&s)),
    }
}

/// One comparison of a filter against one process: `cpu > 90%` where cpu is `97.2%`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Comparison {
    pub field: String,
    pub op: String,
    /// The value as the filter wrote it (`90%`).
    pub threshold: String,
    /// The process's value in the field's unit; `None` when it has none (the comparison is
    /// then false).
    pub value: Option<String>,
    pub holds: bool,
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}: {} ({})",
            self.field,
            self.op,
            self.threshold,
            self.value.as_deref().unwrap_or("no value"),
            if self.holds { "true" } else { "false" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    struct P {
        pid: u32,
        name: &'static str,
        cpu: f64,
        rss: f64,
        age: f64,
        user: &'static str,
        exe: Option<&'static str>,
    }

    impl Fields for P {
        fn number(&self, f: Field) -> Option<f64> {
            match f {
                Field::Pid => Some(self.pid as f64),
                Field::Cpu => Some(self.cpu),
                Field::Rss => Some(self.rss),
                Field::Age => Some(self.age),
                _ => None,
            }
        }
        fn text(&self, f: Field) -> Option<Cow<'_, str>> {
            match f {
                Field::Name => Some(self.name.into()),
                Field::User => Some(self.user.into()),
                Field::Exe => self.exe.map(Cow::from),
                _ => None,
            }
        }
    }

    fn nginx() -> P {
        P {
            pid: 42,
            name: "nginx",
            cpu: 85.0,
            rss: 600.0 * 1024.0 * 1024.0,
            age: 600.0,
            user: "www-data",
            exe: Some("/usr/sbin/nginx"),
        }
    }
    fn kthread() -> P {
        P {
            pid: 2,
            name: "kthreadd",
            cpu: 0.0,
            rss: 0.0,
            age: 9000.0,
            user: "root",
            exe: None,
        }
    }

    fn m(expr: &str, p: &P) -> bool {
        Filter::parse(expr)
            .unwrap_or_else(|e| panic!("{}", e.render(expr)))
            .matches(p)
    }

    #[test]
    fn api_field_names_are_aliases() {
        let n = nginx();
        for (alias, short) in [
            ("cpu_percent > 80", "cpu > 80"),
            ("username == www-data", "user == www-data"),
            ("memory_bytes > 500M", "rss > 500M"),
        ] {
            let a = Filter::parse(alias).unwrap();
            let b = Filter::parse(short).unwrap();
            assert_eq!(a.matches(&n), b.matches(&n), "{alias}");
            assert!(a.matches(&n), "{alias}");
        }
        assert!(Filter::parse("status == zombie").is_ok());
        assert!(Filter::parse("status > 3").is_err());
    }

    #[test]
    fn comparisons_and_units() {
        let n = nginx();
        assert!(m("cpu > 80%", &n));
        assert!(m("cpu > 80", &n));
        assert!(!m("cpu >= 85.5", &n));
        assert!(m("rss > 512MiB", &n));
        assert!(m("rss < 1GB", &n), "600 MiB is less than 10^9 bytes");
        assert!(!m("rss < 0.5G", &n));
        assert!(m("age >= 10m and age < 1h", &n));
        assert!(m("pid == 42", &n));
        assert!(m("pid != 43", &n));
        assert!(m("name == nginx", &n));
        assert!(m("name == \"nginx\"", &n));
        assert!(m("name ~ '^ng'", &n));
        assert!(!m("name ~ '^x'", &n));
        assert!(m("user != root", &n));
        assert!(m("exe ~ /sbin/", &n));
    }

    #[test]
    fn boolean_logic_and_precedence() {
        let (n, k) = (nginx(), kthread());
        // and binds tighter than or
        assert!(m("name == kthreadd or name == nginx and cpu > 50", &k));
        assert!(!m("(name == kthreadd or name == nginx) and cpu > 50", &k));
        assert!(m("not name == kthreadd", &n));
        assert!(m("not not name == nginx", &n));
        assert!(m("NOT (cpu < 1 OR rss < 1K)", &n));
        // a missing value makes the comparison false, and its negation true
        assert!(!m("exe ~ .", &k));
        assert!(m("not exe ~ .", &k));
    }

    fn err(expr: &str) -> ParseError {
        Filter::parse(expr).expect_err(expr)
    }

    #[test]
    fn errors_point_at_the_column() {
        let e = err("cpu > ");
        assert_eq!(e.column, 7);
        assert!(
            e.expected.contains("percentage") && e.found == "end of input",
            "{e}"
        );
        let e = err("(cpu > 5");
        assert_eq!((e.column, e.found.as_str()), (9, "end of input"));
        assert!(e.expected.contains(")"));
        let e = err("nmae == x");
        assert_eq!(e.column, 1);
        assert!(e.expected.contains("did you mean `name`"), "{e}");
        let e = err("rss > 5XB");
        assert_eq!(e.column, 7);
        assert!(e.expected.contains("512MiB") && e.found == "`5XB`", "{e}");
        let e = err("name ~ \"(\"");
        assert_eq!(e.column, 8);
        assert!(e.expected.contains("regular expression"), "{e}");
        let e = err("cpu > 5 cpu");
        assert_eq!(e.column, 9);
        assert!(e.expected.contains("and"), "{e}");
        let e = err("");
        assert_eq!(e.column, 1);
        let e = err("name > 5MiB");
        assert_eq!(e.column, 6);
        assert!(e.expected.contains("text field"), "{e}");
        let e = err("rss ~ x");
        assert_eq!(e.column, 5);
        let e = err("cpu = 5");
        assert_eq!(e.column, 5);
        assert!(e.expected.contains("=="));
        let e = err("name == \"unterminated");
        assert_eq!(e.column, 9);
        let e = err("pid == 1.5");
        assert_eq!(e.column, 8);
        assert_eq!(
            err("cpu >").render("cpu >"),
            "cpu >\n     ^\ncolumn 6: expected a value after `>`: a percentage, e.g. 80 or 80%, found end of input"
        );
    }

    #[test]
    fn random_input_never_panics() {
        let alphabet: Vec<char> = "cpu rss name ( ) \" ' = ! < > ~ and or not 5 % MiB é\\"
            .chars()
            .collect();
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..20_000 {
            let len = (x % 24) as usize;
            let s: String = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    alphabet[(x % alphabet.len() as u64) as usize]
                })
                .collect();
            if let Ok(f) = Filter::parse(&s) {
                let _ = f.matches(&nginx());
            }
            x = x.wrapping_add(0x632be59bd9b4e019);
        }
    }

    #[test]
    fn uses_reports_fields() {
        let f = Filter::parse("fds > 100 or name == x").unwrap();
        assert!(f.uses(Field::Fds) && f.uses(Field::Name) && !f.uses(Field::Cpu));
    }

    #[test]
    fn hostile_nesting_and_length_are_refused_not_fatal() {
        let deep = format!("{}cpu > 1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(Filter::parse(&deep).is_err());
        let nots = format!("{}cpu > 1", "not ".repeat(1000));
        assert!(Filter::parse(&nots)
            .unwrap_err()
            .expected
            .contains("nested"));
        let ok = format!("{}cpu > 1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(Filter::parse(&ok).is_ok());
        let long = vec!["cpu > 1"; 1000].join(" and ");
        assert!(Filter::parse(&long)
            .unwrap_err()
            .expected
            .contains("at most"));
        let many = vec!["cpu > 1"; 300].join(" or ");
        assert!(Filter::parse(&many).is_ok());
        for s in [
            "rss > 99999999999999999999G",
            "age > 1e400s",
            "cpu > -5%",
            "pid > 1.5",
        ] {
            assert!(Filter::parse(s).is_err(), "{s}");
        }
    }
}

#[cfg(test)]
mod policy_field_tests {
    use super::*;
    use std::borrow::Cow;

    struct Leak;
    impl Fields for Leak {
        fn number(&self, f: Field) -> Option<f64> {
            match f {
                Field::MemGrowth => Some(25.0 * 1048576.0),
                Field::Runq => Some(12.5),
                Field::Zombies => Some(3.0),
                _ => None,
            }
        }
        fn text(&self, f: Field) -> Option<Cow<'_, str>> {
            (f == Field::Name).then(|| "leaky".into())
        }
    }

    #[test]
    fn rates_accept_per_second_and_explain_shows_values() {
        let f = Filter::parse("mem_growth > 20MiB/s and runq >= 10% and zombies > 2").unwrap();
        assert!(f.matches(&Leak));
        assert!(!Filter::parse("mem_growth > 30M").unwrap().matches(&Leak));
        assert!(Filter::parse("io_read > 1G/s").is_ok());
        assert!(Filter::parse("mem_growth > 20MiB/m").is_err());
        let e = f.explain(&Leak);
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].field, "mem_growth");
        assert_eq!(e[0].threshold, "20MiB/s");
        assert_eq!(e[0].value.as_deref(), Some("25M/s"));
        assert!(e.iter().all(|c| c.holds));
        let e = Filter::parse("psi_memory > 5 or name ~ ^le")
            .unwrap()
            .explain(&Leak);
        assert_eq!(e[0].value, None);
        assert!(!e[0].holds && e[1].holds);
        assert_eq!(e[1].value.as_deref(), Some("leaky"));
        let b = |s: &str| Filter::parse(s).unwrap().necessary_bounds();
        let cpu90 = b("cpu > 90").unwrap();
        assert!(cpu90[0].admits(91.0) && !cpu90[0].admits(90.0) && !cpu90[0].admits(f64::NAN));
        assert_eq!(b("name == x and cpu > 90"), Some(cpu90.clone()));
        assert_eq!(b("cpu > 90 or rss > 1G").map(|v| v.len()), Some(2));
        assert_eq!(b("cpu > 90 or name == x"), None);
        assert_eq!(b("not cpu > 90"), None);
        assert_eq!(b("cpu != 90"), None);
        assert_eq!(
            Filter::parse("cpu > 1 and (cpu < 5 or name == x)")
                .unwrap()
                .fields(),
            vec![Field::Cpu, Field::Name]
        );
    }
}

//! The keys of `procman top`, in one table: the help overlay (`h`), `procman top --help` and
//! the README's table show the same list.

/// (keys, what they do), in the order the help shows them.
pub const KEYS: &[(&str, &str)] = &[
    ("h ? F1", "this help (any key closes it)"),
    ("P  c", "sort by %CPU"),
    ("M  m", "sort by memory (%MEM, RSS)"),
    ("T", "sort by CPU time used (TIME+)"),
    ("i", "sort by storage IO (READ/s + WRITE/s)"),
    ("N  p", "sort by PID"),
    ("a", "sort by AGE (oldest first)"),
    (
        "< > F6",
        "sort by the column left / right of the current one",
    ),
    ("Up Down", "move the selection"),
    (
        "PgUp PgDn Home End",
        "move the selection a page, to the top, to the end",
    ),
    (
        "F",
        "follow the selected process: the selection keeps its pid",
    ),
    (
        "k F9",
        "kill the selected process: asks which signal (default TERM)",
    ),
    ("r", "renice the selected process: asks for the nice value"),
    (
        "F7 F8",
        "renice the selected process by -1 (more CPU) / +1 (less)",
    ),
    (
        "/",
        "filter (as `ps --filter`); empty shows all, Esc keeps the old",
    ),
    ("t F5", "tree view on / off"),
    ("Space Ctrl-L", "refresh now"),
    ("q Esc F10 Ctrl-C", "quit"),
];

/// The key table as text, for `procman top --help`.
pub fn help_text() -> String {
    let width = KEYS.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut s = String::from("Keys:\n");
    for (k, what) in KEYS {
        s.push_str(&format!("  {k:<width$}  {what}\n"));
    }
    s.push_str(
        "\nA kill or renice names the process by pid and start time: a pid that was reused \
         meanwhile is refused by the agent (shown in the status line).",
    );
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn help_text_lists_every_key() {
        let t = super::help_text();
        for (k, what) in super::KEYS {
            assert!(t.contains(k) && t.contains(what), "{k}: {t}");
        }
    }
}

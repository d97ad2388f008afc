//! Names of the cgroups procman creates: slices and the components of the managed root.
use std::fmt;

/// Longest slice (or root component) name.
pub const MAX_NAME_LEN: usize = 64;

/// Interface-file prefixes a child cgroup name must not start with (they would read like
/// interface files, e.g. a slice called `memory.max`).
const RESERVED_PREFIXES: [&str; 10] = [
    "cgroup.", "cpu.", "cpuset.", "memory.", "io.", "pids.", "hugetlb.", "rdma.", "misc.", "irq.",
];

/// A name that [`validate_name`] refuses: what it names, the name, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct NameError {
    /// What the name is for (`slice name`, `managed root`).
    pub what: &'static str,
    /// The name (at most 128 characters of it).
    pub name: String,
    pub reason: &'static str,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} {:?}: {}; accepted: 1 to {MAX_NAME_LEN} characters from A-Z a-z 0-9 \
             _ - . @ (first character a letter or digit), not `.`/`..`, no `/`, not starting \
             with an interface prefix such as `cgroup.` or `memory.`",
            self.what, self.name, self.reason
        )
    }
}

/// Checks a slice name (or one component of the managed root's path).
pub fn validate_name(what: &'static str, name: &str) -> Result<(), NameError> {
    match problem(name) {
        None => Ok(()),
        Some(reason) => Err(NameError {
            what,
            name: crate::key::shorten(name, 2 * MAX_NAME_LEN),
            reason,
        }),
    }
}

fn problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it is empty");
    }
    if name == "." || name == ".." {
        return Some("`.` and `..` are not names");
    }
    if name.contains('/') {
        return Some("it contains `/`");
    }
    if name.len() > MAX_NAME_LEN {
        return Some("it is too long");
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Some("it must start with a letter or digit");
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'@'))
    {
        return Some("it contains a character outside A-Z a-z 0-9 _ - . @");
    }
    if RESERVED_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Some("it starts with a cgroup interface-file prefix");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "web",
            "batch.slice",
            "a",
            "job-1_x@2",
            &"x".repeat(MAX_NAME_LEN),
        ] {
            validate_name("slice name", ok).unwrap();
        }
        for (bad, why) in [
            ("", "empty"),
            (".", "not names"),
            ("..", "not names"),
            ("a/b", "contains `/`"),
            ("/", "contains `/`"),
            (&"x".repeat(MAX_NAME_LEN + 1) as &str, "too long"),
            ("-x", "start with a letter"),
            (".hidden", "start with a letter"),
            ("we b", "character outside"),
            ("wéb", "character outside"),
            ("a\nb", "character outside"),
            ("memory.max", "interface-file prefix"),
            ("cgroup.procs", "interface-file prefix"),
        ] {
            let e = validate_name("slice name", bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(e.contains(&format!("{bad:?}")), "{bad:?}: {e}");
            assert!(e.contains("accepted:"), "{e}");
        }
        let e = validate_name("slice name", &"y".repeat(100_000)).unwrap_err();
        assert!(e.name.len() < 200, "{}", e.name.len());
    }
}

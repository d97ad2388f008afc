//! Small read/write helpers for interface files: one `read(2)` of a whole file, one
//! `write(2)` per value (as the kernel expects), never creating a file. Errors carry the path.
use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use crate::error::{CgroupError, Result};

/// Reads a whitespace-separated word list (`cgroup.controllers`, `cgroup.subtree_control`).
pub fn read_word_set(path: &Path) -> Result<BTreeSet<String>> {
    let s = read_string(path)?;
    Ok(s.split_whitespace().map(str::to_string).collect())
}

pub fn read_string(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| CgroupError::io("reading", path, e))
}

/// Reads a file that may legitimately be absent (controller off, older kernel).
pub fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CgroupError::io("reading", path, e)),
    }
}

/// Writes `value` to an existing cgroup interface file in one write(2), as the kernel expects.
/// Never creates the file. Returns the raw io::Error so callers can wrap it with context.
pub fn write_raw(path: &Path, value: &str) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    let n = f.write(value.as_bytes())?;
    if n != value.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short write: {n} of {} bytes", value.len()),
        ));
    }
    Ok(())
}

/// Reads the pids in a `cgroup.procs` file.
pub fn read_pids(path: &Path) -> Result<Vec<u32>> {
    let s = read_string(path)?;
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim().parse::<u32>().map_err(|_| CgroupError::Malformed {
                path: path.to_path_buf(),
                detail: format!("{l:?} is not a pid"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_pids_rejects_garbage() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cgroup.procs");
        fs::write(&p, "12\n34\n").unwrap();
        assert_eq!(read_pids(&p).unwrap(), vec![12, 34]);
        fs::write(&p, "12\nx\n").unwrap();
        let e = read_pids(&p).unwrap_err().to_string();
        assert!(e.contains("\"x\" is not a pid"), "{e}");
    }

    #[test]
    fn write_raw_never_creates() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("memory.max");
        assert!(write_raw(&p, "max").is_err());
        assert!(!p.exists());
        fs::write(&p, "123456789").unwrap();
        write_raw(&p, "max").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "max");
    }
}

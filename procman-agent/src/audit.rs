//! The audit log: one JSON line per mutation and per denied attempt, appended and fsync'd, with
//! size-based rotation (`audit.jsonl` → `audit.jsonl.1` … `.N`).
//!
//! A write failure (disk full, directory removed) never blocks or fails the request: it is
//! logged once per failure streak, counted, and reported by `/api/status`; the next write tries
//! to reopen the file.
use std::{
    fs::{File, OpenOptions},
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
};

pub use procman_common::api::{AuditActor as Actor, AuditRecord as Record};

/// The actor of an API request: its peer credentials and executable.
pub fn peer_actor(p: crate::access::Peer) -> Actor {
    Actor {
        uid: Some(p.uid),
        gid: Some(p.gid),
        pid: p.pid,
        exe: p.pid.and_then(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .ok()
                .map(|e| e.to_string_lossy().into_owned())
        }),
        via: "api".into(),
    }
}

pub struct Audit {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: Mutex<Option<File>>,
    seq: AtomicU64,
    /// Lines that could not be written.
    pub failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Audit {
    /// An audit log at `path`, rotated past `max_bytes`, keeping `keep` old files. The file is
    /// opened (and its directory created, mode 0750) lazily, so a broken path is reported
    /// by status instead of stopping the agent.
    pub fn new(path: impl Into<PathBuf>, max_bytes: u64, keep: u32) -> Audit {
        Audit {
            path: path.into(),
            max_bytes,
            keep,
            file: Mutex::new(None),
            seq: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rotated files kept.
    pub fn keep(&self) -> u32 {
        self.keep
    }

    /// The latest write error, if the last write failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn open(&self) -> std::io::Result<File> {
        if let Some(dir) = self.path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)?;
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&self.path)
    }

    fn rotate(&self) -> std::io::Result<()> {
        let name = |i: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{i}"));
            PathBuf::from(p)
        };
        for i in (1..self.keep).rev() {
            let _ = std::fs::rename(name(i), name(i + 1));
        }
        if self.keep > 0 {
            std::fs::rename(&self.path, name(1))
        } else {
            std::fs::remove_file(&self.path)
        }
    }

    /// Appends one record (its `seq` and `time` are filled in here) and fsyncs it.
    pub fn record(&self, mut r: Record) {
        r.seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        r.time = procman_common::units::Timestamp::now();
        let mut line = serde_json::to_vec(&r).unwrap_or_default();
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let result = (|| -> std::io::Result<()> {
            if file.is_none() {
                *file = Some(self.open()?);
            }
            let f = file.as_mut().expect("opened above");
            if f.metadata()?.len() + line.len() as u64 > self.max_bytes {
                self.rotate()?;
                *file = Some(self.open()?);
            }
            let f = file.as_mut().expect("opened above");
            f.write_all(&line)?;
            f.sync_data()
        })();
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) => *last = None,
            Err(e) => {
                *file = None; // reopen next time (deleted, remounted)
                self.failures.fetch_add(1, Ordering::Relaxed);
                let msg = format!("cannot write the audit log {}: {e}", self.path.display());
                if last.as_deref() != Some(msg.as_str()) {
                    log::error!("{msg}");
                }
                *last = Some(msg);
            }
        }
    }
}

/// Reads the audit log (and its rotated files, oldest first), keeping records at or after
/// `since` (unix seconds), at most the last `limit`.
pub fn read(path: &Path, keep: u32, since: f64, limit: usize) -> std::io::Result<Vec<Record>> {
    let mut files: Vec<PathBuf> = (1..=keep)
        .rev()
        .map(|i| {
            let mut p = path.to_path_buf().into_os_string();
            p.push(format!(".{i}"));
            PathBuf::from(p)
        })
        .collect();
    files.push(path.to_path_buf());
    let mut out = std::collections::VecDeque::new();
    for f in files {
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for l in text.lines() {
            if let Ok(r) = serde_json::from_str::<Record>(l) {
                if r.time.unix() >= since {
                    if out.len() == limit {
                        out.pop_front();
                    }
                    out.push_back(r);
                }
            }
        }
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(action: &str) -> Record {
        Record {
            time: Default::default(),
            seq: 0,
            actor: Actor {
                uid: Some(1000),
                gid: Some(1000),
                pid: None,
                exe: None,
                via: "api".into(),
            },
            action: action.into(),
            target: "POST /api/limit".into(),
            args: serde_json::json!({"pids": [1]}),
            result: "denied".into(),
            status: 403,
            detail: Some("no".into()),
        }
    }

    #[test]
    fn lines_rotate_and_read_back_in_order() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("sub/audit.jsonl");
        let a = Audit::new(&path, 600, 2);
        for i in 0..20 {
            a.record(rec(&format!("a{i}")));
        }
        assert_eq!(a.failures.load(Ordering::Relaxed), 0);
        assert!(path.with_extension("jsonl.1").exists());
        assert!(
            !path.with_extension("jsonl.3").exists(),
            "keeps 2 old files"
        );
        let all = read(&path, 2, 0.0, 1000).unwrap();
        assert!(!all.is_empty());
        let seqs: Vec<u64> = all.iter().map(|r| r.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] + 1 == w[1]), "{seqs:?}");
        assert_eq!(all.last().unwrap().action, "a19");
        assert_eq!(read(&path, 2, 0.0, 3).unwrap().len(), 3);
    }

    #[test]
    fn an_unwritable_log_is_counted_not_fatal() {
        let a = Audit::new("/proc/procman-audit-test/audit.jsonl", 1 << 20, 1);
        a.record(rec("x"));
        assert_eq!(a.failures.load(Ordering::Relaxed), 1);
        assert!(a.last_error().unwrap().contains("audit"));
    }
}

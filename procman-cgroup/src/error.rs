//! Typed errors of the `cgroup` module. Every variant carries the path, pid, name or value it
//! concerns, and its message says what was wrong and what is accepted or what to do.
use std::io;
use std::path::PathBuf;

use super::fs::Controller;
use super::limits::LimitError;

/// Why a pid is refused for a mutating action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protected {
    /// pid 1 (init).
    Init,
    /// A kernel thread (PF_KTHREAD, or a child of kthreadd).
    KernelThread,
    /// The calling process (the agent) itself, or one of its threads.
    Myself,
}

impl std::fmt::Display for Protected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protected::Init => "it is pid 1 (init)",
            Protected::KernelThread => "it is a kernel thread",
            Protected::Myself => "it is the agent itself",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "no cgroup2 filesystem is mounted (searched {mountinfo}); mount one \
         (`mount -t cgroup2 none /sys/fs/cgroup`) or boot with systemd.unified_cgroup_hierarchy=1"
    )]
    NoCgroup2Mount { mountinfo: PathBuf },

    #[error(
        "{path} is not a cgroup2 filesystem (statfs f_type {fs_type:#x}, expected \
         CGROUP2_SUPER_MAGIC {:#x})",
        libc::CGROUP2_SUPER_MAGIC
    )]
    NotCgroup2 { path: PathBuf, fs_type: i64 },

    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("malformed {path}: {detail}")]
    Malformed { path: PathBuf, detail: String },

    #[error(
        "invalid {what} {name:?}: {reason}; accepted: 1 to {max} characters from A-Z a-z 0-9 \
         _ - . @ (first character a letter or digit), not `.`/`..`, no `/`, not starting with \
         an interface prefix such as `cgroup.` or `memory.`",
        max = super::MAX_NAME_LEN
    )]
    InvalidName {
        what: &'static str,
        name: String,
        reason: &'static str,
    },

    #[error(transparent)]
    Limit(#[from] LimitError),

    #[error(
        "{key} = {value:?} cannot be enforced: the `{controller}` controller is missing: \
         {reason}; the limit was refused and nothing was written"
    )]
    Unenforceable {
        key: &'static str,
        value: String,
        controller: Controller,
        reason: String,
    },

    #[error(
        "{key} = {value:?} cannot be enforced: {path} does not exist ({why}); the limit was \
         refused and nothing was written"
    )]
    MissingFile {
        key: &'static str,
        value: String,
        path: PathBuf,
        why: &'static str,
    },

    #[error("no slice {name:?} (no directory {path}); list slices to see the existing ones")]
    NoSuchSlice { name: String, path: PathBuf },

    #[error(
        "slice {name:?} ({path}) still has processes {pids:?}; move or kill them first \
         (kill the slice), then remove it"
    )]
    SliceBusy {
        name: String,
        path: PathBuf,
        pids: Vec<u32>,
    },

    #[error("the managed root {path} still has slices {slices:?}; remove them first")]
    RootNotEmpty { path: PathBuf, slices: Vec<String> },

    #[error("refusing to touch pid {pid}: {why}")]
    ProtectedPid { pid: u32, why: Protected },

    #[error("refusing to {action} slice {name:?}: it contains pid {pid} and {why}")]
    ProtectedMember {
        action: &'static str,
        name: String,
        pid: u32,
        why: Protected,
    },

    #[error("no process with pid {pid} (it exited, or the pid is wrong)")]
    NoSuchProcess { pid: u32 },

    #[error(
        "pid {pid} is no longer the expected process (start time {found}, expected \
         {expected}); the pid was reused, nothing was done to the new process"
    )]
    PidReused { pid: u32, expected: u64, found: u64 },

    #[error(
        "pid {pid} was reused while it was being moved into {path} (start time was \
         {expected}, now {found}); check /proc/{pid}/cgroup"
    )]
    PidReusedDuringMove {
        pid: u32,
        path: PathBuf,
        expected: u64,
        found: u64,
    },

    #[error(
        "the kernel refused {value:?} in {path}: {source}{}",
        if *rolled_back { "; the files written before it were restored" } else { "" }
    )]
    Write {
        path: PathBuf,
        value: String,
        rolled_back: bool,
        #[source]
        source: io::Error,
    },

    #[error("{feature} is not supported here: {path} does not exist ({needs})")]
    Unsupported {
        feature: &'static str,
        path: PathBuf,
        needs: &'static str,
    },

    #[error("slice {name:?} did not reach frozen={want} within {waited_ms} ms ({path})")]
    FreezeTimeout {
        name: String,
        path: PathBuf,
        want: bool,
        waited_ms: u64,
    },

    #[error(
        "the parent {path} of the managed root does not exist; create it (on a systemd host: \
         run the agent as a unit with Delegate=yes and point the managed root below its cgroup)"
    )]
    NoParent { path: PathBuf },
}

impl CgroupError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        CgroupError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = CgroupError> = std::result::Result<T, E>;

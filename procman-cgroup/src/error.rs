//! Typed errors of the crate. Every variant carries the path, pid, name, limit key or value it
//! concerns, and its message says what was wrong and what is accepted or what to do.
use std::io;
use std::path::PathBuf;

use crate::key::{hint, Controller, LimitKey, UnknownKey};
use crate::name::NameError;
use procman_common::limits::InvalidLimit;

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

/// A limit that does not parse or is out of range. Names the key, the value and what is
/// accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error(
        "{key} = {value:?}: unknown key{}; accepted keys: {}",
        hint(*.suggestion),
        LimitKey::ACCEPTED
    )]
    UnknownKey {
        /// The key as given (at most 64 characters of it).
        key: String,
        value: String,
        /// The nearest key, when one is near.
        suggestion: Option<LimitKey>,
    },

    #[error("{key} = {value:?}: {problem}; accepted forms: {accepted}")]
    Invalid {
        key: LimitKey,
        /// The value as given (at most 128 characters of it).
        value: String,
        problem: String,
        accepted: &'static str,
    },

    #[error(
        "{property:?} is not KEY=VALUE (e.g. MemoryMax=512M); accepted keys: {}",
        LimitKey::ACCEPTED
    )]
    NotAProperty {
        /// What was given (at most 128 characters of it).
        property: String,
    },
}

impl From<InvalidLimit> for LimitError {
    fn from(e: InvalidLimit) -> LimitError {
        LimitError::Invalid {
            key: e.key,
            value: e.value,
            problem: e.problem,
            accepted: e.accepted,
        }
    }
}

impl LimitError {
    /// The key as text (a known key's systemd name, or what was given).
    pub fn key_name(&self) -> &str {
        match self {
            LimitError::UnknownKey { key, .. } => key,
            LimitError::Invalid { key, .. } => key.as_str(),
            LimitError::NotAProperty { property } => property,
        }
    }

    /// The refused value.
    pub fn value(&self) -> &str {
        match self {
            LimitError::UnknownKey { value, .. } | LimitError::Invalid { value, .. } => value,
            LimitError::NotAProperty { .. } => "",
        }
    }

    /// The key, when it is a known one.
    pub fn key(&self) -> Option<LimitKey> {
        match self {
            LimitError::Invalid { key, .. } => Some(*key),
            _ => None,
        }
    }

    pub(crate) fn unknown(e: UnknownKey, value: &str) -> LimitError {
        LimitError::UnknownKey {
            key: e.key,
            value: crate::key::shorten(value, 128),
            suggestion: e.suggestion,
        }
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

    #[error(
        "favordynmods = \"on\": the kernel ({release}) has no cgroup2 mount option \
         favordynmods (it came with Linux 6.0); use favordynmods = \"auto\" or \"off\", or \
         boot a 6.0+ kernel"
    )]
    FavorDynmodsUnsupported { release: String },

    #[error(
        "favordynmods = \"on\": remounting the cgroup2 mount {path} with options {options:?} \
         failed: {source}; the mount is unchanged (use favordynmods = \"auto\" to run without it)"
    )]
    Remount {
        path: PathBuf,
        options: String,
        #[source]
        source: io::Error,
    },

    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("malformed {path}: {detail}")]
    Malformed { path: PathBuf, detail: String },

    #[error(transparent)]
    InvalidName(#[from] NameError),

    #[error(transparent)]
    Limit(#[from] LimitError),

    #[error(
        "{key} = {value:?} cannot be enforced: the `{controller}` controller is missing: \
         {reason}; the limit was refused and nothing was written"
    )]
    Unenforceable {
        key: LimitKey,
        value: String,
        controller: Controller,
        reason: String,
    },

    #[error(
        "{key} = {value:?} cannot be enforced: {path} does not exist ({why}); the limit was \
         refused and nothing was written"
    )]
    MissingFile {
        key: LimitKey,
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
        "the kernel refused {value:?} in {path}{}: {source}{}",
        key.map(|k| format!(" (for {k})")).unwrap_or_default(),
        if *rolled_back { "; the files written before it were restored" } else { "" }
    )]
    Write {
        path: PathBuf,
        value: String,
        /// The limit key the value came from, when it came from one.
        key: Option<LimitKey>,
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

    /// A read or open that failed because the file does not exist (its controller is off,
    /// or the kernel is older).
    pub fn is_not_found(&self) -> bool {
        matches!(self, CgroupError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

pub type Result<T, E = CgroupError> = std::result::Result<T, E>;

/// Turns "the file does not exist" into `Ok(None)`, for interface files that are legitimately
/// absent: `cg.memory_peak().optional()?`.
pub trait Optional<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> Optional<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

//! What can go wrong in an enforcement action, classified once: the API turns a
//! [`ErrorKind`] into an HTTP status in one place (`api::error`), the CLI prints the message.
use procman_cgroup::{CgroupError, LimitError};

/// The class of an error, independent of how it is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is wrong (bad value, bad name, protected process, nothing selected).
    Invalid,
    /// What the request names does not exist (slice, process).
    NotFound,
    /// The caller may not touch what the request names (another user's process).
    Forbidden,
    /// The process named is no longer the one meant: its pid was reused.
    Conflict,
    /// This host cannot do it (no usable cgroup2 mount).
    Unavailable,
    /// The kernel or the filesystem failed.
    Internal,
}

/// An enforcement error. Every message names the value, slice or pid concerned.
#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    #[error("cgroup v2 is not usable here: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    /// The process named is no longer the one meant (its pid was reused).
    #[error("{0}")]
    Conflict(String),
    /// The kernel refused or did not finish (e.g. a process SIGKILLed that does not exit).
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
}

impl EnforceError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            EnforceError::Unavailable(_) => ErrorKind::Unavailable,
            EnforceError::Invalid(_) | EnforceError::Limit(_) => ErrorKind::Invalid,
            EnforceError::NotFound(_) => ErrorKind::NotFound,
            EnforceError::Forbidden(_) => ErrorKind::Forbidden,
            EnforceError::Conflict(_) => ErrorKind::Conflict,
            EnforceError::Failed(_) => ErrorKind::Internal,
            EnforceError::Cgroup(e) => match e {
                CgroupError::InvalidName { .. }
                | CgroupError::Unenforceable { .. }
                | CgroupError::ProtectedPid { .. }
                | CgroupError::ProtectedMember { .. }
                | CgroupError::Limit(_) => ErrorKind::Invalid,
                CgroupError::NoSuchSlice { .. } | CgroupError::NoSuchProcess { .. } => {
                    ErrorKind::NotFound
                }
                CgroupError::PidReused { .. } | CgroupError::PidReusedDuringMove { .. } => {
                    ErrorKind::Conflict
                }
                _ => ErrorKind::Internal,
            },
        }
    }
}

pub type Result<T, E = EnforceError> = std::result::Result<T, E>;

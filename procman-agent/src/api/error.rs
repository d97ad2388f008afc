//! The API's one mapping from errors to HTTP statuses. Handlers return `Result<_, ApiErr>`;
//! domain errors convert into it here, and only here, by their kind.
use crate::enforce::{EnforceError, ErrorKind};
use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use procman_common::api::ApiError;

/// An error answer: status + message (+ the pid, on the routes of one process), rendered as
/// seed 004's `{"success": false, "error": ..., "pid": ...}`.
#[derive(Debug)]
pub struct ApiErr {
    pub status: StatusCode,
    pub message: String,
    pub pid: Option<u32>,
}

impl ApiErr {
    pub fn new(status: StatusCode, msg: impl Into<String>) -> ApiErr {
        ApiErr {
            status,
            message: msg.into(),
            pid: None,
        }
    }

    pub fn bad_request(msg: impl Into<String>) -> ApiErr {
        ApiErr::new(StatusCode::BAD_REQUEST, msg)
    }

    pub fn not_found(msg: impl Into<String>) -> ApiErr {
        ApiErr::new(StatusCode::NOT_FOUND, msg)
    }

    pub fn internal(msg: impl Into<String>) -> ApiErr {
        ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, msg)
    }

    /// Seed 004's 404 for a pid that names no process.
    pub fn process_not_found(pid: u32) -> ApiErr {
        ApiErr::not_found("Process not found").with_pid(pid)
    }

    /// The error concerns this process: its body says `"pid": pid`.
    pub fn with_pid(mut self, pid: u32) -> ApiErr {
        self.pid = Some(pid);
        self
    }
}

/// The message of an error answer, kept in the response's extensions for the audit line.
#[derive(Debug, Clone)]
pub struct ErrorMessage(pub String);

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(ApiError {
                success: false,
                error: self.message.clone(),
                pid: self.pid,
            }),
        )
            .into_response();
        r.extensions_mut().insert(ErrorMessage(self.message));
        r
    }
}

fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<EnforceError> for ApiErr {
    fn from(e: EnforceError) -> ApiErr {
        ApiErr::new(status_of(e.kind()), e.to_string())
    }
}

impl From<tokio::task::JoinError> for ApiErr {
    fn from(e: tokio::task::JoinError) -> ApiErr {
        ApiErr::internal(format!("the request's worker failed: {e}"))
    }
}

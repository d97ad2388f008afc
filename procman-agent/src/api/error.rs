//! The API's one mapping from errors to HTTP statuses. Handlers return `Result<_, ApiErr>`;
//! domain errors convert into it here, and only here, by their kind.
use crate::enforce::{EnforceError, ErrorKind};
use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use procman_common::api::ApiError;

/// An error answer: status + message, rendered as `{"error": ...}`.
#[derive(Debug)]
pub struct ApiErr(pub StatusCode, pub String);

impl ApiErr {
    pub fn bad_request(msg: impl Into<String>) -> ApiErr {
        ApiErr(StatusCode::BAD_REQUEST, msg.into())
    }

    pub fn not_found(msg: impl Into<String>) -> ApiErr {
        ApiErr(StatusCode::NOT_FOUND, msg.into())
    }

    pub fn internal(msg: impl Into<String>) -> ApiErr {
        ApiErr(StatusCode::INTERNAL_SERVER_ERROR, msg.into())
    }
}

/// The message of an error answer, kept in the response's extensions for the audit line.
#[derive(Debug, Clone)]
pub struct ErrorMessage(pub String);

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        let mut r = (
            self.0,
            Json(ApiError {
                error: self.1.clone(),
            }),
        )
            .into_response();
        r.extensions_mut().insert(ErrorMessage(self.1));
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
        ApiErr(status_of(e.kind()), e.to_string())
    }
}

impl From<tokio::task::JoinError> for ApiErr {
    fn from(e: tokio::task::JoinError) -> ApiErr {
        ApiErr::internal(format!("the request's worker failed: {e}"))
    }
}

//! Request parsing: query strings become typed structs once, through serde, and a malformed
//! one is a JSON 400 like every other error (axum's own rejection is plain text).
use super::error::ApiErr;
use axum::{extract::FromRequestParts, http::request::Parts};
use serde::{de::DeserializeOwned, Deserialize, Deserializer};
use std::str::FromStr;

/// `Query<T>` with JSON errors.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiErr;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiErr> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiErr::bad_request(e.body_text()))
    }
}

/// `Json<T>` bodies with JSON errors (a malformed body is a 400 `{"error": ...}` naming what
/// was wrong, like every other error).
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for Json<T> {
    type Rejection = ApiErr;

    /// The body is JSON whatever its Content-Type says (curl -d sends
    /// `application/x-www-form-urlencoded` unless told otherwise).
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiErr> {
        let bytes = <axum::body::Bytes as axum::extract::FromRequest<S>>::from_request(req, state)
            .await
            .map_err(|e| ApiErr::new(e.status(), e.body_text()))?;
        serde_json::from_slice(&bytes)
            .map(Json)
            .map_err(|e| ApiErr::bad_request(format!("invalid JSON body: {e}")))
    }
}

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::OptionalFromRequest<S> for Json<T> {
    type Rejection = ApiErr;

    /// `None` for an empty body.
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Option<Self>, ApiErr> {
        let bytes = <axum::body::Bytes as axum::extract::FromRequest<S>>::from_request(req, state)
            .await
            .map_err(|e| ApiErr::new(e.status(), e.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(|v| Some(Json(v)))
            .map_err(|e| ApiErr::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// A pid in a URL path: a positive number.
#[derive(utoipa::IntoParams)]
#[into_params(names("pid"), parameter_in = Path)]
pub struct Pid(#[param(minimum = 1)] pub u32);

impl<S: Send + Sync> FromRequestParts<S> for Pid {
    type Rejection = ApiErr;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiErr> {
        let axum::extract::Path(s) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiErr::bad_request(e.body_text()))?;
        parse_pid(&s).map(Pid)
    }
}

pub fn parse_pid(s: &str) -> Result<u32, ApiErr> {
    s.parse::<u32>().ok().filter(|p| *p > 0).ok_or_else(|| {
        ApiErr::bad_request(format!("invalid pid {s:?}: expected a positive number"))
    })
}

/// A comma-separated list in a query string (`pid=1,2,3`): each item parsed with `FromStr`.
#[derive(Debug, Clone)]
pub struct CommaList<T>(pub Vec<T>);

impl<T> Default for CommaList<T> {
    fn default() -> Self {
        CommaList(Vec::new())
    }
}

impl<'de, T> Deserialize<'de> for CommaList<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(|x| {
                x.parse::<T>()
                    .map_err(|e| serde::de::Error::custom(format!("{x:?}: {e}")))
            })
            .collect::<Result<_, _>>()
            .map(CommaList)
    }
}

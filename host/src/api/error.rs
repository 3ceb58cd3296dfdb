//! JSON errors:
//! `{"error": {"status": 404, "code": "not_found", "kind": "not_found", "message": "…", "hint": "…"}}`.
//!
//! Every iso error becomes one here, through [`status_of`]: the one place a
//! kind becomes an HTTP status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::{Diagnostic, ErrorKind};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable and specific (`base_not_found`, `no_ports`, `unauthorized`, …).
    pub code: &'static str,
    pub kind: ErrorKind,
    pub message: String,
    pub hint: Option<String>,
}

/// The HTTP status of each kind of error.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict | ErrorKind::Busy | ErrorKind::Refused | ErrorKind::WouldLoseWork => StatusCode::CONFLICT,
        ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        // The repository's configuration is the state that stands in the
        // way (no agent configured, a broken iso.toml), not the request.
        ErrorKind::Config => StatusCode::CONFLICT,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    /// An error of the API itself (bad JSON, no token, …), not of an operation.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        let kind = match status {
            StatusCode::NOT_FOUND => ErrorKind::NotFound,
            s if s.is_server_error() => ErrorKind::Internal,
            _ => ErrorKind::Invalid,
        };
        ApiError { status, code, kind, message: message.into(), hint: None }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn unprocessable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
        e.hint = Some("send `Authorization: Bearer <token>` with the server's token (ISO_API_TOKEN, [api] token, or the one it printed)".into());
        e
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// An operation's error, with its kind, code and hint.
    pub fn of(e: &dyn Diagnostic) -> ApiError {
        ApiError { status: status_of(e.kind()), code: e.code(), kind: e.kind(), message: e.to_string(), hint: e.hint() }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let mut err = serde_json::json!({ "status": self.status.as_u16(), "code": self.code, "kind": self.kind, "message": self.message });
        if let Some(h) = &self.hint {
            err["hint"] = h.clone().into();
        }
        serde_json::json!({ "error": err })
    }

    pub(crate) fn into_response_auth(self) -> Response {
        let mut r = self.into_response();
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        super::routes::json(self.status, &self.body())
    }
}

impl From<crate::lifecycle::Error> for ApiError {
    fn from(e: crate::lifecycle::Error) -> ApiError {
        ApiError::of(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_status_and_operation_errors_keep_their_hint() {
        for kind in ErrorKind::ALL {
            let s = status_of(kind);
            assert!(s.is_client_error() || s.is_server_error(), "{kind}: {s}");
        }
        let e = crate::lifecycle::Error::NotFound { selector: "x".into(), known: String::new() };
        let api = ApiError::from(e);
        assert_eq!((api.status, api.code, api.kind), (StatusCode::NOT_FOUND, "not_found", ErrorKind::NotFound));
        assert_eq!(api.body()["error"]["hint"], "see `iso list` for ids and names");
    }
}

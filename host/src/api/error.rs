//! JSON errors: `{"error": {"status": 404, "code": "not_found", "message": "…"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::agent::AgentError;
use crate::events::HookError;
use crate::lifecycle::Error;
use crate::worktree::GitError;

#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn unprocessable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": { "status": self.status.as_u16(), "code": self.code, "message": self.message } })
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

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let (status, code) = classify(&e);
        ApiError::new(status, code, e.to_string())
    }
}

fn classify(e: &Error) -> (StatusCode, &'static str) {
    match e {
        Error::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
        Error::NameTaken { .. } | Error::BranchTaken { .. } => (StatusCode::CONFLICT, "conflict"),
        Error::Busy { .. } => (StatusCode::CONFLICT, "busy"),
        Error::WouldLoseWork { .. } => (StatusCode::CONFLICT, "would_lose_work"),
        Error::Hook(HookError::Refused { .. }) => (StatusCode::CONFLICT, "refused"),
        Error::Ports(_) => (StatusCode::CONFLICT, "no_ports"),
        Error::Name(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_name"),
        Error::StatusNotSettable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
        Error::Git(GitError::BaseNotFound { .. }) => (StatusCode::UNPROCESSABLE_ENTITY, "base_not_found"),
        Error::Git(GitError::BranchInUse { .. } | GitError::DirOccupied { .. }) => (StatusCode::CONFLICT, "conflict"),
        Error::NoStack => (StatusCode::CONFLICT, "no_stack"),
        Error::InitFailed { source, .. } => classify(source),
        Error::Config(_) => (StatusCode::INTERNAL_SERVER_ERROR, "config"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

impl From<AgentError> for ApiError {
    fn from(e: AgentError) -> ApiError {
        match e {
            AgentError::Lifecycle(e) => (*e).into(),
            AgentError::NoCommand => ApiError::new(StatusCode::CONFLICT, "no_agent", e.to_string()),
            AgentError::AlreadyRunning { .. } => ApiError::new(StatusCode::CONFLICT, "already_running", e.to_string()),
            AgentError::NoRun { .. } => ApiError::new(StatusCode::NOT_FOUND, "no_run", e.to_string()),
            AgentError::Template(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "template", e.to_string()),
            _ => ApiError::internal(e.to_string()),
        }
    }
}

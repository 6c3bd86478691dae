//! The API's single error type and its JSON body `{"error":{"code","message"[,"parameter"]}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::store::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    UnsupportedMediaType,
    RequestTimeout,
    PayloadTooLarge,
    TooManyRequests,
    Unavailable,
    Internal,
}

impl ErrorKind {
    /// The one place kinds map to HTTP statuses and default error codes.
    pub fn status_and_code(self) -> (StatusCode, &'static str) {
        match self {
            ErrorKind::BadRequest => (StatusCode::BAD_REQUEST, "bad_request"),
            ErrorKind::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ErrorKind::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ErrorKind::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
            ErrorKind::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ErrorKind::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ErrorKind::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ErrorKind::TooManyRequests => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    /// A more specific code than the kind's default (e.g. `no_frame`).
    pub code: Option<&'static str>,
    /// The request parameter (query, path, body field) at fault, for `BadRequest`.
    pub parameter: Option<String>,
    /// Sent as `Retry-After` (seconds), e.g. while a login is locked.
    pub retry_after_secs: Option<u64>,
    /// More fields of the error object (e.g. `locked_until`).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            code: None,
            parameter: None,
            retry_after_secs: None,
            extra: serde_json::Map::new(),
        }
    }
    pub fn bad_param(parameter: &str, message: impl Into<String>) -> Self {
        ApiError {
            parameter: Some(parameter.to_string()),
            ..Self::new(ErrorKind::BadRequest, message)
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, message)
    }
    /// Logs `detail` and returns a generic message (internals are not shown to clients).
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal API error");
        Self::new(ErrorKind::Internal, "internal error")
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs.max(1));
        self
    }
    pub fn with_field(mut self, key: &str, value: serde_json::Value) -> Self {
        self.extra.insert(key.to_string(), value);
        self
    }
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }
    pub fn code(&self) -> &'static str {
        self.code.unwrap_or(self.kind.status_and_code().1)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::EventNotFound(id) => ApiError::not_found(format!("event {id} not found")),
            StoreError::LockNotFound(id) => ApiError::not_found(format!("lock {id} not found")),
            e @ StoreError::InvalidTransition { .. } => {
                ApiError::new(ErrorKind::Conflict, e.to_string()).with_code("invalid_transition")
            }
            StoreError::Conflict(msg) => ApiError::new(ErrorKind::Conflict, msg),
            e @ StoreError::TooMany { .. } => {
                ApiError::new(ErrorKind::BadRequest, e.to_string()).with_code("too_many_results")
            }
            e => ApiError::internal(e),
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameter: Option<&'a str>,
    #[serde(flatten)]
    extra: &'a serde_json::Map<String, serde_json::Value>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _) = self.kind.status_and_code();
        let body = Body {
            error: Inner {
                code: self.code(),
                message: &self.message,
                parameter: self.parameter.as_deref(),
                extra: &self.extra,
            },
        };
        let mut resp = (status, Json(body)).into_response();
        if self.kind == ErrorKind::Unauthorized {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"gridwatch\""),
            );
        }
        if let Some(secs) = self.retry_after_secs {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

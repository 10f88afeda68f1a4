//! The API's one error type and its single mapping to HTTP: every failure becomes a status code
//! and a body `{"error": {"code": "…", "message": "…"}}` with a stable, machine-readable code.
//! Client mistakes are logged at `info`, server faults at `error`; nothing panics.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::store;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MalformedJson(String),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("the content type must be application/json")]
    UnsupportedMediaType,
    #[error("the request body is larger than this server accepts")]
    PayloadTooLarge,
    /// A well-formed body with a value that is not acceptable (422).
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The caller went over a limit: its source sent too much, or the account it logs in to
    /// failed too often (429).
    #[error("{0}")]
    RateLimited(String),
    #[error("internal error")]
    Internal(#[from] store::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Error {
        Error::Invalid {
            code,
            message: message.into(),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            Error::InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            Error::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Error::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Error::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Error::Invalid { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            Error::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            Error::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Error::Internal(store::Error::NotFound) => (StatusCode::NOT_FOUND, "not_found"),
            Error::Internal(store::Error::Duplicate(_)) => (StatusCode::CONFLICT, "duplicate"),
            Error::Internal(store::Error::InUse(_)) => (StatusCode::CONFLICT, "in_use"),
            Error::Internal(store::Error::LastAdmin) => (StatusCode::CONFLICT, "last_admin"),
            Error::Internal(store::Error::TenantBusy { .. }) => {
                (StatusCode::CONFLICT, "tenant_busy")
            }
            Error::Internal(store::Error::UnknownReference { .. }) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "unknown_reference")
            }
            Error::Internal(store::Error::Cycle(_)) => (StatusCode::UNPROCESSABLE_ENTITY, "cycle"),
            Error::Internal(store::Error::TooDeep(_)) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "too_deep")
            }
            Error::Internal(store::Error::ContentStored(_)) => {
                (StatusCode::CONFLICT, "content_stored")
            }
            Error::Internal(store::Error::CommitUnknown) => {
                (StatusCode::SERVICE_UNAVAILABLE, "commit_unknown")
            }
            Error::Internal(store::Error::JournalBehind) => {
                (StatusCode::SERVICE_UNAVAILABLE, "journal_behind")
            }
            Error::Internal(e) if e.is_unstorable_text() => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_text")
            }
            Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// The body of every error response.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            // Store errors other than the domain ones are faults of ours: log the cause, tell
            // the client only that it happened.
            Error::Internal(e @ (store::Error::CommitUnknown | store::Error::JournalBehind)) => {
                e.to_string()
            }
            Error::Internal(e) if e.is_unstorable_text() => {
                "a text holds a character that cannot be stored (such as NUL)".into()
            }
            Error::Internal(e) if status.is_server_error() => {
                tracing::error!(error = %e, "request failed");
                self.to_string()
            }
            Error::Internal(e) => e.to_string(),
            _ => self.to_string(),
        };
        if status.is_client_error() {
            tracing::info!(status = status.as_u16(), code, %message, "request rejected");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message,
            },
        };
        (status, Json(body)).into_response()
    }
}

impl From<JsonRejection> for Error {
    fn from(rejection: JsonRejection) -> Error {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Error::UnsupportedMediaType,
            JsonRejection::JsonDataError(e) => Error::invalid("invalid_body", e.body_text()),
            JsonRejection::JsonSyntaxError(e) => Error::MalformedJson(e.body_text()),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Error::PayloadTooLarge,
            other => Error::MalformedJson(other.body_text()),
        }
    }
}

impl From<BytesRejection> for Error {
    fn from(rejection: BytesRejection) -> Error {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::PayloadTooLarge
        } else {
            Error::invalid("invalid_body", rejection.body_text())
        }
    }
}

impl From<QueryRejection> for Error {
    fn from(rejection: QueryRejection) -> Error {
        Error::InvalidQuery(rejection.body_text())
    }
}

impl From<PathRejection> for Error {
    fn from(rejection: PathRejection) -> Error {
        Error::NotFound(format!("no such resource: {}", rejection.body_text()))
    }
}

/// Path parameters, refused in the API's JSON error format — axum's `Path` answers a segment
/// that is no UTF-8 (`/tickets/%FF`) in plain text.
pub struct ApiPath<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> std::result::Result<ApiPath<T>, Error> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(ApiPath(value))
    }
}

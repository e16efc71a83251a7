//! Errors of the auditor service: [`ApiError`] (one HTTP request) renders as
//! `{ "error": { "code": "...", "message": "..." } }` with the right status code (and
//! `Retry-After` on 429 and 503);
//! [`ServiceError`] is what starting, running or stopping the service can fail with.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mupib_auditor::store::StoreError;
use mupib_auditor::EngineError;
use mupib_protocol::response::ResponseError;
use mupib_protocol::transaction::VerifyError;
use mupib_protocol::wire::{ErrorBody, ErrorDetail};

/// A request the service refuses or cannot answer. Nothing is written for any of them.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not the expected JSON (400).
    #[error("the request body is not a valid {what}: {detail}")]
    MalformedJson {
        /// What was expected.
        what: &'static str,
        /// The parser's complaint.
        detail: String,
    },
    /// A path or query parameter does not parse (400).
    #[error("invalid {what} {value:?}: {detail}")]
    BadParameter {
        /// Which parameter.
        what: &'static str,
        /// Its value.
        value: String,
        /// Why.
        detail: String,
    },
    /// The transaction breaks a limit or a token rule (400).
    #[error("invalid transaction: {0}")]
    InvalidTransaction(String),
    /// A token cannot be redeemed by this auditor (its batch is missing, unsealed, worth
    /// another value, or expires too soon) (422).
    #[error("{0}")]
    Unredeemable(String),
    /// The body is larger than the service accepts (413).
    #[error(
        "the request body exceeds the limit of {limit} bytes; send fewer or smaller transactions"
    )]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A signature does not verify (401).
    #[error("{0}")]
    BadSignature(String),
    /// An identity is unknown, revoked, expired or has the wrong role (403).
    #[error("{0}")]
    UnknownIdentity(String),
    /// No such user, transaction, token or block (404).
    #[error("{0}")]
    NotFound(String),
    /// The intake pipeline is full (503); retry after a moment.
    #[error("the auditor is overloaded (intake pipeline full); retry in a few seconds")]
    Overloaded,
    /// No credentials, or credentials that do not parse (401).
    #[error("{0}")]
    Unauthenticated(String),
    /// The request's signature does not verify (401).
    #[error("{0}")]
    BadRequestSignature(String),
    /// The request's timestamp is outside the service's window (401); the message names it.
    #[error("{0}")]
    StaleRequest(String),
    /// This signed request (its key and nonce) was already received (401).
    #[error("this signed request was already received (same key and nonce): a captured request cannot be replayed; sign every request afresh")]
    ReplayedRequest,
    /// The signing key holds no current, unrevoked vendor certificate (403).
    #[error("{0}")]
    UnknownCaller(String),
    /// The operator token presented is not this service's (403).
    #[error(
        "the operator token is not this service's; use the operator.token of its data directory"
    )]
    WrongOperatorToken,
    /// The authenticated caller may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// The body's content type is not JSON (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The request body did not arrive in time (408).
    #[error("the request body did not arrive within {secs} s; send it at once after the headers")]
    RequestTimeout {
        /// The limit in seconds.
        secs: u64,
    },
    /// This vendor sends requests faster than its rate limit (429).
    #[error("vendor {vendor} exceeds its rate limit of {per_second} requests per second (bursts of {burst}); retry after {retry_after_secs} s")]
    RateLimited {
        /// The vendor.
        vendor: String,
        /// Sustained requests per second.
        per_second: u32,
        /// Burst size.
        burst: u32,
        /// When to retry.
        retry_after_secs: u64,
    },
    /// Too many requests in flight (503); retry after a moment.
    #[error("the auditor is busy ({what}); retry in {retry_after_secs} s")]
    Busy {
        /// Which limit was reached.
        what: &'static str,
        /// When to retry.
        retry_after_secs: u64,
    },
    /// The service is shutting down (503).
    #[error("the auditor service is shutting down; retry against the restarted service")]
    ShuttingDown,
    /// Anything else (500). The message is logged; the client gets a short one.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson { .. }
            | ApiError::BadParameter { .. }
            | ApiError::InvalidTransaction(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unredeemable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadSignature(_)
            | ApiError::Unauthenticated(_)
            | ApiError::BadRequestSignature(_)
            | ApiError::StaleRequest(_)
            | ApiError::ReplayedRequest => StatusCode::UNAUTHORIZED,
            ApiError::UnknownIdentity(_)
            | ApiError::UnknownCaller(_)
            | ApiError::WrongOperatorToken
            | ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Overloaded | ApiError::ShuttingDown | ApiError::Busy { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedJson { .. } => "malformed_json",
            ApiError::BadParameter { .. } => "bad_parameter",
            ApiError::InvalidTransaction(_) => "invalid_transaction",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::Unredeemable(_) => "unredeemable_token",
            ApiError::BadSignature(_) => "bad_signature",
            ApiError::UnknownIdentity(_) => "unknown_identity",
            ApiError::NotFound(_) => "not_found",
            ApiError::Overloaded => "overloaded",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::Internal(_) => "internal",
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::BadRequestSignature(_) => "bad_request_signature",
            ApiError::StaleRequest(_) => "stale_request",
            ApiError::ReplayedRequest => "replayed_request",
            ApiError::UnknownCaller(_) => "unknown_caller",
            ApiError::WrongOperatorToken => "wrong_operator_token",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::RequestTimeout { .. } => "request_timeout",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Busy { .. } => "busy",
        }
    }

    /// Every code [`Self::code`] can return (the labels of the error metric).
    pub const CODES: [&'static str; 22] = [
        "malformed_json",
        "bad_parameter",
        "invalid_transaction",
        "payload_too_large",
        "unredeemable_token",
        "bad_signature",
        "unknown_identity",
        "not_found",
        "overloaded",
        "shutting_down",
        "internal",
        "unauthenticated",
        "bad_request_signature",
        "stale_request",
        "replayed_request",
        "unknown_caller",
        "wrong_operator_token",
        "forbidden",
        "unsupported_media_type",
        "request_timeout",
        "rate_limited",
        "busy",
    ];

    /// Seconds a client should wait before retrying (the `Retry-After` header of 429 and 503).
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited {
                retry_after_secs, ..
            }
            | ApiError::Busy {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            ApiError::Overloaded => Some(2),
            ApiError::ShuttingDown => Some(5),
            _ => None,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
            },
        }
    }

    /// The refusal of a transaction that failed intake verification (nothing is recorded; a
    /// forged token is handled before this, as misbehaviour).
    pub fn from_verify(error: &VerifyError) -> ApiError {
        match error {
            VerifyError::Certificate { .. } => ApiError::UnknownIdentity(error.to_string()),
            VerifyError::MalformedSignature { .. }
            | VerifyError::BadCertificateSignature { .. }
            | VerifyError::BadUserSignature { .. }
            | VerifyError::BadVendorSignature { .. }
            | VerifyError::BatchInconsistent
            | VerifyError::ForgedToken { .. } => ApiError::BadSignature(error.to_string()),
            _ => ApiError::InvalidTransaction(error.to_string()),
        }
    }
}

/// The error code of a response, attached as a response extension so that one layer counts
/// every refusal by reason ([`crate::metrics::Metrics::error`]).
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error answering a request");
        }
        let mut response = (self.status(), Json(self.body())).into_response();
        if let Some(secs) = self.retry_after_secs() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(ErrorCode(self.code()));
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        match error {
            EngineError::Store(error) => error.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    /// A database server that cannot be reached, or a write that lost a race, is temporary:
    /// 503 with Retry-After (nothing was written); anything else is an internal error.
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Server(_) | StoreError::Conflict(_) => ApiError::Busy {
                what: "the auditor's database is unavailable",
                retry_after_secs: 5,
            },
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<ResponseError> for ApiError {
    fn from(error: ResponseError) -> Self {
        ApiError::Internal(format!("cannot sign the response: {error}"))
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(error: rusqlite::Error) -> Self {
        ApiError::Internal(format!("service journal: {error}"))
    }
}

/// Failures of the service as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The data directory or a file in it is unusable.
    #[error("data directory {path}: {source}")]
    Io {
        /// The path.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}; pick another --listen address or stop the process using it")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The auditor store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine failed (configuration, resume).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The service's journal (answers, token index) failed.
    #[error("service journal: {0}; check that the data directory is writable")]
    Journal(#[from] rusqlite::Error),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// The service thread panicked (a bug).
    #[error("the service thread panicked: {0}")]
    Panicked(String),
    /// Settlement runs on another instance of this store (the holder of its lease).
    #[error("settlement runs on another instance of this store (it holds the settlement lease); ask that one, or wait until it stops")]
    NotLeader,
    /// Settlement failed.
    #[error(transparent)]
    Settlement(#[from] mupib_auditor::settlement::SettlementError),
    /// The operator token file is unusable.
    #[error("operator token {path}: {detail}")]
    OperatorToken {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The file of operator revocations is unusable.
    #[error("revocations file {path}: {detail}")]
    Revocations {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        detail: String,
    },
}

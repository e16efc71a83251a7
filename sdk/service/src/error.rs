//! Errors of the auditor service: [`ApiError`] (one HTTP request) renders as
//! `{ "error": { "code": "...", "message": "..." } }` with the right status code;
//! [`ServiceError`] is what starting, running or stopping the service can fail with.

use axum::http::StatusCode;
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
    /// The block verification queue is full (503); retry after a moment.
    #[error("the auditor is overloaded (block verification queue full); retry in a few seconds")]
    Overloaded,
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
            ApiError::BadSignature(_) => StatusCode::UNAUTHORIZED,
            ApiError::UnknownIdentity(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Overloaded | ApiError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error answering a request");
        }
        (self.status(), Json(self.body())).into_response()
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        ApiError::Internal(error.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        ApiError::Internal(error.to_string())
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
    /// Settlement failed.
    #[error(transparent)]
    Settlement(#[from] mupib_auditor::settlement::SettlementError),
}

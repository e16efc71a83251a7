//! The vendor's client of the auditor service (paper Fig. 1, messages 2–5 and 8/9).
//!
//! A vendor receives a payment signed by the user (message 2), checks it and countersigns it
//! ([`VendorClient::countersign`]), submits it to the auditor over HTTP
//! ([`VendorClient::submit`], message 3) and gets the auditor's signed answer at once: deliver,
//! wait, or reject with a reason (messages 4/5). A waiting vendor awaits the final answer, given
//! when the user's block is verified on-chain ([`VendorClient::await_final`], messages 8/9).
//!
//! Every answer's auditor signature is verified against the auditor key the vendor was configured
//! with, and must answer the transaction asked about: a response altered in transit, or signed by
//! anyone else, is a [`VendorError::BadAuditorResponse`] and must not be acted upon.
//!
//! Retries never turn an honest vendor into a double seller: when a submission's answer is lost
//! (connection reset, timeout), the client first asks the service whether it already holds the
//! transaction ([`VendorClient::status`]) and only resubmits if it does not.
//!
//! Every request is signed with the vendor's key ([`mupib_protocol::request`]: key, timestamp,
//! fresh nonce, signature over method, path, timestamp, nonce and body hash); the service admits
//! it only from a registered, unrevoked vendor, and lets a vendor submit and read only its own
//! transactions and account (and any user's standing). The timestamp comes from the client's
//! clock ([`VendorClient::with_clock`] to pin it), which must be within the service's window
//! (60 s by default) of the auditor's.
//!
//! The wire types ([`SubmitAnswer`], [`ErrorBody`], [`UserView`], …) are shared with the service.

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use serde::Deserialize;

use mupib_protocol::cert::{pubkey_of, Certificate, Registry};
use mupib_protocol::request::RequestSignature;
use mupib_protocol::response::{ResponseError, Verdict};
use mupib_protocol::transaction::{
    verify_transaction, PaymentTransaction, TransactionError, TransactionId, UserSignedPayment,
    VerifiedTransaction, VerifyError,
};
use mupib_protocol::wire::ErrorBody;
use mupib_protocol::wire::SubmitAnswer;
use mupib_protocol::wire::UserView;
use mupib_protocol::wire::VendorView;
use mupib_protocol::wire::MAX_LONG_POLL_SECS;
use mupib_protocol::Pubkey;

/// The clock a client signs requests with (Unix seconds).
pub type Clock = std::sync::Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    std::sync::Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    })
}

/// Errors of the vendor client. Each says what went wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum VendorError {
    /// The service could not be reached or the connection broke.
    #[error("auditor service at {url} unreachable: {source}; check the URL and that `mupib auditor serve` runs")]
    Unreachable {
        /// The URL.
        url: String,
        /// The transport error.
        source: reqwest::Error,
    },
    /// The service refused the request with a JSON error.
    #[error("auditor service refused the request (HTTP {status}, {code}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The error code.
        code: String,
        /// The service's message.
        message: String,
        /// For 429 and 503: when the service says to retry (its `Retry-After`).
        retry_after: Option<Duration>,
    },
    /// The service answered something that is not the expected JSON.
    #[error("auditor service sent an unreadable answer (HTTP {status}): {detail}")]
    Unreadable {
        /// HTTP status.
        status: u16,
        /// What failed.
        detail: String,
    },
    /// The response is not validly signed by the expected auditor for this transaction.
    #[error("auditor response rejected: {0}; do not deliver on it")]
    BadAuditorResponse(#[from] ResponseError),
    /// Building or countersigning the transaction failed.
    #[error(transparent)]
    Transaction(#[from] TransactionError),
    /// The transaction does not verify against the vendor's registry.
    #[error("the payment does not verify: {0}; refuse it")]
    Verify(#[from] VerifyError),
    /// The payment is addressed to another vendor.
    #[error(
        "the payment is addressed to vendor {addressed}, not to this vendor {vendor}: refuse it"
    )]
    NotForThisVendor {
        /// The payment's vendor.
        addressed: Pubkey,
        /// This vendor.
        vendor: Pubkey,
    },
    /// The final answer did not come in time.
    #[error("no final answer for transaction {transaction_id} within {waited:?}; ask again later")]
    Timeout {
        /// The transaction.
        transaction_id: TransactionId,
        /// How long the client waited.
        waited: Duration,
    },
    /// The base URL is unusable.
    #[error("invalid auditor service URL {url:?}: {detail}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        detail: String,
    },
}

/// A vendor's client: its identity, the auditor it trusts, and the service URL.
#[derive(Clone)]
pub struct VendorClient {
    base_url: String,
    http: reqwest::blocking::Client,
    vendor_key: SigningKey,
    vendor_cert: Certificate,
    auditor: Pubkey,
    clock: Clock,
}

impl std::fmt::Debug for VendorClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VendorClient")
            .field("base_url", &self.base_url)
            .field("vendor", &self.vendor_cert.subject)
            .field("auditor", &self.auditor)
            .finish_non_exhaustive()
    }
}

impl VendorClient {
    /// A client for the service at `base_url` (e.g. `http://127.0.0.1:8899`), acting as the vendor
    /// `vendor_key` (subject of `vendor_cert`), trusting answers signed by `auditor` only.
    ///
    /// # Errors
    /// [`VendorError::BadUrl`] for a URL that is not `http(s)://…`;
    /// [`VendorError::Transaction`] if the key is not the certificate's subject.
    pub fn new(
        base_url: impl Into<String>,
        vendor_key: SigningKey,
        vendor_cert: Certificate,
        auditor: Pubkey,
    ) -> Result<Self, VendorError> {
        let base_url = base_url.into().trim_end_matches('/').to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(VendorError::BadUrl {
                url: base_url,
                detail: "must start with http:// or https://".into(),
            });
        }
        let signing_key = pubkey_of(&vendor_key);
        if signing_key != vendor_cert.subject {
            return Err(VendorError::Transaction(TransactionError::KeyMismatch {
                role: mupib_protocol::cert::Role::Vendor,
                certificate_subject: vendor_cert.subject,
                signing_key,
            }));
        }
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(MAX_LONG_POLL_SECS + 15))
            .build()
            .map_err(|source| VendorError::Unreachable {
                url: base_url.clone(),
                source,
            })?;
        Ok(VendorClient {
            base_url,
            http,
            vendor_key,
            vendor_cert,
            auditor,
            clock: system_clock(),
        })
    }

    /// Signs requests with timestamps from `clock` instead of the system clock (a service whose
    /// clock is pinned, in tests).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// A request to `path` (e.g. `/v1/users/…?x=1`) signed with the vendor's key.
    fn signed(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<reqwest::blocking::RequestBuilder, VendorError> {
        let url_text = format!("{}{path}", self.base_url);
        let url = reqwest::Url::parse(&url_text).map_err(|e| VendorError::BadUrl {
            url: url_text.clone(),
            detail: e.to_string(),
        })?;
        // Exactly what goes on the request line.
        let path_and_query = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let signature = RequestSignature::sign(
            &self.vendor_key,
            method.as_str(),
            &path_and_query,
            body.unwrap_or_default(),
            (self.clock)(),
        );
        let mut request = self.http.request(method, url);
        for (name, value) in signature.headers() {
            request = request.header(name, value);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        Ok(request)
    }

    /// Sends a signed request.
    fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<reqwest::blocking::Response, VendorError> {
        let url = format!("{}{path}", self.base_url);
        self.signed(method, path, body)?
            .send()
            .map_err(|source| VendorError::Unreachable { url, source })
    }

    /// This vendor's key.
    pub fn vendor(&self) -> Pubkey {
        self.vendor_cert.subject
    }

    /// The vendor's certificate (what a user puts in the payment).
    pub fn certificate(&self) -> &Certificate {
        &self.vendor_cert
    }

    /// The auditor whose signature this client accepts.
    pub fn auditor(&self) -> Pubkey {
        self.auditor
    }

    /// The service URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Message 2 → 3: checks that the payment is addressed to this vendor and that the user's
    /// signature verifies, then countersigns it.
    ///
    /// # Errors
    /// [`VendorError::NotForThisVendor`], [`VendorError::Transaction`] (bad user signature, limits).
    pub fn countersign(
        &self,
        payment: UserSignedPayment,
    ) -> Result<PaymentTransaction, VendorError> {
        if payment.vendor_cert.subject != self.vendor() {
            return Err(VendorError::NotForThisVendor {
                addressed: payment.vendor_cert.subject,
                vendor: self.vendor(),
            });
        }
        Ok(payment.countersign(&self.vendor_key)?)
    }

    /// The full intake check of a countersigned transaction against the vendor's own registry at
    /// time `now` (certificates, token bank signatures, both signatures), before submitting.
    ///
    /// # Errors
    /// [`VendorError::Verify`] naming the first failure.
    pub fn verify(
        &self,
        transaction: &PaymentTransaction,
        registry: &Registry,
        now: i64,
    ) -> Result<VerifiedTransaction, VendorError> {
        Ok(verify_transaction(transaction, registry, now)?)
    }

    /// Message 3 → 4/5: submits the transaction and returns the auditor's verified answer.
    ///
    /// If the answer is lost in transit, the client asks whether the service already holds the
    /// transaction and returns that answer; it resubmits only if the service does not know it
    /// (so a lost answer never makes the vendor a double seller).
    ///
    /// # Errors
    /// [`VendorError::Refused`] with the service's code (e.g. `unknown_identity`, `bad_signature`,
    /// `overloaded`); [`VendorError::BadAuditorResponse`] if the answer's signature or
    /// transaction id is wrong; [`VendorError::Unreachable`] when retrying did not help.
    pub fn submit(&self, transaction: &PaymentTransaction) -> Result<SubmitAnswer, VendorError> {
        let id = transaction.id()?;
        let body = serde_json::to_vec(transaction).map_err(|e| VendorError::Unreadable {
            status: 0,
            detail: format!("cannot encode the transaction: {e}"),
        })?;
        match self.post_transaction(&body, &id) {
            Err(VendorError::Unreachable { .. }) => match self.status(&id)? {
                Some(answer) => Ok(answer),
                None => self.post_transaction(&body, &id),
            },
            other => other,
        }
    }

    /// Submits raw bytes as a transaction body (for tests of the service's input checks).
    ///
    /// # Errors
    /// As [`Self::submit`], without the retry.
    pub fn submit_raw(
        &self,
        body: Vec<u8>,
        expected: &TransactionId,
    ) -> Result<SubmitAnswer, VendorError> {
        self.post_transaction(&body, expected)
    }

    fn post_transaction(
        &self,
        body: &[u8],
        id: &TransactionId,
    ) -> Result<SubmitAnswer, VendorError> {
        let response = self.send(reqwest::Method::POST, "/v1/transactions", Some(body))?;
        let answer: SubmitAnswer = read_json(response)?;
        self.check(&answer, id)?;
        Ok(answer)
    }

    /// The service's current answer about a transaction (`None` if it does not know it).
    ///
    /// # Errors
    /// As [`Self::submit`].
    pub fn status(&self, id: &TransactionId) -> Result<Option<SubmitAnswer>, VendorError> {
        let response = self.send(
            reqwest::Method::GET,
            &format!("/v1/transactions/{id}/answer"),
            None,
        )?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let answer: SubmitAnswer = read_json(response)?;
        self.check(&answer, id)?;
        Ok(Some(answer))
    }

    /// Messages 8/9: waits (long-polling) until the transaction's answer is final, at most
    /// `timeout`. Returns at once if it is already final.
    ///
    /// # Errors
    /// [`VendorError::Timeout`] if still waiting after `timeout`; as [`Self::submit`].
    pub fn await_final(
        &self,
        id: &TransactionId,
        timeout: Duration,
    ) -> Result<SubmitAnswer, VendorError> {
        let started = Instant::now();
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            let wait = left.as_secs().clamp(1, MAX_LONG_POLL_SECS);
            let response = self.send(
                reqwest::Method::GET,
                &format!("/v1/transactions/{id}/final?wait={wait}"),
                None,
            )?;
            let answer: SubmitAnswer = read_json(response)?;
            self.check(&answer, id)?;
            if answer.is_final {
                return Ok(answer);
            }
            if started.elapsed() >= timeout {
                return Err(VendorError::Timeout {
                    transaction_id: *id,
                    waited: started.elapsed(),
                });
            }
        }
    }

    /// A user's trust, block size and suspension as the auditor sees them.
    ///
    /// # Errors
    /// [`VendorError::Refused`] with code `unknown_user` if the auditor never saw the user.
    pub fn user(&self, user: &Pubkey) -> Result<UserView, VendorError> {
        let response = self.send(reqwest::Method::GET, &format!("/v1/users/{user}"), None)?;
        read_json(response)
    }

    /// This vendor's payout account at the auditor: accrued, settled, still to pay.
    ///
    /// # Errors
    /// As [`Self::submit`].
    pub fn account(&self) -> Result<VendorView, VendorError> {
        let response = self.send(
            reqwest::Method::GET,
            &format!("/v1/vendors/{}", self.vendor()),
            None,
        )?;
        read_json(response)
    }

    /// Sends a signed request for `path` with an optional JSON body and returns the raw answer
    /// (status, body): for routes this client has no method for, and for tests of the service.
    ///
    /// # Errors
    /// [`VendorError::Unreachable`], [`VendorError::BadUrl`].
    pub fn request_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>), VendorError> {
        let response = self.send(method, path, body)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().map_err(|e| VendorError::Unreadable {
            status,
            detail: e.to_string(),
        })?;
        Ok((status, bytes.to_vec()))
    }

    /// A request to `path` signed now, not sent: for tests of the service's checks (replays,
    /// stale timestamps).
    ///
    /// # Errors
    /// [`VendorError::BadUrl`].
    pub fn signed_request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<reqwest::blocking::RequestBuilder, VendorError> {
        self.signed(method, path, body)
    }

    /// Verifies an answer: signed by the configured auditor, for transaction `id`, and its
    /// finality flag consistent with its verdict.
    fn check(&self, answer: &SubmitAnswer, id: &TransactionId) -> Result<(), VendorError> {
        answer.response.verify_for(id, &self.auditor)?;
        let is_final = !matches!(answer.response.verdict, Verdict::Wait);
        if answer.is_final != is_final {
            return Err(VendorError::Unreadable {
                status: 200,
                detail: format!(
                    "answer marked final={} for verdict {:?}",
                    answer.is_final, answer.response.verdict
                ),
            });
        }
        Ok(())
    }
}

/// Reads a JSON body of type `T`, or the service's JSON error.
fn read_json<T: for<'de> Deserialize<'de>>(
    response: reqwest::blocking::Response,
) -> Result<T, VendorError> {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let bytes = response.bytes().map_err(|e| VendorError::Unreadable {
        status: status.as_u16(),
        detail: e.to_string(),
    })?;
    if !status.is_success() {
        return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => VendorError::Refused {
                status: status.as_u16(),
                code: body.error.code,
                message: body.error.message,
                retry_after,
            },
            Err(_) => VendorError::Unreadable {
                status: status.as_u16(),
                detail: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            },
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| VendorError::Unreadable {
        status: status.as_u16(),
        detail: e.to_string(),
    })
}

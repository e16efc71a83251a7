//! Who may call what (SPEC §6; issue 10): authentication of every request but `/health`, the
//! route's permission, per-vendor rate limits, and replay protection.
//!
//! Two kinds of caller:
//! - a **vendor** signs each request with its registered key
//!   ([`mupib_protocol::request`]: key, timestamp, nonce, signature headers). The key must hold a
//!   current, unrevoked vendor certificate in the live registry ([`crate::registry`]); the
//!   timestamp must be within [`crate::ServiceConfig::request_window`] of the service's clock; the
//!   nonce must not have been seen within that window ([`NonceCache`], bounded: when full, new
//!   requests get 503 instead of an unchecked pass). Then the vendor's rate limit applies
//!   (`governor`, keyed by the authenticated key: 429 + `Retry-After`).
//! - the **operator** presents `Authorization: Bearer <token>`, the token kept in
//!   [`OPERATOR_TOKEN_FILE`] in the data directory (created at first start, mode 0600) or, for an
//!   in-memory service, generated at start ([`crate::RunningService::operator_token`]).
//!
//! Without credentials: 401; credentials that fail (bad signature, stale, replayed): 401; a key
//! or token that is not allowed: 403. Nothing is written for any refusal, and every refusal is
//! counted by code (`mupib_http_errors_total`). Which caller reaches which route is declared where
//! the routes are ([`crate::api`]); handlers check that a vendor acts on its own resources
//! ([`Caller::may_act_for`]).
//!
//! The body is read here (bounded in size and time, 413 / 408) because the signature covers its
//! hash; handlers get the buffered bytes.
//!
//! A replay after a restart: the nonce cache lives in memory, so a request captured in the
//! window before a restart could be presented once more after it, within the same window. That
//! is harmless: a submission is idempotent (the same transaction bytes get the stored answer
//! back, nothing is written twice) and every other vendor route only reads.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http_body_util::BodyExt;
use mupib_protocol::cert::Role;
use mupib_protocol::request::{
    RequestSignature, HEADER_KEY, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, NONCE_LEN,
};
use mupib_protocol::Pubkey;
use rand::RngCore;

use crate::error::{ApiError, ServiceError};
use crate::state::AppState;

/// Name of the operator's credential in the data directory.
pub const OPERATOR_TOKEN_FILE: &str = "operator.token";

/// Who sent an authenticated request (a request extension handlers read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// The operator (every route).
    Operator,
    /// A vendor, by its authenticated key.
    Vendor(Pubkey),
}

impl Caller {
    /// Refuses a vendor acting on another vendor's resource (`what` says what, e.g. "read the
    /// account"); the operator may act for anyone.
    ///
    /// # Errors
    /// [`ApiError::Forbidden`].
    pub fn may_act_for(&self, owner: &Pubkey, what: &str) -> Result<(), ApiError> {
        match self {
            Caller::Vendor(me) if me != owner => Err(ApiError::Forbidden(format!(
                "vendor {me} may not {what} of another vendor: a vendor sees only its own"
            ))),
            _ => Ok(()),
        }
    }
}

/// Which callers a group of routes admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Vendors (each scoped to its own resources by the handler) and the operator.
    Vendor,
    /// The operator only.
    Operator,
}

/// The operator's bearer credential.
#[derive(Clone)]
pub struct OperatorToken(String);

impl std::fmt::Debug for OperatorToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OperatorToken(..)")
    }
}

impl OperatorToken {
    /// A fresh random token: 32 bytes, 64 hex digits.
    pub fn generate() -> OperatorToken {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        OperatorToken(hex::encode(bytes))
    }

    /// Reads `dir/operator.token`, or creates it (mode 0600) with a fresh token at first start.
    ///
    /// # Errors
    /// [`ServiceError::OperatorToken`] if it cannot be created or read, or is too short.
    pub fn load_or_create(dir: &Path) -> Result<OperatorToken, ServiceError> {
        use std::io::Write;
        let path = dir.join(OPERATOR_TOKEN_FILE);
        let problem = |detail: String| ServiceError::OperatorToken {
            path: path.clone(),
            detail,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(&path) {
            Ok(mut file) => {
                let token = OperatorToken::generate();
                file.write_all(format!("{}\n", token.0).as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| problem(e.to_string()))?;
                tracing::info!(path = %path.display(), "created the operator token");
                Ok(token)
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = std::fs::metadata(&path)
                        .map_err(|e| problem(e.to_string()))?
                        .permissions()
                        .mode();
                    if mode & 0o077 != 0 {
                        tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "the operator token is readable by others; chmod 600 it");
                    }
                }
                read_operator_token(&path).map(OperatorToken)
            }
            Err(error) => Err(problem(error.to_string())),
        }
    }

    /// The token text (what `Authorization: Bearer` carries).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token (in constant time over the token's length).
    pub fn matches(&self, presented: &str) -> bool {
        let ours = self.0.as_bytes();
        let theirs = presented.as_bytes();
        ours.len() == theirs.len()
            && ours
                .iter()
                .zip(theirs)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// Reads an operator token file (what `mupib auditor status|trace|settle` send).
///
/// # Errors
/// [`ServiceError::OperatorToken`] if unreadable or shorter than 32 characters.
pub fn read_operator_token(path: &Path) -> Result<String, ServiceError> {
    let problem = |detail: String| ServiceError::OperatorToken {
        path: path.to_path_buf(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| problem(e.to_string()))?;
    let token = text.trim();
    if token.len() < 32 {
        return Err(problem(format!(
            "holds {} characters, an operator token has at least 32; delete the file to have the service create a fresh one",
            token.len()
        )));
    }
    Ok(token.to_owned())
}

/// Where the operator token of a data directory is.
pub fn operator_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(OPERATOR_TOKEN_FILE)
}

/// The nonces of signed requests still inside the window, bounded.
#[derive(Debug)]
pub struct NonceCache {
    seen: HashSet<(Pubkey, [u8; NONCE_LEN])>,
    /// (expiry, key, nonce), soonest first.
    expiry: BinaryHeap<Reverse<(i64, Pubkey, [u8; NONCE_LEN])>>,
    capacity: usize,
}

impl NonceCache {
    /// An empty cache holding at most `capacity` nonces.
    pub fn new(capacity: usize) -> NonceCache {
        NonceCache {
            seen: HashSet::new(),
            expiry: BinaryHeap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Nonces held now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Whether `(key, nonce)` was admitted and is still remembered.
    pub fn contains(&self, key: &Pubkey, nonce: &[u8; NONCE_LEN]) -> bool {
        self.seen.contains(&(*key, *nonce))
    }

    /// Admits `(key, nonce)` once: the request is acceptable until `expires_at` (its timestamp
    /// plus the window), so the nonce is kept until then. Forgets nonces expired at `now`.
    ///
    /// # Errors
    /// [`ApiError::ReplayedRequest`] for a nonce seen before; [`ApiError::Busy`] when the cache is
    /// full of unexpired nonces (the request is refused rather than admitted unchecked).
    pub fn admit(
        &mut self,
        key: Pubkey,
        nonce: [u8; NONCE_LEN],
        expires_at: i64,
        now: i64,
    ) -> Result<(), ApiError> {
        while let Some(Reverse((at, _, _))) = self.expiry.peek() {
            if *at >= now {
                break;
            }
            if let Some(Reverse((_, old_key, old_nonce))) = self.expiry.pop() {
                self.seen.remove(&(old_key, old_nonce));
            }
        }
        if self.seen.contains(&(key, nonce)) {
            return Err(ApiError::ReplayedRequest);
        }
        if self.seen.len() >= self.capacity {
            return Err(ApiError::Busy {
                what: "the replay cache is full",
                retry_after_secs: 1,
            });
        }
        self.seen.insert((key, nonce));
        self.expiry.push(Reverse((expires_at, key, nonce)));
        Ok(())
    }
}

/// Settings of the gate (from [`crate::ServiceConfig`]).
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// Seconds either way a request timestamp may differ from the service's clock.
    pub request_window: Duration,
    /// Most nonces remembered.
    pub nonce_capacity: usize,
    /// Sustained requests per second per vendor.
    pub vendor_rate: u32,
    /// Burst per vendor.
    pub vendor_burst: u32,
    /// Largest body.
    pub max_body_bytes: usize,
    /// Longest time for a whole body to arrive.
    pub body_timeout: Duration,
}

/// Authentication state: the operator token, the replay cache, the vendors' rate limits.
pub struct Gate {
    operator: OperatorToken,
    config: GateConfig,
    nonces: Mutex<NonceCache>,
    limiter: DefaultKeyedRateLimiter<Pubkey>,
    clock: DefaultClock,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// A gate admitting the operator with `operator` and vendors at the configured rates.
    pub fn new(operator: OperatorToken, config: GateConfig) -> Gate {
        let clock = DefaultClock::default();
        let rate = std::num::NonZeroU32::new(config.vendor_rate.max(1))
            .unwrap_or(std::num::NonZeroU32::MIN);
        let burst = std::num::NonZeroU32::new(config.vendor_burst.max(1))
            .unwrap_or(std::num::NonZeroU32::MIN);
        let limiter =
            RateLimiter::dashmap_with_clock(Quota::per_second(rate).allow_burst(burst), &clock);
        Gate {
            operator,
            nonces: Mutex::new(NonceCache::new(config.nonce_capacity)),
            config,
            limiter,
            clock,
        }
    }

    /// The operator token.
    pub fn operator_token(&self) -> &OperatorToken {
        &self.operator
    }

    /// The largest request body.
    pub fn max_body_bytes(&self) -> usize {
        self.config.max_body_bytes
    }

    /// Forgets rate-limit state of vendors idle long enough to be back at a full burst.
    pub fn forget_idle_vendors(&self) {
        self.limiter.retain_recent();
    }

    fn rate_limit(&self, vendor: &Pubkey) -> Result<(), ApiError> {
        self.limiter.check_key(vendor).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            ApiError::RateLimited {
                vendor: vendor.to_string(),
                per_second: self.config.vendor_rate,
                burst: self.config.vendor_burst,
                retry_after_secs: wait.as_secs().saturating_add(1),
            }
        })
    }

    fn window_secs(&self) -> u64 {
        self.config.request_window.as_secs()
    }
}

/// The state the authentication layer of a group of routes runs with.
#[derive(Clone)]
pub struct Guard {
    /// The service.
    pub state: Arc<AppState>,
    /// Who the routes admit.
    pub access: Access,
}

/// The authentication layer: admits the request (adding its [`Caller`] and the buffered body)
/// or answers the refusal.
pub async fn authenticate(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    match admit(&guard, request).await {
        Ok(request) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

async fn admit(guard: &Guard, request: Request) -> Result<Request, ApiError> {
    let state = &guard.state;
    let gate = &state.gate;
    let (mut parts, body) = request.into_parts();
    let caller = if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|text| text.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::Unauthenticated(
                    "the Authorization header must be `Bearer <operator token>`".into(),
                )
            })?;
        if !gate.operator.matches(token.trim()) {
            return Err(ApiError::WrongOperatorToken);
        }
        Caller::Operator
    } else if [HEADER_KEY, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE]
        .iter()
        .any(|name| parts.headers.contains_key(*name))
    {
        let signed = RequestSignature::from_headers(
            header_text(&parts.headers, HEADER_KEY),
            header_text(&parts.headers, HEADER_TIMESTAMP),
            header_text(&parts.headers, HEADER_NONCE),
            header_text(&parts.headers, HEADER_SIGNATURE),
        )
        .map_err(|e| ApiError::Unauthenticated(e.to_string()))?;
        let now = (state.clock)();
        let window = gate.window_secs();
        signed
            .check_time(now, window)
            .map_err(|e| ApiError::StaleRequest(e.to_string()))?;
        let registry = state.registry.snapshot();
        let key = registry
            .check_subject(&signed.key, Role::Vendor, now)
            .map_err(|e| {
                ApiError::UnknownCaller(format!(
                    "the request is signed by {}, which holds no current vendor certificate here: {e}",
                    signed.key
                ))
            })?
            .subject_key;
        let bytes = read_body(gate, body).await?;
        let path = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path(), |pq| pq.as_str());
        signed
            .verify(&key, parts.method.as_str(), path, &bytes)
            .map_err(|e| ApiError::BadRequestSignature(e.to_string()))?;
        // A replay is refused before it costs the vendor any of its rate (so a captured request
        // cannot be replayed to starve its vendor); the nonce is taken only by an admitted one.
        let nonces = || {
            gate.nonces
                .lock()
                .map_err(|_| ApiError::Internal("the replay cache lock is poisoned".into()))
        };
        if nonces()?.contains(&signed.key, &signed.nonce) {
            return Err(ApiError::ReplayedRequest);
        }
        gate.rate_limit(&signed.key)?;
        let expires_at = signed
            .timestamp
            .saturating_add(i64::try_from(window).unwrap_or(i64::MAX));
        nonces()?.admit(signed.key, signed.nonce, expires_at, now)?;
        if guard.access == Access::Operator {
            return Err(ApiError::Forbidden(format!(
                "{} {} is for the operator only; vendors may submit and read their own transactions, their own account and users' standing",
                parts.method,
                parts.uri.path()
            )));
        }
        parts.extensions.insert(Caller::Vendor(signed.key));
        return Ok(Request::from_parts(parts, Body::from(bytes)));
    } else {
        return Err(ApiError::Unauthenticated(
            "this route needs credentials: a vendor signs the request (x-mupib-key, x-mupib-timestamp, x-mupib-nonce, x-mupib-signature; see mupib_protocol::request), the operator sends `Authorization: Bearer <operator.token>`".into(),
        ));
    };
    let bytes = read_body(gate, body).await?;
    parts.extensions.insert(caller);
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// Reads the whole body: at most `max_body_bytes` (413), within `body_timeout` in all and
/// between frames (408; the per-frame limit is tower-http's `RequestBodyTimeoutLayer`).
async fn read_body(gate: &Gate, body: Body) -> Result<Bytes, ApiError> {
    let limit = gate.config.max_body_bytes;
    let secs = gate.config.body_timeout.as_secs().max(1);
    let limited = http_body_util::Limited::new(body, limit);
    match tokio::time::timeout(gate.config.body_timeout, limited.collect()).await {
        Err(_) => Err(ApiError::RequestTimeout { secs }),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error.as_ref());
            while let Some(current) = source {
                if current.is::<http_body_util::LengthLimitError>() {
                    return Err(ApiError::PayloadTooLarge { limit });
                }
                if current.is::<tower_http::timeout::TimeoutError>() {
                    return Err(ApiError::RequestTimeout { secs });
                }
                source = current.source();
            }
            Err(ApiError::MalformedJson {
                what: "request body",
                detail: error.to_string(),
            })
        }
    }
}

/// Refuses a write whose body is not declared JSON (415).
///
/// # Errors
/// [`ApiError::UnsupportedMediaType`].
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = header_text(headers, header::CONTENT_TYPE.as_str()).unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "the body must be JSON sent with `Content-Type: application/json`, not {:?}",
            content_type
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn nonce_cache_refuses_replays_forgets_expired_and_fails_closed_when_full() {
        let key = Pubkey::new_unique();
        let mut cache = NonceCache::new(2);
        cache.admit(key, [1; 16], 100, 50).unwrap();
        assert!(matches!(
            cache.admit(key, [1; 16], 100, 60),
            Err(ApiError::ReplayedRequest)
        ));
        // Another vendor may use the same nonce bytes.
        cache.admit(Pubkey::new_unique(), [1; 16], 100, 60).unwrap();
        assert!(matches!(
            cache.admit(key, [2; 16], 100, 60),
            Err(ApiError::Busy { .. })
        ));
        // At 100 the first two are still acceptable (≤ expiry); after it, forgotten.
        assert!(matches!(
            cache.admit(key, [1; 16], 100, 100),
            Err(ApiError::ReplayedRequest)
        ));
        cache.admit(key, [2; 16], 200, 101).unwrap();
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn operator_token_is_created_once_with_mode_0600_and_compared_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let token = OperatorToken::load_or_create(dir.path()).unwrap();
        assert_eq!(token.as_str().len(), 64);
        let again = OperatorToken::load_or_create(dir.path()).unwrap();
        assert_eq!(again.as_str(), token.as_str());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(OPERATOR_TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(token.matches(again.as_str()));
        assert!(!token.matches(&token.as_str()[1..]));
        let mut other = token.as_str().to_owned();
        other.replace_range(0..1, if other.starts_with('0') { "1" } else { "0" });
        assert!(!token.matches(&other));
        assert_eq!(
            read_operator_token(&operator_token_path(dir.path())).unwrap(),
            token.as_str()
        );
    }

    #[test]
    fn json_content_types() {
        let mut headers = HeaderMap::new();
        assert!(require_json(&headers).is_err());
        headers.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        require_json(&headers).unwrap();
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(matches!(
            require_json(&headers),
            Err(ApiError::UnsupportedMediaType(_))
        ));
    }
}

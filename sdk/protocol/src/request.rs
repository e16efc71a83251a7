//! Signed HTTP requests: how a vendor proves to the auditor service that a request comes from it
//! (SPEC §6 "Who may call what"). Defined once here, used by the vendor's client to sign and by
//! the service to verify.
//!
//! A signed request carries four headers:
//!
//! | header | value |
//! |---|---|
//! | `x-mupib-key` | the vendor's key (base58); it must hold a current, unrevoked vendor certificate |
//! | `x-mupib-timestamp` | Unix seconds when the request was signed |
//! | `x-mupib-nonce` | 16 random bytes, 32 lowercase hex digits, never reused |
//! | `x-mupib-signature` | ed25519 signature (base58, 64 bytes) over the signing string |
//!
//! The signing string is UTF-8 text, one field per line, in this order (no trailing newline):
//!
//! ```text
//! mupib:request:v1
//! <METHOD, upper case>
//! <path and query exactly as on the request line, e.g. /v1/transactions/ab…/final?wait=30>
//! <timestamp, decimal>
//! <nonce, 32 hex digits>
//! <SHA-256 of the body, 64 hex digits (of the empty string for a request without body)>
//! ```
//!
//! The service accepts a request whose timestamp is within its window (default
//! [`DEFAULT_REQUEST_SKEW_SECS`] either way) and whose nonce it has not seen inside that window:
//! a captured request can be neither replayed nor moved to another path, method or body. The
//! signature is verified strictly (canonical `S` and `R`, `R` not of small order,
//! `verify_strict`), like every signature in this crate; the key is the one the registry decoded
//! and checked at registration.

use std::str::FromStr;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::cert::{check_signature_encoding, pubkey_of, SignatureProblem};
use crate::Pubkey;

/// Domain tag, the first line of every signing string.
pub const REQUEST_SIGN_TAG: &str = "mupib:request:v1";
/// Header naming the signing vendor's key (base58).
pub const HEADER_KEY: &str = "x-mupib-key";
/// Header with the Unix time of signing.
pub const HEADER_TIMESTAMP: &str = "x-mupib-timestamp";
/// Header with the request's random nonce (hex).
pub const HEADER_NONCE: &str = "x-mupib-nonce";
/// Header with the signature (base58).
pub const HEADER_SIGNATURE: &str = "x-mupib-signature";
/// Bytes of a nonce.
pub const NONCE_LEN: usize = 16;
/// The service's default window for request timestamps, in seconds either side of its clock.
pub const DEFAULT_REQUEST_SKEW_SECS: u64 = 60;

/// What authenticates one request: who, when, a nonce, and the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestSignature {
    /// The signer (a vendor).
    pub key: Pubkey,
    /// Unix seconds at signing.
    pub timestamp: i64,
    /// Random, never reused.
    pub nonce: [u8; NONCE_LEN],
    /// Over [`signing_string`].
    pub signature: [u8; 64],
}

/// Why a request's authentication is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestAuthError {
    /// A header is missing (the others are present).
    #[error("the signed request lacks the {0} header; sign every header of the scheme (x-mupib-key, x-mupib-timestamp, x-mupib-nonce, x-mupib-signature)")]
    Missing(&'static str),
    /// A header does not parse.
    #[error("the {header} header is malformed: {detail}")]
    Malformed {
        /// The header.
        header: &'static str,
        /// Why.
        detail: String,
    },
    /// The timestamp is outside the window.
    #[error("the request was signed at {timestamp}, the auditor's clock says {now}: requests are accepted within ±{window} s of it; check the clock and sign again")]
    Stale {
        /// The request's timestamp.
        timestamp: i64,
        /// The verifier's clock.
        now: i64,
        /// The window, seconds either way.
        window: u64,
    },
    /// The signature encoding is refused before any curve arithmetic.
    #[error("the request signature is malformed: {0}")]
    MalformedSignature(SignatureProblem),
    /// The signature does not verify for this key over this request.
    #[error("the request signature does not verify for key {key} over this method, path, timestamp, nonce and body")]
    BadSignature {
        /// The claimed signer.
        key: Pubkey,
    },
}

/// The SHA-256 of a body, lowercase hex.
pub fn body_digest(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// The text a request signature covers (see the module documentation).
pub fn signing_string(
    method: &str,
    path_and_query: &str,
    timestamp: i64,
    nonce: &[u8; NONCE_LEN],
    body: &[u8],
) -> String {
    format!(
        "{REQUEST_SIGN_TAG}\n{}\n{path_and_query}\n{timestamp}\n{}\n{}",
        method.to_ascii_uppercase(),
        hex::encode(nonce),
        body_digest(body)
    )
}

impl RequestSignature {
    /// Signs a request with a fresh random nonce.
    pub fn sign(
        key: &SigningKey,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        timestamp: i64,
    ) -> RequestSignature {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        Self::sign_with_nonce(key, method, path_and_query, body, timestamp, nonce)
    }

    /// Signs a request with the given nonce (tests; a nonce must never be reused).
    pub fn sign_with_nonce(
        key: &SigningKey,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        timestamp: i64,
        nonce: [u8; NONCE_LEN],
    ) -> RequestSignature {
        let text = signing_string(method, path_and_query, timestamp, &nonce, body);
        RequestSignature {
            key: pubkey_of(key),
            timestamp,
            nonce,
            signature: key.sign(text.as_bytes()).to_bytes(),
        }
    }

    /// The four headers, names lower case.
    pub fn headers(&self) -> [(&'static str, String); 4] {
        [
            (HEADER_KEY, self.key.to_string()),
            (HEADER_TIMESTAMP, self.timestamp.to_string()),
            (HEADER_NONCE, hex::encode(self.nonce)),
            (HEADER_SIGNATURE, bs58::encode(self.signature).into_string()),
        ]
    }

    /// Reads the four headers' values (each `None` when absent).
    ///
    /// # Errors
    /// [`RequestAuthError::Missing`] or [`RequestAuthError::Malformed`].
    pub fn from_headers(
        key: Option<&str>,
        timestamp: Option<&str>,
        nonce: Option<&str>,
        signature: Option<&str>,
    ) -> Result<RequestSignature, RequestAuthError> {
        let malformed =
            |header: &'static str, detail: String| RequestAuthError::Malformed { header, detail };
        let key = key.ok_or(RequestAuthError::Missing(HEADER_KEY))?;
        let timestamp = timestamp.ok_or(RequestAuthError::Missing(HEADER_TIMESTAMP))?;
        let nonce = nonce.ok_or(RequestAuthError::Missing(HEADER_NONCE))?;
        let signature = signature.ok_or(RequestAuthError::Missing(HEADER_SIGNATURE))?;
        let key = Pubkey::from_str(key.trim())
            .map_err(|e| malformed(HEADER_KEY, format!("not a base58 key: {e}")))?;
        let timestamp = timestamp
            .trim()
            .parse::<i64>()
            .map_err(|e| malformed(HEADER_TIMESTAMP, format!("not Unix seconds: {e}")))?;
        let nonce_bytes = hex::decode(nonce.trim())
            .map_err(|e| malformed(HEADER_NONCE, format!("not hex: {e}")))?;
        let nonce: [u8; NONCE_LEN] = nonce_bytes.as_slice().try_into().map_err(|_| {
            malformed(
                HEADER_NONCE,
                format!(
                    "a nonce has {NONCE_LEN} bytes, this one {}",
                    nonce_bytes.len()
                ),
            )
        })?;
        let signature_bytes = bs58::decode(signature.trim())
            .into_vec()
            .map_err(|e| malformed(HEADER_SIGNATURE, format!("not base58: {e}")))?;
        let signature: [u8; 64] = signature_bytes.as_slice().try_into().map_err(|_| {
            malformed(
                HEADER_SIGNATURE,
                format!(
                    "a signature has 64 bytes, this one {}",
                    signature_bytes.len()
                ),
            )
        })?;
        Ok(RequestSignature {
            key,
            timestamp,
            nonce,
            signature,
        })
    }

    /// Checks the timestamp against `now`: at most `window` seconds either way.
    ///
    /// # Errors
    /// [`RequestAuthError::Stale`].
    pub fn check_time(&self, now: i64, window: u64) -> Result<(), RequestAuthError> {
        if self.timestamp.abs_diff(now) > window {
            return Err(RequestAuthError::Stale {
                timestamp: self.timestamp,
                now,
                window,
            });
        }
        Ok(())
    }

    /// Verifies the signature strictly with `key` (the registry's decoded key of
    /// [`Self::key`]) over the request.
    ///
    /// # Errors
    /// [`RequestAuthError::MalformedSignature`], [`RequestAuthError::BadSignature`].
    pub fn verify(
        &self,
        key: &VerifyingKey,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Result<(), RequestAuthError> {
        check_signature_encoding(&self.signature).map_err(RequestAuthError::MalformedSignature)?;
        let text = signing_string(method, path_and_query, self.timestamp, &self.nonce, body);
        key.verify_strict(text.as_bytes(), &Signature::from_bytes(&self.signature))
            .map_err(|_| RequestAuthError::BadSignature { key: self.key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::strict_verifying_key;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn signing_string_is_tagged_lines() {
        let text = signing_string("post", "/v1/transactions?x=1", 42, &[0xab; 16], b"{}");
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(
            lines,
            vec![
                "mupib:request:v1",
                "POST",
                "/v1/transactions?x=1",
                "42",
                "abababababababababababababababab",
                // SHA-256("{}")
                "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            ]
        );
    }

    #[test]
    fn signed_request_verifies_and_headers_round_trip() {
        let vendor = key(3);
        let signed = RequestSignature::sign(&vendor, "GET", "/v1/users/abc", b"", 1_000);
        let headers = signed.headers();
        let value = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        let parsed = RequestSignature::from_headers(
            value(HEADER_KEY),
            value(HEADER_TIMESTAMP),
            value(HEADER_NONCE),
            value(HEADER_SIGNATURE),
        )
        .unwrap();
        assert_eq!(parsed, signed);
        let verifying = strict_verifying_key(&pubkey_of(&vendor)).unwrap();
        parsed
            .verify(&verifying, "GET", "/v1/users/abc", b"")
            .unwrap();
        parsed.check_time(1_060, 60).unwrap();
        parsed.check_time(940, 60).unwrap();
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let vendor = key(4);
        let verifying = strict_verifying_key(&pubkey_of(&vendor)).unwrap();
        let signed = RequestSignature::sign(&vendor, "POST", "/v1/transactions", b"{\"a\":1}", 7);
        let bad = |result: Result<(), RequestAuthError>| {
            assert!(matches!(result, Err(RequestAuthError::BadSignature { .. })))
        };
        bad(signed.verify(&verifying, "GET", "/v1/transactions", b"{\"a\":1}"));
        bad(signed.verify(&verifying, "POST", "/v1/transactions/batch", b"{\"a\":1}"));
        bad(signed.verify(&verifying, "POST", "/v1/transactions", b"{\"a\":2}"));
        let mut moved = signed;
        moved.timestamp = 8;
        bad(moved.verify(&verifying, "POST", "/v1/transactions", b"{\"a\":1}"));
        let mut renonced = signed;
        renonced.nonce[0] ^= 1;
        bad(renonced.verify(&verifying, "POST", "/v1/transactions", b"{\"a\":1}"));
        let other = strict_verifying_key(&pubkey_of(&key(5))).unwrap();
        bad(signed.verify(&other, "POST", "/v1/transactions", b"{\"a\":1}"));
    }

    #[test]
    fn stale_and_future_timestamps_name_the_window() {
        let signed = RequestSignature::sign(&key(6), "GET", "/", b"", 1_000);
        for now in [1_061, 939] {
            let error = signed.check_time(now, 60).unwrap_err();
            assert!(matches!(error, RequestAuthError::Stale { window: 60, .. }));
            assert!(error.to_string().contains("±60 s"), "{error}");
        }
    }

    #[test]
    fn missing_and_malformed_headers_are_named() {
        assert_eq!(
            RequestSignature::from_headers(Some("x"), None, Some("00"), Some("1")),
            Err(RequestAuthError::Missing(HEADER_TIMESTAMP))
        );
        let signed = RequestSignature::sign(&key(7), "GET", "/", b"", 1);
        let [(_, k), (_, t), (_, _), (_, s)] = signed.headers();
        let error =
            RequestSignature::from_headers(Some(&k), Some(&t), Some("abcd"), Some(&s)).unwrap_err();
        assert!(matches!(
            error,
            RequestAuthError::Malformed {
                header: HEADER_NONCE,
                ..
            }
        ));
        let error = RequestSignature::from_headers(
            Some(&k),
            Some("yesterday"),
            Some(&hex::encode([0u8; 16])),
            Some(&s),
        )
        .unwrap_err();
        assert!(matches!(
            error,
            RequestAuthError::Malformed {
                header: HEADER_TIMESTAMP,
                ..
            }
        ));
    }

    #[test]
    fn non_canonical_signature_is_refused_before_verification() {
        let vendor = key(8);
        let verifying = strict_verifying_key(&pubkey_of(&vendor)).unwrap();
        let mut signed = RequestSignature::sign(&vendor, "GET", "/", b"", 1);
        signed.signature[63] = 0xff; // S ≥ ℓ
        assert!(matches!(
            signed.verify(&verifying, "GET", "/", b""),
            Err(RequestAuthError::MalformedSignature(
                SignatureProblem::NonCanonicalS
            ))
        ));
    }
}

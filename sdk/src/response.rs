//! Auditor responses to vendors (paper Fig. 1, messages 4/5 and 8/9): deliver now, wait for the
//! block under verification, or reject with a reason. Signed by the auditor over
//! `RESPONSE_SIGN_TAG || borsh(transaction_id, verdict, block_id, issued_at, auditor)`;
//! vendors verify the signature against the auditor they expect (or the registry).

use std::fmt;

use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::auditor::Decision;
use crate::cert::{
    b58, check_signature_encoding, pubkey_of, strict_verifying_key, tagged_borsh, CertError,
    KeyProblem, Registry, Role, SignatureProblem,
};
use crate::token::TokenId;
use crate::transaction::{Party, TransactionId, VerifyError};
use crate::Pubkey;

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

/// Domain tag of an auditor response signature.
pub const RESPONSE_SIGN_TAG: &[u8] = b"mupib:response:v1";

/// Longest free-text detail carried in a [`RejectReason`] (longer text is cut).
pub const MAX_REASON_DETAIL_LEN: usize = 256;

/// Most per-token decisions carried in one [`RejectReason::InvalidTokensInBlock`].
pub const MAX_REASON_DECISIONS: usize = 10_000;

/// One token's decision inside a rejection. Borsh encodes the decision as its program code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenDecision {
    /// The token.
    pub token: TokenId,
    /// The chain's decision.
    pub decision: Decision,
}

/// Why a transaction is rejected. Display gives a sentence for the vendor.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum RejectReason {
    /// The block this (waiting) transaction completed holds invalid tokens.
    InvalidTokensInBlock {
        /// The block.
        block_id: u64,
        /// Per-token decisions of the block (at least the invalid ones).
        decisions: Vec<TokenDecision>,
    },
    /// The user is suspended (block size 0).
    UserSuspended {
        /// The user.
        #[serde(with = "b58::pubkey")]
        user: Pubkey,
    },
    /// A token's bank signature does not match its content.
    ForgedToken {
        /// The token.
        token: TokenId,
    },
    /// A token the auditor has already seen (double spending at intake).
    DoubleSpendingAtIntake {
        /// The token.
        token: TokenId,
    },
    /// A transaction id the auditor has already seen (replay / double selling by the vendor).
    DoubleSelling {
        /// The vendor who presented it again.
        #[serde(with = "b58::pubkey")]
        vendor: Pubkey,
        /// The transaction id.
        transaction_id: TransactionId,
    },
    /// A user, vendor or certificate signature does not verify, or is malformed.
    BadSignature {
        /// Whose signature, in words.
        detail: String,
    },
    /// An identity is unknown, revoked, expired or has the wrong role.
    UnknownIdentity {
        /// The key.
        #[serde(with = "b58::pubkey")]
        key: Pubkey,
        /// Why.
        detail: String,
    },
    /// The transaction is malformed (limits, values, duplicates, times).
    Malformed {
        /// Why.
        detail: String,
    },
}

/// The auditor's answer to a vendor.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "lowercase")]
pub enum Verdict {
    /// Deliver the item (vendor is owed v·(1−ρ) per token).
    Deliver,
    /// The transaction completed a block under verification: wait for the final answer.
    Wait,
    /// Do not deliver.
    Reject(RejectReason),
}

/// A signed auditor response.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AuditorResponse {
    /// The transaction answered.
    pub transaction_id: TransactionId,
    /// The verdict.
    pub verdict: Verdict,
    /// The block the transaction is in, if it is in one.
    pub block_id: Option<u64>,
    /// When the auditor answered (Unix seconds).
    pub issued_at: i64,
    /// The auditor's key.
    #[serde(with = "b58::pubkey")]
    pub auditor: Pubkey,
    /// The auditor's signature over [`AuditorResponse::signing_bytes`].
    #[serde(with = "b58::signature")]
    pub signature: [u8; 64],
}

/// Errors of response signing and verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// Signed by another auditor than expected.
    #[error("the response is from auditor {found}, expected {expected}: ignore it")]
    UnexpectedAuditor {
        /// The expected auditor.
        expected: Pubkey,
        /// The response's auditor.
        found: Pubkey,
    },
    /// For another transaction than expected.
    #[error("the response answers transaction {found}, expected {expected}")]
    WrongTransaction {
        /// The expected id.
        expected: TransactionId,
        /// The response's id.
        found: TransactionId,
    },
    /// The auditor key is unusable.
    #[error("auditor key {auditor} refused: {problem}")]
    InvalidAuditorKey {
        /// The key.
        auditor: Pubkey,
        /// Why.
        problem: KeyProblem,
    },
    /// The auditor's certificate is refused by the registry.
    #[error("auditor {auditor} refused: {source}")]
    AuditorCertificate {
        /// The key.
        auditor: Pubkey,
        /// Why.
        source: CertError,
    },
    /// Malformed signature.
    #[error("malformed auditor signature: {problem}")]
    MalformedSignature {
        /// What is wrong.
        problem: SignatureProblem,
    },
    /// The signature does not verify: the response was altered or not signed by the auditor.
    #[error("the auditor signature of {auditor} does not verify: the response was altered or forged; do not act on it")]
    BadSignature {
        /// The claimed auditor.
        auditor: Pubkey,
    },
    /// Too many decisions in a rejection.
    #[error("a rejection carries {count} token decisions, the limit is {max}")]
    TooManyDecisions {
        /// Count.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Encoding failed.
    #[error("response encoding failed: {0}")]
    Encoding(String),
}

// ---------------------------------------------------------------------------------------------
// Logic
// ---------------------------------------------------------------------------------------------

impl BorshSerialize for TokenDecision {
    fn serialize<W: std::io::Write>(&self, writer: &mut W) -> std::io::Result<()> {
        BorshSerialize::serialize(&self.token, writer)?;
        BorshSerialize::serialize(&self.decision.code(), writer)
    }
}

impl BorshDeserialize for TokenDecision {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<TokenDecision> {
        let token = TokenId::deserialize_reader(reader)?;
        let code = u8::deserialize_reader(reader)?;
        let decision = Decision::from_code(code).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("unknown token decision code {code:#04x}"),
            )
        })?;
        Ok(TokenDecision { token, decision })
    }
}

/// What a decision means, for a vendor.
fn decision_text(decision: Decision) -> &'static str {
    match decision {
        Decision::Unpublished => "not published by any bank",
        Decision::Altered => "altered (does not match the bank's commitment)",
        Decision::Duplicate => "already spent (double spending)",
        Decision::Valid => "valid",
    }
}

/// Cuts `text` to at most [`MAX_REASON_DETAIL_LEN`] bytes on a character boundary.
fn bounded(text: String) -> String {
    if text.len() <= MAX_REASON_DETAIL_LEN {
        return text;
    }
    let mut end = MAX_REASON_DETAIL_LEN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

impl RejectReason {
    /// A free-text bad-signature reason (cut to [`MAX_REASON_DETAIL_LEN`]).
    pub fn bad_signature(detail: impl Into<String>) -> RejectReason {
        RejectReason::BadSignature {
            detail: bounded(detail.into()),
        }
    }

    /// A free-text malformed-transaction reason (cut to [`MAX_REASON_DETAIL_LEN`]).
    pub fn malformed(detail: impl Into<String>) -> RejectReason {
        RejectReason::Malformed {
            detail: bounded(detail.into()),
        }
    }

    /// Cuts free text to the limits (applied before signing).
    fn normalized(&self) -> RejectReason {
        match self {
            RejectReason::BadSignature { detail } => RejectReason::bad_signature(detail.clone()),
            RejectReason::Malformed { detail } => RejectReason::malformed(detail.clone()),
            RejectReason::UnknownIdentity { key, detail } => RejectReason::UnknownIdentity {
                key: *key,
                detail: bounded(detail.clone()),
            },
            other => other.clone(),
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::InvalidTokensInBlock { block_id, decisions } => {
                let invalid: Vec<String> = decisions
                    .iter()
                    .filter(|d| !d.decision.is_valid())
                    .map(|d| format!("{}: {}", d.token, decision_text(d.decision)))
                    .collect();
                write!(
                    f,
                    "block {block_id} holds {} invalid token(s): {}; the valid tokens of this payment are refunded to the user",
                    invalid.len(),
                    invalid.join("; ")
                )
            }
            RejectReason::UserSuspended { user } => {
                write!(f, "user {user} is suspended (block size 0) and may not pay")
            }
            RejectReason::ForgedToken { token } => {
                write!(f, "token {token} is forged or altered (bad bank signature)")
            }
            RejectReason::DoubleSpendingAtIntake { token } => {
                write!(f, "token {token} was already spent (double spending)")
            }
            RejectReason::DoubleSelling { vendor, transaction_id } => write!(
                f,
                "transaction {transaction_id} was already presented: double selling by vendor {vendor}"
            ),
            RejectReason::BadSignature { detail } => write!(f, "bad signature: {detail}"),
            RejectReason::UnknownIdentity { key, detail } => {
                write!(f, "identity {key} refused: {detail}")
            }
            RejectReason::Malformed { detail } => write!(f, "malformed transaction: {detail}"),
        }
    }
}

impl From<&VerifyError> for RejectReason {
    /// The reason the auditor sends for an intake refusal.
    fn from(error: &VerifyError) -> RejectReason {
        match error {
            VerifyError::ForgedToken { token, .. } => RejectReason::ForgedToken { token: *token },
            VerifyError::Certificate {
                subject, source, ..
            } => RejectReason::UnknownIdentity {
                key: *subject,
                detail: bounded(source.to_string()),
            },
            VerifyError::DuplicateTokenInTransaction { token, .. } => {
                RejectReason::DoubleSpendingAtIntake { token: *token }
            }
            VerifyError::MalformedSignature {
                slot: crate::transaction::SignatureSlot::Token { index },
                ..
            } => RejectReason::malformed(format!("token #{index}: {error}")),
            VerifyError::MalformedSignature { .. }
            | VerifyError::BadCertificateSignature { .. }
            | VerifyError::BadUserSignature { .. }
            | VerifyError::BadVendorSignature { .. }
            | VerifyError::BatchInconsistent => RejectReason::bad_signature(error.to_string()),
            other => RejectReason::malformed(other.to_string()),
        }
    }
}

/// The party an intake error points at, for the engine's misbehaviour records: the user for
/// forged, duplicated or malformed tokens and a bad user signature; the vendor for a bad vendor
/// signature; the owner of a refused certificate.
pub fn blamed_party(error: &VerifyError) -> Option<Party> {
    match error {
        VerifyError::BadVendorSignature { .. } => Some(Party::Vendor),
        VerifyError::Certificate { party, .. }
        | VerifyError::BadCertificateSignature { party, .. } => Some(*party),
        VerifyError::ForgedToken { .. }
        | VerifyError::DuplicateTokenInTransaction { .. }
        | VerifyError::ZeroValueToken { .. }
        | VerifyError::TokenValueMismatch { .. }
        | VerifyError::TokenFromFuture { .. }
        | VerifyError::BadUserSignature { .. } => Some(Party::User),
        _ => None,
    }
}

#[derive(BorshSerialize)]
struct ResponseBody<'a> {
    transaction_id: &'a TransactionId,
    verdict: &'a Verdict,
    block_id: Option<u64>,
    issued_at: i64,
    auditor: &'a Pubkey,
}

impl AuditorResponse {
    /// Signs a response with the auditor's key. Free-text details are cut to
    /// [`MAX_REASON_DETAIL_LEN`]; more than [`MAX_REASON_DECISIONS`] decisions are refused.
    pub fn sign(
        auditor_key: &SigningKey,
        transaction_id: TransactionId,
        verdict: Verdict,
        block_id: Option<u64>,
        issued_at: i64,
    ) -> Result<AuditorResponse, ResponseError> {
        let verdict = match verdict {
            Verdict::Reject(reason) => Verdict::Reject(reason.normalized()),
            other => other,
        };
        let mut response = AuditorResponse {
            transaction_id,
            verdict,
            block_id,
            issued_at,
            auditor: pubkey_of(auditor_key),
            signature: [0; 64],
        };
        let message = response.signing_bytes()?;
        response.signature = auditor_key.sign(&message).to_bytes();
        Ok(response)
    }

    /// `RESPONSE_SIGN_TAG || borsh(transaction_id, verdict, block_id, issued_at, auditor)`.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, ResponseError> {
        if let Verdict::Reject(RejectReason::InvalidTokensInBlock { decisions, .. }) = &self.verdict
        {
            if decisions.len() > MAX_REASON_DECISIONS {
                return Err(ResponseError::TooManyDecisions {
                    count: decisions.len(),
                    max: MAX_REASON_DECISIONS,
                });
            }
        }
        let body = ResponseBody {
            transaction_id: &self.transaction_id,
            verdict: &self.verdict,
            block_id: self.block_id,
            issued_at: self.issued_at,
            auditor: &self.auditor,
        };
        tagged_borsh(RESPONSE_SIGN_TAG, &body).map_err(|e| ResponseError::Encoding(e.to_string()))
    }

    fn verify_with(&self, key: &VerifyingKey) -> Result<(), ResponseError> {
        check_signature_encoding(&self.signature)
            .map_err(|problem| ResponseError::MalformedSignature { problem })?;
        key.verify_strict(
            &self.signing_bytes()?,
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| ResponseError::BadSignature {
            auditor: self.auditor,
        })
    }

    /// Verifies that `expected_auditor` signed this response (strict).
    pub fn verify(&self, expected_auditor: &Pubkey) -> Result<(), ResponseError> {
        if self.auditor != *expected_auditor {
            return Err(ResponseError::UnexpectedAuditor {
                expected: *expected_auditor,
                found: self.auditor,
            });
        }
        let key = strict_verifying_key(&self.auditor).map_err(|problem| {
            ResponseError::InvalidAuditorKey {
                auditor: self.auditor,
                problem,
            }
        })?;
        self.verify_with(&key)
    }

    /// Verifies the response answers `transaction_id` and is signed by `expected_auditor`.
    pub fn verify_for(
        &self,
        transaction_id: &TransactionId,
        expected_auditor: &Pubkey,
    ) -> Result<(), ResponseError> {
        if self.transaction_id != *transaction_id {
            return Err(ResponseError::WrongTransaction {
                expected: *transaction_id,
                found: self.transaction_id,
            });
        }
        self.verify(expected_auditor)
    }

    /// Verifies the response against the registry: the auditor holds a current, unrevoked
    /// [`Role::Auditor`] certificate, and the signature holds.
    pub fn verify_with_registry(&self, registry: &Registry, now: i64) -> Result<(), ResponseError> {
        let auditor = registry
            .check_subject(&self.auditor, Role::Auditor, now)
            .map_err(|source| ResponseError::AuditorCertificate {
                auditor: self.auditor,
                source,
            })?;
        self.verify_with(&auditor.subject_key)
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::Certificate;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn token_id(serial: u32) -> TokenId {
        TokenId {
            bank: pubkey_of(&key(2)),
            batch_id: 1,
            serial,
        }
    }

    fn all_verdicts() -> Vec<Verdict> {
        vec![
            Verdict::Deliver,
            Verdict::Wait,
            Verdict::Reject(RejectReason::InvalidTokensInBlock {
                block_id: 4,
                decisions: vec![
                    TokenDecision {
                        token: token_id(0),
                        decision: Decision::Valid,
                    },
                    TokenDecision {
                        token: token_id(1),
                        decision: Decision::Duplicate,
                    },
                ],
            }),
            Verdict::Reject(RejectReason::UserSuspended {
                user: pubkey_of(&key(3)),
            }),
            Verdict::Reject(RejectReason::ForgedToken { token: token_id(5) }),
            Verdict::Reject(RejectReason::DoubleSpendingAtIntake { token: token_id(6) }),
            Verdict::Reject(RejectReason::DoubleSelling {
                vendor: pubkey_of(&key(4)),
                transaction_id: TransactionId([7; 32]),
            }),
            Verdict::Reject(RejectReason::bad_signature("user signature")),
            Verdict::Reject(RejectReason::UnknownIdentity {
                key: pubkey_of(&key(8)),
                detail: "unknown".into(),
            }),
            Verdict::Reject(RejectReason::malformed("too many tokens")),
        ]
    }

    #[test]
    fn response_sign_verify_round_trip_every_verdict() {
        let auditor = key(9);
        for verdict in all_verdicts() {
            let response = AuditorResponse::sign(
                &auditor,
                TransactionId([1; 32]),
                verdict.clone(),
                Some(3),
                77,
            )
            .unwrap();
            assert_eq!(response.verdict, verdict);
            response.verify(&pubkey_of(&auditor)).unwrap();
            response
                .verify_for(&TransactionId([1; 32]), &pubkey_of(&auditor))
                .unwrap();
            let json = serde_json::to_string(&response).unwrap();
            assert_eq!(
                serde_json::from_str::<AuditorResponse>(&json).unwrap(),
                response
            );
            let bytes = borsh::to_vec(&response).unwrap();
            assert_eq!(
                borsh::from_slice::<AuditorResponse>(&bytes).unwrap(),
                response
            );
        }
    }

    #[test]
    fn response_tampering_detected() {
        let auditor = key(9);
        let expected = pubkey_of(&auditor);
        let response =
            AuditorResponse::sign(&auditor, TransactionId([1; 32]), Verdict::Wait, Some(3), 77)
                .unwrap();
        let bad = ResponseError::BadSignature { auditor: expected };
        let mut r = response.clone();
        r.verdict = Verdict::Deliver;
        assert_eq!(r.verify(&expected), Err(bad.clone()));
        let mut r = response.clone();
        r.block_id = None;
        assert_eq!(r.verify(&expected), Err(bad.clone()));
        let mut r = response.clone();
        r.issued_at += 1;
        assert_eq!(r.verify(&expected), Err(bad.clone()));
        let mut r = response.clone();
        r.transaction_id.0[0] ^= 1;
        assert_eq!(r.verify(&expected), Err(bad.clone()));
        let mut r = response.clone();
        r.signature[3] ^= 1;
        assert_eq!(r.verify(&expected), Err(bad));
        // Another auditor's (valid) response is not the expected auditor's.
        let other =
            AuditorResponse::sign(&key(10), TransactionId([1; 32]), Verdict::Deliver, None, 1)
                .unwrap();
        assert_eq!(
            other.verify(&expected),
            Err(ResponseError::UnexpectedAuditor {
                expected,
                found: pubkey_of(&key(10))
            })
        );
        // A response for another transaction.
        assert!(matches!(
            response.verify_for(&TransactionId([2; 32]), &expected),
            Err(ResponseError::WrongTransaction { .. })
        ));
        // Claiming the expected auditor while signed by another key.
        let mut impostor = other;
        impostor.auditor = expected;
        assert_eq!(
            impostor.verify(&expected),
            Err(ResponseError::BadSignature { auditor: expected })
        );
    }

    #[test]
    fn response_verified_against_registry() {
        let authority = key(1);
        let auditor = key(9);
        let mut registry = Registry::with_authorities([pubkey_of(&authority)]).unwrap();
        let response =
            AuditorResponse::sign(&auditor, TransactionId([1; 32]), Verdict::Deliver, None, 5)
                .unwrap();
        assert!(matches!(
            response.verify_with_registry(&registry, 5),
            Err(ResponseError::AuditorCertificate {
                source: CertError::UnknownIdentity { .. },
                ..
            })
        ));
        registry
            .register(
                Certificate::issue(
                    &authority,
                    pubkey_of(&auditor),
                    Role::Auditor,
                    "aud",
                    0,
                    100,
                )
                .unwrap(),
            )
            .unwrap();
        response.verify_with_registry(&registry, 5).unwrap();
        assert!(matches!(
            response.verify_with_registry(&registry, 100),
            Err(ResponseError::AuditorCertificate {
                source: CertError::Expired { .. },
                ..
            })
        ));
    }

    #[test]
    fn decision_codes_and_reasons() {
        // Borsh carries the program's code after the token id; unknown codes are refused.
        let entry = TokenDecision {
            token: token_id(1),
            decision: Decision::Duplicate,
        };
        let bytes = borsh::to_vec(&entry).unwrap();
        let mut expected = borsh::to_vec(&token_id(1)).unwrap();
        expected.push(0b10);
        assert_eq!(bytes, expected);
        assert_eq!(borsh::from_slice::<TokenDecision>(&bytes).unwrap(), entry);
        let mut undecided = bytes;
        *undecided.last_mut().unwrap() = 0xFF;
        assert!(borsh::from_slice::<TokenDecision>(&undecided).is_err());
        let reason = RejectReason::InvalidTokensInBlock {
            block_id: 4,
            decisions: vec![
                TokenDecision {
                    token: token_id(0),
                    decision: Decision::Valid,
                },
                TokenDecision {
                    token: token_id(1),
                    decision: Decision::Duplicate,
                },
            ],
        };
        let text = reason.to_string();
        assert!(text.contains("1 invalid token"), "{text}");
        assert!(text.contains(&token_id(1).to_string()), "{text}");
        assert!(!text.contains(&token_id(0).to_string()), "{text}");
        let long = RejectReason::malformed("é".repeat(200));
        let RejectReason::Malformed { detail } = long else {
            panic!("variant")
        };
        assert!(detail.len() <= MAX_REASON_DETAIL_LEN && detail.chars().all(|c| c == 'é'));
    }

    #[test]
    fn too_many_decisions_refused() {
        let decisions = vec![
            TokenDecision {
                token: token_id(0),
                decision: Decision::Valid
            };
            MAX_REASON_DECISIONS + 1
        ];
        let verdict = Verdict::Reject(RejectReason::InvalidTokensInBlock {
            block_id: 1,
            decisions,
        });
        assert_eq!(
            AuditorResponse::sign(&key(9), TransactionId([0; 32]), verdict, Some(1), 0),
            Err(ResponseError::TooManyDecisions {
                count: MAX_REASON_DECISIONS + 1,
                max: MAX_REASON_DECISIONS
            })
        );
    }
}

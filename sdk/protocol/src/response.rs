//! Auditor responses to vendors (paper Fig. 1, messages 4/5 and 8/9): deliver now, wait for the
//! block under verification, or reject with a reason. Signed by the auditor over
//! `RESPONSE_SIGN_TAG || borsh(transaction_id, verdict, block_id, issued_at, auditor)`;
//! vendors verify the signature against the auditor they expect (or the registry).

use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::cert::{
    b58, check_signature_encoding, pubkey_of, strict_verifying_key, tagged_borsh, CertError,
    KeyProblem, Registry, Role, SignatureProblem,
};
use crate::reject::{RejectReason, MAX_REASON_DECISIONS};
use crate::transaction::TransactionId;
use crate::Pubkey;

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

/// Domain tag of an auditor response signature.
pub const RESPONSE_SIGN_TAG: &[u8] = b"mupib:response:v1";

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
    use crate::decision::{Decision, TokenDecision};
    use crate::reject::MAX_REASON_DETAIL_LEN;
    use crate::token::TokenId;

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

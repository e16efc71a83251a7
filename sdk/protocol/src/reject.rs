//! Why the auditor rejects a transaction: the compact [`RejectCode`] the engine decides and
//! stores, and the [`RejectReason`] a signed response carries (SPEC §4 "Beyond the paper";
//! paper §4.2 step 4). [`RejectReason::for_code`] is the one place a code becomes a reason.

use std::fmt;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::cert::b58;
use crate::decision::TokenDecision;
use crate::token::TokenId;
use crate::transaction::{Party, SignatureSlot, TransactionId, VerifyError};
use crate::Pubkey;

/// Longest free-text detail carried in a [`RejectReason`] (longer text is cut).
pub const MAX_REASON_DETAIL_LEN: usize = 256;

/// Most per-token decisions carried in one [`RejectReason::InvalidTokensInBlock`].
pub const MAX_REASON_DECISIONS: usize = 10_000;

/// Why the auditor rejected a transaction (stored as a small code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RejectCode {
    /// The user is suspended (W = 0).
    UserSuspended,
    /// A token was already seen by this auditor (double spending at intake).
    DoubleSpending,
    /// The transaction id was already seen (double selling / replay); the vendor is flagged.
    DoubleSelling,
    /// A token's bank signature failed (forged token), reported by the verification layer.
    ForgedToken,
    /// The chain found invalid tokens in the block this transaction was waiting on.
    InvalidBlock,
}

impl RejectCode {
    /// Database code.
    pub const fn code(self) -> u8 {
        match self {
            RejectCode::UserSuspended => 0,
            RejectCode::DoubleSpending => 1,
            RejectCode::DoubleSelling => 2,
            RejectCode::ForgedToken => 3,
            RejectCode::InvalidBlock => 4,
        }
    }

    /// The snake-case name in traces and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            RejectCode::UserSuspended => "user_suspended",
            RejectCode::DoubleSpending => "double_spending",
            RejectCode::DoubleSelling => "double_selling",
            RejectCode::ForgedToken => "forged_token",
            RejectCode::InvalidBlock => "invalid_block",
        }
    }

    /// From a database code.
    pub const fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => RejectCode::UserSuspended,
            1 => RejectCode::DoubleSpending,
            2 => RejectCode::DoubleSelling,
            3 => RejectCode::ForgedToken,
            4 => RejectCode::InvalidBlock,
            _ => return None,
        })
    }
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

/// What a rejection names besides its code: the parties, the transaction, the offending token
/// (intake rejections) and the block with its invalid tokens (block rejections).
#[derive(Debug, Clone, Copy)]
pub struct RejectContext<'a> {
    /// The paying user.
    pub user: Pubkey,
    /// The vendor presenting the transaction.
    pub vendor: Pubkey,
    /// The transaction.
    pub transaction_id: TransactionId,
    /// The first offending token (double spending or forgery at intake), when known.
    pub token: Option<TokenId>,
    /// The block the transaction is in, if any.
    pub block_id: Option<u64>,
    /// The block's invalid tokens with their decisions.
    pub invalid: &'a [TokenDecision],
}

impl RejectReason {
    /// The reason a signed response gives for `code`.
    pub fn for_code(code: RejectCode, context: &RejectContext<'_>) -> RejectReason {
        match (code, context.token) {
            (RejectCode::UserSuspended, _) => RejectReason::UserSuspended { user: context.user },
            (RejectCode::DoubleSelling, _) => RejectReason::DoubleSelling {
                vendor: context.vendor,
                transaction_id: context.transaction_id,
            },
            (RejectCode::DoubleSpending, Some(token)) => {
                RejectReason::DoubleSpendingAtIntake { token }
            }
            (RejectCode::ForgedToken, Some(token)) => RejectReason::ForgedToken { token },
            (RejectCode::InvalidBlock, _) => match context.block_id {
                Some(block_id) => RejectReason::InvalidTokensInBlock {
                    block_id,
                    decisions: context.invalid.to_vec(),
                },
                None => RejectReason::malformed("rejected: its block holds invalid tokens"),
            },
            (RejectCode::DoubleSpending, None) => RejectReason::malformed(
                "rejected at intake: a token was already spent (double spending)",
            ),
            (RejectCode::ForgedToken, None) => {
                RejectReason::malformed("rejected at intake: a token's bank signature is forged")
            }
        }
    }

    /// The reason's snake-case name, as its JSON `reason` tag: `invalid_tokens_in_block`,
    /// `user_suspended`, `forged_token`, `double_spending_at_intake`, `double_selling`,
    /// `bad_signature`, `unknown_identity`, `malformed`.
    pub const fn name(&self) -> &'static str {
        match self {
            RejectReason::InvalidTokensInBlock { .. } => "invalid_tokens_in_block",
            RejectReason::UserSuspended { .. } => "user_suspended",
            RejectReason::ForgedToken { .. } => "forged_token",
            RejectReason::DoubleSpendingAtIntake { .. } => "double_spending_at_intake",
            RejectReason::DoubleSelling { .. } => "double_selling",
            RejectReason::BadSignature { .. } => "bad_signature",
            RejectReason::UnknownIdentity { .. } => "unknown_identity",
            RejectReason::Malformed { .. } => "malformed",
        }
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
    pub(crate) fn normalized(&self) -> RejectReason {
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
                    .map(|d| format!("{}: {}", d.token, d.decision.meaning()))
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
                slot: SignatureSlot::Token { index },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_codes_round_trip_and_name_themselves() {
        for code in [
            RejectCode::UserSuspended,
            RejectCode::DoubleSpending,
            RejectCode::DoubleSelling,
            RejectCode::ForgedToken,
            RejectCode::InvalidBlock,
        ] {
            assert_eq!(RejectCode::from_code(code.code()), Some(code));
        }
        assert_eq!(RejectCode::from_code(5), None);
        assert_eq!(RejectCode::InvalidBlock.name(), "invalid_block");
    }

    #[test]
    fn reason_name_is_its_json_tag() {
        let user = Pubkey::new_from_array([1; 32]);
        let reasons = [
            RejectReason::UserSuspended { user },
            RejectReason::malformed("x"),
            RejectReason::bad_signature("y"),
            RejectReason::InvalidTokensInBlock {
                block_id: 1,
                decisions: Vec::new(),
            },
        ];
        for reason in reasons {
            let json = serde_json::to_value(&reason).expect("json");
            assert_eq!(json["reason"], reason.name());
        }
    }
}

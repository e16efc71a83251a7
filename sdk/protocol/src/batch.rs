//! A bank's batch as the auditor checks its tokens against it at intake (SPEC §3 "a bank
//! publishes a batch"; issue: intake checks a token against its batch). A token is taken in only
//! if its batch is published for this auditor and sealed, carries the token's value, and stays
//! redeemable long enough for the token's block to be verified: otherwise the chain would decide
//! it unpublished (or pay less than the vendors were credited), and the auditor would lose.
//!
//! [`BatchDirectory`] is the port the service reads batches through (the chain crate reads the
//! `Batch` accounts bound to the auditor).

use serde::{Deserialize, Serialize};

use crate::token::{TokenId, TokenRef};
use crate::Pubkey;

/// What the auditor needs to know of a batch to take in its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchTerms {
    /// Value of each token, in base units.
    pub value: u64,
    /// Tokens in the batch (serials `0..token_count`).
    pub token_count: u32,
    /// Every commitment is written and the tokens are redeemable.
    pub sealed: bool,
    /// After this time (Unix seconds, plus the program's grace period) the bank may close it.
    pub expires_at: i64,
}

/// Why a token cannot be taken in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unredeemable {
    /// No batch of this bank and id is published for this auditor.
    #[error("token {token}: its batch is not published for this auditor (no such batch, or bound to another auditor)")]
    NoBatch {
        /// The token.
        token: TokenId,
    },
    /// The batch is not sealed yet.
    #[error("token {token}: its batch is not sealed yet, so its tokens are not redeemable")]
    NotSealed {
        /// The token.
        token: TokenId,
    },
    /// The serial is outside the batch.
    #[error("token {token}: serial beyond the batch's {token_count} tokens")]
    SerialOutOfRange {
        /// The token.
        token: TokenId,
        /// The batch's size.
        token_count: u32,
    },
    /// The token says it is worth another value than its batch pays.
    #[error("token {token} carries value {token_value} but its batch pays {batch_value} per token: refused, the escrow would not cover it")]
    ValueMismatch {
        /// The token.
        token: TokenId,
        /// The value the token carries.
        token_value: u64,
        /// The batch's value.
        batch_value: u64,
    },
    /// The batch expires before the token's block can be verified.
    #[error("token {token}: its batch expires at {expires_at}, before {needed_until} (now + {min_life} s, the time its block may take to be verified)")]
    ExpiresTooSoon {
        /// The token.
        token: TokenId,
        /// The batch's expiry.
        expires_at: i64,
        /// The earliest expiry accepted now.
        needed_until: i64,
        /// The remaining life required, in seconds.
        min_life: i64,
    },
}

/// Checks that `token` can be taken in at `now` given its batch's `terms` (`None`: no batch for
/// this auditor), requiring the batch to live `min_life` more seconds.
///
/// # Errors
/// The first reason the token cannot be taken in.
pub fn check_redeemable(
    token: &TokenRef,
    terms: Option<&BatchTerms>,
    now: i64,
    min_life: i64,
) -> Result<(), Unredeemable> {
    let id = token.id;
    let terms = terms.ok_or(Unredeemable::NoBatch { token: id })?;
    if !terms.sealed {
        return Err(Unredeemable::NotSealed { token: id });
    }
    if id.serial >= terms.token_count {
        return Err(Unredeemable::SerialOutOfRange {
            token: id,
            token_count: terms.token_count,
        });
    }
    if token.value != terms.value {
        return Err(Unredeemable::ValueMismatch {
            token: id,
            token_value: token.value,
            batch_value: terms.value,
        });
    }
    let needed_until = now.saturating_add(min_life);
    if terms.expires_at < needed_until {
        return Err(Unredeemable::ExpiresTooSoon {
            token: id,
            expires_at: terms.expires_at,
            needed_until,
            min_life,
        });
    }
    Ok(())
}

/// Errors of a batch lookup (the chain could not be read).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("batch lookup: {0}")]
pub struct BatchLookupError(pub String);

/// Where the auditor reads batches.
pub trait BatchDirectory: Send + Sync {
    /// The terms of `bank`'s batch `batch_id` as published for this auditor, `None` when there
    /// is none.
    ///
    /// # Errors
    /// [`BatchLookupError`] when the chain cannot be read.
    fn batch_terms(
        &self,
        bank: &Pubkey,
        batch_id: u64,
    ) -> Result<Option<BatchTerms>, BatchLookupError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(serial: u32, value: u64) -> TokenRef {
        TokenRef {
            id: TokenId {
                bank: Pubkey::new_from_array([1; 32]),
                batch_id: 3,
                serial,
            },
            value,
            digest: [0; 16],
        }
    }

    const TERMS: BatchTerms = BatchTerms {
        value: 100,
        token_count: 10,
        sealed: true,
        expires_at: 10_000,
    };

    #[test]
    fn redeemable_token_passes_and_each_problem_is_named() {
        assert_eq!(
            check_redeemable(&token(9, 100), Some(&TERMS), 1_000, 9_000),
            Ok(())
        );
        assert_eq!(
            check_redeemable(&token(0, 100), None, 1_000, 60),
            Err(Unredeemable::NoBatch {
                token: token(0, 100).id
            })
        );
        let unsealed = BatchTerms {
            sealed: false,
            ..TERMS
        };
        assert!(matches!(
            check_redeemable(&token(0, 100), Some(&unsealed), 1_000, 60),
            Err(Unredeemable::NotSealed { .. })
        ));
        assert!(matches!(
            check_redeemable(&token(10, 100), Some(&TERMS), 1_000, 60),
            Err(Unredeemable::SerialOutOfRange {
                token_count: 10,
                ..
            })
        ));
        assert!(matches!(
            check_redeemable(&token(0, 101), Some(&TERMS), 1_000, 60),
            Err(Unredeemable::ValueMismatch {
                token_value: 101,
                batch_value: 100,
                ..
            })
        ));
        let error = check_redeemable(&token(0, 100), Some(&TERMS), 1_000, 9_001).unwrap_err();
        assert_eq!(
            error,
            Unredeemable::ExpiresTooSoon {
                token: token(0, 100).id,
                expires_at: 10_000,
                needed_until: 10_001,
                min_life: 9_001,
            }
        );
        assert!(error.to_string().contains("10001"), "{error}");
    }
}

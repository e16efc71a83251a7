//! Risk accounting, paper eqs. (10)–(13) (SPEC §4 "Risk").
//!
//! The risk of block n for user u is what the auditor paid vendors minus what the escrows paid it
//! for the block's delivered transactions. Its transactions are tr_1..tr_p, in block order; tr_p
//! is the one that completed the block and waited for the chain:
//!
//! - valid block, eq. (10): Rsk_n = −(tokens in block)·v·ρ — negative, the auditor's margin;
//! - invalid block, eqs. (11)–(12): Rsk_n = v·Σ_{i<p}(β_i − ρ·|tr_i|) — the loss on what was paid
//!   out for tr_1..tr_{p−1}; tr_p is rejected and its valid tokens refunded, so it nets to zero;
//! - the long-run risk of a user is the sum over blocks ([`RiskAccount`]);
//! - Proposition 2, eq. (13): with t tokens per transaction, at most one invalid token per
//!   transaction and π the probability that a transaction has one, the average block risk is
//!   v·(π − tρ)·(⌈W/t⌉ − 1) ([`proposition2_average_risk`]).
//!
//! Risk is a measure, not money: [`block_risk`] gives it in `f64` (for the simulation and
//! reports). [`block_risk_scaled`] gives the same quantity exactly, as an integer in units of
//! v/10000 (value base units × basis points), so Rsk = scaled / 10000 with no rounding. Actual
//! money flows, with payouts rounded down to base units, are in [`crate::money::BlockSettlement`];
//! its `realized_risk` equals this risk rounded by at most one base unit per paid transaction.

use serde::{Deserialize, Serialize};

use crate::money::{Withholding, BPS_PER_UNIT};

/// Errors of the risk computations.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RiskError {
    /// A block without transactions has no risk to compute.
    #[error("a block has at least one transaction: the last one (tr_p) is the waiting one")]
    EmptyBlock,
    /// A transaction with more invalid tokens than tokens.
    #[error("transaction {index} has {invalid_tokens} invalid tokens out of {tokens}: counts are inconsistent")]
    InvalidExceedsTokens {
        /// Position in the block.
        index: usize,
        /// |tr_i|.
        tokens: u64,
        /// β_i.
        invalid_tokens: u64,
    },
    /// The exact risk does not fit in i128.
    #[error(
        "risk overflow: the exact risk exceeds i128; token values or counts are implausibly large"
    )]
    Overflow,
    /// Proposition 2 needs t ≥ 1 tokens per transaction.
    #[error("tokens per transaction must be at least 1")]
    ZeroTokensPerTransaction,
    /// A probability outside [0, 1] or not finite.
    #[error("probability {value} is not within [0, 1]")]
    InvalidProbability {
        /// The rejected value.
        value: f64,
    },
}

/// The counts of one transaction of a block: |tr_i| and β_i.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct TransactionCounts {
    /// |tr_i|, tokens in the transaction.
    pub tokens: u64,
    /// β_i, tokens the chain did not declare valid.
    pub invalid_tokens: u64,
}

impl TransactionCounts {
    /// |tr| = `tokens`, β = `invalid_tokens`.
    pub const fn new(tokens: u64, invalid_tokens: u64) -> Self {
        TransactionCounts {
            tokens,
            invalid_tokens,
        }
    }
}

/// An exact risk in units of v/10000: Rsk = `self.0` / 10000 token-value base units.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct ScaledRisk(pub i128);

impl ScaledRisk {
    /// Zero risk.
    pub const ZERO: ScaledRisk = ScaledRisk(0);

    /// The risk in base units as `f64`.
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / f64::from(BPS_PER_UNIT)
    }

    /// `self + other`.
    ///
    /// # Errors
    /// [`RiskError::Overflow`].
    pub fn checked_add(self, other: ScaledRisk) -> Result<ScaledRisk, RiskError> {
        self.0
            .checked_add(other.0)
            .map(ScaledRisk)
            .ok_or(RiskError::Overflow)
    }
}

/// Validates a block: non-empty, β_i ≤ |tr_i|; returns whether it is valid (no invalid token).
fn block_is_valid(transactions: &[TransactionCounts]) -> Result<bool, RiskError> {
    if transactions.is_empty() {
        return Err(RiskError::EmptyBlock);
    }
    let mut valid = true;
    for (index, tx) in transactions.iter().enumerate() {
        if tx.invalid_tokens > tx.tokens {
            return Err(RiskError::InvalidExceedsTokens {
                index,
                tokens: tx.tokens,
                invalid_tokens: tx.invalid_tokens,
            });
        }
        valid &= tx.invalid_tokens == 0;
    }
    Ok(valid)
}

/// Eq. (10), a valid block of `block_tokens` tokens: −(tokens)·v·ρ.
pub fn valid_block_risk(block_tokens: u64, token_value: u64, withholding: Withholding) -> f64 {
    -(block_tokens as f64) * token_value as f64 * withholding.fraction()
}

/// Eq. (12), an invalid block whose already-delivered transactions tr_1..tr_{p−1} are `delivered`
/// (the rejected tr_p is not part of it): v·Σ_{i<p}(β_i − ρ·|tr_i|).
pub fn invalid_block_risk(
    delivered: &[TransactionCounts],
    token_value: u64,
    withholding: Withholding,
) -> f64 {
    let rho = withholding.fraction();
    let sum: f64 = delivered
        .iter()
        .map(|tx| tx.invalid_tokens as f64 - rho * tx.tokens as f64)
        .sum();
    token_value as f64 * sum
}

/// Eqs. (10)–(12) for a decided block: `transactions` are tr_1..tr_p in block order, the last one
/// (tr_p) the waiting one. Valid (every β_i = 0): eq. (10); otherwise eq. (12) over tr_1..tr_{p−1}.
///
/// # Errors
/// [`RiskError::EmptyBlock`], [`RiskError::InvalidExceedsTokens`].
pub fn block_risk(
    transactions: &[TransactionCounts],
    token_value: u64,
    withholding: Withholding,
) -> Result<f64, RiskError> {
    Ok(block_risk_scaled(transactions, token_value, withholding)?.to_f64())
}

/// [`block_risk`] exactly, as an integer in units of v/10000:
/// valid: −v·bps·Σ|tr_i|; invalid: v·Σ_{i<p}(10000·β_i − bps·|tr_i|).
///
/// # Errors
/// [`RiskError::EmptyBlock`], [`RiskError::InvalidExceedsTokens`], [`RiskError::Overflow`].
pub fn block_risk_scaled(
    transactions: &[TransactionCounts],
    token_value: u64,
    withholding: Withholding,
) -> Result<ScaledRisk, RiskError> {
    let valid = block_is_valid(transactions)?;
    let bps = i128::from(withholding.bps());
    let unit = i128::from(BPS_PER_UNIT);
    let counted = if valid {
        transactions
    } else {
        // tr_p (the last) is rejected: eq. (12) sums over i < p. Non-empty checked above.
        &transactions[..transactions.len() - 1]
    };
    let mut sum: i128 = 0;
    for tx in counted {
        let withheld = bps
            .checked_mul(i128::from(tx.tokens))
            .ok_or(RiskError::Overflow)?;
        let term = if valid {
            // eq. (10): −ρ·|tr_i| per transaction
            withheld.checked_neg().ok_or(RiskError::Overflow)?
        } else {
            // eq. (12): β_i − ρ·|tr_i|
            unit.checked_mul(i128::from(tx.invalid_tokens))
                .and_then(|invalid| invalid.checked_sub(withheld))
                .ok_or(RiskError::Overflow)?
        };
        sum = sum.checked_add(term).ok_or(RiskError::Overflow)?;
    }
    sum.checked_mul(i128::from(token_value))
        .map(ScaledRisk)
        .ok_or(RiskError::Overflow)
}

/// A user's long-run risk, Rsk = Σ_n Rsk_n (§5), exact and as `f64`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RiskAccount {
    /// Blocks recorded.
    pub blocks: u64,
    /// Of which invalid.
    pub invalid_blocks: u64,
    /// Σ Rsk_n exactly, in units of v/10000.
    pub total_scaled: ScaledRisk,
}

impl RiskAccount {
    /// An empty account.
    pub const fn new() -> Self {
        RiskAccount {
            blocks: 0,
            invalid_blocks: 0,
            total_scaled: ScaledRisk::ZERO,
        }
    }

    /// Records a decided block (see [`block_risk`]) and returns its risk. On error the account is
    /// unchanged.
    ///
    /// # Errors
    /// As [`block_risk_scaled`]; [`RiskError::Overflow`] if the total overflows.
    pub fn record(
        &mut self,
        transactions: &[TransactionCounts],
        token_value: u64,
        withholding: Withholding,
    ) -> Result<ScaledRisk, RiskError> {
        let risk = block_risk_scaled(transactions, token_value, withholding)?;
        let invalid = !block_is_valid(transactions)?;
        let total_scaled = self.total_scaled.checked_add(risk)?;
        let blocks = self.blocks.checked_add(1).ok_or(RiskError::Overflow)?;
        let invalid_blocks = self
            .invalid_blocks
            .checked_add(u64::from(invalid))
            .ok_or(RiskError::Overflow)?;
        *self = RiskAccount {
            blocks,
            invalid_blocks,
            total_scaled,
        };
        Ok(risk)
    }

    /// Σ Rsk_n in base units.
    pub fn total(&self) -> f64 {
        self.total_scaled.to_f64()
    }

    /// The average risk per block, `None` before the first block.
    pub fn average_per_block(&self) -> Option<f64> {
        (self.blocks > 0).then(|| self.total() / self.blocks as f64)
    }
}

/// Checks t ≥ 1 and π ∈ [0, 1]; returns p = ⌈W/t⌉, the transactions in a block of size W.
fn transactions_per_block(
    invalid_probability: f64,
    tokens_per_transaction: u64,
    block_size: u64,
) -> Result<u64, RiskError> {
    if tokens_per_transaction == 0 {
        return Err(RiskError::ZeroTokensPerTransaction);
    }
    if !(0.0..=1.0).contains(&invalid_probability) {
        return Err(RiskError::InvalidProbability {
            value: invalid_probability,
        });
    }
    Ok(block_size.div_ceil(tokens_per_transaction))
}

/// Proposition 2, eq. (13): the average block risk v·(π − tρ)·(⌈W/t⌉ − 1) for transactions of t
/// tokens, each holding one invalid token with probability π (and never more than one).
///
/// It is the expectation of eq. (12)'s expression v·Σ_{i<p}(β_i − ρt) over *every* block, as the
/// paper's proof computes it; for a valid block eq. (10) also counts tr_p's margin, so the true
/// mean of eqs. (10)–(12) is lower by v·t·ρ·(1 − π)^p: see [`expected_block_risk`]. W = 0 (a
/// suspended user, no block) gives 0.
///
/// # Errors
/// [`RiskError::ZeroTokensPerTransaction`], [`RiskError::InvalidProbability`].
pub fn proposition2_average_risk(
    token_value: f64,
    invalid_probability: f64,
    tokens_per_transaction: u64,
    withholding: f64,
    block_size: u64,
) -> Result<f64, RiskError> {
    let p = transactions_per_block(invalid_probability, tokens_per_transaction, block_size)?;
    if p == 0 {
        return Ok(0.0);
    }
    let t = tokens_per_transaction as f64;
    Ok(token_value * (invalid_probability - t * withholding) * (p - 1) as f64)
}

/// The exact mean of eqs. (10)–(12) per block under Proposition 2's assumptions (fixed W, p =
/// ⌈W/t⌉ transactions of t tokens, each independently holding one invalid token with
/// probability π): v·(p − 1)·(π − tρ) − v·t·ρ·(1 − π)^p. The second term is tr_p's margin in a
/// valid block, which eq. (13) leaves out. W = 0 gives 0.
///
/// # Errors
/// [`RiskError::ZeroTokensPerTransaction`], [`RiskError::InvalidProbability`].
pub fn expected_block_risk(
    token_value: f64,
    invalid_probability: f64,
    tokens_per_transaction: u64,
    withholding: f64,
    block_size: u64,
) -> Result<f64, RiskError> {
    let p = transactions_per_block(invalid_probability, tokens_per_transaction, block_size)?;
    if p == 0 {
        return Ok(0.0);
    }
    let t = tokens_per_transaction as f64;
    let all_valid = (1.0 - invalid_probability).powf(p as f64);
    Ok(
        token_value * (p - 1) as f64 * (invalid_probability - t * withholding)
            - token_value * t * withholding * all_valid,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bps(value: u16) -> Withholding {
        Withholding::from_bps(value).unwrap()
    }

    fn tx(tokens: u64, invalid: u64) -> TransactionCounts {
        TransactionCounts::new(tokens, invalid)
    }

    #[test]
    fn risk_valid_block_eq10() {
        // Three transactions of 5 tokens, v = 10, ρ = 20 %: −15·10·0.2 = −30.
        let block = [tx(5, 0), tx(5, 0), tx(5, 0)];
        assert_eq!(
            block_risk_scaled(&block, 10, bps(2000)).unwrap(),
            ScaledRisk(-300_000)
        );
        assert!((block_risk(&block, 10, bps(2000)).unwrap() + 30.0).abs() < 1e-12);
        assert!((valid_block_risk(15, 10, bps(2000)) + 30.0).abs() < 1e-12);
    }

    #[test]
    fn risk_invalid_block_eq12() {
        // tr1 = 5 tokens (β 0), tr2 = 5 (β 1), tr3 waiting = 5 (β 0); v = 10, ρ = 20 %:
        // eq. (12): 10·((0 − 0.2·5) + (1 − 0.2·5)) = 10·(−1 + 0) = −10.
        // eq. (11) agrees: paid 10·10·0.8 = 80, received 9·10 = 90, 80 − 90 = −10.
        let block = [tx(5, 0), tx(5, 1), tx(5, 0)];
        assert_eq!(
            block_risk_scaled(&block, 10, bps(2000)).unwrap(),
            ScaledRisk(-100_000)
        );
        assert!((block_risk(&block, 10, bps(2000)).unwrap() + 10.0).abs() < 1e-12);
        assert!((invalid_block_risk(&block[..2], 10, bps(2000)) + 10.0).abs() < 1e-12);
    }

    #[test]
    fn risk_invalid_block_loss_ignores_waiting_transaction() {
        // tr1 = 4 tokens with 3 invalid, tr2 (waiting) = 2 tokens both invalid; v = 7, ρ = 25 %:
        // only tr1 counts: 7·(3 − 0.25·4) = 7·2 = 14.
        let block = [tx(4, 3), tx(2, 2)];
        assert_eq!(block_risk(&block, 7, bps(2500)).unwrap(), 14.0);
        // A single (waiting) transaction that is invalid: nothing was paid out, no risk.
        assert_eq!(block_risk(&[tx(6, 1)], 7, bps(2500)).unwrap(), 0.0);
        // A single valid one: −6·7·0.25 = −10.5.
        assert_eq!(block_risk(&[tx(6, 0)], 7, bps(2500)).unwrap(), -10.5);
    }

    #[test]
    fn risk_rejects_empty_and_inconsistent_blocks() {
        assert_eq!(block_risk(&[], 1, bps(0)), Err(RiskError::EmptyBlock));
        assert!(matches!(
            block_risk(&[tx(1, 0), tx(2, 3)], 1, bps(0)),
            Err(RiskError::InvalidExceedsTokens { index: 1, .. })
        ));
    }

    #[test]
    fn risk_overflow_is_an_error() {
        let block = [tx(u64::MAX, u64::MAX), tx(1, 0)];
        assert_eq!(
            block_risk_scaled(&block, u64::MAX, bps(0)),
            Err(RiskError::Overflow)
        );
    }

    #[test]
    fn risk_account_sums_blocks() {
        let mut account = RiskAccount::new();
        assert_eq!(account.average_per_block(), None);
        // −30 (valid) then −10 (invalid) then +14 (v = 10 here: 10·(3 − 0.25·4) = 20)
        account
            .record(&[tx(5, 0), tx(5, 0), tx(5, 0)], 10, bps(2000))
            .unwrap();
        account
            .record(&[tx(5, 0), tx(5, 1), tx(5, 0)], 10, bps(2000))
            .unwrap();
        account
            .record(&[tx(4, 3), tx(2, 2)], 10, bps(2500))
            .unwrap();
        assert_eq!(account.blocks, 3);
        assert_eq!(account.invalid_blocks, 2);
        assert_eq!(account.total(), -30.0 - 10.0 + 20.0);
        assert_eq!(account.average_per_block(), Some(-20.0 / 3.0));
        // A failing record leaves the account as it was.
        let before = account;
        assert!(account.record(&[], 10, bps(2000)).is_err());
        assert_eq!(account, before);
    }

    #[test]
    fn risk_proposition2_hand_values() {
        // v = 1, π = 0.3, t = 5, ρ = 0.2, W = 100: p = 20, (0.3 − 1)·19 = −13.3.
        let r = proposition2_average_risk(1.0, 0.3, 5, 0.2, 100).unwrap();
        assert!((r + 13.3).abs() < 1e-12);
        // W = 102: p = ⌈102/5⌉ = 21, (0.3 − 1)·20 = −14.
        let r = proposition2_average_risk(1.0, 0.3, 5, 0.2, 102).unwrap();
        assert!((r + 14.0).abs() < 1e-12);
        // tρ = π: null average risk.
        assert_eq!(
            proposition2_average_risk(3.0, 0.5, 5, 0.1, 100).unwrap(),
            0.0
        );
        // The exact mean adds tr_p's margin in valid blocks: −13.3 − 5·0.2·0.7^20.
        let e = expected_block_risk(1.0, 0.3, 5, 0.2, 100).unwrap();
        assert!((e - (-13.3 - 0.7f64.powi(20))).abs() < 1e-12);
        assert_eq!(proposition2_average_risk(1.0, 0.3, 5, 0.2, 0).unwrap(), 0.0);
        assert_eq!(
            proposition2_average_risk(1.0, 0.3, 0, 0.2, 10),
            Err(RiskError::ZeroTokensPerTransaction)
        );
        assert!(proposition2_average_risk(1.0, 1.5, 5, 0.2, 10).is_err());
        assert!(expected_block_risk(1.0, f64::NAN, 5, 0.2, 10).is_err());
    }
}

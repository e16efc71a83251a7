//! Money arithmetic: the withholding ρ, token amounts, vendor payouts and per-block money flows
//! (paper §4.2 step 3, §5; SPEC §4 "Payouts" and "Money must balance").
//!
//! Amounts are integers in the token's base units ([`Amount`], a `u64`), every operation checked;
//! u128 only as an intermediate. The withholding is an exact fraction in basis points
//! ([`Withholding`]: 20 % = 2000 bps).
//!
//! # Rounding
//!
//! A vendor is owed v·(1−ρ) per delivered token. Per transaction the payout is
//! ⌊face value · (10000 − bps) / 10000⌋: payouts round **down**, and the remainder stays with the
//! auditor as part of its margin, so the flows of a block always balance to the base unit
//! ([`BlockSettlement::check_balance`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Basis points in a whole (100 %).
pub const BPS_PER_UNIT: u16 = 10_000;

/// Errors of the money arithmetic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// A sum or product does not fit in u64 base units.
    #[error("amount overflow in {operation}: the result exceeds u64 base units; check the token values and counts")]
    Overflow {
        /// What was being computed.
        operation: &'static str,
    },
    /// A subtraction would go below zero.
    #[error("amount underflow in {operation}: the result would be negative")]
    Underflow {
        /// What was being computed.
        operation: &'static str,
    },
    /// A withholding above 100 %.
    #[error(
        "withholding of {bps} bps exceeds 100 % (10000 bps): choose a fraction between 0 and 1"
    )]
    WithholdingAboveFull {
        /// The rejected value in basis points (saturated at u32::MAX).
        bps: u32,
    },
    /// A withholding string that does not parse.
    #[error(
        "cannot parse withholding {given:?}: {reason}; write it as \"20%\", \"0.2\" or \"2000bps\""
    )]
    ParseWithholding {
        /// The rejected input.
        given: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// A transaction's counts or values contradict each other.
    #[error("inconsistent transaction in settlement: {reason}")]
    InconsistentTransaction {
        /// What was wrong.
        reason: &'static str,
    },
    /// The block's money flows do not balance (a bug: report it).
    #[error("block money flows do not balance: escrow paid {escrow_paid} but payouts {vendor_payouts} + refunds {refunds} + margin {margin} − loss {loss} differs")]
    Unbalanced {
        /// What the escrow paid the auditor.
        escrow_paid: Amount,
        /// Vendor payouts.
        vendor_payouts: Amount,
        /// User refunds.
        refunds: Amount,
        /// Auditor margin.
        margin: Amount,
        /// Auditor loss.
        loss: Amount,
    },
}

/// An amount of money in token base units.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Amount(pub u64);

impl Amount {
    /// Zero.
    pub const ZERO: Amount = Amount(0);

    /// The amount in base units.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// `self + other`.
    ///
    /// # Errors
    /// [`MoneyError::Overflow`] when the sum exceeds u64.
    pub fn checked_add(self, other: Amount) -> Result<Amount, MoneyError> {
        self.0
            .checked_add(other.0)
            .map(Amount)
            .ok_or(MoneyError::Overflow {
                operation: "addition",
            })
    }

    /// `self − other`.
    ///
    /// # Errors
    /// [`MoneyError::Underflow`] when `other > self`.
    pub fn checked_sub(self, other: Amount) -> Result<Amount, MoneyError> {
        self.0
            .checked_sub(other.0)
            .map(Amount)
            .ok_or(MoneyError::Underflow {
                operation: "subtraction",
            })
    }

    /// `self × count`.
    ///
    /// # Errors
    /// [`MoneyError::Overflow`] when the product exceeds u64.
    pub fn checked_mul(self, count: u64) -> Result<Amount, MoneyError> {
        self.0
            .checked_mul(count)
            .map(Amount)
            .ok_or(MoneyError::Overflow {
                operation: "multiplication",
            })
    }

    /// The face value of `tokens` tokens of value `token_value` each.
    ///
    /// # Errors
    /// [`MoneyError::Overflow`] when the product exceeds u64.
    pub fn of_tokens(tokens: u64, token_value: Amount) -> Result<Amount, MoneyError> {
        token_value
            .0
            .checked_mul(tokens)
            .map(Amount)
            .ok_or(MoneyError::Overflow {
                operation: "tokens × token value",
            })
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u64> for Amount {
    fn from(value: u64) -> Self {
        Amount(value)
    }
}

/// The withholding ρ on each token payment, a fraction stored exactly in basis points
/// (20 % = 0.2 = 2000 bps; table 2's "20" is 20 %). Always within [0, 100 %].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(try_from = "u16", into = "u16")]
pub struct Withholding {
    bps: u16,
}

impl Withholding {
    /// No withholding: vendors receive the full face value.
    pub const ZERO: Withholding = Withholding { bps: 0 };
    /// 100 %: vendors receive nothing.
    pub const FULL: Withholding = Withholding { bps: BPS_PER_UNIT };

    /// A withholding of `bps` basis points.
    ///
    /// # Errors
    /// [`MoneyError::WithholdingAboveFull`] above 10000 bps.
    pub fn from_bps(bps: u16) -> Result<Self, MoneyError> {
        if bps > BPS_PER_UNIT {
            return Err(MoneyError::WithholdingAboveFull {
                bps: u32::from(bps),
            });
        }
        Ok(Withholding { bps })
    }

    /// The withholding in basis points, 0..=10000.
    pub const fn bps(self) -> u16 {
        self.bps
    }

    /// The share the vendor keeps, 1 − ρ, in basis points.
    pub const fn retained_bps(self) -> u16 {
        // bps ≤ BPS_PER_UNIT is an invariant of the type.
        BPS_PER_UNIT - self.bps
    }

    /// ρ as a fraction in [0, 1] (for trust/risk math and the simulation only, never for money).
    pub fn fraction(self) -> f64 {
        f64::from(self.bps) / f64::from(BPS_PER_UNIT)
    }
}

impl TryFrom<u16> for Withholding {
    type Error = MoneyError;

    fn try_from(bps: u16) -> Result<Self, Self::Error> {
        Withholding::from_bps(bps)
    }
}

impl From<Withholding> for u16 {
    fn from(withholding: Withholding) -> Self {
        withholding.bps
    }
}

impl fmt::Display for Withholding {
    /// As a percentage: `20%`, `12.5%`, `0.01%`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.bps / 100;
        let hundredths = format!("{:02}", self.bps % 100);
        let decimals = hundredths.trim_end_matches('0');
        if decimals.is_empty() {
            write!(f, "{whole}%")
        } else {
            write!(f, "{whole}.{decimals}%")
        }
    }
}

impl FromStr for Withholding {
    type Err = MoneyError;

    /// Parses `"20%"` (percent, up to two decimals), `"0.2"` (a fraction, up to four decimals) or
    /// `"2000bps"` (basis points). A bare number is a fraction, so `"20"` is rejected as 2000 %;
    /// write `"20%"`. Anything above 100 % or finer than one basis point is rejected.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let given = s.trim();
        let fail = |reason| MoneyError::ParseWithholding {
            given: s.to_owned(),
            reason,
        };
        let lower = given.to_ascii_lowercase();
        let bps: u64 = if let Some(number) = lower.strip_suffix("bps") {
            parse_scaled_decimal(number.trim_end(), 0).map_err(fail)?
        } else if let Some(number) = lower.strip_suffix('%') {
            parse_scaled_decimal(number.trim_end(), 2).map_err(fail)?
        } else {
            parse_scaled_decimal(&lower, 4).map_err(fail)?
        };
        if bps > u64::from(BPS_PER_UNIT) {
            return Err(MoneyError::WithholdingAboveFull {
                bps: u32::try_from(bps).unwrap_or(u32::MAX),
            });
        }
        let bps = u16::try_from(bps).map_err(|_| fail("value out of range"))?;
        Withholding::from_bps(bps)
    }
}

/// Parses a non-negative decimal `digits[.digits]` and returns it × 10^`scale` exactly.
fn parse_scaled_decimal(text: &str, scale: u32) -> Result<u64, &'static str> {
    if text.is_empty() {
        return Err("no number");
    }
    if text.starts_with('-') {
        return Err("a withholding cannot be negative");
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err("no digits");
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a decimal number");
    }
    let fraction = fraction.trim_end_matches('0');
    let fraction_len = u32::try_from(fraction.len()).map_err(|_| "too many decimals")?;
    if fraction_len > scale {
        return Err("finer than one basis point");
    }
    let too_large = "value out of range";
    let mut value: u64 = 0;
    for digit in whole.bytes().chain(fraction.bytes()) {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(digit - b'0')))
            .ok_or(too_large)?;
    }
    let pad = 10u64.checked_pow(scale - fraction_len).ok_or(too_large)?;
    value.checked_mul(pad).ok_or(too_large)
}

/// What the vendor is owed for a delivered transaction of face value `face_value`:
/// ⌊face_value · (1 − ρ)⌋, rounded down (the remainder is the auditor's margin). Never exceeds
/// `face_value`.
pub fn payout_of(face_value: Amount, withholding: Withholding) -> Amount {
    let scaled = u128::from(face_value.0) * u128::from(withholding.retained_bps());
    let payout = scaled / u128::from(BPS_PER_UNIT);
    // payout ≤ face_value ≤ u64::MAX, so the conversion cannot fail; fall back to face_value.
    Amount(u64::try_from(payout).unwrap_or(face_value.0))
}

/// The vendor payout for `tokens` delivered tokens of value v = `token_value`: ⌊tokens·v·(1 − ρ)⌋
/// (paper §4.2 step 3), rounded down per transaction.
///
/// # Errors
/// [`MoneyError::Overflow`] if tokens·v exceeds u64.
pub fn vendor_payout(
    tokens: u64,
    token_value: Amount,
    withholding: Withholding,
) -> Result<Amount, MoneyError> {
    Ok(payout_of(
        Amount::of_tokens(tokens, token_value)?,
        withholding,
    ))
}

/// Where a transaction of a block stood when the chain's decisions came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// The vendor was told to deliver at once (the queue stayed below W): the vendor is owed its
    /// payout whatever the chain decides; the auditor carries the risk.
    Delivered,
    /// The transaction that completed the block (tr_p) and waits for the chain: delivered and
    /// paid if the block is valid, rejected otherwise.
    Waiting,
}

/// One transaction of a verified block, as the settlement sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementTransaction {
    /// |tr|, the number of tokens.
    pub tokens: u64,
    /// β, the tokens the chain did not declare valid.
    pub invalid_tokens: u64,
    /// Sum of the face values of all its tokens.
    pub face_value: Amount,
    /// Sum of the face values of its valid tokens (what the escrow paid the auditor for it).
    pub valid_value: Amount,
    /// Delivered at once, or waiting.
    pub status: DeliveryStatus,
}

impl SettlementTransaction {
    /// A transaction whose tokens all have value v = `token_value` (the paper's setting).
    ///
    /// # Errors
    /// [`MoneyError::InconsistentTransaction`] if `invalid_tokens > tokens`;
    /// [`MoneyError::Overflow`] if tokens·v exceeds u64.
    pub fn uniform(
        tokens: u64,
        invalid_tokens: u64,
        token_value: Amount,
        status: DeliveryStatus,
    ) -> Result<Self, MoneyError> {
        let valid_tokens =
            tokens
                .checked_sub(invalid_tokens)
                .ok_or(MoneyError::InconsistentTransaction {
                    reason: "more invalid tokens than tokens",
                })?;
        Ok(SettlementTransaction {
            tokens,
            invalid_tokens,
            face_value: Amount::of_tokens(tokens, token_value)?,
            valid_value: Amount::of_tokens(valid_tokens, token_value)?,
            status,
        })
    }

    /// Checks that counts and values agree: β ≤ |tr|, valid value ≤ face value, a transaction
    /// without invalid tokens is worth its face value, one with only invalid tokens is worth 0.
    ///
    /// # Errors
    /// [`MoneyError::InconsistentTransaction`] naming the contradiction.
    pub fn validate(&self) -> Result<(), MoneyError> {
        let reason = if self.invalid_tokens > self.tokens {
            Some("more invalid tokens than tokens")
        } else if self.valid_value > self.face_value {
            Some("valid value above face value")
        } else if self.invalid_tokens == 0 && self.valid_value != self.face_value {
            Some("no invalid token but valid value differs from face value")
        } else if self.invalid_tokens == self.tokens && self.valid_value != Amount::ZERO {
            Some("every token invalid but a non-zero valid value")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(MoneyError::InconsistentTransaction { reason }),
            None => Ok(()),
        }
    }

    /// What happens to this transaction once its block is decided (`block_valid`: no invalid
    /// token in the whole block).
    ///
    /// # Errors
    /// As [`Self::validate`].
    pub fn fate(
        &self,
        block_valid: bool,
        withholding: Withholding,
    ) -> Result<TransactionFate, MoneyError> {
        self.validate()?;
        Ok(match (self.status, block_valid) {
            (DeliveryStatus::Delivered, _) | (DeliveryStatus::Waiting, true) => {
                TransactionFate::Paid {
                    payout: payout_of(self.face_value, withholding),
                }
            }
            (DeliveryStatus::Waiting, false) => TransactionFate::Rejected {
                refund: self.valid_value,
            },
        })
    }
}

/// The outcome of one transaction of a decided block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransactionFate {
    /// Delivered: the vendor is owed `payout` = ⌊face value·(1 − ρ)⌋.
    Paid {
        /// The vendor's payout.
        payout: Amount,
    },
    /// Rejected (the waiting transaction of an invalid block): the user is owed `refund`.
    Rejected {
        /// The refund owed to the user.
        refund: Amount,
    },
}

/// The money flows of one decided block (SPEC §4, paper eqs. 10–12):
///
/// - `escrow_paid`: what the batch escrows paid the auditor on-chain, v per valid token of every
///   transaction in the block, the waiting one included.
/// - `vendor_payouts`: ⌊face·(1 − ρ)⌋ for every paid transaction — those delivered at once
///   (invalid tokens included: the vendor delivered on the auditor's word) and the waiting one if
///   the block is valid. Payouts of transactions delivered at once accrue at intake; the block's
///   settlement accounts for them.
/// - `refunds`: the valid value of the rejected waiting transaction. Its valid tokens were spent
///   on-chain (the escrow paid the auditor for them, and they cannot be spent again), but the
///   purchase did not happen, so the auditor owes the user their face value back, in full,
///   without withholding. Its invalid tokens are worth nothing and are not refunded.
/// - `margin`: the withholding the auditor keeps on paid transactions, face − payout (v·ρ per
///   token plus the rounding remainder).
/// - `loss`: the face value of the invalid tokens in paid transactions, which the auditor paid
///   out for but the escrow never paid.
///
/// Invariant: escrow_paid = vendor_payouts + refunds + margin − loss. Each side is computed on its
/// own and compared by [`Self::check_balance`]. The realized risk is loss − margin (eqs. 10–12,
/// up to the payout's rounding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockSettlement {
    /// No transaction of the block had an invalid token.
    pub block_valid: bool,
    /// Total tokens in the block.
    pub tokens: u64,
    /// Total invalid tokens in the block (β of eq. 7).
    pub invalid_tokens: u64,
    /// Paid by the escrows to the auditor.
    pub escrow_paid: Amount,
    /// Owed to vendors.
    pub vendor_payouts: Amount,
    /// Owed to the user.
    pub refunds: Amount,
    /// Kept by the auditor (withholding on paid transactions).
    pub margin: Amount,
    /// Paid out for invalid tokens.
    pub loss: Amount,
}

impl BlockSettlement {
    /// Settles a decided block given its transactions (in block order; the paper's tr_p is the
    /// one with [`DeliveryStatus::Waiting`]).
    ///
    /// # Errors
    /// [`MoneyError::InconsistentTransaction`] for contradictory inputs, [`MoneyError::Overflow`]
    /// if a total exceeds u64, [`MoneyError::Unbalanced`] if the flows do not balance.
    pub fn settle(
        transactions: &[SettlementTransaction],
        withholding: Withholding,
    ) -> Result<Self, MoneyError> {
        let mut tokens: u64 = 0;
        let mut invalid_tokens: u64 = 0;
        for tx in transactions {
            tx.validate()?;
            tokens = tokens.checked_add(tx.tokens).ok_or(MoneyError::Overflow {
                operation: "block token count",
            })?;
            invalid_tokens =
                invalid_tokens
                    .checked_add(tx.invalid_tokens)
                    .ok_or(MoneyError::Overflow {
                        operation: "block invalid count",
                    })?;
        }
        let block_valid = invalid_tokens == 0;
        let mut settlement = BlockSettlement {
            block_valid,
            tokens,
            invalid_tokens,
            escrow_paid: Amount::ZERO,
            vendor_payouts: Amount::ZERO,
            refunds: Amount::ZERO,
            margin: Amount::ZERO,
            loss: Amount::ZERO,
        };
        for tx in transactions {
            settlement.escrow_paid = settlement.escrow_paid.checked_add(tx.valid_value)?;
            match tx.fate(block_valid, withholding)? {
                TransactionFate::Paid { payout } => {
                    settlement.vendor_payouts = settlement.vendor_payouts.checked_add(payout)?;
                    settlement.margin = settlement
                        .margin
                        .checked_add(tx.face_value.checked_sub(payout)?)?;
                    settlement.loss = settlement
                        .loss
                        .checked_add(tx.face_value.checked_sub(tx.valid_value)?)?;
                }
                TransactionFate::Rejected { refund } => {
                    settlement.refunds = settlement.refunds.checked_add(refund)?;
                }
            }
        }
        settlement.check_balance()?;
        Ok(settlement)
    }

    /// Checks escrow_paid = vendor_payouts + refunds + margin − loss, in u128 (no overflow).
    ///
    /// # Errors
    /// [`MoneyError::Unbalanced`] when it does not hold.
    pub fn check_balance(&self) -> Result<(), MoneyError> {
        let credits = u128::from(self.vendor_payouts.0)
            + u128::from(self.refunds.0)
            + u128::from(self.margin.0);
        let balanced =
            credits.checked_sub(u128::from(self.loss.0)) == Some(u128::from(self.escrow_paid.0));
        if balanced {
            Ok(())
        } else {
            Err(MoneyError::Unbalanced {
                escrow_paid: self.escrow_paid,
                vendor_payouts: self.vendor_payouts,
                refunds: self.refunds,
                margin: self.margin,
                loss: self.loss,
            })
        }
    }

    /// The realized risk of the block in base units, loss − margin: positive when the auditor lost
    /// money (eqs. 10–12 with exact, rounded-down payouts).
    pub fn realized_risk(&self) -> i128 {
        i128::from(self.loss.0) - i128::from(self.margin.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bps(value: u16) -> Withholding {
        Withholding::from_bps(value).unwrap()
    }

    #[test]
    fn money_withholding_parses_all_three_forms() {
        for text in [
            "20%", "0.2", "2000bps", "2000 bps", " 20 % ", "0.20", "20.00%", "2000BPS",
        ] {
            assert_eq!(text.parse::<Withholding>().unwrap().bps(), 2000, "{text}");
        }
        assert_eq!("12.5%".parse::<Withholding>().unwrap().bps(), 1250);
        assert_eq!("0.125".parse::<Withholding>().unwrap().bps(), 1250);
        assert_eq!("0.0001".parse::<Withholding>().unwrap().bps(), 1);
        assert_eq!(".5".parse::<Withholding>().unwrap().bps(), 5000);
        assert_eq!("100%".parse::<Withholding>().unwrap(), Withholding::FULL);
        assert_eq!("1".parse::<Withholding>().unwrap(), Withholding::FULL);
        assert_eq!("0".parse::<Withholding>().unwrap(), Withholding::ZERO);
    }

    #[test]
    fn money_withholding_rejects_above_full_and_garbage() {
        // A bare "20" is a fraction: 2000 %, rejected (table 2's "20" must be written "20%").
        for text in ["20", "101%", "10001bps", "1.0001"] {
            assert!(
                matches!(
                    text.parse::<Withholding>(),
                    Err(MoneyError::WithholdingAboveFull { .. })
                ),
                "{text}"
            );
        }
        for text in [
            "",
            "%",
            "bps",
            "-5%",
            "abc",
            "1e-1",
            "0.00001",
            "12.345%",
            "2000.5bps",
            "0..2",
            "99999999999999999999999%",
        ] {
            assert!(
                matches!(
                    text.parse::<Withholding>(),
                    Err(MoneyError::ParseWithholding { .. })
                ),
                "{text}"
            );
        }
        assert!(Withholding::from_bps(10_001).is_err());
        assert!(serde_json::from_str::<Withholding>("10001").is_err());
        assert_eq!(
            serde_json::from_str::<Withholding>("2000").unwrap().bps(),
            2000
        );
    }

    #[test]
    fn money_withholding_display_round_trips() {
        for (value, text) in [
            (2000, "20%"),
            (1250, "12.5%"),
            (1, "0.01%"),
            (1205, "12.05%"),
            (0, "0%"),
            (10_000, "100%"),
        ] {
            assert_eq!(bps(value).to_string(), text);
            assert_eq!(text.parse::<Withholding>().unwrap().bps(), value);
        }
        assert!((bps(2000).fraction() - 0.2).abs() < 1e-15);
    }

    #[test]
    fn money_payout_rounds_down() {
        // 5 tokens of 10 at 20 %: 50·0.8 = 40 exactly.
        assert_eq!(vendor_payout(5, Amount(10), bps(2000)).unwrap(), Amount(40));
        // 1 token of 3 at 12.5 %: 3·0.875 = 2.625 → 2 (the 0.625 stays with the auditor).
        assert_eq!(vendor_payout(1, Amount(3), bps(1250)).unwrap(), Amount(2));
        assert_eq!(
            vendor_payout(7, Amount(9), Withholding::ZERO).unwrap(),
            Amount(63)
        );
        assert_eq!(
            vendor_payout(7, Amount(9), Withholding::FULL).unwrap(),
            Amount(0)
        );
        // Largest face value: no overflow in the u128 intermediate.
        assert_eq!(
            payout_of(Amount(u64::MAX), bps(1)),
            Amount(u64::try_from(u128::from(u64::MAX) * 9999 / 10_000).unwrap())
        );
    }

    #[test]
    fn money_payout_overflow_is_an_error_not_a_panic() {
        assert_eq!(
            vendor_payout(u64::MAX, Amount(2), bps(2000)),
            Err(MoneyError::Overflow {
                operation: "tokens × token value"
            })
        );
        assert!(Amount(u64::MAX).checked_add(Amount(1)).is_err());
        assert!(Amount(1).checked_sub(Amount(2)).is_err());
        assert!(Amount(u64::MAX).checked_mul(2).is_err());
    }

    #[test]
    fn money_settlement_invalid_block_worked_example() {
        // v = 10, ρ = 20 %. tr1: 5 tokens, delivered, all valid; tr2: 5 tokens, delivered, one
        // invalid; tr3: 5 tokens, waiting, all valid → the block is invalid, tr3 is rejected.
        let v = Amount(10);
        let txs = [
            SettlementTransaction::uniform(5, 0, v, DeliveryStatus::Delivered).unwrap(),
            SettlementTransaction::uniform(5, 1, v, DeliveryStatus::Delivered).unwrap(),
            SettlementTransaction::uniform(5, 0, v, DeliveryStatus::Waiting).unwrap(),
        ];
        let s = BlockSettlement::settle(&txs, bps(2000)).unwrap();
        assert!(!s.block_valid);
        assert_eq!((s.tokens, s.invalid_tokens), (15, 1));
        // escrow: 14 valid tokens · 10 = 140
        assert_eq!(s.escrow_paid, Amount(140));
        // payouts: tr1 and tr2, 50·0.8 = 40 each
        assert_eq!(s.vendor_payouts, Amount(80));
        // refund: tr3's five valid tokens at face value
        assert_eq!(s.refunds, Amount(50));
        // margin: (50 − 40) + (50 − 40)
        assert_eq!(s.margin, Amount(20));
        // loss: tr2's invalid token, face 10
        assert_eq!(s.loss, Amount(10));
        // 80 + 50 + 20 − 10 = 140; realized risk = 10 − 20 = −10 = eq. (12): 10·((0 − 1) + (1 − 1))
        assert_eq!(s.realized_risk(), -10);
    }

    #[test]
    fn money_settlement_valid_block_worked_example() {
        // v = 7, ρ = 12.5 %: tr1 (3 tokens, delivered), tr2 (2 tokens, waiting), all valid.
        let v = Amount(7);
        let txs = [
            SettlementTransaction::uniform(3, 0, v, DeliveryStatus::Delivered).unwrap(),
            SettlementTransaction::uniform(2, 0, v, DeliveryStatus::Waiting).unwrap(),
        ];
        let s = BlockSettlement::settle(&txs, bps(1250)).unwrap();
        assert!(s.block_valid);
        assert_eq!(s.escrow_paid, Amount(35));
        // tr1: ⌊21·0.875⌋ = ⌊18.375⌋ = 18; tr2: ⌊14·0.875⌋ = ⌊12.25⌋ = 12
        assert_eq!(s.vendor_payouts, Amount(30));
        assert_eq!(s.refunds, Amount(0));
        assert_eq!(s.margin, Amount(5));
        assert_eq!(s.loss, Amount(0));
        // eq. (10): −5·7·0.125 = −4.375; the rounding remainder 0.625 makes it −5.
        assert_eq!(s.realized_risk(), -5);
    }

    #[test]
    fn money_settlement_rejects_forged_counts() {
        let forged = SettlementTransaction {
            tokens: 2,
            invalid_tokens: 3,
            face_value: Amount(20),
            valid_value: Amount(0),
            status: DeliveryStatus::Delivered,
        };
        assert!(matches!(
            BlockSettlement::settle(&[forged], Withholding::ZERO),
            Err(MoneyError::InconsistentTransaction { .. })
        ));
        // Valid value claimed above face value: the escrow cannot pay more than the tokens' worth.
        let inflated = SettlementTransaction {
            tokens: 2,
            invalid_tokens: 1,
            face_value: Amount(20),
            valid_value: Amount(30),
            status: DeliveryStatus::Waiting,
        };
        assert!(BlockSettlement::settle(&[inflated], Withholding::ZERO).is_err());
        // No invalid token but a valid value below face: a silently dropped payment.
        let short = SettlementTransaction {
            tokens: 2,
            invalid_tokens: 0,
            face_value: Amount(20),
            valid_value: Amount(10),
            status: DeliveryStatus::Waiting,
        };
        assert!(BlockSettlement::settle(&[short], Withholding::ZERO).is_err());
        assert!(SettlementTransaction::uniform(1, 2, Amount(5), DeliveryStatus::Waiting).is_err());
    }

    #[test]
    fn money_check_balance_detects_tampering() {
        let v = Amount(10);
        let txs = [SettlementTransaction::uniform(4, 1, v, DeliveryStatus::Delivered).unwrap()];
        let mut s = BlockSettlement::settle(&txs, bps(2000)).unwrap();
        assert_eq!(s.check_balance(), Ok(()));
        s.margin = Amount(s.margin.get() + 1);
        assert!(matches!(
            s.check_balance(),
            Err(MoneyError::Unbalanced { .. })
        ));
    }

    #[test]
    fn money_settlement_overflow_is_an_error() {
        let big = SettlementTransaction::uniform(1, 0, Amount(u64::MAX), DeliveryStatus::Delivered)
            .unwrap();
        assert!(matches!(
            BlockSettlement::settle(&[big, big], bps(2000)),
            Err(MoneyError::Overflow { .. })
        ));
    }
}

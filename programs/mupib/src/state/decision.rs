//! The chain's decision per token (SPEC §2; DESIGN.md "Decision codes"; paper §4.2 step 3).
//!
//! A block account stores one decision byte per position; [`Decision`] is the typed form of
//! that byte. The codes themselves are the `DECISION_*` constants in `constants.rs` (part of the
//! IDL), so the enum's discriminants are defined from them: one source of truth.

use anchor_lang::prelude::*;

use crate::constants::{
    DECISION_ALTERED, DECISION_DUPLICATE, DECISION_UNDECIDED, DECISION_UNPUBLISHED, DECISION_VALID,
};
use crate::error::MupibError;

/// The decision for one token, checked in the order unpublished → altered → duplicate → valid.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// `00`: the token's batch is missing or not sealed, or its serial is outside the batch.
    Unpublished = DECISION_UNPUBLISHED,
    /// `01`: the token digest does not match the bank's commitment.
    Altered = DECISION_ALTERED,
    /// `10`: the token was already spent (earlier, or earlier in the same block).
    Duplicate = DECISION_DUPLICATE,
    /// `11`: the token is valid; its spent flag is now set and its value paid.
    Valid = DECISION_VALID,
}

// Every code fits the 2 bits of SPEC §2, and the "not decided yet" marker is none of them.
const _: () = {
    let mut i = 0;
    while i < Decision::ALL.len() {
        assert!(Decision::ALL[i].code() <= 0b11);
        i += 1;
    }
};
const _: () = assert!(Decision::from_code(DECISION_UNDECIDED).is_none());

impl Decision {
    /// Every decision, in code order.
    pub const ALL: [Decision; 4] = [
        Decision::Unpublished,
        Decision::Altered,
        Decision::Duplicate,
        Decision::Valid,
    ];

    /// The decision a stored byte holds; `None` for any other byte (`DECISION_UNDECIDED`
    /// included).
    pub const fn from_code(code: u8) -> Option<Decision> {
        match code {
            DECISION_UNPUBLISHED => Some(Decision::Unpublished),
            DECISION_ALTERED => Some(Decision::Altered),
            DECISION_DUPLICATE => Some(Decision::Duplicate),
            DECISION_VALID => Some(Decision::Valid),
            _ => None,
        }
    }

    /// The byte a block account stores for this decision.
    pub const fn code(self) -> u8 {
        self as u8
    }
}

impl From<Decision> for u8 {
    fn from(decision: Decision) -> u8 {
        decision.code()
    }
}

impl TryFrom<u8> for Decision {
    type Error = anchor_lang::error::Error;

    /// Fails with [`MupibError::BlockDataInvalid`] for a byte that is no decision (including
    /// `DECISION_UNDECIDED`).
    fn try_from(code: u8) -> Result<Decision> {
        Decision::from_code(code).ok_or_else(|| error!(MupibError::BlockDataInvalid))
    }
}

/// Number of positions newly decided with each code (one chunk of a block).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecisionCounts {
    /// Decided `11` valid.
    pub valid: u32,
    /// Decided `01` altered.
    pub altered: u32,
    /// Decided `10` duplicate.
    pub duplicate: u32,
    /// Decided `00` unpublished.
    pub unpublished: u32,
}

impl DecisionCounts {
    /// Counts one more `decision`.
    pub fn record(&mut self, decision: Decision) -> Result<()> {
        let counter = match decision {
            Decision::Valid => &mut self.valid,
            Decision::Altered => &mut self.altered,
            Decision::Duplicate => &mut self.duplicate,
            Decision::Unpublished => &mut self.unpublished,
        };
        *counter = add_u32(*counter, 1)?;
        Ok(())
    }

    /// Number of positions counted, all codes together.
    pub fn total(&self) -> Result<u32> {
        add_u32(
            add_u32(self.valid, self.altered)?,
            add_u32(self.duplicate, self.unpublished)?,
        )
    }
}

/// `a + b`, or [`MupibError::ArithmeticOverflow`].
pub(crate) fn add_u32(a: u32, b: u32) -> Result<u32> {
    a.checked_add(b)
        .ok_or(error!(MupibError::ArithmeticOverflow))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_bytes_convert_both_ways_and_reject_the_rest() {
        for (decision, code) in [
            (Decision::Unpublished, 0b00),
            (Decision::Altered, 0b01),
            (Decision::Duplicate, 0b10),
            (Decision::Valid, 0b11),
        ] {
            assert_eq!(u8::from(decision), code);
            assert_eq!(Decision::try_from(code).ok(), Some(decision));
        }
        for byte in [DECISION_UNDECIDED, 0b100, 0x7F] {
            let error = Decision::try_from(byte).expect_err("not a decision");
            assert_eq!(error, error!(MupibError::BlockDataInvalid));
        }
    }

    #[test]
    fn counts_add_up_per_decision() {
        let mut counts = DecisionCounts::default();
        for decision in [Decision::Valid, Decision::Valid, Decision::Duplicate] {
            counts.record(decision).expect("no overflow");
        }
        assert_eq!((counts.valid, counts.duplicate, counts.altered), (2, 1, 0));
        assert_eq!(counts.total().ok(), Some(3));
        let mut full = DecisionCounts {
            unpublished: u32::MAX,
            ..DecisionCounts::default()
        };
        assert!(full.record(Decision::Unpublished).is_err());
        assert!(DecisionCounts { valid: 1, ..full }.total().is_err());
    }
}

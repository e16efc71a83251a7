//! The chain's decision per token (SPEC §2; DESIGN.md "Decision codes"; paper §4.2 step 3).
//!
//! The program checks each token of a block in the order unpublished → altered → duplicate →
//! valid and records a 2-bit code; only a valid token has its spent flag set and its value paid.
//! The program keeps its own `#[repr(u8)]` copy of these codes (`mupib::state::Decision`); the
//! chain crate asserts at compile time that the two agree.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::token::TokenId;

/// The chain's decision for one token of a block, checked in the order
/// unpublished → altered → duplicate → valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Decision {
    /// `0b00`: batch missing, not sealed, or serial ≥ token count.
    Unpublished,
    /// `0b01`: the token digest does not match the bank's commitment.
    Altered,
    /// `0b10`: spent earlier (also earlier in the same block).
    Duplicate,
    /// `0b11`: valid; its spent flag is now set and its value was paid to the auditor.
    Valid,
}

impl Decision {
    /// Every decision, in code order.
    pub const ALL: [Decision; 4] = [
        Decision::Unpublished,
        Decision::Altered,
        Decision::Duplicate,
        Decision::Valid,
    ];

    /// The 2-bit code the program records.
    pub const fn code(self) -> u8 {
        match self {
            Decision::Unpublished => 0b00,
            Decision::Altered => 0b01,
            Decision::Duplicate => 0b10,
            Decision::Valid => 0b11,
        }
    }

    /// From the program's code; `None` for anything else (e.g. `0xFF`, not decided yet).
    pub const fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0b00 => Decision::Unpublished,
            0b01 => Decision::Altered,
            0b10 => Decision::Duplicate,
            0b11 => Decision::Valid,
            _ => return None,
        })
    }

    /// Only `Valid` is valid.
    pub const fn is_valid(self) -> bool {
        matches!(self, Decision::Valid)
    }

    /// The decision's name in reports and JSON views: `valid`, `altered`, `duplicate`,
    /// `unpublished`.
    pub const fn name(self) -> &'static str {
        match self {
            Decision::Unpublished => "unpublished",
            Decision::Altered => "altered",
            Decision::Duplicate => "duplicate",
            Decision::Valid => "valid",
        }
    }

    /// The name of a raw code as a block account stores it (`undecided` for `0xFF` and any
    /// other byte that is not a decision).
    pub fn name_of_code(code: u8) -> &'static str {
        Decision::from_code(code).map_or("undecided", Decision::name)
    }

    /// What the decision means, in words for a vendor.
    pub const fn meaning(self) -> &'static str {
        match self {
            Decision::Unpublished => "not published by any bank",
            Decision::Altered => "altered (does not match the bank's commitment)",
            Decision::Duplicate => "already spent (double spending)",
            Decision::Valid => "valid",
        }
    }
}

/// Counts of the chain's decisions for a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DecisionCounts {
    /// `0b11`.
    pub valid: u64,
    /// `0b01`.
    pub altered: u64,
    /// `0b10`.
    pub duplicate: u64,
    /// `0b00`.
    pub unpublished: u64,
}

impl DecisionCounts {
    /// Counts one more `decision`; `None` on overflow.
    #[must_use]
    pub fn with(mut self, decision: Decision) -> Option<Self> {
        let counter = match decision {
            Decision::Valid => &mut self.valid,
            Decision::Altered => &mut self.altered,
            Decision::Duplicate => &mut self.duplicate,
            Decision::Unpublished => &mut self.unpublished,
        };
        *counter = counter.checked_add(1)?;
        Some(self)
    }

    /// The count of `decision`.
    pub const fn of(&self, decision: Decision) -> u64 {
        match decision {
            Decision::Valid => self.valid,
            Decision::Altered => self.altered,
            Decision::Duplicate => self.duplicate,
            Decision::Unpublished => self.unpublished,
        }
    }
}

/// One token's decision, as a rejection names it. Borsh encodes the decision as its program
/// code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenDecision {
    /// The token.
    pub token: TokenId,
    /// The chain's decision.
    pub decision: Decision,
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_codes_match_the_program() {
        for (decision, code) in [
            (Decision::Unpublished, 0b00),
            (Decision::Altered, 0b01),
            (Decision::Duplicate, 0b10),
            (Decision::Valid, 0b11),
        ] {
            assert_eq!(decision.code(), code);
            assert_eq!(Decision::from_code(code), Some(decision));
        }
        assert_eq!(
            Decision::from_code(0xFF),
            None,
            "0xFF means not decided yet"
        );
        assert_eq!(Decision::name_of_code(0xFF), "undecided");
        assert_eq!(Decision::name_of_code(0b11), "valid");
    }

    #[test]
    fn counts_add_up_per_decision() {
        let counts = [Decision::Valid, Decision::Valid, Decision::Duplicate]
            .into_iter()
            .try_fold(DecisionCounts::default(), DecisionCounts::with)
            .expect("no overflow");
        assert_eq!(counts.of(Decision::Valid), 2);
        assert_eq!(counts.of(Decision::Duplicate), 1);
        assert_eq!(counts.of(Decision::Altered), 0);
        let full = DecisionCounts {
            valid: u64::MAX,
            ..DecisionCounts::default()
        };
        assert_eq!(full.with(Decision::Valid), None);
    }
}

//! `Block` (`["block", auditor, block_id_le]`): one block of tokens under verification.
//!
//! Layout of the account data (zero-copy):
//!
//! | offset | length | content |
//! |---|---|---|
//! | 0 | 8 | Anchor discriminator |
//! | 8 | 112 | [`Block`] header |
//! | 120 | `token_count` | one decision byte per position, `0xFF` = not decided yet |

use anchor_lang::prelude::*;
use anchor_lang::Discriminator;

use crate::constants::{
    BLOCK_STATE_OPEN, BLOCK_STATE_VERIFIED, DISCRIMINATOR_LEN, MAX_BLOCK_TOKENS,
    MAX_PDA_ACCOUNT_SIZE,
};
use crate::error::MupibError;
use crate::state::decision::{add_u32, DecisionCounts};

/// Life cycle of a block, stored as a byte in [`Block::state`].
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockState {
    /// The block is being fed with chunks.
    Open = BLOCK_STATE_OPEN,
    /// Every position is decided; the block can be closed.
    Verified = BLOCK_STATE_VERIFIED,
}

// A zeroed (never initialised) header is in no state.
const _: () = assert!(BLOCK_STATE_OPEN != 0 && BLOCK_STATE_VERIFIED != 0);

impl From<BlockState> for u8 {
    fn from(state: BlockState) -> u8 {
        state as u8
    }
}

impl TryFrom<u8> for BlockState {
    type Error = anchor_lang::error::Error;

    /// Fails with [`MupibError::BlockDataInvalid`] for a byte that is no block state.
    fn try_from(byte: u8) -> Result<BlockState> {
        match byte {
            BLOCK_STATE_OPEN => Ok(BlockState::Open),
            BLOCK_STATE_VERIFIED => Ok(BlockState::Verified),
            _ => err!(MupibError::BlockDataInvalid),
        }
    }
}

/// Zero-copy header of a block; the decision bytes follow it in the account.
#[account(zero_copy)]
#[derive(Debug)]
pub struct Block {
    /// Auditor that opened the block; the only key that may feed, finalize and close it.
    pub auditor: Pubkey,
    /// User whose tokens the block holds (informational, for the auditor's books).
    pub user: Pubkey,
    /// Auditor-chosen id, part of the PDA seeds.
    pub block_id: u64,
    /// Total paid to the auditor for the block's valid tokens.
    pub amount_paid: u64,
    /// Number of positions.
    pub token_count: u32,
    /// Number of positions decided so far.
    pub decided: u32,
    /// Positions decided `11` valid.
    pub valid_count: u32,
    /// Positions decided `01` altered.
    pub altered_count: u32,
    /// Positions decided `10` duplicate.
    pub duplicate_count: u32,
    /// Positions decided `00` unpublished.
    pub unpublished_count: u32,
    /// `BLOCK_STATE_OPEN` or `BLOCK_STATE_VERIFIED`.
    pub state: u8,
    /// Bump of the block PDA.
    pub bump: u8,
    /// Reserved, zero.
    pub reserved: [u8; 6],
}

/// Offset of the decision bytes in the account data.
pub const BLOCK_HEADER_LEN: usize = DISCRIMINATOR_LEN + std::mem::size_of::<Block>();

const _: () = assert!(std::mem::size_of::<Block>() == 112);
const _: () = assert!(Block::space(MAX_BLOCK_TOKENS) <= MAX_PDA_ACCOUNT_SIZE);

impl Block {
    /// Account size of a block of `token_count` positions.
    pub const fn space(token_count: u32) -> usize {
        BLOCK_HEADER_LEN + token_count as usize
    }

    /// Account size to allocate at creation (see `Batch::space_for_create`).
    pub const fn space_for_create(token_count: u32) -> usize {
        if token_count == 0 || token_count > MAX_BLOCK_TOKENS {
            Self::space(MAX_BLOCK_TOKENS)
        } else {
            Self::space(token_count)
        }
    }

    /// Splits a block account's data into header and decision bytes.
    pub fn view_mut(data: &mut [u8]) -> Result<(&mut Block, &mut [u8])> {
        if data.len() < BLOCK_HEADER_LEN || &data[..DISCRIMINATOR_LEN] != Block::DISCRIMINATOR {
            return err!(MupibError::BlockDataInvalid);
        }
        let (head, rest) = data.split_at_mut(BLOCK_HEADER_LEN);
        let header: &mut Block = bytemuck::try_from_bytes_mut(&mut head[DISCRIMINATOR_LEN..])
            .map_err(|_| error!(MupibError::BlockDataInvalid))?;
        let count = header.token_count as usize;
        let decisions = rest
            .get_mut(..count)
            .ok_or(error!(MupibError::BlockDataInvalid))?;
        Ok((header, decisions))
    }

    /// Read-only variant of [`Block::view_mut`].
    pub fn view(data: &[u8]) -> Result<(&Block, &[u8])> {
        if data.len() < BLOCK_HEADER_LEN || &data[..DISCRIMINATOR_LEN] != Block::DISCRIMINATOR {
            return err!(MupibError::BlockDataInvalid);
        }
        let (head, rest) = data.split_at(BLOCK_HEADER_LEN);
        let header: &Block = bytemuck::try_from_bytes(&head[DISCRIMINATOR_LEN..])
            .map_err(|_| error!(MupibError::BlockDataInvalid))?;
        let decisions = rest
            .get(..header.token_count as usize)
            .ok_or(error!(MupibError::BlockDataInvalid))?;
        Ok((header, decisions))
    }

    /// The block's state; fails with [`MupibError::BlockDataInvalid`] for an unknown byte.
    pub fn state(&self) -> Result<BlockState> {
        BlockState::try_from(self.state)
    }

    /// Whether the block is open (still being fed).
    pub fn is_open(&self) -> bool {
        matches!(self.state(), Ok(BlockState::Open))
    }

    /// Whether the block is verified (every position decided, ready to close).
    pub fn is_verified(&self) -> bool {
        matches!(self.state(), Ok(BlockState::Verified))
    }

    /// Adds a chunk's newly decided positions and the amount they paid to the header's counts.
    /// The decision bytes themselves are written by the caller.
    pub fn record_decisions(&mut self, counts: &DecisionCounts, amount_paid: u64) -> Result<()> {
        self.decided = add_u32(self.decided, counts.total()?)?;
        self.valid_count = add_u32(self.valid_count, counts.valid)?;
        self.altered_count = add_u32(self.altered_count, counts.altered)?;
        self.duplicate_count = add_u32(self.duplicate_count, counts.duplicate)?;
        self.unpublished_count = add_u32(self.unpublished_count, counts.unpublished)?;
        self.amount_paid = self
            .amount_paid
            .checked_add(amount_paid)
            .ok_or(error!(MupibError::ArithmeticOverflow))?;
        Ok(())
    }

    /// `Open` → `Verified` (the caller has checked that every position is decided).
    pub fn finalize(&mut self) {
        self.state = BlockState::Verified.into();
    }

    /// Sum of the per-code counts (u64, cannot overflow).
    pub fn counted(&self) -> u64 {
        u64::from(self.valid_count)
            + u64::from(self.altered_count)
            + u64::from(self.duplicate_count)
            + u64::from(self.unpublished_count)
    }

    /// Header consistency: per-code counts add up to `decided`, `decided ≤ token_count`,
    /// a verified block has every position decided.
    pub fn invariant(&self) -> Result<()> {
        require!(
            self.token_count >= 1 && self.token_count <= MAX_BLOCK_TOKENS,
            MupibError::InvariantViolated
        );
        require!(
            self.decided <= self.token_count,
            MupibError::InvariantViolated
        );
        require!(
            self.counted() == u64::from(self.decided),
            MupibError::InvariantViolated
        );
        let Ok(state) = self.state() else {
            return err!(MupibError::InvariantViolated);
        };
        require!(
            state != BlockState::Verified || self.decided == self.token_count,
            MupibError::InvariantViolated
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_bytes_convert_both_ways_and_reject_the_rest() {
        for (state, byte) in [
            (BlockState::Open, BLOCK_STATE_OPEN),
            (BlockState::Verified, BLOCK_STATE_VERIFIED),
        ] {
            assert_eq!(u8::from(state), byte);
            assert_eq!(BlockState::try_from(byte).ok(), Some(state));
        }
        for byte in [0, 3, 0xFF] {
            let error = BlockState::try_from(byte).expect_err("not a state");
            assert_eq!(error, error!(MupibError::BlockDataInvalid));
        }
    }

    #[test]
    fn a_block_is_verified_only_once_every_position_is_decided() {
        let mut block: Block = bytemuck::Zeroable::zeroed();
        assert!(block.invariant().is_err(), "a zeroed header is in no state");
        block.token_count = 3;
        block.state = BlockState::Open.into();
        assert!(block.is_open() && block.invariant().is_ok());

        let first = DecisionCounts {
            valid: 1,
            altered: 1,
            ..DecisionCounts::default()
        };
        block.record_decisions(&first, 10).expect("no overflow");
        block.finalize();
        assert!(block.is_verified());
        assert!(block.invariant().is_err(), "one position is undecided");

        block.state = BlockState::Open.into();
        let second = DecisionCounts {
            valid: 1,
            ..DecisionCounts::default()
        };
        block.record_decisions(&second, 10).expect("no overflow");
        block.finalize();
        assert!(block.is_verified() && !block.is_open());
        assert!(block.invariant().is_ok());
        assert_eq!(
            (block.decided, block.valid_count, block.altered_count),
            (3, 2, 1)
        );
        assert_eq!(block.amount_paid, 20);
    }
}

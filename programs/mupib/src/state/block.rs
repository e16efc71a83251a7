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
        require!(
            self.state == BLOCK_STATE_OPEN || self.state == BLOCK_STATE_VERIFIED,
            MupibError::InvariantViolated
        );
        require!(
            self.state != BLOCK_STATE_VERIFIED || self.decided == self.token_count,
            MupibError::InvariantViolated
        );
        Ok(())
    }
}

//! `block_finalize()`: once every position is decided, the auditor marks the block `Verified`;
//! the event carries the final counts.

use anchor_lang::prelude::*;

use crate::constants::{SEED_AUDITOR, SEED_CONFIG};
use crate::error::MupibError;
use crate::events::{emit_event, BlockFinalized};
use crate::state::{AuditorRegistration, Block, Config};

/// Accounts of `block_finalize`.
#[derive(Accounts)]
pub struct BlockFinalize<'info> {
    /// The auditor that opened the block.
    pub auditor: Signer<'info>,
    /// `["config"]`.
    #[account(seeds = [SEED_CONFIG], bump = config.bump)]
    pub config: Account<'info, Config>,
    /// `["auditor", auditor]`.
    #[account(
        mut,
        seeds = [SEED_AUDITOR, auditor.key().as_ref()],
        bump = auditor_registration.bump,
        has_one = auditor,
    )]
    pub auditor_registration: Account<'info, AuditorRegistration>,
    /// The block.
    #[account(mut, has_one = auditor @ MupibError::NotBlockAuditor)]
    pub block: AccountLoader<'info, Block>,
}

impl BlockFinalize<'_> {
    /// Checks pause, auditor status, block state and completeness.
    pub fn validate(&self, block: &Block) -> Result<()> {
        self.config.require_not_paused()?;
        self.auditor_registration.require_active()?;
        require!(block.is_open(), MupibError::BlockNotOpen);
        require!(
            block.decided == block.token_count,
            MupibError::BlockIncomplete
        );
        Ok(())
    }

    /// Marks the block verified.
    pub fn block_finalize(ctx: Context<Self>) -> Result<()> {
        let accounts = &mut *ctx.accounts;
        let event = {
            let mut block = accounts.block.load_mut()?;
            accounts.validate(&block)?;
            block.finalize();
            block.invariant()?;
            BlockFinalized {
                block: accounts.block.key(),
                auditor: block.auditor,
                user: block.user,
                block_id: block.block_id,
                token_count: block.token_count,
                valid: block.valid_count,
                altered: block.altered_count,
                duplicate: block.duplicate_count,
                unpublished: block.unpublished_count,
                amount_paid: block.amount_paid,
            }
        };
        let registration = &mut accounts.auditor_registration;
        registration.record_block_verified()?;
        registration.invariant()?;
        emit_event(event);
        Ok(())
    }
}

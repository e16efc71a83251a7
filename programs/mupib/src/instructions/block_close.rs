//! `block_close()`: the auditor closes a verified block and takes back its rent.

use anchor_lang::prelude::*;

use crate::error::MupibError;
use crate::events::{emit_event, BlockClosed};
use crate::state::Block;

/// Accounts of `block_close`.
#[derive(Accounts)]
pub struct BlockClose<'info> {
    /// The auditor that opened the block; receives the rent.
    #[account(mut)]
    pub auditor: Signer<'info>,
    /// The block, closed here.
    #[account(mut, has_one = auditor @ MupibError::NotBlockAuditor, close = auditor)]
    pub block: AccountLoader<'info, Block>,
}

impl BlockClose<'_> {
    /// Only a verified block may be closed.
    pub fn validate(&self, block: &Block) -> Result<()> {
        require!(block.is_verified(), MupibError::BlockNotVerified);
        Ok(())
    }

    /// Closes the block (Anchor `close = auditor`).
    pub fn block_close(ctx: Context<Self>) -> Result<()> {
        {
            let block = ctx.accounts.block.load()?;
            ctx.accounts.validate(&block)?;
            block.invariant()?;
        }
        emit_event(BlockClosed {
            block: ctx.accounts.block.key(),
            auditor: ctx.accounts.auditor.key(),
        });
        Ok(())
    }
}

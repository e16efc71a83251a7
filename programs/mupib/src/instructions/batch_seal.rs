//! `batch_seal()`: once every commitment is written, the bank seals the batch and its tokens
//! become redeemable.

use anchor_lang::prelude::*;

use crate::constants::{SEED_BANK, SEED_CONFIG};
use crate::error::MupibError;
use crate::events::{emit_event, BatchSealed};
use crate::state::{BankRegistration, Batch, Config};

/// Accounts of `batch_seal`.
#[derive(Accounts)]
pub struct BatchSeal<'info> {
    /// The batch's bank.
    pub bank: Signer<'info>,
    /// `["config"]`.
    #[account(seeds = [SEED_CONFIG], bump = config.bump)]
    pub config: Account<'info, Config>,
    /// `["bank", bank]`: the bank must be registered and active.
    #[account(
        seeds = [SEED_BANK, bank.key().as_ref()],
        bump = bank_registration.bump,
        has_one = bank,
    )]
    pub bank_registration: Account<'info, BankRegistration>,
    /// The batch.
    #[account(mut, has_one = bank)]
    pub batch: AccountLoader<'info, Batch>,
}

impl BatchSeal<'_> {
    /// Checks pause, bank status and that every commitment is written.
    pub fn validate(&self, batch: &Batch) -> Result<()> {
        self.config.require_not_paused()?;
        self.bank_registration.require_active()?;
        require!(!batch.is_sealed(), MupibError::BatchSealed);
        require!(
            batch.published == batch.token_count,
            MupibError::BatchIncomplete
        );
        Ok(())
    }

    /// Seals the batch.
    pub fn batch_seal(ctx: Context<Self>) -> Result<()> {
        let token_count = {
            let mut batch = ctx.accounts.batch.load_mut()?;
            ctx.accounts.validate(&batch)?;
            batch.seal();
            batch.invariant()?;
            batch.token_count
        };
        emit_event(BatchSealed {
            batch: ctx.accounts.batch.key(),
            token_count,
        });
        Ok(())
    }
}

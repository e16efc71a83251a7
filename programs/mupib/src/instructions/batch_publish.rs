//! `batch_publish(start, commitments)`: the bank writes the commitments of serials
//! `[start, start + n)`; `start` must equal the batch's `published` count.

use anchor_lang::prelude::*;

use crate::constants::{SEED_BANK, SEED_CONFIG};
use crate::error::MupibError;
use crate::events::{emit_event, BatchPublished};
use crate::state::{BankRegistration, Batch, Config};

/// Arguments of `batch_publish`.
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug, PartialEq, Eq)]
pub struct BatchPublishArgs {
    /// Serial of the first commitment; equals the batch's `published`.
    pub start: u32,
    /// `commitment(token_digest16)` of serials `start, start + 1, …`.
    pub commitments: Vec<[u8; 16]>,
}

/// Accounts of `batch_publish`.
#[derive(Accounts)]
pub struct BatchPublish<'info> {
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
    /// The batch (owned by the program, `Batch` discriminator, created by this bank).
    #[account(mut, has_one = bank)]
    pub batch: AccountLoader<'info, Batch>,
}

impl BatchPublish<'_> {
    /// Checks pause, bank status, batch state and range.
    pub fn validate(&self, args: &BatchPublishArgs, batch: &Batch) -> Result<()> {
        self.config.require_not_paused()?;
        self.bank_registration.require_active()?;
        require!(!batch.is_sealed(), MupibError::BatchSealed);
        require!(!args.commitments.is_empty(), MupibError::EmptyChunk);
        require!(args.start == batch.published, MupibError::PublishOutOfOrder);
        let count = u32::try_from(args.commitments.len())
            .map_err(|_| error!(MupibError::ArithmeticOverflow))?;
        let end = args
            .start
            .checked_add(count)
            .ok_or(error!(MupibError::ArithmeticOverflow))?;
        require!(end <= batch.token_count, MupibError::PublishPastRange);
        Ok(())
    }

    /// Writes the commitments into the batch account.
    pub fn batch_publish(ctx: Context<Self>, args: BatchPublishArgs) -> Result<()> {
        let accounts = &*ctx.accounts;
        let batch_info = accounts.batch.to_account_info();
        let mut data = batch_info.try_borrow_mut_data()?;
        let mut view = Batch::view_mut(&mut data)?;
        accounts.validate(&args, view.header)?;
        let published = view.publish(args.start, &args.commitments)?;
        view.header.invariant()?;

        emit_event(BatchPublished {
            batch: batch_info.key(),
            start: args.start,
            count: published - args.start,
            published,
        });
        Ok(())
    }
}

//! `batch_close()`: once every token is spent, for a batch never sealed, or — for an expired
//! batch — once its grace period is over, the bank takes back the unspent escrow, the escrow
//! account's rent and the batch's rent.
//!
//! Grace (issue 9): a sealed batch with unspent tokens closes only while the program is not
//! paused and when `now > max(expires_at, Config.resumed_at) + BATCH_CLOSE_GRACE_SECS`, so a
//! block under verification at expiry, or held up by a pause, can still be verified
//! ([`Batch::closability`]).

use anchor_lang::prelude::*;
use anchor_spl::token::{self, CloseAccount, Mint, Token, TokenAccount, TransferChecked};

use crate::constants::{SEED_BANK, SEED_BATCH, SEED_CONFIG, SEED_ESCROW};
use crate::error::MupibError;
use crate::events::{emit_event, BatchClosed};
use crate::state::{BankRegistration, Batch, Closability, Config};

/// Accounts of `batch_close`.
#[derive(Accounts)]
pub struct BatchClose<'info> {
    /// The batch's bank; receives the rent of both accounts.
    #[account(mut)]
    pub bank: Signer<'info>,
    /// `["config"]`.
    #[account(seeds = [SEED_CONFIG], bump = config.bump)]
    pub config: Account<'info, Config>,
    /// `["bank", bank]` (counters; an inactive bank may still close its batches).
    #[account(
        mut,
        seeds = [SEED_BANK, bank.key().as_ref()],
        bump = bank_registration.bump,
        has_one = bank,
    )]
    pub bank_registration: Account<'info, BankRegistration>,
    /// The auditor the batch is bound to: only a seed of the batch PDA, which the batch must be
    /// (checked in `validate`); the batch PDA signs the escrow refund with these seeds.
    /// CHECK: never read or written; its key is checked against the batch's address.
    pub auditor: UncheckedAccount<'info>,
    /// `["batch", bank, auditor, batch_id_le]`, closed here.
    #[account(mut, has_one = bank, close = bank)]
    pub batch: AccountLoader<'info, Batch>,
    /// `["escrow", batch]`, emptied and closed here.
    #[account(
        mut,
        seeds = [SEED_ESCROW, batch.key().as_ref()],
        bump = batch.load()?.escrow_bump,
    )]
    pub escrow: Account<'info, TokenAccount>,
    /// `Config.mint`.
    #[account(address = config.mint @ MupibError::WrongMint)]
    pub mint: Account<'info, Mint>,
    /// The bank's token account of `Config.mint`, credited with the unspent escrow.
    #[account(
        mut,
        constraint = bank_token.mint == config.mint @ MupibError::WrongMint,
        constraint = bank_token.owner == bank.key() @ MupibError::WrongTokenAccountOwner,
    )]
    pub bank_token: Account<'info, TokenAccount>,
    /// SPL Token program.
    pub token_program: Program<'info, Token>,
}

impl BatchClose<'_> {
    /// The batch is the PDA of the given auditor, and closable now ([`Batch::closability`]).
    pub fn validate(&self, batch: &Batch, now: i64) -> Result<()> {
        let expected = Pubkey::create_program_address(
            &[
                SEED_BATCH,
                batch.bank.as_ref(),
                self.auditor.key.as_ref(),
                &batch.batch_id.to_le_bytes(),
                &[batch.bump],
            ],
            &crate::ID,
        );
        require!(
            expected.ok() == Some(self.batch.key()),
            MupibError::WrongBatchAuditor
        );
        match batch.closability(self.config.paused, self.config.resumed_at, now) {
            Closability::Closable => Ok(()),
            Closability::Paused => err!(MupibError::BatchClosePaused),
            Closability::NotExpired { closable_after } => {
                msg!(
                    "the batch becomes closable once now > {} (now {})",
                    closable_after,
                    now
                );
                err!(MupibError::BatchNotClosable)
            }
            Closability::InGrace { closable_after } => {
                msg!(
                    "the batch becomes closable once now > {} (now {})",
                    closable_after,
                    now
                );
                err!(MupibError::BatchCloseGrace)
            }
        }
    }

    /// Refunds the escrow, closes it, closes the batch (Anchor `close = bank`).
    pub fn batch_close(ctx: Context<Self>) -> Result<()> {
        let now = Clock::get()?.unix_timestamp;
        let accounts = &mut *ctx.accounts;
        let (batch_id, bump, spent_count) = {
            let batch = accounts.batch.load()?;
            accounts.validate(&batch, now)?;
            batch.invariant()?;
            (batch.batch_id, batch.bump, batch.spent_count)
        };
        let bank_key = accounts.bank.key();
        let auditor_key = accounts.auditor.key();
        let batch_id_le = batch_id.to_le_bytes();
        let bump_seed = [bump];
        let signer_seeds: &[&[&[u8]]] = &[&[
            SEED_BATCH,
            bank_key.as_ref(),
            auditor_key.as_ref(),
            &batch_id_le,
            &bump_seed,
        ]];

        let refunded_amount = accounts.escrow.amount;
        if refunded_amount > 0 {
            token::transfer_checked(
                CpiContext::new_with_signer(
                    accounts.token_program.key(),
                    TransferChecked {
                        from: accounts.escrow.to_account_info(),
                        mint: accounts.mint.to_account_info(),
                        to: accounts.bank_token.to_account_info(),
                        authority: accounts.batch.to_account_info(),
                    },
                    signer_seeds,
                ),
                refunded_amount,
                accounts.mint.decimals,
            )?;
        }
        token::close_account(CpiContext::new_with_signer(
            accounts.token_program.key(),
            CloseAccount {
                account: accounts.escrow.to_account_info(),
                destination: accounts.bank.to_account_info(),
                authority: accounts.batch.to_account_info(),
            },
            signer_seeds,
        ))?;

        let registration = &mut accounts.bank_registration;
        registration.record_batch_closed()?;
        registration.invariant()?;

        emit_event(BatchClosed {
            batch: accounts.batch.key(),
            bank: bank_key,
            batch_id,
            spent_count,
            refunded_amount,
        });
        Ok(())
    }
}

//! `batch_create(batch_id, auditor, token_count, value, issued_at, expires_at)`: a registered bank
//! creates a `Batch` bound to one registered, active auditor (the only one that may redeem its
//! tokens: the auditor is part of the batch's address) and its escrow, and funds the escrow with
//! `token_count × value` from its own token account.

use anchor_lang::prelude::*;
use anchor_spl::token::{self, Mint, Token, TokenAccount, TransferChecked};

use crate::constants::{
    MAX_BATCH_TOKENS, SEED_AUDITOR, SEED_BANK, SEED_BATCH, SEED_CONFIG, SEED_ESCROW,
};
use crate::error::MupibError;
use crate::events::{emit_event, BatchCreated};
use crate::state::{AuditorRegistration, BankRegistration, Batch, Config};

/// Arguments of `batch_create`.
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug, PartialEq, Eq)]
pub struct BatchCreateArgs {
    /// Bank-chosen id, at least the bank's `next_batch_id`.
    pub batch_id: u64,
    /// The auditor the batch is bound to: the only one that may redeem its tokens. Must be
    /// registered and active.
    pub auditor: Pubkey,
    /// Number of tokens, `1 ..= MAX_BATCH_TOKENS`.
    pub token_count: u32,
    /// Value of each token in mint base units, > 0.
    pub value: u64,
    /// Issue time (unix seconds).
    pub issued_at: i64,
    /// Expiry (unix seconds), later than `issued_at` and than now.
    pub expires_at: i64,
}

/// Accounts of `batch_create`.
#[derive(Accounts)]
#[instruction(args: BatchCreateArgs)]
pub struct BatchCreate<'info> {
    /// The bank, pays the rent and funds the escrow.
    #[account(mut)]
    pub bank: Signer<'info>,
    /// `["config"]`.
    #[account(seeds = [SEED_CONFIG], bump = config.bump)]
    pub config: Account<'info, Config>,
    /// `["bank", bank]`: the bank must be registered and active.
    #[account(
        mut,
        seeds = [SEED_BANK, bank.key().as_ref()],
        bump = bank_registration.bump,
        has_one = bank,
    )]
    pub bank_registration: Account<'info, BankRegistration>,
    /// `["auditor", args.auditor]`: the auditor the batch is bound to must be registered and
    /// active.
    #[account(
        seeds = [SEED_AUDITOR, args.auditor.as_ref()],
        bump = auditor_registration.bump,
    )]
    pub auditor_registration: Account<'info, AuditorRegistration>,
    /// `["batch", bank, auditor, batch_id_le]`, created here.
    #[account(
        init,
        payer = bank,
        space = Batch::space_for_create(args.token_count),
        seeds = [
            SEED_BATCH,
            bank.key().as_ref(),
            args.auditor.as_ref(),
            args.batch_id.to_le_bytes().as_ref(),
        ],
        bump,
    )]
    pub batch: AccountLoader<'info, Batch>,
    /// `["escrow", batch]`: SPL token account of `Config.mint` whose authority is the batch PDA.
    #[account(
        init,
        payer = bank,
        seeds = [SEED_ESCROW, batch.key().as_ref()],
        bump,
        token::mint = mint,
        token::authority = batch,
    )]
    pub escrow: Account<'info, TokenAccount>,
    /// `Config.mint`.
    #[account(address = config.mint @ MupibError::WrongMint)]
    pub mint: Account<'info, Mint>,
    /// The bank's token account of `Config.mint`, debited `token_count × value`.
    #[account(
        mut,
        constraint = bank_token.mint == config.mint @ MupibError::WrongMint,
        constraint = bank_token.owner == bank.key() @ MupibError::WrongTokenAccountOwner,
    )]
    pub bank_token: Account<'info, TokenAccount>,
    /// SPL Token program.
    pub token_program: Program<'info, Token>,
    /// System program.
    pub system_program: Program<'info, System>,
}

impl BatchCreate<'_> {
    /// Checks pause, bank and auditor status, id order, counts, value and times; returns the
    /// escrow amount `token_count × value`.
    pub fn validate(&self, args: &BatchCreateArgs, now: i64) -> Result<u64> {
        self.config.require_not_paused()?;
        self.bank_registration.require_active()?;
        self.auditor_registration.require_active()?;
        require!(
            args.batch_id >= self.bank_registration.next_batch_id,
            MupibError::BatchIdReused
        );
        require!(
            args.token_count >= 1 && args.token_count <= MAX_BATCH_TOKENS,
            MupibError::BatchTokenCountOutOfRange
        );
        require!(args.value > 0, MupibError::ZeroTokenValue);
        require!(
            args.expires_at > args.issued_at && args.expires_at > now,
            MupibError::InvalidExpiry
        );
        u64::from(args.token_count)
            .checked_mul(args.value)
            .ok_or(error!(MupibError::ArithmeticOverflow))
    }

    /// Creates and funds the batch.
    pub fn batch_create(ctx: Context<Self>, args: BatchCreateArgs) -> Result<()> {
        let now = Clock::get()?.unix_timestamp;
        let escrow_amount = ctx.accounts.validate(&args, now)?;
        let accounts = &mut *ctx.accounts;

        token::transfer_checked(
            CpiContext::new(
                accounts.token_program.key(),
                TransferChecked {
                    from: accounts.bank_token.to_account_info(),
                    mint: accounts.mint.to_account_info(),
                    to: accounts.escrow.to_account_info(),
                    authority: accounts.bank.to_account_info(),
                },
            ),
            escrow_amount,
            accounts.mint.decimals,
        )?;

        {
            let mut batch = accounts.batch.load_init()?;
            *batch = Batch {
                bank: accounts.bank.key(),
                batch_id: args.batch_id,
                value: args.value,
                issued_at: args.issued_at,
                expires_at: args.expires_at,
                token_count: args.token_count,
                published: 0,
                spent_count: 0,
                sealed: 0,
                bump: ctx.bumps.batch,
                escrow_bump: ctx.bumps.escrow,
                reserved: [0; 1],
            };
            batch.invariant()?;
        }

        let registration = &mut accounts.bank_registration;
        registration.record_batch_created(args.batch_id, args.token_count)?;
        registration.invariant()?;

        emit_event(BatchCreated {
            batch: accounts.batch.key(),
            bank: accounts.bank.key(),
            auditor: args.auditor,
            batch_id: args.batch_id,
            token_count: args.token_count,
            value: args.value,
            issued_at: args.issued_at,
            expires_at: args.expires_at,
            escrow_amount,
        });
        Ok(())
    }
}

//! `bank_register(bank)`: the admin registers a bank (active).

use anchor_lang::prelude::*;

use crate::constants::{SEED_BANK, SEED_CONFIG};
use crate::error::MupibError;
use crate::events::{emit_event, BankRegistered};
use crate::state::{BankRegistration, Config};

/// Arguments of `bank_register`.
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug, PartialEq, Eq)]
pub struct BankRegisterArgs {
    /// The bank's signing key.
    pub bank: Pubkey,
}

/// Accounts of `bank_register`.
#[derive(Accounts)]
#[instruction(args: BankRegisterArgs)]
pub struct BankRegister<'info> {
    /// The admin, pays the rent.
    #[account(mut)]
    pub admin: Signer<'info>,
    /// `["config"]`.
    #[account(seeds = [SEED_CONFIG], bump = config.bump, has_one = admin @ MupibError::NotAdmin)]
    pub config: Account<'info, Config>,
    /// `["bank", bank]`, created here (fails if it exists).
    #[account(
        init,
        payer = admin,
        space = 8 + BankRegistration::INIT_SPACE,
        seeds = [SEED_BANK, args.bank.as_ref()],
        bump,
    )]
    pub bank_registration: Account<'info, BankRegistration>,
    /// System program.
    pub system_program: Program<'info, System>,
}

impl BankRegister<'_> {
    /// Nothing beyond the account constraints.
    pub fn validate(&self, _args: &BankRegisterArgs) -> Result<()> {
        Ok(())
    }

    /// Registers the bank.
    pub fn bank_register(ctx: Context<Self>, args: BankRegisterArgs) -> Result<()> {
        ctx.accounts.validate(&args)?;
        let registration = &mut ctx.accounts.bank_registration;
        registration.set_inner(BankRegistration {
            bank: args.bank,
            active: true,
            next_batch_id: 0,
            batches_created: 0,
            batches_closed: 0,
            tokens_created: 0,
            bump: ctx.bumps.bank_registration,
        });
        registration.invariant()?;
        emit_event(BankRegistered { bank: args.bank });
        Ok(())
    }
}

//! `bank_set_active(active)`: the admin activates or deactivates a registered bank.

use anchor_lang::prelude::*;

use crate::constants::{SEED_BANK, SEED_CONFIG};
use crate::error::MupibError;
use crate::events::{emit_event, BankActiveSet};
use crate::state::{BankRegistration, Config};

/// Arguments of `bank_set_active`.
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug, PartialEq, Eq)]
pub struct BankSetActiveArgs {
    /// New state.
    pub active: bool,
}

/// Accounts of `bank_set_active`.
#[derive(Accounts)]
pub struct BankSetActive<'info> {
    /// The admin.
    pub admin: Signer<'info>,
    /// `["config"]`.
    #[account(seeds = [SEED_CONFIG], bump = config.bump, has_one = admin @ MupibError::NotAdmin)]
    pub config: Account<'info, Config>,
    /// `["bank", bank]`.
    #[account(
        mut,
        seeds = [SEED_BANK, bank_registration.bank.as_ref()],
        bump = bank_registration.bump,
    )]
    pub bank_registration: Account<'info, BankRegistration>,
}

impl BankSetActive<'_> {
    /// Nothing beyond the account constraints.
    pub fn validate(&self, _args: &BankSetActiveArgs) -> Result<()> {
        Ok(())
    }

    /// Sets the bank's `active` flag.
    pub fn bank_set_active(ctx: Context<Self>, args: BankSetActiveArgs) -> Result<()> {
        ctx.accounts.validate(&args)?;
        let registration = &mut ctx.accounts.bank_registration;
        registration.set_active(args.active);
        registration.invariant()?;
        emit_event(BankActiveSet {
            bank: registration.bank,
            active: registration.active,
        });
        Ok(())
    }
}

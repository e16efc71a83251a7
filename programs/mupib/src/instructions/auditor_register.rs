//! `auditor_register(auditor)`: the admin registers an auditor (active).

use anchor_lang::prelude::*;

use crate::constants::{SEED_AUDITOR, SEED_CONFIG};
use crate::error::MupibError;
use crate::events::{emit_event, AuditorRegistered};
use crate::state::{AuditorRegistration, Config};

/// Arguments of `auditor_register`.
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug, PartialEq, Eq)]
pub struct AuditorRegisterArgs {
    /// The auditor's signing key.
    pub auditor: Pubkey,
}

/// Accounts of `auditor_register`.
#[derive(Accounts)]
#[instruction(args: AuditorRegisterArgs)]
pub struct AuditorRegister<'info> {
    /// The admin, pays the rent.
    #[account(mut)]
    pub admin: Signer<'info>,
    /// `["config"]`.
    #[account(seeds = [SEED_CONFIG], bump = config.bump, has_one = admin @ MupibError::NotAdmin)]
    pub config: Account<'info, Config>,
    /// `["auditor", auditor]`, created here (fails if it exists).
    #[account(
        init,
        payer = admin,
        space = 8 + AuditorRegistration::INIT_SPACE,
        seeds = [SEED_AUDITOR, args.auditor.as_ref()],
        bump,
    )]
    pub auditor_registration: Account<'info, AuditorRegistration>,
    /// System program.
    pub system_program: Program<'info, System>,
}

impl AuditorRegister<'_> {
    /// Nothing beyond the account constraints.
    pub fn validate(&self, _args: &AuditorRegisterArgs) -> Result<()> {
        Ok(())
    }

    /// Registers the auditor.
    pub fn auditor_register(ctx: Context<Self>, args: AuditorRegisterArgs) -> Result<()> {
        ctx.accounts.validate(&args)?;
        let registration = &mut ctx.accounts.auditor_registration;
        registration.set_inner(AuditorRegistration {
            auditor: args.auditor,
            active: true,
            blocks_opened: 0,
            blocks_verified: 0,
            tokens_paid: 0,
            amount_paid: 0,
            bump: ctx.bumps.auditor_registration,
            payout_seq: 0,
            payout_digest: [0; 32],
        });
        registration.invariant()?;
        emit_event(AuditorRegistered {
            auditor: args.auditor,
        });
        Ok(())
    }
}

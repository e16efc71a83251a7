//! `auditor_set_active(active)`: the admin activates or deactivates a registered auditor.

use anchor_lang::prelude::*;

use crate::constants::{SEED_AUDITOR, SEED_CONFIG};
use crate::error::MupibError;
use crate::events::{emit_event, AuditorActiveSet};
use crate::state::{AuditorRegistration, Config};

/// Arguments of `auditor_set_active`.
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug, PartialEq, Eq)]
pub struct AuditorSetActiveArgs {
    /// New state.
    pub active: bool,
}

/// Accounts of `auditor_set_active`.
#[derive(Accounts)]
pub struct AuditorSetActive<'info> {
    /// The admin.
    pub admin: Signer<'info>,
    /// `["config"]`.
    #[account(seeds = [SEED_CONFIG], bump = config.bump, has_one = admin @ MupibError::NotAdmin)]
    pub config: Account<'info, Config>,
    /// `["auditor", auditor]`.
    #[account(
        mut,
        seeds = [SEED_AUDITOR, auditor_registration.auditor.as_ref()],
        bump = auditor_registration.bump,
    )]
    pub auditor_registration: Account<'info, AuditorRegistration>,
}

impl AuditorSetActive<'_> {
    /// Nothing beyond the account constraints.
    pub fn validate(&self, _args: &AuditorSetActiveArgs) -> Result<()> {
        Ok(())
    }

    /// Sets the auditor's `active` flag.
    pub fn auditor_set_active(ctx: Context<Self>, args: AuditorSetActiveArgs) -> Result<()> {
        ctx.accounts.validate(&args)?;
        let registration = &mut ctx.accounts.auditor_registration;
        registration.set_active(args.active);
        registration.invariant()?;
        emit_event(AuditorActiveSet {
            auditor: registration.auditor,
            active: registration.active,
        });
        Ok(())
    }
}

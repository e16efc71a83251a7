//! `config_set_paused(paused)`: the admin pauses or resumes publishing and verification; a resume
//! records its time in `Config.resumed_at` (the close grace of expired batches restarts there).

use anchor_lang::prelude::*;

use crate::constants::SEED_CONFIG;
use crate::error::MupibError;
use crate::events::{emit_event, PausedSet};
use crate::state::Config;

/// Arguments of `config_set_paused`.
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug, PartialEq, Eq)]
pub struct ConfigSetPausedArgs {
    /// New state of the pause switch.
    pub paused: bool,
}

/// Accounts of `config_set_paused`.
#[derive(Accounts)]
pub struct ConfigSetPaused<'info> {
    /// The admin recorded in `Config`.
    pub admin: Signer<'info>,
    /// `["config"]`.
    #[account(mut, seeds = [SEED_CONFIG], bump = config.bump, has_one = admin @ MupibError::NotAdmin)]
    pub config: Account<'info, Config>,
}

impl ConfigSetPaused<'_> {
    /// Nothing beyond the account constraints.
    pub fn validate(&self, _args: &ConfigSetPausedArgs) -> Result<()> {
        Ok(())
    }

    /// Sets the pause switch.
    pub fn config_set_paused(ctx: Context<Self>, args: ConfigSetPausedArgs) -> Result<()> {
        ctx.accounts.validate(&args)?;
        let now = Clock::get()?.unix_timestamp;
        let config = &mut ctx.accounts.config;
        config.set_paused(args.paused, now);
        config.invariant()?;
        emit_event(PausedSet {
            paused: config.paused,
            resumed_at: config.resumed_at,
        });
        Ok(())
    }
}

//! `config_init(mint)`: creates the singleton `Config`; the signer becomes the admin.
//!
//! Deploy note: the first caller becomes the admin, so run it right after deployment
//! (`migrations/deploy`).

use anchor_lang::prelude::*;
use anchor_spl::token::Mint;

use crate::constants::SEED_CONFIG;
use crate::events::{emit_event, ConfigInitialized};
use crate::state::Config;

/// Arguments of `config_init`.
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug, PartialEq, Eq)]
pub struct ConfigInitArgs {
    /// SPL mint of escrows and payments.
    pub mint: Pubkey,
}

/// Accounts of `config_init`.
#[derive(Accounts)]
#[instruction(args: ConfigInitArgs)]
pub struct ConfigInit<'info> {
    /// Admin, pays the rent.
    #[account(mut)]
    pub admin: Signer<'info>,
    /// `["config"]`, created here (fails if it exists: no re-initialisation).
    #[account(
        init,
        payer = admin,
        space = 8 + Config::INIT_SPACE,
        seeds = [SEED_CONFIG],
        bump,
    )]
    pub config: Account<'info, Config>,
    /// The payment mint (must be an SPL Token mint equal to `args.mint`).
    #[account(address = args.mint)]
    pub mint: Account<'info, Mint>,
    /// System program.
    pub system_program: Program<'info, System>,
}

impl ConfigInit<'_> {
    /// Nothing beyond the account constraints.
    pub fn validate(&self, _args: &ConfigInitArgs) -> Result<()> {
        Ok(())
    }

    /// Creates the config.
    pub fn config_init(ctx: Context<Self>, args: ConfigInitArgs) -> Result<()> {
        ctx.accounts.validate(&args)?;
        let config = &mut ctx.accounts.config;
        config.set_inner(Config {
            admin: ctx.accounts.admin.key(),
            mint: args.mint,
            paused: false,
            bump: ctx.bumps.config,
            resumed_at: 0,
        });
        config.invariant()?;
        emit_event(ConfigInitialized {
            admin: config.admin,
            mint: config.mint,
        });
        Ok(())
    }
}

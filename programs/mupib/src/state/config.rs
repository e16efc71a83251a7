//! `Config` (`["config"]`): the program's admin, payment mint and pause switch.

use anchor_lang::prelude::*;

use crate::error::MupibError;

/// Singleton configuration of the program.
#[account]
#[derive(InitSpace, Debug)]
pub struct Config {
    /// Key allowed to pause the program and to register banks and auditors.
    pub admin: Pubkey,
    /// SPL mint of every escrow and every payment.
    pub mint: Pubkey,
    /// When set, publishing (batch create/publish/seal) and verification (block open/verify/finalize) fail.
    pub paused: bool,
    /// Bump of the `["config"]` PDA.
    pub bump: u8,
}

impl Config {
    /// Fails with [`MupibError::Paused`] while the program is paused.
    pub fn require_not_paused(&self) -> Result<()> {
        require!(!self.paused, MupibError::Paused);
        Ok(())
    }

    /// Pauses (`true`) or resumes (`false`) publishing and verification.
    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    /// Admin and mint are set.
    pub fn invariant(&self) -> Result<()> {
        require_keys_neq!(self.admin, Pubkey::default(), MupibError::InvariantViolated);
        require_keys_neq!(self.mint, Pubkey::default(), MupibError::InvariantViolated);
        Ok(())
    }
}

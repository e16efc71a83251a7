//! `Config` (`["config"]`): the program's admin, payment mint, pause switch and the time of the
//! last resume (which restarts the close grace of expired batches).

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
    /// Unix time of the last resume (`config_set_paused(false)` of a paused program), 0 before
    /// the first: an expired batch stays open until `BATCH_CLOSE_GRACE_SECS` after both its
    /// expiry and this time, so blocks held up by a pause can still be verified.
    pub resumed_at: i64,
}

impl Config {
    /// Fails with [`MupibError::Paused`] while the program is paused.
    pub fn require_not_paused(&self) -> Result<()> {
        require!(!self.paused, MupibError::Paused);
        Ok(())
    }

    /// Pauses (`true`) or resumes (`false`) publishing and verification. Resuming a paused
    /// program records `now` in `resumed_at`; resuming a running one changes nothing (a retried
    /// resume does not extend the grace of every batch).
    pub fn set_paused(&mut self, paused: bool, now: i64) {
        if self.paused && !paused {
            self.resumed_at = now;
        }
        self.paused = paused;
    }

    /// Admin and mint are set; `resumed_at` is a time (not negative).
    pub fn invariant(&self) -> Result<()> {
        require_keys_neq!(self.admin, Pubkey::default(), MupibError::InvariantViolated);
        require_keys_neq!(self.mint, Pubkey::default(), MupibError::InvariantViolated);
        require!(self.resumed_at >= 0, MupibError::InvariantViolated);
        Ok(())
    }
}

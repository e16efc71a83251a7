//! `BankRegistration` (`["bank", bank]`): a bank the admin allows to publish batches.

use anchor_lang::prelude::*;

use crate::error::MupibError;

/// A bank registered by the admin.
#[account]
#[derive(InitSpace, Debug)]
pub struct BankRegistration {
    /// The bank's signing key.
    pub bank: Pubkey,
    /// Only an active bank may create, publish and seal batches.
    pub active: bool,
    /// Lowest batch id the bank may still create; batch ids only grow, so a closed batch's
    /// address can never hold a new batch.
    pub next_batch_id: u64,
    /// Number of batches created.
    pub batches_created: u64,
    /// Number of batches closed.
    pub batches_closed: u64,
    /// Number of tokens in all batches created.
    pub tokens_created: u64,
    /// Bump of the PDA.
    pub bump: u8,
}

impl BankRegistration {
    /// Fails with [`MupibError::BankInactive`] unless the bank is active.
    pub fn require_active(&self) -> Result<()> {
        require!(self.active, MupibError::BankInactive);
        Ok(())
    }

    /// Counters are consistent: no more batches closed than created.
    pub fn invariant(&self) -> Result<()> {
        require!(
            self.batches_closed <= self.batches_created,
            MupibError::InvariantViolated
        );
        require!(
            self.batches_created <= self.next_batch_id,
            MupibError::InvariantViolated
        );
        Ok(())
    }
}

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

    /// Activates or deactivates the bank.
    pub fn set_active(&mut self, active: bool) {
        self.active = active;
    }

    /// Counts a created batch of `token_count` tokens; the next batch id is `batch_id + 1`.
    pub fn record_batch_created(&mut self, batch_id: u64, token_count: u32) -> Result<()> {
        self.next_batch_id = batch_id
            .checked_add(1)
            .ok_or(error!(MupibError::ArithmeticOverflow))?;
        self.batches_created = self
            .batches_created
            .checked_add(1)
            .ok_or(error!(MupibError::ArithmeticOverflow))?;
        self.tokens_created = self
            .tokens_created
            .checked_add(u64::from(token_count))
            .ok_or(error!(MupibError::ArithmeticOverflow))?;
        Ok(())
    }

    /// Counts a closed batch.
    pub fn record_batch_closed(&mut self) -> Result<()> {
        self.batches_closed = self
            .batches_closed
            .checked_add(1)
            .ok_or(error!(MupibError::ArithmeticOverflow))?;
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

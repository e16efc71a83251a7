//! `AuditorRegistration` (`["auditor", auditor]`): an auditor the admin allows to verify blocks.

use anchor_lang::prelude::*;

use crate::error::MupibError;

/// An auditor registered by the admin.
#[account]
#[derive(InitSpace, Debug)]
pub struct AuditorRegistration {
    /// The auditor's signing key.
    pub auditor: Pubkey,
    /// Only an active auditor may open, feed and finalize blocks.
    pub active: bool,
    /// Number of blocks opened.
    pub blocks_opened: u64,
    /// Number of blocks finalized (verified).
    pub blocks_verified: u64,
    /// Number of tokens decided valid (and paid) across all blocks.
    pub tokens_paid: u64,
    /// Total amount (mint base units) paid to the auditor from escrows.
    pub amount_paid: u64,
    /// Bump of the PDA.
    pub bump: u8,
}

impl AuditorRegistration {
    /// Fails with [`MupibError::AuditorInactive`] unless the auditor is active.
    pub fn require_active(&self) -> Result<()> {
        require!(self.active, MupibError::AuditorInactive);
        Ok(())
    }

    /// Activates or deactivates the auditor.
    pub fn set_active(&mut self, active: bool) {
        self.active = active;
    }

    /// Counts an opened block.
    pub fn record_block_opened(&mut self) -> Result<()> {
        self.blocks_opened = self
            .blocks_opened
            .checked_add(1)
            .ok_or(error!(MupibError::ArithmeticOverflow))?;
        Ok(())
    }

    /// Counts a verified (finalized) block.
    pub fn record_block_verified(&mut self) -> Result<()> {
        self.blocks_verified = self
            .blocks_verified
            .checked_add(1)
            .ok_or(error!(MupibError::ArithmeticOverflow))?;
        Ok(())
    }

    /// Counts `tokens` tokens paid to the auditor, `amount` in total.
    pub fn record_payment(&mut self, tokens: u32, amount: u64) -> Result<()> {
        self.tokens_paid = self
            .tokens_paid
            .checked_add(u64::from(tokens))
            .ok_or(error!(MupibError::ArithmeticOverflow))?;
        self.amount_paid = self
            .amount_paid
            .checked_add(amount)
            .ok_or(error!(MupibError::ArithmeticOverflow))?;
        Ok(())
    }

    /// Counters are consistent: no more blocks verified than opened.
    pub fn invariant(&self) -> Result<()> {
        require!(
            self.blocks_verified <= self.blocks_opened,
            MupibError::InvariantViolated
        );
        Ok(())
    }
}

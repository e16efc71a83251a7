//! `AuditorRegistration` (`["auditor", auditor]`): an auditor the admin allows to verify blocks,
//! and its payout record: the sequence number and digest of the last settlement batch that paid
//! vendors (SPEC §6 "Exactly once": a fact only the auditor's own signed transaction creates).

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
    /// Sequence number the auditor's next settlement batch must carry: batches
    /// `0 .. payout_seq` landed (0 at registration).
    pub payout_seq: u64,
    /// Digest of the settlement batch that landed last (`mupib_protocol::payout::PayoutBatch::digest`;
    /// zero before the first).
    pub payout_digest: [u8; 32],
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

    /// Records that settlement batch `seq` with `digest` lands (in the same transaction as its
    /// transfers). Fails with [`MupibError::PayoutSeqMismatch`] unless `seq` is the next
    /// `payout_seq`: a landed batch cannot land twice and none can be skipped.
    pub fn record_payout(&mut self, seq: u64, digest: [u8; 32]) -> Result<()> {
        require_eq!(seq, self.payout_seq, MupibError::PayoutSeqMismatch);
        self.payout_seq = self
            .payout_seq
            .checked_add(1)
            .ok_or(error!(MupibError::ArithmeticOverflow))?;
        self.payout_digest = digest;
        Ok(())
    }

    /// Counters are consistent: no more blocks verified than opened; no payout digest before
    /// the first payout.
    pub fn invariant(&self) -> Result<()> {
        require!(
            self.blocks_verified <= self.blocks_opened,
            MupibError::InvariantViolated
        );
        require!(
            self.payout_seq > 0 || self.payout_digest == [0; 32],
            MupibError::InvariantViolated
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration() -> AuditorRegistration {
        AuditorRegistration {
            auditor: Pubkey::new_unique(),
            active: true,
            blocks_opened: 0,
            blocks_verified: 0,
            tokens_paid: 0,
            amount_paid: 0,
            bump: 255,
            payout_seq: 0,
            payout_digest: [0; 32],
        }
    }

    #[test]
    fn payouts_are_recorded_in_sequence_only() {
        let mut record = registration();
        record.record_payout(0, [1; 32]).expect("seq 0 is next");
        assert_eq!((record.payout_seq, record.payout_digest), (1, [1; 32]));
        assert!(record.record_payout(0, [2; 32]).is_err(), "replay of seq 0");
        assert!(record.record_payout(2, [2; 32]).is_err(), "seq 1 skipped");
        assert_eq!((record.payout_seq, record.payout_digest), (1, [1; 32]));
        record.record_payout(1, [3; 32]).expect("seq 1 is next");
        assert_eq!((record.payout_seq, record.payout_digest), (2, [3; 32]));
        assert!(record.invariant().is_ok());
    }

    #[test]
    fn payout_seq_overflow_is_refused() {
        let mut record = registration();
        record.payout_seq = u64::MAX;
        record.payout_digest = [9; 32];
        assert!(record.record_payout(u64::MAX, [1; 32]).is_err());
        assert_eq!(
            (record.payout_seq, record.payout_digest),
            (u64::MAX, [9; 32])
        );
    }
}

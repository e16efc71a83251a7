//! `payout_record(seq, digest)`: the auditor records that its settlement batch `seq` lands
//! (SPEC §4 "Payouts", §6 "Exactly once"; paper Fig. 1 message 10).
//!
//! A settlement transaction is `[payout_record(seq, digest), SPL transfer_checked(auditor's
//! token account → vendor's account, amount) × n]`, signed by the auditor alone. It is atomic:
//! either the record advances and every vendor is paid, or nothing happens. The record accepts
//! `seq` only when it is the auditor's next `payout_seq`, so a batch can land at most once however
//! often it is signed or sent, and whether batch `seq` landed is the fact
//! `payout_seq > seq && payout_digest == digest` (for the last batch), which only the auditor's
//! signature can create. Nothing is created, so no pre-funded address can block it.
//!
//! Allowed while the program is paused and for an inactive auditor: paying vendors what they are
//! owed is never blocked.

use anchor_lang::prelude::*;

use crate::constants::SEED_AUDITOR;
use crate::events::{emit_event, PayoutRecorded};
use crate::state::AuditorRegistration;

/// Arguments of `payout_record`.
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug, PartialEq, Eq)]
pub struct PayoutRecordArgs {
    /// The batch's sequence number: must equal the auditor's `payout_seq`.
    pub seq: u64,
    /// The batch's digest (`mupib_protocol::payout::PayoutBatch::digest`).
    pub digest: [u8; 32],
}

/// Accounts of `payout_record`.
#[derive(Accounts)]
pub struct PayoutRecord<'info> {
    /// The auditor paying its vendors.
    pub auditor: Signer<'info>,
    /// `["auditor", auditor]`: its payout record.
    #[account(
        mut,
        seeds = [SEED_AUDITOR, auditor.key().as_ref()],
        bump = auditor_registration.bump,
        has_one = auditor,
    )]
    pub auditor_registration: Account<'info, AuditorRegistration>,
}

impl PayoutRecord<'_> {
    /// Nothing beyond the account constraints and the sequence check of
    /// [`AuditorRegistration::record_payout`] (no pause or activity check, see the module
    /// documentation).
    pub fn validate(&self, _args: &PayoutRecordArgs) -> Result<()> {
        Ok(())
    }

    /// Advances the auditor's payout record to `seq + 1` with `digest`.
    pub fn payout_record(ctx: Context<Self>, args: PayoutRecordArgs) -> Result<()> {
        ctx.accounts.validate(&args)?;
        let registration = &mut ctx.accounts.auditor_registration;
        registration.record_payout(args.seq, args.digest)?;
        registration.invariant()?;
        emit_event(PayoutRecorded {
            auditor: registration.auditor,
            seq: args.seq,
            digest: args.digest,
        });
        Ok(())
    }
}

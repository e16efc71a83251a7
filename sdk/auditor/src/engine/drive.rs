//! Drivers: intake followed by verification on a [`BlockVerifier`] and the decisions, for
//! callers that hold the chain in the same thread (the simulation, tests, `resume` at start).

use mupib_protocol::block::{BlockSubmission, BlockVerifier};
use mupib_protocol::token::TokenId;

use super::Auditor;
use crate::error::EngineError;
use crate::outcome::{BlockOutcome, Processed, TransactionSummary};
use crate::store::Store;

impl<S: Store> Auditor<S> {
    /// [`Self::intake_batch`] (one commit), then, for every block the batch formed, in order,
    /// verification on `verifier` and [`Self::apply_decisions`] (one commit per block, and the
    /// blocks their held transactions complete), as [`Self::process`] does after an intake.
    ///
    /// Blocks are sent to the chain only after the batch's commit returned, so a block id is
    /// never submitted before its formation is durable. Unlike [`Self::process`] called
    /// transaction by transaction, the chain is not consulted in the middle of the batch: a
    /// user's transactions that arrive in the batch after one of them formed a block are held
    /// (`Wait`) and get their final verdict in that block's [`BlockOutcome::verdicts`] — the
    /// same rule as for transactions arriving while a block is on the chain.
    ///
    /// One entry per transaction: its intake and the blocks decided after it, or the error that
    /// [`Self::intake`] or the chain step gave for it (a failed chain step leaves its block
    /// pending for [`Self::resume`]; the intake stays committed, as with [`Self::process`]).
    ///
    /// # Errors
    /// [`EngineError::Store`] if the batch's group commit fails (nothing written).
    #[allow(clippy::type_complexity)]
    pub fn process_batch(
        &mut self,
        txs: &[TransactionSummary],
        verifier: &mut dyn BlockVerifier,
    ) -> Result<Vec<Result<Processed, EngineError>>, EngineError> {
        let intakes = self.intake_batch(txs)?;
        let mut out = Vec::with_capacity(intakes.len());
        for intake in intakes {
            out.push(intake.and_then(|intake| {
                let blocks = self.verify_chain(intake.block.clone(), verifier)?;
                Ok(Processed { intake, blocks })
            }));
        }
        Ok(out)
    }

    /// Intake followed, for every block formed, by verification on `verifier` and
    /// [`Self::apply_decisions`] (including blocks completed by held transactions).
    ///
    /// # Errors
    /// As [`Self::intake`] and [`Self::apply_decisions`]; a verifier failure leaves the block
    /// pending ([`Self::resume`] retries it).
    pub fn process(
        &mut self,
        tx: &TransactionSummary,
        verifier: &mut dyn BlockVerifier,
    ) -> Result<Processed, EngineError> {
        let intake = self.intake(tx)?;
        let blocks = self.verify_chain(intake.block.clone(), verifier)?;
        Ok(Processed { intake, blocks })
    }

    /// A forgery report followed by verification of a block it flushed (see [`Self::process`]).
    ///
    /// # Errors
    /// As [`Self::process`].
    pub fn process_forgery(
        &mut self,
        tx: &TransactionSummary,
        forged: &[TokenId],
        verifier: &mut dyn BlockVerifier,
    ) -> Result<Processed, EngineError> {
        let intake = self.report_forgery(tx, forged)?;
        let blocks = self.verify_chain(intake.block.clone(), verifier)?;
        Ok(Processed { intake, blocks })
    }

    fn verify_chain(
        &mut self,
        mut next: Option<BlockSubmission>,
        verifier: &mut dyn BlockVerifier,
    ) -> Result<Vec<BlockOutcome>, EngineError> {
        let mut blocks = Vec::new();
        while let Some(submission) = next {
            let verification = verifier.verify(&submission)?;
            let outcome = self.apply_verification(submission.block_id, &verification)?;
            next = outcome.next_block.clone();
            blocks.push(outcome);
        }
        Ok(blocks)
    }

    /// After a restart: resubmits every block still pending in the store and applies the
    /// decisions (the chain's verification is idempotent per block).
    ///
    /// # Errors
    /// As [`Self::apply_decisions`]; a verifier failure leaves the remaining blocks pending.
    pub fn resume(
        &mut self,
        verifier: &mut dyn BlockVerifier,
    ) -> Result<Vec<BlockOutcome>, EngineError> {
        let mut outcomes = Vec::new();
        for block in self.store.pending_blocks()? {
            // A block decided while resuming an earlier one is skipped by apply's marker.
            let submission = self.submission(block.block_id)?;
            outcomes.extend(self.verify_chain(Some(submission), verifier)?);
        }
        Ok(outcomes)
    }
}

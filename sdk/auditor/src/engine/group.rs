//! Group commit: several engine steps computed in sequence against a staged view of the store
//! ([`super::staged::Staged`]) and written with ONE [`Store::apply_all`] (one database
//! transaction, one fsync). Nothing of a group may be released before that call returns; a
//! failed group wrote nothing.

use mupib_protocol::block::BlockVerification;
use mupib_protocol::token::TokenId;

use super::staged::Staged;
use super::Auditor;
use crate::error::EngineError;
use crate::outcome::{BlockOutcome, IntakeOutcome, TransactionSummary};
use crate::store::Store;

/// One intake step of a group commit ([`Auditor::apply_group`]).
#[derive(Debug, Clone, Copy)]
pub enum GroupStep<'a> {
    /// A transaction whose signatures all verified: [`Auditor::intake`].
    Intake(&'a TransactionSummary),
    /// A transaction signed by its user over tokens whose bank signature failed (the listed
    /// ones): [`Auditor::report_forgery`].
    Forgery(&'a TransactionSummary, &'a [TokenId]),
}

impl<S: Store> Auditor<S> {
    /// Group commit of a batch of intakes: computes each transaction's intake exactly as
    /// [`Self::intake`] called on them one after the other would (a later transaction sees what
    /// the earlier ones did: tokens seen, transaction ids, the user's queue, W and suspension,
    /// block ids, vendor balances), then writes all their change sets with ONE
    /// [`Store::apply_all`] — one database transaction, one fsync on the durable store.
    ///
    /// The result has one entry per transaction, in order: the outcome, or the error
    /// [`Self::intake`] would have returned for it (that transaction then wrote nothing, and the
    /// ones after it are computed without it, as in a sequential run).
    ///
    /// **Durability contract**: the outcomes describe state that exists only once this call
    /// returns `Ok`. The caller must not release any response of the batch before that; if the
    /// call fails, nothing of the batch was written (the engine keeps no state of its own), and
    /// the whole batch may be re-run (e.g. after a [`StoreError::Conflict`] with another
    /// instance).
    ///
    /// On a pruning [`crate::store::MemoryStore`] (which forgets rejected transactions at once)
    /// a transaction id rejected earlier in the same batch is still recognised as double
    /// selling, where the sequential path would have forgotten it.
    ///
    /// # Errors
    /// [`EngineError::Store`] if the group commit fails (nothing written).
    #[allow(clippy::type_complexity)]
    pub fn intake_batch(
        &mut self,
        txs: &[TransactionSummary],
    ) -> Result<Vec<Result<IntakeOutcome, EngineError>>, EngineError> {
        Ok(self.apply_decisions_and_intake_batch(&[], txs)?.1)
    }

    /// One group commit for a round of block decisions followed by a batch of intakes: what
    /// [`Self::apply_decisions_batch`] on `blocks` and then [`Self::intake_batch`] on `txs` would
    /// compute, written with ONE [`Store::apply_all`] (the service's steady state: the decisions
    /// the chain returned during batch k are committed with batch k+1's intakes, one fsync for
    /// both). Returns the block outcomes and the intake outcomes, one entry each, in order.
    ///
    /// **Durability contract**: release no response (intake or final) of the group before this
    /// call returns `Ok`; on error nothing of the group was written and it may be re-run.
    ///
    /// # Errors
    /// [`EngineError::Store`] if the group commit fails (nothing written).
    #[allow(clippy::type_complexity)]
    pub fn apply_decisions_and_intake_batch(
        &mut self,
        blocks: &[(u64, BlockVerification)],
        txs: &[TransactionSummary],
    ) -> Result<
        (
            Vec<Result<BlockOutcome, EngineError>>,
            Vec<Result<IntakeOutcome, EngineError>>,
        ),
        EngineError,
    > {
        let steps: Vec<GroupStep<'_>> = txs.iter().map(GroupStep::Intake).collect();
        self.apply_group(blocks, &steps)
    }

    /// The general group commit: a round of block decisions, then a sequence of intake steps
    /// (verified transactions, and transactions that carried forged tokens), computed as the
    /// corresponding single-step calls made one after the other would compute them
    /// ([`Self::apply_verification`], then [`Self::intake`] or [`Self::report_forgery`] per
    /// step), and written with ONE [`Store::apply_all`]. This is what the service's pipeline
    /// runs once per group.
    ///
    /// **Durability contract**: release no response (intake or final) of the group before this
    /// call returns `Ok`; on error nothing of the group was written and it may be re-run.
    ///
    /// # Errors
    /// [`EngineError::Store`] if the group commit fails (nothing written).
    #[allow(clippy::type_complexity)]
    pub fn apply_group(
        &mut self,
        blocks: &[(u64, BlockVerification)],
        steps: &[GroupStep<'_>],
    ) -> Result<
        (
            Vec<Result<BlockOutcome, EngineError>>,
            Vec<Result<IntakeOutcome, EngineError>>,
        ),
        EngineError,
    > {
        let mut staged = Auditor {
            store: Staged::new(&self.store),
            config: self.config,
        };
        let decided: Vec<_> = blocks
            .iter()
            .map(|(block_id, verification)| staged.apply_verification(*block_id, verification))
            .collect();
        let intakes: Vec<_> = steps
            .iter()
            .map(|step| match step {
                GroupStep::Intake(tx) => staged.intake(tx),
                GroupStep::Forgery(tx, forged) => staged.report_forgery(tx, forged),
            })
            .collect();
        let changes = staged.store.into_changes();
        self.store.apply_all(&changes)?;
        Ok((decided, intakes))
    }

    /// Group commit of the chain's decisions for several blocks: each block's decisions are
    /// applied exactly as [`Self::apply_decisions`] called on the blocks in the given order would
    /// (a later block sees what the earlier ones changed: users, held transactions, block ids),
    /// and all their change sets are written with ONE [`Store::apply_all`].
    ///
    /// Blocks that held transactions complete ([`BlockOutcome::next_block`]) are formed in the
    /// same commit; send them to the chain only after this call returned `Ok`.
    ///
    /// One entry per block: its outcome, or the error [`Self::apply_decisions`] would have
    /// returned for it (nothing of that block is written). **Durability contract** as for
    /// [`Self::intake_batch`]: release no final response before this call returns `Ok`; on
    /// error nothing of the group was written and the group may be re-run.
    ///
    /// # Errors
    /// [`EngineError::Store`] if the group commit fails (nothing written).
    #[allow(clippy::type_complexity)]
    pub fn apply_decisions_batch(
        &mut self,
        blocks: &[(u64, BlockVerification)],
    ) -> Result<Vec<Result<BlockOutcome, EngineError>>, EngineError> {
        Ok(self.apply_decisions_and_intake_batch(blocks, &[])?.0)
    }
}

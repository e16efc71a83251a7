//! Block formation (paper §3.2 "Block management"): the user's queued transactions and the one
//! that reaches W form a block of whole transactions, which goes to the chain.

use mupib_protocol::block::BlockSubmission;

use super::{count, unqueue, Auditor};
use crate::error::EngineError;
use crate::store::{
    BlockRecord, ChangeSet, Store, TransactionRecord, TransactionUpdate, UserState,
};

impl<S: Store> Auditor<S> {
    /// Rebuilds the submission of a stored block (to resubmit it after a restart).
    ///
    /// # Errors
    /// [`EngineError::UnknownBlock`], [`EngineError::Store`].
    pub fn submission(&self, block_id: u64) -> Result<BlockSubmission, EngineError> {
        let (block, txs) = self
            .store
            .block(block_id)?
            .ok_or(EngineError::UnknownBlock(block_id))?;
        Ok(BlockSubmission {
            block_id,
            user: block.user,
            entries: txs
                .iter()
                .flat_map(|tx| tx.tokens.iter().copied())
                .collect(),
        })
    }

    /// Forms a block: `stored` are queue transactions already in the store (block order, with the
    /// status and payout they must have once in the block), `new_waiting` the transaction being
    /// taken in now (stored by the caller, with the returned block id). Claims a block id, records
    /// the block, moves the stored members into it and takes them off the queue counters.
    pub(super) fn form_block(
        &self,
        state: &mut UserState,
        change: &mut ChangeSet,
        stored: &[TransactionRecord],
        new_waiting: Option<&TransactionRecord>,
        waiting_seq: Option<u64>,
    ) -> Result<BlockSubmission, EngineError> {
        let block_id = self.store.next_block_id()?;
        let capacity = stored.iter().map(|m| m.tokens.len()).sum::<usize>()
            + new_waiting.map_or(0, |w| w.tokens.len());
        let mut entries = Vec::with_capacity(capacity);
        for member in stored {
            entries.extend_from_slice(&member.tokens);
            unqueue(state, count(member.tokens.len())?)?;
            change.transaction_updates.push(TransactionUpdate {
                user: member.user,
                seq: member.seq,
                status: member.status,
                block_id: Some(block_id),
                payout: member.payout,
            });
        }
        if let Some(waiting) = new_waiting {
            entries.extend_from_slice(&waiting.tokens);
        }
        change.block_id_claim = Some(block_id);
        change.new_block = Some(BlockRecord {
            block_id,
            user: state.user,
            waiting_seq,
            token_count: count(entries.len())?,
            block_size: state.trust.block_size,
            outcome: None,
        });
        state.pending_block = Some(block_id);
        Ok(BlockSubmission {
            block_id,
            user: state.user,
            entries,
        })
    }
}

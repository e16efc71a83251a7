//! What the engine tells about its state: transactions, blocks and their outcomes, vendors,
//! misbehaviour — the reads behind the service's answers, traces and status. Callers ask the
//! engine, never its store.

use mupib_protocol::token::TokenId;
use mupib_protocol::transaction::TransactionId;
use mupib_protocol::Pubkey;

use super::Auditor;
use crate::error::EngineError;
use crate::outcome::BlockOutcome;
use crate::store::{
    BlockRecord, MisbehaviourRecord, Store, TransactionRecord, UserState, VendorAccount,
};

impl<S: Store> Auditor<S> {
    /// The user's state, if known (trust, W, suspension: what vendors and the bank may see).
    ///
    /// # Errors
    /// [`EngineError::Store`].
    pub fn user(&self, user: &Pubkey) -> Result<Option<UserState>, EngineError> {
        Ok(self.store.user(user)?)
    }

    /// The first stored transaction with this id.
    ///
    /// # Errors
    /// [`EngineError::Store`].
    pub fn transaction(
        &self,
        id: &TransactionId,
    ) -> Result<Option<TransactionRecord>, EngineError> {
        Ok(self.store.transaction_by_id(id)?)
    }

    /// Whether a token was seen at intake.
    ///
    /// # Errors
    /// [`EngineError::Store`].
    pub fn token_seen(&self, token: &TokenId) -> Result<bool, EngineError> {
        Ok(self.store.token_seen(token)?)
    }

    /// A block and its transactions, in block order.
    ///
    /// # Errors
    /// [`EngineError::Store`].
    pub fn block(
        &self,
        block_id: u64,
    ) -> Result<Option<(BlockRecord, Vec<TransactionRecord>)>, EngineError> {
        Ok(self.store.block(block_id)?)
    }

    /// A decided block's outcome (`None` while pending or for an unknown block).
    ///
    /// # Errors
    /// [`EngineError::Store`]; [`EngineError::Corrupt`] if the stored outcome does not decode.
    pub fn block_outcome(&self, block_id: u64) -> Result<Option<BlockOutcome>, EngineError> {
        match self.store.block(block_id)? {
            Some((record, _)) => record
                .outcome
                .as_deref()
                .map(|stored| decode_outcome(block_id, stored))
                .transpose(),
            None => Ok(None),
        }
    }

    /// Blocks formed but not yet decided, ascending.
    ///
    /// # Errors
    /// [`EngineError::Store`].
    pub fn pending_blocks(&self) -> Result<Vec<BlockRecord>, EngineError> {
        Ok(self.store.pending_blocks()?)
    }

    /// The id the next block will get.
    ///
    /// # Errors
    /// [`EngineError::Store`].
    pub fn next_block_id(&self) -> Result<u64, EngineError> {
        Ok(self.store.next_block_id()?)
    }

    /// A vendor's payout account (zero if unknown).
    ///
    /// # Errors
    /// [`EngineError::Store`].
    pub fn vendor(&self, vendor: &Pubkey) -> Result<VendorAccount, EngineError> {
        Ok(self.store.vendor(vendor)?)
    }

    /// All misbehaviour records, oldest first.
    ///
    /// # Errors
    /// [`EngineError::Store`].
    pub fn misbehaviour(&self) -> Result<Vec<MisbehaviourRecord>, EngineError> {
        Ok(self.store.misbehaviour()?)
    }
}

/// A stored outcome (the block's processed-decision marker), decoded.
pub(super) fn decode_outcome(block_id: u64, stored: &str) -> Result<BlockOutcome, EngineError> {
    serde_json::from_str(stored)
        .map_err(|e| EngineError::Corrupt(format!("stored outcome of block {block_id}: {e}")))
}

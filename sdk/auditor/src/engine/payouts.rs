//! Vendor payouts (SPEC §4 "Payouts"; paper Fig. 1 message 10): what is owed, and the
//! settlement batches that move it on-chain, each reserved under an idempotency key. The
//! settlement worker drives these; see the store's contract for their idempotency.

use mupib_protocol::Pubkey;

use super::Auditor;
use crate::error::EngineError;
use mupib_protocol::payout::{SignedPayout, VendorPayout};

use crate::store::{SettlementBatch, Store};

impl<S: Store> Auditor<S> {
    /// Vendors with a positive settleable balance, by key.
    ///
    /// # Errors
    /// [`EngineError::Store`].
    pub fn pending_payouts(&self) -> Result<Vec<VendorPayout>, EngineError> {
        Ok(self.store.pending_payouts()?)
    }

    /// Reserves a settlement batch under `key` for payout sequence number `seq` (amounts move
    /// to `in_flight`). Idempotent.
    ///
    /// # Errors
    /// [`EngineError::Store`], e.g. an amount above a vendor's settleable balance.
    pub fn begin_settlement(
        &mut self,
        key: &str,
        seq: u64,
        items: &[VendorPayout],
    ) -> Result<SettlementBatch, EngineError> {
        Ok(self.store.begin_settlement(key, seq, items)?)
    }

    /// Stores the transaction signed for an in-flight batch, before it is sent.
    ///
    /// # Errors
    /// [`EngineError::Store`], e.g. the batch is no longer in flight.
    pub fn record_signed_settlement(
        &mut self,
        key: &str,
        signed: &SignedPayout,
    ) -> Result<SettlementBatch, EngineError> {
        Ok(self.store.record_signed_settlement(key, signed)?)
    }

    /// The batches still in flight, by sequence number (to resolve first).
    ///
    /// # Errors
    /// [`EngineError::Store`].
    pub fn open_settlements(&self) -> Result<Vec<SettlementBatch>, EngineError> {
        Ok(self.store.open_settlements()?)
    }

    /// The `limit` most recent settlement batches.
    ///
    /// # Errors
    /// [`EngineError::Store`].
    pub fn recent_settlements(&self, limit: usize) -> Result<Vec<SettlementBatch>, EngineError> {
        Ok(self.store.recent_settlements(limit)?)
    }

    /// Marks a batch paid on-chain with `reference`. Idempotent.
    ///
    /// # Errors
    /// [`EngineError::Store`].
    pub fn complete_settlement(
        &mut self,
        key: &str,
        reference: &str,
    ) -> Result<SettlementBatch, EngineError> {
        Ok(self.store.complete_settlement(key, reference)?)
    }

    /// Gives a reserved batch up (its transfer was never sent). Idempotent.
    ///
    /// # Errors
    /// [`EngineError::Store`].
    pub fn abort_settlement(&mut self, key: &str) -> Result<SettlementBatch, EngineError> {
        Ok(self.store.abort_settlement(key)?)
    }

    /// A settlement batch by key.
    ///
    /// # Errors
    /// [`EngineError::Store`].
    pub fn settlement(&self, key: &str) -> Result<Option<SettlementBatch>, EngineError> {
        Ok(self.store.settlement(key)?)
    }

    /// A vendor's balance still to settle.
    ///
    /// # Errors
    /// [`EngineError::Store`].
    pub fn settleable(&self, vendor: &Pubkey) -> Result<u64, EngineError> {
        Ok(self.store.vendor(vendor)?.settleable())
    }
}

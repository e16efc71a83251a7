//! The batches an auditor can redeem, as intake checks tokens against them (issue 9 item 5):
//! [`LedgerBatches`] implements `mupib_protocol::batch::BatchDirectory` by reading the `Batch`
//! account bound to the auditor (`["batch", bank, auditor, batch_id]`) from any [`Ledger`].
//!
//! A batch bound to another auditor is not at that address, so it reads as absent: its tokens
//! would be decided unpublished for this auditor, and intake refuses them up front.

use std::sync::Arc;

use mupib_protocol::batch::{BatchDirectory, BatchLookupError, BatchTerms};
use solana_sdk::pubkey::Pubkey;

use crate::ledger::Ledger;
use crate::program::accounts::fetch_batch;
use crate::program::pda;

/// The batches bound to `auditor` on a ledger.
pub struct LedgerBatches {
    ledger: Arc<dyn Ledger>,
    auditor: Pubkey,
}

impl std::fmt::Debug for LedgerBatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerBatches")
            .field("auditor", &self.auditor)
            .finish()
    }
}

impl LedgerBatches {
    /// Reads the batches bound to `auditor` from `ledger`.
    pub fn new(ledger: Arc<dyn Ledger>, auditor: Pubkey) -> Self {
        LedgerBatches { ledger, auditor }
    }
}

impl BatchDirectory for LedgerBatches {
    fn batch_terms(
        &self,
        bank: &Pubkey,
        batch_id: u64,
    ) -> Result<Option<BatchTerms>, BatchLookupError> {
        let address = pda::batch(bank, &self.auditor, batch_id).0;
        let batch = fetch_batch(self.ledger.as_ref(), &address).map_err(|e| {
            BatchLookupError(format!(
                "cannot read batch {batch_id} of bank {bank} ({address}): {e}"
            ))
        })?;
        Ok(batch.map(|batch| BatchTerms {
            value: batch.header.value,
            token_count: batch.header.token_count,
            sealed: batch.is_sealed(),
            expires_at: batch.header.expires_at,
        }))
    }
}

//! The embedded ledger's signature statuses and transaction history: every transaction the bank
//! executed (its fee charged, whether it succeeded or failed), with its outcome and its logs,
//! persisted with the account post-states it produced (`persist.rs`) and kept for the last
//! [`super::OpenOptions::history_transactions`] transactions.
//!
//! This is what answers a transaction sent again — after a restart too — with its first outcome
//! instead of executing it, and what `mupib localnet` serves `getSignatureStatuses`,
//! `getTransaction`, `getSignaturesForAddress` and `getBlock` from.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use solana_sdk::hash::Hash;
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::Signature;
use solana_sdk::transaction::{Transaction, TransactionError};

/// A transaction the ledger executed, as clients see it afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutedTransaction {
    /// Its first signature (its id).
    pub signature: Signature,
    /// The transaction as sent (legacy).
    pub transaction: Transaction,
    /// The ledger's slot when it executed.
    pub slot: u64,
    /// The ledger's unix time when it executed.
    pub block_time: i64,
    /// The bank's blockhash when it executed (the hash of the "block" it is in).
    pub blockhash: Hash,
    /// The fee charged, in lamports.
    pub fee: u64,
    /// `None` when it succeeded.
    pub err: Option<TransactionError>,
    /// The log lines, in the validator's format (see `logs.rs`).
    pub logs: Vec<String>,
    /// Data returned by the last program that set return data, with that program's id.
    pub return_data: Option<(Pubkey, Vec<u8>)>,
    /// Lamports of every account of the message before execution, in message order.
    pub pre_balances: Vec<u64>,
    /// Lamports of every account of the message after execution, in message order.
    pub post_balances: Vec<u64>,
}

/// [`ExecutedTransaction`] as stored in the data directory (bincode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct StoredTransaction {
    pub(super) signature: Vec<u8>,
    pub(super) transaction: Vec<u8>,
    pub(super) slot: u64,
    pub(super) block_time: i64,
    pub(super) blockhash: [u8; 32],
    pub(super) fee: u64,
    pub(super) err: Option<TransactionError>,
    pub(super) logs: Vec<String>,
    pub(super) return_data: Option<([u8; 32], Vec<u8>)>,
    pub(super) pre_balances: Vec<u64>,
    pub(super) post_balances: Vec<u64>,
}

impl StoredTransaction {
    pub(super) fn from_executed(executed: &ExecutedTransaction) -> Result<Self, String> {
        Ok(StoredTransaction {
            signature: executed.signature.as_ref().to_vec(),
            transaction: bincode::serialize(&executed.transaction)
                .map_err(|e| format!("cannot encode the transaction: {e}"))?,
            slot: executed.slot,
            block_time: executed.block_time,
            blockhash: executed.blockhash.to_bytes(),
            fee: executed.fee,
            err: executed.err.clone(),
            logs: executed.logs.clone(),
            return_data: executed
                .return_data
                .as_ref()
                .map(|(program, data)| (program.to_bytes(), data.clone())),
            pre_balances: executed.pre_balances.clone(),
            post_balances: executed.post_balances.clone(),
        })
    }

    pub(super) fn to_executed(&self) -> Result<ExecutedTransaction, String> {
        let signature = Signature::try_from(self.signature.as_slice())
            .map_err(|e| format!("bad signature in the history: {e}"))?;
        let transaction: Transaction = bincode::deserialize(&self.transaction)
            .map_err(|e| format!("bad transaction {signature} in the history: {e}"))?;
        Ok(ExecutedTransaction {
            signature,
            transaction,
            slot: self.slot,
            block_time: self.block_time,
            blockhash: Hash::new_from_array(self.blockhash),
            fee: self.fee,
            err: self.err.clone(),
            logs: self.logs.clone(),
            return_data: self
                .return_data
                .as_ref()
                .map(|(program, data)| (Pubkey::new_from_array(*program), data.clone())),
            pre_balances: self.pre_balances.clone(),
            post_balances: self.post_balances.clone(),
        })
    }
}

/// The bounded history, oldest first, indexed by signature.
#[derive(Debug, Default)]
pub(super) struct History {
    limit: usize,
    order: VecDeque<Arc<ExecutedTransaction>>,
    by_signature: HashMap<Signature, Arc<ExecutedTransaction>>,
}

impl History {
    pub(super) fn new(limit: usize) -> Self {
        History {
            limit: limit.max(1),
            ..History::default()
        }
    }

    pub(super) fn insert(&mut self, executed: Arc<ExecutedTransaction>) {
        if self.by_signature.contains_key(&executed.signature) {
            return;
        }
        self.by_signature
            .insert(executed.signature, Arc::clone(&executed));
        self.order.push_back(executed);
        while self.order.len() > self.limit {
            if let Some(old) = self.order.pop_front() {
                self.by_signature.remove(&old.signature);
            }
        }
    }

    pub(super) fn get(&self, signature: &Signature) -> Option<Arc<ExecutedTransaction>> {
        self.by_signature.get(signature).cloned()
    }

    /// Newest first.
    pub(super) fn newest_first(&self) -> impl Iterator<Item = &Arc<ExecutedTransaction>> {
        self.order.iter().rev()
    }

    pub(super) fn oldest(&self) -> Option<&Arc<ExecutedTransaction>> {
        self.order.front()
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn executed(byte: u8) -> Arc<ExecutedTransaction> {
        Arc::new(ExecutedTransaction {
            signature: Signature::from([byte; 64]),
            transaction: Transaction::default(),
            slot: u64::from(byte),
            block_time: 0,
            blockhash: Hash::default(),
            fee: 5000,
            err: Some(TransactionError::InsufficientFundsForFee),
            logs: vec!["Program log: x".to_string()],
            return_data: Some((Pubkey::new_unique(), vec![1, 2])),
            pre_balances: vec![10],
            post_balances: vec![5],
        })
    }

    #[test]
    fn history_forgets_the_oldest_beyond_its_limit() {
        let mut history = History::new(2);
        for byte in 0..3u8 {
            history.insert(executed(byte));
        }
        assert!(history.get(&Signature::from([0; 64])).is_none());
        assert!(history.get(&Signature::from([2; 64])).is_some());
        assert_eq!(history.len(), 2);
        let slots: Vec<u64> = history.newest_first().map(|t| t.slot).collect();
        assert_eq!(slots, vec![2, 1]);
    }

    #[test]
    fn a_stored_transaction_reads_back_the_same() {
        let original = executed(7);
        let stored = StoredTransaction::from_executed(&original).expect("encode");
        let bytes = bincode::serialize(&stored).expect("bincode");
        let back: StoredTransaction = bincode::deserialize(&bytes).expect("decode");
        assert_eq!(&back.to_executed().expect("executed"), original.as_ref());
    }
}

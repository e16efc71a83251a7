//! Paying vendors on-chain (paper Fig. 1 message 10; SPEC §4 "Payouts", §6 "Exactly once"): the
//! [`PayoutSender`] port the auditor's settlement pays through, and what crosses it.
//!
//! A settlement batch has a sequence number: the auditor's on-chain payout record
//! (`AuditorRegistration.payout_seq` and `payout_digest` in the µPIB program) accepts batch
//! `seq` only when `seq` is its next number, and then records the batch's [`PayoutBatch::digest`]
//! — in the same transaction as the SPL transfers, so either both happen or neither. Only the
//! auditor's own signature can write that record; no transfer or account creation by anyone
//! else can make a batch look paid. Whether batch `seq` landed is therefore a fact:
//! `next_seq > seq` with the batch's digest recorded.
//!
//! Implemented by the chain crate's `LedgerPayouts` (any ledger) and by test doubles.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Pubkey;

/// Domain tag of a payout batch digest.
pub const PAYOUT_DIGEST_TAG: &[u8] = b"mupib:payout:v1";

/// Most vendors paid by one settlement transaction (keeps it under 1232 bytes; the chain
/// crate checks the size of every transaction it signs).
pub const MAX_VENDORS_PER_BATCH: usize = 12;

/// An amount owed to a vendor (an item of a settlement batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VendorPayout {
    /// The vendor.
    pub vendor: Pubkey,
    /// The amount in base units.
    pub amount: u64,
}

/// One settlement batch as the chain sees it: its sequence number and its items (ordered by
/// vendor key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutBatch {
    /// The payout sequence number the batch consumes on-chain.
    pub seq: u64,
    /// One transfer per vendor, ordered by vendor key.
    pub items: Vec<VendorPayout>,
}

impl PayoutBatch {
    /// `SHA-256(PAYOUT_DIGEST_TAG || auditor || seq_le || (vendor || amount_le)*)`: what the
    /// auditor's payout record stores when the batch lands.
    pub fn digest(&self, auditor: &Pubkey) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(PAYOUT_DIGEST_TAG);
        hasher.update(auditor.as_ref());
        hasher.update(self.seq.to_le_bytes());
        for item in &self.items {
            hasher.update(item.vendor.as_ref());
            hasher.update(item.amount.to_le_bytes());
        }
        hasher.finalize().into()
    }

    /// The batch's total (u128: no overflow).
    pub fn total(&self) -> u128 {
        self.items.iter().map(|i| u128::from(i.amount)).sum()
    }
}

/// The auditor's payout record on-chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutRecord {
    /// The sequence number the next batch must carry (batches `0..next_seq` landed).
    pub next_seq: u64,
    /// The digest of the batch that landed last (zero before the first).
    pub last_digest: [u8; 32],
}

/// Why a vendor cannot be paid now (it is left out of batches and reported; its balance stays
/// accrued).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum DestinationProblem {
    /// No payout account is known for the vendor.
    #[error("no payout account is known for the vendor")]
    Unknown,
    /// The payout account does not exist on-chain (never created, or closed).
    #[error("its payout account {account} does not exist on-chain (closed?)")]
    Missing {
        /// The account.
        account: String,
    },
    /// The account is not a token account of the payment mint.
    #[error("its payout account {account} is not a token account of the payment mint: {detail}")]
    Unusable {
        /// The account.
        account: String,
        /// What is wrong.
        detail: String,
    },
    /// The account is frozen.
    #[error("its payout account {account} is frozen")]
    Frozen {
        /// The account.
        account: String,
    },
}

/// A signed settlement transaction, opaque to settlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedPayout {
    /// The transaction signature (base58): the batch's reference once it landed.
    pub signature: String,
    /// The serialized transaction (resent as is while it may still land).
    pub transaction: Vec<u8>,
}

/// What sending a signed settlement transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// It executed successfully.
    Executed,
    /// It was refused or failed, definitively: *these bytes* can never execute. It does not say
    /// the batch never paid: an earlier copy or version may have landed (e.g. a resend refused
    /// with "blockhash not found" after a restart), so read [`PayoutSender::record`] before
    /// giving the batch up. `vendor` names the destination that failed, when the failure points
    /// at one.
    Failed {
        /// What the chain said.
        reason: String,
        /// The vendor whose transfer failed, if any.
        vendor: Option<Pubkey>,
    },
    /// Unknown (transport failure, timeout): it may still execute while its blockhash is valid.
    Unknown {
        /// What went wrong.
        reason: String,
    },
}

/// Errors of the payout port: the chain could not be read or a transaction not built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payouts: {0}")]
pub struct PayoutError(pub String);

/// The chain side of settlement.
pub trait PayoutSender: Send {
    /// The auditor's payout record as the chain holds it now.
    ///
    /// # Errors
    /// [`PayoutError`] when the chain cannot be read.
    fn record(&mut self) -> Result<PayoutRecord, PayoutError>;

    /// Whether `vendor` can be paid now (its payout account exists and takes the payment mint).
    ///
    /// # Errors
    /// [`PayoutError`] when the chain cannot be read.
    fn check_destination(
        &mut self,
        vendor: &Pubkey,
    ) -> Result<Result<(), DestinationProblem>, PayoutError>;

    /// The balance the auditor pays from, in base units.
    ///
    /// # Errors
    /// [`PayoutError`] when the chain cannot be read.
    fn funds(&mut self) -> Result<u64, PayoutError>;

    /// Builds and signs `batch`'s transaction (payout record + one transfer per item) with a
    /// fresh blockhash.
    ///
    /// # Errors
    /// [`PayoutError`] (no blockhash, a vendor without a payout account, too large).
    fn sign(&mut self, batch: &PayoutBatch) -> Result<SignedPayout, PayoutError>;

    /// Sends a signed transaction and waits for its execution.
    fn send(&mut self, payout: &SignedPayout) -> SendOutcome;

    /// Whether a signed transaction could still execute (its blockhash is still valid).
    ///
    /// # Errors
    /// [`PayoutError`] when the chain cannot be read.
    fn may_still_land(&mut self, payout: &SignedPayout) -> Result<bool, PayoutError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(seq: u64, amounts: &[u64]) -> PayoutBatch {
        PayoutBatch {
            seq,
            items: amounts
                .iter()
                .enumerate()
                .map(|(i, amount)| VendorPayout {
                    vendor: Pubkey::new_from_array([u8::try_from(i).unwrap_or(0) + 1; 32]),
                    amount: *amount,
                })
                .collect(),
        }
    }

    #[test]
    fn digest_binds_auditor_seq_and_every_item() {
        let auditor = Pubkey::new_from_array([9; 32]);
        let base = batch(3, &[10, 20]).digest(&auditor);
        assert_eq!(base, batch(3, &[10, 20]).digest(&auditor));
        assert_ne!(base, batch(4, &[10, 20]).digest(&auditor));
        assert_ne!(base, batch(3, &[10, 21]).digest(&auditor));
        assert_ne!(base, batch(3, &[10]).digest(&auditor));
        assert_ne!(
            base,
            batch(3, &[10, 20]).digest(&Pubkey::new_from_array([8; 32]))
        );
        assert_eq!(batch(3, &[10, 20]).total(), 30);
    }
}

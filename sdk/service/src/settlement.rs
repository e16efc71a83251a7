//! Vendor payout settlement (SPEC §4 "Payouts", paper Fig. 1 message 10): balances accrued at
//! v·(1−ρ) per delivered token are moved on-chain in SPL transfers from the auditor's token
//! account, batched (one transfer per vendor, several vendors per transaction), idempotently.
//!
//! # Exactly once
//!
//! Each batch has an idempotency key. Its transaction creates, besides the transfers, a marker
//! account at `create_with_seed(auditor, key, system_program)`; creating an account that exists
//! fails, so *at most one* transaction per key can ever execute, however many times it is signed
//! or sent, and whether the batch landed is an on-chain fact anyone can read back
//! ([`PayoutSender::landed`]). The steps, each durable before the next:
//!
//! 1. the key is written to the service journal;
//! 2. the batch is reserved in the store under the key (`begin_settlement`: amounts move to
//!    `in_flight`);
//! 3. the transaction is signed and its signature written to the journal;
//! 4. it is sent;
//! 5. the batch is completed in the store with the signature (`complete_settlement`).
//!
//! Recovery ([`settle_once`] always starts with it) of an unfinished key: not reserved → the key
//! is forgotten; reserved but never signed → nothing can be on-chain, the batch is aborted and
//! its amounts become settleable again; signed → if the marker exists the batch is completed,
//! otherwise a fresh transaction for the *same key and items* is sent (the marker makes a late
//! landing of the older one impossible to double-pay). A crash therefore never pays twice and
//! never forgets a payout. A batch whose transaction keeps failing stays in flight (reported),
//! never aborted once signed.

use std::collections::HashMap;
use std::sync::Arc;

use mupib_auditor::store::{SettlementStatus, Store, VendorPayout};
use mupib_auditor::{Auditor, EngineError};
use mupib_chain::ledger::{check_transaction_size, Ledger};
use mupib_protocol::Pubkey;
use serde::{Deserialize, Serialize};
use solana_sdk::signature::{Keypair, Signer};
use solana_sdk::transaction::Transaction;

use super::journal::Journal;

/// Most vendors paid by one settlement transaction (keeps it well under 1232 bytes; checked).
pub const MAX_VENDORS_PER_BATCH: usize = 12;

/// Errors of settlement. The store and journal are left consistent; re-running recovers.
#[derive(Debug, thiserror::Error)]
pub enum SettlementError {
    /// The auditor engine's store failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The settlement journal failed.
    #[error("settlement journal: {0}; check that the data directory is writable")]
    Journal(#[from] rusqlite::Error),
    /// The chain refused or could not be reached; the batch stays in flight and is retried.
    #[error("settlement {key}: the chain failed: {detail}; the batch stays in flight and is retried by the next settlement run")]
    Chain {
        /// The batch key.
        key: String,
        /// What failed.
        detail: String,
    },
    /// The payout configuration is unusable.
    #[error("payout configuration: {0}")]
    Config(String),
}

/// A signed settlement transaction, not yet sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPayout {
    /// The batch key.
    pub key: String,
    /// The transaction signature (base58).
    pub signature: String,
    /// The serialized transaction (opaque to the settler).
    pub transaction: Vec<u8>,
}

/// The chain side of settlement.
pub trait PayoutSender: Send {
    /// Whether `vendor` has a known destination token account (others are left accrued).
    fn can_pay(&self, vendor: &Pubkey) -> bool;
    /// Whether the batch under `key` executed on-chain (its marker account exists).
    ///
    /// # Errors
    /// [`SettlementError::Chain`] when the chain cannot be read.
    fn landed(&mut self, key: &str) -> Result<bool, SettlementError>;
    /// Builds and signs the batch transaction (marker + one transfer per item).
    ///
    /// # Errors
    /// [`SettlementError::Chain`] (no blockhash), [`SettlementError::Config`] (unknown vendor).
    fn sign(&mut self, key: &str, items: &[VendorPayout]) -> Result<SignedPayout, SettlementError>;
    /// Sends a signed batch and waits for its execution.
    ///
    /// # Errors
    /// [`SettlementError::Chain`] if it did not execute (it may still land later; the marker
    /// keeps that safe).
    fn send(&mut self, payout: &SignedPayout) -> Result<(), SettlementError>;
}

/// What happened to one batch in a settlement run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReport {
    /// The idempotency key.
    pub key: String,
    /// `completed`, `aborted` (never signed, amounts returned) or `in_flight` (retry later).
    pub status: String,
    /// The transaction signature, once signed.
    pub signature: Option<String>,
    /// Vendors paid.
    pub vendors: usize,
    /// Total amount in base units.
    pub amount: u64,
    /// Whether this batch was left by an earlier run (recovered) rather than started now.
    pub recovered: bool,
}

/// The result of one settlement run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SettlementReport {
    /// Batches handled, recovered ones first.
    pub batches: Vec<BatchReport>,
    /// Vendors with a settleable balance but no destination account (left accrued).
    pub unpayable_vendors: Vec<String>,
    /// Errors of batches left in flight.
    pub errors: Vec<String>,
}

impl SettlementReport {
    /// Amount completed in this run.
    pub fn completed_amount(&self) -> u128 {
        self.batches
            .iter()
            .filter(|b| b.status == "completed")
            .map(|b| u128::from(b.amount))
            .sum()
    }
}

fn total(items: &[VendorPayout]) -> u64 {
    let sum: u128 = items.iter().map(|i| u128::from(i.amount)).sum();
    u64::try_from(sum).unwrap_or(u64::MAX)
}

/// A fresh idempotency key: 32 hex digits from a new random key pair (fits a 32-byte seed).
fn new_key() -> String {
    let random = Keypair::new().pubkey().to_bytes();
    random[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Recovers unfinished batches, then settles every payable vendor's balance in new batches of at
/// most [`MAX_VENDORS_PER_BATCH`] vendors. Chain failures leave batches in flight and are listed
/// in the report; store and journal failures abort the run (re-run to recover).
///
/// # Errors
/// [`SettlementError::Store`], [`SettlementError::Journal`].
pub fn settle_once<S: Store>(
    engine: &mut Auditor<S>,
    journal: &Journal,
    sender: &mut dyn PayoutSender,
) -> Result<SettlementReport, SettlementError> {
    let mut report = SettlementReport::default();
    for entry in journal.settlements_open()? {
        let Some(batch) = engine.settlement(&entry.key)? else {
            journal.settlement_forget(&entry.key)?;
            continue;
        };
        let mut line = BatchReport {
            key: entry.key.clone(),
            status: String::new(),
            signature: entry.signature.clone(),
            vendors: batch.items.len(),
            amount: total(&batch.items),
            recovered: true,
        };
        match batch.status {
            SettlementStatus::Completed => {
                journal.settlement_done(&entry.key)?;
                line.status = "completed".into();
                line.signature = batch.reference.clone();
            }
            SettlementStatus::Aborted => {
                journal.settlement_done(&entry.key)?;
                line.status = "aborted".into();
            }
            SettlementStatus::InFlight => match entry.signature {
                None => {
                    engine.abort_settlement(&entry.key)?;
                    journal.settlement_done(&entry.key)?;
                    line.status = "aborted".into();
                }
                Some(signature) => match sender.landed(&entry.key) {
                    Ok(true) => {
                        engine.complete_settlement(&entry.key, &signature)?;
                        journal.settlement_done(&entry.key)?;
                        line.status = "completed".into();
                    }
                    Ok(false) => {
                        line = send_batch(engine, journal, sender, &entry.key, &batch.items, line)?;
                        if let Some(error) = line_error(&line) {
                            report.errors.push(error);
                        }
                    }
                    Err(error) => {
                        line.status = "in_flight".into();
                        report.errors.push(error.to_string());
                    }
                },
            },
        }
        report.batches.push(line);
    }
    if !report.errors.is_empty() {
        // The chain is failing: do not start new batches on top of stuck ones.
        return Ok(report);
    }
    let mut payable = Vec::new();
    for payout in engine.pending_payouts()? {
        if sender.can_pay(&payout.vendor) {
            payable.push(payout);
        } else {
            report.unpayable_vendors.push(payout.vendor.to_string());
        }
    }
    for items in payable.chunks(MAX_VENDORS_PER_BATCH) {
        let key = new_key();
        journal.settlement_begin(&key)?;
        let batch = engine.begin_settlement(&key, items)?;
        let line = BatchReport {
            key: key.clone(),
            status: String::new(),
            signature: None,
            vendors: batch.items.len(),
            amount: total(&batch.items),
            recovered: false,
        };
        let line = send_batch(engine, journal, sender, &key, &batch.items, line)?;
        let failed = line.status != "completed";
        report.batches.push(line);
        if failed {
            report.errors.push(format!(
                "settlement {key} left in flight; the next settlement run retries it"
            ));
            break;
        }
    }
    Ok(report)
}

fn line_error(line: &BatchReport) -> Option<String> {
    (line.status != "completed").then(|| {
        format!(
            "settlement {} left in flight; the next settlement run retries it",
            line.key
        )
    })
}

/// Steps 3–5 for a reserved batch.
fn send_batch<S: Store>(
    engine: &mut Auditor<S>,
    journal: &Journal,
    sender: &mut dyn PayoutSender,
    key: &str,
    items: &[VendorPayout],
    mut line: BatchReport,
) -> Result<BatchReport, SettlementError> {
    let signed = match sender.sign(key, items) {
        Ok(signed) => signed,
        Err(error) => {
            tracing::warn!(%key, %error, "settlement: cannot sign the batch");
            line.status = "in_flight".into();
            return Ok(line);
        }
    };
    journal.settlement_signed(key, &signed.signature)?;
    line.signature = Some(signed.signature.clone());
    let sent = sender.send(&signed);
    // Whatever `send` said, the marker is the truth.
    let landed = match sent {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%key, %error, "settlement: send failed; checking the marker");
            sender.landed(key).unwrap_or(false)
        }
    };
    if landed {
        engine.complete_settlement(key, &signed.signature)?;
        journal.settlement_done(key)?;
        line.status = "completed".into();
    } else {
        line.status = "in_flight".into();
    }
    Ok(line)
}

/// Settlement over a [`Ledger`]: SPL transfers from the auditor's token account, signed by the
/// auditor, to each vendor's token account, with the marker account described in the module
/// documentation (its rent, ~0.00089 SOL, is paid by the auditor per batch).
pub struct LedgerPayouts {
    ledger: Arc<dyn Ledger>,
    auditor: Keypair,
    source: Pubkey,
    destinations: HashMap<Pubkey, Pubkey>,
}

impl std::fmt::Debug for LedgerPayouts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerPayouts")
            .field("auditor", &self.auditor.pubkey())
            .field("source", &self.source)
            .field("destinations", &self.destinations.len())
            .finish()
    }
}

impl LedgerPayouts {
    /// Pays from `source` (an SPL token account owned by `auditor`) to
    /// `destinations[vendor]` (each vendor's SPL token account of the same mint).
    pub fn new(
        ledger: Arc<dyn Ledger>,
        auditor: Keypair,
        source: Pubkey,
        destinations: HashMap<Pubkey, Pubkey>,
    ) -> Self {
        LedgerPayouts {
            ledger,
            auditor,
            source,
            destinations,
        }
    }

    /// The marker account of a batch key.
    ///
    /// # Errors
    /// [`SettlementError::Config`] if the key is not a valid seed (over 32 bytes).
    pub fn marker(&self, key: &str) -> Result<Pubkey, SettlementError> {
        Pubkey::create_with_seed(
            &self.auditor.pubkey(),
            key,
            &solana_system_interface::program::ID,
        )
        .map_err(|e| {
            SettlementError::Config(format!("settlement key {key:?} is not a usable seed: {e}"))
        })
    }
}

fn chain(key: &str, error: impl std::fmt::Display) -> SettlementError {
    SettlementError::Chain {
        key: key.to_owned(),
        detail: error.to_string(),
    }
}

impl PayoutSender for LedgerPayouts {
    fn can_pay(&self, vendor: &Pubkey) -> bool {
        self.destinations.contains_key(vendor)
    }

    fn landed(&mut self, key: &str) -> Result<bool, SettlementError> {
        let marker = self.marker(key)?;
        Ok(self
            .ledger
            .get_account(&marker)
            .map_err(|e| chain(key, e))?
            .is_some())
    }

    fn sign(&mut self, key: &str, items: &[VendorPayout]) -> Result<SignedPayout, SettlementError> {
        let auditor = self.auditor.pubkey();
        let marker = self.marker(key)?;
        let rent = self
            .ledger
            .minimum_balance_for_rent_exemption(0)
            .map_err(|e| chain(key, e))?;
        let mut instructions = vec![
            solana_system_interface::instruction::create_account_with_seed(
                &auditor,
                &marker,
                &auditor,
                key,
                rent,
                0,
                &solana_system_interface::program::ID,
            ),
        ];
        for item in items {
            let destination = self.destinations.get(&item.vendor).ok_or_else(|| {
                SettlementError::Config(format!(
                    "vendor {} has no payout token account; add it to the payout accounts file",
                    item.vendor
                ))
            })?;
            instructions.push(
                spl_token_interface::instruction::transfer(
                    &spl_token_interface::ID,
                    &self.source,
                    destination,
                    &auditor,
                    &[],
                    item.amount,
                )
                .map_err(|e| SettlementError::Config(format!("SPL transfer: {e}")))?,
            );
        }
        let blockhash = self.ledger.latest_blockhash().map_err(|e| chain(key, e))?;
        let mut transaction = Transaction::new_with_payer(&instructions, Some(&auditor));
        transaction
            .try_sign(&[&self.auditor], blockhash)
            .map_err(|e| chain(key, e))?;
        check_transaction_size(&transaction).map_err(|e| chain(key, e))?;
        let bytes = bincode::serialize(&transaction).map_err(|e| chain(key, e))?;
        Ok(SignedPayout {
            key: key.to_owned(),
            signature: transaction.signatures[0].to_string(),
            transaction: bytes,
        })
    }

    fn send(&mut self, payout: &SignedPayout) -> Result<(), SettlementError> {
        let transaction: Transaction =
            bincode::deserialize(&payout.transaction).map_err(|e| chain(&payout.key, e))?;
        self.ledger
            .send_transaction(&transaction)
            .map(|_receipt| ())
            .map_err(|error| chain(&payout.key, error))
    }
}

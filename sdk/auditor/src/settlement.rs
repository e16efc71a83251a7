//! Settlement (paper Fig. 1 message 10; SPEC §4 "Payouts", §6 "Exactly once"): vendors' accrued
//! balances, v·(1−ρ) per delivered token, are paid on-chain through a [`PayoutSender`], in
//! batches of at most [`MAX_VENDORS_PER_BATCH`] vendors, each batch consuming one number of the
//! auditor's on-chain payout sequence.
//!
//! # Exactly once
//!
//! - A batch reserves its amounts in the store (`in_flight`) under its key — the hex digest of
//!   (auditor, seq, items) — before anything is signed; its signed transaction is stored before
//!   it is sent.
//! - On-chain, batch `seq` executes only if `seq` is the auditor's next payout number, and then
//!   records the batch's digest in the same transaction as the transfers; only the auditor's
//!   signature can do that. So at most one transaction per number ever executes, and whether a
//!   batch landed is read from that record (`next_seq > seq` with its digest), never inferred
//!   from a send's answer or from an account anyone could create.
//! - A batch completes only when the record shows it. It is given up (amounts back to
//!   settleable) only when none of its transactions can ever execute: it was never signed, or
//!   its transaction failed definitively, or its blockhash expired while the record still waits
//!   for its number. It is re-signed (fresh blockhash) only with the same number and items, so
//!   whichever version lands pays the same.
//! - One batch is open at a time, so numbers are consumed in order; a record that moved past an
//!   open batch by transactions the store does not know stops settlement with an alarm.
//!
//! A crash between any two steps is recovered by [`settle_once`], which always resolves the open
//! batch first. A vendor whose payout account fails the check (or whose transfer failed) is left
//! out and reported; everyone else is still paid. A run that cannot make progress (chain
//! unreachable, the auditor's token account short of funds, a transaction of unknown fate) says
//! why in [`SettlementReport::blocked`] so the caller backs off.

use std::collections::BTreeMap;

use mupib_protocol::payout::{
    DestinationProblem, PayoutBatch, PayoutRecord, PayoutSender, SendOutcome, VendorPayout,
    MAX_VENDORS_PER_BATCH,
};
use mupib_protocol::Pubkey;
use serde::{Deserialize, Serialize};

use crate::engine::Auditor;
use crate::error::EngineError;
use crate::store::{SettlementBatch, SettlementStatus, Store};

/// The store side of settlement: the settlement calls of [`Auditor`], each one atomic on its
/// own. [`settle_once`] runs over any implementation, so a caller that shares its engine with
/// other work can lock it per call (as the service does) instead of across the run's chain
/// calls: the exactly-once argument above needs each call to be atomic, not the run.
pub trait SettlementBook {
    /// See [`Auditor::open_settlements`].
    ///
    /// # Errors
    /// [`EngineError::Store`].
    fn open_settlements(&mut self) -> Result<Vec<SettlementBatch>, EngineError>;
    /// See [`Auditor::pending_payouts`].
    ///
    /// # Errors
    /// [`EngineError::Store`].
    fn pending_payouts(&mut self) -> Result<Vec<VendorPayout>, EngineError>;
    /// See [`Auditor::settlement`].
    ///
    /// # Errors
    /// [`EngineError::Store`].
    fn settlement(&mut self, key: &str) -> Result<Option<SettlementBatch>, EngineError>;
    /// See [`Auditor::begin_settlement`].
    ///
    /// # Errors
    /// [`EngineError::Store`].
    fn begin_settlement(
        &mut self,
        key: &str,
        seq: u64,
        items: &[VendorPayout],
    ) -> Result<SettlementBatch, EngineError>;
    /// See [`Auditor::record_signed_settlement`].
    ///
    /// # Errors
    /// [`EngineError::Store`].
    fn record_signed_settlement(
        &mut self,
        key: &str,
        signed: &mupib_protocol::payout::SignedPayout,
    ) -> Result<SettlementBatch, EngineError>;
    /// See [`Auditor::complete_settlement`].
    ///
    /// # Errors
    /// [`EngineError::Store`].
    fn complete_settlement(
        &mut self,
        key: &str,
        reference: &str,
    ) -> Result<SettlementBatch, EngineError>;
    /// See [`Auditor::abort_settlement`].
    ///
    /// # Errors
    /// [`EngineError::Store`].
    fn abort_settlement(&mut self, key: &str) -> Result<SettlementBatch, EngineError>;
}

impl<S: Store> SettlementBook for Auditor<S> {
    fn open_settlements(&mut self) -> Result<Vec<SettlementBatch>, EngineError> {
        Auditor::open_settlements(self)
    }
    fn pending_payouts(&mut self) -> Result<Vec<VendorPayout>, EngineError> {
        Auditor::pending_payouts(self)
    }
    fn settlement(&mut self, key: &str) -> Result<Option<SettlementBatch>, EngineError> {
        Auditor::settlement(self, key)
    }
    fn begin_settlement(
        &mut self,
        key: &str,
        seq: u64,
        items: &[VendorPayout],
    ) -> Result<SettlementBatch, EngineError> {
        Auditor::begin_settlement(self, key, seq, items)
    }
    fn record_signed_settlement(
        &mut self,
        key: &str,
        signed: &mupib_protocol::payout::SignedPayout,
    ) -> Result<SettlementBatch, EngineError> {
        Auditor::record_signed_settlement(self, key, signed)
    }
    fn complete_settlement(
        &mut self,
        key: &str,
        reference: &str,
    ) -> Result<SettlementBatch, EngineError> {
        Auditor::complete_settlement(self, key, reference)
    }
    fn abort_settlement(&mut self, key: &str) -> Result<SettlementBatch, EngineError> {
        Auditor::abort_settlement(self, key)
    }
}

/// Errors that stop a settlement run (the store failed). The chain's failures are not errors:
/// they are reported in [`SettlementReport::blocked`].
#[derive(Debug, thiserror::Error)]
pub enum SettlementError {
    /// The engine's store failed; re-running recovers.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// What happened to one batch in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReport {
    /// The batch key (hex of its digest).
    pub key: String,
    /// Its payout sequence number.
    pub seq: u64,
    /// `completed`, `aborted` (amounts settleable again) or `in_flight` (resolved by a later run).
    pub status: String,
    /// The signature of its transaction, once signed.
    pub signature: Option<String>,
    /// Vendors in the batch.
    pub vendors: usize,
    /// Total in base units.
    pub amount: u64,
    /// Left open by an earlier run (recovered now).
    pub recovered: bool,
}

/// A vendor left out of this run, its balance still accrued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnpayableVendor {
    /// The vendor.
    pub vendor: String,
    /// What it is owed.
    pub amount: u64,
    /// Why it cannot be paid now.
    pub reason: String,
}

/// Why a run stopped before paying everyone payable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum Blocked {
    /// The chain could not be read or a transaction not built.
    ChainUnavailable {
        /// What failed.
        detail: String,
    },
    /// The auditor's token account holds less than the next payout.
    InsufficientFunds {
        /// Its balance.
        available: u64,
        /// The smallest payout owed.
        needed: u64,
    },
    /// A batch's transaction has an unknown fate; it is resolved by a later run.
    InFlight {
        /// The batch key.
        key: String,
        /// What the send said.
        detail: String,
    },
    /// The chain refused a batch for a reason that names no vendor (fees, the program).
    Refused {
        /// The batch key.
        key: String,
        /// What the chain said.
        detail: String,
    },
    /// ALARM: the on-chain payout record moved past an open batch by transactions this store
    /// does not know (another settler with another store?). Nothing more is signed.
    RecordMismatch {
        /// The open batch.
        key: String,
        /// Its number.
        seq: u64,
        /// The record's next number.
        next_seq: u64,
    },
}

/// The result of one settlement run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SettlementReport {
    /// Batches handled, recovered ones first.
    pub batches: Vec<BatchReport>,
    /// Vendors left out of this run (their balances stay accrued).
    pub unpayable: Vec<UnpayableVendor>,
    /// Why the run stopped early, if it did (back off and retry).
    pub blocked: Option<Blocked>,
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

/// The key of a batch: the hex of its digest.
pub fn batch_key(auditor: &Pubkey, batch: &PayoutBatch) -> String {
    batch
        .digest(auditor)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A settlement run for `auditor` over `engine`'s store (any [`SettlementBook`]: an [`Auditor`]
/// or a handle that locks a shared one per call) and `sender`'s chain; see the module
/// documentation.
///
/// # Errors
/// [`SettlementError::Engine`] when the store fails (nothing is signed after a store failure).
pub fn settle_once<B: SettlementBook + ?Sized>(
    engine: &mut B,
    auditor: &Pubkey,
    sender: &mut dyn PayoutSender,
) -> Result<SettlementReport, SettlementError> {
    let mut run = Run {
        engine,
        auditor: *auditor,
        sender,
        report: SettlementReport::default(),
        unpayable: BTreeMap::new(),
    };
    if run.resolve_open()? {
        run.pay_pending()?;
    }
    let Run {
        mut report,
        unpayable,
        ..
    } = run;
    report.unpayable = unpayable.into_values().collect();
    Ok(report)
}

struct Run<'a, B: SettlementBook + ?Sized> {
    engine: &'a mut B,
    auditor: Pubkey,
    sender: &'a mut dyn PayoutSender,
    report: SettlementReport,
    unpayable: BTreeMap<Pubkey, UnpayableVendor>,
}

/// How a batch's transaction ended, as settlement acts on it.
enum Landing {
    /// The record shows it: completed.
    Landed,
    /// None of its transactions can execute any more.
    Dead,
    /// It may still execute.
    Pending(String),
}

impl<B: SettlementBook + ?Sized> Run<'_, B> {
    fn chain_down(&mut self, detail: impl ToString) -> bool {
        self.report.blocked = Some(Blocked::ChainUnavailable {
            detail: detail.to_string(),
        });
        false
    }

    fn record(&mut self) -> Option<PayoutRecord> {
        match self.sender.record() {
            Ok(record) => Some(record),
            Err(error) => {
                self.chain_down(error);
                None
            }
        }
    }

    fn line(&mut self, batch: &SettlementBatch, status: &str, recovered: bool) {
        self.report.batches.push(BatchReport {
            key: batch.key.clone(),
            seq: batch.seq,
            status: status.to_owned(),
            signature: batch.signed.as_ref().map(|s| s.signature.clone()),
            vendors: batch.items.len(),
            amount: u64::try_from(payout(batch).total()).unwrap_or(u64::MAX),
            recovered,
        });
    }

    fn leave_out(&mut self, vendor: Pubkey, amount: u64, reason: String) {
        self.unpayable.insert(
            vendor,
            UnpayableVendor {
                vendor: vendor.to_string(),
                amount,
                reason,
            },
        );
    }

    /// Resolves the batches left open by earlier runs. Returns whether new batches may start.
    fn resolve_open(&mut self) -> Result<bool, SettlementError> {
        let mut open = self.engine.open_settlements()?;
        open.sort_by_key(|b| b.seq);
        for batch in open {
            if !self.drive(batch, true)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Takes an open batch as far as it goes now: completed, aborted, or left in flight.
    /// Returns whether settlement may go on with other batches.
    fn drive(
        &mut self,
        mut batch: SettlementBatch,
        recovered: bool,
    ) -> Result<bool, SettlementError> {
        loop {
            let landing = match self.landing(&batch) {
                Some(landing) => landing,
                None => return Ok(false),
            };
            match landing {
                Landing::Landed => {
                    let reference = batch
                        .signed
                        .as_ref()
                        .map_or_else(|| batch.key.clone(), |s| s.signature.clone());
                    let done = self.engine.complete_settlement(&batch.key, &reference)?;
                    self.line(&done, "completed", recovered);
                    return Ok(true);
                }
                Landing::Pending(detail) => {
                    self.line(&batch, "in_flight", recovered);
                    self.report.blocked = Some(Blocked::InFlight {
                        key: batch.key.clone(),
                        detail,
                    });
                    return Ok(false);
                }
                Landing::Dead => {}
            }
            // Nothing of the batch can execute: check it is still ours to sign (one writer),
            // then sign the same number and items again, or give it up.
            let current = self.engine.settlement(&batch.key)?;
            if current.as_ref().map(|b| b.status) != Some(SettlementStatus::InFlight) {
                return Ok(true);
            }
            let mut failing = Vec::new();
            for item in &batch.items {
                match self.sender.check_destination(&item.vendor) {
                    Ok(Ok(())) => {}
                    Ok(Err(problem)) => failing.push((*item, problem)),
                    Err(error) => return Ok(self.chain_down(error)),
                }
            }
            if !failing.is_empty() {
                let aborted = self.engine.abort_settlement(&batch.key)?;
                self.line(&aborted, "aborted", recovered);
                for (item, problem) in failing {
                    self.leave_out(item.vendor, item.amount, problem.to_string());
                }
                return Ok(true);
            }
            if !self.funded(&batch)? {
                return Ok(false);
            }
            let signed = match self.sender.sign(&payout(&batch)) {
                Ok(signed) => signed,
                Err(error) => return Ok(self.chain_down(error)),
            };
            batch = self.engine.record_signed_settlement(&batch.key, &signed)?;
            match self.sender.send(&signed) {
                SendOutcome::Executed => {}
                SendOutcome::Unknown { reason } => {
                    tracing::warn!(key = %batch.key, %reason, "settlement: send answer lost; the payout record decides");
                }
                SendOutcome::Failed { reason, vendor } => {
                    // This signature can never execute; the record says whether another
                    // version of the batch landed meanwhile.
                    match self.landing_after_failure(&batch) {
                        Some(Landing::Landed) => continue,
                        Some(_) => {}
                        None => return Ok(false),
                    }
                    let aborted = self.engine.abort_settlement(&batch.key)?;
                    self.line(&aborted, "aborted", recovered);
                    match vendor {
                        Some(vendor) => {
                            let amount = batch
                                .items
                                .iter()
                                .find(|i| i.vendor == vendor)
                                .map_or(0, |i| i.amount);
                            self.leave_out(
                                vendor,
                                amount,
                                format!("its transfer failed: {reason}"),
                            );
                            return Ok(true);
                        }
                        None => {
                            self.report.blocked = Some(Blocked::Refused {
                                key: batch.key.clone(),
                                detail: reason,
                            });
                            return Ok(false);
                        }
                    }
                }
            }
        }
    }

    /// Whether the batch landed, can no longer land, or may still land.
    fn landing(&mut self, batch: &SettlementBatch) -> Option<Landing> {
        // Validity first, then the record: a transaction that lands in between is then seen.
        let expired = match &batch.signed {
            None => true,
            Some(signed) => match self.sender.may_still_land(signed) {
                Ok(may) => !may,
                Err(error) => {
                    self.chain_down(error);
                    return None;
                }
            },
        };
        let record = self.record()?;
        match self.compare(batch, record) {
            Some(true) => Some(Landing::Landed),
            Some(false) if expired => Some(Landing::Dead),
            Some(false) => {
                // Still valid: send the stored transaction again (the same signature executes at
                // most once) and look at the record.
                let signed = batch.signed.clone()?;
                let outcome = self.sender.send(&signed);
                let record = self.record()?;
                match (self.compare(batch, record), outcome) {
                    (Some(true), _) => Some(Landing::Landed),
                    (Some(false), SendOutcome::Failed { .. }) => Some(Landing::Dead),
                    (Some(false), SendOutcome::Unknown { reason }) => {
                        Some(Landing::Pending(reason))
                    }
                    (Some(false), SendOutcome::Executed) => Some(Landing::Pending(
                        "executed but the payout record does not show it yet".into(),
                    )),
                    (None, _) => None,
                }
            }
            None => None,
        }
    }

    fn landing_after_failure(&mut self, batch: &SettlementBatch) -> Option<Landing> {
        let record = self.record()?;
        match self.compare(batch, record)? {
            true => Some(Landing::Landed),
            false => Some(Landing::Dead),
        }
    }

    /// `Some(true)`: the record shows the batch; `Some(false)`: it still waits for the batch's
    /// number; `None`: it moved past the batch by transactions this store does not know (alarm).
    fn compare(&mut self, batch: &SettlementBatch, record: PayoutRecord) -> Option<bool> {
        let digest = payout(batch).digest(&self.auditor);
        if record.next_seq == batch.seq {
            return Some(false);
        }
        if record.next_seq == batch.seq.saturating_add(1) && record.last_digest == digest {
            return Some(true);
        }
        tracing::error!(
            key = %batch.key, seq = batch.seq, next_seq = record.next_seq,
            "ALARM: the payout record moved past an open batch by transactions this store does not know"
        );
        self.report.blocked = Some(Blocked::RecordMismatch {
            key: batch.key.clone(),
            seq: batch.seq,
            next_seq: record.next_seq,
        });
        None
    }

    /// Whether the auditor's token account covers the batch; if not, blocked (no fee is spent).
    fn funded(&mut self, batch: &SettlementBatch) -> Result<bool, SettlementError> {
        let needed = u64::try_from(payout(batch).total()).unwrap_or(u64::MAX);
        match self.sender.funds() {
            Ok(available) if available >= needed => Ok(true),
            Ok(available) => {
                self.report.blocked = Some(Blocked::InsufficientFunds { available, needed });
                Ok(false)
            }
            Err(error) => Ok(self.chain_down(error)),
        }
    }

    /// New batches for every payable vendor, one at a time.
    fn pay_pending(&mut self) -> Result<(), SettlementError> {
        let mut checked: BTreeMap<Pubkey, Result<(), DestinationProblem>> = BTreeMap::new();
        loop {
            let mut payable = Vec::new();
            for owed in self.engine.pending_payouts()? {
                if self.unpayable.contains_key(&owed.vendor) {
                    continue;
                }
                let verdict = match checked.get(&owed.vendor) {
                    Some(verdict) => verdict.clone(),
                    None => match self.sender.check_destination(&owed.vendor) {
                        Ok(verdict) => {
                            checked.insert(owed.vendor, verdict.clone());
                            verdict
                        }
                        Err(error) => {
                            self.chain_down(error);
                            return Ok(());
                        }
                    },
                };
                match verdict {
                    Ok(()) => payable.push(owed),
                    Err(problem) => self.leave_out(owed.vendor, owed.amount, problem.to_string()),
                }
            }
            if payable.is_empty() {
                return Ok(());
            }
            let Some(items) = self.affordable(&payable) else {
                return Ok(());
            };
            let Some(record) = self.record() else {
                return Ok(());
            };
            let batch = PayoutBatch {
                seq: record.next_seq,
                items,
            };
            let key = batch_key(&self.auditor, &batch);
            let reserved = self
                .engine
                .begin_settlement(&key, batch.seq, &batch.items)?;
            if !self.drive(reserved, false)? {
                return Ok(());
            }
        }
    }

    /// The first vendors (at most [`MAX_VENDORS_PER_BATCH`]) whose total the auditor's token
    /// account covers; `None` (blocked, or the chain is down) if not even one.
    fn affordable(&mut self, payable: &[VendorPayout]) -> Option<Vec<VendorPayout>> {
        let available = match self.sender.funds() {
            Ok(available) => available,
            Err(error) => {
                self.chain_down(error);
                return None;
            }
        };
        let mut items = Vec::new();
        let mut total: u64 = 0;
        for owed in payable.iter().take(MAX_VENDORS_PER_BATCH) {
            match total.checked_add(owed.amount) {
                Some(next) if next <= available => {
                    total = next;
                    items.push(*owed);
                }
                _ => {}
            }
        }
        if items.is_empty() {
            let needed = payable.iter().map(|p| p.amount).min().unwrap_or(0);
            self.report.blocked = Some(Blocked::InsufficientFunds { available, needed });
            return None;
        }
        items.sort_by_key(|i| i.vendor);
        Some(items)
    }
}

fn payout(batch: &SettlementBatch) -> PayoutBatch {
    PayoutBatch {
        seq: batch.seq,
        items: batch.items.clone(),
    }
}

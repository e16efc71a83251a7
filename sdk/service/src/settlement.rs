//! The service's settlement worker (paper Fig. 1 message 10): runs the auditor's settlement
//! (`mupib_auditor::settlement`, where the exactly-once argument lives) through the
//! [`PayoutSender`] the service was started with, records what each run found for
//! `GET /v1/status`, and backs off while a run cannot make progress.
//!
//! Locking: a run holds the engine's lock for one store step at a time ([`LockedEngine`]), never
//! across a chain call, so intake's group commits go on while a payout is sent and confirmed.
//! Each step is atomic on its own, which is all the exactly-once argument needs; the payout
//! sender's own lock keeps two runs (the worker and `POST /v1/settle`) from interleaving.
//!
//! Backoff: a run that stopped early ([`SettlementReport::blocked`]: the chain unreachable, the
//! auditor's token account short of funds, a transaction of unknown fate, an alarm) is retried
//! after twice the previous delay, from the configured interval up to [`MAX_BACKOFF`]; a run
//! that went through resets the delay. No fee is spent while funds are short: nothing is signed.

use std::time::Duration;

use std::sync::{Mutex, MutexGuard};

use mupib_auditor::settlement::{settle_once, SettlementBook, SettlementReport};
use mupib_auditor::store::SettlementBatch;
use mupib_auditor::EngineError;
pub use mupib_protocol::payout::PayoutSender;
use mupib_protocol::payout::{SignedPayout, VendorPayout};

use super::error::ServiceError;
use super::state::{AppState, Engine};

/// The shared engine as a [`SettlementBook`]: each call takes the lock for itself alone.
pub struct LockedEngine<'a>(pub &'a Mutex<Engine>);

impl LockedEngine<'_> {
    /// The lock, even if a thread panicked holding it: every engine step is one store
    /// transaction, rolled back when the panic dropped it, so the engine is as its last commit
    /// left it.
    fn lock(&self) -> Result<MutexGuard<'_, Engine>, EngineError> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

impl SettlementBook for LockedEngine<'_> {
    fn open_settlements(&mut self) -> Result<Vec<SettlementBatch>, EngineError> {
        self.lock()?.open_settlements()
    }
    fn pending_payouts(&mut self) -> Result<Vec<VendorPayout>, EngineError> {
        self.lock()?.pending_payouts()
    }
    fn settlement(&mut self, key: &str) -> Result<Option<SettlementBatch>, EngineError> {
        self.lock()?.settlement(key)
    }
    fn begin_settlement(
        &mut self,
        key: &str,
        seq: u64,
        items: &[VendorPayout],
    ) -> Result<SettlementBatch, EngineError> {
        self.lock()?.begin_settlement(key, seq, items)
    }
    fn record_signed_settlement(
        &mut self,
        key: &str,
        signed: &SignedPayout,
    ) -> Result<SettlementBatch, EngineError> {
        self.lock()?.record_signed_settlement(key, signed)
    }
    fn complete_settlement(
        &mut self,
        key: &str,
        reference: &str,
    ) -> Result<SettlementBatch, EngineError> {
        self.lock()?.complete_settlement(key, reference)
    }
    fn abort_settlement(&mut self, key: &str) -> Result<SettlementBatch, EngineError> {
        self.lock()?.abort_settlement(key)
    }
}

/// The longest wait between two settlement runs while they keep failing.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The delay before the next run, after a run that produced `report`.
pub fn next_delay(previous: Duration, interval: Duration, report: &SettlementReport) -> Duration {
    if report.blocked.is_some() {
        previous
            .max(interval)
            .saturating_mul(2)
            .min(MAX_BACKOFF.max(interval))
    } else {
        interval
    }
}

/// One settlement run (open batches first) over the service's engine, with metrics; the report
/// is kept for `GET /v1/status`. Without a payout sender, an empty report.
///
/// # Errors
/// [`ServiceError::Settlement`] when the store fails; a poisoned lock is
/// [`ServiceError::Panicked`].
pub fn run_settlement(state: &AppState) -> Result<SettlementReport, ServiceError> {
    let mut payouts = state.payouts.lock().map_err(poisoned)?;
    let Some(sender) = payouts.as_mut() else {
        return Ok(SettlementReport::default());
    };
    if !state.coordination.settlement_leader() {
        return Err(ServiceError::NotLeader);
    }
    let auditor = state.auditor();
    let report = settle_once(&mut LockedEngine(&state.engine), &auditor, sender.as_mut())?;
    for batch in report.batches.iter().filter(|b| b.status == "completed") {
        state.metrics.payout(batch.vendors, batch.amount);
    }
    state.metrics.settlement_run(&report);
    if let Some(blocked) = &report.blocked {
        tracing::warn!(?blocked, "settlement stopped early; retried with backoff");
    }
    for vendor in &report.unpayable {
        tracing::warn!(vendor = %vendor.vendor, amount = vendor.amount, reason = %vendor.reason, "vendor left unpaid");
    }
    *state.last_settlement.lock().map_err(poisoned)? = Some(report.clone());
    Ok(report)
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> ServiceError {
    ServiceError::Panicked("auditor state lock poisoned".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mupib_auditor::settlement::Blocked;

    #[test]
    fn backoff_doubles_while_blocked_and_resets_after_a_clean_run() {
        let interval = Duration::from_secs(10);
        let blocked = SettlementReport {
            blocked: Some(Blocked::InsufficientFunds {
                available: 0,
                needed: 1,
            }),
            ..SettlementReport::default()
        };
        let mut delay = interval;
        let mut seen = Vec::new();
        for _ in 0..7 {
            delay = next_delay(delay, interval, &blocked);
            seen.push(delay.as_secs());
        }
        assert_eq!(seen, [20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(
            next_delay(delay, interval, &SettlementReport::default()),
            interval
        );
    }
}

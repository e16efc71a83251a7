//! The service's settlement worker (paper Fig. 1 message 10): runs the auditor's settlement
//! (`mupib_auditor::settlement`, where the exactly-once argument lives) through the
//! [`PayoutSender`] the service was started with, records what each run found for
//! `GET /v1/status`, and backs off while a run cannot make progress.
//!
//! Backoff: a run that stopped early ([`SettlementReport::blocked`]: the chain unreachable, the
//! auditor's token account short of funds, a transaction of unknown fate, an alarm) is retried
//! after twice the previous delay, from the configured interval up to [`MAX_BACKOFF`]; a run
//! that went through resets the delay. No fee is spent while funds are short: nothing is signed.

use std::time::Duration;

use mupib_auditor::settlement::{settle_once, SettlementReport};
pub use mupib_protocol::payout::PayoutSender;

use super::error::ServiceError;
use super::state::AppState;

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
    let auditor = state.auditor();
    let report = {
        let mut core = state.core.lock().map_err(poisoned)?;
        settle_once(&mut core.engine, &auditor, sender.as_mut())?
    };
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

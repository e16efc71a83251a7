//! Counters of the service, rendered in the Prometheus text format at `GET /metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use mupib_protocol::decision::DecisionCounts;

use mupib_auditor::EngineVerdict;
use mupib_protocol::reject::RejectCode;

/// Reject codes in a fixed order (metric labels are their names).
const REJECT_CODES: [RejectCode; 5] = [
    RejectCode::UserSuspended,
    RejectCode::DoubleSpending,
    RejectCode::DoubleSelling,
    RejectCode::ForgedToken,
    RejectCode::InvalidBlock,
];

/// The service's counters (monotonic since start).
#[derive(Debug, Default)]
pub struct Metrics {
    intake_deliver: AtomicU64,
    intake_wait: AtomicU64,
    intake_reject: [AtomicU64; 5],
    refused: AtomicU64,
    decisions: [AtomicU64; 4],
    blocks_valid: AtomicU64,
    blocks_invalid: AtomicU64,
    verifier_failures: AtomicU64,
    final_deliver: AtomicU64,
    final_reject: AtomicU64,
    payout_batches: AtomicU64,
    payout_amount: AtomicU64,
    payout_vendors: AtomicU64,
    payment_mismatches: AtomicU64,
    settlement_runs_blocked: AtomicU64,
    resubmissions: AtomicU64,
    unpayable_vendors: AtomicU64,
}

fn add(counter: &AtomicU64, value: u64) {
    counter.fetch_add(value, Ordering::Relaxed);
}

fn reject_index(code: RejectCode) -> usize {
    REJECT_CODES.iter().position(|c| *c == code).unwrap_or(0)
}

impl Metrics {
    /// An intake answer.
    pub fn intake(&self, verdict: EngineVerdict) {
        match verdict {
            EngineVerdict::Deliver => add(&self.intake_deliver, 1),
            EngineVerdict::Wait => add(&self.intake_wait, 1),
            EngineVerdict::Reject(code) => {
                if let Some(counter) = self.intake_reject.get(reject_index(code)) {
                    add(counter, 1);
                }
            }
        }
    }

    /// A request refused before the engine (HTTP error).
    pub fn refused(&self) {
        add(&self.refused, 1);
    }

    /// A verified block.
    pub fn block(&self, decisions: &DecisionCounts) {
        let [valid, altered, duplicate, unpublished] = &self.decisions;
        add(valid, decisions.valid);
        add(altered, decisions.altered);
        add(duplicate, decisions.duplicate);
        add(unpublished, decisions.unpublished);
        let invalid = decisions
            .altered
            .saturating_add(decisions.duplicate)
            .saturating_add(decisions.unpublished);
        if invalid == 0 {
            add(&self.blocks_valid, 1);
        } else {
            add(&self.blocks_invalid, 1);
        }
    }

    /// A final verdict given when a block was decided.
    pub fn final_verdict(&self, verdict: EngineVerdict) {
        match verdict {
            EngineVerdict::Deliver => add(&self.final_deliver, 1),
            EngineVerdict::Reject(_) => add(&self.final_reject, 1),
            EngineVerdict::Wait => {}
        }
    }

    /// The chain could not verify a block.
    pub fn verifier_failure(&self) {
        add(&self.verifier_failures, 1);
    }

    /// A completed payout batch.
    pub fn payout(&self, vendors: usize, amount: u64) {
        add(&self.payout_batches, 1);
        add(
            &self.payout_vendors,
            u64::try_from(vendors).unwrap_or(u64::MAX),
        );
        add(&self.payout_amount, amount);
    }

    /// The chain paid a block a different amount than its valid tokens are worth (an alarm).
    pub fn payment_mismatch(&self) {
        add(&self.payment_mismatches, 1);
    }

    /// A transaction submitted again with the same bytes (answered from the store).
    pub fn resubmission(&self) {
        add(&self.resubmissions, 1);
    }

    /// A settlement run: counts a run that stopped early, and the vendors it left unpaid.
    pub fn settlement_run(&self, report: &mupib_auditor::settlement::SettlementReport) {
        if report.blocked.is_some() {
            add(&self.settlement_runs_blocked, 1);
        }
        self.unpayable_vendors.store(
            u64::try_from(report.unpayable.len()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP mupib_intake_total Transactions answered at intake, by verdict."
        );
        let _ = writeln!(out, "# TYPE mupib_intake_total counter");
        let _ = writeln!(
            out,
            "mupib_intake_total{{verdict=\"deliver\"}} {}",
            get(&self.intake_deliver)
        );
        let _ = writeln!(
            out,
            "mupib_intake_total{{verdict=\"wait\"}} {}",
            get(&self.intake_wait)
        );
        for (code, counter) in REJECT_CODES.iter().zip(&self.intake_reject) {
            let _ = writeln!(
                out,
                "mupib_intake_total{{verdict=\"reject\",reason=\"{}\"}} {}",
                code.name(),
                get(counter)
            );
        }
        let _ = writeln!(
            out,
            "# HELP mupib_refused_total Submissions refused before intake (HTTP errors)."
        );
        let _ = writeln!(out, "# TYPE mupib_refused_total counter");
        let _ = writeln!(out, "mupib_refused_total {}", get(&self.refused));
        let _ = writeln!(
            out,
            "# HELP mupib_decisions_total Per-token chain decisions, by code."
        );
        let _ = writeln!(out, "# TYPE mupib_decisions_total counter");
        for (label, counter) in ["valid", "altered", "duplicate", "unpublished"]
            .iter()
            .zip(&self.decisions)
        {
            let _ = writeln!(
                out,
                "mupib_decisions_total{{code=\"{label}\"}} {}",
                get(counter)
            );
        }
        let _ = writeln!(out, "# HELP mupib_blocks_total Blocks verified, by result.");
        let _ = writeln!(out, "# TYPE mupib_blocks_total counter");
        let _ = writeln!(
            out,
            "mupib_blocks_total{{result=\"valid\"}} {}",
            get(&self.blocks_valid)
        );
        let _ = writeln!(
            out,
            "mupib_blocks_total{{result=\"invalid\"}} {}",
            get(&self.blocks_invalid)
        );
        let _ = writeln!(
            out,
            "# HELP mupib_verifier_failures_total Block verifications that failed (retried)."
        );
        let _ = writeln!(out, "# TYPE mupib_verifier_failures_total counter");
        let _ = writeln!(
            out,
            "mupib_verifier_failures_total {}",
            get(&self.verifier_failures)
        );
        let _ = writeln!(
            out,
            "# HELP mupib_final_total Final verdicts given when blocks were decided."
        );
        let _ = writeln!(out, "# TYPE mupib_final_total counter");
        let _ = writeln!(
            out,
            "mupib_final_total{{verdict=\"deliver\"}} {}",
            get(&self.final_deliver)
        );
        let _ = writeln!(
            out,
            "mupib_final_total{{verdict=\"reject\"}} {}",
            get(&self.final_reject)
        );
        let _ = writeln!(
            out,
            "# HELP mupib_payout_batches_total Settlement batches completed on-chain."
        );
        let _ = writeln!(out, "# TYPE mupib_payout_batches_total counter");
        let _ = writeln!(
            out,
            "mupib_payout_batches_total {}",
            get(&self.payout_batches)
        );
        let _ = writeln!(
            out,
            "# HELP mupib_payout_vendors_total Vendor transfers completed on-chain."
        );
        let _ = writeln!(out, "# TYPE mupib_payout_vendors_total counter");
        let _ = writeln!(
            out,
            "mupib_payout_vendors_total {}",
            get(&self.payout_vendors)
        );
        let _ = writeln!(
            out,
            "# HELP mupib_payout_amount_total Base units paid to vendors on-chain."
        );
        let _ = writeln!(out, "# TYPE mupib_payout_amount_total counter");
        let _ = writeln!(
            out,
            "mupib_payout_amount_total {}",
            get(&self.payout_amount)
        );
        let _ = writeln!(
            out,
            "# HELP mupib_payment_mismatch_total ALARM: blocks whose on-chain payment differs from the value of their valid tokens."
        );
        let _ = writeln!(out, "# TYPE mupib_payment_mismatch_total counter");
        let _ = writeln!(
            out,
            "mupib_payment_mismatch_total {}",
            get(&self.payment_mismatches)
        );
        let _ = writeln!(
            out,
            "# HELP mupib_resubmissions_total Transactions submitted again with the same bytes, answered from the store."
        );
        let _ = writeln!(out, "# TYPE mupib_resubmissions_total counter");
        let _ = writeln!(
            out,
            "mupib_resubmissions_total {}",
            get(&self.resubmissions)
        );
        let _ = writeln!(
            out,
            "# HELP mupib_settlement_blocked_total Settlement runs that stopped early (chain unreachable, funds short, unknown fate, alarm); see GET /v1/status."
        );
        let _ = writeln!(out, "# TYPE mupib_settlement_blocked_total counter");
        let _ = writeln!(
            out,
            "mupib_settlement_blocked_total {}",
            get(&self.settlement_runs_blocked)
        );
        let _ = writeln!(
            out,
            "# HELP mupib_unpayable_vendors Vendors the last settlement run could not pay (payout account missing or unusable)."
        );
        let _ = writeln!(out, "# TYPE mupib_unpayable_vendors gauge");
        let _ = writeln!(
            out,
            "mupib_unpayable_vendors {}",
            get(&self.unpayable_vendors)
        );
        out
    }
}

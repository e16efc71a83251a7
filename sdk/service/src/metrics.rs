//! Counters of the service, rendered in the Prometheus text format at `GET /metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use mupib_protocol::decision::DecisionCounts;

use mupib_auditor::EngineVerdict;
use mupib_protocol::reject::RejectCode;

use crate::error::ApiError;

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
    /// Error answers by code, in the order of [`ApiError::CODES`].
    errors: [AtomicU64; ApiError::CODES.len()],
    connections_open: AtomicU64,
    connections_accepted: AtomicU64,
    connections_evicted: AtomicU64,
    connections_refused: AtomicU64,
    header_timeouts: AtomicU64,
    registry_reloads: AtomicU64,
    registry_reload_failures: AtomicU64,
    revocations: AtomicU64,
    group_commits: AtomicU64,
    group_commit_micros: AtomicU64,
    group_transactions: AtomicU64,
    group_decided_blocks: AtomicU64,
    group_failures: AtomicU64,
    journal_failures: AtomicU64,
    pipeline_full: AtomicU64,
}

/// What happened to a connection at the accept loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// Accepted (the open gauge goes up).
    Accepted,
    /// Closed (the open gauge goes down).
    Closed,
    /// The oldest idle connection was closed to make room for a new one.
    Evicted,
    /// Refused at the cap: every open connection had a request in flight.
    Refused,
    /// Closed because its request headers did not arrive in time (or it stayed idle too long).
    HeaderTimeout,
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

    /// An error answer (a refusal or a failure), by its code.
    pub fn error(&self, code: &str) {
        if let Some(counter) = ApiError::CODES
            .iter()
            .position(|c| *c == code)
            .and_then(|index| self.errors.get(index))
        {
            add(counter, 1);
        }
    }

    /// Error answers with `code` so far.
    pub fn errors(&self, code: &str) -> u64 {
        ApiError::CODES
            .iter()
            .position(|c| *c == code)
            .and_then(|index| self.errors.get(index))
            .map_or(0, |counter| counter.load(Ordering::Relaxed))
    }

    /// A connection event of the accept loop.
    pub fn connection(&self, event: ConnectionEvent) {
        match event {
            ConnectionEvent::Accepted => {
                add(&self.connections_accepted, 1);
                add(&self.connections_open, 1);
            }
            ConnectionEvent::Closed => {
                let _ = self.connections_open.fetch_update(
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                    |open| Some(open.saturating_sub(1)),
                );
            }
            ConnectionEvent::Evicted => add(&self.connections_evicted, 1),
            ConnectionEvent::Refused => add(&self.connections_refused, 1),
            ConnectionEvent::HeaderTimeout => add(&self.header_timeouts, 1),
        }
    }

    /// Open connections now.
    pub fn connections_open(&self) -> u64 {
        self.connections_open.load(Ordering::Relaxed)
    }

    /// A registry file reload: `true` if it was loaded, `false` if it was refused (the previous
    /// registry stays).
    pub fn registry_reload(&self, loaded: bool) {
        add(
            if loaded {
                &self.registry_reloads
            } else {
                &self.registry_reload_failures
            },
            1,
        );
    }

    /// A key revoked through the operator endpoint.
    pub fn revocation(&self) {
        add(&self.revocations, 1);
    }

    /// A group committed by the pipeline: `transactions` intakes and `blocks` block decisions
    /// in one store transaction, which took `took` (engine work and the store's commit).
    pub fn group_commit(&self, transactions: usize, blocks: usize, took: std::time::Duration) {
        add(&self.group_commits, 1);
        add(
            &self.group_commit_micros,
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
        );
        add(
            &self.group_transactions,
            u64::try_from(transactions).unwrap_or(u64::MAX),
        );
        add(
            &self.group_decided_blocks,
            u64::try_from(blocks).unwrap_or(u64::MAX),
        );
    }

    /// A group whose commit failed (nothing of it was written; its vendors got an error).
    pub fn group_failure(&self) {
        add(&self.group_failures, 1);
    }

    /// A journal write that failed after its group committed (answers are re-derived).
    pub fn journal_failure(&self) {
        add(&self.journal_failures, 1);
    }

    /// A submission refused because the intake pipeline was full (503).
    pub fn pipeline_full(&self) {
        add(&self.pipeline_full, 1);
    }

    /// Groups committed so far and the transactions they carried.
    pub fn groups(&self) -> (u64, u64) {
        (
            self.group_commits.load(Ordering::Relaxed),
            self.group_transactions.load(Ordering::Relaxed),
        )
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP mupib_http_errors_total Requests answered with an error, by code (refusals of authentication, authorization and limits included); nothing is written for any of them."
        );
        let _ = writeln!(out, "# TYPE mupib_http_errors_total counter");
        for (code, counter) in ApiError::CODES.iter().zip(&self.errors) {
            let _ = writeln!(
                out,
                "mupib_http_errors_total{{code=\"{code}\"}} {}",
                get(counter)
            );
        }
        let connection_metrics: [(&str, &str, &str, &AtomicU64); 5] = [
            (
                "mupib_connections_open",
                "gauge",
                "Open HTTP connections.",
                &self.connections_open,
            ),
            (
                "mupib_connections_accepted_total",
                "counter",
                "HTTP connections accepted.",
                &self.connections_accepted,
            ),
            (
                "mupib_connections_evicted_total",
                "counter",
                "Idle connections closed to make room at the connection cap.",
                &self.connections_evicted,
            ),
            (
                "mupib_connections_refused_total",
                "counter",
                "Connections refused at the cap because every open one had a request in flight.",
                &self.connections_refused,
            ),
            (
                "mupib_header_timeouts_total",
                "counter",
                "Connections closed because request headers did not arrive in time (slow or idle clients).",
                &self.header_timeouts,
            ),
        ];
        for (name, kind, help, counter) in connection_metrics {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {}", get(counter));
        }
        let pipeline_metrics: [(&str, &str, &AtomicU64); 7] = [
            (
                "mupib_group_commits_total",
                "Groups committed by the intake pipeline (one store transaction each).",
                &self.group_commits,
            ),
            (
                "mupib_group_commit_microseconds_total",
                "Time spent in group commits (the engine's work and the store's commit), microseconds.",
                &self.group_commit_micros,
            ),
            (
                "mupib_group_transactions_total",
                "Transactions taken in through group commits (divide by mupib_group_commits_total for the mean group size).",
                &self.group_transactions,
            ),
            (
                "mupib_group_decided_blocks_total",
                "Block decisions committed together with a group.",
                &self.group_decided_blocks,
            ),
            (
                "mupib_group_failures_total",
                "Group commits that failed: nothing of the group was written and its vendors got an error.",
                &self.group_failures,
            ),
            (
                "mupib_journal_failures_total",
                "Journal writes that failed after their group committed (answers are re-derived from the store).",
                &self.journal_failures,
            ),
            (
                "mupib_pipeline_full_total",
                "Submissions refused with 503 because the intake pipeline was full.",
                &self.pipeline_full,
            ),
        ];
        for (name, help, counter) in pipeline_metrics {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", get(counter));
        }
        let _ = writeln!(
            out,
            "# HELP mupib_registry_reloads_total Registry file reloads, by result (a refused file keeps the previous registry)."
        );
        let _ = writeln!(out, "# TYPE mupib_registry_reloads_total counter");
        let _ = writeln!(
            out,
            "mupib_registry_reloads_total{{result=\"loaded\"}} {}",
            get(&self.registry_reloads)
        );
        let _ = writeln!(
            out,
            "mupib_registry_reloads_total{{result=\"refused\"}} {}",
            get(&self.registry_reload_failures)
        );
        let _ = writeln!(
            out,
            "# HELP mupib_revocations_total Keys revoked through POST /v1/registry/revoke."
        );
        let _ = writeln!(out, "# TYPE mupib_revocations_total counter");
        let _ = writeln!(out, "mupib_revocations_total {}", get(&self.revocations));
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

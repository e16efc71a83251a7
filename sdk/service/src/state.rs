//! The service's shared state and its synchronous core: intake (verify → engine → signed
//! answer), answers re-derived from the store, block processing and traces. The HTTP layer
//! ([`super::api`]) calls these from `spawn_blocking`; the engine and its store sit behind one
//! mutex (single writer), the verifier behind another, so that a block's chain round trip never
//! blocks intake.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use mupib_auditor::store::{Store, TransactionRecord, TransactionStatus};
use mupib_auditor::{Auditor, BlockOutcome, EngineVerdict, IntakeOutcome, TransactionSummary};
use mupib_protocol::batch::{check_redeemable, BatchDirectory, BatchTerms};
use mupib_protocol::block::{BlockSubmission, BlockVerifier};
use mupib_protocol::cert::pubkey_of;
use mupib_protocol::reject::RejectCode;
use mupib_protocol::reject::RejectReason;
use mupib_protocol::response::{AuditorResponse, Verdict};
use mupib_protocol::transaction::{
    verify_transactions, PaymentTransaction, TransactionId, VerifiedTransaction, VerifyError,
};
use mupib_protocol::wire::{SubmitAnswer, UserView};
use mupib_protocol::Pubkey;
use tokio::sync::{mpsc, watch};

use super::access::{Caller, Gate};
use super::error::ApiError;
use super::journal::Journal;
use super::metrics::Metrics;
use super::registry::LiveRegistry;
use mupib_protocol::reject::RejectContext;

/// The clock the service reads (Unix seconds); tests may pin it.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    })
}

/// The engine with its store, and the service journal: written together under one lock.
pub struct Core {
    /// The auditor engine over the chosen store.
    pub engine: Auditor<Box<dyn Store + Send>>,
    /// Answers, token index, settlement journal.
    pub journal: Journal,
}

/// The state every handler and worker shares.
pub struct AppState {
    pub(crate) core: Mutex<Core>,
    pub(crate) verifier: Mutex<Box<dyn BlockVerifier + Send>>,
    pub(crate) auditor_key: SigningKey,
    /// The registry every request reads (reloaded and revoked while running).
    pub(crate) registry: LiveRegistry,
    /// Authentication: operator token, replay cache, vendors' rate limits.
    pub(crate) gate: Gate,
    pub(crate) clock: Clock,
    pub(crate) blocks: mpsc::Sender<BlockSubmission>,
    /// Bumped every time a block's decisions are applied (wakes long-polls).
    pub(crate) decided: watch::Sender<u64>,
    /// `true` once shutdown started.
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) metrics: Metrics,
    pub(crate) max_batch: usize,
    /// Where token batches are read for the intake check (`None`: not checked).
    pub(crate) batches: Option<Box<dyn BatchDirectory>>,
    /// Seconds a token's batch must stay redeemable after intake.
    pub(crate) min_batch_life: i64,
    pub(crate) payouts: Mutex<Option<Box<dyn super::settlement::PayoutSender>>>,
    /// What the last settlement run found (for `GET /v1/status`).
    pub(crate) last_settlement: Mutex<Option<mupib_auditor::settlement::SettlementReport>>,
    /// Block workers waiting for the state lock to apply decisions. `std::sync::Mutex` is not
    /// fair: under load, many intake threads would keep winning it and decided blocks would pile
    /// up. Intake yields while this is non-zero (see [`AppState::core_for_intake`]).
    pub(crate) decisions_waiting: AtomicUsize,
}

/// Longest an intake defers to waiting block workers before taking the lock anyway, so a stuck
/// worker can slow intake down but never stop it.
const INTAKE_DEFER_LIMIT: Duration = Duration::from_millis(50);

/// How long a deferring intake steps back before looking again.
const INTAKE_STEP_BACK: Duration = Duration::from_micros(200);

/// Marks a block worker as waiting for the state lock until dropped.
struct DecisionsWaiting<'a>(&'a AtomicUsize);

impl<'a> DecisionsWaiting<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for DecisionsWaiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> ApiError {
    ApiError::Internal(
        "a worker panicked while holding the auditor state; restart the service".into(),
    )
}

/// Whether a verdict is final.
pub fn is_final(verdict: &Verdict) -> bool {
    !matches!(verdict, Verdict::Wait)
}

impl AppState {
    /// The auditor's public key.
    pub fn auditor(&self) -> Pubkey {
        pubkey_of(&self.auditor_key)
    }

    pub(crate) fn core(&self) -> Result<MutexGuard<'_, Core>, ApiError> {
        self.core.lock().map_err(poisoned)
    }

    /// The live registry (what requests and intake are checked against now).
    pub fn registry(&self) -> &LiveRegistry {
        &self.registry
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Refuses a vendor reading a transaction of another vendor (404 for an id the engine does
    /// not hold: its owner is unknown).
    ///
    /// # Errors
    /// [`ApiError::Forbidden`], [`ApiError::NotFound`], store failures.
    pub(crate) fn check_owner(&self, caller: Caller, id: &TransactionId) -> Result<(), ApiError> {
        let Caller::Vendor(me) = caller else {
            return Ok(());
        };
        match self.core()?.engine.transaction(id)? {
            Some(record) if record.vendor == me => Ok(()),
            Some(_) => Err(ApiError::Forbidden(format!(
                "transaction {id} belongs to another vendor: a vendor reads only its own transactions"
            ))),
            None => Err(ApiError::NotFound(format!(
                "transaction {id} is unknown to this auditor"
            ))),
        }
    }

    /// What the last settlement run found.
    pub(crate) fn last_settlement(
        &self,
    ) -> Result<Option<mupib_auditor::settlement::SettlementReport>, ApiError> {
        Ok(self.last_settlement.lock().map_err(poisoned)?.clone())
    }

    /// The state lock for an intake: gives way to block workers that wait to apply decisions
    /// (for at most [`INTAKE_DEFER_LIMIT`] in all), so verified blocks are decided — and their
    /// waiting vendors answered — even while intake saturates the lock. Most intakes are already
    /// parked in the mutex when a worker arrives, so the check is made after acquiring it too:
    /// an intake that finds a worker waiting hands the lock on and steps back.
    fn core_for_intake(&self) -> Result<MutexGuard<'_, Core>, ApiError> {
        // Only the time spent stepping back counts against the limit, not the time spent
        // waiting for the lock (which, under load, is most of an intake's life).
        let mut deferred = Duration::ZERO;
        loop {
            let deferring = deferred < INTAKE_DEFER_LIMIT;
            if deferring && self.decisions_waiting.load(Ordering::SeqCst) > 0 {
                std::thread::sleep(INTAKE_STEP_BACK);
                deferred = deferred.saturating_add(INTAKE_STEP_BACK);
                continue;
            }
            let core = self.core()?;
            if !deferring || self.decisions_waiting.load(Ordering::SeqCst) == 0 {
                return Ok(core);
            }
            drop(core);
            std::thread::sleep(INTAKE_STEP_BACK);
            deferred = deferred.saturating_add(INTAKE_STEP_BACK);
        }
    }

    fn sign(
        &self,
        id: TransactionId,
        verdict: Verdict,
        block_id: Option<u64>,
    ) -> Result<SubmitAnswer, ApiError> {
        let is_final = is_final(&verdict);
        let response =
            AuditorResponse::sign(&self.auditor_key, id, verdict, block_id, (self.clock)())?;
        Ok(SubmitAnswer { response, is_final })
    }

    /// Verifies `txs` with one signature batch, then takes each into the engine in order.
    /// `permits` holds one reserved slot of the block queue per transaction (so a block formed
    /// at intake always finds room). Results are in input order.
    pub fn submit(
        &self,
        txs: &[PaymentTransaction],
        mut permits: Vec<mpsc::OwnedPermit<BlockSubmission>>,
    ) -> Vec<Result<SubmitAnswer, ApiError>> {
        let now = (self.clock)();
        let registry = self.registry.snapshot();
        let verified = verify_transactions(txs, &registry, now);
        let mut answers = Vec::with_capacity(txs.len());
        for (tx, result) in txs.iter().zip(verified) {
            let permit = permits.pop();
            let answer = self.intake_one(tx, result, permit);
            if answer.is_err() {
                self.metrics.refused();
            }
            answers.push(answer);
        }
        answers
    }

    fn intake_one(
        &self,
        tx: &PaymentTransaction,
        result: Result<VerifiedTransaction, VerifyError>,
        permit: Option<mpsc::OwnedPermit<BlockSubmission>>,
    ) -> Result<SubmitAnswer, ApiError> {
        let (summary, forged) = match result {
            Ok(verified) => {
                let summary = TransactionSummary::from(&verified);
                self.check_redeemable(&summary)?;
                (summary, None)
            }
            Err(VerifyError::ForgedToken { token, .. }) => {
                // Every other signature verified (the culprit order puts tokens last): the user
                // signed over a forged token. Misbehaviour, reported to the engine.
                let verified = VerifiedTransaction::assume_verified(tx.clone())
                    .map_err(|e| ApiError::InvalidTransaction(e.to_string()))?;
                (TransactionSummary::from(&verified), Some(token))
            }
            Err(error) => return Err(ApiError::from_verify(&error)),
        };
        let (outcome, answer) = {
            let mut core = self.core_for_intake()?;
            let outcome: IntakeOutcome = match forged {
                None => core.engine.intake(&summary)?,
                Some(token) => core.engine.report_forgery(&summary, &[token])?,
            };
            if outcome.resubmission {
                // The same transaction with the same bytes again: the stored answer, nothing new.
                drop(core);
                self.metrics.resubmission();
                return self.answer(&summary.id)?.ok_or_else(|| {
                    ApiError::Internal(format!("no answer for stored transaction {}", summary.id))
                });
            }
            let verdict = outcome.response_verdict(&summary);
            let block_id = match outcome.verdict {
                EngineVerdict::Wait => outcome
                    .block
                    .as_ref()
                    .map(|b| b.block_id)
                    .or(outcome.user.pending_block),
                _ => None,
            };
            let answer = self.sign(summary.id, verdict, block_id)?;
            // The first answer for an id is kept; a replay's rejection never replaces it.
            core.journal
                .record_first(&answer.response, answer.is_final)?;
            if !matches!(outcome.verdict, EngineVerdict::Reject(_)) {
                let tokens: Vec<_> = summary.tokens.iter().map(|t| t.id).collect();
                core.journal.record_tokens(&summary.id, &tokens)?;
            }
            (outcome, answer)
        };
        self.metrics.intake(outcome.verdict);
        if let Some(block) = outcome.block {
            match permit {
                Some(permit) => {
                    permit.send(block);
                }
                // Cannot happen (one permit per transaction); the block stays pending in the
                // store and the worker's periodic resume picks it up.
                None => tracing::warn!(
                    block_id = block.block_id,
                    "no queue slot reserved for a new block"
                ),
            }
        }
        Ok(answer)
    }

    /// Refuses a transaction whose tokens this auditor cannot redeem (see
    /// [`mupib_protocol::batch`]), before anything is written. A transaction the engine already
    /// holds is not checked again: its resubmission gets its stored answer.
    fn check_redeemable(&self, summary: &TransactionSummary) -> Result<(), ApiError> {
        let Some(batches) = &self.batches else {
            return Ok(());
        };
        if self.core()?.engine.transaction(&summary.id)?.is_some() {
            return Ok(());
        }
        let now = (self.clock)();
        let mut terms: Vec<((Pubkey, u64), Option<BatchTerms>)> = Vec::new();
        for token in &summary.tokens {
            let batch = (token.id.bank, token.id.batch_id);
            let known = match terms.iter().find(|(key, _)| *key == batch) {
                Some((_, known)) => *known,
                None => {
                    let read = batches
                        .batch_terms(&batch.0, batch.1)
                        .map_err(|e| ApiError::Internal(e.to_string()))?;
                    terms.push((batch, read));
                    read
                }
            };
            check_redeemable(token, known.as_ref(), now, self.min_batch_life)
                .map_err(|problem| ApiError::Unredeemable(problem.to_string()))?;
        }
        Ok(())
    }

    /// The current answer about transaction `id`: the stored one if final, else re-derived
    /// from the engine's records (and stored). `None` if the auditor never saw `id`.
    ///
    /// # Errors
    /// [`ApiError::Internal`] on store failures.
    pub fn answer(&self, id: &TransactionId) -> Result<Option<SubmitAnswer>, ApiError> {
        let core = self.core()?;
        let stored = core.journal.answer(id)?;
        if let Some((response, true)) = &stored {
            return Ok(Some(SubmitAnswer {
                response: response.clone(),
                is_final: true,
            }));
        }
        let Some(record) = core.engine.transaction(id)? else {
            return Ok(stored.map(|(response, is_final)| SubmitAnswer { response, is_final }));
        };
        let (verdict, block_id) = match record.status {
            TransactionStatus::Waiting | TransactionStatus::Held => {
                if let Some((response, false)) = stored {
                    return Ok(Some(SubmitAnswer {
                        response,
                        is_final: false,
                    }));
                }
                let block_id = record.block_id.or(core
                    .engine
                    .user(&record.user)?
                    .and_then(|u| u.pending_block));
                (Verdict::Wait, block_id)
            }
            TransactionStatus::Delivered => (Verdict::Deliver, record.block_id),
            TransactionStatus::Rejected(code) => {
                (self.rejection(&core, &record, code)?, record.block_id)
            }
        };
        let answer = self.sign(*id, verdict, block_id)?;
        core.journal
            .record_update(&answer.response, answer.is_final)?;
        Ok(Some(answer))
    }

    /// Rebuilds a rejection's reason from the engine's records.
    fn rejection(
        &self,
        core: &Core,
        record: &TransactionRecord,
        code: RejectCode,
    ) -> Result<Verdict, ApiError> {
        let outcome = match record.block_id {
            Some(block_id) => core.engine.block_outcome(block_id)?,
            None => None,
        };
        if let Some(outcome) = &outcome {
            if let Some(verdict) = outcome
                .verdicts
                .iter()
                .find(|v| v.transaction_id == record.id)
            {
                return Ok(outcome.response_verdict(verdict));
            }
        }
        let reason = RejectReason::for_code(
            code,
            &RejectContext {
                user: record.user,
                vendor: record.vendor,
                transaction_id: record.id,
                token: None,
                block_id: outcome.as_ref().map(|o| o.block_id),
                invalid: outcome.as_ref().map_or(&[], |o| &o.invalid),
            },
        );
        Ok(Verdict::Reject(reason))
    }

    /// Verifies one block on the chain and applies the decisions, then every block completed by
    /// held transactions. Returns the outcomes (empty if the verifier failed: the block stays
    /// pending and is retried).
    pub fn process_block(&self, first: BlockSubmission) -> Result<Vec<BlockOutcome>, ApiError> {
        let mut outcomes = Vec::new();
        let mut next = Some(first);
        while let Some(submission) = next.take() {
            let verification = {
                let mut verifier = self.verifier.lock().map_err(poisoned)?;
                verifier.verify(&submission)
            };
            let verification = match verification {
                Ok(verification) => verification,
                Err(error) => {
                    self.metrics.verifier_failure();
                    tracing::warn!(block_id = submission.block_id, %error, "block verification failed; it stays pending");
                    return Err(ApiError::Internal(error.to_string()));
                }
            };
            let outcome = {
                let _waiting = DecisionsWaiting::new(&self.decisions_waiting);
                self.core()?
                    .engine
                    .apply_verification(submission.block_id, &verification)?
            };
            if outcome.payment_mismatch() {
                self.metrics.payment_mismatch();
                tracing::error!(
                    block_id = outcome.block_id,
                    payment = ?outcome.payment,
                    "ALARM: the chain paid a different amount than the block's valid tokens are worth"
                );
            }
            self.metrics.block(&outcome.decisions);
            for verdict in &outcome.verdicts {
                self.metrics.final_verdict(verdict.verdict);
            }
            self.decided
                .send_modify(|epoch| *epoch = epoch.wrapping_add(1));
            next = outcome.next_block.clone();
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// Every block still pending in the store, oldest first, verified and applied (after a
    /// verifier failure, or a block whose queue slot was lost).
    pub fn process_pending(&self) -> Result<usize, ApiError> {
        let pending = self.core()?.engine.pending_blocks()?;
        let mut done = 0usize;
        for block in pending {
            let submission = {
                let core = self.core()?;
                // Decided meanwhile (by a chain of held transactions): skip.
                match core.engine.block(block.block_id)? {
                    Some((record, _)) if record.outcome.is_none() => {
                        core.engine.submission(block.block_id)?
                    }
                    _ => continue,
                }
            };
            done = done.saturating_add(self.process_block(submission)?.len());
        }
        Ok(done)
    }

    /// What vendors may see about a user.
    ///
    /// # Errors
    /// [`ApiError::NotFound`] for a user the auditor never saw.
    pub fn user_view(&self, user: &Pubkey) -> Result<UserView, ApiError> {
        let core = self.core()?;
        let state = core.engine.user(user)?.ok_or_else(|| {
            ApiError::NotFound(format!(
                "user {user} is unknown to this auditor (no payment seen yet)"
            ))
        })?;
        Ok(UserView {
            user: *user,
            trust_model: state.trust.model,
            trust: state.trust.trust(),
            block_size: state.trust.block_size,
            initial_block_size: state.trust.initial_block_size,
            invalid_total: state.trust.invalid_total,
            suspended: state.suspended,
            queued_tokens: state.queued_tokens,
            pending_block: state.pending_block,
            blocks_valid: state.blocks_valid,
            blocks_invalid: state.blocks_invalid,
            misbehaviour_count: state.misbehaviour_count,
            refunded_total: state.refunded_total,
        })
    }
}

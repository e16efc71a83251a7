//! The service's shared state: the engine (one writer, the commit thread of
//! [`crate::pipeline`], plus settlement between its calls), a read-only view of the same store
//! for the HTTP reads, the journal, and answers re-derived from the store. Reads never wait on
//! a group commit's fsync: with the SQLite store they go through their own read-only connection
//! (WAL: a reader sees the last commit while the writer writes the next).

use std::sync::{Arc, Mutex, MutexGuard};

use ed25519_dalek::SigningKey;
use mupib_auditor::store::{Store, TransactionRecord, TransactionStatus};
use mupib_auditor::Auditor;
use mupib_protocol::batch::BatchDirectory;
use mupib_protocol::cert::pubkey_of;
use mupib_protocol::reject::RejectCode;
use mupib_protocol::reject::RejectReason;
use mupib_protocol::response::{AuditorResponse, Verdict};
use mupib_protocol::transaction::TransactionId;
use mupib_protocol::wire::{SubmitAnswer, UserView};
use mupib_protocol::Pubkey;
use tokio::sync::watch;

use super::access::{Caller, Gate};
use super::error::ApiError;
use super::journal::Journal;
use super::metrics::Metrics;
use super::pipeline::Intake;
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

/// The auditor engine over the store the service was started with.
pub type Engine = Auditor<Box<dyn Store + Send>>;

/// The state every handler and worker shares.
pub struct AppState {
    /// The engine: written by the pipeline's commit thread, one group per lock, and by
    /// settlement one step per lock; never held across a chain call.
    pub(crate) engine: Mutex<Engine>,
    /// A read-only engine over the same database for the HTTP reads (`None`: reads use
    /// [`Self::engine`], as with the in-memory store).
    pub(crate) reader: Option<Mutex<Engine>>,
    /// Answers, token index.
    pub(crate) journal: Mutex<Journal>,
    /// Where the HTTP handlers hand transactions to the pipeline.
    pub(crate) intake: Intake,
    pub(crate) auditor_key: SigningKey,
    /// The registry every request reads (reloaded and revoked while running).
    pub(crate) registry: LiveRegistry,
    /// Authentication: operator token, replay cache, vendors' rate limits.
    pub(crate) gate: Gate,
    pub(crate) clock: Clock,
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
    /// How this instance agrees with the other instances of its store (blocks, settlement).
    pub(crate) coordination: Box<dyn super::instances::Coordination>,
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

    /// The engine, for writing (the commit thread, settlement, tests).
    ///
    /// # Errors
    /// [`ApiError::Internal`] if a thread panicked while holding it.
    pub fn engine(&self) -> Result<MutexGuard<'_, Engine>, ApiError> {
        self.engine.lock().map_err(poisoned)
    }

    /// Runs `read` on the read-only view of the store (the engine itself where there is none).
    ///
    /// # Errors
    /// What `read` returns; [`ApiError::Internal`] on a poisoned lock.
    pub fn read<T>(
        &self,
        read: impl FnOnce(&Engine) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let engine = match &self.reader {
            Some(reader) => reader.lock().map_err(poisoned)?,
            None => self.engine()?,
        };
        read(&engine)
    }

    /// The journal.
    pub(crate) fn journal(&self) -> Result<MutexGuard<'_, Journal>, ApiError> {
        self.journal.lock().map_err(poisoned)
    }

    /// The live registry (what requests and intake are checked against now).
    pub fn registry(&self) -> &LiveRegistry {
        &self.registry
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Transactions the intake pipeline can take now (its free room).
    pub fn intake_room(&self) -> usize {
        self.intake.room()
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
        match self.read(|engine| Ok(engine.transaction(id)?))? {
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

    /// The auditor's signed answer `verdict` about `id`.
    pub(crate) fn sign(
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

    /// The current answer about transaction `id`: the stored one if final, else re-derived
    /// from the engine's records (and stored). `None` if the auditor never saw `id`.
    ///
    /// # Errors
    /// [`ApiError::Internal`] on store failures.
    pub fn answer(&self, id: &TransactionId) -> Result<Option<SubmitAnswer>, ApiError> {
        let stored = self.journal()?.answer(id)?;
        if let Some((response, true)) = &stored {
            return Ok(Some(SubmitAnswer {
                response: response.clone(),
                is_final: true,
            }));
        }
        let derived = self.read(|engine| {
            let Some(record) = engine.transaction(id)? else {
                return Ok(None);
            };
            Ok(Some(match record.status {
                TransactionStatus::Waiting | TransactionStatus::Held => {
                    let block_id = match record.block_id {
                        Some(block_id) => Some(block_id),
                        None => engine.user(&record.user)?.and_then(|u| u.pending_block),
                    };
                    (Verdict::Wait, block_id)
                }
                TransactionStatus::Delivered => (Verdict::Deliver, record.block_id),
                TransactionStatus::Rejected(code) => {
                    (self.rejection(engine, &record, code)?, record.block_id)
                }
            }))
        })?;
        let Some((verdict, block_id)) = derived else {
            return Ok(stored.map(|(response, is_final)| SubmitAnswer { response, is_final }));
        };
        if let (Verdict::Wait, Some((response, false))) = (&verdict, &stored) {
            return Ok(Some(SubmitAnswer {
                response: response.clone(),
                is_final: false,
            }));
        }
        let answer = self.sign(*id, verdict, block_id)?;
        self.journal()?
            .record_update(&answer.response, answer.is_final)?;
        Ok(Some(answer))
    }

    /// Rebuilds a rejection's reason from the engine's records.
    fn rejection(
        &self,
        engine: &Engine,
        record: &TransactionRecord,
        code: RejectCode,
    ) -> Result<Verdict, ApiError> {
        let outcome = match record.block_id {
            Some(block_id) => engine.block_outcome(block_id)?,
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

    /// What vendors may see about a user.
    ///
    /// # Errors
    /// [`ApiError::NotFound`] for a user the auditor never saw.
    pub fn user_view(&self, user: &Pubkey) -> Result<UserView, ApiError> {
        let state = self.read(|engine| Ok(engine.user(user)?))?.ok_or_else(|| {
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

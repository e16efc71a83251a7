//! The gather + verify thread: gathers requests for up to `group_window` after the first (or
//! until `group_max` transactions), verifies every signature gathered in one ed25519 batch,
//! checks each token's batch, and offers the group to the commit thread. While the commit thread
//! is busy with the previous group, the group held here keeps growing — the next requests are
//! gathered, verified as their own batch and appended, in arrival order — up to `group_max`
//! transactions: the slower a commit (a slow disk's fsync), the larger the next group, so the
//! commit cost is shared by more transactions instead of queueing them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use mupib_auditor::TransactionSummary;
use mupib_protocol::batch::{check_redeemable, BatchDirectory, BatchTerms};
use mupib_protocol::token::TokenId;
use mupib_protocol::transaction::{verify_transactions, VerifiedTransaction, VerifyError};
use mupib_protocol::Pubkey;

use super::{Inbound, PipelineConfig, Request};
use crate::error::ApiError;
use crate::state::AppState;

/// How long a batch's terms read from the chain are reused before being read again. A batch
/// only becomes redeemable over time (sealed) and stops at its expiry, which the check compares
/// with the clock on every use, so a short reuse changes no answer but a sealing seen a second
/// late.
const BATCH_TERMS_TTL: Duration = Duration::from_secs(1);

/// What verification made of one transaction.
pub(super) enum Item {
    /// Every signature verified and every token redeemable: the engine's intake.
    Payment(TransactionSummary),
    /// Signed by its user over a token whose bank signature fails: the engine's forgery report.
    Forgery(TransactionSummary, TokenId),
    /// Signatures verified but a token cannot be redeemed here. Refused, unless the engine
    /// already holds this id (then it is a resubmission or double selling: the engine decides).
    Unredeemable(TransactionSummary, ApiError),
    /// Refused before the engine (the error is the answer).
    Refused(ApiError),
}

/// A verified group: the requests, and one item per transaction in request order.
pub(super) struct Group {
    pub(super) requests: Vec<(Request, usize)>,
    pub(super) items: Vec<Item>,
}

impl Group {
    /// Appends `later` (gathered after this group): arrival order is kept.
    fn append(&mut self, later: Group) {
        self.requests.extend(later.requests);
        self.items.extend(later.items);
    }
}

/// How often a thread holding a verified group looks whether the commit thread can take it
/// while it waits for more requests.
const OFFER_POLL: Duration = Duration::from_micros(500);

/// What the commit thread reads from this one.
pub(super) enum ToCommit {
    Group(Group),
    Close,
}

/// Batches' terms read from the chain, each reused for [`BATCH_TERMS_TTL`].
#[derive(Default)]
struct TermsCache {
    read: HashMap<(Pubkey, u64), (Instant, Option<BatchTerms>)>,
}

impl TermsCache {
    fn terms(
        &mut self,
        batches: &dyn BatchDirectory,
        bank: Pubkey,
        batch_id: u64,
    ) -> Result<Option<BatchTerms>, ApiError> {
        let now = Instant::now();
        if let Some((at, terms)) = self.read.get(&(bank, batch_id)) {
            if now.duration_since(*at) < BATCH_TERMS_TTL {
                return Ok(*terms);
            }
        }
        let terms = batches.batch_terms(&bank, batch_id).map_err(|error| {
            tracing::warn!(%error, %bank, batch_id, "reading a token batch failed");
            ApiError::Busy {
                what: "the chain cannot be read to check the tokens' batches",
                retry_after_secs: 5,
            }
        })?;
        if self.read.len() > 4096 {
            self.read
                .retain(|_, (at, _)| now.duration_since(*at) < BATCH_TERMS_TTL);
        }
        self.read.insert((bank, batch_id), (now, terms));
        Ok(terms)
    }
}

/// The thread's loop; returns when told to close (after handing on what it holds) or killed.
pub(super) fn run(
    state: &AppState,
    inbound: &Receiver<Inbound>,
    groups: &Sender<ToCommit>,
    config: PipelineConfig,
    killed: &AtomicBool,
) {
    let mut cache = TermsCache::default();
    let group_max = config.group_max.max(1);
    let mut held: Option<Group> = None;
    loop {
        // Offer what is held; a full group waits for the commit thread.
        if let Some(group) = held.take() {
            let full = group.items.len() >= group_max;
            let offered = if full {
                groups.send(ToCommit::Group(group)).map_err(|_| None)
            } else {
                groups
                    .try_send(ToCommit::Group(group))
                    .map_err(|e| match e {
                        TrySendError::Full(ToCommit::Group(group)) => Some(group),
                        _ => None,
                    })
            };
            match offered {
                Ok(()) => {}
                Err(Some(group)) => held = Some(group),
                Err(None) => return,
            }
        }
        let held_count = held.as_ref().map_or(0, |g| g.items.len());
        // The first request of the next chunk: wait for it, or, while holding a group, only
        // briefly (then offer the group again).
        let first = if held.is_some() {
            inbound.recv_timeout(OFFER_POLL)
        } else {
            inbound.recv().map_err(|_| RecvTimeoutError::Disconnected)
        };
        let first = match first {
            Ok(Inbound::Request(request)) => request,
            Err(RecvTimeoutError::Timeout) => continue,
            Ok(Inbound::Close) | Err(RecvTimeoutError::Disconnected) => {
                close(held, groups);
                return;
            }
        };
        let deadline = Instant::now() + config.group_window;
        let mut count = held_count.saturating_add(first.txs.len());
        let mut requests = vec![first];
        let mut closing = false;
        while count < group_max {
            match inbound.recv_deadline(deadline) {
                Ok(Inbound::Request(request)) => {
                    count = count.saturating_add(request.txs.len());
                    requests.push(request);
                }
                Ok(Inbound::Close) | Err(RecvTimeoutError::Disconnected) => {
                    closing = true;
                    break;
                }
                Err(RecvTimeoutError::Timeout) => break,
            }
        }
        if killed.load(Ordering::SeqCst) {
            return;
        }
        let chunk = verify_group(state, requests, &mut cache);
        match held.as_mut() {
            Some(group) => group.append(chunk),
            None => held = Some(chunk),
        }
        if closing {
            close(held, groups);
            return;
        }
    }
}

/// Hands on the held group, then the close.
fn close(held: Option<Group>, groups: &Sender<ToCommit>) {
    if let Some(group) = held {
        if groups.send(ToCommit::Group(group)).is_err() {
            return;
        }
    }
    let _ = groups.send(ToCommit::Close);
}

/// Verifies a group's signatures in one batch and checks its tokens' batches.
fn verify_group(state: &AppState, requests: Vec<Request>, cache: &mut TermsCache) -> Group {
    let now = (state.clock)();
    let registry = state.registry.snapshot();
    let mut txs = Vec::new();
    let mut owners = Vec::with_capacity(requests.len());
    for mut request in requests {
        let taken = std::mem::take(&mut request.txs);
        owners.push((request, taken.len()));
        txs.extend(taken);
    }
    let verified = verify_transactions(&txs, &registry, now);
    let items = txs
        .into_iter()
        .zip(verified)
        .map(|(tx, result)| match result {
            Ok(verified) => {
                let summary = TransactionSummary::from(&verified);
                match redeemable(state, &summary, now, cache) {
                    Ok(()) => Item::Payment(summary),
                    Err(error @ ApiError::Unredeemable(_)) => Item::Unredeemable(summary, error),
                    Err(error) => Item::Refused(error),
                }
            }
            Err(VerifyError::ForgedToken { token, .. }) => {
                // Every other signature verified (the culprit order puts tokens last): the user
                // signed over a forged token. Misbehaviour, reported to the engine.
                match VerifiedTransaction::assume_verified(tx) {
                    Ok(verified) => Item::Forgery(TransactionSummary::from(&verified), token),
                    Err(error) => Item::Refused(ApiError::InvalidTransaction(error.to_string())),
                }
            }
            Err(error) => Item::Refused(ApiError::from_verify(&error)),
        })
        .collect();
    Group {
        requests: owners,
        items,
    }
}

/// Refuses a transaction whose tokens this auditor cannot redeem (see
/// [`mupib_protocol::batch`]), before anything is written.
fn redeemable(
    state: &AppState,
    summary: &TransactionSummary,
    now: i64,
    cache: &mut TermsCache,
) -> Result<(), ApiError> {
    let Some(batches) = &state.batches else {
        return Ok(());
    };
    for token in &summary.tokens {
        let terms = cache.terms(batches.as_ref(), token.id.bank, token.id.batch_id)?;
        check_redeemable(token, terms.as_ref(), now, state.min_batch_life)
            .map_err(|problem| ApiError::Unredeemable(problem.to_string()))?;
    }
    Ok(())
}

//! The commit thread: one group commit per round — the block decisions received since the last
//! round, then the group's transactions in arrival order — then the answers.
//!
//! Order inside a round, which the exactly-once argument of [`super`] rests on:
//! 1. `apply_group` (engine lock held for it alone): one store transaction. On error nothing of
//!    the round was written: its vendors get the error, its decisions are kept for the next
//!    round.
//! 2. Only then: answers signed, journal written (one transaction), blocks formed sent to the
//!    chain thread, vendors answered, long-polls woken.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mupib_auditor::{
    BlockOutcome, EngineError, EngineVerdict, GroupStep, IntakeOutcome, TransactionSummary,
};
use mupib_protocol::block::BlockSubmission;
use mupib_protocol::token::TokenId;
use mupib_protocol::transaction::TransactionId;
use mupib_protocol::wire::SubmitAnswer;

use super::verify::{Group, Item, ToCommit};
use super::{Answers, Decided};
use crate::error::ApiError;
use crate::state::AppState;

/// How many times a round is re-run when the store reports a conflict (another writer changed
/// a record the round read: nothing was written, and a re-run computes on the new state), with
/// a pause of 1, 2, 4 … ms between runs.
const CONFLICT_RETRIES: u32 = 8;

/// The thread's loop: returns once the verify thread closed and the chain thread finished (its
/// last decisions committed), or when killed.
pub(super) fn run(
    state: &AppState,
    groups: &Receiver<ToCommit>,
    decided: &Receiver<Decided>,
    blocks: Sender<BlockSubmission>,
    sweep: &AtomicBool,
    killed: &AtomicBool,
) {
    let never = crossbeam_channel::never::<Decided>();
    let mut blocks = Some(blocks);
    let mut carried: Vec<Decided> = Vec::new();
    let mut groups_open = true;
    let mut decided_open = true;
    loop {
        let mut group = None;
        if groups_open {
            let decisions = if decided_open { decided } else { &never };
            crossbeam_channel::select! {
                recv(groups) -> message => match message {
                    Ok(ToCommit::Group(received)) => group = Some(received),
                    Ok(ToCommit::Close) | Err(_) => {
                        groups_open = false;
                        // The chain thread finishes the blocks it holds, then ends.
                        blocks = None;
                    }
                },
                recv(decisions) -> message => match message {
                    Ok(received) => carried.push(received),
                    Err(_) => decided_open = false,
                },
            }
        } else if decided_open {
            match decided.recv() {
                Ok(received) => carried.push(received),
                Err(_) => decided_open = false,
            }
        }
        if decided_open {
            carried.extend(decided.try_iter());
        }
        if killed.load(Ordering::SeqCst) {
            return;
        }
        let finished = !groups_open && !decided_open;
        if group.is_none() && carried.is_empty() {
            if finished {
                return;
            }
            continue;
        }
        let decisions = std::mem::take(&mut carried);
        if let Err(decisions) = round(state, group, decisions, blocks.as_ref(), sweep) {
            if finished {
                // Left pending in the store: resumed at the next start.
                return;
            }
            carried = decisions;
        }
    }
}

/// The intake step each item takes, if any.
fn steps<'a>(
    state: &AppState,
    items: &'a [Item],
) -> (
    Vec<GroupStep<'a>>,
    Vec<Option<usize>>,
    Vec<Option<ApiError>>,
) {
    let mut steps = Vec::with_capacity(items.len());
    let mut step_of = Vec::with_capacity(items.len());
    let mut refused = Vec::with_capacity(items.len());
    for item in items {
        let step = match item {
            Item::Payment(summary) => Some(GroupStep::Intake(summary)),
            Item::Forgery(summary, token) => {
                Some(GroupStep::Forgery(summary, std::slice::from_ref(token)))
            }
            // A transaction the engine already holds is not checked again: its resubmission
            // gets its stored answer, other bytes under its id are double selling.
            Item::Unredeemable(summary, _) => match state.read(|e| Ok(e.transaction(&summary.id)?))
            {
                Ok(Some(_)) => Some(GroupStep::Intake(summary)),
                Ok(None) => None,
                Err(error) => {
                    refused.push(Some(error));
                    step_of.push(None);
                    continue;
                }
            },
            Item::Refused(_) => None,
        };
        refused.push(None);
        step_of.push(step.map(|_| steps.len()));
        if let Some(step) = step {
            steps.push(step);
        }
    }
    (steps, step_of, refused)
}

impl ApiError {
    /// The same refusal again, for every vendor of a failed group.
    fn same(&self) -> ApiError {
        match self {
            ApiError::Busy {
                what,
                retry_after_secs,
            } => ApiError::Busy {
                what,
                retry_after_secs: *retry_after_secs,
            },
            ApiError::Internal(message) => ApiError::Internal(message.clone()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// One round. On a failed commit returns the decisions to carry to the next round.
fn round(
    state: &AppState,
    group: Option<Group>,
    mut decisions: Vec<Decided>,
    blocks: Option<&Sender<BlockSubmission>>,
    sweep: &AtomicBool,
) -> Result<(), Vec<Decided>> {
    let (requests, items) = group.map_or((Vec::new(), Vec::new()), |g| (g.requests, g.items));
    let mut seen = HashSet::new();
    decisions.retain(|(block_id, _)| seen.insert(*block_id));

    let (steps, step_of, mut refused) = steps(state, &items);
    let mut result = Ok((Vec::new(), Vec::new()));
    let started = std::time::Instant::now();
    for attempt in 0..CONFLICT_RETRIES {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(1 << (attempt - 1).min(5)));
        }
        result = match state.engine() {
            Ok(mut engine) => engine
                .apply_group(&decisions, &steps)
                // 503 while the database is away or another writer won (nothing written).
                .map_err(ApiError::from),
            Err(error) => Err(error),
        };
        if !matches!(&result, Err(ApiError::Busy { .. })) {
            break;
        }
    }
    let step_count = steps.len();
    drop(steps);
    let (block_outcomes, intake_outcomes) = match result {
        Ok(outcomes) => outcomes,
        Err(error) => {
            state.metrics.group_failure();
            tracing::error!(%error, transactions = items.len(), decisions = decisions.len(), "group commit failed: nothing of it was written");
            let answers = items
                .into_iter()
                .zip(refused)
                .map(|(item, refusal)| match (item, refusal) {
                    (_, Some(refusal)) => Err(refusal),
                    (Item::Refused(refusal) | Item::Unredeemable(_, refusal), None) => Err(refusal),
                    _ => Err(error.same()),
                })
                .collect();
            reply(requests, answers);
            return Err(decisions);
        }
    };
    state
        .metrics
        .group_commit(step_count, decisions.len(), started.elapsed());

    let mut decided_any = false;
    for (outcome, (block_id, _)) in block_outcomes.into_iter().zip(&decisions) {
        // Committed (or refused for good): the chain thread's lease on it can go.
        state.coordination.release_block(*block_id);
        match outcome {
            Ok(outcome) => {
                decided_any = true;
                decided(state, &outcome);
                if let Some(next) = outcome.next_block {
                    send_block(blocks, next, sweep);
                }
            }
            Err(error) => {
                tracing::error!(block_id, %error, "the chain's decisions for a block could not be applied; it stays pending");
            }
        }
    }

    let mut outcomes: Vec<Option<Result<IntakeOutcome, EngineError>>> =
        intake_outcomes.into_iter().map(Some).collect();
    let mut answers: Vec<Option<Result<SubmitAnswer, ApiError>>> = Vec::with_capacity(items.len());
    let mut first_answers: Vec<SubmitAnswer> = Vec::new();
    let mut tokens: Vec<(TransactionId, Vec<TokenId>)> = Vec::new();
    let mut resubmitted: Vec<(usize, TransactionId)> = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let outcome = step_of[index].and_then(|step| outcomes.get_mut(step)?.take());
        let (summary, outcome) = match (item, outcome, refused[index].take()) {
            (_, _, Some(refusal)) | (Item::Refused(refusal), _, _) => {
                state.metrics.refused();
                answers.push(Some(Err(refusal)));
                continue;
            }
            (Item::Unredeemable(_, refusal), None, _) => {
                state.metrics.refused();
                answers.push(Some(Err(refusal)));
                continue;
            }
            (_, None, _) => {
                answers.push(Some(Err(ApiError::Internal(
                    "the engine gave no outcome for a transaction of the group".into(),
                ))));
                continue;
            }
            (
                Item::Payment(summary) | Item::Forgery(summary, _) | Item::Unredeemable(summary, _),
                Some(outcome),
                None,
            ) => (summary, outcome),
        };
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                state.metrics.refused();
                answers.push(Some(Err(ApiError::from(error))));
                continue;
            }
        };
        if outcome.resubmission {
            // The same transaction with the same bytes again: the stored answer, nothing new.
            state.metrics.resubmission();
            resubmitted.push((index, summary.id));
            answers.push(None);
            continue;
        }
        answers.push(Some(intake_answer(
            state,
            &summary,
            outcome,
            blocks,
            sweep,
            &mut first_answers,
            &mut tokens,
        )));
    }

    if !first_answers.is_empty() || !tokens.is_empty() {
        let written = state.journal().and_then(|mut journal| {
            let rows: Vec<_> = first_answers
                .iter()
                .map(|a| (&a.response, a.is_final))
                .collect();
            Ok(journal.record_group(&rows, &tokens)?)
        });
        if let Err(error) = written {
            // The engine's commit stands; answers are re-derived from it when asked again.
            state.metrics.journal_failure();
            tracing::error!(%error, "journal write failed after the group committed");
        }
    }
    for (index, id) in resubmitted {
        let answer = state.answer(&id).and_then(|answer| {
            answer
                .ok_or_else(|| ApiError::Internal(format!("no answer for stored transaction {id}")))
        });
        if let Some(slot) = answers.get_mut(index) {
            *slot = Some(answer);
        }
    }
    let answers = answers
        .into_iter()
        .map(|answer| {
            answer.unwrap_or_else(|| Err(ApiError::Internal("no answer was computed".into())))
        })
        .collect();
    reply(requests, answers);
    if decided_any {
        state
            .decided
            .send_modify(|epoch| *epoch = epoch.wrapping_add(1));
    }
    Ok(())
}

/// The signed answer to a committed intake; its journal rows; its block to the chain.
fn intake_answer(
    state: &AppState,
    summary: &TransactionSummary,
    outcome: IntakeOutcome,
    blocks: Option<&Sender<BlockSubmission>>,
    sweep: &AtomicBool,
    first_answers: &mut Vec<SubmitAnswer>,
    tokens: &mut Vec<(TransactionId, Vec<TokenId>)>,
) -> Result<SubmitAnswer, ApiError> {
    let verdict = outcome.response_verdict(summary);
    let block_id = match outcome.verdict {
        EngineVerdict::Wait => outcome
            .block
            .as_ref()
            .map(|b| b.block_id)
            .or(outcome.user.pending_block),
        _ => None,
    };
    state.metrics.intake(outcome.verdict);
    if !matches!(outcome.verdict, EngineVerdict::Reject(_)) {
        tokens.push((summary.id, summary.tokens.iter().map(|t| t.id).collect()));
    }
    if let Some(block) = outcome.block {
        send_block(blocks, block, sweep);
    }
    let answer = state.sign(summary.id, verdict, block_id)?;
    first_answers.push(answer.clone());
    Ok(answer)
}

/// Metrics and the alarm of a decided block.
fn decided(state: &AppState, outcome: &BlockOutcome) {
    if outcome.payment_mismatch() {
        state.metrics.payment_mismatch();
        tracing::error!(
            block_id = outcome.block_id,
            payment = ?outcome.payment,
            "ALARM: the chain paid a different amount than the block's valid tokens are worth"
        );
    }
    state.metrics.block(&outcome.decisions);
    for verdict in &outcome.verdicts {
        state.metrics.final_verdict(verdict.verdict);
    }
}

/// Hands a committed block to the chain thread; if its queue is full (or closed at shutdown)
/// the block stays pending in the store and the chain thread's retry (or the next start)
/// picks it up.
fn send_block(
    blocks: Option<&Sender<BlockSubmission>>,
    block: BlockSubmission,
    sweep: &AtomicBool,
) {
    let Some(blocks) = blocks else {
        return;
    };
    match blocks.try_send(block) {
        Ok(()) => {}
        Err(TrySendError::Full(block)) => {
            tracing::warn!(
                block_id = block.block_id,
                "block queue full; the block stays pending and is retried"
            );
            sweep.store(true, Ordering::SeqCst);
        }
        Err(TrySendError::Disconnected(_)) => {}
    }
}

/// Sends each request its answers, in order.
fn reply(requests: Vec<(super::Request, usize)>, answers: Vec<Result<SubmitAnswer, ApiError>>) {
    let mut answers = answers.into_iter();
    for (request, count) in requests {
        let mine: Answers = answers.by_ref().take(count).collect();
        // Its room is free before the vendor reads the answer, so an immediate next
        // submission finds it.
        let super::Request { reply, _room, .. } = request;
        drop(_room);
        // A vendor that went away drops its receiver: nothing to do.
        let _ = reply.send(mine);
    }
}

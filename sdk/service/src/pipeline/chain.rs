//! The chain thread: verifies each block on the chain as the commit thread hands it over and
//! passes the decisions back. It holds no lock the others wait on, so a slow chain delays only
//! the final answers of the users whose blocks are in flight, never intake. A block whose
//! verification fails stays pending in the store; every `retry_interval` after a failure (or
//! after the block queue overflowed) the pending blocks are read from the store and verified
//! again (the verifier is idempotent: a block already decided on-chain is read back, not paid
//! twice).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use mupib_protocol::block::{BlockSubmission, BlockVerifier};

use super::Decided;
use crate::state::AppState;

/// The thread's loop; returns when the commit thread drops the block queue (after verifying
/// what it holds) or when killed.
pub(super) fn run(
    state: &AppState,
    mut verifier: Box<dyn BlockVerifier + Send>,
    blocks: &Receiver<BlockSubmission>,
    decided: Sender<Decided>,
    retry_interval: Duration,
    sweep: &AtomicBool,
    killed: &AtomicBool,
) {
    // On a shared store, pending blocks of instances that died are only found by sweeping:
    // sweep every interval, not only after a failure.
    let shared = state.coordination.shared();
    let mut last_sweep = Instant::now();
    // Blocks verified lately, whose decisions may not be committed yet (a sweep would see them
    // pending) or which a sweep verified before the queue delivered them: not verified again
    // within the window.
    let mut recent = Recent {
        verified: HashMap::new(),
        window: retry_interval
            .saturating_mul(10)
            .max(Duration::from_secs(5)),
    };
    loop {
        if killed.load(Ordering::SeqCst) {
            return;
        }
        match blocks.recv_timeout(retry_interval) {
            Ok(block) => {
                verify(
                    state,
                    verifier.as_mut(),
                    &block,
                    &decided,
                    sweep,
                    &mut recent,
                );
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if last_sweep.elapsed() >= retry_interval && (sweep.swap(false, Ordering::SeqCst) || shared)
        {
            last_sweep = Instant::now();
            retry_pending(
                state,
                verifier.as_mut(),
                &decided,
                sweep,
                killed,
                &mut recent,
            );
        }
    }
}

/// Blocks this thread verified lately, with when.
struct Recent {
    verified: HashMap<u64, Instant>,
    window: Duration,
}

impl Recent {
    fn seen(&mut self, block_id: u64) -> bool {
        let window = self.window;
        self.verified.retain(|_, at| at.elapsed() < window);
        self.verified.contains_key(&block_id)
    }
}

/// Verifies one block under its lease (a block another instance is verifying is left to it);
/// on failure marks the pending blocks for a retry.
fn verify(
    state: &AppState,
    verifier: &mut dyn BlockVerifier,
    block: &BlockSubmission,
    decided: &Sender<Decided>,
    sweep: &AtomicBool,
    recent: &mut Recent,
) -> bool {
    if recent.seen(block.block_id) || !state.coordination.claim_block(block.block_id) {
        return true;
    }
    // On success the lease is kept until the commit thread has committed the decisions (so no
    // other instance verifies the block again meanwhile); on failure it is given back.
    let verified = verifier.verify(block);
    match verified {
        Ok(verification) => {
            recent.verified.insert(block.block_id, Instant::now());
            // The commit thread is gone only when stopping: the block stays pending.
            let _ = decided.send((block.block_id, verification));
            true
        }
        Err(error) => {
            state.coordination.release_block(block.block_id);
            state.metrics.verifier_failure();
            tracing::warn!(block_id = block.block_id, %error, "block verification failed; it stays pending and is retried");
            sweep.store(true, Ordering::SeqCst);
            false
        }
    }
}

/// Every block still pending in the store, oldest first, verified again; stops at the first
/// failure (the chain is likely down: the next retry starts over).
fn retry_pending(
    state: &AppState,
    verifier: &mut dyn BlockVerifier,
    decided: &Sender<Decided>,
    sweep: &AtomicBool,
    killed: &AtomicBool,
    recent: &mut Recent,
) {
    let pending = match state.read(|engine| Ok(engine.pending_blocks()?)) {
        Ok(pending) => pending,
        Err(error) => {
            tracing::warn!(%error, "reading the pending blocks failed; retried later");
            sweep.store(true, Ordering::SeqCst);
            return;
        }
    };
    for block in pending {
        if killed.load(Ordering::SeqCst) {
            return;
        }
        if recent.seen(block.block_id) {
            continue;
        }
        let submission = match state.read(|engine| Ok(engine.submission(block.block_id)?)) {
            Ok(submission) => submission,
            Err(error) => {
                tracing::warn!(block_id = block.block_id, %error, "a pending block could not be read; retried later");
                sweep.store(true, Ordering::SeqCst);
                return;
            }
        };
        if !verify(state, verifier, &submission, decided, sweep, recent) {
            return;
        }
    }
}

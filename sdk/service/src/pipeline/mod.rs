//! The intake pipeline (issue 11): requests from every vendor are gathered into groups,
//! verified with one ed25519 batch per group, taken into the engine in arrival order and
//! committed in ONE store transaction together with the block decisions that came back from the
//! chain meanwhile; answers leave only after that commit returned.
//!
//! ```text
//!  HTTP handlers ──(queue, bounded in transactions: 503 + Retry-After when full)──▶
//!  gather + verify thread ──(one group in hand)──▶ commit thread ──▶ answers
//!                                                   ▲         │ new blocks (after commit)
//!                                        decisions  │         ▼
//!                                                  chain thread (block verifier)
//! ```
//!
//! - **gather + verify** ([`verify`]): takes the first request, then more until the group holds
//!   [`PipelineConfig::group_max`] transactions or [`PipelineConfig::group_window`] has passed
//!   since the first; verifies all their signatures in one batch
//!   ([`mupib_protocol::transaction::verify_transactions`]) and checks every token's batch
//!   ([`mupib_protocol::batch::check_redeemable`]). The channel to the commit thread holds one
//!   group, so the next group is verified (on the other core) while the current one commits;
//!   while the commit thread is busy the held group keeps growing (later requests verified and
//!   appended in order) up to `group_max`, so a slow commit is shared by more transactions.
//! - **commit** ([`commit`]): the engine's [`mupib_auditor::Auditor::apply_group`] over the
//!   decisions received and the group's transactions — one store transaction, one fsync — then
//!   signs the answers, writes the journal (one transaction, no fsync: see
//!   [`crate::journal`]), sends the blocks formed to the chain thread and answers the vendors.
//!   It holds the engine's lock only around `apply_group`; it never waits on the chain.
//! - **chain** ([`chain`]): verifies blocks on the chain through the
//!   [`mupib_protocol::block::BlockVerifier`] and hands each block's decisions to the commit
//!   thread; it holds no lock the others need. A failed verification leaves the block pending in
//!   the store and is retried; so is a block the full queue could not take.
//!
//! # Exactly once, and crash safety
//!
//! Nothing a vendor is told exists only in memory: an answer is sent after `apply_group`
//! returned `Ok` for its group (the engine's durability contract). A crash (`kill -9`) before
//! that loses the whole group and no vendor of it was answered; the vendors resubmit the same
//! bytes and get a fresh intake (nothing of the first attempt was written) or, if the group did
//! commit before the crash but the answer never left, the stored answer (the engine recognises
//! the same id and bytes as a resubmission: never delivered twice). Decisions travel the same
//! way: a block is sent to the chain only after the commit that formed it, its decisions are
//! applied in a later group, and a crash in between leaves it pending in the store: resumed at
//! the next start, where the chain returns the decisions it already recorded (the program
//! verifies each position once and pays it once). Applying a block's decisions twice returns the
//! stored outcome and changes nothing.
//!
//! Users are independent in all of this: a group's steps for one user see that user's earlier
//! steps and nothing of the others but shared vendor balances and block ids, which the store
//! checks by compare-and-swap. Sharding intake by user across several commit threads or
//! instances keeps this argument (the PostgreSQL store's conflicts make a lost race re-run).

mod chain;
mod commit;
mod verify;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mupib_protocol::block::{BlockSubmission, BlockVerification, BlockVerifier};
use mupib_protocol::transaction::PaymentTransaction;
use mupib_protocol::wire::SubmitAnswer;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::error::{ApiError, ServiceError};
use crate::state::AppState;

/// Default [`PipelineConfig::group_max`]: a group grows while the previous one commits, so this
/// caps how many transactions one durable commit may carry (and how long a group's vendors wait
/// for it); 256 lets a slow disk's commit be shared by up to 256 transactions (see
/// BENCHMARKS.md, "Service load").
pub const DEFAULT_GROUP_MAX: usize = 256;
/// Default [`PipelineConfig::group_window`], milliseconds: long enough to gather a group at a
/// few thousand transactions per second, short against a durable commit.
pub const DEFAULT_GROUP_WINDOW_MS: u64 = 2;
/// Default [`PipelineConfig::queue`]: transactions accepted into the pipeline and not yet
/// answered (about a second of work at the measured rate).
pub const DEFAULT_INTAKE_QUEUE: usize = 4096;

/// The pipeline's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineConfig {
    /// A group closes when it holds this many transactions.
    pub group_max: usize,
    /// A group closes this long after its first request arrived.
    pub group_window: Duration,
    /// Most transactions in the pipeline (queued, verified or committing); a submission beyond
    /// it gets 503 with Retry-After.
    pub queue: usize,
    /// Capacity of the queue of blocks waiting for the chain; a block that does not fit stays
    /// pending in the store and is picked up by the chain thread's retry.
    pub block_queue: usize,
    /// How often the chain thread retries blocks left pending.
    pub retry_interval: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            group_max: DEFAULT_GROUP_MAX,
            group_window: Duration::from_millis(DEFAULT_GROUP_WINDOW_MS),
            queue: DEFAULT_INTAKE_QUEUE,
            block_queue: 1024,
            retry_interval: Duration::from_secs(2),
        }
    }
}

/// The answers to one request, in its transactions' order.
pub type Answers = Vec<Result<SubmitAnswer, ApiError>>;

/// One submission (a single transaction or a batch) waiting in the pipeline.
pub(crate) struct Request {
    txs: Vec<PaymentTransaction>,
    reply: oneshot::Sender<Answers>,
    /// Its transactions' room in the pipeline, freed when it is answered.
    _room: OwnedSemaphorePermit,
}

/// What the gather thread reads.
enum Inbound {
    Request(Request),
    /// Shutdown: finish what is queued, then stop.
    Close,
}

/// A block's decisions as the chain returned them: (block id, verification).
pub(crate) type Decided = (u64, BlockVerification);

/// The submitting side, held by the HTTP handlers.
pub struct Intake {
    inbound: Sender<Inbound>,
    room: Arc<Semaphore>,
    capacity: usize,
    closed: AtomicBool,
}

impl Intake {
    /// Queues `txs` and waits for their answers (after their group's commit).
    ///
    /// # Errors
    /// [`ApiError::Overloaded`] (503 + Retry-After) when the pipeline has no room for them;
    /// [`ApiError::ShuttingDown`] after shutdown started; [`ApiError::Internal`] if the pipeline
    /// stopped without answering (a crash of one of its threads).
    pub async fn submit(&self, txs: Vec<PaymentTransaction>) -> Result<Answers, ApiError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(ApiError::ShuttingDown);
        }
        let needed = u32::try_from(txs.len().clamp(1, self.capacity)).unwrap_or(u32::MAX);
        let room = Arc::clone(&self.room)
            .try_acquire_many_owned(needed)
            .map_err(|_| ApiError::Overloaded)?;
        let (reply, answers) = oneshot::channel();
        self.inbound
            .send(Inbound::Request(Request {
                txs,
                reply,
                _room: room,
            }))
            .map_err(|_| ApiError::ShuttingDown)?;
        answers.await.map_err(|_| {
            ApiError::Internal(
                "the intake pipeline stopped before answering; resubmit the same transaction (it is answered from the store if it was taken)".into(),
            )
        })
    }

    /// Transactions the pipeline can take now.
    pub fn room(&self) -> usize {
        self.room.available_permits()
    }
}

/// The receiving ends and the verifier, until the threads start.
pub(crate) struct Parts {
    inbound: Receiver<Inbound>,
    verifier: Box<dyn BlockVerifier + Send>,
    config: PipelineConfig,
}

/// Creates the submitting side (for [`AppState`]) and what [`Pipeline::start`] needs.
pub(crate) fn intake(
    config: PipelineConfig,
    verifier: Box<dyn BlockVerifier + Send>,
) -> (Intake, Parts) {
    let (inbound_tx, inbound_rx) = crossbeam_channel::unbounded();
    let capacity = config.queue.max(1);
    (
        Intake {
            inbound: inbound_tx,
            room: Arc::new(Semaphore::new(capacity)),
            capacity,
            closed: AtomicBool::new(false),
        },
        Parts {
            inbound: inbound_rx,
            verifier,
            config,
        },
    )
}

/// The running pipeline threads.
pub(crate) struct Pipeline {
    state: Arc<AppState>,
    killed: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Pipeline {
    /// Starts the gather + verify, commit and chain threads.
    ///
    /// # Errors
    /// [`ServiceError::Runtime`] if a thread cannot be spawned.
    pub(crate) fn start(state: Arc<AppState>, parts: Parts) -> Result<Pipeline, ServiceError> {
        let Parts {
            inbound,
            verifier,
            config,
        } = parts;
        let killed = Arc::new(AtomicBool::new(false));
        let (groups_tx, groups_rx) = crossbeam_channel::bounded::<verify::ToCommit>(1);
        let (blocks_tx, blocks_rx) =
            crossbeam_channel::bounded::<BlockSubmission>(config.block_queue.max(1));
        let (decided_tx, decided_rx) = crossbeam_channel::unbounded::<Decided>();
        let retry = Arc::new(AtomicBool::new(true));
        let spawn = |name: &str, work: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(work)
                .map_err(ServiceError::Runtime)
        };
        let mut threads = Vec::with_capacity(3);
        let verify_state = Arc::clone(&state);
        let verify_killed = Arc::clone(&killed);
        threads.push(spawn(
            "mupib-verify",
            Box::new(move || {
                verify::run(&verify_state, &inbound, &groups_tx, config, &verify_killed);
            }),
        )?);
        let commit_state = Arc::clone(&state);
        let commit_killed = Arc::clone(&killed);
        let commit_retry = Arc::clone(&retry);
        threads.push(spawn(
            "mupib-commit",
            Box::new(move || {
                commit::run(
                    &commit_state,
                    &groups_rx,
                    &decided_rx,
                    blocks_tx,
                    &commit_retry,
                    &commit_killed,
                );
            }),
        )?);
        let chain_state = Arc::clone(&state);
        let chain_killed = Arc::clone(&killed);
        threads.push(spawn(
            "mupib-chain",
            Box::new(move || {
                chain::run(
                    &chain_state,
                    verifier,
                    &blocks_rx,
                    decided_tx,
                    config.retry_interval,
                    &retry,
                    &chain_killed,
                );
            }),
        )?);
        Ok(Pipeline {
            state,
            killed,
            threads,
        })
    }

    /// Graceful stop: no new submissions; what is queued is verified, committed and answered;
    /// blocks queued for the chain are verified and their decisions committed; then the threads
    /// end. Blocks formed by that last round stay pending in the store (resumed at the next
    /// start).
    pub(crate) fn shutdown(self) {
        self.stop(false);
    }

    /// Stops at once, as a crash would: no further commit starts (one in progress finishes,
    /// since each is atomic), nothing queued is answered.
    pub(crate) fn kill(self) {
        self.stop(true);
    }

    fn stop(self, kill: bool) {
        if kill {
            self.killed.store(true, Ordering::SeqCst);
        }
        let intake = &self.state.intake;
        intake.closed.store(true, Ordering::SeqCst);
        let _ = intake.inbound.send(Inbound::Close);
        let started = Instant::now();
        for thread in self.threads {
            if thread.join().is_err() {
                tracing::error!("an intake pipeline thread panicked");
            }
        }
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis(),
            "intake pipeline stopped"
        );
    }
}

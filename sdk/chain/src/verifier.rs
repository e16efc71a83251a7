//! [`ChainVerifier`]: the auditor engine's [`BlockVerifier`] on a real chain (messages 6/7 of the
//! paper's Fig. 1), over any [`Ledger`] (the embedded ledger or a JSON-RPC cluster).
//!
//! Verifying block `b` of the engine:
//! 1. `block_open(block_id, user, token_count)` creates the `Block` PDA
//!    `["block", auditor, block_id_le]`;
//! 2. the entries go in `block_verify_chunk` transactions packed by the SDK packer (the fewest
//!    transactions, each at most 1232 bytes);
//! 3. `block_finalize` marks it verified;
//! 4. the decisions are read back **from the block account** (what the chain recorded and paid
//!    for), never from what was sent.
//!
//! Idempotent on retry: before each step the block account is read. A block already open is
//! resumed (chunks whose positions are all decided are not sent again; the program skips
//! decided positions anyway, so a replayed chunk changes nothing and pays nothing); a verified
//! block is just read. A step whose transaction fails is re-checked against the account (the
//! transaction may have landed although its answer was lost) before the error is returned.
//!
//! Closing verified blocks (rent back to the auditor) is optional
//! ([`ChainVerifierOptions::close_verified_blocks`]) and deferred: a block is closed at the start
//! of the *next* `verify` call, i.e. after the engine has applied (and stored) its decisions. A
//! closed block cannot be read again, so the verifier remembers the decisions of the blocks it
//! closed ([`ChainVerifierOptions::remembered_closed_blocks`]) and answers a retry from memory;
//! after a restart, a block closed before its decisions were stored could not be resumed, which
//! is why closing is off by default and [`ChainVerifier::close_block`] is offered for a caller
//! that closes blocks only once their outcome is durable.

use std::collections::VecDeque;
use std::sync::Arc;

use mupib::constants::{
    BLOCK_STATE_OPEN, BLOCK_STATE_VERIFIED, DECISION_UNDECIDED, MAX_BLOCK_TOKENS,
};
use mupib::instructions::BlockOpenArgs;
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::{Keypair, Signer};

use mupib_protocol::block::{BlockSubmission, BlockVerification, BlockVerifier, VerifierError};

use crate::ledger::{Ledger, LedgerError};
use crate::program::accounts::{fetch_block, fetch_config, BlockState, FetchError};
use crate::program::instructions as ix;
use crate::program::packer::{pack_block, PackError, VerifyAccounts};
use crate::program::pda;
use mupib_protocol::decision::Decision;

/// Options of a [`ChainVerifier`].
#[derive(Debug, Clone)]
pub struct ChainVerifierOptions {
    /// Close each verified block (rent back to the auditor) at the start of the next
    /// verification. Off by default; see the module documentation.
    pub close_verified_blocks: bool,
    /// How many closed blocks' decisions are kept in memory to answer retries.
    pub remembered_closed_blocks: usize,
}

impl Default for ChainVerifierOptions {
    fn default() -> Self {
        ChainVerifierOptions {
            close_verified_blocks: false,
            remembered_closed_blocks: 1024,
        }
    }
}

/// Errors of a [`ChainVerifier`].
#[derive(Debug, thiserror::Error)]
pub enum ChainVerifierError {
    /// A transaction or a read failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// An account did not decode.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The block could not be packed into transactions.
    #[error(transparent)]
    Pack(#[from] PackError),
    /// The program's `Config` does not exist on this ledger.
    #[error("the µPIB program is not initialised on this ledger (no Config account); run the admin's config_init first")]
    NotInitialised,
    /// The block is larger than the program accepts.
    #[error("block {block_id} has {tokens} tokens; the program accepts at most {max} per block: form smaller blocks")]
    TooLarge {
        /// The block.
        block_id: u64,
        /// Its size.
        tokens: usize,
        /// The program's limit.
        max: u32,
    },
    /// The block id is already used on-chain by a different block.
    #[error("block {block_id} already exists on-chain for user {found_user} with {found_tokens} tokens, but this submission is for user {user} with {tokens} tokens: the block id was reused; do not reuse block ids (is the auditor's store older than the chain?)")]
    BlockMismatch {
        /// The block.
        block_id: u64,
        /// The submission's user.
        user: Pubkey,
        /// The submission's size.
        tokens: u32,
        /// The user recorded on-chain.
        found_user: Pubkey,
        /// The size recorded on-chain.
        found_tokens: u32,
    },
    /// An account that must exist after its creating transaction is missing.
    #[error("block {0} does not exist on the ledger after its block_open transaction succeeded")]
    Missing(u64),
    /// A position is still undecided after every chunk was sent (or after finalization).
    #[error(
        "block {block_id} position {position} is still undecided on-chain; resubmit the block"
    )]
    Undecided {
        /// The block.
        block_id: u64,
        /// The first undecided position.
        position: usize,
    },
}

/// What verifying one block did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainVerification {
    /// The block PDA.
    pub block: Pubkey,
    /// One decision per position, read from the block account.
    pub decisions: Vec<Decision>,
    /// What the escrows paid the auditor for this block (the block header's `amount_paid`).
    pub amount_paid: u64,
    /// Transactions sent by this call (open, chunks, finalize).
    pub transactions: usize,
    /// Verification chunks sent by this call.
    pub chunks_sent: usize,
    /// Verification chunks not sent because their positions were already decided (resume).
    pub chunks_skipped: usize,
    /// The block was found already open or verified on-chain (a resumed verification).
    pub resumed: bool,
}

/// The engine's [`BlockVerifier`] over a [`Ledger`]; see the module documentation.
pub struct ChainVerifier {
    ledger: Arc<dyn Ledger>,
    auditor: Keypair,
    auditor_token: Pubkey,
    mint: Option<Pubkey>,
    options: ChainVerifierOptions,
    /// Verified blocks waiting to be closed.
    to_close: Vec<u64>,
    /// Decisions of blocks this verifier closed, newest last.
    closed: VecDeque<(u64, Vec<Decision>, u64)>,
}

impl std::fmt::Debug for ChainVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainVerifier")
            .field("auditor", &self.auditor.pubkey())
            .field("auditor_token", &self.auditor_token)
            .field("options", &self.options)
            .finish()
    }
}

impl ChainVerifier {
    /// A verifier signing with `auditor` (the registered auditor's keypair, also the fee payer)
    /// and paid into `auditor_token` (its SPL token account of the payment mint).
    pub fn new(ledger: Arc<dyn Ledger>, auditor: Keypair, auditor_token: Pubkey) -> Self {
        Self::with_options(
            ledger,
            auditor,
            auditor_token,
            ChainVerifierOptions::default(),
        )
    }

    /// As [`Self::new`] with explicit options.
    pub fn with_options(
        ledger: Arc<dyn Ledger>,
        auditor: Keypair,
        auditor_token: Pubkey,
        options: ChainVerifierOptions,
    ) -> Self {
        ChainVerifier {
            ledger,
            auditor,
            auditor_token,
            mint: None,
            options,
            to_close: Vec::new(),
            closed: VecDeque::new(),
        }
    }

    /// The auditor's key.
    pub fn auditor(&self) -> Pubkey {
        self.auditor.pubkey()
    }

    /// The auditor's token account.
    pub fn auditor_token(&self) -> Pubkey {
        self.auditor_token
    }

    /// The ledger.
    pub fn ledger(&self) -> &Arc<dyn Ledger> {
        &self.ledger
    }

    /// The block PDA of `block_id` for this auditor.
    pub fn block_address(&self, block_id: u64) -> Pubkey {
        pda::block(&self.auditor.pubkey(), block_id).0
    }

    /// Blocks verified but not closed yet (when closing is on).
    pub fn blocks_to_close(&self) -> &[u64] {
        &self.to_close
    }

    fn mint(&mut self) -> Result<Pubkey, ChainVerifierError> {
        if let Some(mint) = self.mint {
            return Ok(mint);
        }
        let config =
            fetch_config(self.ledger.as_ref())?.ok_or(ChainVerifierError::NotInitialised)?;
        self.mint = Some(config.mint);
        Ok(config.mint)
    }

    fn read(&self, address: &Pubkey) -> Result<Option<BlockState>, ChainVerifierError> {
        Ok(fetch_block(self.ledger.as_ref(), address)?)
    }

    fn send(&self, instruction: solana_sdk::instruction::Instruction) -> Result<(), LedgerError> {
        let payer = self.auditor.pubkey();
        self.ledger
            .send_instructions(std::slice::from_ref(&instruction), &payer, &[&self.auditor])
            .map(|_| ())
    }

    /// Closes a verified block of this auditor (rent back to it). `Ok(false)` when the block
    /// does not exist (never opened, or already closed). Fails if the block is not verified.
    pub fn close_block(&self, block_id: u64) -> Result<bool, ChainVerifierError> {
        let address = self.block_address(block_id);
        if self.read(&address)?.is_none() {
            return Ok(false);
        }
        match self.send(ix::block_close(&self.auditor.pubkey(), block_id)) {
            Ok(()) => Ok(true),
            // The close may have landed although its answer was lost.
            Err(error) => match self.read(&address)? {
                None => Ok(true),
                Some(_) => Err(error.into()),
            },
        }
    }

    /// Closes the blocks queued by earlier verifications; a failure keeps the block queued.
    fn close_queued(&mut self) {
        let queued = std::mem::take(&mut self.to_close);
        for block_id in queued {
            if let Err(error) = self.close_block(block_id) {
                tracing::warn!(block_id, %error, "cannot close a verified block yet; will retry");
                self.to_close.push(block_id);
            }
        }
    }

    fn remember_closed(&mut self, block_id: u64, decisions: Vec<Decision>, amount_paid: u64) {
        self.closed.retain(|(id, _, _)| *id != block_id);
        self.closed.push_back((block_id, decisions, amount_paid));
        while self.closed.len() > self.options.remembered_closed_blocks {
            self.closed.pop_front();
        }
    }

    /// Verifies `block` on-chain (or resumes / reads it) and returns the chain's decisions read
    /// from the block account, with what was done.
    ///
    /// # Errors
    /// [`ChainVerifierError`]: a transaction or read failed (the block can be resubmitted: the
    /// next call resumes where this one stopped), the block id is already used on-chain for
    /// another block, or the block is too large.
    pub fn verify_block(
        &mut self,
        block: &BlockSubmission,
    ) -> Result<ChainVerification, ChainVerifierError> {
        let block_id = block.block_id;
        let auditor = self.auditor.pubkey();
        let address = self.block_address(block_id);
        if block.entries.is_empty() {
            // The program refuses empty blocks; an empty block has nothing to decide.
            return Ok(ChainVerification {
                block: address,
                decisions: Vec::new(),
                amount_paid: 0,
                transactions: 0,
                chunks_sent: 0,
                chunks_skipped: 0,
                resumed: false,
            });
        }
        let token_count = u32::try_from(block.entries.len())
            .ok()
            .filter(|n| *n <= MAX_BLOCK_TOKENS)
            .ok_or(ChainVerifierError::TooLarge {
                block_id,
                tokens: block.entries.len(),
                max: MAX_BLOCK_TOKENS,
            })?;
        self.close_queued();
        if let Some((_, decisions, amount_paid)) =
            self.closed.iter().find(|(id, _, _)| *id == block_id)
        {
            return Ok(ChainVerification {
                block: address,
                decisions: decisions.clone(),
                amount_paid: *amount_paid,
                transactions: 0,
                chunks_sent: 0,
                chunks_skipped: 0,
                resumed: true,
            });
        }

        let mut transactions = 0usize;
        let mut state = self.read(&address)?;
        let resumed = state.is_some();
        if state.is_none() {
            let open = ix::block_open(
                &auditor,
                BlockOpenArgs {
                    block_id,
                    user: block.user,
                    token_count,
                },
            );
            let sent = self.send(open);
            transactions += 1;
            state = self.read(&address)?;
            if let Err(error) = sent {
                if state.is_none() {
                    return Err(error.into());
                }
            }
        }
        let mut state = state.ok_or(ChainVerifierError::Missing(block_id))?;
        check_matches(block_id, block, token_count, &state)?;

        let (mut chunks_sent, mut chunks_skipped) = (0usize, 0usize);
        if state.header.state == BLOCK_STATE_OPEN {
            let mint = self.mint()?;
            let accounts = VerifyAccounts {
                auditor,
                block_id,
                mint,
                auditor_token: self.auditor_token,
            };
            for chunk in pack_block(&accounts, 0, &block.entries)? {
                if all_decided(&state, chunk.start, chunk.len) {
                    chunks_skipped += 1;
                    continue;
                }
                let sent = self.send(chunk.instruction);
                transactions += 1;
                chunks_sent += 1;
                if let Err(error) = sent {
                    state = self
                        .read(&address)?
                        .ok_or(ChainVerifierError::Missing(block_id))?;
                    if !all_decided(&state, chunk.start, chunk.len) {
                        return Err(error.into());
                    }
                }
            }
            state = self
                .read(&address)?
                .ok_or(ChainVerifierError::Missing(block_id))?;
            if let Some(position) = first_undecided(&state) {
                return Err(ChainVerifierError::Undecided { block_id, position });
            }
            if state.header.state == BLOCK_STATE_OPEN {
                let sent = self.send(ix::block_finalize(&auditor, block_id));
                transactions += 1;
                state = self
                    .read(&address)?
                    .ok_or(ChainVerifierError::Missing(block_id))?;
                if let Err(error) = sent {
                    if state.header.state != BLOCK_STATE_VERIFIED {
                        return Err(error.into());
                    }
                }
            }
        }

        let decisions = state
            .decisions
            .iter()
            .enumerate()
            .map(|(position, code)| {
                Decision::from_code(*code)
                    .ok_or(ChainVerifierError::Undecided { block_id, position })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let amount_paid = state.header.amount_paid;
        if self.options.close_verified_blocks && state.header.state == BLOCK_STATE_VERIFIED {
            self.to_close.push(block_id);
            self.remember_closed(block_id, decisions.clone(), amount_paid);
        }
        Ok(ChainVerification {
            block: address,
            decisions,
            amount_paid,
            transactions,
            chunks_sent,
            chunks_skipped,
            resumed,
        })
    }
}

/// The on-chain block must be the submitted one (same auditor, user and size).
fn check_matches(
    block_id: u64,
    block: &BlockSubmission,
    token_count: u32,
    state: &BlockState,
) -> Result<(), ChainVerifierError> {
    let header = &state.header;
    if header.user != block.user || header.token_count != token_count || header.block_id != block_id
    {
        return Err(ChainVerifierError::BlockMismatch {
            block_id,
            user: block.user,
            tokens: token_count,
            found_user: header.user,
            found_tokens: header.token_count,
        });
    }
    Ok(())
}

fn all_decided(state: &BlockState, start: u32, len: u32) -> bool {
    let (Ok(start), Ok(len)) = (usize::try_from(start), usize::try_from(len)) else {
        return false;
    };
    state
        .decisions
        .get(start..start.saturating_add(len))
        .is_some_and(|positions| positions.iter().all(|d| *d != DECISION_UNDECIDED))
}

fn first_undecided(state: &BlockState) -> Option<usize> {
    state
        .decisions
        .iter()
        .position(|d| *d == DECISION_UNDECIDED)
}

impl BlockVerifier for ChainVerifier {
    fn verify(&mut self, block: &BlockSubmission) -> Result<BlockVerification, VerifierError> {
        self.verify_block(block)
            .map(|verification| BlockVerification {
                decisions: verification.decisions,
                amount_paid: verification.amount_paid,
            })
            .map_err(|error| VerifierError::Unavailable {
                block_id: block.block_id,
                reason: error.to_string(),
            })
    }
}

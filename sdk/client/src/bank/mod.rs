//! The bank's client (SPEC §1 message 1, §3 "a bank publishes a batch of tokens"; paper eq. 1):
//! mint tokens — sign them, split them into batches of at most `MAX_BATCH_TOKENS`, create and
//! fund each batch's escrow from the bank's payment account, publish the commitments in chunks
//! that fit one transaction, seal — and hand the signed tokens to users' wallets.
//!
//! The bank's own data (the plan of a mint in progress, the batches it minted, the signed
//! tokens not yet handed out, and a record of every hand-out) is a JSON file written atomically
//! ([`write_file_atomic`](crate::wallet::write_file_atomic)); its types and load/save are in
//! `bank/state.rs`, the errors in `bank/error.rs`. A mint is planned in that file before the
//! first transaction, so an interrupted mint is finished by [`BankClient::resume_mint`]: each
//! batch's on-chain state (`published` counter, `sealed` flag) says where to continue, and token
//! signatures are deterministic (ed25519), so the same tokens are re-derived.
//!
//! Every batch is bound to one registered auditor (`MintRequest::auditor`), the only one that
//! may redeem its tokens (the auditor is part of the batch's address); the state file records
//! it per batch.
//!
//! The bank's payment account is its associated token account of the payment mint
//! (`Config.mint`); [`fund_payment_account`] is how a mint authority (the admin on the embedded
//! ledger) gives it money.

mod error;
mod state;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use mupib::constants::{BATCH_CLOSE_GRACE_SECS, MAX_BATCH_TOKENS};
use mupib::instructions::BatchCreateArgs;
use mupib::state::{Batch, Closability};
use serde::Serialize;
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::{Keypair, Signer};

use super::wallet::Wallet;
use mupib_chain::batch::{
    commitments_per_publish_transaction, BatchPublisher, PublishError, PublishProgress,
};
use mupib_chain::ledger::Ledger;
use mupib_chain::ledger::PACKET_DATA_SIZE;
use mupib_chain::program::accounts::{
    fetch_auditor_registration, fetch_bank_registration, fetch_batch, fetch_config, token_balance,
    BatchState,
};
use mupib_chain::program::instructions as ix;
use mupib_chain::program::instructions::SPL_TOKEN_ACCOUNT_LEN;
use mupib_chain::spl::payment_account;
use mupib_protocol::token::{Commitment, Token, TokenId};

pub use error::BankError;
use state::{load_state, save_state};
pub use state::{BankState, BatchRecord, Handout, MintJob, PlannedBatch, BANK_STATE_VERSION};

/// The program's close grace (`BATCH_CLOSE_GRACE_SECS`) in hours, for messages.
const GRACE_HOURS: i64 = BATCH_CLOSE_GRACE_SECS / 3600;

/// What to mint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MintRequest {
    /// The auditor the batches are bound to: the only one that may redeem the tokens (it must
    /// be registered and active). Users spend the tokens with vendors of this auditor.
    pub auditor: Pubkey,
    /// Number of tokens (split into batches of at most `MAX_BATCH_TOKENS`).
    pub count: u32,
    /// Value of each token, in base units of the payment mint.
    pub value: u64,
    /// Expiry of the batches (Unix seconds).
    pub expires_at: i64,
    /// First batch id; `None` = the bank's `next_batch_id` on-chain.
    pub first_batch_id: Option<u64>,
}

/// Progress of a mint, reported as it happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MintProgress {
    /// The mint is planned (or resumed).
    Planned {
        /// Batches.
        batches: usize,
        /// Tokens.
        tokens: u64,
    },
    /// A batch's tokens are signed.
    Signed {
        /// The batch.
        batch_id: u64,
        /// Tokens signed.
        tokens: u32,
    },
    /// A batch was created and its escrow funded.
    Funded {
        /// The batch.
        batch_id: u64,
        /// Amount moved to the escrow.
        escrow_amount: u64,
    },
    /// Commitments were published.
    Published {
        /// The batch.
        batch_id: u64,
        /// Commitments in this chunk.
        chunk: u32,
        /// Published so far in the batch.
        published: u32,
        /// Tokens of the batch.
        token_count: u32,
    },
    /// A batch was sealed.
    Sealed {
        /// The batch.
        batch_id: u64,
    },
}

impl From<PublishProgress> for MintProgress {
    fn from(step: PublishProgress) -> Self {
        match step {
            PublishProgress::Funded {
                batch_id,
                escrow_amount,
            } => MintProgress::Funded {
                batch_id,
                escrow_amount,
            },
            PublishProgress::Published {
                batch_id,
                chunk,
                published,
                token_count,
            } => MintProgress::Published {
                batch_id,
                chunk,
                published,
                token_count,
            },
            PublishProgress::Sealed { batch_id } => MintProgress::Sealed { batch_id },
        }
    }
}

/// What a mint did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MintOutcome {
    /// The batches, in order.
    pub batches: Vec<BatchRecord>,
    /// Every token of the mint, in batch and serial order.
    #[serde(skip)]
    pub tokens: Vec<Token>,
    /// Number of tokens.
    pub token_count: u64,
    /// Total moved into escrows (`Σ token_count × value`).
    pub escrow_funded: u64,
    /// Lamports deposited as rent by the batches.
    pub rent_deposited: u64,
    /// Transactions sent by this call.
    pub transactions: u64,
    /// Largest serialized transaction sent (bytes, ≤ 1232).
    pub largest_transaction_bytes: usize,
    /// Whether this call finished an interrupted mint.
    pub resumed: bool,
}

/// A batch as the bank's records and the ledger see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchSummary {
    /// The bank's record.
    #[serde(flatten)]
    pub record: BatchRecord,
    /// Whether the batch account exists on the ledger.
    pub on_chain: bool,
    /// Commitments published.
    pub published: u32,
    /// Sealed.
    pub sealed: bool,
    /// Tokens spent (redeemed by an auditor).
    pub spent: u32,
    /// Escrow balance now.
    pub escrow_balance: u64,
    /// Tokens of the batch not yet handed out.
    pub unissued: u64,
}

/// What closing a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CloseOutcome {
    /// The batch.
    pub batch_id: u64,
    /// Escrow returned to the bank's payment account.
    pub escrow_returned: u64,
    /// Lamports of rent returned to the bank.
    pub rent_returned: u64,
    /// Unissued tokens dropped from the bank's records.
    pub tokens_dropped: u64,
}

/// Splits `count` tokens into batch sizes of at most `MAX_BATCH_TOKENS`, as even as possible
/// (so no batch is tiny).
pub fn split_batches(count: u32) -> Vec<u32> {
    if count == 0 {
        return Vec::new();
    }
    let batches = count.div_ceil(MAX_BATCH_TOKENS);
    let base = count / batches;
    let extra = count % batches;
    (0..batches)
        .map(|i| if i < extra { base + 1 } else { base })
        .collect()
}

/// Checked `count × value`.
pub fn escrow_amount(count: u64, value: u64) -> Result<u64, BankError> {
    let total = u128::from(count) * u128::from(value);
    u64::try_from(total).map_err(|_| BankError::ValueOverflow {
        count,
        value,
        max: u64::MAX,
    })
}

/// The bank's client over a [`Ledger`].
pub struct BankClient<'a> {
    ledger: &'a dyn Ledger,
    keypair: Keypair,
    signing_key: SigningKey,
    state_path: PathBuf,
}

impl<'a> BankClient<'a> {
    /// A client for the bank whose key is `bank_key`, keeping its data in `state_path`.
    pub fn new(
        ledger: &'a dyn Ledger,
        bank_key: &SigningKey,
        state_path: impl Into<PathBuf>,
    ) -> Self {
        BankClient {
            ledger,
            keypair: Keypair::new_from_array(bank_key.to_bytes()),
            signing_key: bank_key.clone(),
            state_path: state_path.into(),
        }
    }

    /// The bank's key.
    pub fn pubkey(&self) -> Pubkey {
        self.keypair.pubkey()
    }

    /// The state file.
    pub fn state_path(&self) -> &Path {
        &self.state_path
    }

    /// The bank's data file content.
    pub fn state(&self) -> Result<BankState, BankError> {
        load_state(&self.state_path, self.pubkey())
    }

    fn save(&self, state: &BankState) -> Result<(), BankError> {
        save_state(&self.state_path, state)
    }

    /// The payment mint (`Config.mint`), after checking the program is initialised.
    pub fn mint_address(&self) -> Result<Pubkey, BankError> {
        Ok(fetch_config(self.ledger)?
            .ok_or(BankError::NotInitialised)?
            .mint)
    }

    /// The bank's payment account.
    pub fn payment_account(&self) -> Result<Pubkey, BankError> {
        Ok(payment_account(&self.pubkey(), &self.mint_address()?))
    }

    /// Checks that `auditor` is registered and active (it could not redeem the batches
    /// otherwise, and the program refuses to bind a batch to it).
    fn check_auditor(&self, auditor: &Pubkey) -> Result<(), BankError> {
        let registration = fetch_auditor_registration(self.ledger, auditor)?
            .ok_or(BankError::AuditorNotRegistered { auditor: *auditor })?;
        if !registration.active {
            return Err(BankError::AuditorInactive { auditor: *auditor });
        }
        Ok(())
    }

    /// Checks that the program runs and the bank may publish; returns the mint and the bank's
    /// `next_batch_id`.
    fn check_can_publish(&self) -> Result<(Pubkey, u64), BankError> {
        let config = fetch_config(self.ledger)?.ok_or(BankError::NotInitialised)?;
        if config.paused {
            return Err(BankError::Paused);
        }
        let bank = self.pubkey();
        let registration = fetch_bank_registration(self.ledger, &bank)?
            .ok_or(BankError::NotRegistered { bank })?;
        if !registration.active {
            return Err(BankError::Inactive { bank });
        }
        Ok((config.mint, registration.next_batch_id))
    }

    /// Validates a request and checks funds, without sending anything. Returns the plan.
    pub fn plan_mint(&self, request: &MintRequest) -> Result<MintJob, BankError> {
        if request.count == 0 {
            return Err(BankError::InvalidRequest("count must be at least 1".into()));
        }
        if request.value == 0 {
            return Err(BankError::InvalidRequest(
                "token value must be at least 1 base unit".into(),
            ));
        }
        let total = escrow_amount(u64::from(request.count), request.value)?;
        let state = self.state()?;
        if let Some(job) = &state.pending_mint {
            return Err(BankError::MintInProgress {
                batch_ids: job.batches.iter().map(|b| b.batch_id).collect(),
            });
        }
        let now = self.ledger.clock()?.unix_timestamp;
        if request.expires_at <= now {
            return Err(BankError::InvalidRequest(format!(
                "expiry {} is not after the ledger's current time {now}",
                request.expires_at
            )));
        }
        let (mint, next_batch_id) = self.check_can_publish()?;
        self.check_auditor(&request.auditor)?;
        let first = request.first_batch_id.unwrap_or(next_batch_id);
        if first < next_batch_id {
            return Err(BankError::InvalidRequest(format!(
                "batch id {first} is below the bank's next batch id {next_batch_id}: batch ids are never reused"
            )));
        }
        let bank = self.pubkey();
        let account = payment_account(&bank, &mint);
        let available = token_balance(self.ledger, &account)?;
        if available < total {
            return Err(BankError::InsufficientFunds {
                bank,
                account,
                available,
                needed: total,
            });
        }
        let sizes = split_batches(request.count);
        let mut batches = Vec::with_capacity(sizes.len());
        let mut lamports_needed = 0u64;
        let escrow_rent = self
            .ledger
            .minimum_balance_for_rent_exemption(SPL_TOKEN_ACCOUNT_LEN)?;
        let per_tx = commitments_per_publish_transaction(&bank, &request.auditor, first)?;
        let fee = self.ledger.fee_for_signatures(1)?;
        for (index, token_count) in sizes.into_iter().enumerate() {
            let offset = u64::try_from(index).map_err(|_| BankError::Overflow("batch index"))?;
            let batch_id = first
                .checked_add(offset)
                .ok_or(BankError::Overflow("batch id"))?;
            batches.push(PlannedBatch {
                batch_id,
                token_count,
            });
            let rent = self
                .ledger
                .minimum_balance_for_rent_exemption(Batch::space(token_count))?;
            let count =
                usize::try_from(token_count).map_err(|_| BankError::Overflow("token count"))?;
            let transactions = u64::try_from(count.div_ceil(per_tx.max(1)))
                .map_err(|_| BankError::Overflow("transactions"))?
                .checked_add(2)
                .ok_or(BankError::Overflow("transactions"))?;
            let cost = rent
                .checked_add(escrow_rent)
                .and_then(|c| c.checked_add(transactions.checked_mul(fee)?))
                .ok_or(BankError::Overflow("lamports"))?;
            lamports_needed = lamports_needed
                .checked_add(cost)
                .ok_or(BankError::Overflow("lamports"))?;
        }
        let lamports = self.ledger.balance(&bank)?;
        if lamports < lamports_needed {
            return Err(BankError::InsufficientLamports {
                bank,
                available: lamports,
                needed: lamports_needed,
            });
        }
        Ok(MintJob {
            auditor: request.auditor,
            value: request.value,
            issued_at: now,
            expires_at: request.expires_at,
            batches,
            completed: Vec::new(),
        })
    }

    /// Mints `request.count` tokens: plans the mint in the state file, then for each batch
    /// signs the tokens, creates and funds the batch, publishes its commitments in chunks and
    /// seals it. Nothing is sent when a check fails. Returns the tokens (also kept in the state
    /// file until handed out).
    pub fn mint(
        &self,
        request: MintRequest,
        progress: &mut dyn FnMut(MintProgress),
    ) -> Result<MintOutcome, BankError> {
        let job = self.plan_mint(&request)?;
        let mut state = self.state()?;
        state.pending_mint = Some(job.clone());
        self.save(&state)?;
        self.run_job(job, false, progress)
    }

    /// The mint in progress, if one was interrupted.
    pub fn pending_mint(&self) -> Result<Option<MintJob>, BankError> {
        Ok(self.state()?.pending_mint)
    }

    /// Finishes an interrupted mint; `Ok(None)` when there is none.
    pub fn resume_mint(
        &self,
        progress: &mut dyn FnMut(MintProgress),
    ) -> Result<Option<MintOutcome>, BankError> {
        match self.state()?.pending_mint {
            Some(job) => {
                self.check_can_publish()?;
                self.check_auditor(&job.auditor)?;
                self.run_job(job, true, progress).map(Some)
            }
            None => Ok(None),
        }
    }

    fn run_job(
        &self,
        job: MintJob,
        resumed: bool,
        progress: &mut dyn FnMut(MintProgress),
    ) -> Result<MintOutcome, BankError> {
        let total_tokens = job
            .batches
            .iter()
            .try_fold(0u64, |sum, b| sum.checked_add(u64::from(b.token_count)))
            .ok_or(BankError::Overflow("tokens"))?;
        progress(MintProgress::Planned {
            batches: job.batches.len(),
            tokens: total_tokens,
        });
        let mint = self.mint_address()?;
        let bank_token = payment_account(&self.pubkey(), &mint);
        let mut outcome = MintOutcome {
            batches: Vec::new(),
            tokens: Vec::new(),
            token_count: total_tokens,
            escrow_funded: 0,
            rent_deposited: 0,
            transactions: 0,
            largest_transaction_bytes: 0,
            resumed,
        };
        for planned in &job.batches {
            let tokens = Token::sign_batch(
                &self.signing_key,
                planned.batch_id,
                planned.token_count,
                job.value,
                job.issued_at,
            );
            progress(MintProgress::Signed {
                batch_id: planned.batch_id,
                tokens: planned.token_count,
            });
            if job.completed.contains(&planned.batch_id) {
                let state = self.state()?;
                let record = state
                    .batches
                    .iter()
                    .find(|r| r.batch_id == planned.batch_id)
                    .cloned()
                    .ok_or(BankError::UnknownBatch {
                        batch_id: planned.batch_id,
                    })?;
                add_outcome(&mut outcome, &record)?;
                outcome.tokens.extend(tokens);
                progress(MintProgress::Sealed {
                    batch_id: planned.batch_id,
                });
                continue;
            }
            let record = self.publish_one(
                &job,
                planned,
                &tokens,
                &mint,
                &bank_token,
                &mut outcome,
                progress,
            )?;
            // Record the sealed batch and its tokens durably before moving on.
            let mut state = self.state()?;
            state.batches.retain(|r| r.batch_id != record.batch_id);
            state.batches.push(record.clone());
            let known: HashSet<TokenId> = state.unissued.iter().map(Token::id).collect();
            state
                .unissued
                .extend(tokens.iter().filter(|t| !known.contains(&t.id())).copied());
            if let Some(pending) = state.pending_mint.as_mut() {
                pending.completed.push(planned.batch_id);
            }
            self.save(&state)?;
            add_outcome(&mut outcome, &record)?;
            outcome.tokens.extend(tokens);
        }
        let mut state = self.state()?;
        state.pending_mint = None;
        self.save(&state)?;
        Ok(outcome)
    }

    /// Publishes one planned batch through the chain's resumable flow, then records it.
    #[allow(clippy::too_many_arguments)]
    fn publish_one(
        &self,
        job: &MintJob,
        planned: &PlannedBatch,
        tokens: &[Token],
        mint: &Pubkey,
        bank_token: &Pubkey,
        outcome: &mut MintOutcome,
        progress: &mut dyn FnMut(MintProgress),
    ) -> Result<BatchRecord, BankError> {
        let batch_id = planned.batch_id;
        let args = BatchCreateArgs {
            batch_id,
            auditor: job.auditor,
            token_count: planned.token_count,
            value: job.value,
            issued_at: job.issued_at,
            expires_at: job.expires_at,
        };
        let commitments: Vec<Commitment> = tokens.iter().map(Token::commitment).collect();
        let published = BatchPublisher::new(self.ledger, &self.keypair, *mint, *bank_token)
            .publish(args, &commitments, true, &mut |step| progress(step.into()))
            .map_err(|error| match error {
                PublishError::Conflict { batch_id, reason } => {
                    BankError::Conflict { batch_id, reason }
                }
                PublishError::TransactionTooLarge { what, size, limit } => {
                    BankError::TransactionTooLarge { what, size, limit }
                }
                PublishError::Ledger(error) => BankError::Ledger(error),
                PublishError::Fetch(error) => BankError::Fetch(error),
                other => other.into(),
            })?;
        outcome.transactions = outcome
            .transactions
            .checked_add(published.transactions)
            .ok_or(BankError::Overflow("transactions"))?;
        outcome.largest_transaction_bytes = outcome
            .largest_transaction_bytes
            .max(published.largest_transaction_bytes);
        let rent_lamports = self
            .ledger
            .balance(&published.batch)?
            .checked_add(self.ledger.balance(&published.escrow)?)
            .ok_or(BankError::Overflow("rent"))?;
        Ok(BatchRecord {
            batch_id,
            auditor: job.auditor,
            batch: published.batch,
            escrow: published.escrow,
            token_count: planned.token_count,
            value: job.value,
            issued_at: job.issued_at,
            expires_at: job.expires_at,
            escrow_amount: escrow_amount(u64::from(planned.token_count), job.value)?,
            rent_lamports,
            closed: false,
        })
    }

    /// The bank's batches with their on-chain state.
    pub fn batches(&self) -> Result<Vec<BatchSummary>, BankError> {
        let state = self.state()?;
        let mut out = Vec::with_capacity(state.batches.len());
        for record in &state.batches {
            let chain = fetch_batch(self.ledger, &record.batch)?;
            let unissued = u64::try_from(
                state
                    .unissued
                    .iter()
                    .filter(|t| t.batch_id == record.batch_id)
                    .count(),
            )
            .map_err(|_| BankError::Overflow("tokens"))?;
            out.push(BatchSummary {
                record: record.clone(),
                on_chain: chain.is_some(),
                published: chain.as_ref().map_or(0, |c| c.header.published),
                sealed: chain.as_ref().is_some_and(BatchState::is_sealed),
                spent: chain.as_ref().map_or(0, |c| c.header.spent_count),
                escrow_balance: token_balance(self.ledger, &record.escrow)?,
                unissued,
            });
        }
        Ok(out)
    }

    /// Closes a fully spent batch, or an expired one past its grace period (the program's rule,
    /// [`Batch::closability`]): the unspent escrow goes back to the bank's payment account and
    /// the rent to the bank; its unissued tokens are dropped.
    pub fn close_batch(&self, batch_id: u64) -> Result<CloseOutcome, BankError> {
        let mut state = self.state()?;
        let record = state
            .batches
            .iter()
            .find(|r| r.batch_id == batch_id && !r.closed)
            .cloned()
            .ok_or(BankError::UnknownBatch { batch_id })?;
        let config = fetch_config(self.ledger)?.ok_or(BankError::NotInitialised)?;
        let mint = config.mint;
        let bank = self.pubkey();
        let chain = fetch_batch(self.ledger, &record.batch)?;
        let mut escrow_returned = 0;
        let mut rent_returned = 0;
        if let Some(chain) = chain {
            let now = self.ledger.clock()?.unix_timestamp;
            let header = chain.header;
            let when = match header.closability(config.paused, config.resumed_at, now) {
                Closability::Closable => None,
                Closability::Paused => Some(format!(
                    "the program is paused; it becomes closable {GRACE_HOURS} h after the admin resumes it (and after its expiry)"
                )),
                Closability::NotExpired { closable_after }
                | Closability::InGrace { closable_after } => Some(format!(
                    "it becomes closable after {closable_after} (its expiry or the program's last resume, plus a {GRACE_HOURS} h grace so blocks under verification can finish), unless every token is spent first"
                )),
            };
            if let Some(when) = when {
                return Err(BankError::NotClosable {
                    batch_id,
                    expires_at: header.expires_at,
                    now,
                    spent: header.spent_count,
                    token_count: header.token_count,
                    when,
                });
            }
            escrow_returned = token_balance(self.ledger, &record.escrow)?;
            rent_returned = self
                .ledger
                .balance(&record.batch)?
                .checked_add(self.ledger.balance(&record.escrow)?)
                .ok_or(BankError::Overflow("rent"))?;
            let bank_token = payment_account(&bank, &mint);
            let instruction = ix::batch_close(&bank, &record.auditor, batch_id, &mint, &bank_token);
            self.ledger
                .send_instructions(&[instruction], &bank, &[&self.keypair])?;
        }
        let before = state.unissued.len();
        state.unissued.retain(|t| t.batch_id != batch_id);
        let dropped = u64::try_from(before.saturating_sub(state.unissued.len()))
            .map_err(|_| BankError::Overflow("tokens"))?;
        for r in state.batches.iter_mut().filter(|r| r.batch_id == batch_id) {
            r.closed = true;
        }
        self.save(&state)?;
        Ok(CloseOutcome {
            batch_id,
            escrow_returned,
            rent_returned,
            tokens_dropped: dropped,
        })
    }

    /// Unexpired tokens not yet handed out (oldest batches first).
    pub fn unissued(&self) -> Result<Vec<Token>, BankError> {
        let state = self.state()?;
        let now = self.ledger.clock()?.unix_timestamp;
        Ok(available_tokens(&state, now))
    }

    /// Takes `count` unissued tokens for `recipient`, recording the hand-out durably first so a
    /// token is never handed out twice. Deliver them, or give them back with
    /// [`BankClient::return_tokens`] if delivery fails.
    pub fn take_tokens(&self, recipient: &Pubkey, count: u64) -> Result<Vec<Token>, BankError> {
        let mut state = self.state()?;
        let now = self.ledger.clock()?.unix_timestamp;
        let available = available_tokens(&state, now);
        let wanted = usize::try_from(count).map_err(|_| BankError::Overflow("count"))?;
        let have = u64::try_from(available.len()).map_err(|_| BankError::Overflow("count"))?;
        if count == 0 || available.len() < wanted {
            return Err(BankError::NotEnoughTokens {
                requested: count,
                available: have,
            });
        }
        let taken: Vec<Token> = available.into_iter().take(wanted).collect();
        let ids: HashSet<TokenId> = taken.iter().map(Token::id).collect();
        state.unissued.retain(|t| !ids.contains(&t.id()));
        state.handouts.push(Handout {
            recipient: *recipient,
            tokens: taken.iter().map(Token::id).collect(),
            at: now,
        });
        self.save(&state)?;
        Ok(taken)
    }

    /// Undoes the last hand-out of `tokens` to `recipient` (delivery failed).
    pub fn return_tokens(&self, recipient: &Pubkey, tokens: &[Token]) -> Result<(), BankError> {
        let mut state = self.state()?;
        let ids: Vec<TokenId> = tokens.iter().map(Token::id).collect();
        if let Some(position) = state
            .handouts
            .iter()
            .rposition(|h| h.recipient == *recipient && h.tokens == ids)
        {
            state.handouts.remove(position);
            state.unissued.extend_from_slice(tokens);
            self.save(&state)?;
        }
        Ok(())
    }

    /// Hands `count` tokens to `wallet` (its owner is the recipient). On a delivery failure the
    /// hand-out is undone and the wallet is unchanged.
    pub fn give_to_wallet(&self, wallet: &mut Wallet, count: u64) -> Result<Vec<Token>, BankError> {
        let recipient = wallet.owner();
        let tokens = self.take_tokens(&recipient, count)?;
        let now = self.ledger.clock()?.unix_timestamp;
        if let Err(error) = wallet.receive(&tokens, now) {
            self.return_tokens(&recipient, &tokens)?;
            return Err(error.into());
        }
        Ok(tokens)
    }
}

fn add_outcome(outcome: &mut MintOutcome, record: &BatchRecord) -> Result<(), BankError> {
    outcome.escrow_funded = outcome
        .escrow_funded
        .checked_add(record.escrow_amount)
        .ok_or(BankError::Overflow("escrow"))?;
    outcome.rent_deposited = outcome
        .rent_deposited
        .checked_add(record.rent_lamports)
        .ok_or(BankError::Overflow("rent"))?;
    outcome.batches.push(record.clone());
    Ok(())
}

/// Unissued tokens of unclosed batches that expire later than `now`, oldest batch first.
fn available_tokens(state: &BankState, now: i64) -> Vec<Token> {
    let live: HashSet<u64> = state
        .batches
        .iter()
        .filter(|r| !r.closed && r.expires_at > now)
        .map(|r| r.batch_id)
        .collect();
    let mut tokens: Vec<Token> = state
        .unissued
        .iter()
        .filter(|t| live.contains(&t.batch_id))
        .copied()
        .collect();
    tokens.sort_by_key(|t| (t.batch_id, t.serial));
    tokens
}

/// Guard so the size limit constant stays the one the packer uses.
const _: () = assert!(PACKET_DATA_SIZE == 1232);

#[cfg(test)]
mod tests {
    use super::*;
    use mupib_chain::admin::{register_auditor, register_bank, set_paused};
    use mupib_chain::ledger::{EmbeddedLedger, LedgerError, Receipt};
    use mupib_chain::program::pda;
    use mupib_chain::spl::{self, fund_payment_account};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A ledger that fails every transaction after `budget` successful ones (an interrupted
    /// process, as far as the chain is concerned).
    struct Interrupting<'a> {
        inner: &'a EmbeddedLedger,
        budget: AtomicUsize,
    }

    impl Ledger for Interrupting<'_> {
        fn send_transaction(
            &self,
            transaction: &solana_sdk::transaction::Transaction,
        ) -> Result<Receipt, LedgerError> {
            if self.budget.load(Ordering::SeqCst) == 0 {
                return Err(LedgerError::Backend("interrupted".into()));
            }
            self.budget.fetch_sub(1, Ordering::SeqCst);
            self.inner.send_transaction(transaction)
        }
        fn get_account(
            &self,
            address: &Pubkey,
        ) -> Result<Option<solana_sdk::account::Account>, LedgerError> {
            self.inner.get_account(address)
        }
        fn latest_blockhash(&self) -> Result<solana_sdk::hash::Hash, LedgerError> {
            self.inner.latest_blockhash()
        }
        fn is_blockhash_valid(
            &self,
            blockhash: &solana_sdk::hash::Hash,
        ) -> Result<bool, LedgerError> {
            self.inner.is_blockhash_valid(blockhash)
        }
        fn clock(&self) -> Result<solana_sdk::clock::Clock, LedgerError> {
            self.inner.clock()
        }
        fn minimum_balance_for_rent_exemption(&self, data_len: usize) -> Result<u64, LedgerError> {
            self.inner.minimum_balance_for_rent_exemption(data_len)
        }
        fn fee_for_signatures(&self, signatures: u64) -> Result<u64, LedgerError> {
            self.inner.fee_for_signatures(signatures)
        }
        fn airdrop(
            &self,
            to: &Pubkey,
            lamports: u64,
        ) -> Result<solana_sdk::signature::Signature, LedgerError> {
            self.inner.airdrop(to, lamports)
        }
    }

    struct Setup {
        ledger: EmbeddedLedger,
        admin: Keypair,
        bank: SigningKey,
        auditor: Pubkey,
        dir: tempfile::TempDir,
    }

    fn setup(funds: u64, register: bool) -> Setup {
        let ledger = EmbeddedLedger::ephemeral().unwrap();
        let admin = Keypair::new();
        let bank = SigningKey::from_bytes(&[7; 32]);
        let bank_key = mupib_protocol::cert::pubkey_of(&bank);
        ledger.airdrop(&admin.pubkey(), 100_000_000_000).unwrap();
        ledger.airdrop(&bank_key, 100_000_000_000).unwrap();
        let mint = Keypair::new();
        spl::create_mint(&ledger, &admin, &mint, &admin.pubkey(), 6).unwrap();
        ledger
            .send_instructions(
                &[ix::config_init(&admin.pubkey(), &mint.pubkey())],
                &admin.pubkey(),
                &[&admin],
            )
            .unwrap();
        if register {
            register_bank(&ledger, &admin, &bank_key).unwrap();
        }
        let auditor = Keypair::new().pubkey();
        register_auditor(&ledger, &admin, &auditor).unwrap();
        fund_payment_account(&ledger, &admin, &bank_key, funds).unwrap();
        Setup {
            ledger,
            admin,
            bank,
            auditor,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    impl Setup {
        fn request(&self, count: u32, value: u64) -> MintRequest {
            let now = self.ledger.clock().unwrap().unix_timestamp;
            MintRequest {
                auditor: self.auditor,
                count,
                value,
                expires_at: now + 86_400,
                first_batch_id: None,
            }
        }
    }

    #[test]
    fn split_batches_respects_the_cap_and_sums_to_count() {
        assert_eq!(split_batches(0), Vec::<u32>::new());
        assert_eq!(split_batches(1), vec![1]);
        assert_eq!(split_batches(MAX_BATCH_TOKENS), vec![MAX_BATCH_TOKENS]);
        assert_eq!(split_batches(MAX_BATCH_TOKENS + 1), vec![315, 315]);
        let sizes = split_batches(1000);
        assert_eq!(sizes, vec![500, 500]);
        let sizes = split_batches(5000);
        assert_eq!(sizes.iter().sum::<u32>(), 5000);
        assert!(sizes.iter().all(|&s| s <= MAX_BATCH_TOKENS));
        assert_eq!(sizes.len(), 8);
    }

    #[test]
    fn escrow_amount_overflow_is_refused() {
        assert_eq!(escrow_amount(3, 5).unwrap(), 15);
        assert!(matches!(
            escrow_amount(2, u64::MAX),
            Err(BankError::ValueOverflow { .. })
        ));
    }

    #[test]
    fn mint_spanning_two_batches_publishes_every_commitment_and_funds_escrows() {
        let s = setup(1_000_000, true);
        let bank = BankClient::new(&s.ledger, &s.bank, s.dir.path().join("bank.json"));
        let mut events = Vec::new();
        let outcome = bank
            .mint(s.request(700, 100), &mut |p| events.push(p))
            .unwrap();
        assert_eq!(outcome.tokens.len(), 700);
        assert_eq!(outcome.batches.len(), 2);
        assert_eq!(outcome.escrow_funded, 70_000);
        assert!(outcome.largest_transaction_bytes <= PACKET_DATA_SIZE);
        assert!(
            outcome.largest_transaction_bytes > 1000,
            "chunks are packed close to the limit"
        );
        for record in &outcome.batches {
            let chain = fetch_batch(&s.ledger, &record.batch).unwrap().unwrap();
            assert!(chain.is_sealed());
            assert_eq!(chain.header.published, record.token_count);
            assert_eq!(
                token_balance(&s.ledger, &record.escrow).unwrap(),
                u64::from(record.token_count) * 100
            );
            for token in outcome
                .tokens
                .iter()
                .filter(|t| t.batch_id == record.batch_id)
            {
                assert_eq!(chain.commitment(token.serial), Some(token.commitment()));
            }
        }
        let bank_account = bank.payment_account().unwrap();
        assert_eq!(
            token_balance(&s.ledger, &bank_account).unwrap(),
            1_000_000 - 70_000
        );
        assert_eq!(bank.unissued().unwrap().len(), 700);
        assert!(bank.pending_mint().unwrap().is_none());
        let sealed = events
            .iter()
            .filter(|e| matches!(e, MintProgress::Sealed { .. }))
            .count();
        assert_eq!(sealed, 2);
        let published: u32 = events
            .iter()
            .filter_map(|e| match e {
                MintProgress::Published { chunk, .. } => Some(*chunk),
                _ => None,
            })
            .sum();
        assert_eq!(published, 700);
    }

    #[test]
    fn interrupted_mint_resumes_from_the_published_counter() {
        let s = setup(1_000_000, true);
        let path = s.dir.path().join("bank.json");
        let interrupting = Interrupting {
            inner: &s.ledger,
            budget: AtomicUsize::new(4),
        };
        let bank = BankClient::new(&interrupting, &s.bank, &path);
        // 4 transactions: create batch 0, three publish chunks; then the "process" dies.
        let error = bank.mint(s.request(700, 10), &mut |_| {}).unwrap_err();
        assert!(matches!(error, BankError::Ledger(LedgerError::Backend(_))));
        let job = bank.pending_mint().unwrap().unwrap();
        let first = job.batches[0];
        let batch = pda::batch(&bank.pubkey(), &s.auditor, first.batch_id).0;
        let partial = fetch_batch(&s.ledger, &batch).unwrap().unwrap();
        assert!(partial.header.published > 0 && partial.header.published < first.token_count);
        // A new mint is refused while one is unfinished.
        let fresh = BankClient::new(&s.ledger, &s.bank, &path);
        assert!(matches!(
            fresh.mint(s.request(5, 10), &mut |_| {}),
            Err(BankError::MintInProgress { .. })
        ));
        let outcome = fresh.resume_mint(&mut |_| {}).unwrap().unwrap();
        assert!(outcome.resumed);
        assert_eq!(outcome.tokens.len(), 700);
        assert_eq!(outcome.escrow_funded, 7_000);
        for record in &outcome.batches {
            let chain = fetch_batch(&s.ledger, &record.batch).unwrap().unwrap();
            assert!(chain.is_sealed());
            for token in outcome
                .tokens
                .iter()
                .filter(|t| t.batch_id == record.batch_id)
            {
                assert_eq!(chain.commitment(token.serial), Some(token.commitment()));
            }
        }
        assert!(fresh.pending_mint().unwrap().is_none());
        assert_eq!(fresh.unissued().unwrap().len(), 700);
        assert!(fresh.resume_mint(&mut |_| {}).unwrap().is_none());
    }

    #[test]
    fn unregistered_bank_mint_is_refused_before_any_transaction() {
        let s = setup(1_000_000, false);
        let path = s.dir.path().join("bank.json");
        let bank = BankClient::new(&s.ledger, &s.bank, &path);
        let before = s.ledger.balance(&bank.pubkey()).unwrap();
        assert!(matches!(
            bank.mint(s.request(10, 1), &mut |_| {}),
            Err(BankError::NotRegistered { .. })
        ));
        assert_eq!(s.ledger.balance(&bank.pubkey()).unwrap(), before);
        assert!(!path.exists());
    }

    #[test]
    fn mint_beyond_the_bank_funds_is_refused_before_any_transaction() {
        let s = setup(999, true);
        let bank = BankClient::new(&s.ledger, &s.bank, s.dir.path().join("bank.json"));
        let error = bank.mint(s.request(10, 100), &mut |_| {}).unwrap_err();
        assert!(matches!(
            error,
            BankError::InsufficientFunds {
                available: 999,
                needed: 1000,
                ..
            }
        ));
        assert!(matches!(
            bank.mint(s.request(0, 100), &mut |_| {}),
            Err(BankError::InvalidRequest(_))
        ));
        assert!(matches!(
            bank.mint(s.request(2, u64::MAX), &mut |_| {}),
            Err(BankError::ValueOverflow { .. })
        ));
        assert!(bank.state().unwrap().batches.is_empty());
    }

    #[test]
    fn give_moves_tokens_to_the_wallet_once() {
        let s = setup(1_000_000, true);
        let bank = BankClient::new(&s.ledger, &s.bank, s.dir.path().join("bank.json"));
        let minted = bank.mint(s.request(20, 5), &mut |_| {}).unwrap();
        let user = mupib_protocol::cert::pubkey_of(&SigningKey::from_bytes(&[8; 32]));
        let mut wallet = Wallet::create(s.dir.path().join("w.json"), user).unwrap();
        let given = bank.give_to_wallet(&mut wallet, 12).unwrap();
        assert_eq!(given, minted.tokens[..12].to_vec());
        assert_eq!(wallet.balance().unwrap().unspent_value, 60);
        assert_eq!(bank.unissued().unwrap().len(), 8);
        assert!(matches!(
            bank.give_to_wallet(&mut wallet, 9),
            Err(BankError::NotEnoughTokens {
                requested: 9,
                available: 8
            })
        ));
        let state = bank.state().unwrap();
        assert_eq!(state.handouts.len(), 1);
        assert_eq!(state.handouts[0].recipient, user);
    }

    #[test]
    fn close_batch_is_refused_until_the_grace_after_expiry_then_returns_escrow() {
        let s = setup(1_000_000, true);
        let bank = BankClient::new(&s.ledger, &s.bank, s.dir.path().join("bank.json"));
        let minted = bank.mint(s.request(10, 5), &mut |_| {}).unwrap();
        let batch_id = minted.batches[0].batch_id;
        assert_eq!(minted.batches[0].auditor, s.auditor);
        assert_eq!(bank.state().unwrap().batches[0].auditor, s.auditor);
        assert!(matches!(
            bank.close_batch(batch_id),
            Err(BankError::NotClosable { .. })
        ));
        // Expired, but in the grace period.
        s.ledger.advance_clock(86_401).unwrap();
        let refused = bank.close_batch(batch_id).unwrap_err();
        assert!(
            matches!(refused, BankError::NotClosable { ref when, .. } if when.contains("grace")),
            "{refused}"
        );
        // Past the grace, but paused.
        s.ledger.advance_clock(BATCH_CLOSE_GRACE_SECS).unwrap();
        set_paused(&s.ledger, &s.admin, true).unwrap();
        let refused = bank.close_batch(batch_id).unwrap_err();
        assert!(
            matches!(refused, BankError::NotClosable { ref when, .. } if when.contains("paused")),
            "{refused}"
        );
        // Resumed: the grace restarts at the resume.
        set_paused(&s.ledger, &s.admin, false).unwrap();
        assert!(matches!(
            bank.close_batch(batch_id),
            Err(BankError::NotClosable { .. })
        ));
        s.ledger.advance_clock(BATCH_CLOSE_GRACE_SECS + 1).unwrap();
        let closed = bank.close_batch(batch_id).unwrap();
        assert_eq!(closed.escrow_returned, 50);
        assert!(closed.rent_returned > 0);
        assert_eq!(closed.tokens_dropped, 10);
        assert_eq!(
            token_balance(&s.ledger, &bank.payment_account().unwrap()).unwrap(),
            1_000_000
        );
        assert!(matches!(
            bank.close_batch(batch_id),
            Err(BankError::UnknownBatch { .. })
        ));
    }

    #[test]
    fn mint_bound_to_an_unregistered_or_inactive_auditor_is_refused_before_any_transaction() {
        let s = setup(1_000_000, true);
        let path = s.dir.path().join("bank.json");
        let bank = BankClient::new(&s.ledger, &s.bank, &path);
        let stranger = Keypair::new().pubkey();
        let request = MintRequest {
            auditor: stranger,
            ..s.request(10, 1)
        };
        assert!(matches!(
            bank.mint(request, &mut |_| {}),
            Err(BankError::AuditorNotRegistered { auditor }) if auditor == stranger
        ));
        s.ledger
            .send_instructions(
                &[ix::auditor_set_active(&s.admin.pubkey(), &s.auditor, false)],
                &s.admin.pubkey(),
                &[&s.admin],
            )
            .unwrap();
        assert!(matches!(
            bank.mint(s.request(10, 1), &mut |_| {}),
            Err(BankError::AuditorInactive { .. })
        ));
        assert!(!path.exists());
    }
}

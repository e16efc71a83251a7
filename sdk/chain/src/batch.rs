//! Publishing a batch of tokens (SPEC §3 "A bank publishes a batch of tokens"; paper Fig. 1
//! message 1): `batch_create` (the batch is bound to `args.auditor`, the only auditor that may
//! redeem it; the escrow is funded with `token_count × value` from the bank's token account),
//! `batch_publish` in the largest chunks that fit one transaction, `batch_seal`.
//!
//! Resumable: the batch account is read first and the flow continues where the chain stands (not
//! created → create; `published` commitments already written → publish the rest; not sealed →
//! seal). A batch already on-chain must match the arguments and the commitments already
//! published, or the flow stops with [`PublishError::Conflict`] before sending anything.

use mupib::instructions::BatchCreateArgs;
use solana_sdk::instruction::Instruction;
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::{Keypair, Signer};
use solana_sdk::transaction::Transaction;

use mupib_protocol::token::Commitment;

use crate::ledger::PACKET_DATA_SIZE;
use crate::ledger::{check_transaction_size, Ledger, LedgerError};
use crate::program::accounts::{fetch_batch, BatchState, FetchError};
use crate::program::instructions as ix;
use crate::program::packer::{transaction_size, PackError};
use crate::program::pda;

/// Errors of publishing a batch. Nothing is lost on any of them: run the flow again to resume.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A transaction or a read failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// An account did not decode.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// A transaction could not be measured.
    #[error(transparent)]
    Pack(#[from] PackError),
    /// A transaction exceeds the packet limit (cannot happen with the measured chunk size).
    #[error("the {what} transaction is {size} bytes, above the {limit}-byte limit")]
    TransactionTooLarge {
        /// Which instruction.
        what: &'static str,
        /// Its serialized size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The batch already on-chain differs from what is being published.
    #[error("batch {batch_id} on the ledger does not match: {reason}; use a new batch id")]
    Conflict {
        /// The batch.
        batch_id: u64,
        /// What differs.
        reason: String,
    },
    /// The number of commitments does not equal `token_count`.
    #[error(
        "batch {batch_id} has token_count {token_count} but {commitments} commitments were given"
    )]
    CommitmentCount {
        /// The batch.
        batch_id: u64,
        /// `args.token_count`.
        token_count: u32,
        /// Commitments given.
        commitments: usize,
    },
    /// An account that must exist after the transaction that creates it is missing.
    #[error("batch {0} does not exist on the ledger after the batch_create transaction succeeded")]
    Missing(u64),
    /// A count overflowed.
    #[error("arithmetic overflow in {0}")]
    Overflow(&'static str),
}

/// What publishing reports as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishProgress {
    /// The batch was created and its escrow funded.
    Funded {
        /// The batch.
        batch_id: u64,
        /// Amount moved to the escrow.
        escrow_amount: u64,
    },
    /// A chunk of commitments was written.
    Published {
        /// The batch.
        batch_id: u64,
        /// Commitments in this chunk.
        chunk: u32,
        /// Written so far.
        published: u32,
        /// Tokens of the batch.
        token_count: u32,
    },
    /// The batch is sealed: its tokens are redeemable.
    Sealed {
        /// The batch.
        batch_id: u64,
    },
}

/// What publishing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishOutcome {
    /// The batch PDA.
    pub batch: Pubkey,
    /// The escrow PDA.
    pub escrow: Pubkey,
    /// Transactions sent by this call.
    pub transactions: u64,
    /// The largest transaction sent, serialized, in bytes.
    pub largest_transaction_bytes: usize,
    /// The batch was found on-chain already (a resumed publication).
    pub resumed: bool,
    /// The batch is sealed.
    pub sealed: bool,
}

/// The largest number of commitments one `batch_publish` transaction carries (measured).
///
/// # Errors
/// [`PublishError::Pack`] if a transaction cannot be serialized.
pub fn commitments_per_publish_transaction(
    bank: &Pubkey,
    auditor: &Pubkey,
    batch_id: u64,
) -> Result<usize, PublishError> {
    let mut count = 1usize;
    loop {
        let next = count
            .checked_add(1)
            .ok_or(PublishError::Overflow("commitment count"))?;
        let instruction = ix::batch_publish(bank, auditor, batch_id, 0, vec![[0u8; 16]; next]);
        if transaction_size(&[instruction], bank)? > PACKET_DATA_SIZE {
            return Ok(count);
        }
        count = next;
    }
}

/// The bank's side of one batch on a ledger.
pub struct BatchPublisher<'a> {
    ledger: &'a dyn Ledger,
    bank: &'a Keypair,
    mint: Pubkey,
    bank_token: Pubkey,
}

impl<'a> BatchPublisher<'a> {
    /// Publishes as `bank`, funding escrows of `mint` from `bank_token`.
    pub fn new(
        ledger: &'a dyn Ledger,
        bank: &'a Keypair,
        mint: Pubkey,
        bank_token: Pubkey,
    ) -> Self {
        BatchPublisher {
            ledger,
            bank,
            mint,
            bank_token,
        }
    }

    /// Creates (funding the escrow), publishes and — if `seal` — seals the batch `args` whose
    /// commitments are `commitments` (serial order), resuming from what the chain already holds.
    /// `seal = false` leaves a fully published but unredeemable batch (its tokens are decided
    /// unpublished), which the demo and tests use.
    ///
    /// # Errors
    /// See [`PublishError`]; run it again to resume.
    pub fn publish(
        &self,
        args: BatchCreateArgs,
        commitments: &[Commitment],
        seal: bool,
        progress: &mut dyn FnMut(PublishProgress),
    ) -> Result<PublishOutcome, PublishError> {
        let bank = self.bank.pubkey();
        let auditor = args.auditor;
        let batch_id = args.batch_id;
        if usize::try_from(args.token_count).ok() != Some(commitments.len()) {
            return Err(PublishError::CommitmentCount {
                batch_id,
                token_count: args.token_count,
                commitments: commitments.len(),
            });
        }
        let batch = pda::batch(&bank, &auditor, batch_id).0;
        let mut outcome = PublishOutcome {
            batch,
            escrow: pda::escrow(&batch).0,
            transactions: 0,
            largest_transaction_bytes: 0,
            resumed: false,
            sealed: false,
        };
        let mut state = match fetch_batch(self.ledger, &batch)? {
            Some(state) => {
                outcome.resumed = true;
                state
            }
            None => {
                let escrow_amount = u64::from(args.token_count)
                    .checked_mul(args.value)
                    .ok_or(PublishError::Overflow("escrow amount"))?;
                self.send(
                    ix::batch_create(&bank, &self.mint, &self.bank_token, args.clone()),
                    "batch_create",
                    &mut outcome,
                )?;
                progress(PublishProgress::Funded {
                    batch_id,
                    escrow_amount,
                });
                fetch_batch(self.ledger, &batch)?.ok_or(PublishError::Missing(batch_id))?
            }
        };
        check_matches(&state, &args, commitments)?;
        let per_tx = commitments_per_publish_transaction(&bank, &auditor, batch_id)?;
        while state.header.published < state.header.token_count {
            let start = state.header.published;
            let from = usize::try_from(start).map_err(|_| PublishError::Overflow("serial"))?;
            let to = from.saturating_add(per_tx).min(commitments.len());
            let chunk = commitments[from..to].to_vec();
            let len = u32::try_from(chunk.len()).map_err(|_| PublishError::Overflow("chunk"))?;
            self.send(
                ix::batch_publish(&bank, &auditor, batch_id, start, chunk),
                "batch_publish",
                &mut outcome,
            )?;
            state.header.published = start
                .checked_add(len)
                .ok_or(PublishError::Overflow("published"))?;
            progress(PublishProgress::Published {
                batch_id,
                chunk: len,
                published: state.header.published,
                token_count: args.token_count,
            });
        }
        if !seal {
            return Ok(outcome);
        }
        if !state.is_sealed() {
            self.send(
                ix::batch_seal(&bank, &auditor, batch_id),
                "batch_seal",
                &mut outcome,
            )?;
        }
        let sealed = fetch_batch(self.ledger, &batch)?.ok_or(PublishError::Missing(batch_id))?;
        check_matches(&sealed, &args, commitments)?;
        if !sealed.is_sealed() {
            return Err(PublishError::Conflict {
                batch_id,
                reason: "not sealed after batch_seal".into(),
            });
        }
        outcome.sealed = true;
        progress(PublishProgress::Sealed { batch_id });
        Ok(outcome)
    }

    fn send(
        &self,
        instruction: Instruction,
        what: &'static str,
        outcome: &mut PublishOutcome,
    ) -> Result<(), PublishError> {
        let payer = self.bank.pubkey();
        let blockhash = self.ledger.latest_blockhash()?;
        let mut transaction = Transaction::new_with_payer(&[instruction], Some(&payer));
        transaction
            .try_sign(&[self.bank], blockhash)
            .map_err(|e| LedgerError::Signing(e.to_string()))?;
        let size = match check_transaction_size(&transaction) {
            Ok(size) => size,
            Err(LedgerError::TransactionTooLarge { size, limit }) => {
                return Err(PublishError::TransactionTooLarge { what, size, limit })
            }
            Err(e) => return Err(e.into()),
        };
        self.ledger.send_transaction(&transaction)?;
        outcome.transactions = outcome
            .transactions
            .checked_add(1)
            .ok_or(PublishError::Overflow("transactions"))?;
        outcome.largest_transaction_bytes = outcome.largest_transaction_bytes.max(size);
        Ok(())
    }
}

/// Checks an on-chain batch against the arguments and the commitments it already holds.
fn check_matches(
    chain: &BatchState,
    args: &BatchCreateArgs,
    commitments: &[Commitment],
) -> Result<(), PublishError> {
    let header = &chain.header;
    let conflict = |reason: String| PublishError::Conflict {
        batch_id: args.batch_id,
        reason,
    };
    if header.value != args.value
        || header.token_count != args.token_count
        || header.issued_at != args.issued_at
        || header.expires_at != args.expires_at
    {
        return Err(conflict(format!(
            "ledger has {} tokens of value {} issued at {} expiring at {}, the request {} of value {} issued at {} expiring at {}",
            header.token_count, header.value, header.issued_at, header.expires_at,
            args.token_count, args.value, args.issued_at, args.expires_at
        )));
    }
    let published = usize::try_from(header.published).unwrap_or(usize::MAX);
    for (serial, commitment) in commitments.iter().enumerate().take(published) {
        let serial = u32::try_from(serial).map_err(|_| PublishError::Overflow("serial"))?;
        if chain.commitment(serial).as_ref() != Some(commitment) {
            return Err(conflict(format!(
                "the commitment of serial {serial} differs from the signed token's"
            )));
        }
    }
    Ok(())
}

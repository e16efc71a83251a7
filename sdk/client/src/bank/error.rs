//! The bank client's errors: one [`BankError`] for every step of minting, closing and handing
//! out, each saying what was wrong and what to do.

use std::path::PathBuf;

use solana_sdk::pubkey::Pubkey;

use crate::wallet::WalletError;
use mupib_chain::batch::PublishError;
use mupib_chain::ledger::LedgerError;
use mupib_chain::program::accounts::FetchError;
use mupib_chain::spl::SplError;

/// Errors of the bank client.
#[derive(Debug, thiserror::Error)]
pub enum BankError {
    /// A ledger call failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// An account did not decode.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// A payment-account step failed.
    #[error(transparent)]
    Spl(#[from] SplError),
    /// Publishing a batch failed (run the mint again to resume).
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// Delivering to a wallet failed (the hand-out was rolled back).
    #[error(transparent)]
    Wallet(#[from] WalletError),
    /// The program has no `Config` on this ledger.
    #[error("the µPIB program is not initialised on this ledger: run `mupib admin init` first")]
    NotInitialised,
    /// The program is paused.
    #[error(
        "the µPIB program is paused by the admin: minting is suspended until `mupib admin resume`"
    )]
    Paused,
    /// The bank has no registration.
    #[error(
        "bank {bank} is not registered: ask the admin to run `mupib admin register-bank {bank}`"
    )]
    NotRegistered {
        /// The bank.
        bank: Pubkey,
    },
    /// The bank is registered but inactive.
    #[error(
        "bank {bank} is registered but suspended by the admin: ask the admin to re-activate it"
    )]
    Inactive {
        /// The bank.
        bank: Pubkey,
    },
    /// The auditor a mint binds its batches to is not registered.
    #[error("auditor {auditor} is not registered with the µPIB program: only a registered auditor can redeem a batch; ask the admin to run `mupib admin register-auditor {auditor}` or bind the batches to another auditor")]
    AuditorNotRegistered {
        /// The auditor.
        auditor: Pubkey,
    },
    /// The auditor a mint binds its batches to is suspended.
    #[error("auditor {auditor} is registered but suspended by the admin: it could not redeem the batches; bind them to an active auditor")]
    AuditorInactive {
        /// The auditor.
        auditor: Pubkey,
    },
    /// A mint request is invalid.
    #[error("invalid mint request: {0}")]
    InvalidRequest(String),
    /// `count × value` does not fit a u64.
    #[error("{count} tokens of value {value} are worth more than {max} base units (u64): mint fewer tokens or a smaller value")]
    ValueOverflow {
        /// Tokens.
        count: u64,
        /// Value of one token.
        value: u64,
        /// `u64::MAX`.
        max: u64,
    },
    /// The bank's payment account holds too little.
    #[error("the bank's payment account {account} holds {available} base units, the escrow needs {needed}: fund it first (`mupib admin fund {bank} --amount ...`)")]
    InsufficientFunds {
        /// The bank.
        bank: Pubkey,
        /// Its payment account.
        account: Pubkey,
        /// Balance.
        available: u64,
        /// Needed.
        needed: u64,
    },
    /// The bank holds too few lamports for rent deposits and fees.
    #[error("bank {bank} holds {available} lamports, minting needs about {needed} for rent deposits and fees: send it SOL")]
    InsufficientLamports {
        /// The bank.
        bank: Pubkey,
        /// Balance.
        available: u64,
        /// Estimated need.
        needed: u64,
    },
    /// A mint is already in progress.
    #[error("an interrupted mint of batches {batch_ids:?} is unfinished: finish it first (`mupib bank mint --resume`)")]
    MintInProgress {
        /// Its batches.
        batch_ids: Vec<u64>,
    },
    /// An on-chain batch does not match what the bank planned or signed.
    #[error("batch {batch_id} on the ledger does not match the bank's records ({reason}): the data directory and the ledger disagree; do not reuse this batch id")]
    Conflict {
        /// The batch.
        batch_id: u64,
        /// What differs.
        reason: String,
    },
    /// An account that a transaction just created is missing.
    #[error("{0} is missing on the ledger after the transaction that creates it")]
    Missing(String),
    /// A transaction would exceed the packet size.
    #[error("a {what} transaction is {size} bytes, above the {limit}-byte limit")]
    TransactionTooLarge {
        /// Which.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// No batch with this id in the bank's records.
    #[error("bank has no batch {batch_id} in its records: list them with `mupib bank batches`")]
    UnknownBatch {
        /// The batch.
        batch_id: u64,
    },
    /// The batch cannot be closed yet: it has unspent tokens and is not past its grace period
    /// (`BATCH_CLOSE_GRACE_SECS` after its expiry and after the program's last resume), or the
    /// program is paused.
    #[error("batch {batch_id} cannot be closed yet ({spent} of {token_count} tokens spent, expiry {expires_at}, now {now}): {when}")]
    NotClosable {
        /// The batch.
        batch_id: u64,
        /// Expiry.
        expires_at: i64,
        /// Now.
        now: i64,
        /// Spent tokens.
        spent: u32,
        /// Tokens.
        token_count: u32,
        /// When it becomes closable.
        when: String,
    },
    /// Not enough unissued tokens.
    #[error("the bank holds {available} unexpired tokens not yet handed out, {requested} requested: mint more (`mupib bank mint`)")]
    NotEnoughTokens {
        /// Requested.
        requested: u64,
        /// Available.
        available: u64,
    },
    /// The bank state file is corrupt.
    #[error("bank state file {path} is corrupt ({reason}); it was left untouched: restore it from a backup")]
    CorruptState {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The bank state file belongs to another bank.
    #[error("bank state file {path} belongs to bank {owner}, not {bank}: use that bank's keypair or another data directory")]
    WrongBank {
        /// The file.
        path: PathBuf,
        /// Its bank.
        owner: Pubkey,
        /// The key used.
        bank: Pubkey,
    },
    /// Reading or writing the state file failed.
    #[error("bank state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A count or amount overflowed.
    #[error("arithmetic overflow in {0}")]
    Overflow(&'static str),
}

//! Durable auditor state (SPEC §4 "State is durable"): the [`Store`] trait, an SQLite backend
//! ([`SqliteStore`], the default) and an in-memory backend ([`MemoryStore`], for the simulation
//! and fast tests), both checked by one conformance suite ([`conformance`]).
//!
//! # Atomicity
//!
//! The engine never writes piecemeal. Every intake and every application of a block's decisions
//! produces one [`ChangeSet`], and [`Store::apply`] writes it in ONE database transaction:
//! per-user state, new transactions, status changes, seen tokens, the block record, vendor payout
//! accruals, user refunds, misbehaviour records and the block's processed-decision marker
//! (its stored outcome) commit together or not at all.
//!
//! [`Store::apply_all`] is the group commit: the change sets of several steps (computed in
//! sequence, each against the state the earlier ones leave) are written in ONE database
//! transaction, so a durable backend pays one fsync for the group. The group commits together
//! or not at all; a caller must not release anything that depends on the group (the signed
//! responses of a batch of intakes) before `apply_all` returns `Ok`. A crash at any point therefore leaves the
//! state as it was before the step or as it is after it, never in between: no payout is
//! accrued twice, none is forgotten.
//!
//! # Several auditor instances (PostgreSQL)
//!
//! The trait is shaped so that a server database can back several engine instances:
//! - per-user state carries a `version`; [`UserWrite::expected_version`] makes every user write a
//!   compare-and-swap (`UPDATE users … WHERE user = $1 AND version = $2`, zero rows →
//!   [`StoreError::Conflict`]); a new user is an `INSERT` that conflicts on the primary key. An
//!   instance that loses the race re-reads and recomputes; nothing was written.
//! - block ids come from a counter checked the same way ([`ChangeSet::block_id_claim`]); on
//!   PostgreSQL a `SEQUENCE` read before the transaction works too (gaps are harmless).
//! - a token seen twice is a primary-key conflict on `seen_tokens`, so two instances cannot both
//!   accept the same token; the backend reports it as [`StoreError::Conflict`].
//! - a block's decisions are applied under the condition that its outcome is still empty
//!   (`UPDATE blocks SET outcome = $1 WHERE block_id = $2 AND outcome IS NULL`); the loser of a
//!   race reads the winner's outcome.
//! - vendor balances only ever change by relative increments inside the same transaction.
//!
//! # Settlement
//!
//! Vendor payouts accrue in [`VendorAccount::accrued`]. The settler (`crate::settlement`) reads
//! [`Store::pending_payouts`], reserves a batch under an idempotency key and a payout sequence
//! number with [`Store::begin_settlement`] (moving the amounts to `in_flight`), stores the
//! transaction it signs with [`Store::record_signed_settlement`] before sending it, and then
//! calls [`Store::complete_settlement`] (or [`Store::abort_settlement`]). Each call is
//! idempotent under its key: a crash between any two steps is recovered by re-running the step
//! ([`Store::open_settlements`] lists the batches to resolve).
//!
//! # One writer
//!
//! A SQLite store has exactly one writer: [`SqliteStore::open`] takes an exclusive lock on the
//! database that the operating system releases when the process ends, and a second process gets
//! [`StoreError::Locked`] at once.

#[cfg(feature = "testkit")]
pub mod conformance;
mod memory;
mod model;
#[cfg(feature = "postgres")]
mod postgres;
mod sqlite;

#[cfg(feature = "postgres")]
pub use self::postgres::{PostgresLeases, PostgresOptions, PostgresStore, PostgresTls};
#[cfg(all(feature = "postgres", feature = "testkit"))]
pub use self::postgres::{TestPostgres, TEST_POSTGRES_ENV};
pub use memory::MemoryStore;
pub use model::*;
pub use sqlite::SqliteStore;

use mupib_protocol::payout::{SignedPayout, VendorPayout};
use mupib_protocol::transaction::TransactionId;
use mupib_protocol::Pubkey;

/// Errors of a storage backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The underlying SQLite database failed.
    #[error("database error: {0}; check that the database file is writable and not corrupted")]
    Sqlite(#[from] rusqlite::Error),
    /// The PostgreSQL server failed the request or could not be reached (a write that fails
    /// wrote nothing): retry once the server is back.
    #[error("database server: {0}; check that PostgreSQL is up and reachable, then retry")]
    Server(String),
    /// Another writer changed the same record first (compare-and-swap lost, duplicate key).
    #[error("concurrent update conflict on {0}: re-read the state and retry the operation")]
    Conflict(String),
    /// A value does not fit the database representation (u64 above i64::MAX, unknown code).
    #[error("value out of range for the store: {0}")]
    OutOfRange(String),
    /// A record the change refers to does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The database was written by a newer version of this software.
    #[error("database schema version {found} is newer than this software supports ({supported}); upgrade µPIB")]
    SchemaTooNew {
        /// Version found in the database.
        found: i64,
        /// Highest version this build knows.
        supported: i64,
    },
    /// A settlement request is inconsistent with what the store holds.
    #[error("settlement {key}: {reason}")]
    Settlement {
        /// The idempotency key of the batch.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A stored outcome could not be (de)serialized.
    #[error("stored block outcome is unreadable: {0}")]
    Codec(String),
    /// Another process has the store open for writing.
    #[error("the auditor store {path} is in use by another process{holder}: stop it first (a store has exactly one writer)",
        holder = pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked {
        /// The database file.
        path: std::path::PathBuf,
        /// The holder's process id, when it could be read.
        pid: Option<u32>,
    },
    /// Reading or writing a file of the store failed.
    #[error("auditor store file {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// Durable auditor state. See the module documentation for the atomicity and concurrency
/// contract every backend must honour; [`conformance`] checks it.
pub trait Store {
    /// The scalar state of `user`, if the auditor has seen the user.
    fn user(&self, user: &Pubkey) -> Result<Option<UserState>, StoreError>;
    /// Whether a token was already seen at intake (double spending within the auditor's view).
    fn token_seen(&self, token: &mupib_protocol::token::TokenId) -> Result<bool, StoreError>;
    /// The first stored transaction with this id, if any (double selling / replay detection,
    /// and status look-ups by a vendor that lost a response).
    fn transaction_by_id(
        &self,
        id: &TransactionId,
    ) -> Result<Option<TransactionRecord>, StoreError>;
    /// The user's transactions that are accepted but not yet in a block (delivered or held), in
    /// arrival order, with their tokens.
    fn queue(&self, user: &Pubkey) -> Result<Vec<TransactionRecord>, StoreError>;
    /// A block and its transactions (in block order, with their tokens).
    fn block(
        &self,
        block_id: u64,
    ) -> Result<Option<(BlockRecord, Vec<TransactionRecord>)>, StoreError>;
    /// Blocks formed but not yet decided (to resubmit after a restart), ascending.
    fn pending_blocks(&self) -> Result<Vec<BlockRecord>, StoreError>;
    /// The next block id the store will accept in [`ChangeSet::block_id_claim`].
    fn next_block_id(&self) -> Result<u64, StoreError>;
    /// Writes a change set atomically (one database transaction); on error nothing is written.
    fn apply(&mut self, change: &ChangeSet) -> Result<(), StoreError>;
    /// Group commit: writes `changes` in order, each checked as [`Self::apply`] checks it against
    /// the state the earlier ones leave, all in ONE database transaction (one fsync on the
    /// durable backend). If any change set fails, nothing of the group is written and the error
    /// names the failure. An empty slice writes nothing.
    fn apply_all(&mut self, changes: &[ChangeSet]) -> Result<(), StoreError>;

    /// A vendor's account (zero if unknown).
    fn vendor(&self, vendor: &Pubkey) -> Result<VendorAccount, StoreError>;
    /// The refund owed to a user (sum of refunded valid tokens).
    fn user_refund(&self, user: &Pubkey) -> Result<u64, StoreError>;
    /// All misbehaviour records, oldest first.
    fn misbehaviour(&self) -> Result<Vec<MisbehaviourRecord>, StoreError>;

    /// Vendors with a positive settleable balance (`accrued − settled − in_flight`), by key.
    fn pending_payouts(&self) -> Result<Vec<VendorPayout>, StoreError>;
    /// Reserves a settlement batch under `key` for payout sequence number `seq`. Idempotent: the
    /// same key with the same number and items returns the stored batch; the same key with
    /// anything different is an error. Fails if an amount exceeds the vendor's settleable
    /// balance.
    fn begin_settlement(
        &mut self,
        key: &str,
        seq: u64,
        items: &[VendorPayout],
    ) -> Result<SettlementBatch, StoreError>;
    /// Stores the transaction signed for an in-flight batch (replacing an earlier one, which the
    /// caller has found can no longer land). Fails for a batch that is not in flight.
    fn record_signed_settlement(
        &mut self,
        key: &str,
        signed: &SignedPayout,
    ) -> Result<SettlementBatch, StoreError>;
    /// Marks a batch as paid on-chain (`reference`, e.g. the transaction signature): amounts move
    /// from `in_flight` to `settled`. Idempotent.
    fn complete_settlement(
        &mut self,
        key: &str,
        reference: &str,
    ) -> Result<SettlementBatch, StoreError>;
    /// Gives a reserved batch up (the transfer was never sent): amounts return to the settleable
    /// balance. Idempotent; a completed batch cannot be aborted.
    fn abort_settlement(&mut self, key: &str) -> Result<SettlementBatch, StoreError>;
    /// A settlement batch by key.
    fn settlement(&self, key: &str) -> Result<Option<SettlementBatch>, StoreError>;
    /// The batches still in flight, by sequence number.
    fn open_settlements(&self) -> Result<Vec<SettlementBatch>, StoreError>;
    /// The `limit` most recent batches (highest sequence numbers first), any status.
    fn recent_settlements(&self, limit: usize) -> Result<Vec<SettlementBatch>, StoreError>;
}

/// Sorts settlement items by vendor and refuses duplicates, zero amounts and empty batches.
fn normalize_items(key: &str, items: &[VendorPayout]) -> Result<Vec<VendorPayout>, StoreError> {
    let mut items = items.to_vec();
    items.sort_by_key(|item| item.vendor);
    let reason = if items.is_empty() {
        Some("has no items; pass at least one vendor payout".to_owned())
    } else if items.windows(2).any(|w| w[0].vendor == w[1].vendor) {
        Some("names a vendor twice; merge its amounts into one item".to_owned())
    } else if items
        .iter()
        .any(|i| i.amount == 0 || i64::try_from(i.amount).is_err())
    {
        Some("has an amount of zero or above i64::MAX".to_owned())
    } else {
        None
    };
    match reason {
        Some(reason) => Err(StoreError::Settlement {
            key: key.to_owned(),
            reason,
        }),
        None => Ok(items),
    }
}

/// Idempotent re-begin: the stored batch if it has the same number and items, an error
/// otherwise.
fn same_batch(
    existing: &SettlementBatch,
    seq: u64,
    items: &[VendorPayout],
) -> Result<SettlementBatch, StoreError> {
    if existing.items == items && existing.seq == seq {
        Ok(existing.clone())
    } else {
        Err(StoreError::Settlement {
            key: existing.key.clone(),
            reason: "already exists with different items; use a new idempotency key".into(),
        })
    }
}

/// The item must not exceed the vendor's settleable balance.
fn check_settleable(
    key: &str,
    item: &VendorPayout,
    account: &VendorAccount,
) -> Result<(), StoreError> {
    if item.amount > account.settleable() {
        return Err(StoreError::Settlement {
            key: key.to_owned(),
            reason: format!(
                "asks {} for vendor {} but only {} is settleable; re-read pending_payouts",
                item.amount,
                item.vendor,
                account.settleable()
            ),
        });
    }
    Ok(())
}

/// A boxed store is a store: lets a service pick its backend at run time
/// (`Auditor<Box<dyn Store + Send>>`).
impl<S: Store + ?Sized> Store for Box<S> {
    fn user(&self, user: &Pubkey) -> Result<Option<UserState>, StoreError> {
        (**self).user(user)
    }
    fn token_seen(&self, token: &mupib_protocol::token::TokenId) -> Result<bool, StoreError> {
        (**self).token_seen(token)
    }
    fn transaction_by_id(
        &self,
        id: &TransactionId,
    ) -> Result<Option<TransactionRecord>, StoreError> {
        (**self).transaction_by_id(id)
    }
    fn queue(&self, user: &Pubkey) -> Result<Vec<TransactionRecord>, StoreError> {
        (**self).queue(user)
    }
    fn block(
        &self,
        block_id: u64,
    ) -> Result<Option<(BlockRecord, Vec<TransactionRecord>)>, StoreError> {
        (**self).block(block_id)
    }
    fn pending_blocks(&self) -> Result<Vec<BlockRecord>, StoreError> {
        (**self).pending_blocks()
    }
    fn next_block_id(&self) -> Result<u64, StoreError> {
        (**self).next_block_id()
    }
    fn apply(&mut self, change: &ChangeSet) -> Result<(), StoreError> {
        (**self).apply(change)
    }
    fn apply_all(&mut self, changes: &[ChangeSet]) -> Result<(), StoreError> {
        (**self).apply_all(changes)
    }
    fn vendor(&self, vendor: &Pubkey) -> Result<VendorAccount, StoreError> {
        (**self).vendor(vendor)
    }
    fn user_refund(&self, user: &Pubkey) -> Result<u64, StoreError> {
        (**self).user_refund(user)
    }
    fn misbehaviour(&self) -> Result<Vec<MisbehaviourRecord>, StoreError> {
        (**self).misbehaviour()
    }
    fn pending_payouts(&self) -> Result<Vec<VendorPayout>, StoreError> {
        (**self).pending_payouts()
    }
    fn begin_settlement(
        &mut self,
        key: &str,
        seq: u64,
        items: &[VendorPayout],
    ) -> Result<SettlementBatch, StoreError> {
        (**self).begin_settlement(key, seq, items)
    }
    fn record_signed_settlement(
        &mut self,
        key: &str,
        signed: &SignedPayout,
    ) -> Result<SettlementBatch, StoreError> {
        (**self).record_signed_settlement(key, signed)
    }
    fn complete_settlement(
        &mut self,
        key: &str,
        reference: &str,
    ) -> Result<SettlementBatch, StoreError> {
        (**self).complete_settlement(key, reference)
    }
    fn abort_settlement(&mut self, key: &str) -> Result<SettlementBatch, StoreError> {
        (**self).abort_settlement(key)
    }
    fn settlement(&self, key: &str) -> Result<Option<SettlementBatch>, StoreError> {
        (**self).settlement(key)
    }
    fn open_settlements(&self) -> Result<Vec<SettlementBatch>, StoreError> {
        (**self).open_settlements()
    }
    fn recent_settlements(&self, limit: usize) -> Result<Vec<SettlementBatch>, StoreError> {
        (**self).recent_settlements(limit)
    }
}

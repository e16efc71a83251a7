//! SQLite [`Store`] (the default): WAL journal, `synchronous = FULL` (a committed step survives
//! power loss), numbered migrations from `migrations/auditor/`, schema version tracked in
//! `schema_migrations`. Every [`Store::apply`] and settlement call is one `BEGIN IMMEDIATE`
//! transaction.
//!
//! The schema and migrations are in `sqlite/schema.rs`, row conversions in `sqlite/rows.rs`, the
//! writes of a change set in `sqlite/apply.rs`, the settlement statements in
//! `sqlite/settlement.rs`.

mod apply;
mod rows;
mod schema;
mod settlement;

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::model::*;
use super::{Store, StoreError};
use mupib_protocol::payout::{SignedPayout, VendorPayout};
use mupib_protocol::token::TokenId;
use mupib_protocol::transaction::TransactionId;
use mupib_protocol::Pubkey;
use rows::{
    code, model_from, pubkey, scale_from, to_i64, to_u64, tx_id, tx_id_bytes, MisbehaviourRow,
    TX_COLUMNS, USER_COLUMNS,
};
use schema::migrate;

/// A test hook called with the name of each step inside a write transaction (see
/// [`SqliteStore::set_step_hook`]).
pub type StepHook = Box<dyn FnMut(&'static str) + Send>;

/// SQLite-backed auditor state.
pub struct SqliteStore {
    conn: Connection,
    hook: Option<StepHook>,
    /// The exclusive writer lock of a file database (held until the store is dropped).
    lock: Option<WriterLock>,
}

/// The one-writer lock of a database file: an exclusive `flock` on `<database>.lock`, which the
/// operating system releases when the process ends (a crash leaves no stale lock). The file
/// holds the owner's process id, for the error a second process gets.
#[derive(Debug)]
struct WriterLock {
    _file: std::fs::File,
}

/// How long opening waits for the writer lock before reporting the store in use.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

impl WriterLock {
    fn acquire(database: &Path) -> Result<WriterLock, StoreError> {
        use std::io::{Read, Seek, Write};
        let mut name = database.as_os_str().to_owned();
        name.push(".lock");
        let path = std::path::PathBuf::from(name);
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        // A lock can be held for a moment by a child this process is forking (the duplicated
        // descriptor lives until the child's exec): wait out such a window, not a real owner.
        let deadline = std::time::Instant::now() + LOCK_PATIENCE;
        let mut attempt = file.try_lock();
        while matches!(attempt, Err(std::fs::TryLockError::WouldBlock))
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
            attempt = file.try_lock();
        }
        match attempt {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let pid = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse().ok());
                return Err(StoreError::Locked {
                    path: database.to_path_buf(),
                    pid,
                });
            }
            Err(std::fs::TryLockError::Error(source)) => return Err(io(source)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(std::process::id().to_string().as_bytes())
            .map_err(io)?;
        Ok(WriterLock { _file: file })
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.conn.path())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`, sets WAL and `synchronous = FULL`, and runs
    /// pending migrations.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] if the file cannot be opened; [`StoreError::SchemaTooNew`] if it was
    /// written by a newer version.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let lock = WriterLock::acquire(path)?;
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let mut store = Self::init(conn)?;
        store.lock = Some(lock);
        Ok(store)
    }

    /// A read-only connection to the database at `path`, which a writer ([`Self::open`]) has
    /// already created and migrated. It takes no writer lock and never waits for the writer: in
    /// WAL mode a read sees the last committed state, so reads (status, traces, answers) go on
    /// while the writer commits and fsyncs. Every write through it fails.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] if the file cannot be opened; [`StoreError::SchemaTooNew`] or a
    /// schema older than this build (run the writer first).
    pub fn open_reader(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        use rusqlite::OpenFlags;
        let conn = Connection::open_with_flags(
            path.as_ref(),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let store = SqliteStore {
            conn,
            hook: None,
            lock: None,
        };
        let found = store.schema_version()?;
        if found > schema::SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                found,
                supported: schema::SCHEMA_VERSION,
            });
        }
        if found < schema::SCHEMA_VERSION {
            return Err(StoreError::OutOfRange(format!(
                "database schema version {found} is older than this build's ({}): open it for writing first, which migrates it",
                schema::SCHEMA_VERSION
            )));
        }
        Ok(store)
    }

    /// A private in-memory database (tests).
    ///
    /// # Errors
    /// As [`Self::open`].
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self, StoreError> {
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        Ok(SqliteStore {
            conn,
            hook: None,
            lock: None,
        })
    }

    /// The schema version of the open database.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )?)
    }

    /// Installs a hook called with the name of each step inside write transactions
    /// (`"begin"`, `"user"`, `"block"`, `"transactions"`, `"updates"`, `"tokens"`, `"decided"`,
    /// `"payouts"`, `"commit"`, and `"settlement:*"`). Used by the crash tests to abort the
    /// process at a chosen step; production code leaves it unset.
    #[doc(hidden)]
    pub fn set_step_hook(&mut self, hook: Option<StepHook>) {
        self.hook = hook;
    }

    /// Every row of every table, sorted, as text: two equal dumps mean equal states (crash tests).
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    #[doc(hidden)]
    pub fn dump(&self) -> Result<String, StoreError> {
        let tables = [
            "users",
            "transactions",
            "transaction_tokens",
            "seen_tokens",
            "blocks",
            "vendors",
            "user_refunds",
            "misbehaviour",
            "settlements",
            "settlement_items",
            "meta",
            "schema_migrations",
        ];
        let mut out = String::new();
        for table in tables {
            let mut statement = self.conn.prepare(&format!("SELECT * FROM {table}"))?;
            let columns = statement.column_count();
            let mut rows: Vec<String> = statement
                .query_map([], |row| {
                    let mut line = String::new();
                    for index in 0..columns {
                        let value: rusqlite::types::Value = row.get(index)?;
                        line.push_str(&format!("{value:?}|"));
                    }
                    Ok(line)
                })?
                .collect::<Result<_, _>>()?;
            rows.sort();
            out.push_str(&format!("[{table}]\n"));
            for row in rows {
                out.push_str(&row);
                out.push('\n');
            }
        }
        Ok(out)
    }

    fn step(hook: &mut Option<StepHook>, name: &'static str) {
        if let Some(hook) = hook.as_mut() {
            hook(name);
        }
    }
}

impl Store for SqliteStore {
    fn user(&self, user: &Pubkey) -> Result<Option<UserState>, StoreError> {
        let mut statement = self
            .conn
            .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE user = ?1"))?;
        let row = statement
            .query_row(params![user.to_bytes()], |r| {
                let mut ints = [0i64; 14];
                let indexes = [1usize, 2, 3, 4, 5, 6, 8, 9, 11, 12, 13, 14, 16, 17];
                for (slot, index) in ints.iter_mut().zip(indexes) {
                    *slot = r.get(index)?;
                }
                Ok((
                    ints,
                    r.get::<_, bool>(7)?,
                    r.get::<_, Option<i64>>(10)?,
                    r.get::<_, String>(15)?,
                ))
            })
            .optional()?;
        let Some((ints, suspended, pending, risk)) = row else {
            return Ok(None);
        };
        let [version, w0, w, model, scale, gamma, queued_tokens, queued_txs, next_seq, valid, invalid, misbehaviour, delivered, refunded] =
            ints;
        Ok(Some(UserState {
            user: *user,
            version: to_u64(version, "version")?,
            trust: mupib_protocol::trust::TrustState {
                model: model_from(model)?,
                scale: scale_from(scale)?,
                initial_block_size: to_u64(w0, "W0")?,
                block_size: to_u64(w, "W")?,
                invalid_total: to_u64(gamma, "gamma")?,
            },
            suspended,
            queued_tokens: to_u64(queued_tokens, "queued tokens")?,
            queued_transactions: to_u64(queued_txs, "queued transactions")?,
            pending_block: pending.map(|p| to_u64(p, "pending block")).transpose()?,
            next_seq: to_u64(next_seq, "next seq")?,
            blocks_valid: to_u64(valid, "blocks valid")?,
            blocks_invalid: to_u64(invalid, "blocks invalid")?,
            misbehaviour_count: to_u64(misbehaviour, "misbehaviour")?,
            risk_total: risk
                .parse()
                .map_err(|_| StoreError::OutOfRange(format!("risk total {risk:?}")))?,
            tokens_delivered: to_u64(delivered, "tokens delivered")?,
            refunded_total: to_u64(refunded, "refunded")?,
        }))
    }

    fn token_seen(&self, token: &TokenId) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT 1 FROM seen_tokens WHERE bank = ?1 AND batch_id = ?2 AND serial = ?3",
            )?
            .exists(params![
                token.bank.to_bytes(),
                to_i64(token.batch_id, "batch id")?,
                i64::from(token.serial)
            ])?)
    }

    fn transaction_by_id(
        &self,
        id: &TransactionId,
    ) -> Result<Option<TransactionRecord>, StoreError> {
        Ok(self
            .query_txs(
                &format!("SELECT {TX_COLUMNS} FROM transactions WHERE tx_id = ?1 ORDER BY seq, user LIMIT 1"),
                params![tx_id_bytes(id)],
            )?
            .into_iter()
            .next())
    }

    fn queue(&self, user: &Pubkey) -> Result<Vec<TransactionRecord>, StoreError> {
        self.query_txs(
            &format!(
                "SELECT {TX_COLUMNS} FROM transactions WHERE user = ?1 AND block_id IS NULL AND status IN (0, 2) ORDER BY seq"
            ),
            params![user.to_bytes()],
        )
    }

    fn block(
        &self,
        block_id: u64,
    ) -> Result<Option<(BlockRecord, Vec<TransactionRecord>)>, StoreError> {
        let id = to_i64(block_id, "block id")?;
        let raw = self
            .conn
            .prepare_cached(
                "SELECT block_id, user, waiting_seq, token_count, block_size, outcome FROM blocks WHERE block_id = ?1",
            )?
            .query_row(params![id], Self::read_block)
            .optional()?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        let record = Self::block_record(raw)?;
        let txs = self.query_txs(
            &format!("SELECT {TX_COLUMNS} FROM transactions WHERE block_id = ?1 ORDER BY seq"),
            params![id],
        )?;
        Ok(Some((record, txs)))
    }

    fn pending_blocks(&self) -> Result<Vec<BlockRecord>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT block_id, user, waiting_seq, token_count, block_size, outcome FROM blocks \
             WHERE outcome IS NULL ORDER BY block_id",
        )?;
        let raw: Vec<_> = statement
            .query_map([], Self::read_block)?
            .collect::<Result<_, _>>()?;
        raw.into_iter().map(Self::block_record).collect()
    }

    fn next_block_id(&self) -> Result<u64, StoreError> {
        let value: i64 = self.conn.query_row(
            "SELECT value FROM meta WHERE key = 'next_block_id'",
            [],
            |r| r.get(0),
        )?;
        to_u64(value, "next block id")
    }

    fn apply(&mut self, change: &ChangeSet) -> Result<(), StoreError> {
        let mut hook = self.hook.take();
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            Self::apply_in(&tx, change, &mut hook)?;
            tx.commit()?;
            Ok(())
        })();
        self.hook = hook;
        result
    }

    /// One `BEGIN IMMEDIATE … COMMIT` around every change set of the group: with
    /// `synchronous = FULL` the group costs one fsync. Each change set runs the same checked
    /// statements as [`Store::apply`] and sees the earlier ones' writes (same connection); any
    /// failure rolls the whole group back. Test-hook steps: each change set's steps, then
    /// `"group:next"` between change sets and `"group:commit"` before the commit.
    fn apply_all(&mut self, changes: &[ChangeSet]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut hook = self.hook.take();
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            for (index, change) in changes.iter().enumerate() {
                if index > 0 {
                    Self::step(&mut hook, "group:next");
                }
                Self::apply_in(&tx, change, &mut hook)?;
            }
            Self::step(&mut hook, "group:commit");
            tx.commit()?;
            Ok(())
        })();
        self.hook = hook;
        result
    }

    fn vendor(&self, vendor: &Pubkey) -> Result<VendorAccount, StoreError> {
        Self::vendor_in(&self.conn, vendor)
    }

    fn user_refund(&self, user: &Pubkey) -> Result<u64, StoreError> {
        let amount: Option<i64> = self
            .conn
            .query_row(
                "SELECT amount FROM user_refunds WHERE user = ?1",
                params![user.to_bytes()],
                |r| r.get(0),
            )
            .optional()?;
        to_u64(amount.unwrap_or(0), "refund")
    }

    fn misbehaviour(&self) -> Result<Vec<MisbehaviourRecord>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT kind, user, vendor, tx_id, tokens FROM misbehaviour ORDER BY id",
        )?;
        let raw: Vec<MisbehaviourRow> = statement
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<Result<_, _>>()?;
        raw.into_iter()
            .map(|(kind, user, vendor, id, tokens)| {
                Ok(MisbehaviourRecord {
                    kind: MisbehaviourKind::from_code(code(kind, "misbehaviour")?).ok_or_else(
                        || StoreError::OutOfRange(format!("misbehaviour kind {kind}")),
                    )?,
                    user: pubkey(user)?,
                    vendor: pubkey(vendor)?,
                    transaction_id: tx_id(id)?,
                    tokens: to_u64(tokens, "tokens")?,
                })
            })
            .collect()
    }

    fn pending_payouts(&self) -> Result<Vec<VendorPayout>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT vendor, accrued - settled - in_flight FROM vendors \
             WHERE accrued - settled - in_flight > 0 ORDER BY vendor",
        )?;
        let raw: Vec<(Vec<u8>, i64)> = statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut out = raw
            .into_iter()
            .map(|(vendor, amount)| {
                Ok(VendorPayout {
                    vendor: pubkey(vendor)?,
                    amount: to_u64(amount, "settleable")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.sort_by_key(|item| item.vendor);
        Ok(out)
    }

    fn begin_settlement(
        &mut self,
        key: &str,
        seq: u64,
        items: &[VendorPayout],
    ) -> Result<SettlementBatch, StoreError> {
        self.open_settlement(key, seq, items)
    }

    fn record_signed_settlement(
        &mut self,
        key: &str,
        signed: &SignedPayout,
    ) -> Result<SettlementBatch, StoreError> {
        self.sign_settlement(key, signed)
    }

    fn complete_settlement(
        &mut self,
        key: &str,
        reference: &str,
    ) -> Result<SettlementBatch, StoreError> {
        self.close_settlement(key, Some(reference))
    }

    fn abort_settlement(&mut self, key: &str) -> Result<SettlementBatch, StoreError> {
        self.close_settlement(key, None)
    }

    fn settlement(&self, key: &str) -> Result<Option<SettlementBatch>, StoreError> {
        Self::settlement_in(&self.conn, key)
    }

    fn open_settlements(&self) -> Result<Vec<SettlementBatch>, StoreError> {
        self.settlements_where("status = 0", "seq", usize::MAX)
    }

    fn recent_settlements(&self, limit: usize) -> Result<Vec<SettlementBatch>, StoreError> {
        self.settlements_where("1 = 1", "seq DESC, key", limit)
    }
}

#[cfg(test)]
mod tests {
    use super::schema::SCHEMA_VERSION;
    use super::*;

    /// A store has exactly one writer: a second open of the same database is refused with who
    /// holds it, and the lock goes with the first store (released on drop, and by the operating
    /// system when a process dies).
    #[test]
    fn second_writer_is_refused_until_the_first_closes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("auditor.sqlite");
        let first = SqliteStore::open(&path).expect("first");
        match SqliteStore::open(&path) {
            Err(StoreError::Locked { path: locked, pid }) => {
                assert_eq!(locked, path);
                assert_eq!(pid, Some(std::process::id()));
            }
            other => panic!("a second writer was let in: {other:?}"),
        }
        let message = SqliteStore::open(&path)
            .expect_err("still locked")
            .to_string();
        assert!(message.contains("exactly one writer"), "{message}");
        drop(first);
        SqliteStore::open(&path).expect("free again once the first store is gone");
    }

    /// A reader sees what the writer committed, while the writer holds its lock and even inside
    /// an open write transaction (WAL: the reader sees the last commit), and cannot write.
    #[test]
    fn reader_sees_commits_without_the_writer_lock_and_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auditor.sqlite");
        let mut writer = SqliteStore::open(&path).unwrap();
        let mut reader = SqliteStore::open_reader(&path).unwrap();
        let vendor = Pubkey::new_from_array([7; 32]);
        assert_eq!(reader.vendor(&vendor).unwrap().accrued, 0);
        let accrue = ChangeSet {
            vendor_credits: vec![VendorPayout {
                vendor,
                amount: 8_000,
            }],
            ..ChangeSet::default()
        };
        writer.apply(&accrue).unwrap();
        assert_eq!(reader.vendor(&vendor).unwrap().accrued, 8_000);
        // An uncommitted write is invisible to the reader, which does not wait for it.
        writer.conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        writer
            .conn
            .execute("UPDATE vendors SET accrued = accrued + 1", [])
            .unwrap();
        assert_eq!(reader.vendor(&vendor).unwrap().accrued, 8_000);
        writer.conn.execute_batch("ROLLBACK").unwrap();
        assert!(reader.apply(&accrue).is_err(), "a reader wrote");
        assert_eq!(reader.vendor(&vendor).unwrap().accrued, 8_000);
    }

    #[test]
    fn reader_of_a_database_never_opened_for_writing_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(SqliteStore::open_reader(dir.path().join("missing.sqlite")).is_err());
    }

    #[test]
    fn file_database_uses_wal_and_full_synchronous_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("a.db")).unwrap();
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        let sync: i64 = store
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(sync, 2, "FULL");
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    }
}

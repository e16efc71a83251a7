//! PostgreSQL [`Store`] (feature `postgres`): the durable state several auditor instances share.
//! Chosen by a `postgres://` URL; numbered migrations from `migrations/postgres/`, applied at
//! open under an advisory lock and tracked in `schema_migrations`.
//!
//! # Transactions and concurrency
//!
//! Every [`Store::apply`], [`Store::apply_all`] and settlement call is ONE transaction at
//! `READ COMMITTED`, and every guarantee of the store contract is made by a write that checks its
//! own condition when it executes, so it holds with any number of writers:
//! - a user write is `UPDATE users … WHERE user_key = $1 AND version = $2`; a concurrent writer of
//!   the same user holds the row lock until it commits, after which the condition is re-checked
//!   against the committed row: zero rows, [`StoreError::Conflict`]. A new user is an `INSERT`
//!   that fails on the primary key (23505, `Conflict`);
//! - a block id claim is the same compare-and-swap on the `meta` counter row; a token seen twice
//!   and a transaction stored twice are primary-key violations; a block is decided only
//!   `WHERE outcome IS NULL`;
//! - vendor balances and refunds change by relative increments (`accrued = accrued + $2`), which
//!   commute: concurrent credits wait for each other's row lock, and none is lost;
//! - settlement reads what it decides on under row locks (`SELECT … FOR UPDATE` on the batch and,
//!   in vendor order, on the vendors), so two settlers cannot reserve the same balance twice nor
//!   complete a batch twice.
//!
//! A stronger isolation level would add nothing the conditions do not already ensure, and
//! `SERIALIZABLE` would abort unrelated steps on predicate-lock false positives. The errors that
//! mean "another writer won, re-run the step" — unique violation 23505, serialization failure
//! 40001, deadlock 40P01 (two groups locking the same users or vendors in opposite orders), lock
//! timeout 55P03 — become [`StoreError::Conflict`]; the failed transaction wrote nothing.
//!
//! Reads run on their own connection from the pool, one statement each where possible (a
//! transaction and its tokens are one join), so each is a consistent snapshot; multi-statement
//! reads (a block with its transactions, lists of settlements) run in one `REPEATABLE READ READ
//! ONLY` transaction. A decision taken on a read is safe because the write that follows checks
//! the version it was read at.
//!
//! The files: connections, TLS and prepared statements in `pool.rs`, the migrations in
//! `schema.rs`, row conversions and the error mapping in `rows.rs`, the writes of a change set
//! in `apply.rs`, the settlement statements in `settlement.rs`.

mod apply;
mod pool;
mod rows;
mod schema;
mod settlement;
#[cfg(feature = "testkit")]
mod testing;

use std::time::Duration;

use postgres::IsolationLevel;

use super::model::*;
use super::{Store, StoreError};
use mupib_protocol::payout::{SignedPayout, VendorPayout};
use mupib_protocol::token::TokenId;
use mupib_protocol::transaction::TransactionId;
use mupib_protocol::Pubkey;
pub use pool::PostgresTls;
use pool::{Connection, Connector, Manager, Sql};
use rows::{
    block_record, pubkey, query_transactions, to_i64, to_u64, transactions_where, tx_id,
    user_state, BLOCK_COLUMNS, USER_COLUMNS,
};
#[cfg(feature = "testkit")]
pub use testing::{TestPostgres, TEST_POSTGRES_ENV};

/// A test hook called with the name of each step inside a write transaction (see
/// [`PostgresStore::set_step_hook`]); the same steps as the SQLite store's.
pub type StepHook = super::sqlite::StepHook;

/// How to connect: pool size, TLS, timeouts and the schema that holds the tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// Connections in the pool (each engine step uses one at a time). Default 8.
    pub pool_size: u32,
    /// Plain or TLS. Default [`PostgresTls::Disabled`]; a URL with `sslmode=require` needs
    /// [`PostgresTls::Required`].
    pub tls: PostgresTls,
    /// The server aborts a statement that runs longer (`statement_timeout`); the step fails
    /// and wrote nothing. Default 30 s.
    pub statement_timeout: Duration,
    /// How long to wait for a connection, to the server or from a full pool. Default 10 s.
    pub connect_timeout: Duration,
    /// The schema of the store's tables (created if missing), a lowercase identifier; `None`
    /// uses the server's default `search_path`. Lets several stores share one database (tests,
    /// several deployments). Default `None`.
    pub schema: Option<String>,
    /// The name the server shows for these connections (`pg_stat_activity`): name each
    /// instance. Default `mupib-auditor`.
    pub application_name: String,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            pool_size: 8,
            tls: PostgresTls::Disabled,
            statement_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            schema: None,
            application_name: "mupib-auditor".to_owned(),
        }
    }
}

/// PostgreSQL-backed auditor state. Clones share the connection pool (not the step hook): one
/// clone per engine lets several engines of one process use the database at once.
pub struct PostgresStore {
    pool: r2d2::Pool<Manager>,
    /// Opens connections outside the pool (the leases').
    direct: Manager,
    schema: String,
    hook: Option<StepHook>,
}

impl Clone for PostgresStore {
    fn clone(&self) -> Self {
        PostgresStore {
            pool: self.pool.clone(),
            direct: self.direct.clone(),
            schema: self.schema.clone(),
            hook: None,
        }
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .field("pool", &self.pool.state())
            .finish_non_exhaustive()
    }
}

/// Leases that let several auditor instances share one store: session advisory locks held on
/// a connection of their own (outside the pool), which the server releases when that
/// connection closes — the process died, or lost the server. Keys are per schema.
///
/// - a block lease ([`Self::try_block`]): the one instance verifying a pending block on the
///   chain; released after the verification ([`Self::release_block`]), or with the holder;
/// - the settlement lease ([`Self::settlement_leader`]): the one instance running settlement,
///   kept until the holder dies or loses its connection (then another takes it; the on-chain
///   payout sequence stays the final guard against a stale leader).
///
/// A failed statement drops the connection (and every lease with it): the next call opens a
/// new one and starts over.
pub struct PostgresLeases {
    manager: Manager,
    schema: String,
    held: std::sync::Mutex<Held>,
}

#[derive(Default)]
struct Held {
    /// Its own connection, not a pooled one: closing it is what releases the leases.
    connection: Option<Connection>,
    leader: bool,
}

impl std::fmt::Debug for PostgresLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresLeases")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PostgresLeases {
    fn key(&self, what: &str) -> String {
        format!("mupib:{}:{what}", self.schema)
    }

    /// Runs `query` (one boolean) on the lease connection; on failure drops the connection and
    /// with it every lease.
    fn ask(&self, held: &mut Held, query: &str, key: &str) -> Result<bool, StoreError> {
        if held.connection.is_none() {
            held.connection = Some(self.manager.connect()?);
            held.leader = false;
        }
        let answer = match held.connection.as_mut() {
            Some(connection) => connection
                .client
                .query_one(query, &[&key])
                .and_then(|row| row.try_get::<_, bool>(0)),
            None => return Ok(false),
        };
        match answer {
            Ok(answer) => Ok(answer),
            Err(error) => {
                // Close it: the server releases whatever it held.
                held.connection = None;
                held.leader = false;
                Err(error.into())
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the lease on block `block_id` if no instance holds it.
    ///
    /// # Errors
    /// [`StoreError::Server`] (no lease is held then).
    pub fn try_block(&self, block_id: u64) -> Result<bool, StoreError> {
        let key = self.key(&format!("block:{block_id}"));
        let mut held = self.lock();
        self.ask(
            &mut held,
            "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
            &key,
        )
    }

    /// Gives the lease on block `block_id` back.
    pub fn release_block(&self, block_id: u64) {
        let key = self.key(&format!("block:{block_id}"));
        let mut held = self.lock();
        if held.connection.is_some() {
            let _ = self.ask(
                &mut held,
                "SELECT pg_advisory_unlock(hashtextextended($1, 0))",
                &key,
            );
        }
    }

    /// Whether this instance holds the settlement lease (taking it if it is free). Checks the
    /// lease's connection each time: a lost connection is a lost lease.
    ///
    /// # Errors
    /// [`StoreError::Server`] (not the leader then).
    pub fn settlement_leader(&self) -> Result<bool, StoreError> {
        let key = self.key("settlement");
        let mut held = self.lock();
        if held.leader {
            // Still connected means still held (session locks live as long as the session).
            return self.ask(&mut held, "SELECT $1::text IS NOT NULL", &key);
        }
        let won = self.ask(
            &mut held,
            "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
            &key,
        )?;
        held.leader = won;
        Ok(won)
    }
}

/// A schema name goes into statements as an identifier: only plain lowercase ones are accepted.
fn check_schema(schema: &str) -> Result<(), StoreError> {
    let mut chars = schema.chars();
    let plain = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && schema.len() <= 63;
    if plain {
        Ok(())
    } else {
        Err(StoreError::Server(format!(
            "schema name {schema:?} is not a plain identifier: use lowercase letters, digits and \
             underscores (at most 63)"
        )))
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`, or
    /// the key-value form), runs pending migrations and opens a pool of connections.
    ///
    /// # Errors
    /// [`StoreError::Server`] if the URL is invalid or the server cannot be reached or refuses
    /// the credentials; [`StoreError::SchemaTooNew`] if the database was written by a newer
    /// version.
    pub fn open(url: &str, options: &PostgresOptions) -> Result<Self, StoreError> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Server(format!("invalid PostgreSQL URL: {e}")))?;
        match (&options.tls, config.get_ssl_mode()) {
            (PostgresTls::Disabled, postgres::config::SslMode::Require) => {
                return Err(StoreError::Server(
                    "the URL says sslmode=require: open with PostgresTls::Required".into(),
                ))
            }
            (PostgresTls::Disabled, _) => {
                config.ssl_mode(postgres::config::SslMode::Disable);
            }
            (PostgresTls::Required { .. }, _) => {
                config.ssl_mode(postgres::config::SslMode::Require);
            }
        }
        let mut startup = format!(
            "-c statement_timeout={}",
            options.statement_timeout.as_millis()
        );
        if let Some(schema) = &options.schema {
            check_schema(schema)?;
            startup.push_str(&format!(" -c search_path={schema}"));
        }
        config
            .options(&startup)
            .connect_timeout(options.connect_timeout)
            .application_name(&options.application_name);
        let manager = Manager {
            config,
            connector: Connector::new(&options.tls)?,
        };
        // One direct connection first: a wrong URL fails at once with the server's reason, and
        // the migrations run before any pooled connection prepares a statement.
        let mut first = manager.connect()?;
        let schema: String = match &options.schema {
            Some(schema) => schema.clone(),
            None => first
                .client
                .query_one("SELECT current_schema()::text", &[])?
                .try_get::<_, Option<String>>(0)?
                .unwrap_or_else(|| "public".to_owned()),
        };
        schema::migrate(&mut first.client, &schema)?;
        drop(first);
        let pool = r2d2::Pool::builder()
            .max_size(options.pool_size.max(1))
            .min_idle(Some(0))
            // A broken connection is noticed when a statement fails on it (the step fails and
            // wrote nothing) and dropped when returned; checking every checkout would cost a
            // round trip per step.
            .test_on_check_out(false)
            .connection_timeout(options.connect_timeout)
            .build_unchecked(manager.clone());
        Ok(PostgresStore {
            pool,
            direct: manager,
            schema,
            hook: None,
        })
    }

    /// The cross-instance leases of this store (see [`PostgresLeases`]).
    pub fn leases(&self) -> PostgresLeases {
        PostgresLeases {
            manager: self.direct.clone(),
            schema: self.schema.clone(),
            held: std::sync::Mutex::new(Held::default()),
        }
    }

    /// [`Self::open`] with default options.
    ///
    /// # Errors
    /// As [`Self::open`].
    pub fn open_url(url: &str) -> Result<Self, StoreError> {
        Self::open(url, &PostgresOptions::default())
    }

    /// The schema that holds the store's tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The schema version of the database.
    ///
    /// # Errors
    /// [`StoreError::Server`].
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        schema::version(&mut self.connection()?.client)
    }

    /// Installs a hook called with the name of each step inside write transactions (`"begin"`,
    /// `"user"`, `"block"`, `"transactions"`, `"updates"`, `"tokens"`, `"decided"`,
    /// `"payouts"`, `"commit"`, `"group:next"`, `"group:commit"` and `"settlement:*"`, as the
    /// SQLite store). Used by the crash tests to abort the process at a chosen step inside an
    /// open server transaction; production code leaves it unset.
    #[doc(hidden)]
    pub fn set_step_hook(&mut self, hook: Option<StepHook>) {
        self.hook = hook;
    }

    /// Every row of every table, sorted, as text: two equal dumps mean equal states (crash
    /// tests). Misbehaviour records are listed in their order without their surrogate ids
    /// (identity values are not rolled back), migrations by version only.
    ///
    /// # Errors
    /// [`StoreError::Server`].
    #[doc(hidden)]
    pub fn dump(&self) -> Result<String, StoreError> {
        let tables = [
            ("users", "SELECT t::text FROM users t", true),
            ("transactions", "SELECT t::text FROM transactions t", true),
            (
                "transaction_tokens",
                "SELECT t::text FROM transaction_tokens t",
                true,
            ),
            ("seen_tokens", "SELECT t::text FROM seen_tokens t", true),
            ("blocks", "SELECT t::text FROM blocks t", true),
            ("vendors", "SELECT t::text FROM vendors t", true),
            ("user_refunds", "SELECT t::text FROM user_refunds t", true),
            (
                "misbehaviour",
                "SELECT (kind, user_key, vendor, tx_id, tokens)::text FROM misbehaviour ORDER BY id",
                false,
            ),
            ("settlements", "SELECT t::text FROM settlements t", true),
            (
                "settlement_items",
                "SELECT t::text FROM settlement_items t",
                true,
            ),
            ("meta", "SELECT t::text FROM meta t", true),
            (
                "schema_migrations",
                "SELECT version::text FROM schema_migrations",
                true,
            ),
        ];
        let mut conn = self.connection()?;
        let mut tx = conn
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let mut out = String::new();
        for (table, query, sort) in tables {
            let mut rows = tx
                .query(query, &[])?
                .iter()
                .map(|row| row.try_get::<_, String>(0))
                .collect::<Result<Vec<_>, _>>()?;
            if sort {
                rows.sort();
            }
            out.push_str(&format!("[{table}]\n"));
            for row in rows {
                out.push_str(&row);
                out.push('\n');
            }
        }
        tx.commit()?;
        Ok(out)
    }

    fn connection(&self) -> Result<r2d2::PooledConnection<Manager>, StoreError> {
        Ok(self.pool.get()?)
    }

    fn step(hook: &mut Option<StepHook>, name: &'static str) {
        if let Some(hook) = hook.as_mut() {
            hook(name);
        }
    }

    /// Runs `body` in one read-write transaction with the step hook, and commits (the body
    /// calls the `"commit"` step, as the SQLite store's bodies do).
    fn write<T>(
        &mut self,
        body: impl FnOnce(
            &mut Sql<'_, postgres::Transaction<'_>>,
            &mut Option<StepHook>,
        ) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut hook = self.hook.take();
        let result = (|| {
            let mut conn = self.connection()?;
            let Connection { client, statements } = &mut *conn;
            let mut tx = client.transaction()?;
            let value = body(&mut Sql::new(&mut tx, statements), &mut hook)?;
            tx.commit()?;
            Ok(value)
        })();
        self.hook = hook;
        result
    }

    /// Runs `body` in one `REPEATABLE READ READ ONLY` transaction: a consistent snapshot.
    fn snapshot<T>(
        &self,
        body: impl FnOnce(&mut Sql<'_, postgres::Transaction<'_>>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.connection()?;
        let Connection { client, statements } = &mut *conn;
        let mut tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let value = body(&mut Sql::new(&mut tx, statements))?;
        tx.commit()?;
        Ok(value)
    }

    /// Runs `body` on a pooled connection outside a transaction (single-statement reads).
    fn read<T>(
        &self,
        body: impl FnOnce(&mut Sql<'_, postgres::Client>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.connection()?;
        let Connection { client, statements } = &mut *conn;
        body(&mut Sql::new(client, statements))
    }
}

impl Store for PostgresStore {
    fn user(&self, user: &Pubkey) -> Result<Option<UserState>, StoreError> {
        let key = user.to_bytes();
        self.read(|sql| {
            sql.query_opt(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE user_key = $1"),
                &[&&key[..]],
            )?
            .map(|row| user_state(user, &row))
            .transpose()
        })
    }

    fn token_seen(&self, token: &TokenId) -> Result<bool, StoreError> {
        let bank = token.bank.to_bytes();
        let batch_id = to_i64(token.batch_id, "batch id")?;
        let serial = i64::from(token.serial);
        self.read(|sql| {
            Ok(sql
                .query_opt(
                    "SELECT 1 FROM seen_tokens WHERE bank = $1 AND batch_id = $2 AND serial = $3",
                    &[&&bank[..], &batch_id, &serial],
                )?
                .is_some())
        })
    }

    fn transaction_by_id(
        &self,
        id: &TransactionId,
    ) -> Result<Option<TransactionRecord>, StoreError> {
        let id = id.0;
        self.read(|sql| {
            Ok(query_transactions(
                sql,
                &transactions_where(
                    "(t.user_key, t.seq) = (SELECT user_key, seq FROM transactions \
                     WHERE tx_id = $1 ORDER BY seq, user_key LIMIT 1)",
                ),
                &[&&id[..]],
            )?
            .into_iter()
            .next())
        })
    }

    fn queue(&self, user: &Pubkey) -> Result<Vec<TransactionRecord>, StoreError> {
        let key = user.to_bytes();
        self.read(|sql| {
            query_transactions(
                sql,
                &transactions_where(
                    "t.user_key = $1 AND t.block_id IS NULL AND t.status IN (0, 2)",
                ),
                &[&&key[..]],
            )
        })
    }

    fn block(
        &self,
        block_id: u64,
    ) -> Result<Option<(BlockRecord, Vec<TransactionRecord>)>, StoreError> {
        let id = to_i64(block_id, "block id")?;
        self.snapshot(|sql| {
            let Some(row) = sql.query_opt(
                &format!("SELECT {BLOCK_COLUMNS} FROM blocks WHERE block_id = $1"),
                &[&id],
            )?
            else {
                return Ok(None);
            };
            let record = block_record(&row)?;
            let members = query_transactions(sql, &transactions_where("t.block_id = $1"), &[&id])?;
            Ok(Some((record, members)))
        })
    }

    fn pending_blocks(&self) -> Result<Vec<BlockRecord>, StoreError> {
        self.read(|sql| {
            sql.query(
                &format!(
                    "SELECT {BLOCK_COLUMNS} FROM blocks WHERE outcome IS NULL ORDER BY block_id"
                ),
                &[],
            )?
            .iter()
            .map(block_record)
            .collect()
        })
    }

    fn next_block_id(&self) -> Result<u64, StoreError> {
        self.read(|sql| {
            let value: i64 = sql
                .query_one("SELECT value FROM meta WHERE key = 'next_block_id'", &[])?
                .try_get(0)?;
            to_u64(value, "next block id")
        })
    }

    fn apply(&mut self, change: &ChangeSet) -> Result<(), StoreError> {
        self.write(|sql, hook| Self::apply_in(sql, change, hook))
    }

    /// One transaction around every change set of the group: one commit (one WAL flush). Each
    /// change set runs the same checked statements as [`Store::apply`] and sees the earlier
    /// ones' writes; any failure rolls the whole group back. Test-hook steps: each change set's
    /// steps, then `"group:next"` between change sets and `"group:commit"` before the commit.
    fn apply_all(&mut self, changes: &[ChangeSet]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.write(|sql, hook| {
            for (index, change) in changes.iter().enumerate() {
                if index > 0 {
                    Self::step(hook, "group:next");
                }
                Self::apply_in(sql, change, hook)?;
            }
            Self::step(hook, "group:commit");
            Ok(())
        })
    }

    fn vendor(&self, vendor: &Pubkey) -> Result<VendorAccount, StoreError> {
        self.read(|sql| Self::vendor_in(sql, vendor, false))
    }

    fn user_refund(&self, user: &Pubkey) -> Result<u64, StoreError> {
        let key = user.to_bytes();
        self.read(|sql| {
            let amount = match sql.query_opt(
                "SELECT amount FROM user_refunds WHERE user_key = $1",
                &[&&key[..]],
            )? {
                Some(row) => row.try_get(0)?,
                None => 0,
            };
            to_u64(amount, "refund")
        })
    }

    fn misbehaviour(&self) -> Result<Vec<MisbehaviourRecord>, StoreError> {
        self.read(|sql| {
            sql.query(
                "SELECT kind, user_key, vendor, tx_id, tokens FROM misbehaviour ORDER BY id",
                &[],
            )?
            .iter()
            .map(|row| {
                let kind: i16 = row.try_get(0)?;
                Ok(MisbehaviourRecord {
                    kind: u8::try_from(kind)
                        .ok()
                        .and_then(MisbehaviourKind::from_code)
                        .ok_or_else(|| {
                            StoreError::OutOfRange(format!("misbehaviour kind {kind}"))
                        })?,
                    user: pubkey(row.try_get(1)?)?,
                    vendor: pubkey(row.try_get(2)?)?,
                    transaction_id: tx_id(row.try_get(3)?)?,
                    tokens: to_u64(row.try_get(4)?, "tokens")?,
                })
            })
            .collect()
        })
    }

    fn pending_payouts(&self) -> Result<Vec<VendorPayout>, StoreError> {
        self.read(|sql| {
            sql.query(
                "SELECT vendor, accrued - settled - in_flight FROM vendors \
                 WHERE accrued - settled - in_flight > 0 ORDER BY vendor",
                &[],
            )?
            .iter()
            .map(|row| {
                Ok(VendorPayout {
                    vendor: pubkey(row.try_get(0)?)?,
                    amount: to_u64(row.try_get(1)?, "settleable")?,
                })
            })
            .collect()
        })
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
        self.snapshot(|sql| Self::settlement_in(sql, key, false))
    }

    fn open_settlements(&self) -> Result<Vec<SettlementBatch>, StoreError> {
        self.settlements_where("status = 0", "seq", usize::MAX)
    }

    fn recent_settlements(&self, limit: usize) -> Result<Vec<SettlementBatch>, StoreError> {
        self.settlements_where("TRUE", "seq DESC, key", limit)
    }
}

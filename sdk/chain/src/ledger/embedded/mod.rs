//! The embedded ledger: the real Solana runtime (an in-process bank from `solana-program-test`)
//! executing the µPIB program natively (`mupib::native::entry`) next to the real SPL Token
//! program. It is not a validator: there is no consensus, no network and no compute metering,
//! but transactions, signatures, fees, rent, PDAs and CPIs run through the same runtime code.
//!
//! Persistence (when opened on a data directory):
//! - `snapshot.bin`: every account the ledger's transactions ever wrote, plus the clock;
//!   replaced atomically (write a temporary file, fsync, rename, fsync the directory).
//! - `journal.bin`: after every executed transaction, one checksummed record with the
//!   post-state of the transaction's writable accounts (`None` = deleted) and the clock,
//!   appended and fsynced before the call returns. A torn record at the tail (a crash in the
//!   middle of a write) is detected by its length and checksum and dropped at open.
//! - `faucet.json`: the faucet keypair (Solana keypair file format), funded at genesis the first
//!   time and persisted like any other account afterwards.
//! - `LOCK`: the process id of the process that has the directory open.
//!
//! At open the snapshot is loaded, the journal replayed on top of it (records are absolute
//! post-states, so replaying one twice is harmless), and both are compacted into a new snapshot
//! when the journal has grown past [`OpenOptions::compact_threshold_bytes`].
//!
//! The clock is monotone across restarts: the ledger's unix time is the larger of the wall clock
//! and the last persisted time, and its slot never decreases.
//!
//! Blockhashes: the bank registers a new recent blockhash every simulated slot (6.4 ms of the
//! runtime driving it; `solana-program-test`'s PoH stand-in, which runs only while a call is
//! being served) and accepts a transaction whose blockhash is at most `MAX_PROCESSING_AGE` (150)
//! hashes old. [`Ledger::latest_blockhash`] waits for a new hash at every call, so a blockhash
//! expires after 150 further calls or about a second of activity; [`EmbeddedLedger::advance_blockhashes`]
//! does that on purpose (tests). The bank starts afresh at every open, and its blockhashes
//! continue from the directory's history (`blockhashes.rs`), so none handed out before a restart
//! is valid after it.
//!
//! Never twice: a transaction is executed only if its signatures verify, and never a second
//! time — within a run the bank's status cache refuses it, across restarts its blockhash is no
//! longer valid; in both cases, while it is among the last [`OpenOptions::history_transactions`]
//! transactions, the persisted history (`history.rs`) answers a resend with its first outcome
//! without handing it to the bank.
//!
//! Logs are rewritten into the validator's format (`logs.rs`).
//!
//! The files of the data directory are read and written in `embedded/persist.rs`.

// `solana-program-test` 3.x marks its whole API deprecated ("Agave Unstable API"): expected, see
// shared/NATIVE_TESTING.md. This module is the one place that uses it.
#![allow(deprecated)]

mod blockhashes;
mod history;
mod logs;
mod persist;

pub use history::ExecutedTransaction;

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use solana_program_test::{processor, ProgramTest, ProgramTestContext};
use solana_sdk::account::Account;
use solana_sdk::clock::Clock;
use solana_sdk::epoch_schedule::EpochSchedule;
use solana_sdk::hash::Hash;
use solana_sdk::message::Message;
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::{Keypair, Signature, Signer};
use solana_sdk::transaction::{Transaction, TransactionError};
use tokio::sync::broadcast;

use super::{check_transaction_size, Ledger, LedgerError, Receipt};
use history::{History, StoredTransaction};
use persist::{
    compact_from_disk, io_error, load_or_create_faucet, load_state, ClockState, DirLock, Journal,
    JournalRecord, Snapshot, StoredAccount,
};

/// Lamports the faucet receives at genesis (one billion SOL).
pub const FAUCET_GENESIS_LAMPORTS: u64 = 1_000_000_000 * 1_000_000_000;

/// Default length in milliseconds of one slot of the ledger clock (as on mainnet).
const SLOT_MILLIS: i64 = 400;
/// How many times [`Ledger::latest_blockhash`] polls for a fresh hash before giving up.
const BLOCKHASH_POLLS: u32 = 2_000;

/// Updates a subscriber of [`EmbeddedLedger::subscribe`] may lag behind before it misses some.
const UPDATE_CHANNEL: usize = 1024;

/// Options of [`EmbeddedLedger::open_with`].
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Compact the journal into a new snapshot at open once it is larger than this.
    pub compact_threshold_bytes: u64,
    /// Lamports the faucet gets when the data directory is created.
    pub faucet_genesis_lamports: u64,
    /// Executed transactions whose status, logs and bytes are kept (and persisted).
    pub history_transactions: usize,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            compact_threshold_bytes: 4 * 1024 * 1024,
            faucet_genesis_lamports: FAUCET_GENESIS_LAMPORTS,
            history_transactions: 5_000,
        }
    }
}

/// What one executed transaction changed, as [`EmbeddedLedger::subscribe`] reports it.
#[derive(Debug, Clone)]
pub struct LedgerUpdate {
    /// The transaction, its outcome and logs.
    pub transaction: Arc<ExecutedTransaction>,
    /// The post-state of every writable account of the transaction (`None`: it was deleted).
    pub accounts: Vec<(Pubkey, Option<Account>)>,
}

/// How [`EmbeddedLedger::simulate`] runs a transaction.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimulateOptions {
    /// Refuse the transaction if a signature does not verify.
    pub sig_verify: bool,
    /// Run it with the latest blockhash instead of its own (signatures are then not checked).
    pub replace_recent_blockhash: bool,
}

/// The outcome of a simulated transaction (nothing was committed).
#[derive(Debug, Clone)]
pub struct Simulation {
    /// `None` when it would succeed.
    pub err: Option<TransactionError>,
    /// Its logs, in the validator's format.
    pub logs: Vec<String>,
    /// Data returned by the last program that set return data.
    pub return_data: Option<(Pubkey, Vec<u8>)>,
    /// The blockhash it ran with, when [`SimulateOptions::replace_recent_blockhash`] was set.
    pub replacement_blockhash: Option<Hash>,
}

/// The program running natively in an in-process Solana bank; see the module documentation.
pub struct EmbeddedLedger {
    inner: Mutex<Inner>,
    data_dir: Option<PathBuf>,
    genesis_hash: Hash,
    updates: broadcast::Sender<LedgerUpdate>,
}

struct Inner {
    // Field order is drop order: the bank context goes before the runtime that drives it.
    context: ProgramTestContext,
    faucet: Keypair,
    journal: Option<Journal>,
    clock: ClockState,
    last_blockhash: Hash,
    /// Highest `Hash::new_unique` counter handed out or used (see `blockhashes.rs`).
    blockhash_watermark: u64,
    history: History,
    /// Accounts by owner (every account a transaction of this directory wrote), and the owner
    /// of each: what `program_accounts` answers from.
    owners: HashMap<Pubkey, BTreeSet<Pubkey>>,
    owner_of: HashMap<Pubkey, Pubkey>,
    updates: broadcast::Sender<LedgerUpdate>,
    history_limit: usize,
    poisoned: Option<String>,
    runtime: tokio::runtime::Runtime,
    _lock: Option<DirLock>,
}

/// The programs the ledger runs natively (their logs are rewritten, see `logs.rs`).
const NATIVE_PROGRAMS: [Pubkey; 1] = [mupib::ID];

fn wall_clock_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(0)
}

/// Owners whose accounts belong to the runtime itself (sysvars, loaders) and are never
/// persisted even if a client marks them writable.
fn is_runtime_owned(account: &Account) -> bool {
    account.executable
        || account.owner == solana_sdk::sysvar::ID
        || account.owner == solana_sdk::native_loader::ID
        || account.owner == solana_sdk::bpf_loader::ID
        || account.owner == solana_sdk::bpf_loader_deprecated::ID
        || account.owner == anchor_lang::solana_program::bpf_loader_upgradeable::ID
}

impl EmbeddedLedger {
    /// A ledger kept in memory only (tests).
    pub fn ephemeral() -> Result<Self, LedgerError> {
        Self::ephemeral_with(&OpenOptions::default())
    }

    /// A ledger kept in memory only, with explicit options (tests).
    pub fn ephemeral_with(options: &OpenOptions) -> Result<Self, LedgerError> {
        Self::start(None, Snapshot::default(), None, Keypair::new(), options)
    }

    /// Opens (or creates) the ledger persisted in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, LedgerError> {
        Self::open_with(dir, &OpenOptions::default())
    }

    /// Opens (or creates) the ledger persisted in `dir` with explicit options.
    pub fn open_with(dir: impl AsRef<Path>, options: &OpenOptions) -> Result<Self, LedgerError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let lock = DirLock::acquire(&dir)?;
        let faucet = load_or_create_faucet(&dir)?;
        let (snapshot, journal_file) = load_state(&dir, options)?;
        let journal = Journal {
            dir: dir.clone(),
            file: journal_file,
        };
        Self::start(Some(dir), snapshot, Some((journal, lock)), faucet, options)
    }

    fn start(
        data_dir: Option<PathBuf>,
        snapshot: Snapshot,
        persistence: Option<(Journal, DirLock)>,
        faucet: Keypair,
        options: &OpenOptions,
    ) -> Result<Self, LedgerError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| LedgerError::Backend(format!("cannot start the ledger runtime: {e}")))?;
        // Before the bank registers its first blockhash: none of an earlier run may come back.
        blockhashes::skip_past(snapshot.blockhash_watermark)?;
        let mut program_test = ProgramTest::default();
        // `ProgramTest::default` turns on the runtime's debug log (every instruction, on
        // stderr); keep warnings only unless the user asked for more with RUST_LOG.
        if std::env::var_os("RUST_LOG").is_none() {
            log::set_max_level(log::LevelFilter::Warn);
        }
        program_test.prefer_bpf(false);
        program_test.add_program("mupib", mupib::ID, processor!(mupib::native::entry));
        program_test.add_account(
            faucet.pubkey(),
            Account::new(
                options.faucet_genesis_lamports,
                0,
                &solana_system_interface::program::ID,
            ),
        );
        for (key, stored) in &snapshot.accounts {
            program_test.add_account(Pubkey::new_from_array(*key), Account::from(stored));
        }
        let context = runtime.block_on(program_test.start_with_context());
        let last_blockhash = context.last_blockhash;
        let (journal, lock) = match persistence {
            Some((journal, lock)) => (Some(journal), Some(lock)),
            None => (None, None),
        };
        let mut history = History::new(options.history_transactions);
        for stored in &snapshot.history {
            let executed = stored
                .to_executed()
                .map_err(|reason| LedgerError::Corrupt {
                    path: data_dir.clone().unwrap_or_default(),
                    reason,
                })?;
            history.insert(Arc::new(executed));
        }
        let (updates, _) = broadcast::channel(UPDATE_CHANNEL);
        let genesis_hash = genesis_hash_of(&faucet.pubkey());
        let mut inner = Inner {
            context,
            faucet,
            journal,
            clock: snapshot.clock,
            last_blockhash,
            blockhash_watermark: snapshot.blockhash_watermark,
            history,
            owners: HashMap::new(),
            owner_of: HashMap::new(),
            updates: updates.clone(),
            history_limit: options.history_transactions,
            poisoned: None,
            runtime,
            _lock: lock,
        };
        let faucet_key = inner.faucet.pubkey();
        inner.index_owner(faucet_key, Some(solana_system_interface::program::ID));
        for (key, stored) in &snapshot.accounts {
            let account = Account::from(stored);
            inner.index_owner(Pubkey::new_from_array(*key), Some(account.owner));
        }
        // The slot moves on at every open, so it never repeats across restarts.
        let bank_clock = inner.bank_clock()?;
        inner.clock.slot = inner
            .clock
            .slot
            .max(bank_clock.slot)
            .checked_add(1)
            .ok_or(LedgerError::Overflow("slot"))?;
        inner.clock.unix_timestamp = inner.clock.unix_timestamp.max(bank_clock.unix_timestamp);
        inner.refresh_clock(wall_clock_now())?;
        inner.install_clock()?;
        Ok(EmbeddedLedger {
            inner: Mutex::new(inner),
            data_dir,
            genesis_hash,
            updates,
        })
    }

    /// The ledger's genesis hash: fixed for a data directory (derived from its faucet, created
    /// with it), new for every ephemeral ledger. What `getGenesisHash` answers.
    pub fn genesis_hash(&self) -> Hash {
        self.genesis_hash
    }

    /// The identity `getIdentity` reports for this ledger (derived like the genesis hash; it
    /// signs nothing).
    pub fn identity(&self) -> Pubkey {
        let digest = Sha256::new()
            .chain_update(b"mupib:ledger:identity:v1")
            .chain_update(self.genesis_hash.as_ref())
            .finalize();
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&digest);
        Pubkey::new_from_array(bytes)
    }

    /// Every transaction executed from now on, with the accounts it changed, for as long as the
    /// receiver is kept (a receiver more than 1024 updates behind misses the oldest).
    pub fn subscribe(&self) -> broadcast::Receiver<LedgerUpdate> {
        self.updates.subscribe()
    }

    /// An executed transaction among the remembered ones (see
    /// [`OpenOptions::history_transactions`]).
    pub fn transaction(
        &self,
        signature: &Signature,
    ) -> Result<Option<Arc<ExecutedTransaction>>, LedgerError> {
        Ok(self.lock()?.history.get(signature))
    }

    /// Remembered executed transactions, newest first, that `keep` accepts, at most `limit`.
    pub fn transactions(
        &self,
        mut keep: impl FnMut(&ExecutedTransaction) -> bool,
        limit: usize,
    ) -> Result<Vec<Arc<ExecutedTransaction>>, LedgerError> {
        let inner = self.lock()?;
        Ok(inner
            .history
            .newest_first()
            .filter(|t| keep(t))
            .take(limit)
            .cloned()
            .collect())
    }

    /// The slot of the oldest remembered transaction (the first block history can answer for).
    pub fn first_remembered_slot(&self) -> Result<Option<u64>, LedgerError> {
        Ok(self.lock()?.history.oldest().map(|t| t.slot))
    }

    /// Every account owned by `owner` among the accounts the ledger's transactions wrote (and
    /// the faucet), read from the bank now. Accounts the runtime creates itself (sysvars,
    /// programs loaded at genesis) are not indexed.
    pub fn program_accounts(&self, owner: &Pubkey) -> Result<Vec<(Pubkey, Account)>, LedgerError> {
        let inner = self.lock()?;
        inner.check_usable()?;
        let keys: Vec<Pubkey> = inner
            .owners
            .get(owner)
            .map(|keys| keys.iter().copied().collect())
            .unwrap_or_default();
        let mut accounts = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(account) = inner.get_account(&key)? {
                if account.owner == *owner {
                    accounts.push((key, account));
                }
            }
        }
        Ok(accounts)
    }

    /// Runs `transaction` against the current state without committing anything (no fee, no
    /// status). Compute units are not reported: the native program is not metered.
    pub fn simulate(
        &self,
        transaction: &Transaction,
        options: SimulateOptions,
    ) -> Result<Simulation, LedgerError> {
        self.lock()?.simulate(transaction, options)
    }

    /// The epoch schedule of the bank.
    pub fn epoch_schedule(&self) -> Result<EpochSchedule, LedgerError> {
        let inner = self.lock()?;
        inner
            .runtime
            .block_on(inner.context.banks_client.get_sysvar::<EpochSchedule>())
            .map_err(|e| LedgerError::Backend(format!("cannot read the EpochSchedule sysvar: {e}")))
    }

    /// The fee the bank charges for `message` (`None` when its blockhash is unknown).
    pub fn fee_for_message(&self, message: &Message) -> Result<Option<u64>, LedgerError> {
        let inner = self.lock()?;
        inner
            .runtime
            .block_on(
                inner
                    .context
                    .banks_client
                    .get_fee_for_message(message.clone()),
            )
            .map_err(|e| LedgerError::Backend(format!("cannot compute the fee: {e}")))
    }

    /// The data directory, `None` for an ephemeral ledger.
    pub fn data_dir(&self) -> Option<&Path> {
        self.data_dir.as_deref()
    }

    /// The faucet's address (it pays airdrops).
    pub fn faucet(&self) -> Result<Pubkey, LedgerError> {
        Ok(self.lock()?.faucet.pubkey())
    }

    /// Moves the ledger clock forward to `unix_timestamp` (tests of expiry). Fails with
    /// [`LedgerError::ClockBackwards`] if that is in the past of the ledger.
    pub fn set_unix_timestamp(&self, unix_timestamp: i64) -> Result<(), LedgerError> {
        let mut inner = self.lock()?;
        inner.check_usable()?;
        let current = inner.clock.unix_timestamp;
        if unix_timestamp < current {
            return Err(LedgerError::ClockBackwards {
                current,
                requested: unix_timestamp,
            });
        }
        inner.refresh_clock(unix_timestamp)?;
        inner.install_clock()?;
        inner.journal_clock()
    }

    /// Moves the ledger clock forward by `seconds` (and the slot by as many 400 ms slots).
    pub fn advance_clock(&self, seconds: i64) -> Result<(), LedgerError> {
        let target = {
            let inner = self.lock()?;
            if seconds < 0 {
                return Err(LedgerError::ClockBackwards {
                    current: inner.clock.unix_timestamp,
                    requested: inner.clock.unix_timestamp.saturating_add(seconds),
                });
            }
            inner
                .clock
                .unix_timestamp
                .checked_add(seconds)
                .ok_or(LedgerError::Overflow("clock"))?
        };
        self.set_unix_timestamp(target)
    }

    /// Lets the bank register `count` new blockhashes (one per simulated slot). With
    /// `count > 150` (`MAX_PROCESSING_AGE`) every blockhash handed out before has expired: a
    /// transaction signed with one can no longer execute (tests of expiry).
    pub fn advance_blockhashes(&self, count: u32) -> Result<(), LedgerError> {
        let mut inner = self.lock()?;
        for _ in 0..count {
            inner.latest_blockhash()?;
        }
        Ok(())
    }

    /// Writes a snapshot of the current state and empties the journal.
    pub fn compact(&self) -> Result<(), LedgerError> {
        let inner = self.lock()?;
        inner.check_usable()?;
        let (Some(dir), Some(journal)) = (self.data_dir.as_deref(), inner.journal.as_ref()) else {
            return Ok(());
        };
        compact_from_disk(dir, &journal.file, inner.history_limit)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, LedgerError> {
        self.inner.lock().map_err(|_| {
            LedgerError::Poisoned("a thread panicked while using the ledger".to_string())
        })
    }
}

impl Inner {
    fn check_usable(&self) -> Result<(), LedgerError> {
        match &self.poisoned {
            Some(reason) => Err(LedgerError::Poisoned(reason.clone())),
            None => Ok(()),
        }
    }

    fn bank_clock(&self) -> Result<Clock, LedgerError> {
        self.runtime
            .block_on(self.context.banks_client.get_sysvar::<Clock>())
            .map_err(|e| LedgerError::Backend(format!("cannot read the Clock sysvar: {e}")))
    }

    /// Moves the ledger clock forward to `unix_timestamp` if it is later; the slot advances by
    /// the elapsed 400 ms slots (at least one).
    fn refresh_clock(&mut self, unix_timestamp: i64) -> Result<bool, LedgerError> {
        if unix_timestamp <= self.clock.unix_timestamp {
            return Ok(false);
        }
        let elapsed = unix_timestamp
            .checked_sub(self.clock.unix_timestamp)
            .and_then(|s| s.checked_mul(1000))
            .ok_or(LedgerError::Overflow("clock"))?;
        let slots = u64::try_from((elapsed / SLOT_MILLIS).max(1))
            .map_err(|_| LedgerError::Overflow("slot"))?;
        self.clock.slot = self
            .clock
            .slot
            .checked_add(slots)
            .ok_or(LedgerError::Overflow("slot"))?;
        self.clock.unix_timestamp = unix_timestamp;
        Ok(true)
    }

    fn install_clock(&mut self) -> Result<(), LedgerError> {
        let mut clock = self.bank_clock()?;
        clock.slot = self.clock.slot;
        clock.unix_timestamp = self.clock.unix_timestamp;
        self.context.set_sysvar(&clock);
        Ok(())
    }

    fn journal_clock(&mut self) -> Result<(), LedgerError> {
        let record = JournalRecord {
            clock: self.clock,
            accounts: Vec::new(),
            blockhash_watermark: self.blockhash_watermark,
            transaction: None,
        };
        self.append(&record)
    }

    fn append(&mut self, record: &JournalRecord) -> Result<(), LedgerError> {
        let Some(journal) = self.journal.as_mut() else {
            return Ok(());
        };
        if let Err(e) = journal.append(record) {
            let reason = e.to_string();
            self.poisoned = Some(reason);
            return Err(e);
        }
        Ok(())
    }

    fn get_account(&self, address: &Pubkey) -> Result<Option<Account>, LedgerError> {
        self.runtime
            .block_on(self.context.banks_client.get_account(*address))
            .map_err(|e| LedgerError::Backend(format!("cannot read account {address}: {e}")))
    }

    /// Lamports of `keys`, in order (0 for a missing account).
    fn balances(&self, keys: &[Pubkey]) -> Result<Vec<u64>, LedgerError> {
        keys.iter()
            .map(|key| Ok(self.get_account(key)?.map(|a| a.lamports).unwrap_or(0)))
            .collect()
    }

    fn index_owner(&mut self, key: Pubkey, owner: Option<Pubkey>) {
        if let Some(previous) = self.owner_of.remove(&key) {
            if let Some(keys) = self.owners.get_mut(&previous) {
                keys.remove(&key);
                if keys.is_empty() {
                    self.owners.remove(&previous);
                }
            }
        }
        if let Some(owner) = owner {
            self.owners.entry(owner).or_default().insert(key);
            self.owner_of.insert(key, owner);
        }
    }

    fn observe_blockhash(&mut self, hash: &Hash) {
        if let Some(counter) = blockhashes::counter(hash) {
            self.blockhash_watermark = self.blockhash_watermark.max(counter);
        }
    }

    /// Records an executed transaction: reads the post-state of its accounts, journals the
    /// writable ones with the transaction (one record, fsynced), then indexes, remembers and
    /// announces it.
    fn record_execution(
        &mut self,
        transaction: &Transaction,
        err: Option<TransactionError>,
        logs: Vec<String>,
        return_data: Option<(Pubkey, Vec<u8>)>,
        pre_balances: Vec<u64>,
    ) -> Result<Arc<ExecutedTransaction>, LedgerError> {
        let message = &transaction.message;
        let mut post_balances = Vec::with_capacity(message.account_keys.len());
        let mut changed = Vec::new();
        for (index, key) in message.account_keys.iter().enumerate() {
            let account = self.get_account(key)?;
            post_balances.push(account.as_ref().map(|a| a.lamports).unwrap_or(0));
            if message.is_maybe_writable(index, None) {
                changed.push((*key, account));
            }
        }
        let fee = self
            .runtime
            .block_on(
                self.context
                    .banks_client
                    .get_fee_for_message(message.clone()),
            )
            .ok()
            .flatten()
            .unwrap_or_else(|| {
                self.context
                    .genesis_config()
                    .fee_rate_governor
                    .lamports_per_signature
                    .saturating_mul(u64::from(message.header.num_required_signatures))
            });
        let blockhash = self.last_blockhash;
        let executed = Arc::new(ExecutedTransaction {
            signature: transaction.signatures.first().copied().unwrap_or_default(),
            transaction: transaction.clone(),
            slot: self.clock.slot,
            block_time: self.clock.unix_timestamp,
            blockhash,
            fee,
            err,
            logs,
            return_data,
            pre_balances,
            post_balances,
        });
        self.observe_blockhash(&message.recent_blockhash);
        if self.journal.is_some() {
            let accounts = changed
                .iter()
                .filter_map(|(key, account)| match account {
                    Some(account) if is_runtime_owned(account) => None,
                    Some(account) => Some((key.to_bytes(), Some(StoredAccount::from(account)))),
                    None => Some((key.to_bytes(), None)),
                })
                .collect();
            let stored = StoredTransaction::from_executed(&executed).map_err(|reason| {
                LedgerError::Backend(format!("cannot journal the transaction: {reason}"))
            })?;
            let record = JournalRecord {
                clock: self.clock,
                accounts,
                blockhash_watermark: self.blockhash_watermark,
                transaction: Some(stored),
            };
            self.append(&record)?;
        }
        for (key, account) in &changed {
            let owner = account
                .as_ref()
                .filter(|a| a.lamports > 0 && !is_runtime_owned(a))
                .map(|a| a.owner);
            self.index_owner(*key, owner);
        }
        self.history.insert(Arc::clone(&executed));
        // Nobody listening is fine.
        let _ = self.updates.send(LedgerUpdate {
            transaction: Arc::clone(&executed),
            accounts: changed,
        });
        Ok(executed)
    }

    fn send(&mut self, transaction: &Transaction) -> Result<Receipt, LedgerError> {
        self.check_usable()?;
        check_transaction_size(transaction)?;
        if self.refresh_clock(wall_clock_now())? {
            self.install_clock()?;
        }
        let signature = transaction.signatures.first().copied().unwrap_or_default();
        if let Some(first) = self.history.get(&signature) {
            // Sent again (before or after a restart): it never runs twice.
            return outcome_of(&first);
        }
        if transaction.verify().is_err() {
            return Err(LedgerError::from_transaction_error(
                signature,
                TransactionError::SignatureFailure,
                Vec::new(),
            ));
        }
        let pre_balances = self.balances(&transaction.message.account_keys)?;
        let outcome = self
            .runtime
            .block_on(
                self.context
                    .banks_client
                    .process_transaction_with_metadata(transaction.clone()),
            )
            .map_err(|e| LedgerError::Backend(format!("cannot process the transaction: {e}")))?;
        let Some(metadata) = outcome.metadata else {
            // Refused before execution (blockhash, fee payer, already processed): nothing
            // changed and no fee was charged.
            let error = outcome
                .result
                .err()
                .unwrap_or(TransactionError::AccountNotFound);
            if error == TransactionError::AlreadyProcessed {
                if let Some(first) = self.first_outcome(&signature)? {
                    return first.map(|()| Receipt {
                        signature,
                        logs: Vec::new(),
                    });
                }
            }
            return Err(LedgerError::from_transaction_error(
                signature,
                error,
                Vec::new(),
            ));
        };
        let logs = logs::normalize(&metadata.log_messages, &NATIVE_PROGRAMS);
        let return_data = metadata
            .return_data
            .filter(|r| !r.data.is_empty())
            .map(|r| (r.program_id, r.data));
        let err = outcome.result.err();
        let executed = self.record_execution(transaction, err, logs, return_data, pre_balances)?;
        outcome_of(&executed)
    }

    fn simulate(
        &mut self,
        transaction: &Transaction,
        options: SimulateOptions,
    ) -> Result<Simulation, LedgerError> {
        self.check_usable()?;
        let mut transaction = transaction.clone();
        let replacement_blockhash = if options.replace_recent_blockhash {
            let hash = self.latest_blockhash()?;
            transaction.message.recent_blockhash = hash;
            Some(hash)
        } else {
            None
        };
        if options.sig_verify && transaction.verify().is_err() {
            return Ok(Simulation {
                err: Some(TransactionError::SignatureFailure),
                logs: Vec::new(),
                return_data: None,
                replacement_blockhash,
            });
        }
        let result = self
            .runtime
            .block_on(self.context.banks_client.simulate_transaction(transaction))
            .map_err(|e| LedgerError::Backend(format!("cannot simulate the transaction: {e}")))?;
        let details = result.simulation_details;
        let logs = details
            .as_ref()
            .map(|d| logs::normalize(&d.logs, &NATIVE_PROGRAMS))
            .unwrap_or_default();
        let return_data = details
            .and_then(|d| d.return_data)
            .filter(|r| !r.data.is_empty())
            .map(|r| (r.program_id, r.data));
        Ok(Simulation {
            err: result.result.and_then(Result::err),
            logs,
            return_data,
            replacement_blockhash,
        })
    }

    /// The outcome of an executed transaction from the bank's status cache (`None` if unknown).
    fn first_outcome(
        &self,
        signature: &Signature,
    ) -> Result<Option<Result<(), LedgerError>>, LedgerError> {
        let status = self
            .runtime
            .block_on(self.context.banks_client.get_transaction_status(*signature))
            .map_err(|e| {
                LedgerError::Backend(format!("cannot read the status of {signature}: {e}"))
            })?;
        Ok(status.map(|status| match status.err {
            None => Ok(()),
            Some(error) => Err(LedgerError::from_transaction_error(
                *signature,
                error,
                Vec::new(),
            )),
        }))
    }

    /// Whether the bank still accepts transactions signed with `blockhash`, answered by the
    /// bank's own age check (`MAX_PROCESSING_AGE`) rather than a copy of it: a probe transaction
    /// with that blockhash and a fee payer that does not exist is refused either with
    /// `BlockhashNotFound` (age check, done first) or with `AccountNotFound` (fee payer check, done
    /// after it). Refused before execution, the probe charges nothing and changes nothing.
    fn is_blockhash_valid(&self, blockhash: &Hash) -> Result<bool, LedgerError> {
        self.check_usable()?;
        let payer = Keypair::new();
        let message = Message::new_with_blockhash(&[], Some(&payer.pubkey()), blockhash);
        let mut probe = Transaction::new_unsigned(message);
        probe
            .try_sign(&[&payer], *blockhash)
            .map_err(|e| LedgerError::Signing(e.to_string()))?;
        let outcome = self
            .runtime
            .block_on(
                self.context
                    .banks_client
                    .process_transaction_with_metadata(probe),
            )
            .map_err(|e| {
                LedgerError::Backend(format!("cannot check blockhash {blockhash}: {e}"))
            })?;
        match outcome.result {
            Err(TransactionError::BlockhashNotFound) => Ok(false),
            Err(TransactionError::AccountNotFound) => Ok(true),
            other => Err(LedgerError::Backend(format!(
                "unexpected answer {other:?} to the check of blockhash {blockhash}"
            ))),
        }
    }

    fn latest_blockhash(&mut self) -> Result<Hash, LedgerError> {
        self.check_usable()?;
        for _ in 0..BLOCKHASH_POLLS {
            let hash = self
                .runtime
                .block_on(self.context.banks_client.get_latest_blockhash())
                .map_err(|e| {
                    LedgerError::Backend(format!("cannot read the latest blockhash: {e}"))
                })?;
            if hash != self.last_blockhash {
                self.last_blockhash = hash;
                self.observe_blockhash(&hash);
                return Ok(hash);
            }
            // The bank registers a new blockhash every simulated slot while the runtime runs.
            self.runtime
                .block_on(async { tokio::time::sleep(std::time::Duration::from_millis(2)).await });
        }
        Err(LedgerError::Backend(
            "the bank produced no new blockhash".to_string(),
        ))
    }
}

/// The receipt or error of an executed transaction, as its first execution answered.
fn outcome_of(executed: &ExecutedTransaction) -> Result<Receipt, LedgerError> {
    match &executed.err {
        None => Ok(Receipt {
            signature: executed.signature,
            logs: executed.logs.clone(),
        }),
        Some(error) => Err(LedgerError::from_transaction_error(
            executed.signature,
            error.clone(),
            executed.logs.clone(),
        )),
    }
}

/// `SHA-256(tag ‖ faucet)`: fixed for a data directory, whose faucet is created with it.
fn genesis_hash_of(faucet: &Pubkey) -> Hash {
    let digest = Sha256::new()
        .chain_update(b"mupib:ledger:genesis:v1")
        .chain_update(faucet.as_ref())
        .finalize();
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(&digest);
    Hash::new_from_array(bytes)
}

impl Ledger for EmbeddedLedger {
    fn send_transaction(&self, transaction: &Transaction) -> Result<Receipt, LedgerError> {
        self.lock()?.send(transaction)
    }

    fn get_account(&self, address: &Pubkey) -> Result<Option<Account>, LedgerError> {
        let inner = self.lock()?;
        inner.check_usable()?;
        inner.get_account(address)
    }

    fn latest_blockhash(&self) -> Result<Hash, LedgerError> {
        self.lock()?.latest_blockhash()
    }

    fn is_blockhash_valid(&self, blockhash: &Hash) -> Result<bool, LedgerError> {
        self.lock()?.is_blockhash_valid(blockhash)
    }

    fn clock(&self) -> Result<Clock, LedgerError> {
        let mut inner = self.lock()?;
        inner.check_usable()?;
        if inner.refresh_clock(wall_clock_now())? {
            inner.install_clock()?;
        }
        inner.bank_clock()
    }

    fn minimum_balance_for_rent_exemption(&self, data_len: usize) -> Result<u64, LedgerError> {
        let inner = self.lock()?;
        let rent = inner
            .runtime
            .block_on(inner.context.banks_client.get_rent())
            .map_err(|e| LedgerError::Backend(format!("cannot read the Rent sysvar: {e}")))?;
        Ok(rent.minimum_balance(data_len))
    }

    fn fee_for_signatures(&self, signatures: u64) -> Result<u64, LedgerError> {
        let inner = self.lock()?;
        let per_signature = inner
            .context
            .genesis_config()
            .fee_rate_governor
            .lamports_per_signature;
        per_signature
            .checked_mul(signatures)
            .ok_or(LedgerError::Overflow("fee"))
    }

    fn airdrop(&self, to: &Pubkey, lamports: u64) -> Result<Signature, LedgerError> {
        let mut inner = self.lock()?;
        let blockhash = inner.latest_blockhash()?;
        let faucet = &inner.faucet;
        let instruction =
            solana_system_interface::instruction::transfer(&faucet.pubkey(), to, lamports);
        let transaction = Transaction::new_signed_with_payer(
            &[instruction],
            Some(&faucet.pubkey()),
            &[faucet],
            blockhash,
        );
        Ok(inner.send(&transaction)?.signature)
    }
}

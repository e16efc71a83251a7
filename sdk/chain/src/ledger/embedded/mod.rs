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
//! does that on purpose (tests). The bank starts afresh at every open, so no blockhash survives a
//! restart: a transaction signed before it can never execute after it.
//!
//! The files of the data directory are read and written in `embedded/persist.rs`.

// `solana-program-test` 3.x marks its whole API deprecated ("Agave Unstable API"): expected, see
// shared/NATIVE_TESTING.md. This module is the one place that uses it.
#![allow(deprecated)]

mod persist;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use solana_program_test::{processor, ProgramTest, ProgramTestContext};
use solana_sdk::account::Account;
use solana_sdk::clock::Clock;
use solana_sdk::hash::Hash;
use solana_sdk::message::Message;
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::{Keypair, Signature, Signer};
use solana_sdk::transaction::{Transaction, TransactionError};

use super::{check_transaction_size, Ledger, LedgerError, Receipt};
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

/// Options of [`EmbeddedLedger::open_with`].
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Compact the journal into a new snapshot at open once it is larger than this.
    pub compact_threshold_bytes: u64,
    /// Lamports the faucet gets when the data directory is created.
    pub faucet_genesis_lamports: u64,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            compact_threshold_bytes: 4 * 1024 * 1024,
            faucet_genesis_lamports: FAUCET_GENESIS_LAMPORTS,
        }
    }
}

/// The program running natively in an in-process Solana bank; see the module documentation.
pub struct EmbeddedLedger {
    inner: Mutex<Inner>,
    data_dir: Option<PathBuf>,
}

struct Inner {
    // Field order is drop order: the bank context goes before the runtime that drives it.
    context: ProgramTestContext,
    faucet: Keypair,
    journal: Option<Journal>,
    clock: ClockState,
    last_blockhash: Hash,
    poisoned: Option<String>,
    runtime: tokio::runtime::Runtime,
    _lock: Option<DirLock>,
}

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
        Self::start(
            None,
            Snapshot::default(),
            None,
            Keypair::new(),
            &OpenOptions::default(),
        )
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
        let mut inner = Inner {
            context,
            faucet,
            journal,
            clock: snapshot.clock,
            last_blockhash,
            poisoned: None,
            runtime,
            _lock: lock,
        };
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
        })
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
        compact_from_disk(dir, &journal.file)
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

    /// Persists the post-state of `keys` (the writable accounts of an executed transaction).
    fn persist(&mut self, keys: &[Pubkey]) -> Result<(), LedgerError> {
        if self.journal.is_none() {
            return Ok(());
        }
        let mut accounts = Vec::with_capacity(keys.len());
        for key in keys {
            let account = self.get_account(key)?;
            match account {
                Some(account) if is_runtime_owned(&account) => {}
                Some(account) => {
                    accounts.push((key.to_bytes(), Some(StoredAccount::from(&account))))
                }
                None => accounts.push((key.to_bytes(), None)),
            }
        }
        let record = JournalRecord {
            clock: self.clock,
            accounts,
        };
        self.append(&record)
    }

    fn send(&mut self, transaction: &Transaction) -> Result<Receipt, LedgerError> {
        self.check_usable()?;
        check_transaction_size(transaction)?;
        if self.refresh_clock(wall_clock_now())? {
            self.install_clock()?;
        }
        let signature = transaction.signatures.first().copied().unwrap_or_default();
        let message = &transaction.message;
        let writable: Vec<Pubkey> = message
            .account_keys
            .iter()
            .enumerate()
            .filter(|(i, _)| message.is_maybe_writable(*i, None))
            .map(|(_, key)| *key)
            .collect();
        let fee_payer = message.account_keys.first().copied();
        let outcome = self
            .runtime
            .block_on(
                self.context
                    .banks_client
                    .process_transaction_with_metadata(transaction.clone()),
            )
            .map_err(|e| LedgerError::Backend(format!("cannot process the transaction: {e}")))?;
        let logs = outcome.metadata.map(|m| m.log_messages).unwrap_or_default();
        if outcome.result == Err(TransactionError::AlreadyProcessed) {
            // Sent again: it never runs twice; answer with the first execution's outcome.
            if let Some(first) = self.first_outcome(&signature)? {
                return first.map(|()| Receipt {
                    signature,
                    logs: Vec::new(),
                });
            }
        }
        match outcome.result {
            Ok(()) => {
                self.persist(&writable)?;
                Ok(Receipt { signature, logs })
            }
            Err(error) => {
                // An executed transaction that failed still charged its fee: persist the payer.
                if !logs.is_empty() {
                    if let Some(payer) = fee_payer {
                        self.persist(&[payer])?;
                    }
                }
                Err(LedgerError::from_transaction_error(signature, error, logs))
            }
        }
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

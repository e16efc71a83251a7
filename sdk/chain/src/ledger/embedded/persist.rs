//! Persistence of the embedded ledger's data directory (see the parent module): the snapshot
//! (`snapshot.bin`, replaced atomically), the journal of post-states (`journal.bin`, one
//! length-and-checksum framed record per executed transaction, a torn tail dropped at open),
//! the faucet keypair (`faucet.json`) and the directory lock (`LOCK`).
//!
//! Format versions: version 2 (this one) adds to every record the executed transaction (its
//! signature, bytes, outcome and logs: the ledger's signature statuses and history) and the
//! blockhash watermark (see `blockhashes.rs`). A version-1 directory (snapshot magic `MUPIBSN1`,
//! journal without a header) is read and rewritten as version 2 at open.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use solana_sdk::account::Account;
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::Keypair;

use super::history::StoredTransaction;

use super::OpenOptions;
use crate::ledger::LedgerError;

const SNAPSHOT_FILE: &str = "snapshot.bin";
const SNAPSHOT_TMP_FILE: &str = "snapshot.bin.tmp";
const JOURNAL_FILE: &str = "journal.bin";
const FAUCET_FILE: &str = "faucet.json";
const LOCK_FILE: &str = "LOCK";
const SNAPSHOT_MAGIC_V1: &[u8; 8] = b"MUPIBSN1";
const SNAPSHOT_MAGIC: &[u8; 8] = b"MUPIBSN2";
/// First bytes of a version-2 journal (a version-1 journal starts with a record frame).
const JOURNAL_MAGIC: &[u8; 8] = b"MUPIBJ2\n";
const CHECKSUM_LEN: usize = 8;
/// Journal record frame: length (u32 LE) + checksum, then the payload.
const FRAME_HEADER_LEN: usize = 4 + CHECKSUM_LEN;

/// Ledger clock persisted across restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ClockState {
    pub(super) slot: u64,
    pub(super) unix_timestamp: i64,
}

/// An account as stored in the snapshot and journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct StoredAccount {
    lamports: u64,
    data: Vec<u8>,
    owner: [u8; 32],
    executable: bool,
    rent_epoch: u64,
}

impl From<&Account> for StoredAccount {
    fn from(account: &Account) -> Self {
        StoredAccount {
            lamports: account.lamports,
            data: account.data.clone(),
            owner: account.owner.to_bytes(),
            executable: account.executable,
            rent_epoch: account.rent_epoch,
        }
    }
}

impl From<&StoredAccount> for Account {
    fn from(stored: &StoredAccount) -> Self {
        Account {
            lamports: stored.lamports,
            data: stored.data.clone(),
            owner: Pubkey::new_from_array(stored.owner),
            executable: stored.executable,
            rent_epoch: stored.rent_epoch,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Snapshot {
    pub(super) clock: ClockState,
    pub(super) accounts: BTreeMap<[u8; 32], StoredAccount>,
    /// Highest counter of a blockhash this directory ever handed out or executed a transaction
    /// with (see `blockhashes.rs`).
    pub(super) blockhash_watermark: u64,
    /// The most recent executed transactions, oldest first (at most the history limit).
    pub(super) history: Vec<StoredTransaction>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct JournalRecord {
    pub(super) clock: ClockState,
    pub(super) accounts: Vec<([u8; 32], Option<StoredAccount>)>,
    pub(super) blockhash_watermark: u64,
    /// The executed transaction whose post-states these are (`None` for a clock change).
    pub(super) transaction: Option<StoredTransaction>,
}

/// Version 1 of the snapshot (before signature statuses were persisted).
#[derive(Deserialize)]
struct SnapshotV1 {
    clock: ClockState,
    accounts: BTreeMap<[u8; 32], StoredAccount>,
}

/// Version 1 of a journal record.
#[derive(Deserialize)]
struct JournalRecordV1 {
    clock: ClockState,
    accounts: Vec<([u8; 32], Option<StoredAccount>)>,
}

impl From<JournalRecordV1> for JournalRecord {
    fn from(v1: JournalRecordV1) -> Self {
        JournalRecord {
            clock: v1.clock,
            accounts: v1.accounts,
            blockhash_watermark: 0,
            transaction: None,
        }
    }
}

impl Snapshot {
    fn apply(&mut self, record: JournalRecord, history_limit: usize) {
        self.blockhash_watermark = self.blockhash_watermark.max(record.blockhash_watermark);
        if let Some(transaction) = record.transaction {
            if !self
                .history
                .iter()
                .any(|t| t.signature == transaction.signature)
            {
                self.history.push(transaction);
            }
            let excess = self.history.len().saturating_sub(history_limit);
            if excess > 0 {
                self.history.drain(..excess);
            }
        }
        for (key, account) in record.accounts {
            match account {
                Some(account) if account.lamports > 0 => {
                    self.accounts.insert(key, account);
                }
                _ => {
                    self.accounts.remove(&key);
                }
            }
        }
        if record.clock.unix_timestamp > self.clock.unix_timestamp {
            self.clock.unix_timestamp = record.clock.unix_timestamp;
        }
        if record.clock.slot > self.clock.slot {
            self.clock.slot = record.clock.slot;
        }
    }
}

pub(super) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> LedgerError + '_ {
    move |source| LedgerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn checksum(payload: &[u8]) -> [u8; CHECKSUM_LEN] {
    let digest = Sha256::digest(payload);
    let mut out = [0u8; CHECKSUM_LEN];
    out.copy_from_slice(&digest[..CHECKSUM_LEN]);
    out
}

fn fsync_dir(dir: &Path) -> Result<(), LedgerError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename, fsync of the directory.
fn write_atomically(
    dir: &Path,
    tmp_name: &str,
    name: &str,
    bytes: &[u8],
) -> Result<(), LedgerError> {
    let tmp = dir.join(tmp_name);
    let target = dir.join(name);
    {
        let mut file = File::create(&tmp).map_err(io_error(&tmp))?;
        file.write_all(bytes).map_err(io_error(&tmp))?;
        file.sync_all().map_err(io_error(&tmp))?;
    }
    fs::rename(&tmp, &target).map_err(io_error(&target))?;
    fsync_dir(dir)
}

/// The append-only journal of a data directory.
pub(super) struct Journal {
    pub(super) dir: PathBuf,
    pub(super) file: File,
}

impl Journal {
    pub(super) fn append(&mut self, record: &JournalRecord) -> Result<(), LedgerError> {
        let path = self.dir.join(JOURNAL_FILE);
        let len = self.file.metadata().map_err(io_error(&path))?.len();
        if len == 0 {
            self.file
                .write_all(JOURNAL_MAGIC)
                .map_err(io_error(&path))?;
        }
        let payload = bincode::serialize(record).map_err(|e| LedgerError::Corrupt {
            path: path.clone(),
            reason: format!("cannot encode a journal record: {e}"),
        })?;
        let len = u32::try_from(payload.len())
            .map_err(|_| LedgerError::Overflow("journal record length"))?;
        let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&checksum(&payload));
        frame.extend_from_slice(&payload);
        self.file.write_all(&frame).map_err(io_error(&path))?;
        self.file.sync_data().map_err(io_error(&path))
    }
}

/// Parses journal bytes (either version) into records; returns them, the length of the valid
/// prefix (a torn or corrupt tail is where a crash interrupted a write, and is dropped) and
/// whether the journal is of version 1.
fn parse_journal(bytes: &[u8]) -> (Vec<JournalRecord>, usize, bool) {
    match bytes.strip_prefix(JOURNAL_MAGIC.as_slice()) {
        Some(body) => {
            let (records, len) = parse_frames::<JournalRecord>(body);
            (records, len.saturating_add(JOURNAL_MAGIC.len()), false)
        }
        None if bytes.is_empty() => (Vec::new(), 0, false),
        None => {
            let (records, len) = parse_frames::<JournalRecordV1>(bytes);
            (
                records.into_iter().map(JournalRecord::from).collect(),
                len,
                true,
            )
        }
    }
}

fn parse_frames<R: serde::de::DeserializeOwned>(bytes: &[u8]) -> (Vec<R>, usize) {
    let mut records = Vec::new();
    let mut offset = 0usize;
    while let Some(header) = bytes.get(offset..offset.saturating_add(FRAME_HEADER_LEN)) {
        let mut len_bytes = [0u8; 4];
        len_bytes.copy_from_slice(&header[..4]);
        let Ok(len) = usize::try_from(u32::from_le_bytes(len_bytes)) else {
            break;
        };
        let start = offset.saturating_add(FRAME_HEADER_LEN);
        let Some(payload) = bytes.get(start..start.saturating_add(len)) else {
            break;
        };
        if checksum(payload) != header[4..FRAME_HEADER_LEN] {
            break;
        }
        let Ok(record) = bincode::deserialize::<R>(payload) else {
            break;
        };
        records.push(record);
        offset = start.saturating_add(len);
    }
    (records, offset)
}

fn encode_snapshot(snapshot: &Snapshot, path: &Path) -> Result<Vec<u8>, LedgerError> {
    let payload = bincode::serialize(snapshot).map_err(|e| LedgerError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("cannot encode the snapshot: {e}"),
    })?;
    let mut bytes = Vec::with_capacity(SNAPSHOT_MAGIC.len() + CHECKSUM_LEN + payload.len());
    bytes.extend_from_slice(SNAPSHOT_MAGIC);
    bytes.extend_from_slice(&checksum(&payload));
    bytes.extend_from_slice(&payload);
    Ok(bytes)
}

fn decode_snapshot(bytes: &[u8], path: &Path) -> Result<Snapshot, LedgerError> {
    let corrupt = |reason: &str| LedgerError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let header_len = SNAPSHOT_MAGIC.len() + CHECKSUM_LEN;
    let magic = bytes.get(..SNAPSHOT_MAGIC.len());
    let version_1 = magic == Some(SNAPSHOT_MAGIC_V1.as_slice());
    if bytes.len() < header_len || !(version_1 || magic == Some(SNAPSHOT_MAGIC.as_slice())) {
        return Err(corrupt("not a µPIB ledger snapshot (bad magic)"));
    }
    let payload = &bytes[header_len..];
    if checksum(payload) != bytes[SNAPSHOT_MAGIC.len()..header_len] {
        return Err(corrupt("checksum mismatch"));
    }
    if version_1 {
        let v1: SnapshotV1 =
            bincode::deserialize(payload).map_err(|e| corrupt(&format!("cannot decode: {e}")))?;
        return Ok(Snapshot {
            clock: v1.clock,
            accounts: v1.accounts,
            ..Snapshot::default()
        });
    }
    bincode::deserialize(payload).map_err(|e| corrupt(&format!("cannot decode: {e}")))
}

/// Exclusive use of a data directory by one live process (a `LOCK` file holding its pid).
pub(super) struct DirLock {
    path: PathBuf,
}

impl DirLock {
    pub(super) fn acquire(dir: &Path) -> Result<DirLock, LedgerError> {
        let path = dir.join(LOCK_FILE);
        let pid = std::process::id();
        for _ in 0..2 {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    file.write_all(pid.to_string().as_bytes())
                        .map_err(io_error(&path))?;
                    file.sync_all().map_err(io_error(&path))?;
                    return Ok(DirLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = fs::read_to_string(&path)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok());
                    match holder {
                        Some(holder) if process_alive(holder) => {
                            return Err(LedgerError::Locked {
                                path: dir.to_path_buf(),
                                pid: holder,
                            });
                        }
                        // A stale lock left by a process that died: take it over.
                        _ => fs::remove_file(&path).map_err(io_error(&path))?,
                    }
                }
                Err(e) => return Err(LedgerError::Io { path, source: e }),
            }
        }
        Err(LedgerError::Locked {
            path: dir.to_path_buf(),
            pid: 0,
        })
    }
}

/// Whether a process with this id is running (Linux: `/proc/<pid>`; elsewhere assumed alive).
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Best effort: a lock left behind is recognised as stale by the next open.
        let _ = fs::remove_file(&self.path);
    }
}

pub(super) fn load_or_create_faucet(dir: &Path) -> Result<Keypair, LedgerError> {
    let path = dir.join(FAUCET_FILE);
    if path.exists() {
        let text = fs::read_to_string(&path).map_err(io_error(&path))?;
        let bytes: Vec<u8> = serde_json::from_str(&text).map_err(|e| LedgerError::Corrupt {
            path: path.clone(),
            reason: format!("not a keypair file: {e}"),
        })?;
        return Keypair::try_from(bytes.as_slice()).map_err(|e| LedgerError::Corrupt {
            path,
            reason: format!("not a valid keypair: {e}"),
        });
    }
    let keypair = Keypair::new();
    let json =
        serde_json::to_string(&keypair.to_bytes().to_vec()).map_err(|e| LedgerError::Corrupt {
            path: path.clone(),
            reason: format!("cannot encode the faucet keypair: {e}"),
        })?;
    write_atomically(dir, "faucet.json.tmp", FAUCET_FILE, json.as_bytes())?;
    Ok(keypair)
}

/// The snapshot of `dir` (empty when there is none yet).
fn read_snapshot(dir: &Path) -> Result<Snapshot, LedgerError> {
    let snapshot_path = dir.join(SNAPSHOT_FILE);
    if snapshot_path.exists() {
        let bytes = fs::read(&snapshot_path).map_err(io_error(&snapshot_path))?;
        decode_snapshot(&bytes, &snapshot_path)
    } else {
        Ok(Snapshot::default())
    }
}

/// Loads snapshot + journal, drops a torn journal tail, compacts when the journal is large.
pub(super) fn load_state(
    dir: &Path,
    options: &OpenOptions,
) -> Result<(Snapshot, File), LedgerError> {
    let mut snapshot = read_snapshot(dir)?;
    let journal_path = dir.join(JOURNAL_FILE);
    let mut journal_bytes = Vec::new();
    if journal_path.exists() {
        File::open(&journal_path)
            .and_then(|mut f| f.read_to_end(&mut journal_bytes))
            .map_err(io_error(&journal_path))?;
    }
    let (records, valid_len, version_1) = parse_journal(&journal_bytes);
    for record in records {
        snapshot.apply(record, options.history_transactions);
    }
    let journal_file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&journal_path)
        .map_err(io_error(&journal_path))?;
    let valid_len_u64 =
        u64::try_from(valid_len).map_err(|_| LedgerError::Overflow("journal length"))?;
    if valid_len < journal_bytes.len() {
        tracing::warn!(
            dropped = journal_bytes.len() - valid_len,
            "dropping a torn record at the end of the ledger journal"
        );
        journal_file
            .set_len(valid_len_u64)
            .map_err(io_error(&journal_path))?;
        journal_file.sync_all().map_err(io_error(&journal_path))?;
    }
    if version_1 || valid_len_u64 > options.compact_threshold_bytes {
        // A version-1 journal is folded into a version-2 snapshot before anything is appended.
        compact(dir, &snapshot, &journal_file)?;
    }
    Ok((snapshot, journal_file))
}

/// Writes `snapshot` atomically, then empties the journal. A crash between the two leaves a
/// journal whose records are already in the snapshot; replaying them is harmless.
fn compact(dir: &Path, snapshot: &Snapshot, journal: &File) -> Result<(), LedgerError> {
    let bytes = encode_snapshot(snapshot, &dir.join(SNAPSHOT_FILE))?;
    write_atomically(dir, SNAPSHOT_TMP_FILE, SNAPSHOT_FILE, &bytes)?;
    let journal_path = dir.join(JOURNAL_FILE);
    journal.set_len(0).map_err(io_error(&journal_path))?;
    journal.sync_all().map_err(io_error(&journal_path))
}

/// Rebuilds the snapshot from disk (the open ledger holds the bank in memory, not a list of
/// written keys): the snapshot file with the whole journal applied, then [`compact`]s it.
pub(super) fn compact_from_disk(
    dir: &Path,
    journal: &File,
    history_limit: usize,
) -> Result<(), LedgerError> {
    let mut snapshot = read_snapshot(dir)?;
    let journal_path = dir.join(JOURNAL_FILE);
    let bytes = fs::read(&journal_path).map_err(io_error(&journal_path))?;
    let (records, _, _) = parse_journal(&bytes);
    for record in records {
        snapshot.apply(record, history_limit);
    }
    compact(dir, &snapshot, journal)
}

//! The bank's data file: the plan of a mint in progress ([`MintJob`]), the batches it minted
//! ([`BatchRecord`]), the signed tokens not yet handed out and every hand-out ([`Handout`]), as
//! one JSON document ([`BankState`]) written atomically.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};
use solana_sdk::pubkey::Pubkey;

use super::BankError;
use crate::wallet::write_file_atomic;
use mupib_protocol::cert::b58;
use mupib_protocol::token::{Token, TokenId};

/// Version of the bank state file format (2: batches are bound to an auditor).
pub const BANK_STATE_VERSION: u32 = 2;

/// One batch of a planned mint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedBatch {
    /// The batch id.
    pub batch_id: u64,
    /// Its tokens.
    pub token_count: u32,
}

/// A mint planned in the state file before its first transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintJob {
    /// The auditor every batch of the mint is bound to (the only one that may redeem them).
    #[serde(with = "b58::pubkey")]
    pub auditor: Pubkey,
    /// Value of each token.
    pub value: u64,
    /// Issue time of every token.
    pub issued_at: i64,
    /// Expiry of every batch.
    pub expires_at: i64,
    /// The batches, in order.
    pub batches: Vec<PlannedBatch>,
    /// Ids of the batches already sealed and recorded.
    pub completed: Vec<u64>,
}

/// A batch the bank minted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// The batch id.
    pub batch_id: u64,
    /// The auditor the batch is bound to (part of its address).
    #[serde(with = "b58::pubkey")]
    pub auditor: Pubkey,
    /// The batch PDA.
    #[serde(with = "b58::pubkey")]
    pub batch: Pubkey,
    /// Its escrow.
    #[serde(with = "b58::pubkey")]
    pub escrow: Pubkey,
    /// Tokens.
    pub token_count: u32,
    /// Value of each token.
    pub value: u64,
    /// Issue time.
    pub issued_at: i64,
    /// Expiry.
    pub expires_at: i64,
    /// `token_count × value`, moved into the escrow.
    pub escrow_amount: u64,
    /// Lamports deposited as rent (batch + escrow accounts).
    pub rent_lamports: u64,
    /// Whether the bank closed it.
    pub closed: bool,
}

/// Tokens handed to a recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handout {
    /// The recipient.
    #[serde(with = "b58::pubkey")]
    pub recipient: Pubkey,
    /// The tokens.
    pub tokens: Vec<TokenId>,
    /// When.
    pub at: i64,
}

/// The bank's data file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankState {
    /// [`BANK_STATE_VERSION`].
    pub version: u32,
    /// The bank.
    #[serde(with = "b58::pubkey")]
    pub bank: Pubkey,
    /// A mint in progress.
    pub pending_mint: Option<MintJob>,
    /// Every batch minted.
    pub batches: Vec<BatchRecord>,
    /// Signed tokens of sealed batches not yet handed out.
    pub unissued: Vec<Token>,
    /// Every hand-out.
    pub handouts: Vec<Handout>,
}

impl BankState {
    fn new(bank: Pubkey) -> BankState {
        BankState {
            version: BANK_STATE_VERSION,
            bank,
            pending_mint: None,
            batches: Vec::new(),
            unissued: Vec::new(),
            handouts: Vec::new(),
        }
    }
}

/// Loads the state file (an absent file is an empty state).
pub(super) fn load_state(path: &Path, bank: Pubkey) -> Result<BankState, BankError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BankState::new(bank)),
        Err(source) => {
            return Err(BankError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    let state: BankState = serde_json::from_slice(&bytes).map_err(|e| BankError::CorruptState {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    if state.version != BANK_STATE_VERSION {
        return Err(BankError::CorruptState {
            path: path.to_owned(),
            reason: format!(
                "format version {} (this program reads {BANK_STATE_VERSION})",
                state.version
            ),
        });
    }
    if state.bank != bank {
        return Err(BankError::WrongBank {
            path: path.to_owned(),
            owner: state.bank,
            bank,
        });
    }
    Ok(state)
}

pub(super) fn save_state(path: &Path, state: &BankState) -> Result<(), BankError> {
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| BankError::Io {
        path: path.to_owned(),
        source: std::io::Error::other(e),
    })?;
    write_file_atomic(path, &bytes).map_err(|source| BankError::Io {
        path: path.to_owned(),
        source,
    })
}

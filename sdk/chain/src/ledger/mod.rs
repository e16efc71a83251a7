//! Ledgers: where µPIB transactions go and where account state is read from.
//!
//! [`Ledger`] is the small synchronous interface the auditor engine, the bank and the CLI use.
//! It speaks plain Solana types only (`Transaction`, `Account`, `Hash`, `Clock`), so the
//! embedded ledger ([`EmbeddedLedger`]: the real Solana runtime executing the program natively in
//! an in-process bank, persisted in a data directory) and a JSON-RPC backend are interchangeable.

pub mod embedded;
pub mod rpc;

pub use embedded::{
    EmbeddedLedger, ExecutedTransaction, LedgerUpdate, OpenOptions, SimulateOptions, Simulation,
};
pub use rpc::{RpcLedger, RpcOptions};

use solana_sdk::account::Account;
use solana_sdk::clock::Clock;
use solana_sdk::hash::Hash;
use solana_sdk::instruction::{Instruction, InstructionError};
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::{Signature, Signer};
use solana_sdk::transaction::{Transaction, TransactionError};

/// What a ledger returns for a transaction that succeeded.
#[derive(Debug, PartialEq)]
pub struct Receipt {
    /// The transaction's first signature (its id on the chain).
    pub signature: Signature,
    /// The runtime's log lines (`Program <id> invoke [1]`, `Program log: ...`, ...); the µPIB
    /// events in them are decoded by `Receipt::events` (`crate::program::events`).
    pub logs: Vec<String>,
}

/// Largest serialized transaction a Solana node accepts (IPv6 MTU 1280 − 48 bytes of headers).
pub const PACKET_DATA_SIZE: usize = 1232;

/// Errors of a [`Ledger`].
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The chain executed or rejected the transaction with an error. For a program error,
    /// `custom_code` holds the program's error number (Anchor: 6000 + variant index) and `logs`
    /// the runtime's log lines, which name the failing check.
    #[error(
        "transaction {signature} failed: {error}{code}; see the program logs for the failing check",
        code = custom_code.map(|c| format!(" (program error code {c})")).unwrap_or_default()
    )]
    Transaction {
        /// The failed transaction's first signature.
        signature: Signature,
        /// The runtime's error.
        error: TransactionError,
        /// The program's custom error code, when the failure is `InstructionError::Custom`.
        custom_code: Option<u32>,
        /// Index of the failing instruction, when the failure is an instruction error.
        instruction_index: Option<u8>,
        /// Log lines of the execution (empty when the transaction was rejected before running).
        logs: Vec<String>,
    },
    /// The serialized transaction exceeds the packet size every Solana node accepts.
    #[error("transaction is {size} bytes serialized, above the {limit}-byte packet limit; split it into smaller transactions")]
    TransactionTooLarge {
        /// Serialized size in bytes.
        size: usize,
        /// The limit ([`PACKET_DATA_SIZE`]).
        limit: usize,
    },
    /// The transaction could not be signed with the given keys.
    #[error("cannot sign the transaction: {0}; pass every required signer")]
    Signing(String),
    /// The ledger backend failed (transport, runtime).
    #[error("ledger backend failed: {0}")]
    Backend(String),
    /// Reading or writing the ledger's data directory failed.
    #[error("ledger storage at {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: std::path::PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A file of the data directory is not what this version wrote.
    #[error("ledger data at {path} is corrupt: {reason}; restore it from a backup or start a new data directory")]
    Corrupt {
        /// The file involved.
        path: std::path::PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// Another live process holds the data directory.
    #[error("ledger data directory {path} is in use by process {pid}; stop it or use another --data-dir")]
    Locked {
        /// The data directory.
        path: std::path::PathBuf,
        /// The holder's process id.
        pid: u32,
    },
    /// A transaction executed in memory but its effects could not be made durable; the ledger
    /// refuses further work so memory and disk cannot diverge further.
    #[error("ledger is unusable after a persistence failure ({0}); reopen the data directory")]
    Poisoned(String),
    /// The requested clock change would move time backwards.
    #[error("ledger clock is at {current} and cannot go back to {requested}")]
    ClockBackwards {
        /// Current unix timestamp of the ledger.
        current: i64,
        /// The rejected timestamp.
        requested: i64,
    },
    /// An amount or count overflowed.
    #[error("arithmetic overflow in {0}")]
    Overflow(&'static str),
}

impl LedgerError {
    /// Builds a [`LedgerError::Transaction`], extracting the instruction index and custom code.
    pub fn from_transaction_error(
        signature: Signature,
        error: TransactionError,
        logs: Vec<String>,
    ) -> Self {
        let (instruction_index, custom_code) = match &error {
            TransactionError::InstructionError(index, InstructionError::Custom(code)) => {
                (Some(*index), Some(*code))
            }
            TransactionError::InstructionError(index, _) => (Some(*index), None),
            _ => (None, None),
        };
        LedgerError::Transaction {
            signature,
            error,
            custom_code,
            instruction_index,
            logs,
        }
    }

    /// The program's custom error code, if the error is a failed custom program check.
    pub fn custom_code(&self) -> Option<u32> {
        match self {
            LedgerError::Transaction { custom_code, .. } => *custom_code,
            _ => None,
        }
    }

    /// The execution logs of a failed transaction (empty for other errors).
    pub fn logs(&self) -> &[String] {
        match self {
            LedgerError::Transaction { logs, .. } => logs,
            _ => &[],
        }
    }
}

/// Checks that `transaction` fits the [`PACKET_DATA_SIZE`] limit and returns its size.
pub fn check_transaction_size(transaction: &Transaction) -> Result<usize, LedgerError> {
    let size = serialized_size(transaction)?;
    if size > PACKET_DATA_SIZE {
        return Err(LedgerError::TransactionTooLarge {
            size,
            limit: PACKET_DATA_SIZE,
        });
    }
    Ok(size)
}

/// The bincode-serialized size of a transaction, as it travels on the wire.
pub fn serialized_size(transaction: &Transaction) -> Result<usize, LedgerError> {
    let size = bincode::serialized_size(transaction)
        .map_err(|e| LedgerError::Backend(format!("cannot serialize the transaction: {e}")))?;
    usize::try_from(size).map_err(|_| LedgerError::Overflow("transaction size"))
}

/// A Solana ledger as µPIB uses it. Synchronous, `&self`, shareable across threads.
pub trait Ledger: Send + Sync {
    /// Sends a signed transaction and waits until it is executed. Fails with
    /// [`LedgerError::Transaction`] (program error code and logs kept) when it fails. Sending a
    /// transaction again is harmless: it never executes twice, and the answer is the first
    /// execution's outcome (its logs may be missing).
    fn send_transaction(&self, transaction: &Transaction) -> Result<Receipt, LedgerError>;

    /// Reads an account; `None` when it does not exist.
    fn get_account(&self, address: &Pubkey) -> Result<Option<Account>, LedgerError>;

    /// A recent blockhash to sign transactions with. Two calls return distinct hashes, so two
    /// otherwise identical transactions get distinct signatures.
    fn latest_blockhash(&self) -> Result<Hash, LedgerError>;

    /// Whether a transaction signed with `blockhash` could still be executed: the blockhash is
    /// among the recent ones the chain accepts (at most `MAX_PROCESSING_AGE` = 150 blocks old).
    /// Once this is `false` a signed transaction can never land, so whatever it would have done
    /// is settled by the chain's state.
    fn is_blockhash_valid(&self, blockhash: &Hash) -> Result<bool, LedgerError>;

    /// The `Clock` sysvar as programs see it now.
    fn clock(&self) -> Result<Clock, LedgerError>;

    /// Lamports an account of `data_len` bytes needs to be rent exempt.
    fn minimum_balance_for_rent_exemption(&self, data_len: usize) -> Result<u64, LedgerError>;

    /// Lamports the chain charges to process a transaction with `signatures` signatures.
    fn fee_for_signatures(&self, signatures: u64) -> Result<u64, LedgerError>;

    /// Sends `lamports` to `to` from the ledger's faucet (test and demo ledgers only).
    fn airdrop(&self, to: &Pubkey, lamports: u64) -> Result<Signature, LedgerError>;

    /// Builds, signs and sends a transaction of `instructions` paid by `payer` (which must be
    /// among `signers`), after checking it fits [`PACKET_DATA_SIZE`].
    fn send_instructions(
        &self,
        instructions: &[Instruction],
        payer: &Pubkey,
        signers: &[&dyn Signer],
    ) -> Result<Receipt, LedgerError> {
        let blockhash = self.latest_blockhash()?;
        let mut transaction = Transaction::new_with_payer(instructions, Some(payer));
        transaction
            .try_sign(signers, blockhash)
            .map_err(|e| LedgerError::Signing(e.to_string()))?;
        check_transaction_size(&transaction)?;
        self.send_transaction(&transaction)
    }

    /// Lamport balance of `address` (0 when the account does not exist).
    fn balance(&self, address: &Pubkey) -> Result<u64, LedgerError> {
        Ok(self.get_account(address)?.map(|a| a.lamports).unwrap_or(0))
    }
}

/// A shared ledger is a ledger.
impl<L: Ledger + ?Sized> Ledger for std::sync::Arc<L> {
    fn send_transaction(&self, transaction: &Transaction) -> Result<Receipt, LedgerError> {
        (**self).send_transaction(transaction)
    }
    fn get_account(&self, address: &Pubkey) -> Result<Option<Account>, LedgerError> {
        (**self).get_account(address)
    }
    fn latest_blockhash(&self) -> Result<Hash, LedgerError> {
        (**self).latest_blockhash()
    }
    fn is_blockhash_valid(&self, blockhash: &Hash) -> Result<bool, LedgerError> {
        (**self).is_blockhash_valid(blockhash)
    }
    fn clock(&self) -> Result<Clock, LedgerError> {
        (**self).clock()
    }
    fn minimum_balance_for_rent_exemption(&self, data_len: usize) -> Result<u64, LedgerError> {
        (**self).minimum_balance_for_rent_exemption(data_len)
    }
    fn fee_for_signatures(&self, signatures: u64) -> Result<u64, LedgerError> {
        (**self).fee_for_signatures(signatures)
    }
    fn airdrop(&self, to: &Pubkey, lamports: u64) -> Result<Signature, LedgerError> {
        (**self).airdrop(to, lamports)
    }
}

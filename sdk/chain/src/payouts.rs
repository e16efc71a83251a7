//! Paying vendors on-chain (SPEC §4 "Payouts", §6 "Exactly once"; paper Fig. 1 message 10):
//! [`LedgerPayouts`], the chain side of settlement ([`PayoutSender`]) over any [`Ledger`].
//!
//! A settlement batch `seq` is one transaction, signed by the auditor alone:
//! `[payout_record(seq, digest), transfer_checked(source → destination, amount) × n]`. The
//! program accepts `payout_record` only for the auditor's next `payout_seq` and stores the batch
//! digest ([`PayoutBatch::digest`]); the transfers run in the same transaction, so either the
//! record advances and every vendor is paid, or nothing happens. A batch therefore lands at most
//! once however often it is signed or sent, and whether it landed is read from the auditor's
//! registration ([`PayoutSender::record`]), which nobody else can write. Nothing is created, so
//! no pre-funded address can block a payout.
//!
//! [`PayoutSender::send`] classifies the ledger's answer:
//! - the transaction executed → [`SendOutcome::Executed`] (a resent copy of one that executed
//!   earlier too: ledgers answer a duplicate with the first execution's outcome);
//! - it executed and failed, or the node refused it for good (preflight/simulation failure,
//!   blockhash not found or expired, bad signature, too large) → [`SendOutcome::Failed`]; for
//!   an instruction error the failing instruction names the vendor (instruction `i ≥ 1` is the
//!   transfer of item `i − 1`; instruction 0 is the record, e.g. its seq was already consumed);
//! - the ledger could not be reached or did not answer in time (transport, timeout, its storage)
//!   → [`SendOutcome::Unknown`]: it may still land while [`PayoutSender::may_still_land`].
//!
//! A `Failed` transaction may still have been preceded by a copy that landed (e.g. the same
//! bytes refused after a restart as "blockhash not found"): before re-planning a failed batch,
//! read [`PayoutSender::record`] — `next_seq > seq` means seq is consumed (by this batch if
//! `next_seq == seq + 1` and `last_digest` is its digest).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use mupib_protocol::payout::{
    DestinationProblem, PayoutBatch, PayoutError, PayoutRecord, PayoutSender, SendOutcome,
    SignedPayout,
};
use solana_sdk::hash::Hash;
use solana_sdk::instruction::Instruction;
use solana_sdk::program_pack::Pack;
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::{Keypair, Signature, Signer};
use solana_sdk::transaction::{Transaction, TransactionError};

use crate::ledger::{check_transaction_size, Ledger, LedgerError, PACKET_DATA_SIZE};
use crate::program::accounts::{fetch_auditor_registration, fetch_config};
use crate::program::instructions as ix;
use crate::spl::payment_account;

/// How many signed transactions [`LedgerPayouts`] remembers the vendors of (to name the vendor of
/// a failed transfer); older ones are forgotten first.
const REMEMBERED_PAYOUTS: usize = 1024;

/// The payment mint as settlement needs it (read once: `Config.mint` never changes).
#[derive(Debug, Clone, Copy)]
struct PaymentMint {
    address: Pubkey,
    decimals: u8,
}

/// Settlement over a [`Ledger`]: SPL `transfer_checked` from the auditor's token account
/// (`source`) to each vendor's destination, with the auditor's payout record in the same
/// transaction; see the module documentation.
pub struct LedgerPayouts {
    ledger: Arc<dyn Ledger>,
    auditor: Keypair,
    source: Pubkey,
    destinations: HashMap<Pubkey, Pubkey>,
    default_to_payment_account: bool,
    mint: Option<PaymentMint>,
    /// Vendors of each signed transaction, in transfer order (bounded, see [`REMEMBERED_PAYOUTS`]).
    signed: HashMap<Signature, Vec<Pubkey>>,
    signed_order: VecDeque<Signature>,
}

impl std::fmt::Debug for LedgerPayouts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerPayouts")
            .field("auditor", &self.auditor.pubkey())
            .field("source", &self.source)
            .field("destinations", &self.destinations.len())
            .field(
                "default_to_payment_account",
                &self.default_to_payment_account,
            )
            .finish()
    }
}

fn chain_error(what: &str, error: impl std::fmt::Display) -> PayoutError {
    PayoutError(format!("{what}: {error}"))
}

impl LedgerPayouts {
    /// Pays from `source` (an SPL token account of the payment mint owned by `auditor`) to
    /// `destinations[vendor]`; a vendor not in the map has no known destination
    /// ([`DestinationProblem::Unknown`]).
    pub fn new(
        ledger: Arc<dyn Ledger>,
        auditor: Keypair,
        source: Pubkey,
        destinations: HashMap<Pubkey, Pubkey>,
    ) -> Self {
        LedgerPayouts {
            ledger,
            auditor,
            source,
            destinations,
            default_to_payment_account: false,
            mint: None,
            signed: HashMap::new(),
            signed_order: VecDeque::new(),
        }
    }

    /// Like [`LedgerPayouts::new`], but a vendor not in `destinations` is paid into its payment
    /// account (its associated token account of `Config.mint`, [`payment_account`]).
    pub fn with_payment_accounts(
        ledger: Arc<dyn Ledger>,
        auditor: Keypair,
        source: Pubkey,
        destinations: HashMap<Pubkey, Pubkey>,
    ) -> Self {
        LedgerPayouts {
            default_to_payment_account: true,
            ..Self::new(ledger, auditor, source, destinations)
        }
    }

    /// The auditor paying.
    pub fn auditor(&self) -> Pubkey {
        self.auditor.pubkey()
    }

    /// The auditor's token account paid from.
    pub fn source(&self) -> Pubkey {
        self.source
    }

    fn payment_mint(&mut self) -> Result<PaymentMint, PayoutError> {
        if let Some(mint) = self.mint {
            return Ok(mint);
        }
        let config = fetch_config(self.ledger.as_ref())
            .map_err(|e| chain_error("cannot read the program's Config", e))?
            .ok_or_else(|| {
                PayoutError("the µPIB program is not initialised on this ledger (no Config)".into())
            })?;
        let account = self
            .ledger
            .get_account(&config.mint)
            .map_err(|e| chain_error("cannot read the payment mint", e))?
            .ok_or_else(|| {
                PayoutError(format!("the payment mint {} does not exist", config.mint))
            })?;
        let state = spl_token_interface::state::Mint::unpack(&account.data).map_err(|e| {
            PayoutError(format!(
                "the payment mint {} is not an SPL mint: {e}",
                config.mint
            ))
        })?;
        let mint = PaymentMint {
            address: config.mint,
            decimals: state.decimals,
        };
        self.mint = Some(mint);
        Ok(mint)
    }

    /// Where `vendor` is paid: its entry in the map, else (if enabled) its payment account.
    fn destination(&mut self, vendor: &Pubkey) -> Result<Option<Pubkey>, PayoutError> {
        if let Some(destination) = self.destinations.get(vendor) {
            return Ok(Some(*destination));
        }
        if !self.default_to_payment_account {
            return Ok(None);
        }
        let mint = self.payment_mint()?;
        Ok(Some(payment_account(vendor, &mint.address)))
    }

    /// The settlement transaction's instructions for `batch` (record first, then one transfer
    /// per item in item order), and the vendors in transfer order.
    fn instructions(
        &mut self,
        batch: &PayoutBatch,
    ) -> Result<(Vec<Instruction>, Vec<Pubkey>), PayoutError> {
        let auditor = self.auditor.pubkey();
        let mint = self.payment_mint()?;
        let mut instructions = Vec::with_capacity(batch.items.len().saturating_add(1));
        instructions.push(ix::payout_record(
            &auditor,
            batch.seq,
            batch.digest(&auditor),
        ));
        let mut vendors = Vec::with_capacity(batch.items.len());
        for item in &batch.items {
            let destination = self.destination(&item.vendor)?.ok_or_else(|| {
                PayoutError(format!(
                    "vendor {} has no payout account; add it to the payout accounts or leave the vendor out of the batch",
                    item.vendor
                ))
            })?;
            instructions.push(
                ix::spl_transfer_checked(
                    &self.source,
                    &mint.address,
                    &destination,
                    &auditor,
                    item.amount,
                    mint.decimals,
                )
                .map_err(|e| chain_error("cannot build a transfer", e))?,
            );
            vendors.push(item.vendor);
        }
        Ok((instructions, vendors))
    }

    fn remember(&mut self, signature: Signature, vendors: Vec<Pubkey>) {
        if self.signed.insert(signature, vendors).is_none() {
            self.signed_order.push_back(signature);
        }
        while self.signed_order.len() > REMEMBERED_PAYOUTS {
            if let Some(old) = self.signed_order.pop_front() {
                self.signed.remove(&old);
            }
        }
    }

    /// The vendor whose transfer is instruction `index` of the transaction `signature`: from
    /// the transactions signed by this instance, else from the destination map.
    fn vendor_of(&self, transaction: &Transaction, index: u8) -> Option<Pubkey> {
        let transfer = usize::from(index).checked_sub(1)?;
        if let Some(vendors) = transaction
            .signatures
            .first()
            .and_then(|s| self.signed.get(s))
        {
            return vendors.get(transfer).copied();
        }
        // Signed by another instance (e.g. before a restart): match the transfer's destination
        // (account 2 of `transfer_checked`) against the explicit map.
        let message = &transaction.message;
        let instruction = message.instructions.get(usize::from(index))?;
        let destination = message
            .account_keys
            .get(usize::from(*instruction.accounts.get(2)?))?;
        self.destinations
            .iter()
            .find(|(_, account)| *account == destination)
            .map(|(vendor, _)| *vendor)
    }

    /// `(seq, digest)` of the transaction's `payout_record`, if it starts with one of ours.
    fn recorded_batch(transaction: &Transaction) -> Option<(u64, [u8; 32])> {
        use anchor_lang::{AnchorDeserialize, Discriminator};
        let message = &transaction.message;
        let first = message.instructions.first()?;
        let program = message
            .account_keys
            .get(usize::from(first.program_id_index))?;
        if *program != mupib::ID {
            return None;
        }
        let mut data = first
            .data
            .strip_prefix(mupib::instruction::PayoutRecord::DISCRIMINATOR)?;
        let args = mupib::instructions::PayoutRecordArgs::deserialize(&mut data).ok()?;
        Some((args.seq, args.digest))
    }

    fn fetch_record(&self) -> Result<PayoutRecord, PayoutError> {
        let auditor = self.auditor.pubkey();
        let registration = fetch_auditor_registration(self.ledger.as_ref(), &auditor)
            .map_err(|e| chain_error("cannot read the auditor's registration", e))?
            .ok_or_else(|| {
                PayoutError(format!(
                    "auditor {auditor} is not registered with the µPIB program (no payout record)"
                ))
            })?;
        Ok(PayoutRecord {
            next_seq: registration.payout_seq,
            last_digest: registration.payout_digest,
        })
    }

    fn classify(&self, transaction: &Transaction, error: LedgerError) -> SendOutcome {
        match error {
            LedgerError::Transaction {
                error: TransactionError::AlreadyProcessed,
                ..
            } => self.already_processed(transaction),
            LedgerError::Transaction {
                error,
                instruction_index,
                custom_code,
                ..
            } => {
                let vendor = instruction_index.and_then(|i| self.vendor_of(transaction, i));
                let mut reason = error.to_string();
                if instruction_index == Some(0) {
                    reason.push_str(" in payout_record");
                }
                if let Some(code) = custom_code {
                    reason.push_str(&format!(" (program error code {code})"));
                }
                if custom_code == Some(u32::from(mupib::error::MupibError::PayoutSeqMismatch)) {
                    reason.push_str(": the batch's seq is already consumed or not yet next; read the payout record");
                }
                if let Some(vendor) = vendor {
                    reason.push_str(&format!(" in the transfer to vendor {vendor}"));
                }
                SendOutcome::Failed { reason, vendor }
            }
            // Refused before any node saw it: these bytes can never execute.
            error @ (LedgerError::TransactionTooLarge { .. } | LedgerError::Signing(_)) => {
                SendOutcome::Failed {
                    reason: error.to_string(),
                    vendor: None,
                }
            }
            // Transport, timeouts, the ledger's own storage: it may or may not have executed.
            other => SendOutcome::Unknown {
                reason: other.to_string(),
            },
        }
    }

    /// A ledger that answers a duplicate with `AlreadyProcessed` instead of the first outcome:
    /// the record says whether this batch landed.
    fn already_processed(&self, transaction: &Transaction) -> SendOutcome {
        let Some((seq, digest)) = Self::recorded_batch(transaction) else {
            return SendOutcome::Failed {
                reason: "already processed, and not a settlement transaction".into(),
                vendor: None,
            };
        };
        match self.fetch_record() {
            Ok(record)
                if record.next_seq == seq.saturating_add(1) && record.last_digest == digest =>
            {
                SendOutcome::Executed
            }
            Ok(record) => SendOutcome::Failed {
                reason: format!(
                    "already processed without recording batch {seq} (the record's next seq is {})",
                    record.next_seq
                ),
                vendor: None,
            },
            Err(error) => SendOutcome::Unknown {
                reason: format!("already processed; {error}"),
            },
        }
    }
}

impl PayoutSender for LedgerPayouts {
    fn record(&mut self) -> Result<PayoutRecord, PayoutError> {
        self.fetch_record()
    }

    fn check_destination(
        &mut self,
        vendor: &Pubkey,
    ) -> Result<Result<(), DestinationProblem>, PayoutError> {
        let Some(destination) = self.destination(vendor)? else {
            return Ok(Err(DestinationProblem::Unknown));
        };
        let mint = self.payment_mint()?;
        let account_name = destination.to_string();
        let Some(account) = self
            .ledger
            .get_account(&destination)
            .map_err(|e| chain_error("cannot read a payout account", e))?
        else {
            return Ok(Err(DestinationProblem::Missing {
                account: account_name,
            }));
        };
        let unusable = |detail: String| {
            Ok(Err(DestinationProblem::Unusable {
                account: account_name.clone(),
                detail,
            }))
        };
        if account.owner != spl_token_interface::ID {
            return unusable(format!(
                "it is owned by {}, not the SPL Token program",
                account.owner
            ));
        }
        let state = match spl_token_interface::state::Account::unpack(&account.data) {
            Ok(state) => state,
            Err(e) => return unusable(format!("it is not an initialised token account ({e})")),
        };
        if state.mint != mint.address {
            return unusable(format!(
                "it holds mint {}, not the payment mint {}",
                state.mint, mint.address
            ));
        }
        if state.is_frozen() {
            return Ok(Err(DestinationProblem::Frozen {
                account: account_name,
            }));
        }
        Ok(Ok(()))
    }

    fn funds(&mut self) -> Result<u64, PayoutError> {
        crate::program::accounts::token_balance(self.ledger.as_ref(), &self.source)
            .map_err(|e| chain_error("cannot read the auditor's token account", e))
    }

    fn sign(&mut self, batch: &PayoutBatch) -> Result<SignedPayout, PayoutError> {
        if batch.items.is_empty() {
            return Err(PayoutError(format!(
                "payout batch {} has no items: there is nothing to sign",
                batch.seq
            )));
        }
        let auditor = self.auditor.pubkey();
        let (instructions, vendors) = self.instructions(batch)?;
        let blockhash = self
            .ledger
            .latest_blockhash()
            .map_err(|e| chain_error("cannot get a blockhash", e))?;
        let mut transaction = Transaction::new_with_payer(&instructions, Some(&auditor));
        transaction
            .try_sign(&[&self.auditor], blockhash)
            .map_err(|e| chain_error("cannot sign the settlement transaction", e))?;
        check_transaction_size(&transaction).map_err(|e| {
            PayoutError(format!(
                "payout batch {} of {} vendors does not fit one transaction ({e}); pay fewer vendors per batch",
                batch.seq,
                batch.items.len()
            ))
        })?;
        let bytes = bincode::serialize(&transaction)
            .map_err(|e| chain_error("cannot serialize the settlement transaction", e))?;
        let signature = transaction.signatures.first().copied().unwrap_or_default();
        self.remember(signature, vendors);
        Ok(SignedPayout {
            signature: signature.to_string(),
            transaction: bytes,
        })
    }

    fn send(&mut self, payout: &SignedPayout) -> SendOutcome {
        let transaction = match decode(payout) {
            Ok(transaction) => transaction,
            Err(error) => {
                return SendOutcome::Failed {
                    reason: error.0,
                    vendor: None,
                }
            }
        };
        match self.ledger.send_transaction(&transaction) {
            Ok(_receipt) => SendOutcome::Executed,
            Err(error) => self.classify(&transaction, error),
        }
    }

    fn may_still_land(&mut self, payout: &SignedPayout) -> Result<bool, PayoutError> {
        let transaction = decode(payout)?;
        let blockhash: Hash = transaction.message.recent_blockhash;
        self.ledger
            .is_blockhash_valid(&blockhash)
            .map_err(|e| chain_error("cannot check the transaction's blockhash", e))
    }
}

/// The transaction inside a [`SignedPayout`].
fn decode(payout: &SignedPayout) -> Result<Transaction, PayoutError> {
    bincode::deserialize(&payout.transaction).map_err(|e| {
        PayoutError(format!(
            "signed payout {} is not a serialized transaction: {e}",
            payout.signature
        ))
    })
}

/// The serialized size of a settlement transaction paying `vendors` vendors (distinct
/// destinations), as [`LedgerPayouts::sign`] builds it.
///
/// # Errors
/// [`PayoutError`] if the transaction cannot be built or serialized.
pub fn settlement_transaction_size(vendors: usize) -> Result<usize, PayoutError> {
    let auditor = Pubkey::new_unique();
    let mint = Pubkey::new_unique();
    let source = Pubkey::new_unique();
    let mut instructions = vec![ix::payout_record(&auditor, 0, [0xAB; 32])];
    for _ in 0..vendors {
        instructions.push(
            ix::spl_transfer_checked(&source, &mint, &Pubkey::new_unique(), &auditor, u64::MAX, 6)
                .map_err(|e| chain_error("cannot build a transfer", e))?,
        );
    }
    crate::program::packer::transaction_size(&instructions, &auditor)
        .map_err(|e| chain_error("cannot measure the settlement transaction", e))
}

/// The most vendors one settlement transaction can pay within [`PACKET_DATA_SIZE`].
///
/// # Errors
/// [`PayoutError`] if a transaction cannot be measured.
pub fn max_vendors_per_transaction() -> Result<usize, PayoutError> {
    let mut vendors = 0usize;
    while settlement_transaction_size(vendors.saturating_add(1))? <= PACKET_DATA_SIZE {
        vendors = vendors.saturating_add(1);
    }
    Ok(vendors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mupib_protocol::payout::MAX_VENDORS_PER_BATCH;

    #[test]
    fn a_batch_of_max_vendors_fits_one_transaction() {
        let size = settlement_transaction_size(MAX_VENDORS_PER_BATCH).unwrap();
        assert!(
            size <= PACKET_DATA_SIZE,
            "{MAX_VENDORS_PER_BATCH} vendors: {size} bytes"
        );
        let most = max_vendors_per_transaction().unwrap();
        println!(
            "settlement transaction: {MAX_VENDORS_PER_BATCH} vendors = {size} bytes; at most {most} vendors fit"
        );
        assert!(most >= MAX_VENDORS_PER_BATCH);
        assert!(settlement_transaction_size(most + 1).unwrap() > PACKET_DATA_SIZE);
    }

    #[test]
    fn the_recorded_batch_is_read_back_from_the_transaction() {
        let auditor = Keypair::new();
        let record = ix::payout_record(&auditor.pubkey(), 7, [3; 32]);
        let transaction = Transaction::new_with_payer(&[record], Some(&auditor.pubkey()));
        assert_eq!(
            LedgerPayouts::recorded_batch(&transaction),
            Some((7, [3; 32]))
        );
        let other = Transaction::new_with_payer(
            &[solana_system_interface::instruction::transfer(
                &auditor.pubkey(),
                &Pubkey::new_unique(),
                1,
            )],
            Some(&auditor.pubkey()),
        );
        assert_eq!(LedgerPayouts::recorded_batch(&other), None);
    }
}

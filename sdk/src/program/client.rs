//! Multi-transaction operations on the µPIB program through a [`Ledger`]: SPL setup, publishing
//! a whole batch (create, publish in the largest chunks that fit, seal) and verifying a whole
//! block (open, packed verification chunks, finalize). The bank, the auditor engine, the CLI
//! and the demo share these.

use mupib::instructions::{BatchCreateArgs, BlockOpenArgs};
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::{Keypair, Signer};

use super::accounts::{fetch_block, BlockState, FetchError};
use super::instructions::{self as ix, SplBuildError, SPL_MINT_LEN, SPL_TOKEN_ACCOUNT_LEN};
use super::packer::{
    pack_block, transaction_size, BlockEntry, PackError, VerifyAccounts, PACKET_DATA_SIZE,
};
use super::pda;
use crate::ledger::{Ledger, LedgerError, Receipt};

/// Errors of the multi-transaction operations.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A transaction or a read failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// An account did not decode.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The block could not be packed.
    #[error(transparent)]
    Pack(#[from] PackError),
    /// An SPL instruction could not be built.
    #[error(transparent)]
    Spl(#[from] SplBuildError),
    /// An account that must exist after a successful transaction is missing.
    #[error("{0} does not exist on the ledger after the transaction that creates it")]
    Missing(&'static str),
    /// A count does not fit its type.
    #[error("{0} is out of range")]
    OutOfRange(&'static str),
}

/// Creates an SPL mint (`mint` is a new keypair) with `authority` as mint authority.
pub fn create_mint(
    ledger: &dyn Ledger,
    payer: &Keypair,
    mint: &Keypair,
    authority: &Pubkey,
    decimals: u8,
) -> Result<Receipt, ClientError> {
    let rent = ledger.minimum_balance_for_rent_exemption(SPL_MINT_LEN)?;
    let instructions =
        ix::spl_create_mint(&payer.pubkey(), &mint.pubkey(), authority, decimals, rent)?;
    Ok(ledger.send_instructions(&instructions, &payer.pubkey(), &[payer, mint])?)
}

/// Creates an SPL token account (`account` is a new keypair) of `mint` owned by `owner`.
pub fn create_token_account(
    ledger: &dyn Ledger,
    payer: &Keypair,
    account: &Keypair,
    mint: &Pubkey,
    owner: &Pubkey,
) -> Result<Receipt, ClientError> {
    let rent = ledger.minimum_balance_for_rent_exemption(SPL_TOKEN_ACCOUNT_LEN)?;
    let instructions =
        ix::spl_create_token_account(&payer.pubkey(), &account.pubkey(), mint, owner, rent)?;
    Ok(ledger.send_instructions(&instructions, &payer.pubkey(), &[payer, account])?)
}

/// Mints `amount` of `mint` to `account`; `authority` signs and pays.
pub fn mint_to(
    ledger: &dyn Ledger,
    authority: &Keypair,
    mint: &Pubkey,
    account: &Pubkey,
    amount: u64,
) -> Result<Receipt, ClientError> {
    let instruction = ix::spl_mint_to(mint, account, &authority.pubkey(), amount)?;
    Ok(ledger.send_instructions(&[instruction], &authority.pubkey(), &[authority])?)
}

/// The largest number of commitments one `batch_publish` transaction carries (measured).
pub fn commitments_per_publish_transaction(
    bank: &Pubkey,
    batch_id: u64,
) -> Result<usize, ClientError> {
    let mut count = 1usize;
    loop {
        let next = count
            .checked_add(1)
            .ok_or(ClientError::OutOfRange("commitment count"))?;
        let instruction = ix::batch_publish(bank, batch_id, 0, vec![[0u8; 16]; next]);
        if transaction_size(&[instruction], bank)? > PACKET_DATA_SIZE {
            return Ok(count);
        }
        count = next;
    }
}

/// What publishing a batch did.
#[derive(Debug)]
pub struct PublishOutcome {
    /// The batch PDA.
    pub batch: Pubkey,
    /// The escrow PDA.
    pub escrow: Pubkey,
    /// Receipts of every transaction, in order (create, publish chunks, seal).
    pub receipts: Vec<Receipt>,
}

/// Creates, funds, publishes (in the largest chunks that fit a transaction) and seals a batch
/// whose commitments are `commitments` (serial order). `args.token_count` must equal
/// `commitments.len()`.
pub fn publish_batch(
    ledger: &dyn Ledger,
    bank: &Keypair,
    mint: &Pubkey,
    bank_token: &Pubkey,
    args: BatchCreateArgs,
    commitments: &[[u8; 16]],
) -> Result<PublishOutcome, ClientError> {
    let bank_key = bank.pubkey();
    let batch_id = args.batch_id;
    if usize::try_from(args.token_count).ok() != Some(commitments.len()) {
        return Err(ClientError::OutOfRange(
            "token_count (must equal the number of commitments)",
        ));
    }
    let mut receipts = Vec::new();
    receipts.push(ledger.send_instructions(
        &[ix::batch_create(&bank_key, mint, bank_token, args)],
        &bank_key,
        &[bank],
    )?);
    let per_tx = commitments_per_publish_transaction(&bank_key, batch_id)?;
    let mut start = 0u32;
    for chunk in commitments.chunks(per_tx) {
        let instruction = ix::batch_publish(&bank_key, batch_id, start, chunk.to_vec());
        receipts.push(ledger.send_instructions(&[instruction], &bank_key, &[bank])?);
        let len =
            u32::try_from(chunk.len()).map_err(|_| ClientError::OutOfRange("publish chunk"))?;
        start = start
            .checked_add(len)
            .ok_or(ClientError::OutOfRange("serial"))?;
    }
    receipts.push(ledger.send_instructions(
        &[ix::batch_seal(&bank_key, batch_id)],
        &bank_key,
        &[bank],
    )?);
    let batch = pda::batch(&bank_key, batch_id).0;
    Ok(PublishOutcome {
        batch,
        escrow: pda::escrow(&batch).0,
        receipts,
    })
}

/// What verifying a block did.
#[derive(Debug)]
pub struct VerifyOutcome {
    /// The block PDA.
    pub block: Pubkey,
    /// The block as the chain left it (decisions, counts, amount paid).
    pub state: BlockState,
    /// Number of verification transactions sent.
    pub chunk_transactions: usize,
    /// Receipts of every transaction, in order (open, chunks, finalize).
    pub receipts: Vec<Receipt>,
}

/// Opens block `block_id` for `user`, verifies `entries` in packed chunks and finalizes it.
pub fn verify_block(
    ledger: &dyn Ledger,
    auditor: &Keypair,
    mint: &Pubkey,
    auditor_token: &Pubkey,
    block_id: u64,
    user: &Pubkey,
    entries: &[BlockEntry],
) -> Result<VerifyOutcome, ClientError> {
    let auditor_key = auditor.pubkey();
    let token_count =
        u32::try_from(entries.len()).map_err(|_| ClientError::OutOfRange("block size"))?;
    let mut receipts = Vec::new();
    let open = ix::block_open(
        &auditor_key,
        BlockOpenArgs {
            block_id,
            user: *user,
            token_count,
        },
    );
    receipts.push(ledger.send_instructions(&[open], &auditor_key, &[auditor])?);
    let accounts = VerifyAccounts {
        auditor: auditor_key,
        block_id,
        mint: *mint,
        auditor_token: *auditor_token,
    };
    let chunks = pack_block(&accounts, 0, entries)?;
    for chunk in &chunks {
        receipts.push(ledger.send_instructions(
            std::slice::from_ref(&chunk.instruction),
            &auditor_key,
            &[auditor],
        )?);
    }
    receipts.push(ledger.send_instructions(
        &[ix::block_finalize(&auditor_key, block_id)],
        &auditor_key,
        &[auditor],
    )?);
    let block = pda::block(&auditor_key, block_id).0;
    let state = fetch_block(ledger, &block)?.ok_or(ClientError::Missing("the block"))?;
    Ok(VerifyOutcome {
        block,
        state,
        chunk_transactions: chunks.len(),
        receipts,
    })
}

//! Program cost figures for issue 2, measured from real transactions and accounts on the
//! embedded ledger (not constants):
//! - tokens per verification transaction with 1, 2 and 4 distinct batches (and its size);
//! - rent bytes (and lamports) per token of a full batch, with and without its escrow;
//! - lamports fee per verified token (fee payer's balance change / tokens in the transaction);
//! - account bytes touched per token (data loaded by a verification transaction, and data
//!   bytes that changed, per token);
//! - SHA-256 calls per token;
//! - the settlement transaction (payout record + one `transfer_checked` per vendor): its size
//!   at `MAX_VENDORS_PER_BATCH` vendors and the most vendors that fit 1232 bytes.
//!
//! Run: `cargo bench -p mupib-chain --bench program_costs`.
#![allow(clippy::unwrap_used)]

use mupib::constants::MAX_BATCH_TOKENS;
use mupib_chain::deploy::Deployment;
use mupib_chain::ledger::{EmbeddedLedger, Ledger};
use mupib_chain::payouts::{max_vendors_per_transaction, settlement_transaction_size};
use mupib_chain::program::packer::{pack_block, VerifyAccounts};
use mupib_chain::program::pda;
use mupib_protocol::token::Token;
use mupib_protocol::token::TokenRef;
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::Signer;

const VALUE: u64 = 1_000;

/// Account-storage overhead the rent formula adds to every account's data length.
const ACCOUNT_STORAGE_OVERHEAD: u64 = 128;

fn bytes_changed(before: &[u8], after: &[u8]) -> usize {
    before.iter().zip(after).filter(|(a, b)| a != b).count() + before.len().abs_diff(after.len())
}

struct ChunkFigures {
    tokens: u32,
    size: usize,
    fee: u64,
    loaded_bytes: usize,
    changed_bytes: usize,
}

/// Sends the first packed chunk of a block whose tokens come round-robin from `batches` batches
/// and measures it.
fn measure_chunk(
    ledger: &EmbeddedLedger,
    d: &Deployment,
    block_id: u64,
    batches: &[Vec<Token>],
) -> ChunkFigures {
    let per_batch = batches[0].len();
    let mut entries: Vec<TokenRef> = Vec::new();
    for i in 0..per_batch {
        for batch in batches {
            entries.push(batch[i].token_ref());
        }
    }
    let auditor = d.auditor.pubkey();
    let accounts = VerifyAccounts {
        auditor,
        block_id,
        mint: d.mint,
        auditor_token: d.auditor_token,
    };
    let chunks = pack_block(&accounts, 0, &entries).unwrap();
    let chunk = &chunks[0];
    let token_count = u32::try_from(entries.len()).unwrap();
    let open = mupib_chain::program::instructions::block_open(
        &auditor,
        mupib::instructions::BlockOpenArgs {
            block_id,
            user: Pubkey::new_unique(),
            token_count,
        },
    );
    ledger
        .send_instructions(&[open], &auditor, &[&d.auditor])
        .unwrap();
    let keys: Vec<Pubkey> = chunk
        .instruction
        .accounts
        .iter()
        .map(|m| m.pubkey)
        .collect();
    let before: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| {
            ledger
                .get_account(k)
                .unwrap()
                .map(|a| a.data)
                .unwrap_or_default()
        })
        .collect();
    let lamports_before = ledger.balance(&auditor).unwrap();
    ledger
        .send_instructions(
            std::slice::from_ref(&chunk.instruction),
            &auditor,
            &[&d.auditor],
        )
        .unwrap();
    let fee = lamports_before - ledger.balance(&auditor).unwrap();
    let after: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| {
            ledger
                .get_account(k)
                .unwrap()
                .map(|a| a.data)
                .unwrap_or_default()
        })
        .collect();
    // Programs (executable accounts) are loaded too, but hold no per-token data; count data
    // accounts only.
    let loaded_bytes = keys
        .iter()
        .zip(&before)
        .filter(|(k, _)| **k != spl_token_interface::ID)
        .map(|(_, data)| data.len())
        .sum();
    let changed_bytes = before
        .iter()
        .zip(&after)
        .map(|(b, a)| bytes_changed(b, a))
        .sum();
    ChunkFigures {
        tokens: chunk.len,
        size: chunk.transaction_size,
        fee,
        loaded_bytes,
        changed_bytes,
    }
}

fn main() {
    let ledger = EmbeddedLedger::ephemeral().unwrap();
    let d = Deployment::setup(&ledger, 6, 10_000 * VALUE).unwrap();

    println!("µPIB program costs (embedded ledger: the real runtime, program executed natively)");
    println!();

    // Rent of a full batch, from the real accounts.
    let (_, _) = d
        .issue_batch(&ledger, 0, MAX_BATCH_TOKENS, VALUE, true)
        .unwrap();
    let batch = pda::batch(&d.bank.pubkey(), &d.auditor.pubkey(), 0).0;
    let escrow = pda::escrow(&batch).0;
    let batch_account = ledger.get_account(&batch).unwrap().unwrap();
    let escrow_account = ledger.get_account(&escrow).unwrap().unwrap();
    let tokens = f64::from(MAX_BATCH_TOKENS);
    let batch_len = batch_account.data.len() as u64;
    let escrow_len = escrow_account.data.len() as u64;
    println!(
        "rent deposit of a full batch ({MAX_BATCH_TOKENS} tokens; reclaimable by batch_close):"
    );
    println!(
        "  batch account: {batch_len} data bytes = {:.2} bytes/token ({:.2} with the 128-byte account overhead), {} lamports = {:.1} lamports/token",
        batch_len as f64 / tokens,
        (batch_len + ACCOUNT_STORAGE_OVERHEAD) as f64 / tokens,
        batch_account.lamports,
        batch_account.lamports as f64 / tokens
    );
    println!(
        "  with the escrow ({escrow_len} data bytes): {:.2} bytes/token ({:.2} with overheads), {:.1} lamports/token",
        (batch_len + escrow_len) as f64 / tokens,
        (batch_len + escrow_len + 2 * ACCOUNT_STORAGE_OVERHEAD) as f64 / tokens,
        (batch_account.lamports + escrow_account.lamports) as f64 / tokens
    );
    println!();

    // Verification transactions with 1, 2 and 4 distinct batches.
    println!("verification transactions (first packed chunk of a block, sent and measured):");
    println!("  batches  tokens/tx  tx bytes  fee/token (lamports)  data bytes loaded/token  data bytes changed/token");
    let mut next_batch = 1u64;
    for (block_id, batch_count) in [(1u64, 1usize), (2, 2), (3, 4)] {
        let mut batches = Vec::new();
        for _ in 0..batch_count {
            let (tokens, _) = d.issue_batch(&ledger, next_batch, 48, VALUE, true).unwrap();
            batches.push(tokens);
            next_batch += 1;
        }
        let f = measure_chunk(&ledger, &d, block_id, &batches);
        let tokens = f64::from(f.tokens);
        println!(
            "  {batch_count:>7}  {:>9}  {:>8}  {:>20.1}  {:>23.1}  {:>24.2}",
            f.tokens,
            f.size,
            f.fee as f64 / tokens,
            f.loaded_bytes as f64 / tokens,
            f.changed_bytes as f64 / tokens
        );
    }
    println!();
    println!("SHA-256 calls per token: 1 (mupib::commitment over the 19-byte tag + 16-byte digest, once per");
    println!("  undecided position; not metered natively — the program's block_verify_chunk path has no other hash)");
    println!();

    // Settlement: one transaction per batch of vendors.
    let vendors = mupib_protocol::payout::MAX_VENDORS_PER_BATCH;
    println!(
        "settlement transaction (payout_record + transfer_checked per vendor, auditor signs alone):"
    );
    println!(
        "  {vendors} vendors (MAX_VENDORS_PER_BATCH): {} bytes; at most {} vendors fit 1232 bytes",
        settlement_transaction_size(vendors).unwrap(),
        max_vendors_per_transaction().unwrap()
    );
}

//! Limits that bind on the real chain: account size of a PDA created by the program, the
//! 1232-byte transaction, argument ranges. Figures are printed (`--nocapture`), not timed.

use mupib::constants::{MAX_BATCH_TOKENS, MAX_BLOCK_TOKENS, MAX_PDA_ACCOUNT_SIZE};
use mupib::error::MupibError;
use mupib::instructions::BlockVerifyChunkArgs;
use mupib::state::{Batch, Block};
use mupib_chain::program::instructions as ix;
use mupib_chain::program::pda;
use mupib_tests::{batch_ref, digests, entry, Harness};
use solana_sdk::hash::Hash;
use solana_sdk::signature::{Keypair, Signer};
use solana_sdk::transaction::Transaction;

/// Largest serialized transaction the network accepts.
const PACKET_DATA_SIZE: usize = 1232;

#[tokio::test]
async fn batch_token_count_outside_one_to_max_is_refused() {
    let mut h = Harness::start().await;
    let auditor = h.auditor().await;
    let bank = h.bank(1_000_000).await;
    for count in [0, MAX_BATCH_TOKENS + 1, u32::MAX] {
        let args = h.batch_args(&auditor.pubkey(), 1, count, 1).await;
        h.create_batch(&bank, args).await.expect_error(
            MupibError::BatchTokenCountOutOfRange,
            "batch size out of range",
        );
    }
    assert!(h
        .account(&pda::batch(&bank.pubkey(), &auditor.pubkey(), 1).0)
        .await
        .is_none());
    assert_eq!(h.token_balance(&bank.token).await, 1_000_000);
}

#[tokio::test]
async fn largest_batch_fits_the_cpi_account_size_limit_and_rent_per_token_is_reported() {
    let mut h = Harness::start().await;
    let auditor = h.auditor().await;
    let bank = h.bank(1_000_000).await;
    let args = h
        .batch_args(&auditor.pubkey(), 1, MAX_BATCH_TOKENS, 1)
        .await;
    h.create_batch(&bank, args).await.result.unwrap();
    let batch = pda::batch(&bank.pubkey(), &auditor.pubkey(), 1).0;
    let escrow = pda::escrow(&batch).0;
    let snapshot = h.batch(&batch).await;
    assert_eq!(snapshot.data_len, Batch::space(MAX_BATCH_TOKENS));
    assert!(snapshot.data_len <= MAX_PDA_ACCOUNT_SIZE);
    assert!(Batch::space(MAX_BATCH_TOKENS + 1) > MAX_PDA_ACCOUNT_SIZE);

    let escrow_len = h.account(&escrow).await.unwrap().data.len();
    let batch_rent = h.lamports(&batch).await;
    let escrow_rent = h.lamports(&escrow).await;
    let tokens = f64::from(MAX_BATCH_TOKENS);
    // Rent is charged on data + 128 bytes of account overhead.
    let batch_bytes = (snapshot.data_len + 128) as f64;
    let with_escrow = (snapshot.data_len + 128 + escrow_len + 128) as f64;
    println!(
        "full batch of {MAX_BATCH_TOKENS} tokens: {} data bytes; rent bytes per token {:.2} \
         (batch only), {:.2} (escrow amortised); lamports per token {:.1} / {:.1}",
        snapshot.data_len,
        batch_bytes / tokens,
        with_escrow / tokens,
        batch_rent as f64 / tokens,
        (batch_rent + escrow_rent) as f64 / tokens,
    );
    assert!(
        with_escrow / tokens <= 17.0,
        "goal: at most 17 rent bytes per token"
    );
}

#[tokio::test]
async fn block_token_count_outside_one_to_max_is_refused() {
    let mut h = Harness::start().await;
    let auditor = h.auditor().await;
    for count in [0, MAX_BLOCK_TOKENS + 1] {
        h.open_block(&auditor, 1, count).await.expect_error(
            MupibError::BlockTokenCountOutOfRange,
            "block size out of range",
        );
    }
    assert!(h
        .account(&pda::block(&auditor.pubkey(), 1).0)
        .await
        .is_none());
    h.open_block(&auditor, 1, MAX_BLOCK_TOKENS)
        .await
        .result
        .unwrap();
    let block = h.block(&auditor.pubkey(), 1).await;
    assert_eq!(block.data_len, Block::space(MAX_BLOCK_TOKENS));
    assert!(block.data_len <= MAX_PDA_ACCOUNT_SIZE);
}

#[tokio::test]
async fn zero_value_and_bad_expiry_are_refused() {
    let mut h = Harness::start().await;
    let auditor = h.auditor().await;
    let bank = h.bank(1_000).await;
    let mut args = h.batch_args(&auditor.pubkey(), 1, 2, 0).await;
    h.create_batch(&bank, args.clone())
        .await
        .expect_error(MupibError::ZeroTokenValue, "zero token value");
    args.value = 1;
    args.expires_at = args.issued_at;
    h.create_batch(&bank, args.clone())
        .await
        .expect_error(MupibError::InvalidExpiry, "expiry not after issue");
    let now = h.now().await;
    args.issued_at = now - 100;
    args.expires_at = now - 1;
    h.create_batch(&bank, args)
        .await
        .expect_error(MupibError::InvalidExpiry, "already expired");
}

/// Serialized size of a verification transaction of `entries` entries over `pairs` batches,
/// paid and signed by the auditor alone.
fn verification_tx_size(entries: usize, pairs: usize) -> usize {
    let auditor = Keypair::new();
    let refs: Vec<_> = (0..pairs)
        .map(|i| mupib_chain::program::instructions::BatchRef {
            bank: solana_sdk::pubkey::Pubkey::new_unique(),
            auditor: auditor.pubkey(),
            batch_id: i as u64,
        })
        .collect();
    let instruction = ix::block_verify_chunk(
        &auditor.pubkey(),
        1,
        &solana_sdk::pubkey::Pubkey::new_unique(),
        &solana_sdk::pubkey::Pubkey::new_unique(),
        BlockVerifyChunkArgs {
            start: 0,
            entries: (0..entries)
                .map(|i| entry((i % pairs.max(1)) as u8, i as u32, [0xAB; 16]))
                .collect(),
        },
        &refs,
    );
    let tx = Transaction::new_signed_with_payer(
        &[instruction],
        Some(&auditor.pubkey()),
        &[&auditor],
        Hash::new_unique(),
    );
    bincode::serialize(&tx).unwrap().len()
}

fn max_entries(pairs: usize) -> usize {
    (1..200)
        .take_while(|n| verification_tx_size(*n, pairs) <= PACKET_DATA_SIZE)
        .last()
        .unwrap_or(0)
}

#[tokio::test]
async fn largest_verification_chunk_fits_one_transaction_and_pays_every_token() {
    for pairs in [1, 2, 4] {
        println!(
            "tokens per block-verification transaction with {pairs} batch(es): {}",
            max_entries(pairs)
        );
    }
    let max = max_entries(1);
    assert!(
        max >= 32,
        "goal: at least 32 tokens per transaction, got {max}"
    );
    assert!(verification_tx_size(max + 1, 1) > PACKET_DATA_SIZE);

    // Execute a chunk of exactly that size: every token decided and paid in one transaction.
    let mut h = Harness::start().await;
    let bank = h.bank(1_000_000).await;
    let auditor = h.auditor().await;
    let count = u32::try_from(max).unwrap();
    let tokens = digests(1, count);
    h.published_batch(&bank, &auditor, 1, &tokens, 3, true)
        .await;
    h.open_block(&auditor, 1, count).await.result.unwrap();
    let entries = (0..count)
        .map(|s| entry(0, s, tokens[s as usize]))
        .collect();
    h.verify_chunk(&auditor, 1, 0, entries, &[batch_ref(&bank, &auditor, 1)])
        .await
        .result
        .unwrap();
    let block = h.block(&auditor.pubkey(), 1).await;
    assert_eq!(block.header.valid_count, count);
    assert_eq!(h.token_balance(&auditor.token).await, 3 * u64::from(count));
}

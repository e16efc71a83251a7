//! Batches bound to their auditor (issue 10): a batch's address includes the one auditor that may
//! redeem it, so another registered auditor that copies token digests from a pending
//! verification transaction redeems nothing, and the rightful auditor is still paid, once.

use anchor_lang::error::ErrorCode as AnchorError;
use mupib::constants::{DECISION_DUPLICATE, DECISION_UNPUBLISHED, DECISION_VALID};
use mupib::error::MupibError;
use mupib::instructions::BlockVerifyChunkArgs;
use mupib::state::Batch;
use mupib_chain::program::instructions as ix;
use mupib_chain::program::pda;
use mupib_tests::{batch_ref, digests, entry, Harness};
use solana_sdk::signature::Signer;

const VALUE: u64 = 40;

#[tokio::test]
async fn thief_auditor_copying_the_digests_of_a_block_gets_unpublished_and_no_payment() {
    let mut h = Harness::start().await;
    let bank = h.bank(10_000).await;
    let auditor = h.auditor().await;
    let thief = h.auditor().await;
    let tokens = digests(1, 4);
    let batch = h
        .published_batch(&bank, &auditor, 1, &tokens, VALUE, true)
        .await;
    let escrow = pda::escrow(&batch).0;
    let entries: Vec<_> = (0..4).map(|s| entry(0, s, tokens[s as usize])).collect();

    // The thief front-runs with the copied entries, deriving the batch as bound to itself.
    h.open_block(&thief, 1, 4).await.result.unwrap();
    h.verify_chunk(
        &thief,
        1,
        0,
        entries.clone(),
        &[batch_ref(&bank, &thief, 1)],
    )
    .await
    .result
    .unwrap();
    // ... and, in a second block, passing the real batch and escrow accounts as copied.
    h.open_block(&thief, 2, 4).await.result.unwrap();
    let copied = ix::block_verify_chunk(
        &thief.pubkey(),
        2,
        &h.mint,
        &thief.token,
        BlockVerifyChunkArgs {
            start: 0,
            entries: entries.clone(),
        },
        &[batch_ref(&bank, &auditor, 1)],
    );
    h.send_ok(&[copied], &[&thief.key]).await;
    for block_id in [1, 2] {
        let block = h.block(&thief.pubkey(), block_id).await;
        assert_eq!(block.decisions, vec![DECISION_UNPUBLISHED; 4]);
        assert_eq!(block.header.amount_paid, 0);
    }
    assert_eq!(h.token_balance(&thief.token).await, 0);
    assert_eq!(h.token_balance(&escrow).await, 4 * VALUE);
    assert_eq!(h.batch(&batch).await.header.spent_count, 0);

    // The rightful auditor verifies the same tokens: valid, paid once.
    h.open_block(&auditor, 1, 4).await.result.unwrap();
    let refs = [batch_ref(&bank, &auditor, 1)];
    h.verify_chunk(&auditor, 1, 0, entries.clone(), &refs)
        .await
        .result
        .unwrap();
    assert_eq!(
        h.block(&auditor.pubkey(), 1).await.decisions,
        vec![DECISION_VALID; 4]
    );
    assert_eq!(h.token_balance(&auditor.token).await, 4 * VALUE);
    assert_eq!(h.token_balance(&escrow).await, 0);

    // Presented again (another block): duplicates, nothing more paid.
    h.open_block(&auditor, 2, 4).await.result.unwrap();
    h.verify_chunk(&auditor, 2, 0, entries, &refs)
        .await
        .result
        .unwrap();
    assert_eq!(
        h.block(&auditor.pubkey(), 2).await.decisions,
        vec![DECISION_DUPLICATE; 4]
    );
    assert_eq!(h.token_balance(&auditor.token).await, 4 * VALUE);
    assert_eq!(h.token_balance(&thief.token).await, 0);
}

#[tokio::test]
async fn batch_create_naming_an_unregistered_auditor_is_refused() {
    let mut h = Harness::start().await;
    let bank = h.bank(1_000).await;
    let stranger = h.party(0).await;
    let args = h.batch_args(&stranger.pubkey(), 1, 2, VALUE).await;
    h.create_batch(&bank, args).await.expect_anchor_error(
        AnchorError::AccountNotInitialized,
        "batch bound to an unregistered auditor",
    );
    assert!(h
        .account(&pda::batch(&bank.pubkey(), &stranger.pubkey(), 1).0)
        .await
        .is_none());
    assert_eq!(h.token_balance(&bank.token).await, 1_000);
}

#[tokio::test]
async fn batch_create_naming_an_inactive_auditor_is_refused() {
    let mut h = Harness::start().await;
    let bank = h.bank(1_000).await;
    let auditor = h.auditor().await;
    let admin = h.admin.insecure_clone();
    h.send_ok(
        &[ix::auditor_set_active(
            &admin.pubkey(),
            &auditor.pubkey(),
            false,
        )],
        &[&admin],
    )
    .await;
    let args = h.batch_args(&auditor.pubkey(), 1, 2, VALUE).await;
    h.create_batch(&bank, args).await.expect_error(
        MupibError::AuditorInactive,
        "batch bound to an inactive auditor",
    );
    assert!(h
        .account(&pda::batch(&bank.pubkey(), &auditor.pubkey(), 1).0)
        .await
        .is_none());
    assert_eq!(h.token_balance(&bank.token).await, 1_000);
}

#[tokio::test]
async fn binding_costs_no_rent_the_batch_header_does_not_grow() {
    let mut h = Harness::start().await;
    let bank = h.bank(1_000).await;
    let auditor = h.auditor().await;
    let batch = h
        .published_batch(&bank, &auditor, 1, &digests(1, 8), VALUE, true)
        .await;
    assert_eq!(std::mem::size_of::<Batch>(), 80);
    let snapshot = h.batch(&batch).await;
    assert_eq!(snapshot.data_len, 8 + 80 + 8 * 16 + 1);
    assert_eq!(snapshot.data_len, Batch::space(8));
    assert_eq!(snapshot.header.bank, bank.pubkey());
}

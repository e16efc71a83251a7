//! Exactly-once payment: escrow and auditor balances after valid, invalid and replayed chunks.

use mupib::constants::{DECISION_ALTERED, DECISION_UNDECIDED, DECISION_VALID};
use mupib_chain::program::events::MupibEvent;
use mupib_chain::program::pda;
use mupib_tests::{batch_ref, digests, entry, Harness};

const VALUE: u64 = 25;

#[tokio::test]
async fn each_valid_token_is_paid_exactly_once_across_valid_invalid_and_replayed_chunks() {
    let mut h = Harness::start().await;
    let bank = h.bank(10_000).await;
    let auditor = h.auditor().await;
    let tokens = digests(4, 6);
    let batch = h
        .published_batch(&bank, &auditor, 4, &tokens, VALUE, true)
        .await;
    let escrow = pda::escrow(&batch).0;
    let refs = [batch_ref(&bank, &auditor, 4)];
    h.open_block(&auditor, 1, 6).await.result.unwrap();
    assert_eq!(h.token_balance(&escrow).await, 6 * VALUE);

    // Chunk A: two valid tokens.
    let chunk_a = vec![entry(0, 0, tokens[0]), entry(0, 1, tokens[1])];
    h.verify_chunk(&auditor, 1, 0, chunk_a.clone(), &refs)
        .await
        .result
        .unwrap();
    assert_eq!(h.token_balance(&auditor.token).await, 2 * VALUE);
    assert_eq!(h.token_balance(&escrow).await, 4 * VALUE);

    // Chunk B: only invalid tokens (altered, then a serial out of range): nothing paid.
    let mut forged = tokens[2];
    forged[3] ^= 0x40;
    h.verify_chunk(
        &auditor,
        1,
        2,
        vec![entry(0, 2, forged), entry(0, 6, tokens[5])],
        &refs,
    )
    .await
    .result
    .unwrap();
    assert_eq!(h.token_balance(&auditor.token).await, 2 * VALUE);
    assert_eq!(h.token_balance(&escrow).await, 4 * VALUE);

    // Replay of chunk A (a new transaction with the same instruction): nothing changes.
    let block_before = h.block(&auditor.pubkey(), 1).await;
    let batch_before = h.batch(&batch).await;
    let outcome = h.verify_chunk(&auditor, 1, 0, chunk_a.clone(), &refs).await;
    outcome.result.as_ref().unwrap();
    let replay = outcome
        .events()
        .into_iter()
        .find_map(|e| match e {
            MupibEvent::BlockChunkVerified(v) => Some(v),
            _ => None,
        })
        .expect("BlockChunkVerified event");
    assert_eq!(replay.amount_paid, 0);
    assert_eq!(
        replay.valid + replay.altered + replay.duplicate + replay.unpublished,
        0
    );
    assert_eq!(replay.decisions, vec![DECISION_VALID, DECISION_VALID]);
    let block_after = h.block(&auditor.pubkey(), 1).await;
    assert_eq!(block_after.decisions, block_before.decisions);
    assert_eq!(
        block_after.header.amount_paid,
        block_before.header.amount_paid
    );
    assert_eq!(block_after.header.decided, block_before.header.decided);
    assert_eq!(h.batch(&batch).await.spent, batch_before.spent);
    assert_eq!(h.token_balance(&auditor.token).await, 2 * VALUE);
    assert_eq!(h.token_balance(&escrow).await, 4 * VALUE);

    // Replaying positions 2..3 with now-correct digests does not revisit their decisions.
    h.verify_chunk(
        &auditor,
        1,
        2,
        vec![entry(0, 2, tokens[2]), entry(0, 3, tokens[3])],
        &refs,
    )
    .await
    .result
    .unwrap();
    let block = h.block(&auditor.pubkey(), 1).await;
    assert_eq!(
        block.decisions[2], DECISION_ALTERED,
        "decided positions are final"
    );
    assert_eq!(
        block.decisions[4..],
        [DECISION_UNDECIDED, DECISION_UNDECIDED]
    );
    assert!(!h.batch(&batch).await.is_spent(2));

    // The same tokens in a second block are duplicates and pay nothing.
    h.open_block(&auditor, 2, 2).await.result.unwrap();
    h.verify_chunk(&auditor, 2, 0, chunk_a, &refs)
        .await
        .result
        .unwrap();
    assert_eq!(
        h.block(&auditor.pubkey(), 2).await.header.duplicate_count,
        2
    );
    assert_eq!(h.token_balance(&auditor.token).await, 2 * VALUE);
    assert_eq!(h.token_balance(&escrow).await, 4 * VALUE);

    // Money balances: escrow + auditor is what the bank put in.
    let total = h.token_balance(&escrow).await + h.token_balance(&auditor.token).await;
    assert_eq!(total, 6 * VALUE);
    let registration = h.auditor_registration(&auditor.pubkey()).await;
    assert_eq!(registration.tokens_paid, 2);
    assert_eq!(registration.amount_paid, 2 * VALUE);
}

#[tokio::test]
async fn payments_are_aggregated_per_batch_from_each_batch_escrow() {
    let mut h = Harness::start().await;
    let bank_a = h.bank(10_000).await;
    let bank_b = h.bank(10_000).await;
    let auditor = h.auditor().await;
    let tokens_a = digests(1, 5);
    let tokens_b = digests(2, 5);
    let batch_a = h
        .published_batch(&bank_a, &auditor, 1, &tokens_a, 7, true)
        .await;
    let batch_b = h
        .published_batch(&bank_b, &auditor, 2, &tokens_b, 100, true)
        .await;
    h.open_block(&auditor, 1, 5).await.result.unwrap();

    let outcome = h
        .verify_chunk(
            &auditor,
            1,
            0,
            vec![
                entry(1, 0, tokens_b[0]),
                entry(0, 0, tokens_a[0]),
                entry(0, 4, tokens_a[4]),
                entry(1, 3, tokens_b[3]),
                entry(0, 2, tokens_a[2]),
            ],
            &[
                batch_ref(&bank_a, &auditor, 1),
                batch_ref(&bank_b, &auditor, 2),
            ],
        )
        .await;
    outcome.result.as_ref().unwrap();

    assert_eq!(h.token_balance(&pda::escrow(&batch_a).0).await, 2 * 7);
    assert_eq!(h.token_balance(&pda::escrow(&batch_b).0).await, 3 * 100);
    assert_eq!(h.token_balance(&auditor.token).await, 3 * 7 + 2 * 100);
    // One SPL transfer per batch, not per token.
    let transfers = outcome
        .logs
        .iter()
        .filter(|line| line.contains("Instruction: TransferChecked"))
        .count();
    assert_eq!(transfers, 2, "logs:\n{}", outcome.logs.join("\n"));
}

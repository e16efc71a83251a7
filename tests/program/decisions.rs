//! Every decision code produced by a real submission.

use mupib::constants::{
    DECISION_ALTERED, DECISION_DUPLICATE, DECISION_UNDECIDED, DECISION_UNPUBLISHED, DECISION_VALID,
};
use mupib_chain::program::events::MupibEvent;
use mupib_chain::program::instructions::BatchRef;
use mupib_chain::program::pda;
use mupib_tests::{batch_ref, digest, digests, entry, Harness};

const VALUE: u64 = 10;

#[tokio::test]
async fn valid_token_sets_its_spent_flag_and_pays_its_value() {
    let mut h = Harness::start().await;
    let bank = h.bank(1_000).await;
    let auditor = h.auditor().await;
    let tokens = digests(1, 8);
    let batch = h
        .published_batch(&bank, &auditor, 1, &tokens, VALUE, true)
        .await;
    h.open_block(&auditor, 1, 1).await.result.unwrap();

    h.verify_chunk(
        &auditor,
        1,
        0,
        vec![entry(0, 5, tokens[5])],
        &[batch_ref(&bank, &auditor, 1)],
    )
    .await
    .result
    .unwrap();

    let block = h.block(&auditor.pubkey(), 1).await;
    assert_eq!(block.decisions, vec![DECISION_VALID]);
    assert_eq!(block.header.valid_count, 1);
    assert_eq!(block.header.decided, 1);
    let snapshot = h.batch(&batch).await;
    assert!(snapshot.is_spent(5));
    assert_eq!((0..8).filter(|s| snapshot.is_spent(*s)).count(), 1);
    assert_eq!(snapshot.header.spent_count, 1);
    assert_eq!(h.token_balance(&auditor.token).await, VALUE);
    assert_eq!(h.token_balance(&pda::escrow(&batch).0).await, 7 * VALUE);
}

#[tokio::test]
async fn altered_token_whose_digest_differs_from_the_commitment() {
    let mut h = Harness::start().await;
    let bank = h.bank(1_000).await;
    let auditor = h.auditor().await;
    let tokens = digests(1, 4);
    let batch = h
        .published_batch(&bank, &auditor, 1, &tokens, VALUE, true)
        .await;
    h.open_block(&auditor, 1, 2).await.result.unwrap();

    let mut flipped = tokens[2];
    flipped[15] ^= 1;
    // A digest from another serial is also altered for this serial.
    h.verify_chunk(
        &auditor,
        1,
        0,
        vec![entry(0, 2, flipped), entry(0, 3, tokens[1])],
        &[batch_ref(&bank, &auditor, 1)],
    )
    .await
    .result
    .unwrap();

    let block = h.block(&auditor.pubkey(), 1).await;
    assert_eq!(block.decisions, vec![DECISION_ALTERED, DECISION_ALTERED]);
    assert_eq!(block.header.altered_count, 2);
    let snapshot = h.batch(&batch).await;
    assert!(
        !snapshot.is_spent(2) && !snapshot.is_spent(3),
        "altered tokens are not spent"
    );
    assert_eq!(h.token_balance(&auditor.token).await, 0);
}

#[tokio::test]
async fn duplicate_token_spent_in_an_earlier_block() {
    let mut h = Harness::start().await;
    let bank = h.bank(1_000).await;
    let auditor = h.auditor().await;
    let tokens = digests(1, 2);
    h.published_batch(&bank, &auditor, 1, &tokens, VALUE, true)
        .await;

    h.open_block(&auditor, 1, 1).await.result.unwrap();
    h.verify_chunk(
        &auditor,
        1,
        0,
        vec![entry(0, 0, tokens[0])],
        &[batch_ref(&bank, &auditor, 1)],
    )
    .await
    .result
    .unwrap();
    h.open_block(&auditor, 2, 1).await.result.unwrap();
    h.verify_chunk(
        &auditor,
        2,
        0,
        vec![entry(0, 0, tokens[0])],
        &[batch_ref(&bank, &auditor, 1)],
    )
    .await
    .result
    .unwrap();

    assert_eq!(
        h.block(&auditor.pubkey(), 1).await.decisions,
        vec![DECISION_VALID]
    );
    let second = h.block(&auditor.pubkey(), 2).await;
    assert_eq!(second.decisions, vec![DECISION_DUPLICATE]);
    assert_eq!(second.header.duplicate_count, 1);
    assert_eq!(second.header.amount_paid, 0);
    assert_eq!(h.token_balance(&auditor.token).await, VALUE, "paid once");
}

#[tokio::test]
async fn duplicate_token_twice_within_one_block() {
    let mut h = Harness::start().await;
    let bank = h.bank(1_000).await;
    let auditor = h.auditor().await;
    let tokens = digests(1, 3);
    h.published_batch(&bank, &auditor, 1, &tokens, VALUE, true)
        .await;
    h.open_block(&auditor, 1, 4).await.result.unwrap();

    // Twice in the same chunk, then a third time in a later chunk of the same block.
    h.verify_chunk(
        &auditor,
        1,
        0,
        vec![
            entry(0, 1, tokens[1]),
            entry(0, 2, tokens[2]),
            entry(0, 1, tokens[1]),
        ],
        &[batch_ref(&bank, &auditor, 1)],
    )
    .await
    .result
    .unwrap();
    h.verify_chunk(
        &auditor,
        1,
        3,
        vec![entry(0, 1, tokens[1])],
        &[batch_ref(&bank, &auditor, 1)],
    )
    .await
    .result
    .unwrap();

    let block = h.block(&auditor.pubkey(), 1).await;
    assert_eq!(
        block.decisions,
        vec![
            DECISION_VALID,
            DECISION_VALID,
            DECISION_DUPLICATE,
            DECISION_DUPLICATE
        ]
    );
    assert_eq!(block.header.duplicate_count, 2);
    assert_eq!(block.header.valid_count, 2);
    assert_eq!(h.token_balance(&auditor.token).await, 2 * VALUE);
}

#[tokio::test]
async fn unpublished_serial_in_no_batch() {
    let mut h = Harness::start().await;
    let bank = h.bank(1_000).await;
    let auditor = h.auditor().await;
    let tokens = digests(1, 3);
    let batch = h
        .published_batch(&bank, &auditor, 1, &tokens, VALUE, true)
        .await;
    h.open_block(&auditor, 1, 3).await.result.unwrap();

    let missing = BatchRef {
        bank: bank.pubkey(),
        auditor: auditor.pubkey(),
        batch_id: 77,
    };
    h.verify_chunk(
        &auditor,
        1,
        0,
        vec![
            // serial past the batch's token_count
            entry(0, 3, digest(3)),
            entry(0, u32::MAX, digest(4)),
            // a batch that was never created
            entry(1, 0, tokens[0]),
        ],
        &[batch_ref(&bank, &auditor, 1), missing],
    )
    .await
    .result
    .unwrap();

    let block = h.block(&auditor.pubkey(), 1).await;
    assert_eq!(block.decisions, vec![DECISION_UNPUBLISHED; 3]);
    assert_eq!(block.header.unpublished_count, 3);
    assert_eq!(h.batch(&batch).await.header.spent_count, 0);
    assert_eq!(h.token_balance(&auditor.token).await, 0);
}

#[tokio::test]
async fn unpublished_when_the_batch_is_not_sealed() {
    let mut h = Harness::start().await;
    let bank = h.bank(1_000).await;
    let auditor = h.auditor().await;
    let tokens = digests(1, 2);
    let batch = h
        .published_batch(&bank, &auditor, 1, &tokens, VALUE, false)
        .await;
    h.open_block(&auditor, 1, 1).await.result.unwrap();

    h.verify_chunk(
        &auditor,
        1,
        0,
        vec![entry(0, 0, tokens[0])],
        &[batch_ref(&bank, &auditor, 1)],
    )
    .await
    .result
    .unwrap();
    assert_eq!(
        h.block(&auditor.pubkey(), 1).await.decisions,
        vec![DECISION_UNPUBLISHED]
    );
    assert!(!h.batch(&batch).await.is_spent(0));
    assert_eq!(h.token_balance(&pda::escrow(&batch).0).await, 2 * VALUE);
}

#[tokio::test]
async fn one_block_with_every_decision_code_reported_in_the_chunk_event() {
    let mut h = Harness::start().await;
    let bank = h.bank(10_000).await;
    let auditor = h.auditor().await;
    let first = digests(1, 4);
    let second = digests(2, 4);
    h.published_batch(&bank, &auditor, 1, &first, VALUE, true)
        .await;
    h.published_batch(&bank, &auditor, 2, &second, 3 * VALUE, true)
        .await;
    h.open_block(&auditor, 9, 6).await.result.unwrap();

    let mut altered = second[1];
    altered[0] ^= 0xFF;
    let outcome = h
        .verify_chunk(
            &auditor,
            9,
            0,
            vec![
                entry(0, 0, first[0]),  // valid, batch 1
                entry(1, 0, second[0]), // valid, batch 2
                entry(1, 1, altered),   // altered
                entry(0, 0, first[0]),  // duplicate within the block
                entry(0, 9, digest(9)), // unpublished
                entry(1, 3, second[3]), // valid, batch 2
            ],
            &[batch_ref(&bank, &auditor, 1), batch_ref(&bank, &auditor, 2)],
        )
        .await;
    outcome.result.as_ref().unwrap();

    let expected = vec![
        DECISION_VALID,
        DECISION_VALID,
        DECISION_ALTERED,
        DECISION_DUPLICATE,
        DECISION_UNPUBLISHED,
        DECISION_VALID,
    ];
    let block = h.block(&auditor.pubkey(), 9).await;
    assert_eq!(block.decisions, expected);
    assert!(!block.decisions.contains(&DECISION_UNDECIDED));
    let paid = VALUE + 2 * 3 * VALUE;
    assert_eq!(block.header.amount_paid, paid);
    assert_eq!(h.token_balance(&auditor.token).await, paid);

    let event = outcome
        .events()
        .into_iter()
        .find_map(|e| match e {
            MupibEvent::BlockChunkVerified(v) => Some(v),
            _ => None,
        })
        .expect("BlockChunkVerified event");
    assert_eq!(event.decisions, expected);
    assert_eq!(
        (
            event.valid,
            event.altered,
            event.duplicate,
            event.unpublished
        ),
        (3, 1, 1, 1)
    );
    assert_eq!(event.amount_paid, paid);
    assert_eq!(event.decided, 6);
    assert_eq!(event.block_amount_paid, paid);
    assert_eq!(event.start, 0);
}

//! Success path of every instruction, with account state and SPL balances checked after.

use mupib::constants::{
    BATCH_CLOSE_GRACE_SECS, BLOCK_STATE_OPEN, BLOCK_STATE_VERIFIED, DECISION_UNDECIDED,
    DECISION_VALID,
};
use mupib::error::MupibError;
use mupib::state::{Batch, Block};
use mupib_chain::program::events::MupibEvent;
use mupib_chain::program::instructions as ix;
use mupib_chain::program::pda;
use mupib_tests::{batch_ref, digests, entry, Harness};
use solana_sdk::signature::Signer;

#[tokio::test]
async fn config_init_records_admin_and_mint() {
    let mut h = Harness::start().await;
    let config = h.config().await;
    assert_eq!(config.admin, h.admin.pubkey());
    assert_eq!(config.mint, h.mint);
    assert!(!config.paused);
    assert_eq!(config.bump, pda::config().1);
}

#[tokio::test]
async fn config_set_paused_blocks_publishing_and_verification_until_resumed() {
    let mut h = Harness::start().await;
    let admin = h.admin.insecure_clone();
    let bank = h.bank(1_000).await;
    let auditor = h.auditor().await;
    let tokens = digests(1, 2);
    h.published_batch(&bank, &auditor, 1, &tokens, 10, true)
        .await;
    h.open_block(&auditor, 1, 2).await.result.unwrap();

    let outcome = h
        .send_ok(&[ix::config_set_paused(&admin.pubkey(), true)], &[&admin])
        .await;
    assert!(h.config().await.paused);
    assert!(outcome
        .events()
        .iter()
        .any(|e| matches!(e, MupibEvent::PausedSet(p) if p.paused)));

    let args = h.batch_args(&auditor.pubkey(), 2, 1, 10).await;
    h.create_batch(&bank, args)
        .await
        .expect_error(MupibError::Paused, "batch_create while paused");
    h.verify_chunk(
        &auditor,
        1,
        0,
        vec![entry(0, 0, tokens[0])],
        &[batch_ref(&bank, &auditor, 1)],
    )
    .await
    .expect_error(MupibError::Paused, "verify while paused");
    h.open_block(&auditor, 2, 1)
        .await
        .expect_error(MupibError::Paused, "block_open while paused");
    assert_eq!(h.block(&auditor.pubkey(), 1).await.header.decided, 0);

    h.send_ok(&[ix::config_set_paused(&admin.pubkey(), false)], &[&admin])
        .await;
    assert!(!h.config().await.paused);
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
        h.block(&auditor.pubkey(), 1).await.decisions[0],
        DECISION_VALID
    );
}

#[tokio::test]
async fn bank_register_and_set_active() {
    let mut h = Harness::start().await;
    let auditor = h.auditor().await;
    let admin = h.admin.insecure_clone();
    let bank = h.bank(1_000).await;
    let registration = h.bank_registration(&bank.pubkey()).await;
    assert_eq!(registration.bank, bank.pubkey());
    assert!(registration.active);
    assert_eq!(registration.next_batch_id, 0);
    assert_eq!(registration.batches_created, 0);
    assert_eq!(registration.bump, pda::bank_registration(&bank.pubkey()).1);

    h.send_ok(
        &[ix::bank_set_active(&admin.pubkey(), &bank.pubkey(), false)],
        &[&admin],
    )
    .await;
    assert!(!h.bank_registration(&bank.pubkey()).await.active);
    let args = h.batch_args(&auditor.pubkey(), 0, 1, 10).await;
    h.create_batch(&bank, args.clone())
        .await
        .expect_error(MupibError::BankInactive, "inactive bank creating a batch");

    h.send_ok(
        &[ix::bank_set_active(&admin.pubkey(), &bank.pubkey(), true)],
        &[&admin],
    )
    .await;
    assert!(h.bank_registration(&bank.pubkey()).await.active);
    h.create_batch(&bank, args).await.result.unwrap();
}

#[tokio::test]
async fn auditor_register_and_set_active() {
    let mut h = Harness::start().await;
    let admin = h.admin.insecure_clone();
    let auditor = h.auditor().await;
    let registration = h.auditor_registration(&auditor.pubkey()).await;
    assert_eq!(registration.auditor, auditor.pubkey());
    assert!(registration.active);
    assert_eq!(registration.blocks_opened, 0);
    assert_eq!(registration.amount_paid, 0);

    h.send_ok(
        &[ix::auditor_set_active(
            &admin.pubkey(),
            &auditor.pubkey(),
            false,
        )],
        &[&admin],
    )
    .await;
    assert!(!h.auditor_registration(&auditor.pubkey()).await.active);
    h.open_block(&auditor, 1, 3).await.expect_error(
        MupibError::AuditorInactive,
        "inactive auditor opening a block",
    );

    h.send_ok(
        &[ix::auditor_set_active(
            &admin.pubkey(),
            &auditor.pubkey(),
            true,
        )],
        &[&admin],
    )
    .await;
    h.open_block(&auditor, 1, 3).await.result.unwrap();
    assert_eq!(
        h.auditor_registration(&auditor.pubkey())
            .await
            .blocks_opened,
        1
    );
}

#[tokio::test]
async fn batch_create_funds_the_escrow_with_count_times_value() {
    let mut h = Harness::start().await;
    let auditor = h.auditor().await;
    let bank = h.bank(10_000).await;
    let args = h.batch_args(&auditor.pubkey(), 5, 100, 7).await;
    let outcome = h.create_batch(&bank, args.clone()).await;
    outcome.result.as_ref().unwrap();

    let batch = pda::batch(&bank.pubkey(), &auditor.pubkey(), 5);
    let escrow = pda::escrow(&batch.0).0;
    assert_eq!(h.token_balance(&escrow).await, 700);
    assert_eq!(h.token_balance(&bank.token).await, 10_000 - 700);

    let escrow_account = h.account(&escrow).await.unwrap();
    let escrow_state =
        anchor_spl::token::TokenAccount::try_deserialize(&mut escrow_account.data.as_slice())
            .unwrap();
    assert_eq!(
        escrow_state.owner, batch.0,
        "escrow authority is the batch PDA"
    );
    assert_eq!(escrow_state.mint, h.mint);

    let snapshot = h.batch(&batch.0).await;
    assert_eq!(snapshot.data_len, Batch::space(100));
    let header = snapshot.header;
    assert_eq!(header.bank, bank.pubkey());
    assert_eq!(header.batch_id, 5);
    assert_eq!(header.value, 7);
    assert_eq!(header.issued_at, args.issued_at);
    assert_eq!(header.expires_at, args.expires_at);
    assert_eq!(header.token_count, 100);
    assert_eq!(header.published, 0);
    assert_eq!(header.spent_count, 0);
    assert_eq!(header.sealed, 0);
    assert_eq!(header.bump, batch.1);
    assert_eq!(header.escrow_bump, pda::escrow(&batch.0).1);
    assert!(snapshot.commitments.iter().all(|b| *b == 0));
    assert!(snapshot.spent.iter().all(|b| *b == 0));

    let registration = h.bank_registration(&bank.pubkey()).await;
    assert_eq!(registration.next_batch_id, 6);
    assert_eq!(registration.batches_created, 1);
    assert_eq!(registration.tokens_created, 100);

    let created = outcome
        .events()
        .into_iter()
        .find_map(|e| match e {
            MupibEvent::BatchCreated(c) => Some(c),
            _ => None,
        })
        .expect("BatchCreated event");
    assert_eq!(created.escrow_amount, 700);
    assert_eq!(created.token_count, 100);
}

use anchor_lang::AccountDeserialize;

#[tokio::test]
async fn batch_publish_writes_commitments_in_order_and_seal_makes_them_redeemable() {
    let mut h = Harness::start().await;
    let auditor = h.auditor().await;
    let bank = h.bank(10_000).await;
    let tokens = digests(1, 50);
    let args = h.batch_args(&auditor.pubkey(), 1, 50, 3).await;
    h.create_batch(&bank, args).await.result.unwrap();
    let batch = pda::batch(&bank.pubkey(), &auditor.pubkey(), 1).0;
    let commitments: Vec<[u8; 16]> = tokens.iter().map(mupib::commitment).collect();

    h.send_ok(
        &[ix::batch_publish(
            &bank.pubkey(),
            &auditor.pubkey(),
            1,
            0,
            commitments[..30].to_vec(),
        )],
        &[&bank.key],
    )
    .await;
    let snapshot = h.batch(&batch).await;
    assert_eq!(snapshot.header.published, 30);
    assert_eq!(
        &snapshot.commitments[..30 * 16],
        commitments[..30].concat().as_slice()
    );
    assert!(snapshot.commitments[30 * 16..].iter().all(|b| *b == 0));

    // Sealing before every commitment is written fails.
    h.send(
        &[ix::batch_seal(&bank.pubkey(), &auditor.pubkey(), 1)],
        &[&bank.key],
    )
    .await
    .expect_error(MupibError::BatchIncomplete, "seal of a partial batch");
    // Out of order: start must equal `published`.
    h.send(
        &[ix::batch_publish(
            &bank.pubkey(),
            &auditor.pubkey(),
            1,
            31,
            commitments[31..].to_vec(),
        )],
        &[&bank.key],
    )
    .await
    .expect_error(MupibError::PublishOutOfOrder, "publish with a gap");

    h.send_ok(
        &[ix::batch_publish(
            &bank.pubkey(),
            &auditor.pubkey(),
            1,
            30,
            commitments[30..].to_vec(),
        )],
        &[&bank.key],
    )
    .await;
    let outcome = h
        .send_ok(
            &[ix::batch_seal(&bank.pubkey(), &auditor.pubkey(), 1)],
            &[&bank.key],
        )
        .await;
    let snapshot = h.batch(&batch).await;
    assert_eq!(snapshot.header.published, 50);
    assert_eq!(snapshot.header.sealed, 1);
    assert_eq!(snapshot.commitments, commitments.concat());
    assert!(outcome
        .events()
        .iter()
        .any(|e| matches!(e, MupibEvent::BatchSealed(s) if s.token_count == 50)));

    // Sealed: no more writes.
    h.send(
        &[ix::batch_publish(
            &bank.pubkey(),
            &auditor.pubkey(),
            1,
            50,
            vec![[1; 16]],
        )],
        &[&bank.key],
    )
    .await
    .expect_error(MupibError::BatchSealed, "publish into a sealed batch");
}

#[tokio::test]
async fn batch_close_after_expiry_and_grace_returns_unspent_escrow_and_rent_to_the_bank() {
    let mut h = Harness::start().await;
    let bank = h.bank(10_000).await;
    let auditor = h.auditor().await;
    let tokens = digests(9, 10);
    let batch = h
        .published_batch(&bank, &auditor, 9, &tokens, 25, true)
        .await;
    let escrow = pda::escrow(&batch).0;

    // Spend 3 of the 10 tokens.
    h.open_block(&auditor, 1, 3).await.result.unwrap();
    let entries = (0..3).map(|s| entry(0, s, tokens[s as usize])).collect();
    h.verify_chunk(&auditor, 1, 0, entries, &[batch_ref(&bank, &auditor, 9)])
        .await
        .result
        .unwrap();
    assert_eq!(h.token_balance(&escrow).await, 7 * 25);

    // Not expired, not fully spent: cannot close.
    let close = ix::batch_close(&bank.pubkey(), &auditor.pubkey(), 9, &h.mint, &bank.token);
    h.send(std::slice::from_ref(&close), &[&bank.key])
        .await
        .expect_error(MupibError::BatchNotClosable, "close before expiry");

    let expires_at = h.batch(&batch).await.header.expires_at;
    h.set_time(expires_at + BATCH_CLOSE_GRACE_SECS + 1).await;
    let rent_back = h.lamports(&batch).await + h.lamports(&escrow).await;
    let bank_lamports = h.lamports(&bank.pubkey()).await;
    let bank_tokens = h.token_balance(&bank.token).await;
    let outcome = h.send_ok(&[close], &[&bank.key]).await;

    assert_eq!(h.token_balance(&bank.token).await, bank_tokens + 7 * 25);
    assert_eq!(h.lamports(&bank.pubkey()).await, bank_lamports + rent_back);
    assert!(h.account(&batch).await.is_none(), "batch closed");
    assert!(h.account(&escrow).await.is_none(), "escrow closed");
    let registration = h.bank_registration(&bank.pubkey()).await;
    assert_eq!(registration.batches_closed, 1);
    let closed = outcome
        .events()
        .into_iter()
        .find_map(|e| match e {
            MupibEvent::BatchClosed(c) => Some(c),
            _ => None,
        })
        .expect("BatchClosed event");
    assert_eq!(closed.refunded_amount, 7 * 25);
    assert_eq!(closed.spent_count, 3);
}

#[tokio::test]
async fn batch_close_once_every_token_is_spent_before_expiry() {
    let mut h = Harness::start().await;
    let bank = h.bank(1_000).await;
    let auditor = h.auditor().await;
    let tokens = digests(2, 4);
    let batch = h
        .published_batch(&bank, &auditor, 2, &tokens, 50, true)
        .await;
    h.open_block(&auditor, 7, 4).await.result.unwrap();
    let entries = (0..4).map(|s| entry(0, s, tokens[s as usize])).collect();
    h.verify_chunk(&auditor, 7, 0, entries, &[batch_ref(&bank, &auditor, 2)])
        .await
        .result
        .unwrap();
    assert_eq!(h.batch(&batch).await.header.spent_count, 4);

    let bank_tokens = h.token_balance(&bank.token).await;
    h.send_ok(
        &[ix::batch_close(
            &bank.pubkey(),
            &auditor.pubkey(),
            2,
            &h.mint,
            &bank.token,
        )],
        &[&bank.key],
    )
    .await;
    assert!(h.account(&batch).await.is_none());
    assert_eq!(
        h.token_balance(&bank.token).await,
        bank_tokens,
        "nothing left to refund"
    );
    assert_eq!(h.token_balance(&auditor.token).await, 200);
}

#[tokio::test]
async fn block_open_verify_finalize_close_returns_rent_to_the_auditor() {
    let mut h = Harness::start().await;
    let bank = h.bank(1_000).await;
    let auditor = h.auditor().await;
    let tokens = digests(3, 5);
    h.published_batch(&bank, &auditor, 3, &tokens, 11, true)
        .await;

    let outcome = h.open_block(&auditor, 42, 5).await;
    outcome.result.as_ref().unwrap();
    let block = h.block(&auditor.pubkey(), 42).await;
    assert_eq!(block.data_len, Block::space(5));
    assert_eq!(block.header.auditor, auditor.pubkey());
    assert_eq!(block.header.block_id, 42);
    assert_eq!(block.header.token_count, 5);
    assert_eq!(block.header.state, BLOCK_STATE_OPEN);
    assert_eq!(block.header.bump, pda::block(&auditor.pubkey(), 42).1);
    assert_eq!(block.decisions, vec![DECISION_UNDECIDED; 5]);

    // Finalizing with undecided positions fails.
    h.send(
        &[ix::block_finalize(&auditor.pubkey(), 42)],
        &[&auditor.key],
    )
    .await
    .expect_error(
        MupibError::BlockIncomplete,
        "finalize with undecided positions",
    );
    // Closing an unverified block fails.
    h.send(&[ix::block_close(&auditor.pubkey(), 42)], &[&auditor.key])
        .await
        .expect_error(MupibError::BlockNotVerified, "close of an open block");

    let entries = (0..5).map(|s| entry(0, s, tokens[s as usize])).collect();
    h.verify_chunk(&auditor, 42, 0, entries, &[batch_ref(&bank, &auditor, 3)])
        .await
        .result
        .unwrap();
    let outcome = h
        .send_ok(
            &[ix::block_finalize(&auditor.pubkey(), 42)],
            &[&auditor.key],
        )
        .await;
    let block = h.block(&auditor.pubkey(), 42).await;
    assert_eq!(block.header.state, BLOCK_STATE_VERIFIED);
    assert_eq!(block.header.valid_count, 5);
    assert_eq!(block.header.amount_paid, 55);
    let finalized = outcome
        .events()
        .into_iter()
        .find_map(|e| match e {
            MupibEvent::BlockFinalized(f) => Some(f),
            _ => None,
        })
        .expect("BlockFinalized event");
    assert_eq!(
        (
            finalized.valid,
            finalized.altered,
            finalized.duplicate,
            finalized.unpublished
        ),
        (5, 0, 0, 0)
    );
    assert_eq!(finalized.amount_paid, 55);
    let registration = h.auditor_registration(&auditor.pubkey()).await;
    assert_eq!(registration.blocks_verified, 1);
    assert_eq!(registration.tokens_paid, 5);
    assert_eq!(registration.amount_paid, 55);

    // Verified blocks take no more chunks.
    h.verify_chunk(
        &auditor,
        42,
        0,
        vec![entry(0, 0, tokens[0])],
        &[batch_ref(&bank, &auditor, 3)],
    )
    .await
    .expect_error(MupibError::BlockNotOpen, "chunk into a verified block");

    let address = pda::block(&auditor.pubkey(), 42).0;
    let rent = h.lamports(&address).await;
    let before = h.lamports(&auditor.pubkey()).await;
    h.send_ok(&[ix::block_close(&auditor.pubkey(), 42)], &[&auditor.key])
        .await;
    assert!(h.account(&address).await.is_none());
    assert_eq!(h.lamports(&auditor.pubkey()).await, before + rent);
}

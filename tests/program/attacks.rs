//! Sealevel attack classes, each a named test expecting a specific error and unchanged state.

use anchor_lang::error::ErrorCode as AnchorError;
use mupib::constants::DECISION_UNPUBLISHED;
use mupib::error::MupibError;
use mupib::instructions::BlockVerifyChunkArgs;
use mupib_chain::program::instructions as ix;
use mupib_chain::program::instructions::BatchRef;
use mupib_chain::program::pda;
use mupib_tests::{batch_ref, digests, entry, Harness, Party};
use solana_sdk::account::AccountSharedData;
use solana_sdk::instruction::{Instruction, InstructionError};
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::Signer;
use solana_sdk::transaction::TransactionError;

const VALUE: u64 = 10;

/// Marks `key` as not signing in `instruction`.
fn without_signature(mut instruction: Instruction, key: &Pubkey) -> Instruction {
    for meta in instruction.accounts.iter_mut().filter(|m| m.pubkey == *key) {
        meta.is_signer = false;
    }
    instruction
}

/// Replaces every occurrence of `from` by `to` in `instruction`'s accounts.
fn substitute(mut instruction: Instruction, from: &Pubkey, to: &Pubkey) -> Instruction {
    for meta in instruction
        .accounts
        .iter_mut()
        .filter(|m| m.pubkey == *from)
    {
        meta.pubkey = *to;
    }
    instruction
}

/// A bank with a sealed batch 1 of 4 tokens and an auditor with open block 1 of 4 positions.
async fn setup() -> (Harness, Party, Party, Vec<[u8; 16]>, Pubkey) {
    let mut h = Harness::start().await;
    let bank = h.bank(1_000).await;
    let auditor = h.auditor().await;
    let tokens = digests(1, 4);
    let batch = h
        .published_batch(&bank, &auditor, 1, &tokens, VALUE, true)
        .await;
    h.open_block(&auditor, 1, 4).await.result.unwrap();
    (h, bank, auditor, tokens, batch)
}

fn chunk(h: &Harness, auditor: &Party, bank: &Party, tokens: &[[u8; 16]]) -> Instruction {
    ix::block_verify_chunk(
        &auditor.pubkey(),
        1,
        &h.mint,
        &auditor.token,
        BlockVerifyChunkArgs {
            start: 0,
            entries: vec![entry(0, 0, tokens[0])],
        },
        &[batch_ref(bank, auditor, 1)],
    )
}

/// The accounts a verification touches, for unchanged-state assertions.
fn watched(auditor: &Party, batch: &Pubkey) -> Vec<Pubkey> {
    vec![
        pda::block(&auditor.pubkey(), 1).0,
        *batch,
        pda::escrow(batch).0,
        auditor.token,
        pda::auditor_registration(&auditor.pubkey()).0,
    ]
}

#[tokio::test]
async fn missing_signer_bank_publishing_without_its_signature() {
    let mut h = Harness::start().await;
    let auditor = h.auditor().await;
    let bank = h.bank(1_000).await;
    let args = h.batch_args(&auditor.pubkey(), 1, 2, VALUE).await;
    h.create_batch(&bank, args).await.result.unwrap();
    let batch = pda::batch(&bank.pubkey(), &auditor.pubkey(), 1).0;
    let before = h.snapshot(&[batch]).await;

    let publish = ix::batch_publish(&bank.pubkey(), &auditor.pubkey(), 1, 0, vec![[7; 16]]);
    h.send(&[without_signature(publish, &bank.pubkey())], &[])
        .await
        .expect_anchor_error(
            AnchorError::AccountNotSigner,
            "publish without the bank's signature",
        );
    assert_eq!(h.snapshot(&[batch]).await, before);
}

#[tokio::test]
async fn missing_signer_auditor_verifying_without_its_signature() {
    let (mut h, bank, auditor, tokens, batch) = setup().await;
    let keys = watched(&auditor, &batch);
    let before = h.snapshot(&keys).await;
    let instruction = without_signature(chunk(&h, &auditor, &bank, &tokens), &auditor.pubkey());
    h.send(&[instruction], &[]).await.expect_anchor_error(
        AnchorError::AccountNotSigner,
        "verify without the auditor's signature",
    );
    assert_eq!(h.snapshot(&keys).await, before);
}

#[tokio::test]
async fn missing_signer_admin_registering_without_its_signature() {
    let mut h = Harness::start().await;
    let admin = h.admin.pubkey();
    let bank = Pubkey::new_unique();
    let instruction = without_signature(ix::bank_register(&admin, &bank), &admin);
    h.send(&[instruction], &[]).await.expect_anchor_error(
        AnchorError::AccountNotSigner,
        "register without the admin's signature",
    );
    assert!(h.account(&pda::bank_registration(&bank).0).await.is_none());
}

#[tokio::test]
async fn non_admin_cannot_register_a_bank_or_pause() {
    let mut h = Harness::start().await;
    let intruder = h.party(0).await;
    h.send(
        &[ix::bank_register(&intruder.pubkey(), &intruder.pubkey())],
        &[&intruder.key],
    )
    .await
    .expect_error(MupibError::NotAdmin, "self-registration by a non-admin");
    assert!(h
        .account(&pda::bank_registration(&intruder.pubkey()).0)
        .await
        .is_none());
    h.send(
        &[ix::config_set_paused(&intruder.pubkey(), true)],
        &[&intruder.key],
    )
    .await
    .expect_error(MupibError::NotAdmin, "pause by a non-admin");
    assert!(!h.config().await.paused);
}

#[tokio::test]
async fn unregistered_bank_publishing_a_batch() {
    let mut h = Harness::start().await;
    let auditor = h.auditor().await;
    let stranger = h.party(1_000).await;
    let args = h.batch_args(&auditor.pubkey(), 1, 2, VALUE).await;
    h.create_batch(&stranger, args)
        .await
        .expect_anchor_error(AnchorError::AccountNotInitialized, "unregistered bank");
    assert!(h
        .account(&pda::batch(&stranger.pubkey(), &auditor.pubkey(), 1).0)
        .await
        .is_none());
    assert_eq!(h.token_balance(&stranger.token).await, 1_000);
}

#[tokio::test]
async fn registered_bank_publishing_into_another_banks_batch() {
    let mut h = Harness::start().await;
    let auditor = h.auditor().await;
    let owner = h.bank(1_000).await;
    let other = h.bank(1_000).await;
    let args = h.batch_args(&auditor.pubkey(), 1, 2, VALUE).await;
    h.create_batch(&owner, args).await.result.unwrap();
    let victim = pda::batch(&owner.pubkey(), &auditor.pubkey(), 1).0;
    let before = h.snapshot(&[victim]).await;

    let publish = ix::batch_publish(
        &other.pubkey(),
        &auditor.pubkey(),
        1,
        0,
        vec![[7; 16], [8; 16]],
    );
    let own = pda::batch(&other.pubkey(), &auditor.pubkey(), 1).0;
    h.send(&[substitute(publish, &own, &victim)], &[&other.key])
        .await
        .expect_anchor_error(
            AnchorError::ConstraintHasOne,
            "publish into another bank's batch",
        );
    assert_eq!(h.snapshot(&[victim]).await, before);
}

#[tokio::test]
async fn second_auditor_feeding_someone_elses_block() {
    let (mut h, bank, auditor, tokens, batch) = setup().await;
    let intruder = h.auditor().await;
    let keys = watched(&auditor, &batch);
    let before = h.snapshot(&keys).await;

    let victim_block = pda::block(&auditor.pubkey(), 1).0;
    let own_block = pda::block(&intruder.pubkey(), 1).0;
    let feed = substitute(
        chunk(&h, &intruder, &bank, &tokens),
        &own_block,
        &victim_block,
    );
    h.send(&[feed], &[&intruder.key]).await.expect_error(
        MupibError::NotBlockAuditor,
        "feeding another auditor's block",
    );
    let finalize = substitute(
        ix::block_finalize(&intruder.pubkey(), 1),
        &own_block,
        &victim_block,
    );
    h.send(&[finalize], &[&intruder.key]).await.expect_error(
        MupibError::NotBlockAuditor,
        "finalizing another auditor's block",
    );
    let close = substitute(
        ix::block_close(&intruder.pubkey(), 1),
        &own_block,
        &victim_block,
    );
    h.send(&[close], &[&intruder.key]).await.expect_error(
        MupibError::NotBlockAuditor,
        "closing another auditor's block",
    );

    assert_eq!(h.snapshot(&keys).await, before);
    assert_eq!(h.token_balance(&intruder.token).await, 0);
}

#[tokio::test]
async fn wrong_account_owner_config_copy_owned_by_another_program() {
    let mut h = Harness::start().await;
    let admin = h.admin.insecure_clone();
    let config = pda::config().0;
    let real = h.account(&config).await.unwrap();
    let fake = Pubkey::new_unique();
    let mut copy = AccountSharedData::new(real.lamports, real.data.len(), &Pubkey::new_unique());
    copy.set_data_from_slice(&real.data);
    h.ctx.set_account(&fake, &copy);

    let pause = substitute(ix::config_set_paused(&admin.pubkey(), true), &config, &fake);
    h.send(&[pause], &[&admin]).await.expect_anchor_error(
        AnchorError::AccountOwnedByWrongProgram,
        "config owned by another program",
    );
    assert!(!h.config().await.paused);
}

#[tokio::test]
async fn wrong_account_owner_auditor_paid_into_someone_elses_token_account() {
    let (mut h, bank, auditor, tokens, batch) = setup().await;
    let thief = h.party(0).await;
    let keys = watched(&auditor, &batch);
    let before = h.snapshot(&keys).await;
    let feed = substitute(
        chunk(&h, &auditor, &bank, &tokens),
        &auditor.token,
        &thief.token,
    );
    h.send(&[feed], &[&auditor.key]).await.expect_error(
        MupibError::WrongTokenAccountOwner,
        "payment into a token account the auditor does not own",
    );
    assert_eq!(h.snapshot(&keys).await, before);
    assert_eq!(h.token_balance(&thief.token).await, 0);
}

#[tokio::test]
async fn wrong_mint_token_account_for_payment() {
    let (mut h, bank, auditor, tokens, batch) = setup().await;
    // A token account of another mint, owned by the auditor.
    let real_mint = h.mint;
    let other = solana_sdk::signature::Keypair::new();
    let rent = h.rent(ix::SPL_MINT_LEN).await;
    let payer = h.ctx.payer.pubkey();
    let authority = h.mint_authority.insecure_clone();
    let create =
        ix::spl_create_mint(&payer, &other.pubkey(), &authority.pubkey(), 6, rent).unwrap();
    h.send_ok(&create, &[&other]).await;
    h.mint = other.pubkey();
    let foreign = h.token_account(&auditor.pubkey(), 0).await;
    h.mint = real_mint;

    let keys = watched(&auditor, &batch);
    let before = h.snapshot(&keys).await;
    let feed = substitute(
        chunk(&h, &auditor, &bank, &tokens),
        &auditor.token,
        &foreign,
    );
    h.send(&[feed], &[&auditor.key]).await.expect_error(
        MupibError::WrongMint,
        "payment into a token account of another mint",
    );
    assert_eq!(h.snapshot(&keys).await, before);
}

#[tokio::test]
async fn forged_pda_batch_at_an_address_not_derived_from_its_seeds() {
    let mut h = Harness::start().await;
    let auditor = h.auditor().await;
    let bank = h.bank(1_000).await;
    let forged = Pubkey::new_unique();
    let args = h.batch_args(&auditor.pubkey(), 1, 2, VALUE).await;
    let create = ix::batch_create(&bank.pubkey(), &h.mint, &bank.token, args);
    let real = pda::batch(&bank.pubkey(), &auditor.pubkey(), 1).0;
    let instruction = substitute(create, &real, &forged);
    h.send(&[instruction], &[&bank.key])
        .await
        .expect_anchor_error(AnchorError::ConstraintSeeds, "batch at a forged address");
    assert!(h.account(&forged).await.is_none());
    assert_eq!(h.token_balance(&bank.token).await, 1_000);
}

#[tokio::test]
async fn forged_pda_bank_signing_with_another_banks_registration() {
    let mut h = Harness::start().await;
    let auditor = h.auditor().await;
    let registered = h.bank(1_000).await;
    let stranger = h.party(1_000).await;
    let args = h.batch_args(&auditor.pubkey(), 1, 2, VALUE).await;
    let create = ix::batch_create(&stranger.pubkey(), &h.mint, &stranger.token, args);
    let instruction = substitute(
        create,
        &pda::bank_registration(&stranger.pubkey()).0,
        &pda::bank_registration(&registered.pubkey()).0,
    );
    h.send(&[instruction], &[&stranger.key])
        .await
        .expect_anchor_error(AnchorError::ConstraintSeeds, "borrowed registration");
    assert!(h
        .account(&pda::batch(&stranger.pubkey(), &auditor.pubkey(), 1).0)
        .await
        .is_none());
}

#[tokio::test]
async fn forged_pda_escrow_that_is_not_the_batch_escrow() {
    let (mut h, bank, auditor, tokens, batch) = setup().await;
    let keys = watched(&auditor, &batch);
    let before = h.snapshot(&keys).await;
    // The bank's own token account passed as the batch's escrow.
    let feed = substitute(
        chunk(&h, &auditor, &bank, &tokens),
        &pda::escrow(&batch).0,
        &bank.token,
    );
    h.send(&[feed], &[&auditor.key])
        .await
        .expect_error(MupibError::WrongEscrow, "escrow not derived from the batch");
    assert_eq!(h.snapshot(&keys).await, before);
}

#[tokio::test]
async fn account_type_confusion_auditor_registration_passed_as_bank_registration() {
    let mut h = Harness::start().await;
    let auditor = h.auditor().await;
    let admin = h.admin.insecure_clone();
    let party = h.party(1_000).await;
    h.send_ok(
        &[ix::auditor_register(&admin.pubkey(), &party.pubkey())],
        &[&admin],
    )
    .await;
    let args = h.batch_args(&auditor.pubkey(), 1, 2, VALUE).await;
    let create = ix::batch_create(&party.pubkey(), &h.mint, &party.token, args);
    let instruction = substitute(
        create,
        &pda::bank_registration(&party.pubkey()).0,
        &pda::auditor_registration(&party.pubkey()).0,
    );
    h.send(&[instruction], &[&party.key])
        .await
        .expect_anchor_error(
            AnchorError::AccountDiscriminatorMismatch,
            "auditor registration as bank registration",
        );
    assert!(h
        .account(&pda::batch(&party.pubkey(), &auditor.pubkey(), 1).0)
        .await
        .is_none());
}

#[tokio::test]
async fn account_type_confusion_block_passed_as_batch_is_unpublished_and_pays_nothing() {
    let (mut h, bank, auditor, tokens, batch) = setup().await;
    let block = pda::block(&auditor.pubkey(), 1).0;
    let feed = substitute(chunk(&h, &auditor, &bank, &tokens), &batch, &block);
    h.send_ok(&[feed], &[&auditor.key]).await;
    let snapshot = h.block(&auditor.pubkey(), 1).await;
    assert_eq!(snapshot.decisions[0], DECISION_UNPUBLISHED);
    assert_eq!(h.token_balance(&auditor.token).await, 0);
    assert!(!h.batch(&batch).await.is_spent(0));
}

#[tokio::test]
async fn same_account_twice_as_mutable_escrow_as_bank_token_on_close() {
    let mut h = Harness::start().await;
    let auditor = h.auditor().await;
    let bank = h.bank(1_000).await;
    let tokens = digests(1, 2);
    let batch = h
        .published_batch(&bank, &auditor, 1, &tokens, VALUE, false)
        .await;
    let escrow = pda::escrow(&batch).0;
    let before = h.snapshot(&[batch, escrow, bank.token]).await;
    let close = ix::batch_close(&bank.pubkey(), &auditor.pubkey(), 1, &h.mint, &escrow);
    h.send(&[close], &[&bank.key]).await.expect_anchor_error(
        AnchorError::ConstraintDuplicateMutableAccount,
        "escrow passed as the bank's token account",
    );
    assert_eq!(h.snapshot(&[batch, escrow, bank.token]).await, before);
}

#[tokio::test]
async fn same_account_twice_as_mutable_one_batch_in_two_pairs() {
    let (mut h, bank, auditor, tokens, batch) = setup().await;
    let keys = watched(&auditor, &batch);
    let before = h.snapshot(&keys).await;
    let feed = ix::block_verify_chunk(
        &auditor.pubkey(),
        1,
        &h.mint,
        &auditor.token,
        BlockVerifyChunkArgs {
            start: 0,
            entries: vec![entry(0, 0, tokens[0]), entry(1, 1, tokens[1])],
        },
        &[batch_ref(&bank, &auditor, 1), batch_ref(&bank, &auditor, 1)],
    );
    h.send(&[feed], &[&auditor.key])
        .await
        .expect_error(MupibError::DuplicateBatchAccount, "one batch in two pairs");
    assert_eq!(h.snapshot(&keys).await, before);
}

#[tokio::test]
async fn fake_token_program_in_verification() {
    let (mut h, bank, auditor, tokens, batch) = setup().await;
    let keys = watched(&auditor, &batch);
    let before = h.snapshot(&keys).await;
    // Any executable program other than SPL Token (here: µPIB itself).
    let feed = substitute(
        chunk(&h, &auditor, &bank, &tokens),
        &anchor_spl::token::ID,
        &mupib::ID,
    );
    h.send(&[feed], &[&auditor.key])
        .await
        .expect_anchor_error(AnchorError::InvalidProgramId, "fake token program");
    assert_eq!(h.snapshot(&keys).await, before);
}

#[tokio::test]
async fn reinitialising_existing_config_registration_batch_and_block() {
    let (mut h, bank, auditor, _tokens, batch) = setup().await;
    let admin = h.admin.insecure_clone();
    let config = pda::config().0;
    let keys = [
        config,
        pda::bank_registration(&bank.pubkey()).0,
        batch,
        pda::block(&auditor.pubkey(), 1).0,
    ];
    let before = h.snapshot(&keys).await;

    let mut outcomes = Vec::new();
    outcomes.push((
        "config",
        h.send(&[ix::config_init(&admin.pubkey(), &h.mint)], &[&admin])
            .await,
    ));
    outcomes.push((
        "bank registration",
        h.send(
            &[ix::bank_register(&admin.pubkey(), &bank.pubkey())],
            &[&admin],
        )
        .await,
    ));
    let args = h.batch_args(&auditor.pubkey(), 1, 4, VALUE).await;
    outcomes.push(("batch", h.create_batch(&bank, args).await));
    outcomes.push(("block", h.open_block(&auditor, 1, 4).await));
    // Anchor's `init` of an address that already holds lamports asks the system program to
    // `CreateAccountAllowPrefund`, which refuses an account that is already allocated and
    // owned by a program (this runtime rejects the instruction as invalid instruction data).
    // Either way the system program fails and the transaction is rolled back.
    for (what, outcome) in outcomes {
        assert_eq!(
            outcome.result,
            Err(TransactionError::InstructionError(
                0,
                InstructionError::InvalidInstructionData
            )),
            "{what}: logs:\n{}",
            outcome.logs.join("\n")
        );
        assert!(
            outcome
                .logs
                .iter()
                .any(|l| l.starts_with("Program 11111111111111111111111111111111 failed")),
            "{what}: the system program refused; logs:\n{}",
            outcome.logs.join("\n")
        );
    }
    assert_eq!(h.snapshot(&keys).await, before);
}

#[tokio::test]
async fn closing_and_reusing_a_closed_block_in_the_same_transaction() {
    let (mut h, bank, auditor, tokens, batch) = setup().await;
    let entries = (0..4).map(|s| entry(0, s, tokens[s as usize])).collect();
    h.verify_chunk(&auditor, 1, 0, entries, &[batch_ref(&bank, &auditor, 1)])
        .await
        .result
        .unwrap();
    h.send_ok(&[ix::block_finalize(&auditor.pubkey(), 1)], &[&auditor.key])
        .await;
    let block = pda::block(&auditor.pubkey(), 1).0;
    let before = h.snapshot(&[block]).await;

    let outcome = h
        .send(
            &[
                ix::block_close(&auditor.pubkey(), 1),
                ix::block_close(&auditor.pubkey(), 1),
            ],
            &[&auditor.key],
        )
        .await;
    outcome.expect_anchor_error(
        AnchorError::AccountOwnedByWrongProgram,
        "close then reuse the closed block",
    );
    assert_eq!(
        h.snapshot(&[block]).await,
        before,
        "the whole transaction rolled back"
    );
    let _ = batch;
}

#[tokio::test]
async fn closing_and_reusing_a_closed_batch() {
    let mut h = Harness::start().await;
    let bank = h.bank(1_000).await;
    let auditor = h.auditor().await;
    let tokens = digests(1, 2);
    let batch = h
        .published_batch(&bank, &auditor, 1, &tokens, VALUE, false)
        .await;
    let before = h.snapshot(&[batch]).await;
    let close = ix::batch_close(&bank.pubkey(), &auditor.pubkey(), 1, &h.mint, &bank.token);
    let publish = ix::batch_publish(&bank.pubkey(), &auditor.pubkey(), 1, 2, vec![[1; 16]]);

    // Same transaction: close, then write into the closed account.
    h.send(&[close.clone(), publish], &[&bank.key])
        .await
        .expect_anchor_error(
            AnchorError::AccountOwnedByWrongProgram,
            "write into a batch closed earlier in the transaction",
        );
    assert_eq!(h.snapshot(&[batch]).await, before);

    // Same transaction: close, then re-create the same batch id.
    let args = h.batch_args(&auditor.pubkey(), 1, 2, VALUE).await;
    let recreate = ix::batch_create(&bank.pubkey(), &h.mint, &bank.token, args.clone());
    h.send(&[close.clone(), recreate.clone()], &[&bank.key])
        .await
        .expect_error(
            MupibError::BatchIdReused,
            "re-create a batch closed in the same transaction",
        );
    assert_eq!(h.snapshot(&[batch]).await, before);

    // Later transactions: the address stays dead.
    h.send_ok(&[close], &[&bank.key]).await;
    assert!(h.account(&batch).await.is_none());
    h.send(&[recreate], &[&bank.key])
        .await
        .expect_error(MupibError::BatchIdReused, "re-create a closed batch");
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
}

#[tokio::test]
async fn arithmetic_overflow_in_escrow_amount() {
    let mut h = Harness::start().await;
    let auditor = h.auditor().await;
    let bank = h.bank(1_000).await;
    let mut args = h.batch_args(&auditor.pubkey(), 1, 2, u64::MAX).await;
    h.create_batch(&bank, args.clone()).await.expect_error(
        MupibError::ArithmeticOverflow,
        "token_count × value overflows u64",
    );
    assert!(h
        .account(&pda::batch(&bank.pubkey(), &auditor.pubkey(), 1).0)
        .await
        .is_none());
    args.value = u64::MAX / 2 + 1;
    h.create_batch(&bank, args)
        .await
        .expect_error(MupibError::ArithmeticOverflow, "2 × (2^63) overflows u64");
    assert_eq!(h.token_balance(&bank.token).await, 1_000);
}

#[tokio::test]
async fn arithmetic_overflow_in_batch_id_counter() {
    let mut h = Harness::start().await;
    let auditor = h.auditor().await;
    let bank = h.bank(1_000).await;
    let args = h.batch_args(&auditor.pubkey(), u64::MAX, 1, VALUE).await;
    h.create_batch(&bank, args).await.expect_error(
        MupibError::ArithmeticOverflow,
        "next_batch_id past u64::MAX",
    );
    assert_eq!(h.bank_registration(&bank.pubkey()).await.batches_created, 0);
}

#[tokio::test]
async fn arithmetic_overflow_in_chunk_positions() {
    let (mut h, bank, auditor, tokens, batch) = setup().await;
    let keys = watched(&auditor, &batch);
    let before = h.snapshot(&keys).await;
    let feed = ix::block_verify_chunk(
        &auditor.pubkey(),
        1,
        &h.mint,
        &auditor.token,
        BlockVerifyChunkArgs {
            start: u32::MAX,
            entries: vec![entry(0, 0, tokens[0]), entry(0, 1, tokens[1])],
        },
        &[batch_ref(&bank, &auditor, 1)],
    );
    h.send(&[feed], &[&auditor.key]).await.expect_error(
        MupibError::ArithmeticOverflow,
        "start + entries overflows u32",
    );
    assert_eq!(h.snapshot(&keys).await, before);
}

#[tokio::test]
async fn publishing_past_the_batch_range() {
    let mut h = Harness::start().await;
    let auditor = h.auditor().await;
    let bank = h.bank(1_000).await;
    let args = h.batch_args(&auditor.pubkey(), 1, 3, VALUE).await;
    h.create_batch(&bank, args).await.result.unwrap();
    let batch = pda::batch(&bank.pubkey(), &auditor.pubkey(), 1).0;
    let before = h.snapshot(&[batch]).await;
    h.send(
        &[ix::batch_publish(
            &bank.pubkey(),
            &auditor.pubkey(),
            1,
            0,
            vec![[1; 16]; 4],
        )],
        &[&bank.key],
    )
    .await
    .expect_error(
        MupibError::PublishPastRange,
        "four commitments into a batch of three",
    );
    assert_eq!(h.snapshot(&[batch]).await, before);

    h.send_ok(
        &[ix::batch_publish(
            &bank.pubkey(),
            &auditor.pubkey(),
            1,
            0,
            vec![[1; 16]; 3],
        )],
        &[&bank.key],
    )
    .await;
    let before = h.snapshot(&[batch]).await;
    h.send(
        &[ix::batch_publish(
            &bank.pubkey(),
            &auditor.pubkey(),
            1,
            3,
            vec![[2; 16]],
        )],
        &[&bank.key],
    )
    .await
    .expect_error(
        MupibError::PublishPastRange,
        "a fourth commitment after three",
    );
    assert_eq!(h.snapshot(&[batch]).await, before);
}

#[tokio::test]
async fn verifying_past_the_block_range() {
    let (mut h, bank, auditor, tokens, batch) = setup().await;
    let keys = watched(&auditor, &batch);
    let before = h.snapshot(&keys).await;
    let entries = (0..2).map(|s| entry(0, s, tokens[s as usize])).collect();
    h.verify_chunk(&auditor, 1, 3, entries, &[batch_ref(&bank, &auditor, 1)])
        .await
        .expect_error(MupibError::ChunkPastRange, "positions 3..5 of a block of 4");
    assert_eq!(h.snapshot(&keys).await, before);
}

#[tokio::test]
async fn entry_pointing_past_the_given_batches() {
    let (mut h, bank, auditor, tokens, batch) = setup().await;
    let keys = watched(&auditor, &batch);
    let before = h.snapshot(&keys).await;
    h.verify_chunk(
        &auditor,
        1,
        0,
        vec![entry(1, 0, tokens[0])],
        &[batch_ref(&bank, &auditor, 1)],
    )
    .await
    .expect_error(
        MupibError::BatchIndexOutOfRange,
        "batch_index 1 with one pair",
    );
    let missing: [BatchRef; 0] = [];
    h.verify_chunk(&auditor, 1, 0, vec![entry(0, 0, tokens[0])], &missing)
        .await
        .expect_error(MupibError::BatchIndexOutOfRange, "no pairs at all");
    assert_eq!(h.snapshot(&keys).await, before);
}

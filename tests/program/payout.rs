//! The auditor's payout record (`payout_record`, issue 9 item 1): a settlement transaction
//! `[payout_record(seq, digest), transfer_checked × n]` lands at most once, atomically, and only
//! the auditor's own signature can advance its record.

use anchor_lang::error::ErrorCode as AnchorError;
use mupib::error::MupibError;
use mupib::state::AuditorRegistration;
use mupib_chain::program::events::MupibEvent;
use mupib_chain::program::instructions as ix;
use mupib_chain::program::pda;
use mupib_protocol::payout::{PayoutBatch, VendorPayout};
use mupib_tests::{Harness, Outcome, Party, MINT_DECIMALS};
use solana_sdk::instruction::{Instruction, InstructionError};
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::{Keypair, Signer};
use solana_sdk::transaction::TransactionError;

/// The auditor's token balance at the start.
const FUNDS: u64 = 1_000;

/// A registered auditor holding [`FUNDS`] and two vendors with empty token accounts.
async fn setup() -> (Harness, Party, Vec<Party>) {
    let mut h = Harness::start().await;
    let auditor = h.party(FUNDS).await;
    let admin = h.admin.insecure_clone();
    h.send_ok(
        &[ix::auditor_register(&admin.pubkey(), &auditor.pubkey())],
        &[&admin],
    )
    .await;
    let mut vendors = Vec::new();
    for _ in 0..2 {
        let key = Keypair::new();
        let token = h.token_account(&key.pubkey(), 0).await;
        vendors.push(Party { key, token });
    }
    (h, auditor, vendors)
}

fn batch(seq: u64, vendors: &[Party], amounts: &[u64]) -> PayoutBatch {
    PayoutBatch {
        seq,
        items: vendors
            .iter()
            .zip(amounts)
            .map(|(vendor, amount)| VendorPayout {
                vendor: vendor.pubkey(),
                amount: *amount,
            })
            .collect(),
    }
}

/// The settlement transaction's instructions: the record, then one transfer per item into the
/// vendors' token accounts.
fn settlement(
    auditor: &Party,
    mint: &Pubkey,
    batch: &PayoutBatch,
    vendors: &[Party],
) -> Vec<Instruction> {
    let mut instructions = vec![ix::payout_record(
        &auditor.pubkey(),
        batch.seq,
        batch.digest(&auditor.pubkey()),
    )];
    for (item, vendor) in batch.items.iter().zip(vendors) {
        instructions.push(
            ix::spl_transfer_checked(
                &auditor.token,
                mint,
                &vendor.token,
                &auditor.pubkey(),
                item.amount,
                MINT_DECIMALS,
            )
            .unwrap(),
        );
    }
    instructions
}

async fn record(h: &mut Harness, auditor: &Pubkey) -> (u64, [u8; 32]) {
    let registration: AuditorRegistration = h.auditor_registration(auditor).await;
    (registration.payout_seq, registration.payout_digest)
}

async fn balances(h: &mut Harness, auditor: &Party, vendors: &[Party]) -> Vec<u64> {
    let mut out = vec![h.token_balance(&auditor.token).await];
    for vendor in vendors {
        out.push(h.token_balance(&vendor.token).await);
    }
    out
}

async fn pay(h: &mut Harness, auditor: &Party, batch: &PayoutBatch, vendors: &[Party]) -> Outcome {
    let mint = h.mint;
    h.send(&settlement(auditor, &mint, batch, vendors), &[&auditor.key])
        .await
}

#[tokio::test]
async fn settlement_pays_every_vendor_and_records_the_batch() {
    let (mut h, auditor, vendors) = setup().await;
    assert_eq!(record(&mut h, &auditor.pubkey()).await, (0, [0; 32]));
    let first = batch(0, &vendors, &[100, 250]);
    let outcome = pay(&mut h, &auditor, &first, &vendors).await;
    assert!(outcome.result.is_ok(), "{outcome:?}");
    assert_eq!(
        balances(&mut h, &auditor, &vendors).await,
        vec![FUNDS - 350, 100, 250]
    );
    let digest = first.digest(&auditor.pubkey());
    assert_eq!(record(&mut h, &auditor.pubkey()).await, (1, digest));
    let event = outcome
        .events()
        .into_iter()
        .find_map(|e| match e {
            MupibEvent::PayoutRecorded(p) => Some(p),
            _ => None,
        })
        .expect("PayoutRecorded event");
    assert_eq!(
        (event.auditor, event.seq, event.digest),
        (auditor.pubkey(), 0, digest)
    );
    let second = batch(1, &vendors[..1], &[5]);
    pay(&mut h, &auditor, &second, &vendors)
        .await
        .result
        .unwrap();
    assert_eq!(
        record(&mut h, &auditor.pubkey()).await,
        (2, second.digest(&auditor.pubkey()))
    );
    assert_eq!(
        balances(&mut h, &auditor, &vendors).await,
        vec![FUNDS - 355, 105, 250]
    );
}

#[tokio::test]
async fn payout_record_without_the_auditors_signature_is_refused() {
    let (mut h, auditor, _vendors) = setup().await;
    let mut instruction = ix::payout_record(&auditor.pubkey(), 0, [7; 32]);
    for meta in instruction.accounts.iter_mut() {
        if meta.pubkey == auditor.pubkey() {
            meta.is_signer = false;
        }
    }
    h.send(&[instruction], &[])
        .await
        .expect_anchor_error(AnchorError::AccountNotSigner, "record without a signature");
    assert_eq!(record(&mut h, &auditor.pubkey()).await, (0, [0; 32]));
}

#[tokio::test]
async fn another_auditor_cannot_advance_your_payout_record() {
    let (mut h, victim, _vendors) = setup().await;
    let intruder = h.auditor().await;
    let mut instruction = ix::payout_record(&intruder.pubkey(), 0, [7; 32]);
    let own = pda::auditor_registration(&intruder.pubkey()).0;
    let target = pda::auditor_registration(&victim.pubkey()).0;
    for meta in instruction.accounts.iter_mut().filter(|m| m.pubkey == own) {
        meta.pubkey = target;
    }
    h.send(&[instruction], &[&intruder.key])
        .await
        .expect_anchor_error(AnchorError::ConstraintSeeds, "record of another auditor");
    // Signing as the victim without its key is a missing signature, see above.
    assert_eq!(record(&mut h, &victim.pubkey()).await, (0, [0; 32]));
    assert_eq!(record(&mut h, &intruder.pubkey()).await, (0, [0; 32]));
    // A stranger that is no auditor at all has no record to sign with.
    let stranger = h.party(0).await;
    h.send(
        &[ix::payout_record(&stranger.pubkey(), 0, [7; 32])],
        &[&stranger.key],
    )
    .await
    .expect_anchor_error(AnchorError::AccountNotInitialized, "no registration");
}

#[tokio::test]
async fn replaying_a_landed_seq_is_refused_and_pays_nothing_more() {
    let (mut h, auditor, vendors) = setup().await;
    let first = batch(0, &vendors, &[100, 250]);
    pay(&mut h, &auditor, &first, &vendors)
        .await
        .result
        .unwrap();
    let paid = balances(&mut h, &auditor, &vendors).await;
    let landed = record(&mut h, &auditor.pubkey()).await;

    // The same batch, signed again (a fresh transaction): seq 0 is consumed.
    let outcome = pay(&mut h, &auditor, &first, &vendors).await;
    outcome.expect_error(MupibError::PayoutSeqMismatch, "replay of seq 0");
    // Another batch that claims seq 0 too.
    let other = batch(0, &vendors[1..], &[1]);
    pay(&mut h, &auditor, &other, &vendors[1..])
        .await
        .expect_error(MupibError::PayoutSeqMismatch, "a second batch 0");
    assert_eq!(balances(&mut h, &auditor, &vendors).await, paid);
    assert_eq!(record(&mut h, &auditor.pubkey()).await, landed);
}

#[tokio::test]
async fn skipping_a_seq_is_refused_and_pays_nothing() {
    let (mut h, auditor, vendors) = setup().await;
    let skipped = batch(1, &vendors, &[100, 250]);
    pay(&mut h, &auditor, &skipped, &vendors)
        .await
        .expect_error(MupibError::PayoutSeqMismatch, "seq 1 before seq 0");
    assert_eq!(
        balances(&mut h, &auditor, &vendors).await,
        vec![FUNDS, 0, 0]
    );
    assert_eq!(record(&mut h, &auditor.pubkey()).await, (0, [0; 32]));
}

#[tokio::test]
async fn settlement_whose_transfer_fails_leaves_the_record_unchanged() {
    let (mut h, auditor, vendors) = setup().await;
    // The second vendor's account is gone (never created here): its transfer fails.
    let gone = Party {
        key: Keypair::new(),
        token: Pubkey::new_unique(),
    };
    let targets = [
        Party {
            key: vendors[0].key.insecure_clone(),
            token: vendors[0].token,
        },
        gone,
    ];
    let failing = batch(0, &targets, &[100, 250]);
    let outcome = pay(&mut h, &auditor, &failing, &targets).await;
    assert!(
        matches!(
            outcome.result,
            Err(TransactionError::InstructionError(2, _))
        ),
        "the third instruction (second transfer) fails: {:?}",
        outcome.result
    );
    assert_eq!(record(&mut h, &auditor.pubkey()).await, (0, [0; 32]));
    assert_eq!(
        balances(&mut h, &auditor, &vendors).await,
        vec![FUNDS, 0, 0],
        "the first transfer is rolled back too"
    );
    // More than the auditor holds: the whole transaction fails, nothing recorded.
    let too_much = batch(0, &vendors, &[FUNDS, 1]);
    let outcome = pay(&mut h, &auditor, &too_much, &vendors).await;
    assert!(
        matches!(
            outcome.result,
            Err(TransactionError::InstructionError(
                2,
                InstructionError::Custom(_)
            ))
        ),
        "insufficient funds in the second transfer: {:?}",
        outcome.result
    );
    assert_eq!(record(&mut h, &auditor.pubkey()).await, (0, [0; 32]));
    assert_eq!(
        balances(&mut h, &auditor, &vendors).await,
        vec![FUNDS, 0, 0]
    );
    // The batch without the failing vendor lands as seq 0.
    let fixed = batch(0, &vendors[..1], &[100]);
    pay(&mut h, &auditor, &fixed, &vendors)
        .await
        .result
        .unwrap();
    assert_eq!(
        record(&mut h, &auditor.pubkey()).await,
        (1, fixed.digest(&auditor.pubkey()))
    );
}

#[tokio::test]
async fn stranger_sending_lamports_to_any_address_changes_nothing() {
    let (mut h, auditor, vendors) = setup().await;
    let stranger = h.party(0).await;
    let registration = pda::auditor_registration(&auditor.pubkey()).0;
    let before = h.auditor_registration(&auditor.pubkey()).await;
    let lamports = h.lamports(&registration).await;
    for target in [registration, auditor.pubkey(), Pubkey::new_unique()] {
        h.send_ok(
            &[solana_system_interface::instruction::transfer(
                &stranger.pubkey(),
                &target,
                1_000_000,
            )],
            &[&stranger.key],
        )
        .await;
    }
    assert_eq!(h.lamports(&registration).await, lamports + 1_000_000);
    let after = h.auditor_registration(&auditor.pubkey()).await;
    assert_eq!(
        (after.payout_seq, after.payout_digest),
        (before.payout_seq, before.payout_digest),
        "lamports are not a record"
    );
    // Nothing is created by a settlement, so nothing pre-funded blocks it.
    let first = batch(0, &vendors, &[100, 250]);
    pay(&mut h, &auditor, &first, &vendors)
        .await
        .result
        .unwrap();
    assert_eq!(
        record(&mut h, &auditor.pubkey()).await,
        (1, first.digest(&auditor.pubkey()))
    );
}

#[tokio::test]
async fn settlement_is_allowed_while_paused_and_for_an_inactive_auditor() {
    let (mut h, auditor, vendors) = setup().await;
    let admin = h.admin.insecure_clone();
    h.set_paused(true).await;
    h.send_ok(
        &[ix::auditor_set_active(
            &admin.pubkey(),
            &auditor.pubkey(),
            false,
        )],
        &[&admin],
    )
    .await;
    let first = batch(0, &vendors, &[100, 250]);
    pay(&mut h, &auditor, &first, &vendors)
        .await
        .result
        .unwrap();
    assert_eq!(
        balances(&mut h, &auditor, &vendors).await,
        vec![FUNDS - 350, 100, 250]
    );
    assert_eq!(record(&mut h, &auditor.pubkey()).await.0, 1);
}

//! The auditor engine against the simulated chain: the delivery rule, block decisions, eq. 7,
//! suspension, intake detection and paper mode, money balances (property test) and
//! Proposition 2 (Monte Carlo).

use mupib_auditor::{
    Auditor, AuditorConfig, BlockOutcome, EngineError, EngineVerdict, SimulatedChain,
    TransactionSummary, UserTerms,
};

use mupib_protocol::block::{BlockVerification, BlockVerifier};

use mupib_auditor::store::{
    MemoryStore, MisbehaviourKind, SqliteStore, Store, StoreError, TransactionStatus,
};
use mupib_protocol::decision::Decision;
use mupib_protocol::money::{Amount, Withholding};
use mupib_protocol::payout::VendorPayout;
use mupib_protocol::reject::RejectCode;
use mupib_protocol::reject::RejectReason;
use mupib_protocol::response::Verdict;
use mupib_protocol::risk::{expected_block_risk, proposition2_average_risk};
use mupib_protocol::token::TokenId;
use mupib_protocol::token::TokenRef;
use mupib_protocol::transaction::TransactionId;
use mupib_protocol::trust::{TrustModel, TrustScale};
use mupib_protocol::Pubkey;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const VALUE: u64 = 100;

fn key(n: u8) -> Pubkey {
    Pubkey::new_from_array([n; 32])
}

fn digest_of(batch_id: u64, serial: u32) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&batch_id.to_le_bytes());
    d[8..12].copy_from_slice(&serial.to_le_bytes());
    d[15] = 0xA5;
    d
}

/// A bank with one published batch, a simulated chain and a transaction-id counter.
struct World {
    chain: SimulatedChain,
    bank: Pubkey,
    batch: u64,
    next_serial: u32,
    next_tx: u64,
}

const BATCH: u64 = 1;
const BATCH_SIZE: u32 = 10_000;

impl World {
    fn new() -> Self {
        let bank = key(250);
        let mut chain = SimulatedChain::new();
        let digests = (0..BATCH_SIZE).map(|s| digest_of(BATCH, s)).collect();
        chain.publish_batch(bank, BATCH, VALUE, digests);
        World {
            chain,
            bank,
            batch: BATCH,
            next_serial: 0,
            next_tx: 0,
        }
    }

    /// A fresh valid token (a new batch is published when the current one is used up).
    fn valid(&mut self) -> TokenRef {
        if self.next_serial == BATCH_SIZE {
            self.batch += 1;
            self.next_serial = 0;
            let digests = (0..BATCH_SIZE).map(|s| digest_of(self.batch, s)).collect();
            self.chain
                .publish_batch(self.bank, self.batch, VALUE, digests);
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        TokenRef {
            id: TokenId {
                bank: self.bank,
                batch_id: self.batch,
                serial,
            },
            value: VALUE,
            digest: digest_of(self.batch, serial),
        }
    }

    /// A token from a batch no bank published.
    fn unpublished(&mut self) -> TokenRef {
        self.next_tx += 1;
        let serial = u32::try_from(self.next_tx % u64::from(u32::MAX)).expect("serial");
        TokenRef {
            id: TokenId {
                bank: self.bank,
                batch_id: 999,
                serial,
            },
            value: VALUE,
            digest: digest_of(999, serial),
        }
    }

    /// A published token whose content was altered (digest mismatch).
    fn altered(&mut self) -> TokenRef {
        let mut token = self.valid();
        token.digest[0] ^= 0xFF;
        token
    }

    fn tx(&mut self, user: Pubkey, vendor: Pubkey, tokens: Vec<TokenRef>) -> TransactionSummary {
        self.next_tx += 1;
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&self.next_tx.to_le_bytes());
        TransactionSummary {
            id: TransactionId(id),
            user,
            vendor,
            tokens,
            submission: id,
        }
    }

    fn valid_tx(&mut self, user: Pubkey, vendor: Pubkey, n: usize) -> TransactionSummary {
        let tokens = (0..n).map(|_| self.valid()).collect();
        self.tx(user, vendor, tokens)
    }
}

fn config(model: TrustModel, w0: u64, bps: u16, paper_mode: bool) -> AuditorConfig {
    AuditorConfig {
        withholding: Withholding::from_bps(bps).expect("bps"),
        trust_model: model,
        trust_scale: TrustScale::Initial,
        initial_block_size: w0,
        paper_mode,
    }
}

fn auditor(model: TrustModel, w0: u64) -> Auditor<MemoryStore> {
    Auditor::new(MemoryStore::new(), config(model, w0, 2000, false)).expect("auditor")
}

const USER: u8 = 1;
const VENDOR: u8 = 50;

#[test]
fn below_block_size_delivers_at_once_and_accrues_payout() {
    let mut world = World::new();
    let mut auditor = auditor(TrustModel::Neutral, 10);
    let tx = world.valid_tx(key(USER), key(VENDOR), 3);
    let out = auditor.intake(&tx).expect("intake");
    assert_eq!(out.verdict, EngineVerdict::Deliver);
    // 3 tokens × 100 × (1 − 0.2) = 240
    assert_eq!(out.payout, 240);
    assert!(out.block.is_none());
    assert_eq!(out.user.queued_tokens, 3);
    assert_eq!(
        auditor
            .store()
            .vendor(&key(VENDOR))
            .expect("vendor")
            .accrued,
        240
    );
}

#[test]
fn reaching_block_size_exactly_forms_a_block_and_waits() {
    let mut world = World::new();
    let mut auditor = auditor(TrustModel::Neutral, 10);
    for _ in 0..3 {
        let tx = world.valid_tx(key(USER), key(VENDOR), 3);
        assert_eq!(
            auditor.intake(&tx).expect("intake").verdict,
            EngineVerdict::Deliver
        );
    }
    // 9 queued + 1 = 10 = W: the block forms, this transaction waits.
    let last = world.valid_tx(key(USER), key(VENDOR), 1);
    let out = auditor.intake(&last).expect("intake");
    assert_eq!(out.verdict, EngineVerdict::Wait);
    assert_eq!(out.payout, 0);
    let block = out.block.expect("block formed");
    assert_eq!(block.entries.len(), 10);
    assert_eq!(block.entries[0].id.serial, 0, "arrival order");
    assert_eq!(
        block.entries[9].id, last.tokens[0].id,
        "the waiting transaction is last"
    );
    assert_eq!(out.user.queued_tokens, 0);
    assert_eq!(out.user.pending_block, Some(block.block_id));
    assert_eq!(
        auditor
            .store()
            .vendor(&key(VENDOR))
            .expect("vendor")
            .accrued,
        720
    );
}

#[test]
fn block_exceeds_block_size_by_less_than_one_transaction() {
    let mut world = World::new();
    let mut auditor = auditor(TrustModel::Neutral, 10);
    for _ in 0..3 {
        auditor
            .intake(&world.valid_tx(key(USER), key(VENDOR), 3))
            .expect("intake");
    }
    let out = auditor
        .intake(&world.valid_tx(key(USER), key(VENDOR), 3))
        .expect("intake");
    let block = out.block.expect("block");
    // 12 tokens: W = 10 exceeded by 2 < 3 (one transaction).
    assert_eq!(block.entries.len(), 12);
}

fn fill_block(
    world: &mut World,
    auditor: &mut Auditor<MemoryStore>,
    txs: Vec<Vec<TokenRef>>,
) -> u64 {
    let mut block = None;
    let count = txs.len();
    for (index, tokens) in txs.into_iter().enumerate() {
        let tx = world.tx(key(USER), key(VENDOR), tokens);
        let out = auditor.intake(&tx).expect("intake");
        if index + 1 < count {
            assert_eq!(out.verdict, EngineVerdict::Deliver);
        } else {
            assert_eq!(out.verdict, EngineVerdict::Wait);
            block = out.block;
        }
    }
    block.expect("block").block_id
}

fn verify(world: &mut World, auditor: &mut Auditor<MemoryStore>, block_id: u64) -> BlockOutcome {
    let submission = auditor.submission(block_id).expect("submission");
    let decisions = world.chain.verify(&submission).expect("verify").decisions;
    auditor
        .apply_decisions(block_id, &decisions)
        .expect("apply")
}

#[test]
fn valid_block_keeps_block_size_and_pays_the_waiting_transaction() {
    let mut world = World::new();
    let mut auditor = auditor(TrustModel::Neutral, 10);
    let txs = (0..4)
        .map(|_| (0..3).map(|_| world.valid()).collect())
        .collect();
    let block_id = fill_block(&mut world, &mut auditor, txs);
    let outcome = verify(&mut world, &mut auditor, block_id);
    assert_eq!(outcome.decisions.valid, 12);
    assert_eq!(outcome.verdicts.len(), 1);
    assert_eq!(outcome.verdicts[0].verdict, EngineVerdict::Deliver);
    assert_eq!(outcome.verdicts[0].payout, 240);
    assert_eq!(outcome.trust.block_size_before, 10);
    assert_eq!(outcome.trust.block_size, 10, "a valid block keeps W");
    let s = outcome.settlement;
    assert_eq!(s.escrow_paid, Amount(1200));
    assert_eq!(s.vendor_payouts, Amount(960));
    assert_eq!(s.margin, Amount(240));
    assert_eq!(s.loss, Amount(0));
    // eq. 10: −12 · 100 · 0.2 = −240
    assert_eq!(outcome.risk, -240);
    assert_eq!(outcome.paper_risk.map(|r| r.0), Some(-240 * 10_000));
    let user = auditor.user(&key(USER)).expect("user").expect("known");
    assert_eq!(user.pending_block, None);
    assert_eq!(user.blocks_valid, 1);
    assert_eq!(
        auditor
            .store()
            .vendor(&key(VENDOR))
            .expect("vendor")
            .accrued,
        960
    );
}

#[test]
fn invalid_block_rejects_waiting_refunds_valid_tokens_and_shrinks_block_size_neutral() {
    let mut world = World::new();
    let mut auditor = auditor(TrustModel::Neutral, 10);
    let txs = vec![
        vec![world.unpublished(), world.valid(), world.valid()],
        (0..3).map(|_| world.valid()).collect(),
        (0..3).map(|_| world.valid()).collect(),
        vec![world.valid(), world.altered(), world.valid()],
    ];
    let block_id = fill_block(&mut world, &mut auditor, txs);
    let outcome = verify(&mut world, &mut auditor, block_id);
    assert_eq!(outcome.decisions.unpublished, 1);
    assert_eq!(outcome.decisions.altered, 1);
    assert_eq!(outcome.invalid.len(), 2);
    assert_eq!(outcome.invalid[0].decision, Decision::Unpublished);
    assert_eq!(outcome.invalid[1].decision, Decision::Altered);
    match outcome.response_verdict(&outcome.verdicts[0]) {
        Verdict::Reject(RejectReason::InvalidTokensInBlock {
            block_id: id,
            decisions,
        }) => {
            assert_eq!(id, block_id);
            assert_eq!(decisions, outcome.invalid);
        }
        other => panic!("unexpected verdict {other:?}"),
    }
    assert_eq!(
        outcome.verdicts[0].verdict,
        EngineVerdict::Reject(RejectCode::InvalidBlock)
    );
    // the waiting transaction's two valid tokens are refunded: 2 × 100
    assert_eq!(outcome.verdicts[0].refund, 200);
    assert_eq!(
        auditor.store().user_refund(&key(USER)).expect("refund"),
        200
    );
    // eq. 7, neutral, N = W0 = 10, β = 2: W1 = ⌊10 · (11 − 2)/(11 − 0)⌋ = ⌊90/11⌋ = 8
    assert_eq!(outcome.trust.block_size, 8);
    assert_eq!(outcome.trust.invalid_total, 2);
    let s = outcome.settlement;
    // escrow: 10 valid tokens; payouts: 3 delivered × 240; margin 3 × 60; loss: 1 unpublished token
    assert_eq!(s.escrow_paid, Amount(1000));
    assert_eq!(s.vendor_payouts, Amount(720));
    assert_eq!(s.refunds, Amount(200));
    assert_eq!(s.margin, Amount(180));
    assert_eq!(s.loss, Amount(100));
    // eq. 12: 100 · ((1 − 0.6) + (0 − 0.6) + (0 − 0.6)) = −80
    assert_eq!(outcome.risk, -80);
    assert_eq!(outcome.delivered_risk, -80);
    let user = auditor.user(&key(USER)).expect("user").expect("known");
    assert_eq!(user.trust.block_size, 8);
    assert_eq!(user.blocks_invalid, 1);
    assert!(!user.suspended);
    // Vendors keep what was delivered at once; nothing for the rejected one.
    assert_eq!(
        auditor
            .store()
            .vendor(&key(VENDOR))
            .expect("vendor")
            .accrued,
        720
    );
}

#[test]
fn invalid_block_shrinks_block_size_pessimistic() {
    let mut world = World::new();
    let mut auditor = auditor(TrustModel::Pessimistic, 10);
    let txs = vec![
        vec![world.unpublished(), world.valid(), world.valid()],
        (0..3).map(|_| world.valid()).collect(),
        (0..3).map(|_| world.valid()).collect(),
        vec![world.valid(), world.altered(), world.valid()],
    ];
    let block_id = fill_block(&mut world, &mut auditor, txs);
    let outcome = verify(&mut world, &mut auditor, block_id);
    // eq. 5: T2(γ1)/T2(γ0) = exp(−(ln 11/10) · 2) = 11^(−0.2) ≈ 0.6190; W1 = ⌊6.190⌋ = 6
    assert_eq!(outcome.trust.block_size, 6);
}

#[test]
fn applying_the_same_decisions_twice_changes_nothing_and_returns_the_same_outcome() {
    let mut world = World::new();
    let mut auditor = auditor(TrustModel::Neutral, 10);
    let txs = vec![
        vec![world.unpublished(), world.valid(), world.valid()],
        (0..3).map(|_| world.valid()).collect(),
        (0..3).map(|_| world.valid()).collect(),
        (0..3).map(|_| world.valid()).collect(),
    ];
    let block_id = fill_block(&mut world, &mut auditor, txs);
    let submission = auditor.submission(block_id).expect("submission");
    let decisions = world.chain.verify(&submission).expect("verify").decisions;
    let first = auditor
        .apply_decisions(block_id, &decisions)
        .expect("apply");
    let user = auditor.user(&key(USER)).expect("user");
    let vendor = auditor.store().vendor(&key(VENDOR)).expect("vendor");
    let refund = auditor.store().user_refund(&key(USER)).expect("refund");
    let second = auditor
        .apply_decisions(block_id, &decisions)
        .expect("apply again");
    assert_eq!(first, second);
    assert_eq!(auditor.user(&key(USER)).expect("user"), user);
    assert_eq!(
        auditor.store().vendor(&key(VENDOR)).expect("vendor"),
        vendor
    );
    assert_eq!(
        auditor.store().user_refund(&key(USER)).expect("refund"),
        refund
    );
    // the chain also answers a resubmission with the same decisions
    assert_eq!(
        world.chain.verify(&submission).expect("verify").decisions,
        decisions
    );
}

#[test]
fn wrong_number_of_decisions_is_refused_without_state_change() {
    let mut world = World::new();
    let mut auditor = auditor(TrustModel::Neutral, 4);
    let txs = vec![
        (0..2).map(|_| world.valid()).collect(),
        (0..2).map(|_| world.valid()).collect(),
    ];
    let block_id = fill_block(&mut world, &mut auditor, txs);
    let before = auditor.user(&key(USER)).expect("user");
    let err = auditor
        .apply_decisions(block_id, &[Decision::Valid; 3])
        .expect_err("short");
    assert!(matches!(
        err,
        EngineError::DecisionCount {
            expected: 4,
            got: 3,
            ..
        }
    ));
    assert!(matches!(
        auditor.apply_decisions(77, &[]),
        Err(EngineError::UnknownBlock(77))
    ));
    assert_eq!(auditor.user(&key(USER)).expect("user"), before);
}

#[test]
fn transactions_arriving_during_verification_are_held_then_decided_with_the_new_block_size() {
    let mut world = World::new();
    let mut auditor = auditor(TrustModel::Neutral, 10);
    let txs = vec![
        vec![world.unpublished(), world.valid(), world.valid()],
        (0..3).map(|_| world.valid()).collect(),
        (0..3).map(|_| world.valid()).collect(),
        (0..3).map(|_| world.valid()).collect(),
    ];
    let block_id = fill_block(&mut world, &mut auditor, txs);
    // Three transactions of 3 tokens arrive while the block is under verification: held.
    let mut held = Vec::new();
    for _ in 0..3 {
        let tx = world.valid_tx(key(USER), key(VENDOR), 3);
        let out = auditor.intake(&tx).expect("intake");
        assert_eq!(out.verdict, EngineVerdict::Wait);
        assert!(out.block.is_none());
        assert_eq!(out.payout, 0);
        held.push(tx);
    }
    let outcome = verify(&mut world, &mut auditor, block_id);
    // β = 1: W1 = ⌊10 · 10/11⌋ = 9. Held: 3 < 9 deliver, 6 < 9 deliver, 9 ≥ 9 completes a block.
    assert_eq!(outcome.trust.block_size, 9);
    let verdicts: Vec<_> = outcome
        .verdicts
        .iter()
        .map(|v| (v.transaction_id, v.verdict))
        .collect();
    assert_eq!(
        verdicts,
        vec![
            (
                outcome.verdicts[0].transaction_id,
                EngineVerdict::Reject(RejectCode::InvalidBlock)
            ),
            (held[0].id, EngineVerdict::Deliver),
            (held[1].id, EngineVerdict::Deliver),
            (held[2].id, EngineVerdict::Wait),
        ]
    );
    let next = outcome.next_block.expect("next block");
    assert_eq!(next.entries.len(), 9);
    let next_outcome = verify(&mut world, &mut auditor, next.block_id);
    assert_eq!(next_outcome.verdicts[0].transaction_id, held[2].id);
    assert_eq!(next_outcome.verdicts[0].verdict, EngineVerdict::Deliver);
    assert_eq!(next_outcome.trust.block_size, 9);
}

#[test]
fn suspended_user_is_refused_and_held_transactions_are_rejected_and_released() {
    let mut world = World::new();
    // Neutral, N = W0 = 2: T0(γ) = (3 − γ)/4, zero at γ = 3.
    let mut auditor = auditor(TrustModel::Neutral, 2);
    let tokens = vec![world.unpublished()];
    let first = world.tx(key(USER), key(VENDOR), tokens);
    assert_eq!(
        auditor.intake(&first).expect("intake").verdict,
        EngineVerdict::Deliver
    );
    let tokens = vec![world.unpublished(), world.unpublished()];
    let second = world.tx(key(USER), key(VENDOR), tokens);
    let out = auditor.intake(&second).expect("intake");
    assert_eq!(out.verdict, EngineVerdict::Wait);
    let block_id = out.block.expect("block").block_id;
    let held = world.valid_tx(key(USER), key(VENDOR), 1);
    assert_eq!(
        auditor.intake(&held).expect("intake").verdict,
        EngineVerdict::Wait
    );
    assert!(auditor
        .store()
        .token_seen(&held.tokens[0].id)
        .expect("seen"));

    let outcome = verify(&mut world, &mut auditor, block_id);
    assert_eq!(outcome.trust.block_size, 0);
    assert!(outcome.trust.suspended);
    assert_eq!(outcome.verdicts[1].transaction_id, held.id);
    assert_eq!(
        outcome.verdicts[1].verdict,
        EngineVerdict::Reject(RejectCode::UserSuspended)
    );
    // The held transaction never reached the chain: its token is released to the user.
    assert!(!auditor
        .store()
        .token_seen(&held.tokens[0].id)
        .expect("seen"));
    assert!(!world.chain.is_spent(&held.tokens[0].id));

    let user = auditor.user(&key(USER)).expect("user").expect("known");
    assert!(user.suspended);
    assert_eq!(user.queued_tokens, 0);
    let vendor_before = auditor.store().vendor(&key(VENDOR)).expect("vendor");
    let late = world.valid_tx(key(USER), key(VENDOR), 1);
    let refused = auditor.intake(&late).expect("intake");
    assert_eq!(
        refused.verdict,
        EngineVerdict::Reject(RejectCode::UserSuspended)
    );
    assert_eq!(refused.payout, 0);
    assert!(refused.block.is_none());
    assert_eq!(
        auditor.store().vendor(&key(VENDOR)).expect("vendor"),
        vendor_before
    );
}

#[test]
fn suspension_at_intake_flushes_queued_delivered_transactions_to_the_chain() {
    let mut world = World::new();
    let mut auditor = auditor(TrustModel::Neutral, 3);
    // Two delivered transactions sit in the queue (2 < 3).
    for _ in 0..2 {
        let tx = world.valid_tx(key(USER), key(VENDOR), 1);
        assert_eq!(
            auditor.intake(&tx).expect("intake").verdict,
            EngineVerdict::Deliver
        );
    }
    // A forged-token report of 4 tokens: γ = 4 ≥ N + 1 → T0 = 0 → W = 0.
    let forged = world.valid_tx(key(USER), key(VENDOR), 4);
    let forged_ids: Vec<TokenId> = forged.tokens.iter().map(|t| t.id).collect();
    let out = auditor
        .report_forgery(&forged, &forged_ids)
        .expect("report");
    assert_eq!(out.verdict, EngineVerdict::Reject(RejectCode::ForgedToken));
    assert!(out.user.suspended);
    let flush = out.block.expect("queued transactions are flushed");
    assert_eq!(flush.entries.len(), 2);
    let decisions = world.chain.verify(&flush).expect("verify").decisions;
    let outcome = auditor
        .apply_decisions(flush.block_id, &decisions)
        .expect("apply");
    assert!(outcome.verdicts.is_empty(), "no waiting transaction");
    assert_eq!(outcome.settlement.escrow_paid, Amount(200));
    assert_eq!(outcome.settlement.vendor_payouts, Amount(160));
    assert!(world.chain.is_spent(&flush.entries[0].id));
}

#[test]
fn double_spent_token_is_rejected_at_intake_and_counts_in_trust() {
    let mut world = World::new();
    let mut auditor = auditor(TrustModel::Neutral, 10);
    let first = world.valid_tx(key(USER), key(VENDOR), 2);
    auditor.intake(&first).expect("intake");
    let reused = vec![first.tokens[1], world.valid()];
    let attack = world.tx(key(USER), key(VENDOR + 1), reused);
    let out = auditor.intake(&attack).expect("intake");
    assert_eq!(
        out.verdict,
        EngineVerdict::Reject(RejectCode::DoubleSpending)
    );
    // β = 1 at once: W = ⌊10 · 10/11⌋ = 9
    assert_eq!(out.user.trust.block_size, 9);
    assert_eq!(out.user.trust.invalid_total, 1);
    assert_eq!(out.user.queued_tokens, 2, "nothing of the attack is queued");
    assert!(
        !auditor
            .store()
            .token_seen(&attack.tokens[1].id)
            .expect("seen"),
        "the fresh token stays unused"
    );
    assert_eq!(
        auditor
            .store()
            .vendor(&key(VENDOR + 1))
            .expect("vendor")
            .accrued,
        0
    );
    let records = auditor.store().misbehaviour().expect("records");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].kind, MisbehaviourKind::DoubleSpending);
    assert_eq!(records[0].tokens, 1);
}

#[test]
fn token_twice_in_one_transaction_is_double_spending() {
    let mut world = World::new();
    let mut auditor = auditor(TrustModel::Neutral, 10);
    let token = world.valid();
    let attack = world.tx(key(USER), key(VENDOR), vec![token, token]);
    let out = auditor.intake(&attack).expect("intake");
    assert_eq!(
        out.verdict,
        EngineVerdict::Reject(RejectCode::DoubleSpending)
    );
    assert_eq!(out.user.trust.invalid_total, 1);
}

/// An honest retry — the same transaction with the same bytes, e.g. after a lost answer or a
/// crash — gets the stored verdict back: no flag, no new row, nothing accrued twice.
#[test]
fn resubmitting_the_same_transaction_returns_the_stored_verdict_and_writes_nothing() {
    let mut world = World::new();
    let mut auditor = auditor(TrustModel::Neutral, 10);
    let tx = world.valid_tx(key(USER), key(VENDOR), 2);
    let first = auditor.intake(&tx).expect("intake");
    assert_eq!(first.verdict, EngineVerdict::Deliver);
    assert!(!first.resubmission);
    let user_before = auditor.user(&key(USER)).expect("user");
    let retry = auditor.intake(&tx).expect("retry");
    assert!(retry.resubmission);
    assert_eq!(retry.verdict, EngineVerdict::Deliver);
    assert_eq!((retry.seq, retry.payout), (first.seq, 0));
    assert_eq!(
        auditor.user(&key(USER)).expect("user"),
        user_before,
        "nothing written"
    );
    let vendor = auditor.store().vendor(&key(VENDOR)).expect("vendor");
    assert_eq!(vendor.double_sellings, 0);
    assert_eq!(vendor.accrued, 160, "paid once only");
    assert!(auditor.store().misbehaviour().expect("records").is_empty());
    // A retry of a rejected transaction gets its rejection back, unpenalised again.
    let spent = tx.tokens[0];
    let cheat = world.tx(key(USER), key(VENDOR), vec![spent]);
    let rejected = auditor.intake(&cheat).expect("double spend");
    assert_eq!(
        rejected.verdict,
        EngineVerdict::Reject(RejectCode::DoubleSpending)
    );
    let again = auditor.intake(&cheat).expect("retry");
    assert!(again.resubmission);
    assert_eq!(again.verdict, rejected.verdict);
    assert_eq!(
        auditor
            .user(&key(USER))
            .expect("user")
            .expect("known")
            .trust
            .invalid_total,
        1,
        "penalised once"
    );
}

/// The sold payment presented again with other bytes (another certificate object, another
/// vendor) is double selling: the presenting vendor is flagged, the user's trust is untouched
/// (a vendor can replay a user's signed payment without the user) and nothing is paid twice.
#[test]
fn sold_transaction_presented_with_other_bytes_is_double_selling_and_flags_the_vendor() {
    let mut world = World::new();
    let mut auditor = auditor(TrustModel::Neutral, 10);
    let tx = world.valid_tx(key(USER), key(VENDOR), 2);
    auditor.intake(&tx).expect("intake");
    let mut replay = tx.clone();
    replay.submission[0] ^= 0xFF;
    let replay = auditor.intake(&replay).expect("replay");
    assert!(!replay.resubmission);
    assert_eq!(
        replay.verdict,
        EngineVerdict::Reject(RejectCode::DoubleSelling)
    );
    assert_eq!(replay.user.trust.block_size, 10);
    assert_eq!(replay.user.trust.invalid_total, 0);
    let vendor = auditor.store().vendor(&key(VENDOR)).expect("vendor");
    assert_eq!(vendor.double_sellings, 1);
    assert_eq!(vendor.accrued, 160, "paid once only");
    let records = auditor.store().misbehaviour().expect("records");
    assert_eq!(records[0].kind, MisbehaviourKind::DoubleSelling);
    assert_eq!(records[0].vendor, key(VENDOR));
    assert_eq!(records[0].transaction_id, tx.id);
    // Another vendor presenting the same payment is double selling too.
    let mut other = tx.clone();
    other.vendor = key(VENDOR + 1);
    let other = auditor.intake(&other).expect("other vendor");
    assert_eq!(
        other.verdict,
        EngineVerdict::Reject(RejectCode::DoubleSelling)
    );
    assert_eq!(
        auditor
            .store()
            .vendor(&key(VENDOR + 1))
            .expect("vendor")
            .double_sellings,
        1
    );
}

#[test]
fn forged_token_report_is_recorded_as_misbehaviour() {
    let mut world = World::new();
    let mut auditor = auditor(TrustModel::Neutral, 10);
    let tx = world.valid_tx(key(USER), key(VENDOR), 3);
    let out = auditor
        .report_forgery(&tx, &[tx.tokens[1].id])
        .expect("report");
    assert_eq!(out.offending_token, Some(tx.tokens[1].id));
    assert_eq!(out.verdict, EngineVerdict::Reject(RejectCode::ForgedToken));
    assert_eq!(out.user.trust.invalid_total, 1);
    assert_eq!(out.user.trust.block_size, 9);
    assert_eq!(out.user.misbehaviour_count, 1);
    let stored = auditor
        .store()
        .transaction_by_id(&tx.id)
        .expect("lookup")
        .expect("stored");
    assert_eq!(
        stored.status,
        TransactionStatus::Rejected(RejectCode::ForgedToken)
    );
    assert_eq!(
        auditor.store().misbehaviour().expect("records")[0].kind,
        MisbehaviourKind::ForgedToken
    );
}

#[test]
fn paper_mode_turns_intake_detection_off_and_leaves_detection_to_the_chain() {
    let mut world = World::new();
    let mut auditor = Auditor::new(
        MemoryStore::new(),
        config(TrustModel::Neutral, 4, 2000, true),
    )
    .expect("auditor");
    let first = world.valid_tx(key(USER), key(VENDOR), 2);
    assert_eq!(
        auditor.intake(&first).expect("intake").verdict,
        EngineVerdict::Deliver
    );
    // The same transaction again (double selling) and a reused token: both accepted.
    let replay = auditor.intake(&first).expect("replay");
    assert_eq!(
        replay.verdict,
        EngineVerdict::Wait,
        "accepted: 2 + 2 ≥ W = 4 forms a block"
    );
    let block = replay.block.expect("block");
    let decisions = world.chain.verify(&block).expect("verify").decisions;
    assert_eq!(
        decisions,
        vec![
            Decision::Valid,
            Decision::Valid,
            Decision::Duplicate,
            Decision::Duplicate
        ]
    );
    let outcome = auditor
        .apply_decisions(block.block_id, &decisions)
        .expect("apply");
    assert_eq!(
        outcome.verdicts[0].verdict,
        EngineVerdict::Reject(RejectCode::InvalidBlock)
    );
    assert_eq!(outcome.trust.invalid_total, 2);
    assert!(auditor.store().misbehaviour().expect("records").is_empty());
    assert_eq!(
        auditor
            .store()
            .vendor(&key(VENDOR))
            .expect("vendor")
            .double_sellings,
        0
    );
    // A forgery report still rejects, but does not count in trust.
    let forged = world.valid_tx(key(USER), key(VENDOR), 1);
    let out = auditor
        .report_forgery(&forged, &[forged.tokens[0].id])
        .expect("report");
    assert_eq!(out.verdict, EngineVerdict::Reject(RejectCode::ForgedToken));
    assert_eq!(out.user.trust.invalid_total, 2);
}

#[test]
fn engine_over_a_boxed_sqlite_store_can_move_to_a_service_thread() {
    fn assert_send<T: Send>(_: &T) {}
    let store: Box<dyn Store + Send> = Box::new(SqliteStore::open_in_memory().expect("sqlite"));
    let mut auditor =
        Auditor::new(store, config(TrustModel::Neutral, 10, 2000, false)).expect("auditor");
    assert_send(&auditor);
    let mut world = World::new();
    let tx = world.valid_tx(key(USER), key(VENDOR), 2);
    let handle = std::thread::spawn(move || auditor.intake(&tx).expect("intake").verdict);
    assert_eq!(handle.join().expect("thread"), EngineVerdict::Deliver);
}

#[test]
fn empty_transaction_is_refused() {
    let mut world = World::new();
    let mut auditor = auditor(TrustModel::Neutral, 10);
    let tx = world.tx(key(USER), key(VENDOR), vec![]);
    assert!(matches!(
        auditor.intake(&tx),
        Err(EngineError::EmptyTransaction(_))
    ));
    assert_eq!(auditor.user(&key(USER)).expect("user"), None);
}

#[test]
fn registered_terms_apply_and_cannot_be_changed_after_the_fact() {
    let mut world = World::new();
    let mut auditor = auditor(TrustModel::Neutral, 10);
    let terms = UserTerms {
        trust_model: TrustModel::Optimistic,
        trust_scale: TrustScale::Previous,
        initial_block_size: 2,
    };
    auditor.register_user(key(USER), terms).expect("register");
    assert!(matches!(
        auditor.register_user(key(USER), terms),
        Err(EngineError::AlreadyRegistered(_))
    ));
    let out = auditor
        .intake(&world.valid_tx(key(USER), key(VENDOR), 2))
        .expect("intake");
    assert_eq!(
        out.verdict,
        EngineVerdict::Wait,
        "W0 = 2 from the registered terms"
    );
    assert_eq!(out.user.trust.model, TrustModel::Optimistic);
}

#[test]
fn the_same_scenario_gives_the_same_results_on_sqlite_and_in_memory() {
    fn run<S: Store>(store: S) -> Vec<String> {
        let mut world = World::new();
        let mut auditor =
            Auditor::new(store, config(TrustModel::Pessimistic, 6, 2000, false)).expect("auditor");
        let mut log = Vec::new();
        for i in 0..30u32 {
            let tokens = match i % 4 {
                0 => vec![world.valid(), world.unpublished()],
                1 => vec![world.valid()],
                2 => vec![world.valid(), world.valid(), world.altered()],
                _ => vec![world.valid(), world.valid()],
            };
            let tx = world.tx(key(USER), key(VENDOR), tokens);
            let processed = auditor.process(&tx, &mut world.chain).expect("process");
            log.push(format!("{:?}", processed.intake.verdict));
            for block in processed.blocks {
                log.push(format!(
                    "{:?} {:?} {:?}",
                    block.verdicts, block.trust, block.settlement
                ));
            }
        }
        log.push(format!("{:?}", auditor.user(&key(USER)).expect("user")));
        log
    }
    let memory = run(MemoryStore::new());
    let sqlite = run(SqliteStore::open_in_memory().expect("sqlite"));
    assert_eq!(memory, sqlite);
    assert!(memory.len() > 30, "blocks were decided");
}

/// What a random scenario's token is.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Valid,
    Unpublished,
    Altered,
    Reuse,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        6 => Just(Kind::Valid),
        1 => Just(Kind::Unpublished),
        1 => Just(Kind::Altered),
        1 => Just(Kind::Reuse),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Money balances for every block and across the run, in thousands of random blocks:
    /// escrow_paid = vendor payouts + refunds + margin − loss per block; what the escrows paid in
    /// total equals the chain's ledger; vendors' accrued balances equal every payout ever
    /// granted; refunds owed equal the blocks' refunds.
    #[test]
    fn money_balances_for_every_block(
        model in prop_oneof![Just(TrustModel::Neutral), Just(TrustModel::Optimistic), Just(TrustModel::Pessimistic)],
        w0 in 1u64..25,
        bps in 0u16..=10_000,
        paper_mode in any::<bool>(),
        txs in prop::collection::vec((prop::collection::vec(kind(), 1..6), 0u8..3, 1u64..1000), 1..60),
    ) {
        let mut world = World::new();
        let mut auditor = Auditor::new(MemoryStore::new(), config(model, w0, bps, paper_mode)).expect("auditor");
        let mut used: Vec<TokenRef> = Vec::new();
        let mut accrued_expected: u128 = 0;
        let mut escrow_total: u128 = 0;
        let mut refunds_total: u128 = 0;
        let mut blocks = 0u64;
        for (kinds, vendor, value) in txs {
            let tokens: Vec<TokenRef> = kinds.iter().map(|k| {
                let mut t = match k {
                    Kind::Valid => world.valid(),
                    Kind::Unpublished => world.unpublished(),
                    Kind::Altered => world.altered(),
                    Kind::Reuse => used.last().copied().unwrap_or_else(|| world.valid()),
                };
                // Varied values, consistent with the batch for published tokens is not needed:
                // the engine settles face values, the chain pays the batch value.
                if matches!(k, Kind::Unpublished) { t.value = value; }
                t
            }).collect();
            used.extend(tokens.iter().copied());
            let tx = world.tx(key(USER), key(VENDOR + vendor), tokens);
            let processed = auditor.process(&tx, &mut world.chain).expect("process");
            accrued_expected += u128::from(processed.intake.payout);
            for block in &processed.blocks {
                blocks += 1;
                let s = block.settlement;
                prop_assert!(s.check_balance().is_ok());
                prop_assert_eq!(
                    u128::from(s.escrow_paid.0) + u128::from(s.loss.0),
                    u128::from(s.vendor_payouts.0) + u128::from(s.refunds.0) + u128::from(s.margin.0)
                );
                prop_assert_eq!(s.tokens, block.decisions.valid + block.decisions.altered + block.decisions.duplicate + block.decisions.unpublished);
                prop_assert!(block.trust.block_size <= block.trust.block_size_before);
                prop_assert_eq!(block.risk, i128::from(s.loss.0) - i128::from(s.margin.0));
                escrow_total += u128::from(s.escrow_paid.0);
                refunds_total += u128::from(s.refunds.0);
                for v in &block.verdicts {
                    accrued_expected += u128::from(v.payout);
                }
            }
        }
        let mut accrued: u128 = 0;
        for v in 0..3u8 {
            accrued += u128::from(auditor.store().vendor(&key(VENDOR + v)).expect("vendor").accrued);
        }
        prop_assert_eq!(accrued, accrued_expected);
        prop_assert_eq!(u128::from(auditor.store().user_refund(&key(USER)).expect("refund")), refunds_total);
        // Published tokens are worth VALUE on-chain and at intake, so the chain's ledger agrees.
        prop_assert_eq!(world.chain.escrow_paid(), escrow_total);
        let user = auditor.user(&key(USER)).expect("user").expect("known");
        prop_assert_eq!(user.blocks_valid + user.blocks_invalid, blocks);
        prop_assert_eq!(user.pending_block, None, "the simulated chain answers at once");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// The chain answers late (the service's asynchronous path): blocks stay under verification
    /// while further transactions arrive and are held. Every block still balances, every payout
    /// and refund is accounted for exactly once, and the queue counters match the stored queue.
    #[test]
    fn money_balances_when_the_chain_answers_late(
        model in prop_oneof![Just(TrustModel::Neutral), Just(TrustModel::Optimistic), Just(TrustModel::Pessimistic)],
        w0 in 1u64..20,
        bps in 0u16..=10_000,
        paper_mode in any::<bool>(),
        txs in prop::collection::vec((prop::collection::vec(kind(), 1..5), 0u8..3, any::<bool>()), 1..50),
    ) {
        let mut world = World::new();
        let mut auditor = Auditor::new(MemoryStore::new(), config(model, w0, bps, paper_mode)).expect("auditor");
        let mut used: Vec<TokenRef> = Vec::new();
        let mut pending: std::collections::VecDeque<u64> = std::collections::VecDeque::new();
        let mut accrued_expected: u128 = 0;
        let mut escrow_total: u128 = 0;
        let mut refunds_total: u128 = 0;
        let answer = |auditor: &mut Auditor<MemoryStore>, world: &mut World, pending: &mut std::collections::VecDeque<u64>,
                          accrued: &mut u128, escrow: &mut u128, refunds: &mut u128| -> Result<(), TestCaseError> {
            let Some(block_id) = pending.pop_front() else { return Ok(()) };
            let submission = auditor.submission(block_id).expect("submission");
            let decisions = world.chain.verify(&submission).expect("verify").decisions;
            let outcome = auditor.apply_decisions(block_id, &decisions).expect("apply");
            prop_assert!(outcome.settlement.check_balance().is_ok());
            *escrow += u128::from(outcome.settlement.escrow_paid.0);
            *refunds += u128::from(outcome.settlement.refunds.0);
            for v in &outcome.verdicts {
                *accrued += u128::from(v.payout);
                prop_assert!(v.payout == 0 || v.refund == 0);
            }
            if let Some(next) = outcome.next_block {
                pending.push_back(next.block_id);
            }
            Ok(())
        };
        for (kinds, vendor, chain_answers) in txs {
            let tokens: Vec<TokenRef> = kinds.iter().map(|k| match k {
                Kind::Valid => world.valid(),
                Kind::Unpublished => world.unpublished(),
                Kind::Altered => world.altered(),
                Kind::Reuse => used.last().copied().unwrap_or_else(|| world.valid()),
            }).collect();
            used.extend(tokens.iter().copied());
            let tx = world.tx(key(USER), key(VENDOR + vendor), tokens);
            let out = auditor.intake(&tx).expect("intake");
            accrued_expected += u128::from(out.payout);
            if let Some(block) = out.block {
                pending.push_back(block.block_id);
            }
            if chain_answers {
                answer(&mut auditor, &mut world, &mut pending, &mut accrued_expected, &mut escrow_total, &mut refunds_total)?;
            }
            let user = auditor.user(&key(USER)).expect("user").expect("known");
            let queue = auditor.store().queue(&key(USER)).expect("queue");
            let queued: u64 = queue.iter().map(|t| t.tokens.len() as u64).sum();
            prop_assert_eq!(user.queued_tokens, queued);
            prop_assert_eq!(user.queued_transactions, queue.len() as u64);
            prop_assert!(pending.len() <= 1, "at most one block per user under verification");
        }
        while !pending.is_empty() {
            answer(&mut auditor, &mut world, &mut pending, &mut accrued_expected, &mut escrow_total, &mut refunds_total)?;
        }
        let mut accrued: u128 = 0;
        for v in 0..3u8 {
            accrued += u128::from(auditor.store().vendor(&key(VENDOR + v)).expect("vendor").accrued);
        }
        prop_assert_eq!(accrued, accrued_expected);
        prop_assert_eq!(u128::from(auditor.store().user_refund(&key(USER)).expect("refund")), refunds_total);
        prop_assert_eq!(world.chain.escrow_paid(), escrow_total);
        let user = auditor.user(&key(USER)).expect("user").expect("known");
        prop_assert_eq!(user.pending_block, None);
        // Whatever is still queued was delivered (held transactions are all decided).
        for queued in auditor.store().queue(&key(USER)).expect("queue") {
            prop_assert_eq!(queued.status, TransactionStatus::Delivered);
        }
    }
}

/// Proposition 2 (eq. 13), Monte Carlo. Assumptions, as in the proposition: every transaction
/// has t = 5 tokens of value v = 100; each transaction independently holds exactly one invalid
/// (unpublished) token with probability π = 0.1, otherwise none; ρ = 1 %. Intake detection is
/// off (paper mode), so only the chain detects.
///
/// W changes after invalid blocks, so each block is compared with the closed form at its own
/// W_{i−1}: E[eq. 12 over tr_1..tr_{p−1} | W] = v·(π − tρ)·(⌈W/t⌉ − 1). The engine's mean must
/// match the mean of the closed forms within 4 standard errors of the sample (the tolerance; the
/// run is seeded, so it is deterministic), and that tolerance must be under 5 % of the closed form
/// at W0, so the test has the power to fail. The same check is made for the full eqs. 10–12
/// risk against `risk::expected_block_risk`, which adds tr_p's margin in valid blocks.
#[test]
fn average_risk_matches_proposition_2() {
    let (t, pi, bps, w0) = (5usize, 0.1f64, 100u16, 50u64);
    let rho = f64::from(bps) / 10_000.0;
    let mut rng = ChaCha8Rng::seed_from_u64(20_240_613);
    let mut world = World::new();
    let mut auditor = Auditor::new(
        MemoryStore::pruning(),
        config(TrustModel::Neutral, w0, bps, true),
    )
    .expect("auditor");
    let mut delivered_diffs = Vec::new();
    let mut full_diffs = Vec::new();
    let mut user_index = 0u32;
    let mut transactions = 0u32;
    while delivered_diffs.len() < 30_000 {
        transactions += 1;
        assert!(transactions < 1_000_000, "blocks stopped forming");
        // A fresh user every 20 blocks keeps W near W0 (as the proposition assumes a fixed W).
        let mut user_bytes = [7u8; 32];
        user_bytes[..4].copy_from_slice(&user_index.to_le_bytes());
        let user = Pubkey::new_from_array(user_bytes);
        let tokens: Vec<TokenRef> = (0..t)
            .map(|i| {
                if i == 0 && rng.gen_bool(pi) {
                    world.unpublished()
                } else {
                    world.valid()
                }
            })
            .collect();
        let tx = world.tx(user, key(VENDOR), tokens);
        let processed = auditor.process(&tx, &mut world.chain).expect("process");
        for block in &processed.blocks {
            let w = block.trust.block_size_before;
            let predicted =
                proposition2_average_risk(VALUE as f64, pi, t as u64, rho, w).expect("eq. 13");
            delivered_diffs.push(block.delivered_risk as f64 - predicted);
            let expected = expected_block_risk(VALUE as f64, pi, t as u64, rho, w).expect("mean");
            let measured = block.paper_risk.expect("uniform values").to_f64();
            full_diffs.push(measured - expected);
            if delivered_diffs.len() % 20 == 0 {
                user_index += 1;
            }
        }
    }
    let at_w0 = proposition2_average_risk(VALUE as f64, pi, t as u64, rho, w0).expect("eq. 13");
    // v·(π − tρ)·(⌈50/5⌉ − 1) = 100 · (0.1 − 0.05) · 9 = 45
    assert!((at_w0 - 45.0).abs() < 1e-9);
    for (name, diffs) in [
        ("eq. 12 (Prop. 2)", &delivered_diffs),
        ("eqs. 10–12", &full_diffs),
    ] {
        let n = diffs.len() as f64;
        let mean = diffs.iter().sum::<f64>() / n;
        let var = diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let se = (var / n).sqrt();
        println!(
            "{name}: blocks {n}, mean(measured − closed form) = {mean:.3}, standard error {se:.3}"
        );
        assert!(
            4.0 * se < 0.05 * at_w0,
            "{name}: too few blocks for a meaningful test (se {se})"
        );
        assert!(
            mean.abs() <= 4.0 * se,
            "{name}: mean difference {mean} exceeds 4 standard errors ({se})"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Group commit (`Auditor::intake_batch`, `Auditor::process_batch`).
// ---------------------------------------------------------------------------------------------

/// A token of a group-commit scenario.
#[derive(Debug, Clone, Copy)]
enum BatchToken {
    /// A fresh published token.
    Valid,
    /// A token of a batch no bank published (the chain finds it invalid).
    Unpublished,
    /// A token an earlier transaction used (double spending, possibly in the same batch).
    Reuse(usize),
    /// The transaction's previous token again (double spending within the transaction).
    Repeat,
}

fn batch_token() -> impl Strategy<Value = BatchToken> {
    prop_oneof![
        8 => Just(BatchToken::Valid),
        1 => Just(BatchToken::Unpublished),
        1 => any::<usize>().prop_map(BatchToken::Reuse),
        1 => Just(BatchToken::Repeat),
    ]
}

/// One transaction of a scenario: user, vendor, tokens (possibly none: refused), and whether it
/// replays an earlier transaction's id (double selling, possibly in the same batch).
type BatchTx = (u8, u8, Vec<BatchToken>, Option<usize>);

/// Builds the transactions of a scenario (deterministic), with the chain that published them.
fn build_scenario(txs: &[BatchTx]) -> (Vec<TransactionSummary>, SimulatedChain) {
    let mut world = World::new();
    let mut used: Vec<TokenRef> = Vec::new();
    let mut built: Vec<TransactionSummary> = Vec::new();
    for (user, vendor, kinds, replay) in txs {
        let mut tokens: Vec<TokenRef> = Vec::new();
        for kind in kinds {
            let token = match kind {
                BatchToken::Valid => world.valid(),
                BatchToken::Unpublished => world.unpublished(),
                BatchToken::Reuse(i) if !used.is_empty() => used[i % used.len()],
                BatchToken::Repeat if !tokens.is_empty() => tokens[tokens.len() - 1],
                BatchToken::Reuse(_) | BatchToken::Repeat => world.valid(),
            };
            tokens.push(token);
        }
        used.extend(tokens.iter().copied());
        let mut tx = world.tx(key(USER + user), key(VENDOR + vendor), tokens);
        if let Some(i) = replay {
            if !built.is_empty() {
                // The same signed transaction presented again (same id, user and tokens).
                tx = built[i % built.len()].clone();
                tx.vendor = key(VENDOR + vendor);
            }
        }
        built.push(tx);
    }
    (built, world.chain)
}

/// Runs a scenario batch by batch, either with the group-commit calls or with `intake` and
/// `apply_decisions` one at a time. After the batches flagged in `answer`, the chain verifies
/// the blocks pending at that moment (one round: blocks their held transactions complete wait
/// for the next round). Sequentially their decisions are applied at once; with group commit they
/// are committed together with the next batch's intakes (`apply_decisions_and_intake_batch`),
/// which is the same order of steps. Returns the log of every outcome and the auditor.
fn run_scenario<S: Store>(
    store: S,
    cfg: AuditorConfig,
    batches: &[&[TransactionSummary]],
    answer: &[bool],
    mut chain: SimulatedChain,
    batched: bool,
) -> (Vec<String>, Auditor<S>) {
    let mut auditor = Auditor::new(store, cfg).expect("auditor");
    let mut log = Vec::new();
    let mut decided: Vec<(u64, BlockVerification)> = Vec::new();
    for (batch, answer) in batches.iter().zip(answer) {
        if batched {
            let (outcomes, results) = auditor
                .apply_decisions_and_intake_batch(&decided, batch)
                .expect("group commit");
            assert_eq!(
                (outcomes.len(), results.len()),
                (decided.len(), batch.len())
            );
            log.extend(outcomes.iter().map(|r| format!("{r:?}")));
            log.extend(results.iter().map(|r| format!("{r:?}")));
            decided.clear();
        } else {
            for tx in batch.iter() {
                log.push(format!("{:?}", auditor.intake(tx)));
            }
        }
        if *answer {
            for block in auditor.store().pending_blocks().expect("pending") {
                let submission = auditor.submission(block.block_id).expect("submission");
                let verification = chain.verify(&submission).expect("verify");
                if batched {
                    decided.push((block.block_id, verification));
                } else {
                    log.push(format!(
                        "{:?}",
                        auditor.apply_verification(block.block_id, &verification)
                    ));
                }
            }
        }
    }
    if batched && !decided.is_empty() {
        let outcomes = auditor
            .apply_decisions_batch(&decided)
            .expect("group commit");
        log.extend(outcomes.iter().map(|r| format!("{r:?}")));
    }
    (log, auditor)
}

/// Everything a store answers about the scenario's users, vendors, transactions and tokens.
fn store_snapshot<S: Store>(store: &S, txs: &[TransactionSummary]) -> String {
    let mut out = String::new();
    for user in 0..4u8 {
        let user = key(USER + user);
        out.push_str(&format!(
            "{:?}\n{:?}\n{:?}\n",
            store.user(&user).expect("user"),
            store.queue(&user).expect("queue"),
            store.user_refund(&user).expect("refund")
        ));
    }
    for vendor in 0..4u8 {
        out.push_str(&format!(
            "{:?}\n",
            store.vendor(&key(VENDOR + vendor)).expect("vendor")
        ));
    }
    let next = store.next_block_id().expect("next block id");
    out.push_str(&format!(
        "next {next}\n{:?}\n{:?}\n{:?}\n",
        store.pending_blocks().expect("pending"),
        store.misbehaviour().expect("misbehaviour"),
        store.pending_payouts().expect("payouts")
    ));
    for block_id in 1..next {
        out.push_str(&format!("{:?}\n", store.block(block_id).expect("block")));
    }
    for tx in txs {
        out.push_str(&format!(
            "{:?}\n",
            store.transaction_by_id(&tx.id).expect("transaction")
        ));
        for token in &tx.tokens {
            out.push_str(&format!(
                "{}",
                u8::from(store.token_seen(&token.id).expect("seen"))
            ));
        }
        out.push('\n');
    }
    out
}

/// Splits `txs` at the given sizes (the rest forms the last batch).
fn split<'a>(txs: &'a [TransactionSummary], sizes: &[usize]) -> Vec<&'a [TransactionSummary]> {
    let mut batches = Vec::new();
    let mut rest = txs;
    for size in sizes {
        if rest.is_empty() {
            break;
        }
        let (head, tail) = rest.split_at((*size).min(rest.len()));
        batches.push(head);
        rest = tail;
    }
    if !rest.is_empty() {
        batches.push(rest);
    }
    batches
}

fn batch_scenario() -> impl Strategy<
    Value = (
        TrustModel,
        u64,
        u16,
        bool,
        Vec<BatchTx>,
        Vec<usize>,
        Vec<bool>,
    ),
> {
    (
        prop_oneof![
            Just(TrustModel::Neutral),
            Just(TrustModel::Optimistic),
            Just(TrustModel::Pessimistic)
        ],
        1u64..12,
        0u16..=10_000,
        prop::bool::weighted(0.15),
        prop::collection::vec(
            (
                0u8..3,
                0u8..3,
                prop::collection::vec(batch_token(), 0..5),
                prop::option::weighted(0.08, any::<usize>()),
            ),
            1..70,
        ),
        prop::collection::vec(1usize..40, 1..6),
        prop::collection::vec(any::<bool>(), 8),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    /// Group commit (`apply_decisions_and_intake_batch`, `intake_batch`,
    /// `apply_decisions_batch`) gives exactly the outcomes and the final state of `intake` and
    /// `apply_decisions` called one at a time in the same order, over random scenarios: several users and vendors, double
    /// spending across and within transactions and batches, double selling (replayed ids, also
    /// within a batch), empty transactions (refused), users suspended by intake penalties,
    /// blocks forming in the middle of a batch, held transactions, and the chain deciding
    /// blocks between batches. In-memory store.
    #[test]
    fn group_commit_equals_sequential_steps_in_memory(
        (model, w0, bps, paper_mode, txs, sizes, answer) in batch_scenario(),
    ) {
        let (built, chain) = build_scenario(&txs);
        let batches = split(&built, &sizes);
        let cfg = config(model, w0, bps, paper_mode);
        let answer: Vec<bool> = answer.iter().copied().cycle().take(batches.len()).collect();
        let (seq_log, seq) = run_scenario(MemoryStore::new(), cfg, &batches, &answer, chain.clone(), false);
        let (batch_log, batch) = run_scenario(MemoryStore::new(), cfg, &batches, &answer, chain, true);
        prop_assert_eq!(&seq_log, &batch_log);
        prop_assert_eq!(store_snapshot(seq.store(), &built), store_snapshot(batch.store(), &built));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The same equivalence on SQLite, where the final databases must also be equal row for row.
    #[test]
    fn group_commit_equals_sequential_steps_on_sqlite(
        (model, w0, bps, paper_mode, txs, sizes, answer) in batch_scenario(),
    ) {
        let (built, chain) = build_scenario(&txs);
        let batches = split(&built, &sizes);
        let cfg = config(model, w0, bps, paper_mode);
        let answer: Vec<bool> = answer.iter().copied().cycle().take(batches.len()).collect();
        let sqlite = || SqliteStore::open_in_memory().expect("sqlite");
        let (seq_log, seq) = run_scenario(sqlite(), cfg, &batches, &answer, chain.clone(), false);
        let (batch_log, batch) = run_scenario(sqlite(), cfg, &batches, &answer, chain, true);
        prop_assert_eq!(&seq_log, &batch_log);
        prop_assert_eq!(store_snapshot(seq.store(), &built), store_snapshot(batch.store(), &built));
        // Row for row, except the migration timestamps (each database was created separately).
        let rows = |store: &SqliteStore| {
            let dump = store.dump().expect("dump");
            dump.split("[schema_migrations]").next().unwrap_or_default().to_owned()
        };
        let (seq_rows, batch_rows) = (rows(seq.store()), rows(batch.store()));
        prop_assert!(seq_rows.contains("[meta]"));
        prop_assert!(seq_rows == batch_rows, "databases differ after the same scenario");
    }
}

/// The scenario generator must reach what the equivalence is about, or the property tests
/// could pass without exercising it: a fixed scenario that has blocks forming mid-batch, held
/// transactions, double spending and double selling inside one batch, and a suspension.
#[test]
fn intake_batch_scenario_covers_blocks_double_spends_replays_and_suspension() {
    let txs: Vec<BatchTx> = vec![
        (0, 0, vec![BatchToken::Valid; 2], None),
        (0, 1, vec![BatchToken::Valid; 2], None), // completes W0 = 3: block mid-batch
        (0, 2, vec![BatchToken::Valid], None),    // held
        (1, 0, vec![BatchToken::Valid], None),
        (1, 1, vec![BatchToken::Reuse(5)], None), // double spend of tx 3's token, same batch
        (2, 0, vec![BatchToken::Valid], Some(3)), // resubmits tx 3 (same bytes): stored answer
        (2, 1, vec![BatchToken::Valid], Some(3)), // another vendor presents tx 3: double selling
        (1, 2, vec![BatchToken::Reuse(5)], None), // second double spend: suspends (W0 = 3)
        (1, 0, vec![BatchToken::Valid], None),    // refused: suspended
        (2, 1, vec![], None),                     // empty: refused with an error
    ];
    let (built, chain) = build_scenario(&txs);
    let cfg = config(TrustModel::Pessimistic, 3, 2000, false);
    let batches = [built.as_slice()];
    let (seq_log, seq) = run_scenario(
        MemoryStore::new(),
        cfg,
        &batches,
        &[true],
        chain.clone(),
        false,
    );
    let (batch_log, batch) = run_scenario(MemoryStore::new(), cfg, &batches, &[true], chain, true);
    assert_eq!(seq_log, batch_log);
    assert_eq!(
        store_snapshot(seq.store(), &built),
        store_snapshot(batch.store(), &built)
    );
    let results = {
        let mut fresh = Auditor::new(MemoryStore::new(), cfg).expect("auditor");
        fresh.intake_batch(&built).expect("group commit")
    };
    let verdicts: Vec<Option<EngineVerdict>> = results
        .iter()
        .map(|r| r.as_ref().ok().map(|o| o.verdict))
        .collect();
    assert_eq!(
        verdicts,
        vec![
            Some(EngineVerdict::Deliver),
            Some(EngineVerdict::Wait),
            Some(EngineVerdict::Wait),
            Some(EngineVerdict::Deliver),
            Some(EngineVerdict::Reject(RejectCode::DoubleSpending)),
            Some(EngineVerdict::Deliver),
            Some(EngineVerdict::Reject(RejectCode::DoubleSelling)),
            Some(EngineVerdict::Reject(RejectCode::DoubleSpending)),
            Some(EngineVerdict::Reject(RejectCode::UserSuspended)),
            None,
        ]
    );
    let resubmission = results[5].as_ref().expect("resubmission");
    assert!(resubmission.resubmission);
    assert_eq!(resubmission.payout, 0, "nothing accrued twice");
    assert!(results[1].as_ref().expect("block").block.is_some());
    assert!(matches!(results[9], Err(EngineError::EmptyTransaction(_))));
    let user1 = batch.user(&key(USER + 1)).expect("user").expect("known");
    assert!(user1.suspended);
    assert_eq!(user1.trust.block_size, 0);
    // The suspension flushed user 1's delivered transaction into a block without a waiting one.
    assert_eq!(batch.store().next_block_id().expect("next"), 3);
}

/// A store whose group commit fails once (another auditor instance won the race), to check that
/// a failed `intake_batch` writes nothing and that re-running the batch gives the outcomes a
/// run without the failure gives.
struct LosesOneRace {
    inner: MemoryStore,
    fail_next_group: bool,
}

impl Store for LosesOneRace {
    fn user(&self, user: &Pubkey) -> Result<Option<mupib_auditor::store::UserState>, StoreError> {
        self.inner.user(user)
    }
    fn token_seen(&self, token: &TokenId) -> Result<bool, StoreError> {
        self.inner.token_seen(token)
    }
    fn transaction_by_id(
        &self,
        id: &TransactionId,
    ) -> Result<Option<mupib_auditor::store::TransactionRecord>, StoreError> {
        self.inner.transaction_by_id(id)
    }
    fn queue(
        &self,
        user: &Pubkey,
    ) -> Result<Vec<mupib_auditor::store::TransactionRecord>, StoreError> {
        self.inner.queue(user)
    }
    fn block(
        &self,
        block_id: u64,
    ) -> Result<
        Option<(
            mupib_auditor::store::BlockRecord,
            Vec<mupib_auditor::store::TransactionRecord>,
        )>,
        StoreError,
    > {
        self.inner.block(block_id)
    }
    fn pending_blocks(&self) -> Result<Vec<mupib_auditor::store::BlockRecord>, StoreError> {
        self.inner.pending_blocks()
    }
    fn next_block_id(&self) -> Result<u64, StoreError> {
        self.inner.next_block_id()
    }
    fn apply(&mut self, change: &mupib_auditor::store::ChangeSet) -> Result<(), StoreError> {
        self.inner.apply(change)
    }
    fn apply_all(&mut self, changes: &[mupib_auditor::store::ChangeSet]) -> Result<(), StoreError> {
        if std::mem::take(&mut self.fail_next_group) {
            return Err(StoreError::Conflict(
                "another instance committed first".into(),
            ));
        }
        self.inner.apply_all(changes)
    }
    fn vendor(&self, vendor: &Pubkey) -> Result<mupib_auditor::store::VendorAccount, StoreError> {
        self.inner.vendor(vendor)
    }
    fn user_refund(&self, user: &Pubkey) -> Result<u64, StoreError> {
        self.inner.user_refund(user)
    }
    fn misbehaviour(&self) -> Result<Vec<mupib_auditor::store::MisbehaviourRecord>, StoreError> {
        self.inner.misbehaviour()
    }
    fn pending_payouts(&self) -> Result<Vec<VendorPayout>, StoreError> {
        self.inner.pending_payouts()
    }
    fn begin_settlement(
        &mut self,
        key: &str,
        seq: u64,
        items: &[VendorPayout],
    ) -> Result<mupib_auditor::store::SettlementBatch, StoreError> {
        self.inner.begin_settlement(key, seq, items)
    }
    fn record_signed_settlement(
        &mut self,
        key: &str,
        signed: &mupib_protocol::payout::SignedPayout,
    ) -> Result<mupib_auditor::store::SettlementBatch, StoreError> {
        self.inner.record_signed_settlement(key, signed)
    }
    fn open_settlements(&self) -> Result<Vec<mupib_auditor::store::SettlementBatch>, StoreError> {
        self.inner.open_settlements()
    }
    fn recent_settlements(
        &self,
        limit: usize,
    ) -> Result<Vec<mupib_auditor::store::SettlementBatch>, StoreError> {
        self.inner.recent_settlements(limit)
    }
    fn complete_settlement(
        &mut self,
        key: &str,
        reference: &str,
    ) -> Result<mupib_auditor::store::SettlementBatch, StoreError> {
        self.inner.complete_settlement(key, reference)
    }
    fn abort_settlement(
        &mut self,
        key: &str,
    ) -> Result<mupib_auditor::store::SettlementBatch, StoreError> {
        self.inner.abort_settlement(key)
    }
    fn settlement(
        &self,
        key: &str,
    ) -> Result<Option<mupib_auditor::store::SettlementBatch>, StoreError> {
        self.inner.settlement(key)
    }
}

#[test]
fn intake_batch_that_loses_a_commit_race_writes_nothing_and_reruns_identically() {
    let txs: Vec<BatchTx> = (0..12u8)
        .map(|i| (i % 2, i % 3, vec![BatchToken::Valid; 2], None))
        .collect();
    let (built, _) = build_scenario(&txs);
    let cfg = config(TrustModel::Neutral, 5, 2000, false);
    let mut reference = Auditor::new(MemoryStore::new(), cfg).expect("auditor");
    let expected = format!("{:?}", reference.intake_batch(&built).expect("commit"));

    let store = LosesOneRace {
        inner: MemoryStore::new(),
        fail_next_group: true,
    };
    let mut auditor = Auditor::new(store, cfg).expect("auditor");
    let empty = store_snapshot(auditor.store(), &built);
    assert!(matches!(
        auditor.intake_batch(&built),
        Err(EngineError::Store(StoreError::Conflict(_)))
    ));
    assert_eq!(
        store_snapshot(auditor.store(), &built),
        empty,
        "nothing written"
    );
    assert_eq!(auditor.store().next_block_id().expect("next"), 1);
    let rerun = format!("{:?}", auditor.intake_batch(&built).expect("commit"));
    assert_eq!(rerun, expected);
    assert_eq!(
        store_snapshot(auditor.store(), &built),
        store_snapshot(reference.store(), &built)
    );
    assert!(
        auditor.store().next_block_id().expect("next") > 1,
        "blocks formed"
    );
}

/// `process_batch`: blocks are decided after the batch's commit, so a user's transactions after
/// the one that formed a block are held and decided with that block (W0 = 3, five transactions
/// of one token: two delivered, the third forms the block, the last two are held and then
/// delivered once the valid block is decided).
#[test]
fn process_batch_holds_transactions_behind_a_block_formed_in_the_batch_then_decides_them() {
    let mut world = World::new();
    let txs: Vec<TransactionSummary> = (0..5)
        .map(|i| world.valid_tx(key(USER), key(VENDOR + i), 1))
        .collect();
    let mut auditor = Auditor::new(
        SqliteStore::open_in_memory().expect("sqlite"),
        config(TrustModel::Neutral, 3, 2000, false),
    )
    .expect("auditor");
    let processed: Vec<_> = auditor
        .process_batch(&txs, &mut world.chain)
        .expect("group commit")
        .into_iter()
        .map(|r| r.expect("processed"))
        .collect();
    let intake: Vec<EngineVerdict> = processed.iter().map(|p| p.intake.verdict).collect();
    assert_eq!(
        intake,
        vec![
            EngineVerdict::Deliver,
            EngineVerdict::Deliver,
            EngineVerdict::Wait,
            EngineVerdict::Wait,
            EngineVerdict::Wait
        ]
    );
    assert!(processed[0].blocks.is_empty() && processed[3].blocks.is_empty());
    assert_eq!(processed[2].blocks.len(), 1);
    let block = &processed[2].blocks[0];
    assert_eq!(block.block_id, 1);
    let finals: Vec<(TransactionId, EngineVerdict, u64)> = block
        .verdicts
        .iter()
        .map(|v| (v.transaction_id, v.verdict, v.payout))
        .collect();
    assert_eq!(
        finals,
        vec![
            (txs[2].id, EngineVerdict::Deliver, 80),
            (txs[3].id, EngineVerdict::Deliver, 80),
            (txs[4].id, EngineVerdict::Deliver, 80),
        ]
    );
    assert_eq!(block.next_block, None);
    for (i, tx) in txs.iter().enumerate() {
        let vendor = auditor
            .store()
            .vendor(&key(VENDOR + u8::try_from(i).expect("i")));
        assert_eq!(vendor.expect("vendor").accrued, 80, "vendor of {:?}", tx.id);
    }
    let user = auditor.user(&key(USER)).expect("user").expect("known");
    assert_eq!(user.pending_block, None);
    assert_eq!((user.queued_tokens, user.queued_transactions), (2, 2));
    assert!(auditor
        .store()
        .pending_blocks()
        .expect("pending")
        .is_empty());
}

/// A bank whose batch is worth less than its tokens say (the escrow pays the batch value, the
/// vendors were credited the token value): the chain's payment is reconciled with the block's
/// valid tokens and the difference is an alarm on the outcome, not absorbed silently. A batch
/// that pays what its tokens are worth reconciles.
#[test]
fn chain_payment_below_the_tokens_value_is_an_alarm_on_the_outcome() {
    let mut world = World::new();
    // A second batch whose on-chain value (60) is below what its tokens carry (VALUE = 100).
    let cheap_batch = 77;
    let digests = (0..10).map(|s| digest_of(cheap_batch, s)).collect();
    world
        .chain
        .publish_batch(world.bank, cheap_batch, 60, digests);
    let cheap = |serial: u32| TokenRef {
        id: TokenId {
            bank: key(250),
            batch_id: cheap_batch,
            serial,
        },
        value: VALUE,
        digest: digest_of(cheap_batch, serial),
    };
    let mut auditor = auditor(TrustModel::Neutral, 4);
    let tx = world.tx(key(USER), key(VENDOR), (0..4).map(cheap).collect());
    let block = auditor.intake(&tx).expect("intake").block.expect("block");
    let verification = world.chain.verify(&block).expect("verify");
    assert_eq!(verification.amount_paid, 4 * 60);
    let outcome = auditor
        .apply_verification(block.block_id, &verification)
        .expect("apply");
    let payment = outcome.payment.expect("payment recorded");
    assert_eq!((payment.expected, payment.paid), (4 * VALUE, 4 * 60));
    assert!(outcome.payment_mismatch());
    // Stored with the outcome: the alarm survives a restart.
    assert_eq!(
        auditor.block_outcome(block.block_id).expect("outcome"),
        Some(outcome)
    );

    // A block of the honest batch reconciles.
    let tx = world.valid_tx(key(USER + 1), key(VENDOR), 4);
    let block = auditor.intake(&tx).expect("intake").block.expect("block");
    let verification = world.chain.verify(&block).expect("verify");
    let outcome = auditor
        .apply_verification(block.block_id, &verification)
        .expect("apply");
    assert_eq!(
        outcome.payment.map(|p| (p.expected, p.paid)),
        Some((4 * VALUE, 4 * VALUE))
    );
    assert!(!outcome.payment_mismatch());
}

/// W0 is bounded where it is configured: a block holds up to W − 1 queued tokens plus one
/// payment of up to 128 tokens and the chain verifies at most 10 000 per block, so a W0 above
/// 9 873 would leave blocks the verifier refuses forever.
#[test]
fn initial_block_size_above_what_the_chain_verifies_is_refused_with_the_limit() {
    use mupib_protocol::block::MAX_INITIAL_BLOCK_SIZE;
    assert_eq!(MAX_INITIAL_BLOCK_SIZE, 9_873);
    for w0 in [0, MAX_INITIAL_BLOCK_SIZE + 1, 1 << 40] {
        match Auditor::new(
            MemoryStore::new(),
            config(TrustModel::Neutral, w0, 2000, false),
        ) {
            Err(EngineError::Config(message)) => {
                assert!(message.contains("9873"), "{message}");
                assert!(message.contains("10000"), "{message}");
            }
            other => panic!("W0 = {w0} accepted: {other:?}"),
        }
    }
    let mut auditor = Auditor::new(
        MemoryStore::new(),
        config(TrustModel::Neutral, MAX_INITIAL_BLOCK_SIZE, 2000, false),
    )
    .expect("the largest W0 is accepted");
    let terms = UserTerms {
        trust_model: TrustModel::Neutral,
        trust_scale: TrustScale::Initial,
        initial_block_size: MAX_INITIAL_BLOCK_SIZE + 1,
    };
    assert!(matches!(
        auditor.register_user(key(USER), terms),
        Err(EngineError::Config(_))
    ));
    assert!(
        auditor.user(&key(USER)).expect("user").is_none(),
        "nothing written"
    );
}

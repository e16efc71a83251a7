//! Two engines on one PostgreSQL database, as two auditor instances would be: each has its own
//! store (its own connection pool) on the same schema. When both take in the same user's
//! transactions at once, one wins, the other gets `StoreError::Conflict` having written nothing
//! and re-runs the step, and the final state equals a sequential run: no forked queue, no lost
//! or doubled accrual, no block id used twice, no block decided twice.
//!
//! The first tests force the interleaving: engine A stops inside its write transaction (the
//! store's step hook) until the server shows engine B waiting for A's row lock, then commits.
//! The last one lets two threads race freely over many transactions of several users.
//! Skipped without `MUPIB_TEST_POSTGRES`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mupib_auditor::store::{PostgresStore, Store, StoreError, TestPostgres};
use mupib_auditor::{
    Auditor, AuditorConfig, EngineError, EngineVerdict, SimulatedChain, TransactionSummary,
};
use mupib_protocol::block::BlockVerifier;
use mupib_protocol::money::Withholding;
use mupib_protocol::token::{TokenId, TokenRef};
use mupib_protocol::transaction::TransactionId;
use mupib_protocol::trust::{TrustModel, TrustScale};
use mupib_protocol::Pubkey;

const BANK: u8 = 250;
const BATCH: u64 = 1;
const W0: u64 = 10;

fn key(n: u8) -> Pubkey {
    Pubkey::new_from_array([n; 32])
}

fn digest_of(serial: u32) -> [u8; 16] {
    let mut d = [0x3Cu8; 16];
    d[..4].copy_from_slice(&serial.to_le_bytes());
    d
}

fn token(serial: u32) -> TokenRef {
    TokenRef {
        id: TokenId {
            bank: key(BANK),
            batch_id: BATCH,
            serial,
        },
        value: 100,
        digest: digest_of(serial),
    }
}

/// Transaction `n` of `user`: three fresh tokens, one of three vendors (shared by all users).
fn tx(user: u8, n: u32) -> TransactionSummary {
    let first = u32::from(user) * 10_000 + n * 3;
    let mut id = [0u8; 32];
    id[0] = user;
    id[1..5].copy_from_slice(&n.to_le_bytes());
    TransactionSummary {
        id: TransactionId(id),
        user: key(user),
        vendor: key(50 + u8::try_from(n % 3).unwrap()),
        tokens: (first..first + 3).map(token).collect(),
        submission: id,
    }
}

fn engine(store: PostgresStore) -> Auditor<PostgresStore> {
    Auditor::new(
        store,
        AuditorConfig {
            withholding: Withholding::from_bps(2000).unwrap(),
            trust_model: TrustModel::Neutral,
            trust_scale: TrustScale::Initial,
            initial_block_size: W0,
            paper_mode: false,
        },
    )
    .unwrap()
}

/// An engine on `schema` whose connections the server shows as `name`.
fn instance(server: &TestPostgres, schema: &str, name: &str) -> Auditor<PostgresStore> {
    let mut options = server.options(schema);
    options.application_name = name.to_owned();
    engine(PostgresStore::open(server.url(), &options).unwrap())
}

fn lost_race<T: std::fmt::Debug>(result: &Result<T, EngineError>) -> bool {
    matches!(result, Err(EngineError::Store(StoreError::Conflict(_))))
}

/// Runs `step` until it does not lose a race; returns its result and the races it lost.
fn until_won<T: std::fmt::Debug>(mut step: impl FnMut() -> Result<T, EngineError>) -> (T, usize) {
    let mut lost = 0;
    loop {
        let result = step();
        if lost_race(&result) {
            lost += 1;
            continue;
        }
        return (result.unwrap(), lost);
    }
}

/// Blocks until the server shows a connection named `name` waiting for a lock.
fn wait_until_blocked(observer: &mut postgres::Client, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE application_name = $1 AND wait_event_type = 'Lock'",
                &[&name],
            )
            .unwrap()
            .get(0);
        if waiting > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never waited for the lock"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Engine `a` runs `first` and stops at its step `pause` (inside its transaction, holding the
/// rows it wrote) until engine `b`, running `second`, waits for one of those locks; then `a`
/// commits. Returns both results (b's first attempt only).
fn interleave<R1: Send + std::fmt::Debug, R2: Send + std::fmt::Debug>(
    server: &TestPostgres,
    a: &mut Auditor<PostgresStore>,
    b: &mut Auditor<PostgresStore>,
    b_name: &str,
    pause: &'static str,
    first: impl FnOnce(&mut Auditor<PostgresStore>) -> Result<R1, EngineError> + Send,
    second: impl FnOnce(&mut Auditor<PostgresStore>) -> Result<R2, EngineError> + Send,
) -> (Result<R1, EngineError>, Result<R2, EngineError>) {
    let (holding, held) = mpsc::channel::<()>();
    let mut observer = postgres::Client::connect(server.url(), postgres::NoTls).unwrap();
    let b_name_owned = b_name.to_owned();
    let mut paused = false;
    a.store_mut().set_step_hook(Some(Box::new(move |step| {
        if step == pause && !paused {
            paused = true;
            holding.send(()).unwrap();
            wait_until_blocked(&mut observer, &b_name_owned);
        }
    })));
    let results = std::thread::scope(|scope| {
        let a_ref = &mut *a;
        let a_run = scope.spawn(move || first(a_ref));
        held.recv_timeout(Duration::from_secs(20))
            .expect("engine A reached its pause");
        let b_run = scope.spawn(move || second(b));
        (a_run.join().unwrap(), b_run.join().unwrap())
    });
    a.store_mut().set_step_hook(None);
    results
}

/// A new user paid for at two instances at once: the second insert of the user fails on its
/// key; then an existing user: the second compare-and-swap finds another version. Each loser
/// re-runs and the result equals the sequential run.
#[test]
fn same_user_at_two_instances_one_wins_the_loser_re_runs() {
    let Some(server) =
        TestPostgres::from_env("same_user_at_two_instances_one_wins_the_loser_re_runs")
    else {
        return;
    };
    let schema = server.unique_schema("race");
    let mut a = instance(&server, &schema, &format!("{schema}-a"));
    let mut b = instance(&server, &schema, &format!("{schema}-b"));
    let b_name = format!("{schema}-b");
    let (t0, t1, t2, t3) = (tx(1, 0), tx(1, 1), tx(1, 2), tx(1, 3));

    // The user is new to both: both insert it.
    let (won, lost) = interleave(
        &server,
        &mut a,
        &mut b,
        &b_name,
        "user",
        |a| a.intake(&t0),
        |b| b.intake(&t1),
    );
    assert_eq!(won.unwrap().seq, 0);
    assert!(
        lost_race(&lost),
        "the second insert of the user lost: {lost:?}"
    );
    let (rerun, _) = until_won(|| b.intake(&t1));
    assert_eq!(rerun.seq, 1, "the re-run sees the winner's write");

    // Now a compare-and-swap on the existing user (t3 completes a block: the block id claim
    // happens in the same transaction).
    let (won, lost) = interleave(
        &server,
        &mut b,
        &mut a,
        &format!("{schema}-a"),
        "user",
        |b| b.intake(&t2),
        |a| a.intake(&t3),
    );
    assert_eq!(won.unwrap().seq, 2);
    assert!(
        lost_race(&lost),
        "the stale compare-and-swap lost: {lost:?}"
    );
    let (rerun, _) = until_won(|| a.intake(&t3));
    assert_eq!(rerun.seq, 3);
    assert_eq!(
        rerun.verdict,
        EngineVerdict::Wait,
        "12 tokens ≥ W0 = 10 form a block"
    );
    assert_eq!(rerun.block.as_ref().map(|b| b.block_id), Some(1));

    // The sequential run of the same transactions in the order they were taken in.
    let mut sequential = engine(server.fresh_store("seq"));
    for t in [&t0, &t1, &t2, &t3] {
        sequential.intake(t).unwrap();
    }
    assert_eq!(
        a.store().dump().unwrap(),
        sequential.store().dump().unwrap()
    );
}

/// Two instances apply the same block's decisions at once (both verified it): one writes the
/// outcome and the payouts, the other loses, re-runs, and gets the stored outcome — the vendors
/// are paid once.
#[test]
fn a_block_decided_at_two_instances_pays_once() {
    let Some(server) = TestPostgres::from_env("a_block_decided_at_two_instances_pays_once") else {
        return;
    };
    let schema = server.unique_schema("decide");
    let mut a = instance(&server, &schema, &format!("{schema}-a"));
    let mut b = instance(&server, &schema, &format!("{schema}-b"));
    let mut block = None;
    for n in 0..4 {
        block = a.intake(&tx(2, n)).unwrap().block.or(block);
    }
    let submission = block.expect("the fourth transaction formed a block");
    let mut chain = SimulatedChain::new();
    chain.publish_batch(key(BANK), BATCH, 100, (0..30_000).map(digest_of).collect());
    let decisions = chain.verify(&submission).unwrap().decisions;
    let accrued_before: u64 = (50..53).map(|v| a.vendor(&key(v)).unwrap().accrued).sum();

    let block_id = submission.block_id;
    let (won, lost) = interleave(
        &server,
        &mut a,
        &mut b,
        &format!("{schema}-b"),
        "decided",
        |a| a.apply_decisions(block_id, &decisions),
        |b| b.apply_decisions(block_id, &decisions),
    );
    let won = won.unwrap();
    assert!(lost_race(&lost), "the second application lost: {lost:?}");
    let (again, _) = until_won(|| b.apply_decisions(block_id, &decisions));
    assert_eq!(
        format!("{again:?}"),
        format!("{won:?}"),
        "the stored outcome"
    );
    let accrued_after: u64 = (50..53).map(|v| a.vendor(&key(v)).unwrap().accrued).sum();
    // The waiting transaction's 3 tokens are delivered once: 3 × 100 × 0.8.
    assert_eq!(accrued_after - accrued_before, 240);
    assert!(a.store().pending_blocks().unwrap().is_empty());
}

/// What one thread took in: (transaction, whether it formed a block).
type Taken = Vec<(TransactionSummary, bool)>;

/// Two engines in two threads take in the transactions of four users, each user's transactions
/// split between both engines (one engine by single intakes, the other by group commits of
/// three), retrying lost races. Afterwards every transaction is stored once, and the state
/// equals one engine's sequential run of the same transactions in an order consistent with what
/// happened: each user's in its sequence, blocks formed in block id order.
#[test]
fn racing_instances_equal_a_sequential_run() {
    let Some(server) = TestPostgres::from_env("racing_instances_equal_a_sequential_run") else {
        return;
    };
    const USERS: u8 = 4;
    const PER_USER: u32 = 12;
    let schema = server.unique_schema("bulk");
    let mut a = instance(&server, &schema, &format!("{schema}-a"));
    let mut b = instance(&server, &schema, &format!("{schema}-b"));
    // Each user's even transactions go to engine A, its odd ones to B: every user is paid for
    // at both instances at once.
    let (mine, theirs): (Vec<TransactionSummary>, Vec<TransactionSummary>) = (0..PER_USER)
        .flat_map(|n| (1..=USERS).map(move |user| tx(user, n)))
        .partition(|t| t.id.0[1] % 2 == 0);
    let (taken_a, taken_b, lost) = std::thread::scope(|scope| {
        let a_run = scope.spawn(|| {
            let mut taken: Taken = Vec::new();
            let mut lost = 0;
            for t in &mine {
                let (outcome, l) = until_won(|| a.intake(t));
                lost += l;
                taken.push((t.clone(), outcome.block.is_some()));
            }
            (taken, lost)
        });
        let b_run = scope.spawn(|| {
            let mut taken: Taken = Vec::new();
            let mut lost = 0;
            for group in theirs.chunks(3) {
                let (outcomes, l) = until_won(|| b.intake_batch(group));
                lost += l;
                for (t, outcome) in group.iter().zip(outcomes) {
                    taken.push((t.clone(), outcome.unwrap().block.is_some()));
                }
            }
            (taken, lost)
        });
        let (taken_a, lost_a) = a_run.join().unwrap();
        let (taken_b, lost_b) = b_run.join().unwrap();
        (taken_a, taken_b, lost_a + lost_b)
    });
    eprintln!("racing instances: {lost} lost races re-run");

    // Every transaction once, each user's sequence without gaps.
    let store = a.store();
    let mut per_user: BTreeMap<Pubkey, Vec<(u64, TransactionSummary, Option<u64>)>> =
        BTreeMap::new();
    for (t, formed) in taken_a.into_iter().chain(taken_b) {
        let record = store.transaction_by_id(&t.id).unwrap().expect("stored");
        let formed_block = formed.then(|| record.block_id.expect("its block"));
        per_user
            .entry(t.user)
            .or_default()
            .push((record.seq, t, formed_block));
    }
    for (user, txs) in &mut per_user {
        txs.sort_by_key(|(seq, _, _)| *seq);
        let seqs: Vec<u64> = txs.iter().map(|(seq, _, _)| *seq).collect();
        assert_eq!(
            seqs,
            (0..u64::from(PER_USER)).collect::<Vec<_>>(),
            "user {user}"
        );
        assert_eq!(
            store.user(user).unwrap().unwrap().next_seq,
            u64::from(PER_USER)
        );
    }

    // The sequential order: each transaction keyed by the first block formed at or after it in
    // its user's sequence (blocks then form in id order), then by user and sequence.
    let mut order: Vec<(u64, Pubkey, u64, TransactionSummary)> = Vec::new();
    for (user, txs) in per_user {
        let mut next_block = u64::MAX;
        for (seq, t, formed) in txs.into_iter().rev() {
            if let Some(block_id) = formed {
                next_block = block_id;
            }
            order.push((next_block, user, seq, t));
        }
    }
    order.sort_by_key(|x| (x.0, x.1, x.2));
    let mut sequential = engine(server.fresh_store("bulkseq"));
    for (_, _, _, t) in &order {
        sequential.intake(t).unwrap();
    }
    assert_eq!(store.dump().unwrap(), sequential.store().dump().unwrap());
    let blocks = store.pending_blocks().unwrap();
    assert_eq!(
        blocks.len(),
        usize::from(USERS),
        "one block per user, ids unique"
    );
}

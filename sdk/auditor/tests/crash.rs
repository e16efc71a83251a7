//! Crash safety of the durable stores, SQLite and PostgreSQL: a child process (this test binary,
//! re-executed) is killed with `abort()` at each step inside the write transaction of an intake,
//! a block submission, a decision application, a forgery report with a flushed block, and
//! settlement calls. The parent reopens the database and checks that the state equals the state
//! before the interrupted step, then re-runs the step and checks it gives the same result and the
//! same state as a run that never crashed. A crash right after the commit must leave exactly the
//! committed state, and re-applying a decided block must neither change state nor pay twice.
//!
//! On PostgreSQL the child dies with its server transaction open (the server rolls it back when
//! the connection drops); each state lives in a schema of its own on the `MUPIB_TEST_POSTGRES`
//! server, and the tests are skipped without it.

use std::path::Path;
use std::process::Command;

use mupib_auditor::{Auditor, AuditorConfig, SimulatedChain, TransactionSummary};

use mupib_auditor::store::{PostgresStore, SqliteStore, Store, TestPostgres};
use mupib_protocol::block::BlockVerifier;
use mupib_protocol::money::Withholding;
use mupib_protocol::payout::VendorPayout;
use mupib_protocol::token::TokenId;
use mupib_protocol::token::TokenRef;
use mupib_protocol::transaction::TransactionId;
use mupib_protocol::trust::{TrustModel, TrustScale};
use mupib_protocol::Pubkey;

const ENV_DB: &str = "MUPIB_CRASH_DB";
const ENV_BACKEND: &str = "MUPIB_CRASH_BACKEND";
const ENV_SCENARIO: &str = "MUPIB_CRASH_SCENARIO";
const ENV_STEP: &str = "MUPIB_CRASH_STEP";
const AFTER_COMMIT: &str = "after-commit";
/// The block left pending by the `ApplyDecisions` setup (block 1 was decided).
const PENDING_BLOCK: u64 = 2;

const APPLY_STEPS: &[&str] = &[
    "begin",
    "user",
    "block",
    "transactions",
    "updates",
    "tokens",
    "decided",
    "payouts",
    "commit",
];

fn key(n: u8) -> Pubkey {
    Pubkey::new_from_array([n; 32])
}

const BANK: u8 = 250;
const BATCH: u64 = 1;
const USER: u8 = 1;
const VENDOR: u8 = 50;

fn digest_of(serial: u32) -> [u8; 16] {
    let mut d = [0x5Au8; 16];
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

fn unpublished(serial: u32) -> TokenRef {
    TokenRef {
        id: TokenId {
            bank: key(BANK),
            batch_id: 999,
            serial,
        },
        value: 100,
        digest: digest_of(serial),
    }
}

fn tx(n: u8, tokens: Vec<TokenRef>) -> TransactionSummary {
    TransactionSummary {
        id: TransactionId([n; 32]),
        user: key(USER),
        vendor: key(VENDOR + n % 3),
        tokens,
        submission: [n; 32],
    }
}

/// Tokens `first .. first + count` of the published batch.
fn tokens(first: u32, count: u32) -> Vec<TokenRef> {
    (first..first + count).map(token).collect()
}

fn chain() -> SimulatedChain {
    let mut chain = SimulatedChain::new();
    chain.publish_batch(key(BANK), BATCH, 100, (0..1000).map(digest_of).collect());
    chain
}

fn engine<S: Store>(store: S, w0: u64) -> Auditor<S> {
    Auditor::new(
        store,
        AuditorConfig {
            withholding: Withholding::from_bps(2000).expect("bps"),
            trust_model: TrustModel::Neutral,
            trust_scale: TrustScale::Initial,
            initial_block_size: w0,
            paper_mode: false,
        },
    )
    .expect("auditor")
}

fn open(path: &Path, w0: u64) -> Auditor<SqliteStore> {
    engine(SqliteStore::open(path).expect("open store"), w0)
}

/// A step hook: called with each step's name inside a write transaction.
type StepHook = Box<dyn FnMut(&'static str) + Send>;

/// A durable store under test: where a state lives (`place`: a file, a schema), how to open it
/// with a step hook, dump it, and make another place holding the same state.
trait Backend {
    type S: Store;
    /// The name the child process is told.
    const NAME: &'static str;
    fn open(&self, place: &str) -> Self::S;
    fn set_hook(store: &mut Self::S, hook: StepHook);
    fn dump(&self, place: &str) -> String;
    /// A new, empty place named after `label`.
    fn place(&self, dir: &Path, label: &str) -> String;
    /// A new place holding the state of `base`, which `scenario`'s setup built.
    fn copy(&self, scenario: Scenario, base: &str, dir: &Path, label: &str) -> String;
}

struct Sqlite;

impl Backend for Sqlite {
    type S = SqliteStore;
    const NAME: &'static str = "sqlite";
    fn open(&self, place: &str) -> SqliteStore {
        SqliteStore::open(place).expect("open store")
    }
    fn set_hook(store: &mut SqliteStore, hook: StepHook) {
        store.set_step_hook(Some(hook));
    }
    fn dump(&self, place: &str) -> String {
        self.open(place).dump().expect("dump")
    }
    fn place(&self, dir: &Path, label: &str) -> String {
        dir.join(format!("{}.db", label.replace(':', "-")))
            .to_str()
            .expect("utf-8 path")
            .to_owned()
    }
    fn copy(&self, _: Scenario, base: &str, dir: &Path, label: &str) -> String {
        let place = self.place(dir, label);
        // The setup closed its connection: the WAL was checkpointed into the main file.
        std::fs::copy(base, &place).expect("copy database");
        place
    }
}

struct Postgres(TestPostgres);

impl Backend for Postgres {
    type S = PostgresStore;
    const NAME: &'static str = "postgres";
    fn open(&self, place: &str) -> PostgresStore {
        self.0.open(place)
    }
    fn set_hook(store: &mut PostgresStore, hook: StepHook) {
        store.set_step_hook(Some(hook));
    }
    fn dump(&self, place: &str) -> String {
        self.open(place).dump().expect("dump")
    }
    fn place(&self, _: &Path, label: &str) -> String {
        self.0.unique_schema(label)
    }
    fn copy(&self, scenario: Scenario, _: &str, dir: &Path, label: &str) -> String {
        // A schema cannot be copied: the setup is deterministic, so it is built again (the
        // crash checks compare the copy's dump with the base's, so a difference would show).
        let place = self.place(dir, label);
        scenario.setup(self, &place);
        place
    }
}

/// The scenarios: a deterministic setup, then the step that is interrupted.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scenario {
    /// Intake of a transaction that is delivered at once.
    IntakeDeliver,
    /// Intake of the transaction that completes a block (block submission).
    IntakeFormsBlock,
    /// Decisions of an invalid block with held transactions that complete the next block.
    ApplyDecisions,
    /// A forgery report that suspends the user and flushes the queue into a block.
    ForgeryFlush,
    /// Reserving a settlement batch.
    SettlementBegin,
    /// Completing a settlement batch.
    SettlementComplete,
    /// A group commit of five intakes (deliveries, a block formed mid-batch, a held
    /// transaction, a double spend inside the batch).
    IntakeBatch,
}

/// Where the group commit is interrupted: `name#k` is the k-th time the store reaches step
/// `name` (the steps of each change set repeat inside the one database transaction).
const GROUP_STEPS: &[&str] = &[
    "begin#1",
    "tokens#1",
    "group:next#1",
    "user#3",
    "block#2",
    "group:next#4",
    "payouts#5",
    "commit#5",
    "group:commit#1",
];

const SCENARIOS: &[Scenario] = &[
    Scenario::IntakeDeliver,
    Scenario::IntakeFormsBlock,
    Scenario::ApplyDecisions,
    Scenario::ForgeryFlush,
    Scenario::SettlementBegin,
    Scenario::SettlementComplete,
    Scenario::IntakeBatch,
];

impl Scenario {
    fn name(self) -> String {
        format!("{self:?}")
    }

    fn from_name(name: &str) -> Scenario {
        *SCENARIOS
            .iter()
            .find(|s| s.name() == name)
            .expect("known scenario")
    }

    fn w0(self) -> u64 {
        match self {
            Scenario::ForgeryFlush => 3,
            _ => 10,
        }
    }

    fn steps(self) -> Vec<&'static str> {
        let mut steps: Vec<&'static str> = match self {
            Scenario::SettlementBegin => vec!["settlement:begin", "commit"],
            Scenario::SettlementComplete => vec!["settlement:vendors", "commit"],
            Scenario::IntakeBatch => GROUP_STEPS.to_vec(),
            _ => APPLY_STEPS.to_vec(),
        };
        steps.push(AFTER_COMMIT);
        steps
    }

    /// Builds the state before the step.
    fn setup<B: Backend>(self, backend: &B, place: &str) {
        let mut auditor = engine(backend.open(place), self.w0());
        let mut chain = chain();
        match self {
            Scenario::IntakeDeliver | Scenario::SettlementBegin | Scenario::IntakeBatch => {
                auditor.intake(&tx(1, tokens(0, 3))).expect("intake");
            }
            Scenario::SettlementComplete => {
                auditor.intake(&tx(1, tokens(0, 3))).expect("intake");
                let pending = auditor.store().pending_payouts().expect("payouts");
                auditor
                    .store_mut()
                    .begin_settlement("batch-1", 0, &pending)
                    .expect("begin");
            }
            Scenario::IntakeFormsBlock => {
                for n in 0..3u8 {
                    auditor
                        .intake(&tx(n + 1, tokens(u32::from(n) * 3, 3)))
                        .expect("intake");
                }
            }
            Scenario::ApplyDecisions => {
                // A first valid block, decided.
                for n in 0..4u8 {
                    auditor
                        .process(&tx(n + 1, tokens(u32::from(n) * 3, 3)), &mut chain)
                        .expect("process");
                }
                // A second block with an unpublished token, left pending, and two held
                // transactions of 5 tokens.
                let mut first = tokens(100, 2);
                first.push(unpublished(7));
                auditor.intake(&tx(10, first)).expect("intake");
                for n in 0..3u8 {
                    auditor
                        .intake(&tx(11 + n, tokens(110 + u32::from(n) * 3, 3)))
                        .expect("intake");
                }
                auditor.intake(&tx(20, tokens(200, 5))).expect("held");
                auditor.intake(&tx(21, tokens(205, 5))).expect("held");
                let pending = auditor.store().pending_blocks().expect("pending");
                assert_eq!(pending.len(), 1);
                assert_eq!(pending[0].block_id, PENDING_BLOCK);
            }
            Scenario::ForgeryFlush => {
                auditor.intake(&tx(1, tokens(0, 1))).expect("intake");
                auditor.intake(&tx(2, tokens(1, 1))).expect("intake");
            }
        }
    }

    /// The interrupted step; returns a description of its result.
    fn step<S: Store>(self, auditor: &mut Auditor<S>) -> String {
        match self {
            Scenario::IntakeDeliver => format!(
                "{:?}",
                auditor.intake(&tx(2, tokens(3, 3))).expect("intake")
            ),
            Scenario::IntakeFormsBlock => format!(
                "{:?}",
                auditor.intake(&tx(4, tokens(9, 3))).expect("intake")
            ),
            Scenario::ApplyDecisions => {
                let block_id = PENDING_BLOCK;
                let submission = auditor.submission(block_id).expect("submission");
                // Tokens of this block were never spent before: a fresh chain decides them
                // exactly as the setup's chain would.
                let decisions = chain().verify(&submission).expect("verify").decisions;
                format!(
                    "{:?}",
                    auditor
                        .apply_decisions(block_id, &decisions)
                        .expect("apply")
                )
            }
            Scenario::ForgeryFlush => format!(
                "{:?}",
                auditor
                    .report_forgery(
                        &tx(3, tokens(2, 4)),
                        &tokens(2, 4).iter().map(|t| t.id).collect::<Vec<_>>()
                    )
                    .expect("report")
            ),
            Scenario::SettlementBegin => {
                // tx 1 paid its vendor 3 × 100 × 0.8 = 240 (fixed items: the step is the same
                // call whether or not an earlier attempt committed).
                let items = [VendorPayout {
                    vendor: key(VENDOR + 1),
                    amount: 240,
                }];
                format!(
                    "{:?}",
                    auditor
                        .store_mut()
                        .begin_settlement("batch-1", 0, &items)
                        .expect("begin")
                )
            }
            Scenario::SettlementComplete => format!(
                "{:?}",
                auditor
                    .store_mut()
                    .complete_settlement("batch-1", "sig")
                    .expect("complete")
            ),
            Scenario::IntakeBatch => {
                // After tx 1 (3 tokens queued, W0 = 10): 3 more delivered (6), 3 more (9),
                // 2 more complete the block (11 ≥ 10), 1 held, then token 3 again: double spend.
                let batch = [
                    tx(2, tokens(3, 3)),
                    tx(3, tokens(6, 3)),
                    tx(4, tokens(9, 2)),
                    tx(5, tokens(11, 1)),
                    tx(6, vec![token(12), token(3)]),
                ];
                let results = auditor.intake_batch(&batch).expect("group commit");
                assert!(results.iter().all(Result::is_ok), "{results:?}");
                format!("{results:?}")
            }
        }
    }

    /// Whether re-running the step after it committed must give the same result (idempotent
    /// steps). A committed intake re-run is a replay of the same transaction id: double selling.
    fn idempotent(self) -> bool {
        !matches!(
            self,
            Scenario::IntakeDeliver
                | Scenario::IntakeFormsBlock
                | Scenario::ForgeryFlush
                | Scenario::IntakeBatch
        )
    }
}

/// Entry point of the child process: does nothing unless the parent set the environment.
#[test]
fn crash_child_entry_point() {
    let (Ok(db), Ok(scenario), Ok(step), Ok(backend)) = (
        std::env::var(ENV_DB),
        std::env::var(ENV_SCENARIO),
        std::env::var(ENV_STEP),
        std::env::var(ENV_BACKEND),
    ) else {
        return;
    };
    let scenario = Scenario::from_name(&scenario);
    if backend == Postgres::NAME {
        let server = TestPostgres::from_env("crash child").expect("the parent's server");
        crash_child(&Postgres(server), &db, scenario, &step);
    } else {
        crash_child(&Sqlite, &db, scenario, &step);
    }
}

/// Runs the step in the child and aborts the process at its `step` (`name#k`: the k-th time).
fn crash_child<B: Backend>(backend: &B, db: &str, scenario: Scenario, step: &str) {
    let mut auditor = engine(backend.open(db), scenario.w0());
    let step_name = step.to_owned();
    // `name#k`: abort the k-th time the step is reached (group commits repeat steps).
    let (name, occurrence) = match step.split_once('#') {
        Some((name, k)) => (name.to_owned(), k.parse::<u32>().expect("occurrence")),
        None => (step.to_owned(), 1),
    };
    let target: &'static str = Box::leak(name.into_boxed_str());
    let mut seen = 0u32;
    B::set_hook(
        auditor.store_mut(),
        Box::new(move |name| {
            if name == target {
                seen += 1;
                if seen == occurrence {
                    std::process::abort();
                }
            }
        }),
    );
    scenario.step(&mut auditor);
    if step_name == AFTER_COMMIT {
        std::process::abort();
    }
    // Reaching here means the step never passed the target: the parent reports it.
    std::process::exit(3);
}

fn run_child(backend: &str, db: &str, scenario: Scenario, step: &str) -> std::process::ExitStatus {
    let exe = std::env::current_exe().expect("test binary");
    Command::new(exe)
        .args([
            "--exact",
            "crash_child_entry_point",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_DB, db)
        .env(ENV_BACKEND, backend)
        .env(ENV_SCENARIO, scenario.name())
        .env(ENV_STEP, step)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("spawn child")
}

fn check_scenario<B: Backend>(backend: &B, scenario: Scenario) {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = backend.place(dir.path(), "base");
    scenario.setup(backend, &base);
    let before = backend.dump(&base);

    // Reference: the step without a crash.
    let reference_db = backend.copy(scenario, &base, dir.path(), "reference");
    assert_eq!(backend.dump(&reference_db), before, "{scenario:?}: copy");
    let mut reference = engine(backend.open(&reference_db), scenario.w0());
    let reference_result = scenario.step(&mut reference);
    drop(reference);
    let after = backend.dump(&reference_db);
    assert_ne!(before, after, "{scenario:?}: the step must change state");

    for step in scenario.steps() {
        let db = backend.copy(scenario, &base, dir.path(), &format!("crash-{step}"));
        let status = run_child(B::NAME, &db, scenario, step);
        assert!(
            !status.success() && status.code() != Some(3),
            "{scenario:?} at {step}: the child did not crash there (status {status:?})"
        );
        let state = backend.dump(&db);
        if step == AFTER_COMMIT {
            assert_eq!(
                state, after,
                "{scenario:?}: a crash after commit keeps the committed state"
            );
            if scenario.idempotent() {
                let mut auditor = engine(backend.open(&db), scenario.w0());
                assert_eq!(
                    scenario.step(&mut auditor),
                    reference_result,
                    "{scenario:?}: re-run after commit"
                );
                drop(auditor);
                assert_eq!(
                    backend.dump(&db),
                    after,
                    "{scenario:?}: re-running a committed step changes nothing"
                );
            }
            continue;
        }
        assert_eq!(
            state, before,
            "{scenario:?} at {step}: state must equal the state before the step"
        );
        let mut auditor = engine(backend.open(&db), scenario.w0());
        assert_eq!(
            scenario.step(&mut auditor),
            reference_result,
            "{scenario:?} at {step}: re-run result"
        );
        drop(auditor);
        assert_eq!(
            backend.dump(&db),
            after,
            "{scenario:?} at {step}: re-run state"
        );
    }
}

#[test]
fn crash_during_intake_delivery_loses_nothing() {
    check_scenario(&Sqlite, Scenario::IntakeDeliver);
}

#[test]
fn crash_during_block_submission_loses_nothing() {
    check_scenario(&Sqlite, Scenario::IntakeFormsBlock);
}

#[test]
fn crash_during_decision_handling_never_pays_twice() {
    check_scenario(&Sqlite, Scenario::ApplyDecisions);
}

#[test]
fn crash_during_forgery_report_with_flushed_block_loses_nothing() {
    check_scenario(&Sqlite, Scenario::ForgeryFlush);
}

#[test]
fn crash_during_settlement_begin_loses_nothing() {
    check_scenario(&Sqlite, Scenario::SettlementBegin);
}

#[test]
fn crash_during_settlement_completion_never_pays_twice() {
    check_scenario(&Sqlite, Scenario::SettlementComplete);
}

/// A crash anywhere inside the group commit of a batch of intakes leaves none of the batch
/// visible after reopening (not the change sets already written inside the open transaction),
/// and re-running the batch gives the outcomes and the state of a run that never crashed.
#[test]
fn crash_inside_a_group_commit_leaves_nothing_of_the_batch() {
    check_scenario(&Sqlite, Scenario::IntakeBatch);
}

/// The batch scenario does what the crash test relies on: a block forms mid-batch, a later
/// transaction is held and the double spend inside the batch is caught.
#[test]
fn group_commit_scenario_forms_a_block_holds_and_catches_a_double_spend() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("auditor.db");
    Scenario::IntakeBatch.setup(&Sqlite, db.to_str().expect("utf-8 path"));
    let mut auditor = open(&db, 10);
    let result = Scenario::IntakeBatch.step(&mut auditor);
    for expected in [
        "verdict: Deliver",
        "verdict: Wait",
        "verdict: Reject(DoubleSpending)",
    ] {
        assert!(result.contains(expected), "{expected} in {result}");
    }
    let pending = auditor.store().pending_blocks().expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].token_count, 11);
    let user = auditor.user(&key(USER)).expect("user").expect("known");
    assert_eq!(user.next_seq, 6);
    assert_eq!((user.queued_tokens, user.queued_transactions), (1, 1));
    assert_eq!(user.misbehaviour_count, 1);
}

#[test]
fn pending_block_is_resubmitted_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("auditor.db");
    Scenario::IntakeFormsBlock.setup(&Sqlite, db.to_str().expect("utf-8 path"));
    {
        let mut auditor = open(&db, 10);
        let out = auditor.intake(&tx(4, tokens(9, 3))).expect("intake");
        assert!(out.block.is_some());
        // The process dies before the chain answers: nothing else happens.
    }
    let mut auditor = open(&db, 10);
    let mut chain = chain();
    let outcomes = auditor.resume(&mut chain).expect("resume");
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].settlement.escrow_paid.0, 1200);
    assert!(auditor
        .store()
        .pending_blocks()
        .expect("pending")
        .is_empty());
    // Resuming again finds nothing to do.
    assert!(auditor.resume(&mut chain).expect("resume").is_empty());
}

/// The same scenarios on PostgreSQL (skipped without `MUPIB_TEST_POSTGRES`).
mod postgres {
    use super::*;

    fn check(test: &str, scenario: Scenario) {
        if let Some(server) = TestPostgres::from_env(test) {
            check_scenario(&Postgres(server), scenario);
        }
    }

    #[test]
    fn crash_during_intake_delivery_loses_nothing() {
        check(
            "crash_during_intake_delivery_loses_nothing",
            Scenario::IntakeDeliver,
        );
    }

    #[test]
    fn crash_during_block_submission_loses_nothing() {
        check(
            "crash_during_block_submission_loses_nothing",
            Scenario::IntakeFormsBlock,
        );
    }

    #[test]
    fn crash_during_decision_handling_never_pays_twice() {
        check(
            "crash_during_decision_handling_never_pays_twice",
            Scenario::ApplyDecisions,
        );
    }

    #[test]
    fn crash_during_forgery_report_with_flushed_block_loses_nothing() {
        check(
            "crash_during_forgery_report_with_flushed_block_loses_nothing",
            Scenario::ForgeryFlush,
        );
    }

    #[test]
    fn crash_during_settlement_begin_loses_nothing() {
        check(
            "crash_during_settlement_begin_loses_nothing",
            Scenario::SettlementBegin,
        );
    }

    #[test]
    fn crash_during_settlement_completion_never_pays_twice() {
        check(
            "crash_during_settlement_completion_never_pays_twice",
            Scenario::SettlementComplete,
        );
    }

    #[test]
    fn crash_inside_a_group_commit_leaves_nothing_of_the_batch() {
        check(
            "crash_inside_a_group_commit_leaves_nothing_of_the_batch",
            Scenario::IntakeBatch,
        );
    }
}

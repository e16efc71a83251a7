//! Settlement against a payout chain that keeps the program's rules (a batch executes only with
//! the auditor's next payout number, atomically with its transfers; a signed transaction
//! executes at most once; a closed account fails the whole transaction; blockhashes expire):
//! every payout made exactly once through lost answers, expiries, closed accounts, empty funds,
//! a stranger's interference and a crash at every step of the SQLite and PostgreSQL stores.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::{catch_unwind, AssertUnwindSafe};

use mupib_auditor::settlement::{settle_once, Blocked, SettlementReport};
use mupib_auditor::store::{ChangeSet, MemoryStore, SqliteStore, Store, TestPostgres};
use mupib_auditor::testkit::{FakePayouts, AUDITOR};
use mupib_auditor::{Auditor, AuditorConfig};
use mupib_protocol::money::Withholding;
use mupib_protocol::payout::{
    DestinationProblem, PayoutBatch, PayoutError, PayoutRecord, PayoutSender, SendOutcome,
    SignedPayout, VendorPayout,
};
use mupib_protocol::trust::{TrustModel, TrustScale};
use mupib_protocol::Pubkey;

fn key(n: u8) -> Pubkey {
    Pubkey::new_from_array([n; 32])
}

fn config() -> AuditorConfig {
    AuditorConfig {
        withholding: Withholding::from_bps(2000).unwrap(),
        trust_model: TrustModel::Neutral,
        trust_scale: TrustScale::Initial,
        initial_block_size: 10,
        paper_mode: false,
    }
}

/// An engine whose vendors `vendors` are owed `amounts`.
fn owing<S: Store>(mut store: S, owed: &[(u8, u64)]) -> Auditor<S> {
    store
        .apply(&ChangeSet {
            vendor_credits: owed
                .iter()
                .map(|(vendor, amount)| VendorPayout {
                    vendor: key(*vendor),
                    amount: *amount,
                })
                .collect(),
            ..ChangeSet::default()
        })
        .unwrap();
    Auditor::new(store, config()).unwrap()
}

fn settle<S: Store>(engine: &mut Auditor<S>, payouts: &mut FakePayouts) -> SettlementReport {
    settle_once(engine, &key(AUDITOR), payouts).unwrap()
}

fn settled<S: Store>(engine: &Auditor<S>, vendor: u8) -> (u64, u64) {
    let account = engine.vendor(&key(vendor)).unwrap();
    (account.settled, account.in_flight)
}

#[test]
fn every_vendor_is_paid_once_in_batches_that_consume_the_payout_sequence() {
    let owed: Vec<(u8, u64)> = (1..=15).map(|v| (v, 100 * u64::from(v))).collect();
    let mut engine = owing(MemoryStore::new(), &owed);
    let mut payouts = FakePayouts::funded(1_000_000);
    let report = settle(&mut engine, &mut payouts);
    assert_eq!(report.blocked, None);
    assert_eq!(report.batches.len(), 2, "12 vendors per batch at most");
    assert!(report.batches.iter().all(|b| b.status == "completed"));
    assert_eq!(
        report.batches.iter().map(|b| b.seq).collect::<Vec<_>>(),
        [0, 1]
    );
    for (vendor, amount) in &owed {
        assert_eq!(payouts.paid(*vendor), *amount);
        assert_eq!(settled(&engine, *vendor), (*amount, 0));
    }
    assert_eq!(payouts.chain().record().next_seq, 2);
    // Again: nothing owed, nothing sent.
    let signs = payouts.chain().signs;
    let again = settle(&mut engine, &mut payouts);
    assert!(again.batches.is_empty());
    assert_eq!(payouts.chain().signs, signs);
    assert_eq!(payouts.chain().transfers.len(), 15);
}

#[test]
fn answer_lost_after_execution_completes_from_the_record_without_paying_twice() {
    let mut engine = owing(MemoryStore::new(), &[(1, 800), (2, 1_600)]);
    let mut payouts = FakePayouts::funded(10_000);
    payouts.chain().lose_next_answer = true;
    let report = settle(&mut engine, &mut payouts);
    assert_eq!(report.batches[0].status, "completed", "{report:?}");
    assert_eq!((payouts.paid(1), payouts.paid(2)), (800, 1_600));
    assert_eq!(payouts.chain().transfers.len(), 2);
    assert_eq!(settled(&engine, 1), (800, 0));
    // A restarted settler (new sender over the same chain) pays nothing more.
    let mut restarted = payouts.clone();
    assert!(settle(&mut engine, &mut restarted).batches.is_empty());
    assert_eq!(payouts.chain().transfers.len(), 2);
}

#[test]
fn unreachable_chain_leaves_the_batch_in_flight_and_it_lands_once_later() {
    let mut engine = owing(MemoryStore::new(), &[(1, 2_400)]);
    let mut payouts = FakePayouts::funded(10_000);
    payouts.chain().unreachable = true;
    let first = settle(&mut engine, &mut payouts);
    assert_eq!(first.batches[0].status, "in_flight");
    assert!(matches!(first.blocked, Some(Blocked::InFlight { .. })));
    assert_eq!(settled(&engine, 1), (0, 2_400));
    assert_eq!(payouts.paid(1), 0);
    // Still valid when the chain is back: the same signed bytes are sent again.
    payouts.chain().unreachable = false;
    let signs = payouts.chain().signs;
    let second = settle(&mut engine, &mut payouts);
    assert_eq!(second.batches[0].status, "completed");
    assert!(second.batches[0].recovered);
    assert_eq!(
        payouts.chain().signs,
        signs,
        "not re-signed while it could land"
    );
    assert_eq!(payouts.paid(1), 2_400);
    assert_eq!(settled(&engine, 1), (2_400, 0));
    assert!(settle(&mut engine, &mut payouts).batches.is_empty());
    assert_eq!(payouts.paid(1), 2_400);
}

#[test]
fn expired_unlanded_batch_is_re_signed_with_the_same_number_and_items_and_pays_once() {
    let mut engine = owing(MemoryStore::new(), &[(1, 500), (2, 700)]);
    let mut payouts = FakePayouts::funded(10_000);
    payouts.chain().unreachable = true;
    let first = settle(&mut engine, &mut payouts);
    let key0 = first.batches[0].key.clone();
    assert_eq!(first.batches[0].status, "in_flight");
    // Its blockhash expires without it landing.
    {
        let mut chain = payouts.chain();
        chain.blockhash = 10;
        chain.oldest_valid = 5;
        chain.unreachable = false;
    }
    let second = settle(&mut engine, &mut payouts);
    assert_eq!(second.batches.len(), 1, "{second:?}");
    assert_eq!(second.batches[0].key, key0, "the same batch, re-signed");
    assert_eq!(second.batches[0].status, "completed");
    assert_ne!(second.batches[0].signature, first.batches[0].signature);
    assert_eq!((payouts.paid(1), payouts.paid(2)), (500, 700));
    // The first signature can never execute now.
    let old = SignedPayout {
        signature: first.batches[0].signature.clone().unwrap(),
        transaction: Vec::new(),
    };
    assert!(matches!(payouts.send(&old), SendOutcome::Failed { .. }));
    assert_eq!((payouts.paid(1), payouts.paid(2)), (500, 700));
}

#[test]
fn a_closed_vendor_account_is_isolated_and_everyone_else_is_paid() {
    let mut engine = owing(MemoryStore::new(), &[(1, 100), (2, 200), (3, 300)]);
    let mut payouts = FakePayouts::funded(10_000);
    payouts.chain().closed.insert(key(2));
    let report = settle(&mut engine, &mut payouts);
    assert_eq!(report.blocked, None);
    assert_eq!(report.unpayable.len(), 1);
    assert_eq!(report.unpayable[0].vendor, key(2).to_string());
    assert_eq!(report.unpayable[0].amount, 200);
    assert!(report.unpayable[0].reason.contains("does not exist"));
    assert_eq!(
        (payouts.paid(1), payouts.paid(2), payouts.paid(3)),
        (100, 0, 300)
    );
    let account = engine.vendor(&key(2)).unwrap();
    assert_eq!(
        (account.accrued, account.settled, account.in_flight),
        (200, 0, 0)
    );
    // Reopened: paid at the next run, once.
    payouts.chain().closed.clear();
    let later = settle(&mut engine, &mut payouts);
    assert!(later.unpayable.is_empty());
    assert_eq!(payouts.paid(2), 200);
    assert!(settle(&mut engine, &mut payouts).batches.is_empty());
    assert_eq!(payouts.paid(2), 200);
}

#[test]
fn an_account_closed_between_check_and_execution_aborts_the_batch_and_the_rest_is_paid() {
    let mut engine = owing(MemoryStore::new(), &[(1, 100), (2, 200)]);
    let payouts = FakePayouts::funded(10_000);
    // The destination check passes, then the account is closed before the transfer executes.
    let closing = payouts.clone();
    let mut racing = Racing {
        inner: payouts.clone(),
        close_on_send: Some(key(2)),
    };
    let report = settle_once(&mut engine, &key(AUDITOR), &mut racing).unwrap();
    assert_eq!(report.batches[0].status, "aborted", "{report:?}");
    assert_eq!(report.batches[1].status, "completed");
    assert_eq!(report.unpayable[0].vendor, key(2).to_string());
    assert!(report.unpayable[0].reason.contains("transfer failed"));
    assert_eq!((closing.paid(1), closing.paid(2)), (100, 0));
    let account = engine.vendor(&key(2)).unwrap();
    assert_eq!(
        (account.settled, account.in_flight),
        (0, 0),
        "amount settleable again"
    );
    assert_eq!(
        payouts.chain().record().next_seq,
        1,
        "the failed batch consumed no number"
    );
}

/// Closes a vendor's account right before the first send (the race the pre-check cannot see).
struct Racing {
    inner: FakePayouts,
    close_on_send: Option<Pubkey>,
}

impl PayoutSender for Racing {
    fn record(&mut self) -> Result<PayoutRecord, PayoutError> {
        self.inner.record()
    }
    fn check_destination(
        &mut self,
        vendor: &Pubkey,
    ) -> Result<Result<(), DestinationProblem>, PayoutError> {
        self.inner.check_destination(vendor)
    }
    fn funds(&mut self) -> Result<u64, PayoutError> {
        self.inner.funds()
    }
    fn sign(&mut self, batch: &PayoutBatch) -> Result<SignedPayout, PayoutError> {
        self.inner.sign(batch)
    }
    fn send(&mut self, payout: &SignedPayout) -> SendOutcome {
        if let Some(vendor) = self.close_on_send.take() {
            self.inner.chain().closed.insert(vendor);
            let outcome = self.inner.send(payout);
            self.inner.chain().closed.clear();
            // Closed for good from the settler's point of view for the rest of this run.
            self.inner.chain().closed.insert(vendor);
            return outcome;
        }
        self.inner.send(payout)
    }
    fn may_still_land(&mut self, payout: &SignedPayout) -> Result<bool, PayoutError> {
        self.inner.may_still_land(payout)
    }
}

#[test]
fn empty_auditor_account_signs_nothing_and_says_why() {
    let mut engine = owing(MemoryStore::new(), &[(1, 500)]);
    let mut payouts = FakePayouts::funded(100);
    let report = settle(&mut engine, &mut payouts);
    assert_eq!(
        report.blocked,
        Some(Blocked::InsufficientFunds {
            available: 100,
            needed: 500
        })
    );
    assert!(report.batches.is_empty());
    assert_eq!(payouts.chain().signs, 0, "no transaction, no fee");
    assert_eq!(settled(&engine, 1), (0, 0));
    // Funded: paid once.
    payouts.chain().balances.insert(key(AUDITOR), 1_000);
    settle(&mut engine, &mut payouts);
    assert_eq!(payouts.paid(1), 500);
}

#[test]
fn unreadable_chain_blocks_without_reserving_anything() {
    let mut engine = owing(MemoryStore::new(), &[(1, 500)]);
    let mut payouts = FakePayouts::funded(1_000);
    payouts.chain().down = true;
    let report = settle(&mut engine, &mut payouts);
    assert!(matches!(
        report.blocked,
        Some(Blocked::ChainUnavailable { .. })
    ));
    assert!(engine.open_settlements().unwrap().is_empty());
    assert_eq!(settled(&engine, 1), (0, 0));
}

/// A payout number consumed by a transaction this store does not know (another settler with
/// another store) stops settlement with an alarm: nothing is completed, aborted or signed.
#[test]
fn record_moved_by_an_unknown_transaction_stops_settlement_with_an_alarm() {
    let mut engine = owing(MemoryStore::new(), &[(1, 500)]);
    let mut payouts = FakePayouts::funded(10_000);
    payouts.chain().unreachable = true;
    settle(&mut engine, &mut payouts);
    // A foreign batch with the same number lands.
    let foreign = PayoutBatch {
        seq: 0,
        items: vec![VendorPayout {
            vendor: key(9),
            amount: 1,
        }],
    };
    let signed = payouts.sign(&foreign).unwrap();
    payouts.chain().unreachable = false;
    assert_eq!(payouts.send(&signed), SendOutcome::Executed);
    let signs = payouts.chain().signs;
    let report = settle(&mut engine, &mut payouts);
    assert!(matches!(
        report.blocked,
        Some(Blocked::RecordMismatch {
            seq: 0,
            next_seq: 1,
            ..
        })
    ));
    assert_eq!(payouts.chain().signs, signs);
    assert_eq!(payouts.paid(1), 0);
    assert_eq!(
        settled(&engine, 1),
        (0, 500),
        "left in flight for an operator"
    );
}

/// A crash (the process dies) at every step of the SQLite store's settlement transactions,
/// including right after each commit: the next run completes every payout exactly once.
#[test]
fn crash_at_every_store_step_of_settlement_pays_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    crash_at_every_settlement_step(
        || {
            n += 1;
            dir.path().join(format!("auditor-{n}.sqlite"))
        },
        |path| SqliteStore::open(path).unwrap(),
        |store, hook| store.set_step_hook(Some(hook)),
    );
}

/// The same on PostgreSQL (each run on a fresh schema; skipped without `MUPIB_TEST_POSTGRES`):
/// the panic leaves the server transaction, which rolls back.
#[test]
fn crash_at_every_store_step_of_postgres_settlement_pays_exactly_once() {
    let Some(server) = TestPostgres::from_env(
        "crash_at_every_store_step_of_postgres_settlement_pays_exactly_once",
    ) else {
        return;
    };
    crash_at_every_settlement_step(
        || server.unique_schema("settle"),
        |schema| server.open(schema),
        |store, hook| store.set_step_hook(Some(hook)),
    );
}

type StepHook = Box<dyn FnMut(&'static str) + Send>;

fn crash_at_every_settlement_step<P, S: Store>(
    mut place: impl FnMut() -> P,
    open: impl Fn(&P) -> S,
    set_hook: impl Fn(&mut S, StepHook),
) {
    let steps = [
        "settlement:begin",
        "settlement:signed",
        "settlement:vendors",
        "commit",
    ];
    for step in steps {
        for occurrence in 1..=4u32 {
            let path = place();
            let owed = [(1u8, 100u64), (2, 200), (3, 300)];
            drop(owing(open(&path), &owed));
            let payouts = FakePayouts::funded(10_000);
            // The crashing run: panics inside the store transaction at the chosen step.
            let crashed = catch_unwind(AssertUnwindSafe(|| {
                let mut store = open(&path);
                let mut seen = 0u32;
                set_hook(
                    &mut store,
                    Box::new(move |name| {
                        if name == step {
                            seen += 1;
                            if seen == occurrence {
                                panic!("crash at {step}#{occurrence}");
                            }
                        }
                    }),
                );
                let mut engine = Auditor::new(store, config()).unwrap();
                settle(&mut engine, &mut payouts.clone());
            }));
            if occurrence == 1 {
                assert!(
                    crashed.is_err(),
                    "the run passed {step} without crashing there"
                );
            }
            // Recovery by a fresh process.
            let mut engine = Auditor::new(open(&path), config()).unwrap();
            let report = settle(&mut engine, &mut payouts.clone());
            assert_eq!(report.blocked, None, "{step}#{occurrence}: {report:?}");
            for (vendor, amount) in owed {
                assert_eq!(
                    payouts.paid(vendor),
                    amount,
                    "{step}#{occurrence} (crashed: {}): vendor {vendor} paid exactly once",
                    crashed.is_err()
                );
                assert_eq!(settled(&engine, vendor), (amount, 0));
            }
            assert!(engine.open_settlements().unwrap().is_empty());
        }
    }
}

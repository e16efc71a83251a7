//! The storage conformance suite: every [`Store`] backend must pass it (cdk's `mint_db_test!`
//! pattern). Run it with [`crate::store_conformance_tests!`] in an integration test, giving an
//! expression that builds a fresh, empty store; each check is one `#[test]`.
//!
//! The checks panic (via `assert!`) on failure: this module is test support, compiled into the
//! library so that every backend crate can run the same suite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use super::*;
use mupib_protocol::payout::{SignedPayout, VendorPayout};
use mupib_protocol::reject::RejectCode;
use mupib_protocol::token::TokenId;
use mupib_protocol::token::TokenRef;
use mupib_protocol::trust::{TrustModel, TrustScale, TrustState};

fn key(n: u8) -> Pubkey {
    Pubkey::new_from_array([n; 32])
}

fn token(n: u32) -> TokenRef {
    TokenRef {
        id: TokenId {
            bank: key(200),
            batch_id: 7,
            serial: n,
        },
        value: 100,
        digest: [u8::try_from(n % 256).unwrap(); 16],
    }
}

fn user_state(user: Pubkey, version: u64) -> UserState {
    UserState {
        user,
        version,
        trust: TrustState::new(TrustModel::Pessimistic, TrustScale::Previous, 100).unwrap(),
        suspended: false,
        queued_tokens: 0,
        queued_transactions: 0,
        pending_block: None,
        next_seq: 0,
        blocks_valid: 0,
        blocks_invalid: 0,
        misbehaviour_count: 0,
        risk_total: -12_345_678_901_234_567_890_i128,
        tokens_delivered: 0,
        refunded_total: 0,
    }
}

fn tx(user: Pubkey, seq: u64, status: TransactionStatus, tokens: &[u32]) -> TransactionRecord {
    let mut id = [0u8; 32];
    id[0] = user.to_bytes()[0];
    id[1..9].copy_from_slice(&seq.to_le_bytes());
    TransactionRecord {
        user,
        seq,
        id: TransactionId(id),
        vendor: key(100),
        status,
        block_id: None,
        amount: 100 * u64::try_from(tokens.len()).unwrap(),
        payout: 0,
        tokens: tokens.iter().map(|n| token(*n)).collect(),
        submission: Some([seq as u8; 32]),
    }
}

fn insert_user<S: Store>(store: &mut S, user: Pubkey) {
    store
        .apply(&ChangeSet {
            user: Some(UserWrite {
                state: user_state(user, 0),
                expected_version: None,
            }),
            ..ChangeSet::default()
        })
        .unwrap();
}

/// A new user is inserted once; updates are compare-and-swap on the version.
pub fn user_write_is_compare_and_swap<S: Store>(mut store: S) {
    let user = key(1);
    assert_eq!(store.user(&user).unwrap(), None);
    insert_user(&mut store, user);
    assert_eq!(store.user(&user).unwrap(), Some(user_state(user, 0)));

    // A second insert of the same user loses the race.
    let again = ChangeSet {
        user: Some(UserWrite {
            state: user_state(user, 0),
            expected_version: None,
        }),
        ..ChangeSet::default()
    };
    assert!(matches!(store.apply(&again), Err(StoreError::Conflict(_))));

    // A stale writer (expects version 5) is refused and changes nothing.
    let mut stale = user_state(user, 6);
    stale.trust.block_size = 1;
    let stale_write = ChangeSet {
        user: Some(UserWrite {
            state: stale,
            expected_version: Some(5),
        }),
        ..ChangeSet::default()
    };
    assert!(matches!(
        store.apply(&stale_write),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.user(&user).unwrap().unwrap().trust.block_size, 100);

    let mut fresh = user_state(user, 1);
    fresh.trust.block_size = 42;
    fresh.trust.invalid_total = 3;
    fresh.suspended = true;
    fresh.pending_block = Some(9);
    fresh.risk_total = i128::MAX;
    store
        .apply(&ChangeSet {
            user: Some(UserWrite {
                state: fresh,
                expected_version: Some(0),
            }),
            ..ChangeSet::default()
        })
        .unwrap();
    assert_eq!(store.user(&user).unwrap(), Some(fresh));
}

/// Transactions round-trip with their tokens; the queue holds delivered and held ones not yet in
/// a block, in arrival order; look-up by id finds them.
pub fn transactions_and_queue<S: Store>(mut store: S) {
    let user = key(2);
    insert_user(&mut store, user);
    let mut delivered = tx(user, 0, TransactionStatus::Delivered, &[1, 2, 3]);
    delivered.payout = 240;
    let rejected = tx(
        user,
        1,
        TransactionStatus::Rejected(RejectCode::DoubleSpending),
        &[],
    );
    let held = tx(user, 2, TransactionStatus::Held, &[4]);
    store
        .apply(&ChangeSet {
            new_transactions: vec![delivered.clone(), rejected.clone(), held.clone()],
            ..ChangeSet::default()
        })
        .unwrap();
    assert_eq!(
        store.queue(&user).unwrap(),
        vec![delivered.clone(), held.clone()]
    );
    assert_eq!(store.queue(&key(3)).unwrap(), vec![]);
    assert_eq!(
        store.transaction_by_id(&rejected.id).unwrap(),
        Some(rejected.clone())
    );
    assert_eq!(
        store.transaction_by_id(&TransactionId([9; 32])).unwrap(),
        None
    );

    // The same (user, seq) twice is a conflict.
    let duplicate = ChangeSet {
        new_transactions: vec![tx(user, 0, TransactionStatus::Delivered, &[5])],
        ..ChangeSet::default()
    };
    assert!(matches!(
        store.apply(&duplicate),
        Err(StoreError::Conflict(_))
    ));

    // A held transaction becomes delivered and stays queued; a rejection leaves the queue.
    store
        .apply(&ChangeSet {
            transaction_updates: vec![TransactionUpdate {
                user,
                seq: 2,
                status: TransactionStatus::Rejected(RejectCode::UserSuspended),
                block_id: None,
                payout: 0,
            }],
            ..ChangeSet::default()
        })
        .unwrap();
    assert_eq!(store.queue(&user).unwrap(), vec![delivered]);
}

/// Block ids are claimed in order; a block takes its members off the queue; deciding a block
/// writes its outcome once; pending blocks are listed until decided.
pub fn block_lifecycle<S: Store>(mut store: S) {
    let user = key(4);
    insert_user(&mut store, user);
    let first = tx(user, 0, TransactionStatus::Delivered, &[10, 11]);
    store
        .apply(&ChangeSet {
            new_transactions: vec![first.clone()],
            ..ChangeSet::default()
        })
        .unwrap();
    let block_id = store.next_block_id().unwrap();
    let mut waiting = tx(user, 1, TransactionStatus::Waiting, &[12]);
    waiting.block_id = Some(block_id);
    let block = BlockRecord {
        block_id,
        user,
        waiting_seq: Some(1),
        token_count: 3,
        block_size: 3,
        outcome: None,
    };
    store
        .apply(&ChangeSet {
            block_id_claim: Some(block_id),
            new_block: Some(block.clone()),
            new_transactions: vec![waiting.clone()],
            transaction_updates: vec![TransactionUpdate {
                user,
                seq: 0,
                status: TransactionStatus::Delivered,
                block_id: Some(block_id),
                payout: 0,
            }],
            ..ChangeSet::default()
        })
        .unwrap();
    assert_eq!(store.next_block_id().unwrap(), block_id + 1);
    assert_eq!(store.queue(&user).unwrap(), vec![]);
    let (stored, members) = store.block(block_id).unwrap().unwrap();
    assert_eq!(stored, block);
    let mut first_in_block = first;
    first_in_block.block_id = Some(block_id);
    assert_eq!(members, vec![first_in_block, waiting]);
    assert_eq!(store.pending_blocks().unwrap(), vec![block.clone()]);
    assert_eq!(store.block(block_id + 7).unwrap(), None);

    // Claiming the same id again is a conflict.
    let reclaim = ChangeSet {
        block_id_claim: Some(block_id),
        ..ChangeSet::default()
    };
    assert!(matches!(
        store.apply(&reclaim),
        Err(StoreError::Conflict(_))
    ));

    let decide = ChangeSet {
        block_decided: Some((block_id, "{\"done\":1}".to_owned())),
        ..ChangeSet::default()
    };
    store.apply(&decide).unwrap();
    assert_eq!(store.pending_blocks().unwrap(), vec![]);
    assert_eq!(
        store.block(block_id).unwrap().unwrap().0.outcome.as_deref(),
        Some("{\"done\":1}")
    );
    // The processed marker is written once: a second decision is a conflict.
    assert!(matches!(store.apply(&decide), Err(StoreError::Conflict(_))));
}

/// Seen tokens: marking twice conflicts, releasing forgets.
pub fn seen_tokens<S: Store>(mut store: S) {
    let a = token(1).id;
    let b = token(2).id;
    assert!(!store.token_seen(&a).unwrap());
    store
        .apply(&ChangeSet {
            seen_tokens: vec![a, b],
            ..ChangeSet::default()
        })
        .unwrap();
    assert!(store.token_seen(&a).unwrap() && store.token_seen(&b).unwrap());
    let again = ChangeSet {
        seen_tokens: vec![b],
        ..ChangeSet::default()
    };
    assert!(matches!(store.apply(&again), Err(StoreError::Conflict(_))));
    store
        .apply(&ChangeSet {
            released_tokens: vec![a],
            ..ChangeSet::default()
        })
        .unwrap();
    assert!(!store.token_seen(&a).unwrap());
    assert!(store.token_seen(&b).unwrap());
}

/// A change set that fails anywhere writes nothing (user, credits, tokens, refunds, records).
pub fn failed_apply_writes_nothing<S: Store>(mut store: S) {
    let user = key(5);
    insert_user(&mut store, user);
    let before_user = store.user(&user).unwrap();
    let mut next = user_state(user, 1);
    next.trust.block_size = 7;
    let failing = ChangeSet {
        user: Some(UserWrite {
            state: next,
            expected_version: Some(0),
        }),
        seen_tokens: vec![token(30).id],
        vendor_credits: vec![VendorPayout {
            vendor: key(100),
            amount: 500,
        }],
        vendor_flags: vec![key(100)],
        user_refunds: vec![(user, 70)],
        misbehaviour: vec![MisbehaviourRecord {
            kind: MisbehaviourKind::ForgedToken,
            user,
            vendor: key(100),
            transaction_id: TransactionId([1; 32]),
            tokens: 1,
        }],
        // The failing part: an update of a transaction that does not exist.
        transaction_updates: vec![TransactionUpdate {
            user,
            seq: 99,
            status: TransactionStatus::Delivered,
            block_id: None,
            payout: 0,
        }],
        ..ChangeSet::default()
    };
    assert!(store.apply(&failing).is_err());
    assert_eq!(store.user(&user).unwrap(), before_user);
    assert!(!store.token_seen(&token(30).id).unwrap());
    assert_eq!(store.vendor(&key(100)).unwrap(), VendorAccount::default());
    assert_eq!(store.user_refund(&user).unwrap(), 0);
    assert_eq!(store.misbehaviour().unwrap(), vec![]);

    // An amount the database cannot hold is refused, not wrapped.
    let huge = ChangeSet {
        vendor_credits: vec![VendorPayout {
            vendor: key(101),
            amount: u64::MAX,
        }],
        ..ChangeSet::default()
    };
    assert!(store.apply(&huge).is_err());
    assert_eq!(store.vendor(&key(101)).unwrap(), VendorAccount::default());
}

/// Group commit: change sets apply in order, each seeing the earlier ones (a user created and
/// then updated in the same group, a block id claimed twice in a row); a change set that fails
/// in the middle of a group (a token the group's first change set already marked: a double
/// spend inside the batch) leaves nothing of the group written.
pub fn apply_all_is_atomic<S: Store>(mut store: S) {
    let user = key(7);
    let vendor = key(120);
    let first_block = store.next_block_id().unwrap();
    let create = ChangeSet {
        user: Some(UserWrite {
            state: user_state(user, 0),
            expected_version: None,
        }),
        new_transactions: vec![tx(user, 0, TransactionStatus::Delivered, &[40, 41])],
        seen_tokens: vec![token(40).id, token(41).id],
        vendor_credits: vec![VendorPayout {
            vendor,
            amount: 160,
        }],
        ..ChangeSet::default()
    };
    let mut second_state = user_state(user, 1);
    second_state.next_seq = 2;
    let update = ChangeSet {
        user: Some(UserWrite {
            state: second_state,
            expected_version: Some(0),
        }),
        new_transactions: vec![tx(user, 1, TransactionStatus::Delivered, &[42])],
        seen_tokens: vec![token(42).id],
        vendor_credits: vec![VendorPayout { vendor, amount: 80 }],
        block_id_claim: Some(first_block),
        ..ChangeSet::default()
    };
    let mut third_state = user_state(user, 2);
    third_state.next_seq = 3;
    let double_spend = ChangeSet {
        user: Some(UserWrite {
            state: third_state,
            expected_version: Some(1),
        }),
        new_transactions: vec![tx(user, 2, TransactionStatus::Delivered, &[43, 40])],
        // Token 40 was marked by the group's first change set: a conflict.
        seen_tokens: vec![token(43).id, token(40).id],
        vendor_credits: vec![VendorPayout {
            vendor,
            amount: 160,
        }],
        block_id_claim: Some(first_block + 1),
        ..ChangeSet::default()
    };

    let failing = [create.clone(), update.clone(), double_spend];
    assert!(matches!(
        store.apply_all(&failing),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.user(&user).unwrap(), None);
    for serial in [40, 41, 42, 43] {
        assert!(
            !store.token_seen(&token(serial).id).unwrap(),
            "token {serial}"
        );
    }
    assert_eq!(store.queue(&user).unwrap(), vec![]);
    assert_eq!(store.vendor(&vendor).unwrap(), VendorAccount::default());
    assert_eq!(store.next_block_id().unwrap(), first_block);
    assert!(store
        .transaction_by_id(&tx(user, 0, TransactionStatus::Delivered, &[]).id)
        .unwrap()
        .is_none());

    // A stale compare-and-swap inside the group (version 0 expected twice) also writes nothing.
    let stale = ChangeSet {
        user: Some(UserWrite {
            state: user_state(user, 1),
            expected_version: Some(0),
        }),
        ..ChangeSet::default()
    };
    let lost_race = [create.clone(), update.clone(), stale];
    assert!(matches!(
        store.apply_all(&lost_race),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.user(&user).unwrap(), None);
    assert_eq!(store.next_block_id().unwrap(), first_block);

    // The valid prefix as a group: both change sets land, in order.
    store.apply_all(&[create, update]).unwrap();
    assert_eq!(store.user(&user).unwrap().map(|u| u.version), Some(1));
    assert_eq!(store.user(&user).unwrap().map(|u| u.next_seq), Some(2));
    assert_eq!(
        store
            .queue(&user)
            .unwrap()
            .iter()
            .map(|t| t.seq)
            .collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert!(store.token_seen(&token(42).id).unwrap());
    assert!(!store.token_seen(&token(43).id).unwrap());
    assert_eq!(store.vendor(&vendor).unwrap().accrued, 240);
    assert_eq!(store.next_block_id().unwrap(), first_block + 1);

    // An empty group writes nothing and succeeds.
    store.apply_all(&[]).unwrap();
    assert_eq!(store.vendor(&vendor).unwrap().accrued, 240);
}

/// Vendor credits, flags, user refunds accumulate; misbehaviour keeps order.
pub fn accruals_accumulate<S: Store>(mut store: S) {
    let vendor = key(110);
    let user = key(6);
    for (amount, refund) in [(80u64, 0u64), (160, 40)] {
        store
            .apply(&ChangeSet {
                vendor_credits: vec![VendorPayout { vendor, amount }],
                user_refunds: if refund > 0 {
                    vec![(user, refund)]
                } else {
                    vec![]
                },
                ..ChangeSet::default()
            })
            .unwrap();
    }
    store
        .apply(&ChangeSet {
            vendor_flags: vec![vendor],
            misbehaviour: vec![
                MisbehaviourRecord {
                    kind: MisbehaviourKind::DoubleSelling,
                    user,
                    vendor,
                    transaction_id: TransactionId([2; 32]),
                    tokens: 0,
                },
                MisbehaviourRecord {
                    kind: MisbehaviourKind::DoubleSpending,
                    user,
                    vendor,
                    transaction_id: TransactionId([3; 32]),
                    tokens: 2,
                },
            ],
            ..ChangeSet::default()
        })
        .unwrap();
    assert_eq!(
        store.vendor(&vendor).unwrap(),
        VendorAccount {
            accrued: 240,
            settled: 0,
            in_flight: 0,
            double_sellings: 1
        }
    );
    assert_eq!(store.user_refund(&user).unwrap(), 40);
    let records = store.misbehaviour().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].kind, MisbehaviourKind::DoubleSelling);
    assert_eq!(records[1].kind, MisbehaviourKind::DoubleSpending);
    assert_eq!(records[1].tokens, 2);
}

/// Settlement batches reserve, complete and abort idempotently and never exceed balances.
pub fn settlement_is_idempotent<S: Store>(mut store: S) {
    let (a, b) = (key(120), key(121));
    store
        .apply(&ChangeSet {
            vendor_credits: vec![
                VendorPayout {
                    vendor: a,
                    amount: 1000,
                },
                VendorPayout {
                    vendor: b,
                    amount: 300,
                },
            ],
            ..ChangeSet::default()
        })
        .unwrap();
    assert_eq!(
        store.pending_payouts().unwrap(),
        vec![
            VendorPayout {
                vendor: a,
                amount: 1000
            },
            VendorPayout {
                vendor: b,
                amount: 300
            }
        ]
    );
    let items = [
        VendorPayout {
            vendor: b,
            amount: 300,
        },
        VendorPayout {
            vendor: a,
            amount: 600,
        },
    ];
    let batch = store.begin_settlement("batch-1", 7, &items).unwrap();
    assert_eq!(batch.status, SettlementStatus::InFlight);
    assert_eq!(batch.seq, 7);
    assert_eq!(batch.signed, None);
    assert_eq!(batch.items[0].vendor, a, "items are ordered by vendor");
    // Re-beginning with the same items is a no-op returning the same batch.
    assert_eq!(store.begin_settlement("batch-1", 7, &items).unwrap(), batch);
    assert_eq!(store.vendor(&a).unwrap().in_flight, 600);
    // The same key with other items, or another number, is refused.
    assert!(store
        .begin_settlement(
            "batch-1",
            7,
            &[VendorPayout {
                vendor: a,
                amount: 1
            }]
        )
        .is_err());
    assert!(store.begin_settlement("batch-1", 8, &items).is_err());
    // The signed transaction is kept with the batch (and replaced by a later signature).
    let first = SignedPayout {
        signature: "sig-0".into(),
        transaction: vec![1, 2, 3],
    };
    let signed = store.record_signed_settlement("batch-1", &first).unwrap();
    assert_eq!(signed.signed.as_ref(), Some(&first));
    let second_signature = SignedPayout {
        signature: "sig-1".into(),
        transaction: vec![4, 5],
    };
    store
        .record_signed_settlement("batch-1", &second_signature)
        .unwrap();
    assert_eq!(
        store.settlement("batch-1").unwrap().unwrap().signed,
        Some(second_signature.clone())
    );
    assert_eq!(
        store
            .open_settlements()
            .unwrap()
            .iter()
            .map(|b| b.key.as_str())
            .collect::<Vec<_>>(),
        ["batch-1"]
    );
    // Asking more than is settleable is refused (a: 1000 − 600 = 400 left).
    assert!(store
        .begin_settlement(
            "batch-2",
            8,
            &[VendorPayout {
                vendor: a,
                amount: 401
            }]
        )
        .is_err());
    assert!(store.settlement("batch-2").unwrap().is_none());
    assert_eq!(
        store.pending_payouts().unwrap(),
        vec![VendorPayout {
            vendor: a,
            amount: 400
        }]
    );

    let done = store.complete_settlement("batch-1", "sig-1").unwrap();
    assert_eq!(done.status, SettlementStatus::Completed);
    assert_eq!(store.complete_settlement("batch-1", "sig-1").unwrap(), done);
    assert_eq!(
        store.vendor(&a).unwrap(),
        VendorAccount {
            accrued: 1000,
            settled: 600,
            in_flight: 0,
            double_sellings: 0
        }
    );
    assert_eq!(store.vendor(&b).unwrap().settled, 300);
    assert!(
        store.abort_settlement("batch-1").is_err(),
        "a paid batch cannot be aborted"
    );
    assert!(
        store
            .record_signed_settlement("batch-1", &second_signature)
            .is_err(),
        "a paid batch is never signed again"
    );
    assert!(store.open_settlements().unwrap().is_empty());

    let second = [VendorPayout {
        vendor: a,
        amount: 400,
    }];
    store.begin_settlement("batch-3", 8, &second).unwrap();
    assert_eq!(store.pending_payouts().unwrap(), vec![]);
    let aborted = store.abort_settlement("batch-3").unwrap();
    assert_eq!(aborted.status, SettlementStatus::Aborted);
    assert_eq!(store.abort_settlement("batch-3").unwrap(), aborted);
    assert!(store.complete_settlement("batch-3", "late").is_err());
    assert_eq!(store.pending_payouts().unwrap(), second.to_vec());
    assert!(store.complete_settlement("unknown", "x").is_err());
    assert!(store.begin_settlement("empty", 9, &[]).is_err());
    // Recent batches, highest number first.
    let recent: Vec<(u64, String)> = store
        .recent_settlements(10)
        .unwrap()
        .into_iter()
        .map(|b| (b.seq, b.key))
        .collect();
    assert_eq!(
        recent,
        [(8, "batch-3".to_owned()), (7, "batch-1".to_owned())]
    );
    assert_eq!(store.recent_settlements(1).unwrap().len(), 1);
}

/// Runs every conformance check as its own `#[test]` against a backend:
/// `mupib_auditor::store_conformance_tests!(sqlite, SqliteStore::open_in_memory().unwrap());`
#[macro_export]
macro_rules! store_conformance_tests {
    ($module:ident, $make:expr) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            fn user_write_is_compare_and_swap() {
                $crate::store::conformance::user_write_is_compare_and_swap($make);
            }
            #[test]
            fn transactions_and_queue() {
                $crate::store::conformance::transactions_and_queue($make);
            }
            #[test]
            fn block_lifecycle() {
                $crate::store::conformance::block_lifecycle($make);
            }
            #[test]
            fn seen_tokens() {
                $crate::store::conformance::seen_tokens($make);
            }
            #[test]
            fn failed_apply_writes_nothing() {
                $crate::store::conformance::failed_apply_writes_nothing($make);
            }
            #[test]
            fn apply_all_is_atomic() {
                $crate::store::conformance::apply_all_is_atomic($make);
            }
            #[test]
            fn accruals_accumulate() {
                $crate::store::conformance::accruals_accumulate($make);
            }
            #[test]
            fn settlement_is_idempotent() {
                $crate::store::conformance::settlement_is_idempotent($make);
            }
        }
    };
}

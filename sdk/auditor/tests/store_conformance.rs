//! Both storage backends through the same conformance suite (`mupib_auditor::store::conformance`).

use mupib_auditor::store::{MemoryStore, SqliteStore};

mupib_auditor::store_conformance_tests!(memory, MemoryStore::new());
mupib_auditor::store_conformance_tests!(
    sqlite_in_memory,
    SqliteStore::open_in_memory().expect("open sqlite")
);
mupib_auditor::store_conformance_tests!(sqlite_file, {
    // A real file in WAL mode; the directory lives as long as the test process.
    let dir = Box::leak(Box::new(tempfile::tempdir().expect("tempdir")));
    SqliteStore::open(dir.path().join("auditor.db")).expect("open sqlite file")
});

#[test]
fn sqlite_schema_version_is_tracked_and_reopen_keeps_state() {
    use mupib_auditor::store::{ChangeSet, Store};
    use mupib_protocol::payout::VendorPayout;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("auditor.db");
    let vendor = mupib_protocol::Pubkey::new_from_array([9; 32]);
    {
        let mut store = SqliteStore::open(&path).expect("open");
        assert_eq!(store.schema_version().expect("version"), 2);
        store
            .apply(&ChangeSet {
                vendor_credits: vec![VendorPayout { vendor, amount: 77 }],
                ..ChangeSet::default()
            })
            .expect("apply");
    }
    let store = SqliteStore::open(&path).expect("reopen runs no migration twice");
    assert_eq!(store.schema_version().expect("version"), 2);
    assert_eq!(store.vendor(&vendor).expect("vendor").accrued, 77);
}

// The boxed form a service uses to choose its backend at run time runs the same suite.
mupib_auditor::store_conformance_tests!(boxed_sqlite, {
    let store: Box<dyn mupib_auditor::store::Store + Send> =
        Box::new(SqliteStore::open_in_memory().expect("open sqlite"));
    store
});

//! The PostgreSQL store against a real server (`MUPIB_TEST_POSTGRES`; CI starts one): the same
//! conformance suite as the other backends, each test on a fresh schema; migrations (tracked,
//! run once, concurrent opens, a newer database refused); u64 and i128 edges; error mapping;
//! state surviving a reopen. Without the variable every test says it is skipped and passes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mupib_auditor::store::{
    ChangeSet, PostgresOptions, PostgresStore, PostgresTls, Store, StoreError, TestPostgres,
    UserState, UserWrite,
};
use mupib_protocol::payout::VendorPayout;
use mupib_protocol::trust::{TrustModel, TrustScale, TrustState};
use mupib_protocol::Pubkey;

/// The test server, or a skip (`return`) from the calling test.
macro_rules! server {
    ($test:expr) => {
        match TestPostgres::from_env($test) {
            Some(server) => server,
            None => return,
        }
    };
}

mupib_auditor::store_conformance_tests!(
    postgres_schema,
    server!("conformance").fresh_store("conf")
);

// The boxed form a service uses to choose its backend at run time.
mupib_auditor::store_conformance_tests!(boxed_postgres, {
    let store: Box<dyn Store + Send> = Box::new(server!("conformance").fresh_store("boxed"));
    store
});

fn key(n: u8) -> Pubkey {
    Pubkey::new_from_array([n; 32])
}

fn state(user: Pubkey, version: u64) -> UserState {
    UserState {
        user,
        version,
        trust: TrustState::new(TrustModel::Neutral, TrustScale::Initial, 10).unwrap(),
        suspended: false,
        queued_tokens: 0,
        queued_transactions: 0,
        pending_block: None,
        next_seq: 0,
        blocks_valid: 0,
        blocks_invalid: 0,
        misbehaviour_count: 0,
        risk_total: 0,
        tokens_delivered: 0,
        refunded_total: 0,
    }
}

fn execute(server: &TestPostgres, sql: &str) {
    let mut client = postgres::Client::connect(server.url(), postgres::NoTls).unwrap();
    client.batch_execute(sql).unwrap();
}

#[test]
fn schema_version_is_tracked_and_reopen_keeps_state() {
    let server = server!("schema_version_is_tracked_and_reopen_keeps_state");
    let schema = server.unique_schema("reopen");
    let vendor = key(9);
    {
        let mut store = server.open(&schema);
        assert_eq!(store.schema_version().unwrap(), 1);
        assert_eq!(store.schema(), schema);
        store
            .apply(&ChangeSet {
                vendor_credits: vec![VendorPayout { vendor, amount: 77 }],
                ..ChangeSet::default()
            })
            .unwrap();
    }
    let store = server.open(&schema);
    assert_eq!(
        store.schema_version().unwrap(),
        1,
        "no migration runs twice"
    );
    assert_eq!(store.vendor(&vendor).unwrap().accrued, 77);
}

/// Several instances starting at once on a new database: the advisory lock lets one migrate,
/// the others wait and find the schema current; all of them work.
#[test]
fn concurrent_opens_migrate_once() {
    let server = server!("concurrent_opens_migrate_once");
    let schema = server.unique_schema("race");
    let stores: Vec<PostgresStore> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| server.open(&schema)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for store in &stores {
        assert_eq!(store.schema_version().unwrap(), 1);
        assert_eq!(store.next_block_id().unwrap(), 1);
    }
}

#[test]
fn database_from_a_newer_version_is_refused() {
    let server = server!("database_from_a_newer_version_is_refused");
    let schema = server.unique_schema("newer");
    drop(server.open(&schema));
    execute(
        &server,
        &format!("INSERT INTO {schema}.schema_migrations (version) VALUES (99)"),
    );
    match PostgresStore::open(server.url(), &server.options(&schema)) {
        Err(StoreError::SchemaTooNew {
            found: 99,
            supported: 1,
        }) => {}
        other => panic!("a newer database was opened: {other:?}"),
    }
}

/// u64 values above i64::MAX are refused, not wrapped; the i128 risk round-trips exactly at
/// both ends; an overflowing increment in the database is out of range and writes nothing.
#[test]
fn values_are_lossless_or_refused() {
    let server = server!("values_are_lossless_or_refused");
    let mut store = server.fresh_store("range");
    for risk in [i128::MIN + 1, i128::MAX, -1, 0] {
        let user = key(u8::try_from(risk.rem_euclid(200)).unwrap() + 1);
        let mut s = state(user, 0);
        s.risk_total = risk;
        store
            .apply(&ChangeSet {
                user: Some(UserWrite {
                    state: s,
                    expected_version: None,
                }),
                ..ChangeSet::default()
            })
            .unwrap();
        assert_eq!(store.user(&user).unwrap().unwrap().risk_total, risk);
    }
    let mut big = state(key(250), 0);
    big.tokens_delivered = u64::MAX;
    let refused = store.apply(&ChangeSet {
        user: Some(UserWrite {
            state: big,
            expected_version: None,
        }),
        ..ChangeSet::default()
    });
    assert!(
        matches!(refused, Err(StoreError::OutOfRange(_))),
        "{refused:?}"
    );
    assert_eq!(store.user(&key(250)).unwrap(), None);

    let vendor = key(251);
    let almost = u64::try_from(i64::MAX).unwrap() - 5;
    store
        .apply(&ChangeSet {
            vendor_credits: vec![VendorPayout {
                vendor,
                amount: almost,
            }],
            ..ChangeSet::default()
        })
        .unwrap();
    let overflow = store.apply(&ChangeSet {
        vendor_credits: vec![VendorPayout { vendor, amount: 10 }],
        seen_tokens: vec![mupib_protocol::token::TokenId {
            bank: key(1),
            batch_id: 1,
            serial: 1,
        }],
        ..ChangeSet::default()
    });
    assert!(
        matches!(overflow, Err(StoreError::OutOfRange(_))),
        "{overflow:?}"
    );
    assert_eq!(store.vendor(&vendor).unwrap().accrued, almost);
    assert!(!store
        .token_seen(&mupib_protocol::token::TokenId {
            bank: key(1),
            batch_id: 1,
            serial: 1,
        })
        .unwrap());
}

/// Wrong credentials, an unreachable server and a bad schema name fail at open with the reason
/// and never print the password.
#[test]
fn open_failures_say_why() {
    let server = server!("open_failures_say_why");
    let mut config: postgres::Config = server.url().parse().unwrap();
    config.password("not-the-password");
    let user = config.get_user().unwrap().to_owned();
    let host = match &config.get_hosts()[0] {
        postgres::config::Host::Tcp(host) => host.clone(),
        other => panic!("the test server is reached over TCP: {other:?}"),
    };
    let port = config.get_ports()[0];
    let database = config.get_dbname().unwrap().to_owned();
    let wrong = format!("postgres://{user}:not-the-password@{host}:{port}/{database}");
    let error = PostgresStore::open_url(&wrong).unwrap_err();
    assert!(matches!(error, StoreError::Server(_)), "{error:?}");
    assert!(
        error.to_string().contains("28P01") && !error.to_string().contains("not-the-password"),
        "{error}"
    );

    let nobody = PostgresStore::open(
        "postgres://nobody@127.0.0.1:1/none",
        &PostgresOptions {
            connect_timeout: std::time::Duration::from_secs(2),
            ..PostgresOptions::default()
        },
    )
    .unwrap_err();
    assert!(matches!(nobody, StoreError::Server(_)), "{nobody:?}");

    let bad_schema = PostgresStore::open(
        server.url(),
        &PostgresOptions {
            schema: Some("x; DROP TABLE users".into()),
            ..PostgresOptions::default()
        },
    )
    .unwrap_err();
    assert!(
        bad_schema.to_string().contains("plain identifier"),
        "{bad_schema}"
    );

    let require = PostgresStore::open(
        &format!("{}?sslmode=require", server.url()),
        &PostgresOptions::default(),
    )
    .unwrap_err();
    assert!(
        require.to_string().contains("PostgresTls::Required"),
        "{require}"
    );
}

/// The TLS option for real (CI starts the server with a self-signed certificate for 127.0.0.1
/// and names it in `MUPIB_TEST_POSTGRES_CA`): trusting that certificate, the store connects and
/// the server sees every one of its connections encrypted; trusting only the system's roots,
/// the connection is refused instead of falling back to plain text.
#[test]
fn tls_verifies_the_server_and_encrypts_every_connection() {
    let server = server!("tls_verifies_the_server_and_encrypts_every_connection");
    let Ok(ca) = std::env::var("MUPIB_TEST_POSTGRES_CA") else {
        eprintln!("skipped: the test server has no TLS certificate (MUPIB_TEST_POSTGRES_CA)");
        return;
    };
    let application = format!("mupib-tls-{}", std::process::id());
    let mut store = PostgresStore::open(
        server.url(),
        &PostgresOptions {
            tls: PostgresTls::Required {
                root_certificates: Some(ca.into()),
            },
            schema: Some(server.unique_schema("tls")),
            application_name: application.clone(),
            ..PostgresOptions::default()
        },
    )
    .unwrap();
    store
        .apply(&ChangeSet {
            vendor_credits: vec![VendorPayout {
                vendor: key(3),
                amount: 5,
            }],
            ..ChangeSet::default()
        })
        .unwrap();
    assert_eq!(store.vendor(&key(3)).unwrap().accrued, 5);
    let mut observer = postgres::Client::connect(server.url(), postgres::NoTls).unwrap();
    let row = observer
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
             JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = $1",
            &[&application],
        )
        .unwrap();
    let (connections, encrypted): (i64, i64) = (row.get(0), row.get(1));
    assert!(connections >= 1, "the store's pooled connection is open");
    assert_eq!(
        encrypted, connections,
        "every connection of the store is TLS"
    );

    let untrusted = PostgresStore::open(
        server.url(),
        &PostgresOptions {
            tls: PostgresTls::Required {
                root_certificates: None,
            },
            schema: Some(server.unique_schema("tls")),
            ..PostgresOptions::default()
        },
    );
    match untrusted {
        Err(StoreError::Server(message)) => {
            assert!(
                message.contains("certificate") || message.contains("root"),
                "{message}"
            )
        }
        other => panic!("a self-signed server certificate was accepted: {other:?}"),
    }
}

/// The service calls the engine from `spawn_blocking`: the synchronous client (which runs its
/// own small runtime) works there, opening the store included.
#[test]
fn usable_from_tokio_blocking_threads() {
    let server = server!("usable_from_tokio_blocking_threads");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let next = runtime.block_on(async move {
        tokio::task::spawn_blocking(move || {
            let mut store = server.fresh_store("tokio");
            store
                .apply(&ChangeSet {
                    block_id_claim: Some(1),
                    ..ChangeSet::default()
                })
                .unwrap();
            store.next_block_id().unwrap()
        })
        .await
        .unwrap()
    });
    assert_eq!(next, 2);
}

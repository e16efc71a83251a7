//! A PostgreSQL server for tests (feature `testkit`): the server named by the
//! `MUPIB_TEST_POSTGRES` URL (CI starts one), and a fresh schema per store so that tests sharing
//! the database never see each other's rows. Without the variable a test says it is skipped
//! and passes.
#![allow(clippy::expect_used, clippy::panic, missing_docs)]

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

use super::{PostgresOptions, PostgresStore};

/// The environment variable holding the test server's URL.
pub const TEST_POSTGRES_ENV: &str = "MUPIB_TEST_POSTGRES";

/// The test server, if `MUPIB_TEST_POSTGRES` is set.
#[derive(Debug, Clone)]
pub struct TestPostgres {
    url: String,
}

impl TestPostgres {
    /// The server, or `None` after saying (once per process, on the terminal even when the test
    /// harness captures output) that `test` is skipped.
    pub fn from_env(test: &str) -> Option<TestPostgres> {
        match std::env::var(TEST_POSTGRES_ENV) {
            Ok(url) if !url.trim().is_empty() => Some(TestPostgres { url }),
            _ => {
                static SAID: Once = Once::new();
                SAID.call_once(|| {
                    let _ = writeln!(
                        std::io::stderr(),
                        "skipped: {test} and the other PostgreSQL store tests: set \
                         {TEST_POSTGRES_ENV}=postgres://… (CI starts a server)"
                    );
                });
                None
            }
        }
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A schema name no other store of any test process uses (`t_<pid>_<n>_<nanos>`).
    pub fn unique_schema(&self, label: &str) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let label: String = label
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(20)
            .collect::<String>()
            .to_ascii_lowercase();
        format!(
            "t_{label}_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Options for a store in `schema` (a small pool: tests open many stores).
    pub fn options(&self, schema: &str) -> PostgresOptions {
        PostgresOptions {
            pool_size: 4,
            schema: Some(schema.to_owned()),
            ..PostgresOptions::default()
        }
    }

    /// Opens the store in `schema` (created and migrated if new).
    pub fn open(&self, schema: &str) -> PostgresStore {
        PostgresStore::open(&self.url, &self.options(schema))
            .unwrap_or_else(|e| panic!("open the PostgreSQL store in schema {schema}: {e}"))
    }

    /// A store on a fresh, empty schema.
    pub fn fresh_store(&self, label: &str) -> PostgresStore {
        self.open(&self.unique_schema(label))
    }
}

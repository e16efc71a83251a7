//! The PostgreSQL store's schema: the numbered migrations from `migrations/postgres/` (append
//! only) and [`migrate`], which several instances may run at once. It holds a session-level
//! advisory lock (one per schema) while it creates the schema, reads the version in
//! `schema_migrations`, refuses a database written by a newer version and applies each missing
//! migration in its own transaction. The lock dies with the session, so an instance killed
//! mid-migration blocks nobody, and its half-applied migration was rolled back.

use postgres::Client;

use crate::store::StoreError;

/// The numbered migrations, in order. Append only: never edit a released migration.
pub(super) const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    include_str!("../../../../../migrations/postgres/0001_init.sql"),
)];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 1;

/// The advisory lock's first key: "µPIB migrations" (the second is the schema's hash).
const MIGRATION_LOCK_CLASS: i32 = 0x6d75_7069; // "mupi"

/// Applies the migrations above the database's version in `schema` (the connection's
/// `search_path` points there), under the advisory lock.
pub(super) fn migrate(client: &mut Client, schema: &str) -> Result<(), StoreError> {
    // This connection only migrates: waiting for another instance's migration, or a long one,
    // must not hit the store's statement timeout.
    client.batch_execute("SET statement_timeout = 0")?;
    client.execute(
        "SELECT pg_advisory_lock($1, hashtext($2))",
        &[&MIGRATION_LOCK_CLASS, &schema],
    )?;
    let result = migrate_locked(client, schema);
    // Unlocking can only fail with the connection, which releases the lock anyway.
    let _ = client.execute(
        "SELECT pg_advisory_unlock($1, hashtext($2))",
        &[&MIGRATION_LOCK_CLASS, &schema],
    );
    result
}

fn migrate_locked(client: &mut Client, schema: &str) -> Result<(), StoreError> {
    // `schema` is checked to be a plain identifier when the options are read. An existing
    // schema is not created again: that would need the CREATE privilege on the database,
    // which a deployment's role may rightly lack.
    let exists = client
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])?
        .is_some();
    if !exists {
        client.batch_execute(&format!("CREATE SCHEMA {schema}"))?;
    }
    let tracked = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&format!("{schema}.schema_migrations")],
        )?
        .try_get::<_, bool>(0)?;
    if !tracked {
        client.batch_execute(&format!(
            "CREATE TABLE {schema}.schema_migrations ( \
                 version    BIGINT      PRIMARY KEY, \
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        ))?;
    }
    let current = version(client)?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    for (version, sql) in MIGRATIONS {
        if *version <= current {
            continue;
        }
        let mut tx = client.transaction()?;
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[version],
        )?;
        tx.commit()?;
        tracing::info!(schema, version, "applied PostgreSQL store migration");
    }
    Ok(())
}

/// The highest applied migration (0 for an empty schema).
pub(super) fn version(client: &mut Client) -> Result<i64, StoreError> {
    Ok(client
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::bigint FROM schema_migrations",
            &[],
        )?
        .try_get(0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order() {
        for (index, (version, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version, i64::try_from(index).unwrap() + 1);
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.0), Some(SCHEMA_VERSION));
    }
}

//! The service's own durable records, beside the engine's store (`service.sqlite` in the data
//! directory):
//!
//! - `answers`: the signed answer last given for each transaction id (the first transaction with
//!   an id; a double-selling replay never overwrites it). Answers the engine's records cannot
//!   rebuild (the offending token of an intake rejection) live only here; every other answer is
//!   re-derived from the engine's store when missing, so a crash between the engine's commit and
//!   this table loses nothing.
//! - `token_trace`: which accepted transactions carried each token (for token traces).
//!
//! Settlement keeps its state in the engine's store (`mupib_auditor::settlement`); a
//! `settlements` table left by an older version of this journal is no longer read.
//!
//! Durability: the journal is written after the engine's commit, one transaction per pipeline
//! group, with `synchronous = NORMAL` (WAL): a process crash loses nothing committed, a power
//! loss may lose the last groups' rows. Nothing is lost with them that matters: every answer is
//! re-derived from the engine's store (which stays `synchronous = FULL`), only the offending
//! token named in an intake rejection would be missing from a re-derived answer, and the token
//! index misses those transactions (their tokens stay in the store's seen set).

use std::path::Path;

use mupib_protocol::response::AuditorResponse;
use mupib_protocol::token::TokenId;
use mupib_protocol::transaction::TransactionId;
use rusqlite::{params, Connection, OptionalExtension};

/// The service journal (one SQLite connection).
#[derive(Debug)]
pub struct Journal {
    conn: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS answers (
    transaction_id TEXT PRIMARY KEY,
    is_final INTEGER NOT NULL,
    response TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS token_trace (
    token TEXT NOT NULL,
    transaction_id TEXT NOT NULL,
    PRIMARY KEY (token, transaction_id)
);
";

impl Journal {
    /// Opens (creating) the journal at `path`.
    ///
    /// # Errors
    /// SQLite errors (unwritable file, corrupt database).
    pub fn open(path: &Path) -> Result<Self, rusqlite::Error> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Journal { conn })
    }

    /// A journal in memory (tests, ephemeral services).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn in_memory() -> Result<Self, rusqlite::Error> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(SCHEMA)?;
        Ok(Journal { conn })
    }

    /// The stored answer for `id`: (response, final).
    ///
    /// # Errors
    /// SQLite errors; an unreadable stored response is reported as a conversion failure.
    pub fn answer(
        &self,
        id: &TransactionId,
    ) -> Result<Option<(AuditorResponse, bool)>, rusqlite::Error> {
        let row: Option<(String, bool)> = self
            .conn
            .query_row(
                "SELECT response, is_final FROM answers WHERE transaction_id = ?1",
                params![id.to_hex()],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        match row {
            None => Ok(None),
            Some((text, is_final)) => {
                let response = serde_json::from_str(&text).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        0,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })?;
                Ok(Some((response, is_final)))
            }
        }
    }

    /// Records the first answer for a transaction id (ignored if one exists: a replay's
    /// rejection never replaces the original's answer).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn record_first(
        &self,
        response: &AuditorResponse,
        is_final: bool,
    ) -> Result<(), rusqlite::Error> {
        self.conn.execute(
            "INSERT OR IGNORE INTO answers (transaction_id, is_final, response) VALUES (?1, ?2, ?3)",
            params![response.transaction_id.to_hex(), is_final, to_json(response)?],
        )?;
        Ok(())
    }

    /// Replaces a non-final answer by a newer one (a final answer is never replaced).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn record_update(
        &self,
        response: &AuditorResponse,
        is_final: bool,
    ) -> Result<(), rusqlite::Error> {
        self.conn.execute(
            "INSERT INTO answers (transaction_id, is_final, response) VALUES (?1, ?2, ?3)
             ON CONFLICT(transaction_id) DO UPDATE SET is_final = excluded.is_final,
                 response = excluded.response WHERE answers.is_final = 0",
            params![
                response.transaction_id.to_hex(),
                is_final,
                to_json(response)?
            ],
        )?;
        Ok(())
    }

    /// Records that `transaction` carried `tokens`.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn record_tokens(
        &mut self,
        transaction: &TransactionId,
        tokens: &[TokenId],
    ) -> Result<(), rusqlite::Error> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare(
                "INSERT OR IGNORE INTO token_trace (token, transaction_id) VALUES (?1, ?2)",
            )?;
            for token in tokens {
                insert.execute(params![token.to_string(), transaction.to_hex()])?;
            }
        }
        tx.commit()
    }

    /// One group's records in one transaction: the first answer of each transaction (as
    /// [`Self::record_first`]) and the tokens of the accepted ones (as [`Self::record_tokens`]).
    ///
    /// # Errors
    /// SQLite errors (nothing of the group is written).
    pub fn record_group(
        &mut self,
        answers: &[(&AuditorResponse, bool)],
        tokens: &[(TransactionId, Vec<TokenId>)],
    ) -> Result<(), rusqlite::Error> {
        let tx = self.conn.transaction()?;
        {
            let mut answer = tx.prepare_cached(
                "INSERT OR IGNORE INTO answers (transaction_id, is_final, response) VALUES (?1, ?2, ?3)",
            )?;
            for (response, is_final) in answers {
                answer.execute(params![
                    response.transaction_id.to_hex(),
                    is_final,
                    to_json(response)?
                ])?;
            }
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO token_trace (token, transaction_id) VALUES (?1, ?2)",
            )?;
            for (transaction, carried) in tokens {
                let id = transaction.to_hex();
                for token in carried {
                    insert.execute(params![token.to_string(), id])?;
                }
            }
        }
        tx.commit()
    }

    /// Transactions that carried `token`, as hex ids.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn token_transactions(&self, token: &TokenId) -> Result<Vec<String>, rusqlite::Error> {
        let mut query = self
            .conn
            .prepare("SELECT transaction_id FROM token_trace WHERE token = ?1 ORDER BY rowid")?;
        let rows = query.query_map(params![token.to_string()], |row| row.get(0))?;
        rows.collect()
    }
}

fn to_json(response: &AuditorResponse) -> Result<String, rusqlite::Error> {
    serde_json::to_string(response)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

//! Settlement statements of the PostgreSQL store: reading a batch and a vendor's account,
//! reserving a batch in flight, recording its signed transaction, completing or aborting it —
//! each in one transaction that locks what it decides on (the batch row, then the vendors in key
//! order), so concurrent settlers can neither reserve a balance twice nor move a batch twice.
//! The protocol is in the `store` module documentation.

use postgres::GenericClient;

use super::pool::Sql;
use super::rows::{pubkey, to_i64, to_u64};
use super::PostgresStore;
use crate::store::model::*;
use crate::store::StoreError;
use mupib_protocol::payout::{SignedPayout, VendorPayout};
use mupib_protocol::Pubkey;

impl PostgresStore {
    /// A batch by key; `lock` takes its row lock (inside a write transaction).
    pub(super) fn settlement_in<C: GenericClient>(
        sql: &mut Sql<'_, C>,
        key: &str,
        lock: bool,
    ) -> Result<Option<SettlementBatch>, StoreError> {
        let head = if lock {
            "SELECT status, reference, seq, signature, signed_tx FROM settlements WHERE key = $1 FOR UPDATE"
        } else {
            "SELECT status, reference, seq, signature, signed_tx FROM settlements WHERE key = $1"
        };
        let Some(row) = sql.query_opt(head, &[&key])? else {
            return Ok(None);
        };
        let status: i16 = row.try_get(0)?;
        let reference: Option<String> = row.try_get(1)?;
        let seq: i64 = row.try_get(2)?;
        let signature: Option<String> = row.try_get(3)?;
        let transaction: Option<Vec<u8>> = row.try_get(4)?;
        let signed = match (signature, transaction) {
            (Some(signature), Some(transaction)) => Some(SignedPayout {
                signature,
                transaction,
            }),
            _ => None,
        };
        let status = match status {
            0 => SettlementStatus::InFlight,
            1 => SettlementStatus::Completed,
            2 => SettlementStatus::Aborted,
            other => return Err(StoreError::OutOfRange(format!("settlement status {other}"))),
        };
        let items = sql
            .query(
                "SELECT vendor, amount FROM settlement_items WHERE key = $1 ORDER BY vendor",
                &[&key],
            )?
            .iter()
            .map(|row| {
                Ok(VendorPayout {
                    vendor: pubkey(row.try_get(0)?)?,
                    amount: to_u64(row.try_get(1)?, "settlement amount")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(SettlementBatch {
            key: key.to_owned(),
            seq: to_u64(seq, "settlement seq")?,
            status,
            items,
            signed,
            reference,
        }))
    }

    /// A vendor's account (zero if unknown); `lock` takes its row lock.
    pub(super) fn vendor_in<C: GenericClient>(
        sql: &mut Sql<'_, C>,
        vendor: &Pubkey,
        lock: bool,
    ) -> Result<VendorAccount, StoreError> {
        let statement = if lock {
            "SELECT accrued, settled, in_flight, double_sellings FROM vendors WHERE vendor = $1 FOR UPDATE"
        } else {
            "SELECT accrued, settled, in_flight, double_sellings FROM vendors WHERE vendor = $1"
        };
        let key = vendor.to_bytes();
        Ok(match sql.query_opt(statement, &[&&key[..]])? {
            None => VendorAccount::default(),
            Some(row) => VendorAccount {
                accrued: to_u64(row.try_get(0)?, "accrued")?,
                settled: to_u64(row.try_get(1)?, "settled")?,
                in_flight: to_u64(row.try_get(2)?, "in flight")?,
                double_sellings: to_u64(row.try_get(3)?, "double sellings")?,
            },
        })
    }

    /// Moves a batch from in flight to completed (`reference` given) or aborted.
    pub(super) fn close_settlement(
        &mut self,
        key: &str,
        reference: Option<&str>,
    ) -> Result<SettlementBatch, StoreError> {
        let completing = reference.is_some();
        self.write(|sql, hook| {
            let batch = Self::settlement_in(sql, key, true)?
                .ok_or_else(|| StoreError::NotFound(format!("settlement {key}")))?;
            if !batch.needs_closing(completing)? {
                return Ok(batch);
            }
            for item in &batch.items {
                let amount = to_i64(item.amount, "settlement amount")?;
                let statement = if completing {
                    "UPDATE vendors SET in_flight = in_flight - $2, settled = settled + $2 WHERE vendor = $1"
                } else {
                    "UPDATE vendors SET in_flight = in_flight - $2 WHERE vendor = $1"
                };
                sql.execute(statement, &[&&item.vendor.to_bytes()[..], &amount])?;
            }
            Self::step(hook, "settlement:vendors");
            sql.execute(
                "UPDATE settlements SET status = $2, reference = $3 WHERE key = $1",
                &[&key, &if completing { 1i16 } else { 2i16 }, &reference],
            )?;
            let done = Self::settlement_in(sql, key, false)?
                .ok_or_else(|| StoreError::NotFound(format!("settlement {key}")))?;
            Self::step(hook, "commit");
            Ok(done)
        })
    }

    /// Reserves a batch in flight under `key` (the body of
    /// [`Store::begin_settlement`](crate::store::Store::begin_settlement)). Two settlers that
    /// race on one key: the second insert fails on the key ([`StoreError::Conflict`]) and its
    /// re-run finds the first one's batch.
    pub(super) fn open_settlement(
        &mut self,
        key: &str,
        seq: u64,
        items: &[VendorPayout],
    ) -> Result<SettlementBatch, StoreError> {
        let items = crate::store::normalize_items(key, items)?;
        self.write(|sql, hook| {
            // Vendors first, in key order (items are sorted), so every settler locks in the same
            // order; a settler that waited here then sees what the other one committed.
            let mut accounts = Vec::with_capacity(items.len());
            for item in &items {
                accounts.push(Self::vendor_in(sql, &item.vendor, true)?);
            }
            if let Some(existing) = Self::settlement_in(sql, key, true)? {
                return crate::store::same_batch(&existing, seq, &items);
            }
            for (item, account) in items.iter().zip(&accounts) {
                crate::store::check_settleable(key, item, account)?;
            }
            sql.execute(
                "INSERT INTO settlements (key, status, reference, seq) VALUES ($1, 0, NULL, $2)",
                &[&key, &to_i64(seq, "settlement seq")?],
            )
            .map_err(|e| {
                super::rows::conflict_or(e, || format!("settlement {key} begun concurrently"))
            })?;
            for item in &items {
                let amount = to_i64(item.amount, "settlement amount")?;
                let vendor = item.vendor.to_bytes();
                sql.execute(
                    "INSERT INTO settlement_items (key, vendor, amount) VALUES ($1, $2, $3)",
                    &[&key, &&vendor[..], &amount],
                )?;
                sql.execute(
                    "UPDATE vendors SET in_flight = in_flight + $2 WHERE vendor = $1",
                    &[&&vendor[..], &amount],
                )?;
            }
            Self::step(hook, "settlement:begin");
            let batch = Self::settlement_in(sql, key, false)?
                .ok_or_else(|| StoreError::NotFound(format!("settlement {key}")))?;
            Self::step(hook, "commit");
            Ok(batch)
        })
    }

    /// Stores the signed transaction of an in-flight batch (the body of
    /// [`Store::record_signed_settlement`](crate::store::Store::record_signed_settlement)).
    pub(super) fn sign_settlement(
        &mut self,
        key: &str,
        signed: &SignedPayout,
    ) -> Result<SettlementBatch, StoreError> {
        self.write(|sql, hook| {
            let batch = Self::settlement_in(sql, key, true)?
                .ok_or_else(|| StoreError::NotFound(format!("settlement {key}")))?;
            if batch.status != SettlementStatus::InFlight {
                return Err(StoreError::Settlement {
                    key: key.to_owned(),
                    reason: format!("is {:?}, not in flight: nothing to sign", batch.status),
                });
            }
            sql.execute(
                "UPDATE settlements SET signature = $2, signed_tx = $3 WHERE key = $1",
                &[&key, &signed.signature, &signed.transaction],
            )?;
            Self::step(hook, "settlement:signed");
            let batch = Self::settlement_in(sql, key, false)?
                .ok_or_else(|| StoreError::NotFound(format!("settlement {key}")))?;
            Self::step(hook, "commit");
            Ok(batch)
        })
    }

    /// Settlement batches by `condition` (an SQL expression over `settlements`, from this
    /// module), by `order`, read in one snapshot.
    pub(super) fn settlements_where(
        &self,
        condition: &str,
        order: &str,
        limit: usize,
    ) -> Result<Vec<SettlementBatch>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.snapshot(|sql| {
            let keys = sql
                .query(
                    &format!(
                        "SELECT key FROM settlements WHERE {condition} ORDER BY {order} LIMIT $1"
                    ),
                    &[&limit],
                )?
                .iter()
                .map(|row| row.try_get::<_, String>(0))
                .collect::<Result<Vec<_>, _>>()?;
            let mut batches = Vec::with_capacity(keys.len());
            for key in keys {
                if let Some(batch) = Self::settlement_in(sql, &key, false)? {
                    batches.push(batch);
                }
            }
            Ok(batches)
        })
    }
}

//! Settlement statements of the SQLite store: reading a batch and a vendor's account, reserving
//! a batch in flight, and completing or aborting it, each in one `BEGIN IMMEDIATE` transaction
//! (the protocol is in the `store` module documentation).

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::rows::{pubkey, to_i64, to_u64};
use super::SqliteStore;
use crate::store::model::*;
use crate::store::StoreError;
use mupib_protocol::payout::{SignedPayout, VendorPayout};
use mupib_protocol::Pubkey;

impl SqliteStore {
    pub(super) fn settlement_in(
        conn: &Connection,
        key: &str,
    ) -> Result<Option<SettlementBatch>, StoreError> {
        let head: Option<SettlementRow> = conn
            .query_row(
                "SELECT status, reference, seq, signature, signed_tx FROM settlements WHERE key = ?1",
                params![key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        let Some((status, reference, seq, signature, signed_tx)) = head else {
            return Ok(None);
        };
        let signed = match (signature, signed_tx) {
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
        let mut statement = conn.prepare_cached(
            "SELECT vendor, amount FROM settlement_items WHERE key = ?1 ORDER BY vendor",
        )?;
        let raw: Vec<(Vec<u8>, i64)> = statement
            .query_map(params![key], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut items = Vec::with_capacity(raw.len());
        for (vendor, amount) in raw {
            items.push(VendorPayout {
                vendor: pubkey(vendor)?,
                amount: to_u64(amount, "settlement amount")?,
            });
        }
        items.sort_by_key(|item| item.vendor);
        Ok(Some(SettlementBatch {
            key: key.to_owned(),
            seq: to_u64(seq, "settlement seq")?,
            status,
            items,
            signed,
            reference,
        }))
    }

    pub(super) fn vendor_in(
        conn: &Connection,
        vendor: &Pubkey,
    ) -> Result<VendorAccount, StoreError> {
        let row: Option<(i64, i64, i64, i64)> = conn
            .query_row(
                "SELECT accrued, settled, in_flight, double_sellings FROM vendors WHERE vendor = ?1",
                params![vendor.to_bytes()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        Ok(match row {
            None => VendorAccount::default(),
            Some((accrued, settled, in_flight, flags)) => VendorAccount {
                accrued: to_u64(accrued, "accrued")?,
                settled: to_u64(settled, "settled")?,
                in_flight: to_u64(in_flight, "in flight")?,
                double_sellings: to_u64(flags, "double sellings")?,
            },
        })
    }

    /// Moves a batch from in-flight to `status` (1 completed, 2 aborted) in one transaction.
    pub(super) fn close_settlement(
        &mut self,
        key: &str,
        reference: Option<&str>,
    ) -> Result<SettlementBatch, StoreError> {
        let completing = reference.is_some();
        let mut hook = self.hook.take();
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let batch = Self::settlement_in(&tx, key)?
                .ok_or_else(|| StoreError::NotFound(format!("settlement {key}")))?;
            if !batch.needs_closing(completing)? {
                return Ok(batch);
            }
            for item in &batch.items {
                let amount = to_i64(item.amount, "settlement amount")?;
                let sql = if completing {
                    "UPDATE vendors SET in_flight = in_flight - ?2, settled = settled + ?2 WHERE vendor = ?1"
                } else {
                    "UPDATE vendors SET in_flight = in_flight - ?2 WHERE vendor = ?1"
                };
                tx.execute(sql, params![item.vendor.to_bytes(), amount])?;
            }
            Self::step(&mut hook, "settlement:vendors");
            tx.execute(
                "UPDATE settlements SET status = ?2, reference = ?3 WHERE key = ?1",
                params![key, if completing { 1 } else { 2 }, reference],
            )?;
            let done = Self::settlement_in(&tx, key)?
                .ok_or_else(|| StoreError::NotFound(format!("settlement {key}")))?;
            Self::step(&mut hook, "commit");
            tx.commit()?;
            Ok(done)
        })();
        self.hook = hook;
        result
    }

    /// Reserves a batch in flight under `key` in one transaction (the body of
    /// [`Store::begin_settlement`](crate::store::Store::begin_settlement)).
    pub(super) fn open_settlement(
        &mut self,
        key: &str,
        seq: u64,
        items: &[VendorPayout],
    ) -> Result<SettlementBatch, StoreError> {
        let items = crate::store::normalize_items(key, items)?;
        let mut hook = self.hook.take();
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(existing) = Self::settlement_in(&tx, key)? {
                return crate::store::same_batch(&existing, seq, &items);
            }
            for item in &items {
                let account = Self::vendor_in(&tx, &item.vendor)?;
                crate::store::check_settleable(key, item, &account)?;
            }
            tx.execute(
                "INSERT INTO settlements (key, status, reference, seq) VALUES (?1, 0, NULL, ?2)",
                params![key, to_i64(seq, "settlement seq")?],
            )?;
            for item in &items {
                let amount = to_i64(item.amount, "settlement amount")?;
                tx.execute(
                    "INSERT INTO settlement_items (key, vendor, amount) VALUES (?1, ?2, ?3)",
                    params![key, item.vendor.to_bytes(), amount],
                )?;
                tx.execute(
                    "UPDATE vendors SET in_flight = in_flight + ?2 WHERE vendor = ?1",
                    params![item.vendor.to_bytes(), amount],
                )?;
            }
            Self::step(&mut hook, "settlement:begin");
            let batch = Self::settlement_in(&tx, key)?
                .ok_or_else(|| StoreError::NotFound(format!("settlement {key}")))?;
            Self::step(&mut hook, "commit");
            tx.commit()?;
            Ok(batch)
        })();
        self.hook = hook;
        result
    }

    /// Stores the signed transaction of an in-flight batch (the body of
    /// [`Store::record_signed_settlement`](crate::store::Store::record_signed_settlement)).
    pub(super) fn sign_settlement(
        &mut self,
        key: &str,
        signed: &SignedPayout,
    ) -> Result<SettlementBatch, StoreError> {
        let mut hook = self.hook.take();
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let batch = Self::settlement_in(&tx, key)?
                .ok_or_else(|| StoreError::NotFound(format!("settlement {key}")))?;
            if batch.status != SettlementStatus::InFlight {
                return Err(StoreError::Settlement {
                    key: key.to_owned(),
                    reason: format!("is {:?}, not in flight: nothing to sign", batch.status),
                });
            }
            tx.execute(
                "UPDATE settlements SET signature = ?2, signed_tx = ?3 WHERE key = ?1",
                params![key, signed.signature, signed.transaction],
            )?;
            Self::step(&mut hook, "settlement:signed");
            let batch = Self::settlement_in(&tx, key)?
                .ok_or_else(|| StoreError::NotFound(format!("settlement {key}")))?;
            Self::step(&mut hook, "commit");
            tx.commit()?;
            Ok(batch)
        })();
        self.hook = hook;
        result
    }

    /// Settlement batches by `condition` (an SQL expression over `settlements`), by `order`.
    pub(super) fn settlements_where(
        &self,
        condition: &str,
        order: &str,
        limit: usize,
    ) -> Result<Vec<SettlementBatch>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut statement = self.conn.prepare_cached(&format!(
            "SELECT key FROM settlements WHERE {condition} ORDER BY {order} LIMIT ?1"
        ))?;
        let keys: Vec<String> = statement
            .query_map(params![limit], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut batches = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(batch) = Self::settlement_in(&self.conn, &key)? {
                batches.push(batch);
            }
        }
        Ok(batches)
    }
}

/// Raw settlement row: status, reference, seq, signature, signed transaction.
type SettlementRow = (i64, Option<String>, i64, Option<String>, Option<Vec<u8>>);

//! In-memory [`Store`]: hash maps, for the simulation and fast tests. Not durable.
//!
//! [`Store::apply`] validates the whole change set first (compare-and-swap, conflicts, overflow)
//! and only then mutates, so a failed apply changes nothing, as with a database transaction.

use mupib_protocol::payout::{SignedPayout, VendorPayout};
use std::collections::{BTreeMap, HashMap, HashSet};

use super::model::*;
use super::{Store, StoreError};
use mupib_protocol::token::TokenId;
use mupib_protocol::transaction::TransactionId;
use mupib_protocol::Pubkey;

type TxKey = (Pubkey, u64);

/// Hash-map backed store. `prune_decided` (see [`MemoryStore::pruning`]) drops transactions and
/// blocks once decided, so that long simulations keep a flat memory footprint.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    users: HashMap<Pubkey, UserState>,
    transactions: HashMap<TxKey, TransactionRecord>,
    by_id: HashMap<TransactionId, TxKey>,
    queues: HashMap<Pubkey, Vec<u64>>,
    seen: HashSet<TokenId>,
    blocks: BTreeMap<u64, (BlockRecord, Vec<TxKey>)>,
    next_block_id: u64,
    vendors: HashMap<Pubkey, VendorAccount>,
    refunds: HashMap<Pubkey, u64>,
    misbehaviour: Vec<MisbehaviourRecord>,
    settlements: HashMap<String, SettlementBatch>,
    prune_decided: bool,
}

impl MemoryStore {
    /// An empty store keeping full history.
    pub fn new() -> Self {
        MemoryStore {
            next_block_id: 1,
            ..Default::default()
        }
    }

    /// An empty store that forgets transactions once decided: blocks (and their transactions)
    /// when their decisions are applied, rejected transactions at once. The simulation's mode:
    /// user state, vendor balances, refunds and misbehaviour records are kept, but `block()` and
    /// `transaction_by_id()` no longer find decided history, so outside paper mode a replayed
    /// decided transaction would not be recognised. Memory stays flat over long runs.
    pub fn pruning() -> Self {
        MemoryStore {
            prune_decided: true,
            ..MemoryStore::new()
        }
    }

    fn validate(&self, change: &ChangeSet) -> Result<(), StoreError> {
        if let Some(write) = &change.user {
            let current = self.users.get(&write.state.user).map(|u| u.version);
            if current != write.expected_version {
                return Err(StoreError::Conflict(format!(
                    "user {} version {:?}, expected {:?}",
                    write.state.user, current, write.expected_version
                )));
            }
        }
        for tx in &change.new_transactions {
            if self.transactions.contains_key(&(tx.user, tx.seq)) {
                return Err(StoreError::Conflict(format!(
                    "transaction {}#{} exists",
                    tx.user, tx.seq
                )));
            }
        }
        for update in &change.transaction_updates {
            let key = (update.user, update.seq);
            let known = self.transactions.contains_key(&key)
                || change
                    .new_transactions
                    .iter()
                    .any(|t| (t.user, t.seq) == key);
            if !known {
                return Err(StoreError::NotFound(format!(
                    "transaction {}#{}",
                    update.user, update.seq
                )));
            }
        }
        let mut fresh = HashSet::with_capacity(change.seen_tokens.len());
        for token in &change.seen_tokens {
            if self.seen.contains(token) || !fresh.insert(*token) {
                return Err(StoreError::Conflict(format!(
                    "token {token:?} already seen"
                )));
            }
        }
        if let Some(claim) = change.block_id_claim {
            if claim != self.next_block_id {
                return Err(StoreError::Conflict(format!(
                    "block id {claim} claimed, next is {}",
                    self.next_block_id
                )));
            }
        }
        if let Some(block) = &change.new_block {
            if self.blocks.contains_key(&block.block_id) {
                return Err(StoreError::Conflict(format!(
                    "block {} exists",
                    block.block_id
                )));
            }
        }
        if let Some((block_id, _)) = &change.block_decided {
            match self.blocks.get(block_id) {
                None => return Err(StoreError::NotFound(format!("block {block_id}"))),
                Some((record, _)) if record.outcome.is_some() => {
                    return Err(StoreError::Conflict(format!(
                        "block {block_id} already decided"
                    )))
                }
                Some(_) => {}
            }
        }
        let mut credits: HashMap<Pubkey, u64> = HashMap::new();
        for credit in &change.vendor_credits {
            let base = credits
                .get(&credit.vendor)
                .copied()
                .unwrap_or_else(|| self.vendors.get(&credit.vendor).map_or(0, |v| v.accrued));
            let next = base
                .checked_add(credit.amount)
                .filter(|v| i64::try_from(*v).is_ok())
                .ok_or_else(|| {
                    StoreError::OutOfRange(format!("vendor {} accrual", credit.vendor))
                })?;
            credits.insert(credit.vendor, next);
        }
        let mut refunds: HashMap<Pubkey, u64> = HashMap::new();
        for (user, amount) in &change.user_refunds {
            let base = refunds
                .get(user)
                .copied()
                .unwrap_or_else(|| self.refunds.get(user).copied().unwrap_or(0));
            let next = base
                .checked_add(*amount)
                .filter(|v| i64::try_from(*v).is_ok())
                .ok_or_else(|| StoreError::OutOfRange(format!("user {user} refund")))?;
            refunds.insert(*user, next);
        }
        Ok(())
    }

    fn prune_block(&mut self, block_id: u64) {
        if let Some((_, members)) = self.blocks.remove(&block_id) {
            for key in members {
                if let Some(tx) = self.transactions.remove(&key) {
                    if self.by_id.get(&tx.id) == Some(&key) {
                        self.by_id.remove(&tx.id);
                    }
                }
            }
        }
    }
}

impl Store for MemoryStore {
    fn user(&self, user: &Pubkey) -> Result<Option<UserState>, StoreError> {
        Ok(self.users.get(user).copied())
    }

    fn token_seen(&self, token: &TokenId) -> Result<bool, StoreError> {
        Ok(self.seen.contains(token))
    }

    fn transaction_by_id(
        &self,
        id: &TransactionId,
    ) -> Result<Option<TransactionRecord>, StoreError> {
        Ok(self
            .by_id
            .get(id)
            .and_then(|key| self.transactions.get(key))
            .cloned())
    }

    fn queue(&self, user: &Pubkey) -> Result<Vec<TransactionRecord>, StoreError> {
        let Some(seqs) = self.queues.get(user) else {
            return Ok(Vec::new());
        };
        seqs.iter()
            .map(|seq| {
                self.transactions
                    .get(&(*user, *seq))
                    .cloned()
                    .ok_or_else(|| StoreError::NotFound(format!("queued transaction {user}#{seq}")))
            })
            .collect()
    }

    fn block(
        &self,
        block_id: u64,
    ) -> Result<Option<(BlockRecord, Vec<TransactionRecord>)>, StoreError> {
        let Some((record, members)) = self.blocks.get(&block_id) else {
            return Ok(None);
        };
        let mut members = members.clone();
        members.sort_unstable_by_key(|key| key.1);
        let txs = members
            .iter()
            .map(|key| {
                self.transactions
                    .get(key)
                    .cloned()
                    .ok_or_else(|| StoreError::NotFound(format!("block {block_id} member")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some((record.clone(), txs)))
    }

    fn pending_blocks(&self) -> Result<Vec<BlockRecord>, StoreError> {
        Ok(self
            .blocks
            .values()
            .filter(|(b, _)| b.outcome.is_none())
            .map(|(b, _)| b.clone())
            .collect())
    }

    fn next_block_id(&self) -> Result<u64, StoreError> {
        Ok(self.next_block_id)
    }

    fn apply(&mut self, change: &ChangeSet) -> Result<(), StoreError> {
        self.validate(change)?;
        // Validation passed: every step below is infallible.
        if let Some(write) = &change.user {
            self.users.insert(write.state.user, write.state);
        }
        if let Some(block) = &change.new_block {
            self.blocks
                .insert(block.block_id, (block.clone(), Vec::new()));
        }
        for tx in &change.new_transactions {
            if self.prune_decided && matches!(tx.status, TransactionStatus::Rejected(_)) {
                continue; // decided at once: nothing to keep in pruning mode
            }
            let key = (tx.user, tx.seq);
            self.by_id.entry(tx.id).or_insert(key);
            if let Some(block_id) = tx.block_id {
                if let Some((_, members)) = self.blocks.get_mut(&block_id) {
                    members.push(key);
                }
            }
            if matches!(
                tx.status,
                TransactionStatus::Delivered | TransactionStatus::Held
            ) && tx.block_id.is_none()
            {
                self.queues.entry(tx.user).or_default().push(tx.seq);
            }
            self.transactions.insert(key, tx.clone());
        }
        for update in &change.transaction_updates {
            let key = (update.user, update.seq);
            if let Some(tx) = self.transactions.get_mut(&key) {
                tx.status = update.status;
                tx.payout = update.payout;
                if tx.block_id.is_none() {
                    if let Some(block_id) = update.block_id {
                        if let Some((_, members)) = self.blocks.get_mut(&block_id) {
                            members.push(key);
                        }
                    }
                }
                tx.block_id = update.block_id;
                let in_queue = matches!(
                    tx.status,
                    TransactionStatus::Delivered | TransactionStatus::Held
                ) && tx.block_id.is_none();
                let queue = self.queues.entry(update.user).or_default();
                let position = queue.iter().position(|s| *s == update.seq);
                match (in_queue, position) {
                    (false, Some(index)) => {
                        queue.remove(index);
                        if self.prune_decided && tx.block_id.is_none() {
                            // Rejected before any block (held, user suspended): forget it.
                            let id = tx.id;
                            self.transactions.remove(&key);
                            if self.by_id.get(&id) == Some(&key) {
                                self.by_id.remove(&id);
                            }
                        }
                    }
                    (true, None) => {
                        let index = queue.partition_point(|s| *s < update.seq);
                        queue.insert(index, update.seq);
                    }
                    _ => {}
                }
            }
        }
        for token in &change.seen_tokens {
            self.seen.insert(*token);
        }
        for token in &change.released_tokens {
            self.seen.remove(token);
        }
        if change.block_id_claim.is_some() {
            self.next_block_id = self.next_block_id.saturating_add(1);
        }
        for credit in &change.vendor_credits {
            let account = self.vendors.entry(credit.vendor).or_default();
            account.accrued = account.accrued.saturating_add(credit.amount);
        }
        for vendor in &change.vendor_flags {
            let account = self.vendors.entry(*vendor).or_default();
            account.double_sellings = account.double_sellings.saturating_add(1);
        }
        for (user, amount) in &change.user_refunds {
            let refund = self.refunds.entry(*user).or_default();
            *refund = refund.saturating_add(*amount);
        }
        self.misbehaviour
            .extend(change.misbehaviour.iter().cloned());
        if let Some((block_id, outcome)) = &change.block_decided {
            if let Some((record, _)) = self.blocks.get_mut(block_id) {
                record.outcome = Some(outcome.clone());
            }
            if self.prune_decided {
                self.prune_block(*block_id);
            }
        }
        Ok(())
    }

    /// Applies the group to a copy of the state and keeps the copy only if every change set
    /// applied: all or nothing. The copy costs O(state) per group; the in-memory backend is for
    /// tests and simulation, where this is cheap enough.
    fn apply_all(&mut self, changes: &[ChangeSet]) -> Result<(), StoreError> {
        match changes {
            [] => Ok(()),
            [only] => self.apply(only),
            _ => {
                let mut staged = self.clone();
                for change in changes {
                    staged.apply(change)?;
                }
                *self = staged;
                Ok(())
            }
        }
    }

    fn vendor(&self, vendor: &Pubkey) -> Result<VendorAccount, StoreError> {
        Ok(self.vendors.get(vendor).copied().unwrap_or_default())
    }

    fn user_refund(&self, user: &Pubkey) -> Result<u64, StoreError> {
        Ok(self.refunds.get(user).copied().unwrap_or(0))
    }

    fn misbehaviour(&self) -> Result<Vec<MisbehaviourRecord>, StoreError> {
        Ok(self.misbehaviour.clone())
    }

    fn pending_payouts(&self) -> Result<Vec<VendorPayout>, StoreError> {
        let mut out: Vec<VendorPayout> = self
            .vendors
            .iter()
            .filter(|(_, a)| a.settleable() > 0)
            .map(|(vendor, a)| VendorPayout {
                vendor: *vendor,
                amount: a.settleable(),
            })
            .collect();
        out.sort_by_key(|item| item.vendor);
        Ok(out)
    }

    fn begin_settlement(
        &mut self,
        key: &str,
        seq: u64,
        items: &[VendorPayout],
    ) -> Result<SettlementBatch, StoreError> {
        let items = super::normalize_items(key, items)?;
        if let Some(existing) = self.settlements.get(key) {
            return super::same_batch(existing, seq, &items);
        }
        for item in &items {
            let account = self.vendors.get(&item.vendor).copied().unwrap_or_default();
            super::check_settleable(key, item, &account)?;
        }
        for item in &items {
            let account = self.vendors.entry(item.vendor).or_default();
            account.in_flight = account.in_flight.saturating_add(item.amount);
        }
        let batch = SettlementBatch {
            key: key.to_owned(),
            seq,
            status: SettlementStatus::InFlight,
            items,
            signed: None,
            reference: None,
        };
        self.settlements.insert(key.to_owned(), batch.clone());
        Ok(batch)
    }

    fn complete_settlement(
        &mut self,
        key: &str,
        reference: &str,
    ) -> Result<SettlementBatch, StoreError> {
        let batch = self
            .settlements
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(format!("settlement {key}")))?;
        if !batch.needs_closing(true)? {
            return Ok(batch);
        }
        for item in &batch.items {
            let account = self.vendors.entry(item.vendor).or_default();
            account.in_flight = account.in_flight.saturating_sub(item.amount);
            account.settled = account.settled.saturating_add(item.amount);
        }
        let done = SettlementBatch {
            status: SettlementStatus::Completed,
            reference: Some(reference.to_owned()),
            ..batch
        };
        self.settlements.insert(key.to_owned(), done.clone());
        Ok(done)
    }

    fn abort_settlement(&mut self, key: &str) -> Result<SettlementBatch, StoreError> {
        let batch = self
            .settlements
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(format!("settlement {key}")))?;
        if !batch.needs_closing(false)? {
            return Ok(batch);
        }
        for item in &batch.items {
            let account = self.vendors.entry(item.vendor).or_default();
            account.in_flight = account.in_flight.saturating_sub(item.amount);
        }
        let done = SettlementBatch {
            status: SettlementStatus::Aborted,
            ..batch
        };
        self.settlements.insert(key.to_owned(), done.clone());
        Ok(done)
    }

    fn record_signed_settlement(
        &mut self,
        key: &str,
        signed: &SignedPayout,
    ) -> Result<SettlementBatch, StoreError> {
        let batch = self
            .settlements
            .get_mut(key)
            .ok_or_else(|| StoreError::NotFound(format!("settlement {key}")))?;
        if batch.status != SettlementStatus::InFlight {
            return Err(StoreError::Settlement {
                key: key.to_owned(),
                reason: format!("is {:?}, not in flight: nothing to sign", batch.status),
            });
        }
        batch.signed = Some(signed.clone());
        Ok(batch.clone())
    }

    fn settlement(&self, key: &str) -> Result<Option<SettlementBatch>, StoreError> {
        Ok(self.settlements.get(key).cloned())
    }

    fn open_settlements(&self) -> Result<Vec<SettlementBatch>, StoreError> {
        let mut open: Vec<SettlementBatch> = self
            .settlements
            .values()
            .filter(|b| b.status == SettlementStatus::InFlight)
            .cloned()
            .collect();
        open.sort_by(|a, b| (a.seq, &a.key).cmp(&(b.seq, &b.key)));
        Ok(open)
    }

    fn recent_settlements(&self, limit: usize) -> Result<Vec<SettlementBatch>, StoreError> {
        let mut all: Vec<SettlementBatch> = self.settlements.values().cloned().collect();
        all.sort_by(|a, b| (b.seq, &a.key).cmp(&(a.seq, &b.key)));
        all.truncate(limit);
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mupib_protocol::reject::RejectCode;

    #[test]
    fn pruning_store_forgets_decided_blocks_and_rejected_transactions() {
        let user = Pubkey::new_from_array([1; 32]);
        let record = |seq: u64, status| TransactionRecord {
            user,
            seq,
            id: TransactionId([u8::try_from(seq).unwrap(); 32]),
            vendor: user,
            status,
            block_id: None,
            amount: 1,
            payout: 0,
            tokens: Vec::new(),
            submission: None,
        };
        let mut store = MemoryStore::pruning();
        let mut waiting = record(1, TransactionStatus::Waiting);
        waiting.block_id = Some(1);
        store
            .apply(&ChangeSet {
                new_transactions: vec![
                    record(0, TransactionStatus::Rejected(RejectCode::DoubleSpending)),
                    waiting,
                ],
                block_id_claim: Some(1),
                new_block: Some(BlockRecord {
                    block_id: 1,
                    user,
                    waiting_seq: Some(1),
                    token_count: 0,
                    block_size: 1,
                    outcome: None,
                }),
                ..ChangeSet::default()
            })
            .unwrap();
        assert!(store
            .transaction_by_id(&TransactionId([0; 32]))
            .unwrap()
            .is_none());
        assert!(store.block(1).unwrap().is_some());
        store
            .apply(&ChangeSet {
                block_decided: Some((1, "{}".into())),
                ..ChangeSet::default()
            })
            .unwrap();
        assert!(store.block(1).unwrap().is_none());
        assert!(store.transactions.is_empty());
        assert_eq!(store.next_block_id().unwrap(), 2);
    }
}

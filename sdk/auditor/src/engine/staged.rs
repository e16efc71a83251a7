//! The staged store view of a group commit: the durable store plus the change sets of the
//! group's earlier steps, not yet written.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use mupib_protocol::token::TokenId;
use mupib_protocol::transaction::TransactionId;
use mupib_protocol::Pubkey;

use crate::store::{
    BlockRecord, ChangeSet, MisbehaviourRecord, SettlementBatch, Store, StoreError,
    TransactionRecord, TransactionStatus, TransactionUpdate, UserState, VendorAccount,
};
use mupib_protocol::payout::{SignedPayout, VendorPayout};

/// The store view of a batch of intakes being group-committed: the durable store underneath,
/// plus the change sets of the batch's earlier intakes, staged in memory and not yet written.
/// Every read the engine makes answers as the store would after those change sets were applied
/// one by one, so an intake computed against the view equals the intake a sequential run would
/// compute. [`Store::apply`] checks the change set against the view (compare-and-swap, seen
/// tokens, block id claim) and stages it; the batch's caller writes all staged change sets with
/// one [`Store::apply_all`], which checks them again against the durable state.
///
/// Settlement mutations are refused: they are not part of intake and never staged.
pub(super) struct Staged<'a, S: Store> {
    base: &'a S,
    /// Staged change sets, in order.
    changes: Vec<ChangeSet>,
    /// Latest user states.
    users: HashMap<Pubkey, UserState>,
    /// Tokens whose seen flag the batch changed (true: marked, false: released).
    tokens: HashMap<TokenId, bool>,
    /// Full records the batch created or loaded from the base queue, per user and seq, with
    /// the batch's updates applied.
    txs: HashMap<Pubkey, BTreeMap<u64, TransactionRecord>>,
    /// Every staged transaction update, latest per (user, seq), for base records not loaded.
    updates: HashMap<(Pubkey, u64), TransactionUpdate>,
    /// First staged transaction per id.
    ids: HashMap<TransactionId, (Pubkey, u64)>,
    /// Blocks formed in the batch.
    blocks: BTreeMap<u64, BlockRecord>,
    /// Outcomes written in the batch.
    decided: HashMap<u64, String>,
    /// The block id counter after the batch's claims.
    next_block_id: Option<u64>,
}

fn in_queue(tx: &TransactionRecord) -> bool {
    matches!(
        tx.status,
        TransactionStatus::Delivered | TransactionStatus::Held
    ) && tx.block_id.is_none()
}

fn apply_update(record: &mut TransactionRecord, update: &TransactionUpdate) {
    record.status = update.status;
    record.block_id = update.block_id;
    record.payout = update.payout;
}

impl<'a, S: Store> Staged<'a, S> {
    pub(super) fn new(base: &'a S) -> Self {
        Staged {
            base,
            changes: Vec::new(),
            users: HashMap::new(),
            tokens: HashMap::new(),
            txs: HashMap::new(),
            updates: HashMap::new(),
            ids: HashMap::new(),
            blocks: BTreeMap::new(),
            decided: HashMap::new(),
            next_block_id: None,
        }
    }

    pub(super) fn into_changes(self) -> Vec<ChangeSet> {
        self.changes
    }

    /// A base record as the batch left it.
    fn overlaid(&self, mut record: TransactionRecord) -> TransactionRecord {
        if let Some(known) = self.txs.get(&record.user).and_then(|m| m.get(&record.seq)) {
            return known.clone();
        }
        if let Some(update) = self.updates.get(&(record.user, record.seq)) {
            apply_update(&mut record, update);
        }
        record
    }

    /// Loads the base queue of `user` into the known records (a cache of base data).
    fn load_queue(&mut self, user: &Pubkey) -> Result<(), StoreError> {
        let base = self.base.queue(user)?;
        let known = self.txs.entry(*user).or_default();
        for record in base {
            if !known.contains_key(&record.seq) {
                let mut record = record;
                if let Some(update) = self.updates.get(&(record.user, record.seq)) {
                    apply_update(&mut record, update);
                }
                known.insert(record.seq, record);
            }
        }
        Ok(())
    }

    /// The checks [`Store::apply`] makes, against what the batch staged (no mutation, no read
    /// of the durable store: the engine has just read it, and [`Store::apply_all`] checks every
    /// change set against the durable state again at commit).
    fn validate(&self, change: &ChangeSet) -> Result<(), StoreError> {
        if let Some(write) = &change.user {
            if let Some(current) = self.users.get(&write.state.user) {
                if Some(current.version) != write.expected_version {
                    return Err(StoreError::Conflict(format!(
                        "user {} version {}, expected {:?}",
                        write.state.user, current.version, write.expected_version
                    )));
                }
            }
        }
        let mut fresh = HashSet::with_capacity(change.seen_tokens.len());
        for token in &change.seen_tokens {
            if self.tokens.get(token) == Some(&true) || !fresh.insert(*token) {
                return Err(StoreError::Conflict(format!(
                    "token {token:?} already seen"
                )));
            }
        }
        if let (Some(claim), Some(next)) = (change.block_id_claim, self.next_block_id) {
            if claim != next {
                return Err(StoreError::Conflict(format!(
                    "block id {claim} claimed, next is {next}"
                )));
            }
        }
        if let Some((block_id, _)) = &change.block_decided {
            if self.decided.contains_key(block_id) {
                return Err(StoreError::Conflict(format!(
                    "block {block_id} already decided"
                )));
            }
        }
        Ok(())
    }

    fn block_record(&self, block_id: u64) -> Result<Option<BlockRecord>, StoreError> {
        let mut record = match self.blocks.get(&block_id) {
            Some(record) => Some(record.clone()),
            None => self.base.block(block_id)?.map(|(record, _)| record),
        };
        if let (Some(record), Some(outcome)) = (record.as_mut(), self.decided.get(&block_id)) {
            record.outcome = Some(outcome.clone());
        }
        Ok(record)
    }

    fn settlement_refused(key: &str) -> StoreError {
        StoreError::Settlement {
            key: key.to_owned(),
            reason: "settlement cannot run inside a batch of intakes; call it on the store".into(),
        }
    }
}

impl<S: Store> Store for Staged<'_, S> {
    fn user(&self, user: &Pubkey) -> Result<Option<UserState>, StoreError> {
        match self.users.get(user) {
            Some(state) => Ok(Some(*state)),
            None => self.base.user(user),
        }
    }

    fn token_seen(&self, token: &TokenId) -> Result<bool, StoreError> {
        match self.tokens.get(token) {
            Some(seen) => Ok(*seen),
            None => self.base.token_seen(token),
        }
    }

    fn transaction_by_id(
        &self,
        id: &TransactionId,
    ) -> Result<Option<TransactionRecord>, StoreError> {
        if let Some(record) = self.base.transaction_by_id(id)? {
            return Ok(Some(self.overlaid(record)));
        }
        Ok(self
            .ids
            .get(id)
            .and_then(|(user, seq)| self.txs.get(user).and_then(|m| m.get(seq)))
            .cloned())
    }

    fn queue(&self, user: &Pubkey) -> Result<Vec<TransactionRecord>, StoreError> {
        let mut queue: BTreeMap<u64, TransactionRecord> = self
            .base
            .queue(user)?
            .into_iter()
            .map(|record| (record.seq, self.overlaid(record)))
            .collect();
        if let Some(known) = self.txs.get(user) {
            for (seq, record) in known {
                queue.insert(*seq, record.clone());
            }
        }
        Ok(queue.into_values().filter(in_queue).collect())
    }

    fn block(
        &self,
        block_id: u64,
    ) -> Result<Option<(BlockRecord, Vec<TransactionRecord>)>, StoreError> {
        let Some(record) = self.block_record(block_id)? else {
            return Ok(None);
        };
        let mut members: BTreeMap<u64, TransactionRecord> = BTreeMap::new();
        if let Some((_, base_members)) = self.base.block(block_id)? {
            for member in base_members {
                let member = self.overlaid(member);
                members.insert(member.seq, member);
            }
        }
        if let Some(known) = self.txs.get(&record.user) {
            for (seq, tx) in known {
                if tx.block_id == Some(block_id) {
                    members.insert(*seq, tx.clone());
                } else {
                    members.remove(seq);
                }
            }
        }
        let members = members
            .into_values()
            .filter(|m| m.block_id == Some(block_id))
            .collect();
        Ok(Some((record, members)))
    }

    fn pending_blocks(&self) -> Result<Vec<BlockRecord>, StoreError> {
        let mut pending: BTreeMap<u64, BlockRecord> = self
            .base
            .pending_blocks()?
            .into_iter()
            .map(|b| (b.block_id, b))
            .collect();
        for (id, record) in &self.blocks {
            pending.insert(*id, record.clone());
        }
        for id in self.decided.keys() {
            pending.remove(id);
        }
        Ok(pending.into_values().collect())
    }

    fn next_block_id(&self) -> Result<u64, StoreError> {
        match self.next_block_id {
            Some(next) => Ok(next),
            None => self.base.next_block_id(),
        }
    }

    fn apply(&mut self, change: &ChangeSet) -> Result<(), StoreError> {
        self.validate(change)?;
        for update in &change.transaction_updates {
            let known = self
                .txs
                .get(&update.user)
                .is_some_and(|m| m.contains_key(&update.seq))
                || change
                    .new_transactions
                    .iter()
                    .any(|t| (t.user, t.seq) == (update.user, update.seq));
            if !known {
                self.load_queue(&update.user)?;
            }
        }
        // Checked: from here on nothing fails, so a refused change set stages nothing.
        if let Some(claim) = change.block_id_claim {
            self.next_block_id = Some(claim.saturating_add(1));
        }
        if let Some(write) = &change.user {
            self.users.insert(write.state.user, write.state);
        }
        if let Some(block) = &change.new_block {
            self.blocks.insert(block.block_id, block.clone());
        }
        for tx in &change.new_transactions {
            self.ids.entry(tx.id).or_insert((tx.user, tx.seq));
            self.txs
                .entry(tx.user)
                .or_default()
                .insert(tx.seq, tx.clone());
        }
        for update in &change.transaction_updates {
            self.updates.insert((update.user, update.seq), *update);
            if let Some(record) = self
                .txs
                .get_mut(&update.user)
                .and_then(|m| m.get_mut(&update.seq))
            {
                apply_update(record, update);
            }
        }
        for token in &change.seen_tokens {
            self.tokens.insert(*token, true);
        }
        for token in &change.released_tokens {
            self.tokens.insert(*token, false);
        }
        if let Some((block_id, outcome)) = &change.block_decided {
            self.decided.insert(*block_id, outcome.clone());
        }
        self.changes.push(change.clone());
        Ok(())
    }

    fn apply_all(&mut self, changes: &[ChangeSet]) -> Result<(), StoreError> {
        // Staging is cheap to undo: stage on a copy of the staged part, keep it if all pass.
        let snapshot = (
            self.changes.len(),
            self.users.clone(),
            self.tokens.clone(),
            self.txs.clone(),
            self.updates.clone(),
            self.ids.clone(),
            self.blocks.clone(),
            self.decided.clone(),
            self.next_block_id,
        );
        for change in changes {
            if let Err(error) = self.apply(change) {
                let (len, users, tokens, txs, updates, ids, blocks, decided, next) = snapshot;
                self.changes.truncate(len);
                self.users = users;
                self.tokens = tokens;
                self.txs = txs;
                self.updates = updates;
                self.ids = ids;
                self.blocks = blocks;
                self.decided = decided;
                self.next_block_id = next;
                return Err(error);
            }
        }
        Ok(())
    }

    fn vendor(&self, vendor: &Pubkey) -> Result<VendorAccount, StoreError> {
        let mut account = self.base.vendor(vendor)?;
        for change in &self.changes {
            for credit in change.vendor_credits.iter().filter(|c| c.vendor == *vendor) {
                account.accrued = account
                    .accrued
                    .checked_add(credit.amount)
                    .ok_or_else(|| StoreError::OutOfRange(format!("vendor {vendor} accrual")))?;
            }
            for _ in change.vendor_flags.iter().filter(|v| *v == vendor) {
                account.double_sellings = account.double_sellings.saturating_add(1);
            }
        }
        Ok(account)
    }

    fn user_refund(&self, user: &Pubkey) -> Result<u64, StoreError> {
        let mut refund = self.base.user_refund(user)?;
        for change in &self.changes {
            for (_, amount) in change.user_refunds.iter().filter(|(u, _)| u == user) {
                refund = refund
                    .checked_add(*amount)
                    .ok_or_else(|| StoreError::OutOfRange(format!("user {user} refund")))?;
            }
        }
        Ok(refund)
    }

    fn misbehaviour(&self) -> Result<Vec<MisbehaviourRecord>, StoreError> {
        let mut records = self.base.misbehaviour()?;
        for change in &self.changes {
            records.extend(change.misbehaviour.iter().cloned());
        }
        Ok(records)
    }

    fn pending_payouts(&self) -> Result<Vec<VendorPayout>, StoreError> {
        let mut vendors: BTreeSet<Pubkey> = self
            .base
            .pending_payouts()?
            .into_iter()
            .map(|p| p.vendor)
            .collect();
        for change in &self.changes {
            vendors.extend(change.vendor_credits.iter().map(|c| c.vendor));
        }
        let mut out = Vec::with_capacity(vendors.len());
        for vendor in vendors {
            let amount = self.vendor(&vendor)?.settleable();
            if amount > 0 {
                out.push(VendorPayout { vendor, amount });
            }
        }
        Ok(out)
    }

    fn begin_settlement(
        &mut self,
        key: &str,
        _seq: u64,
        _items: &[VendorPayout],
    ) -> Result<SettlementBatch, StoreError> {
        Err(Self::settlement_refused(key))
    }

    fn record_signed_settlement(
        &mut self,
        key: &str,
        _signed: &SignedPayout,
    ) -> Result<SettlementBatch, StoreError> {
        Err(Self::settlement_refused(key))
    }

    fn complete_settlement(
        &mut self,
        key: &str,
        _reference: &str,
    ) -> Result<SettlementBatch, StoreError> {
        Err(Self::settlement_refused(key))
    }

    fn abort_settlement(&mut self, key: &str) -> Result<SettlementBatch, StoreError> {
        Err(Self::settlement_refused(key))
    }

    fn settlement(&self, key: &str) -> Result<Option<SettlementBatch>, StoreError> {
        self.base.settlement(key)
    }

    fn open_settlements(&self) -> Result<Vec<SettlementBatch>, StoreError> {
        self.base.open_settlements()
    }

    fn recent_settlements(&self, limit: usize) -> Result<Vec<SettlementBatch>, StoreError> {
        self.base.recent_settlements(limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Auditor;
    use crate::outcome::TransactionSummary;
    use crate::store::MemoryStore;
    use crate::{AuditorConfig, SimulatedChain};
    use mupib_protocol::block::BlockVerifier;
    use mupib_protocol::money::Withholding;
    use mupib_protocol::token::TokenRef;
    use mupib_protocol::trust::{TrustModel, TrustScale};

    fn key(n: u8) -> Pubkey {
        Pubkey::new_from_array([n; 32])
    }

    fn token(serial: u32) -> TokenRef {
        TokenRef {
            id: TokenId {
                bank: key(250),
                batch_id: 1,
                serial,
            },
            value: 100,
            digest: [u8::try_from(serial % 200).expect("small"); 16],
        }
    }

    fn tx(n: u8, user: u8, serials: std::ops::Range<u32>) -> TransactionSummary {
        TransactionSummary {
            id: TransactionId([n; 32]),
            user: key(user),
            vendor: key(50 + n % 3),
            tokens: serials.map(token).collect(),
            submission: [n; 32],
        }
    }

    /// Everything the view answers about the scenario, through the `Store` reads.
    fn reads<S: Store>(store: &S, txs: &[TransactionSummary], blocks: u64) -> String {
        let mut out = format!(
            "{:?}\n{:?}\n{:?}\n{:?}\n",
            store.next_block_id().expect("next"),
            store.pending_blocks().expect("pending"),
            store.misbehaviour().expect("misbehaviour"),
            store.pending_payouts().expect("payouts"),
        );
        for user in [1u8, 2] {
            out.push_str(&format!(
                "{:?}\n{:?}\n{:?}\n",
                store.user(&key(user)).expect("user"),
                store.queue(&key(user)).expect("queue"),
                store.user_refund(&key(user)).expect("refund"),
            ));
        }
        for vendor in 50..53u8 {
            out.push_str(&format!(
                "{:?}\n",
                store.vendor(&key(vendor)).expect("vendor")
            ));
        }
        for block in 1..=blocks {
            out.push_str(&format!("{:?}\n", store.block(block).expect("block")));
        }
        for tx in txs {
            out.push_str(&format!(
                "{:?}\n",
                store.transaction_by_id(&tx.id).expect("tx")
            ));
            for token in &tx.tokens {
                out.push_str(&format!("{}", store.token_seen(&token.id).expect("seen")));
            }
        }
        out
    }

    /// The staged view answers every read exactly as the store does once the same change sets
    /// are applied: after intakes that form blocks (new blocks, queue members moved into them),
    /// and after decisions on blocks formed BEFORE the view (updates of stored block members
    /// that are not in any queue, the processed marker, an invalid block's refund, held
    /// transactions decided, a next block formed), including deciding one block twice.
    #[test]
    fn staged_view_reads_equal_the_store_after_apply() {
        let config = AuditorConfig {
            withholding: Withholding::from_bps(2000).expect("bps"),
            trust_model: TrustModel::Pessimistic,
            trust_scale: TrustScale::Initial,
            initial_block_size: 4,
            paper_mode: false,
        };
        let mut chain = SimulatedChain::new();
        chain.publish_batch(
            key(250),
            1,
            100,
            (0..100)
                .map(|s| [u8::try_from(s % 200).expect("small"); 16])
                .collect(),
        );
        let mut base = Auditor::new(MemoryStore::new(), config).expect("auditor");
        // User 1: block 1 (valid) pending with one held transaction; user 2: block 2 pending,
        // with an unpublished token (invalid), and two held transactions.
        let mut txs = vec![
            tx(1, 1, 0..2),
            tx(2, 1, 2..4),
            tx(3, 1, 4..6),
            tx(4, 2, 10..13),
            tx(5, 2, 13..14),
            tx(6, 2, 14..17),
            tx(7, 2, 17..20),
        ];
        let mut forged = tx(8, 2, 0..0);
        forged.tokens = vec![TokenRef {
            id: TokenId {
                bank: key(250),
                batch_id: 999,
                serial: 1,
            },
            value: 100,
            digest: [9; 16],
        }];
        txs.insert(4, forged);
        for t in &txs {
            base.intake(t).expect("intake");
        }
        let pending = base.store().pending_blocks().expect("pending");
        assert_eq!(pending.len(), 2);
        let mut group = Vec::new();
        for block in &pending {
            let submission = base.submission(block.block_id).expect("submission");
            group.push((
                block.block_id,
                chain.verify(&submission).expect("verify").decisions,
            ));
        }
        group.push(group[0].clone()); // decided twice: the second returns the stored outcome

        // Sequential reference.
        let mut reference = Auditor::new(base.store().clone(), config).expect("auditor");
        let expected: Vec<_> = group
            .iter()
            .map(|(id, d)| format!("{:?}", reference.apply_decisions(*id, d)))
            .collect();

        // The view: decisions staged over the base store, read before any commit.
        let mut staged = Auditor {
            store: Staged::new(base.store()),
            config,
        };
        let got: Vec<_> = group
            .iter()
            .map(|(id, d)| format!("{:?}", staged.apply_decisions(*id, d)))
            .collect();
        assert_eq!(got, expected);
        let blocks = reference.store().next_block_id().expect("next");
        assert!(blocks >= 3, "held transactions formed a next block");
        assert_eq!(
            reads(&staged.store, &txs, blocks),
            reads(reference.store(), &txs, blocks)
        );
        // Then intakes on top of the staged decisions, staged too.
        let more = [tx(20, 1, 30..33), tx(21, 2, 40..42), tx(22, 1, 33..35)];
        for t in &more {
            let a = format!("{:?}", reference.intake(t));
            let b = format!("{:?}", staged.intake(t));
            assert_eq!(a, b);
        }
        let all: Vec<_> = txs.iter().chain(more.iter()).cloned().collect();
        let blocks = reference.store().next_block_id().expect("next");
        assert_eq!(
            reads(&staged.store, &all, blocks),
            reads(reference.store(), &all, blocks)
        );
        // Writing the staged change sets in one group gives the reference state.
        let changes = staged.store.into_changes();
        base.store_mut().apply_all(&changes).expect("group commit");
        assert_eq!(
            reads(base.store(), &all, blocks),
            reads(reference.store(), &all, blocks)
        );
        // Settlement never runs inside a group.
        let mut view = Staged::new(base.store());
        assert!(matches!(
            view.begin_settlement("k", 0, &[]),
            Err(StoreError::Settlement { .. })
        ));
    }
}

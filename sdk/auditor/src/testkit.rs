//! Test fixtures shared by the auditor's and the service's tests (feature `testkit`; never in
//! products): a payout chain that keeps the µPIB program's rules for settlement.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use mupib_protocol::payout::{
    DestinationProblem, PayoutBatch, PayoutError, PayoutRecord, PayoutSender, SendOutcome,
    SignedPayout,
};
use mupib_protocol::Pubkey;

/// The auditor key byte of [`FakePayouts::funded`]'s chain (`[AUDITOR; 32]`).
pub const AUDITOR: u8 = 200;

/// The chain a [`FakePayouts`] pays on.
#[derive(Debug, Default)]
pub struct Chain {
    /// The auditor whose payout record and token account this chain keeps.
    pub auditor: Pubkey,
    /// SPL balances by owner (the auditor's under [`Chain::auditor`]).
    pub balances: HashMap<Pubkey, u64>,
    /// Vendors whose payout account is closed.
    pub closed: HashSet<Pubkey>,
    /// The auditor's payout record (`None`: never paid).
    pub record: Option<PayoutRecord>,
    /// Signatures that executed (successfully or not): never again.
    pub processed: HashSet<String>,
    /// The current blockhash; a signed transaction carries the one it was signed with.
    pub blockhash: u64,
    /// Blockhashes older than this are expired.
    pub oldest_valid: u64,
    /// Signed transactions: signature → (batch, blockhash).
    pub signed: HashMap<String, (PayoutBatch, u64)>,
    /// The counter of signatures handed out.
    pub next_signature: u64,
    /// Successful transfers, in order (vendor, amount).
    pub transfers: Vec<(Pubkey, u64)>,
    /// The next send executes but its answer is lost.
    pub lose_next_answer: bool,
    /// Sends are not delivered at all (unknown fate, nothing executes).
    pub unreachable: bool,
    /// Reads fail.
    pub down: bool,
    /// Transactions signed in all.
    pub signs: usize,
}

/// A [`PayoutSender`] over a shared [`Chain`]; clones pay on the same chain.
#[derive(Clone, Default)]
pub struct FakePayouts(pub Arc<Mutex<Chain>>);

impl Chain {
    /// The auditor's payout record.
    pub fn record(&self) -> PayoutRecord {
        self.record.unwrap_or(PayoutRecord {
            next_seq: 0,
            last_digest: [0; 32],
        })
    }

    /// Executes a signed transaction with the program's rules.
    pub fn execute(&mut self, signature: &str) -> SendOutcome {
        let Some((batch, blockhash)) = self.signed.get(signature).cloned() else {
            return SendOutcome::Failed {
                reason: "unknown transaction".into(),
                vendor: None,
            };
        };
        if self.processed.contains(signature) {
            return SendOutcome::Failed {
                reason: "already processed".into(),
                vendor: None,
            };
        }
        if blockhash < self.oldest_valid {
            return SendOutcome::Failed {
                reason: "blockhash not found".into(),
                vendor: None,
            };
        }
        self.processed.insert(signature.to_owned());
        let record = self.record();
        if batch.seq != record.next_seq {
            return SendOutcome::Failed {
                reason: "payout seq mismatch".into(),
                vendor: None,
            };
        }
        if let Some(item) = batch.items.iter().find(|i| self.closed.contains(&i.vendor)) {
            return SendOutcome::Failed {
                reason: "transfer to a closed account".into(),
                vendor: Some(item.vendor),
            };
        }
        let total: u64 = batch.items.iter().map(|i| i.amount).sum();
        let source = self.balances.entry(self.auditor).or_default();
        if *source < total {
            return SendOutcome::Failed {
                reason: "insufficient funds".into(),
                vendor: None,
            };
        }
        *source -= total;
        for item in &batch.items {
            *self.balances.entry(item.vendor).or_default() += item.amount;
            self.transfers.push((item.vendor, item.amount));
        }
        self.record = Some(PayoutRecord {
            next_seq: batch.seq + 1,
            last_digest: batch.digest(&self.auditor),
        });
        SendOutcome::Executed
    }
}

impl FakePayouts {
    /// A chain for the auditor `[AUDITOR; 32]` whose token account holds `amount`.
    pub fn funded(amount: u64) -> Self {
        Self::funded_for(Pubkey::new_from_array([AUDITOR; 32]), amount)
    }

    /// A chain for `auditor` whose token account holds `amount`.
    pub fn funded_for(auditor: Pubkey, amount: u64) -> Self {
        let payouts = FakePayouts::default();
        {
            let mut chain = payouts.chain();
            chain.auditor = auditor;
            chain.balances.insert(auditor, amount);
        }
        payouts
    }

    /// The chain, locked.
    ///
    /// # Panics
    /// If a holder of the lock panicked.
    pub fn chain(&self) -> std::sync::MutexGuard<'_, Chain> {
        self.0.lock().unwrap()
    }

    /// What `vendor` (`key(vendor)`) received in all.
    pub fn paid(&self, vendor: u8) -> u64 {
        self.chain()
            .transfers
            .iter()
            .filter(|(v, _)| *v == Pubkey::new_from_array([vendor; 32]))
            .map(|(_, a)| a)
            .sum()
    }
}

impl PayoutSender for FakePayouts {
    fn record(&mut self) -> Result<PayoutRecord, PayoutError> {
        let chain = self.chain();
        if chain.down {
            return Err(PayoutError("chain unreachable".into()));
        }
        Ok(chain.record())
    }

    fn check_destination(
        &mut self,
        vendor: &Pubkey,
    ) -> Result<Result<(), DestinationProblem>, PayoutError> {
        let chain = self.chain();
        if chain.down {
            return Err(PayoutError("chain unreachable".into()));
        }
        Ok(if chain.closed.contains(vendor) {
            Err(DestinationProblem::Missing {
                account: vendor.to_string(),
            })
        } else {
            Ok(())
        })
    }

    fn funds(&mut self) -> Result<u64, PayoutError> {
        let chain = self.chain();
        if chain.down {
            return Err(PayoutError("chain unreachable".into()));
        }
        Ok(chain.balances.get(&chain.auditor).copied().unwrap_or(0))
    }

    fn sign(&mut self, batch: &PayoutBatch) -> Result<SignedPayout, PayoutError> {
        let mut chain = self.chain();
        chain.signs += 1;
        chain.next_signature += 1;
        let signature = format!("sig-{}", chain.next_signature);
        let blockhash = chain.blockhash;
        chain
            .signed
            .insert(signature.clone(), (batch.clone(), blockhash));
        Ok(SignedPayout {
            signature,
            transaction: batch.seq.to_le_bytes().to_vec(),
        })
    }

    fn send(&mut self, payout: &SignedPayout) -> SendOutcome {
        let mut chain = self.chain();
        if chain.unreachable {
            return SendOutcome::Unknown {
                reason: "connection reset".into(),
            };
        }
        let outcome = chain.execute(&payout.signature);
        if std::mem::take(&mut chain.lose_next_answer) {
            return SendOutcome::Unknown {
                reason: "answer lost".into(),
            };
        }
        outcome
    }

    fn may_still_land(&mut self, payout: &SignedPayout) -> Result<bool, PayoutError> {
        let chain = self.chain();
        let (_, blockhash) = chain
            .signed
            .get(&payout.signature)
            .cloned()
            .ok_or_else(|| PayoutError("unknown transaction".into()))?;
        Ok(blockhash >= chain.oldest_valid && !chain.processed.contains(&payout.signature))
    }
}

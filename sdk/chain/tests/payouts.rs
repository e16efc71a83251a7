//! `LedgerPayouts` on the embedded ledger: a settlement batch pays every vendor and records its
//! digest in one transaction; resending or re-signing it pays nothing more; a vendor whose
//! payout account is gone is reported and fails its batch as a whole, naming the vendor; a
//! signed transaction may land exactly while its blockhash is valid.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mupib_chain::deploy::Deployment;
use mupib_chain::ledger::{EmbeddedLedger, Ledger, LedgerError, Receipt, PACKET_DATA_SIZE};
use mupib_chain::payouts::{max_vendors_per_transaction, LedgerPayouts};
use mupib_chain::program::accounts::token_balance;
use mupib_chain::spl;
use mupib_protocol::payout::{
    DestinationProblem, PayoutBatch, PayoutRecord, PayoutSender, SendOutcome, VendorPayout,
    MAX_VENDORS_PER_BATCH,
};
use solana_sdk::account::Account;
use solana_sdk::clock::Clock;
use solana_sdk::hash::Hash;
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::{Keypair, Signature, Signer};
use solana_sdk::transaction::Transaction;

/// What the auditor holds to pay vendors.
const FUNDS: u64 = 1_000_000;

struct World {
    ledger: Arc<EmbeddedLedger>,
    d: Deployment,
    vendors: Vec<Keypair>,
}

impl World {
    /// A deployment whose auditor holds [`FUNDS`], and `vendors` vendors with payment accounts.
    fn new(vendors: usize) -> World {
        let ledger = Arc::new(EmbeddedLedger::ephemeral().unwrap());
        let d = Deployment::setup(ledger.as_ref(), 6, 0).unwrap();
        spl::mint_to(ledger.as_ref(), &d.admin, &d.mint, &d.auditor_token, FUNDS).unwrap();
        let vendors: Vec<Keypair> = (0..vendors).map(|_| Keypair::new()).collect();
        for vendor in &vendors {
            spl::ensure_payment_account(ledger.as_ref(), &d.admin, &vendor.pubkey(), &d.mint)
                .unwrap();
        }
        World { ledger, d, vendors }
    }

    fn payouts_over(&self, ledger: Arc<dyn Ledger>) -> LedgerPayouts {
        LedgerPayouts::with_payment_accounts(
            ledger,
            self.d.auditor.insecure_clone(),
            self.d.auditor_token,
            HashMap::new(),
        )
    }

    fn payouts(&self) -> LedgerPayouts {
        self.payouts_over(self.ledger.clone())
    }

    fn account(&self, vendor: &Keypair) -> Pubkey {
        spl::payment_account(&vendor.pubkey(), &self.d.mint)
    }

    /// Token balances: the auditor's, then each vendor's (0 when its account is gone).
    fn balances(&self) -> Vec<u64> {
        let mut out = vec![token_balance(self.ledger.as_ref(), &self.d.auditor_token).unwrap()];
        for vendor in &self.vendors {
            out.push(token_balance(self.ledger.as_ref(), &self.account(vendor)).unwrap());
        }
        out
    }

    /// Batch `seq` paying `amounts[i]` to vendor `i`.
    fn batch(&self, seq: u64, amounts: &[u64]) -> PayoutBatch {
        PayoutBatch {
            seq,
            items: self
                .vendors
                .iter()
                .zip(amounts)
                .map(|(vendor, amount)| VendorPayout {
                    vendor: vendor.pubkey(),
                    amount: *amount,
                })
                .collect(),
        }
    }

    /// The vendor closes its (empty) payment account.
    fn close_account(&self, vendor: &Keypair) {
        let account = self.account(vendor);
        let close = spl_token_interface::instruction::close_account(
            &spl_token_interface::ID,
            &account,
            &self.d.admin.pubkey(),
            &vendor.pubkey(),
            &[],
        )
        .unwrap();
        self.ledger
            .send_instructions(&[close], &self.d.admin.pubkey(), &[&self.d.admin, vendor])
            .unwrap();
        assert!(self.ledger.get_account(&account).unwrap().is_none());
    }
}

fn landed(record: PayoutRecord, batch: &PayoutBatch, auditor: &Pubkey) -> bool {
    record.next_seq == batch.seq + 1 && record.last_digest == batch.digest(auditor)
}

#[test]
fn settlement_pays_every_vendor_and_the_record_shows_its_digest() {
    let w = World::new(3);
    let mut payouts = w.payouts();
    let auditor = w.d.auditor.pubkey();
    let start = payouts.record().unwrap();
    assert_eq!(
        start,
        PayoutRecord {
            next_seq: 0,
            last_digest: [0; 32]
        }
    );
    assert_eq!(payouts.funds().unwrap(), FUNDS);
    for vendor in &w.vendors {
        assert_eq!(payouts.check_destination(&vendor.pubkey()).unwrap(), Ok(()));
    }
    let batch = w.batch(0, &[100, 200, 300]);
    let signed = payouts.sign(&batch).unwrap();
    assert!(signed.transaction.len() <= PACKET_DATA_SIZE);
    assert_eq!(payouts.send(&signed), SendOutcome::Executed);
    assert_eq!(w.balances(), vec![FUNDS - 600, 100, 200, 300]);
    assert!(landed(payouts.record().unwrap(), &batch, &auditor));
    assert_eq!(payouts.funds().unwrap(), FUNDS - 600);

    let next = w.batch(1, &[1, 0, 2]);
    let signed = payouts.sign(&next).unwrap();
    assert_eq!(payouts.send(&signed), SendOutcome::Executed);
    assert!(landed(payouts.record().unwrap(), &next, &auditor));
    assert_eq!(w.balances(), vec![FUNDS - 603, 101, 200, 302]);
}

#[test]
fn resending_the_same_signed_bytes_pays_nothing_more() {
    let w = World::new(2);
    let mut payouts = w.payouts();
    let batch = w.batch(0, &[100, 200]);
    let signed = payouts.sign(&batch).unwrap();
    assert_eq!(payouts.send(&signed), SendOutcome::Executed);
    let paid = w.balances();
    let record = payouts.record().unwrap();
    // A resend (e.g. after a lost answer) is answered with the first execution's outcome.
    assert_eq!(payouts.send(&signed), SendOutcome::Executed);
    assert_eq!(payouts.send(&signed), SendOutcome::Executed);
    assert_eq!(w.balances(), paid);
    assert_eq!(payouts.record().unwrap(), record);
}

#[test]
fn re_signing_a_landed_batch_fails_definitively_and_pays_nothing() {
    let w = World::new(2);
    let mut payouts = w.payouts();
    let batch = w.batch(0, &[100, 200]);
    let first = payouts.sign(&batch).unwrap();
    assert_eq!(payouts.send(&first), SendOutcome::Executed);
    let paid = w.balances();
    let record = payouts.record().unwrap();
    // The same batch signed again (fresh blockhash, new signature): seq 0 is consumed.
    let again = payouts.sign(&batch).unwrap();
    assert_ne!(again.signature, first.signature);
    match payouts.send(&again) {
        SendOutcome::Failed { reason, vendor } => {
            assert_eq!(vendor, None, "the record refused it, not a vendor");
            assert!(
                reason.contains("payout_record") && reason.contains("6031"),
                "{reason}"
            );
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(w.balances(), paid);
    assert_eq!(payouts.record().unwrap(), record);
}

#[test]
fn vendor_whose_payout_account_was_closed_is_missing_and_fails_its_batch_by_name() {
    let w = World::new(3);
    let mut payouts = w.payouts();
    let gone = &w.vendors[1];
    w.close_account(gone);
    assert_eq!(
        payouts.check_destination(&gone.pubkey()).unwrap(),
        Err(DestinationProblem::Missing {
            account: w.account(gone).to_string()
        })
    );
    assert_eq!(
        payouts.check_destination(&w.vendors[0].pubkey()).unwrap(),
        Ok(())
    );
    let batch = w.batch(0, &[100, 200, 300]);
    let signed = payouts.sign(&batch).unwrap();
    match payouts.send(&signed) {
        SendOutcome::Failed { reason, vendor } => {
            assert_eq!(vendor, Some(gone.pubkey()), "{reason}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(payouts.record().unwrap().next_seq, 0, "record unchanged");
    assert_eq!(w.balances(), vec![FUNDS, 0, 0, 0], "nobody paid");

    // Another instance (e.g. after a restart) names the vendor from the explicit map.
    let destinations: HashMap<Pubkey, Pubkey> = w
        .vendors
        .iter()
        .map(|v| (v.pubkey(), w.account(v)))
        .collect();
    let mut restarted = LedgerPayouts::new(
        w.ledger.clone(),
        w.d.auditor.insecure_clone(),
        w.d.auditor_token,
        destinations,
    );
    let signed = payouts.sign(&batch).unwrap();
    match restarted.send(&signed) {
        SendOutcome::Failed { vendor, .. } => assert_eq!(vendor, Some(gone.pubkey())),
        other => panic!("expected Failed, got {other:?}"),
    }

    // Without the failing vendor, batch 0 lands.
    let without = PayoutBatch {
        seq: 0,
        items: vec![batch.items[0], batch.items[2]],
    };
    let signed = payouts.sign(&without).unwrap();
    assert_eq!(payouts.send(&signed), SendOutcome::Executed);
    assert_eq!(w.balances(), vec![FUNDS - 400, 100, 0, 300]);
}

#[test]
fn destinations_that_are_unknown_or_not_token_accounts_of_the_mint_are_reported() {
    let w = World::new(1);
    let stranger = Pubkey::new_unique();
    let not_a_token_account = w.d.admin.pubkey();
    let other_mint = Keypair::new();
    spl::create_mint(
        w.ledger.as_ref(),
        &w.d.admin,
        &other_mint,
        &w.d.admin.pubkey(),
        6,
    )
    .unwrap();
    let foreign = spl::ensure_payment_account(
        w.ledger.as_ref(),
        &w.d.admin,
        &stranger,
        &other_mint.pubkey(),
    )
    .unwrap();
    let wrong_owner = Pubkey::new_unique();
    let mut payouts = LedgerPayouts::new(
        w.ledger.clone(),
        w.d.auditor.insecure_clone(),
        w.d.auditor_token,
        HashMap::from([(stranger, foreign), (wrong_owner, not_a_token_account)]),
    );
    // No entry and no default destination.
    assert_eq!(
        payouts.check_destination(&w.vendors[0].pubkey()).unwrap(),
        Err(DestinationProblem::Unknown)
    );
    assert!(matches!(
        payouts.check_destination(&stranger).unwrap(),
        Err(DestinationProblem::Unusable { detail, .. }) if detail.contains("mint")
    ));
    assert!(matches!(
        payouts.check_destination(&wrong_owner).unwrap(),
        Err(DestinationProblem::Unusable { detail, .. }) if detail.contains("owned by")
    ));
    // A batch naming a vendor without any destination cannot be signed.
    let error = payouts.sign(&w.batch(0, &[1])).unwrap_err();
    assert!(error.0.contains("no payout account"), "{error}");
}

#[test]
fn signed_payout_may_land_until_its_blockhash_expires_then_can_never_execute() {
    let w = World::new(2);
    let mut payouts = w.payouts();
    let batch = w.batch(0, &[100, 200]);
    let signed = payouts.sign(&batch).unwrap();
    assert!(payouts.may_still_land(&signed).unwrap());
    // MAX_PROCESSING_AGE (150) newer blockhashes later, it can no longer execute.
    w.ledger.advance_blockhashes(151).unwrap();
    assert!(!payouts.may_still_land(&signed).unwrap());
    match payouts.send(&signed) {
        SendOutcome::Failed { reason, vendor } => {
            assert_eq!(vendor, None);
            assert!(reason.to_lowercase().contains("blockhash"), "{reason}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(w.balances(), vec![FUNDS, 0, 0]);
    assert_eq!(payouts.record().unwrap().next_seq, 0);
    // Re-signed with a fresh blockhash, the batch lands once.
    let fresh = payouts.sign(&batch).unwrap();
    assert!(payouts.may_still_land(&fresh).unwrap());
    assert_eq!(payouts.send(&fresh), SendOutcome::Executed);
    assert_eq!(w.balances(), vec![FUNDS - 300, 100, 200]);
}

/// A ledger whose first send executes but loses the answer (a transport failure after the node
/// took the transaction).
struct LosesAnswer {
    inner: Arc<EmbeddedLedger>,
    lost: AtomicBool,
}

impl Ledger for LosesAnswer {
    fn send_transaction(&self, transaction: &Transaction) -> Result<Receipt, LedgerError> {
        let receipt = self.inner.send_transaction(transaction);
        if !self.lost.swap(true, Ordering::SeqCst) {
            return Err(LedgerError::Backend("connection reset".into()));
        }
        receipt
    }
    fn get_account(&self, address: &Pubkey) -> Result<Option<Account>, LedgerError> {
        self.inner.get_account(address)
    }
    fn latest_blockhash(&self) -> Result<Hash, LedgerError> {
        self.inner.latest_blockhash()
    }
    fn is_blockhash_valid(&self, blockhash: &Hash) -> Result<bool, LedgerError> {
        self.inner.is_blockhash_valid(blockhash)
    }
    fn clock(&self) -> Result<Clock, LedgerError> {
        self.inner.clock()
    }
    fn minimum_balance_for_rent_exemption(&self, data_len: usize) -> Result<u64, LedgerError> {
        self.inner.minimum_balance_for_rent_exemption(data_len)
    }
    fn fee_for_signatures(&self, signatures: u64) -> Result<u64, LedgerError> {
        self.inner.fee_for_signatures(signatures)
    }
    fn airdrop(&self, to: &Pubkey, lamports: u64) -> Result<Signature, LedgerError> {
        self.inner.airdrop(to, lamports)
    }
}

#[test]
fn lost_answer_is_unknown_and_the_resend_pays_once() {
    let w = World::new(2);
    let flaky = Arc::new(LosesAnswer {
        inner: w.ledger.clone(),
        lost: AtomicBool::new(false),
    });
    let mut payouts = w.payouts_over(flaky);
    let batch = w.batch(0, &[100, 200]);
    let signed = payouts.sign(&batch).unwrap();
    assert!(matches!(
        payouts.send(&signed),
        SendOutcome::Unknown { reason } if reason.contains("connection reset")
    ));
    // It did land; while it may still land, the same bytes are resent.
    assert!(payouts.may_still_land(&signed).unwrap());
    assert_eq!(payouts.send(&signed), SendOutcome::Executed);
    assert_eq!(w.balances(), vec![FUNDS - 300, 100, 200]);
    assert!(landed(
        payouts.record().unwrap(),
        &batch,
        &w.d.auditor.pubkey()
    ));
}

#[test]
fn a_full_batch_of_max_vendors_fits_one_transaction_and_pays_each_once() {
    let most = max_vendors_per_transaction().unwrap();
    println!(
        "settlement: MAX_VENDORS_PER_BATCH = {MAX_VENDORS_PER_BATCH}; at most {most} vendors fit 1232 bytes"
    );
    assert!(most >= MAX_VENDORS_PER_BATCH);
    let w = World::new(MAX_VENDORS_PER_BATCH);
    let mut payouts = w.payouts();
    let amounts: Vec<u64> = (1..=MAX_VENDORS_PER_BATCH as u64).collect();
    let signed = payouts.sign(&w.batch(0, &amounts)).unwrap();
    println!(
        "a settlement transaction of {MAX_VENDORS_PER_BATCH} vendors: {} bytes",
        signed.transaction.len()
    );
    assert!(signed.transaction.len() <= PACKET_DATA_SIZE);
    assert_eq!(payouts.send(&signed), SendOutcome::Executed);
    let total: u64 = amounts.iter().sum();
    let mut expected = vec![FUNDS - total];
    expected.extend(&amounts);
    assert_eq!(w.balances(), expected);
}

#[test]
fn an_unregistered_auditor_has_no_record_and_an_empty_batch_is_not_signed() {
    let w = World::new(1);
    let mut stranger = LedgerPayouts::with_payment_accounts(
        w.ledger.clone(),
        Keypair::new(),
        w.d.auditor_token,
        HashMap::new(),
    );
    let error = stranger.record().unwrap_err();
    assert!(error.0.contains("not registered"), "{error}");
    let mut payouts = w.payouts();
    let error = payouts
        .sign(&PayoutBatch {
            seq: 0,
            items: Vec::new(),
        })
        .unwrap_err();
    assert!(error.0.contains("no items"), "{error}");
}

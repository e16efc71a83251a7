//! Batch expiry with a grace period (issue 9): a bank cannot close a batch with unspent tokens
//! the instant it expires, nor while the program is paused, nor right after a resume, so tokens
//! of a block under verification never turn "unpublished" under the auditor's feet.

use mupib::constants::{BATCH_CLOSE_GRACE_SECS, DECISION_VALID};
use mupib::error::MupibError;
use mupib_chain::program::events::MupibEvent;
use mupib_chain::program::pda;
use mupib_tests::{batch_ref, digests, entry, Harness, Party};
use solana_sdk::pubkey::Pubkey;

const VALUE: u64 = 25;
const TOKENS: u32 = 10;

/// A sealed batch 1 of 10 tokens bound to the auditor, 3 of them spent; its expiry.
struct Setup {
    h: Harness,
    bank: Party,
    auditor: Party,
    tokens: Vec<[u8; 16]>,
    batch: Pubkey,
    expires_at: i64,
}

async fn setup() -> Setup {
    let mut h = Harness::start().await;
    let bank = h.bank(10_000).await;
    let auditor = h.auditor().await;
    let tokens = digests(1, TOKENS);
    let batch = h
        .published_batch(&bank, &auditor, 1, &tokens, VALUE, true)
        .await;
    h.open_block(&auditor, 1, 3).await.result.unwrap();
    let entries = (0..3).map(|s| entry(0, s, tokens[s as usize])).collect();
    h.verify_chunk(&auditor, 1, 0, entries, &[batch_ref(&bank, &auditor, 1)])
        .await
        .result
        .unwrap();
    let expires_at = h.batch(&batch).await.header.expires_at;
    Setup {
        h,
        bank,
        auditor,
        tokens,
        batch,
        expires_at,
    }
}

impl Setup {
    fn watched(&self) -> Vec<Pubkey> {
        vec![self.batch, pda::escrow(&self.batch).0, self.bank.token]
    }

    /// `batch_close` fails with `error` and changes nothing.
    async fn close_is_refused(&mut self, error: MupibError, what: &str) {
        let keys = self.watched();
        let before = self.h.snapshot(&keys).await;
        let auditor = self.auditor.pubkey();
        self.h
            .close_batch(&self.bank, &auditor, 1)
            .await
            .expect_error(error, what);
        assert_eq!(
            self.h.snapshot(&keys).await,
            before,
            "{what}: nothing changed"
        );
    }

    /// `batch_close` succeeds and the unspent escrow (7 tokens) and both rents go to the bank.
    async fn close_returns_escrow_and_rent(&mut self) {
        let escrow = pda::escrow(&self.batch).0;
        let rent_back = self.h.lamports(&self.batch).await + self.h.lamports(&escrow).await;
        let bank_lamports = self.h.lamports(&self.bank.pubkey()).await;
        let bank_tokens = self.h.token_balance(&self.bank.token).await;
        assert_eq!(self.h.token_balance(&escrow).await, 7 * VALUE);
        let auditor = self.auditor.pubkey();
        let outcome = self.h.close_batch(&self.bank, &auditor, 1).await;
        assert!(outcome.result.is_ok(), "close: {outcome:?}");
        assert_eq!(
            self.h.token_balance(&self.bank.token).await,
            bank_tokens + 7 * VALUE
        );
        assert_eq!(
            self.h.lamports(&self.bank.pubkey()).await,
            bank_lamports + rent_back,
            "the bank (signer, not fee payer) gets both rents back"
        );
        assert!(self.h.account(&self.batch).await.is_none());
        assert!(self.h.account(&escrow).await.is_none());
        let closed = outcome
            .events()
            .into_iter()
            .find_map(|e| match e {
                MupibEvent::BatchClosed(c) => Some(c),
                _ => None,
            })
            .expect("BatchClosed event");
        assert_eq!((closed.refunded_amount, closed.spent_count), (7 * VALUE, 3));
    }
}

#[tokio::test]
async fn bank_closing_a_batch_right_at_its_expiry_is_refused() {
    let mut s = setup().await;
    let at = s.expires_at;
    s.h.set_time(at).await;
    s.close_is_refused(MupibError::BatchCloseGrace, "close at expires_at")
        .await;
}

#[tokio::test]
async fn bank_closing_a_batch_during_its_grace_period_is_refused() {
    let mut s = setup().await;
    let last_second = s.expires_at + BATCH_CLOSE_GRACE_SECS;
    s.h.set_time(last_second).await;
    s.close_is_refused(
        MupibError::BatchCloseGrace,
        "close at expires_at + grace (not after it)",
    )
    .await;
}

#[tokio::test]
async fn bank_closing_a_batch_while_the_program_is_paused_is_refused() {
    let mut s = setup().await;
    let long_after = s.expires_at + 10 * BATCH_CLOSE_GRACE_SECS;
    s.h.set_time(long_after).await;
    s.h.set_paused(true).await;
    s.close_is_refused(MupibError::BatchClosePaused, "close while paused")
        .await;
}

#[tokio::test]
async fn bank_closing_right_after_a_resume_is_refused_until_the_grace_after_it() {
    let mut s = setup().await;
    // Paused before expiry, resumed long after expiry + grace.
    s.h.set_paused(true).await;
    let resume = s.expires_at + 3 * BATCH_CLOSE_GRACE_SECS;
    s.h.set_time(resume).await;
    s.h.set_paused(false).await;
    assert_eq!(s.h.config().await.resumed_at, resume);
    s.close_is_refused(MupibError::BatchCloseGrace, "close right after the resume")
        .await;
    s.h.set_time(resume + BATCH_CLOSE_GRACE_SECS).await;
    s.close_is_refused(
        MupibError::BatchCloseGrace,
        "close at resumed_at + grace (not after it)",
    )
    .await;
    s.h.set_time(resume + BATCH_CLOSE_GRACE_SECS + 1).await;
    s.close_returns_escrow_and_rent().await;
}

#[tokio::test]
async fn close_after_the_grace_returns_the_unspent_escrow_and_rent_to_the_bank() {
    let mut s = setup().await;
    let after = s.expires_at + BATCH_CLOSE_GRACE_SECS + 1;
    s.h.set_time(after).await;
    s.close_returns_escrow_and_rent().await;
}

#[tokio::test]
async fn auditor_still_verifies_a_token_during_the_grace_period() {
    let mut s = setup().await;
    let in_grace = s.expires_at + BATCH_CLOSE_GRACE_SECS / 2;
    s.h.set_time(in_grace).await;
    s.close_is_refused(MupibError::BatchCloseGrace, "close in the grace")
        .await;
    s.h.open_block(&s.auditor, 2, 1).await.result.unwrap();
    let refs = [batch_ref(&s.bank, &s.auditor, 1)];
    let token = s.tokens[5];
    s.h.verify_chunk(&s.auditor, 2, 0, vec![entry(0, 5, token)], &refs)
        .await
        .result
        .unwrap();
    assert_eq!(
        s.h.block(&s.auditor.pubkey(), 2).await.decisions,
        vec![DECISION_VALID]
    );
    assert_eq!(s.h.token_balance(&s.auditor.token).await, 4 * VALUE);
}

#[tokio::test]
async fn resume_records_its_time_and_only_a_real_resume_moves_it() {
    let mut h = Harness::start().await;
    assert_eq!(h.config().await.resumed_at, 0);
    let now = h.now().await;
    h.set_paused(false).await;
    assert_eq!(h.config().await.resumed_at, 0, "resuming a running program");
    h.set_paused(true).await;
    h.set_time(now + 100).await;
    h.set_paused(true).await;
    assert_eq!(h.config().await.resumed_at, 0, "pausing twice");
    h.set_paused(false).await;
    assert_eq!(h.config().await.resumed_at, now + 100);
    h.set_time(now + 200).await;
    h.set_paused(false).await;
    assert_eq!(
        h.config().await.resumed_at,
        now + 100,
        "a retried resume does not extend every batch's grace"
    );
}

#[tokio::test]
async fn fully_spent_or_unsealed_batches_close_at_once_even_while_paused() {
    let mut h = Harness::start().await;
    let bank = h.bank(10_000).await;
    let auditor = h.auditor().await;
    let spent_tokens = digests(1, 2);
    let spent = h
        .published_batch(&bank, &auditor, 1, &spent_tokens, VALUE, true)
        .await;
    let unsealed = h
        .published_batch(&bank, &auditor, 2, &digests(2, 2), VALUE, false)
        .await;
    h.open_block(&auditor, 1, 2).await.result.unwrap();
    let entries = (0..2)
        .map(|s| entry(0, s, spent_tokens[s as usize]))
        .collect();
    h.verify_chunk(&auditor, 1, 0, entries, &[batch_ref(&bank, &auditor, 1)])
        .await
        .result
        .unwrap();
    h.set_paused(true).await;
    let before = h.token_balance(&bank.token).await;
    let key = auditor.pubkey();
    let closed = h.close_batch(&bank, &key, 1).await;
    assert!(closed.result.is_ok(), "fully spent: {closed:?}");
    let closed = h.close_batch(&bank, &key, 2).await;
    assert!(closed.result.is_ok(), "never sealed: {closed:?}");
    assert!(h.account(&spent).await.is_none());
    assert!(h.account(&unsealed).await.is_none());
    assert_eq!(h.token_balance(&bank.token).await, before + 2 * VALUE);
}

#[tokio::test]
async fn bank_closing_with_the_wrong_auditor_is_refused() {
    let mut s = setup().await;
    let after = s.expires_at + BATCH_CLOSE_GRACE_SECS + 1;
    s.h.set_time(after).await;
    let keys = s.watched();
    let before = s.h.snapshot(&keys).await;
    let other = s.h.auditor().await;
    // The instruction for "batch 1 bound to `other`" with the real batch's accounts swapped in.
    let mut close = mupib_chain::program::instructions::batch_close(
        &s.bank.pubkey(),
        &other.pubkey(),
        1,
        &s.h.mint,
        &s.bank.token,
    );
    let wrong = pda::batch(&s.bank.pubkey(), &other.pubkey(), 1).0;
    for meta in close.accounts.iter_mut() {
        if meta.pubkey == wrong {
            meta.pubkey = s.batch;
        } else if meta.pubkey == pda::escrow(&wrong).0 {
            meta.pubkey = pda::escrow(&s.batch).0;
        }
    }
    s.h.send(&[close], &[&s.bank.key]).await.expect_error(
        MupibError::WrongBatchAuditor,
        "batch named with another auditor",
    );
    assert_eq!(s.h.snapshot(&keys).await, before);
}

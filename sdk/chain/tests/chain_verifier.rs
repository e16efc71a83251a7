//! The auditor engine on a real chain: `Auditor` + `ChainVerifier` over the embedded ledger, with
//! real bank-signed tokens whose commitments the bank published. The engine's decisions must
//! equal the chain's (read from the block accounts), and what the escrow paid the auditor must
//! equal the engine's settlement.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use mupib::instructions::BlockOpenArgs;
use mupib_auditor::store::{MemoryStore, SqliteStore, Store};
use mupib_auditor::{
    Auditor, AuditorConfig, BlockOutcome, EngineError, EngineVerdict, TransactionSummary,
};
use mupib_chain::deploy::Deployment;
use mupib_chain::ledger::rpc::{RpcLedger, RpcOptions};
use mupib_chain::ledger::{EmbeddedLedger, Ledger};
use mupib_chain::program::accounts::{fetch_batch, fetch_block, token_balance};
use mupib_chain::program::instructions as ix;
use mupib_chain::program::packer::{pack_block, VerifyAccounts};
use mupib_chain::program::pda;
use mupib_chain::verifier::{ChainVerifier, ChainVerifierError, ChainVerifierOptions};
use mupib_protocol::block::{BlockSubmission, VerifierError};
use mupib_protocol::decision::Decision;
use mupib_protocol::money::{Amount, Withholding};
use mupib_protocol::reject::RejectCode;
use mupib_protocol::token::Token;
use mupib_protocol::token::TokenRef;
use mupib_protocol::transaction::TransactionId;
use mupib_protocol::trust::{TrustModel, TrustScale};
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::{Keypair, Signer};

const VALUE: u64 = 1_000;

/// A deployment with one sealed batch of real signed tokens.
struct World {
    ledger: Arc<EmbeddedLedger>,
    deployment: Deployment,
    tokens: Vec<Token>,
    escrow: Pubkey,
    next_tx: u64,
}

impl World {
    fn new(batch_size: u32) -> Self {
        let ledger = Arc::new(EmbeddedLedger::ephemeral().expect("ledger"));
        let deployment =
            Deployment::setup(ledger.as_ref(), 6, u64::from(batch_size) * VALUE).expect("setup");
        let (tokens, _) = deployment
            .issue_batch(ledger.as_ref(), 1, batch_size, VALUE, true)
            .expect("publish batch");
        let escrow =
            pda::escrow(&pda::batch(&deployment.bank.pubkey(), &deployment.auditor.pubkey(), 1).0)
                .0;
        World {
            ledger,
            deployment,
            tokens,
            escrow,
            next_tx: 0,
        }
    }

    fn dyn_ledger(&self) -> Arc<dyn Ledger> {
        Arc::clone(&self.ledger) as Arc<dyn Ledger>
    }

    /// The deployment's auditor keypair (a copy; keypairs are not `Clone`).
    fn auditor(&self) -> Keypair {
        Keypair::try_from(self.deployment.auditor.to_bytes().as_slice()).expect("keypair")
    }

    fn verifier(&self) -> ChainVerifier {
        ChainVerifier::new(
            self.dyn_ledger(),
            self.auditor(),
            self.deployment.auditor_token,
        )
    }

    fn escrow_balance(&self) -> u64 {
        token_balance(self.ledger.as_ref(), &self.escrow).expect("escrow")
    }

    fn balance_of(&self, account: &Pubkey) -> u64 {
        token_balance(self.ledger.as_ref(), account).expect("token balance")
    }

    fn tx(&mut self, user: Pubkey, vendor: Pubkey, tokens: &[Token]) -> TransactionSummary {
        self.next_tx += 1;
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&self.next_tx.to_le_bytes());
        TransactionSummary {
            id: TransactionId(id),
            user,
            vendor,
            tokens: tokens.iter().map(entry).collect(),
            submission: id,
        }
    }
}

fn entry(token: &Token) -> TokenRef {
    TokenRef {
        id: token.id(),
        value: token.value,
        digest: token.token_digest16(),
    }
}

fn config(w0: u64, paper_mode: bool) -> AuditorConfig {
    AuditorConfig {
        withholding: Withholding::from_bps(2000).expect("bps"),
        trust_model: TrustModel::Neutral,
        trust_scale: TrustScale::Initial,
        initial_block_size: w0,
        paper_mode,
    }
}

/// The chain's decisions for `outcome`'s block, read from the block account.
fn chain_decisions(ledger: &dyn Ledger, auditor: &Pubkey, block_id: u64) -> Vec<Decision> {
    let state = fetch_block(ledger, &pda::block(auditor, block_id).0)
        .expect("read")
        .expect("block exists");
    state
        .decisions
        .iter()
        .map(|code| Decision::from_code(*code).expect("decided"))
        .collect()
}

/// The engine's view of a block: per-code counts must match the chain's decisions, and the
/// invalid tokens it names must be exactly the chain's non-valid positions.
fn assert_engine_matches_chain<S: Store>(
    auditor: &Auditor<S>,
    outcome: &BlockOutcome,
    chain: &[Decision],
) {
    let count = |d: Decision| chain.iter().filter(|c| **c == d).count() as u64;
    assert_eq!(outcome.decisions.valid, count(Decision::Valid));
    assert_eq!(outcome.decisions.altered, count(Decision::Altered));
    assert_eq!(outcome.decisions.duplicate, count(Decision::Duplicate));
    assert_eq!(outcome.decisions.unpublished, count(Decision::Unpublished));
    let submission = auditor.submission(outcome.block_id).expect("submission");
    let chain_invalid: Vec<_> = submission
        .entries
        .iter()
        .zip(chain)
        .filter(|(_, d)| !d.is_valid())
        .map(|(e, d)| (e.id, *d))
        .collect();
    let engine_invalid: Vec<_> = outcome
        .invalid
        .iter()
        .map(|t| (t.token, t.decision))
        .collect();
    assert_eq!(engine_invalid, chain_invalid);
    let s = outcome.settlement;
    assert_eq!(
        s.escrow_paid.0 + s.loss.0,
        s.vendor_payouts.0 + s.refunds.0 + s.margin.0,
        "money balances"
    );
}

#[test]
fn engine_and_chain_agree_on_valid_altered_unpublished_and_intake_double_spending() {
    let mut world = World::new(64);
    let mut verifier = world.verifier();
    let auditor_key = world.deployment.auditor.pubkey();
    let auditor_token = world.deployment.auditor_token;
    let mut engine = Auditor::new(MemoryStore::new(), config(10, false)).expect("engine");
    let (honest, cheater, vendor) = (
        Pubkey::new_unique(),
        Pubkey::new_unique(),
        Pubkey::new_unique(),
    );
    let tokens = world.tokens.clone();
    let escrow_start = world.escrow_balance();

    // The honest user: 3 deliveries, the 4th transaction completes a block of 12 valid tokens.
    for i in 0..3 {
        let tx = world.tx(honest, vendor, &tokens[i * 3..i * 3 + 3]);
        let processed = engine.process(&tx, &mut verifier).expect("process");
        assert_eq!(processed.intake.verdict, EngineVerdict::Deliver);
    }
    let tx = world.tx(honest, vendor, &tokens[9..12]);
    let processed = engine.process(&tx, &mut verifier).expect("process");
    assert_eq!(processed.intake.verdict, EngineVerdict::Wait);
    let honest_block = &processed.blocks[0];
    assert_eq!(honest_block.verdicts[0].verdict, EngineVerdict::Deliver);
    let chain = chain_decisions(world.ledger.as_ref(), &auditor_key, honest_block.block_id);
    assert_eq!(chain, vec![Decision::Valid; 12]);
    assert_engine_matches_chain(&engine, honest_block, &chain);
    assert_eq!(honest_block.settlement.escrow_paid, Amount(12 * VALUE));
    assert_eq!(escrow_start - world.escrow_balance(), 12 * VALUE);
    assert_eq!(world.balance_of(&auditor_token), 12 * VALUE);

    // The cheater: one good delivery, then a double spend of the honest user's token, caught at
    // intake: the chain never sees it and nothing moves on-chain.
    let tx = world.tx(cheater, vendor, &tokens[12..15]);
    assert_eq!(
        engine
            .process(&tx, &mut verifier)
            .expect("process")
            .intake
            .verdict,
        EngineVerdict::Deliver
    );
    let escrow_before = world.escrow_balance();
    let double_spend = world.tx(cheater, vendor, &tokens[0..1]);
    let processed = engine
        .process(&double_spend, &mut verifier)
        .expect("process");
    assert_eq!(
        processed.intake.verdict,
        EngineVerdict::Reject(RejectCode::DoubleSpending)
    );
    assert!(processed.blocks.is_empty());
    assert_eq!(world.escrow_balance(), escrow_before);
    let batch = fetch_batch(
        world.ledger.as_ref(),
        &pda::batch(
            &world.deployment.bank.pubkey(),
            &world.deployment.auditor.pubkey(),
            1,
        )
        .0,
    )
    .expect("read")
    .expect("batch");
    assert_eq!(
        batch.header.spent_count, 12,
        "only the honest block's tokens are spent"
    );

    // An altered token (issue time changed: its bank signature no longer verifies, which the service
    // layer would also catch) and a serial the bank never published go to the chain.
    let mut altered = tokens[15];
    altered.issued_at += 1;
    assert!(altered.verify_signature().is_err());
    let beyond = Token::sign(
        &world.deployment.bank_key(),
        1,
        500,
        VALUE,
        tokens[0].issued_at,
    );
    let tx = world.tx(cheater, vendor, &[altered, beyond, tokens[16]]);
    assert_eq!(
        engine
            .process(&tx, &mut verifier)
            .expect("process")
            .intake
            .verdict,
        EngineVerdict::Deliver
    );
    let tx = world.tx(cheater, vendor, &tokens[17..20]);
    let auditor_before = world.balance_of(&auditor_token);
    let escrow_before = world.escrow_balance();
    let processed = engine.process(&tx, &mut verifier).expect("process");
    let block = &processed.blocks[0];
    let chain = chain_decisions(world.ledger.as_ref(), &auditor_key, block.block_id);
    use Decision::{Altered, Unpublished, Valid};
    assert_eq!(
        chain,
        vec![
            Valid,
            Valid,
            Valid,
            Altered,
            Unpublished,
            Valid,
            Valid,
            Valid,
            Valid
        ]
    );
    assert_engine_matches_chain(&engine, block, &chain);
    assert_eq!(
        block.verdicts[0].verdict,
        EngineVerdict::Reject(RejectCode::InvalidBlock)
    );
    assert_eq!(
        block.verdicts[0].refund,
        3 * VALUE,
        "the waiting transaction's valid tokens go back"
    );
    // Escrow → auditor: exactly what the engine settled, exactly once.
    assert_eq!(block.settlement.escrow_paid, Amount(7 * VALUE));
    assert_eq!(escrow_before - world.escrow_balance(), 7 * VALUE);
    assert_eq!(world.balance_of(&auditor_token) - auditor_before, 7 * VALUE);
    assert_eq!(
        block.settlement.loss,
        Amount(2 * VALUE),
        "the auditor paid out for two invalid tokens"
    );
    // Eq. 7, neutral, N = W0 = 10: intake penalty γ 0 → 1 gave W = ⌊10·10/11⌋ = 9; this block's
    // β = 2 gives γ = 3 and W = ⌊9 · (8/12)/(10/12)⌋ = ⌊7.2⌋ = 7.
    assert_eq!(block.trust.block_size_before, 9);
    assert_eq!(block.trust.block_size, 7);
    assert_eq!(
        engine
            .user(&cheater)
            .expect("user")
            .expect("known")
            .trust
            .block_size,
        7
    );
}

#[test]
fn paper_mode_engine_leaves_double_spending_to_the_chain_and_agrees_with_it() {
    let mut world = World::new(32);
    // The batch is bound to the deployment's auditor: only it can redeem the tokens.
    let auditor_key = world.deployment.auditor.pubkey();
    let auditor_token = world.deployment.auditor_token;
    let mut verifier = world.verifier();
    let mut engine = Auditor::new(
        SqliteStore::open_in_memory().expect("sqlite"),
        config(6, true),
    )
    .expect("engine");
    let (user, vendor) = (Pubkey::new_unique(), Pubkey::new_unique());
    let tokens = world.tokens.clone();
    // First block: 6 valid tokens.
    let tx = world.tx(user, vendor, &tokens[0..3]);
    engine.process(&tx, &mut verifier).expect("process");
    let tx = world.tx(user, vendor, &tokens[3..6]);
    let first = engine
        .process(&tx, &mut verifier)
        .expect("process")
        .blocks
        .remove(0);
    assert_eq!(first.decisions.valid, 6);
    // Second block: a token spent in the first block, the same fresh token twice, fresh tokens.
    let escrow_before = world.escrow_balance();
    let tx = world.tx(user, vendor, &[tokens[2], tokens[6], tokens[7]]);
    assert_eq!(
        engine
            .process(&tx, &mut verifier)
            .expect("process")
            .intake
            .verdict,
        EngineVerdict::Deliver
    );
    let tx = world.tx(user, vendor, &[tokens[6], tokens[8], tokens[9]]);
    let processed = engine.process(&tx, &mut verifier).expect("process");
    let block = &processed.blocks[0];
    let chain = chain_decisions(world.ledger.as_ref(), &auditor_key, block.block_id);
    use Decision::{Duplicate, Valid};
    assert_eq!(
        chain,
        vec![Duplicate, Valid, Valid, Duplicate, Valid, Valid]
    );
    assert_engine_matches_chain(&engine, block, &chain);
    assert_eq!(block.settlement.escrow_paid, Amount(4 * VALUE));
    assert_eq!(escrow_before - world.escrow_balance(), 4 * VALUE);
    assert_eq!(
        world.balance_of(&auditor_token),
        10 * VALUE,
        "6 + 4 valid tokens paid to this auditor"
    );
}

#[test]
fn block_interrupted_after_its_first_chunk_is_resumed_and_paid_once() {
    let mut world = World::new(128);
    let mut verifier = world.verifier();
    let auditor = world.auditor();
    let mut engine = Auditor::new(MemoryStore::new(), config(100, false)).expect("engine");
    let (user, vendor) = (Pubkey::new_unique(), Pubkey::new_unique());
    let tokens = world.tokens.clone();
    let tx = world.tx(user, vendor, &tokens[0..50]);
    assert_eq!(
        engine.intake(&tx).expect("intake").verdict,
        EngineVerdict::Deliver
    );
    let tx = world.tx(user, vendor, &tokens[50..100]);
    let submission: BlockSubmission = engine
        .intake(&tx)
        .expect("intake")
        .block
        .expect("a block of 100 tokens");
    let escrow_before = world.escrow_balance();

    // A previous run opened the block and sent its first chunk, then crashed.
    let ledger = world.ledger.as_ref();
    let open = ix::block_open(
        &auditor.pubkey(),
        BlockOpenArgs {
            block_id: submission.block_id,
            user,
            token_count: 100,
        },
    );
    ledger
        .send_instructions(&[open], &auditor.pubkey(), &[&auditor])
        .expect("open");
    let entries = submission.entries.clone();
    let accounts = VerifyAccounts {
        auditor: auditor.pubkey(),
        block_id: submission.block_id,
        mint: world.deployment.mint,
        auditor_token: world.deployment.auditor_token,
    };
    let chunks = pack_block(&accounts, 0, &entries).expect("pack");
    assert!(chunks.len() >= 3, "100 tokens need several transactions");
    ledger
        .send_instructions(
            std::slice::from_ref(&chunks[0].instruction),
            &auditor.pubkey(),
            &[&auditor],
        )
        .expect("first chunk");
    let paid_by_first_chunk = escrow_before - world.escrow_balance();
    assert_eq!(paid_by_first_chunk, u64::from(chunks[0].len) * VALUE);

    let resumed = verifier.verify_block(&submission).expect("resume");
    assert!(resumed.resumed);
    assert_eq!(resumed.chunks_skipped, 1);
    assert_eq!(resumed.chunks_sent, chunks.len() - 1);
    assert_eq!(resumed.decisions, vec![Decision::Valid; 100]);
    assert_eq!(resumed.amount_paid, 100 * VALUE);

    // The engine's own resume reads the verified block and applies it once.
    let outcomes = engine.resume(&mut verifier).expect("engine resume");
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].decisions.valid, 100);
    assert_eq!(outcomes[0].settlement.escrow_paid, Amount(100 * VALUE));
    assert_eq!(
        escrow_before - world.escrow_balance(),
        100 * VALUE,
        "every token paid exactly once"
    );
    assert_eq!(
        world.balance_of(&world.deployment.auditor_token),
        100 * VALUE
    );
}

#[test]
fn cluster_down_leaves_the_block_pending_and_resume_applies_it_once() {
    let mut world = World::new(16);
    let port = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let dead: Arc<dyn Ledger> = Arc::new(RpcLedger::with_options(
        format!("http://127.0.0.1:{port}"),
        RpcOptions {
            attempts: 2,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(20),
            ..RpcOptions::default()
        },
    ));
    let mut unreachable = ChainVerifier::new(dead, world.auditor(), world.deployment.auditor_token);
    let mut engine = Auditor::new(MemoryStore::new(), config(4, false)).expect("engine");
    let (user, vendor) = (Pubkey::new_unique(), Pubkey::new_unique());
    let tokens = world.tokens.clone();
    let escrow_before = world.escrow_balance();
    let tx = world.tx(user, vendor, &tokens[0..4]);
    match engine.process(&tx, &mut unreachable) {
        Err(EngineError::Verifier(VerifierError::Unavailable { reason, .. })) => {
            assert!(
                reason.contains("did not answer after 2 attempts"),
                "{reason}"
            );
        }
        other => panic!("expected the verifier to be unavailable, got {other:?}"),
    }
    // Nothing half-written: the block is pending in the store, absent on-chain, nothing paid.
    let pending = engine.store().pending_blocks().expect("pending");
    assert_eq!(pending.len(), 1);
    let block_id = pending[0].block_id;
    assert_eq!(
        engine
            .user(&user)
            .expect("user")
            .expect("known")
            .pending_block,
        Some(block_id)
    );
    assert!(fetch_block(
        world.ledger.as_ref(),
        &pda::block(&world.deployment.auditor.pubkey(), block_id).0
    )
    .expect("read")
    .is_none());
    assert_eq!(world.escrow_balance(), escrow_before);

    // The cluster is back: resume verifies and applies the block once.
    let mut verifier = world.verifier();
    let outcomes = engine.resume(&mut verifier).expect("resume");
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].verdicts[0].verdict, EngineVerdict::Deliver);
    assert_eq!(escrow_before - world.escrow_balance(), 4 * VALUE);
    assert!(engine
        .resume(&mut verifier)
        .expect("second resume")
        .is_empty());
    assert_eq!(escrow_before - world.escrow_balance(), 4 * VALUE);
}

#[test]
fn closing_verified_blocks_reclaims_rent_and_retries_are_answered_from_memory() {
    let world = World::new(16);
    let options = ChainVerifierOptions {
        close_verified_blocks: true,
        ..ChainVerifierOptions::default()
    };
    let mut verifier = ChainVerifier::with_options(
        world.dyn_ledger(),
        world.auditor(),
        world.deployment.auditor_token,
        options,
    );
    let user = Pubkey::new_unique();
    let block = |block_id: u64, tokens: &[Token]| BlockSubmission {
        block_id,
        user,
        entries: tokens.iter().map(|t| t.token_ref()).collect(),
    };
    let first = block(1, &world.tokens[0..3]);
    let verified = verifier.verify_block(&first).expect("block 1");
    assert_eq!(verifier.blocks_to_close(), &[1]);
    let address = verifier.block_address(1);
    let rent = world
        .ledger
        .get_account(&address)
        .expect("read")
        .expect("open block")
        .lamports;
    let lamports_before = world
        .ledger
        .balance(&world.deployment.auditor.pubkey())
        .expect("balance");
    // The next verification closes block 1 first.
    let second = verifier
        .verify_block(&block(2, &world.tokens[3..4]))
        .expect("block 2");
    assert_eq!(second.decisions, vec![Decision::Valid]);
    assert!(
        world.ledger.get_account(&address).expect("read").is_none(),
        "block 1 closed"
    );
    let lamports_after = world
        .ledger
        .balance(&world.deployment.auditor.pubkey())
        .expect("balance");
    let block2_rent = world
        .ledger
        .get_account(&verifier.block_address(2))
        .expect("read")
        .expect("block 2")
        .lamports;
    let fees = world.ledger.fee_for_signatures(1).expect("fee") * (1 + second.transactions as u64);
    assert_eq!(
        lamports_after + block2_rent + fees,
        lamports_before + rent,
        "block 1's rent came back"
    );
    // A retry of block 1 is answered from memory, not re-opened (which would re-decide it).
    let retry = verifier.verify_block(&first).expect("retry");
    assert_eq!(retry.decisions, verified.decisions);
    assert_eq!(retry.transactions, 0);
    assert!(world.ledger.get_account(&address).expect("read").is_none());
    // That retry also closed block 2, queued by its verification.
    assert!(world
        .ledger
        .get_account(&verifier.block_address(2))
        .expect("read")
        .is_none());
    assert!(
        !verifier.close_block(2).expect("already closed"),
        "nothing left to close"
    );
    // Without the option, blocks stay until closed explicitly.
    let mut keeping = world.verifier();
    keeping
        .verify_block(&block(3, &world.tokens[4..5]))
        .expect("block 3");
    keeping
        .verify_block(&block(4, &world.tokens[5..6]))
        .expect("block 4");
    assert!(world
        .ledger
        .get_account(&keeping.block_address(3))
        .expect("read")
        .is_some());
    assert!(keeping.close_block(3).expect("close 3"));
    assert!(world
        .ledger
        .get_account(&keeping.block_address(3))
        .expect("read")
        .is_none());
}

#[test]
fn block_id_reused_for_another_user_is_refused_instead_of_answered_with_stale_decisions() {
    let world = World::new(8);
    let mut verifier = world.verifier();
    let token = |i: usize| world.tokens[i].token_ref();
    let original = BlockSubmission {
        block_id: 5,
        user: Pubkey::new_unique(),
        entries: vec![token(0), token(1)],
    };
    verifier.verify_block(&original).expect("original");
    let escrow_before = world.escrow_balance();
    let forged = BlockSubmission {
        block_id: 5,
        user: Pubkey::new_unique(),
        entries: vec![token(2), token(3)],
    };
    match verifier.verify_block(&forged) {
        Err(ChainVerifierError::BlockMismatch {
            block_id,
            found_user,
            ..
        }) => {
            assert_eq!(block_id, 5);
            assert_eq!(found_user, original.user);
        }
        other => panic!("expected a block mismatch, got {other:?}"),
    }
    assert_eq!(
        world.escrow_balance(),
        escrow_before,
        "nothing verified or paid for the reused id"
    );
}

#[test]
fn verifier_refuses_a_block_larger_than_the_program_accepts_before_sending_anything() {
    let world = World::new(8);
    let mut verifier = world.verifier();
    let entry = world.tokens[0].token_ref();
    let huge = BlockSubmission {
        block_id: 9,
        user: Pubkey::new_unique(),
        entries: vec![entry; 10_001],
    };
    assert!(matches!(
        verifier.verify_block(&huge),
        Err(ChainVerifierError::TooLarge { tokens: 10_001, .. })
    ));
    assert!(world
        .ledger
        .get_account(&verifier.block_address(9))
        .expect("read")
        .is_none());
}

//! The program-level scenario: one bank publishes bank-signed tokens, one auditor verifies a
//! block that produces every decision code, and the escrow pays the auditor for valid tokens
//! exactly once. `mupib demo --program-only` prints its [`ScenarioReport`]; the CLI's tests
//! assert on it. It deploys with `mupib_chain::deploy`, publishes with `mupib_chain::batch` and
//! verifies with `mupib_chain::verifier::ChainVerifier`, the flows every `mupib` command uses.
//!
//! Steps (all real transactions on the given ledger):
//! 1. airdrop SOL to the admin, the bank and the auditor; the admin creates an SPL mint;
//! 2. `config_init`, `bank_register`, `auditor_register`; token accounts; the bank is minted money;
//! 3. batch 1 (sealed, `batch_size` tokens) and batch 2 (published but never sealed);
//! 4. block 1 spends one token of batch 1 (so it is a duplicate later);
//! 5. block 2 holds fresh tokens (valid), an altered token, the token spent in block 1, a token
//!    twice, a serial beyond batch 1, a token of the unsealed batch 2 and a token of a batch that
//!    does not exist; it is verified in packed chunks, finalized and closed.

use std::sync::Arc;

use anyhow::{bail, Context};
use mupib_chain::deploy::Deployment;
use mupib_chain::ledger::Ledger;
use mupib_chain::program::accounts::{fetch_block, token_balance};
use mupib_chain::program::instructions as ix;
use mupib_chain::program::pda;
use mupib_chain::verifier::ChainVerifier;
use mupib_protocol::block::BlockSubmission;
use mupib_protocol::decision::{Decision, DecisionCounts};
use mupib_protocol::token::{Token, TokenRef};
use serde::Serialize;
use solana_sdk::signature::{Keypair, Signer};

/// Parameters of the scenario.
#[derive(Debug, Clone)]
pub struct ScenarioParams {
    /// Tokens in the sealed batch (at least 8).
    pub batch_size: u32,
    /// Fresh valid tokens in the main block (at most `batch_size − 3`).
    pub valid_tokens: u32,
    /// Value of one token in mint base units.
    pub token_value: u64,
    /// Decimals of the payment mint.
    pub mint_decimals: u8,
}

impl Default for ScenarioParams {
    fn default() -> Self {
        ScenarioParams {
            batch_size: 64,
            valid_tokens: 40,
            token_value: 10_000,
            mint_decimals: 6,
        }
    }
}

/// One position of the main block in the report.
#[derive(Debug, Clone, Serialize)]
pub struct TokenRow {
    /// Block position.
    pub position: u32,
    /// `bank:batch_id:serial`.
    pub token: String,
    /// What the token is, in words.
    pub case: &'static str,
    /// The decision the scenario built this token to get.
    pub expected: &'static str,
    /// The chain's decision code, `"00"`..`"11"`.
    pub code: String,
    /// The chain's decision name.
    pub decision: &'static str,
}

/// Balances of one SPL token account before and after the main block.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BalanceChange {
    /// Before, in base units.
    pub before: u64,
    /// After, in base units.
    pub after: u64,
}

/// Everything the scenario did and saw.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    /// Program id.
    pub program: String,
    /// Payment mint.
    pub mint: String,
    /// Bank key.
    pub bank: String,
    /// Auditor key.
    pub auditor: String,
    /// Value of one token.
    pub token_value: u64,
    /// Sealed batch PDA.
    pub batch: String,
    /// Its escrow.
    pub escrow: String,
    /// Block 2 (the main block) PDA.
    pub block: String,
    /// Per-position decisions of the main block.
    pub tokens: Vec<TokenRow>,
    /// Counts of the main block as the chain recorded them.
    pub counts: DecisionCounts,
    /// Amount the chain paid the auditor for the main block.
    pub amount_paid: u64,
    /// Escrow of the sealed batch.
    pub escrow_balance: BalanceChange,
    /// The auditor's token account.
    pub auditor_balance: BalanceChange,
    /// Verification transactions of the main block.
    pub chunk_transactions: usize,
    /// Every transaction the scenario sent.
    pub transactions: usize,
    /// Whether the main block's account was closed (rent back to the auditor).
    pub block_closed: bool,
    /// Every position's decision matched the expected one.
    pub all_as_expected: bool,
}

/// Runs the scenario on `ledger` and reports what the chain decided and paid.
///
/// # Errors
/// Bad sizes, or the failing step (deployment, publishing, verification) with its cause.
pub fn run(ledger: Arc<dyn Ledger>, params: &ScenarioParams) -> anyhow::Result<ScenarioReport> {
    if params.batch_size < 8
        || params.valid_tokens == 0
        || params.valid_tokens > params.batch_size - 3
    {
        bail!("scenario sizes: batch_size ≥ 8 and 1 ≤ valid_tokens ≤ batch_size − 3");
    }
    let value = params.token_value;
    let funds = u64::from(params.batch_size)
        .checked_add(8)
        .and_then(|n| n.checked_mul(value))
        .context("bank funds overflow u64")?;
    let deployment = Deployment::setup(ledger.as_ref(), params.mint_decimals, funds)
        .context("deploying the program, the bank and the auditor")?;
    let mut transactions = deployment.transactions;
    let bank = deployment.bank.pubkey();
    let user = Keypair::new().pubkey();

    let (sealed, published) =
        deployment.issue_batch(ledger.as_ref(), 1, params.batch_size, value, true)?;
    transactions += usize::try_from(published.transactions)?;
    let (unsealed, published) = deployment.issue_batch(ledger.as_ref(), 2, 4, value, false)?;
    transactions += usize::try_from(published.transactions)?;

    let mut verifier = ChainVerifier::new(
        Arc::clone(&ledger),
        Keypair::new_from_array(*deployment.auditor.secret_bytes()),
        deployment.auditor_token,
    );
    // Block 1 spends the last token of batch 1, so it is a duplicate in block 2.
    let spent_earlier = &sealed[sealed.len() - 1];
    let first = verifier.verify_block(&BlockSubmission {
        block_id: 1,
        user,
        entries: vec![spent_earlier.token_ref()],
    })?;
    transactions += first.transactions;

    // Block 2: what each position is and what it must get.
    let mut cases: Vec<(TokenRef, String, &'static str, Decision)> = Vec::new();
    let id = |t: &Token| t.id().to_string();
    for token in &sealed[..params.valid_tokens as usize] {
        cases.push((
            token.token_ref(),
            id(token),
            "fresh token of the sealed batch",
            Decision::Valid,
        ));
    }
    let mut altered = sealed[params.valid_tokens as usize];
    altered.value = altered.value.saturating_mul(100);
    cases.push((
        altered.token_ref(),
        id(&altered),
        "altered copy (value changed)",
        Decision::Altered,
    ));
    cases.push((
        spent_earlier.token_ref(),
        id(spent_earlier),
        "spent earlier, in block 1",
        Decision::Duplicate,
    ));
    cases.push((
        sealed[0].token_ref(),
        id(&sealed[0]),
        "second copy in this block",
        Decision::Duplicate,
    ));
    let beyond = Token::sign(
        &deployment.bank_key(),
        1,
        params.batch_size + 10,
        value,
        sealed[0].issued_at,
    );
    cases.push((
        beyond.token_ref(),
        id(&beyond),
        "serial beyond the batch",
        Decision::Unpublished,
    ));
    cases.push((
        unsealed[0].token_ref(),
        id(&unsealed[0]),
        "batch published but not sealed",
        Decision::Unpublished,
    ));
    let ghost = Token::sign(&deployment.bank_key(), 99, 0, value, sealed[0].issued_at);
    cases.push((
        ghost.token_ref(),
        id(&ghost),
        "batch that does not exist",
        Decision::Unpublished,
    ));

    let batch = pda::batch(&bank, &deployment.auditor.pubkey(), 1).0;
    let escrow = pda::escrow(&batch).0;
    let escrow_before = token_balance(ledger.as_ref(), &escrow)?;
    let auditor_before = token_balance(ledger.as_ref(), &deployment.auditor_token)?;
    let main = verifier.verify_block(&BlockSubmission {
        block_id: 2,
        user,
        entries: cases.iter().map(|c| c.0).collect(),
    })?;
    transactions += main.transactions;
    let escrow_after = token_balance(ledger.as_ref(), &escrow)?;
    let auditor_after = token_balance(ledger.as_ref(), &deployment.auditor_token)?;
    let recorded = fetch_block(ledger.as_ref(), &main.block)?
        .context("block 2 is missing after its verification")?
        .header;

    let auditor_key = deployment.auditor.pubkey();
    ledger.send_instructions(
        &[
            ix::block_close(&auditor_key, 1),
            ix::block_close(&auditor_key, 2),
        ],
        &auditor_key,
        &[&deployment.auditor],
    )?;
    transactions += 1;
    let block_closed = ledger.get_account(&main.block)?.is_none();

    let mut tokens = Vec::with_capacity(cases.len());
    let mut all_as_expected = true;
    for (position, ((_, token, case, expected), decision)) in
        cases.iter().zip(&main.decisions).enumerate()
    {
        all_as_expected &= decision == expected;
        tokens.push(TokenRow {
            position: u32::try_from(position)?,
            token: token.clone(),
            case,
            expected: expected.name(),
            code: format!("{:02b}", decision.code()),
            decision: decision.name(),
        });
    }
    all_as_expected &= main.decisions.len() == cases.len();
    Ok(ScenarioReport {
        program: mupib::ID.to_string(),
        mint: deployment.mint.to_string(),
        bank: bank.to_string(),
        auditor: auditor_key.to_string(),
        token_value: value,
        batch: batch.to_string(),
        escrow: escrow.to_string(),
        block: main.block.to_string(),
        tokens,
        counts: DecisionCounts {
            valid: u64::from(recorded.valid_count),
            altered: u64::from(recorded.altered_count),
            duplicate: u64::from(recorded.duplicate_count),
            unpublished: u64::from(recorded.unpublished_count),
        },
        amount_paid: recorded.amount_paid,
        escrow_balance: BalanceChange {
            before: escrow_before,
            after: escrow_after,
        },
        auditor_balance: BalanceChange {
            before: auditor_before,
            after: auditor_after,
        },
        chunk_transactions: main.chunks_sent,
        transactions,
        block_closed,
        all_as_expected,
    })
}

//! The program-level scenario: one bank publishes bank-signed tokens, one auditor verifies a
//! block that produces every decision code, and the escrow pays the auditor for valid tokens
//! exactly once. `mupib demo` prints its [`ScenarioReport`]; the SDK's tests assert on it.
//!
//! Steps (all real transactions on the given ledger):
//! 1. airdrop SOL to the admin, the bank and the auditor; the admin creates an SPL mint;
//! 2. `config_init`, `bank_register`, `auditor_register`; token accounts; the bank is minted money;
//! 3. batch 1 (sealed, `batch_size` tokens) and batch 2 (published but never sealed);
//! 4. block 1 spends one token of batch 1 (so it is a duplicate later);
//! 5. block 2 holds fresh tokens (valid), an altered token, the token spent in block 1, a token
//!    twice, a serial beyond batch 1, a token of the unsealed batch 2 and a token of a batch that
//!    does not exist; it is verified in packed chunks, finalized and closed.

use ed25519_dalek::SigningKey;
use mupib::constants::{
    DECISION_ALTERED, DECISION_DUPLICATE, DECISION_UNPUBLISHED, DECISION_VALID,
};
use mupib::instructions::BatchCreateArgs;
use serde::Serialize;
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::{Keypair, Signer};

use super::accounts::token_balance;
use super::client::{self, ClientError};
use super::instructions as ix;
use super::packer::BlockEntry;
use super::pda;
use crate::ledger::Ledger;
use crate::token::Token;

/// Name of a decision code (`valid`, `altered`, `duplicate`, `unpublished`, `undecided`).
pub fn decision_name(code: u8) -> &'static str {
    match code {
        DECISION_VALID => "valid",
        DECISION_ALTERED => "altered",
        DECISION_DUPLICATE => "duplicate",
        DECISION_UNPUBLISHED => "unpublished",
        _ => "undecided",
    }
}

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

/// Per-code counts of a block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DecisionCounts {
    /// `11`.
    pub valid: u32,
    /// `01`.
    pub altered: u32,
    /// `10`.
    pub duplicate: u32,
    /// `00`.
    pub unpublished: u32,
}

/// The parties and accounts of a µPIB deployment set up by [`setup`].
pub struct Deployment {
    /// Program admin (also the mint authority).
    pub admin: Keypair,
    /// Registered bank.
    pub bank: Keypair,
    /// Registered auditor.
    pub auditor: Keypair,
    /// Payment mint.
    pub mint: Pubkey,
    /// The bank's token account.
    pub bank_token: Pubkey,
    /// The auditor's token account.
    pub auditor_token: Pubkey,
    /// Transactions sent so far.
    pub transactions: usize,
}

/// Lamports airdropped to each actor.
const ACTOR_LAMPORTS: u64 = 10_000_000_000;

/// Sets up a fresh deployment: funded actors, a new mint, `Config`, a registered bank and
/// auditor, their token accounts, and `bank_funds` minted to the bank.
pub fn setup(
    ledger: &dyn Ledger,
    mint_decimals: u8,
    bank_funds: u64,
) -> Result<Deployment, ClientError> {
    let admin = Keypair::new();
    let bank = Keypair::new();
    let auditor = Keypair::new();
    let mint = Keypair::new();
    let bank_token = Keypair::new();
    let auditor_token = Keypair::new();
    let mut transactions = 0usize;
    for actor in [&admin, &bank, &auditor] {
        ledger.airdrop(&actor.pubkey(), ACTOR_LAMPORTS)?;
        transactions += 1;
    }
    client::create_mint(ledger, &admin, &mint, &admin.pubkey(), mint_decimals)?;
    let admin_key = admin.pubkey();
    ledger.send_instructions(
        &[ix::config_init(&admin_key, &mint.pubkey())],
        &admin_key,
        &[&admin],
    )?;
    ledger.send_instructions(
        &[
            ix::bank_register(&admin_key, &bank.pubkey()),
            ix::auditor_register(&admin_key, &auditor.pubkey()),
        ],
        &admin_key,
        &[&admin],
    )?;
    client::create_token_account(ledger, &bank, &bank_token, &mint.pubkey(), &bank.pubkey())?;
    client::create_token_account(
        ledger,
        &auditor,
        &auditor_token,
        &mint.pubkey(),
        &auditor.pubkey(),
    )?;
    client::mint_to(
        ledger,
        &admin,
        &mint.pubkey(),
        &bank_token.pubkey(),
        bank_funds,
    )?;
    transactions += 6;
    Ok(Deployment {
        admin,
        bank,
        auditor,
        mint: mint.pubkey(),
        bank_token: bank_token.pubkey(),
        auditor_token: auditor_token.pubkey(),
        transactions,
    })
}

/// The bank's ed25519 signing key (the same key as its Solana keypair).
pub fn signing_key(keypair: &Keypair) -> SigningKey {
    SigningKey::from_bytes(keypair.secret_bytes())
}

/// A block entry for `token` with its real truncated digest.
pub fn entry_of(token: &Token) -> BlockEntry {
    BlockEntry {
        bank: token.bank,
        batch_id: token.batch_id,
        serial: token.serial,
        token_digest: token.token_digest16(),
    }
}

/// Commitments of a batch of tokens, computed with the program's own `mupib::commitment`.
pub fn commitments_of(tokens: &[Token]) -> Vec<[u8; 16]> {
    tokens
        .iter()
        .map(|t| mupib::commitment(&t.token_digest16()))
        .collect()
}

/// Creates, funds, publishes and (if `seal`) seals a batch of freshly signed tokens; returns them.
pub fn issue_batch(
    ledger: &dyn Ledger,
    deployment: &Deployment,
    batch_id: u64,
    token_count: u32,
    value: u64,
    seal: bool,
) -> Result<(Vec<Token>, usize), ClientError> {
    let now = ledger.clock()?.unix_timestamp;
    let tokens = Token::sign_batch(
        &signing_key(&deployment.bank),
        batch_id,
        token_count,
        value,
        now,
    );
    let args = BatchCreateArgs {
        batch_id,
        token_count,
        value,
        issued_at: now,
        expires_at: now
            .checked_add(30 * 24 * 3600)
            .ok_or(ClientError::OutOfRange("expiry"))?,
    };
    let commitments = commitments_of(&tokens);
    if seal {
        let outcome = client::publish_batch(
            ledger,
            &deployment.bank,
            &deployment.mint,
            &deployment.bank_token,
            args,
            &commitments,
        )?;
        return Ok((tokens, outcome.receipts.len()));
    }
    // Published but never sealed: create and write every commitment, stop before the seal.
    let bank = &deployment.bank;
    let bank_key = bank.pubkey();
    let mut sent = 0usize;
    ledger.send_instructions(
        &[ix::batch_create(
            &bank_key,
            &deployment.mint,
            &deployment.bank_token,
            args,
        )],
        &bank_key,
        &[bank],
    )?;
    sent += 1;
    let per_tx = client::commitments_per_publish_transaction(&bank_key, batch_id)?;
    let mut start = 0u32;
    for chunk in commitments.chunks(per_tx) {
        ledger.send_instructions(
            &[ix::batch_publish(
                &bank_key,
                batch_id,
                start,
                chunk.to_vec(),
            )],
            &bank_key,
            &[bank],
        )?;
        sent += 1;
        start = start
            .checked_add(u32::try_from(chunk.len()).map_err(|_| ClientError::OutOfRange("chunk"))?)
            .ok_or(ClientError::OutOfRange("serial"))?;
    }
    Ok((tokens, sent))
}

/// Runs the scenario on `ledger` and reports what the chain decided and paid.
pub fn run(ledger: &dyn Ledger, params: &ScenarioParams) -> Result<ScenarioReport, ClientError> {
    if params.batch_size < 8
        || params.valid_tokens == 0
        || params.valid_tokens > params.batch_size - 3
    {
        return Err(ClientError::OutOfRange(
            "scenario sizes (batch_size ≥ 8, 1 ≤ valid_tokens ≤ batch_size − 3)",
        ));
    }
    let value = params.token_value;
    let funds = u64::from(params.batch_size)
        .checked_add(8)
        .and_then(|n| n.checked_mul(value))
        .ok_or(ClientError::OutOfRange("bank funds"))?;
    let deployment = setup(ledger, params.mint_decimals, funds)?;
    let mut transactions = deployment.transactions;
    let bank = deployment.bank.pubkey();
    let auditor = &deployment.auditor;
    let user = Keypair::new().pubkey();

    let (sealed, sent) = issue_batch(ledger, &deployment, 1, params.batch_size, value, true)?;
    transactions += sent;
    let (unsealed, sent) = issue_batch(ledger, &deployment, 2, 4, value, false)?;
    transactions += sent;

    // Block 1 spends the last token of batch 1, so it is a duplicate in block 2.
    let spent_earlier = &sealed[sealed.len() - 1];
    let first = client::verify_block(
        ledger,
        auditor,
        &deployment.mint,
        &deployment.auditor_token,
        1,
        &user,
        &[entry_of(spent_earlier)],
    )?;
    transactions += first.receipts.len();

    // Block 2: what each position is and what it must get.
    let mut cases: Vec<(BlockEntry, String, &'static str, u8)> = Vec::new();
    let id = |t: &Token| format!("{}:{}:{}", t.bank, t.batch_id, t.serial);
    for token in &sealed[..params.valid_tokens as usize] {
        cases.push((
            entry_of(token),
            id(token),
            "fresh token of the sealed batch",
            DECISION_VALID,
        ));
    }
    let mut altered = sealed[params.valid_tokens as usize];
    altered.value = altered.value.saturating_mul(100);
    cases.push((
        entry_of(&altered),
        id(&altered),
        "altered copy (value changed)",
        DECISION_ALTERED,
    ));
    cases.push((
        entry_of(spent_earlier),
        id(spent_earlier),
        "spent earlier, in block 1",
        DECISION_DUPLICATE,
    ));
    cases.push((
        entry_of(&sealed[0]),
        id(&sealed[0]),
        "second copy in this block",
        DECISION_DUPLICATE,
    ));
    let beyond = Token::sign(
        &signing_key(&deployment.bank),
        1,
        params.batch_size + 10,
        value,
        sealed[0].issued_at,
    );
    cases.push((
        entry_of(&beyond),
        id(&beyond),
        "serial beyond the batch",
        DECISION_UNPUBLISHED,
    ));
    cases.push((
        entry_of(&unsealed[0]),
        id(&unsealed[0]),
        "batch published but not sealed",
        DECISION_UNPUBLISHED,
    ));
    let ghost = Token::sign(
        &signing_key(&deployment.bank),
        99,
        0,
        value,
        sealed[0].issued_at,
    );
    cases.push((
        entry_of(&ghost),
        id(&ghost),
        "batch that does not exist",
        DECISION_UNPUBLISHED,
    ));

    let batch = pda::batch(&bank, 1).0;
    let escrow = pda::escrow(&batch).0;
    let escrow_before = token_balance(ledger, &escrow)?;
    let auditor_before = token_balance(ledger, &deployment.auditor_token)?;
    let entries: Vec<BlockEntry> = cases.iter().map(|c| c.0).collect();
    let main = client::verify_block(
        ledger,
        auditor,
        &deployment.mint,
        &deployment.auditor_token,
        2,
        &user,
        &entries,
    )?;
    transactions += main.receipts.len();
    let escrow_after = token_balance(ledger, &escrow)?;
    let auditor_after = token_balance(ledger, &deployment.auditor_token)?;

    let auditor_key = auditor.pubkey();
    ledger.send_instructions(
        &[
            ix::block_close(&auditor_key, 1),
            ix::block_close(&auditor_key, 2),
        ],
        &auditor_key,
        &[auditor],
    )?;
    transactions += 1;
    let block_closed = ledger.get_account(&main.block)?.is_none();

    let mut tokens = Vec::with_capacity(cases.len());
    let mut all_as_expected = true;
    for (position, (_, token, case, expected)) in cases.iter().enumerate() {
        let position = u32::try_from(position).map_err(|_| ClientError::OutOfRange("position"))?;
        let code = main
            .state
            .decision(position)
            .unwrap_or(mupib::constants::DECISION_UNDECIDED);
        all_as_expected &= code == *expected;
        tokens.push(TokenRow {
            position,
            token: token.clone(),
            case,
            expected: decision_name(*expected),
            code: format!("{code:02b}"),
            decision: decision_name(code),
        });
    }
    let header = &main.state.header;
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
            valid: header.valid_count,
            altered: header.altered_count,
            duplicate: header.duplicate_count,
            unpublished: header.unpublished_count,
        },
        amount_paid: header.amount_paid,
        escrow_balance: BalanceChange {
            before: escrow_before,
            after: escrow_after,
        },
        auditor_balance: BalanceChange {
            before: auditor_before,
            after: auditor_after,
        },
        chunk_transactions: main.chunk_transactions,
        transactions,
        block_closed,
        all_as_expected,
    })
}

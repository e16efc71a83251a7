//! `mupib demo` (default): the whole system end to end on the embedded ledger.
//!
//! A bank mints a sealed batch on the chain; an honest user, a double-spender and a forger pay
//! several vendors through the real auditor service (HTTP on loopback, in-process), whose blocks
//! are verified on the same ledger by [`ChainVerifier`] and whose vendor payouts are settled
//! on-chain by [`LedgerPayouts`]. One vendor double-sells a transaction.
//!
//! Everything in the report is read back afterwards — users and vendors from the service's HTTP
//! endpoints, decision counts and the escrow's payments from the `Block` accounts on the ledger,
//! payouts from the vendors' SPL balances, margin and loss from the auditor's store — never
//! recomputed from the script. [`MoneyCheck`] then checks the paper's balance (SPEC §4, eqs.
//! 10–12): escrow paid = payouts + refunds + auditor margin − loss. The report types and their
//! rendering are in [`super::report`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use ed25519_dalek::SigningKey;
use mupib_auditor::store::SqliteStore;
use mupib_auditor::{Auditor, AuditorConfig, BlockOutcome};
use mupib_chain::batch_directory::LedgerBatches;
use mupib_chain::deploy::{Deployment, BATCH_LIFETIME_SECS};
use mupib_chain::ledger::{EmbeddedLedger, Ledger};
use mupib_chain::payouts::LedgerPayouts;
use mupib_chain::program::accounts::{decode_token_account, fetch_block};
use mupib_chain::program::pda;
use mupib_chain::spl;
use mupib_chain::verifier::ChainVerifier;
use mupib_client::bank::{BankClient, MintRequest};
use mupib_client::vendor::{VendorClient, VendorError};
use mupib_protocol::cert::{pubkey_of, Certificate, Registry, Role};
use mupib_protocol::decision::DecisionCounts;
use mupib_protocol::money::Withholding;
use mupib_protocol::reject::RejectReason;
use mupib_protocol::response::Verdict;
use mupib_protocol::token::Token;
use mupib_protocol::transaction::PaymentTransaction;
use mupib_protocol::trust::{TrustModel, TrustScale};
use mupib_protocol::wire::SubmitAnswer;
use mupib_protocol::wire::{BlockTrace, StatusView};
use mupib_protocol::Pubkey;
use mupib_service::{system_clock, RunningService, ServiceConfig, ServiceParts, STORE_FILE};
use solana_sdk::signature::{Keypair, Signer};

use super::report::{BlockReport, MoneyCheck, SystemReport, UserReport, VendorReport};

/// Settings of the system demo.
#[derive(Debug, Clone, Copy)]
pub struct SystemParams {
    /// Tokens in the bank's sealed batch.
    pub batch_size: u32,
    /// Value of one token in base units (6 decimals).
    pub token_value: u64,
    /// W0, every user's initial block size.
    pub initial_block_size: u64,
    /// ρ, the auditor's withholding, in basis points.
    pub withholding_bps: u16,
}

impl Default for SystemParams {
    fn default() -> Self {
        SystemParams {
            batch_size: 40,
            token_value: 1_000_000,
            initial_block_size: 4,
            withholding_bps: 2_000,
        }
    }
}

struct Party {
    name: &'static str,
    key: SigningKey,
    cert: Certificate,
    rejections: Vec<String>,
    delivered: u64,
}

struct Vendor {
    name: &'static str,
    key: SigningKey,
    client: VendorClient,
    account: Pubkey,
    rejections: Vec<String>,
}

fn fresh_key() -> SigningKey {
    mupib_chain::signing_key(&Keypair::new())
}

fn now() -> anyhow::Result<i64> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs();
    i64::try_from(secs).context("the system clock is out of range")
}

fn reason_code(reason: &RejectReason) -> String {
    serde_json::to_value(reason)
        .ok()
        .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn token_balance(ledger: &dyn Ledger, account: &Pubkey) -> anyhow::Result<u64> {
    let account_data = ledger
        .get_account(account)?
        .ok_or_else(|| anyhow!("token account {account} does not exist on the ledger"))?;
    Ok(decode_token_account(&account_data)?.amount)
}

/// Tokens handed out in order from the minted batch.
struct Purse {
    tokens: Vec<Token>,
    next: usize,
}

impl Purse {
    fn take(&mut self, count: usize) -> anyhow::Result<Vec<Token>> {
        let end = self
            .next
            .checked_add(count)
            .filter(|end| *end <= self.tokens.len())
            .ok_or_else(|| {
                anyhow!(
                    "the minted batch of {} tokens is too small for the demo; use a larger --batch-size",
                    self.tokens.len()
                )
            })?;
        let taken = self.tokens[self.next..end].to_vec();
        self.next = end;
        Ok(taken)
    }
}

/// Signs a payment from `user` to `vendor`, has the vendor countersign and submit it, waits for
/// the final answer, and records a rejection or delivery.
fn pay(
    user: &mut Party,
    vendor: &Vendor,
    tokens: Vec<Token>,
    info: &str,
) -> anyhow::Result<(PaymentTransaction, SubmitAnswer)> {
    let payment = PaymentTransaction::user_sign(
        &user.key,
        user.cert.clone(),
        vendor.client.certificate().clone(),
        now()?,
        tokens,
        info,
    )?;
    let tx = vendor.client.countersign(payment)?;
    let mut answer = vendor.client.submit(&tx)?;
    if !answer.is_final {
        answer = vendor
            .client
            .await_final(&tx.id()?, Duration::from_secs(60))?;
    }
    match &answer.response.verdict {
        Verdict::Deliver => user.delivered += 1,
        Verdict::Reject(reason) => user.rejections.push(reason_code(reason)),
        Verdict::Wait => bail!("transaction {} still waiting after 60 s", tx.id()?),
    }
    Ok((tx, answer))
}

/// The user's block size W and suspension as the service reports them; a user the auditor has
/// not seen yet (HTTP 404) has W0 and is not suspended.
fn standing(vendor: &Vendor, user: &Party, initial: u64) -> anyhow::Result<(u64, bool)> {
    match vendor.client.user(&user.cert.subject) {
        Ok(view) => Ok((view.block_size, view.suspended)),
        Err(VendorError::Refused { status: 404, .. }) => Ok((initial, false)),
        Err(error) => Err(error.into()),
    }
}

/// Token counts per transaction of one block of size `w`: 1, 2, 1, 2, … summing to `w`.
fn split(w: u64) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut remaining = usize::try_from(w).unwrap_or(0);
    let mut next = 1usize;
    while remaining > 0 {
        let size = next.min(remaining);
        sizes.push(size);
        remaining -= size;
        next = if next == 1 { 2 } else { 1 };
    }
    sizes
}

/// The same payment countersigned again with another nonce: a second valid vendor signature over
/// the same bytes (Ed25519 lets a signer choose its nonce), so other bytes under the same
/// transaction id — what a vendor re-selling a sold payment presents.
fn recountersign(
    vendor: &SigningKey,
    tx: &PaymentTransaction,
) -> anyhow::Result<PaymentTransaction> {
    use ed25519_dalek::hazmat::{raw_sign, ExpandedSecretKey};
    use sha2::{Digest, Sha512};
    let mut expanded = ExpandedSecretKey::from_bytes(&Sha512::digest(vendor.to_bytes()).into());
    expanded.hash_prefix = [0x5a; 32];
    let signature = raw_sign::<Sha512>(
        &expanded,
        &tx.vendor_signed_bytes()?,
        &vendor.verifying_key(),
    );
    let mut resold = tx.clone();
    resold.vendor_signature = signature.to_bytes();
    Ok(resold)
}

fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::blocking::Client,
    url: &str,
) -> anyhow::Result<T> {
    let response = http.get(url).send().with_context(|| format!("GET {url}"))?;
    let status = response.status();
    if !status.is_success() {
        bail!(
            "GET {url} answered {status}: {}",
            response.text().unwrap_or_default()
        );
    }
    response
        .json()
        .with_context(|| format!("GET {url}: unexpected body"))
}

/// Runs the system demo in `dir` (which must be empty or absent), reporting each phase through
/// `progress`.
///
/// # Errors
/// Any failure of the ledger, the service or a check of the script's own expectations, with what
/// failed; the balance itself is reported (see [`SystemReport::holds`]), not raised.
pub fn run(
    dir: &Path,
    params: &SystemParams,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<SystemReport> {
    if dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "the data directory {} is not empty; the demo needs a fresh one (remove it or choose another --data-dir)",
            dir.display()
        );
    }
    let value = params.token_value;
    progress(&format!(
        "ledger: opening the embedded ledger in {}",
        dir.join("ledger").display()
    ));
    let ledger: Arc<dyn Ledger> = Arc::new(
        EmbeddedLedger::open(dir.join("ledger"))
            .with_context(|| format!("cannot open the embedded ledger in {}", dir.display()))?,
    );
    let batch_value = u64::from(params.batch_size)
        .checked_mul(value)
        .ok_or_else(|| anyhow!("batch size × token value overflows u64"))?;
    let deployment = Deployment::setup(ledger.as_ref(), 6, batch_value)
        .context("deploying the program configuration, bank and auditor")?;
    progress("deploy: program configured; bank and auditor registered on-chain");

    // The bank mints with the same resumable client as `mupib bank mint`: signs the tokens,
    // creates and funds the escrow, publishes the commitments in chunks, seals.
    let bank_client = BankClient::new(
        ledger.as_ref(),
        &deployment.bank_key(),
        dir.join("bank.json"),
    );
    let expires_at = ledger
        .clock()?
        .unix_timestamp
        .checked_add(BATCH_LIFETIME_SECS)
        .context("expiry overflows")?;
    let minted = bank_client
        .mint(
            MintRequest {
                count: params.batch_size,
                value,
                expires_at,
                first_batch_id: None,
                auditor: deployment.auditor.pubkey(),
            },
            &mut |_| {},
        )
        .context("the bank's mint (publish, fund, seal) failed")?;
    let tokens = minted.tokens;
    progress(&format!(
        "bank: minted batch 1 — {} tokens of {} base units, escrow funded and sealed in {} transactions",
        params.batch_size, value, minted.transactions
    ));
    let mut purse = Purse { tokens, next: 0 };

    // Identities: a certificate authority, the bank, three users, three vendors.
    let authority = fresh_key();
    let issue = |key: &SigningKey, role: Role, name: &str| {
        Certificate::issue(&authority, pubkey_of(key), role, name, 0, i64::MAX / 2)
    };
    let mut registry = Registry::with_authorities([pubkey_of(&authority)])?;
    registry.register(issue(&deployment.bank_key(), Role::Bank, "bank")?)?;
    let mut users = Vec::new();
    for name in ["honest", "double-spender", "forger"] {
        let key = fresh_key();
        let cert = issue(&key, Role::User, name)?;
        registry.register(cert.clone())?;
        users.push(Party {
            name,
            key,
            cert,
            rejections: Vec::new(),
            delivered: 0,
        });
    }
    let mut vendor_keys = Vec::new();
    let mut destinations = HashMap::new();
    for name in ["vendor-a", "vendor-b", "double-seller"] {
        let key = fresh_key();
        let cert = issue(&key, Role::Vendor, name)?;
        registry.register(cert.clone())?;
        let account = Keypair::new();
        spl::create_token_account(
            ledger.as_ref(),
            &deployment.auditor,
            &account,
            &deployment.mint,
            &pubkey_of(&key),
        )?;
        destinations.insert(pubkey_of(&key), account.pubkey());
        vendor_keys.push((name, key, cert, account.pubkey()));
    }
    // The auditor's float: it pays vendors at once for delivered payments, before the escrow
    // pays it for the block.
    spl::mint_to(
        ledger.as_ref(),
        &deployment.admin,
        &deployment.mint,
        &deployment.auditor_token,
        batch_value,
    )?;
    progress("parties: certificates for 3 users and 3 vendors; vendor payout accounts created");

    // The double-spender's tokens it will spend twice (first honestly, below).
    let double_spent = purse.take(4)?;

    // The real auditor service, over HTTP on loopback, verifying on the same ledger.
    let auditor_keypair = || Keypair::new_from_array(*deployment.auditor.secret_bytes());
    let auditor_key = deployment.auditor_key();
    let auditor = pubkey_of(&auditor_key);
    let auditor_balance_before = token_balance(ledger.as_ref(), &deployment.auditor_token)?;
    let engine = AuditorConfig {
        withholding: Withholding::from_bps(params.withholding_bps)?,
        trust_model: TrustModel::Neutral,
        trust_scale: TrustScale::Initial,
        initial_block_size: params.initial_block_size,
        paper_mode: false,
    };
    let mut config = ServiceConfig::new(
        Some(dir.join("auditor")),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        engine,
    );
    config.settle_interval = None;
    config.retry_interval = Duration::from_millis(200);
    let service = RunningService::start(
        config,
        ServiceParts {
            auditor_key: auditor_key.clone(),
            registry,
            verifier: Box::new(ChainVerifier::new(
                Arc::clone(&ledger),
                auditor_keypair(),
                deployment.auditor_token,
            )),
            payouts: Some(Box::new(LedgerPayouts::new(
                Arc::clone(&ledger),
                auditor_keypair(),
                deployment.auditor_token,
                destinations,
            ))),
            batches: Some(Box::new(LedgerBatches::new(
                Arc::clone(&ledger),
                deployment.auditor.pubkey(),
            ))),
            clock: system_clock(),
        },
    )
    .context("starting the auditor service")?;
    let url = service.url();
    // The demo reads traces and settles as the operator (vendors only see their own).
    let operator_token = service.operator_token().to_owned();
    progress(&format!("auditor: service listening on {url}"));
    let mut vendors = Vec::new();
    for (name, key, cert, account) in vendor_keys {
        vendors.push(Vendor {
            name,
            key: key.clone(),
            client: VendorClient::new(url.clone(), key, cert, auditor)?,
            account,
            rejections: Vec::new(),
        });
    }

    let trade = run_trades(
        &mut users,
        &mut vendors,
        &mut purse,
        double_spent,
        params.initial_block_size,
        progress,
    );
    let settle = trade.and_then(|()| {
        let http = reqwest::blocking::Client::new();
        let response = http
            .post(format!("{url}/v1/settle"))
            .bearer_auth(&operator_token)
            .send()
            .context("POST /v1/settle")?;
        if !response.status().is_success() {
            bail!("settlement failed: {}", response.text().unwrap_or_default());
        }
        progress("settle: vendor payouts sent on-chain in a batched SPL transfer");
        read_service(&url, &operator_token, &users, &vendors)
    });
    // Stop the service in every case (graceful: drains and closes the databases).
    let stopped = service.shutdown();
    let (views, blocks) = settle?;
    stopped.context("the auditor service stopped with an error")?;
    progress("read back: users and vendors from the service, blocks from the ledger and the store");

    // Per decision code and the escrow's payments: the Block accounts on the ledger, each
    // checked against the store's outcome.
    let engine = Auditor::new(
        SqliteStore::open(dir.join("auditor").join(STORE_FILE))?,
        engine,
    )?;
    let mut decisions = DecisionCounts::default();
    let mut escrow_paid: u64 = 0;
    let mut margin: u64 = 0;
    let mut loss: u64 = 0;
    let mut block_list = Vec::new();
    for trace in &blocks {
        let address = pda::block(&auditor, trace.block_id).0;
        let state = fetch_block(ledger.as_ref(), &address)?
            .ok_or_else(|| anyhow!("block {} has no account on the ledger", trace.block_id))?;
        let header = &state.header;
        let chain = DecisionCounts {
            valid: u64::from(header.valid_count),
            altered: u64::from(header.altered_count),
            duplicate: u64::from(header.duplicate_count),
            unpublished: u64::from(header.unpublished_count),
        };
        let outcome: BlockOutcome = engine
            .block_outcome(trace.block_id)?
            .ok_or_else(|| anyhow!("block {} has no outcome in the store", trace.block_id))?;
        let stored = outcome.decisions;
        if chain != stored {
            bail!(
                "block {}: the ledger's decisions {chain:?} differ from the store's {stored:?}",
                trace.block_id
            );
        }
        let add = |total: u64, x: u64| {
            total
                .checked_add(x)
                .ok_or_else(|| anyhow!("a total overflows u64"))
        };
        decisions.valid = add(decisions.valid, chain.valid)?;
        decisions.altered = add(decisions.altered, chain.altered)?;
        decisions.duplicate = add(decisions.duplicate, chain.duplicate)?;
        decisions.unpublished = add(decisions.unpublished, chain.unpublished)?;
        escrow_paid = add(escrow_paid, header.amount_paid)?;
        block_list.push(BlockReport {
            block_id: trace.block_id,
            user: users
                .iter()
                .find(|u| u.cert.subject.to_string() == trace.user)
                .map_or_else(|| trace.user.clone(), |u| u.name.to_owned()),
            block_size: trace.block_size,
            block_size_after: outcome.trust.block_size,
            decisions: chain,
            amount_paid: header.amount_paid,
        });
        margin = add(margin, outcome.settlement.margin.0)?;
        loss = add(loss, outcome.settlement.loss.0)?;
    }

    let mut vendor_reports = Vec::new();
    let mut payouts: u64 = 0;
    for (vendor, view) in vendors.iter().zip(&views.vendors) {
        let onchain = token_balance(ledger.as_ref(), &vendor.account)?;
        payouts = payouts
            .checked_add(onchain)
            .ok_or_else(|| anyhow!("payouts overflow u64"))?;
        vendor_reports.push(VendorReport {
            name: vendor.name.to_owned(),
            key: vendor.client.vendor().to_string(),
            payout_account: vendor.account.to_string(),
            onchain_balance: onchain,
            accrued: view.accrued,
            settled: view.settled,
            double_sellings: view.double_sellings,
            rejections: vendor.rejections.clone(),
        });
    }
    let mut user_reports = Vec::new();
    let mut refunds: u64 = 0;
    for (user, view) in users.iter().zip(&views.users) {
        refunds = refunds
            .checked_add(view.refunded_total)
            .ok_or_else(|| anyhow!("refunds overflow u64"))?;
        let mut block_sizes = vec![view.initial_block_size];
        block_sizes.extend(
            blocks
                .iter()
                .filter(|b| b.user == user.cert.subject.to_string())
                .filter_map(|b| b.trust.map(|t| t.block_size)),
        );
        user_reports.push(UserReport {
            name: user.name.to_owned(),
            key: user.cert.subject.to_string(),
            trust: view.trust,
            invalid_total: view.invalid_total,
            block_size: view.block_size,
            block_sizes,
            suspended: view.suspended,
            blocks_valid: view.blocks_valid,
            blocks_invalid: view.blocks_invalid,
            misbehaviour_count: view.misbehaviour_count,
            refunded: view.refunded_total,
            rejections: user.rejections.clone(),
            delivered: user.delivered,
        });
    }
    let auditor_balance_after = token_balance(ledger.as_ref(), &deployment.auditor_token)?;
    let credits = u128::from(payouts) + u128::from(refunds) + u128::from(margin);
    let balanced = credits.checked_sub(u128::from(loss)) == Some(u128::from(escrow_paid));
    let auditor_balance_consistent = (u128::from(auditor_balance_before) + u128::from(escrow_paid))
        .checked_sub(u128::from(payouts))
        == Some(u128::from(auditor_balance_after));
    Ok(SystemReport {
        ledger: "embedded",
        program: mupib::ID.to_string(),
        mint: deployment.mint.to_string(),
        bank: deployment.bank.pubkey().to_string(),
        auditor: auditor.to_string(),
        service_url: url,
        token_value: value,
        withholding_bps: params.withholding_bps,
        batch_size: params.batch_size,
        blocks: u64::try_from(blocks.len())?,
        users: user_reports,
        vendors: vendor_reports,
        decisions,
        block_list,
        money: MoneyCheck {
            escrow_paid,
            payouts,
            refunds,
            margin,
            loss,
            auditor_balance_before,
            auditor_balance_after,
            balanced,
            auditor_balance_consistent,
        },
    })
}

/// The script: rounds of payments until the double-spender is suspended.
fn run_trades(
    users: &mut [Party],
    vendors: &mut [Vendor],
    purse: &mut Purse,
    double_spent: Vec<Token>,
    initial: u64,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    let [honest, spender, forger] = users else {
        bail!("the demo needs exactly three users");
    };
    // The double-spender first spends its four tokens honestly at vendor-b; each later round it
    // pays again with one of them. The auditor has seen them: rejected at intake as double
    // spending, and each attempt shrinks its block size (eq. 7 with β = 1) until suspension.
    for (i, token) in double_spent.iter().enumerate() {
        pay(
            spender,
            &vendors[1],
            vec![*token],
            &format!("first use {i}"),
        )?;
    }
    progress("double-spender: spent 4 tokens once, honestly");
    let mut duplicates = double_spent.into_iter();
    let mut round = 0u32;
    loop {
        round += 1;
        if round > 16 {
            bail!("the double-spender was not suspended after 16 rounds; the trust model did not shrink its block size");
        }
        let mut notes = Vec::new();
        // The honest user: one full block of W tokens in payments of 1, 2, 1, … tokens over the
        // vendors in turn (only its first two rounds).
        if round <= 2 {
            let (w, _) = standing(&vendors[0], honest, initial)?;
            for (i, size) in split(w).into_iter().enumerate() {
                let vendor_index = i % vendors.len();
                let tokens = purse.take(size)?;
                let (tx, _) = pay(
                    honest,
                    &vendors[vendor_index],
                    tokens,
                    &format!("order {round}.{i}"),
                )?;
                // The double-selling vendor presents its first sale again: once the same bytes
                // (an honest retry: the stored answer, paid once), once re-countersigned with
                // another nonce (other bytes under the same id: double selling, flagged).
                if round == 1 && vendor_index == 2 {
                    let vendor = &mut vendors[vendor_index];
                    let id = tx.id()?;
                    let first = vendor.client.status(&id)?;
                    let retry = vendor.client.submit_raw(serde_json::to_vec(&tx)?, &id)?;
                    if Some(&retry) != first.as_ref() {
                        bail!("a resubmitted sale was not answered from the store: {retry:?}");
                    }
                    let resold = recountersign(&vendor.key, &tx)?;
                    let again = vendor
                        .client
                        .submit_raw(serde_json::to_vec(&resold)?, &id)?;
                    match again.response.verdict {
                        Verdict::Reject(reason) => vendor.rejections.push(reason_code(&reason)),
                        other => bail!("a re-countersigned sale was answered {other:?}"),
                    }
                    notes.push(
                        "double-seller retried a sale (stored answer) and re-sold it (flagged)",
                    );
                }
            }
            notes.push("honest paid a block");
        }
        // The double-spender: one block of its current W, starting with a token it already spent
        // (rejected at intake as double spending: the auditor never pays for it).
        let (w, suspended) = standing(&vendors[0], spender, initial)?;
        if suspended {
            // One more try: refused.
            let tokens = purse.take(1)?;
            pay(spender, &vendors[1], tokens, "after suspension")?;
            notes.push("double-spender refused (suspended)");
            progress(&format!("round {round}: {}", notes.join("; ")));
            break;
        }
        let Some(duplicate) = duplicates.next() else {
            bail!("the double-spender ran out of double-spent tokens before suspension");
        };
        pay(
            spender,
            &vendors[0],
            vec![duplicate],
            &format!("double spend {round}"),
        )?;
        for i in 1..w {
            let tokens = purse.take(1)?;
            let vendor = &vendors[usize::try_from(i % 2)?];
            pay(spender, vendor, tokens, &format!("item {round}.{i}"))?;
        }
        notes.push(if w > 1 {
            "double-spender tried a spent token again, then paid a block"
        } else {
            "double-spender tried a spent token again: its block size fell to 0"
        });
        // The forger: a forged token in round 1, then an honest block at its reduced W.
        if round == 1 {
            let mut forged = purse.take(1)?[0];
            forged.serial = forged.serial.wrapping_add(100_000);
            pay(forger, &vendors[1], vec![forged], "forged")?;
            notes.push("forger presented a forged token");
        } else if round == 2 {
            let (w, _) = standing(&vendors[0], forger, initial)?;
            for i in 0..w {
                let tokens = purse.take(1)?;
                pay(
                    forger,
                    &vendors[usize::try_from(i % 2)?],
                    tokens,
                    &format!("order {i}"),
                )?;
            }
            notes.push("forger paid a block honestly");
        }
        progress(&format!("round {round}: {}", notes.join("; ")));
    }
    Ok(())
}

struct ServiceViews {
    users: Vec<mupib_protocol::wire::UserView>,
    vendors: Vec<mupib_protocol::wire::VendorView>,
}

/// Reads users, vendors and every block back from the service's HTTP endpoints; checks that no
/// block is left pending (the balance holds over decided blocks only).
fn read_service(
    url: &str,
    operator_token: &str,
    users: &[Party],
    vendors: &[Vendor],
) -> anyhow::Result<(ServiceViews, Vec<BlockTrace>)> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {operator_token}").parse()?,
    );
    let http = reqwest::blocking::Client::builder()
        .default_headers(headers)
        .build()?;
    let status: StatusView = get_json(&http, &format!("{url}/v1/status"))?;
    if !status.pending_blocks.is_empty() {
        bail!(
            "blocks {:?} are still pending at the end",
            status.pending_blocks
        );
    }
    if !status.pending_payouts.is_empty() {
        bail!(
            "payouts {:?} are still unsettled at the end",
            status.pending_payouts
        );
    }
    let mut blocks = Vec::new();
    for id in 0..status.next_block_id {
        let response = http
            .get(format!("{url}/v1/blocks/{id}"))
            .send()
            .with_context(|| format!("GET /v1/blocks/{id}"))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            continue;
        }
        if !response.status().is_success() {
            bail!("GET /v1/blocks/{id} answered {}", response.status());
        }
        let trace: BlockTrace = response.json()?;
        if trace.state != "verified" {
            bail!("block {id} is {} at the end", trace.state);
        }
        blocks.push(trace);
    }
    let client = &vendors
        .first()
        .ok_or_else(|| anyhow!("the demo needs a vendor"))?
        .client;
    let users = users
        .iter()
        .map(|u| client.user(&u.cert.subject).map_err(anyhow::Error::from))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let vendors = vendors
        .iter()
        .map(|v| get_json(&http, &format!("{url}/v1/vendors/{}", v.client.vendor())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((ServiceViews { users, vendors }, blocks))
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn split_sums_to_the_block_size() {
        assert_eq!(split(4), vec![1, 2, 1]);
        assert_eq!(split(3), vec![1, 2]);
        assert_eq!(split(1), vec![1]);
        assert_eq!(split(0), Vec::<usize>::new());
    }
}

//! `mupib bank`: a bank mints token batches (sign, fund the escrow, publish the commitments in
//! chunks, seal), hands tokens to users' wallets, lists and closes its batches.

use std::path::PathBuf;

use anyhow::{bail, Context};
use mupib_chain::program::accounts::{fetch_bank_registration, token_balance};
use mupib_client::bank::{BankClient, MintOutcome, MintProgress, MintRequest};
use mupib_client::wallet::Wallet;
use mupib_protocol::Pubkey;
use serde::Serialize;

use super::common::{
    parse_pubkey, print_json, progress_bar, sol, token_ids, KeypairArg, LedgerArgs,
};

/// Options every bank command takes.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    #[command(flatten)]
    ledger: LedgerArgs,
    #[command(flatten)]
    keypair: KeypairArg,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// A bank's commands. The keypair is the bank's.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Mint tokens: sign them, split them into batches bound to one auditor, fund each batch's
    /// escrow with count × value from the bank's payment account, publish the commitments, seal.
    Mint {
        /// The auditor the batches are bound to (its public key). Only this auditor can redeem
        /// the tokens on-chain: the auditor is part of each batch's address, so a token digest
        /// copied by another auditor is worth nothing. Hand the tokens to users who pay vendors
        /// of this auditor. It must be registered and active (`mupib admin register-auditor`).
        #[arg(long, value_parser = parse_pubkey, required_unless_present = "resume")]
        auditor: Option<Pubkey>,
        /// Number of tokens.
        #[arg(long, required_unless_present = "resume")]
        count: Option<u32>,
        /// Value of each token, in base units of the payment mint.
        #[arg(long, required_unless_present = "resume")]
        value: Option<u64>,
        /// Days until the batches expire (after which the bank may reclaim the unspent escrow).
        #[arg(long, default_value_t = 30)]
        expires_in: u32,
        /// First batch id (default: the bank's next batch id on-chain).
        #[arg(long)]
        first_batch_id: Option<u64>,
        /// Finish an interrupted mint instead of starting a new one (its auditor is recorded).
        #[arg(long, conflicts_with_all = ["count", "value", "first_batch_id", "auditor"])]
        resume: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Hand unissued tokens to a user: `--to` is the user's public key (their wallet in the data
    /// directory is created if needed) or the path of an existing wallet file.
    Give {
        /// The user's public key or wallet file.
        #[arg(long)]
        to: String,
        /// Number of tokens.
        #[arg(long)]
        count: u64,
        #[command(flatten)]
        common: Common,
    },
    /// List the bank's batches with their on-chain state.
    Batches {
        #[command(flatten)]
        common: Common,
    },
    /// Close a fully spent batch, or an expired one once its grace period is over (2 days
    /// after its expiry and after the program's last resume; never while the program is paused):
    /// unspent escrow and rent go back to the bank.
    CloseBatch {
        /// The batch id.
        batch_id: u64,
        #[command(flatten)]
        common: Common,
    },
    /// Show the bank's registration, balances and tokens not yet handed out.
    Status {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Serialize)]
struct MintReport<'a> {
    bank: String,
    #[serde(flatten)]
    outcome: &'a MintOutcome,
    token_value: u64,
    first_token: Option<String>,
    last_token: Option<String>,
}

impl Command {
    /// Runs the command.
    pub fn execute(self) -> anyhow::Result<()> {
        match self {
            Command::Mint {
                auditor,
                count,
                value,
                expires_in,
                first_batch_id,
                resume,
                common,
            } => mint(
                MintArgs {
                    auditor,
                    count,
                    value,
                    expires_in,
                    first_batch_id,
                    resume,
                },
                &common,
            ),
            Command::Give { to, count, common } => give(&to, count, &common),
            Command::Batches { common } => {
                let identity = common.keypair.load("bank")?;
                let ledger = common.ledger.open_ledger()?;
                let path = common.ledger.bank_state_path(&identity.pubkey)?;
                let bank = BankClient::new(ledger.as_ref(), &identity.signing_key, path);
                let batches = bank.batches()?;
                if common.json {
                    return print_json(&batches);
                }
                if batches.is_empty() {
                    println!(
                        "Bank {} has no batches yet: mint some with `mupib bank mint`",
                        identity.pubkey
                    );
                }
                for b in &batches {
                    println!(
                        "batch {:>4}  auditor {}  {} tokens × {}  escrow {}  sealed {}  spent {}  unissued {}  expires {}{}",
                        b.record.batch_id,
                        b.record.auditor,
                        b.record.token_count,
                        b.record.value,
                        b.escrow_balance,
                        b.sealed,
                        b.spent,
                        b.unissued,
                        b.record.expires_at,
                        if b.record.closed { "  (closed)" } else { "" }
                    );
                }
                Ok(())
            }
            Command::CloseBatch { batch_id, common } => {
                let identity = common.keypair.load("bank")?;
                let ledger = common.ledger.open_ledger()?;
                let path = common.ledger.bank_state_path(&identity.pubkey)?;
                let bank = BankClient::new(ledger.as_ref(), &identity.signing_key, path);
                let closed = bank.close_batch(batch_id)?;
                if common.json {
                    return print_json(&closed);
                }
                println!(
                    "Closed batch {}: {} base units of escrow and {} of rent returned to the bank; {} unissued tokens dropped",
                    closed.batch_id,
                    closed.escrow_returned,
                    sol(closed.rent_returned),
                    closed.tokens_dropped
                );
                Ok(())
            }
            Command::Status { common } => {
                let identity = common.keypair.load("bank")?;
                let ledger = common.ledger.open_ledger()?;
                let path = common.ledger.bank_state_path(&identity.pubkey)?;
                let bank = BankClient::new(ledger.as_ref(), &identity.signing_key, path);
                let registration = fetch_bank_registration(ledger.as_ref(), &identity.pubkey)?;
                let account = bank.payment_account()?;
                let report = serde_json::json!({
                    "bank": identity.pubkey.to_string(),
                    "registered": registration.is_some(),
                    "active": registration.as_ref().is_some_and(|r| r.active),
                    "next_batch_id": registration.as_ref().map(|r| r.next_batch_id),
                    "payment_account": account.to_string(),
                    "payment_balance": token_balance(ledger.as_ref(), &account)?,
                    "lamports": ledger.balance(&identity.pubkey)?,
                    "unissued_tokens": bank.unissued()?.len(),
                    "pending_mint": bank.pending_mint()?.is_some(),
                });
                if common.json {
                    return print_json(&report);
                }
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).context("cannot encode the status")?
                );
                Ok(())
            }
        }
    }
}

/// The arguments of `bank mint`.
struct MintArgs {
    auditor: Option<Pubkey>,
    count: Option<u32>,
    value: Option<u64>,
    expires_in: u32,
    first_batch_id: Option<u64>,
    resume: bool,
}

fn mint(args: MintArgs, common: &Common) -> anyhow::Result<()> {
    let MintArgs {
        auditor,
        count,
        value,
        expires_in,
        first_batch_id,
        resume,
    } = args;
    let identity = common.keypair.load("bank")?;
    let ledger = common.ledger.open_ledger()?;
    let path = common.ledger.bank_state_path(&identity.pubkey)?;
    let bank = BankClient::new(ledger.as_ref(), &identity.signing_key, path);
    let bar = progress_bar(0, common.json);
    let mut on_progress = |event: MintProgress| match event {
        MintProgress::Planned { batches, tokens } => {
            bar.set_length(tokens.saturating_mul(2));
            bar.set_message(format!("{tokens} tokens in {batches} batches"));
        }
        MintProgress::Signed { batch_id, tokens } => {
            bar.inc(u64::from(tokens));
            bar.set_message(format!("batch {batch_id}: signed {tokens} tokens"));
        }
        MintProgress::Funded {
            batch_id,
            escrow_amount,
        } => {
            bar.set_message(format!(
                "batch {batch_id}: escrow funded with {escrow_amount}"
            ));
        }
        MintProgress::Published {
            batch_id,
            chunk,
            published,
            token_count,
        } => {
            bar.inc(u64::from(chunk));
            bar.set_message(format!(
                "batch {batch_id}: published {published}/{token_count}"
            ));
        }
        MintProgress::Sealed { batch_id } => bar.set_message(format!("batch {batch_id}: sealed")),
    };
    let outcome = if resume {
        match bank.resume_mint(&mut on_progress)? {
            Some(outcome) => outcome,
            None => {
                bar.finish_and_clear();
                bail!("there is no interrupted mint to resume: start one with `mupib bank mint --auditor AUDITOR --count N --value V`");
            }
        }
    } else {
        let (Some(auditor), Some(count), Some(value)) = (auditor, count, value) else {
            bail!("--auditor, --count and --value are required (or --resume)");
        };
        if expires_in == 0 {
            bail!("--expires-in must be at least 1 day");
        }
        let now = ledger.clock()?.unix_timestamp;
        let expires_at = now
            .checked_add(i64::from(expires_in).saturating_mul(86_400))
            .context("--expires-in is too large")?;
        let request = MintRequest {
            auditor,
            count,
            value,
            expires_at,
            first_batch_id,
        };
        bank.mint(request, &mut on_progress).map_err(|e| {
            anyhow::Error::from(e)
                .context(format!("minting {count} tokens of value {value} failed"))
        })?
    };
    bar.finish_and_clear();
    let token_value = outcome.batches.first().map_or(0, |b| b.value);
    if common.json {
        return print_json(&MintReport {
            bank: identity.pubkey.to_string(),
            outcome: &outcome,
            token_value,
            first_token: outcome.tokens.first().map(|t| t.id().to_string()),
            last_token: outcome.tokens.last().map(|t| t.id().to_string()),
        });
    }
    println!(
        "{} {} tokens of value {} for bank {} in {} batches",
        if outcome.resumed {
            "Finished minting"
        } else {
            "Minted"
        },
        outcome.token_count,
        token_value,
        identity.pubkey,
        outcome.batches.len()
    );
    for b in &outcome.batches {
        println!(
            "  batch {:>4}: {} tokens, escrow {} base units, rent {}, sealed, expires {}  ({})",
            b.batch_id,
            b.token_count,
            b.escrow_amount,
            sol(b.rent_lamports),
            b.expires_at,
            b.batch
        );
    }
    println!("Escrow funded:     {} base units", outcome.escrow_funded);
    println!(
        "Rent deposited:    {} (returned when the batches are closed)",
        sol(outcome.rent_deposited)
    );
    println!(
        "Transactions sent: {} (largest {} bytes of 1232)",
        outcome.transactions, outcome.largest_transaction_bytes
    );
    println!("Tokens are kept in the bank's data until handed out with `mupib bank give`.");
    Ok(())
}

fn give(to: &str, count: u64, common: &Common) -> anyhow::Result<()> {
    if count == 0 {
        bail!("--count must be at least 1");
    }
    let identity = common.keypair.load("bank")?;
    let wallet_path = match to.parse::<Pubkey>() {
        Ok(user) => (common.ledger.wallet_path(&user)?, Some(user)),
        Err(_) => (PathBuf::from(to), None),
    };
    let mut wallet = match wallet_path {
        (path, Some(user)) => Wallet::open_or_create(&path, user)?,
        (path, None) => Wallet::open(&path).with_context(|| {
            format!("--to {to} is neither a public key nor a wallet file; give to the user's public key to create their wallet")
        })?,
    };
    let ledger = common.ledger.open_ledger()?;
    let path = common.ledger.bank_state_path(&identity.pubkey)?;
    let bank = BankClient::new(ledger.as_ref(), &identity.signing_key, path);
    let tokens = bank.give_to_wallet(&mut wallet, count)?;
    let value: u64 = tokens
        .iter()
        .try_fold(0u64, |s, t| s.checked_add(t.value))
        .context("value overflow")?;
    if common.json {
        return print_json(&serde_json::json!({
            "recipient": wallet.owner().to_string(),
            "wallet": wallet.path(),
            "tokens": tokens.len(),
            "value": value,
            "token_ids": token_ids(&tokens),
        }));
    }
    println!(
        "Gave {} tokens worth {} base units to {} (wallet {})",
        tokens.len(),
        value,
        wallet.owner(),
        wallet.path().display()
    );
    Ok(())
}

//! `mupib user`: a user's wallet — balance, pay a vendor (sign the payment the vendor will
//! countersign), settle a payment (delivered, cancelled, refunded) and list payments.

use std::path::PathBuf;

use anyhow::Context;
use mupib_client::wallet::{payment_reference, Wallet};

use super::common::{
    print_json, read_certificate, unix_now, write_json_output, KeypairArg, LedgerArgs,
};

/// Options every user command takes.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    #[command(flatten)]
    ledger: LedgerArgs,
    #[command(flatten)]
    keypair: KeypairArg,
    /// The wallet file (default: <data-dir>/wallets/<your public key>.json).
    #[arg(long)]
    wallet: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

impl Common {
    fn open_wallet(&self) -> anyhow::Result<(Wallet, super::common::Identity)> {
        let identity = self.keypair.load("user")?;
        let path = match &self.wallet {
            Some(path) => path.clone(),
            None => self.ledger.wallet_path(&identity.pubkey)?,
        };
        let wallet = Wallet::open(&path)?;
        if wallet.owner() != identity.pubkey {
            anyhow::bail!(
                "wallet {} belongs to {}, not to {}: pass that user's --keypair",
                path.display(),
                wallet.owner(),
                identity.pubkey
            );
        }
        Ok((wallet, identity))
    }
}

/// A user's commands. The keypair is the user's.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Show the wallet's tokens: unspent, pending in payments, spent, and refunds received.
    Balance {
        #[command(flatten)]
        common: Common,
    },
    /// Pay a vendor: pick unspent tokens of one value, sign the payment, mark them pending, and
    /// write the user-signed payment (JSON) for the vendor to countersign.
    Pay {
        /// The vendor's certificate file.
        #[arg(long)]
        vendor_cert: PathBuf,
        /// Number of tokens to pay (1 to 128, all of one value).
        #[arg(long)]
        amount: u32,
        /// What is bought (at most 256 bytes).
        #[arg(long, default_value = "")]
        info: String,
        /// Your certificate file (default: <data-dir>/certs/<your public key>.json).
        #[arg(long)]
        cert: Option<PathBuf>,
        /// Write the payment to this file instead of standard output.
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// List the wallet's payments.
    Payments {
        #[command(flatten)]
        common: Common,
    },
    /// Record the outcome of a pending payment.
    Settle {
        /// The payment's reference (shown by `user pay` and `user payments`).
        reference: String,
        /// What happened.
        #[arg(long, value_enum)]
        outcome: Outcome,
        /// For a refund: the amount refunded, in base units.
        #[arg(long, default_value_t = 0)]
        refund: u64,
        /// For a refund: a note (e.g. the auditor's reason).
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        common: Common,
    },
}

/// The outcome of a payment.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Outcome {
    /// The vendor delivered: the tokens are spent.
    Delivered,
    /// The payment never reached a vendor: its tokens are unspent again, once its validity
    /// window (10 minutes after its time) has passed and no auditor would take it in.
    Cancelled,
    /// The auditor rejected it and refunded its valid tokens (give --refund).
    Refunded,
}

impl Command {
    /// Runs the command.
    pub fn execute(self) -> anyhow::Result<()> {
        match self {
            Command::Balance { common } => {
                let (wallet, _) = common.open_wallet()?;
                let balance = wallet.balance()?;
                if common.json {
                    return print_json(&balance);
                }
                println!("Wallet of {} ({})", balance.owner, wallet.path().display());
                println!(
                    "  unspent: {} tokens worth {} base units",
                    balance.unspent_tokens, balance.unspent_value
                );
                for (value, count) in &balance.unspent_by_value {
                    println!("           {count} × {value}");
                }
                println!(
                    "  pending: {} tokens worth {} in {} payments",
                    balance.pending_tokens, balance.pending_value, balance.pending_payments
                );
                println!("  spent:   {} tokens", balance.spent_tokens);
                println!("  refunds: {} base units", balance.refunded_value);
                Ok(())
            }
            Command::Pay {
                vendor_cert,
                amount,
                info,
                cert,
                out,
                common,
            } => {
                let (mut wallet, identity) = common.open_wallet()?;
                let vendor_cert = read_certificate(&vendor_cert)?;
                let cert_path = match cert {
                    Some(path) => path,
                    None => common.ledger.cert_path(&identity.pubkey)?,
                };
                let user_cert = read_certificate(&cert_path)
                    .context("the user's certificate is needed to pay: ask the registration authority (`mupib admin issue-cert --role user ...`) or pass --cert")?;
                let now = unix_now()?;
                let payment = wallet
                    .pay(
                        &vendor_cert,
                        amount,
                        &info,
                        &identity.signing_key,
                        &user_cert,
                        now,
                    )
                    .context("payment not made; the wallet is unchanged")?;
                let reference = payment_reference(&payment);
                let total: u64 = payment
                    .tokens
                    .iter()
                    .try_fold(0u64, |s, t| s.checked_add(t.value))
                    .context("value overflow")?;
                match &out {
                    Some(path) => {
                        write_json_output(&payment, Some(path))?;
                        if common.json {
                            print_json(&serde_json::json!({
                                "reference": reference,
                                "vendor": vendor_cert.subject.to_string(),
                                "tokens": payment.tokens.len(),
                                "value": total,
                                "payment_file": path,
                            }))
                        } else {
                            eprintln!(
                                "Signed a payment of {} tokens ({} base units) to {} ({}); give {} to the vendor. Reference {reference}",
                                payment.tokens.len(),
                                total,
                                vendor_cert.name,
                                vendor_cert.subject,
                                path.display()
                            );
                            Ok(())
                        }
                    }
                    None => {
                        eprintln!("payment reference {reference}");
                        print_json(&payment)
                    }
                }
            }
            Command::Payments { common } => {
                let (wallet, _) = common.open_wallet()?;
                let payments = &wallet.data().payments;
                if common.json {
                    return print_json(payments);
                }
                for p in payments {
                    println!(
                        "{:?}  {} tokens  {} base units  to {} ({})  at {}  ref {}",
                        p.status,
                        p.tokens.len(),
                        p.value,
                        p.vendor_name,
                        p.vendor,
                        p.time,
                        p.reference
                    );
                }
                Ok(())
            }
            Command::Settle {
                reference,
                outcome,
                refund,
                note,
                common,
            } => {
                let (mut wallet, _) = common.open_wallet()?;
                match outcome {
                    Outcome::Delivered => wallet.confirm(&reference)?,
                    Outcome::Cancelled => wallet.cancel(&reference, unix_now()?)?,
                    Outcome::Refunded => wallet.refund(&reference, refund, &note, unix_now()?)?,
                }
                let balance = wallet.balance()?;
                if common.json {
                    return print_json(&balance);
                }
                println!("Payment {reference} recorded as {outcome:?}");
                Ok(())
            }
        }
    }
}

//! `mupib vendor`: a vendor countersigns a user's payment (paper eq. 2), submits it to the
//! auditor service and reads the auditor's signed answer (deliver, wait, reject).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use mupib_client::vendor::VendorClient;
use mupib_protocol::cert::Certificate;
use mupib_protocol::transaction::{PaymentTransaction, TransactionId, UserSignedPayment};
use mupib_protocol::wire::SubmitAnswer;
use mupib_protocol::Pubkey;
use serde::Serialize;

use super::common::{
    parse_pubkey, print_json, read_certificate, read_json_file, write_json_output, Identity,
    KeypairArg, LedgerArgs,
};

/// Options every vendor command takes.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    #[command(flatten)]
    ledger: LedgerArgs,
    #[command(flatten)]
    keypair: KeypairArg,
    /// Your vendor certificate file (default: <data-dir>/certs/<your public key>.json).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Where the auditor service is and whose answers to trust.
#[derive(clap::Args, Debug, Clone)]
pub struct AuditorArgs {
    /// The auditor service's base URL (e.g. http://127.0.0.1:8080).
    #[arg(long)]
    auditor_url: String,
    /// The auditor's public key: answers signed by any other key are refused.
    #[arg(long, value_parser = parse_pubkey)]
    auditor: Pubkey,
    /// When the answer is "wait", wait up to this many seconds for the final answer.
    #[arg(long, default_value_t = 0)]
    wait: u64,
}

impl Common {
    fn identity(&self) -> anyhow::Result<(Identity, Certificate)> {
        let identity = self.keypair.load("vendor")?;
        let path = match &self.cert {
            Some(path) => path.clone(),
            None => self.ledger.cert_path(&identity.pubkey)?,
        };
        let cert = read_certificate(&path).context(
            "the vendor's certificate is needed: ask the registration authority (`mupib admin issue-cert --role vendor ...`) or pass --cert",
        )?;
        if cert.subject != identity.pubkey {
            bail!(
                "certificate {} is for {}, not for this vendor {}: pass the right --cert or --keypair",
                path.display(),
                cert.subject,
                identity.pubkey
            );
        }
        Ok((identity, cert))
    }
}

/// A vendor's commands. The keypair is the vendor's.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Check a user-signed payment and countersign it (no network): writes the transaction.
    Countersign {
        /// The user-signed payment file (`-` for standard input), as written by `mupib user pay`.
        #[arg(long)]
        payment: PathBuf,
        /// Write the countersigned transaction here instead of standard output.
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Countersign a user-signed payment and submit it to the auditor service; prints the
    /// auditor's signed answer (deliver / wait / reject).
    Submit {
        /// The user-signed payment file (`-` for standard input), as written by `mupib user pay`.
        #[arg(long)]
        payment: PathBuf,
        #[command(flatten)]
        auditor: AuditorArgs,
        #[command(flatten)]
        common: Common,
    },
    /// The auditor's current answer about a transaction.
    Status {
        /// The transaction id (64 hex digits), as printed by `vendor submit`.
        transaction_id: String,
        #[command(flatten)]
        auditor: AuditorArgs,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Serialize)]
struct CountersignReport<'a> {
    transaction_id: String,
    transaction: &'a PaymentTransaction,
}

impl Command {
    /// Runs the command.
    pub fn execute(self) -> anyhow::Result<()> {
        match self {
            Command::Countersign {
                payment,
                out,
                common,
            } => {
                let (identity, cert) = common.identity()?;
                let payment: UserSignedPayment = read_json_file(&payment, "user-signed payment")?;
                if payment.vendor_cert.subject != cert.subject {
                    bail!(
                        "the payment is addressed to vendor {}, not to you ({}): refuse it",
                        payment.vendor_cert.subject,
                        cert.subject
                    );
                }
                let transaction = payment
                    .countersign(&identity.signing_key)
                    .context("refusing to countersign the payment")?;
                let id = transaction
                    .id()
                    .context("cannot compute the transaction id")?;
                match out {
                    Some(path) => {
                        write_json_output(&transaction, Some(&path))?;
                        if common.json {
                            print_json(
                                &serde_json::json!({ "transaction_id": id.to_string(), "file": path }),
                            )
                        } else {
                            println!(
                                "Countersigned transaction {id} written to {}",
                                path.display()
                            );
                            Ok(())
                        }
                    }
                    None if common.json => print_json(&CountersignReport {
                        transaction_id: id.to_string(),
                        transaction: &transaction,
                    }),
                    None => {
                        eprintln!("transaction id {id}");
                        print_json(&transaction)
                    }
                }
            }
            Command::Submit {
                payment,
                auditor,
                common,
            } => {
                let (identity, cert) = common.identity()?;
                let client = VendorClient::new(
                    &auditor.auditor_url,
                    identity.signing_key,
                    cert,
                    auditor.auditor,
                )?;
                let payment: UserSignedPayment = read_json_file(&payment, "user-signed payment")?;
                let transaction = client.countersign(payment)?;
                let id = transaction
                    .id()
                    .context("cannot compute the transaction id")?;
                let mut answer = client.submit(&transaction)?;
                if !answer.is_final && auditor.wait > 0 {
                    answer = client.await_final(&id, Duration::from_secs(auditor.wait))?;
                }
                report_answer(&id, &answer, common.json)
            }
            Command::Status {
                transaction_id,
                auditor,
                common,
            } => {
                let id: TransactionId = transaction_id.parse().map_err(|e| {
                    anyhow::anyhow!(
                        "{transaction_id:?} is not a transaction id (64 hex digits): {e:?}"
                    )
                })?;
                let (identity, cert) = common.identity()?;
                let client = VendorClient::new(
                    &auditor.auditor_url,
                    identity.signing_key,
                    cert,
                    auditor.auditor,
                )?;
                let answer = if auditor.wait > 0 {
                    client.await_final(&id, Duration::from_secs(auditor.wait))?
                } else {
                    client.status(&id)?.with_context(|| {
                        format!("the auditor does not know transaction {id}: submit it first")
                    })?
                };
                report_answer(&id, &answer, common.json)
            }
        }
    }
}

fn report_answer(id: &TransactionId, answer: &SubmitAnswer, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(
            &serde_json::json!({ "transaction_id": id.to_string(), "answer": answer }),
        );
    }
    println!(
        "transaction {id}: {:?}{}{}",
        answer.response.verdict,
        if answer.is_final {
            " (final)"
        } else {
            " (not final: ask again with `mupib vendor status`)"
        },
        answer
            .response
            .block_id
            .map(|b| format!(", block {b}"))
            .unwrap_or_default()
    );
    Ok(())
}

//! `mupib admin`: the program's admin (initialise, register banks and auditors, pause, fund
//! payment accounts on a ledger where it holds the mint authority) and the registration
//! authority (issue certificates).

use std::path::PathBuf;

use anyhow::{bail, Context};
use mupib_chain::admin;
use mupib_chain::ledger::Ledger;
use mupib_chain::program::accounts::{
    fetch_auditor_registration, fetch_bank_registration, fetch_config,
};
use mupib_chain::program::pda;
use mupib_chain::spl::{self, ensure_payment_account, fund_payment_account};
use mupib_protocol::cert::{Certificate, Role};
use mupib_protocol::Pubkey;
use serde::Serialize;
use solana_sdk::signature::{Keypair, Signer};

use super::common::{
    parse_pubkey, print_json, sol, unix_now, write_json_output, Identity, KeypairArg, LedgerArgs,
};

/// Lamports below which `admin init` airdrops SOL to the admin on the embedded ledger.
const ADMIN_MIN_LAMPORTS: u64 = 1_000_000_000;

/// A certificate role, as typed on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum RoleArg {
    /// A registration authority.
    Authority,
    /// A bank.
    Bank,
    /// A user.
    User,
    /// A vendor.
    Vendor,
    /// An auditor.
    Auditor,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Role {
        match role {
            RoleArg::Authority => Role::Authority,
            RoleArg::Bank => Role::Bank,
            RoleArg::User => Role::User,
            RoleArg::Vendor => Role::Vendor,
            RoleArg::Auditor => Role::Auditor,
        }
    }
}

/// Options every admin command takes.
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

/// The program's admin and the registration authority.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Initialise the program: create its Config with the payment mint (a new SPL mint whose
    /// authority is the admin, unless --mint is given).
    Init {
        /// Use this existing SPL mint as the payment mint instead of creating one.
        #[arg(long, value_parser = parse_pubkey)]
        mint: Option<Pubkey>,
        /// Decimals of the payment mint created (ignored with --mint).
        #[arg(long, default_value_t = 6)]
        decimals: u8,
        #[command(flatten)]
        common: Common,
    },
    /// Register a bank (allows it to publish token batches) and create its payment account.
    RegisterBank {
        /// The bank's public key.
        #[arg(value_parser = parse_pubkey)]
        bank: Pubkey,
        /// Mint this many base units of the payment mint into the bank's payment account
        /// (needs the admin to be the mint authority, as after `admin init` without --mint).
        #[arg(long, default_value_t = 0)]
        fund: u64,
        /// Lamports to airdrop to the bank for rent deposits and fees (test ledgers only).
        #[arg(long, default_value_t = 10_000_000_000)]
        airdrop: u64,
        #[command(flatten)]
        common: Common,
    },
    /// Register an auditor (allows it to verify blocks) and create its payment account.
    RegisterAuditor {
        /// The auditor's public key.
        #[arg(value_parser = parse_pubkey)]
        auditor: Pubkey,
        /// Lamports to airdrop to the auditor for rent deposits and fees (test ledgers only).
        #[arg(long, default_value_t = 10_000_000_000)]
        airdrop: u64,
        #[command(flatten)]
        common: Common,
    },
    /// Mint payment money into a key's payment account (the admin must be the mint authority).
    Fund {
        /// The receiving key.
        #[arg(value_parser = parse_pubkey)]
        owner: Pubkey,
        /// Base units of the payment mint.
        #[arg(long)]
        amount: u64,
        #[command(flatten)]
        common: Common,
    },
    /// Pause publishing and verification. Batches with unspent tokens cannot be closed while
    /// paused; after the resume they stay open 2 more days (BATCH_CLOSE_GRACE_SECS), so blocks
    /// held up by the pause can still be verified.
    Pause {
        #[command(flatten)]
        common: Common,
    },
    /// Resume publishing and verification (the time is recorded: expired batches become
    /// closable 2 days after it at the earliest).
    Resume {
        #[command(flatten)]
        common: Common,
    },
    /// Show the program's configuration.
    Status {
        #[command(flatten)]
        common: Common,
    },
    /// Issue a certificate (the keypair is the registration authority's) and write it to a file.
    IssueCert {
        /// The role granted.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// The subject's name (at most 128 bytes).
        #[arg(long)]
        name: String,
        /// Validity in days from now.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Output file (default: <data-dir>/certs/<PUBKEY>.json).
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
        /// The subject's public key.
        #[arg(value_parser = parse_pubkey)]
        subject: Pubkey,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Serialize)]
struct InitReport {
    program: String,
    config: String,
    admin: String,
    mint: String,
    mint_created: bool,
}

#[derive(Serialize)]
struct RegisterReport {
    role: &'static str,
    key: String,
    registration: String,
    payment_account: String,
    airdropped_lamports: u64,
    funded: u64,
}

#[derive(Serialize)]
struct StatusReport {
    program: String,
    admin: String,
    mint: String,
    paused: bool,
    /// Unix time of the last resume (0: never); expired batches close 2 days after it at the
    /// earliest.
    resumed_at: i64,
}

fn admin_of(ledger: &dyn Ledger) -> anyhow::Result<mupib::state::Config> {
    fetch_config(ledger)?
        .context("the program is not initialised on this ledger: run `mupib admin init` first")
}

fn require_admin(ledger: &dyn Ledger, admin: &Identity) -> anyhow::Result<mupib::state::Config> {
    let config = admin_of(ledger)?;
    if config.admin != admin.pubkey {
        bail!(
            "{} is not the program admin ({}): pass the admin's keypair with --keypair",
            admin.pubkey,
            config.admin
        );
    }
    Ok(config)
}

fn airdrop(ledger: &dyn Ledger, to: &Pubkey, lamports: u64) -> anyhow::Result<u64> {
    if lamports == 0 {
        return Ok(0);
    }
    ledger
        .airdrop(to, lamports)
        .with_context(|| format!("cannot airdrop {lamports} lamports to {to}: pass --airdrop 0 on a cluster without a faucet"))?;
    Ok(lamports)
}

impl Command {
    /// Runs the command.
    pub fn execute(self) -> anyhow::Result<()> {
        match self {
            Command::Init {
                mint,
                decimals,
                common,
            } => init(mint, decimals, &common),
            Command::RegisterBank {
                bank,
                fund,
                airdrop: lamports,
                common,
            } => {
                let admin = common.keypair.load("admin")?;
                let ledger = common.ledger.open_ledger()?;
                let config = require_admin(ledger.as_ref(), &admin)?;
                if fetch_bank_registration(ledger.as_ref(), &bank)?.is_some() {
                    bail!("bank {bank} is already registered");
                }
                admin::register_bank(ledger.as_ref(), &admin.keypair, &bank)
                    .context("bank_register failed")?;
                let airdropped = airdrop(ledger.as_ref(), &bank, lamports)?;
                let account = if fund > 0 {
                    fund_payment_account(ledger.as_ref(), &admin.keypair, &bank, fund).context(
                        "cannot fund the bank: is the admin the payment mint's authority?",
                    )?
                } else {
                    ensure_payment_account(ledger.as_ref(), &admin.keypair, &bank, &config.mint)?
                };
                let report = RegisterReport {
                    role: "bank",
                    key: bank.to_string(),
                    registration: pda::bank_registration(&bank).0.to_string(),
                    payment_account: account.to_string(),
                    airdropped_lamports: airdropped,
                    funded: fund,
                };
                print_register(&report, common.json)
            }
            Command::RegisterAuditor {
                auditor,
                airdrop: lamports,
                common,
            } => {
                let admin = common.keypair.load("admin")?;
                let ledger = common.ledger.open_ledger()?;
                let config = require_admin(ledger.as_ref(), &admin)?;
                if fetch_auditor_registration(ledger.as_ref(), &auditor)?.is_some() {
                    bail!("auditor {auditor} is already registered");
                }
                admin::register_auditor(ledger.as_ref(), &admin.keypair, &auditor)
                    .context("auditor_register failed")?;
                let airdropped = airdrop(ledger.as_ref(), &auditor, lamports)?;
                let account = ensure_payment_account(
                    ledger.as_ref(),
                    &admin.keypair,
                    &auditor,
                    &config.mint,
                )?;
                let report = RegisterReport {
                    role: "auditor",
                    key: auditor.to_string(),
                    registration: pda::auditor_registration(&auditor).0.to_string(),
                    payment_account: account.to_string(),
                    airdropped_lamports: airdropped,
                    funded: 0,
                };
                print_register(&report, common.json)
            }
            Command::Fund {
                owner,
                amount,
                common,
            } => {
                if amount == 0 {
                    bail!("--amount must be at least 1 base unit");
                }
                let admin = common.keypair.load("mint authority")?;
                let ledger = common.ledger.open_ledger()?;
                let account = fund_payment_account(ledger.as_ref(), &admin.keypair, &owner, amount)
                    .context("cannot fund: the keypair must be the payment mint's authority")?;
                if common.json {
                    print_json(
                        &serde_json::json!({ "owner": owner.to_string(), "payment_account": account.to_string(), "funded": amount }),
                    )
                } else {
                    println!("Funded {owner} with {amount} base units (payment account {account})");
                    Ok(())
                }
            }
            Command::Pause { common } => set_paused(true, &common),
            Command::Resume { common } => set_paused(false, &common),
            Command::Status { common } => {
                let ledger = common.ledger.open_ledger()?;
                let config = admin_of(ledger.as_ref())?;
                let report = StatusReport {
                    program: pda::program_id().to_string(),
                    admin: config.admin.to_string(),
                    mint: config.mint.to_string(),
                    paused: config.paused,
                    resumed_at: config.resumed_at,
                };
                if common.json {
                    print_json(&report)
                } else {
                    println!(
                        "program {}\nadmin   {}\nmint    {}\npaused  {}\nresumed {}",
                        report.program,
                        report.admin,
                        report.mint,
                        report.paused,
                        if report.resumed_at == 0 {
                            "never".to_string()
                        } else {
                            format!("at {}", report.resumed_at)
                        }
                    );
                    Ok(())
                }
            }
            Command::IssueCert {
                role,
                name,
                days,
                out,
                subject,
                common,
            } => {
                if days == 0 {
                    bail!("--days must be at least 1");
                }
                let authority = common.keypair.load("registration authority")?;
                let now = unix_now()?;
                let until = now
                    .checked_add(i64::from(days).saturating_mul(86_400))
                    .context("--days is too large")?;
                let certificate = Certificate::issue(
                    &authority.signing_key,
                    subject,
                    role.into(),
                    name,
                    now,
                    until,
                )
                .context("cannot issue the certificate")?;
                let path = match out {
                    Some(path) => path,
                    None => common.ledger.cert_path(&subject)?,
                };
                write_json_output(&certificate, Some(&path))?;
                if common.json {
                    print_json(&serde_json::json!({ "path": path, "certificate": certificate }))
                } else {
                    println!(
                        "Issued a {} certificate for {} ({}) valid until {until}, signed by {}: {}",
                        certificate.role,
                        subject,
                        certificate.name,
                        authority.pubkey,
                        path.display()
                    );
                    Ok(())
                }
            }
        }
    }
}

fn init(mint: Option<Pubkey>, decimals: u8, common: &Common) -> anyhow::Result<()> {
    let admin = common.keypair.load("admin")?;
    let ledger = common.ledger.open_ledger()?;
    let ledger = ledger.as_ref();
    if let Some(config) = fetch_config(ledger)? {
        bail!(
            "the program is already initialised on this ledger (admin {}, mint {}); nothing changed",
            config.admin,
            config.mint
        );
    }
    let lamports = ledger.balance(&admin.pubkey)?;
    if lamports < ADMIN_MIN_LAMPORTS {
        ledger.airdrop(&admin.pubkey, 10 * ADMIN_MIN_LAMPORTS).with_context(|| {
            format!(
                "the admin {} holds {} and the cluster's faucet refused an airdrop: send it SOL first",
                admin.pubkey,
                sol(lamports)
            )
        })?;
    }
    let (mint, created) = match mint {
        Some(mint) => (mint, false),
        None => {
            let mint = Keypair::new();
            spl::create_mint(ledger, &admin.keypair, &mint, &admin.pubkey, decimals)
                .context("cannot create the payment mint")?;
            (mint.pubkey(), true)
        }
    };
    admin::init_config(ledger, &admin.keypair, &mint).context("config_init failed")?;
    let report = InitReport {
        program: pda::program_id().to_string(),
        config: pda::config().0.to_string(),
        admin: admin.pubkey.to_string(),
        mint: mint.to_string(),
        mint_created: created,
    };
    if common.json {
        print_json(&report)
    } else {
        println!(
            "Initialised µPIB program {}\n  admin {}\n  payment mint {}{}",
            report.program,
            report.admin,
            report.mint,
            if created {
                " (created, the admin is its mint authority)"
            } else {
                ""
            }
        );
        Ok(())
    }
}

fn set_paused(paused: bool, common: &Common) -> anyhow::Result<()> {
    let admin = common.keypair.load("admin")?;
    let ledger = common.ledger.open_ledger()?;
    require_admin(ledger.as_ref(), &admin)?;
    admin::set_paused(ledger.as_ref(), &admin.keypair, paused)
        .context("config_set_paused failed")?;
    let config = admin_of(ledger.as_ref())?;
    if common.json {
        print_json(&serde_json::json!({ "paused": config.paused, "resumed_at": config.resumed_at }))
    } else {
        let grace_hours = mupib::constants::BATCH_CLOSE_GRACE_SECS / 3600;
        if paused {
            println!(
                "Program paused: batches with unspent tokens cannot be closed until {grace_hours} h after the resume"
            );
        } else {
            println!(
                "Program resumed (resumed_at {}): expired batches become closable {grace_hours} h after it at the earliest",
                config.resumed_at
            );
        }
        Ok(())
    }
}

fn print_register(report: &RegisterReport, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(report);
    }
    println!(
        "Registered {} {}\n  registration {}\n  payment account {}\n  airdropped {}\n  funded {} base units",
        report.role,
        report.key,
        report.registration,
        report.payment_account,
        sol(report.airdropped_lamports),
        report.funded
    );
    Ok(())
}

//! Helpers shared by the role commands (admin, bank, user, vendor): the data directory, the
//! ledger (`--data-dir` embedded ledger or `--url` JSON-RPC), keypair and certificate files,
//! JSON output and progress bars.
//!
//! Data directory layout (default `$MUPIB_DATA_DIR`, else `$XDG_DATA_HOME/mupib`, else
//! `~/.local/share/mupib`), the same for every command that takes `--data-dir` (the role
//! commands, `mupib localnet`, `mupib auditor serve`, `mupib demo --data-dir`):
//! - `ledger/` ([`LEDGER_DIR`]): the embedded ledger (see `mupib_chain::ledger::embedded`);
//! - `banks/<bank>.json`: a bank's own data (tokens not yet handed out, batches, hand-outs);
//! - `wallets/<user>.json`: a user's wallet;
//! - `certs/<subject>.json`: certificates issued by `mupib admin issue-cert`.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use mupib_chain::ledger::rpc::RpcLedger;
use mupib_chain::ledger::{EmbeddedLedger, Ledger};
use mupib_protocol::cert::{pubkey_of, read_keypair_file, Certificate};
use mupib_protocol::token::Token;
use mupib_protocol::Pubkey;
use serde::Serialize;
use solana_sdk::signature::Keypair;

/// The embedded ledger's directory inside a data directory.
pub const LEDGER_DIR: &str = "ledger";

/// `<data-dir>/ledger`: where every command keeps (or finds) the embedded ledger.
pub fn ledger_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(LEDGER_DIR)
}

/// The data directory alone, for commands that only use its embedded ledger (`mupib localnet`).
#[derive(clap::Args, Debug, Clone)]
pub struct DataDirArgs {
    /// Data directory whose embedded ledger (in `<data-dir>/ledger`) is used, as every other
    /// command uses it. Default: $MUPIB_DATA_DIR, else ~/.local/share/mupib.
    #[arg(long, env = "MUPIB_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DataDirArgs {
    /// The data directory (created if missing).
    pub fn data_dir(&self) -> anyhow::Result<PathBuf> {
        resolve_data_dir(self.data_dir.as_deref())
    }
}

/// The data directory given, else the default one; created if missing.
fn resolve_data_dir(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = match given {
        Some(dir) => dir.to_path_buf(),
        None => default_data_dir()?,
    };
    std::fs::create_dir_all(&dir).with_context(|| {
        format!(
            "cannot create the data directory {}: pass --data-dir",
            dir.display()
        )
    })?;
    Ok(dir)
}

/// Where the ledger is and where role files are kept.
#[derive(clap::Args, Debug, Clone)]
pub struct LedgerArgs {
    /// Data directory holding the embedded ledger and the role files (wallets, bank data,
    /// certificates). Default: $MUPIB_DATA_DIR, else ~/.local/share/mupib.
    #[arg(long, env = "MUPIB_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Use the Solana cluster at this JSON-RPC URL instead of the embedded ledger
    /// (e.g. http://127.0.0.1:8899 for `solana-test-validator` or `mupib localnet`).
    #[arg(long)]
    pub url: Option<String>,
}

/// The identity file of the acting role.
#[derive(clap::Args, Debug, Clone)]
pub struct KeypairArg {
    /// Solana keypair file of the acting identity (a JSON array of 64 numbers, as written by
    /// `solana-keygen new`). Default: ~/.config/solana/id.json.
    #[arg(long, short = 'k')]
    pub keypair: Option<PathBuf>,
}

impl LedgerArgs {
    /// The data directory (created if missing).
    pub fn data_dir(&self) -> anyhow::Result<PathBuf> {
        resolve_data_dir(self.data_dir.as_deref())
    }

    /// Whether the ledger is the embedded one (no `--url`).
    pub fn is_embedded(&self) -> bool {
        self.url.is_none()
    }

    /// Opens the ledger: the embedded ledger in `<data-dir>/ledger`, or the cluster at `--url`.
    pub fn open_ledger(&self) -> anyhow::Result<Box<dyn Ledger>> {
        if let Some(url) = &self.url {
            return open_rpc(url);
        }
        let dir = ledger_dir(&self.data_dir()?);
        let ledger = EmbeddedLedger::open(&dir)
            .with_context(|| format!("cannot open the embedded ledger in {}", dir.display()))?;
        Ok(Box::new(ledger))
    }

    /// `<data-dir>/banks/<bank>.json`.
    pub fn bank_state_path(&self, bank: &Pubkey) -> anyhow::Result<PathBuf> {
        Ok(self.data_dir()?.join("banks").join(format!("{bank}.json")))
    }

    /// `<data-dir>/wallets/<user>.json`.
    pub fn wallet_path(&self, user: &Pubkey) -> anyhow::Result<PathBuf> {
        Ok(self
            .data_dir()?
            .join("wallets")
            .join(format!("{user}.json")))
    }

    /// `<data-dir>/certs/<subject>.json`.
    pub fn cert_path(&self, subject: &Pubkey) -> anyhow::Result<PathBuf> {
        Ok(self
            .data_dir()?
            .join("certs")
            .join(format!("{subject}.json")))
    }
}

/// The cluster at `url` through [`RpcLedger`] (bounded retries; nothing is contacted until the
/// first call, and an unreachable cluster fails with a clear error).
fn open_rpc(url: &str) -> anyhow::Result<Box<dyn Ledger>> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(anyhow!(
            "--url {url:?} is not an http:// or https:// JSON-RPC URL"
        ));
    }
    Ok(Box::new(RpcLedger::new(url)))
}

/// `$XDG_DATA_HOME/mupib`, else `~/.local/share/mupib`.
pub fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(xdg).join("mupib"));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| anyhow!("HOME is not set: pass --data-dir or set MUPIB_DATA_DIR"))?;
    Ok(PathBuf::from(home).join(".local/share/mupib"))
}

/// An identity loaded from a keypair file.
pub struct Identity {
    /// The ed25519 signing key.
    pub signing_key: ed25519_dalek::SigningKey,
    /// The same key as a Solana keypair (transaction signer).
    pub keypair: Keypair,
    /// The public key.
    pub pubkey: Pubkey,
    /// The file it came from.
    pub path: PathBuf,
}

impl KeypairArg {
    /// Loads the keypair file (default `~/.config/solana/id.json`).
    pub fn load(&self, role: &str) -> anyhow::Result<Identity> {
        let path = match &self.keypair {
            Some(path) => path.clone(),
            None => {
                let home = std::env::var_os("HOME").ok_or_else(|| {
                    anyhow!("HOME is not set: pass --keypair FILE for the {role}")
                })?;
                PathBuf::from(home).join(".config/solana/id.json")
            }
        };
        load_identity(&path, role)
    }
}

/// Loads a keypair file, with an error that says what to do.
pub fn load_identity(path: &Path, role: &str) -> anyhow::Result<Identity> {
    let signing_key = read_keypair_file(path).with_context(|| {
        format!(
            "cannot use {} as the {role}'s keypair: pass --keypair with a Solana keypair file \
             (create one with `solana-keygen new -o FILE`)",
            path.display()
        )
    })?;
    let pubkey = pubkey_of(&signing_key);
    Ok(Identity {
        keypair: Keypair::new_from_array(signing_key.to_bytes()),
        signing_key,
        pubkey,
        path: path.to_owned(),
    })
}

/// Reads a certificate file (JSON, as written by `mupib admin issue-cert`).
pub fn read_certificate(path: &Path) -> anyhow::Result<Certificate> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read certificate file {}", path.display()))?;
    let certificate: Certificate = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a µPIB certificate (expected the JSON written by `mupib admin issue-cert`)",
            path.display()
        )
    })?;
    certificate.verify_signature().with_context(|| {
        format!(
            "certificate {} is not validly signed by its issuer",
            path.display()
        )
    })?;
    Ok(certificate)
}

/// Reads a JSON file into `T`, saying what was expected.
pub fn read_json_file<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &str,
) -> anyhow::Result<T> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {what} file {}", path.display()))?
    };
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid {what} (JSON)", path.display()))
}

/// Writes `value` as pretty JSON to `path` atomically, or to stdout when `path` is `None`.
pub fn write_json_output<T: Serialize>(value: &T, path: Option<&Path>) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("cannot encode JSON")?;
    match path {
        Some(path) => mupib_client::wallet::write_file_atomic(path, format!("{text}\n").as_bytes())
            .with_context(|| format!("cannot write {}", path.display())),
        None => {
            println!("{text}");
            Ok(())
        }
    }
}

/// Prints `value` as JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    write_json_output(value, None)
}

/// Parses a public key argument.
pub fn parse_pubkey(text: &str) -> Result<Pubkey, String> {
    text.parse::<Pubkey>()
        .map_err(|e| format!("{text:?} is not a base58 public key: {e}"))
}

/// Wall-clock Unix time.
pub fn unix_now() -> anyhow::Result<i64> {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?;
    i64::try_from(since.as_secs()).context("the system clock is out of range")
}

/// A progress bar on stderr (hidden when `quiet` or when stderr is not a terminal).
pub fn progress_bar(length: u64, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(length);
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// Lamports as SOL, for display.
pub fn sol(lamports: u64) -> String {
    format!(
        "{}.{:09} SOL",
        lamports / 1_000_000_000,
        lamports % 1_000_000_000
    )
}

/// `bank:batch_id:serial` ids of tokens, for JSON output.
pub fn token_ids(tokens: &[Token]) -> Vec<String> {
    tokens.iter().map(|t| t.id().to_string()).collect()
}

//! `mupib auditor <serve|status|trace|settle|revoke>`: run the auditor service, inspect it, settle
//! payouts, revoke a key. Every command but `serve` authenticates as the operator with the token
//! `serve` keeps in its data directory (`--data-dir` or `--operator-token-file`).

use mupib_protocol::block::MAX_INITIAL_BLOCK_SIZE;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mupib_auditor::store::{PostgresOptions, PostgresTls};
use mupib_auditor::AuditorConfig;
use mupib_chain::ledger::rpc::RpcLedger;
use mupib_chain::ledger::{EmbeddedLedger, Ledger};
use mupib_chain::verifier::ChainVerifier;
use mupib_protocol::cert::{pubkey_of, read_keypair_file};
use mupib_protocol::money::Withholding;
use mupib_protocol::trust::{TrustModel, TrustScale};
use mupib_protocol::Pubkey;
use solana_sdk::signature::Keypair;

use mupib_chain::batch_directory::LedgerBatches;
use mupib_chain::payouts::LedgerPayouts;
use mupib_protocol::wire::RevokeRequest;
use mupib_service::access::operator_token_path;
use mupib_service::files::{load_payout_accounts, load_registry};
use mupib_service::{
    read_operator_token, DEFAULT_BODY_TIMEOUT_SECS, DEFAULT_HEADER_READ_TIMEOUT_SECS,
    DEFAULT_LISTEN_BACKLOG, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_LONG_POLLS,
    DEFAULT_NONCE_CAPACITY, DEFAULT_REGISTRY_POLL_MS, DEFAULT_REQUEST_WINDOW_SECS,
    DEFAULT_VENDOR_BURST, DEFAULT_VENDOR_RATE,
};
use mupib_service::{
    system_clock, PayoutSender, RunningService, ServiceConfig, ServiceParts, StoreChoice,
};

/// The auditor's commands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Run the auditor service: vendors submit countersigned payments over HTTP and get signed
    /// answers; blocks are verified on-chain; vendor payouts are settled in SPL transfers.
    Serve(Box<ServeArgs>),
    /// Show the running service's pending blocks, pending payouts and settlement journal.
    Status(StatusArgs),
    /// Trace a token (`bank:batch:serial`), a transaction (64 hex digits) or a block (a number).
    Trace(TraceArgs),
    /// Settle pending vendor payouts on-chain now (recovering unfinished batches first).
    Settle(SettleArgs),
    /// Revoke a key (a vendor, user or bank) at once: the running service refuses it from the
    /// next request on and remembers the revocation across restarts.
    Revoke(RevokeArgs),
}

impl Command {
    /// Runs the command.
    ///
    /// # Errors
    /// Whatever the command fails with, with context.
    pub fn execute(self) -> anyhow::Result<()> {
        match self {
            Command::Serve(args) => args.execute(),
            Command::Status(args) => args.execute(),
            Command::Trace(args) => args.execute(),
            Command::Settle(args) => args.execute(),
            Command::Revoke(args) => args.execute(),
        }
    }
}

/// Chain backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LedgerKind {
    /// The embedded ledger persisted in DATA_DIR/ledger (nothing to install).
    Embedded,
    /// A Solana JSON-RPC node at --url (solana-test-validator, devnet, `mupib localnet`).
    Rpc,
}

/// Trust model e for new users (paper eqs. 3–5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TrustModelArg {
    /// e = 0, linear trust, eq. (3).
    #[default]
    Neutral,
    /// e = 1, trust falls slowly at first, eq. (4).
    Optimistic,
    /// e = 2, trust falls fast at first, eq. (5).
    Pessimistic,
}

impl From<TrustModelArg> for TrustModel {
    fn from(model: TrustModelArg) -> Self {
        match model {
            TrustModelArg::Neutral => TrustModel::Neutral,
            TrustModelArg::Optimistic => TrustModel::Optimistic,
            TrustModelArg::Pessimistic => TrustModel::Pessimistic,
        }
    }
}

/// The scale N of the trust models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TrustScaleArg {
    /// N = W0,u (default; Proposition 1 holds).
    #[default]
    Initial,
    /// N = W_{i−1} (the literal reading of eqs. 3–5).
    Previous,
}

impl From<TrustScaleArg> for TrustScale {
    fn from(scale: TrustScaleArg) -> Self {
        match scale {
            TrustScaleArg::Initial => TrustScale::Initial,
            TrustScaleArg::Previous => TrustScale::Previous,
        }
    }
}

/// `mupib auditor serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Directory for the auditor database (auditor.sqlite), the service journal (service.sqlite)
    /// and, with --ledger embedded, the ledger (ledger/). Created if missing; reused after a
    /// restart (pending blocks and settlements are resumed).
    #[arg(long)]
    data_dir: PathBuf,
    /// Address to listen on. Keep it on loopback unless a proxy with TLS fronts the service.
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// The auditor's Solana keypair file (signs answers, blocks and payouts).
    #[arg(long)]
    keypair: PathBuf,
    /// Registry file (JSON): trusted authorities and the certificates of banks, users, vendors.
    #[arg(long)]
    registry: PathBuf,
    /// Chain backend.
    #[arg(long, value_enum, default_value_t = LedgerKind::Embedded)]
    ledger: LedgerKind,
    /// JSON-RPC URL, with --ledger rpc (e.g. http://127.0.0.1:8899).
    #[arg(long, required_if_eq("ledger", "rpc"))]
    url: Option<String>,
    /// The auditor's SPL token account: receives escrow payments for valid tokens, pays vendors.
    #[arg(long)]
    auditor_token: Pubkey,
    /// Payout accounts file (JSON, vendor → SPL token account). Without it, payouts only accrue.
    #[arg(long)]
    payout_accounts: Option<PathBuf>,
    /// Trust model e for new users.
    #[arg(long, value_enum, default_value_t)]
    trust_model: TrustModelArg,
    /// Trust scale N.
    #[arg(long, value_enum, default_value_t)]
    trust_scale: TrustScaleArg,
    /// Initial block size W0 for new users, in tokens: 1 to 9 873 (a block holds up to W − 1
    /// queued tokens plus one payment of up to 128 tokens, and the program verifies at most
    /// 10 000 tokens per block).
    #[arg(long, default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=MAX_INITIAL_BLOCK_SIZE))]
    initial_block_size: u64,
    /// Withholding ρ on vendor payouts: "20%", "0.2" or "2000bps".
    #[arg(long, default_value = "20%")]
    withholding: Withholding,
    /// Paper mode: no intake detection of double spending, double selling or forged tokens (only
    /// the chain detects, as in the paper's simulation). Off by default.
    #[arg(long)]
    paper_mode: bool,
    /// Largest request body in bytes (larger bodies get 413).
    #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Keep the engine's state in this PostgreSQL database (postgres://user:password@host:port/db)
    /// instead of auditor.sqlite in --data-dir; the service journal stays in --data-dir. Read
    /// from $MUPIB_STORE when not given, so the password stays out of the process list. One
    /// instance per database schema (a second one is refused at start).
    #[arg(long, env = "MUPIB_STORE", hide_env_values = true)]
    store: Option<String>,
    /// With --store: require TLS and trust the CA certificates in this PEM file (without it,
    /// a URL with sslmode=require is verified against the system's roots).
    #[arg(long, requires = "store")]
    store_ca: Option<PathBuf>,
    /// With --store: the schema that holds the tables (created if missing); default: the
    /// server's search_path.
    #[arg(long, requires = "store")]
    store_schema: Option<String>,
    /// Capacity of the queue of blocks waiting for the chain; a block that does not fit stays
    /// pending in the store and is retried.
    #[arg(long, default_value_t = 1024)]
    block_queue: usize,
    /// An intake group closes at this many transactions: they are verified in one ed25519
    /// batch and committed in one store transaction.
    #[arg(long, default_value_t = mupib_service::DEFAULT_GROUP_MAX)]
    group_max: usize,
    /// An intake group closes this many milliseconds after its first request (the most a
    /// lone request waits for company).
    #[arg(long, default_value_t = mupib_service::DEFAULT_GROUP_WINDOW_MS)]
    group_window_ms: u64,
    /// Transactions the intake pipeline holds at once (queued, verifying, committing); more get
    /// 503 with Retry-After.
    #[arg(long, default_value_t = mupib_service::DEFAULT_INTAKE_QUEUE)]
    intake_queue: usize,
    /// Seconds between settlement runs.
    #[arg(long, default_value_t = 10)]
    settle_interval_secs: u64,
    #[command(flatten)]
    limits: LimitArgs,
}

impl ServeArgs {
    fn execute(self) -> anyhow::Result<()> {
        let auditor_key = read_keypair_file(&self.keypair)
            .with_context(|| format!("reading the auditor keypair {}", self.keypair.display()))?;
        let registry = load_registry(&self.registry)?;
        let ledger: Arc<dyn Ledger> = match self.ledger {
            LedgerKind::Embedded => Arc::new(
                EmbeddedLedger::open(super::common::ledger_dir(&self.data_dir))
                    .context("opening the embedded ledger")?,
            ),
            LedgerKind::Rpc => {
                let url = self
                    .url
                    .clone()
                    .context("--ledger rpc needs --url <JSON-RPC URL>")?;
                Arc::new(RpcLedger::new(url))
            }
        };
        let keypair = || Keypair::new_from_array(auditor_key.to_bytes());
        let auditor = pubkey_of(&auditor_key);
        let verifier = ChainVerifier::new(Arc::clone(&ledger), keypair(), self.auditor_token);
        let payouts: Option<Box<dyn PayoutSender>> = match &self.payout_accounts {
            None => None,
            Some(path) => Some(Box::new(LedgerPayouts::new(
                Arc::clone(&ledger),
                keypair(),
                self.auditor_token,
                load_payout_accounts(path)?,
            ))),
        };
        let engine = AuditorConfig {
            withholding: self.withholding,
            trust_model: self.trust_model.into(),
            trust_scale: self.trust_scale.into(),
            initial_block_size: self.initial_block_size,
            paper_mode: self.paper_mode,
        };
        let mut config = ServiceConfig::new(Some(self.data_dir.clone()), self.listen, engine);
        config.max_body_bytes = self.max_body_bytes;
        config.block_queue = self.block_queue;
        if let Some(url) = &self.store {
            config.store = postgres_store(url, self.store_ca.as_ref(), self.store_schema.as_ref())?;
        }
        config.group_max = self.group_max.max(1);
        config.group_window = Duration::from_millis(self.group_window_ms);
        config.intake_queue = self.intake_queue.max(1);
        config.settle_interval = Some(Duration::from_secs(self.settle_interval_secs.max(1)));
        config.registry_file = Some(self.registry.clone());
        self.limits.apply(&mut config);
        let service = RunningService::start(
            config,
            ServiceParts {
                auditor_key,
                registry,
                verifier: Box::new(verifier),
                payouts,
                batches: Some(Box::new(LedgerBatches::new(Arc::clone(&ledger), auditor))),
                clock: system_clock(),
            },
        )?;
        println!(
            "auditor service listening on {} (data in {}); Ctrl-C stops it",
            service.url(),
            self.data_dir.display()
        );
        println!(
            "operator token in {} (mupib auditor status|trace|settle|revoke --data-dir {})",
            operator_token_path(&self.data_dir).display(),
            self.data_dir.display()
        );
        service.wait()?;
        println!("auditor service stopped");
        Ok(())
    }
}

/// Where the running service is, and the operator's credential.
#[derive(clap::Args)]
pub struct ServiceUrl {
    /// URL of the running auditor service.
    #[arg(long, default_value = "http://127.0.0.1:8787")]
    url: String,
    /// The service's data directory: the operator token is read from DATA_DIR/operator.token.
    #[arg(long, conflicts_with = "operator_token_file")]
    data_dir: Option<PathBuf>,
    /// The operator token file (what `auditor serve` created as DATA_DIR/operator.token).
    #[arg(long, env = "MUPIB_OPERATOR_TOKEN_FILE")]
    operator_token_file: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

impl ServiceUrl {
    fn base(&self) -> &str {
        self.url.trim_end_matches('/')
    }

    /// The operator token from --operator-token-file or --data-dir.
    fn token(&self) -> anyhow::Result<String> {
        let path = match (&self.operator_token_file, &self.data_dir) {
            (Some(file), _) => file.clone(),
            (None, Some(dir)) => operator_token_path(dir),
            (None, None) => anyhow::bail!(
                "this command needs the operator token: pass --data-dir <the service's data directory> (it holds operator.token) or --operator-token-file <file>"
            ),
        };
        Ok(read_operator_token(&path)?)
    }

    /// Sends `request` with the operator token and reads the JSON answer.
    fn send(
        &self,
        request: reqwest::blocking::RequestBuilder,
    ) -> anyhow::Result<serde_json::Value> {
        let url = self.base();
        let response = request.bearer_auth(self.token()?).send().with_context(|| {
            format!("cannot reach the auditor service at {url}; is `mupib auditor serve` running?")
        })?;
        read_json(response)
    }

    fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        self.send(reqwest::blocking::Client::new().get(format!("{}{path}", self.base())))
    }
}

fn read_json(response: reqwest::blocking::Response) -> anyhow::Result<serde_json::Value> {
    let status = response.status();
    let body: serde_json::Value = response.json().with_context(|| {
        format!("the service answered HTTP {status} with a body that is not JSON")
    })?;
    if !status.is_success() {
        let message = body
            .pointer("/error/message")
            .and_then(|m| m.as_str())
            .unwrap_or("no message");
        anyhow::bail!("the service refused (HTTP {status}): {message}");
    }
    Ok(body)
}

fn print(value: &serde_json::Value, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print_text(value, 0);
    }
    Ok(())
}

/// Indented `key: value` lines.
fn print_text(value: &serde_json::Value, indent: usize) {
    let pad = " ".repeat(indent);
    match value {
        serde_json::Value::Object(map) => {
            for (key, item) in map {
                if item.is_object() || item.is_array() {
                    println!("{pad}{key}:");
                    print_text(item, indent + 2);
                } else {
                    println!("{pad}{key}: {item}");
                }
            }
        }
        serde_json::Value::Array(items) if items.is_empty() => println!("{pad}(none)"),
        serde_json::Value::Array(items) => {
            for item in items {
                if item.is_object() || item.is_array() {
                    println!("{pad}-");
                    print_text(item, indent + 2);
                } else {
                    println!("{pad}- {item}");
                }
            }
        }
        other => println!("{pad}{other}"),
    }
}

/// `mupib auditor status`.
#[derive(clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    service: ServiceUrl,
}

impl StatusArgs {
    fn execute(self) -> anyhow::Result<()> {
        let value = self.service.get("/v1/status")?;
        print(&value, self.service.json)
    }
}

/// `mupib auditor trace`.
#[derive(clap::Args)]
pub struct TraceArgs {
    /// A token (`bank:batch_id:serial`), a transaction id (64 hex digits) or a block id (number).
    what: String,
    #[command(flatten)]
    service: ServiceUrl,
}

impl TraceArgs {
    fn execute(self) -> anyhow::Result<()> {
        let what = self.what.trim();
        let path = if what.contains(':') {
            format!("tokens/{what}")
        } else if what.len() == 64 && what.chars().all(|c| c.is_ascii_hexdigit()) {
            format!("transactions/{what}")
        } else if what.parse::<u64>().is_ok() {
            format!("blocks/{what}")
        } else {
            anyhow::bail!(
                "{what:?} is neither a token (bank:batch_id:serial), a transaction id (64 hex digits) nor a block id (a number)"
            );
        };
        let value = self.service.get(&format!("/v1/{path}"))?;
        print(&value, self.service.json)
    }
}

/// `mupib auditor settle`.
#[derive(clap::Args)]
pub struct SettleArgs {
    #[command(flatten)]
    service: ServiceUrl,
}

impl SettleArgs {
    fn execute(self) -> anyhow::Result<()> {
        let value = self.service.send(
            reqwest::blocking::Client::new().post(format!("{}/v1/settle", self.service.base())),
        )?;
        print(&value, self.service.json)
    }
}

/// `mupib auditor revoke`.
#[derive(clap::Args)]
pub struct RevokeArgs {
    /// The key to revoke (base58).
    key: Pubkey,
    #[command(flatten)]
    service: ServiceUrl,
}

impl RevokeArgs {
    fn execute(self) -> anyhow::Result<()> {
        let request = RevokeRequest { key: self.key };
        let value = self.service.send(
            reqwest::blocking::Client::new()
                .post(format!("{}/v1/registry/revoke", self.service.base()))
                .json(&request),
        )?;
        print(&value, self.service.json)
    }
}

/// The service's limits (`mupib auditor serve`); each default is the service's own
/// (`mupib_service::DEFAULT_*`, chosen as docs/DESIGN.md explains).
#[derive(clap::Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitArgs {
    /// Most open connections; at the cap the connection idle longest is closed to make room
    /// (only when every connection has a request in flight is a new one refused).
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Connections the kernel queues before the service accepts them (capped by
    /// net.core.somaxconn).
    #[arg(long, default_value_t = DEFAULT_LISTEN_BACKLOG)]
    listen_backlog: u32,
    /// Seconds for a request's headers to arrive; also how long an idle connection stays open.
    #[arg(long, default_value_t = DEFAULT_HEADER_READ_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout_secs: u64,
    /// Largest request head in bytes (at least 8192).
    #[arg(long, default_value_t = DEFAULT_MAX_HEADER_BYTES)]
    max_header_bytes: usize,
    /// Seconds for a whole request body to arrive (408 after it).
    #[arg(long, default_value_t = DEFAULT_BODY_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    body_timeout_secs: u64,
    /// Requests in flight at once (503 with Retry-After above); long-polls have their own cap.
    #[arg(long, default_value_t = DEFAULT_MAX_IN_FLIGHT)]
    max_in_flight: usize,
    /// Long-polls (GET /v1/transactions/ID/final) open at once (503 with Retry-After above).
    #[arg(long, default_value_t = DEFAULT_MAX_LONG_POLLS)]
    max_long_polls: usize,
    /// Requests per second each vendor may sustain (429 with Retry-After above).
    #[arg(long, default_value_t = DEFAULT_VENDOR_RATE)]
    vendor_rate: u32,
    /// Requests a vendor may send at once above its rate.
    #[arg(long, default_value_t = DEFAULT_VENDOR_BURST)]
    vendor_burst: u32,
    /// Seconds a vendor's signed request may be older or newer than the auditor's clock.
    #[arg(long, default_value_t = DEFAULT_REQUEST_WINDOW_SECS)]
    request_window_secs: u64,
    /// Signed-request nonces remembered to refuse replays (503 when full).
    #[arg(long, default_value_t = DEFAULT_NONCE_CAPACITY)]
    nonce_capacity: usize,
    /// Milliseconds between looks at the registry file (a change applies without restart).
    #[arg(long, default_value_t = DEFAULT_REGISTRY_POLL_MS)]
    registry_poll_ms: u64,
}

impl LimitArgs {
    fn apply(&self, config: &mut ServiceConfig) {
        config.max_connections = self.max_connections;
        config.listen_backlog = self.listen_backlog;
        config.header_read_timeout = Duration::from_secs(self.header_timeout_secs);
        config.max_header_bytes = self.max_header_bytes;
        config.body_timeout = Duration::from_secs(self.body_timeout_secs);
        config.max_in_flight = self.max_in_flight;
        config.max_long_polls = self.max_long_polls;
        config.vendor_rate = self.vendor_rate;
        config.vendor_burst = self.vendor_burst;
        config.request_window = Duration::from_secs(self.request_window_secs);
        config.nonce_capacity = self.nonce_capacity;
        config.registry_poll = Duration::from_millis(self.registry_poll_ms.max(10));
    }
}

/// The PostgreSQL store `--store`, `--store-ca` and `--store-schema` describe.
fn postgres_store(
    url: &str,
    ca: Option<&PathBuf>,
    schema: Option<&String>,
) -> anyhow::Result<StoreChoice> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        anyhow::bail!(
            "--store takes a PostgreSQL URL (postgres://user:password@host:port/database); leave it out to keep the store in --data-dir"
        );
    }
    let wants_tls = url.contains("sslmode=require");
    let tls = match (ca, wants_tls) {
        (Some(ca), _) => PostgresTls::Required {
            root_certificates: Some(ca.clone()),
        },
        (None, true) => PostgresTls::Required {
            root_certificates: None,
        },
        (None, false) => PostgresTls::Disabled,
    };
    Ok(StoreChoice::Postgres {
        url: url.to_owned(),
        options: PostgresOptions {
            tls,
            schema: schema.cloned(),
            application_name: format!("mupib-auditor-{}", std::process::id()),
            ..PostgresOptions::default()
        },
    })
}

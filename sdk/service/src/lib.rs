//! The auditor service (issue 5 part 2; SPEC §4; paper Fig. 1 messages 3–10): vendors submit
//! countersigned transactions over HTTP and get the auditor's signed answer at once; blocks
//! formed at intake are verified on the chain by a background thread through a
//! [`BlockVerifier`]; waiting vendors get their final answer by long-poll; vendor payouts are
//! settled on-chain in batched SPL transfers, idempotently.
//!
//! - [`api`]: routes, handlers, trace views; [`error`]: JSON errors with status codes;
//! - [`pipeline`]: intake in groups (one signature batch, one store commit per group, the
//!   chain's block decisions committed with them), the chain thread;
//! - [`state`]: the shared state, answers re-derived from the store; [`journal`]: the service's
//!   own records (`service.sqlite`);
//! - [`settlement`]: exactly-once payouts; [`metrics`]: Prometheus counters.
//!
//! Durability: the engine's store (SQLite `auditor.sqlite` in the data directory by default)
//! commits every step atomically and has exactly one writer (a second `auditor serve` on the
//! same data directory is refused at start); blocks still pending at start are resumed
//! ([`mupib_auditor::Auditor::resume`]) before the service accepts traffic; the settlement
//! worker resolves open settlement batches before it starts new ones. Shutdown ([`RunningService::shutdown`],
//! Ctrl-C in `mupib auditor serve`): stop accepting, finish in-flight requests, release
//! long-polls, verify the blocks already queued, stop the settlement worker, close the databases.
//!
//! Who may call what ([`access`]): vendors sign their requests with their registered key and see
//! only their own transactions and account (and any user's standing); the operator holds a
//! bearer token (`operator.token` in the data directory) for everything else; `/health` is open.
//! The registry is live ([`registry`]): a changed registry file or `POST /v1/registry/revoke`
//! takes effect for the next request, without a restart.
//!
//! Bounds, each a [`ServiceConfig`] field and a `mupib auditor serve` flag: request heads
//! ([`ServiceConfig::header_read_timeout`], which also closes idle connections, and
//! [`ServiceConfig::max_header_bytes`]) and bodies ([`ServiceConfig::body_timeout`], 408;
//! [`ServiceConfig::max_body_bytes`], 413); open connections ([`ServiceConfig::max_connections`],
//! the connection idle longest is closed to make room; [`server`]); requests in flight
//! ([`ServiceConfig::max_in_flight`]) and long-polls ([`ServiceConfig::max_long_polls`]), 503 +
//! `Retry-After` above; per-vendor rates ([`ServiceConfig::vendor_rate`],
//! [`ServiceConfig::vendor_burst`], 429 + `Retry-After`); signed-request timestamps
//! ([`ServiceConfig::request_window`]) and the replay cache ([`ServiceConfig::nonce_capacity`]);
//! the intake pipeline ([`ServiceConfig::intake_queue`] transactions, 503 + `Retry-After` when
//! full, before anything is written; groups of [`ServiceConfig::group_max`] transactions or
//! [`ServiceConfig::group_window`]); long-polls (60 s each); batch submissions
//! ([`ServiceConfig::max_batch`]).

pub mod access;
pub mod api;
pub mod error;
pub mod files;
pub mod instances;
pub mod journal;
pub mod metrics;
pub mod pipeline;
pub mod registry;
pub mod server;
pub mod settlement;
pub mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use mupib_auditor::store::{MemoryStore, PostgresOptions, PostgresStore, SqliteStore, Store};
use mupib_auditor::{Auditor, AuditorConfig};
use mupib_protocol::batch::BatchDirectory;
use mupib_protocol::block::BlockVerifier;
use mupib_protocol::cert::Registry;
use tokio::sync::watch;

pub use access::{read_operator_token, Caller, OperatorToken, OPERATOR_TOKEN_FILE};
pub use error::{ApiError, ServiceError};
pub use mupib_auditor::settlement::SettlementReport;
pub use pipeline::{
    PipelineConfig, DEFAULT_GROUP_MAX, DEFAULT_GROUP_WINDOW_MS, DEFAULT_INTAKE_QUEUE,
};
pub use settlement::{run_settlement, PayoutSender};
pub use state::{system_clock, AppState, Clock, Engine};

use access::{Gate, GateConfig};
use journal::Journal;
use metrics::Metrics;
use registry::LiveRegistry;

/// Name of the engine's database in the data directory.
pub const STORE_FILE: &str = "auditor.sqlite";
/// Name of the service journal in the data directory.
pub const JOURNAL_FILE: &str = "service.sqlite";

// Defaults of the limits (the `mupib auditor serve` flags show the same values). How each was
// chosen is in docs/DESIGN.md, "Authentication, authorization and limits".

/// Default [`ServiceConfig::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default [`ServiceConfig::listen_backlog`].
pub const DEFAULT_LISTEN_BACKLOG: u32 = 1024;
/// Default [`ServiceConfig::header_read_timeout`], seconds.
pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 10;
/// Default [`ServiceConfig::max_header_bytes`].
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Default [`ServiceConfig::body_timeout`], seconds.
pub const DEFAULT_BODY_TIMEOUT_SECS: u64 = 10;
/// Default [`ServiceConfig::max_body_bytes`].
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Default [`ServiceConfig::max_in_flight`].
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;
/// Default [`ServiceConfig::max_long_polls`].
pub const DEFAULT_MAX_LONG_POLLS: usize = 512;
/// Default [`ServiceConfig::vendor_rate`], requests per second.
pub const DEFAULT_VENDOR_RATE: u32 = 100;
/// Default [`ServiceConfig::vendor_burst`], requests.
pub const DEFAULT_VENDOR_BURST: u32 = 200;
/// Default [`ServiceConfig::request_window`], seconds either way.
pub const DEFAULT_REQUEST_WINDOW_SECS: u64 = mupib_protocol::request::DEFAULT_REQUEST_SKEW_SECS;
/// Default [`ServiceConfig::nonce_capacity`].
pub const DEFAULT_NONCE_CAPACITY: usize = 262_144;
/// Default [`ServiceConfig::registry_poll`], milliseconds.
pub const DEFAULT_REGISTRY_POLL_MS: u64 = 1_000;

/// Where the engine's state lives.
#[derive(Clone, Default)]
pub enum StoreChoice {
    /// `auditor.sqlite` in the data directory (in memory without one). The default.
    #[default]
    Sqlite,
    /// A PostgreSQL database (`postgres://user:password@host:port/database`), which several
    /// instances may share (see [`instances`]); each instance's journal stays in its data
    /// directory.
    Postgres {
        /// The connection URL.
        url: String,
        /// Pool, TLS, timeouts, schema.
        options: PostgresOptions,
    },
}

impl std::fmt::Debug for StoreChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreChoice::Sqlite => f.write_str("Sqlite"),
            // The URL may carry a password: only the options are shown.
            StoreChoice::Postgres { options, .. } => f
                .debug_struct("Postgres")
                .field("url", &"<redacted>")
                .field("options", options)
                .finish(),
        }
    }
}

/// Settings of the service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Data directory for `auditor.sqlite` and `service.sqlite`; `None` keeps everything in
    /// memory (tests only: nothing survives a restart).
    pub data_dir: Option<PathBuf>,
    /// Where the engine's state lives (SQLite in the data directory by default).
    pub store: StoreChoice,
    /// Address to listen on (port 0: an ephemeral port, see [`RunningService::addr`]).
    pub listen: SocketAddr,
    /// The engine's settings (trust model, W0, withholding, paper mode).
    pub engine: AuditorConfig,
    /// Largest request body in bytes (413 above).
    pub max_body_bytes: usize,
    /// Most transactions in one batch submission.
    pub max_batch: usize,
    /// Capacity of the queue of blocks waiting for the chain (a block that does not fit stays
    /// pending in the store and is retried).
    pub block_queue: usize,
    /// How often the chain thread retries pending blocks after a verifier failure.
    pub retry_interval: Duration,
    /// An intake group closes at this many transactions.
    pub group_max: usize,
    /// An intake group closes this long after its first request.
    pub group_window: Duration,
    /// Transactions the intake pipeline holds at once (503 + Retry-After above).
    pub intake_queue: usize,
    /// How often the settlement worker runs (`None`: never; use `mupib auditor settle`).
    pub settle_interval: Option<Duration>,
    /// Worker threads of the async runtime.
    pub worker_threads: usize,
    /// How long a token's batch must stay redeemable after intake (the time its block may take
    /// to form and be verified); a token whose batch expires sooner is refused.
    pub min_batch_life: Duration,
    /// The registry file the registry was read from: polled for changes and reloaded (`None`:
    /// the registry only changes through `POST /v1/registry/revoke`).
    pub registry_file: Option<PathBuf>,
    /// How often the registry file is looked at.
    pub registry_poll: Duration,
    /// Most open connections; at the cap the connection idle longest is closed to make room.
    pub max_connections: usize,
    /// Connections the kernel queues before the service accepts them (capped by
    /// `net.core.somaxconn`); a full queue drops new connection attempts for a second.
    pub listen_backlog: u32,
    /// Time for a request's headers to arrive; also how long an idle connection stays open.
    pub header_read_timeout: Duration,
    /// Largest request head in bytes (at least 8 KiB).
    pub max_header_bytes: usize,
    /// Time for a whole request body to arrive (408 after it).
    pub body_timeout: Duration,
    /// Requests in flight at once on every authenticated route but the long-poll (503 +
    /// Retry-After above).
    pub max_in_flight: usize,
    /// Long-polls (`/final`) open at once (503 + Retry-After above).
    pub max_long_polls: usize,
    /// Requests per second each vendor may sustain (429 + Retry-After above).
    pub vendor_rate: u32,
    /// Requests a vendor may send in a burst above its rate.
    pub vendor_burst: u32,
    /// How far a signed request's timestamp may be from the service's clock, either way.
    pub request_window: Duration,
    /// Most nonces of signed requests remembered (503 when full of unexpired ones).
    pub nonce_capacity: usize,
}

impl ServiceConfig {
    /// Defaults: 64 KiB bodies, batches of 64, a queue of 1024 blocks, retries every 2 s,
    /// settlement every 10 s, batches living at least one more day, and the `DEFAULT_*` limits.
    pub fn new(data_dir: Option<PathBuf>, listen: SocketAddr, engine: AuditorConfig) -> Self {
        ServiceConfig {
            data_dir,
            store: StoreChoice::Sqlite,
            listen,
            engine,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_batch: 64,
            block_queue: 1024,
            retry_interval: Duration::from_secs(2),
            group_max: DEFAULT_GROUP_MAX,
            group_window: Duration::from_millis(DEFAULT_GROUP_WINDOW_MS),
            intake_queue: DEFAULT_INTAKE_QUEUE,
            settle_interval: Some(Duration::from_secs(10)),
            worker_threads: 2,
            min_batch_life: Duration::from_secs(24 * 3600),
            registry_file: None,
            registry_poll: Duration::from_millis(DEFAULT_REGISTRY_POLL_MS),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            listen_backlog: DEFAULT_LISTEN_BACKLOG,
            header_read_timeout: Duration::from_secs(DEFAULT_HEADER_READ_TIMEOUT_SECS),
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            body_timeout: Duration::from_secs(DEFAULT_BODY_TIMEOUT_SECS),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_long_polls: DEFAULT_MAX_LONG_POLLS,
            vendor_rate: DEFAULT_VENDOR_RATE,
            vendor_burst: DEFAULT_VENDOR_BURST,
            request_window: Duration::from_secs(DEFAULT_REQUEST_WINDOW_SECS),
            nonce_capacity: DEFAULT_NONCE_CAPACITY,
        }
    }
}

/// What the service runs with besides its settings.
pub struct ServiceParts {
    /// The auditor's signing key (answers are signed with it).
    pub auditor_key: SigningKey,
    /// Trusted authorities and known certificates (banks, users, vendors); with
    /// [`ServiceConfig::registry_file`], replaced whenever that file changes.
    pub registry: Registry,
    /// The chain, for block verification.
    pub verifier: Box<dyn BlockVerifier + Send>,
    /// The chain, for payouts (`None`: balances only accrue).
    pub payouts: Option<Box<dyn PayoutSender>>,
    /// The chain, for the batches intake checks tokens against (`None`: not checked; only for
    /// simulated chains in tests).
    pub batches: Option<Box<dyn BatchDirectory>>,
    /// The clock.
    pub clock: Clock,
}

/// The engine, its read-only view and the journal of a data directory.
pub struct Opened {
    /// The engine over the store (the single writer).
    pub engine: Engine,
    /// A read-only engine over the same database (`None` in memory).
    pub reader: Option<Engine>,
    /// The service journal.
    pub journal: Journal,
    /// How this instance agrees with the other instances of its store.
    pub coordination: Box<dyn instances::Coordination>,
}

/// Opens the engine's store (`store`: SQLite in `data_dir` or in memory, or PostgreSQL), a
/// read-only view of it and the journal in `data_dir` (or in memory).
///
/// # Errors
/// [`ServiceError::Io`], [`ServiceError::Store`] (also when another process writes the store),
/// [`ServiceError::Journal`].
pub fn open_data(
    data_dir: Option<&std::path::Path>,
    store: &StoreChoice,
    engine: AuditorConfig,
) -> Result<Opened, ServiceError> {
    if let Some(dir) = data_dir {
        std::fs::create_dir_all(dir).map_err(|source| ServiceError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let journal = match data_dir {
        Some(dir) => Journal::open(&dir.join(JOURNAL_FILE))?,
        None => Journal::in_memory()?,
    };
    // (writer, read-only view, coordination with other instances)
    type Stores = (
        Box<dyn Store + Send>,
        Option<Box<dyn Store + Send>>,
        Box<dyn instances::Coordination>,
    );
    let (writer, reader, coordination): Stores = match (store, data_dir) {
        (StoreChoice::Postgres { url, options }, _) => {
            let postgres = PostgresStore::open(url, options)?;
            let leases = instances::SharedInstance(postgres.leases());
            (
                Box::new(postgres.clone()),
                Some(Box::new(postgres)),
                Box::new(leases),
            )
        }
        // The writer first: it takes the data directory's lock and migrates the schema.
        (StoreChoice::Sqlite, Some(dir)) => (
            Box::new(SqliteStore::open(dir.join(STORE_FILE))?),
            Some(Box::new(SqliteStore::open_reader(dir.join(STORE_FILE))?)),
            Box::new(instances::SingleInstance),
        ),
        (StoreChoice::Sqlite, None) => (
            Box::new(MemoryStore::new()),
            None,
            Box::new(instances::SingleInstance),
        ),
    };
    Ok(Opened {
        engine: Auditor::new(writer, engine)?,
        reader: reader
            .map(|reader| Auditor::new(reader, engine))
            .transpose()?,
        journal,
        coordination,
    })
}

/// A running service (on its own thread with its own async runtime).
pub struct RunningService {
    addr: SocketAddr,
    state: Arc<AppState>,
    operator_token: String,
    stop: Option<tokio::sync::oneshot::Sender<Stop>>,
    thread: Option<JoinHandle<Result<(), ServiceError>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Stop accepting, drain, flush.
    Graceful,
    /// Drop everything at once (simulates a crash at a step boundary: each step is atomic).
    Kill,
}

impl std::fmt::Debug for RunningService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningService")
            .field("addr", &self.addr)
            .finish()
    }
}

impl RunningService {
    /// Opens the data directory, resumes pending blocks (engine `resume`), recovers unfinished
    /// settlements, binds `config.listen` and serves until [`Self::shutdown`].
    ///
    /// # Errors
    /// Opening the stores, resuming, binding; the error says which.
    pub fn start(config: ServiceConfig, parts: ServiceParts) -> Result<Self, ServiceError> {
        let Opened {
            mut engine,
            reader,
            journal,
            coordination,
        } = open_data(config.data_dir.as_deref(), &config.store, config.engine)?;
        let mut verifier = parts.verifier;
        // Blocks formed before a crash or stop: verified and applied before serving. On a shared
        // store other instances may be verifying them: the chain thread's first sweep takes
        // them, each under its lease, instead.
        if !coordination.shared() {
            match engine.resume(verifier.as_mut()) {
                Ok(outcomes) => {
                    if !outcomes.is_empty() {
                        tracing::info!(blocks = outcomes.len(), "resumed pending blocks");
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "resuming pending blocks failed; the chain thread retries them")
                }
            }
        }
        let payouts = parts.payouts;
        warn_if_few_file_descriptors(config.max_connections);
        let std_listener =
            server::bind(config.listen, config.listen_backlog).map_err(|source| {
                ServiceError::Bind {
                    addr: config.listen,
                    source,
                }
            })?;
        let addr = std_listener
            .local_addr()
            .map_err(|source| ServiceError::Bind {
                addr: config.listen,
                source,
            })?;
        let operator = match config.data_dir.as_deref() {
            Some(dir) => OperatorToken::load_or_create(dir)?,
            None => OperatorToken::generate(),
        };
        let operator_token = operator.as_str().to_owned();
        let registry = LiveRegistry::new(
            parts.registry,
            config.registry_file.clone(),
            config.data_dir.as_deref(),
        )?;
        let gate = Gate::new(
            operator,
            GateConfig {
                request_window: config.request_window,
                nonce_capacity: config.nonce_capacity,
                vendor_rate: config.vendor_rate,
                vendor_burst: config.vendor_burst,
                max_body_bytes: config.max_body_bytes,
                body_timeout: config.body_timeout,
            },
        );
        let (intake, pipeline_parts) = pipeline::intake(
            PipelineConfig {
                group_max: config.group_max,
                group_window: config.group_window,
                queue: config.intake_queue,
                block_queue: config.block_queue,
                retry_interval: config.retry_interval,
            },
            verifier,
        );
        let (decided, _) = watch::channel(0u64);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let state = Arc::new(AppState {
            engine: Mutex::new(engine),
            reader: reader.map(Mutex::new),
            journal: Mutex::new(journal),
            intake,
            auditor_key: parts.auditor_key,
            registry,
            gate,
            clock: parts.clock,
            decided,
            shutdown: shutdown_rx,
            metrics: Metrics::default(),
            max_batch: config.max_batch,
            batches: parts.batches,
            min_batch_life: i64::try_from(config.min_batch_life.as_secs()).unwrap_or(i64::MAX),
            payouts: Mutex::new(payouts),
            last_settlement: Mutex::new(None),
            coordination,
        });
        let pipeline = pipeline::Pipeline::start(Arc::clone(&state), pipeline_parts)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads.max(1))
            .enable_all()
            .build()
            .map_err(ServiceError::Runtime)?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let thread_state = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("mupib-auditor".into())
            .spawn(move || {
                serve(
                    runtime,
                    std_listener,
                    thread_state,
                    config,
                    pipeline,
                    shutdown_tx,
                    stop_rx,
                )
            })
            .map_err(ServiceError::Runtime)?;
        Ok(RunningService {
            addr,
            state,
            operator_token,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The shared state (in-process inspection in tests and the demo).
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// The operator's bearer token (`Authorization: Bearer <token>`): the content of
    /// `operator.token` in the data directory, or the one generated for an in-memory service.
    pub fn operator_token(&self) -> &str {
        &self.operator_token
    }

    /// Graceful shutdown: stop accepting, finish in-flight requests, verify queued blocks, run a
    /// last settlement, close the databases; waits for it.
    ///
    /// # Errors
    /// What the service thread ended with.
    pub fn shutdown(mut self) -> Result<(), ServiceError> {
        self.stop_with(Stop::Graceful)
    }

    /// Stops at once without draining (in-flight requests are cut, queued blocks stay pending in
    /// the store): what a crash leaves behind, since every engine step is atomic.
    ///
    /// # Errors
    /// What the service thread ended with.
    pub fn kill(mut self) -> Result<(), ServiceError> {
        self.stop_with(Stop::Kill)
    }

    /// Blocks until the service stops by itself (Ctrl-C).
    ///
    /// # Errors
    /// What the service thread ended with.
    pub fn wait(mut self) -> Result<(), ServiceError> {
        self.join()
    }

    fn stop_with(&mut self, stop: Stop) -> Result<(), ServiceError> {
        if let Some(sender) = self.stop.take() {
            let _ = sender.send(stop);
        }
        self.join()
    }

    fn join(&mut self) -> Result<(), ServiceError> {
        match self.thread.take() {
            None => Ok(()),
            Some(thread) => thread.join().map_err(|panic| {
                ServiceError::Panicked(
                    panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default(),
                )
            })?,
        }
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        if let Err(error) = self.stop_with(Stop::Graceful) {
            tracing::error!(%error, "auditor service stopped with an error");
        }
    }
}

/// The service thread: HTTP server and settlement worker until stopped, then the pipeline's
/// stop (drain on a graceful stop, at once on a kill).
fn serve(
    runtime: tokio::runtime::Runtime,
    listener: std::net::TcpListener,
    state: Arc<AppState>,
    config: ServiceConfig,
    pipeline: pipeline::Pipeline,
    shutdown: watch::Sender<bool>,
    stop: tokio::sync::oneshot::Receiver<Stop>,
) -> Result<(), ServiceError> {
    let outcome = runtime.block_on(async {
        let listener =
            tokio::net::TcpListener::from_std(listener).map_err(|source| ServiceError::Bind {
                addr: config.listen,
                source,
            })?;
        let app = api::router(
            Arc::clone(&state),
            api::RouterLimits {
                max_body_bytes: config.max_body_bytes,
                body_timeout: config.body_timeout,
                max_in_flight: config.max_in_flight,
                max_long_polls: config.max_long_polls,
            },
        );
        let server = server::run(
            listener,
            app,
            server::ServerLimits {
                max_connections: config.max_connections,
                header_read_timeout: config.header_read_timeout,
                max_header_bytes: config.max_header_bytes,
            },
            Arc::clone(&state),
            shutdown.subscribe(),
        );
        let registry_worker = tokio::spawn(registry_worker(
            Arc::clone(&state),
            config.registry_poll,
            shutdown.subscribe(),
        ));
        let settle_worker = tokio::spawn(settle_worker(
            Arc::clone(&state),
            config.settle_interval,
            shutdown.subscribe(),
        ));
        let (kind_tx, mut kind_rx) = watch::channel(None::<Stop>);
        tokio::spawn(async move {
            let kind = tokio::select! {
                received = stop => received.unwrap_or(Stop::Graceful),
                _ = tokio::signal::ctrl_c() => {
                    tracing::info!("Ctrl-C: stopping (no new requests; draining)");
                    Stop::Graceful
                }
            };
            let _ = kind_tx.send(Some(kind));
            let _ = shutdown.send(true);
        });
        let mut kill_rx = kind_rx.clone();
        // Serve until shutdown; a kill abandons in-flight requests (dropping the server cuts
        // every connection).
        tokio::select! {
            () = server => {}
            _ = kill_rx.wait_for(|kind| *kind == Some(Stop::Kill)) => {}
        }
        registry_worker.abort();
        let kind = kind_rx
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|kind| *kind)
            .unwrap_or(Stop::Graceful);
        if kind == Stop::Kill {
            settle_worker.abort();
            // No further group commit starts; one in progress finishes (it is atomic).
            tokio::task::spawn_blocking(move || pipeline.kill())
                .await
                .ok();
            return Ok(Stop::Kill);
        }
        // What is queued is committed and answered; blocks queued for the chain are verified.
        if tokio::task::spawn_blocking(move || pipeline.shutdown())
            .await
            .is_err()
        {
            tracing::error!("stopping the intake pipeline failed");
        }
        if let Err(error) = settle_worker.await {
            tracing::error!(%error, "settlement worker failed");
        }
        Ok::<_, ServiceError>(Stop::Graceful)
    });
    match outcome {
        Ok(Stop::Kill) => {
            // Cut everything: tasks are dropped, blocking steps finish their atomic write.
            runtime.shutdown_timeout(Duration::from_secs(10));
            Ok(())
        }
        Ok(Stop::Graceful) => {
            runtime.shutdown_timeout(Duration::from_secs(10));
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// Warns when the process may open fewer files than the connection cap needs (accepting then
/// fails with "too many open files" before the cap is reached, and eviction cannot help).
fn warn_if_few_file_descriptors(max_connections: usize) {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return;
    };
    let soft = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|value| value.parse::<usize>().ok());
    if let Some(soft) = soft {
        if max_connections.saturating_add(64) > soft {
            tracing::warn!(
                max_connections,
                open_files_limit = soft,
                "the open-files limit is below the connection cap plus a margin of 64: raise it (ulimit -n) or lower --max-connections"
            );
        }
    }
}

/// Looks at the registry file every `interval` and reloads it when it changed (a file that does
/// not load keeps the previous registry: logged and counted); forgets the rate-limit state of
/// idle vendors.
async fn registry_worker(
    state: Arc<AppState>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        }
        let worker_state = Arc::clone(&state);
        let reloaded =
            tokio::task::spawn_blocking(move || worker_state.registry.reload_if_changed()).await;
        match reloaded {
            Ok(Ok(registry::Reload::Unchanged)) => {}
            Ok(Ok(registry::Reload::Loaded)) => {
                state.metrics.registry_reload(true);
                tracing::info!("registry file changed: reloaded");
            }
            Ok(Err(error)) => {
                state.metrics.registry_reload(false);
                tracing::error!(%error, "registry file changed but does not load; the previous registry stays in force");
            }
            Err(error) => tracing::error!(%error, "registry reload task failed"),
        }
        state.gate.forget_idle_vendors();
    }
}

/// Runs settlement at start, then every `interval` (backing off while runs are blocked, see
/// [`settlement::next_delay`]), and once more at shutdown.
async fn settle_worker(
    state: Arc<AppState>,
    interval: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(interval) = interval else {
        return;
    };
    let mut delay = Duration::ZERO;
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(delay) => false,
            stopped = shutdown.wait_for(|stopping| *stopping) => { drop(stopped); true }
        };
        let worker_state = Arc::clone(&state);
        match tokio::task::spawn_blocking(move || run_settlement(&worker_state)).await {
            Ok(Ok(report)) => delay = settlement::next_delay(delay, interval, &report),
            Ok(Err(ServiceError::NotLeader)) => delay = interval,
            Ok(Err(error)) => {
                tracing::warn!(%error, "settlement run failed; retried with backoff");
                delay = delay
                    .max(interval)
                    .saturating_mul(2)
                    .min(settlement::MAX_BACKOFF.max(interval));
            }
            Err(error) => {
                tracing::error!(%error, "settlement worker task failed");
                return;
            }
        }
        if stopping {
            return;
        }
    }
}

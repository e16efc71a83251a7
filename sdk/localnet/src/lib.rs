//! `mupib localnet`: the embedded ledger served over the Solana JSON-RPC API (HTTP) and PubSub
//! (websocket, on the next port) on loopback, so that standard clients — @solana/web3.js,
//! @coral-xyz/anchor with the program's IDL, @solana/spl-token, solana-py, the Rust
//! `RpcClient` and [`mupib_chain::ledger::RpcLedger`] — work against it as against
//! `solana-test-validator`. Every answer is built from the Solana client-types crates the clients
//! themselves parse (`solana-rpc-client-api`, `solana-account-decoder`,
//! `solana-transaction-status-client-types`), and errors are the validators' `RpcCustomError`s.
//!
//! HTTP methods (JSON-RPC 2.0, POST `/`, single or batched; `GET /health` answers `ok`):
//! - cluster: `getHealth`, `getVersion` (with the runtime's numeric `feature-set`), `getIdentity`,
//!   `getGenesisHash`, `getSlot`, `getBlockHeight`, `getEpochInfo`, `getEpochSchedule`,
//!   `getLatestBlockhash`, `isBlockhashValid`, `getFeeForMessage`,
//!   `getMinimumBalanceForRentExemption`, `getRecentPrioritizationFees`, `getFirstAvailableBlock`;
//! - accounts: `getAccountInfo`, `getMultipleAccounts`, `getProgramAccounts` (filters `memcmp`,
//!   `dataSize`, `tokenAccountState`; `withContext`), `getBalance`, `requestAirdrop`; encodings
//!   `base58` (≤ 128 bytes, as validators), legacy binary, `base64`, `base64+zstd` and
//!   `jsonParsed` (SPL Token and Token-2022 accounts and mints, with the mint's decimals, and the
//!   other account kinds `solana-account-decoder` parses); `dataSlice`;
//! - SPL Token: `getTokenAccountBalance`, `getTokenAccountsByOwner`, `getTokenSupply`,
//!   `getTokenLargestAccounts`;
//! - transactions: `sendTransaction` (preflight = a real simulation: a failing transaction is
//!   refused with -32002 and the simulation's logs, and pays nothing), `simulateTransaction`
//!   (`sigVerify`, `replaceRecentBlockhash`, logs, return data), `getSignatureStatuses`,
//!   `getTransaction` (`json`, `jsonParsed`, `base58`, `base64`), `getSignaturesForAddress`,
//!   `getBlock`, `getBlocks`, `getBlocksWithLimit`, `getBlockTime`.
//! - Every method accepts `commitment` (every executed transaction is final at once, so all
//!   levels see the same state) and, where validators do, `minContextSlot` (-32016 when the
//!   ledger's slot is behind it).
//!
//! PubSub (websocket on port + 1): `accountSubscribe`, `programSubscribe`, `signatureSubscribe`,
//! `logsSubscribe`, `slotSubscribe` and their `…Unsubscribe`; see `pubsub.rs`.
//!
//! Where it differs from a validator (say so to users):
//! - compute units are not metered for the natively run µPIB program: `unitsConsumed` and
//!   `computeUnitsConsumed` are left out of simulation results and transaction metas, never
//!   made up;
//! - `getEpochInfo`'s `transactionCount` counts the transactions the ledger remembers (every one
//!   until `history_transactions` is reached);
//! - legacy transactions only (a v0 transaction is refused with -32602);
//! - a "block" is a slot of the ledger's clock in which transactions executed; slots without
//!   any are skipped (-32007); `getBlock` lists remembered transactions only (the ledger keeps the
//!   last `history_transactions`, default 5 000, across restarts);
//! - `jsonParsed` transactions decode instructions partially (program, accounts, data), as
//!   validators do for programs they cannot parse; inner instructions and token balances in
//!   metas are not recorded (`null`);
//! - `simulateTransaction` cannot return post-simulation accounts (`accounts` is refused with
//!   -32602) nor inner instructions;
//! - `getProgramAccounts` sees the accounts the ledger's transactions wrote (not the programs
//!   and sysvars the runtime loads at genesis).
//!
//! The server (options, handle, [`serve`]) is here; the JSON-RPC envelope is in `rpc.rs`, the
//! methods in `methods/`, the encodings in `encode.rs`, the websocket in `pubsub.rs`.

mod encode;
mod methods;
mod pubsub;
mod rpc;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::watch;

use mupib_chain::ledger::{EmbeddedLedger, LedgerError};

use rpc::rpc_endpoint;

/// The port `mupib localnet` listens on by default (the Solana JSON-RPC default); the websocket
/// listens on the next one.
pub const DEFAULT_PORT: u16 = 8899;

/// Limits of a localnet server.
#[derive(Debug, Clone)]
pub struct LocalnetOptions {
    /// Largest accepted HTTP request body.
    pub max_body_bytes: usize,
    /// Largest JSON-RPC batch.
    pub max_batch: usize,
    /// Most lamports one `requestAirdrop` may ask for.
    pub max_airdrop_lamports: u64,
    /// Most keys in one `getMultipleAccounts` / `getSignatureStatuses`.
    pub max_keys_per_request: usize,
    /// Most websocket connections at once.
    pub max_websocket_connections: usize,
    /// Most subscriptions on one websocket connection.
    pub max_subscriptions_per_connection: usize,
}

impl Default for LocalnetOptions {
    fn default() -> Self {
        LocalnetOptions {
            max_body_bytes: 64 * 1024,
            max_batch: 100,
            max_airdrop_lamports: 1_000 * 1_000_000_000,
            max_keys_per_request: 256,
            max_websocket_connections: 64,
            max_subscriptions_per_connection: 1_000,
        }
    }
}

/// Errors of starting or stopping a localnet server.
#[derive(Debug, thiserror::Error)]
pub enum LocalnetError {
    /// The address is not a loopback address.
    #[error(
        "refusing to serve on {0}: mupib localnet listens on loopback only (127.0.0.1 or ::1)"
    )]
    NotLoopback(SocketAddr),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}; choose another port (--port; the websocket uses the next one)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The server's runtime or thread could not start.
    #[error("cannot start the localnet server: {0}")]
    Start(std::io::Error),
    /// The server stopped with an error.
    #[error("localnet server failed: {0}")]
    Server(String),
    /// Flushing the ledger at shutdown failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// A running localnet server. [`LocalnetHandle::shutdown`] (or dropping it) stops accepting
/// requests, lets the ones in flight finish, closes the websockets and compacts the ledger's
/// journal.
pub struct LocalnetHandle {
    addr: SocketAddr,
    ws_addr: SocketAddr,
    ledger: Arc<EmbeddedLedger>,
    shutdown: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl std::fmt::Debug for LocalnetHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalnetHandle")
            .field("addr", &self.addr)
            .field("ws_addr", &self.ws_addr)
            .finish()
    }
}

impl LocalnetHandle {
    /// The address the JSON-RPC endpoint listens on (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the PubSub websocket listens on (the JSON-RPC port + 1).
    pub fn websocket_addr(&self) -> SocketAddr {
        self.ws_addr
    }

    /// The JSON-RPC URL, e.g. `http://127.0.0.1:8899`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The PubSub URL, e.g. `ws://127.0.0.1:8900`.
    pub fn websocket_url(&self) -> String {
        format!("ws://{}", self.ws_addr)
    }

    /// The ledger being served.
    pub fn ledger(&self) -> &Arc<EmbeddedLedger> {
        &self.ledger
    }

    /// Stops the server gracefully and flushes the ledger (journal compacted into a snapshot).
    pub fn shutdown(mut self) -> Result<(), LocalnetError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), LocalnetError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        if let Some(shutdown) = self.shutdown.take() {
            // The server may already have stopped on an error: then nobody listens.
            let _ = shutdown.send(true);
        }
        let served = thread
            .join()
            .map_err(|_| LocalnetError::Server("the server thread panicked".to_string()))?;
        let flushed = self.ledger.compact();
        served.map_err(LocalnetError::Server)?;
        Ok(flushed?)
    }
}

impl Drop for LocalnetHandle {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            tracing::warn!(%error, "localnet shutdown");
        }
    }
}

/// Serves `ledger` on `addr` (loopback only; port 0 picks a free port) with default limits.
pub fn serve(
    ledger: Arc<EmbeddedLedger>,
    addr: SocketAddr,
) -> Result<LocalnetHandle, LocalnetError> {
    serve_with(ledger, addr, LocalnetOptions::default())
}

/// Binds the JSON-RPC port and the next one (the websocket). With port 0, free pairs are tried
/// until one binds.
fn bind_pair(
    addr: SocketAddr,
) -> Result<(std::net::TcpListener, std::net::TcpListener), LocalnetError> {
    let bind = |addr: SocketAddr| {
        std::net::TcpListener::bind(addr).map_err(|source| LocalnetError::Bind { addr, source })
    };
    let attempts = if addr.port() == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let http = bind(addr)?;
        let port = http
            .local_addr()
            .map_err(|source| LocalnetError::Bind { addr, source })?
            .port();
        let Some(ws_port) = port.checked_add(1) else {
            continue;
        };
        match bind(SocketAddr::new(addr.ip(), ws_port)) {
            Ok(ws) => return Ok((http, ws)),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or(LocalnetError::Bind {
        addr,
        source: std::io::Error::other("no free pair of ports"),
    }))
}

/// Serves `ledger` on `addr` (JSON-RPC) and the next port (PubSub) with explicit limits.
/// Returns once both sockets are bound; requests are served on a dedicated thread until the
/// handle is shut down or dropped.
pub fn serve_with(
    ledger: Arc<EmbeddedLedger>,
    addr: SocketAddr,
    options: LocalnetOptions,
) -> Result<LocalnetHandle, LocalnetError> {
    if !addr.ip().is_loopback() {
        return Err(LocalnetError::NotLoopback(addr));
    }
    let (listener, ws_listener) = bind_pair(addr)?;
    for socket in [&listener, &ws_listener] {
        socket
            .set_nonblocking(true)
            .map_err(|source| LocalnetError::Bind { addr, source })?;
    }
    let local = listener
        .local_addr()
        .map_err(|source| LocalnetError::Bind { addr, source })?;
    let ws_local = ws_listener
        .local_addr()
        .map_err(|source| LocalnetError::Bind { addr, source })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(8)
        .build()
        .map_err(LocalnetError::Start)?;
    let max_body = options.max_body_bytes;
    let shared = Arc::new(Shared {
        ledger: Arc::clone(&ledger),
        options,
    });
    let router = Router::new()
        .route("/", post(rpc_endpoint))
        .route("/health", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(Arc::clone(&shared));
    let (shutdown, signal) = watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("mupib-localnet".to_string())
        .spawn(move || {
            runtime.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
                let ws_listener =
                    tokio::net::TcpListener::from_std(ws_listener).map_err(|e| e.to_string())?;
                let pubsub = tokio::spawn(pubsub::serve(ws_listener, shared, signal.clone()));
                let mut http_signal = signal;
                let served = axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = http_signal.wait_for(|stop| *stop).await;
                    })
                    .await
                    .map_err(|e| e.to_string());
                let _ = pubsub.await;
                served
            })
        })
        .map_err(LocalnetError::Start)?;
    tracing::info!(url = %format!("http://{local}"), websocket = %format!("ws://{ws_local}"), "mupib localnet serving");
    Ok(LocalnetHandle {
        addr: local,
        ws_addr: ws_local,
        ledger,
        shutdown: Some(shutdown),
        thread: Some(thread),
    })
}

/// What the HTTP and websocket handlers share.
struct Shared {
    ledger: Arc<EmbeddedLedger>,
    options: LocalnetOptions,
}

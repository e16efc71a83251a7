//! `mupib localnet`: the embedded ledger served over the subset of the Solana JSON-RPC API that
//! [`mupib_chain::ledger::RpcLedger`] (and `solana-rpc-client`'s `RpcClient` for those calls) uses, on
//! loopback only, so the RPC backend can be exercised for real where no validator exists.
//!
//! Methods (JSON-RPC 2.0 over HTTP POST `/`, single or batched requests):
//! `getHealth`, `getVersion`, `getSlot`, `getLatestBlockhash`, `isBlockhashValid`,
//! `sendTransaction` (base64 or base58, legacy transactions, `skipPreflight`),
//! `getSignatureStatuses`, `getTransaction` (`json`, `base64` or `base58`; `meta.err` and
//! `meta.logMessages`), `getAccountInfo` / `getMultipleAccounts` (`base64`, `base58` or legacy
//! binary; `dataSlice`; `context.slot`), `getBalance`, `getMinimumBalanceForRentExemption`,
//! `getFeeForMessage`, `requestAirdrop`. `GET /health` answers `ok` as a validator does.
//!
//! Where it differs from a validator (say so to users):
//! - there is no separate simulation: "preflight" executes the transaction, so a transaction
//!   that fails with preflight on still pays its fee (the error and logs are the same);
//! - every executed transaction is final at once (`confirmationStatus: finalized`);
//! - transaction history is kept in memory for the last [`LocalnetOptions::remembered_transactions`]
//!   transactions (not persisted across restarts); `meta.preBalances`/`postBalances` are empty;
//! - `getTransaction` of an airdrop shows the faucet transfer with a zero recent blockhash (the
//!   faucet signs inside the ledger);
//! - no websocket subscriptions, no `getGenesisHash`, no versioned (v0) transactions.
//!
//! Errors follow JSON-RPC 2.0: `-32700` parse error, `-32600` invalid request, `-32601` method
//! not found, `-32602` invalid params, `-32603` internal error, `-32002` transaction failed
//! (with the `RpcSimulateTransactionResult` data a validator sends). A body larger than
//! [`LocalnetOptions::max_body_bytes`] gets HTTP 413 with a JSON-RPC error.
//!
//! The server (options, handle, [`serve`]) is here; the JSON-RPC envelope is in `rpc.rs`, the
//! methods in `methods.rs`.

mod methods;
mod rpc;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use solana_sdk::hash::Hash;
use solana_sdk::signature::Signature;
use solana_sdk::transaction::{Transaction, TransactionError};
use tokio::sync::oneshot;

use mupib_chain::ledger::{EmbeddedLedger, LedgerError};

use rpc::rpc_endpoint;

/// The port `mupib localnet` listens on by default (the Solana JSON-RPC default).
pub const DEFAULT_PORT: u16 = 8899;
/// Version reported by `getVersion`: the Solana runtime the embedded ledger runs.
pub const REPORTED_SOLANA_CORE_VERSION: &str = "3.1.12";

/// Limits of a localnet server.
#[derive(Debug, Clone)]
pub struct LocalnetOptions {
    /// Largest accepted HTTP request body.
    pub max_body_bytes: usize,
    /// Largest JSON-RPC batch.
    pub max_batch: usize,
    /// Transactions whose status and logs are kept for `getSignatureStatuses` / `getTransaction`.
    pub remembered_transactions: usize,
    /// Blockhashes handed out that `getFeeForMessage` recognises (`isBlockhashValid` asks the
    /// ledger's bank itself).
    pub remembered_blockhashes: usize,
    /// Most lamports one `requestAirdrop` may ask for.
    pub max_airdrop_lamports: u64,
    /// Most keys in one `getMultipleAccounts` / `getSignatureStatuses`.
    pub max_keys_per_request: usize,
}

impl Default for LocalnetOptions {
    fn default() -> Self {
        LocalnetOptions {
            max_body_bytes: 64 * 1024,
            max_batch: 100,
            remembered_transactions: 100_000,
            remembered_blockhashes: 300,
            max_airdrop_lamports: 1_000 * 1_000_000_000,
            max_keys_per_request: 256,
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
    #[error("cannot listen on {addr}: {source}; choose another port (--port)")]
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
/// requests, lets the ones in flight finish and compacts the ledger's journal.
pub struct LocalnetHandle {
    addr: SocketAddr,
    ledger: Arc<EmbeddedLedger>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl std::fmt::Debug for LocalnetHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalnetHandle")
            .field("addr", &self.addr)
            .finish()
    }
}

impl LocalnetHandle {
    /// The address the server listens on (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The JSON-RPC URL, e.g. `http://127.0.0.1:8899`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
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
            // The server may already have stopped on an error: then the receiver is gone.
            let _ = shutdown.send(());
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

/// Serves `ledger` on `addr` with explicit limits. Returns once the socket is bound; requests
/// are served on a dedicated thread until the handle is shut down or dropped.
pub fn serve_with(
    ledger: Arc<EmbeddedLedger>,
    addr: SocketAddr,
    options: LocalnetOptions,
) -> Result<LocalnetHandle, LocalnetError> {
    if !addr.ip().is_loopback() {
        return Err(LocalnetError::NotLoopback(addr));
    }
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| LocalnetError::Bind { addr, source })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| LocalnetError::Bind { addr, source })?;
    let local = listener
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
        history: Mutex::new(History::default()),
        blockhashes: Mutex::new(VecDeque::new()),
        options,
    });
    let router = Router::new()
        .route("/", post(rpc_endpoint))
        .route("/health", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(shared);
    let (shutdown, signal) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("mupib-localnet".to_string())
        .spawn(move || {
            runtime.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
                axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = signal.await;
                    })
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .map_err(LocalnetError::Start)?;
    tracing::info!(url = %format!("http://{local}"), "mupib localnet serving");
    Ok(LocalnetHandle {
        addr: local,
        ledger,
        shutdown: Some(shutdown),
        thread: Some(thread),
    })
}

/// One executed transaction, as `getSignatureStatuses` and `getTransaction` report it.
#[derive(Debug, Clone)]
struct Executed {
    transaction: Transaction,
    slot: u64,
    block_time: i64,
    fee: u64,
    err: Option<TransactionError>,
    logs: Vec<String>,
}

/// Bounded memory of executed transactions (oldest forgotten first).
#[derive(Debug, Default)]
struct History {
    by_signature: HashMap<Signature, Executed>,
    order: VecDeque<Signature>,
}

impl History {
    fn insert(&mut self, signature: Signature, executed: Executed, capacity: usize) {
        if self.by_signature.insert(signature, executed).is_none() {
            self.order.push_back(signature);
        }
        while self.order.len() > capacity.max(1) {
            if let Some(old) = self.order.pop_front() {
                self.by_signature.remove(&old);
            }
        }
    }
}

struct Shared {
    ledger: Arc<EmbeddedLedger>,
    history: Mutex<History>,
    blockhashes: Mutex<VecDeque<Hash>>,
    options: LocalnetOptions,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_forgets_the_oldest_beyond_capacity() {
        let mut history = History::default();
        let executed = Executed {
            transaction: Transaction::default(),
            slot: 1,
            block_time: 0,
            fee: 0,
            err: None,
            logs: Vec::new(),
        };
        let signatures: Vec<Signature> = (0..3u8).map(|i| Signature::from([i; 64])).collect();
        for s in &signatures {
            history.insert(*s, executed.clone(), 2);
        }
        assert!(!history.by_signature.contains_key(&signatures[0]));
        assert!(history.by_signature.contains_key(&signatures[1]));
        assert!(history.by_signature.contains_key(&signatures[2]));
        assert_eq!(history.order.len(), 2);
    }
}

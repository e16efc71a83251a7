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

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bincode::Options as _;
use serde_json::{json, Value};
use solana_rpc_client_api::response::{
    OptionSerializer, RpcSimulateTransactionResult, UiAccount, UiAccountData, UiAccountEncoding,
    UiTransactionError, UiTransactionStatusMeta,
};
use solana_sdk::account::Account;
use solana_sdk::hash::Hash;
use solana_sdk::message::{Message, VersionedMessage};
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::Signature;
use solana_sdk::transaction::{Transaction, TransactionError};
use tokio::sync::oneshot;

use mupib_chain::ledger::rpc::PREFLIGHT_FAILURE_CODE;
use mupib_chain::ledger::{EmbeddedLedger, Ledger, LedgerError, PACKET_DATA_SIZE};

/// The port `mupib localnet` listens on by default (the Solana JSON-RPC default).
pub const DEFAULT_PORT: u16 = 8899;
/// Version reported by `getVersion`: the Solana runtime the embedded ledger runs.
pub const REPORTED_SOLANA_CORE_VERSION: &str = "3.1.12";

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const INTERNAL_ERROR: i64 = -32603;
const TRANSACTION_FAILED: i64 = PREFLIGHT_FAILURE_CODE;
/// Largest base58 / base64 text of a 1232-byte transaction (what a validator accepts).
const MAX_BASE58_TRANSACTION: usize = 1683;
const MAX_BASE64_TRANSACTION: usize = 1644;
/// Blocks a handed-out blockhash stays valid for (`lastValidBlockHeight` = slot + this).
const BLOCKHASH_VALIDITY_SLOTS: u64 = 150;
/// Largest account a validator serves (10 MiB).
const MAX_ACCOUNT_DATA_LEN: usize = 10 * 1024 * 1024;

/// Limits of a localnet server.
#[derive(Debug, Clone)]
pub struct LocalnetOptions {
    /// Largest accepted HTTP request body.
    pub max_body_bytes: usize,
    /// Largest JSON-RPC batch.
    pub max_batch: usize,
    /// Transactions whose status and logs are kept for `getSignatureStatuses` / `getTransaction`.
    pub remembered_transactions: usize,
    /// Blockhashes handed out that `isBlockhashValid` / `getFeeForMessage` recognise.
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

/// A JSON-RPC error object.
#[derive(Debug)]
struct RpcErr {
    code: i64,
    message: String,
    data: Option<Value>,
}

impl RpcErr {
    fn new(code: i64, message: impl Into<String>) -> Self {
        RpcErr {
            code,
            message: message.into(),
            data: None,
        }
    }

    fn params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }

    fn to_json(&self) -> Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(data) = &self.data {
            error["data"] = data.clone();
        }
        error
    }
}

fn error_body(id: Value, error: &RpcErr) -> Value {
    json!({ "jsonrpc": "2.0", "error": error.to_json(), "id": id })
}

fn ledger_error(error: LedgerError) -> RpcErr {
    match error {
        LedgerError::TransactionTooLarge { .. } => RpcErr::params(error.to_string()),
        LedgerError::Transaction { error, logs, .. } => transaction_failed(&error, &logs),
        other => RpcErr::new(INTERNAL_ERROR, format!("ledger error: {other}")),
    }
}

/// Runs a ledger call on the blocking pool (the ledger drives its own runtime).
async fn blocking<T: Send + 'static>(
    shared: &Arc<Shared>,
    call: impl FnOnce(&EmbeddedLedger) -> Result<T, LedgerError> + Send + 'static,
) -> Result<Result<T, LedgerError>, RpcErr> {
    let ledger = Arc::clone(&shared.ledger);
    tokio::task::spawn_blocking(move || call(&ledger))
        .await
        .map_err(|e| RpcErr::new(INTERNAL_ERROR, format!("ledger task failed: {e}")))
}

async fn ledger_call<T: Send + 'static>(
    shared: &Arc<Shared>,
    call: impl FnOnce(&EmbeddedLedger) -> Result<T, LedgerError> + Send + 'static,
) -> Result<T, RpcErr> {
    blocking(shared, call).await?.map_err(ledger_error)
}

async fn rpc_endpoint(
    State(shared): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> HttpResponse {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!(
                    "request body is larger than {} bytes; send smaller requests",
                    shared.options.max_body_bytes
                )
            } else {
                format!("cannot read the request body: {}", rejection.body_text())
            };
            return (
                status,
                Json(error_body(
                    Value::Null,
                    &RpcErr::new(INVALID_REQUEST, message),
                )),
            )
                .into_response();
        }
    };
    let request: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => {
            let error = RpcErr::new(
                PARSE_ERROR,
                format!("Parse error: the body is not JSON ({e})"),
            );
            return Json(error_body(Value::Null, &error)).into_response();
        }
    };
    match request {
        Value::Array(calls) => {
            if calls.is_empty() {
                let error = RpcErr::new(INVALID_REQUEST, "Invalid request: empty batch");
                return Json(error_body(Value::Null, &error)).into_response();
            }
            if calls.len() > shared.options.max_batch {
                let error = RpcErr::new(
                    INVALID_REQUEST,
                    format!(
                        "Invalid request: batch of {} calls, at most {} allowed",
                        calls.len(),
                        shared.options.max_batch
                    ),
                );
                return Json(error_body(Value::Null, &error)).into_response();
            }
            let mut answers = Vec::with_capacity(calls.len());
            for call in calls {
                if let Some(answer) = handle_call(&shared, call).await {
                    answers.push(answer);
                }
            }
            if answers.is_empty() {
                return StatusCode::NO_CONTENT.into_response();
            }
            Json(Value::Array(answers)).into_response()
        }
        call => match handle_call(&shared, call).await {
            Some(answer) => Json(answer).into_response(),
            None => StatusCode::NO_CONTENT.into_response(),
        },
    }
}

/// Answers one JSON-RPC call; `None` for a notification (no `id`).
async fn handle_call(shared: &Arc<Shared>, call: Value) -> Option<Value> {
    let Value::Object(call) = call else {
        return Some(error_body(
            Value::Null,
            &RpcErr::new(INVALID_REQUEST, "Invalid request: not a JSON object"),
        ));
    };
    let id = call.get("id").cloned();
    let reply_id = match &id {
        None | Some(Value::Null) | Some(Value::Number(_)) | Some(Value::String(_)) => {
            id.clone().unwrap_or(Value::Null)
        }
        Some(_) => {
            return Some(error_body(
                Value::Null,
                &RpcErr::new(
                    INVALID_REQUEST,
                    "Invalid request: id must be a number or a string",
                ),
            ));
        }
    };
    if call.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Some(error_body(
            reply_id,
            &RpcErr::new(
                INVALID_REQUEST,
                "Invalid request: \"jsonrpc\" must be \"2.0\"",
            ),
        ));
    }
    let Some(method) = call.get("method").and_then(Value::as_str) else {
        return Some(error_body(
            reply_id,
            &RpcErr::new(
                INVALID_REQUEST,
                "Invalid request: \"method\" must be a string",
            ),
        ));
    };
    let params = match call.get("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(params)) => params.clone(),
        Some(_) => {
            return Some(error_body(
                reply_id,
                &RpcErr::params("Invalid params: \"params\" must be an array"),
            ));
        }
    };
    let result = dispatch(shared, method, &params).await;
    id.as_ref()?;
    Some(match result {
        Ok(value) => json!({ "jsonrpc": "2.0", "result": value, "id": reply_id }),
        Err(error) => error_body(reply_id, &error),
    })
}

async fn dispatch(shared: &Arc<Shared>, method: &str, params: &[Value]) -> Result<Value, RpcErr> {
    match method {
        "getHealth" => Ok(json!("ok")),
        "getVersion" => Ok(json!({ "solana-core": REPORTED_SOLANA_CORE_VERSION, "feature-set": null })),
        "getSlot" => Ok(json!(current_slot(shared).await?)),
        "getLatestBlockhash" => latest_blockhash(shared).await,
        "isBlockhashValid" => is_blockhash_valid(shared, params).await,
        "sendTransaction" => send_transaction(shared, params).await,
        "getSignatureStatuses" => signature_statuses(shared, params).await,
        "getTransaction" => get_transaction(shared, params),
        "getAccountInfo" => account_info(shared, params).await,
        "getMultipleAccounts" => multiple_accounts(shared, params).await,
        "getBalance" => balance(shared, params).await,
        "getMinimumBalanceForRentExemption" => minimum_balance(shared, params).await,
        "getFeeForMessage" => fee_for_message(shared, params).await,
        "requestAirdrop" => request_airdrop(shared, params).await,
        other => Err(RpcErr::new(
            METHOD_NOT_FOUND,
            format!("Method not found: {other} is not served by mupib localnet (see the ledger::localnet documentation)"),
        )),
    }
}

fn param<'a>(params: &'a [Value], index: usize, what: &str) -> Result<&'a Value, RpcErr> {
    params.get(index).ok_or_else(|| {
        RpcErr::params(format!(
            "Invalid params: missing {what} (parameter {index})"
        ))
    })
}

fn string_param<'a>(params: &'a [Value], index: usize, what: &str) -> Result<&'a str, RpcErr> {
    param(params, index, what)?
        .as_str()
        .ok_or_else(|| RpcErr::params(format!("Invalid params: {what} must be a string")))
}

fn pubkey_param(params: &[Value], index: usize) -> Result<Pubkey, RpcErr> {
    let text = string_param(params, index, "address")?;
    Pubkey::from_str(text).map_err(|e| {
        RpcErr::params(format!(
            "Invalid params: {text} is not a base58 address ({e})"
        ))
    })
}

/// The config object at `index`, or `Null` when absent.
fn config_param(params: &[Value], index: usize) -> Result<Value, RpcErr> {
    match params.get(index) {
        None | Some(Value::Null) => Ok(Value::Null),
        Some(value @ Value::Object(_)) => Ok(value.clone()),
        Some(_) => Err(RpcErr::params(format!(
            "Invalid params: parameter {index} must be a configuration object"
        ))),
    }
}

async fn current_slot(shared: &Arc<Shared>) -> Result<u64, RpcErr> {
    Ok(ledger_call(shared, |l| l.clock()).await?.slot)
}

fn context(slot: u64) -> Value {
    json!({ "slot": slot })
}

async fn latest_blockhash(shared: &Arc<Shared>) -> Result<Value, RpcErr> {
    let (hash, slot) =
        ledger_call(shared, |l| Ok((l.latest_blockhash()?, l.clock()?.slot))).await?;
    {
        let mut recent = shared
            .blockhashes
            .lock()
            .map_err(|_| RpcErr::new(INTERNAL_ERROR, "blockhash memory poisoned"))?;
        recent.push_back(hash);
        while recent.len() > shared.options.remembered_blockhashes.max(1) {
            recent.pop_front();
        }
    }
    let last_valid = slot.saturating_add(BLOCKHASH_VALIDITY_SLOTS);
    Ok(json!({
        "context": context(slot),
        "value": { "blockhash": hash.to_string(), "lastValidBlockHeight": last_valid },
    }))
}

fn known_blockhash(shared: &Shared, hash: &Hash) -> Result<bool, RpcErr> {
    let recent = shared
        .blockhashes
        .lock()
        .map_err(|_| RpcErr::new(INTERNAL_ERROR, "blockhash memory poisoned"))?;
    Ok(recent.contains(hash))
}

async fn is_blockhash_valid(shared: &Arc<Shared>, params: &[Value]) -> Result<Value, RpcErr> {
    let text = string_param(params, 0, "blockhash")?;
    let hash = Hash::from_str(text)
        .map_err(|e| RpcErr::params(format!("Invalid params: {text} is not a blockhash ({e})")))?;
    let valid = known_blockhash(shared, &hash)?;
    let slot = current_slot(shared).await?;
    Ok(json!({ "context": context(slot), "value": valid }))
}

/// Decodes `sendTransaction`'s payload as a legacy transaction, with a validator's size limits.
fn decode_transaction(encoded: &str, encoding: &str) -> Result<Transaction, RpcErr> {
    let bytes = match encoding {
        "base58" => {
            if encoded.len() > MAX_BASE58_TRANSACTION {
                return Err(RpcErr::params(format!(
                    "base58 encoded transaction too large: {} bytes (max: encoded/raw {MAX_BASE58_TRANSACTION}/{PACKET_DATA_SIZE})",
                    encoded.len()
                )));
            }
            bs58::decode(encoded)
                .into_vec()
                .map_err(|e| RpcErr::params(format!("invalid base58 transaction: {e}")))?
        }
        "base64" => {
            if encoded.len() > MAX_BASE64_TRANSACTION {
                return Err(RpcErr::params(format!(
                    "base64 encoded transaction too large: {} bytes (max: encoded/raw {MAX_BASE64_TRANSACTION}/{PACKET_DATA_SIZE})",
                    encoded.len()
                )));
            }
            STANDARD
                .decode(encoded)
                .map_err(|e| RpcErr::params(format!("invalid base64 transaction: {e}")))?
        }
        other => {
            return Err(RpcErr::params(format!(
                "unsupported transaction encoding {other}; use base64 or base58"
            )));
        }
    };
    if bytes.len() > PACKET_DATA_SIZE {
        return Err(RpcErr::params(format!(
            "transaction too large: {} bytes (max: {PACKET_DATA_SIZE})",
            bytes.len()
        )));
    }
    let limit =
        u64::try_from(PACKET_DATA_SIZE).map_err(|_| RpcErr::new(INTERNAL_ERROR, "packet size"))?;
    let transaction: Transaction = bincode::DefaultOptions::new()
        .with_limit(limit)
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .deserialize(&bytes)
        .map_err(|e| {
            RpcErr::params(format!("failed to deserialize a legacy transaction ({e}); mupib localnet serves legacy transactions only"))
        })?;
    use solana_sdk::sanitize::Sanitize as _;
    transaction
        .sanitize()
        .map_err(|e| RpcErr::params(format!("invalid transaction: {e}")))?;
    if transaction.signatures.is_empty() {
        return Err(RpcErr::params("invalid transaction: no signature"));
    }
    Ok(transaction)
}

fn failure_data(err: &TransactionError, logs: &[String]) -> Value {
    let result = RpcSimulateTransactionResult {
        err: Some(UiTransactionError::from(err.clone())),
        logs: Some(logs.to_vec()),
        accounts: None,
        units_consumed: None,
        loaded_accounts_data_size: None,
        return_data: None,
        inner_instructions: None,
        replacement_blockhash: None,
        fee: None,
        pre_balances: None,
        post_balances: None,
        pre_token_balances: None,
        post_token_balances: None,
        loaded_addresses: None,
    };
    serde_json::to_value(result).unwrap_or(Value::Null)
}

fn transaction_failed(err: &TransactionError, logs: &[String]) -> RpcErr {
    RpcErr {
        code: TRANSACTION_FAILED,
        message: format!("Transaction simulation failed: {err}"),
        data: Some(failure_data(err, logs)),
    }
}

fn remember(shared: &Shared, signature: Signature, executed: Executed) -> Result<(), RpcErr> {
    let mut history = shared
        .history
        .lock()
        .map_err(|_| RpcErr::new(INTERNAL_ERROR, "transaction history poisoned"))?;
    history.insert(signature, executed, shared.options.remembered_transactions);
    Ok(())
}

fn is_known(shared: &Shared, signature: &Signature) -> Result<bool, RpcErr> {
    let history = shared
        .history
        .lock()
        .map_err(|_| RpcErr::new(INTERNAL_ERROR, "transaction history poisoned"))?;
    Ok(history.by_signature.contains_key(signature))
}

async fn send_transaction(shared: &Arc<Shared>, params: &[Value]) -> Result<Value, RpcErr> {
    let encoded = string_param(params, 0, "transaction")?;
    let config = config_param(params, 1)?;
    let encoding = config
        .get("encoding")
        .and_then(Value::as_str)
        .unwrap_or("base58");
    let skip_preflight = config
        .get("skipPreflight")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let transaction = decode_transaction(encoded, encoding)?;
    let signature = transaction.signatures[0];
    if is_known(shared, &signature)? {
        // Sent again after a lost answer: the first copy was executed; never run it twice.
        return Ok(json!(signature.to_string()));
    }
    let sent = transaction.clone();
    let outcome = blocking(shared, move |ledger| {
        let result = ledger.send_transaction(&sent);
        let clock = ledger.clock()?;
        let fee =
            ledger.fee_for_signatures(u64::try_from(sent.signatures.len()).unwrap_or(u64::MAX))?;
        Ok((result, clock, fee))
    })
    .await?
    .map_err(ledger_error)?;
    let (result, clock, fee) = outcome;
    let executed = |err: Option<TransactionError>, logs: Vec<String>| Executed {
        transaction: transaction.clone(),
        slot: clock.slot,
        block_time: clock.unix_timestamp,
        fee,
        err,
        logs,
    };
    match result {
        Ok(receipt) => {
            remember(shared, signature, executed(None, receipt.logs))?;
            Ok(json!(signature.to_string()))
        }
        Err(LedgerError::Transaction { error, logs, .. }) => {
            if logs.is_empty() {
                // Refused before execution (signature, blockhash, fee payer): nothing landed.
                return Err(transaction_failed(&error, &logs));
            }
            remember(
                shared,
                signature,
                executed(Some(error.clone()), logs.clone()),
            )?;
            if skip_preflight {
                Ok(json!(signature.to_string()))
            } else {
                Err(transaction_failed(&error, &logs))
            }
        }
        Err(other) => Err(ledger_error(other)),
    }
}

fn status_json(executed: &Executed) -> Value {
    let status = match &executed.err {
        None => json!({ "Ok": null }),
        Some(err) => json!({ "Err": UiTransactionError::from(err.clone()) }),
    };
    json!({
        "slot": executed.slot,
        "confirmations": null,
        "status": status,
        "err": executed.err.clone().map(UiTransactionError::from),
        "confirmationStatus": "finalized",
    })
}

fn signatures_param(params: &[Value], max: usize) -> Result<Vec<Signature>, RpcErr> {
    let list = param(params, 0, "signatures")?
        .as_array()
        .ok_or_else(|| RpcErr::params("Invalid params: signatures must be an array"))?;
    if list.len() > max {
        return Err(RpcErr::params(format!(
            "Invalid params: {} signatures, at most {max} allowed",
            list.len()
        )));
    }
    list.iter()
        .map(|v| {
            let text = v
                .as_str()
                .ok_or_else(|| RpcErr::params("Invalid params: a signature must be a string"))?;
            Signature::from_str(text).map_err(|e| {
                RpcErr::params(format!("Invalid params: {text} is not a signature ({e})"))
            })
        })
        .collect()
}

async fn signature_statuses(shared: &Arc<Shared>, params: &[Value]) -> Result<Value, RpcErr> {
    let signatures = signatures_param(params, shared.options.max_keys_per_request)?;
    let statuses: Vec<Value> = {
        let history = shared
            .history
            .lock()
            .map_err(|_| RpcErr::new(INTERNAL_ERROR, "transaction history poisoned"))?;
        signatures
            .iter()
            .map(|s| {
                history
                    .by_signature
                    .get(s)
                    .map(status_json)
                    .unwrap_or(Value::Null)
            })
            .collect()
    };
    let slot = current_slot(shared).await?;
    Ok(json!({ "context": context(slot), "value": statuses }))
}

fn message_json(message: &Message) -> Value {
    let instructions: Vec<Value> = message
        .instructions
        .iter()
        .map(|ix| {
            json!({
                "programIdIndex": ix.program_id_index,
                "accounts": ix.accounts,
                "data": bs58::encode(&ix.data).into_string(),
                "stackHeight": null,
            })
        })
        .collect();
    json!({
        "header": {
            "numRequiredSignatures": message.header.num_required_signatures,
            "numReadonlySignedAccounts": message.header.num_readonly_signed_accounts,
            "numReadonlyUnsignedAccounts": message.header.num_readonly_unsigned_accounts,
        },
        "accountKeys": message.account_keys.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
        "recentBlockhash": message.recent_blockhash.to_string(),
        "instructions": instructions,
    })
}

fn get_transaction(shared: &Arc<Shared>, params: &[Value]) -> Result<Value, RpcErr> {
    let text = string_param(params, 0, "signature")?;
    let signature = Signature::from_str(text)
        .map_err(|e| RpcErr::params(format!("Invalid params: {text} is not a signature ({e})")))?;
    // The legacy form passes the encoding as a string instead of a config object.
    let encoding = match params.get(1) {
        Some(Value::String(encoding)) => encoding.clone(),
        _ => config_param(params, 1)?
            .get("encoding")
            .and_then(Value::as_str)
            .unwrap_or("json")
            .to_string(),
    };
    let Some(executed) = ({
        let history = shared
            .history
            .lock()
            .map_err(|_| RpcErr::new(INTERNAL_ERROR, "transaction history poisoned"))?;
        history.by_signature.get(&signature).cloned()
    }) else {
        return Ok(Value::Null);
    };
    let transaction = match encoding.as_str() {
        "json" => json!({
            "signatures": executed.transaction.signatures.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "message": message_json(&executed.transaction.message),
        }),
        "base64" | "base58" => {
            let bytes = bincode::serialize(&executed.transaction).map_err(|e| {
                RpcErr::new(
                    INTERNAL_ERROR,
                    format!("cannot encode the transaction: {e}"),
                )
            })?;
            let text = if encoding == "base64" {
                STANDARD.encode(bytes)
            } else {
                bs58::encode(bytes).into_string()
            };
            json!([text, encoding])
        }
        other => {
            return Err(RpcErr::params(format!(
                "Invalid params: encoding {other} is not supported; use json, base64 or base58"
            )))
        }
    };
    let meta = UiTransactionStatusMeta {
        err: executed.err.clone().map(UiTransactionError::from),
        status: match &executed.err {
            None => Ok(()),
            Some(err) => Err(UiTransactionError::from(err.clone())),
        },
        fee: executed.fee,
        pre_balances: Vec::new(),
        post_balances: Vec::new(),
        inner_instructions: OptionSerializer::None,
        log_messages: OptionSerializer::Some(executed.logs.clone()),
        pre_token_balances: OptionSerializer::None,
        post_token_balances: OptionSerializer::None,
        rewards: OptionSerializer::None,
        loaded_addresses: OptionSerializer::Skip,
        return_data: OptionSerializer::Skip,
        compute_units_consumed: OptionSerializer::Skip,
        cost_units: OptionSerializer::Skip,
    };
    let meta = serde_json::to_value(meta)
        .map_err(|e| RpcErr::new(INTERNAL_ERROR, format!("cannot encode the meta: {e}")))?;
    Ok(json!({
        "slot": executed.slot,
        "blockTime": executed.block_time,
        "transaction": transaction,
        "meta": meta,
        "version": "legacy",
    }))
}

/// How accounts are returned (`encoding` and `dataSlice` of the config).
struct AccountEncoding {
    encoding: Option<UiAccountEncoding>,
    slice: Option<(usize, usize)>,
}

fn account_encoding(config: &Value) -> Result<AccountEncoding, RpcErr> {
    let encoding = match config.get("encoding").and_then(Value::as_str) {
        None | Some("binary") => None,
        Some("base58") => Some(UiAccountEncoding::Base58),
        Some("base64") => Some(UiAccountEncoding::Base64),
        Some(other) => {
            return Err(RpcErr::params(format!(
                "Invalid params: account encoding {other} is not supported by mupib localnet; use base64"
            )));
        }
    };
    let slice = match config.get("dataSlice") {
        None | Some(Value::Null) => None,
        Some(slice) => {
            let field = |name: &str| {
                slice
                    .get(name)
                    .and_then(Value::as_u64)
                    .and_then(|v| usize::try_from(v).ok())
                    .ok_or_else(|| {
                        RpcErr::params(format!(
                            "Invalid params: dataSlice.{name} must be an unsigned integer"
                        ))
                    })
            };
            Some((field("offset")?, field("length")?))
        }
    };
    Ok(AccountEncoding { encoding, slice })
}

fn ui_account(account: &Account, how: &AccountEncoding) -> UiAccount {
    let data: &[u8] = match how.slice {
        None => &account.data,
        Some((offset, length)) => {
            let start = offset.min(account.data.len());
            let end = start.saturating_add(length).min(account.data.len());
            &account.data[start..end]
        }
    };
    let data = match how.encoding {
        None => UiAccountData::LegacyBinary(bs58::encode(data).into_string()),
        Some(UiAccountEncoding::Base58) => {
            UiAccountData::Binary(bs58::encode(data).into_string(), UiAccountEncoding::Base58)
        }
        Some(_) => UiAccountData::Binary(STANDARD.encode(data), UiAccountEncoding::Base64),
    };
    UiAccount {
        lamports: account.lamports,
        data,
        owner: account.owner.to_string(),
        executable: account.executable,
        rent_epoch: account.rent_epoch,
        space: u64::try_from(account.data.len()).ok(),
    }
}

/// Reads accounts; the Clock sysvar is refreshed first, as [`Ledger::clock`] does.
fn read_account(ledger: &EmbeddedLedger, address: &Pubkey) -> Result<Option<Account>, LedgerError> {
    if *address == solana_sdk::sysvar::clock::ID {
        let clock = ledger.clock()?;
        let mut account = ledger.get_account(address)?.unwrap_or_else(|| Account {
            lamports: 1,
            data: Vec::new(),
            owner: solana_sdk::sysvar::ID,
            executable: false,
            rent_epoch: 0,
        });
        account.data = bincode::serialize(&clock)
            .map_err(|e| LedgerError::Backend(format!("cannot encode the clock: {e}")))?;
        return Ok(Some(account));
    }
    ledger.get_account(address)
}

async fn account_info(shared: &Arc<Shared>, params: &[Value]) -> Result<Value, RpcErr> {
    let address = pubkey_param(params, 0)?;
    let how = account_encoding(&config_param(params, 1)?)?;
    let (account, slot) = ledger_call(shared, move |l| {
        Ok((read_account(l, &address)?, l.clock()?.slot))
    })
    .await?;
    let value = account.map(|a| ui_account(&a, &how));
    Ok(json!({ "context": context(slot), "value": value }))
}

async fn multiple_accounts(shared: &Arc<Shared>, params: &[Value]) -> Result<Value, RpcErr> {
    let list = param(params, 0, "addresses")?
        .as_array()
        .ok_or_else(|| RpcErr::params("Invalid params: addresses must be an array"))?;
    if list.len() > shared.options.max_keys_per_request {
        return Err(RpcErr::params(format!(
            "Invalid params: {} addresses, at most {} allowed",
            list.len(),
            shared.options.max_keys_per_request
        )));
    }
    let addresses: Vec<Pubkey> = list
        .iter()
        .map(|v| {
            let text = v
                .as_str()
                .ok_or_else(|| RpcErr::params("Invalid params: an address must be a string"))?;
            Pubkey::from_str(text).map_err(|e| {
                RpcErr::params(format!(
                    "Invalid params: {text} is not a base58 address ({e})"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    let how = account_encoding(&config_param(params, 1)?)?;
    let (accounts, slot) = ledger_call(shared, move |l| {
        let accounts = addresses
            .iter()
            .map(|a| read_account(l, a))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((accounts, l.clock()?.slot))
    })
    .await?;
    let value: Vec<Option<UiAccount>> = accounts
        .iter()
        .map(|a| a.as_ref().map(|a| ui_account(a, &how)))
        .collect();
    Ok(json!({ "context": context(slot), "value": value }))
}

async fn balance(shared: &Arc<Shared>, params: &[Value]) -> Result<Value, RpcErr> {
    let address = pubkey_param(params, 0)?;
    let (lamports, slot) =
        ledger_call(shared, move |l| Ok((l.balance(&address)?, l.clock()?.slot))).await?;
    Ok(json!({ "context": context(slot), "value": lamports }))
}

async fn minimum_balance(shared: &Arc<Shared>, params: &[Value]) -> Result<Value, RpcErr> {
    let length = param(params, 0, "data length")?
        .as_u64()
        .and_then(|v| usize::try_from(v).ok())
        .filter(|v| *v <= MAX_ACCOUNT_DATA_LEN)
        .ok_or_else(|| {
            RpcErr::params(format!(
                "Invalid params: data length must be an integer ≤ {MAX_ACCOUNT_DATA_LEN}"
            ))
        })?;
    Ok(json!(
        ledger_call(shared, move |l| l
            .minimum_balance_for_rent_exemption(length))
        .await?
    ))
}

async fn fee_for_message(shared: &Arc<Shared>, params: &[Value]) -> Result<Value, RpcErr> {
    let encoded = string_param(params, 0, "message")?;
    if encoded.len() > MAX_BASE64_TRANSACTION {
        return Err(RpcErr::params("Invalid params: message too large"));
    }
    let bytes = STANDARD
        .decode(encoded)
        .map_err(|e| RpcErr::params(format!("Invalid params: message is not base64 ({e})")))?;
    let limit =
        u64::try_from(PACKET_DATA_SIZE).map_err(|_| RpcErr::new(INTERNAL_ERROR, "packet size"))?;
    let message: VersionedMessage = bincode::DefaultOptions::new()
        .with_limit(limit)
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .deserialize(&bytes)
        .map_err(|e| RpcErr::params(format!("Invalid params: message does not decode ({e})")))?;
    let known = known_blockhash(shared, message.recent_blockhash())?;
    let signatures = u64::from(message.header().num_required_signatures);
    let (fee, slot) = ledger_call(shared, move |l| {
        Ok((l.fee_for_signatures(signatures)?, l.clock()?.slot))
    })
    .await?;
    // A validator answers null for a blockhash it does not know.
    let value = if known { json!(fee) } else { Value::Null };
    Ok(json!({ "context": context(slot), "value": value }))
}

async fn request_airdrop(shared: &Arc<Shared>, params: &[Value]) -> Result<Value, RpcErr> {
    let to = pubkey_param(params, 0)?;
    let lamports = param(params, 1, "lamports")?
        .as_u64()
        .ok_or_else(|| RpcErr::params("Invalid params: lamports must be an unsigned integer"))?;
    if lamports == 0 || lamports > shared.options.max_airdrop_lamports {
        return Err(RpcErr::params(format!(
            "Invalid params: an airdrop must be between 1 and {} lamports",
            shared.options.max_airdrop_lamports
        )));
    }
    let (signature, faucet, clock, fee) = ledger_call(shared, move |l| {
        let signature = l.airdrop(&to, lamports)?;
        Ok((signature, l.faucet()?, l.clock()?, l.fee_for_signatures(1)?))
    })
    .await?;
    let instruction = solana_system_interface::instruction::transfer(&faucet, &to, lamports);
    let mut transaction = Transaction::new_unsigned(Message::new(&[instruction], Some(&faucet)));
    transaction.signatures = vec![signature];
    let executed = Executed {
        transaction,
        slot: clock.slot,
        block_time: clock.unix_timestamp,
        fee,
        err: None,
        logs: vec![
            format!(
                "Program {} invoke [1]",
                solana_system_interface::program::ID
            ),
            format!("Program {} success", solana_system_interface::program::ID),
        ],
    };
    remember(shared, signature, executed)?;
    Ok(json!(signature.to_string()))
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

    #[test]
    fn oversized_and_garbage_transactions_are_refused_before_the_ledger() {
        let too_long = "A".repeat(MAX_BASE64_TRANSACTION + 4);
        assert_eq!(
            decode_transaction(&too_long, "base64").unwrap_err().code,
            INVALID_PARAMS
        );
        assert_eq!(
            decode_transaction("!!!", "base64").unwrap_err().code,
            INVALID_PARAMS
        );
        assert_eq!(
            decode_transaction("AAAA", "base64").unwrap_err().code,
            INVALID_PARAMS
        );
        assert_eq!(
            decode_transaction("AAAA", "json").unwrap_err().code,
            INVALID_PARAMS
        );
    }
}

//! The HTTP API (axum): routes, handlers and the JSON views of traces.
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | `/v1/transactions` | a countersigned [`PaymentTransaction`] → [`SubmitAnswer`] (signed deliver / wait / reject) |
//! | POST | `/v1/transactions/batch` | an array of them (one signature batch) → array of [`BatchItem`] |
//! | GET | `/v1/transactions/{id}/answer` | the current signed answer (404 if unknown) |
//! | GET | `/v1/transactions/{id}/final?wait=30s` | long-poll until final (at most 60 s), else the current wait answer |
//! | GET | `/v1/transactions/{id}` | the transaction's trace |
//! | GET | `/v1/users/{user}` | [`UserView`]: trust, block size, suspension |
//! | GET | `/v1/vendors/{vendor}` | the vendor's payout account |
//! | GET | `/v1/tokens/{bank:batch:serial}` | the token's trace |
//! | GET | `/v1/blocks/{id}` | the block's trace (members, decisions, trust update) |
//! | POST | `/v1/settle` | run settlement now (recovery first; idempotent) → the report |
//! | GET | `/v1/status` | pending blocks, pending payouts, settlement journal |
//! | GET | `/health` | liveness |
//! | GET | `/metrics` | Prometheus text |
//!
//! Errors are `{ "error": { "code", "message" } }` ([`ApiError`]): 400 malformed, 401 bad
//! signature, 403 unknown identity, 404 unknown, 413 too large, 503 overloaded / shutting down.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use mupib_sdk::auditor::{DecisionCounts, TrustUpdate};
use mupib_sdk::client::vendor::{BatchItem, SubmitAnswer, UserView, MAX_LONG_POLL_SECS};
use mupib_sdk::program::scenario::decision_name;
use mupib_sdk::store::{RejectCode, Store, TransactionRecord, TransactionStatus};
use mupib_sdk::token::TokenId;
use mupib_sdk::transaction::{PaymentTransaction, TransactionId};
use mupib_sdk::Pubkey;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::error::ApiError;
use super::state::{decoded_outcome, AppState};

/// The router over `state`, with bodies bounded to `max_body_bytes`.
pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/transactions", post(submit))
        .route("/v1/transactions/batch", post(submit_batch))
        .route("/v1/transactions/{id}", get(transaction_trace))
        .route("/v1/transactions/{id}/answer", get(answer))
        .route("/v1/transactions/{id}/final", get(final_answer))
        .route("/v1/users/{user}", get(user))
        .route("/v1/vendors/{vendor}", get(vendor))
        .route("/v1/tokens/{token}", get(token_trace))
        .route("/v1/blocks/{id}", get(block_trace))
        .route("/v1/status", get(status))
        .route("/v1/settle", post(settle))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(Limits {
            state,
            max_body_bytes,
        })
}

#[derive(Clone)]
struct Limits {
    state: Arc<AppState>,
    max_body_bytes: usize,
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint; see the service documentation for the routes".into())
}

/// Runs a synchronous step of the core off the async threads.
async fn blocking<T: Send + 'static>(
    state: &Arc<AppState>,
    step: impl FnOnce(&AppState) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let state = Arc::clone(state);
    tokio::task::spawn_blocking(move || step(&state))
        .await
        .map_err(|e| ApiError::Internal(format!("worker task failed: {e}")))?
}

fn body_bytes(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::MalformedJson {
                what: "request body",
                detail: rejection.body_text(),
            }
        }
    })
}

/// Reserves one block-queue slot per transaction, or refuses with 503.
fn reserve(
    state: &AppState,
    count: usize,
) -> Result<Vec<mpsc::OwnedPermit<mupib_sdk::auditor::BlockSubmission>>, ApiError> {
    if *state.shutdown.borrow() {
        return Err(ApiError::ShuttingDown);
    }
    (0..count)
        .map(|_| {
            state
                .blocks
                .clone()
                .try_reserve_owned()
                .map_err(|e| match e {
                    mpsc::error::TrySendError::Full(_) => ApiError::Overloaded,
                    mpsc::error::TrySendError::Closed(_) => ApiError::ShuttingDown,
                })
        })
        .collect()
}

async fn submit(
    State(limits): State<Limits>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SubmitAnswer>, ApiError> {
    let state = limits.state;
    let parsed = body_bytes(body, limits.max_body_bytes).and_then(|bytes| {
        serde_json::from_slice::<PaymentTransaction>(&bytes).map_err(|e| ApiError::MalformedJson {
            what: "payment transaction (JSON)",
            detail: e.to_string(),
        })
    });
    let tx = parsed.inspect_err(|_| state.metrics.refused())?;
    let permits = reserve(&state, 1)?;
    let mut answers = blocking(&state, move |s| Ok(s.submit(&[tx], permits))).await?;
    answers
        .pop()
        .unwrap_or_else(|| Err(ApiError::Internal("no answer for the transaction".into())))
        .map(Json)
}

async fn submit_batch(
    State(limits): State<Limits>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Vec<BatchItem>>, ApiError> {
    let state = limits.state;
    let bytes = body_bytes(body, limits.max_body_bytes).inspect_err(|_| state.metrics.refused())?;
    let txs: Vec<PaymentTransaction> = serde_json::from_slice(&bytes).map_err(|e| {
        state.metrics.refused();
        ApiError::MalformedJson {
            what: "array of payment transactions (JSON)",
            detail: e.to_string(),
        }
    })?;
    if txs.len() > state.max_batch {
        return Err(ApiError::InvalidTransaction(format!(
            "a batch carries {} transactions, the limit is {}; split it",
            txs.len(),
            state.max_batch
        )));
    }
    let permits = reserve(&state, txs.len())?;
    let answers = blocking(&state, move |s| Ok(s.submit(&txs, permits))).await?;
    Ok(Json(
        answers
            .into_iter()
            .map(|answer| match answer {
                Ok(answer) => BatchItem::Answered(answer),
                Err(error) => BatchItem::Refused(error.body()),
            })
            .collect(),
    ))
}

fn parse_id(text: &str) -> Result<TransactionId, ApiError> {
    TransactionId::from_str(text).map_err(|e| ApiError::BadParameter {
        what: "transaction id (64 hex digits)",
        value: text.chars().take(80).collect(),
        detail: e.to_string(),
    })
}

fn parse_pubkey(what: &'static str, text: &str) -> Result<Pubkey, ApiError> {
    Pubkey::from_str(text).map_err(|e| ApiError::BadParameter {
        what,
        value: text.chars().take(80).collect(),
        detail: e.to_string(),
    })
}

async fn answer(
    State(limits): State<Limits>,
    Path(id): Path<String>,
) -> Result<Json<SubmitAnswer>, ApiError> {
    let id = parse_id(&id)?;
    let answer = blocking(&limits.state, move |s| s.answer(&id)).await?;
    answer
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("transaction {id} is unknown to this auditor")))
}

/// `?wait=30` or `?wait=30s`.
#[derive(Debug, Deserialize)]
struct WaitQuery {
    wait: Option<String>,
}

fn parse_wait(wait: Option<&str>) -> Result<Duration, ApiError> {
    let Some(text) = wait else {
        return Ok(Duration::from_secs(30));
    };
    let digits = text.strip_suffix('s').unwrap_or(text);
    let secs: u64 =
        digits
            .parse()
            .map_err(|e: std::num::ParseIntError| ApiError::BadParameter {
                what: "wait (seconds, e.g. 30 or 30s)",
                value: text.chars().take(40).collect(),
                detail: e.to_string(),
            })?;
    Ok(Duration::from_secs(secs.min(MAX_LONG_POLL_SECS)))
}

async fn final_answer(
    State(limits): State<Limits>,
    Path(id): Path<String>,
    Query(query): Query<WaitQuery>,
) -> Result<Json<SubmitAnswer>, ApiError> {
    let id = parse_id(&id)?;
    let wait = parse_wait(query.wait.as_deref())?;
    let state = limits.state;
    let deadline = tokio::time::Instant::now() + wait;
    let mut decided = state.decided.subscribe();
    let mut shutdown = state.shutdown.clone();
    loop {
        // Mark the current epoch seen before reading, so no decision is missed in between.
        decided.borrow_and_update();
        let current = blocking(&state, move |s| s.answer(&id))
            .await?
            .ok_or_else(|| {
                ApiError::NotFound(format!("transaction {id} is unknown to this auditor"))
            })?;
        if current.is_final || *shutdown.borrow() {
            return Ok(Json(current));
        }
        tokio::select! {
            changed = decided.changed() => { if changed.is_err() { return Ok(Json(current)); } }
            _ = shutdown.changed() => { return Ok(Json(current)); }
            () = tokio::time::sleep_until(deadline) => { return Ok(Json(current)); }
        }
    }
}

async fn user(
    State(limits): State<Limits>,
    Path(user): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    let user = parse_pubkey("user key (base58)", &user)?;
    blocking(&limits.state, move |s| s.user_view(&user))
        .await
        .map(Json)
}

/// A vendor's payout account.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VendorView {
    /// The vendor.
    pub vendor: String,
    /// Σ payouts accrued, v·(1−ρ) per delivered token.
    pub accrued: u64,
    /// Paid on-chain.
    pub settled: u64,
    /// Reserved in a settlement batch not yet confirmed.
    pub in_flight: u64,
    /// Still to pay.
    pub settleable: u64,
    /// Times this vendor presented a transaction twice (flagged).
    pub double_sellings: u64,
}

async fn vendor(
    State(limits): State<Limits>,
    Path(vendor): Path<String>,
) -> Result<Json<VendorView>, ApiError> {
    let vendor = parse_pubkey("vendor key (base58)", &vendor)?;
    blocking(&limits.state, move |s| {
        let account = s.core()?.engine.store().vendor(&vendor)?;
        Ok(VendorView {
            vendor: vendor.to_string(),
            accrued: account.accrued,
            settled: account.settled,
            in_flight: account.in_flight,
            settleable: account.settleable(),
            double_sellings: account.double_sellings,
        })
    })
    .await
    .map(Json)
}

/// A transaction's trace.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TransactionTrace {
    /// The id.
    pub transaction_id: String,
    /// The user.
    pub user: String,
    /// The vendor.
    pub vendor: String,
    /// `delivered`, `waiting`, `held` or `rejected`.
    pub status: String,
    /// For `rejected`, the reason code.
    pub reject_code: Option<String>,
    /// The block it is in.
    pub block_id: Option<u64>,
    /// Σ token values.
    pub amount: u64,
    /// The vendor payout accrued.
    pub payout: u64,
    /// Its tokens (`bank:batch:serial`; empty when rejected at intake).
    pub tokens: Vec<String>,
    /// The current signed answer.
    pub answer: Option<SubmitAnswer>,
}

/// `delivered` / `waiting` / `held` / `rejected` and the reject code.
pub fn status_names(status: TransactionStatus) -> (&'static str, Option<&'static str>) {
    match status {
        TransactionStatus::Delivered => ("delivered", None),
        TransactionStatus::Waiting => ("waiting", None),
        TransactionStatus::Held => ("held", None),
        TransactionStatus::Rejected(code) => ("rejected", Some(reject_code_name(code))),
    }
}

/// The snake-case name of a reject code.
pub fn reject_code_name(code: RejectCode) -> &'static str {
    match code {
        RejectCode::UserSuspended => "user_suspended",
        RejectCode::DoubleSpending => "double_spending",
        RejectCode::DoubleSelling => "double_selling",
        RejectCode::ForgedToken => "forged_token",
        RejectCode::InvalidBlock => "invalid_block",
    }
}

fn trace_of(record: &TransactionRecord, answer: Option<SubmitAnswer>) -> TransactionTrace {
    let (status, reject_code) = status_names(record.status);
    TransactionTrace {
        transaction_id: record.id.to_hex(),
        user: record.user.to_string(),
        vendor: record.vendor.to_string(),
        status: status.to_owned(),
        reject_code: reject_code.map(str::to_owned),
        block_id: record.block_id,
        amount: record.amount,
        payout: record.payout,
        tokens: record.tokens.iter().map(|t| t.id.to_string()).collect(),
        answer,
    }
}

async fn transaction_trace(
    State(limits): State<Limits>,
    Path(id): Path<String>,
) -> Result<Json<TransactionTrace>, ApiError> {
    let id = parse_id(&id)?;
    blocking(&limits.state, move |s| {
        let answer = s.answer(&id)?;
        let record = s
            .core()?
            .engine
            .store()
            .transaction_by_id(&id)?
            .ok_or_else(|| {
                ApiError::NotFound(format!("transaction {id} is unknown to this auditor"))
            })?;
        Ok(trace_of(&record, answer))
    })
    .await
    .map(Json)
}

/// One use of a token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenUse {
    /// The transaction that carried it.
    pub transaction_id: String,
    /// That transaction's status.
    pub status: String,
    /// Its block.
    pub block_id: Option<u64>,
    /// The chain's decision for the token, once its block is verified.
    pub decision: Option<String>,
}

/// A token's trace.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenTrace {
    /// `bank:batch:serial`.
    pub token: String,
    /// Seen at intake (a second use is double spending).
    pub seen: bool,
    /// Accepted transactions that carried it.
    pub uses: Vec<TokenUse>,
}

async fn token_trace(
    State(limits): State<Limits>,
    Path(token): Path<String>,
) -> Result<Json<TokenTrace>, ApiError> {
    let token = TokenId::from_str(&token).map_err(|detail| ApiError::BadParameter {
        what: "token id (bank:batch_id:serial)",
        value: token.chars().take(120).collect(),
        detail,
    })?;
    blocking(&limits.state, move |s| {
        let core = s.core()?;
        let seen = core.engine.store().token_seen(&token)?;
        let mut uses = Vec::new();
        for hex in core.journal.token_transactions(&token)? {
            let id = parse_id(&hex)?;
            let Some(record) = core.engine.store().transaction_by_id(&id)? else {
                continue;
            };
            let decision = match record.block_id {
                Some(block_id) => decoded_outcome(&core, block_id)?.map(|outcome| {
                    outcome
                        .invalid
                        .iter()
                        .find(|d| d.token == token)
                        .map_or("valid", |d| decision_name(d.decision.code()))
                        .to_owned()
                }),
                None => None,
            };
            uses.push(TokenUse {
                transaction_id: hex,
                status: status_names(record.status).0.to_owned(),
                block_id: record.block_id,
                decision,
            });
        }
        if !seen && uses.is_empty() {
            return Err(ApiError::NotFound(format!(
                "token {token} is unknown to this auditor"
            )));
        }
        Ok(TokenTrace {
            token: token.to_string(),
            seen,
            uses,
        })
    })
    .await
    .map(Json)
}

/// A block's trace.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BlockTrace {
    /// The block id.
    pub block_id: u64,
    /// Its user.
    pub user: String,
    /// `pending` or `verified`.
    pub state: String,
    /// Tokens in it.
    pub token_count: u64,
    /// W when it formed.
    pub block_size: u64,
    /// Its transactions in block order.
    pub transactions: Vec<TransactionTrace>,
    /// Decision counts once verified.
    pub decisions: Option<DecisionCounts>,
    /// Invalid tokens and their decisions (`bank:batch:serial` → name).
    pub invalid: Vec<(String, String)>,
    /// The eq. 7 update once verified.
    pub trust: Option<TrustUpdate>,
    /// Realized risk in base units (as text: i128).
    pub risk: Option<String>,
}

async fn block_trace(
    State(limits): State<Limits>,
    Path(id): Path<String>,
) -> Result<Json<BlockTrace>, ApiError> {
    let block_id: u64 =
        id.parse()
            .map_err(|e: std::num::ParseIntError| ApiError::BadParameter {
                what: "block id",
                value: id.chars().take(40).collect(),
                detail: e.to_string(),
            })?;
    blocking(&limits.state, move |s| {
        let core = s.core()?;
        let (record, members) = core.engine.store().block(block_id)?.ok_or_else(|| {
            ApiError::NotFound(format!("block {block_id} is unknown to this auditor"))
        })?;
        let outcome = decoded_outcome(&core, block_id)?;
        Ok(BlockTrace {
            block_id,
            user: record.user.to_string(),
            state: if outcome.is_some() {
                "verified"
            } else {
                "pending"
            }
            .to_owned(),
            token_count: record.token_count,
            block_size: record.block_size,
            transactions: members.iter().map(|m| trace_of(m, None)).collect(),
            decisions: outcome.as_ref().map(|o| o.decisions),
            invalid: outcome
                .as_ref()
                .map(|o| {
                    o.invalid
                        .iter()
                        .map(|d| {
                            (
                                d.token.to_string(),
                                decision_name(d.decision.code()).to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            trust: outcome.as_ref().map(|o| o.trust),
            risk: outcome.as_ref().map(|o| o.risk.to_string()),
        })
    })
    .await
    .map(Json)
}

/// The service's status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatusView {
    /// The auditor's key.
    pub auditor: String,
    /// Blocks formed but not decided yet.
    pub pending_blocks: Vec<u64>,
    /// The next block id.
    pub next_block_id: u64,
    /// Vendors owed money not yet settled: (vendor, amount).
    pub pending_payouts: Vec<(String, u64)>,
    /// Settlement journal: (key, signature, done).
    pub settlements: Vec<(String, Option<String>, bool)>,
    /// Misbehaviour records.
    pub misbehaviour: usize,
}

/// Builds the status from the core (also used offline by `mupib auditor status`).
///
/// # Errors
/// Store and journal failures.
pub fn status_of(auditor: Pubkey, core: &super::state::Core) -> Result<StatusView, ApiError> {
    let store = core.engine.store();
    Ok(StatusView {
        auditor: auditor.to_string(),
        pending_blocks: store.pending_blocks()?.iter().map(|b| b.block_id).collect(),
        next_block_id: store.next_block_id()?,
        pending_payouts: store
            .pending_payouts()?
            .iter()
            .map(|p| (p.vendor.to_string(), p.amount))
            .collect(),
        settlements: core
            .journal
            .settlements_all()?
            .into_iter()
            .map(|e| (e.key, e.signature, e.done))
            .collect(),
        misbehaviour: store.misbehaviour()?.len(),
    })
}

async fn status(State(limits): State<Limits>) -> Result<Json<StatusView>, ApiError> {
    blocking(&limits.state, |s| status_of(s.auditor(), &*s.core()?))
        .await
        .map(Json)
}

async fn health(State(limits): State<Limits>) -> impl IntoResponse {
    let shutting_down = *limits.state.shutdown.borrow();
    let status = if shutting_down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (
        status,
        Json(serde_json::json!({
            "status": if shutting_down { "shutting_down" } else { "ok" },
            "auditor": limits.state.auditor().to_string(),
        })),
    )
}

async fn metrics(State(limits): State<Limits>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        limits.state.metrics.render(),
    )
}

async fn settle(
    State(limits): State<Limits>,
) -> Result<Json<super::settlement::SettlementReport>, ApiError> {
    blocking(&limits.state, |s| {
        super::run_settlement(s).map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await
    .map(Json)
}

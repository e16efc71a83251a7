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
use mupib_auditor::settlement::SettlementReport;
use mupib_auditor::store::{SettlementStatus, TransactionRecord};
use mupib_protocol::decision::Decision;
use mupib_protocol::token::TokenId;
use mupib_protocol::transaction::{PaymentTransaction, TransactionId};
use mupib_protocol::wire::{
    BatchItem, BlockTrace, StatusView, SubmitAnswer, TokenTrace, TokenUse, TransactionTrace,
    UserView, VendorView, MAX_LONG_POLL_SECS,
};
use mupib_protocol::Pubkey;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::error::ApiError;
use super::state::AppState;

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
) -> Result<Vec<mpsc::OwnedPermit<mupib_protocol::block::BlockSubmission>>, ApiError> {
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

async fn vendor(
    State(limits): State<Limits>,
    Path(vendor): Path<String>,
) -> Result<Json<VendorView>, ApiError> {
    let vendor = parse_pubkey("vendor key (base58)", &vendor)?;
    blocking(&limits.state, move |s| {
        let account = s.core()?.engine.vendor(&vendor)?;
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

fn trace_of(record: &TransactionRecord, answer: Option<SubmitAnswer>) -> TransactionTrace {
    TransactionTrace {
        transaction_id: record.id.to_hex(),
        user: record.user.to_string(),
        vendor: record.vendor.to_string(),
        status: record.status.name().to_owned(),
        reject_code: record
            .status
            .reject_code()
            .map(|code| code.name().to_owned()),
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
        let record = s.core()?.engine.transaction(&id)?.ok_or_else(|| {
            ApiError::NotFound(format!("transaction {id} is unknown to this auditor"))
        })?;
        Ok(trace_of(&record, answer))
    })
    .await
    .map(Json)
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
        let seen = core.engine.token_seen(&token)?;
        let mut uses = Vec::new();
        for hex in core.journal.token_transactions(&token)? {
            let id = parse_id(&hex)?;
            let Some(record) = core.engine.transaction(&id)? else {
                continue;
            };
            let decision = match record.block_id {
                Some(block_id) => core.engine.block_outcome(block_id)?.map(|outcome| {
                    outcome
                        .invalid
                        .iter()
                        .find(|d| d.token == token)
                        .map_or(Decision::Valid.name(), |d| d.decision.name())
                        .to_owned()
                }),
                None => None,
            };
            uses.push(TokenUse {
                transaction_id: hex,
                status: record.status.name().to_owned(),
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
        let (record, members) = core.engine.block(block_id)?.ok_or_else(|| {
            ApiError::NotFound(format!("block {block_id} is unknown to this auditor"))
        })?;
        let outcome = core.engine.block_outcome(block_id)?;
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
                        .map(|d| (d.token.to_string(), d.decision.name().to_owned()))
                        .collect()
                })
                .unwrap_or_default(),
            trust: outcome.as_ref().map(|o| o.trust),
            risk: outcome.as_ref().map(|o| o.risk.to_string()),
            amount_paid: outcome.as_ref().and_then(|o| o.payment).map(|p| p.paid),
            expected_paid: outcome.as_ref().and_then(|o| o.payment).map(|p| p.expected),
            payment_mismatch: outcome.as_ref().is_some_and(|o| o.payment_mismatch()),
        })
    })
    .await
    .map(Json)
}

/// How many recent settlement batches the status lists.
const STATUS_SETTLEMENTS: usize = 32;

/// Builds the status from the core and the last settlement run.
///
/// # Errors
/// Store failures.
pub fn status_of(
    auditor: Pubkey,
    core: &super::state::Core,
    last_settlement: Option<&SettlementReport>,
) -> Result<StatusView, ApiError> {
    let engine = &core.engine;
    Ok(StatusView {
        auditor: auditor.to_string(),
        pending_blocks: engine
            .pending_blocks()?
            .iter()
            .map(|b| b.block_id)
            .collect(),
        next_block_id: engine.next_block_id()?,
        pending_payouts: engine
            .pending_payouts()?
            .iter()
            .map(|p| (p.vendor.to_string(), p.amount))
            .collect(),
        settlements: engine
            .recent_settlements(STATUS_SETTLEMENTS)?
            .into_iter()
            .map(|b| {
                let done = b.status != SettlementStatus::InFlight;
                (b.key, b.signed.map(|s| s.signature), done)
            })
            .collect(),
        settlement_blocked: last_settlement
            .and_then(|r| r.blocked.as_ref())
            .map(|blocked| format!("{blocked:?}")),
        unpayable_vendors: last_settlement
            .map(|r| {
                r.unpayable
                    .iter()
                    .map(|u| (u.vendor.clone(), u.amount, u.reason.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        misbehaviour: engine.misbehaviour()?.len(),
    })
}

async fn status(State(limits): State<Limits>) -> Result<Json<StatusView>, ApiError> {
    blocking(&limits.state, |s| {
        let last = s.last_settlement()?;
        status_of(s.auditor(), &*s.core()?, last.as_ref())
    })
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

async fn settle(State(limits): State<Limits>) -> Result<Json<SettlementReport>, ApiError> {
    blocking(&limits.state, |s| {
        super::run_settlement(s).map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await
    .map(Json)
}

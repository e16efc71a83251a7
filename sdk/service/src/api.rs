//! The HTTP API (axum): routes, who may call them, handlers and the JSON views of traces.
//!
//! | method | path | answer | vendor | operator |
//! |---|---|---|---|---|
//! | POST | `/v1/transactions` | a countersigned [`PaymentTransaction`] → [`SubmitAnswer`] (signed deliver / wait / reject) | its own transactions | ✓ |
//! | POST | `/v1/transactions/batch` | an array of them (one signature batch) → array of [`BatchItem`] | its own transactions | ✓ |
//! | GET | `/v1/transactions/{id}/answer` | the current signed answer (404 if unknown) | its own | ✓ |
//! | GET | `/v1/transactions/{id}/final?wait=30s` | long-poll until final (at most 60 s), else the current wait answer | its own | ✓ |
//! | GET | `/v1/transactions/{id}` | the transaction's trace | its own | ✓ |
//! | GET | `/v1/users/{user}` | [`UserView`]: trust, block size, suspension | any user | ✓ |
//! | GET | `/v1/vendors/{vendor}` | the vendor's payout account | itself | ✓ |
//! | GET | `/v1/tokens/{bank:batch:serial}` | the token's trace | – | ✓ |
//! | GET | `/v1/blocks/{id}` | the block's trace (members, decisions, trust update) | – | ✓ |
//! | POST | `/v1/settle` | run settlement now (recovery first; idempotent) → the report | – | ✓ |
//! | GET | `/v1/status` | pending blocks, pending payouts, settlement journal | – | ✓ |
//! | POST | `/v1/registry/revoke` | [`RevokeRequest`] → [`RevokeAnswer`]: the key is refused from the next request on | – | ✓ |
//! | GET | `/metrics` | Prometheus text | – | ✓ |
//! | GET | `/health` | liveness (open to anyone) | ✓ | ✓ |
//!
//! Authentication and the vendor's scope: [`crate::access`]. Limits in front of the handlers:
//! requests in flight ([`crate::ServiceConfig::max_in_flight`], shared by every authenticated
//! route but the long-poll) and long-polls ([`crate::ServiceConfig::max_long_polls`]), both
//! `tower` concurrency limits with load shedding (503 + `Retry-After`); bodies bounded in size and
//! time (tower-http `RequestBodyTimeoutLayer` and [`crate::access`]); write routes take
//! `Content-Type: application/json` only (415) and refuse unknown fields (400).
//!
//! Errors are `{ "error": { "code", "message" } }` ([`ApiError`]): 400 malformed, 401 missing or
//! failed credentials, 403 not allowed, 404 unknown, 408 body too slow, 413 too large, 415 not
//! JSON, 429 rate limited, 503 overloaded / busy / shutting down; every one is counted by code.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::error_handling::HandleErrorLayer;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use mupib_auditor::settlement::SettlementReport;
use mupib_auditor::store::{SettlementStatus, TransactionRecord};
use mupib_protocol::decision::Decision;
use mupib_protocol::token::TokenId;
use mupib_protocol::transaction::{PaymentTransaction, TransactionId};
use mupib_protocol::wire::{
    BatchItem, BlockTrace, RevokeAnswer, RevokeRequest, StatusView, SubmitAnswer, TokenTrace,
    TokenUse, TransactionTrace, UserView, VendorView, MAX_LONG_POLL_SECS,
};
use mupib_protocol::Pubkey;
use serde::Deserialize;
use tokio::sync::Semaphore;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::{BoxError, ServiceBuilder};
use tower_http::timeout::RequestBodyTimeoutLayer;

use super::access::{authenticate, require_json, Access, Caller, Guard};
use super::error::{ApiError, ErrorCode};
use super::pipeline::Answers;
use super::state::AppState;

/// The limits the router enforces (from [`crate::ServiceConfig`]).
#[derive(Debug, Clone, Copy)]
pub struct RouterLimits {
    /// Largest request body (413).
    pub max_body_bytes: usize,
    /// Longest wait between body frames (408).
    pub body_timeout: Duration,
    /// Requests in flight on every authenticated route but the long-poll (503 above).
    pub max_in_flight: usize,
    /// Long-polls open at once (503 above).
    pub max_long_polls: usize,
}

/// A concurrency limit shared by `routes` (one semaphore), shedding what exceeds it with 503.
fn limited(
    routes: Router<Arc<AppState>>,
    semaphore: Arc<Semaphore>,
    what: &'static str,
) -> Router<Arc<AppState>> {
    routes.route_layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(move |_: BoxError| async move {
                ApiError::Busy {
                    what,
                    retry_after_secs: 1,
                }
            }))
            .layer(LoadShedLayer::new())
            .layer(GlobalConcurrencyLimitLayer::with_semaphore(semaphore)),
    )
}

fn guarded(
    routes: Router<Arc<AppState>>,
    state: &Arc<AppState>,
    access: Access,
) -> Router<Arc<AppState>> {
    routes.route_layer(from_fn_with_state(
        Guard {
            state: Arc::clone(state),
            access,
        },
        authenticate,
    ))
}

/// Counts every error answer by its code.
async fn count_errors(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    if let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>() {
        state.metrics.error(code);
    }
    response
}

/// The router over `state`: each route with who may call it and its limits.
pub fn router(state: Arc<AppState>, limits: RouterLimits) -> Router {
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight.max(1)));
    let long_polls = Arc::new(Semaphore::new(limits.max_long_polls.max(1)));
    let vendor_routes = Router::new()
        .route("/v1/transactions", post(submit))
        .route("/v1/transactions/batch", post(submit_batch))
        .route("/v1/transactions/{id}", get(transaction_trace))
        .route("/v1/transactions/{id}/answer", get(answer))
        .route("/v1/users/{user}", get(user))
        .route("/v1/vendors/{vendor}", get(vendor));
    let vendor_routes = limited(
        guarded(vendor_routes, &state, Access::Vendor),
        Arc::clone(&in_flight),
        "too many requests in flight",
    );
    let long_poll = Router::new().route("/v1/transactions/{id}/final", get(final_answer));
    let long_poll = limited(
        guarded(long_poll, &state, Access::Vendor),
        long_polls,
        "too many long-polls open",
    );
    let operator_routes = Router::new()
        .route("/v1/tokens/{token}", get(token_trace))
        .route("/v1/blocks/{id}", get(block_trace))
        .route("/v1/status", get(status))
        .route("/v1/settle", post(settle))
        .route("/v1/registry/revoke", post(revoke))
        .route("/metrics", get(metrics));
    let operator_routes = limited(
        guarded(operator_routes, &state, Access::Operator),
        in_flight,
        "too many requests in flight",
    );
    Router::new()
        .merge(vendor_routes)
        .merge(long_poll)
        .merge(operator_routes)
        .route("/health", get(health))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(RequestBodyTimeoutLayer::new(limits.body_timeout))
        .layer(from_fn_with_state(Arc::clone(&state), count_errors))
        .with_state(state)
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

/// Hands `txs` to the intake pipeline and waits for their answers (after their group's
/// commit); 503 + Retry-After when the pipeline is full or stopping.
async fn intake(state: &AppState, txs: Vec<PaymentTransaction>) -> Result<Answers, ApiError> {
    if *state.shutdown.borrow() {
        return Err(ApiError::ShuttingDown);
    }
    state.intake.submit(txs).await.inspect_err(|error| {
        if matches!(error, ApiError::Overloaded) {
            state.metrics.pipeline_full();
        }
    })
}

async fn submit(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SubmitAnswer>, ApiError> {
    let parsed = require_json(&headers)
        .and_then(|()| body_bytes(body, state.gate.max_body_bytes()))
        .and_then(|bytes| {
            serde_json::from_slice::<PaymentTransaction>(&bytes).map_err(|e| {
                ApiError::MalformedJson {
                    what: "payment transaction (JSON)",
                    detail: e.to_string(),
                }
            })
        })
        .and_then(|tx| {
            caller.may_act_for(&tx.vendor_cert.subject, "submit the transactions")?;
            Ok(tx)
        });
    let tx = parsed.inspect_err(|_| state.metrics.refused())?;
    let mut answers = intake(&state, vec![tx]).await?;
    answers
        .pop()
        .unwrap_or_else(|| Err(ApiError::Internal("no answer for the transaction".into())))
        .map(Json)
}

async fn submit_batch(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Vec<BatchItem>>, ApiError> {
    let bytes = require_json(&headers)
        .and_then(|()| body_bytes(body, state.gate.max_body_bytes()))
        .inspect_err(|_| state.metrics.refused())?;
    let txs: Vec<PaymentTransaction> = serde_json::from_slice(&bytes).map_err(|e| {
        state.metrics.refused();
        ApiError::MalformedJson {
            what: "array of payment transactions (JSON)",
            detail: e.to_string(),
        }
    })?;
    // A vendor submits only its own transactions: one of another vendor refuses the whole batch.
    for tx in &txs {
        caller
            .may_act_for(&tx.vendor_cert.subject, "submit the transactions")
            .inspect_err(|_| state.metrics.refused())?;
    }
    if txs.len() > state.max_batch {
        return Err(ApiError::InvalidTransaction(format!(
            "a batch carries {} transactions, the limit is {}; split it",
            txs.len(),
            state.max_batch
        )));
    }
    let answers = intake(&state, txs).await?;
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
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<SubmitAnswer>, ApiError> {
    let id = parse_id(&id)?;
    let answer = blocking(&state, move |s| {
        s.check_owner(caller, &id)?;
        s.answer(&id)
    })
    .await?;
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
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(query): Query<WaitQuery>,
) -> Result<Json<SubmitAnswer>, ApiError> {
    let id = parse_id(&id)?;
    let wait = parse_wait(query.wait.as_deref())?;
    blocking(&state, move |s| s.check_owner(caller, &id)).await?;
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
        // Another instance of a shared store may apply the decision: look again now and then.
        let recheck = tokio::time::Instant::now()
            + if state.coordination.shared() {
                super::instances::SHARED_POLL
            } else {
                wait
            };
        tokio::select! {
            changed = decided.changed() => { if changed.is_err() { return Ok(Json(current)); } }
            _ = shutdown.changed() => { return Ok(Json(current)); }
            () = tokio::time::sleep_until(deadline) => { return Ok(Json(current)); }
            () = tokio::time::sleep_until(recheck) => {}
        }
    }
}

async fn user(
    State(state): State<Arc<AppState>>,
    Path(user): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    let user = parse_pubkey("user key (base58)", &user)?;
    blocking(&state, move |s| s.user_view(&user))
        .await
        .map(Json)
}

async fn vendor(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(vendor): Path<String>,
) -> Result<Json<VendorView>, ApiError> {
    let vendor = parse_pubkey("vendor key (base58)", &vendor)?;
    caller.may_act_for(&vendor, "read the account")?;
    blocking(&state, move |s| {
        let account = s.read(|engine| Ok(engine.vendor(&vendor)?))?;
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
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<TransactionTrace>, ApiError> {
    let id = parse_id(&id)?;
    blocking(&state, move |s| {
        s.check_owner(caller, &id)?;
        let answer = s.answer(&id)?;
        let record = s
            .read(|engine| Ok(engine.transaction(&id)?))?
            .ok_or_else(|| {
                ApiError::NotFound(format!("transaction {id} is unknown to this auditor"))
            })?;
        Ok(trace_of(&record, answer))
    })
    .await
    .map(Json)
}

async fn token_trace(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
) -> Result<Json<TokenTrace>, ApiError> {
    let token = TokenId::from_str(&token).map_err(|detail| ApiError::BadParameter {
        what: "token id (bank:batch_id:serial)",
        value: token.chars().take(120).collect(),
        detail,
    })?;
    blocking(&state, move |s| {
        let carriers = s.journal()?.token_transactions(&token)?;
        s.read(|engine| {
            let seen = engine.token_seen(&token)?;
            let mut uses = Vec::new();
            for hex in carriers {
                let id = parse_id(&hex)?;
                let Some(record) = engine.transaction(&id)? else {
                    continue;
                };
                let decision = match record.block_id {
                    Some(block_id) => engine.block_outcome(block_id)?.map(|outcome| {
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
    })
    .await
    .map(Json)
}

async fn block_trace(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<BlockTrace>, ApiError> {
    let block_id: u64 =
        id.parse()
            .map_err(|e: std::num::ParseIntError| ApiError::BadParameter {
                what: "block id",
                value: id.chars().take(40).collect(),
                detail: e.to_string(),
            })?;
    blocking(&state, move |s| {
        let (found, outcome) =
            s.read(|engine| Ok((engine.block(block_id)?, engine.block_outcome(block_id)?)))?;
        let (record, members) = found.ok_or_else(|| {
            ApiError::NotFound(format!("block {block_id} is unknown to this auditor"))
        })?;
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

/// Builds the status from the engine and the last settlement run.
///
/// # Errors
/// Store failures.
pub fn status_of(
    auditor: Pubkey,
    engine: &super::state::Engine,
    last_settlement: Option<&SettlementReport>,
) -> Result<StatusView, ApiError> {
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

async fn status(State(state): State<Arc<AppState>>) -> Result<Json<StatusView>, ApiError> {
    blocking(&state, |s| {
        let last = s.last_settlement()?;
        s.read(|engine| status_of(s.auditor(), engine, last.as_ref()))
    })
    .await
    .map(Json)
}

async fn health(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let shutting_down = *state.shutdown.borrow();
    let status = if shutting_down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (
        status,
        Json(serde_json::json!({
            "status": if shutting_down { "shutting_down" } else { "ok" },
            "auditor": state.auditor().to_string(),
        })),
    )
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn settle(State(state): State<Arc<AppState>>) -> Result<Json<SettlementReport>, ApiError> {
    blocking(&state, |s| {
        super::run_settlement(s).map_err(|e| match e {
            super::ServiceError::NotLeader => ApiError::Busy {
                what: "settlement runs on another instance of this store",
                retry_after_secs: 10,
            },
            other => ApiError::Internal(other.to_string()),
        })
    })
    .await
    .map(Json)
}

async fn revoke(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RevokeAnswer>, ApiError> {
    require_json(&headers)?;
    let bytes = body_bytes(body, state.gate.max_body_bytes())?;
    let request: RevokeRequest =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::MalformedJson {
            what: "revoke request (JSON: {\"key\": \"<base58>\"})",
            detail: e.to_string(),
        })?;
    let key = request.key;
    let newly_revoked = blocking(&state, move |s| {
        s.registry
            .revoke(key)
            .map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await?;
    state.metrics.revocation();
    tracing::info!(%key, newly_revoked, "key revoked by the operator");
    Ok(Json(RevokeAnswer {
        key,
        newly_revoked,
        durable: state.registry.durable(),
    }))
}

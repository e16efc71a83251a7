//! The JSON-RPC 2.0 envelope of the localnet server: the HTTP endpoint, single and batched
//! calls, notifications, the error objects and codes (the validators' own, built from
//! `RpcCustomError` and `jsonrpc_core::Error`; a failed preflight carries the
//! `RpcSimulateTransactionResult` a validator sends), parameter parsing, and running ledger
//! calls on the blocking pool. The methods themselves are in [`crate::methods`].

use std::str::FromStr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use solana_rpc_client_api::custom_error::RpcCustomError;
use solana_rpc_client_api::response::{RpcSimulateTransactionResult, UiTransactionError};
use solana_sdk::pubkey::Pubkey;
use solana_sdk::transaction::TransactionError;

use mupib_chain::ledger::{EmbeddedLedger, LedgerError};

use crate::methods::dispatch;
use crate::Shared;

const PARSE_ERROR: i64 = -32700;
pub(crate) const INVALID_REQUEST: i64 = -32600;
pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
pub(crate) const INVALID_PARAMS: i64 = -32602;
pub(crate) const INTERNAL_ERROR: i64 = -32603;

/// A JSON-RPC error object.
#[derive(Debug)]
pub(crate) struct RpcErr {
    pub(crate) code: i64,
    pub(crate) message: String,
    pub(crate) data: Option<Value>,
}

impl RpcErr {
    pub(crate) fn new(code: i64, message: impl Into<String>) -> Self {
        RpcErr {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub(crate) fn params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(INTERNAL_ERROR, message)
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(data) = &self.data {
            error["data"] = data.clone();
        }
        error
    }
}

pub(crate) fn error_body(id: Value, error: &RpcErr) -> Value {
    json!({ "jsonrpc": "2.0", "error": error.to_json(), "id": id })
}

/// The validator's error object for a `RpcCustomError`.
impl From<RpcCustomError> for RpcErr {
    fn from(error: RpcCustomError) -> Self {
        let error = jsonrpc_core::Error::from(error);
        RpcErr {
            code: error.code.code(),
            message: error.message,
            data: error.data,
        }
    }
}

pub(crate) fn ledger_error(error: LedgerError) -> RpcErr {
    match error {
        LedgerError::TransactionTooLarge { .. } => RpcErr::params(error.to_string()),
        LedgerError::Transaction { error, logs, .. } => transaction_failed(&error, &logs),
        other => RpcErr::new(INTERNAL_ERROR, format!("ledger error: {other}")),
    }
}

/// A simulation result with nothing but its error and logs.
pub(crate) fn simulation_result(
    err: Option<&TransactionError>,
    logs: &[String],
) -> RpcSimulateTransactionResult {
    RpcSimulateTransactionResult {
        err: err.cloned().map(UiTransactionError::from),
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
    }
}

/// `sendTransaction`'s preflight failure (-32002), as a validator reports it.
pub(crate) fn preflight_failure(result: RpcSimulateTransactionResult) -> RpcErr {
    let message = match &result.err {
        Some(err) => format!(
            "Transaction simulation failed: {}",
            TransactionError::from(err.clone())
        ),
        None => "Transaction simulation failed".to_string(),
    };
    let mut error =
        RpcErr::from(RpcCustomError::SendTransactionPreflightFailure { message, result });
    if let Some(data) = error.data.as_mut() {
        omit_unmetered_units(data);
    }
    error
}

pub(crate) fn transaction_failed(err: &TransactionError, logs: &[String]) -> RpcErr {
    preflight_failure(simulation_result(Some(err), logs))
}

/// Compute units are not metered natively: `unitsConsumed` is left out rather than sent as
/// `null` (clients accept its absence; a made-up figure would mislead).
pub(crate) fn omit_unmetered_units(result: &mut Value) {
    if let Some(object) = result.as_object_mut() {
        if object.get("unitsConsumed").is_some_and(Value::is_null) {
            object.remove("unitsConsumed");
        }
    }
}

/// Serializes a client type into the JSON a validator sends.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, RpcErr> {
    serde_json::to_value(value)
        .map_err(|e| RpcErr::internal(format!("cannot encode the answer: {e}")))
}

/// Runs a ledger call on the blocking pool (the ledger drives its own runtime).
pub(crate) async fn blocking<T: Send + 'static>(
    shared: &Arc<Shared>,
    call: impl FnOnce(&EmbeddedLedger) -> Result<T, LedgerError> + Send + 'static,
) -> Result<Result<T, LedgerError>, RpcErr> {
    let ledger = Arc::clone(&shared.ledger);
    tokio::task::spawn_blocking(move || call(&ledger))
        .await
        .map_err(|e| RpcErr::new(INTERNAL_ERROR, format!("ledger task failed: {e}")))
}

pub(crate) async fn ledger_call<T: Send + 'static>(
    shared: &Arc<Shared>,
    call: impl FnOnce(&EmbeddedLedger) -> Result<T, LedgerError> + Send + 'static,
) -> Result<T, RpcErr> {
    blocking(shared, call).await?.map_err(ledger_error)
}

pub(crate) async fn rpc_endpoint(
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

pub(crate) fn param<'a>(
    params: &'a [Value],
    index: usize,
    what: &str,
) -> Result<&'a Value, RpcErr> {
    params.get(index).ok_or_else(|| {
        RpcErr::params(format!(
            "Invalid params: missing {what} (parameter {index})"
        ))
    })
}

pub(crate) fn string_param<'a>(
    params: &'a [Value],
    index: usize,
    what: &str,
) -> Result<&'a str, RpcErr> {
    param(params, index, what)?
        .as_str()
        .ok_or_else(|| RpcErr::params(format!("Invalid params: {what} must be a string")))
}

pub(crate) fn pubkey_param(params: &[Value], index: usize) -> Result<Pubkey, RpcErr> {
    let text = string_param(params, index, "address")?;
    Pubkey::from_str(text).map_err(|e| {
        RpcErr::params(format!(
            "Invalid params: {text} is not a base58 address ({e})"
        ))
    })
}

/// The config object at `index` parsed as the validators' config type `T` (its default when
/// absent or `null`).
pub(crate) fn typed_config<T: DeserializeOwned + Default>(
    params: &[Value],
    index: usize,
) -> Result<T, RpcErr> {
    match params.get(index) {
        None | Some(Value::Null) => Ok(T::default()),
        Some(value) => serde_json::from_value(value.clone())
            .map_err(|e| RpcErr::params(format!("Invalid params: {e}"))),
    }
}

/// Parameter `index` parsed as `T`.
pub(crate) fn typed_param<T: DeserializeOwned>(
    params: &[Value],
    index: usize,
    what: &str,
) -> Result<T, RpcErr> {
    serde_json::from_value(param(params, index, what)?.clone())
        .map_err(|e| RpcErr::params(format!("Invalid params: {what}: {e}")))
}

//! The PubSub websocket (JSON-RPC 2.0 over websocket, on the JSON-RPC port + 1), as validators
//! serve it: `accountSubscribe`, `programSubscribe`, `signatureSubscribe`, `logsSubscribe`,
//! `slotSubscribe` and their `…Unsubscribe`. Notifications come from the ledger's stream of
//! executed transactions ([`mupib_chain::ledger::EmbeddedLedger::subscribe`]), so a transaction
//! sent by any client or airdrop is seen; slots are polled every 400 ms while someone listens.
//!
//! Every executed transaction is final at once, so any commitment is notified at once, and a
//! `signatureSubscribe` for a transaction already executed is answered immediately (then, as on
//! validators, the subscription ends). Limits: [`crate::LocalnetOptions::max_websocket_connections`]
//! connections, [`crate::LocalnetOptions::max_subscriptions_per_connection`] subscriptions each.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use solana_account_decoder::UiAccountEncoding;
use solana_rpc_client_api::config::{
    RpcAccountInfoConfig, RpcProgramAccountsConfig, RpcSignatureSubscribeConfig,
    RpcTransactionLogsFilter,
};
use solana_rpc_client_api::filter::RpcFilterType;
use solana_rpc_client_api::response::{
    ProcessedSignatureResult, RpcKeyedAccount, RpcLogsResponse, RpcSignatureResult, SlotInfo,
};
use solana_sdk::account::Account;
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::Signature;
use solana_transaction_status_client_types::UiTransactionError;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use mupib_chain::ledger::{ExecutedTransaction, Ledger, LedgerUpdate};

use crate::encode::{additional_data, passes, ui_account};
use crate::methods::with_context;
use crate::rpc::{blocking, error_body, typed_config, RpcErr, METHOD_NOT_FOUND};
use crate::Shared;

/// How often slots are polled for `slotSubscribe` (the ledger clock's slot length).
const SLOT_POLL: Duration = Duration::from_millis(400);

/// What one subscription listens for.
enum Subscription {
    Account {
        address: Pubkey,
        config: RpcAccountInfoConfig,
    },
    Program {
        program: Pubkey,
        filters: Vec<RpcFilterType>,
        config: RpcAccountInfoConfig,
    },
    Signature(Signature),
    Logs(Option<Pubkey>),
    Slot,
}

impl Subscription {
    fn notification_method(&self) -> &'static str {
        match self {
            Subscription::Account { .. } => "accountNotification",
            Subscription::Program { .. } => "programNotification",
            Subscription::Signature(_) => "signatureNotification",
            Subscription::Logs(_) => "logsNotification",
            Subscription::Slot => "slotNotification",
        }
    }
}

/// Accepts websocket connections until `stop`.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(
        shared.options.max_websocket_connections.max(1),
    ));
    let connections = stop.clone();
    loop {
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            changed = stop.changed() => if changed.is_err() { break } else { continue },
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    tracing::warn!("websocket connection refused: too many connections");
                    continue;
                };
                tokio::spawn(connection(stream, Arc::clone(&shared), connections.clone(), permit));
            }
        }
    }
}

/// One client's subscriptions.
struct Connection {
    shared: Arc<Shared>,
    subscriptions: BTreeMap<u64, Subscription>,
    next_id: u64,
}

fn notification(method: &str, subscription: u64, result: Value) -> Message {
    let body = json!({
        "jsonrpc": "2.0",
        "method": method,
        "params": { "result": result, "subscription": subscription },
    });
    Message::Text(body.to_string().into())
}

fn answer(id: Value, result: Result<Value, RpcErr>) -> Message {
    let body = match result {
        Ok(value) => json!({ "jsonrpc": "2.0", "result": value, "id": id }),
        Err(error) => error_body(id, &error),
    };
    Message::Text(body.to_string().into())
}

fn address_of(value: Option<&Value>, what: &str) -> Result<Pubkey, RpcErr> {
    let text = value
        .and_then(Value::as_str)
        .ok_or_else(|| RpcErr::params(format!("Invalid params: missing {what}")))?;
    Pubkey::from_str(text).map_err(|e| {
        RpcErr::params(format!(
            "Invalid params: {text} is not a base58 address ({e})"
        ))
    })
}

impl Connection {
    /// Handles one request; returns the answer and any notification due at once.
    async fn request(&mut self, text: &str) -> Vec<Message> {
        let Ok(request) = serde_json::from_str::<Value>(text) else {
            return vec![answer(Value::Null, Err(RpcErr::new(-32700, "Parse error")))];
        };
        let Some(id) = request.get("id").cloned() else {
            // A notification (web3.js sends `ping` ones): no answer.
            return Vec::new();
        };
        let method = request
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let params = match request.get("params") {
            Some(Value::Array(params)) => params.clone(),
            _ => Vec::new(),
        };
        if let Some(kind) = method.strip_suffix("Unsubscribe") {
            let known = params
                .first()
                .and_then(Value::as_u64)
                .and_then(|sub| self.subscriptions.get(&sub).map(|s| (sub, s)))
                .filter(|(_, s)| s.notification_method().strip_suffix("Notification") == Some(kind))
                .map(|(sub, _)| sub);
            return vec![match known {
                Some(sub) => {
                    self.subscriptions.remove(&sub);
                    answer(id, Ok(Value::Bool(true)))
                }
                None => answer(id, Err(RpcErr::params("Invalid subscription id."))),
            }];
        }
        let subscription = match self.parse(&method, &params) {
            Ok(subscription) => subscription,
            Err(error) => return vec![answer(id, Err(error))],
        };
        if self.subscriptions.len() >= self.shared.options.max_subscriptions_per_connection {
            return vec![answer(
                id,
                Err(RpcErr::new(
                    crate::rpc::INTERNAL_ERROR,
                    "Internal error: too many subscriptions on this connection",
                )),
            )];
        }
        let sub = self.next_id;
        self.next_id = self.next_id.saturating_add(1);
        let mut out = vec![answer(id, Ok(Value::from(sub)))];
        if let Subscription::Signature(signature) = &subscription {
            let signature = *signature;
            if let Ok(Ok(Some(executed))) =
                blocking(&self.shared, move |l| l.transaction(&signature)).await
            {
                if let Ok(result) = signature_result(&executed) {
                    out.push(notification("signatureNotification", sub, result));
                }
                return out;
            }
        }
        self.subscriptions.insert(sub, subscription);
        out
    }

    fn parse(&self, method: &str, params: &[Value]) -> Result<Subscription, RpcErr> {
        match method {
            "accountSubscribe" => Ok(Subscription::Account {
                address: address_of(params.first(), "account")?,
                config: typed_config(params, 1)?,
            }),
            "programSubscribe" => {
                let program = address_of(params.first(), "program id")?;
                let config: RpcProgramAccountsConfig = typed_config(params, 1)?;
                let filters = config.filters.unwrap_or_default();
                for filter in &filters {
                    filter
                        .verify()
                        .map_err(|e| RpcErr::params(format!("Invalid params: filter: {e}")))?;
                }
                Ok(Subscription::Program {
                    program,
                    filters,
                    config: config.account_config,
                })
            }
            "signatureSubscribe" => {
                let text = params
                    .first()
                    .and_then(Value::as_str)
                    .ok_or_else(|| RpcErr::params("Invalid params: missing signature"))?;
                let signature = Signature::from_str(text).map_err(|e| {
                    RpcErr::params(format!("Invalid params: {text} is not a signature ({e})"))
                })?;
                let _config: RpcSignatureSubscribeConfig = typed_config(params, 1)?;
                Ok(Subscription::Signature(signature))
            }
            "logsSubscribe" => {
                let filter: RpcTransactionLogsFilter = params
                    .first()
                    .cloned()
                    .map(serde_json::from_value)
                    .transpose()
                    .map_err(|e| RpcErr::params(format!("Invalid params: {e}")))?
                    .ok_or_else(|| RpcErr::params("Invalid params: missing filter"))?;
                match filter {
                    RpcTransactionLogsFilter::All | RpcTransactionLogsFilter::AllWithVotes => {
                        Ok(Subscription::Logs(None))
                    }
                    RpcTransactionLogsFilter::Mentions(addresses) => {
                        if addresses.len() != 1 {
                            return Err(RpcErr::params(
                                "Invalid Request: Only 1 address supported",
                            ));
                        }
                        let address =
                            address_of(addresses.first().map(|a| json!(a)).as_ref(), "address")?;
                        Ok(Subscription::Logs(Some(address)))
                    }
                }
            }
            "slotSubscribe" => Ok(Subscription::Slot),
            other => Err(RpcErr::new(
                METHOD_NOT_FOUND,
                format!("Method not found: {other} is not served by mupib localnet's websocket"),
            )),
        }
    }

    fn wants_slots(&self) -> bool {
        self.subscriptions
            .values()
            .any(|s| matches!(s, Subscription::Slot))
    }

    /// The notifications an executed transaction causes.
    async fn on_update(&mut self, update: &LedgerUpdate) -> Vec<Message> {
        let executed = &update.transaction;
        let slot = executed.slot;
        let mut out = Vec::new();
        let mut finished = Vec::new();
        let mut accounts = Vec::new();
        for (sub, subscription) in &self.subscriptions {
            match subscription {
                Subscription::Signature(signature) if *signature == executed.signature => {
                    if let Ok(result) = signature_result(executed) {
                        out.push(notification("signatureNotification", *sub, result));
                    }
                    finished.push(*sub);
                }
                Subscription::Logs(filter) => {
                    let mentioned = filter
                        .is_none_or(|a| executed.transaction.message.account_keys.contains(&a));
                    if mentioned {
                        let logs = RpcLogsResponse {
                            signature: executed.signature.to_string(),
                            err: executed.err.clone().map(UiTransactionError::from),
                            logs: executed.logs.clone(),
                        };
                        if let Ok(result) = with_context(slot, logs) {
                            out.push(notification("logsNotification", *sub, result));
                        }
                    }
                }
                Subscription::Account { address, config } => {
                    if let Some((_, account)) = update.accounts.iter().find(|(k, _)| k == address) {
                        accounts.push((*sub, *address, account.clone(), config.clone(), None));
                    }
                }
                Subscription::Program {
                    program,
                    filters,
                    config,
                } => {
                    for (key, account) in &update.accounts {
                        if let Some(account) = account {
                            if account.owner == *program && passes(filters, account) {
                                accounts.push((
                                    *sub,
                                    *key,
                                    Some(account.clone()),
                                    config.clone(),
                                    Some(()),
                                ));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        for sub in finished {
            self.subscriptions.remove(&sub);
        }
        for (sub, address, account, config, keyed) in accounts {
            // A closed account is shown as validators show it: empty and owned by the system
            // program.
            let account = account.unwrap_or_else(|| Account {
                owner: solana_system_interface::program::ID,
                ..Account::default()
            });
            let encoding = config.encoding.unwrap_or(UiAccountEncoding::Binary);
            let lookup = account.clone();
            let additional = blocking(&self.shared, move |l| additional_data(l, &lookup, encoding))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
            let Ok(ui) = ui_account(&address, &account, encoding, additional, config.data_slice)
            else {
                continue;
            };
            let result = match keyed {
                Some(()) => with_context(
                    slot,
                    RpcKeyedAccount {
                        pubkey: address.to_string(),
                        account: ui,
                    },
                ),
                None => with_context(slot, ui),
            };
            if let Ok(result) = result {
                let method = if keyed.is_some() {
                    "programNotification"
                } else {
                    "accountNotification"
                };
                out.push(notification(method, sub, result));
            }
        }
        out
    }

    fn on_slot(&self, slot: u64) -> Vec<Message> {
        let info = SlotInfo {
            slot,
            parent: slot.saturating_sub(1),
            root: slot,
        };
        let Ok(result) = serde_json::to_value(info) else {
            return Vec::new();
        };
        self.subscriptions
            .iter()
            .filter(|(_, s)| matches!(s, Subscription::Slot))
            .map(|(sub, _)| notification("slotNotification", *sub, result.clone()))
            .collect()
    }
}

fn signature_result(executed: &ExecutedTransaction) -> Result<Value, RpcErr> {
    with_context(
        executed.slot,
        RpcSignatureResult::ProcessedSignature(ProcessedSignatureResult {
            err: executed.err.clone().map(UiTransactionError::from),
        }),
    )
}

async fn connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let Ok(socket) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut sink, mut source) = socket.split();
    let mut updates = shared.ledger.subscribe();
    let mut connection = Connection {
        shared,
        subscriptions: BTreeMap::new(),
        next_id: 0,
    };
    let mut ticker = tokio::time::interval(SLOT_POLL);
    let mut last_slot = None;
    loop {
        if *stop.borrow() {
            break;
        }
        let outgoing = tokio::select! {
            changed = stop.changed() => if changed.is_err() { break } else { continue },
            message = source.next() => match message {
                Some(Ok(Message::Text(text))) => connection.request(text.as_str()).await,
                Some(Ok(Message::Ping(payload))) => vec![Message::Pong(payload)],
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => Vec::new(),
            },
            update = updates.recv() => match update {
                Ok(update) => connection.on_update(&update).await,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "a websocket client fell behind; notifications were dropped");
                    Vec::new()
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = ticker.tick(), if connection.wants_slots() => {
                match blocking(&connection.shared, |l| l.clock()).await {
                    Ok(Ok(clock)) if last_slot != Some(clock.slot) => {
                        last_slot = Some(clock.slot);
                        connection.on_slot(clock.slot)
                    }
                    _ => Vec::new(),
                }
            }
        };
        for message in outgoing {
            if sink.send(message).await.is_err() {
                return;
            }
        }
    }
    let _ = sink.send(Message::Close(None)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_have_the_validators_envelope() {
        let Message::Text(text) = notification("slotNotification", 3, json!({ "slot": 1 })) else {
            panic!("text");
        };
        let value: Value = serde_json::from_str(text.as_str()).expect("json");
        assert_eq!(value["method"], "slotNotification");
        assert_eq!(value["params"]["subscription"], 3);
        assert_eq!(value["params"]["result"]["slot"], 1);
    }
}

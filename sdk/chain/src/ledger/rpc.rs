//! The JSON-RPC ledger: [`RpcLedger`] implements [`Ledger`] over the Solana JSON-RPC API with
//! `solana-rpc-client`'s blocking `RpcClient`, against any cluster URL (`solana-test-validator`,
//! devnet, or `mupib localnet`, which serves the embedded ledger over the same API).
//!
//! Behaviour, so that callers do not care which backend they hold:
//! - **send**: `sendTransaction` (base64, preflight at `confirmed` unless
//!   [`RpcOptions::skip_preflight`]), then `getSignatureStatuses` until the transaction is
//!   `confirmed` (or failed), then `getTransaction` for its log lines; the µPIB events are decoded
//!   from the logs exactly as the embedded ledger does (`Receipt::events`).
//! - **program errors**: a failed preflight simulation and a transaction that landed and failed
//!   both become [`LedgerError::Transaction`] with the custom error code and the logs, as in
//!   the embedded ledger.
//! - **blockhash validity**: `isBlockhashValid` at `finalized` commitment (the conservative
//!   answer: `false` means no fork can execute the transaction any more).
//! - **transport errors** (connection refused, timeouts, HTTP 5xx/429): every call is retried
//!   [`RpcOptions::attempts`] times with exponential backoff, then fails with
//!   [`LedgerError::Backend`]: `cluster at URL did not answer after N attempts: ...`.
//!   Resending a transaction is safe: the cluster deduplicates by signature.
//!
//! The client is blocking: do not call it from inside an async task (use
//! `tokio::task::spawn_blocking`).

use std::str::FromStr;
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use solana_rpc_client::rpc_client::RpcClient;
use solana_rpc_client_api::client_error::{Error as ClientError, ErrorKind as ClientErrorKind};
use solana_rpc_client_api::config::{
    CommitmentConfig, RpcSendTransactionConfig, UiTransactionEncoding,
};
use solana_rpc_client_api::request::{RpcError, RpcRequest, RpcResponseErrorData};
use solana_rpc_client_api::response::{
    OptionSerializer, Response, UiAccount, UiTransactionStatusMeta,
};
use solana_sdk::account::Account;
use solana_sdk::clock::Clock;
use solana_sdk::hash::Hash;
use solana_sdk::message::Message;
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::Signature;
use solana_sdk::transaction::{Transaction, TransactionError};

use super::{check_transaction_size, Ledger, LedgerError, Receipt};

/// JSON-RPC error code of a failed preflight simulation (`sendTransaction`).
pub const PREFLIGHT_FAILURE_CODE: i64 = -32002;

/// Options of an [`RpcLedger`].
#[derive(Debug, Clone)]
pub struct RpcOptions {
    /// Attempts per JSON-RPC call when the transport fails (at least 1).
    pub attempts: u32,
    /// Wait before the second attempt; doubles at every further attempt.
    pub initial_backoff: Duration,
    /// Upper bound of the wait between two attempts.
    pub max_backoff: Duration,
    /// HTTP timeout of one JSON-RPC request.
    pub request_timeout: Duration,
    /// How long to wait for a sent transaction to reach `confirmed` (a blockhash lives about
    /// 60–90 s on a real cluster).
    pub confirm_timeout: Duration,
    /// Interval between two status polls.
    pub poll_interval: Duration,
    /// How long [`Ledger::latest_blockhash`] waits for a blockhash different from the last one.
    pub blockhash_timeout: Duration,
    /// Skip the node's preflight simulation (a failing transaction then lands and pays its fee,
    /// as in the embedded ledger). Off by default: failures are reported without paying a fee.
    pub skip_preflight: bool,
}

impl Default for RpcOptions {
    fn default() -> Self {
        RpcOptions {
            attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
            confirm_timeout: Duration::from_secs(90),
            poll_interval: Duration::from_millis(200),
            blockhash_timeout: Duration::from_secs(10),
            skip_preflight: false,
        }
    }
}

/// A [`Ledger`] reached over the Solana JSON-RPC API; see the module documentation.
pub struct RpcLedger {
    client: RpcClient,
    url: String,
    options: RpcOptions,
    last_blockhash: Mutex<Hash>,
}

impl std::fmt::Debug for RpcLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcLedger")
            .field("url", &self.url)
            .field("options", &self.options)
            .finish()
    }
}

/// Whether a client error is the transport failing (worth retrying) rather than an answer.
fn is_transport_error(error: &ClientError) -> bool {
    match error.kind() {
        ClientErrorKind::Io(_) | ClientErrorKind::Middleware(_) => true,
        ClientErrorKind::Reqwest(e) => match e.status() {
            Some(status) => status.is_server_error() || status.as_u16() == 429,
            // No HTTP status: connect, timeout or body errors.
            None => true,
        },
        _ => false,
    }
}

impl RpcLedger {
    /// A ledger for the cluster at `url` (e.g. `http://127.0.0.1:8899`) with default options.
    /// Nothing is contacted until the first call.
    pub fn new(url: impl Into<String>) -> Self {
        Self::with_options(url, RpcOptions::default())
    }

    /// A ledger for the cluster at `url` with explicit options.
    pub fn with_options(url: impl Into<String>, options: RpcOptions) -> Self {
        let url = url.into();
        let options = RpcOptions {
            attempts: options.attempts.max(1),
            ..options
        };
        let client = RpcClient::new_with_timeout_and_commitment(
            url.clone(),
            options.request_timeout,
            CommitmentConfig::confirmed(),
        );
        RpcLedger {
            client,
            url,
            options,
            last_blockhash: Mutex::new(Hash::default()),
        }
    }

    /// The cluster URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The options in use.
    pub fn options(&self) -> &RpcOptions {
        &self.options
    }

    /// Runs `call` with bounded retries on transport errors; an answer (success or a JSON-RPC
    /// error) is returned at once.
    fn retry<T>(
        &self,
        what: &str,
        call: impl Fn(&RpcClient) -> Result<T, ClientError>,
    ) -> Result<T, RpcFailure> {
        let mut backoff = self.options.initial_backoff;
        let mut attempt = 1u32;
        loop {
            match call(&self.client) {
                Ok(value) => return Ok(value),
                Err(error) if is_transport_error(&error) => {
                    if attempt >= self.options.attempts {
                        return Err(RpcFailure::Backend(LedgerError::Backend(format!(
                            "cluster at {} did not answer after {} attempts: {what}: {error}; check the URL and that the cluster is running",
                            self.url, attempt
                        ))));
                    }
                    tracing::debug!(url = %self.url, attempt, %error, "{what}: transport error, retrying");
                    sleep(backoff);
                    backoff = backoff.saturating_mul(2).min(self.options.max_backoff);
                    attempt = attempt.saturating_add(1);
                }
                Err(error) => return Err(RpcFailure::Answer(error)),
            }
        }
    }

    /// [`Self::retry`] with any error turned into a [`LedgerError`].
    fn call<T>(
        &self,
        what: &str,
        call: impl Fn(&RpcClient) -> Result<T, ClientError>,
    ) -> Result<T, LedgerError> {
        self.retry(what, call)
            .map_err(|failure| failure.into_ledger_error(&self.url, what))
    }

    fn commitment() -> Value {
        json!({ "commitment": "confirmed" })
    }

    /// Polls the transaction's status until it is `confirmed` or failed.
    fn await_confirmation(
        &self,
        signature: &Signature,
    ) -> Result<Option<TransactionError>, LedgerError> {
        let deadline = Instant::now() + self.options.confirm_timeout;
        loop {
            let statuses = self.call("getSignatureStatuses", |c| {
                c.get_signature_statuses(&[*signature])
            })?;
            if let Some(Some(status)) = statuses.value.first() {
                if let Some(error) = &status.err {
                    return Ok(Some(error.clone()));
                }
                if status.satisfies_commitment(CommitmentConfig::confirmed()) {
                    return Ok(None);
                }
            }
            if Instant::now() >= deadline {
                return Err(LedgerError::Backend(format!(
                    "transaction {signature} was not confirmed by the cluster at {} within {} s; it may still land: check its status before sending it again",
                    self.url,
                    self.options.confirm_timeout.as_secs()
                )));
            }
            sleep(self.options.poll_interval);
        }
    }

    /// The log lines of a confirmed transaction (`getTransaction`). Polls while the node does not
    /// have it yet; an empty list (with a warning) if it never returns it in time.
    fn transaction_logs(&self, signature: &Signature) -> Result<Vec<String>, LedgerError> {
        let deadline = Instant::now() + self.options.confirm_timeout;
        let params = json!([
            signature.to_string(),
            { "encoding": "json", "commitment": "confirmed", "maxSupportedTransactionVersion": 0 }
        ]);
        loop {
            let found: Option<Value> = self.call("getTransaction", |c| {
                c.send(RpcRequest::GetTransaction, params.clone())
            })?;
            if let Some(mut found) = found {
                let meta = found
                    .get_mut("meta")
                    .map(Value::take)
                    .unwrap_or(Value::Null);
                if meta.is_null() {
                    return Ok(Vec::new());
                }
                let meta: UiTransactionStatusMeta = serde_json::from_value(meta).map_err(|e| {
                    LedgerError::Backend(format!(
                        "cluster at {} returned an unreadable transaction meta for {signature}: {e}",
                        self.url
                    ))
                })?;
                return Ok(match meta.log_messages {
                    OptionSerializer::Some(logs) => logs,
                    _ => Vec::new(),
                });
            }
            if Instant::now() >= deadline {
                tracing::warn!(url = %self.url, %signature, "the cluster did not return the transaction's logs; the receipt has none");
                return Ok(Vec::new());
            }
            sleep(self.options.poll_interval);
        }
    }

    fn send_once(
        &self,
        transaction: &Transaction,
        signature: Signature,
    ) -> Result<(), LedgerError> {
        let config = RpcSendTransactionConfig {
            skip_preflight: self.options.skip_preflight,
            preflight_commitment: Some(CommitmentConfig::confirmed().commitment),
            encoding: Some(UiTransactionEncoding::Base64),
            max_retries: None,
            min_context_slot: None,
        };
        match self.retry("sendTransaction", |c| {
            c.send_transaction_with_config(transaction, config)
        }) {
            Ok(_) => Ok(()),
            Err(RpcFailure::Backend(error)) => Err(error),
            Err(RpcFailure::Answer(error)) => {
                if let ClientErrorKind::RpcError(RpcError::RpcResponseError {
                    code: PREFLIGHT_FAILURE_CODE,
                    data: RpcResponseErrorData::SendTransactionPreflightFailure(simulation),
                    ..
                }) = error.kind()
                {
                    if let Some(err) = &simulation.err {
                        let err = TransactionError::from(err.clone());
                        // A resend after a lost answer: the first copy is already in.
                        if err == TransactionError::AlreadyProcessed {
                            return Ok(());
                        }
                        let logs = simulation.logs.clone().unwrap_or_default();
                        return Err(LedgerError::from_transaction_error(signature, err, logs));
                    }
                }
                if let Some(err) = error.get_transaction_error() {
                    return Err(LedgerError::from_transaction_error(
                        signature,
                        err,
                        Vec::new(),
                    ));
                }
                Err(RpcFailure::Answer(error).into_ledger_error(&self.url, "sendTransaction"))
            }
        }
    }

    /// Waits for `signature` to be confirmed and builds its receipt (or its error).
    fn confirm(&self, signature: Signature) -> Result<Receipt, LedgerError> {
        let failure = self.await_confirmation(&signature)?;
        let logs = self.transaction_logs(&signature)?;
        match failure {
            Some(error) => Err(LedgerError::from_transaction_error(signature, error, logs)),
            None => Ok(Receipt { signature, logs }),
        }
    }
}

/// A failed JSON-RPC call: the transport gave up, or the node answered with an error.
enum RpcFailure {
    Backend(LedgerError),
    Answer(ClientError),
}

impl RpcFailure {
    fn into_ledger_error(self, url: &str, what: &str) -> LedgerError {
        match self {
            RpcFailure::Backend(error) => error,
            RpcFailure::Answer(error) => {
                LedgerError::Backend(format!("cluster at {url} refused {what}: {error}"))
            }
        }
    }
}

impl Ledger for RpcLedger {
    fn send_transaction(&self, transaction: &Transaction) -> Result<Receipt, LedgerError> {
        check_transaction_size(transaction)?;
        let signature = transaction.signatures.first().copied().ok_or_else(|| {
            LedgerError::Signing("the transaction carries no signature".to_string())
        })?;
        if signature == Signature::default() {
            return Err(LedgerError::Signing(
                "the transaction is not signed".to_string(),
            ));
        }
        self.send_once(transaction, signature)?;
        self.confirm(signature)
    }

    fn get_account(&self, address: &Pubkey) -> Result<Option<Account>, LedgerError> {
        let params =
            json!([address.to_string(), { "encoding": "base64", "commitment": "confirmed" }]);
        let response: Response<Option<UiAccount>> = self.call("getAccountInfo", |c| {
            c.send(RpcRequest::GetAccountInfo, params.clone())
        })?;
        match response.value {
            None => Ok(None),
            Some(ui) => ui.decode::<Account>().map(Some).ok_or_else(|| {
                LedgerError::Backend(format!(
                    "cluster at {} returned account {address} in an encoding that does not decode",
                    self.url
                ))
            }),
        }
    }

    fn latest_blockhash(&self) -> Result<Hash, LedgerError> {
        let deadline = Instant::now() + self.options.blockhash_timeout;
        loop {
            let (hash, _) = self.call("getLatestBlockhash", |c| {
                c.get_latest_blockhash_with_commitment(CommitmentConfig::confirmed())
            })?;
            {
                let mut last = self.last_blockhash.lock().map_err(|_| {
                    LedgerError::Poisoned(
                        "a thread panicked while using the RPC ledger".to_string(),
                    )
                })?;
                if hash != *last {
                    *last = hash;
                    return Ok(hash);
                }
            }
            if Instant::now() >= deadline {
                return Err(LedgerError::Backend(format!(
                    "cluster at {} produced no new blockhash within {} s; is it producing blocks?",
                    self.url,
                    self.options.blockhash_timeout.as_secs()
                )));
            }
            sleep(self.options.poll_interval);
        }
    }

    /// `isBlockhashValid` at `finalized` commitment: every bank that can still be built descends
    /// from the finalized one and sees the blockhash as older still, so `false` there means no
    /// fork can ever execute a transaction signed with it (`confirmed` could say `false` while
    /// a fork off an older bank still might).
    fn is_blockhash_valid(&self, blockhash: &Hash) -> Result<bool, LedgerError> {
        self.call("isBlockhashValid", |c| {
            c.is_blockhash_valid(blockhash, CommitmentConfig::finalized())
        })
    }

    fn clock(&self) -> Result<Clock, LedgerError> {
        let account = self
            .get_account(&solana_sdk::sysvar::clock::ID)?
            .ok_or_else(|| {
                LedgerError::Backend(format!("cluster at {} has no Clock sysvar", self.url))
            })?;
        bincode::deserialize(&account.data).map_err(|e| {
            LedgerError::Backend(format!(
                "cluster at {} returned an unreadable Clock sysvar: {e}",
                self.url
            ))
        })
    }

    fn minimum_balance_for_rent_exemption(&self, data_len: usize) -> Result<u64, LedgerError> {
        self.call("getMinimumBalanceForRentExemption", |c| {
            c.get_minimum_balance_for_rent_exemption(data_len)
        })
    }

    fn fee_for_signatures(&self, signatures: u64) -> Result<u64, LedgerError> {
        // The fee of a one-signature message, times the count (the base fee is per signature).
        let blockhash = self.latest_blockhash()?;
        let payer = Pubkey::new_unique();
        let message = Message::new_with_blockhash(&[], Some(&payer), &blockhash);
        let per_signature = self.call("getFeeForMessage", |c| c.get_fee_for_message(&message))?;
        per_signature
            .checked_mul(signatures)
            .ok_or(LedgerError::Overflow("fee"))
    }

    fn airdrop(&self, to: &Pubkey, lamports: u64) -> Result<Signature, LedgerError> {
        let params = json!([to.to_string(), lamports, Self::commitment()]);
        let signature: String = self.call("requestAirdrop", |c| {
            c.send(RpcRequest::RequestAirdrop, params.clone())
        })?;
        let signature = Signature::from_str(&signature).map_err(|e| {
            LedgerError::Backend(format!(
                "cluster at {} returned an invalid airdrop signature: {e}",
                self.url
            ))
        })?;
        self.confirm(signature)?;
        Ok(signature)
    }

    fn balance(&self, address: &Pubkey) -> Result<u64, LedgerError> {
        let response = self.call("getBalance", |c| {
            c.get_balance_with_commitment(address, CommitmentConfig::confirmed())
        })?;
        Ok(response.value)
    }
}

/// Base64 of a transaction as `sendTransaction` carries it (tests and tools).
pub fn encode_transaction(transaction: &Transaction) -> Result<String, LedgerError> {
    let bytes = bincode::serialize(transaction)
        .map_err(|e| LedgerError::Backend(format!("cannot serialize the transaction: {e}")))?;
    Ok(STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_at_least_one() {
        let ledger = RpcLedger::with_options(
            "http://127.0.0.1:9",
            RpcOptions {
                attempts: 0,
                ..RpcOptions::default()
            },
        );
        assert_eq!(ledger.options().attempts, 1);
        assert_eq!(ledger.url(), "http://127.0.0.1:9");
    }
}

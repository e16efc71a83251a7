//! The JSON-RPC methods the localnet serves (the list and the differences from a validator are
//! in the crate documentation): slots and blockhashes, `sendTransaction` with a validator's size
//! limits, signature statuses and transactions from the bounded history, accounts, balances,
//! rent, fees and airdrops, each answered from the embedded ledger.

use std::str::FromStr;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bincode::Options as _;
use serde_json::{json, Value};
use solana_rpc_client_api::response::{
    OptionSerializer, Response, RpcResponseContext, UiAccount, UiAccountData, UiAccountEncoding,
    UiTransactionError, UiTransactionStatusMeta,
};
use solana_sdk::account::Account;
use solana_sdk::hash::Hash;
use solana_sdk::message::{Message, VersionedMessage};
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::Signature;
use solana_sdk::transaction::{Transaction, TransactionError};

use mupib_chain::ledger::{EmbeddedLedger, Ledger, LedgerError, PACKET_DATA_SIZE};

use crate::rpc::{
    blocking, config_param, ledger_call, ledger_error, param, pubkey_param, string_param,
    transaction_failed, RpcErr, INTERNAL_ERROR, METHOD_NOT_FOUND,
};
use crate::{Executed, Shared, REPORTED_SOLANA_CORE_VERSION};

/// Largest base58 / base64 text of a 1232-byte transaction (what a validator accepts).
const MAX_BASE58_TRANSACTION: usize = 1683;
const MAX_BASE64_TRANSACTION: usize = 1644;
/// Blocks a handed-out blockhash stays valid for (`lastValidBlockHeight` = slot + this).
const BLOCKHASH_VALIDITY_SLOTS: u64 = 150;
/// Largest account a validator serves (10 MiB).
const MAX_ACCOUNT_DATA_LEN: usize = 10 * 1024 * 1024;

pub(crate) async fn dispatch(
    shared: &Arc<Shared>,
    method: &str,
    params: &[Value],
) -> Result<Value, RpcErr> {
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

/// `isBlockhashValid`: the embedded bank's own answer (its blockhash queue and
/// `MAX_PROCESSING_AGE`), whoever handed the blockhash out; the commitment is ignored (every
/// executed transaction is final at once).
async fn is_blockhash_valid(shared: &Arc<Shared>, params: &[Value]) -> Result<Value, RpcErr> {
    let text = string_param(params, 0, "blockhash")?;
    let hash = Hash::from_str(text)
        .map_err(|e| RpcErr::params(format!("Invalid params: {text} is not a blockhash ({e})")))?;
    let (valid, slot) = ledger_call(shared, move |l| {
        Ok((l.is_blockhash_valid(&hash)?, l.clock()?.slot))
    })
    .await?;
    let response = Response {
        context: RpcResponseContext::new(slot),
        value: valid,
    };
    serde_json::to_value(response)
        .map_err(|e| RpcErr::new(INTERNAL_ERROR, format!("cannot encode the answer: {e}")))
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
    use crate::rpc::INVALID_PARAMS;

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

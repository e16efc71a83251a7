//! Transaction methods: `sendTransaction` (with a real preflight simulation),
//! `simulateTransaction`, signature statuses, and the history the ledger keeps (transactions,
//! signatures of an address, blocks).

use std::str::FromStr;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bincode::Options as _;
use serde_json::Value;
use solana_rpc_client_api::config::{
    RpcBlockConfig, RpcContextConfig, RpcEncodingConfigWrapper, RpcSendTransactionConfig,
    RpcSignatureStatusConfig, RpcSignaturesForAddressConfig, RpcSimulateTransactionConfig,
    RpcTransactionConfig,
};
use solana_rpc_client_api::custom_error::RpcCustomError;
use solana_rpc_client_api::response::{
    RpcBlockhash, RpcConfirmedTransactionStatusWithSignature, RpcSimulateTransactionResult,
};
use solana_sdk::signature::Signature;
use solana_sdk::transaction::{Transaction, TransactionError};
use solana_transaction_status_client_types::{
    EncodedConfirmedTransactionWithStatusMeta, TransactionConfirmationStatus, TransactionDetails,
    TransactionStatus, UiConfirmedBlock, UiTransactionEncoding, UiTransactionError,
};

use mupib_chain::ledger::{
    ExecutedTransaction, Ledger, LedgerError, SimulateOptions, PACKET_DATA_SIZE,
};

use super::{check_min_context_slot, current_slot, with_context};
use crate::encode::transaction_with_meta;
use crate::rpc::{
    ledger_call, omit_unmetered_units, param, preflight_failure, simulation_result, string_param,
    to_json, typed_config, typed_param, RpcErr,
};
use crate::Shared;

/// Largest base58 / base64 text of a 1232-byte transaction (what a validator accepts).
const MAX_BASE58_TRANSACTION: usize = 1683;
const MAX_BASE64_TRANSACTION: usize = 1644;
/// Blocks a blockhash stays valid for.
const BLOCKHASH_VALIDITY_BLOCKS: u64 = 150;
/// Most signatures `getSignaturesForAddress` returns at once, as validators.
const MAX_SIGNATURES_FOR_ADDRESS: usize = 1000;
/// Widest slot range of `getBlocks`, as validators.
const MAX_BLOCK_RANGE: u64 = 500_000;

/// Decodes a transaction payload as a legacy transaction, with a validator's size limits.
pub(crate) fn decode_transaction(
    encoded: &str,
    encoding: UiTransactionEncoding,
) -> Result<Transaction, RpcErr> {
    let bytes = match encoding {
        UiTransactionEncoding::Base58 => {
            if encoded.len() > MAX_BASE58_TRANSACTION {
                return Err(RpcErr::params(format!(
                    "base58 encoded solana_transaction::versioned::VersionedTransaction too large: {} bytes (max: encoded/raw {MAX_BASE58_TRANSACTION}/{PACKET_DATA_SIZE})",
                    encoded.len()
                )));
            }
            bs58::decode(encoded)
                .into_vec()
                .map_err(|e| RpcErr::params(format!("invalid base58 encoding: {e:?}")))?
        }
        UiTransactionEncoding::Base64 => {
            if encoded.len() > MAX_BASE64_TRANSACTION {
                return Err(RpcErr::params(format!(
                    "base64 encoded solana_transaction::versioned::VersionedTransaction too large: {} bytes (max: encoded/raw {MAX_BASE64_TRANSACTION}/{PACKET_DATA_SIZE})",
                    encoded.len()
                )));
            }
            STANDARD
                .decode(encoded)
                .map_err(|e| RpcErr::params(format!("invalid base64 encoding: {e:?}")))?
        }
        other => {
            return Err(RpcErr::params(format!(
                "unsupported encoding: {other}. Supported encodings: base58, base64"
            )));
        }
    };
    if bytes.len() > PACKET_DATA_SIZE {
        return Err(RpcErr::params(format!(
            "decoded solana_transaction::versioned::VersionedTransaction too large: {} bytes (max: {PACKET_DATA_SIZE} bytes)",
            bytes.len()
        )));
    }
    let limit = u64::try_from(PACKET_DATA_SIZE).map_err(|_| RpcErr::internal("packet size"))?;
    let transaction: Transaction = bincode::DefaultOptions::new()
        .with_limit(limit)
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .deserialize(&bytes)
        .map_err(|e| {
            RpcErr::params(format!(
                "failed to deserialize a legacy transaction ({e}); mupib localnet serves legacy transactions only"
            ))
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

/// The simulation result a validator reports, from the ledger's simulation.
fn simulation_value(
    simulation: &mupib_chain::ledger::Simulation,
    slot: u64,
) -> RpcSimulateTransactionResult {
    let mut result = simulation_result(simulation.err.as_ref(), &simulation.logs);
    result.return_data = simulation
        .return_data
        .as_ref()
        .map(|(program_id, data)| crate::encode::return_data(program_id, data));
    result.replacement_blockhash = simulation.replacement_blockhash.map(|hash| RpcBlockhash {
        blockhash: hash.to_string(),
        last_valid_block_height: slot.saturating_add(BLOCKHASH_VALIDITY_BLOCKS),
    });
    result
}

/// `sendTransaction`: preflight (signatures, then a simulation at the current state: a failing
/// transaction is refused with -32002 and pays nothing), then execution. A transaction the
/// ledger already executed is never run again.
pub(super) async fn send(shared: &Arc<Shared>, params: &[Value]) -> Result<Value, RpcErr> {
    let encoded = string_param(params, 0, "transaction")?;
    let config: RpcSendTransactionConfig = typed_config(params, 1)?;
    let transaction = decode_transaction(
        encoded,
        config.encoding.unwrap_or(UiTransactionEncoding::Base58),
    )?;
    let signature = transaction.signatures[0];
    let skip_preflight = config.skip_preflight;
    let sent = transaction.clone();
    let (known, slot) = ledger_call(shared, move |l| {
        Ok((l.transaction(&signature)?.is_some(), l.clock()?.slot))
    })
    .await?;
    check_min_context_slot(slot, config.min_context_slot)?;
    if known {
        // As a validator whose status cache holds it: preflight says so, or the resend is
        // dropped and its signature returned.
        if skip_preflight {
            return Ok(Value::from(signature.to_string()));
        }
        return Err(preflight_failure(simulation_result(
            Some(&TransactionError::AlreadyProcessed),
            &[],
        )));
    }
    if transaction.verify().is_err() {
        return Err(RpcCustomError::TransactionSignatureVerificationFailure.into());
    }
    if !skip_preflight {
        let simulated = transaction.clone();
        let simulation = ledger_call(shared, move |l| {
            l.simulate(&simulated, SimulateOptions::default())
        })
        .await?;
        if simulation.err.is_some() {
            return Err(preflight_failure(simulation_value(&simulation, slot)));
        }
    }
    let outcome = ledger_call(shared, move |l| {
        let result = l.send_transaction(&sent);
        let executed = l.transaction(&signature)?.is_some();
        Ok((result, executed))
    })
    .await?;
    match outcome {
        (Ok(_), _) => Ok(Value::from(signature.to_string())),
        // It landed and failed (its status says how): the signature, as a validator answers.
        (Err(LedgerError::Transaction { .. }), true) => Ok(Value::from(signature.to_string())),
        (Err(LedgerError::Transaction { error, logs, .. }), false) => {
            if error == TransactionError::SignatureFailure {
                return Err(RpcCustomError::TransactionSignatureVerificationFailure.into());
            }
            Err(preflight_failure(simulation_result(Some(&error), &logs)))
        }
        (Err(other), _) => Err(crate::rpc::ledger_error(other)),
    }
}

/// `simulateTransaction`: runs the transaction on the current state without committing it.
/// `unitsConsumed` is left out: the natively run program is not metered.
pub(super) async fn simulate(shared: &Arc<Shared>, params: &[Value]) -> Result<Value, RpcErr> {
    let encoded = string_param(params, 0, "transaction")?;
    let config: RpcSimulateTransactionConfig = typed_config(params, 1)?;
    if config.sig_verify && config.replace_recent_blockhash {
        return Err(RpcErr::params(
            "sigVerify may not be used with replaceRecentBlockhash",
        ));
    }
    if config.accounts.is_some() {
        return Err(RpcErr::params(
            "Invalid params: mupib localnet cannot return post-simulation accounts (the embedded bank does not expose them); leave out \"accounts\"",
        ));
    }
    let transaction = decode_transaction(
        encoded,
        config.encoding.unwrap_or(UiTransactionEncoding::Base58),
    )?;
    if config.sig_verify && transaction.verify().is_err() {
        return Err(RpcCustomError::TransactionSignatureVerificationFailure.into());
    }
    let options = SimulateOptions {
        sig_verify: false,
        replace_recent_blockhash: config.replace_recent_blockhash,
    };
    let (simulation, slot) = ledger_call(shared, move |l| {
        Ok((l.simulate(&transaction, options)?, l.clock()?.slot))
    })
    .await?;
    check_min_context_slot(slot, config.min_context_slot)?;
    let mut answer = with_context(slot, simulation_value(&simulation, slot))?;
    if let Some(value) = answer.get_mut("value") {
        omit_unmetered_units(value);
    }
    Ok(answer)
}

fn signature_of(text: &str) -> Result<Signature, RpcErr> {
    Signature::from_str(text)
        .map_err(|e| RpcErr::params(format!("Invalid params: {text} is not a signature ({e})")))
}

fn status_of(executed: &ExecutedTransaction) -> TransactionStatus {
    TransactionStatus {
        slot: executed.slot,
        confirmations: None,
        status: match &executed.err {
            None => Ok(()),
            Some(err) => Err(err.clone()),
        },
        err: executed.err.clone(),
        confirmation_status: Some(TransactionConfirmationStatus::Finalized),
    }
}

pub(super) async fn signature_statuses(
    shared: &Arc<Shared>,
    params: &[Value],
) -> Result<Value, RpcErr> {
    let texts: Vec<String> = typed_param(params, 0, "signatures")?;
    if texts.len() > shared.options.max_keys_per_request {
        return Err(RpcErr::params(format!(
            "Invalid params: {} signatures, at most {} allowed",
            texts.len(),
            shared.options.max_keys_per_request
        )));
    }
    let signatures: Vec<Signature> = texts
        .iter()
        .map(|t| signature_of(t))
        .collect::<Result<_, _>>()?;
    let _config: Option<RpcSignatureStatusConfig> = match params.get(1) {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            serde_json::from_value(value.clone())
                .map_err(|e| RpcErr::params(format!("Invalid params: {e}")))?,
        ),
    };
    let (statuses, slot) = ledger_call(shared, move |l| {
        let statuses = signatures
            .iter()
            .map(|s| Ok(l.transaction(s)?.map(|t| status_of(&t))))
            .collect::<Result<Vec<_>, LedgerError>>()?;
        Ok((statuses, l.clock()?.slot))
    })
    .await?;
    with_context(slot, statuses)
}

/// The config of `getTransaction` / `getBlock`: an object, or the legacy bare encoding.
fn encoding_config<T>(params: &[Value], index: usize) -> Result<T, RpcErr>
where
    T: serde::de::DeserializeOwned + Default + Copy + solana_rpc_client_api::config::EncodingConfig,
{
    match params.get(index) {
        None | Some(Value::Null) => Ok(T::default()),
        Some(value) => {
            let wrapper: RpcEncodingConfigWrapper<T> = serde_json::from_value(value.clone())
                .map_err(|e| RpcErr::params(format!("Invalid params: {e}")))?;
            Ok(wrapper.convert_to_current())
        }
    }
}

pub(super) async fn get_transaction(
    shared: &Arc<Shared>,
    params: &[Value],
) -> Result<Value, RpcErr> {
    let signature = signature_of(string_param(params, 0, "signature")?)?;
    let config: RpcTransactionConfig = encoding_config(params, 1)?;
    let encoding = config.encoding.unwrap_or(UiTransactionEncoding::Json);
    let Some(executed) = ledger_call(shared, move |l| l.transaction(&signature)).await? else {
        return Ok(Value::Null);
    };
    to_json(&EncodedConfirmedTransactionWithStatusMeta {
        slot: executed.slot,
        transaction: transaction_with_meta(
            &executed,
            encoding,
            config.max_supported_transaction_version,
        )?,
        block_time: Some(executed.block_time),
    })
}

pub(super) async fn signatures_for_address(
    shared: &Arc<Shared>,
    params: &[Value],
) -> Result<Value, RpcErr> {
    let address = crate::rpc::pubkey_param(params, 0)?;
    let config: RpcSignaturesForAddressConfig = typed_config(params, 1)?;
    let limit = config.limit.unwrap_or(MAX_SIGNATURES_FOR_ADDRESS);
    if limit == 0 || limit > MAX_SIGNATURES_FOR_ADDRESS {
        return Err(RpcErr::params(format!(
            "Invalid limit; max {MAX_SIGNATURES_FOR_ADDRESS}"
        )));
    }
    let before = config.before.as_deref().map(signature_of).transpose()?;
    let until = config.until.as_deref().map(signature_of).transpose()?;
    let (mentioning, slot) = ledger_call(shared, move |l| {
        let mentioning = l.transactions(
            |t| t.transaction.message.account_keys.contains(&address),
            usize::MAX,
        )?;
        Ok((mentioning, l.clock()?.slot))
    })
    .await?;
    check_min_context_slot(slot, config.min_context_slot)?;
    let mut started = before.is_none();
    let mut out = Vec::new();
    for executed in mentioning {
        if !started {
            started = Some(executed.signature) == before;
            continue;
        }
        if Some(executed.signature) == until || out.len() >= limit {
            break;
        }
        out.push(RpcConfirmedTransactionStatusWithSignature {
            signature: executed.signature.to_string(),
            slot: executed.slot,
            err: executed.err.clone().map(UiTransactionError::from),
            memo: None,
            block_time: Some(executed.block_time),
            confirmation_status: Some(TransactionConfirmationStatus::Finalized),
        });
    }
    to_json(&out)
}

fn slot_param(params: &[Value], index: usize) -> Result<u64, RpcErr> {
    param(params, index, "slot")?
        .as_u64()
        .ok_or_else(|| RpcErr::params("Invalid params: slot must be an unsigned integer"))
}

/// The transactions of block `slot` (oldest first) and the block before it, if any.
type BlockParts = (
    Vec<Arc<ExecutedTransaction>>,
    Option<Arc<ExecutedTransaction>>,
    u64,
);

async fn block_parts(shared: &Arc<Shared>, slot: u64) -> Result<BlockParts, RpcErr> {
    ledger_call(shared, move |l| {
        let mut in_block = l.transactions(|t| t.slot == slot, usize::MAX)?;
        in_block.reverse();
        let previous = l.transactions(|t| t.slot < slot, 1)?.pop();
        Ok((in_block, previous, l.clock()?.slot))
    })
    .await
}

fn missing_block(slot: u64, current: u64) -> RpcErr {
    if slot > current {
        RpcCustomError::BlockNotAvailable { slot }.into()
    } else {
        RpcCustomError::SlotSkipped { slot }.into()
    }
}

pub(super) async fn block(shared: &Arc<Shared>, params: &[Value]) -> Result<Value, RpcErr> {
    let slot = slot_param(params, 0)?;
    let config: RpcBlockConfig = encoding_config(params, 1)?;
    let (in_block, previous, current) = block_parts(shared, slot).await?;
    let Some(last) = in_block.last() else {
        return Err(missing_block(slot, current));
    };
    let encoding = config.encoding.unwrap_or(UiTransactionEncoding::Json);
    let details = config
        .transaction_details
        .unwrap_or(TransactionDetails::Full);
    let (transactions, signatures) = match details {
        TransactionDetails::Full => (
            Some(
                in_block
                    .iter()
                    .map(|t| {
                        transaction_with_meta(t, encoding, config.max_supported_transaction_version)
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None,
        ),
        TransactionDetails::Signatures => (
            None,
            Some(in_block.iter().map(|t| t.signature.to_string()).collect()),
        ),
        TransactionDetails::None => (None, None),
        TransactionDetails::Accounts => {
            return Err(RpcErr::params(
                "Invalid params: transactionDetails \"accounts\" is not served by mupib localnet; use full, signatures or none",
            ));
        }
    };
    let genesis = shared.ledger.genesis_hash();
    let block = UiConfirmedBlock {
        previous_blockhash: previous
            .as_ref()
            .map(|p| p.blockhash)
            .unwrap_or(genesis)
            .to_string(),
        blockhash: last.blockhash.to_string(),
        parent_slot: previous.as_ref().map(|p| p.slot).unwrap_or(0),
        transactions,
        signatures,
        rewards: config.rewards.unwrap_or(true).then(Vec::new),
        num_reward_partitions: None,
        block_time: Some(last.block_time),
        block_height: Some(slot),
    };
    to_json(&block)
}

/// `getBlocks` (`start`, optional `end`) and `getBlocksWithLimit` (`start`, `limit`): the slots
/// of remembered blocks.
pub(super) async fn blocks(
    shared: &Arc<Shared>,
    params: &[Value],
    with_limit: bool,
) -> Result<Value, RpcErr> {
    let start = slot_param(params, 0)?;
    let current = current_slot(shared).await?;
    let (end, limit) = if with_limit {
        let limit = slot_param(params, 1)?;
        (current, usize::try_from(limit).unwrap_or(usize::MAX))
    } else {
        let end = params.get(1).and_then(Value::as_u64).unwrap_or(current);
        (end.min(current), usize::MAX)
    };
    if end.saturating_sub(start) > MAX_BLOCK_RANGE && !with_limit {
        return Err(RpcErr::params(format!(
            "Slot range too large; max {MAX_BLOCK_RANGE}"
        )));
    }
    let _config: RpcContextConfig = RpcContextConfig::default();
    let mut slots = ledger_call(shared, move |l| {
        Ok(
            l.transactions(|t| t.slot >= start && t.slot <= end, usize::MAX)?
                .iter()
                .map(|t| t.slot)
                .collect::<Vec<u64>>(),
        )
    })
    .await?;
    slots.sort_unstable();
    slots.dedup();
    slots.truncate(limit);
    to_json(&slots)
}

pub(super) async fn block_time(shared: &Arc<Shared>, params: &[Value]) -> Result<Value, RpcErr> {
    let slot = slot_param(params, 0)?;
    let (in_block, _, current) = block_parts(shared, slot).await?;
    match in_block.last() {
        Some(last) => Ok(Value::from(last.block_time)),
        None => Err(missing_block(slot, current)),
    }
}

pub(super) async fn first_available_block(shared: &Arc<Shared>) -> Result<Value, RpcErr> {
    let first = ledger_call(shared, |l| l.first_remembered_slot()).await?;
    Ok(Value::from(first.unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::INVALID_PARAMS;

    #[test]
    fn oversized_and_garbage_transactions_are_refused_before_the_ledger() {
        let too_long = "A".repeat(MAX_BASE64_TRANSACTION + 4);
        let base64 = UiTransactionEncoding::Base64;
        assert_eq!(
            decode_transaction(&too_long, base64).unwrap_err().code,
            INVALID_PARAMS
        );
        assert_eq!(
            decode_transaction("!!!", base64).unwrap_err().code,
            INVALID_PARAMS
        );
        assert_eq!(
            decode_transaction("AAAA", base64).unwrap_err().code,
            INVALID_PARAMS
        );
        assert_eq!(
            decode_transaction("AAAA", UiTransactionEncoding::Json)
                .unwrap_err()
                .code,
            INVALID_PARAMS
        );
    }
}

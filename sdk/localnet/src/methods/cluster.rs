//! Cluster methods: version, identity, slots and epochs, blockhashes, fees, rent and airdrops.

use std::str::FromStr;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bincode::Options as _;
use serde_json::Value;
use solana_rpc_client_api::config::{RpcContextConfig, RpcEpochConfig, RpcRequestAirdropConfig};
use solana_rpc_client_api::response::{
    RpcBlockhash, RpcIdentity, RpcPrioritizationFee, RpcVersionInfo,
};
use solana_sdk::epoch_info::EpochInfo;
use solana_sdk::hash::Hash;
use solana_sdk::message::Message;
use solana_sdk::pubkey::Pubkey;

use mupib_chain::ledger::{Ledger, PACKET_DATA_SIZE};

use super::{check_min_context_slot, current_slot, with_context};
use crate::rpc::{ledger_call, param, pubkey_param, string_param, to_json, typed_config, RpcErr};
use crate::Shared;

/// Blocks a handed-out blockhash stays valid for (`lastValidBlockHeight` = height + this).
const BLOCKHASH_VALIDITY_BLOCKS: u64 = 150;
/// Largest account a validator serves (10 MiB).
const MAX_ACCOUNT_DATA_LEN: usize = 10 * 1024 * 1024;
/// Largest base64 text of a 1232-byte message.
const MAX_BASE64_MESSAGE: usize = 1644;
/// Slots `getRecentPrioritizationFees` looks back, as validators do.
const PRIORITIZATION_FEE_SLOTS: u64 = 150;

/// `getVersion`: the Solana runtime the ledger runs and its feature set's identifier.
pub(super) fn version() -> Result<Value, RpcErr> {
    let version = solana_version::Version::default();
    to_json(&RpcVersionInfo {
        solana_core: version.to_string(),
        feature_set: Some(version.feature_set),
    })
}

pub(super) fn identity(shared: &Arc<Shared>) -> Result<Value, RpcErr> {
    to_json(&RpcIdentity {
        identity: shared.ledger.identity().to_string(),
    })
}

/// `getSlot` / `getBlockHeight`: every slot of the ledger's clock is a block height.
pub(super) async fn slot(shared: &Arc<Shared>, params: &[Value]) -> Result<Value, RpcErr> {
    let config: RpcContextConfig = typed_config(params, 0)?;
    let slot = current_slot(shared).await?;
    check_min_context_slot(slot, config.min_context_slot)?;
    Ok(Value::from(slot))
}

pub(super) async fn epoch_info(shared: &Arc<Shared>, params: &[Value]) -> Result<Value, RpcErr> {
    let config: RpcEpochConfig = typed_config(params, 0)?;
    // web3.js requires `transactionCount` to be a number: the transactions the ledger
    // remembers (all of them until `history_transactions` is reached).
    let (slot, schedule, remembered) = ledger_call(shared, |l| {
        let remembered = l.transactions(|_| true, usize::MAX)?.len();
        Ok((l.clock()?.slot, l.epoch_schedule()?, remembered))
    })
    .await?;
    check_min_context_slot(slot, config.min_context_slot)?;
    let (epoch, slot_index) = schedule.get_epoch_and_slot_index(slot);
    to_json(&EpochInfo {
        epoch,
        slot_index,
        slots_in_epoch: schedule.get_slots_in_epoch(epoch),
        absolute_slot: slot,
        block_height: slot,
        transaction_count: u64::try_from(remembered).ok(),
    })
}

pub(super) async fn epoch_schedule(shared: &Arc<Shared>) -> Result<Value, RpcErr> {
    let schedule = ledger_call(shared, |l| l.epoch_schedule()).await?;
    to_json(&schedule)
}

pub(super) async fn latest_blockhash(
    shared: &Arc<Shared>,
    params: &[Value],
) -> Result<Value, RpcErr> {
    let config: RpcContextConfig = typed_config(params, 0)?;
    let (hash, slot) =
        ledger_call(shared, |l| Ok((l.latest_blockhash()?, l.clock()?.slot))).await?;
    check_min_context_slot(slot, config.min_context_slot)?;
    with_context(
        slot,
        RpcBlockhash {
            blockhash: hash.to_string(),
            last_valid_block_height: slot.saturating_add(BLOCKHASH_VALIDITY_BLOCKS),
        },
    )
}

fn hash_param(params: &[Value], index: usize) -> Result<Hash, RpcErr> {
    let text = string_param(params, index, "blockhash")?;
    Hash::from_str(text)
        .map_err(|e| RpcErr::params(format!("Invalid params: {text} is not a blockhash ({e})")))
}

/// `isBlockhashValid`: the embedded bank's own answer (its blockhash queue and
/// `MAX_PROCESSING_AGE`).
pub(super) async fn is_blockhash_valid(
    shared: &Arc<Shared>,
    params: &[Value],
) -> Result<Value, RpcErr> {
    let hash = hash_param(params, 0)?;
    let config: RpcContextConfig = typed_config(params, 1)?;
    let (valid, slot) = ledger_call(shared, move |l| {
        Ok((l.is_blockhash_valid(&hash)?, l.clock()?.slot))
    })
    .await?;
    check_min_context_slot(slot, config.min_context_slot)?;
    with_context(slot, valid)
}

/// `getFeeForMessage`: the bank's fee for the message, `null` for an unknown blockhash.
pub(super) async fn fee_for_message(
    shared: &Arc<Shared>,
    params: &[Value],
) -> Result<Value, RpcErr> {
    let encoded = string_param(params, 0, "message")?;
    let config: RpcContextConfig = typed_config(params, 1)?;
    if encoded.len() > MAX_BASE64_MESSAGE {
        return Err(RpcErr::params("Invalid params: message too large"));
    }
    let bytes = STANDARD
        .decode(encoded)
        .map_err(|e| RpcErr::params(format!("Invalid params: message is not base64 ({e})")))?;
    let limit = u64::try_from(PACKET_DATA_SIZE).map_err(|_| RpcErr::internal("packet size"))?;
    let message: Message = bincode::DefaultOptions::new()
        .with_limit(limit)
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .deserialize(&bytes)
        .map_err(|e| {
            RpcErr::params(format!(
                "Invalid params: not a legacy message ({e}); mupib localnet serves legacy transactions only"
            ))
        })?;
    let (fee, slot) = ledger_call(shared, move |l| {
        Ok((l.fee_for_message(&message)?, l.clock()?.slot))
    })
    .await?;
    check_min_context_slot(slot, config.min_context_slot)?;
    with_context(slot, fee)
}

pub(super) async fn minimum_balance(
    shared: &Arc<Shared>,
    params: &[Value],
) -> Result<Value, RpcErr> {
    let length = param(params, 0, "data length")?
        .as_u64()
        .and_then(|v| usize::try_from(v).ok())
        .filter(|v| *v <= MAX_ACCOUNT_DATA_LEN)
        .ok_or_else(|| {
            RpcErr::params(format!(
                "Invalid params: data length must be an integer ≤ {MAX_ACCOUNT_DATA_LEN}"
            ))
        })?;
    Ok(Value::from(
        ledger_call(shared, move |l| {
            l.minimum_balance_for_rent_exemption(length)
        })
        .await?,
    ))
}

/// The compute-unit price a transaction offers (`ComputeBudget` `SetComputeUnitPrice`), 0 if none.
fn compute_unit_price(transaction: &solana_sdk::transaction::Transaction) -> u64 {
    let compute_budget = Pubkey::from_str_const("ComputeBudget111111111111111111111111111111");
    let message = &transaction.message;
    message
        .instructions
        .iter()
        .filter(|ix| {
            message.account_keys.get(usize::from(ix.program_id_index)) == Some(&compute_budget)
        })
        .find_map(|ix| match ix.data.split_first() {
            Some((3, price)) => price
                .get(..8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_le_bytes),
            _ => None,
        })
        .unwrap_or(0)
}

/// `getRecentPrioritizationFees`: per slot of the last 150 with remembered transactions that
/// write-lock every given account (any, when none is given), the lowest compute-unit price they
/// offered — what validators report, computed from the ledger's own history.
pub(super) async fn prioritization_fees(
    shared: &Arc<Shared>,
    params: &[Value],
) -> Result<Value, RpcErr> {
    let addresses: Vec<Pubkey> = match params.first() {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| {
                v.as_str()
                    .and_then(|t| Pubkey::from_str(t).ok())
                    .ok_or_else(|| RpcErr::params("Invalid params: an address must be base58"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(RpcErr::params("Invalid params: addresses must be an array")),
    };
    if addresses.len() > 128 {
        return Err(RpcErr::params("Invalid params: at most 128 addresses"));
    }
    let slot = current_slot(shared).await?;
    let since = slot.saturating_sub(PRIORITIZATION_FEE_SLOTS);
    let transactions = ledger_call(shared, move |l| {
        l.transactions(
            |t| {
                t.slot >= since
                    && addresses.iter().all(|a| {
                        let message = &t.transaction.message;
                        message
                            .account_keys
                            .iter()
                            .position(|k| k == a)
                            .is_some_and(|i| message.is_maybe_writable(i, None))
                    })
            },
            usize::MAX,
        )
    })
    .await?;
    let mut by_slot: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
    for executed in &transactions {
        let price = compute_unit_price(&executed.transaction);
        by_slot
            .entry(executed.slot)
            .and_modify(|p| *p = (*p).min(price))
            .or_insert(price);
    }
    let fees: Vec<RpcPrioritizationFee> = by_slot
        .into_iter()
        .map(|(slot, prioritization_fee)| RpcPrioritizationFee {
            slot,
            prioritization_fee,
        })
        .collect();
    to_json(&fees)
}

pub(super) async fn request_airdrop(
    shared: &Arc<Shared>,
    params: &[Value],
) -> Result<Value, RpcErr> {
    let to = pubkey_param(params, 0)?;
    let lamports = param(params, 1, "lamports")?
        .as_u64()
        .ok_or_else(|| RpcErr::params("Invalid params: lamports must be an unsigned integer"))?;
    let _config: RpcRequestAirdropConfig = typed_config(params, 2)?;
    if lamports == 0 || lamports > shared.options.max_airdrop_lamports {
        return Err(RpcErr::params(format!(
            "Invalid params: an airdrop must be between 1 and {} lamports",
            shared.options.max_airdrop_lamports
        )));
    }
    let signature = ledger_call(shared, move |l| l.airdrop(&to, lamports)).await?;
    Ok(Value::from(signature.to_string()))
}

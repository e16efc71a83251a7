//! The JSON-RPC methods the localnet serves (the list and the differences from a validator are
//! in the crate documentation), one file per family: `cluster.rs` (version, slots, epochs,
//! blockhashes, fees, rent, airdrops), `accounts.rs` (accounts, program accounts, SPL Token
//! balances), `transactions.rs` (send, simulate, statuses, history, blocks).

mod accounts;
mod cluster;
mod transactions;

use std::sync::Arc;

use serde_json::Value;
use solana_rpc_client_api::custom_error::RpcCustomError;
use solana_rpc_client_api::response::{Response, RpcResponseContext};

use crate::rpc::{ledger_call, to_json, RpcErr, METHOD_NOT_FOUND};
use crate::Shared;

pub(crate) async fn dispatch(
    shared: &Arc<Shared>,
    method: &str,
    params: &[Value],
) -> Result<Value, RpcErr> {
    match method {
        "getHealth" => Ok(Value::from("ok")),
        "getVersion" => cluster::version(),
        "getIdentity" => cluster::identity(shared),
        "getGenesisHash" => Ok(Value::from(shared.ledger.genesis_hash().to_string())),
        "getSlot" | "getBlockHeight" => cluster::slot(shared, params).await,
        "getEpochInfo" => cluster::epoch_info(shared, params).await,
        "getEpochSchedule" => cluster::epoch_schedule(shared).await,
        "getLatestBlockhash" => cluster::latest_blockhash(shared, params).await,
        "isBlockhashValid" => cluster::is_blockhash_valid(shared, params).await,
        "getFeeForMessage" => cluster::fee_for_message(shared, params).await,
        "getMinimumBalanceForRentExemption" => cluster::minimum_balance(shared, params).await,
        "getRecentPrioritizationFees" => cluster::prioritization_fees(shared, params).await,
        "getFirstAvailableBlock" => transactions::first_available_block(shared).await,
        "requestAirdrop" => cluster::request_airdrop(shared, params).await,
        "getAccountInfo" => accounts::account_info(shared, params).await,
        "getMultipleAccounts" => accounts::multiple_accounts(shared, params).await,
        "getProgramAccounts" => accounts::program_accounts(shared, params).await,
        "getBalance" => accounts::balance(shared, params).await,
        "getTokenAccountBalance" => accounts::token_account_balance(shared, params).await,
        "getTokenAccountsByOwner" => accounts::token_accounts_by_owner(shared, params).await,
        "getTokenSupply" => accounts::token_supply(shared, params).await,
        "getTokenLargestAccounts" => accounts::token_largest_accounts(shared, params).await,
        "sendTransaction" => transactions::send(shared, params).await,
        "simulateTransaction" => transactions::simulate(shared, params).await,
        "getSignatureStatuses" => transactions::signature_statuses(shared, params).await,
        "getTransaction" => transactions::get_transaction(shared, params).await,
        "getSignaturesForAddress" => transactions::signatures_for_address(shared, params).await,
        "getBlock" => transactions::block(shared, params).await,
        "getBlocks" => transactions::blocks(shared, params, false).await,
        "getBlocksWithLimit" => transactions::blocks(shared, params, true).await,
        "getBlockTime" => transactions::block_time(shared, params).await,
        other => Err(RpcErr::new(
            METHOD_NOT_FOUND,
            format!("Method not found: {other} is not served by mupib localnet (see the mupib-localnet documentation for the methods it serves)"),
        )),
    }
}

/// The ledger's current slot.
pub(crate) async fn current_slot(shared: &Arc<Shared>) -> Result<u64, RpcErr> {
    Ok(ledger_call(shared, |l| {
        use mupib_chain::ledger::Ledger as _;
        l.clock()
    })
    .await?
    .slot)
}

/// Refuses a request whose `minContextSlot` the ledger has not reached (-32016).
pub(crate) fn check_min_context_slot(
    slot: u64,
    min_context_slot: Option<u64>,
) -> Result<(), RpcErr> {
    match min_context_slot {
        Some(context_slot) if context_slot > slot => {
            Err(RpcCustomError::MinContextSlotNotReached { context_slot }.into())
        }
        _ => Ok(()),
    }
}

/// `{ "context": { "slot" }, "value" }`.
pub(crate) fn with_context<T: serde::Serialize>(slot: u64, value: T) -> Result<Value, RpcErr> {
    to_json(&Response {
        context: RpcResponseContext::new(slot),
        value,
    })
}

//! Account methods: accounts in every encoding, program accounts with filters, balances, and the
//! SPL Token reads (balances, accounts by owner, supply, largest accounts).

use std::str::FromStr;
use std::sync::Arc;

use serde_json::Value;
use solana_account_decoder::{UiAccount, UiAccountEncoding};
use solana_rpc_client_api::config::{
    RpcAccountInfoConfig, RpcContextConfig, RpcProgramAccountsConfig, RpcTokenAccountsFilter,
};
use solana_rpc_client_api::response::{
    OptionalContext, Response, RpcKeyedAccount, RpcResponseContext, RpcTokenAccountBalance,
};
use solana_sdk::account::Account;
use solana_sdk::pubkey::Pubkey;

use mupib_chain::ledger::{EmbeddedLedger, Ledger, LedgerError};

use super::{check_min_context_slot, with_context};
use crate::encode::{
    additional_data, decimals_of, passes, token_account, token_amount, ui_account,
};
use crate::rpc::{ledger_call, param, pubkey_param, to_json, typed_config, typed_param, RpcErr};
use crate::Shared;

/// Most results of `getTokenLargestAccounts`, as validators.
const LARGEST_ACCOUNTS: usize = 20;

/// Reads an account; the Clock sysvar is refreshed first, as [`Ledger::clock`] does.
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

/// Accounts read with what their `jsonParsed` form needs, and the slot.
type Read = (
    Vec<(
        Pubkey,
        Account,
        Option<solana_account_decoder::parse_account_data::AccountAdditionalDataV3>,
    )>,
    u64,
);

async fn read_accounts(
    shared: &Arc<Shared>,
    addresses: Vec<Pubkey>,
    encoding: UiAccountEncoding,
) -> Result<
    (
        Vec<
            Option<(
                Pubkey,
                Account,
                Option<solana_account_decoder::parse_account_data::AccountAdditionalDataV3>,
            )>,
        >,
        u64,
    ),
    RpcErr,
> {
    ledger_call(shared, move |l| {
        let mut out = Vec::with_capacity(addresses.len());
        for address in addresses {
            out.push(match read_account(l, &address)? {
                Some(account) => {
                    let additional = additional_data(l, &account, encoding)?;
                    Some((address, account, additional))
                }
                None => None,
            });
        }
        Ok((out, l.clock()?.slot))
    })
    .await
}

fn encoding_of(config: &RpcAccountInfoConfig) -> UiAccountEncoding {
    config.encoding.unwrap_or(UiAccountEncoding::Binary)
}

pub(super) async fn account_info(shared: &Arc<Shared>, params: &[Value]) -> Result<Value, RpcErr> {
    let address = pubkey_param(params, 0)?;
    let config: RpcAccountInfoConfig = typed_config(params, 1)?;
    let encoding = encoding_of(&config);
    let (mut accounts, slot) = read_accounts(shared, vec![address], encoding).await?;
    check_min_context_slot(slot, config.min_context_slot)?;
    let value = match accounts.pop().flatten() {
        Some((address, account, additional)) => Some(ui_account(
            &address,
            &account,
            encoding,
            additional,
            config.data_slice,
        )?),
        None => None,
    };
    with_context(slot, value)
}

pub(super) async fn multiple_accounts(
    shared: &Arc<Shared>,
    params: &[Value],
) -> Result<Value, RpcErr> {
    let texts: Vec<String> = typed_param(params, 0, "addresses")?;
    if texts.len() > shared.options.max_keys_per_request {
        return Err(RpcErr::params(format!(
            "Invalid params: {} addresses, at most {} allowed",
            texts.len(),
            shared.options.max_keys_per_request
        )));
    }
    let addresses: Vec<Pubkey> = texts
        .iter()
        .map(|text| {
            Pubkey::from_str(text).map_err(|e| {
                RpcErr::params(format!(
                    "Invalid params: {text} is not a base58 address ({e})"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    let config: RpcAccountInfoConfig = typed_config(params, 1)?;
    let encoding = encoding_of(&config);
    let (accounts, slot) = read_accounts(shared, addresses, encoding).await?;
    check_min_context_slot(slot, config.min_context_slot)?;
    let value = accounts
        .into_iter()
        .map(|found| {
            found
                .map(|(address, account, additional)| {
                    ui_account(&address, &account, encoding, additional, config.data_slice)
                })
                .transpose()
        })
        .collect::<Result<Vec<Option<UiAccount>>, RpcErr>>()?;
    with_context(slot, value)
}

/// The accounts of `owner` that pass `filters`, encoded, and the slot.
async fn owned_accounts(
    shared: &Arc<Shared>,
    owner: Pubkey,
    filters: Vec<solana_rpc_client_api::filter::RpcFilterType>,
    config: &RpcAccountInfoConfig,
) -> Result<(Vec<RpcKeyedAccount>, u64), RpcErr> {
    for filter in &filters {
        filter
            .verify()
            .map_err(|e| RpcErr::params(format!("Invalid params: filter: {e}")))?;
    }
    let encoding = config.encoding.unwrap_or(UiAccountEncoding::Binary);
    let (accounts, slot): Read = ledger_call(shared, move |l| {
        let mut out = Vec::new();
        for (address, account) in l.program_accounts(&owner)? {
            if passes(&filters, &account) {
                let additional = additional_data(l, &account, encoding)?;
                out.push((address, account, additional));
            }
        }
        Ok((out, l.clock()?.slot))
    })
    .await?;
    check_min_context_slot(slot, config.min_context_slot)?;
    let keyed = accounts
        .into_iter()
        .map(|(address, account, additional)| {
            Ok(RpcKeyedAccount {
                pubkey: address.to_string(),
                account: ui_account(&address, &account, encoding, additional, config.data_slice)?,
            })
        })
        .collect::<Result<Vec<_>, RpcErr>>()?;
    Ok((keyed, slot))
}

pub(super) async fn program_accounts(
    shared: &Arc<Shared>,
    params: &[Value],
) -> Result<Value, RpcErr> {
    let program = pubkey_param(params, 0)?;
    let config: RpcProgramAccountsConfig = typed_config(params, 1)?;
    let (keyed, slot) = owned_accounts(
        shared,
        program,
        config.filters.clone().unwrap_or_default(),
        &config.account_config,
    )
    .await?;
    let answer = if config.with_context.unwrap_or(false) {
        OptionalContext::Context(Response {
            context: RpcResponseContext::new(slot),
            value: keyed,
        })
    } else {
        OptionalContext::NoContext(keyed)
    };
    to_json(&answer)
}

pub(super) async fn balance(shared: &Arc<Shared>, params: &[Value]) -> Result<Value, RpcErr> {
    let address = pubkey_param(params, 0)?;
    let config: RpcContextConfig = typed_config(params, 1)?;
    let (lamports, slot) =
        ledger_call(shared, move |l| Ok((l.balance(&address)?, l.clock()?.slot))).await?;
    check_min_context_slot(slot, config.min_context_slot)?;
    with_context(slot, lamports)
}

pub(super) async fn token_account_balance(
    shared: &Arc<Shared>,
    params: &[Value],
) -> Result<Value, RpcErr> {
    let address = pubkey_param(params, 0)?;
    let config: RpcContextConfig = typed_config(params, 1)?;
    let (found, slot) = ledger_call(shared, move |l| {
        let found = match l.get_account(&address)?.as_ref().and_then(token_account) {
            Some(token) => decimals_of(l, &token.mint)?.map(|d| (token.amount, d)),
            None => None,
        };
        Ok((found, l.clock()?.slot))
    })
    .await?;
    check_min_context_slot(slot, config.min_context_slot)?;
    let (amount, decimals) =
        found.ok_or_else(|| RpcErr::params("Invalid param: not a Token account"))?;
    with_context(slot, token_amount(amount, decimals))
}

pub(super) async fn token_supply(shared: &Arc<Shared>, params: &[Value]) -> Result<Value, RpcErr> {
    let mint = pubkey_param(params, 0)?;
    let config: RpcContextConfig = typed_config(params, 1)?;
    let (found, slot) = ledger_call(shared, move |l| {
        let found = l.get_account(&mint)?.and_then(|account| {
            let base = account.data.get(..spl_token_interface::state::Mint::LEN)?;
            if !solana_account_decoder::parse_token::is_known_spl_token_id(&account.owner) {
                return None;
            }
            use solana_sdk::program_pack::Pack;
            spl_token_interface::state::Mint::unpack_from_slice(base)
                .ok()
                .filter(|m| m.is_initialized)
        });
        Ok((found, l.clock()?.slot))
    })
    .await?;
    check_min_context_slot(slot, config.min_context_slot)?;
    let mint = found.ok_or_else(|| RpcErr::params("Invalid param: not a Token mint"))?;
    with_context(slot, token_amount(mint.supply, mint.decimals))
}

pub(super) async fn token_accounts_by_owner(
    shared: &Arc<Shared>,
    params: &[Value],
) -> Result<Value, RpcErr> {
    use solana_rpc_client_api::filter::{Memcmp, RpcFilterType};
    let owner = pubkey_param(params, 0)?;
    let filter: RpcTokenAccountsFilter = typed_param(params, 1, "mint or programId filter")?;
    let config: RpcAccountInfoConfig = typed_config(params, 2)?;
    let key = |text: &str| {
        Pubkey::from_str(text).map_err(|e| {
            RpcErr::params(format!(
                "Invalid params: {text} is not a base58 address ({e})"
            ))
        })
    };
    let (program, mint) = match &filter {
        RpcTokenAccountsFilter::ProgramId(program) => (key(program)?, None),
        RpcTokenAccountsFilter::Mint(mint) => {
            let mint = key(mint)?;
            let program = ledger_call(shared, move |l| Ok(l.get_account(&mint)?.map(|a| a.owner)))
                .await?
                .filter(solana_account_decoder::parse_token::is_known_spl_token_id)
                .ok_or_else(|| RpcErr::params("Invalid param: could not find mint"))?;
            (program, Some(mint))
        }
    };
    if !solana_account_decoder::parse_token::is_known_spl_token_id(&program) {
        return Err(RpcErr::params(format!(
            "Invalid param: unrecognized Token program id {program}"
        )));
    }
    let mut filters = vec![
        RpcFilterType::TokenAccountState,
        RpcFilterType::Memcmp(Memcmp::new_raw_bytes(32, owner.to_bytes().to_vec())),
    ];
    if let Some(mint) = mint {
        filters.push(RpcFilterType::Memcmp(Memcmp::new_raw_bytes(
            0,
            mint.to_bytes().to_vec(),
        )));
    }
    let (keyed, slot) = owned_accounts(shared, program, filters, &config).await?;
    with_context(slot, keyed)
}

pub(super) async fn token_largest_accounts(
    shared: &Arc<Shared>,
    params: &[Value],
) -> Result<Value, RpcErr> {
    let mint = pubkey_param(params, 0)?;
    let config: RpcContextConfig = typed_config(params, 1)?;
    let _ = param(params, 0, "mint")?;
    let (found, slot) = ledger_call(shared, move |l| {
        let Some(program) = l.get_account(&mint)?.map(|a| a.owner) else {
            return Ok((None, l.clock()?.slot));
        };
        let Some(decimals) = decimals_of(l, &mint)? else {
            return Ok((None, l.clock()?.slot));
        };
        let mut holders: Vec<(Pubkey, u64)> = l
            .program_accounts(&program)?
            .into_iter()
            .filter_map(|(address, account)| {
                token_account(&account)
                    .filter(|t| t.mint == mint)
                    .map(|t| (address, t.amount))
            })
            .collect();
        holders.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        holders.truncate(LARGEST_ACCOUNTS);
        Ok((Some((holders, decimals)), l.clock()?.slot))
    })
    .await?;
    check_min_context_slot(slot, config.min_context_slot)?;
    let (holders, decimals) =
        found.ok_or_else(|| RpcErr::params("Invalid param: not a Token mint"))?;
    let value: Vec<RpcTokenAccountBalance> = holders
        .into_iter()
        .map(|(address, amount)| RpcTokenAccountBalance {
            address: address.to_string(),
            amount: token_amount(amount, decimals),
        })
        .collect();
    with_context(slot, value)
}

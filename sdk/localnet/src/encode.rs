//! How the ledger's accounts and transactions are shown to clients, with the Solana client types
//! (`solana-account-decoder`, `solana-transaction-status-client-types`): account encodings with
//! `dataSlice` and `jsonParsed` (SPL Token accounts with their mint's decimals), filters of
//! `getProgramAccounts`, token amounts, and executed transactions in every encoding.

use solana_account_decoder::parse_account_data::{
    AccountAdditionalDataV3, SplTokenAdditionalDataV2,
};
use solana_account_decoder::parse_token::UiTokenAmount;
use solana_account_decoder::parse_token::{is_known_spl_token_id, token_amount_to_ui_amount_v3};
use solana_account_decoder::{encode_ui_account, UiAccount, UiAccountEncoding, UiDataSliceConfig};
use solana_rpc_client_api::filter::RpcFilterType;
use solana_sdk::account::Account;
use solana_sdk::message::Message;
use solana_sdk::program_pack::{IsInitialized, Pack};
use solana_sdk::pubkey::Pubkey;
use solana_transaction_status_client_types::{
    option_serializer::OptionSerializer, EncodedTransaction, EncodedTransactionWithStatusMeta,
    ParsedAccount, ParsedAccountSource, TransactionBinaryEncoding, UiCompiledInstruction,
    UiInstruction, UiMessage, UiParsedInstruction, UiParsedMessage, UiPartiallyDecodedInstruction,
    UiRawMessage, UiReturnDataEncoding, UiTransaction, UiTransactionEncoding, UiTransactionError,
    UiTransactionReturnData, UiTransactionStatusMeta,
};
use spl_token_interface::state::{Account as TokenAccount, Mint};

use mupib_chain::ledger::{EmbeddedLedger, ExecutedTransaction, Ledger, LedgerError};

use crate::rpc::{RpcErr, INVALID_REQUEST};

/// Largest account data validators return in base58 (`getAccountInfo` and friends).
const MAX_BASE58_BYTES: usize = 128;

/// The mint's decimals, when `account` is an SPL Token (or Token-2022) mint.
fn mint_decimals(account: &Account) -> Option<u8> {
    if !is_known_spl_token_id(&account.owner) {
        return None;
    }
    let base = account.data.get(..Mint::LEN)?;
    Mint::unpack_from_slice(base)
        .ok()
        .filter(|m| m.is_initialized)
        .map(|m| m.decimals)
}

/// The token account state of `account`, when it is an SPL Token (or Token-2022) account.
pub(crate) fn token_account(account: &Account) -> Option<TokenAccount> {
    if !is_known_spl_token_id(&account.owner) {
        return None;
    }
    let base = account.data.get(..TokenAccount::LEN)?;
    // A Token-2022 mint with extensions is longer than an account: its type byte says which.
    if account.data.len() > TokenAccount::LEN && account.data.get(TokenAccount::LEN) != Some(&2) {
        return None;
    }
    TokenAccount::unpack_from_slice(base)
        .ok()
        .filter(|a| a.is_initialized())
}

/// The decimals of a mint read from the ledger.
pub(crate) fn decimals_of(
    ledger: &EmbeddedLedger,
    mint: &Pubkey,
) -> Result<Option<u8>, LedgerError> {
    Ok(ledger.get_account(mint)?.as_ref().and_then(mint_decimals))
}

/// The mint's data a validator adds for `jsonParsed` token accounts (their decimals).
pub(crate) fn additional_data(
    ledger: &EmbeddedLedger,
    account: &Account,
    encoding: UiAccountEncoding,
) -> Result<Option<AccountAdditionalDataV3>, LedgerError> {
    if encoding != UiAccountEncoding::JsonParsed {
        return Ok(None);
    }
    let Some(token) = token_account(account) else {
        return Ok(None);
    };
    Ok(
        decimals_of(ledger, &token.mint)?.map(|decimals| AccountAdditionalDataV3 {
            spl_token_additional_data: Some(SplTokenAdditionalDataV2::with_decimals(decimals)),
        }),
    )
}

/// An account in the requested encoding, refused as validators refuse base58 over 128 bytes.
pub(crate) fn ui_account(
    address: &Pubkey,
    account: &Account,
    encoding: UiAccountEncoding,
    additional: Option<AccountAdditionalDataV3>,
    slice: Option<UiDataSliceConfig>,
) -> Result<UiAccount, RpcErr> {
    if matches!(
        encoding,
        UiAccountEncoding::Binary | UiAccountEncoding::Base58
    ) {
        let length = match slice {
            Some(slice) => slice
                .length
                .min(account.data.len().saturating_sub(slice.offset)),
            None => account.data.len(),
        };
        if length > MAX_BASE58_BYTES {
            return Err(RpcErr::new(
                INVALID_REQUEST,
                "Encoded binary (base 58) data should be less than 128 bytes, please use Base64 encoding.",
            ));
        }
    }
    Ok(encode_ui_account(
        address, account, encoding, additional, slice,
    ))
}

/// Whether `account` passes every filter of `getProgramAccounts`.
pub(crate) fn passes(filters: &[RpcFilterType], account: &Account) -> bool {
    filters.iter().all(|filter| match filter {
        RpcFilterType::DataSize(size) => u64::try_from(account.data.len()).ok() == Some(*size),
        RpcFilterType::Memcmp(compare) => compare.bytes_match(&account.data),
        RpcFilterType::TokenAccountState => token_account(account).is_some(),
    })
}

/// A token amount as validators show it.
pub(crate) fn token_amount(amount: u64, decimals: u8) -> UiTokenAmount {
    token_amount_to_ui_amount_v3(amount, &SplTokenAdditionalDataV2::with_decimals(decimals))
}

fn raw_message(message: &Message) -> UiRawMessage {
    UiRawMessage {
        header: message.header,
        account_keys: message.account_keys.iter().map(Pubkey::to_string).collect(),
        recent_blockhash: message.recent_blockhash.to_string(),
        instructions: message
            .instructions
            .iter()
            .map(|ix| UiCompiledInstruction::from(ix, None))
            .collect(),
        address_table_lookups: None,
    }
}

/// The `jsonParsed` message: accounts with their roles, instructions partially decoded (program,
/// accounts, data), which is what validators show for programs they have no parser for.
fn parsed_message(message: &Message) -> UiParsedMessage {
    let account_keys = message
        .account_keys
        .iter()
        .enumerate()
        .map(|(index, key)| ParsedAccount {
            pubkey: key.to_string(),
            writable: message.is_maybe_writable(index, None),
            signer: message.is_signer(index),
            source: Some(ParsedAccountSource::Transaction),
        })
        .collect();
    let key = |index: u8| {
        message
            .account_keys
            .get(usize::from(index))
            .map(Pubkey::to_string)
            .unwrap_or_default()
    };
    let instructions = message
        .instructions
        .iter()
        .map(|ix| {
            UiInstruction::Parsed(UiParsedInstruction::PartiallyDecoded(
                UiPartiallyDecodedInstruction {
                    program_id: key(ix.program_id_index),
                    accounts: ix.accounts.iter().map(|a| key(*a)).collect(),
                    data: bs58::encode(&ix.data).into_string(),
                    stack_height: None,
                },
            ))
        })
        .collect();
    UiParsedMessage {
        account_keys,
        recent_blockhash: message.recent_blockhash.to_string(),
        instructions,
        address_table_lookups: None,
    }
}

/// The transaction part of an executed transaction in `encoding`.
fn encoded_transaction(
    executed: &ExecutedTransaction,
    encoding: UiTransactionEncoding,
) -> Result<EncodedTransaction, RpcErr> {
    let transaction = &executed.transaction;
    let signatures = transaction
        .signatures
        .iter()
        .map(ToString::to_string)
        .collect();
    Ok(match encoding {
        UiTransactionEncoding::Json => EncodedTransaction::Json(UiTransaction {
            signatures,
            message: UiMessage::Raw(raw_message(&transaction.message)),
        }),
        UiTransactionEncoding::JsonParsed => EncodedTransaction::Json(UiTransaction {
            signatures,
            message: UiMessage::Parsed(parsed_message(&transaction.message)),
        }),
        UiTransactionEncoding::Binary
        | UiTransactionEncoding::Base58
        | UiTransactionEncoding::Base64 => {
            let bytes = bincode::serialize(transaction)
                .map_err(|e| RpcErr::internal(format!("cannot encode the transaction: {e}")))?;
            match encoding {
                UiTransactionEncoding::Binary => {
                    EncodedTransaction::LegacyBinary(bs58::encode(bytes).into_string())
                }
                UiTransactionEncoding::Base58 => EncodedTransaction::Binary(
                    bs58::encode(bytes).into_string(),
                    TransactionBinaryEncoding::Base58,
                ),
                _ => {
                    use base64::Engine;
                    EncodedTransaction::Binary(
                        base64::engine::general_purpose::STANDARD.encode(bytes),
                        TransactionBinaryEncoding::Base64,
                    )
                }
            }
        }
    })
}

/// Return data as validators show it (base64).
pub(crate) fn return_data(program_id: &Pubkey, data: &[u8]) -> UiTransactionReturnData {
    use base64::Engine;
    UiTransactionReturnData {
        program_id: program_id.to_string(),
        data: (
            base64::engine::general_purpose::STANDARD.encode(data),
            UiReturnDataEncoding::Base64,
        ),
    }
}

/// The status meta of an executed transaction (compute units left out: not metered).
pub(crate) fn status_meta(executed: &ExecutedTransaction) -> UiTransactionStatusMeta {
    let err = executed.err.clone().map(UiTransactionError::from);
    UiTransactionStatusMeta {
        status: match &err {
            None => Ok(()),
            Some(err) => Err(err.clone()),
        },
        err,
        fee: executed.fee,
        pre_balances: executed.pre_balances.clone(),
        post_balances: executed.post_balances.clone(),
        inner_instructions: OptionSerializer::None,
        log_messages: OptionSerializer::Some(executed.logs.clone()),
        pre_token_balances: OptionSerializer::None,
        post_token_balances: OptionSerializer::None,
        rewards: OptionSerializer::Some(Vec::new()),
        loaded_addresses: OptionSerializer::Skip,
        return_data: match &executed.return_data {
            Some((program_id, data)) => OptionSerializer::Some(return_data(program_id, data)),
            None => OptionSerializer::Skip,
        },
        compute_units_consumed: OptionSerializer::Skip,
        cost_units: OptionSerializer::Skip,
    }
}

/// An executed transaction with its meta, as `getTransaction` and `getBlock` show it.
pub(crate) fn transaction_with_meta(
    executed: &ExecutedTransaction,
    encoding: UiTransactionEncoding,
    max_supported_version: Option<u8>,
) -> Result<EncodedTransactionWithStatusMeta, RpcErr> {
    Ok(EncodedTransactionWithStatusMeta {
        transaction: encoded_transaction(executed, encoding)?,
        meta: Some(status_meta(executed)),
        // Reported only to clients that say which versions they support, as validators do.
        version: max_supported_version.map(|_| solana_sdk::transaction::TransactionVersion::LEGACY),
    })
}

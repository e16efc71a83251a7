//! The Rust standard clients, `solana-rpc-client`'s `RpcClient` and `solana-pubsub-client`'s
//! `PubsubClient`, against a localnet with real state (a deployment: config, a funded bank with a
//! sealed batch, an auditor): program accounts with filters, slices and every binary encoding, the
//! SPL Token reads with `jsonParsed`, simulation, history and blocks, the cluster methods, and
//! every subscription kind on the websocket. Each answer is checked against the ledger itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mupib_chain::deploy::Deployment;
use mupib_chain::ledger::{EmbeddedLedger, Ledger};
use mupib_chain::program::accounts::decode_config;
use mupib_chain::program::instructions as ix;
use mupib_chain::program::pda;
use mupib_localnet::LocalnetHandle;
use serde_json::{json, Value};
use solana_pubsub_client::pubsub_client::PubsubClient;
use solana_rpc_client::rpc_client::RpcClient;
use solana_rpc_client_api::client_error::ErrorKind;
use solana_rpc_client_api::config::{
    CommitmentConfig, RpcAccountInfoConfig, RpcBlockConfig, RpcProgramAccountsConfig,
    RpcSimulateTransactionConfig, RpcTransactionLogsConfig, RpcTransactionLogsFilter,
    UiAccountEncoding, UiTransactionEncoding,
};
use solana_rpc_client_api::filter::{Memcmp, RpcFilterType};
use solana_rpc_client_api::request::{RpcError, TokenAccountsFilter};
use solana_rpc_client_api::response::RpcSignatureResult;
use solana_sdk::account::Account;
use solana_sdk::instruction::InstructionError;
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::{Keypair, Signature, Signer};
use solana_sdk::transaction::{Transaction, TransactionError};

const DECIMALS: u8 = 6;
const FUNDS: u64 = 1_000_000;
const TOKENS: u32 = 8;
const VALUE: u64 = 100;
/// `MupibError::NotAdmin`.
const NOT_ADMIN: u32 = 6001;
const WAIT: Duration = Duration::from_secs(20);

struct Fixture {
    server: LocalnetHandle,
    deployment: Deployment,
    client: RpcClient,
}

impl Fixture {
    fn new() -> Fixture {
        let ledger = Arc::new(EmbeddedLedger::ephemeral().expect("ledger"));
        let deployment = Deployment::setup(ledger.as_ref(), DECIMALS, FUNDS).expect("deploy");
        deployment
            .issue_batch(ledger.as_ref(), 1, TOKENS, VALUE, true)
            .expect("batch");
        let server =
            mupib_localnet::serve(ledger, SocketAddr::from(([127, 0, 0, 1], 0))).expect("serve");
        let client = RpcClient::new_with_commitment(server.url(), CommitmentConfig::confirmed());
        Fixture {
            server,
            deployment,
            client,
        }
    }

    fn ledger(&self) -> &EmbeddedLedger {
        self.server.ledger()
    }

    fn account(&self, address: &Pubkey) -> Account {
        self.ledger().get_account(address).unwrap().unwrap()
    }

    fn signed(
        &self,
        instruction: solana_sdk::instruction::Instruction,
        signers: &[&Keypair],
    ) -> Transaction {
        let blockhash = self.client.get_latest_blockhash().unwrap();
        Transaction::new_signed_with_payer(
            &[instruction],
            Some(&signers[0].pubkey()),
            signers,
            blockhash,
        )
    }

    fn raw(&self, method: &str, params: Value) -> Value {
        reqwest::blocking::Client::new()
            .post(self.server.url())
            .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }
}

fn base64(account_config: RpcAccountInfoConfig) -> RpcAccountInfoConfig {
    RpcAccountInfoConfig {
        encoding: Some(UiAccountEncoding::Base64),
        ..account_config
    }
}

fn rpc_error_code(error: &solana_rpc_client_api::client_error::Error) -> Option<i64> {
    match error.kind() {
        ErrorKind::RpcError(RpcError::RpcResponseError { code, .. }) => Some(*code),
        _ => None,
    }
}

#[test]
fn program_accounts_with_filters_slices_and_every_encoding() {
    let f = Fixture::new();
    let config_address = pda::config().0;
    let config = f.account(&config_address);
    let discriminator = config.data[..8].to_vec();
    let bank = f.deployment.bank.pubkey();
    let batch = pda::batch(&bank, &f.deployment.auditor.pubkey(), 1).0;
    let batch_account = f.account(&batch);

    let by_kind = |filters: Vec<RpcFilterType>, encoding: UiAccountEncoding| {
        f.client
            .get_program_ui_accounts_with_config(
                &mupib::ID,
                RpcProgramAccountsConfig {
                    filters: Some(filters),
                    account_config: RpcAccountInfoConfig {
                        encoding: Some(encoding),
                        ..RpcAccountInfoConfig::default()
                    },
                    ..RpcProgramAccountsConfig::default()
                },
            )
            .expect("getProgramAccounts")
    };
    // Anchor's `.all()`: a memcmp on the discriminator.
    let configs = by_kind(
        vec![RpcFilterType::Memcmp(Memcmp::new_raw_bytes(
            0,
            discriminator.clone(),
        ))],
        UiAccountEncoding::Base64,
    );
    assert_eq!(configs.len(), 1);
    assert_eq!(configs[0].0, config_address);
    let decoded: Account = configs[0].1.decode().unwrap();
    assert_eq!(
        decode_config(&decoded).unwrap().admin,
        f.deployment.admin.pubkey()
    );

    // The bank's key after the discriminator: its registration and its batch. With the batch
    // discriminator too, the batch alone, in base64+zstd that decodes to the same bytes.
    let bank_at_8 = RpcFilterType::Memcmp(Memcmp::new_raw_bytes(8, bank.to_bytes().to_vec()));
    let mut both: Vec<Pubkey> = by_kind(vec![bank_at_8.clone()], UiAccountEncoding::Base64)
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    both.sort();
    let mut expected = vec![batch, pda::bank_registration(&bank).0];
    expected.sort();
    assert_eq!(both, expected);
    let compressed = by_kind(
        vec![
            RpcFilterType::Memcmp(Memcmp::new_raw_bytes(0, batch_account.data[..8].to_vec())),
            bank_at_8,
        ],
        UiAccountEncoding::Base64Zstd,
    );
    assert_eq!(compressed.len(), 1, "one batch of this bank");
    assert_eq!(compressed[0].0, batch);
    let decoded: Account = compressed[0].1.decode().unwrap();
    assert_eq!(decoded.data, batch_account.data);
    assert_eq!(decoded.owner, mupib::ID);

    // dataSize selects the config alone; dataSlice returns its discriminator only, in base58.
    let sliced = f
        .client
        .get_program_ui_accounts_with_config(
            &mupib::ID,
            RpcProgramAccountsConfig {
                filters: Some(vec![RpcFilterType::DataSize(config.data.len() as u64)]),
                account_config: RpcAccountInfoConfig {
                    encoding: Some(UiAccountEncoding::Base58),
                    data_slice: Some(solana_account_decoder::UiDataSliceConfig {
                        offset: 0,
                        length: 8,
                    }),
                    ..RpcAccountInfoConfig::default()
                },
                ..RpcProgramAccountsConfig::default()
            },
        )
        .expect("sliced");
    assert_eq!(sliced.len(), 1);
    let decoded: Account = sliced[0].1.decode().unwrap();
    assert_eq!(decoded.data, discriminator);
    assert_eq!(sliced[0].1.space, Some(config.data.len() as u64));

    // A stranger's memcmp matches nothing; base58 of a large account is refused as validators
    // refuse it (-32600), not truncated.
    assert!(by_kind(
        vec![RpcFilterType::Memcmp(Memcmp::new_raw_bytes(
            8,
            Pubkey::new_unique().to_bytes().to_vec()
        ))],
        UiAccountEncoding::Base64,
    )
    .is_empty());
    assert!(batch_account.data.len() > 128);
    let refused = f.raw(
        "getAccountInfo",
        json!([batch.to_string(), {"encoding": "base58"}]),
    );
    assert_eq!(refused["error"]["code"], -32600, "{refused}");
    assert!(refused["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("please use Base64")));
    let answer = f.raw(
        "getProgramAccounts",
        json!([mupib::ID.to_string(), {"encoding": "base64", "withContext": true, "filters": [{"dataSize": config.data.len()}]}]),
    );
    assert!(answer["result"]["context"]["slot"].is_u64(), "{answer}");
    assert_eq!(
        answer["result"]["value"][0]["pubkey"],
        config_address.to_string()
    );
}

#[test]
fn spl_token_reads_and_json_parsed_accounts() {
    let f = Fixture::new();
    let d = &f.deployment;
    let escrowed = u64::from(TOKENS) * VALUE;
    let balance = f.client.get_token_account_balance(&d.bank_token).unwrap();
    assert_eq!(balance.amount, (FUNDS - escrowed).to_string());
    assert_eq!(balance.decimals, DECIMALS);
    assert_eq!(
        balance.ui_amount_string,
        format!("{}", (FUNDS - escrowed) as f64 / 1e6)
    );
    let supply = f.client.get_token_supply(&d.mint).unwrap();
    assert_eq!(supply.amount, FUNDS.to_string());
    assert_eq!(supply.decimals, DECIMALS);

    let owned = f
        .client
        .get_token_accounts_by_owner(&d.bank.pubkey(), TokenAccountsFilter::Mint(d.mint))
        .unwrap();
    assert_eq!(owned.len(), 1);
    assert_eq!(owned[0].pubkey, d.bank_token.to_string());
    let solana_account_decoder::UiAccountData::Json(parsed) = &owned[0].account.data else {
        panic!("jsonParsed expected, got {:?}", owned[0].account.data);
    };
    assert_eq!(parsed.program, "spl-token");
    assert_eq!(parsed.parsed["type"], "account");
    assert_eq!(parsed.parsed["info"]["owner"], d.bank.pubkey().to_string());
    assert_eq!(parsed.parsed["info"]["mint"], d.mint.to_string());
    assert_eq!(
        parsed.parsed["info"]["tokenAmount"]["amount"],
        (FUNDS - escrowed).to_string()
    );
    let by_program = f
        .client
        .get_token_accounts_by_owner(
            &d.bank.pubkey(),
            TokenAccountsFilter::ProgramId(spl_token_interface::ID),
        )
        .unwrap();
    assert_eq!(by_program.len(), 1);
    assert!(f
        .client
        .get_token_accounts_by_owner(&Pubkey::new_unique(), TokenAccountsFilter::Mint(d.mint))
        .unwrap()
        .is_empty());

    // The escrow (a PDA-owned token account) parsed, and the mint.
    let escrow = pda::escrow(&pda::batch(&d.bank.pubkey(), &d.auditor.pubkey(), 1).0).0;
    let answer = f.raw(
        "getAccountInfo",
        json!([escrow.to_string(), {"encoding": "jsonParsed"}]),
    );
    let info = &answer["result"]["value"]["data"]["parsed"]["info"];
    assert_eq!(
        info["tokenAmount"]["amount"],
        escrowed.to_string(),
        "{answer}"
    );
    assert_eq!(info["tokenAmount"]["decimals"], DECIMALS);
    let answer = f.raw(
        "getAccountInfo",
        json!([d.mint.to_string(), {"encoding": "jsonParsed"}]),
    );
    assert_eq!(answer["result"]["value"]["data"]["parsed"]["type"], "mint");
    assert_eq!(
        answer["result"]["value"]["data"]["parsed"]["info"]["supply"],
        FUNDS.to_string()
    );

    // Not a token account: the validators' invalid-params error.
    let refused = f
        .client
        .get_token_account_balance(&pda::config().0)
        .unwrap_err();
    assert_eq!(rpc_error_code(&refused), Some(-32602), "{refused}");
}

#[test]
fn simulation_reports_logs_events_and_errors_and_invents_no_compute_units() {
    let f = Fixture::new();
    let admin = &f.deployment.admin;
    let pause = f.signed(ix::config_set_paused(&admin.pubkey(), true), &[admin]);
    let simulated = f
        .client
        .simulate_transaction_with_config(
            &pause,
            RpcSimulateTransactionConfig {
                sig_verify: true,
                ..RpcSimulateTransactionConfig::default()
            },
        )
        .unwrap()
        .value;
    assert_eq!(simulated.err, None);
    let logs = simulated.logs.unwrap();
    assert_eq!(
        logs.first().map(String::as_str),
        Some(format!("Program {} invoke [1]", mupib::ID).as_str())
    );
    assert_eq!(
        logs.last().map(String::as_str),
        Some(format!("Program {} success", mupib::ID).as_str())
    );
    assert_eq!(
        logs.iter()
            .filter(|l| l.starts_with("Program data: "))
            .count(),
        1,
        "{logs:?}"
    );
    assert_eq!(
        simulated.units_consumed, None,
        "not metered natively: never made up"
    );
    assert!(
        !decode_config(&f.account(&pda::config().0)).unwrap().paused,
        "nothing written"
    );
    let raw = f.raw(
        "simulateTransaction",
        json!([mupib_chain::ledger::rpc::encode_transaction(&pause).unwrap(), {"encoding": "base64"}]),
    );
    assert!(
        raw["result"]["value"].get("unitsConsumed").is_none(),
        "{raw}"
    );

    // A refused instruction: the program's error and Anchor's error line.
    let stranger = Keypair::new();
    f.ledger()
        .airdrop(&stranger.pubkey(), 1_000_000_000)
        .unwrap();
    let refused = f.signed(
        ix::config_set_paused(&stranger.pubkey(), true),
        &[&stranger],
    );
    let simulated = f.client.simulate_transaction(&refused).unwrap().value;
    assert_eq!(
        simulated.err.map(TransactionError::from),
        Some(TransactionError::InstructionError(
            0,
            InstructionError::Custom(NOT_ADMIN)
        ))
    );
    let logs = simulated.logs.unwrap();
    assert!(
        logs.iter()
            .any(|l| l.starts_with("Program log: AnchorError")
                && l.contains("NotAdmin")
                && l.contains("6001")),
        "{logs:?}"
    );

    // replaceRecentBlockhash: a transaction on an unknown blockhash runs on the latest one.
    let stale = Transaction::new_signed_with_payer(
        &[ix::config_set_paused(&admin.pubkey(), true)],
        Some(&admin.pubkey()),
        &[admin],
        solana_sdk::hash::Hash::new_unique(),
    );
    let replaced = f
        .client
        .simulate_transaction_with_config(
            &stale,
            RpcSimulateTransactionConfig {
                replace_recent_blockhash: true,
                ..RpcSimulateTransactionConfig::default()
            },
        )
        .unwrap()
        .value;
    assert_eq!(replaced.err, None);
    let replacement = replaced.replacement_blockhash.expect("the blockhash used");
    assert!(f
        .ledger()
        .is_blockhash_valid(&replacement.blockhash.parse().unwrap())
        .unwrap());
    let not_replaced = f.client.simulate_transaction(&stale).unwrap().value;
    assert_eq!(
        not_replaced.err.map(TransactionError::from),
        Some(TransactionError::BlockhashNotFound)
    );

    // Return data, as validators show it: SPL Token's GetAccountDataSize returns the size of an
    // account of the mint (165 bytes, little-endian u64), in base64.
    let size = spl_token_interface::instruction::get_account_data_size(
        &spl_token_interface::ID,
        &f.deployment.mint,
    )
    .unwrap();
    let simulated = f
        .client
        .simulate_transaction(&f.signed(size, &[admin]))
        .unwrap()
        .value;
    assert_eq!(simulated.err, None);
    let returned = simulated.return_data.expect("return data");
    assert_eq!(returned.program_id, spl_token_interface::ID.to_string());
    assert_eq!(
        returned.data.1,
        solana_transaction_status_client_types::UiReturnDataEncoding::Base64
    );
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&returned.data.0)
        .unwrap();
    assert_eq!(bytes, 165u64.to_le_bytes());

    // sigVerify with a forged signature: the validators' -32003.
    let mut forged = pause.clone();
    forged.signatures[0] = Signature::from([7u8; 64]);
    let error = f
        .client
        .simulate_transaction_with_config(
            &forged,
            RpcSimulateTransactionConfig {
                sig_verify: true,
                ..RpcSimulateTransactionConfig::default()
            },
        )
        .unwrap_err();
    assert_eq!(rpc_error_code(&error), Some(-32003), "{error}");
}

#[test]
fn cluster_history_and_block_methods_answer_from_the_ledger() {
    let f = Fixture::new();
    let admin = &f.deployment.admin;
    let version = f.client.get_version().unwrap();
    assert_eq!(
        version.feature_set,
        Some(solana_version::Version::default().feature_set)
    );
    assert_eq!(
        f.client.get_genesis_hash().unwrap(),
        f.ledger().genesis_hash()
    );
    assert_eq!(f.client.get_identity().unwrap(), f.ledger().identity());

    let signature = f
        .client
        .send_and_confirm_transaction(
            &f.signed(ix::config_set_paused(&admin.pubkey(), true), &[admin]),
        )
        .unwrap();
    let executed = f.ledger().transaction(&signature).unwrap().unwrap();
    let slot = f.client.get_slot().unwrap();
    assert_eq!(f.client.get_block_height().unwrap(), slot);
    let epoch = f.client.get_epoch_info().unwrap();
    assert_eq!(epoch.absolute_slot, slot);
    let remembered = f.ledger().transactions(|_| true, usize::MAX).unwrap().len() as u64;
    assert_eq!(epoch.transaction_count, Some(remembered));
    assert!(remembered >= f.deployment.transactions as u64);

    let signatures = f
        .client
        .get_signatures_for_address(&pda::config().0)
        .unwrap();
    assert_eq!(
        signatures[0].signature,
        signature.to_string(),
        "newest first"
    );
    assert_eq!(signatures[0].slot, executed.slot);
    assert!(signatures.len() >= 2, "config_init wrote the config too");

    let block = f
        .client
        .get_block_with_config(
            executed.slot,
            RpcBlockConfig {
                encoding: Some(UiTransactionEncoding::Base64),
                transaction_details: Some(
                    solana_transaction_status_client_types::TransactionDetails::Full,
                ),
                rewards: Some(false),
                commitment: None,
                max_supported_transaction_version: Some(0),
            },
        )
        .unwrap();
    let transactions = block.transactions.unwrap();
    let listed = transactions
        .iter()
        .find(|t| {
            t.transaction
                .decode()
                .is_some_and(|d| d.signatures[0] == signature)
        })
        .expect("the block lists the transaction");
    let meta = listed.meta.as_ref().unwrap();
    assert_eq!(meta.fee, executed.fee);
    assert_eq!(block.block_height, Some(executed.slot));
    assert_eq!(block.blockhash, executed.blockhash.to_string());

    let fees = f
        .client
        .get_recent_prioritization_fees(&[pda::config().0])
        .unwrap();
    assert!(fees
        .iter()
        .any(|fee| fee.slot == executed.slot && fee.prioritization_fee == 0));
    assert!(f
        .client
        .get_recent_prioritization_fees(&[Pubkey::new_unique()])
        .unwrap()
        .is_empty());
}

#[test]
fn pubsub_client_gets_every_subscription_kind() {
    let f = Fixture::new();
    let ws = f.server.websocket_url();
    let config_address = pda::config().0;
    let (mut slots, slot_updates) = PubsubClient::slot_subscribe(&ws).unwrap();
    let (mut account, account_updates) = PubsubClient::account_subscribe(
        &ws,
        &config_address,
        Some(base64(RpcAccountInfoConfig::default())),
    )
    .unwrap();
    let (mut program, program_updates) = PubsubClient::program_subscribe(
        &ws,
        &mupib::ID,
        Some(RpcProgramAccountsConfig {
            account_config: base64(RpcAccountInfoConfig::default()),
            ..RpcProgramAccountsConfig::default()
        }),
    )
    .unwrap();
    let (mut logs, log_updates) = PubsubClient::logs_subscribe(
        &ws,
        RpcTransactionLogsFilter::Mentions(vec![mupib::ID.to_string()]),
        RpcTransactionLogsConfig { commitment: None },
    )
    .unwrap();

    let admin = &f.deployment.admin;
    let pause = f.signed(ix::config_set_paused(&admin.pubkey(), true), &[admin]);
    let signature = f.client.send_transaction(&pause).unwrap();
    let (mut status, status_updates) =
        PubsubClient::signature_subscribe(&ws, &signature, None).unwrap();

    let notified = status_updates
        .recv_timeout(WAIT)
        .expect("signatureNotification");
    assert!(matches!(
        notified.value,
        RpcSignatureResult::ProcessedSignature(ref result) if result.err.is_none()
    ));
    let notified = account_updates
        .recv_timeout(WAIT)
        .expect("accountNotification");
    let data: Account = notified.value.decode().unwrap();
    assert!(decode_config(&data).unwrap().paused);
    let notified = program_updates
        .recv_timeout(WAIT)
        .expect("programNotification");
    assert_eq!(notified.value.pubkey, config_address.to_string());
    let notified = log_updates.recv_timeout(WAIT).expect("logsNotification");
    assert_eq!(notified.value.signature, signature.to_string());
    assert_eq!(notified.value.err, None);
    assert!(notified
        .value
        .logs
        .iter()
        .any(|l| l.starts_with("Program data: ")));
    let slot = slot_updates.recv_timeout(WAIT).expect("slotNotification");
    assert!(slot.slot >= notified.context.slot);

    // A refused transaction is not notified to an account subscriber.
    let stranger = Keypair::new();
    f.ledger()
        .airdrop(&stranger.pubkey(), 1_000_000_000)
        .unwrap();
    let refused = f.signed(
        ix::config_set_paused(&stranger.pubkey(), false),
        &[&stranger],
    );
    assert!(f.client.send_transaction(&refused).is_err());
    assert!(account_updates
        .recv_timeout(Duration::from_millis(500))
        .is_err());

    // The blocking client's reader holds its socket until the next message arrives (its docs say
    // so): stopping the server closes every websocket, which lets the subscriptions end.
    drop(f);
    slots.shutdown().unwrap();
    account.shutdown().unwrap();
    program.shutdown().unwrap();
    logs.shutdown().unwrap();
    status.shutdown().unwrap();
}

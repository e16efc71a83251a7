//! The `mupib` binary for the admin, bank, user and vendor roles, on the embedded ledger in a
//! temporary data directory: the whole flow (init → register → mint over several batches →
//! give → balance → pay → countersign), checked against the on-chain state read back through the
//! SDK's decoders, and bad input at each boundary with a clear error and no state change.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ed25519_dalek::SigningKey;
use mupib::constants::MAX_BATCH_TOKENS;
use mupib_chain::ledger::{EmbeddedLedger, Ledger};
use mupib_chain::program::accounts::{
    fetch_bank_registration, fetch_batch, fetch_config, token_balance,
};
use mupib_chain::program::pda;
use mupib_client::bank::BankState;
use mupib_client::wallet::WalletData;
use mupib_protocol::cert::{pubkey_of, write_keypair_file, Registry};
use mupib_protocol::transaction::{verify_transaction, UserSignedPayment};
use mupib_protocol::Pubkey;
use serde_json::Value;

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
}

struct Key {
    path: PathBuf,
    signing: SigningKey,
    pubkey: Pubkey,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let data = root.join("data");
        Env {
            _dir: dir,
            root,
            data,
        }
    }

    fn key(&self, name: &str, seed: u8) -> Key {
        let signing = SigningKey::from_bytes(&[seed; 32]);
        let path = self.root.join(format!("{name}.json"));
        write_keypair_file(&signing, &path).unwrap();
        Key {
            pubkey: pubkey_of(&signing),
            path,
            signing,
        }
    }

    /// Runs `mupib <args> --data-dir <data>`.
    fn run(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        let data = self.data.to_str().unwrap().to_owned();
        all.push("--data-dir");
        all.push(&data);
        Command::new(env!("CARGO_BIN_EXE_mupib"))
            .args(&all)
            .env_remove("MUPIB_DATA_DIR")
            .output()
            .unwrap()
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "mupib {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs with `--json` and parses stdout.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let stdout = self.ok(&all);
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("mupib {args:?} --json printed non-JSON ({e}): {stdout}"))
    }

    /// Runs and expects failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "mupib {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    fn ledger(&self) -> EmbeddedLedger {
        EmbeddedLedger::open(self.data.join("ledger")).unwrap()
    }

    fn bank_state(&self, bank: &Pubkey) -> BankState {
        serde_json::from_slice(
            &std::fs::read(self.data.join("banks").join(format!("{bank}.json"))).unwrap(),
        )
        .unwrap()
    }

    fn wallet_path(&self, user: &Pubkey) -> PathBuf {
        self.data.join("wallets").join(format!("{user}.json"))
    }

    fn cert_path(&self, subject: &Pubkey) -> PathBuf {
        self.data.join("certs").join(format!("{subject}.json"))
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Admin initialised, bank registered and funded with `funds`, auditor registered.
fn deployed(env: &Env, funds: u64) -> (Key, Key, Key) {
    let admin = env.key("admin", 1);
    let bank = env.key("bank", 2);
    let auditor = env.key("auditor", 6);
    env.ok(&["admin", "init", "--keypair", p(&admin.path)]);
    env.ok(&[
        "admin",
        "register-bank",
        &bank.pubkey.to_string(),
        "--fund",
        &funds.to_string(),
        "--keypair",
        p(&admin.path),
    ]);
    env.ok(&[
        "admin",
        "register-auditor",
        &auditor.pubkey.to_string(),
        "--keypair",
        p(&admin.path),
    ]);
    (admin, bank, auditor)
}

#[test]
fn admin_bank_user_vendor_flow_on_the_embedded_ledger() {
    let env = Env::new();
    let admin = env.key("admin", 1);
    let bank = env.key("bank", 2);
    let user = env.key("user", 3);
    let vendor = env.key("vendor", 4);
    let auditor = env.key("auditor", 6);

    let init = env.json(&["admin", "init", "--keypair", p(&admin.path)]);
    assert_eq!(init["admin"], admin.pubkey.to_string());
    assert_eq!(init["mint_created"], true);
    let mint: Pubkey = init["mint"].as_str().unwrap().parse().unwrap();

    let registered = env.json(&[
        "admin",
        "register-bank",
        &bank.pubkey.to_string(),
        "--fund",
        "1000000",
        "--keypair",
        p(&admin.path),
    ]);
    assert_eq!(registered["key"], bank.pubkey.to_string());
    assert_eq!(registered["funded"], 1_000_000);
    env.ok(&[
        "admin",
        "register-auditor",
        &auditor.pubkey.to_string(),
        "--keypair",
        p(&admin.path),
    ]);
    for (key, role, name) in [
        (&bank, "bank", "First Bank"),
        (&user, "user", "Alice"),
        (&vendor, "vendor", "Coffee Shop"),
    ] {
        let issued = env.json(&[
            "admin",
            "issue-cert",
            "--role",
            role,
            "--name",
            name,
            &key.pubkey.to_string(),
            "--keypair",
            p(&admin.path),
        ]);
        assert_eq!(issued["certificate"]["subject"], key.pubkey.to_string());
        assert!(env.cert_path(&key.pubkey).exists());
    }

    // The headline command: 1000 tokens span at least two batches.
    let minted = env.json(&[
        "bank",
        "mint",
        "--auditor",
        &auditor.pubkey.to_string(),
        "--count",
        "1000",
        "--value",
        "100",
        "--keypair",
        p(&bank.path),
    ]);
    assert_eq!(minted["token_count"], 1000);
    assert_eq!(minted["escrow_funded"], 100_000);
    assert_eq!(minted["token_value"], 100);
    let batches = minted["batches"].as_array().unwrap();
    assert!(batches.len() >= 2 && batches.len() == 1000usize.div_ceil(MAX_BATCH_TOKENS as usize));
    let largest = minted["largest_transaction_bytes"].as_u64().unwrap();
    assert!(largest <= 1232 && largest > 0);
    let transactions = minted["transactions"].as_u64().unwrap();
    assert!(
        transactions >= batches.len() as u64 * 3,
        "create + ≥1 publish + seal per batch"
    );
    assert!(minted["rent_deposited"].as_u64().unwrap() > 0);

    // On-chain state, read back through the SDK decoders.
    let state = env.bank_state(&bank.pubkey);
    assert_eq!(state.unissued.len(), 1000);
    assert!(state.pending_mint.is_none());
    assert!(state.batches.iter().all(|b| b.auditor == auditor.pubkey));
    {
        let ledger = env.ledger();
        let config = fetch_config(&ledger).unwrap().unwrap();
        assert_eq!(config.mint, mint);
        let mut total_escrow = 0u64;
        let mut tokens_seen = 0usize;
        for record in &state.batches {
            let chain = fetch_batch(
                &ledger,
                &pda::batch(&bank.pubkey, &auditor.pubkey, record.batch_id).0,
            )
            .unwrap()
            .unwrap();
            assert!(chain.is_sealed());
            assert_eq!(chain.header.published, record.token_count);
            assert_eq!(chain.header.value, 100);
            for token in state
                .unissued
                .iter()
                .filter(|t| t.batch_id == record.batch_id)
            {
                assert_eq!(
                    chain.commitment(token.serial),
                    Some(token.commitment()),
                    "token {}",
                    token.id()
                );
                token.verify_signature().unwrap();
                tokens_seen += 1;
            }
            let escrow = token_balance(&ledger, &pda::escrow(&record.batch).0).unwrap();
            assert_eq!(escrow, u64::from(record.token_count) * 100);
            total_escrow += escrow;
        }
        assert_eq!(tokens_seen, 1000);
        assert_eq!(total_escrow, 100_000);
        let bank_account = mupib_chain::spl::payment_account(&bank.pubkey, &mint);
        assert_eq!(token_balance(&ledger, &bank_account).unwrap(), 900_000);
        let registration = fetch_bank_registration(&ledger, &bank.pubkey)
            .unwrap()
            .unwrap();
        assert_eq!(registration.tokens_created, 1000);
    }

    let batches_listed = env.json(&["bank", "batches", "--keypair", p(&bank.path)]);
    assert_eq!(batches_listed.as_array().unwrap().len(), batches.len());
    assert!(batches_listed
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["sealed"] == true));

    // Give 30 tokens to the user (wallet created in the data directory).
    let given = env.json(&[
        "bank",
        "give",
        "--to",
        &user.pubkey.to_string(),
        "--count",
        "30",
        "--keypair",
        p(&bank.path),
    ]);
    assert_eq!(given["tokens"], 30);
    assert_eq!(given["value"], 3000);
    assert_eq!(env.bank_state(&bank.pubkey).unissued.len(), 970);

    let balance = env.json(&["user", "balance", "--keypair", p(&user.path)]);
    assert_eq!(balance["unspent_tokens"], 30);
    assert_eq!(balance["unspent_value"], 3000);
    assert_eq!(balance["pending_tokens"], 0);

    // The user pays 5 tokens; the vendor can countersign and the payment verifies.
    let payment_file = env.root.join("payment.json");
    let paid = env.json(&[
        "user",
        "pay",
        "--vendor-cert",
        p(&env.cert_path(&vendor.pubkey)),
        "--amount",
        "5",
        "--info",
        "espresso",
        "--out",
        p(&payment_file),
        "--keypair",
        p(&user.path),
    ]);
    assert_eq!(paid["tokens"], 5);
    assert_eq!(paid["value"], 500);
    let payment: UserSignedPayment =
        serde_json::from_slice(&std::fs::read(&payment_file).unwrap()).unwrap();
    assert_eq!(payment.tokens.len(), 5);
    assert_eq!(payment.info, "espresso");
    payment.verify_user_signature().unwrap();
    let transaction = payment.clone().countersign(&vendor.signing).unwrap();
    let mut registry = Registry::with_authorities([admin.pubkey]).unwrap();
    for key in [&bank, &user, &vendor] {
        let cert =
            serde_json::from_slice(&std::fs::read(env.cert_path(&key.pubkey)).unwrap()).unwrap();
        registry.register(cert).unwrap();
    }
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let verified = verify_transaction(&transaction, &registry, now + 1).unwrap();
    assert_eq!(verified.total_value(), 500);

    // The CLI countersigns to the same transaction id.
    let countersigned = env.json(&[
        "vendor",
        "countersign",
        "--payment",
        p(&payment_file),
        "--keypair",
        p(&vendor.path),
    ]);
    assert_eq!(
        countersigned["transaction_id"],
        transaction.id().unwrap().to_string()
    );

    // Another vendor key cannot countersign a payment addressed to this vendor.
    let thief = env.key("thief", 9);
    env.ok(&[
        "admin",
        "issue-cert",
        "--role",
        "vendor",
        "--name",
        "Thief",
        &thief.pubkey.to_string(),
        "--keypair",
        p(&admin.path),
    ]);
    let error = env.fails(&[
        "vendor",
        "countersign",
        "--payment",
        p(&payment_file),
        "--keypair",
        p(&thief.path),
    ]);
    assert!(error.contains("addressed to vendor"), "{error}");

    let balance = env.json(&["user", "balance", "--keypair", p(&user.path)]);
    assert_eq!(balance["unspent_tokens"], 25);
    assert_eq!(balance["pending_tokens"], 5);
    assert_eq!(balance["pending_value"], 500);
    assert_eq!(balance["pending_payments"], 1);

    // Paying more than the wallet holds fails and changes nothing.
    let wallet_before = std::fs::read(env.wallet_path(&user.pubkey)).unwrap();
    let error = env.fails(&[
        "user",
        "pay",
        "--vendor-cert",
        p(&env.cert_path(&vendor.pubkey)),
        "--amount",
        "26",
        "--keypair",
        p(&user.path),
    ]);
    assert!(error.contains("not enough unspent tokens"), "{error}");
    assert_eq!(
        std::fs::read(env.wallet_path(&user.pubkey)).unwrap(),
        wallet_before
    );

    // A corrupted wallet: the bank's give fails with a clear error; the bank keeps its tokens
    // and the file is left as it was.
    let other = env.key("other", 5);
    let other_wallet = env.wallet_path(&other.pubkey);
    std::fs::write(&other_wallet, b"{\"version\": 1, \"owner\": ").unwrap();
    let error = env.fails(&[
        "bank",
        "give",
        "--to",
        &other.pubkey.to_string(),
        "--count",
        "3",
        "--keypair",
        p(&bank.path),
    ]);
    assert!(error.contains("corrupt"), "{error}");
    assert_eq!(
        std::fs::read(&other_wallet).unwrap(),
        b"{\"version\": 1, \"owner\": "
    );
    assert_eq!(env.bank_state(&bank.pubkey).unissued.len(), 970);
    let error = env.fails(&["user", "balance", "--keypair", p(&other.path)]);
    assert!(
        error.contains("corrupt") && error.contains("restore"),
        "{error}"
    );

    // The wallet file is the JSON the SDK reads.
    let wallet: WalletData =
        serde_json::from_slice(&std::fs::read(env.wallet_path(&user.pubkey)).unwrap()).unwrap();
    assert_eq!(wallet.owner, user.pubkey);
    assert_eq!(wallet.tokens.len(), 30);
}

#[test]
fn keypair_file_that_does_not_parse_is_refused_without_state_change() {
    let env = Env::new();
    let bad = env.root.join("bad.json");
    std::fs::write(&bad, "this is not a keypair").unwrap();
    let error = env.fails(&["admin", "init", "--keypair", p(&bad)]);
    assert!(
        error.contains("bad.json") && error.contains("keypair"),
        "{error}"
    );
    assert!(error.contains("solana-keygen"), "{error}");
    assert!(!env.data.join("ledger").exists(), "no ledger was created");

    // A keypair whose public half does not match its secret half.
    let mut bytes = SigningKey::from_bytes(&[1; 32]).to_keypair_bytes();
    bytes[40] ^= 1;
    let text = format!(
        "[{}]",
        bytes
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    std::fs::write(&bad, text).unwrap();
    let error = env.fails(&["admin", "init", "--keypair", p(&bad)]);
    assert!(error.contains("inconsistent"), "{error}");
    assert!(!env.data.join("ledger").exists());
}

#[test]
fn mint_by_unregistered_bank_is_refused_without_state_change() {
    let env = Env::new();
    let admin = env.key("admin", 1);
    let bank = env.key("bank", 2);
    let auditor = env.key("auditor", 6);
    env.ok(&["admin", "init", "--keypair", p(&admin.path)]);
    env.ok(&[
        "admin",
        "register-auditor",
        &auditor.pubkey.to_string(),
        "--keypair",
        p(&admin.path),
    ]);
    env.ok(&[
        "admin",
        "fund",
        &bank.pubkey.to_string(),
        "--amount",
        "5000",
        "--keypair",
        p(&admin.path),
    ]);
    let error = env.fails(&[
        "bank",
        "mint",
        "--auditor",
        &auditor.pubkey.to_string(),
        "--count",
        "10",
        "--value",
        "5",
        "--keypair",
        p(&bank.path),
    ]);
    assert!(
        error.contains("not registered") && error.contains("admin register-bank"),
        "{error}"
    );
    assert!(!env
        .data
        .join("banks")
        .join(format!("{}.json", bank.pubkey))
        .exists());
    let ledger = env.ledger();
    assert!(fetch_bank_registration(&ledger, &bank.pubkey)
        .unwrap()
        .is_none());
    assert!(ledger
        .get_account(&pda::batch(&bank.pubkey, &auditor.pubkey, 0).0)
        .unwrap()
        .is_none());
    let mint = fetch_config(&ledger).unwrap().unwrap().mint;
    assert_eq!(
        token_balance(
            &ledger,
            &mupib_chain::spl::payment_account(&bank.pubkey, &mint)
        )
        .unwrap(),
        5000
    );
}

#[test]
fn mint_of_zero_tokens_or_overflowing_value_is_refused_without_state_change() {
    let env = Env::new();
    let (_admin, bank, auditor) = deployed(&env, 1_000);
    let error = env.fails(&[
        "bank",
        "mint",
        "--auditor",
        &auditor.pubkey.to_string(),
        "--count",
        "0",
        "--value",
        "5",
        "--keypair",
        p(&bank.path),
    ]);
    assert!(error.contains("count must be at least 1"), "{error}");
    let error = env.fails(&[
        "bank",
        "mint",
        "--auditor",
        &auditor.pubkey.to_string(),
        "--count",
        "2",
        "--value",
        &u64::MAX.to_string(),
        "--keypair",
        p(&bank.path),
    ]);
    assert!(
        error.contains("worth more than") && error.contains("u64"),
        "{error}"
    );
    // More than the bank's funds.
    let error = env.fails(&[
        "bank",
        "mint",
        "--auditor",
        &auditor.pubkey.to_string(),
        "--count",
        "11",
        "--value",
        "100",
        "--keypair",
        p(&bank.path),
    ]);
    assert!(
        error.contains("holds 1000") && error.contains("needs 1100"),
        "{error}"
    );
    let ledger = env.ledger();
    assert!(ledger
        .get_account(&pda::batch(&bank.pubkey, &auditor.pubkey, 0).0)
        .unwrap()
        .is_none());
    let registration = fetch_bank_registration(&ledger, &bank.pubkey)
        .unwrap()
        .unwrap();
    assert_eq!(registration.batches_created, 0);
    let mint = fetch_config(&ledger).unwrap().unwrap().mint;
    assert_eq!(
        token_balance(
            &ledger,
            &mupib_chain::spl::payment_account(&bank.pubkey, &mint)
        )
        .unwrap(),
        1_000
    );
}

#[test]
fn unknown_command_argument_is_refused_with_usage() {
    let env = Env::new();
    let bank = env.key("bank", 2);
    let out = env.run(&[
        "bank",
        "mint",
        "--auditor",
        &bank.pubkey.to_string(),
        "--count",
        "1",
        "--value",
        "1",
        "--bogus",
        "--keypair",
        p(&bank.path),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let error = String::from_utf8(out.stderr).unwrap();
    assert!(error.contains("unexpected argument '--bogus'"), "{error}");
    assert!(!env.data.exists(), "nothing was written");
    let out = env.run(&["bank", "mint", "--count", "many", "--value", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("invalid value 'many'"));
}

#[test]
fn admin_commands_refuse_a_non_admin_and_double_init() {
    let env = Env::new();
    let (admin, bank, auditor) = deployed(&env, 0);
    let error = env.fails(&["admin", "init", "--keypair", p(&admin.path)]);
    assert!(error.contains("already initialised"), "{error}");
    let error = env.fails(&[
        "admin",
        "register-bank",
        &bank.pubkey.to_string(),
        "--keypair",
        p(&admin.path),
    ]);
    assert!(error.contains("already registered"), "{error}");
    let error = env.fails(&["admin", "pause", "--keypair", p(&bank.path)]);
    assert!(error.contains("not the program admin"), "{error}");
    let paused = env.json(&["admin", "pause", "--keypair", p(&admin.path)]);
    assert_eq!(paused["paused"], true);
    let status = env.json(&["admin", "status"]);
    assert_eq!(status["paused"], true);
    assert_eq!(status["admin"], admin.pubkey.to_string());
    let error = env.fails(&[
        "bank",
        "mint",
        "--auditor",
        &auditor.pubkey.to_string(),
        "--count",
        "1",
        "--value",
        "1",
        "--keypair",
        p(&bank.path),
    ]);
    assert!(error.contains("paused"), "{error}");
    assert_eq!(status["resumed_at"], 0);
    let resumed = env.json(&["admin", "resume", "--keypair", p(&admin.path)]);
    assert_eq!(resumed["paused"], false);
    let status = env.json(&["admin", "status"]);
    assert_eq!(status["paused"], false);
    assert!(status["resumed_at"].as_i64().unwrap() > 0);
    assert_eq!(status["resumed_at"], resumed["resumed_at"]);
}

#[test]
fn bank_mint_requires_the_auditor_its_batches_are_bound_to() {
    let env = Env::new();
    let (_admin, bank, auditor) = deployed(&env, 1_000);
    let out = env.run(&[
        "bank",
        "mint",
        "--count",
        "1",
        "--value",
        "1",
        "--keypair",
        p(&bank.path),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let error = String::from_utf8(out.stderr).unwrap();
    assert!(error.contains("--auditor"), "{error}");
    let help = env.ok(&["bank", "mint", "--help"]);
    assert!(
        help.contains("--auditor") && help.contains("Only this auditor can redeem"),
        "{help}"
    );
    // An auditor the admin never registered: refused before any transaction.
    let stranger = env.key("stranger", 7);
    let error = env.fails(&[
        "bank",
        "mint",
        "--auditor",
        &stranger.pubkey.to_string(),
        "--count",
        "1",
        "--value",
        "1",
        "--keypair",
        p(&bank.path),
    ]);
    assert!(
        error.contains("not registered") && error.contains("register-auditor"),
        "{error}"
    );
    let ledger = env.ledger();
    for bound in [&stranger, &auditor] {
        assert!(ledger
            .get_account(&pda::batch(&bank.pubkey, &bound.pubkey, 0).0)
            .unwrap()
            .is_none());
    }
    assert_eq!(
        fetch_bank_registration(&ledger, &bank.pubkey)
            .unwrap()
            .unwrap()
            .batches_created,
        0
    );
}

#[test]
fn bank_close_batch_before_the_grace_is_over_is_refused_with_the_time_it_becomes_closable() {
    let env = Env::new();
    let (_admin, bank, auditor) = deployed(&env, 1_000);
    env.ok(&[
        "bank",
        "mint",
        "--auditor",
        &auditor.pubkey.to_string(),
        "--count",
        "4",
        "--value",
        "5",
        "--expires-in",
        "1",
        "--keypair",
        p(&bank.path),
    ]);
    let error = env.fails(&["bank", "close-batch", "0", "--keypair", p(&bank.path)]);
    assert!(
        error.contains("cannot be closed yet") && error.contains("closable after"),
        "{error}"
    );
    let ledger = env.ledger();
    let state = env.bank_state(&bank.pubkey);
    assert!(!state.batches[0].closed);
    assert_eq!(
        token_balance(&ledger, &state.batches[0].escrow).unwrap(),
        20
    );
}

/// Kills the localnet child when the test ends, pass or fail.
struct Localnet(std::process::Child);

impl Drop for Localnet {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn bank_mint_through_the_json_rpc_backend_against_mupib_localnet() {
    use std::io::BufRead;
    let env = Env::new();
    let chain = env.root.join("chain");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mupib"))
        .args(["localnet", "--data-dir", p(&chain), "--port", "0", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let localnet = Localnet(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let url = serde_json::from_str::<Value>(&line).unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();

    let admin = env.key("admin", 1);
    let bank = env.key("bank", 2);
    let auditor = env.key("auditor", 6);
    let init = env.json(&["admin", "init", "--url", &url, "--keypair", p(&admin.path)]);
    assert_eq!(init["admin"], admin.pubkey.to_string());
    env.ok(&[
        "admin",
        "register-bank",
        &bank.pubkey.to_string(),
        "--fund",
        "10000",
        "--url",
        &url,
        "--keypair",
        p(&admin.path),
    ]);
    env.ok(&[
        "admin",
        "register-auditor",
        &auditor.pubkey.to_string(),
        "--url",
        &url,
        "--keypair",
        p(&admin.path),
    ]);
    let count = MAX_BATCH_TOKENS + 1;
    let minted = env.json(&[
        "bank",
        "mint",
        "--auditor",
        &auditor.pubkey.to_string(),
        "--count",
        &count.to_string(),
        "--value",
        "7",
        "--url",
        &url,
        "--keypair",
        p(&bank.path),
    ]);
    assert_eq!(minted["token_count"], count);
    assert_eq!(minted["batches"].as_array().unwrap().len(), 2);
    assert_eq!(minted["escrow_funded"], u64::from(count) * 7);
    assert!(
        !env.data.join("ledger").exists(),
        "--url must not open the embedded ledger"
    );
    drop(localnet);

    // The served ledger (`<data-dir>/ledger`, as for every command) holds the sealed batches
    // with the bank's commitments.
    let ledger = EmbeddedLedger::open(chain.join("ledger")).unwrap();
    let state = env.bank_state(&bank.pubkey);
    assert_eq!(state.unissued.len(), count as usize);
    for record in &state.batches {
        let batch = fetch_batch(&ledger, &record.batch).unwrap().unwrap();
        assert!(batch.is_sealed());
        for token in state
            .unissued
            .iter()
            .filter(|t| t.batch_id == record.batch_id)
        {
            assert_eq!(batch.commitment(token.serial), Some(token.commitment()));
        }
        assert_eq!(
            token_balance(&ledger, &record.escrow).unwrap(),
            u64::from(record.token_count) * 7
        );
    }
}

#[test]
fn cluster_url_that_does_not_answer_fails_clearly_without_state_change() {
    let env = Env::new();
    let admin = env.key("admin", 1);
    // A port nothing listens on (bound then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let error = env.fails(&["admin", "init", "--url", &url, "--keypair", p(&admin.path)]);
    assert!(error.contains(&url), "{error}");
    assert!(!env.data.join("ledger").exists());
    let error = env.fails(&[
        "admin",
        "init",
        "--url",
        "ftp://example",
        "--keypair",
        p(&admin.path),
    ]);
    assert!(error.contains("not an http"), "{error}");
}

/// Starts `mupib <args>` and waits for the stdout line containing `marker`; the rest of its
/// output is drained in the background. Returns the child (killed on drop) and the line.
fn spawn_until(args: &[&str], marker: &str) -> (Localnet, String) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_mupib"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let guard = Localnet(child);
    let found = lines
        .by_ref()
        .map(|l| l.unwrap())
        .find(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("mupib {args:?} never printed {marker:?}"));
    std::thread::spawn(move || lines.for_each(drop));
    (guard, found)
}

#[test]
fn vendor_submits_a_user_payment_to_the_auditor_service_and_gets_a_signed_deliver() {
    let env = Env::new();
    let chain = env.root.join("chain");
    let (_localnet, line) = spawn_until(
        &["localnet", "--data-dir", p(&chain), "--port", "0", "--json"],
        "url",
    );
    let url = serde_json::from_str::<Value>(&line).unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin = env.key("admin", 1);
    let bank = env.key("bank", 2);
    let user = env.key("user", 3);
    let vendor = env.key("vendor", 4);
    let auditor = env.key("auditor", 6);
    let init = env.json(&["admin", "init", "--url", &url, "--keypair", p(&admin.path)]);
    let mint: Pubkey = init["mint"].as_str().unwrap().parse().unwrap();
    env.ok(&[
        "admin",
        "register-bank",
        &bank.pubkey.to_string(),
        "--fund",
        "100000",
        "--url",
        &url,
        "--keypair",
        p(&admin.path),
    ]);
    let registered = env.json(&[
        "admin",
        "register-auditor",
        &auditor.pubkey.to_string(),
        "--url",
        &url,
        "--keypair",
        p(&admin.path),
    ]);
    let auditor_token = mupib_chain::spl::payment_account(&auditor.pubkey, &mint);
    assert_eq!(registered["payment_account"], auditor_token.to_string());
    let mut certificates = Vec::new();
    for (key, role) in [(&bank, "bank"), (&user, "user"), (&vendor, "vendor")] {
        let issued = env.json(&[
            "admin",
            "issue-cert",
            "--role",
            role,
            "--name",
            role,
            &key.pubkey.to_string(),
            "--keypair",
            p(&admin.path),
        ]);
        certificates.push(issued["certificate"].clone());
    }
    let registry = env.root.join("registry.json");
    let registry_json = serde_json::json!({ "authorities": [admin.pubkey.to_string()], "certificates": certificates });
    std::fs::write(&registry, registry_json.to_string()).unwrap();

    env.ok(&[
        "bank",
        "mint",
        "--auditor",
        &auditor.pubkey.to_string(),
        "--count",
        "20",
        "--value",
        "10",
        "--url",
        &url,
        "--keypair",
        p(&bank.path),
    ]);
    env.ok(&[
        "bank",
        "give",
        "--to",
        &user.pubkey.to_string(),
        "--count",
        "10",
        "--url",
        &url,
        "--keypair",
        p(&bank.path),
    ]);
    let payment = env.root.join("payment.json");
    env.ok(&[
        "user",
        "pay",
        "--vendor-cert",
        p(&env.cert_path(&vendor.pubkey)),
        "--amount",
        "3",
        "--info",
        "book",
        "--out",
        p(&payment),
        "--keypair",
        p(&user.path),
    ]);

    let (_service, line) = spawn_until(
        &[
            "auditor",
            "serve",
            "--data-dir",
            p(&env.root.join("auditor")),
            "--listen",
            "127.0.0.1:0",
            "--keypair",
            p(&auditor.path),
            "--registry",
            p(&registry),
            "--ledger",
            "rpc",
            "--url",
            &url,
            "--auditor-token",
            &auditor_token.to_string(),
        ],
        "listening on",
    );
    let service_url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();
    let answer = env.json(&[
        "vendor",
        "submit",
        "--payment",
        p(&payment),
        "--auditor-url",
        &service_url,
        "--auditor",
        &auditor.pubkey.to_string(),
        "--keypair",
        p(&vendor.path),
    ]);
    assert_eq!(
        answer["answer"]["response"]["verdict"]["verdict"], "deliver",
        "{answer}"
    );
    assert_eq!(answer["answer"]["final"], true);
    assert_eq!(
        answer["answer"]["response"]["auditor"],
        auditor.pubkey.to_string()
    );
    let id = answer["transaction_id"].as_str().unwrap().to_owned();
    let status = env.json(&[
        "vendor",
        "status",
        &id,
        "--auditor-url",
        &service_url,
        "--auditor",
        &auditor.pubkey.to_string(),
        "--keypair",
        p(&vendor.path),
    ]);
    assert_eq!(status["answer"], answer["answer"]);
    // An answer checked against another auditor key is refused.
    let error = env.fails(&[
        "vendor",
        "status",
        &id,
        "--auditor-url",
        &service_url,
        "--auditor",
        &admin.pubkey.to_string(),
        "--keypair",
        p(&vendor.path),
    ]);
    assert!(error.contains("auditor"), "{error}");
}

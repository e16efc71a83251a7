//! `mupib auditor serve` as a process on the embedded ledger: killed with SIGKILL mid-traffic,
//! restarted on the same data directory, inspected with `mupib auditor status / trace / settle`
//! as the operator (the token in the data directory), refusing callers without credentials,
//! revoking a vendor while running; and its `--help` naming every limit with its default.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ed25519_dalek::SigningKey;
use mupib_chain::deploy::Deployment;
use mupib_chain::ledger::{EmbeddedLedger, Ledger};
use mupib_chain::spl;
use mupib_client::vendor::VendorClient;
use mupib_protocol::cert::{pubkey_of, write_keypair_file, Certificate, Role};
use mupib_protocol::response::Verdict;
use mupib_protocol::token::Token;
use mupib_protocol::transaction::PaymentTransaction;
use mupib_protocol::wire::SubmitAnswer;
use mupib_service::files::{PayoutAccountsFile, RegistryFile};
use solana_sdk::signature::{Keypair, Signer};

const VALUE: u64 = 1_000;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn verdict(answer: &SubmitAnswer) -> &Verdict {
    &answer.response.verdict
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::new()
}

fn wait_for<T>(mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..300 {
        if let Some(value) = check() {
            return value;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("condition not reached within 15 s");
}

struct Party {
    key: SigningKey,
    cert: Certificate,
}

/// A child `mupib auditor serve` killed on drop (SIGKILL: no graceful shutdown).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_serve(args: &[String], url: &str) -> Child {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_mupib"))
        .arg("auditor")
        .arg("serve")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let child = Child(child);
    wait_for(|| {
        http()
            .get(format!("{url}/health"))
            .send()
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    });
    child
}

#[test]
fn serve_binary_on_the_embedded_ledger_killed_mid_traffic_restarts_and_finalizes_once() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("auditor");
    let authority = key(1);
    let user_key = key(70);
    let vendor_key = key(71);
    let vendor_account = Keypair::new();
    // The chain: a deployment, a sealed batch of 12 tokens, the vendor's token account.
    let (deployment, tokens) = {
        let ledger = EmbeddedLedger::open(data_dir.join("ledger")).unwrap();
        let deployment = Deployment::setup(&ledger, 6, 1_000_000).unwrap();
        let (tokens, _) = deployment.issue_batch(&ledger, 1, 12, VALUE, true).unwrap();
        spl::create_token_account(
            &ledger,
            &deployment.auditor,
            &vendor_account,
            &deployment.mint,
            &pubkey_of(&vendor_key),
        )
        .unwrap();
        (deployment, tokens)
    };
    let bank_key = deployment.bank_key();
    let issue = |k: &SigningKey, role, name: &str| {
        Certificate::issue(&authority, pubkey_of(k), role, name, 0, i64::MAX / 2).unwrap()
    };
    let user_cert = issue(&user_key, Role::User, "user");
    let vendor_cert = issue(&vendor_key, Role::Vendor, "vendor");
    let registry = RegistryFile {
        authorities: vec![pubkey_of(&authority).to_string()],
        certificates: vec![
            issue(&bank_key, Role::Bank, "bank"),
            user_cert.clone(),
            vendor_cert.clone(),
        ],
        revoked: vec![],
    };
    std::fs::write(
        dir.path().join("registry.json"),
        serde_json::to_string(&registry).unwrap(),
    )
    .unwrap();
    let payout_accounts = PayoutAccountsFile {
        vendors: [(
            pubkey_of(&vendor_key).to_string(),
            vendor_account.pubkey().to_string(),
        )]
        .into_iter()
        .collect(),
    };
    std::fs::write(
        dir.path().join("payouts.json"),
        serde_json::to_string(&payout_accounts).unwrap(),
    )
    .unwrap();
    let auditor_key = deployment.auditor_key();
    write_keypair_file(&auditor_key, dir.path().join("auditor.json")).unwrap();

    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let path = |name: &str| dir.path().join(name).display().to_string();
    let args: Vec<String> = vec![
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--keypair".into(),
        path("auditor.json"),
        "--registry".into(),
        path("registry.json"),
        "--auditor-token".into(),
        deployment.auditor_token.to_string(),
        "--payout-accounts".into(),
        path("payouts.json"),
        "--initial-block-size".into(),
        "4".into(),
        "--settle-interval-secs".into(),
        "1".into(),
    ];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let vendor = VendorClient::new(
        url.clone(),
        vendor_key,
        vendor_cert,
        pubkey_of(&auditor_key),
    )
    .unwrap();
    let user = Party {
        key: user_key,
        cert: user_cert,
    };
    let pay_now = |token: Token, info: &str| {
        let payment = PaymentTransaction::user_sign(
            &user.key,
            user.cert.clone(),
            vendor.certificate().clone(),
            now,
            vec![token],
            info,
        )
        .unwrap();
        vendor.countersign(payment).unwrap()
    };

    let child = spawn_serve(&args, &url);
    // W0 = 4: three deliveries, the fourth completes a block, then kill -9 while it may be on
    // its way to the chain.
    let txs: Vec<PaymentTransaction> = tokens
        .iter()
        .take(8)
        .enumerate()
        .map(|(i, t)| pay_now(*t, &format!("item {i}")))
        .collect();
    for (i, tx) in txs.iter().take(4).enumerate() {
        let answer = vendor.submit(tx).unwrap();
        let expected = if i < 3 {
            Verdict::Deliver
        } else {
            Verdict::Wait
        };
        assert_eq!(verdict(&answer), &expected, "payment {i}");
    }
    drop(child);

    // Restart on the same data directory: the block is resumed, the waiting vendor is answered.
    let child = spawn_serve(&args, &url);
    let final_answer = vendor
        .await_final(&txs[3].id().unwrap(), Duration::from_secs(60))
        .unwrap();
    assert_eq!(verdict(&final_answer), &Verdict::Deliver);
    for tx in &txs[4..] {
        let answer = vendor.submit(tx).unwrap();
        let answer = if answer.is_final {
            answer
        } else {
            vendor
                .await_final(&tx.id().unwrap(), Duration::from_secs(60))
                .unwrap()
        };
        assert_eq!(verdict(&answer), &Verdict::Deliver);
    }
    // The chain paid the auditor for 8 valid tokens; the vendor is owed 8 × v × 80 %, paid once.
    let owed = 8 * VALUE * 8 / 10;
    // The vendor reads its own account (a signed request).
    let account = wait_for(|| {
        let account = vendor.account().unwrap();
        (account.settled == owed).then_some(account)
    });
    assert_eq!(account.accrued, owed);
    assert_eq!(account.double_sellings, 0);

    // The inspection commands against the running service, as the operator: the token is read
    // from the data directory `serve` created it in.
    let data_dir_arg = data_dir.display().to_string();
    let cli = |args: &[&str]| -> serde_json::Value {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_mupib"))
            .arg("auditor")
            .args(args)
            .args(["--url", url.as_str(), "--data-dir", &data_dir_arg, "--json"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let status = cli(&["status"]);
    assert_eq!(status["auditor"], pubkey_of(&auditor_key).to_string());
    assert_eq!(status["pending_blocks"], serde_json::json!([]));
    assert_eq!(status["pending_payouts"], serde_json::json!([]));
    let block_id = final_answer.response.block_id.unwrap();
    let trace = cli(&["trace", &txs[3].id().unwrap().to_hex()]);
    assert_eq!(trace["status"], "delivered");
    assert_eq!(trace["block_id"], block_id);
    let block = cli(&["trace", &block_id.to_string()]);
    assert_eq!(block["state"], "verified");
    assert_eq!(block["decisions"]["valid"], 4);
    let token = cli(&["trace", &tokens[0].id().to_string()]);
    assert_eq!(token["uses"][0]["decision"], "valid");
    let settle = cli(&["settle"]);
    assert!(settle["blocked"].is_null(), "{settle}");
    assert_eq!(settle["unpayable"], serde_json::json!([]));

    // Without the token the inspection commands say what they need; without credentials the
    // routes answer 401, with a wrong token 403; /health stays open.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mupib"))
        .args(["auditor", "status", "--url", url.as_str()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("--data-dir"), "{error}");
    for path in ["/v1/status", "/metrics", "/v1/blocks/0"] {
        let status = http().get(format!("{url}{path}")).send().unwrap().status();
        assert_eq!(status.as_u16(), 401, "{path}");
        let status = http()
            .get(format!("{url}{path}"))
            .bearer_auth("0".repeat(64))
            .send()
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 403, "{path}");
    }
    let status = http()
        .post(format!("{url}/v1/settle"))
        .send()
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 401);
    assert!(http()
        .get(format!("{url}/health"))
        .send()
        .unwrap()
        .status()
        .is_success());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data_dir.join("operator.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the operator token is private");
    }

    // The operator revokes the vendor while the service runs: its next request is refused.
    let revoked = cli(&["revoke", &vendor.vendor().to_string()]);
    assert_eq!(revoked["newly_revoked"], true, "{revoked}");
    match vendor.account() {
        Err(mupib_client::vendor::VendorError::Refused { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (403, "unknown_caller"))
        }
        other => panic!("a revoked vendor was served: {other:?}"),
    }
    drop(child);
    let ledger = EmbeddedLedger::open(data_dir.join("ledger")).unwrap();
    let data = ledger
        .get_account(&vendor_account.pubkey())
        .unwrap()
        .unwrap()
        .data;
    assert_eq!(
        u64::from_le_bytes(data[64..72].try_into().unwrap()),
        owed,
        "paid on-chain exactly once"
    );
}

/// `mupib auditor serve --help` names every limit with its default, the same value the service
/// uses when the flag is not given.
#[test]
fn serve_help_documents_every_limit_and_its_default() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mupib"))
        .args(["auditor", "serve", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    let limits: [(&str, String); 17] = [
        (
            "--max-connections",
            mupib_service::DEFAULT_MAX_CONNECTIONS.to_string(),
        ),
        (
            "--listen-backlog",
            mupib_service::DEFAULT_LISTEN_BACKLOG.to_string(),
        ),
        (
            "--header-timeout-secs",
            mupib_service::DEFAULT_HEADER_READ_TIMEOUT_SECS.to_string(),
        ),
        (
            "--max-header-bytes",
            mupib_service::DEFAULT_MAX_HEADER_BYTES.to_string(),
        ),
        (
            "--body-timeout-secs",
            mupib_service::DEFAULT_BODY_TIMEOUT_SECS.to_string(),
        ),
        (
            "--max-body-bytes",
            mupib_service::DEFAULT_MAX_BODY_BYTES.to_string(),
        ),
        (
            "--max-in-flight",
            mupib_service::DEFAULT_MAX_IN_FLIGHT.to_string(),
        ),
        (
            "--max-long-polls",
            mupib_service::DEFAULT_MAX_LONG_POLLS.to_string(),
        ),
        (
            "--vendor-rate",
            mupib_service::DEFAULT_VENDOR_RATE.to_string(),
        ),
        (
            "--vendor-burst",
            mupib_service::DEFAULT_VENDOR_BURST.to_string(),
        ),
        (
            "--request-window-secs",
            mupib_service::DEFAULT_REQUEST_WINDOW_SECS.to_string(),
        ),
        (
            "--nonce-capacity",
            mupib_service::DEFAULT_NONCE_CAPACITY.to_string(),
        ),
        (
            "--registry-poll-ms",
            mupib_service::DEFAULT_REGISTRY_POLL_MS.to_string(),
        ),
        ("--block-queue", "1024".to_owned()),
        ("--group-max", mupib_service::DEFAULT_GROUP_MAX.to_string()),
        (
            "--group-window-ms",
            mupib_service::DEFAULT_GROUP_WINDOW_MS.to_string(),
        ),
        (
            "--intake-queue",
            mupib_service::DEFAULT_INTAKE_QUEUE.to_string(),
        ),
    ];
    for (flag, default) in limits {
        // clap prints the flag, its description, then `[default: N]` before the next flag.
        let start = help
            .find(&format!("{flag} <"))
            .unwrap_or_else(|| panic!("{flag} missing from --help:\n{help}"));
        let rest = &help[start..];
        let end = ["\n      --", "\n  -"]
            .iter()
            .filter_map(|next| rest[2..].find(next).map(|i| i + 2))
            .min()
            .unwrap_or(rest.len());
        let entry = &rest[..end];
        assert!(
            entry.contains(&format!("[default: {default}]")),
            "{flag} does not show its default {default}:\n{entry}"
        );
        assert!(
            entry.split_whitespace().count() > 6,
            "{flag} is not described:\n{entry}"
        );
    }
}

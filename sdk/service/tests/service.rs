//! The auditor service over real HTTP on 127.0.0.1 (ephemeral ports), in-process, with the
//! simulated chain for block verification and the auditor's test payout chain
//! (`mupib_auditor::testkit`), which keeps the program's rules for the payout record.
//! Settlement's own exactly-once tests are in `sdk/auditor/tests/settlement.rs`; the payout
//! transactions on the embedded ledger are tested in `sdk/chain`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use mupib_auditor::store::{PostgresOptions, TestPostgres};
use mupib_auditor::testkit::FakePayouts;
use mupib_auditor::{AuditorConfig, SimulatedChain};
use mupib_client::vendor::{VendorClient, VendorError};
use mupib_protocol::batch::{BatchDirectory, BatchLookupError, BatchTerms};
use mupib_protocol::block::{BlockSubmission, BlockVerification, BlockVerifier, VerifierError};
use mupib_protocol::cert::{pubkey_of, Certificate, Registry, Role};
use mupib_protocol::decision::Decision;
use mupib_protocol::money::Withholding;
use mupib_protocol::reject::RejectReason;
use mupib_protocol::response::{AuditorResponse, ResponseError, Verdict};
use mupib_protocol::token::Token;
use mupib_protocol::token::TokenRef;
use mupib_protocol::transaction::{PaymentTransaction, TransactionId};
use mupib_protocol::trust::{TrustModel, TrustScale};
use mupib_protocol::wire::{BatchItem, SubmitAnswer};
use mupib_protocol::Pubkey;
use mupib_service::{RunningService, ServiceConfig, ServiceParts, StoreChoice};

const NOW: i64 = 1_700_000_000;
const VALUE: u64 = 1_000;
const BATCH: u64 = 7;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// The chain, shared across service restarts.
#[derive(Clone)]
struct SharedChain(Arc<Mutex<SimulatedChain>>);

impl Default for SharedChain {
    /// A chain that remembers every block's decisions (resubmission after a restart is safe).
    fn default() -> Self {
        SharedChain(Arc::new(Mutex::new(SimulatedChain::new())))
    }
}

impl BlockVerifier for SharedChain {
    fn verify(&mut self, block: &BlockSubmission) -> Result<BlockVerification, VerifierError> {
        self.0.lock().unwrap().verify(block)
    }
}

struct World {
    authority: SigningKey,
    auditor: SigningKey,
    registry: Registry,
    chain: SharedChain,
    payouts: FakePayouts,
    tokens: Vec<Token>,
    next_token: usize,
    /// The batches intake checks tokens against (`None`: no check).
    batches: Option<Directory>,
}

/// Batch terms by (bank, batch id), as the chain would publish them.
#[derive(Clone, Default)]
struct Directory(HashMap<(Pubkey, u64), BatchTerms>);

impl BatchDirectory for Directory {
    fn batch_terms(
        &self,
        bank: &Pubkey,
        batch_id: u64,
    ) -> Result<Option<BatchTerms>, BatchLookupError> {
        Ok(self.0.get(&(*bank, batch_id)).copied())
    }
}

impl World {
    fn new(token_count: u32) -> World {
        let authority = key(1);
        let bank = key(2);
        let auditor = key(3);
        let mut registry = Registry::with_authorities([pubkey_of(&authority)]).unwrap();
        registry
            .register(
                Certificate::issue(
                    &authority,
                    pubkey_of(&bank),
                    Role::Bank,
                    "bank",
                    0,
                    i64::MAX / 2,
                )
                .unwrap(),
            )
            .unwrap();
        let tokens = Token::sign_batch(&bank, BATCH, token_count, VALUE, NOW - 100);
        let chain = SharedChain::default();
        chain.0.lock().unwrap().publish_batch(
            pubkey_of(&bank),
            BATCH,
            VALUE,
            tokens.iter().map(Token::token_digest16).collect(),
        );
        World {
            authority,
            auditor,
            registry,
            chain,
            payouts: FakePayouts::funded_for(pubkey_of(&key(3)), 1_000_000_000),
            tokens,
            next_token: 0,
            batches: None,
        }
    }

    fn certificate(&self, who: &SigningKey, role: Role, name: &str) -> Certificate {
        Certificate::issue(&self.authority, pubkey_of(who), role, name, 0, i64::MAX / 2).unwrap()
    }

    /// Registers and returns a certificate.
    fn enroll(&mut self, who: &SigningKey, role: Role, name: &str) -> Certificate {
        let cert = self.certificate(who, role, name);
        self.registry.register(cert.clone()).unwrap();
        cert
    }

    fn take_tokens(&mut self, count: usize) -> Vec<Token> {
        let tokens = self.tokens[self.next_token..self.next_token + count].to_vec();
        self.next_token += count;
        tokens
    }

    fn start(&self, data_dir: Option<std::path::PathBuf>, w0: u64) -> RunningService {
        self.start_with(data_dir, w0, Box::new(self.chain.clone()), |_| {})
    }

    fn start_with(
        &self,
        data_dir: Option<std::path::PathBuf>,
        w0: u64,
        verifier: Box<dyn BlockVerifier + Send>,
        tweak: impl FnOnce(&mut ServiceConfig),
    ) -> RunningService {
        let engine = AuditorConfig {
            withholding: Withholding::from_bps(2000).unwrap(),
            trust_model: TrustModel::Neutral,
            trust_scale: TrustScale::Initial,
            initial_block_size: w0,
            paper_mode: false,
        };
        let mut config =
            ServiceConfig::new(data_dir, SocketAddr::from(([127, 0, 0, 1], 0)), engine);
        config.max_body_bytes = 16 * 1024;
        config.retry_interval = Duration::from_millis(100);
        config.settle_interval = Some(Duration::from_millis(200));
        tweak(&mut config);
        RunningService::start(
            config,
            ServiceParts {
                auditor_key: self.auditor.clone(),
                registry: self.registry.clone(),
                verifier,
                payouts: Some(Box::new(self.payouts.clone())),
                batches: self
                    .batches
                    .clone()
                    .map(|directory| Box::new(directory) as Box<dyn BatchDirectory>),
                clock: Arc::new(|| NOW),
            },
        )
        .unwrap()
    }
}

struct Party {
    key: SigningKey,
    cert: Certificate,
}

fn pay(user: &Party, vendor: &VendorClient, tokens: Vec<Token>, info: &str) -> PaymentTransaction {
    let payment = PaymentTransaction::user_sign(
        &user.key,
        user.cert.clone(),
        vendor.certificate().clone(),
        NOW,
        tokens,
        info,
    )
    .unwrap();
    vendor.countersign(payment).unwrap()
}

fn user(world: &mut World, seed: u8) -> Party {
    let key = key(seed);
    let cert = world.enroll(&key, Role::User, &format!("user {seed}"));
    Party { key, cert }
}

fn verdict(answer: &SubmitAnswer) -> &Verdict {
    &answer.response.verdict
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::new()
}

/// A vendor's client signing with the pinned clock of the test services.
fn vendor_client(
    url: impl Into<String>,
    key: SigningKey,
    cert: Certificate,
    auditor: Pubkey,
) -> Result<VendorClient, VendorError> {
    VendorClient::new(url, key, cert, auditor).map(|client| client.with_clock(Arc::new(|| NOW)))
}

/// GET `path` as the operator.
fn op_get(service: &RunningService, path: &str) -> (u16, serde_json::Value) {
    let response = http()
        .get(format!("{}{path}", service.url()))
        .bearer_auth(service.operator_token())
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap())
}

fn metric(service: &RunningService, line_prefix: &str) -> u64 {
    let text = http()
        .get(format!("{}/metrics", service.url()))
        .bearer_auth(service.operator_token())
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|line| {
            line.strip_prefix(line_prefix)
                .map(|v| v.trim().parse::<u64>().unwrap())
        })
        .unwrap_or_else(|| panic!("metric {line_prefix} missing in\n{text}"))
}

// ---------------------------------------------------------------------------------------------
// Honest flow
// ---------------------------------------------------------------------------------------------

#[test]
fn honest_deliveries_then_waiting_transaction_finalized_by_block_decisions() {
    let mut world = World::new(32);
    // Certificates must be registered before the service starts (its registry is a snapshot).
    let alice = user(&mut world, 10);
    let vendor_key = key(20);
    let vendor_cert = world.enroll(&vendor_key, Role::Vendor, "vendor");
    let service = world.start(None, 5);
    let vendor = vendor_client(
        service.url(),
        vendor_key,
        vendor_cert,
        pubkey_of(&world.auditor),
    )
    .unwrap();

    // W0 = 5: four one-token payments are delivered at once, the fifth completes the block.
    let mut ids = Vec::new();
    for i in 0..4 {
        let tx = pay(&alice, &vendor, world.take_tokens(1), &format!("item {i}"));
        let answer = vendor.submit(&tx).unwrap();
        assert_eq!(verdict(&answer), &Verdict::Deliver, "payment {i}");
        assert!(answer.is_final);
        ids.push(tx.id().unwrap());
    }
    let fifth = pay(&alice, &vendor, world.take_tokens(1), "item 4");
    let answer = vendor.submit(&fifth).unwrap();
    assert_eq!(verdict(&answer), &Verdict::Wait);
    assert!(!answer.is_final);
    let block_id = answer
        .response
        .block_id
        .expect("a waiting answer names its block");

    let last = vendor
        .await_final(&fifth.id().unwrap(), Duration::from_secs(30))
        .unwrap();
    assert_eq!(verdict(&last), &Verdict::Deliver);
    assert_eq!(last.response.block_id, Some(block_id));

    // The block: five valid decisions, W unchanged.
    let (status, block) = op_get(&service, &format!("/v1/blocks/{block_id}"));
    assert_eq!(status, 200);
    assert_eq!(block["state"], "verified");
    assert_eq!(block["decisions"]["valid"], 5);
    assert_eq!(block["transactions"].as_array().unwrap().len(), 5);
    let view = vendor.user(&alice.cert.subject).unwrap();
    assert_eq!(view.block_size, 5);
    assert_eq!(view.blocks_valid, 1);
    assert!(!view.suspended);

    // The vendor is owed 5 × v × (1 − 20 %) and the settlement worker pays it on-chain.
    let expected = 5 * VALUE * 8 / 10;
    let paid = wait_for(|| {
        let (_, v) = op_get(&service, &format!("/v1/vendors/{}", vendor.vendor()));
        (v["settled"] == expected).then_some(v)
    });
    assert_eq!(paid["accrued"], expected);
    assert_eq!(world.payouts.chain().balances[&vendor.vendor()], expected);

    // Traces: the first token's use and decision, the transaction, metrics.
    let token = world.tokens[0].id();
    let (status, trace) = op_get(&service, &format!("/v1/tokens/{token}"));
    assert_eq!(status, 200);
    assert_eq!(trace["seen"], true);
    assert_eq!(trace["uses"][0]["decision"], "valid");
    assert_eq!(trace["uses"][0]["transaction_id"], ids[0].to_hex());
    let (_, tx_trace) = op_get(&service, &format!("/v1/transactions/{}", ids[0]));
    assert_eq!(tx_trace["status"], "delivered");
    assert_eq!(tx_trace["block_id"], block_id);
    assert_eq!(
        metric(&service, "mupib_intake_total{verdict=\"deliver\"}"),
        4
    );
    assert_eq!(metric(&service, "mupib_intake_total{verdict=\"wait\"}"), 1);
    assert_eq!(metric(&service, "mupib_decisions_total{code=\"valid\"}"), 5);
    assert_eq!(metric(&service, "mupib_blocks_total{result=\"valid\"}"), 1);
    assert!(metric(&service, "mupib_payout_amount_total") == expected);
    service.shutdown().unwrap();
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

// ---------------------------------------------------------------------------------------------
// Attacks
// ---------------------------------------------------------------------------------------------

#[test]
fn double_spender_block_rejected_with_decisions_in_reason_and_block_size_shrinks() {
    let mut world = World::new(32);
    let mallory = user(&mut world, 11);
    let vendor_key = key(21);
    let vendor_cert = world.enroll(&vendor_key, Role::Vendor, "vendor");
    let service = world.start(None, 4);
    let vendor = vendor_client(
        service.url(),
        vendor_key,
        vendor_cert,
        pubkey_of(&world.auditor),
    )
    .unwrap();

    // Mallory's token 2 was already spent through another auditor: the chain says duplicate.
    let tokens = world.take_tokens(4);
    let spent_elsewhere = tokens[2];
    world
        .chain
        .0
        .lock()
        .unwrap()
        .verify(&BlockSubmission {
            block_id: 9_999,
            user: Pubkey::new_unique(),
            entries: vec![TokenRef {
                id: spent_elsewhere.id(),
                value: spent_elsewhere.value,
                digest: spent_elsewhere.token_digest16(),
            }],
        })
        .unwrap();

    let mut last = None;
    for (i, token) in tokens.into_iter().enumerate() {
        let tx = pay(&mallory, &vendor, vec![token], &format!("item {i}"));
        let answer = vendor.submit(&tx).unwrap();
        if i < 3 {
            assert_eq!(verdict(&answer), &Verdict::Deliver, "payment {i}");
        } else {
            assert_eq!(verdict(&answer), &Verdict::Wait);
        }
        last = Some(tx.id().unwrap());
    }
    let final_answer = vendor
        .await_final(&last.unwrap(), Duration::from_secs(30))
        .unwrap();
    match verdict(&final_answer) {
        Verdict::Reject(RejectReason::InvalidTokensInBlock { decisions, .. }) => {
            let invalid: Vec<_> = decisions
                .iter()
                .filter(|d| !d.decision.is_valid())
                .collect();
            assert_eq!(invalid.len(), 1);
            assert_eq!(invalid[0].token, spent_elsewhere.id());
            assert_eq!(invalid[0].decision, Decision::Duplicate);
        }
        other => panic!("expected a rejection naming the duplicate, got {other:?}"),
    }
    // Eq. 7, neutral, N = W0 = 4: W = ⌊4 · T(1)/T(0)⌋ = ⌊4 · (4/6)/(5/6)⌋ = 3.
    let view = vendor.user(&mallory.cert.subject).unwrap();
    assert_eq!(view.invalid_total, 1);
    assert_eq!(view.block_size, 3);
    assert_eq!(view.blocks_invalid, 1);
    assert!(view.trust < 5.0 / 6.0);
    assert_eq!(
        metric(&service, "mupib_decisions_total{code=\"duplicate\"}"),
        1
    );
    assert_eq!(
        metric(&service, "mupib_blocks_total{result=\"invalid\"}"),
        1
    );
    service.shutdown().unwrap();
}

/// An honest retry — the same transaction with the same bytes, after a lost answer or a
/// crash — gets the stored signed answer back: no flag, no new record, nothing accrued twice.
#[test]
fn resubmitting_the_same_transaction_returns_the_stored_answer_and_pays_once() {
    let mut world = World::new(8);
    let alice = user(&mut world, 12);
    let vendor_key = key(22);
    let vendor_cert = world.enroll(&vendor_key, Role::Vendor, "vendor");
    let service = world.start(None, 10);
    let vendor = vendor_client(
        service.url(),
        vendor_key,
        vendor_cert,
        pubkey_of(&world.auditor),
    )
    .unwrap();

    let tx = pay(&alice, &vendor, world.take_tokens(2), "one sale");
    let id = tx.id().unwrap();
    let first = vendor.submit(&tx).unwrap();
    assert_eq!(verdict(&first), &Verdict::Deliver);
    let (_, status_before) = op_get(&service, "/v1/status");
    // The same signed transaction presented again, twice.
    for _ in 0..2 {
        let again = vendor
            .submit_raw(serde_json::to_vec(&tx).unwrap(), &id)
            .unwrap();
        assert_eq!(again, first, "the stored signed answer, byte for byte");
    }
    let (_, account) = op_get(&service, &format!("/v1/vendors/{}", vendor.vendor()));
    assert_eq!(account["double_sellings"], 0);
    assert_eq!(account["accrued"], 2 * VALUE * 8 / 10, "paid once");
    let (_, status_after) = op_get(&service, "/v1/status");
    assert_eq!(status_after["misbehaviour"], status_before["misbehaviour"]);
    let (_, user_view) = op_get(&service, &format!("/v1/users/{}", alice.cert.subject));
    assert_eq!(user_view["queued_tokens"], 2, "the retry queued nothing");
    assert_eq!(metric(&service, "mupib_resubmissions_total"), 2);
    assert_eq!(
        metric(
            &service,
            "mupib_intake_total{verdict=\"reject\",reason=\"double_selling\"}"
        ),
        0
    );
    service.shutdown().unwrap();
}

/// A vendor re-countersigns a sold payment with a fresh nonce (another valid signature, so other
/// bytes under the same transaction id) and presents it again: double selling, the vendor is
/// flagged, nothing is paid twice and the original answer still stands.
#[test]
fn sold_payment_re_countersigned_is_double_selling_and_flags_the_vendor() {
    use ed25519_dalek::hazmat::{raw_sign, ExpandedSecretKey};
    use ed25519_dalek::Verifier;
    use sha2::{Digest, Sha512};

    let mut world = World::new(8);
    let alice = user(&mut world, 12);
    let vendor_key = key(22);
    let vendor_cert = world.enroll(&vendor_key, Role::Vendor, "vendor");
    let service = world.start(None, 10);
    let vendor = vendor_client(
        service.url(),
        vendor_key.clone(),
        vendor_cert,
        pubkey_of(&world.auditor),
    )
    .unwrap();
    let tx = pay(&alice, &vendor, world.take_tokens(2), "one sale");
    let id = tx.id().unwrap();
    assert_eq!(verdict(&vendor.submit(&tx).unwrap()), &Verdict::Deliver);

    // Another valid countersignature of the same bytes: same scalar, another nonce prefix.
    let mut esk = ExpandedSecretKey::from_bytes(&Sha512::digest(vendor_key.to_bytes()).into());
    esk.hash_prefix = [7; 32];
    let message = tx.vendor_signed_bytes().unwrap();
    let resigned = raw_sign::<Sha512>(&esk, &message, &vendor_key.verifying_key());
    assert!(vendor_key
        .verifying_key()
        .verify(&message, &resigned)
        .is_ok());
    let mut replay = tx.clone();
    replay.vendor_signature = resigned.to_bytes();
    assert_ne!(replay.vendor_signature, tx.vendor_signature);
    assert_eq!(replay.id().unwrap(), id, "the same transaction id");

    let answer = vendor
        .submit_raw(serde_json::to_vec(&replay).unwrap(), &id)
        .unwrap();
    assert_eq!(
        verdict(&answer),
        &Verdict::Reject(RejectReason::DoubleSelling {
            vendor: vendor.vendor(),
            transaction_id: id
        })
    );
    let (_, account) = op_get(&service, &format!("/v1/vendors/{}", vendor.vendor()));
    assert_eq!(account["double_sellings"], 1);
    assert_eq!(account["accrued"], 2 * VALUE * 8 / 10, "paid once");
    assert_eq!(
        verdict(&vendor.status(&id).unwrap().unwrap()),
        &Verdict::Deliver,
        "the original answer still stands"
    );
    assert_eq!(
        metric(
            &service,
            "mupib_intake_total{verdict=\"reject\",reason=\"double_selling\"}"
        ),
        1
    );
    service.shutdown().unwrap();
}

#[test]
fn forged_token_rejected_at_intake_and_counted_as_misbehaviour() {
    let mut world = World::new(8);
    let mallory = user(&mut world, 13);
    let vendor_key = key(23);
    let vendor_cert = world.enroll(&vendor_key, Role::Vendor, "vendor");
    let service = world.start(None, 10);
    let vendor = vendor_client(
        service.url(),
        vendor_key,
        vendor_cert,
        pubkey_of(&world.auditor),
    )
    .unwrap();

    // A genuine token whose serial is changed after the bank signed it.
    let mut forged = world.take_tokens(1)[0];
    forged.serial = 77;
    let tx = pay(&mallory, &vendor, vec![forged], "forged");
    let answer = vendor.submit(&tx).unwrap();
    assert_eq!(
        verdict(&answer),
        &Verdict::Reject(RejectReason::ForgedToken { token: forged.id() })
    );
    assert!(answer.is_final);
    let view = vendor.user(&mallory.cert.subject).unwrap();
    assert_eq!(view.invalid_total, 1);
    assert_eq!(view.misbehaviour_count, 1);
    assert!(view.block_size < 10);
    let (_, account) = op_get(&service, &format!("/v1/vendors/{}", vendor.vendor()));
    assert_eq!(account["accrued"], 0);
    assert_eq!(
        metric(
            &service,
            "mupib_intake_total{verdict=\"reject\",reason=\"forged_token\"}"
        ),
        1
    );
    service.shutdown().unwrap();
}

#[test]
fn suspended_user_is_refused() {
    let mut world = World::new(8);
    let mallory = user(&mut world, 14);
    let vendor_key = key(24);
    let vendor_cert = world.enroll(&vendor_key, Role::Vendor, "vendor");
    // W0 = 2, neutral: two forged tokens take W to ⌊2·(2/3)⌋ = 1, then ⌊1·(1/2)⌋ = 0.
    let service = world.start(None, 2);
    let vendor = vendor_client(
        service.url(),
        vendor_key,
        vendor_cert,
        pubkey_of(&world.auditor),
    )
    .unwrap();
    for serial in [90, 91] {
        let mut forged = world.take_tokens(1)[0];
        forged.serial = serial;
        let answer = vendor
            .submit(&pay(&mallory, &vendor, vec![forged], "forged"))
            .unwrap();
        assert!(matches!(
            verdict(&answer),
            Verdict::Reject(RejectReason::ForgedToken { .. })
        ));
    }
    let view = vendor.user(&mallory.cert.subject).unwrap();
    assert!(view.suspended);
    assert_eq!(view.block_size, 0);
    // A genuine token is refused now.
    let answer = vendor
        .submit(&pay(&mallory, &vendor, world.take_tokens(1), "honest now"))
        .unwrap();
    assert_eq!(
        verdict(&answer),
        &Verdict::Reject(RejectReason::UserSuspended {
            user: mallory.cert.subject
        })
    );
    let (_, account) = op_get(&service, &format!("/v1/vendors/{}", vendor.vendor()));
    assert_eq!(account["accrued"], 0);
    service.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Bad input at every boundary: a clear error, no state change
// ---------------------------------------------------------------------------------------------

/// Observable state that must not move when a request is refused.
fn snapshot(service: &RunningService) -> (serde_json::Value, u64, u64, u64) {
    let (_, status) = op_get(service, "/v1/status");
    (
        status,
        metric(service, "mupib_intake_total{verdict=\"deliver\"}"),
        metric(service, "mupib_intake_total{verdict=\"wait\"}"),
        metric(
            service,
            "mupib_intake_total{verdict=\"reject\",reason=\"forged_token\"}",
        ),
    )
}

/// POST `body` to `/v1/transactions`, signed by `vendor`.
fn post(vendor: &VendorClient, body: Vec<u8>) -> (u16, serde_json::Value) {
    let (status, bytes) = vendor
        .request_raw(reqwest::Method::POST, "/v1/transactions", Some(&body))
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[test]
fn malformed_json_oversized_body_and_bad_parameters_are_refused_without_state_change() {
    let mut world = World::new(8);
    let alice = user(&mut world, 15);
    let vendor_key = key(25);
    let vendor_cert = world.enroll(&vendor_key, Role::Vendor, "vendor");
    let service = world.start(None, 10);
    let vendor = vendor_client(
        service.url(),
        vendor_key,
        vendor_cert,
        pubkey_of(&world.auditor),
    )
    .unwrap();
    let before = snapshot(&service);

    let (status, body) = post(&vendor, b"{\"user_cert\": 12".to_vec());
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "malformed_json");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("payment transaction"));

    let (status, body) = post(&vendor, vec![b' '; 64 * 1024]);
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "payload_too_large");

    let (status, body) = op_get(&service, "/v1/transactions/not-hex/answer");
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "bad_parameter");
    let (status, body) = op_get(
        &service,
        &format!("/v1/transactions/{}/answer", TransactionId([7; 32])),
    );
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, _) = op_get(&service, &format!("/v1/users/{}", alice.cert.subject));
    assert_eq!(status, 404, "the user was never seen");
    let (status, body) = op_get(
        &service,
        &format!(
            "/v1/transactions/{}/final?wait=soon",
            TransactionId([7; 32])
        ),
    );
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "bad_parameter");
    let (status, _) = op_get(&service, "/v1/blocks/12345");
    assert_eq!(status, 404);
    let (status, _) = op_get(&service, "/v1/nowhere");
    assert_eq!(status, 404);

    // Item information over the 256-byte limit: 400 invalid_transaction.
    let mut tx = pay(&alice, &vendor, world.take_tokens(1), "x");
    tx.info = "x".repeat(300);
    let (status, body) = post(&vendor, serde_json::to_vec(&tx).unwrap());
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_transaction");

    assert_eq!(snapshot(&service), before);
    let (status, _) = op_get(&service, &format!("/v1/users/{}", alice.cert.subject));
    assert_eq!(status, 404, "nothing was recorded for the user");
    // Refused by the submission handler: the malformed body and the over-long info; the
    // oversized body was refused while being read, before the handler (counted by code).
    assert_eq!(metric(&service, "mupib_refused_total"), 2);
    assert_eq!(
        metric(
            &service,
            "mupib_http_errors_total{code=\"payload_too_large\"}"
        ),
        1
    );
    service.shutdown().unwrap();
}

#[test]
fn unknown_vendor_and_unknown_user_are_403_and_bad_signatures_401() {
    let mut world = World::new(8);
    let alice = user(&mut world, 16);
    let vendor_key = key(26);
    let vendor_cert = world.enroll(&vendor_key, Role::Vendor, "vendor");
    // Certified by the authority but never registered with the auditor.
    let stranger_key = key(27);
    let stranger_cert = world.certificate(&stranger_key, Role::Vendor, "stranger");
    let ghost_key = key(28);
    let ghost = Party {
        cert: world.certificate(&ghost_key, Role::User, "ghost"),
        key: ghost_key,
    };
    let service = world.start(None, 10);
    let auditor = pubkey_of(&world.auditor);
    let vendor = vendor_client(service.url(), vendor_key, vendor_cert, auditor).unwrap();
    let stranger = vendor_client(service.url(), stranger_key, stranger_cert, auditor).unwrap();
    let before = snapshot(&service);

    let refused = |result: Result<SubmitAnswer, VendorError>| match result {
        Err(VendorError::Refused {
            status,
            code,
            message,
            ..
        }) => (status, code, message),
        other => panic!("expected a refusal, got {other:?}"),
    };
    // A vendor the auditor does not know cannot even authenticate.
    let (status, code, message) =
        refused(stranger.submit(&pay(&alice, &stranger, world.take_tokens(1), "x")));
    assert_eq!((status, code.as_str()), (403, "unknown_caller"));
    assert!(message.contains("vendor certificate"), "{message}");

    let (status, code, _) =
        refused(vendor.submit(&pay(&ghost, &vendor, world.take_tokens(1), "x")));
    assert_eq!((status, code.as_str()), (403, "unknown_identity"));

    // The vendor's signature does not cover the altered info.
    let mut altered = pay(&alice, &vendor, world.take_tokens(1), "cheap item");
    altered.info = "expensive item".into();
    let (status, code, _) = refused(vendor.submit(&altered));
    assert_eq!((status, code.as_str()), (401, "bad_signature"));

    // The user did not sign the vendor's countersignature over a different user signature.
    let mut resigned = pay(&alice, &vendor, world.take_tokens(1), "x");
    resigned.user_signature[0] ^= 1;
    let (status, code, _) = refused(vendor.submit(&resigned));
    assert_eq!((status, code.as_str()), (401, "bad_signature"));

    assert_eq!(snapshot(&service), before);
    let (status, _) = op_get(&service, &format!("/v1/users/{}", alice.cert.subject));
    assert_eq!(status, 404);
    service.shutdown().unwrap();
}

/// A fake auditor that answers every submission with a response built by `forge`.
fn fake_auditor(
    forge: impl Fn(TransactionId) -> SubmitAnswer + Send + Sync + 'static,
) -> (String, std::sync::mpsc::Sender<()>) {
    use axum::routing::post;
    let forge = Arc::new(forge);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let app = axum::Router::new().route(
                "/v1/transactions",
                post(move |body: axum::body::Bytes| {
                    let forge = Arc::clone(&forge);
                    async move {
                        let tx: PaymentTransaction = serde_json::from_slice(&body).unwrap();
                        axum::Json(forge(tx.id().unwrap()))
                    }
                }),
            );
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
                })
                .await
                .unwrap();
        });
    });
    (url, stop_tx)
}

#[test]
fn wrong_auditor_signature_is_refused_by_the_vendor_client() {
    let mut world = World::new(8);
    let alice = user(&mut world, 17);
    let vendor_key = key(29);
    let vendor_cert = world.enroll(&vendor_key, Role::Vendor, "vendor");
    let auditor = world.auditor.clone();
    let impostor = key(99);

    // 1. Signed by another key than the configured auditor.
    let (url, stop) = fake_auditor(move |id| SubmitAnswer {
        response: AuditorResponse::sign(&impostor, id, Verdict::Deliver, None, NOW).unwrap(),
        is_final: true,
    });
    let vendor = vendor_client(
        url,
        vendor_key.clone(),
        vendor_cert.clone(),
        pubkey_of(&auditor),
    )
    .unwrap();
    let tx = pay(&alice, &vendor, world.take_tokens(1), "x");
    match vendor.submit(&tx) {
        Err(VendorError::BadAuditorResponse(ResponseError::UnexpectedAuditor { .. })) => {}
        other => panic!("expected an unexpected-auditor error, got {other:?}"),
    }
    stop.send(()).unwrap();

    // 2. Signed by the right auditor, then tampered with: a rejection turned into a delivery.
    let signer = auditor.clone();
    let (url, stop) = fake_auditor(move |id| {
        let mut response = AuditorResponse::sign(
            &signer,
            id,
            Verdict::Reject(RejectReason::UserSuspended {
                user: Pubkey::default(),
            }),
            None,
            NOW,
        )
        .unwrap();
        response.verdict = Verdict::Deliver;
        SubmitAnswer {
            response,
            is_final: true,
        }
    });
    let vendor = vendor_client(
        url,
        vendor_key.clone(),
        vendor_cert.clone(),
        pubkey_of(&auditor),
    )
    .unwrap();
    match vendor.submit(&tx) {
        Err(VendorError::BadAuditorResponse(ResponseError::BadSignature { .. })) => {}
        other => panic!("expected a bad-signature error, got {other:?}"),
    }
    stop.send(()).unwrap();

    // 3. A genuine response for another transaction (replayed).
    let signer = auditor.clone();
    let (url, stop) = fake_auditor(move |_| SubmitAnswer {
        response: AuditorResponse::sign(
            &signer,
            TransactionId([1; 32]),
            Verdict::Deliver,
            None,
            NOW,
        )
        .unwrap(),
        is_final: true,
    });
    let vendor = vendor_client(url, vendor_key, vendor_cert, pubkey_of(&auditor)).unwrap();
    match vendor.submit(&tx) {
        Err(VendorError::BadAuditorResponse(ResponseError::WrongTransaction { .. })) => {}
        other => panic!("expected a wrong-transaction error, got {other:?}"),
    }
    stop.send(()).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Restart and exactly-once
// ---------------------------------------------------------------------------------------------

#[test]
fn restart_mid_traffic_answers_each_transaction_once_and_pays_each_payout_once() {
    restart_mid_traffic(false, &StoreChoice::Sqlite);
}

/// The same through `/v1/transactions/batch`: several vendors' batches gathered into groups,
/// killed while groups are committing.
#[test]
fn restart_mid_batched_traffic_answers_each_transaction_once_and_pays_each_payout_once() {
    restart_mid_traffic(true, &StoreChoice::Sqlite);
}

/// A PostgreSQL store in a fresh schema of the test server, or `None` (skipped, said once).
fn postgres_store(test: &str) -> Option<StoreChoice> {
    let server = TestPostgres::from_env(test)?;
    let schema = server.unique_schema(test);
    Some(StoreChoice::Postgres {
        url: server.url().to_owned(),
        options: server.options(&schema),
    })
}

/// Both restart tests on the PostgreSQL store.
#[test]
fn restart_mid_traffic_on_postgres_answers_each_transaction_once_and_pays_each_payout_once() {
    let Some(store) = postgres_store("restart_postgres") else {
        return;
    };
    restart_mid_traffic(false, &store);
    let Some(store) = postgres_store("restart_postgres_batched") else {
        return;
    };
    restart_mid_traffic(true, &store);
}

/// Two, then three instances on one PostgreSQL schema, each user's payments spread over them
/// (so vendors at several instances pay for one user at once), one instance killed mid-load and
/// its vendors moving to the others: every transaction is answered once, finally delivered, each
/// user's queue and blocks are what its transactions alone make (never forked), every vendor
/// accrued once and was paid once, by the one settlement leader left.
#[test]
fn instances_on_one_postgres_share_users_and_lose_nothing_when_one_is_killed() {
    for instances in [2, 3] {
        let Some(store) = postgres_store(&format!("instances_{instances}")) else {
            return;
        };
        instances_share_users(instances, &store);
    }
}

fn instances_share_users(count: usize, store: &StoreChoice) {
    let dirs: Vec<tempfile::TempDir> = (0..count).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut world = World::new(400);
    let Traffic {
        users,
        vendors,
        plans,
    } = traffic(&mut world, 140);
    let auditor = pubkey_of(&world.auditor);
    // Payment k of user u goes to instance (k + u) % count.
    let plans: Vec<Vec<(usize, usize, PaymentTransaction)>> = plans
        .into_iter()
        .enumerate()
        .map(|(u, plan)| {
            plan.into_iter()
                .enumerate()
                .map(|(k, (v, tx))| ((k + u) % count, v, tx))
                .collect()
        })
        .collect();
    let start = |world: &World, dir: &tempfile::TempDir| {
        world.start_with(
            Some(dir.path().to_path_buf()),
            8,
            Box::new(world.chain.clone()),
            |config| config.store = store.clone(),
        )
    };
    let mut instances: Vec<RunningService> = dirs.iter().map(|dir| start(&world, dir)).collect();
    let urls: Vec<String> = instances.iter().map(RunningService::url).collect();
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let threads: Vec<_> = plans
        .iter()
        .cloned()
        .map(|plan| {
            let (urls, vendors, answered) = (urls.clone(), vendors.clone(), Arc::clone(&answered));
            std::thread::spawn(move || {
                let mut answers = HashMap::new();
                for (instance, v, tx) in plan {
                    let client = |url: &str| {
                        vendor_client(
                            url.to_owned(),
                            vendors[v].0.clone(),
                            vendors[v].1.clone(),
                            auditor,
                        )
                        .unwrap()
                    };
                    // A vendor whose instance is gone (or busy: nothing written) sends the same
                    // transaction to the next one.
                    let answer = (0..4 * urls.len())
                        .find_map(|attempt| {
                            let url = &urls[(instance + attempt) % urls.len()];
                            client(url).submit(&tx).ok().or_else(|| {
                                std::thread::sleep(Duration::from_millis(20));
                                None
                            })
                        })
                        .expect("some instance answers");
                    answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    answers.insert(tx.id().unwrap(), (v, answer));
                }
                answers
            })
        })
        .collect();
    wait_for(|| (answered.load(std::sync::atomic::Ordering::SeqCst) >= 40).then_some(()));
    let mut others = instances.split_off(1);
    instances.remove(0).kill().unwrap();
    // The first left serves the checks; the others keep running to the end.
    let second = others.remove(0);
    let mut answers: HashMap<TransactionId, (usize, SubmitAnswer)> = HashMap::new();
    for thread in threads {
        answers.extend(thread.join().unwrap());
    }
    assert_eq!(answers.len(), 120, "every transaction answered");
    let mut owed = HashMap::<Pubkey, u64>::new();
    for (id, (v, answer)) in &answers {
        let client = vendor_client(
            second.url(),
            vendors[*v].0.clone(),
            vendors[*v].1.clone(),
            auditor,
        )
        .unwrap();
        let last = if answer.is_final {
            answer.clone()
        } else {
            client.await_final(id, Duration::from_secs(30)).unwrap()
        };
        assert_eq!(verdict(&last), &Verdict::Deliver, "transaction {id}");
        *owed.entry(vendors[*v].1.subject).or_default() += VALUE * 8 / 10;
    }
    // Each user: 30 tokens at W0 = 8 make three valid blocks and leave 6 queued, whichever
    // instance took which payment.
    for party in &users {
        let (status, view) = op_get(&second, &format!("/v1/users/{}", party.cert.subject));
        assert_eq!(status, 200);
        assert_eq!(view["blocks_valid"], 3, "{view}");
        assert_eq!(view["blocks_invalid"], 0, "{view}");
        assert_eq!(view["queued_tokens"], 6, "{view}");
        assert_eq!(view["pending_block"], serde_json::Value::Null, "{view}");
    }
    for (vendor, amount) in &owed {
        let (_, account) = op_get(&second, &format!("/v1/vendors/{vendor}"));
        assert_eq!(account["accrued"], *amount, "vendor {vendor} accrued once");
        assert_eq!(account["double_sellings"], 0);
    }
    // One of the instances left leads settlement (its worker, or a POST /v1/settle to it; the
    // others answer 503): every vendor is paid, once, on the chain.
    wait_for(|| {
        for instance in std::iter::once(&second).chain(&others) {
            let response = http()
                .post(format!("{}/v1/settle", instance.url()))
                .bearer_auth(instance.operator_token())
                .send()
                .unwrap();
            if response.status() == 200 {
                let report: serde_json::Value = response.json().unwrap();
                assert!(report["blocked"].is_null(), "{report}");
            }
        }
        let (_, status) = op_get(&second, "/v1/status");
        (status["pending_payouts"] == serde_json::json!([])).then_some(())
    });
    let chain = world.payouts.chain();
    for (vendor, amount) in &owed {
        let transfers: u64 = chain
            .transfers
            .iter()
            .filter(|(v, _)| v == vendor)
            .map(|(_, a)| a)
            .sum();
        assert_eq!(transfers, *amount, "vendor {vendor} paid exactly once");
    }
    drop(chain);
    second.shutdown().unwrap();
    for other in others {
        other.shutdown().unwrap();
    }
}

/// A TCP relay to the test's PostgreSQL server that can cut every connection and refuse new
/// ones, as a server restart does to its clients.
struct Relay {
    addr: std::net::SocketAddr,
    down: Arc<std::sync::atomic::AtomicBool>,
    open: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl Relay {
    fn start(upstream: String) -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::default();
        let (down_in, open_in) = (Arc::clone(&down), Arc::clone(&open));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if down_in.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                    continue;
                };
                let mut open = open_in.lock().unwrap();
                open.push(client.try_clone().unwrap());
                open.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Relay { addr, down, open }
    }

    /// Cuts every connection and refuses new ones.
    fn cut(&self) {
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Accepts connections again.
    fn restore(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The database goes away under a running service (every connection cut, new ones refused, as
/// in a server restart): submissions get 503 and write nothing, reads fail cleanly, nothing is
/// answered twice; when it is back the service recovers by itself and takes the same
/// transactions.
#[test]
fn postgres_outage_answers_503_and_the_service_recovers_without_help() {
    let Some(StoreChoice::Postgres { url, options }) = postgres_store("outage") else {
        return;
    };
    let (head, rest) = url.split_once('@').expect("user@host in the test URL");
    let (host, tail) = rest.split_once('/').expect("host/database in the test URL");
    let relay = Relay::start(host.to_owned());
    let store = StoreChoice::Postgres {
        url: format!("{head}@{}/{tail}", relay.addr),
        options: PostgresOptions {
            connect_timeout: Duration::from_secs(2),
            ..options
        },
    };
    let mut world = World::new(8);
    let alice = user(&mut world, 170);
    let vendor_key = key(171);
    let vendor_cert = world.enroll(&vendor_key, Role::Vendor, "vendor");
    let service = world.start_with(None, 4, Box::new(world.chain.clone()), |config| {
        config.store = store.clone()
    });
    let vendor = vendor_client(
        service.url(),
        vendor_key,
        vendor_cert,
        pubkey_of(&world.auditor),
    )
    .unwrap();
    let first = pay(&alice, &vendor, world.take_tokens(1), "before");
    assert_eq!(verdict(&vendor.submit(&first).unwrap()), &Verdict::Deliver);

    relay.cut();
    let during = pay(&alice, &vendor, world.take_tokens(1), "during");
    match vendor.submit(&during) {
        Err(VendorError::Refused {
            status,
            code,
            message,
            ..
        }) => assert_eq!((status, code.as_str()), (503, "busy"), "{message}"),
        other => panic!("expected 503 while the database is away, got {other:?}"),
    }
    let (status, _) = op_get(&service, &format!("/v1/users/{}", alice.cert.subject));
    assert_eq!(status, 503, "a read while the database is away");

    relay.restore();
    let answer = wait_for(|| vendor.submit(&during).ok());
    assert_eq!(verdict(&answer), &Verdict::Deliver);
    // Once each: the first payment's resubmission is the stored answer, not a second delivery.
    assert_eq!(verdict(&vendor.submit(&first).unwrap()), &Verdict::Deliver);
    let (status, view) = op_get(&service, &format!("/v1/users/{}", alice.cert.subject));
    assert_eq!(status, 200);
    assert_eq!(view["queued_tokens"], 2, "{view}");
    let (_, account) = op_get(&service, &format!("/v1/vendors/{}", vendor.vendor()));
    assert_eq!(account["accrued"], 2 * VALUE * 8 / 10, "{account}");
    assert_eq!(account["double_sellings"], 0);
    service.shutdown().unwrap();
}

/// One settlement leader per PostgreSQL schema: while one instance holds the lease, another
/// answers `POST /v1/settle` with 503 and the reason; once the leader is gone it takes over.
#[test]
fn settlement_runs_on_one_instance_of_a_postgres_store_at_a_time() {
    let Some(store) = postgres_store("settlement_leader") else {
        return;
    };
    let world = World::new(4);
    let start = || {
        world.start_with(None, 4, Box::new(world.chain.clone()), |config| {
            config.store = store.clone();
            config.settle_interval = Some(Duration::from_secs(3600));
        })
    };
    let leader = start();
    // The worker's first run at start takes the lease.
    wait_for(|| {
        let response = http()
            .post(format!("{}/v1/settle", leader.url()))
            .bearer_auth(leader.operator_token())
            .send()
            .unwrap();
        (response.status() == 200).then_some(())
    });
    let other = start();
    let response = http()
        .post(format!("{}/v1/settle", other.url()))
        .bearer_auth(other.operator_token())
        .send()
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("another instance"),
        "{body}"
    );
    leader.kill().unwrap();
    // The server releases the lease when it sees the holder's connection close.
    wait_for(|| {
        let response = http()
            .post(format!("{}/v1/settle", other.url()))
            .bearer_auth(other.operator_token())
            .send()
            .unwrap();
        (response.status() == 200).then_some(())
    });
    other.shutdown().unwrap();
}

/// Submits one batch of `txs` (all of `vendor`) and returns the answered ones.
fn submit_batch(
    vendor: &VendorClient,
    txs: &[PaymentTransaction],
) -> Result<Vec<(TransactionId, SubmitAnswer)>, String> {
    let body = serde_json::to_vec(txs).unwrap();
    let (status, bytes) = vendor
        .request_raw(reqwest::Method::POST, "/v1/transactions/batch", Some(&body))
        .map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("HTTP {status}"));
    }
    let items: Vec<BatchItem> = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    assert_eq!(items.len(), txs.len(), "one answer per transaction");
    Ok(txs
        .iter()
        .zip(items)
        .filter_map(|(tx, item)| match item {
            BatchItem::Answered(answer) => {
                let id = tx.id().unwrap();
                assert_eq!(answer.response.transaction_id, id, "answers in input order");
                answer.response.verify(&vendor.auditor()).unwrap();
                Some((id, answer))
            }
            BatchItem::Refused(_) => None,
        })
        .collect())
}

/// 4 users and 3 vendors (keys from `seed`), and per user 30 one-token payments in order,
/// payment `round` of user `u` at vendor `(round + u) % 3`, all prepared in advance.
struct Traffic {
    users: Vec<Party>,
    vendors: Vec<(SigningKey, Certificate)>,
    /// Per user: (vendor index, countersigned payment).
    plans: Vec<Vec<(usize, PaymentTransaction)>>,
}

fn traffic(world: &mut World, seed: u8) -> Traffic {
    let users: Vec<Party> = (0..4).map(|i| user(world, seed + i)).collect();
    let vendors: Vec<(SigningKey, Certificate)> = (0..3)
        .map(|i| {
            let k = key(seed + 20 + i);
            let c = world.enroll(&k, Role::Vendor, &format!("vendor {i}"));
            (k, c)
        })
        .collect();
    let mut plans: Vec<Vec<(usize, PaymentTransaction)>> = vec![Vec::new(); users.len()];
    for round in 0..30 {
        for (u, party) in users.iter().enumerate() {
            let v = (round + u) % vendors.len();
            let payment = PaymentTransaction::user_sign(
                &party.key,
                party.cert.clone(),
                vendors[v].1.clone(),
                NOW,
                world.take_tokens(1),
                format!("{u}/{round}"),
            )
            .unwrap();
            plans[u].push((v, payment.countersign(&vendors[v].0).unwrap()));
        }
    }
    Traffic {
        users,
        vendors,
        plans,
    }
}

fn restart_mid_traffic(batched: bool, store: &StoreChoice) {
    let dir = tempfile::tempdir().unwrap();
    let start = |world: &World| {
        world.start_with(
            Some(dir.path().to_path_buf()),
            8,
            Box::new(world.chain.clone()),
            |config| config.store = store.clone(),
        )
    };
    let mut world = World::new(400);
    let Traffic {
        users: _,
        vendors,
        plans,
    } = traffic(&mut world, 40);
    let auditor = pubkey_of(&world.auditor);

    let service = start(&world);
    let url = service.url();
    // Each user's payments go in order from one thread; answers are recorded as they come.
    let answers: Arc<Mutex<HashMap<TransactionId, SubmitAnswer>>> = Arc::default();
    let threads: Vec<_> = plans
        .iter()
        .cloned()
        .map(|plan| {
            let answers = Arc::clone(&answers);
            let vendors = vendors.clone();
            let url = url.clone();
            std::thread::spawn(move || {
                let client = |v: usize| {
                    vendor_client(
                        url.clone(),
                        vendors[v].0.clone(),
                        vendors[v].1.clone(),
                        auditor,
                    )
                    .unwrap()
                };
                if batched {
                    // Batches of up to 3 of this user's payments at the same vendor.
                    for v in 0..vendors.len() {
                        let mine: Vec<PaymentTransaction> = plan
                            .iter()
                            .filter(|(pv, _)| *pv == v)
                            .map(|(_, tx)| tx.clone())
                            .collect();
                        let client = client(v);
                        for chunk in mine.chunks(3) {
                            match submit_batch(&client, chunk) {
                                Ok(answered) => answers.lock().unwrap().extend(answered),
                                Err(_) => return, // the service is gone
                            }
                        }
                    }
                    return;
                }
                for (v, tx) in plan {
                    match client(v).submit(&tx) {
                        Ok(answer) => {
                            answers.lock().unwrap().insert(tx.id().unwrap(), answer);
                        }
                        Err(_) => return, // the service is gone: stop this vendor
                    }
                }
            })
        })
        .collect();
    // Stop mid-traffic: once some answers are in, kill the service (no draining).
    wait_for(|| (answers.lock().unwrap().len() >= 20).then_some(()));
    service.kill().unwrap();
    for thread in threads {
        thread.join().unwrap();
    }
    let before_restart = answers.lock().unwrap().clone();
    assert!(before_restart.len() >= 20);
    eprintln!("answered before the kill: {} of 120", before_restart.len());

    // Restart on the same data directory (the chain and the payout chain persist).
    let service = start(&world);
    let mut finals: HashMap<TransactionId, SubmitAnswer> = HashMap::new();
    for plan in &plans {
        for (v, tx) in plan {
            let client = vendor_client(
                service.url(),
                vendors[*v].0.clone(),
                vendors[*v].1.clone(),
                auditor,
            )
            .unwrap();
            let id = tx.id().unwrap();
            // A vendor that lost its answer asks first and only resubmits what the auditor lacks.
            let answer = match client.status(&id).unwrap() {
                Some(answer) => answer,
                None => client.submit(tx).unwrap(),
            };
            let answer = if answer.is_final {
                answer
            } else {
                client.await_final(&id, Duration::from_secs(30)).unwrap()
            };
            finals.insert(id, answer);
        }
    }
    // Every transaction has exactly one final answer, consistent with what was said before the
    // crash: a deliver stays a deliver; nothing was presented twice (no vendor flagged).
    assert_eq!(finals.len(), 120);
    for (id, before) in &before_restart {
        if before.is_final {
            assert_eq!(
                verdict(&finals[id]),
                verdict(before),
                "transaction {id} changed its answer"
            );
        }
    }
    assert!(
        finals.values().all(|a| verdict(a) == &Verdict::Deliver),
        "every token is genuine and fresh"
    );
    let mut owed = HashMap::<Pubkey, u64>::new();
    for plan in &plans {
        for (v, _) in plan {
            *owed.entry(vendors[*v].1.subject).or_default() += VALUE * 8 / 10;
        }
    }
    for (vendor, amount) in &owed {
        let (_, account) = op_get(&service, &format!("/v1/vendors/{vendor}"));
        assert_eq!(
            account["double_sellings"], 0,
            "vendor {vendor} flagged as a double seller"
        );
        assert_eq!(account["accrued"], *amount, "vendor {vendor} accrued");
    }
    // Blocks still queued at the kill were resumed; then every payout lands exactly once.
    service.shutdown().unwrap();
    let service = start(&world);
    let report: serde_json::Value = http()
        .post(format!("{}/v1/settle", service.url()))
        .bearer_auth(service.operator_token())
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(report["blocked"].is_null(), "{report}");
    let (_, status) = op_get(&service, "/v1/status");
    assert!(
        status["pending_blocks"].as_array().unwrap().is_empty(),
        "{status}"
    );
    assert!(
        status["pending_payouts"].as_array().unwrap().is_empty(),
        "{status}"
    );
    let chain = world.payouts.chain();
    for (vendor, amount) in &owed {
        assert_eq!(
            chain.balances.get(vendor).copied().unwrap_or(0),
            *amount,
            "vendor {vendor} paid on-chain"
        );
        let transfers: u64 = chain
            .transfers
            .iter()
            .filter(|(v, _)| v == vendor)
            .map(|(_, a)| a)
            .sum();
        assert_eq!(transfers, *amount, "vendor {vendor} paid exactly once");
    }
    drop(chain);
    service.shutdown().unwrap();
}

/// A chain that reports each block it is asked to verify and then waits for the gate to open.
struct GatedChain {
    chain: SharedChain,
    entered: std::sync::mpsc::Sender<u64>,
    gate: Arc<(Mutex<bool>, std::sync::Condvar)>,
}

impl BlockVerifier for GatedChain {
    fn verify(&mut self, block: &BlockSubmission) -> Result<BlockVerification, VerifierError> {
        let _ = self.entered.send(block.block_id);
        let (open, signal) = &*self.gate;
        let mut open = open.lock().unwrap();
        while !*open {
            open = signal.wait(open).unwrap();
        }
        drop(open);
        self.chain.verify(block)
    }
}

/// A block the full chain queue cannot take is not an error for its vendor: it stays pending in
/// the store and the chain thread's retry verifies it; a long-poll that ends before a decision
/// returns the signed wait answer.
#[test]
fn full_block_queue_leaves_the_block_pending_and_long_poll_returns_wait_until_decided() {
    let mut world = World::new(8);
    let users: Vec<Party> = (0..3).map(|i| user(&mut world, 80 + i)).collect();
    let vendor_key = key(90);
    let vendor_cert = world.enroll(&vendor_key, Role::Vendor, "vendor");
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let verifier = GatedChain {
        chain: world.chain.clone(),
        entered: entered_tx,
        gate: Arc::clone(&gate),
    };
    // W0 = 1: every payment forms a block; the queue holds one block.
    let service = world.start_with(None, 1, Box::new(verifier), |config| config.block_queue = 1);
    let vendor = vendor_client(
        service.url(),
        vendor_key,
        vendor_cert,
        pubkey_of(&world.auditor),
    )
    .unwrap();

    let first = pay(&users[0], &vendor, world.take_tokens(1), "a");
    assert_eq!(verdict(&vendor.submit(&first).unwrap()), &Verdict::Wait);
    let first_block = entered.recv().unwrap(); // the chain thread holds block 1 at the chain
    let second = pay(&users[1], &vendor, world.take_tokens(1), "b");
    assert_eq!(verdict(&vendor.submit(&second).unwrap()), &Verdict::Wait); // block 2 fills the queue
    let third = pay(&users[2], &vendor, world.take_tokens(1), "c");
    let answer = vendor.submit(&third).unwrap();
    assert_eq!(
        verdict(&answer),
        &Verdict::Wait,
        "taken although the queue is full"
    );
    let third_block = answer.response.block_id.expect("its block");
    let (_, status) = op_get(&service, "/v1/status");
    let pending: Vec<u64> = status["pending_blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap())
        .collect();
    assert!(pending.contains(&third_block), "{status}");

    // A long-poll that ends before the decision returns the signed wait answer, not final.
    let (status, body) = op_get(
        &service,
        &format!("/v1/transactions/{}/final?wait=1s", first.id().unwrap()),
    );
    assert_eq!(status, 200);
    assert_eq!(body["final"], false);
    assert_eq!(body["response"]["verdict"]["verdict"], "wait");
    assert_eq!(body["response"]["block_id"], first_block);

    // Open the gate: all three blocks are decided, the third by the retry of pending blocks.
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    for tx in [&first, &second, &third] {
        let answer = vendor
            .await_final(&tx.id().unwrap(), Duration::from_secs(30))
            .unwrap();
        assert_eq!(verdict(&answer), &Verdict::Deliver);
    }
    let (_, status) = op_get(&service, "/v1/status");
    assert_eq!(status["pending_blocks"], serde_json::json!([]), "{status}");
    service.shutdown().unwrap();
}

/// When the intake pipeline is full a vendor gets 503 with Retry-After at once (never a hang)
/// and nothing is written; reads are answered from the read-only view while a group commit
/// holds the engine; once the commit goes on, the waiting transaction is answered and the
/// refused one is taken when sent again.
#[test]
fn full_intake_pipeline_answers_503_at_once_and_reads_do_not_wait_for_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = World::new(8);
    let alice = user(&mut world, 84);
    let bob = user(&mut world, 85);
    let vendor_key = key(91);
    let vendor_cert = world.enroll(&vendor_key, Role::Vendor, "vendor");
    let service = world.start_with(
        Some(dir.path().to_path_buf()),
        4,
        Box::new(world.chain.clone()),
        |config| config.intake_queue = 1,
    );
    let vendor = vendor_client(
        service.url(),
        vendor_key,
        vendor_cert,
        pubkey_of(&world.auditor),
    )
    .unwrap();
    let known = pay(&alice, &vendor, world.take_tokens(1), "known");
    assert_eq!(verdict(&vendor.submit(&known).unwrap()), &Verdict::Deliver);

    // Hold the engine as a long commit would: the next group cannot commit.
    let engine = service.state().engine().unwrap();
    let waiting = pay(&alice, &vendor, world.take_tokens(1), "waits");
    let waiting_vendor = vendor.clone();
    let waiting_tx = waiting.clone();
    let (answered_tx, answered) = std::sync::mpsc::channel();
    let submitter = std::thread::spawn(move || {
        let answer = waiting_vendor.submit(&waiting_tx);
        let _ = answered_tx.send(format!("{answer:?}"));
        answer
    });
    wait_for(|| (service.state().intake_room() == 0).then_some(()));
    let refused_tx = pay(&bob, &vendor, world.take_tokens(1), "refused");
    let started = std::time::Instant::now();
    match vendor.submit(&refused_tx) {
        Err(VendorError::Refused { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (503, "overloaded"))
        }
        other => panic!("expected 503 overloaded, got {other:?}"),
    }
    eprintln!("503 after {:?}", started.elapsed());
    let raw = http()
        .get(format!("{}/v1/users/{}", service.url(), alice.cert.subject))
        .bearer_auth(service.operator_token())
        .send()
        .unwrap();
    assert_eq!(raw.status(), 200, "a read while the engine is held");
    let view: serde_json::Value = raw.json().unwrap();
    assert_eq!(view["queued_tokens"], 1, "the committed state: {view}");
    let (status, _) = op_get(&service, &format!("/v1/users/{}", bob.cert.subject));
    assert_eq!(status, 404, "the refused transaction wrote nothing");
    if let Ok(early) = answered.try_recv() {
        panic!("an answer before its group committed: {early}");
    }
    assert!(metric(&service, "mupib_pipeline_full_total") >= 1);

    drop(engine);
    let answer = submitter.join().unwrap().unwrap();
    assert_eq!(verdict(&answer), &Verdict::Deliver);
    assert_eq!(
        verdict(&vendor.submit(&refused_tx).unwrap()),
        &Verdict::Deliver
    );
    service.shutdown().unwrap();
}

/// A token this auditor cannot redeem is refused at intake with the reason (422) and nothing is
/// written: its batch is unknown (or bound to another auditor), not sealed, worth another value
/// than the token says, or expiring before its block could be verified.
#[test]
fn token_this_auditor_cannot_redeem_is_refused_with_the_reason_and_nothing_written() {
    let mut world = World::new(8);
    let bank = pubkey_of(&key(2));
    let far = NOW + 30 * 24 * 3600;
    let terms = |value, sealed, expires_at| BatchTerms {
        value,
        token_count: 8,
        sealed,
        expires_at,
    };
    world.batches = Some(Directory(
        [
            ((bank, BATCH), terms(VALUE, true, far)),
            ((bank, 8), terms(VALUE, false, far)),
            ((bank, 9), terms(VALUE / 2, true, far)),
            ((bank, 10), terms(VALUE, true, NOW + 3600)),
        ]
        .into_iter()
        .collect(),
    ));
    let alice = user(&mut world, 12);
    let vendor_key = key(22);
    let vendor_cert = world.enroll(&vendor_key, Role::Vendor, "vendor");
    let service = world.start(None, 10);
    let vendor = vendor_client(
        service.url(),
        vendor_key,
        vendor_cert,
        pubkey_of(&world.auditor),
    )
    .unwrap();
    let (_, status_before) = op_get(&service, "/v1/status");
    let cases = [
        (11, "not published for this auditor"),
        (8, "not sealed"),
        (9, "its batch pays 500 per token"),
        (10, "the time its block may take to be verified"),
    ];
    for (batch_id, expected) in cases {
        let token = Token::sign(&key(2), batch_id, 0, VALUE, NOW - 100);
        let tx = pay(&alice, &vendor, vec![token], "unredeemable");
        match vendor.submit(&tx) {
            Err(VendorError::Refused {
                status,
                code,
                message,
                ..
            }) => {
                assert_eq!((status, code.as_str()), (422, "unredeemable_token"));
                assert!(message.contains(expected), "batch {batch_id}: {message}");
            }
            other => panic!("batch {batch_id}: accepted or wrong error: {other:?}"),
        }
        assert!(
            vendor.status(&tx.id().unwrap()).unwrap().is_none(),
            "nothing recorded"
        );
    }
    let (_, status_after) = op_get(&service, "/v1/status");
    assert_eq!(status_before, status_after);
    assert_eq!(
        op_get(&service, &format!("/v1/users/{}", alice.cert.subject)).0,
        404,
        "the user was never taken in"
    );
    // A token of the sealed batch, worth its value and long-lived, is taken in.
    let tx = pay(&alice, &vendor, world.take_tokens(1), "fine");
    assert_eq!(verdict(&vendor.submit(&tx).unwrap()), &Verdict::Deliver);
    service.shutdown().unwrap();
}

/// A vendor that held a signed payment past its validity window cannot submit it any more: it
/// is refused with the window named, and nothing is recorded against the user.
#[test]
fn payment_held_past_its_validity_window_is_refused_and_nothing_recorded() {
    let mut world = World::new(8);
    let alice = user(&mut world, 12);
    let vendor_key = key(22);
    let vendor_cert = world.enroll(&vendor_key, Role::Vendor, "vendor");
    let service = world.start(None, 10);
    let vendor = vendor_client(
        service.url(),
        vendor_key,
        vendor_cert,
        pubkey_of(&world.auditor),
    )
    .unwrap();
    let stale = PaymentTransaction::user_sign(
        &alice.key,
        alice.cert.clone(),
        vendor.certificate().clone(),
        NOW - mupib_protocol::transaction::PAYMENT_VALIDITY_SECS - 1,
        world.take_tokens(2),
        "held back",
    )
    .unwrap();
    let stale = vendor.countersign(stale).unwrap();
    match vendor.submit(&stale) {
        Err(VendorError::Refused {
            status, message, ..
        }) => {
            assert_eq!(status, 400);
            assert!(message.contains("600 s"), "{message}");
        }
        other => panic!("a stale payment was taken in: {other:?}"),
    }
    assert!(vendor.status(&stale.id().unwrap()).unwrap().is_none());
    assert_eq!(
        op_get(&service, &format!("/v1/users/{}", alice.cert.subject)).0,
        404
    );
    service.shutdown().unwrap();
}

//! Who may call what, and the limits (SPEC §6; issue 10), through real HTTP on 127.0.0.1 against
//! the in-process service: every route without credentials, with another vendor's, with a
//! replayed or stale signed request; a vendor revoked during traffic; slow clients; a
//! connection flood; the in-flight cap; the per-vendor rate limit; content types and unknown
//! fields. Each refusal leaves the auditor's state as it was and is counted by code. Loops are
//! bounded; timings are asserted only as "within the limit plus a margin".
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use mupib_auditor::{AuditorConfig, SimulatedChain};
use mupib_client::vendor::{VendorClient, VendorError};
use mupib_protocol::cert::{pubkey_of, Certificate, Registry, Role};
use mupib_protocol::money::Withholding;
use mupib_protocol::request::RequestSignature;
use mupib_protocol::response::Verdict;
use mupib_protocol::token::Token;
use mupib_protocol::transaction::PaymentTransaction;
use mupib_protocol::trust::{TrustModel, TrustScale};
use mupib_service::files::RegistryFile;
use mupib_service::{RunningService, ServiceConfig, ServiceParts, OPERATOR_TOKEN_FILE};
use reqwest::Method;

const NOW: i64 = 1_700_000_000;
const VALUE: u64 = 1_000;
const BATCH: u64 = 7;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// An authority, a bank with a batch of tokens, users and vendors, all registered.
struct World {
    authority: SigningKey,
    auditor: SigningKey,
    registry: Registry,
    certificates: Vec<Certificate>,
    tokens: Vec<Token>,
    next_token: usize,
    chain: SimulatedChain,
}

struct Party {
    key: SigningKey,
    cert: Certificate,
}

impl World {
    fn new(token_count: u32) -> World {
        let authority = key(1);
        let bank = key(2);
        let mut world = World {
            registry: Registry::with_authorities([pubkey_of(&authority)]).unwrap(),
            authority,
            auditor: key(3),
            certificates: Vec::new(),
            tokens: Token::sign_batch(&bank, BATCH, token_count, VALUE, NOW - 100),
            next_token: 0,
            chain: SimulatedChain::new(),
        };
        world.enroll(&bank, Role::Bank);
        let digests = world.tokens.iter().map(Token::token_digest16).collect();
        world
            .chain
            .publish_batch(pubkey_of(&bank), BATCH, VALUE, digests);
        world
    }

    fn enroll(&mut self, who: &SigningKey, role: Role) -> Certificate {
        let cert = Certificate::issue(
            &self.authority,
            pubkey_of(who),
            role,
            format!("{role}"),
            0,
            i64::MAX / 2,
        )
        .unwrap();
        self.registry.register(cert.clone()).unwrap();
        self.certificates.push(cert.clone());
        cert
    }

    fn party(&mut self, seed: u8, role: Role) -> Party {
        let key = key(seed);
        let cert = self.enroll(&key, role);
        Party { key, cert }
    }

    fn take_tokens(&mut self, count: usize) -> Vec<Token> {
        let tokens = self.tokens[self.next_token..self.next_token + count].to_vec();
        self.next_token += count;
        tokens
    }

    fn registry_file(&self, revoked: &[&Party]) -> RegistryFile {
        RegistryFile {
            authorities: vec![pubkey_of(&self.authority).to_string()],
            certificates: self.certificates.clone(),
            revoked: revoked.iter().map(|p| p.cert.subject.to_string()).collect(),
        }
    }

    fn start(&self, tweak: impl FnOnce(&mut ServiceConfig)) -> RunningService {
        let engine = AuditorConfig {
            withholding: Withholding::from_bps(2000).unwrap(),
            trust_model: TrustModel::Neutral,
            trust_scale: TrustScale::Initial,
            initial_block_size: 1_000,
            paper_mode: false,
        };
        let mut config = ServiceConfig::new(None, SocketAddr::from(([127, 0, 0, 1], 0)), engine);
        config.settle_interval = None;
        config.retry_interval = Duration::from_millis(100);
        config.registry_poll = Duration::from_millis(100);
        tweak(&mut config);
        RunningService::start(
            config,
            ServiceParts {
                auditor_key: self.auditor.clone(),
                registry: self.registry.clone(),
                verifier: Box::new(self.chain.clone()),
                payouts: None,
                batches: None,
                clock: Arc::new(|| NOW),
            },
        )
        .unwrap()
    }

    fn client(&self, service: &RunningService, vendor: &Party) -> VendorClient {
        VendorClient::new(
            service.url(),
            vendor.key.clone(),
            vendor.cert.clone(),
            pubkey_of(&self.auditor),
        )
        .unwrap()
        .with_clock(Arc::new(|| NOW))
    }

    fn pay(&mut self, user: &Party, vendor: &Party, info: &str) -> PaymentTransaction {
        let tokens = self.take_tokens(1);
        PaymentTransaction::user_sign(
            &user.key,
            user.cert.clone(),
            vendor.cert.clone(),
            NOW,
            tokens,
            info,
        )
        .unwrap()
        .countersign(&vendor.key)
        .unwrap()
    }
}

/// An HTTP answer: status, `Retry-After` and the JSON body (`Null` if not JSON).
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: serde_json::Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

fn answer(response: reqwest::blocking::Response) -> Answer {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let bytes = response.bytes().unwrap();
    Answer {
        status,
        retry_after,
        body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    }
}

/// Who sends a request.
#[derive(Clone, Copy)]
enum As<'a> {
    Nobody,
    Operator(&'a str),
    Vendor(&'a SigningKey),
    /// A vendor signing with a chosen timestamp and nonce.
    VendorAt(&'a SigningKey, i64, [u8; 16]),
}

fn send(service: &RunningService, who: As<'_>, method: Method, path: &str, body: &[u8]) -> Answer {
    let mut request = http()
        .request(method.clone(), format!("{}{path}", service.url()))
        .header("content-type", "application/json")
        .body(body.to_vec());
    let signature = match who {
        As::Nobody => None,
        As::Operator(token) => {
            request = request.bearer_auth(token);
            None
        }
        As::Vendor(key) => Some(RequestSignature::sign(
            key,
            method.as_str(),
            path,
            body,
            NOW,
        )),
        As::VendorAt(key, timestamp, nonce) => Some(RequestSignature::sign_with_nonce(
            key,
            method.as_str(),
            path,
            body,
            timestamp,
            nonce,
        )),
    };
    if let Some(signature) = signature {
        for (name, value) in signature.headers() {
            request = request.header(name, value);
        }
    }
    answer(request.send().unwrap())
}

fn operator<'a>(service: &'a RunningService) -> As<'a> {
    As::Operator(service.operator_token())
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

fn errors(service: &RunningService, code: &str) -> u64 {
    metric(
        service,
        &format!("mupib_http_errors_total{{code=\"{code}\"}}"),
    )
}

/// What must not move when a request is refused: the status, and what the engine holds about
/// the user and the vendors.
fn snapshot(service: &RunningService, user: &Party, vendors: &[&Party]) -> Vec<serde_json::Value> {
    let token = service.operator_token();
    let mut views = vec![
        send(service, As::Operator(token), Method::GET, "/v1/status", b"").body,
        send(
            service,
            As::Operator(token),
            Method::GET,
            &format!("/v1/users/{}", user.cert.subject),
            b"",
        )
        .body,
    ];
    for vendor in vendors {
        views.push(
            send(
                service,
                As::Operator(token),
                Method::GET,
                &format!("/v1/vendors/{}", vendor.cert.subject),
                b"",
            )
            .body,
        );
    }
    views
}

// ---------------------------------------------------------------------------------------------
// Authentication and authorization, route by route
// ---------------------------------------------------------------------------------------------

#[test]
fn every_route_refuses_missing_credentials_with_401_and_the_wrong_ones_with_403() {
    let mut world = World::new(16);
    let alice = world.party(10, Role::User);
    let vendor_a = world.party(20, Role::Vendor);
    let vendor_b = world.party(21, Role::Vendor);
    let service = world.start(|_| {});
    let client_a = world.client(&service, &vendor_a);
    let sold = world.pay(&alice, &vendor_a, "a's sale");
    let id = sold.id().unwrap();
    assert_eq!(
        client_a.submit(&sold).unwrap().response.verdict,
        Verdict::Deliver
    );
    let another = world.pay(&alice, &vendor_a, "a's next sale");
    let another_body = serde_json::to_vec(&another).unwrap();
    let batch_body = serde_json::to_vec(&vec![&another]).unwrap();
    let revoke_body = serde_json::to_vec(&serde_json::json!({
        "key": vendor_a.cert.subject.to_string()
    }))
    .unwrap();
    let token = alice.cert.subject.to_string();
    let routes: Vec<(Method, String, &[u8])> = vec![
        (Method::POST, "/v1/transactions".into(), &another_body),
        (Method::POST, "/v1/transactions/batch".into(), &batch_body),
        (Method::GET, format!("/v1/transactions/{id}"), b""),
        (Method::GET, format!("/v1/transactions/{id}/answer"), b""),
        (
            Method::GET,
            format!("/v1/transactions/{id}/final?wait=1"),
            b"",
        ),
        (
            Method::GET,
            format!("/v1/vendors/{}", vendor_a.cert.subject),
            b"",
        ),
        (Method::GET, format!("/v1/users/{token}"), b""),
        (
            Method::GET,
            format!("/v1/tokens/{}", world.tokens[0].id()),
            b"",
        ),
        (Method::GET, "/v1/blocks/0".into(), b""),
        (Method::GET, "/v1/status".into(), b""),
        (Method::POST, "/v1/settle".into(), b""),
        (Method::POST, "/v1/registry/revoke".into(), &revoke_body),
        (Method::GET, "/metrics".into(), b""),
    ];
    let before = snapshot(&service, &alice, &[&vendor_a, &vendor_b]);
    let wrong_token = "0".repeat(64);
    for (method, path, body) in &routes {
        let refused = send(&service, As::Nobody, method.clone(), path, body);
        assert_eq!(
            (refused.status, refused.code()),
            (401, "unauthenticated"),
            "{method} {path} without credentials: {refused:?}"
        );
        let refused = send(
            &service,
            As::Operator(&wrong_token),
            method.clone(),
            path,
            body,
        );
        assert_eq!(
            (refused.status, refused.code()),
            (403, "wrong_operator_token"),
            "{method} {path} with a wrong operator token"
        );
        // Vendor B: may read any user's standing, nothing else of this list.
        let by_b = send(
            &service,
            As::Vendor(&vendor_b.key),
            method.clone(),
            path,
            body,
        );
        if path.starts_with("/v1/users/") {
            assert_eq!(by_b.status, 200, "{method} {path} by vendor B: {by_b:?}");
        } else {
            assert_eq!(by_b.status, 403, "{method} {path} by vendor B: {by_b:?}");
            assert_eq!(by_b.code(), "forbidden", "{method} {path}: {by_b:?}");
        }
    }
    assert_eq!(
        snapshot(&service, &alice, &[&vendor_a, &vendor_b]),
        before,
        "no refusal changed anything"
    );
    let routes_count = routes.len() as u64;
    assert_eq!(errors(&service, "unauthenticated"), routes_count);
    assert_eq!(errors(&service, "wrong_operator_token"), routes_count);
    assert_eq!(errors(&service, "forbidden"), routes_count - 1);

    // The owner and the operator get through; /health is open.
    for (method, path, body) in &routes[2..7] {
        let by_a = send(
            &service,
            As::Vendor(&vendor_a.key),
            method.clone(),
            path,
            body,
        );
        assert_eq!(by_a.status, 200, "{method} {path} by vendor A: {by_a:?}");
    }
    for (method, path, body) in &routes[2..11] {
        let by_operator = send(&service, operator(&service), method.clone(), path, body);
        assert!(
            by_operator.status == 200 || by_operator.status == 404,
            "{method} {path} by the operator: {by_operator:?}"
        );
    }
    let health = send(&service, As::Nobody, Method::GET, "/health", b"");
    assert_eq!(health.status, 200);
    // A vendor that holds no certificate here cannot authenticate at all.
    let stranger = key(99);
    let refused = send(
        &service,
        As::Vendor(&stranger),
        Method::GET,
        &format!("/v1/users/{token}"),
        b"",
    );
    assert_eq!((refused.status, refused.code()), (403, "unknown_caller"));
    // A user's key is not a vendor's.
    let refused = send(
        &service,
        As::Vendor(&alice.key),
        Method::GET,
        &format!("/v1/users/{token}"),
        b"",
    );
    assert_eq!((refused.status, refused.code()), (403, "unknown_caller"));
    // A signature over another path does not verify.
    let mut request = http().get(format!("{}/v1/users/{token}", service.url()));
    for (name, value) in
        RequestSignature::sign(&vendor_a.key, "GET", "/v1/status", b"", NOW).headers()
    {
        request = request.header(name, value);
    }
    let refused = answer(request.send().unwrap());
    assert_eq!(
        (refused.status, refused.code()),
        (401, "bad_request_signature")
    );
    service.shutdown().unwrap();
}

#[test]
fn a_vendor_submitting_another_vendors_transaction_gets_403_and_nothing_is_written() {
    let mut world = World::new(8);
    let alice = world.party(10, Role::User);
    let vendor_a = world.party(20, Role::Vendor);
    let vendor_b = world.party(21, Role::Vendor);
    let service = world.start(|_| {});
    let client_b = world.client(&service, &vendor_b);
    let before = snapshot(&service, &alice, &[&vendor_a, &vendor_b]);
    // A's genuine transaction, presented by B (e.g. to be answered for it).
    let of_a = world.pay(&alice, &vendor_a, "a's sale");
    match client_b.submit(&of_a) {
        Err(VendorError::Refused { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (403, "forbidden"))
        }
        other => panic!("vendor B submitted A's transaction: {other:?}"),
    }
    // In a batch next to one of its own: the whole batch is refused.
    let of_b = world.pay(&alice, &vendor_b, "b's sale");
    let (status, body) = client_b
        .request_raw(
            Method::POST,
            "/v1/transactions/batch",
            Some(&serde_json::to_vec(&vec![&of_b, &of_a]).unwrap()),
        )
        .unwrap();
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert_eq!(snapshot(&service, &alice, &[&vendor_a, &vendor_b]), before);
    assert!(client_b.status(&of_b.id().unwrap()).unwrap().is_none());
    // B's own goes through.
    assert_eq!(
        client_b.submit(&of_b).unwrap().response.verdict,
        Verdict::Deliver
    );
    service.shutdown().unwrap();
}

#[test]
fn a_replayed_signed_request_is_refused_and_changes_nothing() {
    let mut world = World::new(8);
    let alice = world.party(10, Role::User);
    let vendor = world.party(20, Role::Vendor);
    let service = world.start(|_| {});
    let tx = world.pay(&alice, &vendor, "sale");
    let body = serde_json::to_vec(&tx).unwrap();
    let nonce = [42u8; 16];
    let signed = As::VendorAt(&vendor.key, NOW, nonce);
    let first = send(&service, signed, Method::POST, "/v1/transactions", &body);
    assert_eq!(first.status, 200, "{first:?}");
    let before = snapshot(&service, &alice, &[&vendor]);
    // The same bytes again, headers and all: refused before the handler.
    let replay = send(&service, signed, Method::POST, "/v1/transactions", &body);
    assert_eq!((replay.status, replay.code()), (401, "replayed_request"));
    // A replayed read, too.
    let path = format!("/v1/users/{}", alice.cert.subject);
    let read = As::VendorAt(&vendor.key, NOW, [43; 16]);
    assert_eq!(send(&service, read, Method::GET, &path, b"").status, 200);
    let replay = send(&service, read, Method::GET, &path, b"");
    assert_eq!((replay.status, replay.code()), (401, "replayed_request"));
    assert_eq!(snapshot(&service, &alice, &[&vendor]), before);
    assert_eq!(metric(&service, "mupib_resubmissions_total"), 0);
    assert_eq!(errors(&service, "replayed_request"), 2);
    // A fresh signature of the same submission is an honest retry: the stored answer.
    let retry = send(
        &service,
        As::Vendor(&vendor.key),
        Method::POST,
        "/v1/transactions",
        &body,
    );
    assert_eq!(retry.status, 200);
    assert_eq!(retry.body, first.body);
    service.shutdown().unwrap();
}

#[test]
fn expired_and_future_timestamps_are_refused_naming_the_window() {
    let mut world = World::new(4);
    let alice = world.party(10, Role::User);
    let vendor = world.party(20, Role::Vendor);
    let service = world.start(|_| {});
    let path = format!("/v1/users/{}", alice.cert.subject);
    for (offset, seed) in [(-61i64, 1u8), (61, 2), (-3_600, 3), (86_400, 4)] {
        let stale = send(
            &service,
            As::VendorAt(&vendor.key, NOW + offset, [seed; 16]),
            Method::GET,
            &path,
            b"",
        );
        assert_eq!((stale.status, stale.code()), (401, "stale_request"));
        assert!(stale.message().contains("±60 s"), "{}", stale.message());
    }
    // At the window's edges it passes (404: the user was never seen).
    for (offset, seed) in [(-60i64, 5u8), (60, 6)] {
        let edge = send(
            &service,
            As::VendorAt(&vendor.key, NOW + offset, [seed; 16]),
            Method::GET,
            &path,
            b"",
        );
        assert_eq!(edge.status, 404, "{edge:?}");
    }
    assert_eq!(errors(&service, "stale_request"), 4);
    service.shutdown().unwrap();

    // A narrower window is named as such.
    let service = world.start(|config| config.request_window = Duration::from_secs(5));
    let stale = send(
        &service,
        As::VendorAt(&vendor.key, NOW - 6, [7; 16]),
        Method::GET,
        &path,
        b"",
    );
    assert_eq!(stale.status, 401);
    assert!(stale.message().contains("±5 s"), "{}", stale.message());
    service.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Live registry
// ---------------------------------------------------------------------------------------------

#[test]
fn a_vendor_revoked_during_traffic_is_refused_from_the_next_request_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("auditor");
    let registry_path = dir.path().join("registry.json");
    let mut world = World::new(64);
    let alice = world.party(10, Role::User);
    let vendor_a = world.party(20, Role::Vendor);
    let vendor_b = world.party(21, Role::Vendor);
    let vendor_c = world.party(22, Role::Vendor);
    std::fs::write(
        &registry_path,
        serde_json::to_string(&world.registry_file(&[])).unwrap(),
    )
    .unwrap();
    let start = |world: &World| {
        world.start(|config| {
            config.data_dir = Some(data_dir.clone());
            config.registry_file = Some(registry_path.clone());
        })
    };
    let service = start(&world);
    // The operator token was created in the data directory, readable by its owner only.
    let token_path = data_dir.join(OPERATOR_TOKEN_FILE);
    assert_eq!(
        std::fs::read_to_string(&token_path).unwrap().trim(),
        service.operator_token()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let clients: Vec<VendorClient> = [&vendor_a, &vendor_b, &vendor_c]
        .iter()
        .map(|v| world.client(&service, v))
        .collect();
    let sell = |world: &mut World, index: usize| {
        let vendor = [&vendor_a, &vendor_b, &vendor_c][index];
        let tx = world.pay(&alice, vendor, "traffic");
        clients[index].submit(&tx)
    };
    // Traffic: every vendor sells.
    for round in 0..3 {
        for index in 0..3 {
            assert!(
                sell(&mut world, index).is_ok(),
                "round {round} vendor {index}"
            );
        }
    }
    // The operator revokes A through the endpoint: A's very next request is refused.
    let revoke = |key: &Party, token: &str| {
        send(
            &service,
            As::Operator(token),
            Method::POST,
            "/v1/registry/revoke",
            &serde_json::to_vec(&serde_json::json!({ "key": key.cert.subject.to_string() }))
                .unwrap(),
        )
    };
    let revoked = revoke(&vendor_a, service.operator_token());
    assert_eq!(revoked.status, 200, "{revoked:?}");
    assert_eq!(revoked.body["newly_revoked"], true);
    assert_eq!(revoked.body["durable"], true);
    let before = snapshot(&service, &alice, &[&vendor_a]);
    match sell(&mut world, 0) {
        Err(VendorError::Refused { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (403, "unknown_caller"))
        }
        other => panic!("revoked vendor A was served: {other:?}"),
    }
    assert!(matches!(
        clients[0].account(),
        Err(VendorError::Refused { status: 403, .. })
    ));
    assert_eq!(snapshot(&service, &alice, &[&vendor_a]), before);
    for index in 1..3 {
        assert!(
            sell(&mut world, index).is_ok(),
            "vendor {index} still sells"
        );
    }
    assert_eq!(metric(&service, "mupib_revocations_total"), 1);

    // The registry file revokes B (its certificate still listed): within the poll interval,
    // B is refused while C goes on; no restart.
    std::fs::write(
        &registry_path,
        serde_json::to_string(&world.registry_file(&[&vendor_b])).unwrap(),
    )
    .unwrap();
    let mut refused_after = None;
    for attempt in 0..100 {
        match sell(&mut world, 1) {
            Ok(_) => std::thread::sleep(Duration::from_millis(50)),
            Err(VendorError::Refused { status: 403, .. }) => {
                refused_after = Some(attempt);
                break;
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert!(
        refused_after.is_some(),
        "B still served 5 s after the registry change"
    );
    assert!(sell(&mut world, 2).is_ok(), "C still sells");
    assert!(
        sell(&mut world, 0).is_err(),
        "A stays revoked over the reload"
    );
    assert_eq!(
        metric(&service, "mupib_registry_reloads_total{result=\"loaded\"}"),
        1
    );

    // A registry file that does not load keeps the registry in force, counted.
    std::fs::write(&registry_path, "{ this is not a registry").unwrap();
    let mut counted = false;
    for _ in 0..100 {
        if metric(&service, "mupib_registry_reloads_total{result=\"refused\"}") == 1 {
            counted = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(counted, "the bad registry file was not noticed");
    assert!(
        sell(&mut world, 2).is_ok(),
        "C still sells under the old registry"
    );
    service.shutdown().unwrap();

    // After a restart on the same data directory (registry file with A's certificate and
    // without any revocation listed), A's revocation through the endpoint still holds.
    std::fs::write(
        &registry_path,
        serde_json::to_string(&world.registry_file(&[])).unwrap(),
    )
    .unwrap();
    let service = start(&world);
    let client_a = world.client(&service, &vendor_a);
    assert!(matches!(
        client_a.account(),
        Err(VendorError::Refused { status: 403, .. })
    ));
    assert!(world.client(&service, &vendor_b).account().is_ok());
    service.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Content type and unknown fields on write routes
// ---------------------------------------------------------------------------------------------

#[test]
fn write_routes_refuse_other_content_types_with_415_and_unknown_fields_with_400() {
    let mut world = World::new(8);
    let alice = world.party(10, Role::User);
    let vendor = world.party(20, Role::Vendor);
    let service = world.start(|_| {});
    let before = snapshot(&service, &alice, &[&vendor]);
    let tx = world.pay(&alice, &vendor, "sale");
    let body = serde_json::to_vec(&tx).unwrap();

    // Signed correctly but declared as text.
    let path = "/v1/transactions";
    let signature = RequestSignature::sign(&vendor.key, "POST", path, &body, NOW);
    let mut request = http()
        .post(format!("{}{path}", service.url()))
        .header("content-type", "text/plain")
        .body(body.clone());
    for (name, value) in signature.headers() {
        request = request.header(name, value);
    }
    let refused = answer(request.send().unwrap());
    assert_eq!(
        (refused.status, refused.code()),
        (415, "unsupported_media_type")
    );

    // Unknown fields at the top, in a certificate and in a token.
    let mut value = serde_json::to_value(&tx).unwrap();
    value["bonus"] = serde_json::json!(100);
    let mut in_cert = serde_json::to_value(&tx).unwrap();
    in_cert["vendor_cert"]["trusted"] = serde_json::json!(true);
    let mut in_token = serde_json::to_value(&tx).unwrap();
    in_token["tokens"][0]["worth"] = serde_json::json!(1_000_000);
    for (what, value) in [
        ("top", value),
        ("certificate", in_cert),
        ("token", in_token),
    ] {
        let body = serde_json::to_vec(&value).unwrap();
        let refused = send(&service, As::Vendor(&vendor.key), Method::POST, path, &body);
        assert_eq!(
            (refused.status, refused.code()),
            (400, "malformed_json"),
            "{what}"
        );
        assert!(
            refused.message().contains("unknown field"),
            "{what}: {refused:?}"
        );
        let batch = serde_json::to_vec(&vec![value]).unwrap();
        let refused = send(
            &service,
            As::Vendor(&vendor.key),
            Method::POST,
            "/v1/transactions/batch",
            &batch,
        );
        assert_eq!(
            refused.status, 400,
            "batch with an unknown field in the {what}"
        );
    }

    // The revoke request: JSON only, no unknown field.
    let token = service.operator_token().to_owned();
    let revoke = serde_json::json!({ "key": vendor.cert.subject.to_string(), "reason": "x" });
    let refused = send(
        &service,
        As::Operator(&token),
        Method::POST,
        "/v1/registry/revoke",
        &serde_json::to_vec(&revoke).unwrap(),
    );
    assert_eq!((refused.status, refused.code()), (400, "malformed_json"));
    let refused = answer(
        http()
            .post(format!("{}/v1/registry/revoke", service.url()))
            .bearer_auth(&token)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("key={}", vendor.cert.subject))
            .send()
            .unwrap(),
    );
    assert_eq!(refused.status, 415);
    assert_eq!(
        snapshot(&service, &alice, &[&vendor]),
        before,
        "nothing written"
    );
    assert_eq!(errors(&service, "unsupported_media_type"), 2);
    assert_eq!(errors(&service, "malformed_json"), 7);
    // The vendor is not revoked, its well-formed submission goes through.
    let accepted = send(&service, As::Vendor(&vendor.key), Method::POST, path, &body);
    assert_eq!(accepted.status, 200, "{accepted:?}");
    service.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Slow clients
// ---------------------------------------------------------------------------------------------

/// Reads until the server closes the connection (or `limit` passes); returns what was read and
/// when the close came.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Option<Duration>) {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while started.elapsed() < limit {
        match stream.read(&mut buffer) {
            Ok(0) => {
                return (
                    String::from_utf8_lossy(&received).into_owned(),
                    Some(started.elapsed()),
                )
            }
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                return (
                    String::from_utf8_lossy(&received).into_owned(),
                    Some(started.elapsed()),
                )
            }
        }
    }
    (String::from_utf8_lossy(&received).into_owned(), None)
}

#[test]
fn slow_header_and_idle_clients_are_closed_within_the_header_timeout() {
    let world = World::new(1);
    let timeout = Duration::from_secs(1);
    let margin = Duration::from_secs(2);
    let service = world.start(|config| config.header_read_timeout = timeout);

    // Headers trickled one byte every 200 ms: closed at the timeout although bytes keep coming.
    let mut slow = TcpStream::connect(service.addr()).unwrap();
    let started = Instant::now();
    let trickler = {
        let mut writer = slow.try_clone().unwrap();
        std::thread::spawn(move || {
            for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            {
                if writer.write_all(&[*byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let (_, closed) = read_until_closed(&mut slow, timeout + margin + margin);
    let closed_at = started.elapsed();
    assert!(closed.is_some(), "a slow-header client was never closed");
    assert!(
        closed_at >= timeout - Duration::from_millis(100) && closed_at <= timeout + margin,
        "closed after {closed_at:?}, the header timeout is {timeout:?}"
    );
    eprintln!("slow headers closed after {closed_at:?} (header timeout {timeout:?})");
    trickler.join().unwrap();

    // A connection that never sends anything, and a keep-alive connection after its answer.
    let mut idle = TcpStream::connect(service.addr()).unwrap();
    let (_, closed) = read_until_closed(&mut idle, timeout + margin);
    let idle_closed = closed.expect("an idle connection was never closed");
    assert!(idle_closed <= timeout + margin);
    let mut kept = TcpStream::connect(service.addr()).unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (text, closed) = read_until_closed(&mut kept, timeout + margin + margin);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let kept_closed = closed.expect("an idle keep-alive connection was never closed");
    assert!(kept_closed <= timeout + margin, "{kept_closed:?}");
    eprintln!("idle closed after {idle_closed:?}, idle keep-alive after {kept_closed:?}");
    assert!(metric(&service, "mupib_header_timeouts_total") >= 2);
    service.shutdown().unwrap();
}

#[test]
fn slow_body_clients_get_408_and_are_closed_within_the_body_timeout() {
    let mut world = World::new(1);
    let alice = world.party(10, Role::User);
    let vendor = world.party(20, Role::Vendor);
    let timeout = Duration::from_secs(1);
    let margin = Duration::from_secs(2);
    let service = world.start(|config| config.body_timeout = timeout);
    let before = snapshot(&service, &alice, &[&vendor]);
    // Signed headers of a registered vendor (what the body hash would be does not matter: the
    // body never arrives in time).
    let signature = RequestSignature::sign(&vendor.key, "POST", "/v1/transactions", b"{}", NOW);
    let head = |length: usize| {
        let mut head = format!(
            "POST /v1/transactions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
        );
        for (name, value) in signature.headers() {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        head
    };
    // 1. Part of the body, then silence.
    let mut stalled = TcpStream::connect(service.addr()).unwrap();
    stalled.write_all(head(1_000).as_bytes()).unwrap();
    stalled.write_all(b"{\"user_cert\":").unwrap();
    let (text, closed) = read_until_closed(&mut stalled, timeout + margin + margin);
    let stalled_closed = closed.expect("a stalled body was never closed");
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(stalled_closed <= timeout + margin, "{stalled_closed:?}");
    // 2. A byte every 300 ms: each gap is under the timeout, the whole body is not.
    let mut dribbler = TcpStream::connect(service.addr()).unwrap();
    dribbler.write_all(head(1_000).as_bytes()).unwrap();
    let started = Instant::now();
    let writer = {
        let mut writer = dribbler.try_clone().unwrap();
        std::thread::spawn(move || {
            for _ in 0..30 {
                if writer.write_all(b" ").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let (text, closed) = read_until_closed(&mut dribbler, timeout + margin + margin);
    let dribble_closed = closed.map(|_| started.elapsed());
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let dribble_closed = dribble_closed.expect("a dribbled body was never closed");
    assert!(dribble_closed <= timeout + margin, "{dribble_closed:?}");
    writer.join().unwrap();
    eprintln!("stalled body closed after {stalled_closed:?}, dribbled body after {dribble_closed:?} (body timeout {timeout:?})");
    assert_eq!(errors(&service, "request_timeout"), 2);
    assert_eq!(snapshot(&service, &alice, &[&vendor]), before);
    service.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Caps
// ---------------------------------------------------------------------------------------------

#[test]
fn a_connection_flood_over_the_cap_does_not_keep_out_health_or_a_signed_submission() {
    let mut world = World::new(16);
    let alice = world.party(10, Role::User);
    let vendor = world.party(20, Role::Vendor);
    let cap = 200;
    let flood = 3_000;
    let service = world.start(|config| {
        config.max_connections = cap;
        // Long enough that the flood's connections are not closed by the timeout.
        config.header_read_timeout = Duration::from_secs(30);
    });
    let addr = service.addr();
    let client = world.client(&service, &vendor);
    let txs: Vec<PaymentTransaction> = (0..6)
        .map(|i| world.pay(&alice, &vendor, &format!("during the flood {i}")))
        .collect();
    // The flood: idle connections opened as fast as possible and kept open, from a thread,
    // while /health and the vendor are served from this one once the flood is over the cap.
    let opened = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let flooding = {
        let opened = Arc::clone(&opened);
        std::thread::spawn(move || {
            let mut held = Vec::with_capacity(flood);
            for _ in 0..flood {
                match TcpStream::connect(addr) {
                    Ok(stream) => {
                        held.push(stream);
                        opened.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
            held
        })
    };
    let flood_size = || opened.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..2_000 {
        if flood_size() > cap + 50 {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut served_at = Vec::new();
    for tx in &txs {
        let health = http()
            .get(format!("{}/health", service.url()))
            .send()
            .unwrap();
        assert_eq!(health.status().as_u16(), 200);
        let answer = client.submit(tx).unwrap();
        assert_eq!(answer.response.verdict, Verdict::Deliver);
        served_at.push(flood_size());
    }
    let held = flooding.join().unwrap();
    // Once the whole flood is in: still served.
    let health = http()
        .get(format!("{}/health", service.url()))
        .send()
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let evicted = metric(&service, "mupib_connections_evicted_total");
    let open = metric(&service, "mupib_connections_open");
    eprintln!(
        "flood of {} idle connections against a cap of {cap}: /health and a submission served with {served_at:?} flood connections opened, {evicted} evicted, {open} open",
        held.len()
    );
    assert!(served_at[0] > cap, "the flood was not over the cap yet");
    assert!(held.len() >= flood / 2, "the flood could not connect");
    assert!(evicted as usize >= held.len() - cap, "{evicted} evicted");
    assert!(
        open as usize <= cap + 16,
        "{open} connections open, cap {cap}"
    );
    drop(held);
    service.shutdown().unwrap();
}

#[test]
fn in_flight_and_long_poll_caps_answer_503_with_retry_after() {
    let mut world = World::new(8);
    let alice = world.party(10, Role::User);
    let vendor = world.party(20, Role::Vendor);
    let service = world.start(|config| {
        config.max_in_flight = 2;
        config.max_long_polls = 1;
        config.body_timeout = Duration::from_secs(5);
    });
    let client = world.client(&service, &vendor);
    // Two requests hold both in-flight slots: their bodies are still on the way.
    let signature = RequestSignature::sign(&vendor.key, "POST", "/v1/transactions", b"{}", NOW);
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(service.addr()).unwrap();
        let mut head = "POST /v1/transactions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n".to_owned();
        for (name, value) in signature.headers() {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n{");
        stream.write_all(head.as_bytes()).unwrap();
        holders.push(stream);
    }
    // Saturated: the next request is shed at once with Retry-After (bounded wait for the two
    // holders to be in).
    let path = format!("/v1/users/{}", alice.cert.subject);
    let mut shed = None;
    for _ in 0..50 {
        let answer = send(&service, As::Vendor(&vendor.key), Method::GET, &path, b"");
        if answer.status == 503 {
            shed = Some(answer);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let shed = shed.expect("the in-flight cap never answered 503");
    assert_eq!(shed.code(), "busy");
    assert_eq!(shed.retry_after, Some(1));
    // /health is outside every cap.
    assert_eq!(
        send(&service, As::Nobody, Method::GET, "/health", b"").status,
        200
    );
    drop(holders);
    let mut recovered = false;
    for _ in 0..100 {
        if send(&service, As::Vendor(&vendor.key), Method::GET, &path, b"").status == 404 {
            recovered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(recovered, "the slots were not released");

    // The one long-poll slot held the same way (a request to /final whose body is on the way).
    let tx = world.pay(&alice, &vendor, "sale");
    client.submit(&tx).unwrap();
    let final_path = format!("/v1/transactions/{}/final?wait=5", tx.id().unwrap());
    let final_signature = RequestSignature::sign(&vendor.key, "GET", &final_path, b"{}", NOW);
    let mut holder = TcpStream::connect(service.addr()).unwrap();
    let mut head = format!("GET {final_path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n");
    for (name, value) in final_signature.headers() {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n{");
    holder.write_all(head.as_bytes()).unwrap();
    let mut shed = None;
    for _ in 0..50 {
        let answer = send(
            &service,
            As::Vendor(&vendor.key),
            Method::GET,
            &final_path,
            b"",
        );
        if answer.status == 503 {
            shed = Some(answer);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let shed = shed.expect("the long-poll cap never answered 503");
    assert_eq!(shed.retry_after, Some(1));
    assert!(shed.message().contains("long-polls"), "{shed:?}");
    // Other routes are not held by the long-poll cap.
    assert_eq!(
        send(&service, As::Vendor(&vendor.key), Method::GET, &path, b"").status,
        200
    );
    drop(holder);
    assert!(errors(&service, "busy") >= 2);
    service.shutdown().unwrap();
}

#[test]
fn the_per_vendor_rate_limit_answers_429_with_retry_after_and_spares_other_vendors() {
    let mut world = World::new(4);
    let alice = world.party(10, Role::User);
    let vendor_a = world.party(20, Role::Vendor);
    let vendor_b = world.party(21, Role::Vendor);
    let service = world.start(|config| {
        config.vendor_rate = 1;
        config.vendor_burst = 3;
    });
    let path = format!("/v1/users/{}", alice.cert.subject);
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..6 {
        let answer = send(&service, As::Vendor(&vendor_a.key), Method::GET, &path, b"");
        statuses.push(answer.status);
        if answer.status == 429 && limited.is_none() {
            limited = Some(answer);
        }
    }
    // A burst of 3 passes (404: the user was never seen), then 429 (at 1/s the fourth could
    // pass only if a second went by).
    assert_eq!(&statuses[..3], &[404, 404, 404], "{statuses:?}");
    let limited = limited.expect("the rate limit never answered 429");
    assert_eq!(limited.code(), "rate_limited");
    assert!(limited.retry_after.unwrap() >= 1, "{limited:?}");
    assert!(
        limited.message().contains("1 requests per second"),
        "{limited:?}"
    );
    // Another vendor and the operator are not limited by A's rate.
    assert_eq!(
        send(&service, As::Vendor(&vendor_b.key), Method::GET, &path, b"").status,
        404
    );
    assert_eq!(
        send(&service, operator(&service), Method::GET, &path, b"").status,
        404
    );
    // The client sees the Retry-After (a few tries: the rate refills one request a second).
    let client = world.client(&service, &vendor_a);
    let mut seen = None;
    for _ in 0..10 {
        if let Err(VendorError::Refused {
            status: 429,
            retry_after,
            ..
        }) = client.user(&alice.cert.subject)
        {
            seen = retry_after;
            break;
        }
    }
    assert!(seen.expect("no 429 with Retry-After") >= Duration::from_secs(1));
    assert!(errors(&service, "rate_limited") >= 2);
    service.shutdown().unwrap();
}

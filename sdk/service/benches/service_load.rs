//! Service load on loopback (issue 5, "Benchmark"): concurrent vendors submit countersigned
//! payment transactions of 5 tokens to the auditor service over HTTP on 127.0.0.1 for a fixed
//! time, each measuring the time from sending a transaction to holding the auditor's answer with
//! its signature verified ([`VendorClient::submit`]); then, in the same run, the engine's
//! in-process intake rate over the same transaction mix on the same store kind, as the reference
//! the service's throughput is divided by.
//!
//! `cargo bench -p mupib-cli --bench service_load`
//!
//! Settings (environment, all optional): `MUPIB_LOAD_SECS` (load duration, default 30),
//! `MUPIB_LOAD_VENDORS` (concurrent vendors, default 200), `MUPIB_LOAD_TX_PER_VENDOR`
//! (pre-generated transactions per vendor, default 150; a vendor that runs out stops early and
//! the report says so), `MUPIB_LOAD_REFERENCE_SECS` (time cap of each engine reference run, default
//! 10), `MUPIB_LOAD_STORE` (`sqlite`, the default, or `memory`: the service and the references
//! on the `MemoryStore` and an in-memory journal, to price everything but the disk).
//!
//! What runs:
//! - the service in-process ([`RunningService::start`]) on `127.0.0.1:0`, with the durable
//!   SQLite store and journal in a temporary directory (WAL, `synchronous = FULL`), default
//!   settings (2 async worker threads, intake off the async threads, the default limits: every
//!   request signed and verified, in-flight cap, per-vendor rate), blocks verified by a
//!   [`SimulatedChain`] (the chain is not what is measured), settlement off;
//! - one OS thread per vendor, each with its own [`VendorClient`] (blocking reqwest, one
//!   keep-alive connection), submitting its own pre-generated transactions back to back
//!   (`POST /v1/transactions`) until the deadline; a request in flight at the deadline completes
//!   and counts;
//! - the mix: every transaction pays 5 fresh tokens of value 10; users change every 20
//!   transactions in round order (round k: vendor 0, 1, …), so each user pays 20 different
//!   vendors and a block of W0 = 100 tokens forms at its 20th transaction (one block per 20
//!   transactions); every certificate is registered before the service starts;
//! - before the load and again after it (service shut down), the engine reference on one
//!   thread over the transactions in round order, each run capped in time: verification of each
//!   transaction alone (as a single submission is verified), [`Auditor::process`] (intake, one
//!   store transaction; a formed block verified by a clone of the chain and its decisions
//!   applied), the signed response and the signed final responses of the decided blocks — on a
//!   fresh [`SqliteStore`] file; and the same plus the service journal's writes
//!   ([`Journal`]: answer, token index, final answers), i.e. the service's synchronous core
//!   without HTTP. The disk is shared with other work, so the commit cost drifts: the ratio is
//!   given against the mean of the two engine runs, with the range.
//!
//! Figures only, nothing asserted about time. The vendor threads run on the same cores as the
//! service: the load figures include the clients' cost (JSON encoding, one signature check per
//! answer), the reference figures do not.

use std::collections::BTreeMap;
use std::error::Error;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use mupib_auditor::store::{MemoryStore, SqliteStore, Store};
use mupib_auditor::{Auditor, AuditorConfig, SimulatedChain, TransactionSummary};
use mupib_client::vendor::{VendorClient, VendorError};
use mupib_protocol::cert::{pubkey_of, Certificate, Registry, Role};
use mupib_protocol::money::Withholding;
use mupib_protocol::response::{AuditorResponse, Verdict};
use mupib_protocol::token::Token;
use mupib_protocol::transaction::{verify_transactions, PaymentTransaction};
use mupib_protocol::trust::{TrustModel, TrustScale};
use mupib_service::journal::Journal;
use mupib_service::{RunningService, ServiceConfig, ServiceParts};
use rayon::prelude::*;

/// Tokens per transaction.
const TOKENS: u32 = 5;
/// Value of each token, in base units.
const TOKEN_VALUE: u64 = 10;
/// W0, the initial block size (tokens).
const INITIAL_BLOCK_SIZE: u64 = 100;
/// Transactions per user: W0 / tokens per transaction, so each user forms exactly one block.
const TX_PER_USER: usize = 20;
/// ρ = 20 %.
const WITHHOLDING_BPS: u16 = 2000;
/// The pinned clock of the service and the reference (certificates are valid over 0..10 000).
const NOW: i64 = 1_000;

type BenchResult<T> = Result<T, Box<dyn Error>>;

fn key(index: usize) -> SigningKey {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(index as u64).to_le_bytes());
    seed[31] = 0x5c;
    SigningKey::from_bytes(&seed)
}

fn env_or(name: &str, default: u64) -> BenchResult<u64> {
    match std::env::var(name) {
        Ok(text) => Ok(text
            .trim()
            .parse::<u64>()
            .map_err(|e| format!("{name}={text:?} is not a whole number: {e}"))?),
        Err(_) => Ok(default),
    }
}

fn engine_config() -> BenchResult<AuditorConfig> {
    Ok(AuditorConfig {
        withholding: Withholding::from_bps(WITHHOLDING_BPS)?,
        trust_model: TrustModel::Neutral,
        trust_scale: TrustScale::Initial,
        initial_block_size: INITIAL_BLOCK_SIZE,
        paper_mode: false,
    })
}

/// Everything the run needs, built before anything is timed.
struct Workload {
    registry: Registry,
    /// Per vendor, its transactions in submission order.
    pools: Vec<Vec<PaymentTransaction>>,
    vendors: Vec<(SigningKey, Certificate)>,
    /// Every token batch published, nothing spent.
    chain: SimulatedChain,
    auditor_key: SigningKey,
    users: usize,
}

impl Workload {
    /// The transactions in round order (round k: vendor 0, 1, …), the order the load roughly
    /// reaches the service in.
    fn round_order(&self) -> Vec<&PaymentTransaction> {
        let rounds = self.pools.iter().map(Vec::len).max().unwrap_or(0);
        (0..rounds)
            .flat_map(|k| self.pools.iter().filter_map(move |pool| pool.get(k)))
            .collect()
    }
}

fn workload(vendor_count: usize, per_vendor: usize) -> BenchResult<Workload> {
    let authority = key(0);
    let bank = key(1);
    let issue = |k: &SigningKey, role, name: &str| {
        Certificate::issue(&authority, pubkey_of(k), role, name, 0, 10_000)
    };
    let mut registry = Registry::with_authorities([pubkey_of(&authority)])?;
    registry.register(issue(&bank, Role::Bank, "bank")?)?;
    let mut vendors = Vec::with_capacity(vendor_count);
    for index in 0..vendor_count {
        let vendor = key(1_000_000 + index);
        let cert = issue(&vendor, Role::Vendor, &format!("vendor {index}"))?;
        registry.register(cert.clone())?;
        vendors.push((vendor, cert));
    }
    let total = vendor_count
        .checked_mul(per_vendor)
        .ok_or("too many transactions")?;
    let users = total.div_ceil(TX_PER_USER);
    let mut user_certs = Vec::with_capacity(users);
    for index in 0..users {
        let user = key(2_000_000 + index);
        let cert = issue(&user, Role::User, &format!("user {index}"))?;
        registry.register(cert.clone())?;
        user_certs.push((user, cert));
    }
    // Global sequence g = k * vendors + v (round k, vendor v); user g / 20 pays transaction g
    // with tokens 5j..5j+5 of its own batch (j = g % 20).
    type UserTxs = Result<(Vec<Token>, Vec<(usize, PaymentTransaction)>), String>;
    let per_user: Vec<UserTxs> = user_certs
        .par_iter()
        .enumerate()
        .map(|(u, (user, user_cert))| {
            let tokens = Token::sign_batch(
                &bank,
                u as u64,
                TOKENS * TX_PER_USER as u32,
                TOKEN_VALUE,
                NOW - 500,
            );
            let mut txs = Vec::with_capacity(TX_PER_USER);
            for j in 0..TX_PER_USER {
                let g = u * TX_PER_USER + j;
                if g >= total {
                    break;
                }
                let (vendor, vendor_cert) = &vendors[g % vendor_count];
                let start = j * TOKENS as usize;
                let tx = PaymentTransaction::user_sign(
                    user,
                    user_cert.clone(),
                    vendor_cert.clone(),
                    NOW,
                    tokens[start..start + TOKENS as usize].to_vec(),
                    "load item",
                )
                .map_err(|e| e.to_string())?
                .countersign(vendor)
                .map_err(|e| e.to_string())?;
                txs.push((g, tx));
            }
            Ok((tokens, txs))
        })
        .collect();
    let mut chain = SimulatedChain::new();
    let mut pools: Vec<Vec<PaymentTransaction>> =
        vec![Vec::with_capacity(per_vendor); vendor_count];
    for (u, result) in per_user.into_iter().enumerate() {
        let (tokens, txs) = result?;
        chain.publish_batch(
            pubkey_of(&bank),
            u as u64,
            TOKEN_VALUE,
            tokens.iter().map(Token::token_digest16).collect(),
        );
        // Users are in g order, so each pool fills in round order.
        for (g, tx) in txs {
            pools[g % vendor_count].push(tx);
        }
    }
    Ok(Workload {
        registry,
        pools,
        vendors,
        chain,
        auditor_key: key(2),
        users,
    })
}

/// What one vendor thread saw.
#[derive(Default)]
struct VendorStats {
    /// Send → verified signed answer, for every answered submission.
    latencies: Vec<Duration>,
    /// Answers by verdict.
    verdicts: BTreeMap<String, u64>,
    /// Failures by HTTP status (or transport / bad answer).
    errors: BTreeMap<String, u64>,
    /// Ran out of pre-generated transactions before the deadline.
    exhausted: bool,
}

fn verdict_name(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Deliver => "deliver".into(),
        Verdict::Wait => "wait".into(),
        Verdict::Reject(reason) => {
            let text = format!("{reason:?}");
            let name = text
                .split(|c: char| !c.is_alphanumeric())
                .next()
                .unwrap_or("reason");
            format!("reject ({name})")
        }
    }
}

fn error_name(error: &VendorError) -> String {
    match error {
        VendorError::Refused { status, code, .. } => format!("HTTP {status} {code}"),
        VendorError::Unreadable { status, .. } => format!("HTTP {status} unreadable"),
        VendorError::Unreachable { .. } => "transport".into(),
        VendorError::BadAuditorResponse(_) => "bad auditor signature".into(),
        other => format!("client: {other}"),
    }
}

fn vendor_loop(
    client: &VendorClient,
    pool: &[PaymentTransaction],
    start: &Barrier,
    deadline: &std::sync::OnceLock<Instant>,
) -> VendorStats {
    let mut stats = VendorStats {
        latencies: Vec::with_capacity(pool.len()),
        ..VendorStats::default()
    };
    start.wait();
    let Some(deadline) = deadline.get().copied() else {
        return stats;
    };
    let mut next = pool.iter();
    while Instant::now() < deadline {
        let Some(tx) = next.next() else {
            stats.exhausted = true;
            break;
        };
        let sent = Instant::now();
        match client.submit(tx) {
            Ok(answer) => {
                stats.latencies.push(sent.elapsed());
                *stats
                    .verdicts
                    .entry(verdict_name(&answer.response.verdict))
                    .or_default() += 1;
            }
            Err(error) => *stats.errors.entry(error_name(&error)).or_default() += 1,
        }
    }
    stats
}

/// Nearest rank: the smallest value with at least `percent` % of them at or below it.
fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "n/a".into())
}

/// The load phase's figures.
struct LoadResult {
    elapsed: Duration,
    latencies: Vec<Duration>,
    verdicts: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    exhausted: usize,
    metrics: String,
    shutdown: Duration,
}

fn run_load(work: &Workload, dir: Option<&Path>, duration: Duration) -> BenchResult<LoadResult> {
    let mut config = ServiceConfig::new(
        dir.map(Path::to_path_buf),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        engine_config()?,
    );
    config.settle_interval = None;
    let service = RunningService::start(
        config,
        ServiceParts {
            auditor_key: work.auditor_key.clone(),
            registry: work.registry.clone(),
            verifier: Box::new(work.chain.clone()),
            payouts: None,
            batches: None,
            clock: Arc::new(|| NOW),
        },
    )?;
    let url = service.url();
    if !service.addr().ip().is_loopback() {
        return Err(format!("service bound to {}, not loopback", service.addr()).into());
    }
    let auditor = pubkey_of(&work.auditor_key);
    let mut clients = Vec::with_capacity(work.vendors.len());
    for (vendor, cert) in &work.vendors {
        clients.push(
            VendorClient::new(url.clone(), vendor.clone(), cert.clone(), auditor)?
                .with_clock(Arc::new(|| NOW)),
        );
    }
    let barrier = Barrier::new(clients.len() + 1);
    let deadline = std::sync::OnceLock::new();
    let (stats, elapsed) = std::thread::scope(|scope| -> BenchResult<_> {
        let mut handles = Vec::with_capacity(clients.len());
        for (client, pool) in clients.iter().zip(&work.pools) {
            let (barrier, deadline) = (&barrier, &deadline);
            handles.push(
                std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(scope, move || vendor_loop(client, pool, barrier, deadline))?,
            );
        }
        let started = Instant::now();
        deadline
            .set(started + duration)
            .map_err(|_| "deadline already set")?;
        barrier.wait();
        let mut stats = Vec::with_capacity(handles.len());
        for handle in handles {
            stats.push(handle.join().map_err(|_| "a vendor thread panicked")?);
        }
        Ok((stats, started.elapsed()))
    })?;
    let metrics = reqwest::blocking::Client::new()
        .get(format!("{url}/metrics"))
        .bearer_auth(service.operator_token())
        .send()?
        .text()?;
    let stopping = Instant::now();
    service.shutdown()?;
    let shutdown = stopping.elapsed();
    let mut result = LoadResult {
        elapsed,
        latencies: Vec::new(),
        verdicts: BTreeMap::new(),
        errors: BTreeMap::new(),
        exhausted: 0,
        metrics,
        shutdown,
    };
    for vendor in stats {
        result.latencies.extend(vendor.latencies);
        for (name, count) in vendor.verdicts {
            *result.verdicts.entry(name).or_default() += count;
        }
        for (name, count) in vendor.errors {
            *result.errors.entry(name).or_default() += count;
        }
        result.exhausted += usize::from(vendor.exhausted);
    }
    result.latencies.sort_unstable();
    Ok(result)
}

/// The engine reference's figures.
struct ReferenceResult {
    transactions: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    verdicts: BTreeMap<String, u64>,
    blocks: usize,
}

impl ReferenceResult {
    fn rate(&self) -> f64 {
        self.transactions as f64 / self.elapsed.as_secs_f64()
    }
}

/// Verify + intake (+ block verification and decisions) + sign, one transaction at a time, on a
/// fresh SQLite file; with `journal`, also the service journal's writes.
fn run_reference(
    work: &Workload,
    txs: &[&PaymentTransaction],
    dir: Option<&Path>,
    journal: bool,
    limit: Duration,
) -> BenchResult<ReferenceResult> {
    let store: Box<dyn Store + Send> = match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            Box::new(SqliteStore::open(dir.join("auditor.sqlite"))?)
        }
        None => Box::new(MemoryStore::new()),
    };
    let mut auditor = Auditor::new(store, engine_config()?)?;
    let mut journal = match (journal, dir) {
        (false, _) => None,
        (true, Some(dir)) => Some(Journal::open(&dir.join("service.sqlite"))?),
        (true, None) => Some(Journal::in_memory()?),
    };
    let mut chain = work.chain.clone();
    let mut result = ReferenceResult {
        transactions: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::with_capacity(txs.len()),
        verdicts: BTreeMap::new(),
        blocks: 0,
    };
    let start = Instant::now();
    for tx in txs {
        if start.elapsed() >= limit {
            break;
        }
        let begun = Instant::now();
        let verified = verify_transactions(std::slice::from_ref(*tx), &work.registry, NOW)
            .pop()
            .ok_or("verification returned no result")??;
        let summary = TransactionSummary::from(&verified);
        let processed = auditor.process(&summary, &mut chain)?;
        let verdict = processed.intake.response_verdict(&summary);
        let name = verdict_name(&verdict);
        let is_final = !matches!(verdict, Verdict::Wait);
        let rejected = matches!(verdict, Verdict::Reject(_));
        let block_id = processed.intake.block.as_ref().map(|b| b.block_id);
        let response =
            AuditorResponse::sign(&work.auditor_key, summary.id, verdict, block_id, NOW)?;
        if let Some(journal) = journal.as_mut() {
            journal.record_first(&response, is_final)?;
            if !rejected {
                let tokens: Vec<_> = summary.tokens.iter().map(|t| t.id).collect();
                journal.record_tokens(&summary.id, &tokens)?;
            }
        }
        for block in &processed.blocks {
            result.blocks += 1;
            for final_verdict in &block.verdicts {
                let response = AuditorResponse::sign(
                    &work.auditor_key,
                    final_verdict.transaction_id,
                    block.response_verdict(final_verdict),
                    Some(block.block_id),
                    NOW,
                )?;
                if let Some(journal) = journal.as_ref() {
                    journal.record_update(&response, true)?;
                }
            }
        }
        result.latencies.push(begun.elapsed());
        *result.verdicts.entry(name).or_default() += 1;
        result.transactions += 1;
    }
    result.elapsed = start.elapsed();
    result.latencies.sort_unstable();
    Ok(result)
}

/// The engine reference and the service-core reference over `order`, each on fresh files.
fn references(
    work: &Workload,
    order: &[&PaymentTransaction],
    dir: Option<&Path>,
    label: &str,
    limit: Duration,
) -> BenchResult<(ReferenceResult, ReferenceResult)> {
    let engine_dir = dir.map(|dir| dir.join(format!("engine-{label}")));
    let engine = run_reference(work, order, engine_dir.as_deref(), false, limit)?;
    let core_dir = dir.map(|dir| dir.join(format!("core-{label}")));
    let core = run_reference(work, order, core_dir.as_deref(), true, limit)?;
    Ok((engine, core))
}

fn counts(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(name, count)| format!("{name}: {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() -> BenchResult<()> {
    let total = Instant::now();
    let duration = Duration::from_secs(env_or("MUPIB_LOAD_SECS", 30)?);
    let vendor_count = usize::try_from(env_or("MUPIB_LOAD_VENDORS", 200)?)?;
    let per_vendor = usize::try_from(env_or("MUPIB_LOAD_TX_PER_VENDOR", 150)?)?;
    let reference_limit = Duration::from_secs(env_or("MUPIB_LOAD_REFERENCE_SECS", 10)?);
    let in_memory = match std::env::var("MUPIB_LOAD_STORE").as_deref() {
        Ok("memory") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => return Err(format!("MUPIB_LOAD_STORE={other:?}: use sqlite or memory").into()),
    };
    let store_name = if in_memory {
        "MemoryStore + in-memory journal, nothing durable"
    } else {
        "SQLite file store + journal"
    };
    if vendor_count == 0 || per_vendor == 0 {
        return Err("MUPIB_LOAD_VENDORS and MUPIB_LOAD_TX_PER_VENDOR must be at least 1".into());
    }
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "service load: {vendor_count} vendors x up to {per_vendor} pre-generated transactions, \
         {} s, {TOKENS} tokens/tx, W0 = {INITIAL_BLOCK_SIZE}; {cores} cores, load average {}",
        duration.as_secs(),
        load_average()
    );

    let t = Instant::now();
    let work = workload(vendor_count, per_vendor)?;
    println!(
        "generated {} transactions for {} users (one block per {TX_PER_USER} tx) in {:.1} s",
        work.pools.iter().map(Vec::len).sum::<usize>(),
        work.users,
        t.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir()?;
    let order = work.round_order();
    let files = (!in_memory).then(|| dir.path().to_path_buf());
    let before = references(&work, &order, files.as_deref(), "before", reference_limit)?;
    let service_dir = files.as_ref().map(|dir| dir.join("service"));
    let load = run_load(&work, service_dir.as_deref(), duration)?;
    let answered = load.latencies.len();
    let errors: u64 = load.errors.values().sum();
    let rate = answered as f64 / load.elapsed.as_secs_f64();
    println!();
    println!(
        "service over HTTP on 127.0.0.1 ({store_name}, simulated chain), load average after {}:",
        load_average()
    );
    println!(
        "  {answered} answered + {errors} failed in {:.2} s = {rate:.0} tx/s ({:.0} signatures/s \
         verified by the service)",
        load.elapsed.as_secs_f64(),
        rate * f64::from(TOKENS + 4)
    );
    println!(
        "  send -> verified signed answer: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(percentile(&load.latencies, 50)),
        ms(percentile(&load.latencies, 99)),
        ms(load.latencies.last().copied().unwrap_or_default())
    );
    println!("  answers by verdict: {}", counts(&load.verdicts));
    println!("  errors by status: {}", counts(&load.errors));
    if load.exhausted > 0 {
        println!(
            "  {} vendors ran out of pre-generated transactions before the deadline \
             (raise MUPIB_LOAD_TX_PER_VENDOR)",
            load.exhausted
        );
    }
    let decided: u64 = load
        .metrics
        .lines()
        .filter(|line| line.starts_with("mupib_blocks_total"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    println!(
        "  blocks: {} formed at intake (one per wait answer), {decided} decided by the end of \
         the load, the rest at shutdown",
        load.verdicts.get("wait").copied().unwrap_or(0)
    );
    println!(
        "  graceful shutdown (drains the queued blocks) took {:.2} s",
        load.shutdown.as_secs_f64()
    );
    let interesting = [
        "mupib_intake_total",
        "mupib_refused_total",
        "mupib_blocks",
        "mupib_final_total",
    ];
    for line in load.metrics.lines() {
        if !line.starts_with('#')
            && interesting.iter().any(|p| line.starts_with(p))
            && !line.ends_with(" 0")
        {
            println!("  metric {line}");
        }
    }

    // The reference again, right after the load: the disk is shared, so its commit cost drifts.
    let after = references(&work, &order, files.as_deref(), "after", reference_limit)?;
    println!();
    println!(
        "in-process reference, one thread, {store_name}, same mix in round order \
         (each capped at {} s), before and after the load:",
        reference_limit.as_secs()
    );
    println!(
        "{:<50} {:>6} {:>8} {:>8} {:>8} {:>7}  verdicts",
        "", "tx", "tx/s", "p50 ms", "p99 ms", "blocks"
    );
    for (name, stats) in [
        ("engine: verify + process + sign (before)", &before.0),
        ("engine: verify + process + sign (after)", &after.0),
        (
            "service core: the same + journal writes (before)",
            &before.1,
        ),
        ("service core: the same + journal writes (after)", &after.1),
    ] {
        println!(
            "{name:<50} {:>6} {:>8.0} {:>8.2} {:>8.2} {:>7}  {}",
            stats.transactions,
            stats.rate(),
            ms(percentile(&stats.latencies, 50)),
            ms(percentile(&stats.latencies, 99)),
            stats.blocks,
            counts(&stats.verdicts)
        );
    }
    let engine_rate = (before.0.rate() + after.0.rate()) / 2.0;
    let core_rate = (before.1.rate() + after.1.rate()) / 2.0;
    println!();
    println!(
        "ratio service / engine = {:.2} (engine mean of before and after: {engine_rate:.0} tx/s; \
         range {:.2}-{:.2}); service / service core = {:.2} (core mean {core_rate:.0} tx/s)",
        rate / engine_rate,
        rate / before.0.rate().max(after.0.rate()),
        rate / before.0.rate().min(after.0.rate()),
        rate / core_rate
    );
    println!("total bench time {:.1} s", total.elapsed().as_secs_f64());
    Ok(())
}

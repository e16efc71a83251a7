//! Service load on loopback (issues 5 and 11, "Benchmark"): concurrent vendors submit
//! countersigned payment transactions of 5 tokens to the auditor service over HTTP on 127.0.0.1,
//! each measuring the time from sending a transaction to holding the auditor's answer with its
//! signature verified ([`VendorClient::submit`]). The reference is the physical one, measured in
//! the same run: raw ed25519 `verify_batch` over the same signatures (9 per transaction: two
//! certificates, vendor, user, five tokens), in transactions per second, on one core (what the
//! pipeline's verify thread can do) and on every core (the machine).
//!
//! `cargo bench -p mupib-service --bench service_load`
//!
//! Settings (environment, all optional): `MUPIB_LOAD_SECS` (saturated load, default 30),
//! `MUPIB_LOAD_OPEN_SECS` (open-loop load at half the saturated rate, default 15; 0 skips it),
//! `MUPIB_LOAD_VENDORS` (concurrent vendors, default 200), `MUPIB_LOAD_TX_PER_VENDOR`
//! (pre-generated transactions per vendor, default 400; a vendor that runs out stops early and
//! the report says so), `MUPIB_LOAD_GROUP_MAX` (the service's group cap, default its default),
//! `MUPIB_LOAD_STORE` (`sqlite`, the default; `memory`: the
//! `MemoryStore` and an in-memory journal, to price everything but the disk; `postgres`: the
//! PostgreSQL server at `MUPIB_LOAD_POSTGRES` or `MUPIB_TEST_POSTGRES`, a fresh schema per run),
//! `MUPIB_LOAD_INSTANCES` (service instances on the one store, PostgreSQL only, default 1;
//! vendors are spread over them round-robin, as a load balancer would).
//!
//! What runs:
//! - the service in-process ([`RunningService::start`]) on `127.0.0.1:0`, with the durable
//!   SQLite store (WAL, `synchronous = FULL`) and journal in a temporary directory, default
//!   settings (2 async worker threads, the intake pipeline with its default group size and
//!   window, the default limits: every request signed and verified, in-flight cap, per-vendor
//!   rate), blocks verified by a [`SimulatedChain`] (the chain is not what is measured),
//!   settlement off;
//! - one OS thread per vendor, each with its own [`VendorClient`] (blocking reqwest, one
//!   keep-alive connection): saturated, each submits its own pre-generated transactions back to
//!   back (`POST /v1/transactions`) until the deadline; then open loop, each sends on a fixed
//!   schedule (vendors staggered) at half the saturated rate in all, latency counted from the
//!   scheduled send time (a late send is not forgiven);
//! - the mix: every transaction pays 5 fresh tokens of value 10; users change every 20
//!   transactions in round order (round k: vendor 0, 1, …), so each user pays 20 different
//!   vendors and a block of W0 = 100 tokens forms at its 20th transaction (one block per 20
//!   transactions); every certificate is registered before the service starts;
//! - the load generator's CPU: each vendor thread's and each reqwest runtime thread's CPU time
//!   (`/proc/thread-self/stat`), against the whole process's over the load.
//!
//! Figures only, nothing asserted about time.

use std::collections::BTreeMap;
use std::error::Error;
use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use ed25519_dalek::{Signature, VerifyingKey};
use mupib_auditor::store::PostgresOptions;
use mupib_auditor::{AuditorConfig, SimulatedChain};
use mupib_client::vendor::{VendorClient, VendorError};
use mupib_protocol::cert::{pubkey_of, Certificate, Registry, Role};
use mupib_protocol::money::Withholding;
use mupib_protocol::response::Verdict;
use mupib_protocol::token::Token;
use mupib_protocol::transaction::PaymentTransaction;
use mupib_protocol::trust::{TrustModel, TrustScale};
use mupib_protocol::Pubkey;
use mupib_service::{RunningService, ServiceConfig, ServiceParts, StoreChoice, DEFAULT_GROUP_MAX};

/// Transactions per raw verification batch of the bound: 576 signatures, where ed25519 batch
/// verification has reached its per-signature floor (BENCHMARKS.md, "Intake").
const BOUND_BATCH_TX: usize = 64;
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

/// What one vendor thread saw in one phase.
#[derive(Default)]
struct VendorStats {
    /// Send (scheduled send, open loop) → verified signed answer, per answered submission.
    latencies: Vec<Duration>,
    /// Answers by verdict.
    verdicts: BTreeMap<String, u64>,
    /// Failures by HTTP status (or transport / bad answer).
    errors: BTreeMap<String, u64>,
    /// Ran out of pre-generated transactions before the deadline.
    exhausted: bool,
    /// Transactions of its pool used.
    used: usize,
    /// CPU time of this thread over the phase.
    cpu: Duration,
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

/// CPU time (user + system) of a thread or process from its `stat` file.
fn stat_cpu(path: &str) -> Duration {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces) in parentheses: state is field 3,
    // utime 14 and stime 15, in clock ticks (100 per second on Linux).
    let Some(rest) = text.rsplit_once(')').map(|(_, rest)| rest) else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis(ticks(11).saturating_add(ticks(12)).saturating_mul(10))
}

/// CPU time of the process's threads whose name starts with `prefix`.
fn threads_cpu(prefix: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    tasks
        .filter_map(Result::ok)
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.starts_with(prefix))
        })
        .map(|task| stat_cpu(&task.path().join("stat").display().to_string()))
        .sum()
}

/// How a phase sends.
#[derive(Clone, Copy)]
enum Pace {
    /// Back to back: throughput at saturation.
    Saturated,
    /// Each vendor every `interval`, starting at `offset` (open loop).
    Open {
        interval: Duration,
        offset: Duration,
    },
}

fn vendor_loop(
    client: &VendorClient,
    pool: &[PaymentTransaction],
    pace: Pace,
    start: &Barrier,
    clock: &std::sync::OnceLock<(Instant, Instant)>,
) -> VendorStats {
    let mut stats = VendorStats {
        latencies: Vec::with_capacity(pool.len()),
        ..VendorStats::default()
    };
    start.wait();
    let Some((started, deadline)) = clock.get().copied() else {
        return stats;
    };
    let cpu_before = stat_cpu("/proc/thread-self/stat");
    let mut next = pool.iter();
    let mut scheduled = match pace {
        Pace::Saturated => started,
        Pace::Open { offset, .. } => started + offset,
    };
    loop {
        if let Pace::Open { interval, .. } = pace {
            let now = Instant::now();
            if scheduled > now {
                std::thread::sleep(scheduled - now);
            }
            if scheduled >= deadline {
                break;
            }
            // The next send is due one interval after this one was due, however late it is.
            scheduled += interval;
        }
        if Instant::now() >= deadline {
            break;
        }
        let Some(tx) = next.next() else {
            stats.exhausted = true;
            break;
        };
        stats.used += 1;
        let sent = match pace {
            Pace::Saturated => Instant::now(),
            Pace::Open { interval, .. } => scheduled - interval,
        };
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
    stats.cpu = stat_cpu("/proc/thread-self/stat").saturating_sub(cpu_before);
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

/// One phase's figures.
#[derive(Default)]
struct Phase {
    elapsed: Duration,
    latencies: Vec<Duration>,
    verdicts: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    exhausted: usize,
    /// CPU of the vendor threads plus their reqwest runtime threads.
    generator_cpu: Duration,
    /// CPU of the whole process.
    process_cpu: Duration,
    /// Blocks decided (metrics) at the end of the phase.
    decided: u64,
    /// `mupib_group_commits_total` and `mupib_group_transactions_total` at the end.
    groups: (u64, u64),
    /// `mupib_group_commit_microseconds_total` at the end.
    commit_micros: u64,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

fn metric_sum(metrics: &str, prefix: &str) -> u64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Runs one phase: every vendor from its `cursor` in its pool, at `pace`, for `duration`.
fn run_phase(
    services: &[RunningService],
    clients: &[VendorClient],
    work: &Workload,
    cursors: &mut [usize],
    pace: impl Fn(usize) -> Pace,
    duration: Duration,
) -> BenchResult<Phase> {
    let barrier = Barrier::new(clients.len() + 1);
    let clock = std::sync::OnceLock::new();
    let reqwest_before = threads_cpu("reqwest");
    let process_before = stat_cpu("/proc/self/stat");
    let (stats, elapsed) = std::thread::scope(|scope| -> BenchResult<_> {
        let mut handles = Vec::with_capacity(clients.len());
        for (index, (client, pool)) in clients.iter().zip(&work.pools).enumerate() {
            let (barrier, clock) = (&barrier, &clock);
            let pool = &pool[cursors[index].min(pool.len())..];
            let pace = pace(index);
            handles.push(
                std::thread::Builder::new()
                    .name("load-vendor".into())
                    .stack_size(256 * 1024)
                    .spawn_scoped(scope, move || {
                        vendor_loop(client, pool, pace, barrier, clock)
                    })?,
            );
        }
        let started = Instant::now();
        clock
            .set((started, started + duration))
            .map_err(|_| "clock already set")?;
        barrier.wait();
        let mut stats = Vec::with_capacity(handles.len());
        for handle in handles {
            stats.push(handle.join().map_err(|_| "a vendor thread panicked")?);
        }
        Ok((stats, started.elapsed()))
    })?;
    let process_cpu = stat_cpu("/proc/self/stat").saturating_sub(process_before);
    let reqwest_cpu = threads_cpu("reqwest").saturating_sub(reqwest_before);
    let mut metrics = String::new();
    for service in services {
        metrics.push_str(
            &reqwest::blocking::Client::new()
                .get(format!("{}/metrics", service.url()))
                .bearer_auth(service.operator_token())
                .send()?
                .text()?,
        );
    }
    let mut phase = Phase {
        elapsed,
        process_cpu,
        generator_cpu: reqwest_cpu,
        decided: metric_sum(&metrics, "mupib_blocks_total"),
        groups: (
            metric_sum(&metrics, "mupib_group_commits_total"),
            metric_sum(&metrics, "mupib_group_transactions_total"),
        ),
        commit_micros: metric_sum(&metrics, "mupib_group_commit_microseconds_total"),
        ..Phase::default()
    };
    for (index, vendor) in stats.into_iter().enumerate() {
        cursors[index] += vendor.used;
        phase.latencies.extend(vendor.latencies);
        phase.generator_cpu += vendor.cpu;
        for (name, count) in vendor.verdicts {
            *phase.verdicts.entry(name).or_default() += count;
        }
        for (name, count) in vendor.errors {
            *phase.errors.entry(name).or_default() += count;
        }
        phase.exhausted += usize::from(vendor.exhausted);
    }
    phase.latencies.sort_unstable();
    Ok(phase)
}

fn vk(key: &Pubkey) -> BenchResult<VerifyingKey> {
    Ok(VerifyingKey::from_bytes(&key.to_bytes())?)
}

type Item = (Vec<u8>, Signature, VerifyingKey);

/// Every (message, signature, key) a transaction carries (9 for 5 tokens), as the auditor
/// benches list them.
fn signature_items(tx: &PaymentTransaction) -> BenchResult<Vec<Item>> {
    let mut items = vec![
        (
            tx.user_cert.signing_bytes()?,
            Signature::from_bytes(&tx.user_cert.signature),
            vk(&tx.user_cert.issuer)?,
        ),
        (
            tx.vendor_cert.signing_bytes()?,
            Signature::from_bytes(&tx.vendor_cert.signature),
            vk(&tx.vendor_cert.issuer)?,
        ),
        (
            tx.vendor_signed_bytes()?,
            Signature::from_bytes(&tx.vendor_signature),
            vk(&tx.vendor())?,
        ),
        (
            tx.user_signed_bytes()?,
            Signature::from_bytes(&tx.user_signature),
            vk(&tx.user())?,
        ),
    ];
    for token in &tx.tokens {
        items.push((
            token.signing_bytes().to_vec(),
            token.signature(),
            vk(&token.bank)?,
        ));
    }
    Ok(items)
}

/// Raw `verify_batch` over `items` in batches of `per_batch`, on `threads` threads: signatures/s.
fn raw_batch_rate(items: &[Item], per_batch: usize, threads: usize) -> BenchResult<f64> {
    let share = items.len().div_ceil(threads.max(1)).max(1);
    let start = Instant::now();
    std::thread::scope(|scope| -> BenchResult<()> {
        let handles: Vec<_> = items
            .chunks(share)
            .map(|part| {
                scope.spawn(move || -> Result<(), String> {
                    for chunk in part.chunks(per_batch) {
                        let messages: Vec<&[u8]> =
                            chunk.iter().map(|(m, _, _)| m.as_slice()).collect();
                        let signatures: Vec<Signature> = chunk.iter().map(|(_, s, _)| *s).collect();
                        let keys: Vec<VerifyingKey> = chunk.iter().map(|(_, _, k)| *k).collect();
                        ed25519_dalek::verify_batch(&messages, &signatures, &keys)
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(())
                })
            })
            .collect();
        for handle in handles {
            handle.join().map_err(|_| "a verifying thread panicked")??;
        }
        Ok(())
    })?;
    Ok(items.len() as f64 / start.elapsed().as_secs_f64())
}

/// The physical bound in transactions/s: raw batch verification of the first transactions'
/// signatures, best of three, on one thread and on `cores` threads.
fn physical_bound(order: &[&PaymentTransaction], cores: usize) -> BenchResult<(f64, f64)> {
    let mut items = Vec::new();
    for tx in order.iter().take(4_000) {
        items.extend(signature_items(tx)?);
    }
    let per_tx = f64::from(TOKENS + 4);
    let per_batch = BOUND_BATCH_TX * (TOKENS as usize + 4);
    let mut one: f64 = 0.0;
    let mut all: f64 = 0.0;
    for _ in 0..3 {
        one = one.max(raw_batch_rate(&items, per_batch, 1)?);
        all = all.max(raw_batch_rate(&items, per_batch, cores)?);
    }
    Ok((one / per_tx, all / per_tx))
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

fn print_phase(name: &str, phase: &Phase, bound: (f64, f64)) {
    let rate = phase.rate();
    let errors: u64 = phase.errors.values().sum();
    println!(
        "  {name}: {} answered + {errors} failed in {:.2} s = {rate:.0} tx/s = {:.2} of the \
         one-core bound, {:.2} of the {}-core bound",
        phase.latencies.len(),
        phase.elapsed.as_secs_f64(),
        rate / bound.0,
        rate / bound.1,
        std::thread::available_parallelism().map_or(0, usize::from),
    );
    println!(
        "    send -> verified signed answer: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(percentile(&phase.latencies, 50)),
        ms(percentile(&phase.latencies, 99)),
        ms(phase.latencies.last().copied().unwrap_or_default())
    );
    println!("    answers by verdict: {}", counts(&phase.verdicts));
    println!("    errors by status: {}", counts(&phase.errors));
    let busy = phase.process_cpu.as_secs_f64();
    println!(
        "    CPU: process {busy:.1} s over {:.1} s of wall time; load generator (vendor and \
         reqwest threads) {:.1} s = {:.0} % of it",
        phase.elapsed.as_secs_f64(),
        phase.generator_cpu.as_secs_f64(),
        100.0 * phase.generator_cpu.as_secs_f64() / busy.max(1e-9)
    );
    if phase.exhausted > 0 {
        println!(
            "    {} vendors ran out of pre-generated transactions before the deadline \
             (raise MUPIB_LOAD_TX_PER_VENDOR)",
            phase.exhausted
        );
    }
}

fn main() -> BenchResult<()> {
    let total = Instant::now();
    let duration = Duration::from_secs(env_or("MUPIB_LOAD_SECS", 30)?);
    let open_duration = Duration::from_secs(env_or("MUPIB_LOAD_OPEN_SECS", 15)?);
    let vendor_count = usize::try_from(env_or("MUPIB_LOAD_VENDORS", 200)?)?;
    let per_vendor = usize::try_from(env_or("MUPIB_LOAD_TX_PER_VENDOR", 400)?)?;
    let kind = std::env::var("MUPIB_LOAD_STORE").unwrap_or_else(|_| "sqlite".into());
    let in_memory = kind == "memory";
    let instances = usize::try_from(env_or("MUPIB_LOAD_INSTANCES", 1)?)?.max(1);
    let (store, store_name) = match kind.as_str() {
        "memory" => (
            StoreChoice::Sqlite,
            "MemoryStore + in-memory journal, nothing durable".to_owned(),
        ),
        "sqlite" => (
            StoreChoice::Sqlite,
            "SQLite file store (synchronous = FULL) + journal".to_owned(),
        ),
        "postgres" => {
            let url = std::env::var("MUPIB_LOAD_POSTGRES")
                .or_else(|_| std::env::var("MUPIB_TEST_POSTGRES"))
                .map_err(|_| "MUPIB_LOAD_STORE=postgres needs MUPIB_LOAD_POSTGRES=postgres://…")?;
            let schema = format!(
                "bench_{}_{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_secs()
            );
            (
                StoreChoice::Postgres {
                    url,
                    options: PostgresOptions {
                        schema: Some(schema),
                        ..PostgresOptions::default()
                    },
                },
                format!("PostgreSQL, {instances} instance(s) on one schema, journals on disk"),
            )
        }
        other => {
            return Err(
                format!("MUPIB_LOAD_STORE={other:?}: use sqlite, memory or postgres").into(),
            )
        }
    };
    if instances > 1 && !matches!(store, StoreChoice::Postgres { .. }) {
        return Err("MUPIB_LOAD_INSTANCES above 1 needs MUPIB_LOAD_STORE=postgres".into());
    }
    if vendor_count == 0 || per_vendor == 0 {
        return Err("MUPIB_LOAD_VENDORS and MUPIB_LOAD_TX_PER_VENDOR must be at least 1".into());
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "service load: {vendor_count} vendors x up to {per_vendor} pre-generated transactions, \
         {} s saturated + {} s open loop, {TOKENS} tokens/tx, W0 = {INITIAL_BLOCK_SIZE}; {cores} \
         cores, load average {}",
        duration.as_secs(),
        open_duration.as_secs(),
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
    let order = work.round_order();
    let before = physical_bound(&order, cores)?;

    let dir = tempfile::tempdir()?;
    let mut services = Vec::with_capacity(instances);
    for instance in 0..instances {
        let mut config = ServiceConfig::new(
            (!in_memory).then(|| dir.path().join(format!("service-{instance}"))),
            SocketAddr::from(([127, 0, 0, 1], 0)),
            engine_config()?,
        );
        config.store = store.clone();
        config.settle_interval = None;
        config.group_max =
            usize::try_from(env_or("MUPIB_LOAD_GROUP_MAX", DEFAULT_GROUP_MAX as u64)?)?;
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
        if !service.addr().ip().is_loopback() {
            return Err(format!("service bound to {}, not loopback", service.addr()).into());
        }
        services.push(service);
    }
    let auditor = pubkey_of(&work.auditor_key);
    let mut clients = Vec::with_capacity(work.vendors.len());
    for (index, (vendor, cert)) in work.vendors.iter().enumerate() {
        let service = &services[index % instances];
        clients.push(
            VendorClient::new(service.url(), vendor.clone(), cert.clone(), auditor)?
                .with_clock(Arc::new(|| NOW)),
        );
    }
    let mut cursors = vec![0usize; clients.len()];
    let saturated = run_phase(
        &services,
        &clients,
        &work,
        &mut cursors,
        |_| Pace::Saturated,
        duration,
    )?;
    let formed = saturated.verdicts.get("wait").copied().unwrap_or(0);
    let open = if open_duration.is_zero() {
        None
    } else {
        // Half the saturated rate in all: each vendor every vendors / (rate / 2), staggered.
        let half = (saturated.rate() / 2.0).max(1.0);
        let interval = Duration::from_secs_f64(vendor_count as f64 / half);
        let step = interval / u32::try_from(vendor_count).unwrap_or(u32::MAX);
        let decided_before = saturated.decided;
        let phase = run_phase(
            &services,
            &clients,
            &work,
            &mut cursors,
            |index| Pace::Open {
                interval,
                offset: step * u32::try_from(index).unwrap_or(0),
            },
            open_duration,
        )?;
        Some((half, decided_before, phase))
    };
    let stopping = Instant::now();
    for service in services {
        service.shutdown()?;
    }
    let shutdown = stopping.elapsed();
    let after = physical_bound(&order, cores)?;
    let bound = ((before.0 + after.0) / 2.0, (before.1 + after.1) / 2.0);

    println!();
    println!(
        "physical bound: raw ed25519 verify_batch ({} signatures per batch) over the same \
         signatures, {} per transaction: one core {:.0} tx/s (before {:.0}, after {:.0}), {cores} \
         cores {:.0} tx/s (before {:.0}, after {:.0})",
        BOUND_BATCH_TX * (TOKENS as usize + 4),
        TOKENS + 4,
        bound.0,
        before.0,
        after.0,
        bound.1,
        before.1,
        after.1
    );
    println!(
        "service over HTTP on 127.0.0.1 ({store_name}, simulated chain), load average {}:",
        load_average()
    );
    print_phase("saturated", &saturated, bound);
    println!(
        "    blocks formed during the load (one per wait answer): {formed}; decided by its end: \
         {} ({:.1} %)",
        saturated.decided,
        100.0 * saturated.decided as f64 / (formed.max(1)) as f64
    );
    println!(
        "    group commits: {}, mean {:.1} transactions and {:.1} ms per group (cap {})",
        saturated.groups.0,
        saturated.groups.1 as f64 / saturated.groups.0.max(1) as f64,
        saturated.commit_micros as f64 / 1e3 / saturated.groups.0.max(1) as f64,
        usize::try_from(env_or("MUPIB_LOAD_GROUP_MAX", DEFAULT_GROUP_MAX as u64)?)?
    );
    if let Some((half, decided_before, phase)) = &open {
        print_phase(&format!("open loop at {half:.0} tx/s"), phase, bound);
        let formed = phase.verdicts.get("wait").copied().unwrap_or(0);
        println!(
            "    blocks formed during this phase: {formed}; decided during it: {}",
            phase.decided.saturating_sub(*decided_before)
        );
    }
    println!(
        "  graceful shutdown (drains the pipeline and the queued blocks) took {:.2} s",
        shutdown.as_secs_f64()
    );
    println!("total bench time {:.1} s", total.elapsed().as_secs_f64());
    Ok(())
}

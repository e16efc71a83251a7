//! End-to-end intake benchmark (issue 3, "Benchmark"): payment transactions of 5 tokens go
//! through the path the auditor service runs — batch signature verification
//! ([`verify_transactions`], one ed25519 batch per 64 transactions), engine intake
//! ([`Auditor::process`], blocks decided by a [`SimulatedChain`]) on a durable store, and the
//! signed [`AuditorResponse`] — and, in the same run, the raw ed25519-dalek `verify_strict` and
//! `verify_batch` rates over the same signatures.
//!
//! `cargo bench -p mupib-sdk --no-default-features --bench intake`
//!
//! Figures only, nothing asserted about time. What is measured:
//! - saturated intake (every transaction already queued; a batch is taken as soon as the previous
//!   one is answered) on a file-backed [`SqliteStore`] (WAL, `synchronous = FULL`) with group
//!   commit ([`Auditor::apply_decisions_and_intake_batch`]: one database transaction per
//!   verification batch holding its intakes and the decisions of the blocks the previous batch
//!   formed; the group's responses signed only after it returned), the same on two threads
//!   (verification of batch k+1 overlapping the engine on batch k), and with one database
//!   transaction per intake ([`Auditor::process`]), on an in-memory SQLite
//!   database (the same SQL, no I/O) both ways, and on the [`MemoryStore`]: transactions/s,
//!   verified signatures/s,
//!   the ratio to the raw batch-verify bound, and the latency from a batch's collection to each
//!   of its transactions' signed response (it includes the batch's verification and the intakes
//!   queued before it in the batch);
//! - open-loop intake at half the saturated rate with Poisson arrivals, a batch closing at 64
//!   transactions or 5 ms after its first arrival: latency from each transaction's arrival to its
//!   signed response (so it includes waiting for the batch to fill);
//! - a SQLite commit probe in the same directory (one commit per intake vs one per 64 intakes, the
//!   same pragmas) that prices the per-intake fsync.
//!
//! The machine is shared: raw and intake figures are measured in interleaved rounds and each
//! figure keeps its best round.

use std::error::Error;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use mupib_auditor::store::{MemoryStore, SqliteStore, Store};
use mupib_auditor::{Auditor, AuditorConfig, BlockOutcome, SimulatedChain, TransactionSummary};
use mupib_protocol::block::{BlockVerification, BlockVerifier};
use mupib_protocol::cert::{pubkey_of, Certificate, Registry, Role};
use mupib_protocol::money::Withholding;
use mupib_protocol::response::{AuditorResponse, Verdict};
use mupib_protocol::token::Token;
use mupib_protocol::transaction::{verify_transactions, PaymentTransaction};
use mupib_protocol::trust::{TrustModel, TrustScale};
use mupib_protocol::Pubkey;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Transactions in the saturated runs (and signatures in the raw runs: 9 per transaction).
const TRANSACTIONS: usize = 2048;
/// Transactions in the open-loop runs.
const OPEN_LOOP_TRANSACTIONS: usize = 1024;
/// Tokens per transaction.
const TOKENS: u32 = 5;
/// Value of each token, in base units.
const TOKEN_VALUE: u64 = 10;
/// Transactions per ed25519 batch.
const BATCH: usize = 64;
/// Distinct users: each pays 64 transactions, so a block of W0 = 100 tokens forms at every 20th
/// transaction of a user (96 blocks in a run, one per ~21 transactions).
const USERS: usize = 32;
/// Distinct vendors.
const VENDORS: usize = 16;
/// W0, the initial block size.
const INITIAL_BLOCK_SIZE: u64 = 100;
/// ρ = 20 %.
const WITHHOLDING_BPS: u16 = 2000;
/// The simulated clock (certificates are valid over 0..10 000).
const NOW: i64 = 1_000;
/// Interleaved measurement rounds.
const ROUNDS: usize = 3;
/// Open-loop arrival rate as a fraction of the saturated rate of the same store.
const OPEN_LOOP_LOAD: f64 = 0.5;
/// An open-loop batch closes this long after its first arrival if it has not filled.
const MAX_BATCH_WAIT: Duration = Duration::from_millis(5);
/// Rows an intake writes in SQLite (user, transaction, 5 transaction tokens, 5 seen tokens,
/// vendor), for the commit probe.
const PROBE_ROWS_PER_INTAKE: usize = 13;
/// Intake-sized writes in each commit-probe series.
const PROBE_INTAKES: usize = 1024;

type BenchResult<T> = Result<T, Box<dyn Error>>;

fn key(index: usize) -> SigningKey {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(index as u64).to_le_bytes());
    seed[31] = 0x6b;
    SigningKey::from_bytes(&seed)
}

/// Everything a run needs, built once.
struct Workload {
    registry: Registry,
    txs: Vec<PaymentTransaction>,
    /// The chain with every token batch published and nothing spent; each run clones it.
    chain: SimulatedChain,
    auditor_key: SigningKey,
}

fn workload() -> BenchResult<Workload> {
    let authority = key(0);
    let bank = key(1);
    let mut registry = Registry::with_authorities([pubkey_of(&authority)])?;
    let issue = |k: &SigningKey, role| {
        Certificate::issue(&authority, pubkey_of(k), role, "bench", 0, 10_000)
    };
    registry.register(issue(&bank, Role::Bank)?)?;
    let mut users = Vec::with_capacity(USERS);
    for index in 0..USERS {
        let user = key(1_000 + index);
        let cert = issue(&user, Role::User)?;
        registry.register(cert.clone())?;
        users.push((user, cert));
    }
    let mut vendors = Vec::with_capacity(VENDORS);
    for index in 0..VENDORS {
        let vendor = key(2_000 + index);
        let cert = issue(&vendor, Role::Vendor)?;
        registry.register(cert.clone())?;
        vendors.push((vendor, cert));
    }
    let mut chain = SimulatedChain::new();
    let mut txs = Vec::with_capacity(TRANSACTIONS);
    for index in 0..TRANSACTIONS {
        let batch_id = index as u64;
        let tokens = Token::sign_batch(&bank, batch_id, TOKENS, TOKEN_VALUE, 500);
        chain.publish_batch(
            pubkey_of(&bank),
            batch_id,
            TOKEN_VALUE,
            tokens.iter().map(Token::token_digest16).collect(),
        );
        let (user, user_cert) = &users[index % USERS];
        // Vendors rotate at a different stride, so a user pays many vendors.
        let (vendor, vendor_cert) = &vendors[(index / USERS + index) % VENDORS];
        let tx = PaymentTransaction::user_sign(
            user,
            user_cert.clone(),
            vendor_cert.clone(),
            900,
            tokens,
            "bench item",
        )?
        .countersign(vendor)?;
        txs.push(tx);
    }
    Ok(Workload {
        registry,
        txs,
        chain,
        auditor_key: key(3),
    })
}

fn vk(key: &Pubkey) -> BenchResult<VerifyingKey> {
    Ok(VerifyingKey::from_bytes(&key.to_bytes())?)
}

/// Every (message, signature, key) of a transaction, as `benches/messages.rs` lists them: the two
/// certificates, the vendor, the user and each token (9 for 5 tokens).
fn signature_items(
    tx: &PaymentTransaction,
) -> BenchResult<Vec<(Vec<u8>, Signature, VerifyingKey)>> {
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

type Item = (Vec<u8>, Signature, VerifyingKey);

/// Raw `verify_strict`, one signature at a time: signatures/s.
fn raw_single_rate(items: &[Item]) -> BenchResult<f64> {
    let start = Instant::now();
    for (message, signature, key) in items {
        key.verify_strict(message, signature)?;
    }
    Ok(items.len() as f64 / start.elapsed().as_secs_f64())
}

/// Raw `verify_batch` over chunks of `per_batch` signatures: signatures/s.
fn raw_batch_rate(items: &[Item], per_batch: usize) -> BenchResult<f64> {
    let start = Instant::now();
    for chunk in items.chunks(per_batch) {
        let messages: Vec<&[u8]> = chunk.iter().map(|(m, _, _)| m.as_slice()).collect();
        let signatures: Vec<Signature> = chunk.iter().map(|(_, s, _)| *s).collect();
        let keys: Vec<VerifyingKey> = chunk.iter().map(|(_, _, k)| *k).collect();
        ed25519_dalek::verify_batch(&messages, &signatures, &keys)?;
    }
    Ok(items.len() as f64 / start.elapsed().as_secs_f64())
}

/// How the engine commits.
#[derive(Clone, Copy, PartialEq)]
enum Commit {
    /// `Auditor::process` per transaction: one store transaction per intake and per decided
    /// block.
    PerIntake,
    /// Group commit: `Auditor::apply_decisions_and_intake_batch` per verification batch — the
    /// decisions the chain returned for the blocks formed by the previous batch and this batch's
    /// intakes in ONE store transaction; every response of the group (intake and final) is
    /// signed only after that commit returned; the blocks formed then go to the chain.
    Grouped,
}

/// When transactions reach the auditor.
#[derive(Clone, Copy)]
enum Arrivals {
    /// All queued at the start: throughput at saturation.
    Saturated,
    /// Poisson arrivals at `rate` transactions/s.
    Poisson { rate: f64, seed: u64 },
}

/// What one pipeline run measured.
struct RunStats {
    transactions: usize,
    elapsed: Duration,
    /// Per transaction, from its arrival (saturated: its batch's collection) to its signed
    /// intake response; sorted.
    latencies: Vec<Duration>,
    verify_time: Duration,
    engine_time: Duration,
    sign_time: Duration,
    batches: usize,
    delivered: usize,
    waiting: usize,
    blocks: usize,
    final_responses: usize,
}

impl RunStats {
    fn tx_rate(&self) -> f64 {
        self.transactions as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, percent: usize) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        // Nearest rank: the smallest latency with at least `percent` % of them at or below it.
        let rank = (self.latencies.len() * percent).div_ceil(100).max(1);
        self.latencies[rank - 1]
    }

    fn per_tx_us(&self, time: Duration) -> f64 {
        time.as_secs_f64() * 1e6 / self.transactions as f64
    }
}

/// Arrival offsets from the start of the run.
fn schedule(arrivals: Arrivals, count: usize) -> Option<Vec<Duration>> {
    match arrivals {
        Arrivals::Saturated => None,
        Arrivals::Poisson { rate, seed } => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut at = 0f64;
            Some(
                (0..count)
                    .map(|_| {
                        let uniform: f64 = rng.gen();
                        at += -(1.0 - uniform).ln() / rate;
                        Duration::from_secs_f64(at)
                    })
                    .collect(),
            )
        }
    }
}

/// Runs the service's intake path over `txs` on `store`: batch verification, engine intake with
/// blocks decided by the simulated chain, signed responses (the intake response of every
/// transaction and the final response of every transaction a block decision settles).
fn run_pipeline<S: Store>(
    store: S,
    work: &Workload,
    txs: &[PaymentTransaction],
    arrivals: Arrivals,
    commit: Commit,
) -> BenchResult<RunStats> {
    let config = AuditorConfig {
        withholding: Withholding::from_bps(WITHHOLDING_BPS)?,
        trust_model: TrustModel::Neutral,
        trust_scale: TrustScale::Initial,
        initial_block_size: INITIAL_BLOCK_SIZE,
        paper_mode: false,
    };
    let mut auditor = Auditor::new(store, config)?;
    let mut chain = work.chain.clone();
    let offsets = schedule(arrivals, txs.len());
    let mut stats = RunStats {
        transactions: txs.len(),
        elapsed: Duration::ZERO,
        latencies: Vec::with_capacity(txs.len()),
        verify_time: Duration::ZERO,
        engine_time: Duration::ZERO,
        sign_time: Duration::ZERO,
        batches: 0,
        delivered: 0,
        waiting: 0,
        blocks: 0,
        final_responses: 0,
    };
    let start = Instant::now();
    let mut next = 0;
    let mut carried = Vec::new();
    while next < txs.len() {
        let last = (next + BATCH).min(txs.len());
        let (end, collected) = match &offsets {
            None => (last, Instant::now()),
            Some(offsets) => {
                // Wait for the batch to fill or for its first arrival to have waited long enough.
                let deadline =
                    (start + offsets[last - 1]).min(start + offsets[next] + MAX_BATCH_WAIT);
                let now = Instant::now();
                if deadline > now {
                    std::thread::sleep(deadline - now);
                }
                let now = Instant::now();
                let arrived = offsets[next..last]
                    .iter()
                    .take_while(|offset| start + **offset <= now)
                    .count();
                (next + arrived.max(1), now)
            }
        };
        let batch = &txs[next..end];
        let t = Instant::now();
        let results = verify_transactions(batch, &work.registry, NOW);
        stats.verify_time += t.elapsed();
        stats.batches += 1;
        if commit == Commit::Grouped {
            let mut summaries = Vec::with_capacity(results.len());
            for (position, result) in results.into_iter().enumerate() {
                let verified = result.map_err(|e| {
                    format!("transaction {} failed verification: {e}", next + position)
                })?;
                summaries.push(TransactionSummary::from(&verified));
            }
            grouped_batch(
                &mut auditor,
                &mut chain,
                work,
                &summaries,
                next,
                &offsets,
                start,
                collected,
                &mut stats,
                &mut carried,
            )?;
            next = end;
            continue;
        }
        for (position, result) in results.into_iter().enumerate() {
            let verified = result
                .map_err(|e| format!("transaction {} failed verification: {e}", next + position))?;
            let t = Instant::now();
            let summary = TransactionSummary::from(&verified);
            let processed = auditor.process(&summary, &mut chain)?;
            stats.engine_time += t.elapsed();

            let t = Instant::now();
            let verdict = processed.intake.response_verdict(&summary);
            match &verdict {
                Verdict::Deliver => stats.delivered += 1,
                Verdict::Wait => stats.waiting += 1,
                Verdict::Reject(reason) => {
                    return Err(
                        format!("transaction {} rejected: {reason}", next + position).into(),
                    )
                }
            }
            let block_id = processed.intake.block.as_ref().map(|b| b.block_id);
            let response =
                AuditorResponse::sign(&work.auditor_key, summary.id, verdict, block_id, NOW)?;
            black_box(&response);
            let answered = Instant::now();
            let arrived = match &offsets {
                None => collected,
                Some(offsets) => start + offsets[next + position],
            };
            stats
                .latencies
                .push(answered.saturating_duration_since(arrived));
            for block in &processed.blocks {
                stats.blocks += 1;
                for final_verdict in &block.verdicts {
                    let response = AuditorResponse::sign(
                        &work.auditor_key,
                        final_verdict.transaction_id,
                        block.response_verdict(final_verdict),
                        Some(block.block_id),
                        NOW,
                    )?;
                    black_box(&response);
                    stats.final_responses += 1;
                }
            }
            stats.sign_time += t.elapsed();
        }
        next = end;
    }
    flush_decisions(&mut auditor, &mut chain, work, &mut stats, &mut carried)?;
    stats.elapsed = start.elapsed();
    // The state is really there: the last transaction is stored.
    let last = verify_transactions(&txs[txs.len() - 1..], &work.registry, NOW)
        .pop()
        .ok_or("no last transaction")??;
    if auditor.store().transaction_by_id(&last.id())?.is_none() {
        return Err("the last transaction is missing from the store".into());
    }
    stats.latencies.sort_unstable();
    Ok(stats)
}

/// Saturated group-commit intake on two threads: one verifies batch k+1 while the other runs
/// the engine, commits and signs batch k (a channel of one batch between them). Latency runs
/// from the moment the verifying thread takes the batch, so it includes waiting in the channel.
fn run_pipelined<S: Store>(
    store: S,
    work: &Workload,
    txs: &[PaymentTransaction],
) -> BenchResult<RunStats> {
    let config = AuditorConfig {
        withholding: Withholding::from_bps(WITHHOLDING_BPS)?,
        trust_model: TrustModel::Neutral,
        trust_scale: TrustScale::Initial,
        initial_block_size: INITIAL_BLOCK_SIZE,
        paper_mode: false,
    };
    let mut auditor = Auditor::new(store, config)?;
    let mut chain = work.chain.clone();
    let mut stats = RunStats {
        transactions: txs.len(),
        elapsed: Duration::ZERO,
        latencies: Vec::with_capacity(txs.len()),
        verify_time: Duration::ZERO,
        engine_time: Duration::ZERO,
        sign_time: Duration::ZERO,
        batches: 0,
        delivered: 0,
        waiting: 0,
        blocks: 0,
        final_responses: 0,
    };
    type Verified = Result<(usize, Instant, Duration, Vec<TransactionSummary>), String>;
    let start = Instant::now();
    let mut carried = Vec::new();
    std::thread::scope(|scope| -> BenchResult<()> {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Verified>(1);
        let registry = &work.registry;
        scope.spawn(move || {
            for (index, batch) in txs.chunks(BATCH).enumerate() {
                let collected = Instant::now();
                let results = verify_transactions(batch, registry, NOW);
                let mut summaries = Vec::with_capacity(results.len());
                let mut failed = None;
                for (position, result) in results.into_iter().enumerate() {
                    match result {
                        Ok(verified) => summaries.push(TransactionSummary::from(&verified)),
                        Err(e) => {
                            failed = Some(format!(
                                "transaction {} failed verification: {e}",
                                index * BATCH + position
                            ));
                            break;
                        }
                    }
                }
                let message = match failed {
                    Some(error) => Err(error),
                    None => Ok((index * BATCH, collected, collected.elapsed(), summaries)),
                };
                if sender.send(message).is_err() {
                    return; // the engine side stopped
                }
            }
        });
        for message in receiver {
            let (first, collected, verify_time, summaries) = message?;
            stats.verify_time += verify_time;
            stats.batches += 1;
            grouped_batch(
                &mut auditor,
                &mut chain,
                work,
                &summaries,
                first,
                &None,
                start,
                collected,
                &mut stats,
                &mut carried,
            )?;
        }
        Ok(())
    })?;
    flush_decisions(&mut auditor, &mut chain, work, &mut stats, &mut carried)?;
    stats.elapsed = start.elapsed();
    let last = verify_transactions(&txs[txs.len() - 1..], &work.registry, NOW)
        .pop()
        .ok_or("no last transaction")??;
    if auditor.store().transaction_by_id(&last.id())?.is_none() {
        return Err("the last transaction is missing from the store".into());
    }
    stats.latencies.sort_unstable();
    Ok(stats)
}

/// One verification batch through the group-commit path (see [`Commit::Grouped`]): the
/// decisions the chain returned since the previous batch (`carried`) and this batch's intakes in
/// one commit; then the intake responses and the decided blocks' final responses are signed (the
/// commit has returned), and the blocks formed now go to the chain, their decisions carried to
/// the next commit. `transactions == None` flushes the carried decisions (end of the run).
#[allow(clippy::too_many_arguments)]
fn grouped_batch<S: Store>(
    auditor: &mut Auditor<S>,
    chain: &mut SimulatedChain,
    work: &Workload,
    summaries: &[TransactionSummary],
    first: usize,
    offsets: &Option<Vec<Duration>>,
    start: Instant,
    collected: Instant,
    stats: &mut RunStats,
    carried: &mut Vec<(u64, BlockVerification)>,
) -> BenchResult<()> {
    let t = Instant::now();
    let (outcomes, intakes) = auditor.apply_decisions_and_intake_batch(carried, summaries)?;
    carried.clear();
    stats.engine_time += t.elapsed();
    // The commit returned: the group's responses may leave.
    let t = Instant::now();
    let mut formed = Vec::new();
    for (position, (summary, intake)) in summaries.iter().zip(intakes).enumerate() {
        let intake = intake?;
        let verdict = intake.response_verdict(summary);
        match &verdict {
            Verdict::Deliver => stats.delivered += 1,
            Verdict::Wait => stats.waiting += 1,
            Verdict::Reject(reason) => {
                return Err(format!("transaction {} rejected: {reason}", first + position).into())
            }
        }
        let block_id = intake.block.as_ref().map(|b| b.block_id);
        let response =
            AuditorResponse::sign(&work.auditor_key, summary.id, verdict, block_id, NOW)?;
        black_box(&response);
        let answered = Instant::now();
        let arrived = match offsets {
            None => collected,
            Some(offsets) => start + offsets[first + position],
        };
        stats
            .latencies
            .push(answered.saturating_duration_since(arrived));
        formed.extend(intake.block);
    }
    for outcome in outcomes {
        let block: BlockOutcome = outcome?;
        stats.blocks += 1;
        for final_verdict in &block.verdicts {
            let response = AuditorResponse::sign(
                &work.auditor_key,
                final_verdict.transaction_id,
                block.response_verdict(final_verdict),
                Some(block.block_id),
                NOW,
            )?;
            black_box(&response);
            stats.final_responses += 1;
        }
        formed.extend(block.next_block);
    }
    stats.sign_time += t.elapsed();
    // Blocks go to the chain only now that their formation is durable.
    let t = Instant::now();
    for submission in &formed {
        carried.push((submission.block_id, chain.verify(submission)?));
    }
    stats.engine_time += t.elapsed();
    Ok(())
}

/// Commits the decisions still carried at the end of a grouped run (and the blocks they form).
fn flush_decisions<S: Store>(
    auditor: &mut Auditor<S>,
    chain: &mut SimulatedChain,
    work: &Workload,
    stats: &mut RunStats,
    carried: &mut Vec<(u64, BlockVerification)>,
) -> BenchResult<()> {
    while !carried.is_empty() {
        grouped_batch(
            auditor,
            chain,
            work,
            &[],
            0,
            &None,
            Instant::now(),
            Instant::now(),
            stats,
            carried,
        )?;
    }
    Ok(())
}

/// Seconds per intake-sized write (13 rows) when each is its own commit, and when 64 share one
/// commit, on a fresh SQLite file with the store's pragmas (WAL, `synchronous = FULL`).
fn commit_probe(dir: &Path, intakes: usize) -> BenchResult<(f64, f64)> {
    let conn = rusqlite::Connection::open(dir.join("probe.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch("CREATE TABLE rows (k BLOB PRIMARY KEY, v BLOB NOT NULL)")?;
    let value = [0x5au8; 64];
    let insert = |conn: &rusqlite::Connection, round: u64, intake: u64| -> rusqlite::Result<()> {
        let mut statement = conn.prepare_cached("INSERT INTO rows (k, v) VALUES (?1, ?2)")?;
        for row in 0..PROBE_ROWS_PER_INTAKE as u64 {
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&round.to_le_bytes());
            k[8..16].copy_from_slice(&intake.to_le_bytes());
            k[16..24].copy_from_slice(&row.to_le_bytes());
            statement.execute(rusqlite::params![&k[..], &value[..]])?;
        }
        Ok(())
    };
    let start = Instant::now();
    for intake in 0..intakes as u64 {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        insert(&conn, 0, intake)?;
        conn.execute_batch("COMMIT")?;
    }
    let each = start.elapsed().as_secs_f64() / intakes as f64;
    let start = Instant::now();
    for group in (0..intakes as u64).collect::<Vec<_>>().chunks(BATCH) {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        for intake in group {
            insert(&conn, 1, *intake)?;
        }
        conn.execute_batch("COMMIT")?;
    }
    let grouped = start.elapsed().as_secs_f64() / intakes as f64;
    Ok((each, grouped))
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn best(current: Option<RunStats>, candidate: RunStats) -> Option<RunStats> {
    match current {
        Some(current) if current.tx_rate() >= candidate.tx_rate() => Some(current),
        _ => Some(candidate),
    }
}

fn main() -> BenchResult<()> {
    let total = Instant::now();
    let work = workload()?;
    let mut items = Vec::with_capacity(TRANSACTIONS * 9);
    for tx in &work.txs {
        items.extend(signature_items(tx)?);
    }
    let per_tx = items.len() / work.txs.len();
    let per_batch = per_tx * BATCH;
    let dir = tempfile::tempdir()?;

    // Warm-up: caches, allocator, the SQLite library.
    raw_single_rate(&items[..per_batch])?;
    raw_batch_rate(&items[..per_batch], per_batch)?;
    run_pipeline(
        MemoryStore::new(),
        &work,
        &work.txs[..BATCH],
        Arrivals::Saturated,
        Commit::PerIntake,
    )?;

    let (mut single, mut batched) = (0f64, 0f64);
    let (mut sqlite, mut sqlite_ram, mut memory) = (None, None, None);
    let (mut grouped, mut grouped_ram, mut pipelined) = (None, None, None);
    for round in 0..ROUNDS {
        single = single.max(raw_single_rate(&items)?);
        batched = batched.max(raw_batch_rate(&items, per_batch)?);
        let store = SqliteStore::open(dir.path().join(format!("grouped-{round}.db")))?;
        grouped = best(
            grouped,
            run_pipeline(
                store,
                &work,
                &work.txs,
                Arrivals::Saturated,
                Commit::Grouped,
            )?,
        );
        let store = SqliteStore::open(dir.path().join(format!("pipelined-{round}.db")))?;
        pipelined = best(pipelined, run_pipelined(store, &work, &work.txs)?);
        let store = SqliteStore::open(dir.path().join(format!("saturated-{round}.db")))?;
        sqlite = best(
            sqlite,
            run_pipeline(
                store,
                &work,
                &work.txs,
                Arrivals::Saturated,
                Commit::PerIntake,
            )?,
        );
        let store = SqliteStore::open_in_memory()?;
        grouped_ram = best(
            grouped_ram,
            run_pipeline(
                store,
                &work,
                &work.txs,
                Arrivals::Saturated,
                Commit::Grouped,
            )?,
        );
        let store = SqliteStore::open_in_memory()?;
        sqlite_ram = best(
            sqlite_ram,
            run_pipeline(
                store,
                &work,
                &work.txs,
                Arrivals::Saturated,
                Commit::PerIntake,
            )?,
        );
        let store = MemoryStore::new();
        memory = best(
            memory,
            run_pipeline(
                store,
                &work,
                &work.txs,
                Arrivals::Saturated,
                Commit::PerIntake,
            )?,
        );
    }
    let sqlite = sqlite.ok_or("no SQLite round")?;
    let sqlite_ram = sqlite_ram.ok_or("no in-memory SQLite round")?;
    let memory = memory.ok_or("no MemoryStore round")?;
    let grouped = grouped.ok_or("no grouped SQLite round")?;
    let grouped_ram = grouped_ram.ok_or("no grouped in-memory SQLite round")?;
    let pipelined = pipelined.ok_or("no pipelined SQLite round")?;

    let open_txs = &work.txs[..OPEN_LOOP_TRANSACTIONS];
    let open_loop = |rate: f64| Arrivals::Poisson {
        rate: rate * OPEN_LOOP_LOAD,
        seed: 7,
    };
    let sqlite_open = run_pipeline(
        SqliteStore::open(dir.path().join("open-loop.db"))?,
        &work,
        open_txs,
        open_loop(sqlite.tx_rate()),
        Commit::PerIntake,
    )?;
    let grouped_open = run_pipeline(
        SqliteStore::open(dir.path().join("open-loop-grouped.db"))?,
        &work,
        open_txs,
        open_loop(grouped.tx_rate()),
        Commit::Grouped,
    )?;
    let memory_open = run_pipeline(
        MemoryStore::new(),
        &work,
        open_txs,
        open_loop(memory.tx_rate()),
        Commit::PerIntake,
    )?;
    let (commit_each, commit_grouped) = commit_probe(dir.path(), PROBE_INTAKES)?;

    println!(
        "intake of {} transactions x {TOKENS} tokens = {} signatures ({per_tx} per transaction), \
         {BATCH} transactions ({per_batch} signatures) per ed25519 batch, {USERS} users, \
         {VENDORS} vendors, W0 = {INITIAL_BLOCK_SIZE}; best of {ROUNDS} interleaved rounds",
        work.txs.len(),
        items.len()
    );
    for (name, stats) in [("1 commit/tx", &sqlite), ("group commit", &grouped)] {
        println!(
            "per run ({name}): {} intake responses ({} deliver, {} wait), {} blocks decided by \
             the simulated chain, {} final responses",
            stats.delivered + stats.waiting,
            stats.delivered,
            stats.waiting,
            stats.blocks,
            stats.final_responses
        );
    }
    println!();
    println!("raw ed25519-dalek on the same {} signatures:", items.len());
    println!("  verify_strict, one by one           {single:>9.0} sig/s");
    println!("  verify_batch, {per_batch} per batch          {batched:>9.0} sig/s   (the bound)");
    println!();
    println!(
        "{:<36} {:>7} {:>8} {:>9} {:>8} {:>8}   us/tx verify/engine/sign",
        "saturated intake", "tx/s", "sig/s", "of bound", "p50 ms", "p99 ms"
    );
    let rows = [
        ("SQLite file, group commit, 2 threads", &pipelined),
        ("SQLite file, sync=FULL, group commit", &grouped),
        ("SQLite in memory, group commit", &grouped_ram),
        ("SQLite file, sync=FULL, 1 commit/tx", &sqlite),
        ("SQLite in memory (no file, no fsync)", &sqlite_ram),
        ("MemoryStore", &memory),
    ];
    for (name, stats) in rows {
        let sigs = stats.tx_rate() * per_tx as f64;
        println!(
            "{name:<36} {:>7.0} {:>8.0} {:>9.2} {:>8.2} {:>8.2}   {:>6.0} /{:>6.0} /{:>4.0}",
            stats.tx_rate(),
            sigs,
            sigs / batched,
            ms(stats.percentile(50)),
            ms(stats.percentile(99)),
            stats.per_tx_us(stats.verify_time),
            stats.per_tx_us(stats.engine_time),
            stats.per_tx_us(stats.sign_time),
        );
    }
    println!(
        "  (latency: from the batch's collection to the transaction's signed intake response; \
         with group commit the response is signed after the batch's commit returned)"
    );
    println!();
    println!(
        "open loop, Poisson arrivals at {:.0} % of the store's saturated rate, a batch closes at \
         {BATCH} tx or {} ms:",
        OPEN_LOOP_LOAD * 100.0,
        MAX_BATCH_WAIT.as_millis()
    );
    println!(
        "{:<36} {:>7} {:>8} {:>9} {:>8} {:>8}",
        "", "tx/s", "sig/s", "tx/batch", "p50 ms", "p99 ms"
    );
    let rows = [
        ("SQLite file, sync=FULL, group commit", &grouped_open),
        ("SQLite file, sync=FULL, 1 commit/tx", &sqlite_open),
        ("MemoryStore", &memory_open),
    ];
    for (name, stats) in rows {
        println!(
            "{name:<36} {:>7.0} {:>8.0} {:>9.1} {:>8.2} {:>8.2}",
            stats.tx_rate(),
            stats.tx_rate() * per_tx as f64,
            stats.transactions as f64 / stats.batches as f64,
            ms(stats.percentile(50)),
            ms(stats.percentile(99)),
        );
    }
    println!("  (latency: from the transaction's arrival to its signed intake response)");
    println!();
    // Group commit, estimated: the SQL work of an intake without I/O (in-memory SQLite run) plus
    // the probe's cost per intake when 64 share a commit (its row writes, its WAL append and 1/64
    // of the fsync; the row writes are counted twice, so the estimate is conservative).
    let grouped_per_tx = 1.0 / sqlite_ram.tx_rate() + commit_grouped;
    let grouped_rate = 1.0 / grouped_per_tx;
    println!(
        "SQLite commit probe ({PROBE_INTAKES} writes of {PROBE_ROWS_PER_INTAKE} rows, the store's pragmas, same directory):"
    );
    println!(
        "  one commit per write {:>7.0} us/write; one commit per {BATCH} writes {:>5.0} us/write",
        commit_each * 1e6,
        commit_grouped * 1e6
    );
    println!(
        "  estimate made before group commit existed (in-memory SQLite run + grouped probe): \
         {grouped_rate:.0} tx/s = {:.0} sig/s = {:.2} of the bound; measured above: {:.2}",
        grouped_rate * per_tx as f64,
        grouped_rate * per_tx as f64 / batched,
        grouped.tx_rate() * per_tx as f64 / batched
    );
    println!();
    println!("total bench time {:.1} s", total.elapsed().as_secs_f64());
    Ok(())
}

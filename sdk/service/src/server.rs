//! The accept loop: HTTP/1.1 connections served by hyper, bounded (SPEC §6 "Bounded
//! resources"; issue 10).
//!
//! - **Header read timeout** (hyper's `header_read_timeout`, with `TokioTimer`): the whole head
//!   of a request must arrive within [`ServerLimits::header_read_timeout`] of the server starting
//!   to wait for it. The timer starts when a connection opens and again after every response, so
//!   the same limit closes slow-header clients, connections that never send anything and idle
//!   keep-alive connections (hyper 1.12, `proto/h1/conn.rs`: `poll_read_head` arms the timer,
//!   `State::idle` re-arms it).
//! - **Connection cap** ([`ServerLimits::max_connections`]): at the cap, the connection idle
//!   longest (no request in flight: never used, between requests, or still sending its first
//!   head) is closed to make room, so a flood of idle or slow connections cannot keep out a new
//!   one; only when every connection has a request in flight is the new one refused. An evicted
//!   connection is shut down gracefully (a response being written is finished); one still not
//!   done after [`CLOSE_GRACE`] without a request in flight is dropped.
//! - **Header size**: hyper's read buffer is capped at [`ServerLimits::max_header_bytes`] (431 /
//!   close above).
//!
//! Graceful stop: stop accepting, shut every connection down gracefully (in-flight requests
//! finish, idle ones close), wait for them. A kill drops the future: every connection is cut.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::metrics::ConnectionEvent;
use crate::state::AppState;

/// How long an evicted or stopping connection may take to close by itself.
pub const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// The limits of the accept loop (from [`crate::ServiceConfig`]).
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Most open connections.
    pub max_connections: usize,
    /// Time for a request head to arrive; also the idle keep-alive timeout.
    pub header_read_timeout: Duration,
    /// Largest request head (hyper's read buffer; at least 8 KiB).
    pub max_header_bytes: usize,
}

/// Binds a listening socket on `addr` with `backlog` pending connections (std's `bind` queues
/// 128: a burst of connections beyond it has its SYNs dropped and retried a second later),
/// non-blocking, with `SO_REUSEADDR` as std sets it.
///
/// # Errors
/// The socket calls' errors.
pub fn bind(addr: std::net::SocketAddr, backlog: u32) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog.max(1)).unwrap_or(i32::MAX))?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// One open connection, as the accept loop sees it.
#[derive(Debug)]
struct Slot {
    busy: AtomicBool,
    /// Milliseconds since the table's start when it last became idle (or opened).
    idle_since: AtomicU64,
    close: Notify,
}

/// The open connections.
#[derive(Debug)]
struct Table {
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
    next_id: AtomicU64,
    started: Instant,
}

impl Table {
    fn new() -> Table {
        Table {
            slots: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Slot>>> {
        match self.slots.lock() {
            Ok(slots) => slots,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn insert(&self) -> (u64, Arc<Slot>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            busy: AtomicBool::new(false),
            idle_since: AtomicU64::new(self.now_ms()),
            close: Notify::new(),
        });
        self.slots().insert(id, Arc::clone(&slot));
        (id, slot)
    }

    fn remove(&self, id: u64) {
        self.slots().remove(&id);
    }

    fn len(&self) -> usize {
        self.slots().len()
    }

    /// Takes the connection idle longest out of the table and asks it to close; `false` if
    /// every connection has a request in flight.
    fn evict_oldest_idle(&self) -> bool {
        let mut slots = self.slots();
        let oldest = slots
            .iter()
            .filter(|(_, slot)| !slot.busy.load(Ordering::SeqCst))
            .min_by_key(|(_, slot)| slot.idle_since.load(Ordering::Relaxed))
            .map(|(id, _)| *id);
        match oldest.and_then(|id| slots.remove(&id)) {
            Some(slot) => {
                slot.close.notify_one();
                true
            }
            None => false,
        }
    }

    fn close_all(&self) {
        for slot in self.slots().values() {
            slot.close.notify_one();
        }
    }
}

/// Marks a connection busy while a request is in the service.
struct InFlight<'a> {
    slot: &'a Slot,
    table: &'a Table,
}

impl<'a> InFlight<'a> {
    fn new(slot: &'a Slot, table: &'a Table) -> Self {
        slot.busy.store(true, Ordering::SeqCst);
        InFlight { slot, table }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.slot
            .idle_since
            .store(self.table.now_ms(), Ordering::Relaxed);
        self.slot.busy.store(false, Ordering::SeqCst);
    }
}

/// Serves `app` on `listener` until `stop` turns `true`, then stops gracefully.
pub async fn run(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    state: Arc<AppState>,
    mut stop: watch::Receiver<bool>,
) {
    let table = Arc::new(Table::new());
    let mut connections = JoinSet::new();
    let max_connections = limits.max_connections.max(1);
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|stopping| *stopping) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let metrics = &state.metrics;
                    if table.len() >= max_connections {
                        if table.evict_oldest_idle() {
                            metrics.connection(ConnectionEvent::Evicted);
                        } else {
                            metrics.connection(ConnectionEvent::Refused);
                            drop(stream);
                            continue;
                        }
                    }
                    metrics.connection(ConnectionEvent::Accepted);
                    let (id, slot) = table.insert();
                    connections.spawn(connection(
                        stream,
                        app.clone(),
                        id,
                        slot,
                        Arc::clone(&table),
                        limits,
                        Arc::clone(&state),
                    ));
                    // Let the new connection read its request head before the next accept: a
                    // burst of flood connections accepted back to back could otherwise evict a
                    // client whose request is already waiting in its socket.
                    tokio::task::yield_now().await;
                }
                Err(error) => {
                    // Out of file descriptors and the like: wait a moment, keep serving.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
    drop(listener);
    table.close_all();
    while connections.join_next().await.is_some() {}
}

async fn connection(
    stream: TcpStream,
    app: Router,
    id: u64,
    slot: Arc<Slot>,
    table: Arc<Table>,
    limits: ServerLimits,
    state: Arc<AppState>,
) {
    let _ = stream.set_nodelay(true);
    let service_slot = Arc::clone(&slot);
    let service_table = Arc::clone(&table);
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let app = app.clone();
        let slot = Arc::clone(&service_slot);
        let table = Arc::clone(&service_table);
        async move {
            let _in_flight = InFlight::new(&slot, &table);
            app.oneshot(request.map(Body::new)).await
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut grace_until: Option<tokio::time::Instant> = None;
    loop {
        let grace = async move {
            match grace_until {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(error) = served {
                    if error.is_timeout() {
                        state.metrics.connection(ConnectionEvent::HeaderTimeout);
                    } else {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                }
                break;
            }
            () = slot.close.notified(), if grace_until.is_none() => {
                connection.as_mut().graceful_shutdown();
                grace_until = Some(tokio::time::Instant::now() + CLOSE_GRACE);
            }
            () = grace => {
                if slot.busy.load(Ordering::SeqCst) {
                    grace_until = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                } else {
                    break;
                }
            }
        }
    }
    table.remove(id);
    state.metrics.connection(ConnectionEvent::Closed);
}

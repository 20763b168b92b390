//! Connections of one listener: who may stay open, for how long, and who goes at the cap.
//!
//! Every connection is, at any moment, either *serving* (a request's headers have arrived and its
//! response has not finished) or *waiting* for the headers of its next request, since it was
//! accepted or since its last response ended. The accept loop owns a registry of them; an IO
//! wrapper ([`TrackedStream`]) and a service wrapper ([`RequestTracker::service`]) keep each
//! connection's [`Activity`] up to date; a watchdog task per connection closes it when a timeout
//! runs out:
//!
//! - never served a request: headers complete within `header_timeout` of accept (a client that
//!   sends nothing, or trickles, is a slowloris: both are cut off here);
//! - kept alive after a response: the first byte of the next request within `idle_timeout`, and
//!   its headers within `header_timeout` of that first byte (HTTP/1; on HTTP/2, where pings and
//!   window updates also arrive between requests, only the idle timeout applies).
//!
//! At `max_connections` a new connection is always accepted; to make room the registry closes the
//! waiting connection that has waited longest. Only when every connection is serving is the new
//! one turned away (closed at once). A connection that is serving is never closed by any of this.
//!
//! Why not hyper's own `header_read_timeout`: with hyper-util's auto (HTTP/1 + HTTP/2) builder it
//! starts only after the protocol sniff, which itself waits without a limit for the first bytes
//! (a socket that sends nothing stays open for ever); it restarts at the end of every response,
//! so it would also be the keep-alive idle timeout; and HTTP/2 has nothing like it.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulConnection, GracefulShutdown};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

/// What a listener allows its connections.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Open connections; at this count the longest-waiting one is closed for each new one.
    pub max_connections: usize,
    /// Request headers must be complete within this of accept (first request) or of their first
    /// byte (later requests on a kept-alive HTTP/1 connection).
    pub header_timeout: Duration,
    /// A kept-alive connection may wait this long for its next request.
    pub idle_timeout: Duration,
}

// ---------------------------------------------------------------------------------------------
// The rules, pure: times are milliseconds since the listener started.

/// A connection's state at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// At least one request is being served (HTTP/2 may serve several at once).
    Serving,
    Waiting(Waiting),
    /// Closed by a timeout or shed; its task is ending.
    Closing,
}

/// A connection that is not serving a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// When it was accepted, or when its last response ended.
    pub since_ms: u64,
    /// Whether it has served a request before (is kept alive).
    pub served_before: bool,
    /// When the first byte of its next request arrived (kept-alive HTTP/1 only).
    pub next_request_from_ms: Option<u64>,
}

/// Which timeout closed a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// Request headers not complete in time.
    Header,
    /// Kept alive, and no next request in time.
    Idle,
}

/// What a connection closed at the cap was doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShedReason {
    /// Kept alive after a response, nothing of a next request yet.
    Idle,
    /// Its request headers were not complete (a new connection, or a next request under way).
    SlowHeaders,
}

impl Waiting {
    /// When this connection's wait runs out, and which timeout that is.
    pub fn deadline_ms(&self, limits: &ConnectionLimits) -> (u64, Timeout) {
        let header = duration_ms(limits.header_timeout);
        match (self.served_before, self.next_request_from_ms) {
            (false, _) => (self.since_ms.saturating_add(header), Timeout::Header),
            (true, Some(from)) => (from.saturating_add(header), Timeout::Header),
            (true, None) => (self.since_ms.saturating_add(duration_ms(limits.idle_timeout)), Timeout::Idle),
        }
    }

    /// How a shed of this connection is counted.
    pub fn shed_reason(&self) -> ShedReason {
        if self.served_before && self.next_request_from_ms.is_none() {
            ShedReason::Idle
        } else {
            ShedReason::SlowHeaders
        }
    }
}

/// The connection to close at the cap: the waiting one that has waited longest for its next
/// request headers. `None` when every connection is serving (or closing).
pub fn longest_waiting<K: Copy>(connections: impl IntoIterator<Item = (K, Phase)>) -> Option<(K, Waiting)> {
    connections
        .into_iter()
        .filter_map(|(key, phase)| match phase {
            Phase::Waiting(waiting) => Some((key, waiting)),
            Phase::Serving | Phase::Closing => None,
        })
        .min_by_key(|(_, waiting)| waiting.since_ms)
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Which protocol a connection speaks, from its first bytes (the HTTP/2 client preface or not),
/// the way hyper-util's auto builder decides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// This many bytes matched the HTTP/2 preface so far.
    Sniffing(usize),
    Http1,
    Http2,
}

const HTTP2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

impl Protocol {
    /// The protocol after `bytes` more arrived.
    pub fn after(self, bytes: &[u8]) -> Protocol {
        let Protocol::Sniffing(matched) = self else { return self };
        let wanted = &HTTP2_PREFACE[matched..];
        let n = bytes.len().min(wanted.len());
        if bytes[..n] != wanted[..n] {
            Protocol::Http1
        } else if matched + n == HTTP2_PREFACE.len() {
            Protocol::Http2
        } else {
            Protocol::Sniffing(matched + n)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One connection's shared state

/// `requests` value of a connection that is closing: nothing may start on it any more.
const CLOSING: u32 = u32::MAX;
/// `next_request_from_ms` value when no byte of a next request has arrived.
const NO_REQUEST_YET: u64 = u64::MAX;

/// The listener's clock: milliseconds since it started.
#[derive(Clone, Copy, Debug)]
struct Clock {
    epoch: Instant,
}

impl Clock {
    fn now_ms(&self) -> u64 {
        duration_ms(self.epoch.elapsed())
    }

    fn instant(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }
}

/// One connection's state, written by its IO and service wrappers, read by its watchdog and by
/// the registry. Plain atomics: every update is one store, none waits.
#[derive(Debug)]
pub struct Activity {
    /// Requests in flight, or [`CLOSING`].
    requests: AtomicU32,
    waiting_since_ms: AtomicU64,
    served: AtomicBool,
    next_request_from_ms: AtomicU64,
    /// Wakes the watchdog when a deadline may have moved (a response ended, a next request
    /// began) or the connection was shed.
    wake: Notify,
}

impl Activity {
    fn new(accepted_ms: u64) -> Self {
        Activity {
            requests: AtomicU32::new(0),
            waiting_since_ms: AtomicU64::new(accepted_ms),
            served: AtomicBool::new(false),
            next_request_from_ms: AtomicU64::new(NO_REQUEST_YET),
            wake: Notify::new(),
        }
    }

    fn phase(&self) -> Phase {
        // `requests` first: `end_request` writes the other fields before it drops the count.
        match self.requests.load(Ordering::SeqCst) {
            CLOSING => Phase::Closing,
            0 => Phase::Waiting(Waiting {
                since_ms: self.waiting_since_ms.load(Ordering::SeqCst),
                served_before: self.served.load(Ordering::SeqCst),
                next_request_from_ms: Some(self.next_request_from_ms.load(Ordering::SeqCst))
                    .filter(|&ms| ms != NO_REQUEST_YET),
            }),
            _ => Phase::Serving,
        }
    }

    /// A request's headers arrived. False when the connection is already closing.
    fn begin_request(&self) -> bool {
        self.requests.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n != CLOSING).then(|| n + 1)).is_ok()
    }

    /// A response ended (its body was sent, or dropped with the connection).
    fn end_request(&self, now_ms: u64) {
        self.waiting_since_ms.store(now_ms, Ordering::SeqCst);
        self.next_request_from_ms.store(NO_REQUEST_YET, Ordering::SeqCst);
        self.served.store(true, Ordering::SeqCst);
        if self.requests.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.wake.notify_one();
        }
    }

    /// Bytes arrived on a kept-alive HTTP/1 connection: the first ones start its header clock.
    fn request_bytes_arrived(&self, now_ms: u64) {
        if self.served.load(Ordering::SeqCst)
            && self.requests.load(Ordering::SeqCst) == 0
            && self
                .next_request_from_ms
                .compare_exchange(NO_REQUEST_YET, now_ms, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            self.wake.notify_one();
        }
    }

    /// Marks a waiting connection closing; false if it is serving (or already closing).
    fn try_close(&self) -> bool {
        self.requests.compare_exchange(0, CLOSING, Ordering::SeqCst, Ordering::SeqCst).is_ok()
    }
}

/// How a connection's task ended, when the connection did not end by itself.
enum Closed {
    TimedOut(Timeout),
    /// Shed at the cap, or closed at shutdown, by the accept loop.
    ByListener,
}

/// Sleeps until the connection's wait runs out and closes it (see the module doc). Returns only
/// once the connection is marked closing, so it is never in the middle of a request.
async fn watchdog(activity: &Activity, limits: ConnectionLimits, clock: Clock) -> Closed {
    loop {
        let woken = activity.wake.notified();
        match activity.phase() {
            Phase::Closing => return Closed::ByListener,
            Phase::Serving => woken.await,
            Phase::Waiting(waiting) => {
                let (deadline_ms, timeout) = waiting.deadline_ms(&limits);
                if clock.now_ms() >= deadline_ms {
                    if activity.try_close() {
                        return Closed::TimedOut(timeout);
                    }
                    continue; // a request began just now
                }
                tokio::select! {
                    () = tokio::time::sleep_until(clock.instant(deadline_ms)) => {}
                    () = woken => {}
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The wrappers that keep `Activity` current

/// The accepted socket, noting when bytes of a kept-alive connection's next request arrive.
pub struct TrackedStream {
    stream: TcpStream,
    activity: Arc<Activity>,
    clock: Clock,
    protocol: Protocol,
}

impl AsyncRead for TrackedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                this.protocol = this.protocol.after(new);
                if this.protocol == Protocol::Http1 {
                    this.activity.request_bytes_arrived(this.clock.now_ms());
                }
            }
        }
        poll
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Handed to the code that builds each connection, to wrap its service.
#[derive(Clone)]
pub struct RequestTracker {
    activity: Arc<Activity>,
    clock: Clock,
    peer: std::net::SocketAddr,
}

/// The client's address, in every request's extensions (set by [`TrackedService`]).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub std::net::SocketAddr);

impl RequestTracker {
    /// `service`, marking the connection serving from each request's headers to the end of its
    /// response body (a streamed response keeps it serving).
    pub fn service<S>(&self, service: S) -> TrackedService<S> {
        TrackedService { inner: service, tracker: self.clone() }
    }
}

/// Marks its connection waiting again when dropped.
struct RequestGuard {
    tracker: RequestTracker,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.tracker.activity.end_request(self.tracker.clock.now_ms());
    }
}

/// A request that reached a connection the listener had just closed; hyper drops the connection.
#[derive(Debug, thiserror::Error)]
#[error("the connection was closed before this request could start")]
pub struct ConnectionClosing;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// See [`RequestTracker::service`].
pub struct TrackedService<S> {
    inner: S,
    tracker: RequestTracker,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for TrackedService<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Unpin + Send + 'static,
{
    type Response = Response<TrackedBody<B>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(Peer(self.tracker.peer));
        if !self.tracker.activity.begin_request() {
            return Box::pin(std::future::ready(Err(ConnectionClosing.into())));
        }
        let guard = RequestGuard { tracker: self.tracker.clone() };
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await.map_err(Into::into)?;
            Ok(response.map(|body| TrackedBody { body, _guard: guard }))
        })
    }
}

/// A response body that holds its request's guard until hyper has sent (or dropped) it.
pub struct TrackedBody<B> {
    body: B,
    _guard: RequestGuard,
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

// ---------------------------------------------------------------------------------------------
// Counters for /metrics

/// Process-lifetime connection counts, read by `/metrics`.
#[derive(Debug, Default)]
pub struct ConnectionCounters {
    max: AtomicU64,
    open: AtomicU64,
    accepted: AtomicU64,
    shed_idle: AtomicU64,
    shed_slow_headers: AtomicU64,
    refused_at_cap: AtomicU64,
    timed_out_header: AtomicU64,
    timed_out_idle: AtomicU64,
}

/// A reading of [`ConnectionCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionTotals {
    pub max: u64,
    pub open: u64,
    pub accepted: u64,
    pub shed_idle: u64,
    pub shed_slow_headers: u64,
    pub refused_at_cap: u64,
    pub timed_out_header: u64,
    pub timed_out_idle: u64,
}

impl ConnectionCounters {
    /// The counts now.
    pub fn totals(&self) -> ConnectionTotals {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ConnectionTotals {
            max: read(&self.max),
            open: read(&self.open),
            accepted: read(&self.accepted),
            shed_idle: read(&self.shed_idle),
            shed_slow_headers: read(&self.shed_slow_headers),
            refused_at_cap: read(&self.refused_at_cap),
            timed_out_header: read(&self.timed_out_header),
            timed_out_idle: read(&self.timed_out_idle),
        }
    }

    fn shed(&self, reason: ShedReason) {
        let counter = match reason {
            ShedReason::Idle => &self.shed_idle,
            ShedReason::SlowHeaders => &self.shed_slow_headers,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn closed(&self, closed: Option<Closed>) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        let counter = match closed {
            Some(Closed::TimedOut(Timeout::Header)) => &self.timed_out_header,
            Some(Closed::TimedOut(Timeout::Idle)) => &self.timed_out_idle,
            Some(Closed::ByListener) | None => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------------------
// The accept loop

/// The open connections, owned by the accept loop. Connection tasks report their end on
/// `ended`; the loop reads those reports before each admission decision.
struct Registry {
    open: HashMap<u64, Arc<Activity>>,
    next_id: u64,
    ended_tx: mpsc::UnboundedSender<u64>,
    /// Unbounded, but holds at most one id per connection accepted since the last drain.
    ended_rx: mpsc::UnboundedReceiver<u64>,
}

impl Registry {
    fn new() -> Self {
        let (ended_tx, ended_rx) = mpsc::unbounded_channel();
        Registry { open: HashMap::new(), next_id: 0, ended_tx, ended_rx }
    }

    fn forget_ended(&mut self) {
        while let Ok(id) = self.ended_rx.try_recv() {
            self.open.remove(&id);
        }
    }

    fn add(&mut self, activity: Arc<Activity>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.open.insert(id, activity);
        id
    }

    /// Closes the longest-waiting connection; `None` when every one is serving. The closed one
    /// leaves the registry at once (its task ends a moment later).
    fn shed_longest_waiting(&mut self) -> Option<ShedReason> {
        // Each miss means a request began on the chosen connection meanwhile, which then no
        // longer qualifies; so this ends within `open.len()` rounds.
        for _ in 0..=self.open.len() {
            let (id, waiting) = longest_waiting(self.open.iter().map(|(id, a)| (*id, a.phase())))?;
            let activity = &self.open[&id];
            if activity.try_close() {
                activity.wake.notify_one();
                self.open.remove(&id);
                return Some(waiting.shed_reason());
            }
        }
        None
    }

    /// At shutdown: closes every connection that is not serving. Returns how many.
    fn close_waiting(&self) -> usize {
        let mut closed = 0;
        for activity in self.open.values() {
            if activity.try_close() {
                activity.wake.notify_one();
                closed += 1;
            }
        }
        closed
    }
}

/// Rate-limits the warning logged while the cap is being hit.
#[derive(Default)]
struct CapWarning {
    last: Option<Instant>,
    shed: u64,
    refused: u64,
}

impl CapWarning {
    const EVERY: Duration = Duration::from_secs(10);

    fn note(&mut self, shed: bool, max_connections: usize) {
        if shed {
            self.shed += 1;
        } else {
            self.refused += 1;
        }
        if self.last.is_none_or(|last| last.elapsed() >= Self::EVERY) {
            tracing::warn!(
                message = "At the connection cap: closing the longest-waiting connections for new ones.",
                max_connections,
                shed = self.shed,
                refused_all_busy = self.refused,
            );
            self.last = Some(Instant::now());
            (self.shed, self.refused) = (0, 0);
        }
    }
}

/// The kernel's queue of connections not yet accepted. tokio's `TcpListener::bind` asks for 1024;
/// while the accept loop sheds a flood of new connections, a full queue drops SYNs, and a
/// legitimate client then waits for its 1 s SYN retry. Linux caps this at `net.core.somaxconn`
/// (4096 by default since 5.4).
const ACCEPT_BACKLOG: u32 = 4096;

/// Binds the listener (with `SO_REUSEADDR`, like `TcpListener::bind`) and a deep accept queue.
pub fn bind(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// Accepts connections until `shutdown` resolves, serving each with the connection `connect`
/// makes from the socket and a [`RequestTracker`] (whose `service` must wrap the connection's
/// service), under `limits` (see the module doc). Then stops accepting, closes the connections
/// that are waiting, and gives the ones serving `grace` to finish. Shared by the daemon and
/// `parley sandbox`.
pub async fn accept_loop<C>(
    listener: TcpListener,
    limits: ConnectionLimits,
    counters: Arc<ConnectionCounters>,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
    mut connect: impl FnMut(TokioIo<TrackedStream>, RequestTracker) -> C,
) where
    C: GracefulConnection + Send + 'static,
    C::Error: Send,
{
    let clock = Clock { epoch: Instant::now() };
    counters.max.store(limits.max_connections as u64, Ordering::Relaxed);
    let graceful = GracefulShutdown::new();
    let mut registry = Registry::new();
    let mut cap_warning = CapWarning::default();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Usually out of file descriptors: wait a little rather than spin.
                    tracing::warn!(message = "Accept failed.", error = %e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        registry.forget_ended();
        if registry.open.len() >= limits.max_connections {
            match registry.shed_longest_waiting() {
                Some(reason) => {
                    counters.shed(reason);
                    cap_warning.note(true, limits.max_connections);
                }
                None => {
                    // Every connection is serving a request: turn this one away by closing it
                    // unread. A 503 written before its request was read would mostly be lost
                    // to the reset that closing with unread data sends, and would be HTTP/1 text
                    // to a client that may speak HTTP/2; the client retries either way.
                    counters.refused_at_cap.fetch_add(1, Ordering::Relaxed);
                    cap_warning.note(false, limits.max_connections);
                    drop(stream);
                    continue;
                }
            }
        }
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new(clock.now_ms()));
        let id = registry.add(activity.clone());
        let io =
            TokioIo::new(TrackedStream { stream, activity: activity.clone(), clock, protocol: Protocol::Sniffing(0) });
        let watched = graceful.watch(connect(io, RequestTracker { activity: activity.clone(), clock, peer }));
        counters.open.fetch_add(1, Ordering::Relaxed);
        let (counters, ended) = (counters.clone(), registry.ended_tx.clone());
        tokio::spawn(async move {
            let closed = tokio::select! {
                _ = watched => None,
                closed = watchdog(&activity, limits, clock) => Some(closed),
            };
            counters.closed(closed);
            let _ = ended.send(id);
        });
    }
    drop(listener);
    registry.forget_ended();
    // A waiting connection has nothing to finish; closing it now keeps a slowloris from holding
    // the shutdown until the grace runs out.
    let closed = registry.close_waiting();
    tracing::info!(
        message = "Stopped accepting; finishing requests in flight.",
        serving = graceful.count().saturating_sub(closed),
        closed_waiting = closed,
    );
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => tracing::warn!(message = "Connections still open at the shutdown deadline."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ConnectionLimits = ConnectionLimits {
        max_connections: 4,
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
    };

    fn waiting(since_ms: u64, served_before: bool, next_request_from_ms: Option<u64>) -> Waiting {
        Waiting { since_ms, served_before, next_request_from_ms }
    }

    #[test]
    fn a_new_connection_must_finish_its_headers_within_the_header_timeout_of_accept() {
        assert_eq!(waiting(5_000, false, None).deadline_ms(&LIMITS), (15_000, Timeout::Header));
        // Bytes do not move the clock of a first request: a trickle from accept is still cut off.
        assert_eq!(waiting(5_000, false, Some(9_000)).deadline_ms(&LIMITS), (15_000, Timeout::Header));
    }

    #[test]
    fn a_kept_alive_connection_may_idle_for_the_idle_timeout_after_its_last_response() {
        assert_eq!(waiting(100_000, true, None).deadline_ms(&LIMITS), (160_000, Timeout::Idle));
    }

    #[test]
    fn a_next_request_must_finish_its_headers_within_the_header_timeout_of_its_first_byte() {
        assert_eq!(waiting(100_000, true, Some(155_000)).deadline_ms(&LIMITS), (165_000, Timeout::Header));
        assert_eq!(waiting(100_000, true, Some(101_000)).deadline_ms(&LIMITS), (111_000, Timeout::Header));
    }

    #[test]
    fn huge_timeouts_do_not_overflow() {
        let limits = ConnectionLimits { idle_timeout: Duration::MAX, header_timeout: Duration::MAX, ..LIMITS };
        assert_eq!(waiting(7, true, None).deadline_ms(&limits), (u64::MAX, Timeout::Idle));
        assert_eq!(waiting(7, false, None).deadline_ms(&limits), (u64::MAX, Timeout::Header));
    }

    #[test]
    fn the_shed_reason_says_whether_headers_were_under_way() {
        assert_eq!(waiting(0, true, None).shed_reason(), ShedReason::Idle);
        assert_eq!(waiting(0, true, Some(3)).shed_reason(), ShedReason::SlowHeaders);
        assert_eq!(waiting(0, false, None).shed_reason(), ShedReason::SlowHeaders);
    }

    #[test]
    fn the_longest_waiting_connection_is_shed_and_serving_ones_never() {
        let connections = [
            (1, Phase::Serving),
            (2, Phase::Waiting(waiting(4_000, true, None))),
            (3, Phase::Waiting(waiting(1_000, false, Some(1_500)))),
            (4, Phase::Closing),
            (5, Phase::Waiting(waiting(9_000, false, None))),
        ];
        assert_eq!(longest_waiting(connections), Some((3, waiting(1_000, false, Some(1_500)))));
        assert_eq!(longest_waiting([(1, Phase::Serving), (2, Phase::Closing)]), None);
        assert_eq!(longest_waiting(Vec::<(u8, Phase)>::new()), None);
    }

    #[test]
    fn the_protocol_is_told_from_the_http2_preface() {
        assert_eq!(Protocol::Sniffing(0).after(b"POST /webhooks/whatsapp HTTP/1.1\r\n"), Protocol::Http1);
        assert_eq!(Protocol::Sniffing(0).after(b"P"), Protocol::Sniffing(1));
        assert_eq!(Protocol::Sniffing(1).after(b"OST"), Protocol::Http1);
        assert_eq!(Protocol::Sniffing(0).after(HTTP2_PREFACE), Protocol::Http2);
        let (a, b) = HTTP2_PREFACE.split_at(10);
        assert_eq!(Protocol::Sniffing(0).after(a).after(b), Protocol::Http2);
        // Frames after the preface in the same read.
        assert_eq!(Protocol::Sniffing(0).after(&[&HTTP2_PREFACE[..], b"\0\0\0\x04"].concat()), Protocol::Http2);
        assert_eq!(Protocol::Http1.after(HTTP2_PREFACE), Protocol::Http1);
        assert_eq!(Protocol::Http2.after(b"GET"), Protocol::Http2);
    }

    #[test]
    fn activity_follows_requests_and_closing_is_final() {
        let activity = Activity::new(10);
        assert_eq!(activity.phase(), Phase::Waiting(waiting(10, false, None)));
        activity.request_bytes_arrived(12); // not kept alive yet: ignored
        assert!(activity.begin_request());
        assert!(activity.begin_request()); // HTTP/2: a second stream
        assert_eq!(activity.phase(), Phase::Serving);
        assert!(!activity.try_close(), "a serving connection is never closed");
        activity.end_request(20);
        assert_eq!(activity.phase(), Phase::Serving);
        activity.end_request(30);
        assert_eq!(activity.phase(), Phase::Waiting(waiting(30, true, None)));
        activity.request_bytes_arrived(40);
        activity.request_bytes_arrived(45); // only the first byte counts
        assert_eq!(activity.phase(), Phase::Waiting(waiting(30, true, Some(40))));
        assert!(activity.try_close());
        assert_eq!(activity.phase(), Phase::Closing);
        assert!(!activity.begin_request(), "nothing starts on a closing connection");
        assert!(!activity.try_close());
    }
}

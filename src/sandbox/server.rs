//! The sandbox's HTTP shell: accept loopback connections, read each request, hand it to the core
//! under a short lock, then deliver the answer as the core decided (now, late, or not at all) and
//! start the receipts. The same approach as the daemon's server, sized for a test tool.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioTimer;
use tokio::net::TcpListener;

use super::core::{self, Delivery, Now, Sandbox};
use super::receipts::ReceiptSender;
use crate::http::{ConnectionCounters, ConnectionLimits};
use crate::model::Timestamp;

/// Larger request bodies get 413; no platform send is near it (Viber's limit is 30 KB).
const MAX_BODY_BYTES: usize = 1 << 20;
/// At this many open connections each new one closes the one waiting longest for a request.
const MAX_CONNECTIONS: usize = 1024;
/// How long a client may take to send its headers, and its body.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A kept-alive connection may wait this long for its next request: longer than the daemon's
/// client keeps idle connections (60 s, `outbound::client`), so the client always closes first
/// and never sends on a connection the sandbox is closing.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Requests in flight at shutdown get this long.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What every connection shares.
pub struct Shared {
    /// The core. A plain mutex: every call is short, synchronous and never held across an await.
    pub sandbox: Mutex<Sandbox>,
    /// The receiver of outgoing webhooks (`receiver.rs`), apart from the platforms' core.
    pub receivers: Mutex<super::receiver::Receivers>,
    /// `None` with `--no-receipts`.
    pub receipts: Option<Arc<ReceiptSender>>,
    /// The monotonic origin of `Now::mono_ms`.
    pub started: Instant,
}

impl Shared {
    fn now(&self) -> Now {
        let mono_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Now { epoch_ms: Timestamp::now().as_millis(), mono_ms }
    }
}

/// The `drop` fault: returning this error from the service makes hyper close the connection
/// without writing an answer.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by a sandbox fault")
    }
}

impl std::error::Error for DropConnection {}

/// Serves until `shutdown` resolves.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: impl Future<Output = ()>) {
    let mut builder = http1::Builder::new();
    // The accept loop enforces the header and idle timeouts (hyper's would also cut keep-alive).
    builder.timer(TokioTimer::new()).header_read_timeout(None);
    let limits =
        ConnectionLimits { max_connections: MAX_CONNECTIONS, header_timeout: READ_TIMEOUT, idle_timeout: IDLE_TIMEOUT };
    let counters = Arc::new(ConnectionCounters::default());
    crate::http::accept_loop(listener, limits, counters, SHUTDOWN_GRACE, shutdown, move |io, requests| {
        let shared = shared.clone();
        let service = hyper::service::service_fn(move |request| {
            let shared = shared.clone();
            async move { answer(&shared, request).await }
        });
        builder.serve_connection(io, requests.service(service))
    })
    .await;
}

async fn answer(shared: &Shared, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, DropConnection> {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in request.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers.entry(name.as_str().to_owned()).and_modify(|v| *v = format!("{v}, {value}")).or_insert(value);
    }
    let body =
        match tokio::time::timeout(READ_TIMEOUT, Limited::new(request.into_body(), MAX_BODY_BYTES).collect()).await {
            Ok(Ok(collected)) => collected.to_bytes().to_vec(),
            Ok(Err(_)) => return Ok(plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large or unreadable")),
            Err(_) => return Ok(plain(StatusCode::REQUEST_TIMEOUT, "the body did not arrive in time")),
        };
    let request = core::Request { method, path, query, headers, body };
    if super::receiver::Receivers::handles(&request.path) {
        let (reply, delivery) = {
            let now = shared.now();
            let mut receivers = shared.receivers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            receivers.handle(&request, now.epoch_ms)
        };
        return deliver(reply, delivery).await;
    }
    let outcome = {
        let now = shared.now();
        let mut sandbox = shared.sandbox.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        sandbox.handle(&request, now)
    };
    let platform = outcome.platform.map(|p| p.as_str()).unwrap_or("control");
    // The path only: the query may carry an access token.
    tracing::debug!(message = "Request.", platform, method = %request.method, path = %request.path, status = outcome.reply.status);
    if let Some(fault) = outcome.fault {
        tracing::warn!(message = "Fault applied.", platform, kind = fault.as_str(), path = %request.path);
    }
    match outcome.delivery {
        Delivery::Answer => {}
        Delivery::AnswerAfter(delay) => tokio::time::sleep(delay).await,
        Delivery::Drop => return Err(DropConnection),
    }
    if let (Some(plan), Some(sender)) = (outcome.receipts, shared.receipts.as_ref()) {
        sender.schedule(plan);
    }
    let reply = outcome.reply;
    Ok(response_of(reply))
}

/// Answers as decided: now, after a delay, or not at all.
async fn deliver(reply: super::reply::Reply, delivery: Delivery) -> Result<Response<Full<Bytes>>, DropConnection> {
    match delivery {
        Delivery::Answer => {}
        Delivery::AnswerAfter(delay) => tokio::time::sleep(delay).await,
        Delivery::Drop => return Err(DropConnection),
    }
    Ok(response_of(reply))
}

fn response_of(reply: super::reply::Reply) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    for (name, value) in reply.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

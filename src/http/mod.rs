//! The HTTP front end: one hyper listener for webhooks, the operator API and the health routes.
//! It sees the actors only through the message types and names in `actor`.

// Handlers return a ready answer as their error value on purpose: the early-return shape reads best.
#![allow(clippy::result_large_err)]

mod api;
mod body;
pub mod connections;
mod engagement;
mod events;
pub mod inbox;
pub mod metrics;
mod receivers;
mod response;
mod send;
pub mod session;
mod webhook;

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use ractor::rpc::CallResult;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use self::connections::{ConnectionCounters, ConnectionLimits, accept_loop, bind};
use self::response::Body;
use crate::actor::{
    ChannelMsg, ChannelStatus, ConversationMsg, StoreAvailability, StoreStatus, channel_actor, conversation_actor,
};
use crate::config::Config;
use crate::feed::FeedHub;
use crate::metrics::Metrics;
use crate::model::Platform;

/// What every request handler shares.
pub struct HttpState {
    /// Swapped whole by a reload (`SIGHUP`); each request reads it once through [`HttpState::config`].
    config: RwLock<Arc<Config>>,
    /// The process's metrics (`crate::metrics::metrics()`).
    pub metrics: &'static Metrics,
    /// What the accept loop counts (open, shed, timed out), for `/metrics`.
    pub connections: Arc<ConnectionCounters>,
    /// Webhooks in progress; see `server.max_inflight_webhooks`.
    webhook_permits: Arc<Semaphore>,
    /// A counter that names each delivery in the logs.
    deliveries: AtomicU64,
    started: Instant,
    /// The live feed's in-memory tail (the conversation actor publishes to it).
    pub feed: Arc<FeedHub>,
    /// Set when the server stops accepting: live feed streams end, so that shutdown does not wait
    /// for them.
    stopping: tokio::sync::watch::Sender<bool>,
    /// The inbox's signed-out sessions and wrong sign-in tries.
    pub sessions: session::Sessions,
}

impl HttpState {
    /// State for a server running `config`.
    pub fn new(config: Arc<Config>, feed: Arc<FeedHub>) -> Self {
        let permits = config.server.max_inflight_webhooks;
        HttpState {
            config: RwLock::new(config),
            metrics: crate::metrics::metrics(),
            connections: Arc::new(ConnectionCounters::default()),
            webhook_permits: Arc::new(Semaphore::new(permits)),
            deliveries: AtomicU64::new(0),
            started: Instant::now(),
            feed,
            stopping: tokio::sync::watch::channel(false).0,
            sessions: session::Sessions::default(),
        }
    }

    /// A receiver that turns true when the server starts shutting down.
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// The configuration in force now: a request that holds it sees one consistent version.
    pub fn config(&self) -> Arc<Config> {
        self.config.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Puts a reloaded configuration in force for every request that starts from now on.
    pub fn replace_config(&self, config: Arc<Config>) {
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = config;
    }
}

/// Serves until `shutdown` resolves, then stops accepting, lets requests in flight finish (up to
/// `server.shutdown_grace_secs`), and returns.
pub async fn serve(listener: TcpListener, state: Arc<HttpState>, shutdown: impl Future<Output = ()>) {
    let config = state.config();
    let server = &config.server;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own header timeout is off: it starts only after the protocol sniff and restarts at
    // the end of each response (so it would also cut keep-alive at 10 s), and HTTP/2 has none.
    // The accept loop enforces both timeouts for both protocols (connections.rs).
    builder.http1().timer(TokioTimer::new()).header_read_timeout(None);
    builder.http2().timer(TokioTimer::new());
    let limits = ConnectionLimits {
        max_connections: server.max_connections,
        header_timeout: Duration::from_secs(server.header_read_timeout_secs),
        idle_timeout: Duration::from_secs(server.idle_timeout_secs),
    };
    let grace = Duration::from_secs(server.shutdown_grace_secs);
    let counters = state.connections.clone();
    let stopping = state.stopping.clone();
    let shutdown = async move {
        shutdown.await;
        stopping.send_replace(true);
    };
    accept_loop(listener, limits, counters, grace, shutdown, move |io, requests| {
        let state = state.clone();
        let service = hyper::service::service_fn(move |request| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(dispatch(&state, request).await) }
        });
        builder.serve_connection(io, requests.service(service)).into_owned()
    })
    .await;
}

/// Method and path to handler.
async fn dispatch(state: &HttpState, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        [""] => inbox::page(&request),
        ["assets", version, name] => inbox::asset(&request, version, name),
        ["health"] => only_get(&request, || response::json(StatusCode::OK, &json!({ "status": "ok" }))),
        ["ready"] => match *request.method() {
            Method::GET => ready(state).await,
            _ => response::method_not_allowed("GET"),
        },
        ["metrics"] => match *request.method() {
            Method::GET => metrics(state).await,
            _ => response::method_not_allowed("GET"),
        },
        ["webhooks", name] => {
            let Ok(platform) = name.parse::<Platform>() else {
                return response::error(StatusCode::NOT_FOUND, "not_found", &format!("no webhook route for `{name}`"));
            };
            if !state.config().enabled(platform) {
                return response::error(
                    StatusCode::NOT_FOUND,
                    "platform_disabled",
                    &format!("{platform} is not enabled on this server"),
                );
            }
            match *request.method() {
                Method::GET => webhook::handshake(state, platform, request.uri().query().unwrap_or("")),
                Method::POST => webhook::receive(state, platform, request).await,
                _ if platform == Platform::Viber => response::method_not_allowed("POST"),
                _ => response::method_not_allowed("GET, POST"),
            }
        }
        ["api", rest @ ..] => api::route(state, request, rest).await,
        _ => response::error(StatusCode::NOT_FOUND, "not_found", "no such route"),
    }
}

fn only_get<B>(request: &Request<B>, answer: impl FnOnce() -> Response<Body>) -> Response<Body> {
    if request.method() == Method::GET { answer() } else { response::method_not_allowed("GET") }
}

/// Each enabled platform's channel status, `None` where the actor is down or does not answer.
async fn channel_statuses(state: &HttpState) -> Vec<(Platform, Option<ChannelStatus>)> {
    let mut out = Vec::new();
    for platform in state.config().enabled_platforms() {
        let status = match channel_actor(platform) {
            Some(actor) => match actor.call(ChannelMsg::GetStatus, Some(Duration::from_secs(2))).await {
                Ok(CallResult::Success(status)) => Some(status),
                _ => None,
            },
            None => None,
        };
        out.push((platform, status));
    }
    out
}

/// The store's status from the conversation actor; `None` where it is down or does not answer.
async fn store_status() -> Option<StoreStatus> {
    let actor = conversation_actor()?;
    match actor.call(|reply| ConversationMsg::GetStoreStatus { reply }, Some(Duration::from_secs(2))).await {
        Ok(CallResult::Success(status)) => Some(status),
        _ => None,
    }
}

async fn ready(state: &HttpState) -> Response<Body> {
    let (store, store_reason) = match store_status().await {
        Some(status) => (status.availability.label(), status.reason),
        None => ("down", Some("the conversation actor is not running or does not answer".to_owned())),
    };
    let store_up = store == "up";
    let mut not_ready = Vec::new();
    if !store_up {
        not_ready.push("store".to_owned());
    }
    let mut channels = serde_json::Map::new();
    for (platform, status) in channel_statuses(state).await {
        let entry = match status {
            Some(s) => {
                if !s.ready {
                    not_ready.push(format!("channel.{platform}"));
                }
                json!({
                    "state": if s.ready { "up" } else { "not_ready" },
                    "reason": s.reason,
                    "token_expires_in_seconds": s.token_expires_in_secs,
                    "queued": s.queued,
                })
            }
            None => {
                not_ready.push(format!("channel.{platform}"));
                json!({ "state": "down" })
            }
        };
        channels.insert(platform.to_string(), entry);
    }
    if not_ready.is_empty() {
        response::json(StatusCode::OK, &json!({ "status": "ready", "store": "up", "channels": channels }))
    } else {
        response::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "status": "not_ready", "store": store, "store_reason": store_reason, "channels": channels, "not_ready": not_ready }),
        )
    }
}

/// `GET /api/channels`: what the inbox needs to know of each enabled channel (readiness, the
/// text limit its composer shows) and whether the store takes writes, in one call.
async fn channels(state: &HttpState) -> Response<Body> {
    let channels: Vec<_> = channel_statuses(state)
        .await
        .into_iter()
        .map(|(platform, status)| {
            let (ready, reason, expires) = match status {
                Some(s) => (s.ready, s.reason, s.token_expires_in_secs),
                None => (false, Some("the channel is restarting or does not answer".to_owned()), None),
            };
            json!({
                "platform": platform,
                "ready": ready,
                "reason": reason,
                "token_expires_in_secs": expires,
                "max_text_chars": crate::platform::max_text_chars(platform),
            })
        })
        .collect();
    let store = match store_status().await {
        Some(status) => {
            json!({ "ready": matches!(status.availability, StoreAvailability::Up), "reason": status.reason })
        }
        None => json!({ "ready": false, "reason": "the conversation actor is not running or does not answer" }),
    };
    response::json(StatusCode::OK, &json!({ "channels": channels, "store": store }))
}

async fn metrics(state: &HttpState) -> Response<Body> {
    let store = store_status().await;
    let statuses = channel_statuses(state).await;
    let connections = state.connections.totals();
    let mut text =
        metrics::render(state.metrics, store.as_ref(), &connections, state.started.elapsed().as_secs(), &statuses);
    // Outgoing webhook receivers (their own block; see receivers.rs).
    text.push_str(&receivers::metrics_text(&state.config().webhooks).await);
    response::with_type(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", text.into_bytes())
}

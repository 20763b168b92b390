//! `/api/webhooks`: the outgoing webhook receivers (CONTRACT.md, "Outgoing webhooks"): their state,
//! replay, enable. Each receiver's worker answers for itself; a worker being restarted is 503.

use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use ractor::rpc::CallResult;
use serde::Deserialize;
use serde_json::{Value, json};

use super::HttpState;
use super::api::{bad_request, read_json};
use super::response::{self, Body};
use crate::actor::PersistError;
use crate::actor::receiver::{ReceiverMsg, ReceiverStatus, receiver_actor};
use crate::config::WebhookConfig;
use crate::webhooks::signature::webhook_id;

/// A worker that does not answer within this is reported as unavailable.
const STATUS_DEADLINE: Duration = Duration::from_secs(5);
/// Enable and replay answer once durable: a flush, or a checkpoint's few seconds.
const CHANGE_DEADLINE: Duration = Duration::from_secs(30);

/// The body of `POST /api/webhooks/{name}/replay`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    after: u64,
}

/// Routes `/api/webhooks...` (after the bearer check). `rest` follows `webhooks`.
pub async fn route(state: &HttpState, request: Request<Incoming>, rest: &[&str]) -> Response<Body> {
    let config = state.config();
    let method = request.method().clone();
    match rest {
        [] => match method {
            Method::GET => list(&config.webhooks).await,
            _ => response::method_not_allowed("GET"),
        },
        [name, action @ ("replay" | "enable")] => {
            let Some(receiver) = config.webhooks.iter().find(|r| r.name == *name) else {
                return not_found(name);
            };
            if method != Method::POST {
                return response::method_not_allowed("POST");
            }
            let Some(worker) = receiver_actor(&receiver.name) else {
                return response::unavailable("the receiver's worker is restarting", 1);
            };
            let answer = if *action == "replay" {
                let body = match read_json::<ReplayBody>(state, request).await {
                    Ok(body) => body,
                    Err(answer) => return answer,
                };
                let after = body.after;
                worker.call(|reply| ReceiverMsg::Replay { after, reply }, Some(CHANGE_DEADLINE)).await
            } else {
                // The body is optional, but when one is sent it must be JSON like every API post.
                if let Err(answer) = read_optional_json(state, request).await {
                    return answer;
                }
                worker.call(|reply| ReceiverMsg::Enable { reply }, Some(CHANGE_DEADLINE)).await
            };
            match answer {
                Ok(CallResult::Success(Ok(()))) => match status_of(receiver).await {
                    Some(status) => response::json(StatusCode::OK, &render(receiver, &status)),
                    None => response::json(StatusCode::OK, &json!({ "name": receiver.name })),
                },
                Ok(CallResult::Success(Err(PersistError::NotWritable(_)))) => {
                    response::store_not_writable("the change to the receiver")
                }
                _ => response::unavailable("the change could not be saved; try again", 1),
            }
        }
        [name] | [name, ..] => match config.webhooks.iter().any(|r| r.name == *name) {
            true => response::error(StatusCode::NOT_FOUND, "not_found", "no such API route"),
            false => not_found(name),
        },
    }
}

fn not_found(name: &str) -> Response<Body> {
    let shown: String = name.chars().take(64).collect();
    response::error(StatusCode::NOT_FOUND, "not_found", &format!("no webhook receiver named `{shown}`"))
}

/// The body may be absent or empty; otherwise it must be declared JSON and be an object.
async fn read_optional_json(state: &HttpState, request: Request<Incoming>) -> Result<(), Response<Body>> {
    let has_body = request.headers().contains_key(hyper::header::CONTENT_TYPE)
        || request
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .is_some_and(|v| v.to_str().ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(1) > 0)
        || request.headers().contains_key(hyper::header::TRANSFER_ENCODING);
    if !has_body {
        return Ok(());
    }
    let value: Value = read_json(state, request).await?;
    if value.is_object() || value.is_null() {
        Ok(())
    } else {
        Err(bad_request("bad_json", "the body must be an object"))
    }
}

async fn status_of(receiver: &WebhookConfig) -> Option<ReceiverStatus> {
    let worker = receiver_actor(&receiver.name)?;
    match worker.call(ReceiverMsg::GetStatus, Some(STATUS_DEADLINE)).await {
        Ok(CallResult::Success(status)) => Some(status),
        _ => None,
    }
}

/// Every receiver's status, for `/metrics` too (`None` where its worker does not answer).
pub async fn statuses(receivers: &[WebhookConfig]) -> Vec<(String, Option<ReceiverStatus>)> {
    let mut out = Vec::with_capacity(receivers.len());
    for receiver in receivers {
        out.push((receiver.name.clone(), status_of(receiver).await));
    }
    out
}

async fn list(receivers: &[WebhookConfig]) -> Response<Body> {
    let mut shown = Vec::with_capacity(receivers.len());
    for receiver in receivers {
        match status_of(receiver).await {
            Some(status) => shown.push(render(receiver, &status)),
            None => return response::unavailable(&format!("the worker of `{}` is restarting", receiver.name), 1),
        }
    }
    response::json(StatusCode::OK, &json!({ "webhooks": shown }))
}

/// One receiver as CONTRACT.md shows it, plus `failed_events` (the newest given up, newest first).
fn render(receiver: &WebhookConfig, status: &ReceiverStatus) -> Value {
    let events: Vec<&str> = if receiver.events.is_empty() {
        crate::feed::EventType::ALL.iter().map(|t| t.as_str()).collect()
    } else {
        receiver.events.iter().map(String::as_str).collect()
    };
    let platforms: Vec<&str> = if receiver.platforms.is_empty() {
        crate::model::Platform::ALL.iter().map(|p| p.as_str()).collect()
    } else {
        receiver.platforms.iter().map(String::as_str).collect()
    };
    let failed_events: Vec<Value> = status
        .failed_events
        .iter()
        .map(|f| {
            json!({
                "seq": f.seq,
                "webhook_id": webhook_id(f.seq),
                "attempts": f.attempts,
                "given_up_at": f.given_up_at,
                "status": f.status,
                "message": f.message,
            })
        })
        .collect();
    json!({
        "name": receiver.name,
        "url": receiver.url,
        "enabled": status.enabled,
        "events": events,
        "platforms": platforms,
        "last_delivered_seq": if status.last_delivered_seq == 0 { Value::Null } else { json!(status.last_delivered_seq) },
        "pending": status.pending,
        "failed": status.failed,
        "failed_events": failed_events,
        "last_error": status.last_error.as_ref().map(|e| json!({ "at": e.at, "status": e.status, "message": e.message })),
    })
}

/// `{receiver}` of the per-receiver metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ReceiverLabel {
    receiver: String,
}

/// The receivers' lines of `/metrics` (Prometheus text), read from their workers now.
pub async fn metrics_text(receivers: &[WebhookConfig]) -> String {
    use crate::metrics::{counter_family, encode_scrape, gauge_family, scrape_registry};
    let mut registry = scrape_registry();
    let up = gauge_family::<ReceiverLabel>(
        &mut registry,
        "parley_outgoing_webhook_up",
        "1 while the receiver's worker runs and the receiver is enabled",
    );
    let pending = gauge_family::<ReceiverLabel>(
        &mut registry,
        "parley_outgoing_webhook_pending",
        "Events not delivered to the receiver yet (read and waiting, plus feed events not read yet)",
    );
    let oldest = gauge_family::<ReceiverLabel>(
        &mut registry,
        "parley_outgoing_webhook_oldest_pending_age_seconds",
        "Age of the oldest event read and not delivered yet (0: none)",
    );
    let given_up = gauge_family::<ReceiverLabel>(
        &mut registry,
        "parley_outgoing_webhook_given_up",
        "Events given up for the receiver (kept in the store)",
    );
    let deliveries = counter_family::<ReceiverLabel>(
        &mut registry,
        "parley_outgoing_webhook_deliveries",
        "Events delivered (2xx) since start",
    );
    let failures = counter_family::<ReceiverLabel>(
        &mut registry,
        "parley_outgoing_webhook_failures",
        "Delivery attempts that failed (not 2xx, timeout, connection error) since start",
    );
    for (name, status) in statuses(receivers).await {
        let label = ReceiverLabel { receiver: name };
        up.get_or_create(&label).set(i64::from(status.as_ref().is_some_and(|s| s.enabled)));
        let Some(status) = status else { continue };
        pending.get_or_create(&label).set(i64::try_from(status.pending).unwrap_or(i64::MAX));
        oldest.get_or_create(&label).set(i64::try_from(status.oldest_pending_age_secs).unwrap_or(i64::MAX));
        given_up.get_or_create(&label).set(i64::try_from(status.failed).unwrap_or(i64::MAX));
        deliveries.get_or_create(&label).inc_by(status.deliveries);
        failures.get_or_create(&label).inc_by(status.failures);
    }
    let mut out = String::new();
    if let Err(e) = encode_scrape(&registry, &mut out) {
        tracing::error!(message = "Receiver metrics did not encode.", error = %e);
    }
    out
}

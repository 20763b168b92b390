//! The webhook routes: GET handshakes and signed POSTs. A POST is answered 200 only after every
//! event in it is durably stored (or the body is durably quarantined); a wrong or missing
//! signature is 401 and nothing is stored.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use ractor::rpc::CallResult;

use super::response::{self, Body};
use super::{HttpState, body};
use crate::actor::{ChannelMsg, PersistError, WebhookOutcome, channel_actor};
use crate::metrics::WebhookResult;
use crate::model::{Platform, Timestamp};
use crate::platform::{self, HandshakeReply, SignedRequest, VerifyError};

/// How long a webhook may wait for its durable write before we answer 503 (Meta gives up at 20 s).
const STORE_DEADLINE: Duration = Duration::from_secs(15);

/// `GET /webhooks/{platform}`: the subscription handshake.
pub fn handshake(state: &HttpState, platform: Platform, query: &str) -> Response<Body> {
    let config = state.config();
    match platform::verify_handshake(platform, config.handshake_secret(platform), query) {
        Ok(HandshakeReply::Text(challenge)) => {
            tracing::info!(message = "Webhook handshake answered.", %platform);
            response::text(StatusCode::OK, challenge)
        }
        Ok(HandshakeReply::Json(value)) => {
            tracing::info!(message = "Webhook handshake answered.", %platform);
            response::json(StatusCode::OK, &value)
        }
        Err(VerifyError::HandshakeNotSupported) => response::method_not_allowed("POST"),
        Err(VerifyError::MissingParameter(name)) => response::error(
            StatusCode::BAD_REQUEST,
            "missing_parameter",
            &format!("query parameter `{name}` is required"),
        ),
        Err(e) => {
            tracing::warn!(message = "Webhook handshake refused.", %platform, reason = %e);
            response::error(StatusCode::FORBIDDEN, "handshake_refused", "verify token or mode is wrong")
        }
    }
}

/// `POST /webhooks/{platform}`, timed from its request head to its answer.
pub async fn receive(state: &HttpState, platform: Platform, request: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let answer = receive_untimed(state, platform, request).await;
    state.metrics.webhook_answered(platform, started.elapsed());
    answer
}

async fn receive_untimed(state: &HttpState, platform: Platform, request: Request<Incoming>) -> Response<Body> {
    // Bound the webhooks in progress: past it, platforms are told to come back (they all retry).
    let Ok(_permit) = state.webhook_permits.clone().try_acquire_owned() else {
        state.metrics.webhook(platform, WebhookResult::Unavailable);
        return response::unavailable("too many webhooks in progress", 1);
    };
    let query = request.uri().query().map(str::to_owned);
    let header_name = platform::signature_header(platform);
    let signature =
        platform::single_signature_header(request.headers().get_all(header_name).iter().map(|v| v.as_bytes()));
    let config = state.config();
    let limit = config.server.max_body_bytes;
    let timeout = Duration::from_secs(config.server.request_timeout_secs);
    let body = match body::read_limited(request, limit, timeout).await {
        Ok(body) => body,
        Err(answer) => {
            if answer.status() == StatusCode::PAYLOAD_TOO_LARGE {
                state.metrics.webhook(platform, WebhookResult::TooLarge);
                tracing::warn!(message = "Webhook body over the limit.", %platform, limit);
            }
            return answer;
        }
    };
    let delivery_id = format!("d{}", state.deliveries.fetch_add(1, Ordering::Relaxed));
    let verified = signature.and_then(|signature| {
        let signed = SignedRequest { signature_header: signature.as_deref(), query: query.as_deref(), body: &body };
        platform::verify_signature(platform, config.signing_secret(platform), &signed)
    });
    match verified {
        Ok(form) => tracing::debug!(message = "Webhook signature verified.", %platform, %delivery_id, form = ?form),
        Err(e) => {
            state.metrics.webhook(platform, WebhookResult::BadSignature);
            tracing::warn!(message = "Webhook refused: signature.", %platform, %delivery_id, reason = %e, bytes = body.len());
            return response::error(StatusCode::UNAUTHORIZED, "bad_signature", &e.to_string());
        }
    }
    let Some(channel) = channel_actor(platform) else {
        state.metrics.webhook(platform, WebhookResult::Unavailable);
        tracing::warn!(message = "Channel is restarting; webhook refused.", %platform, %delivery_id);
        return response::unavailable("the channel is restarting", 1);
    };
    let received_at = Timestamp::now();
    let call = channel.call(
        |reply| ChannelMsg::Webhook { body, received_at, delivery_id: delivery_id.clone(), reply },
        Some(STORE_DEADLINE),
    );
    let outcome = match call.await {
        Ok(CallResult::Success(Ok(outcome))) => outcome,
        Ok(CallResult::Success(Err(e))) => {
            state.metrics.webhook(platform, WebhookResult::Unavailable);
            tracing::warn!(message = "Webhook not stored.", %platform, %delivery_id, error = %e);
            return match e {
                PersistError::NotWritable(_) => response::store_not_writable("the webhook was not stored"),
                PersistError::Failed(_) | PersistError::Refused(_) | PersistError::Invalid(_) => {
                    response::unavailable("the webhook could not be stored", 1)
                }
            };
        }
        Ok(CallResult::Timeout) => {
            state.metrics.webhook(platform, WebhookResult::Unavailable);
            tracing::error!(message = "Webhook store deadline passed.", %platform, %delivery_id);
            return response::unavailable("the store is too slow right now", 1);
        }
        Ok(CallResult::SenderError) | Err(_) => {
            state.metrics.webhook(platform, WebhookResult::Unavailable);
            tracing::warn!(message = "Webhook dropped by a failing actor; platform will redeliver.", %platform, %delivery_id);
            return response::unavailable("the channel failed while handling the webhook", 1);
        }
    };
    let answer = match outcome {
        WebhookOutcome::Stored(o) => {
            state.metrics.webhook(platform, WebhookResult::Stored);
            state.metrics.events(platform, o.stored, o.duplicates);
            tracing::debug!(message = "Webhook stored.", %platform, %delivery_id, events = o.stored, duplicates = o.duplicates);
            serde_json::json!({ "status": "stored", "events": o.stored, "duplicates": o.duplicates })
        }
        WebhookOutcome::Quarantined => {
            state.metrics.webhook(platform, WebhookResult::Quarantined);
            serde_json::json!({ "status": "quarantined" })
        }
    };
    // Viber reads a conversation_started answer's body as a welcome message: give it none.
    if platform == Platform::Viber { response::empty_ok() } else { response::json(StatusCode::OK, &answer) }
}

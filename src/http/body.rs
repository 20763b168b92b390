//! Reading request bodies under the size limit: the one place that produces 413.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::{Request, StatusCode, header};

use super::response::{self, Body};

/// Reads the whole body, refusing early when `Content-Length` is over `limit`, and again while
/// reading (chunked bodies have no length), within `timeout`.
pub async fn read_limited(
    request: Request<Incoming>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, hyper::Response<Body>> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let collect = Limited::new(request.into_body(), limit).collect();
    match tokio::time::timeout(timeout, collect).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(limit)),
        Ok(Err(e)) => {
            Err(response::error(StatusCode::BAD_REQUEST, "bad_body", &format!("the body could not be read: {e}")))
        }
        Err(_) => Err(response::error(StatusCode::REQUEST_TIMEOUT, "timeout", "the body did not arrive in time")),
    }
}

fn too_large(limit: usize) -> hyper::Response<Body> {
    response::error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", &format!("bodies are limited to {limit} bytes"))
}

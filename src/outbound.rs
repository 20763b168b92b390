//! Executes a platform API request built by the pure core, with reqwest, and hands back the raw
//! answer: no policy here (classification is the platform module's, retries the channel's).

use std::time::Duration;

use crate::platform::{ApiBody, ApiMethod, ApiRequest, ApiResponse};

/// Largest answer body read; platform answers are small, and a proxy's error page is cut here.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// The request never got an HTTP answer (connection refused or dropped, timeout).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

/// A client for one channel: its own pool, timeouts and user agent.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("parley/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a client with only timeouts and a user agent always builds")
}

/// Sends `request` and reads the answer.
pub async fn execute(client: &reqwest::Client, request: &ApiRequest) -> Result<ApiResponse, TransportError> {
    let mut builder = match request.method {
        ApiMethod::Get => client.get(&request.url),
        ApiMethod::Post => client.post(&request.url),
    };
    for (name, value) in &request.headers {
        builder = builder.header(*name, value);
    }
    builder = match &request.body {
        ApiBody::Empty => builder,
        ApiBody::Json(bytes) => builder.header("content-type", "application/json").body(bytes.clone()),
        ApiBody::Form(bytes) => builder.header("content-type", "application/x-www-form-urlencoded").body(bytes.clone()),
    };
    // The error's text may hold the URL and so a query-string credential: report its kind only.
    let response = builder.send().await.map_err(|e| TransportError(describe(&e)))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let body = match response.bytes().await {
        Ok(bytes) => bytes[..bytes.len().min(MAX_RESPONSE_BYTES)].to_vec(),
        Err(e) => return Err(TransportError(describe(&e))),
    };
    Ok(ApiResponse { status, headers, body })
}

fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "answer was cut off"
    } else if error.is_request() {
        "request failed"
    } else {
        "transport error"
    };
    match error.url().and_then(|u| u.host_str().map(str::to_owned)) {
        Some(host) => format!("{kind} ({host})"),
        None => kind.to_owned(),
    }
}

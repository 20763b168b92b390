//! Building answers. Every status code of the HTTP surface is chosen in the handlers through these
//! few functions, so every error body has the one contract shape `{"error": {"code", "message"}}`.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;

/// The body type of every answer: whole (`Full`) for all but the live feed's streams.
pub type Body = BoxBody<Bytes, std::convert::Infallible>;

/// A JSON answer.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => with_type(status, "application/json", bytes),
        Err(e) => {
            tracing::error!(message = "Response did not serialise.", error = %e);
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the answer could not be encoded")
        }
    }
}

/// The contract's error body.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    with_type(status, "application/json", body.to_string().into_bytes())
}

/// 503 with `Retry-After`, for overload and restarting actors: platforms retry later.
pub fn unavailable(message: &str, retry_after_secs: u32) -> Response<Body> {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

/// How long a platform (or API client) is asked to wait while the store cannot be written: a full
/// disk is not freed within a second, and platforms retry on their own schedule anyway.
pub const STORE_NOT_WRITABLE_RETRY_AFTER_SECS: u32 = 30;

/// 503 with `Retry-After` while the store refuses writes (disk full, read-only, failing); `what`
/// says what was refused. `/ready` says why.
pub fn store_not_writable(what: &str) -> Response<Body> {
    let mut response = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_not_writable",
        &format!("{what}: the store cannot take writes right now; try again later"),
    );
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(STORE_NOT_WRITABLE_RETRY_AFTER_SECS));
    response
}

/// 405 with the `Allow` header.
pub fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response =
        error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", &format!("this route accepts {allow}"));
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// A plain-text answer.
pub fn text(status: StatusCode, body: String) -> Response<Body> {
    with_type(status, "text/plain; charset=utf-8", body.into_bytes())
}

/// An answer with an explicit content type.
pub fn with_type(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// 200 with no body.
pub fn empty_ok() -> Response<Body> {
    Response::new(Full::new(Bytes::new()).boxed())
}

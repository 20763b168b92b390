//! The inbox's sign-in: `POST /api/session` trades the API token for a session cookie, `GET`
//! says whether one is signed in, `DELETE` signs out.
//!
//! A session is a signed value, not a stored record: `v1.{expires}.{nonce}.{mac}`, where `mac` is
//! HMAC-SHA256 over `v1.{expires}.{nonce}` under a key derived from the API token. So sessions
//! survive a daemon restart, end at `expires` (`api.session_hours`), and all end at once when the
//! operator changes the token. Signing out forgets the cookie in the browser and refuses its nonce
//! until it expires; that refusal is kept in memory (a restart forgets it, so a signed-out cookie
//! that was copied before signing out works again after a restart until it expires; changing the
//! token ends every session for good).
//!
//! Wrong tokens are throttled per client address ([`LoginThrottle`]): the token is long and
//! random, but nothing should be allowed to guess at full speed.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::HttpState;
use super::connections::Peer;
use super::response::{self, Body};
use crate::platform::{decode_hex, encode_hex, hmac_matches, hmac_sha256};
use crate::secret::Secret;
use crate::time::Timestamp;

/// The cookie's name.
pub const COOKIE_NAME: &str = "parley_session";

const KEY_LABEL: &[u8] = b"parley inbox session v1";
const NONCE_BYTES: usize = 16;

/// Wrong tokens allowed per client address within [`THROTTLE_WINDOW_SECS`].
pub const MAX_WRONG_TOKENS: usize = 10;
pub const THROTTLE_WINDOW_SECS: u64 = 600;
/// Addresses remembered by the throttle at most (the oldest is forgotten first).
const THROTTLE_ADDRESSES: usize = 4096;

/// A session that checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Unix seconds.
    pub expires_at: u64,
    nonce: [u8; NONCE_BYTES],
}

/// Why a cookie is not a session.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session cookie is malformed")]
    Malformed,
    #[error("the session cookie's signature does not match (the API token may have changed)")]
    BadSignature,
    #[error("the session has expired")]
    Expired,
    #[error("the session was signed out")]
    SignedOut,
    #[error("the API refuses every call: no token is configured")]
    NoToken,
}

/// The key sessions are signed with: derived from the API token, never the token itself.
fn session_key(token: &Secret) -> [u8; 32] {
    hmac_sha256(token.expose().as_bytes(), &[KEY_LABEL])
}

/// A session value that expires at `expires_at` (Unix seconds), signed under `token`.
pub fn issue(token: &Secret, expires_at: u64, nonce: [u8; NONCE_BYTES]) -> String {
    let payload = format!("v1.{expires_at}.{}", encode_hex(&nonce));
    let mac = hmac_sha256(&session_key(token), &[payload.as_bytes()]);
    format!("{payload}.{}", encode_hex(&mac))
}

/// Checks a session value at `now` (Unix seconds): signature first (in constant time), then expiry.
pub fn verify(token: &Secret, value: &str, now: u64) -> Result<Session, SessionError> {
    if token.is_empty() {
        return Err(SessionError::NoToken);
    }
    let mut parts = value.split('.');
    let (Some("v1"), Some(expires), Some(nonce_hex), Some(mac_hex), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SessionError::Malformed);
    };
    if expires.is_empty() || !expires.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SessionError::Malformed);
    }
    let expires_at: u64 = expires.parse().map_err(|_| SessionError::Malformed)?;
    let nonce: [u8; NONCE_BYTES] =
        decode_hex(nonce_hex).and_then(|bytes| bytes.try_into().ok()).ok_or(SessionError::Malformed)?;
    let presented = decode_hex(mac_hex).filter(|mac| mac.len() == 32).ok_or(SessionError::Malformed)?;
    let payload = format!("v1.{expires}.{}", encode_hex(&nonce));
    if !hmac_matches(&session_key(token), &[payload.as_bytes()], &presented) {
        return Err(SessionError::BadSignature);
    }
    if expires_at <= now {
        return Err(SessionError::Expired);
    }
    Ok(Session { expires_at, nonce })
}

/// The session cookie's value from a `Cookie` header, if there is one.
pub fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, v)| v)
}

/// The `Set-Cookie` value that stores `value` for `max_age_secs`.
pub fn set_cookie(value: &str, max_age_secs: u64) -> String {
    format!("{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}")
}

/// The `Set-Cookie` value that removes the cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The process's memory of sessions: signed-out nonces (until they expire) and wrong tries.
#[derive(Default)]
pub struct Sessions {
    signed_out: Mutex<HashMap<[u8; NONCE_BYTES], u64>>,
    throttle: Mutex<LoginThrottle>,
}

impl Sessions {
    /// [`verify`], and refused if signed out.
    pub fn check(&self, token: &Secret, value: &str, now: u64) -> Result<Session, SessionError> {
        let session = verify(token, value, now)?;
        let signed_out = self.signed_out.lock().unwrap_or_else(PoisonError::into_inner);
        if signed_out.contains_key(&session.nonce) {
            return Err(SessionError::SignedOut);
        }
        Ok(session)
    }

    /// Refuses `session` from now on (until it would have expired anyway).
    pub fn sign_out(&self, session: &Session, now: u64) {
        let mut signed_out = self.signed_out.lock().unwrap_or_else(PoisonError::into_inner);
        signed_out.retain(|_, expires| *expires > now);
        signed_out.insert(session.nonce, session.expires_at);
    }

    /// A fresh random nonce.
    pub fn nonce() -> [u8; NONCE_BYTES] {
        rand::random()
    }

    /// How long `address` must wait before trying again, or `None` when it may try now.
    pub fn wait_before_trying(&self, address: Option<IpAddr>, now: u64) -> Option<u64> {
        self.throttle.lock().unwrap_or_else(PoisonError::into_inner).wait_before_trying(address, now)
    }

    /// Counts a wrong token from `address`.
    pub fn wrong_token(&self, address: Option<IpAddr>, now: u64) {
        self.throttle.lock().unwrap_or_else(PoisonError::into_inner).wrong_token(address, now);
    }
}

/// Wrong tokens per client address in a sliding window. Addresses unknown to hyper (none here
/// today) share one entry.
#[derive(Default)]
pub struct LoginThrottle {
    tries: HashMap<Option<IpAddr>, VecDeque<u64>>,
    /// Addresses in the order they first failed, to forget the oldest when full.
    order: VecDeque<Option<IpAddr>>,
}

impl LoginThrottle {
    pub fn wait_before_trying(&mut self, address: Option<IpAddr>, now: u64) -> Option<u64> {
        let tries = self.tries.get_mut(&address)?;
        while tries.front().is_some_and(|&at| at + THROTTLE_WINDOW_SECS <= now) {
            tries.pop_front();
        }
        if tries.len() < MAX_WRONG_TOKENS {
            return None;
        }
        tries.front().map(|&oldest| (oldest + THROTTLE_WINDOW_SECS).saturating_sub(now).max(1))
    }

    pub fn wrong_token(&mut self, address: Option<IpAddr>, now: u64) {
        if !self.tries.contains_key(&address) {
            if self.order.len() >= THROTTLE_ADDRESSES
                && let Some(oldest) = self.order.pop_front()
            {
                self.tries.remove(&oldest);
            }
            self.order.push_back(address);
        }
        let tries = self.tries.entry(address).or_default();
        tries.push_back(now);
        while tries.len() > MAX_WRONG_TOKENS {
            tries.pop_front();
        }
    }
}

// ---- The HTTP side: who is asking, and the `/api/session` route. ----

/// How a request proved it may use the API.
#[derive(Debug)]
pub enum Auth {
    /// `Authorization: Bearer <api.token>`.
    Bearer,
    /// The inbox's session cookie.
    Cookie(Session),
}

fn now_secs() -> u64 {
    u64::try_from(Timestamp::now().as_millis() / 1000).unwrap_or(0)
}

fn bearer<B>(request: &Request<B>) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
}

fn presented_cookie<B>(request: &Request<B>) -> Option<&str> {
    request.headers().get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(cookie_value)
}

/// The bearer token, else the session cookie. An empty configured token matches nothing: the
/// API refuses every call (CONTRACT.md). The error says why a cookie was refused, if one came.
pub fn authenticate<B>(state: &HttpState, request: &Request<B>) -> Result<Auth, Option<SessionError>> {
    let config = state.config();
    let token = &config.api.token;
    if let Some(presented) = bearer(request) {
        return if token.matches(presented) { Ok(Auth::Bearer) } else { Err(None) };
    }
    match presented_cookie(request) {
        Some(value) => state.sessions.check(token, value, now_secs()).map(Auth::Cookie).map_err(Some),
        None => Err(None),
    }
}

/// 401; a refused cookie is also removed from the browser.
pub fn unauthorized(cookie_refused: Option<&SessionError>) -> Response<Body> {
    let message = match cookie_refused {
        Some(why) => format!("{why}; sign in again"),
        None => "a valid bearer token or session cookie is required".to_owned(),
    };
    let mut answer = response::error(StatusCode::UNAUTHORIZED, "unauthorized", &message);
    let headers = answer.headers_mut();
    headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    if cookie_refused.is_some()
        && let Ok(value) = HeaderValue::from_str(&clear_cookie())
    {
        headers.insert(header::SET_COOKIE, value);
    }
    answer
}

/// A cookie-authenticated change must come from the inbox's own origin. `SameSite=Strict` keeps
/// the cookie off other sites' requests and a JSON content type is required of every `POST`
/// (which a plain form cannot send); this also refuses other origins on the same site (another
/// port of the same host), by the browser's `Origin` and `Sec-Fetch-Site` headers.
pub fn same_origin<B>(request: &Request<B>) -> Result<(), Response<Body>> {
    let headers = request.headers();
    let refuse = |what: &str| {
        Err(response::error(
            StatusCode::FORBIDDEN,
            "cross_origin",
            &format!("{what}: changes signed in by cookie are accepted only from the inbox's own pages"),
        ))
    };
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return refuse("the request came from another site or origin");
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
        let origin = origin.to_str().unwrap_or("");
        let own = !host.is_empty() && (origin == format!("http://{host}") || origin == format!("https://{host}"));
        if !own {
            return refuse("the request's Origin is not this server");
        }
    }
    Ok(())
}

/// The body of `POST /api/session`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    token: String,
}

/// `/api/session`: `POST` signs in, `GET` tells, `DELETE` signs out.
pub async fn route(state: &HttpState, request: Request<hyper::body::Incoming>) -> Response<Body> {
    match *request.method() {
        Method::POST => sign_in(state, request).await,
        Method::GET => match authenticate(state, &request) {
            Ok(Auth::Bearer) => {
                response::json(StatusCode::OK, &json!({ "session": { "expires_at": null, "via": "bearer" } }))
            }
            Ok(Auth::Cookie(session)) => response::json(
                StatusCode::OK,
                &json!({ "session": { "expires_at": expires_at(&session), "via": "cookie" } }),
            ),
            Err(why) => unauthorized(why.as_ref()),
        },
        Method::DELETE => {
            if let Err(answer) = same_origin(&request) {
                return answer;
            }
            if let Ok(Auth::Cookie(session)) = authenticate(state, &request) {
                state.sessions.sign_out(&session, now_secs());
            }
            let mut answer = response::empty_ok();
            *answer.status_mut() = StatusCode::NO_CONTENT;
            if let Ok(value) = HeaderValue::from_str(&clear_cookie()) {
                answer.headers_mut().insert(header::SET_COOKIE, value);
            }
            answer
        }
        _ => response::method_not_allowed("GET, POST, DELETE"),
    }
}

fn expires_at(session: &Session) -> Timestamp {
    Timestamp::from_secs(i64::try_from(session.expires_at).unwrap_or(i64::MAX / 1000))
}

async fn sign_in(state: &HttpState, request: Request<hyper::body::Incoming>) -> Response<Body> {
    if let Err(answer) = same_origin(&request) {
        return answer;
    }
    let address = request.extensions().get::<Peer>().map(|peer| peer.0.ip());
    let now = now_secs();
    if let Some(wait) = state.sessions.wait_before_trying(address, now) {
        let mut answer = response::error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            &format!("too many wrong tokens from this address; try again in {wait} s"),
        );
        answer.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return answer;
    }
    let body: SignIn = match super::api::read_json(state, request).await {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    let config = state.config();
    if !config.api.token.matches(&body.token) {
        state.sessions.wrong_token(address, now);
        tracing::info!(message = "Inbox sign-in refused: wrong token.", client = ?address);
        let message = if config.api.token.is_empty() {
            "the API refuses every call: api.token is not set in the configuration"
        } else {
            "that is not the API token"
        };
        return response::error(StatusCode::UNAUTHORIZED, "wrong_token", message);
    }
    let lifetime = config.api.session_hours.saturating_mul(3600);
    let session = Session { expires_at: now.saturating_add(lifetime), nonce: Sessions::nonce() };
    let value = issue(&config.api.token, session.expires_at, session.nonce);
    let mut answer = response::json(StatusCode::OK, &json!({ "session": { "expires_at": expires_at(&session) } }));
    if let Ok(cookie) = HeaderValue::from_str(&set_cookie(&value, lifetime)) {
        answer.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    answer.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    tracing::info!(message = "Inbox signed in.", client = ?address, hours = config.api.session_hours);
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Secret {
        Secret::new("dev-only-api-token")
    }

    #[test]
    fn an_issued_session_checks_out_until_it_expires() {
        let value = issue(&token(), 2_000, [7; 16]);
        assert!(value.starts_with("v1.2000."), "{value}");
        let session = verify(&token(), &value, 1_999).expect("valid");
        assert_eq!(session.expires_at, 2_000);
        assert_eq!(verify(&token(), &value, 2_000), Err(SessionError::Expired));
    }

    #[test]
    fn a_changed_token_or_a_changed_field_breaks_the_signature() {
        let value = issue(&token(), 2_000, [7; 16]);
        assert_eq!(verify(&Secret::new("another-token"), &value, 1_000), Err(SessionError::BadSignature));
        let later = value.replacen("v1.2000.", "v1.9000.", 1);
        assert_eq!(verify(&token(), &later, 1_000), Err(SessionError::BadSignature));
        let mut flipped = value.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == '0' { '1' } else { '0' });
        assert_eq!(verify(&token(), &flipped, 1_000), Err(SessionError::BadSignature));
        assert_eq!(verify(&Secret::new(""), &value, 1_000), Err(SessionError::NoToken));
    }

    #[test]
    fn malformed_values_are_refused_without_panicking() {
        let good = issue(&token(), 2_000, [7; 16]);
        for bad in [
            "",
            "v1",
            "v1.2000",
            "v2.2000.07070707070707070707070707070707.00",
            "v1.-5.07070707070707070707070707070707.00",
            "v1.+5.07070707070707070707070707070707.00",
            "v1.99999999999999999999999.07070707070707070707070707070707.00",
            "v1.2000.zz070707070707070707070707070707.00",
            "v1.2000.0707.00",
            "v1.2000.ééééééééééééééééé.00",
            &format!("{good}.extra"),
        ] {
            assert_eq!(verify(&token(), bad, 1_000), Err(SessionError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn signing_out_refuses_that_session_only() {
        let sessions = Sessions::default();
        let one = issue(&token(), 2_000, [1; 16]);
        let two = issue(&token(), 2_000, [2; 16]);
        let session = sessions.check(&token(), &one, 1_000).unwrap();
        sessions.sign_out(&session, 1_000);
        assert_eq!(sessions.check(&token(), &one, 1_000), Err(SessionError::SignedOut));
        assert!(sessions.check(&token(), &two, 1_000).is_ok());
    }

    #[test]
    fn the_cookie_is_found_among_others_and_is_http_only_and_strict() {
        assert_eq!(cookie_value("a=1; parley_session=v1.x; b=2"), Some("v1.x"));
        assert_eq!(cookie_value("parley_session_old=zz"), None);
        assert_eq!(cookie_value(""), None);
        let set = set_cookie("v1.x", 3600);
        for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=3600"] {
            assert!(set.contains(part), "{set}");
        }
        assert!(clear_cookie().contains("Max-Age=0"));
    }

    #[test]
    fn wrong_tokens_are_throttled_per_address_in_a_sliding_window() {
        let mut throttle = LoginThrottle::default();
        let a: Option<IpAddr> = Some("127.0.0.1".parse().unwrap());
        let b: Option<IpAddr> = Some("127.0.0.2".parse().unwrap());
        for i in 0..MAX_WRONG_TOKENS as u64 {
            assert_eq!(throttle.wait_before_trying(a, 100 + i), None);
            throttle.wrong_token(a, 100 + i);
        }
        // The first try (at 100) ages out at 100 + window.
        assert_eq!(throttle.wait_before_trying(a, 110), Some(100 + THROTTLE_WINDOW_SECS - 110));
        assert_eq!(throttle.wait_before_trying(b, 110), None, "another address is not held back");
        assert_eq!(throttle.wait_before_trying(a, 100 + THROTTLE_WINDOW_SECS), None);
    }

    #[test]
    fn the_throttle_forgets_the_oldest_address_when_full() {
        let mut throttle = LoginThrottle::default();
        for i in 0..(THROTTLE_ADDRESSES as u32 + 10) {
            throttle.wrong_token(Some(IpAddr::from(i.to_be_bytes())), 1);
        }
        assert_eq!(throttle.tries.len(), THROTTLE_ADDRESSES);
        assert_eq!(throttle.order.len(), THROTTLE_ADDRESSES);
    }
}

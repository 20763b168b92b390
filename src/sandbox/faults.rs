//! Faults injected through `POST /_sandbox/faults`: the next N send requests of a platform (or,
//! with `"endpoint": "profile"`, Messenger's user profile lookups) fail in a chosen way, so the
//! daemon's retry, back-off and token handling can be tested on purpose.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::Deserialize;

use crate::model::Platform;

/// How a faulted send request fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The platform's throttle answer, with `Retry-After: 1` where HTTP allows.
    RateLimit,
    /// HTTP 500 (Graph: code 2, temporarily unavailable).
    ServerError,
    /// Answer normally, but only after `delay_ms`.
    Slow,
    /// Close the connection without answering.
    Drop,
    /// The platform's expired or revoked token answer.
    ExpiredToken,
    /// A permanent refusal (outside the window, not subscribed, no permission).
    Permanent,
}

impl FaultKind {
    /// The name used in the control API and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::RateLimit => "rate_limit",
            FaultKind::ServerError => "server_error",
            FaultKind::Slow => "slow",
            FaultKind::Drop => "drop",
            FaultKind::ExpiredToken => "expired_token",
            FaultKind::Permanent => "permanent",
        }
    }
}

/// Which requests of a platform a fault applies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultEndpoint {
    /// Send requests (the default).
    #[default]
    Send,
    /// Messenger's user profile lookups (`GET /{version}/{psid}?fields=…`); Facebook only.
    Profile,
}

impl FaultEndpoint {
    /// The name used in the control API and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultEndpoint::Send => "send",
            FaultEndpoint::Profile => "profile",
        }
    }
}

/// The body of `POST /_sandbox/faults`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    pub platform: Platform,
    pub kind: FaultKind,
    /// How many send requests to fault; default 1.
    #[serde(default = "one")]
    pub count: u32,
    /// For `slow`: how long to wait before answering; default 1000 ms.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Which of the platform's requests to fault; default the sends.
    #[serde(default)]
    pub endpoint: FaultEndpoint,
}

fn one() -> u32 {
    1
}

/// The longest `slow` delay accepted: longer would only hang a test.
pub const MAX_DELAY_MS: u64 = 120_000;

/// The most faults one platform may have queued; a control call beyond it is refused.
pub const MAX_QUEUED: u32 = 100_000;

/// One fault about to be applied to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    /// Only for `slow`.
    pub delay: Duration,
}

#[derive(Clone, Debug)]
struct Queued {
    fault: Fault,
    remaining: u32,
}

/// Pending faults per platform and endpoint, applied in the order they were posted.
#[derive(Debug, Default)]
pub struct FaultQueue {
    queues: HashMap<(Platform, FaultEndpoint), VecDeque<Queued>>,
}

impl FaultQueue {
    /// Queues a fault; refuses a count of 0, too long a delay, a queue past [`MAX_QUEUED`], or
    /// profile faults for a platform without profile lookups.
    pub fn push(&mut self, request: &FaultRequest) -> Result<(), String> {
        if request.endpoint == FaultEndpoint::Profile && request.platform != Platform::Facebook {
            return Err("`\"endpoint\": \"profile\"` is for facebook only (Messenger's user profile lookups)".into());
        }
        if request.count == 0 {
            return Err("`count` must be at least 1".into());
        }
        let delay_ms = request.delay_ms.unwrap_or(1000);
        if delay_ms > MAX_DELAY_MS {
            return Err(format!("`delay_ms` must be at most {MAX_DELAY_MS}"));
        }
        if self.pending(request.platform).saturating_add(request.count) > MAX_QUEUED {
            return Err(format!("at most {MAX_QUEUED} faults may be queued per platform"));
        }
        let fault = Fault { kind: request.kind, delay: Duration::from_millis(delay_ms) };
        self.queues
            .entry((request.platform, request.endpoint))
            .or_default()
            .push_back(Queued { fault, remaining: request.count });
        Ok(())
    }

    /// The fault for the next request of `platform` to `endpoint`, if any, counting it down.
    pub fn take(&mut self, platform: Platform, endpoint: FaultEndpoint) -> Option<Fault> {
        let queue = self.queues.get_mut(&(platform, endpoint))?;
        let front = queue.front_mut()?;
        let fault = front.fault;
        front.remaining -= 1;
        if front.remaining == 0 {
            queue.pop_front();
        }
        Some(fault)
    }

    /// How many requests of `platform` (any endpoint) will still be faulted.
    pub fn pending(&self, platform: Platform) -> u32 {
        self.queues
            .iter()
            .filter(|((p, _), _)| *p == platform)
            .flat_map(|(_, queue)| queue.iter().map(|f| f.remaining))
            .fold(0u32, u32::saturating_add)
    }

    /// Drops every pending fault.
    pub fn clear(&mut self) {
        self.queues.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(platform: Platform, kind: FaultKind, count: u32) -> FaultRequest {
        FaultRequest { platform, kind, count, delay_ms: None, endpoint: FaultEndpoint::Send }
    }

    #[test]
    fn faults_apply_to_the_next_n_requests_in_order_then_stop() {
        let mut faults = FaultQueue::default();
        faults.push(&request(Platform::Viber, FaultKind::RateLimit, 2)).unwrap();
        faults.push(&request(Platform::Viber, FaultKind::Drop, 1)).unwrap();
        assert_eq!(faults.pending(Platform::Viber), 3);
        assert_eq!(faults.take(Platform::Facebook, FaultEndpoint::Send), None);
        assert_eq!(faults.take(Platform::Viber, FaultEndpoint::Send).map(|f| f.kind), Some(FaultKind::RateLimit));
        assert_eq!(faults.take(Platform::Viber, FaultEndpoint::Send).map(|f| f.kind), Some(FaultKind::RateLimit));
        assert_eq!(faults.take(Platform::Viber, FaultEndpoint::Send).map(|f| f.kind), Some(FaultKind::Drop));
        assert_eq!(faults.take(Platform::Viber, FaultEndpoint::Send), None);
        assert_eq!(faults.pending(Platform::Viber), 0);
    }

    #[test]
    fn slow_faults_carry_their_delay() {
        let mut faults = FaultQueue::default();
        faults
            .push(&FaultRequest {
                platform: Platform::Linkedin,
                kind: FaultKind::Slow,
                count: 1,
                delay_ms: Some(250),
                endpoint: FaultEndpoint::Send,
            })
            .unwrap();
        assert_eq!(faults.take(Platform::Linkedin, FaultEndpoint::Send).unwrap().delay, Duration::from_millis(250));
    }

    #[test]
    fn nonsense_requests_are_refused() {
        let mut faults = FaultQueue::default();
        assert!(faults.push(&request(Platform::Whatsapp, FaultKind::Permanent, 0)).is_err());
        let slow = FaultRequest {
            platform: Platform::Whatsapp,
            kind: FaultKind::Slow,
            count: 1,
            delay_ms: Some(MAX_DELAY_MS + 1),
            endpoint: FaultEndpoint::Send,
        };
        assert!(faults.push(&slow).is_err());
        assert!(faults.push(&request(Platform::Whatsapp, FaultKind::Permanent, MAX_QUEUED + 1)).is_err());
        assert_eq!(faults.pending(Platform::Whatsapp), 0);
    }

    #[test]
    fn profile_faults_wait_for_profile_lookups_and_leave_sends_alone() {
        let mut faults = FaultQueue::default();
        let profile =
            FaultRequest { endpoint: FaultEndpoint::Profile, ..request(Platform::Facebook, FaultKind::Permanent, 2) };
        faults.push(&profile).unwrap();
        faults.push(&request(Platform::Facebook, FaultKind::ServerError, 1)).unwrap();
        assert_eq!(faults.pending(Platform::Facebook), 3);
        assert_eq!(faults.take(Platform::Facebook, FaultEndpoint::Send).map(|f| f.kind), Some(FaultKind::ServerError));
        assert_eq!(faults.take(Platform::Facebook, FaultEndpoint::Send), None);
        assert_eq!(faults.take(Platform::Facebook, FaultEndpoint::Profile).map(|f| f.kind), Some(FaultKind::Permanent));
        assert_eq!(faults.pending(Platform::Facebook), 1);
        let elsewhere =
            FaultRequest { endpoint: FaultEndpoint::Profile, ..request(Platform::Viber, FaultKind::Drop, 1) };
        assert!(faults.push(&elsewhere).is_err(), "only Messenger has profile lookups");
        let parsed: FaultRequest =
            serde_json::from_str(r#"{"platform":"facebook","kind":"server_error","endpoint":"profile"}"#).unwrap();
        assert_eq!(parsed.endpoint, FaultEndpoint::Profile);
    }

    #[test]
    fn the_control_body_parses_with_defaults() {
        let parsed: FaultRequest = serde_json::from_str(r#"{"platform":"facebook","kind":"expired_token"}"#).unwrap();
        assert_eq!(parsed, request(Platform::Facebook, FaultKind::ExpiredToken, 1));
        assert!(serde_json::from_str::<FaultRequest>(r#"{"platform":"telegram","kind":"drop"}"#).is_err());
        assert!(serde_json::from_str::<FaultRequest>(r#"{"platform":"viber","kind":"explode"}"#).is_err());
    }
}

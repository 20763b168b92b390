//! Delivery and read receipts posted back to the daemon after a successful send, signed as the
//! platform signs them. Posting never blocks answering sends: each send's receipts run in their
//! own task, and the number waiting is bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::core::ReceiptPlan;
use super::webhooks::{self, WhatsappNumber};
use crate::config::Config;
use crate::model::{Platform, Timestamp};
use crate::platform;

/// Receipts waiting to be posted, at most. Past it new ones are dropped and counted: a benchmark
/// that outruns the daemon must not grow the sandbox's memory without bound.
pub const MAX_PENDING: usize = 10_000;

/// Attempts per receipt when the daemon cannot be reached or answers 5xx/429.
const ATTEMPTS: u32 = 4;

/// First retry delay; doubles per attempt.
const FIRST_RETRY: Duration = Duration::from_millis(250);

/// Counters shown by `GET /_sandbox/health`.
#[derive(Debug, Default)]
pub struct ReceiptStats {
    pending: AtomicUsize,
    posted: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

impl ReceiptStats {
    /// The counters as JSON.
    pub fn snapshot(&self) -> Value {
        json!({
            "pending": self.pending.load(Ordering::Relaxed),
            "posted": self.posted.load(Ordering::Relaxed),
            "failed": self.failed.load(Ordering::Relaxed),
            "dropped": self.dropped.load(Ordering::Relaxed),
        })
    }
}

/// When to post what after a send.
#[derive(Clone, Copy, Debug)]
pub struct Delays {
    pub delivery: Duration,
    pub read: Duration,
}

/// One webhook of a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    MessengerDelivery,
    MessengerRead,
    WhatsappStatus(&'static str),
    ViberDelivered,
    ViberSeen,
    ViberWebhookCheck,
}

/// The webhooks of a plan, each with its delay after the send.
fn steps(plan: &ReceiptPlan, delays: Delays) -> Vec<(Duration, Step)> {
    match plan {
        ReceiptPlan::Messenger { .. } => {
            vec![(delays.delivery, Step::MessengerDelivery), (delays.read, Step::MessengerRead)]
        }
        ReceiptPlan::Whatsapp { .. } => vec![
            (delays.delivery / 2, Step::WhatsappStatus("sent")),
            (delays.delivery, Step::WhatsappStatus("delivered")),
            (delays.read, Step::WhatsappStatus("read")),
        ],
        ReceiptPlan::Viber { .. } => vec![(delays.delivery, Step::ViberDelivered), (delays.read, Step::ViberSeen)],
        ReceiptPlan::ViberWebhookCheck { .. } => vec![(Duration::ZERO, Step::ViberWebhookCheck)],
    }
}

/// The platform a plan's webhooks go to.
fn platform_of(plan: &ReceiptPlan) -> Platform {
    match plan {
        ReceiptPlan::Messenger { .. } => Platform::Facebook,
        ReceiptPlan::Whatsapp { .. } => Platform::Whatsapp,
        ReceiptPlan::Viber { .. } | ReceiptPlan::ViberWebhookCheck { .. } => Platform::Viber,
    }
}

/// The body of one step, stamped `now`.
fn body(config: &Config, plan: &ReceiptPlan, step: Step, now: Timestamp) -> String {
    let ms = now.as_millis();
    let page = config.facebook.page_id.as_str();
    let number = WhatsappNumber {
        business_account_id: &config.whatsapp.business_account_id,
        phone_number_id: &config.whatsapp.phone_number_id,
        display_phone_number: &config.whatsapp.phone_number,
    };
    match (plan, step) {
        (ReceiptPlan::Messenger { user, mid }, Step::MessengerDelivery) => {
            webhooks::messenger_delivery(page, user, &[mid.as_str()], ms, ms)
        }
        (ReceiptPlan::Messenger { user, .. }, _) => webhooks::messenger_read(page, user, ms, ms),
        (ReceiptPlan::Whatsapp { to, wamid }, Step::WhatsappStatus(status)) => {
            webhooks::whatsapp_status(&number, wamid, status, to, ms.div_euclid(1000))
        }
        (ReceiptPlan::Whatsapp { to, wamid }, _) => {
            webhooks::whatsapp_status(&number, wamid, "read", to, ms.div_euclid(1000))
        }
        (ReceiptPlan::Viber { user, message_token }, Step::ViberDelivered) => {
            webhooks::viber_delivered(*message_token, user, ms)
        }
        (ReceiptPlan::Viber { user, message_token }, _) => webhooks::viber_seen(*message_token, user, ms),
        (ReceiptPlan::ViberWebhookCheck { message_token }, _) => webhooks::viber_webhook_check(*message_token, ms),
    }
}

/// Posts receipts to the daemon.
pub struct ReceiptSender {
    config: Arc<Config>,
    /// `http://host:port` of the daemon, without a trailing slash.
    parley_url: String,
    client: reqwest::Client,
    delays: Delays,
    stats: Arc<ReceiptStats>,
}

impl ReceiptSender {
    /// A sender to the daemon at `parley_url`.
    pub fn new(config: Arc<Config>, parley_url: String, delays: Delays, stats: Arc<ReceiptStats>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("a client without TLS roots or proxies always builds");
        ReceiptSender { config, parley_url: parley_url.trim_end_matches('/').to_owned(), client, delays, stats }
    }

    /// Starts posting `plan`'s webhooks in a task of their own; drops them (counted) when too many
    /// are already waiting.
    pub fn schedule(self: &Arc<Self>, plan: ReceiptPlan) {
        let steps = steps(&plan, self.delays);
        let count = steps.len();
        let before = self.stats.pending.fetch_add(count, Ordering::Relaxed);
        if before + count > MAX_PENDING {
            self.stats.pending.fetch_sub(count, Ordering::Relaxed);
            let dropped = self.stats.dropped.fetch_add(count as u64, Ordering::Relaxed) + count as u64;
            if dropped.is_power_of_two() {
                tracing::warn!(message = "Receipts dropped: too many pending.", limit = MAX_PENDING, dropped);
            }
            return;
        }
        let sender = self.clone();
        let start = Instant::now();
        tokio::spawn(async move {
            for (delay, step) in steps {
                tokio::time::sleep_until(start + delay).await;
                let body = body(&sender.config, &plan, step, Timestamp::now());
                sender.post(platform_of(&plan), body).await;
                sender.stats.pending.fetch_sub(1, Ordering::Relaxed);
            }
        });
    }

    /// POSTs one signed webhook, retrying while the daemon is down or busy, then gives up (logged).
    async fn post(&self, platform: Platform, body: String) {
        let url = format!("{}/webhooks/{platform}", self.parley_url);
        let secret = self.config.signing_secret(platform);
        let signature = match platform {
            Platform::Facebook => platform::facebook::sign_webhook(secret, body.as_bytes()),
            Platform::Whatsapp => platform::whatsapp::sign_webhook(secret, body.as_bytes()),
            Platform::Viber => platform::viber::sign_webhook(secret, body.as_bytes()),
            Platform::Linkedin => platform::linkedin::sign_webhook(secret, body.as_bytes()),
        };
        let header = platform::signature_header(platform);
        let mut wait = FIRST_RETRY;
        for attempt in 1..=ATTEMPTS {
            let sent = self
                .client
                .post(&url)
                .header(header, &signature)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            let retryable = match sent {
                Ok(response) if response.status().is_success() => {
                    self.stats.posted.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(message = "Receipt posted.", %platform, attempt);
                    return;
                }
                Ok(response) => {
                    let status = response.status();
                    let retryable = status.is_server_error() || status.as_u16() == 429;
                    tracing::debug!(message = "Receipt refused.", %platform, status = status.as_u16(), attempt);
                    if !retryable {
                        self.stats.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(message = "Receipt refused by the daemon; not retried.", %platform, status = status.as_u16());
                        return;
                    }
                    true
                }
                Err(e) => {
                    tracing::debug!(message = "Receipt not delivered.", %platform, error = %e, attempt);
                    true
                }
            };
            if retryable && attempt < ATTEMPTS {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(message = "Receipt given up: the daemon did not take it.", %platform, url = %url, attempts = ATTEMPTS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_platform_gets_its_receipts_in_order() {
        let delays = Delays { delivery: Duration::from_millis(200), read: Duration::from_millis(600) };
        let messenger = ReceiptPlan::Messenger { user: "u".into(), mid: "m".into() };
        assert_eq!(
            steps(&messenger, delays).iter().map(|s| s.1).collect::<Vec<_>>(),
            vec![Step::MessengerDelivery, Step::MessengerRead]
        );
        let whatsapp = ReceiptPlan::Whatsapp { to: "1".into(), wamid: "w".into() };
        let timeline: Vec<(u128, Step)> = steps(&whatsapp, delays).iter().map(|(d, s)| (d.as_millis(), *s)).collect();
        assert_eq!(
            timeline,
            vec![
                (100, Step::WhatsappStatus("sent")),
                (200, Step::WhatsappStatus("delivered")),
                (600, Step::WhatsappStatus("read"))
            ]
        );
        let viber = ReceiptPlan::Viber { user: "u".into(), message_token: 1 };
        assert_eq!(steps(&viber, delays).len(), 2);
    }
}

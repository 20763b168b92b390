//! Counters for `/metrics`, kept by the HTTP front end (what it answered) in plain atomics.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::actor::ChannelStatus;
use crate::model::Platform;
use crate::store::StoreCounts;

/// How a webhook POST ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookResult {
    Stored,
    Quarantined,
    BadSignature,
    TooLarge,
    Unavailable,
}

impl WebhookResult {
    const ALL: [WebhookResult; 5] = [
        WebhookResult::Stored,
        WebhookResult::Quarantined,
        WebhookResult::BadSignature,
        WebhookResult::TooLarge,
        WebhookResult::Unavailable,
    ];

    fn label(self) -> &'static str {
        match self {
            WebhookResult::Stored => "stored",
            WebhookResult::Quarantined => "quarantined",
            WebhookResult::BadSignature => "bad_signature",
            WebhookResult::TooLarge => "too_large",
            WebhookResult::Unavailable => "unavailable",
        }
    }
}

/// Process-lifetime counters.
#[derive(Default)]
pub struct Metrics {
    webhooks: [[AtomicU64; 5]; 4],
    events_stored: [AtomicU64; 4],
    events_duplicate: [AtomicU64; 4],
    api_requests: AtomicU64,
}

fn platform_index(platform: Platform) -> usize {
    usize::from(platform.tag() - 1)
}

impl Metrics {
    /// Counts one webhook POST.
    pub fn webhook(&self, platform: Platform, result: WebhookResult) {
        let i = WebhookResult::ALL.iter().position(|r| *r == result).expect("every result is listed");
        self.webhooks[platform_index(platform)][i].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts events stored and duplicates skipped.
    pub fn events(&self, platform: Platform, stored: usize, duplicates: usize) {
        self.events_stored[platform_index(platform)].fetch_add(stored as u64, Ordering::Relaxed);
        self.events_duplicate[platform_index(platform)].fetch_add(duplicates as u64, Ordering::Relaxed);
    }

    /// Counts one operator API request.
    pub fn api_request(&self) {
        self.api_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(
        &self,
        store: Option<StoreCounts>,
        uptime_secs: u64,
        channels: &[(Platform, Option<ChannelStatus>)],
    ) -> String {
        let mut out = String::new();
        out.push_str("# HELP parley_webhooks_total Webhook POSTs by platform and result.\n# TYPE parley_webhooks_total counter\n");
        for platform in Platform::ALL {
            for (i, result) in WebhookResult::ALL.iter().enumerate() {
                let n = self.webhooks[platform_index(platform)][i].load(Ordering::Relaxed);
                let _ =
                    writeln!(out, "parley_webhooks_total{{platform=\"{platform}\",result=\"{}\"}} {n}", result.label());
            }
        }
        out.push_str("# HELP parley_events_total Events from webhooks by platform, stored or duplicate.\n# TYPE parley_events_total counter\n");
        for platform in Platform::ALL {
            let i = platform_index(platform);
            let stored = self.events_stored[i].load(Ordering::Relaxed);
            let duplicate = self.events_duplicate[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "parley_events_total{{platform=\"{platform}\",outcome=\"stored\"}} {stored}");
            let _ = writeln!(out, "parley_events_total{{platform=\"{platform}\",outcome=\"duplicate\"}} {duplicate}");
        }
        let api = self.api_requests.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP parley_api_requests_total Operator API requests.\n# TYPE parley_api_requests_total counter\nparley_api_requests_total {api}"
        );
        out.push_str("# HELP parley_channel_up 1 while the channel actor runs and its token works.\n# TYPE parley_channel_up gauge\n");
        for (platform, status) in channels {
            let up = status.as_ref().is_some_and(|s| s.ready);
            let _ = writeln!(out, "parley_channel_up{{platform=\"{platform}\"}} {}", u8::from(up));
        }
        type Read = fn(&ChannelStatus) -> Option<i64>;
        let per_channel: [(&str, &str, &str, Read); 6] = [
            ("parley_outbox_queued", "gauge", "Messages waiting to be sent.", |s| Some(s.queued as i64)),
            ("parley_outbox_in_flight", "gauge", "Send requests in flight.", |s| Some(s.in_flight as i64)),
            ("parley_messages_sent_total", "counter", "Messages the platform accepted since start.", |s| {
                Some(s.sent as i64)
            }),
            ("parley_messages_failed_total", "counter", "Messages failed for good since start.", |s| {
                Some(s.failed as i64)
            }),
            ("parley_send_retries_total", "counter", "Send attempts to be retried since start.", |s| {
                Some(s.retried as i64)
            }),
            (
                "parley_token_expires_in_seconds",
                "gauge",
                "Seconds until the token expires (absent: never, or unknown).",
                |s| s.token_expires_in_secs,
            ),
        ];
        for (name, kind, help, read) in per_channel {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (platform, status) in channels {
                if let Some(value) = status.as_ref().and_then(read) {
                    let _ = writeln!(out, "{name}{{platform=\"{platform}\"}} {value}");
                }
            }
        }
        if let Some(counts) = store {
            out.push_str("# HELP parley_store_records Records in the store.\n# TYPE parley_store_records gauge\n");
            let _ = writeln!(out, "parley_store_records{{tree=\"conversations\"}} {}", counts.conversations);
            let _ = writeln!(out, "parley_store_records{{tree=\"messages\"}} {}", counts.messages);
            let _ = writeln!(out, "parley_store_records{{tree=\"events\"}} {}", counts.events);
            let _ = writeln!(out, "parley_store_records{{tree=\"quarantine\"}} {}", counts.quarantined);
            let _ = writeln!(
                out,
                "# HELP parley_store_unreadable_records_total Stored records found undecodable since start (each logged once with its key; listings skip them).\n# TYPE parley_store_unreadable_records_total counter\nparley_store_unreadable_records_total {}",
                counts.unreadable
            );
        }
        let _ = writeln!(
            out,
            "# HELP parley_uptime_seconds Seconds since start.\n# TYPE parley_uptime_seconds gauge\nparley_uptime_seconds {uptime_secs}"
        );
        out
    }
}

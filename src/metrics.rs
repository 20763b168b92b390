//! The daemon's own metrics: one process-wide registry that the HTTP front end, the actors and the
//! store report into as things happen, encoded in the Prometheus text format at `/metrics` (with
//! the gauges that are read at scrape time, see `http/metrics.rs`).
//!
//! One registry for the process, like Prometheus clients' default registry: metrics are counted
//! where the event happens (a restart in the supervisor, a send in its request task, a shed
//! connection in the accept loop) without threading a handle through every actor's arguments.
//! Tests that read values run one per process under nextest.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::model::Platform;

/// Latency buckets in seconds, 0.5 ms to 20 s: webhook answers are a few ms (a flush), send
/// requests tens to hundreds of ms; the top buckets catch stalls and timeouts.
const LATENCY_BUCKETS: [f64; 16] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0];

/// How a webhook POST ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WebhookResult {
    Stored,
    Quarantined,
    BadSignature,
    TooLarge,
    Unavailable,
}

impl WebhookResult {
    /// Every result, for a zero line per label before the first webhook.
    pub const ALL: [WebhookResult; 5] = [
        WebhookResult::Stored,
        WebhookResult::Quarantined,
        WebhookResult::BadSignature,
        WebhookResult::TooLarge,
        WebhookResult::Unavailable,
    ];

    /// The `result` label.
    pub const fn label(self) -> &'static str {
        match self {
            WebhookResult::Stored => "stored",
            WebhookResult::Quarantined => "quarantined",
            WebhookResult::BadSignature => "bad_signature",
            WebhookResult::TooLarge => "too_large",
            WebhookResult::Unavailable => "unavailable",
        }
    }
}

/// `{platform}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlatformLabel {
    pub platform: &'static str,
}

/// `{platform, result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub platform: &'static str,
    pub result: &'static str,
}

/// `{platform, outcome}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub platform: &'static str,
    pub outcome: &'static str,
}

/// `{actor}`: `conversation` or `channel.{platform}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActorLabel {
    pub actor: String,
}

/// Makes histograms with [`LATENCY_BUCKETS`] inside a family.
#[derive(Clone, Copy, Debug, Default)]
pub struct LatencyHistogram;

impl MetricConstructor<Histogram> for LatencyHistogram {
    fn new_metric(&self) -> Histogram {
        Histogram::new(LATENCY_BUCKETS)
    }
}

/// Every metric counted as it happens.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    webhooks: Family<WebhookLabels, Counter>,
    events: Family<EventLabels, Counter>,
    api_requests: Counter,
    webhook_seconds: Family<PlatformLabel, Histogram, LatencyHistogram>,
    send_request_seconds: Family<PlatformLabel, Histogram, LatencyHistogram>,
    actor_restarts: Family<ActorLabel, Counter>,
    store_checkpoint_seconds: Histogram,
    store_records_since_checkpoint: Gauge,
    store_unreadable_records: Counter,
    feed_clients: Gauge,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let webhooks = Family::<WebhookLabels, Counter>::default();
        registry.register("parley_webhooks", "Webhook POSTs by platform and result", webhooks.clone());
        let events = Family::<EventLabels, Counter>::default();
        registry.register("parley_events", "Events from webhooks by platform, stored or duplicate", events.clone());
        let api_requests = Counter::default();
        registry.register("parley_api_requests", "Operator API requests", api_requests.clone());
        let webhook_seconds = Family::new_with_constructor(LatencyHistogram);
        registry.register_with_unit(
            "parley_webhook",
            "Time from a webhook's request head to its answer (200 only after the durable write), by platform",
            Unit::Seconds,
            webhook_seconds.clone(),
        );
        let send_request_seconds = Family::new_with_constructor(LatencyHistogram);
        registry.register_with_unit(
            "parley_send_request",
            "Duration of each send request to a platform API, retries counted one by one",
            Unit::Seconds,
            send_request_seconds.clone(),
        );
        let actor_restarts = Family::<ActorLabel, Counter>::default();
        registry.register(
            "parley_actor_restarts",
            "Actors restarted by the supervisor after a failure",
            actor_restarts.clone(),
        );
        let store_checkpoint_seconds = Histogram::new(LATENCY_BUCKETS);
        registry.register_with_unit(
            "parley_store_checkpoint",
            "Store checkpoints while running (closed and opened again so that sled writes its snapshot), by duration",
            Unit::Seconds,
            store_checkpoint_seconds.clone(),
        );
        let store_records_since_checkpoint = Gauge::default();
        registry.register(
            "parley_store_records_since_checkpoint",
            "Records written since the store was last opened: what a start now would replay (about 1.4 µs each)",
            store_records_since_checkpoint.clone(),
        );
        let store_unreadable_records = Counter::default();
        registry.register(
            "parley_store_unreadable_records",
            "Stored records found undecodable since start (each logged once with its key; listings skip them)",
            store_unreadable_records.clone(),
        );
        let feed_clients = Gauge::default();
        registry.register(
            "parley_feed_clients",
            "Server-sent event streams of GET /api/events open now",
            feed_clients.clone(),
        );
        let metrics = Metrics {
            registry,
            webhooks,
            events,
            api_requests,
            webhook_seconds,
            send_request_seconds,
            actor_restarts,
            store_checkpoint_seconds,
            store_records_since_checkpoint,
            store_unreadable_records,
            feed_clients,
        };
        // Every series that alerting rules name exists from the start, at zero.
        for platform in Platform::ALL {
            for result in WebhookResult::ALL {
                drop(
                    metrics
                        .webhooks
                        .get_or_create(&WebhookLabels { platform: platform.as_str(), result: result.label() }),
                );
            }
            let label = PlatformLabel { platform: platform.as_str() };
            drop(metrics.webhook_seconds.get_or_create(&label));
            drop(metrics.send_request_seconds.get_or_create(&label));
            for outcome in ["stored", "duplicate"] {
                drop(metrics.events.get_or_create(&EventLabels { platform: platform.as_str(), outcome }));
            }
        }
        metrics
    }

    /// A live feed stream opened (`1`) or closed (`-1`).
    pub fn feed_client(&self, delta: i64) {
        self.feed_clients.inc_by(delta);
    }

    /// Counts one webhook POST by how it ended.
    pub fn webhook(&self, platform: Platform, result: WebhookResult) {
        self.webhooks.get_or_create(&WebhookLabels { platform: platform.as_str(), result: result.label() }).inc();
    }

    /// Records how long a webhook POST took from its request head to its answer.
    pub fn webhook_answered(&self, platform: Platform, took: Duration) {
        self.webhook_seconds.get_or_create(&PlatformLabel { platform: platform.as_str() }).observe(took.as_secs_f64());
    }

    /// Counts events stored and duplicates skipped.
    pub fn events(&self, platform: Platform, stored: usize, duplicates: usize) {
        let count = |outcome, n: usize| {
            self.events.get_or_create(&EventLabels { platform: platform.as_str(), outcome }).inc_by(n as u64);
        };
        count("stored", stored);
        count("duplicate", duplicates);
    }

    /// Counts one operator API request.
    pub fn api_request(&self) {
        self.api_requests.inc();
    }

    /// Records one send request's duration.
    pub fn send_request(&self, platform: Platform, took: Duration) {
        self.send_request_seconds
            .get_or_create(&PlatformLabel { platform: platform.as_str() })
            .observe(took.as_secs_f64());
    }

    /// Counts one restart of `actor` by the supervisor.
    pub fn actor_restarted(&self, actor: &str) {
        self.actor_restarts.get_or_create(&ActorLabel { actor: actor.to_owned() }).inc();
    }

    /// Records one checkpoint of the store and how long it took.
    pub fn store_checkpointed(&self, took: Duration) {
        self.store_checkpoint_seconds.observe(took.as_secs_f64());
        self.store_records_since_checkpoint.set(0);
    }

    /// Counts one stored record found undecodable (the store reports each key once).
    pub fn store_unreadable_record(&self) {
        self.store_unreadable_records.inc();
    }

    /// Records written since the store was opened.
    pub fn records_since_checkpoint(&self, records: u64) {
        self.store_records_since_checkpoint.set(i64::try_from(records).unwrap_or(i64::MAX));
    }

    /// A webhook result's count so far (for tests and the status line).
    pub fn webhook_count(&self, platform: Platform, result: WebhookResult) -> u64 {
        self.webhooks.get_or_create(&WebhookLabels { platform: platform.as_str(), result: result.label() }).get()
    }

    /// Appends every metric of this registry in the Prometheus text format (0.0.4).
    pub fn encode(&self, out: &mut String) -> std::fmt::Result {
        prometheus_client::encoding::prometheus_text::encode(out, &self.registry)
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// A registry for values read at scrape time (gauges of actor state, counters an actor keeps):
/// made per scrape, encoded after the process registry.
pub fn scrape_registry() -> Registry {
    Registry::default()
}

/// A gauge family to fill at scrape time.
pub fn gauge_family<L>(registry: &mut Registry, name: &str, help: &str) -> Family<L, Gauge>
where
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
{
    let family = Family::<L, Gauge>::default();
    registry.register(name, help, family.clone());
    family
}

/// A counter family to fill at scrape time from a count kept elsewhere (registered without the
/// `_total` suffix, which encoding adds).
pub fn counter_family<L>(registry: &mut Registry, name: &str, help: &str) -> Family<L, Counter>
where
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
{
    let family = Family::<L, Counter>::default();
    registry.register(name, help, family.clone());
    family
}

/// Encodes a scrape registry after the process one.
pub fn encode_scrape(registry: &Registry, out: &mut String) -> std::fmt::Result {
    prometheus_client::encoding::prometheus_text::encode(out, registry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_encode_under_their_contract_names() {
        let metrics = Metrics::new();
        metrics.webhook(Platform::Whatsapp, WebhookResult::Stored);
        metrics.webhook_answered(Platform::Whatsapp, Duration::from_millis(3));
        metrics.events(Platform::Whatsapp, 2, 1);
        metrics.send_request(Platform::Facebook, Duration::from_millis(40));
        metrics.actor_restarted("conversation");
        let mut text = String::new();
        metrics.encode(&mut text).unwrap();
        for line in [
            "parley_webhooks_total{platform=\"whatsapp\",result=\"stored\"} 1",
            "parley_webhooks_total{platform=\"viber\",result=\"bad_signature\"} 0",
            "parley_events_total{platform=\"whatsapp\",outcome=\"stored\"} 2",
            "parley_events_total{platform=\"whatsapp\",outcome=\"duplicate\"} 1",
            "parley_webhook_seconds_bucket{platform=\"whatsapp\",le=\"0.005\"} 1",
            "parley_webhook_seconds_bucket{platform=\"whatsapp\",le=\"0.0025\"} 0",
            "parley_webhook_seconds_count{platform=\"whatsapp\"} 1",
            "parley_webhook_seconds_count{platform=\"viber\"} 0",
            "parley_send_request_seconds_bucket{platform=\"facebook\",le=\"0.05\"} 1",
            "parley_actor_restarts_total{actor=\"conversation\"} 1",
            "# TYPE parley_webhook_seconds histogram",
            "# TYPE parley_api_requests_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
        }
    }

    #[test]
    fn scrape_time_families_encode_gauges_and_counters() {
        let mut registry = scrape_registry();
        let up = gauge_family::<PlatformLabel>(&mut registry, "parley_channel_up", "help");
        let sent = counter_family::<PlatformLabel>(&mut registry, "parley_messages_sent", "help");
        up.get_or_create(&PlatformLabel { platform: "viber" }).set(1);
        sent.get_or_create(&PlatformLabel { platform: "viber" }).inc_by(600);
        let mut text = String::new();
        encode_scrape(&registry, &mut text).unwrap();
        assert!(text.contains("parley_channel_up{platform=\"viber\"} 1\n"), "{text}");
        assert!(text.contains("parley_messages_sent_total{platform=\"viber\"} 600\n"), "{text}");
        assert!(text.contains("# TYPE parley_channel_up gauge\n"), "{text}");
    }
}

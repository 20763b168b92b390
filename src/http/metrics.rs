//! `/metrics`: the process's metrics (`crate::metrics`), then what is read at scrape time: each
//! channel's state and counts, the store's health and record counts, the uptime.

use prometheus_client::encoding::EncodeLabelSet;

use super::connections::ConnectionTotals;
use crate::actor::{ChannelStatus, StoreAvailability, StoreStatus};
use crate::metrics::{Metrics, PlatformLabel, counter_family, encode_scrape, gauge_family, scrape_registry};
use crate::model::Platform;
use crate::store::WriteProblem;

/// `{tree}` of `parley_store_records`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TreeLabel {
    tree: &'static str,
}

/// `{kind}` of the store's write failures: `full` or `not_writable`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// The Prometheus text exposition (0.0.4).
pub fn render(
    metrics: &Metrics,
    store: Option<&StoreStatus>,
    connections: &ConnectionTotals,
    uptime_secs: u64,
    channels: &[(Platform, Option<ChannelStatus>)],
) -> String {
    let mut registry = scrape_registry();
    connection_metrics(&mut registry, connections);
    let up = gauge_family::<PlatformLabel>(
        &mut registry,
        "parley_channel_up",
        "1 while the channel actor runs and its token works",
    );
    let queued = gauge_family::<PlatformLabel>(&mut registry, "parley_outbox_queued", "Messages waiting to be sent");
    let in_flight = gauge_family::<PlatformLabel>(&mut registry, "parley_outbox_in_flight", "Send requests in flight");
    let sent = counter_family::<PlatformLabel>(
        &mut registry,
        "parley_messages_sent",
        "Messages the platform accepted since start",
    );
    let failed = counter_family::<PlatformLabel>(
        &mut registry,
        "parley_messages_failed",
        "Messages failed for good since start",
    );
    let retried = counter_family::<PlatformLabel>(
        &mut registry,
        "parley_send_retries",
        "Send attempts to be retried since start",
    );
    let expires = gauge_family::<PlatformLabel>(
        &mut registry,
        "parley_token_expires_in_seconds",
        "Seconds until the token expires (absent: never, or unknown)",
    );
    for (platform, status) in channels {
        let label = PlatformLabel { platform: platform.as_str() };
        up.get_or_create(&label).set(i64::from(status.as_ref().is_some_and(|s| s.ready)));
        let Some(status) = status else { continue };
        queued.get_or_create(&label).set(status.queued as i64);
        in_flight.get_or_create(&label).set(status.in_flight as i64);
        sent.get_or_create(&label).inc_by(status.sent);
        failed.get_or_create(&label).inc_by(status.failed);
        retried.get_or_create(&label).inc_by(status.retried);
        if let Some(secs) = status.token_expires_in_secs {
            expires.get_or_create(&label).set(secs);
        }
    }
    store_health(&mut registry, store);
    if let Some(counts) = store.and_then(|s| s.counts) {
        let records = gauge_family::<TreeLabel>(&mut registry, "parley_store_records", "Records in the store");
        for (tree, n) in [
            ("conversations", counts.conversations),
            ("messages", counts.messages),
            ("events", counts.events),
            ("quarantine", counts.quarantined),
        ] {
            records.get_or_create(&TreeLabel { tree }).set(n as i64);
        }
    }
    let uptime = prometheus_client::metrics::gauge::Gauge::<i64>::default();
    uptime.set(i64::try_from(uptime_secs).unwrap_or(i64::MAX));
    registry.register("parley_uptime_seconds", "Seconds since start", uptime);

    let mut out = String::new();
    // Writing into a String cannot fail; an encoding error would be a bug in a label.
    if let Err(e) = metrics.encode(&mut out).and_then(|()| encode_scrape(&registry, &mut out)) {
        tracing::error!(message = "Metrics did not encode.", error = %e);
    }
    out
}

/// `{reason}` of shed connections, `{timeout}` of timed-out ones.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TimeoutLabel {
    timeout: &'static str,
}

/// The accept loop's counts (`connections.rs`).
fn connection_metrics(registry: &mut prometheus_client::registry::Registry, c: &ConnectionTotals) {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;
    let gauge = |value: u64| {
        let gauge = Gauge::<i64>::default();
        gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        gauge
    };
    registry.register(
        "parley_connections_open",
        "Connections open now (serving a request or waiting for one)",
        gauge(c.open),
    );
    registry.register(
        "parley_connections_max",
        "At this many open connections each new one closes the longest-waiting one (server.max_connections)",
        gauge(c.max),
    );
    let accepted = Counter::<u64>::default();
    accepted.inc_by(c.accepted);
    registry.register("parley_connections_accepted", "Connections accepted since start", accepted);
    let shed = counter_family::<ReasonLabel>(
        registry,
        "parley_connections_shed",
        "Connections closed at server.max_connections to make room for a new one, by what they were doing \
         (idle: kept alive, no next request yet; slow_headers: request headers not complete), and new ones turned \
         away because every connection was serving a request (at_cap)",
    );
    for (reason, n) in [("idle", c.shed_idle), ("slow_headers", c.shed_slow_headers), ("at_cap", c.refused_at_cap)] {
        shed.get_or_create(&ReasonLabel { reason }).inc_by(n);
    }
    let timed_out = counter_family::<TimeoutLabel>(
        registry,
        "parley_connections_timed_out",
        "Connections closed by server.header_read_timeout_secs (header) or server.idle_timeout_secs (idle)",
    );
    for (timeout, n) in [("header", c.timed_out_header), ("idle", c.timed_out_idle)] {
        timed_out.get_or_create(&TimeoutLabel { timeout }).inc_by(n);
    }
}

/// Whether the store takes writes, its failed writes and its outages (kept by the conversation
/// actor across its restarts).
fn store_health(registry: &mut prometheus_client::registry::Registry, store: Option<&StoreStatus>) {
    let writable = prometheus_client::metrics::gauge::Gauge::<i64>::default();
    writable.set(i64::from(store.is_some_and(|s| s.availability == StoreAvailability::Up)));
    registry.register(
        "parley_store_writable",
        "1 while the store takes writes, 0 while it refuses them (disk full, read-only, failing) or is down",
        writable,
    );
    let Some(store) = store else { return };
    let errors = counter_family::<KindLabel>(
        registry,
        "parley_store_write_errors",
        "Store writes and flushes that failed, by kind",
    );
    let outages = counter_family::<KindLabel>(
        registry,
        "parley_store_not_writable",
        "Times the store stopped taking writes (kind=\"full\": the disk filled up), by kind",
    );
    for (i, problem) in WriteProblem::ALL.iter().enumerate() {
        let label = KindLabel { kind: problem.label() };
        errors.get_or_create(&label).inc_by(store.write_errors[i]);
        outages.get_or_create(&label).inc_by(store.outages[i]);
    }
}

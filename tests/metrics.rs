//! `/metrics` carries what an operator alerts on: latency histograms for webhook answers and send
//! requests next to the counters, in the Prometheus text format.

mod support;

use std::time::{Duration, Instant};

use support::*;

async fn scrape(client: &reqwest::Client, daemon: &Daemon) -> String {
    let response = client.get(daemon.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    response.text().await.unwrap()
}

fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn webhook_answers_and_send_requests_are_timed_in_histograms() {
    let daemon = Daemon::start();
    let client = client();
    let before = scrape(&client, &daemon).await;
    assert!(before.contains("# TYPE parley_webhook_seconds histogram"), "{before}");
    assert!(before.contains("parley_webhooks_total{platform=\"viber\",result=\"stored\"} 0"), "{before}");

    for i in 0..3 {
        let body = whatsapp_messages(&[(&format!("wamid.METRICS{i}"), "15551234567", "Ana", "hi")]);
        assert_eq!(post_signed(&client, &daemon, "whatsapp", &body).await.0, 200);
    }
    let after = scrape(&client, &daemon).await;
    assert_eq!(value(&after, "parley_webhook_seconds_count{platform=\"whatsapp\"}"), Some(3.0), "{after}");
    // Every answer took under 20 s, the last bucket: the buckets are cumulative up to +Inf.
    assert_eq!(value(&after, "parley_webhook_seconds_bucket{platform=\"whatsapp\",le=\"20\"}"), Some(3.0), "{after}");
    assert_eq!(value(&after, "parley_webhook_seconds_bucket{platform=\"whatsapp\",le=\"+Inf\"}"), Some(3.0), "{after}");
    assert!(value(&after, "parley_webhook_seconds_sum{platform=\"whatsapp\"}").unwrap() > 0.0, "{after}");
    assert_eq!(value(&after, "parley_webhooks_total{platform=\"whatsapp\",result=\"stored\"}"), Some(3.0));

    // The test config points every API at a closed port: each attempt fails fast and is retried,
    // and each one is a timed send request (the customer wrote above: the window is open).
    let response = client
        .post(daemon.url("/api/messages"))
        .bearer_auth(API_TOKEN)
        .json(&serde_json::json!({ "platform": "whatsapp", "to": "15551234567", "text": "hello" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = scrape(&client, &daemon).await;
        if value(&metrics, "parley_send_request_seconds_count{platform=\"whatsapp\"}").is_some_and(|n| n >= 1.0) {
            assert!(metrics.contains("# TYPE parley_send_request_seconds histogram"), "{metrics}");
            break;
        }
        assert!(Instant::now() < deadline, "no send request was timed:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

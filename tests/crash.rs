//! `kill -9` under load: every webhook that was answered 200 is in the store after a restart,
//! exactly once.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use support::*;
use tokio::sync::{Mutex, Semaphore};

const WEBHOOKS: usize = 3000;
const CONCURRENCY: usize = 64;
/// Kill once this many webhooks have been acknowledged: mid-stream, with many in flight.
const KILL_AFTER_ACKS: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_webhook_survives_kill_9_exactly_once() {
    let mut daemon = Daemon::start();
    let pid = daemon.pid();
    let client = client();
    let url = daemon.url("/webhooks/whatsapp");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let ack_count = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = Vec::new();
    for i in 0..WEBHOOKS {
        let permit = permits.clone().acquire_owned().await.unwrap();
        if killed.load(Ordering::SeqCst) {
            break;
        }
        let (client, url, acked, ack_count, killed) =
            (client.clone(), url.clone(), acked.clone(), ack_count.clone(), killed.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let wamid = format!("wamid.crash.{i:05}");
            let sender = format!("55119{:06}", i % 50);
            let body = whatsapp_messages(&[(&wamid, &sender, "Load", &format!("message {i}"))]);
            let (header, value) = signature_header("whatsapp", body.as_bytes());
            let Ok(response) = client.post(&url).header(header, value).body(body).send().await else { return };
            if response.status().as_u16() == 200 {
                acked.lock().await.push(wamid);
                if ack_count.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER_ACKS {
                    let status = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
                    assert!(status.success());
                    killed.store(true, Ordering::SeqCst);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert!(killed.load(Ordering::SeqCst), "the daemon was never killed");
    daemon.kill9(); // reap the process
    let acked = acked.lock().await.clone();
    assert!(acked.len() >= KILL_AFTER_ACKS);

    let daemon = daemon.restart();
    let messages = all_messages(&client, &daemon).await;
    let mut stored: HashMap<String, usize> = HashMap::new();
    for message in &messages {
        *stored.entry(message["platform_message_id"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    let missing: Vec<&String> = acked.iter().filter(|w| !stored.contains_key(*w)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged webhooks lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let doubled: Vec<(&String, &usize)> = stored.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "stored more than once: {doubled:?}");
    eprintln!(
        "crash test: {} acknowledged before kill -9, {} stored after restart (the rest were in flight, unacknowledged)",
        acked.len(),
        messages.len()
    );
}

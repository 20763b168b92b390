use serde_json::json;

use super::*;
use crate::actor::conversation::StoreLocation;
use crate::actor::{ConversationMsg, StoreAvailability, WebhookOutcome, conversation_actor};
use crate::model::{ContentKind, Direction, EventKind, InboundEvent, MessageContent, Timestamp};
use crate::store::Store;

/// Actor names are process-wide; tests that spawn the tree take turns.
static TREE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn limits(max_restarts: u32) -> SupervisorConfig {
    SupervisorConfig { max_restarts, restart_window_secs: 60, restart_backoff_ms: 10, max_restart_backoff_ms: 40 }
}

fn event(mid: &str) -> InboundEvent {
    InboundEvent {
        contact_alias: None,
        platform: Platform::Facebook,
        account_id: "page".into(),
        contact_id: Some("user".into()),
        contact_name: None,
        sender_id: Some("user".into()),
        dedup_key: format!("mid:{mid}"),
        occurred_at: Timestamp::from_millis(1_000),
        kind: EventKind::Message {
            direction: Direction::Inbound,
            platform_message_id: mid.into(),
            content: MessageContent::text(ContentKind::Text, "hi"),
        },
        raw: json!({}),
    }
}

async fn wait_for_new_conversation_actor(old: ActorId) -> ActorRef<ConversationMsg> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(actor) = conversation_actor().filter(|a| a.get_id() != old) {
            return actor;
        }
        assert!(Instant::now() < deadline, "conversation actor was not restarted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn ingest(actor: &ActorRef<ConversationMsg>, mid: &str) -> WebhookOutcome {
    let events = vec![event(mid)];
    ractor::call!(actor, |reply| ConversationMsg::Ingest {
        platform: Platform::Facebook,
        events,
        received_at: Timestamp::from_millis(2_000),
        reply
    })
    .expect("the conversation actor answers")
    .expect("the write is durable")
}

#[test]
fn restart_budget_counts_within_the_window_only() {
    let mut budget = RestartBudget::new(2, Duration::from_secs(10));
    let t0 = Instant::now();
    assert_eq!(budget.record(t0), Ok(1));
    assert_eq!(budget.record(t0 + Duration::from_secs(1)), Ok(2));
    assert_eq!(budget.record(t0 + Duration::from_secs(2)), Err(3));
    let mut budget = RestartBudget::new(2, Duration::from_secs(10));
    assert_eq!(budget.record(t0), Ok(1));
    assert_eq!(budget.record(t0 + Duration::from_secs(5)), Ok(2));
    assert_eq!(budget.record(t0 + Duration::from_secs(11)), Ok(2), "the first restart left the window");
}

#[test]
fn restart_delay_doubles_up_to_the_cap() {
    let (initial, max) = (Duration::from_millis(100), Duration::from_millis(1000));
    let delays: Vec<_> = (1..=6).map(|n| restart_delay(initial, max, n).as_millis()).collect();
    assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    assert_eq!(restart_delay(initial, max, u32::MAX), max);
}

/// Arguments for a conversation actor on a fresh store in `dir`.
fn conversation_args(dir: &std::path::Path) -> ConversationArgs {
    let location = StoreLocation { path: dir.join("db"), cache_bytes: 8 << 20 };
    ConversationArgs::new(Store::open(&location.path, location.cache_bytes).unwrap(), location)
}

/// Waits until a (restarted) conversation actor has opened the store again.
async fn wait_until_store_up(actor: &ActorRef<ConversationMsg>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = ractor::call!(actor, |reply| ConversationMsg::GetStoreStatus { reply }).unwrap();
        if status.availability == StoreAvailability::Up {
            return;
        }
        assert!(Instant::now() < deadline, "the restarted actor never opened the store: {status:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_panicking_store_actor_is_restarted_and_keeps_what_was_acknowledged() {
    let _turn = TREE.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (fatal, mut fatal_rx) = mpsc::unbounded_channel();
    let args = SupervisorArgs {
        conversation: conversation_args(dir.path()),
        channels: vec![],
        receivers: vec![],
        limits: limits(3),
        fatal,
    };
    let (supervisor, handle) = Actor::spawn(None, Supervisor, args).await.unwrap();

    let first = conversation_actor().unwrap();
    assert!(matches!(ingest(&first, "m_before").await, WebhookOutcome::Stored(o) if o.stored == 1));
    first.cast(ConversationMsg::Panic).unwrap();
    let second = wait_for_new_conversation_actor(first.get_id()).await;
    // The restarted actor opens the store itself (the failed one's handle went with it).
    wait_until_store_up(&second).await;
    assert!(matches!(ingest(&second, "m_after").await, WebhookOutcome::Stored(o) if o.stored == 1));
    assert!(fatal_rx.try_recv().is_err(), "one panic is within the budget");

    ractor::call!(supervisor, |reply| SupervisorMsg::ShutDown { reply }).unwrap();
    supervisor.stop(None);
    handle.await.unwrap();
    let store = Store::reopen(&dir.path().join("db"), 8 << 20, Duration::from_secs(10)).unwrap();
    for mid in ["m_before", "m_after"] {
        assert!(store.message_by_platform_id(Platform::Facebook, mid).unwrap().is_some(), "{mid}");
    }
}

#[tokio::test]
async fn spending_the_restart_budget_is_reported_as_fatal() {
    let _turn = TREE.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (fatal, mut fatal_rx) = mpsc::unbounded_channel();
    let args = SupervisorArgs {
        conversation: conversation_args(dir.path()),
        channels: vec![],
        receivers: vec![],
        limits: limits(2),
        fatal,
    };
    let (supervisor, handle) = Actor::spawn(None, Supervisor, args).await.unwrap();

    let mut current = conversation_actor().unwrap();
    for _ in 0..2 {
        current.cast(ConversationMsg::Panic).unwrap();
        current = wait_for_new_conversation_actor(current.get_id()).await;
    }
    current.cast(ConversationMsg::Panic).unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(5), fatal_rx.recv()).await.unwrap().unwrap();
    assert!(reason.contains("3 actor restarts"), "{reason}");

    supervisor.stop(None);
    handle.await.unwrap();
}

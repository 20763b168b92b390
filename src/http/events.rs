//! `GET /api/events`: the live feed, as server-sent events or as JSON pages with long polling
//! (CONTRACT.md, "The live feed").
//!
//! Both forms follow the feed from a cursor with `actor::events::read_after`: from the feed hub's
//! tail when the cursor is in it, from the store otherwise, so a client that is behind is served
//! from the store and then from memory, on the same sequence, without a gap or a repeat.
//!
//! A stream is a task per client that writes into a small bounded channel which the response body
//! reads: a client that reads slowly holds at most `STREAM_BUFFER` chunks of about `CHUNK_BYTES`;
//! the task waits, never the publisher (the hub only wakes it). A client that goes away drops the body, and the task
//! ends at its next write or wake-up.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use tokio::sync::mpsc;

use super::HttpState;
use super::api::bad_request;
use super::response::{self, Body};
use crate::actor::events::{FeedRead, read_after};
use crate::feed::{EventFilter, EventType, FeedHub, Published};
use crate::model::Platform;
use crate::platform::{query_param, query_params};

/// A comment line goes out when nothing else was sent for this long (CONTRACT: at least every 15 s).
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// A stream reads the feed at most once in this long: woken sooner, it waits out the rest, so
/// that under load each client costs a wake-up and a write every few milliseconds rather than one
/// per publish (fewer system calls in the daemon and in the client), whatever its filter; an
/// event after a quiet spell goes at once. It bounds the delay it adds.
const READ_INTERVAL: Duration = Duration::from_millis(4);
/// The same while ingest is saturated (`FeedHub::ingest_busy`): a stream's wake-up and write cost
/// the daemon about as much as its bytes, and ingest needs the CPU. Webhooks then wait longer
/// than this for their own acknowledgement, so the feed still follows them closely.
const BUSY_READ_INTERVAL: Duration = Duration::from_millis(16);
/// Events read per step (from the hub or one store page).
const READ_BATCH: usize = 256;
/// Chunks a stream may have written that its client has not read yet.
const STREAM_BUFFER: usize = 8;
/// A chunk is sent once it holds this many bytes (the event that crosses it is the last in it), so
/// that what a stalled client holds is bounded in bytes (`STREAM_BUFFER` of these), however large
/// its events are, and not only in events.
const CHUNK_BYTES: usize = 64 * 1024;
/// JSON pages: default and largest `limit`, largest `wait`.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
const MAX_WAIT_SECS: u64 = 30;
/// A filtered JSON page looks at no more than this many events; when none of them matched, the
/// page is empty and `next` says where to continue (so a client is never stuck on a long run of
/// events it filtered out).
const MAX_SCAN: usize = 50_000;
/// After a failed store read, a stream tries again this much later.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// What a request asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FeedRequest {
    /// Where to start: after this `seq`. None: the stream starts at the newest event (live only);
    /// a JSON page starts at the oldest retained.
    after: Option<u64>,
    filter: EventFilter,
    limit: usize,
    wait: Duration,
    json: bool,
}

/// Parses the query, `Last-Event-ID` and `Accept` (pure); the error is the 400's message.
fn parse_request(
    query: &str,
    last_event_id: Option<&[u8]>,
    accept: Option<&[u8]>,
) -> Result<FeedRequest, (&'static str, String)> {
    let json = accept.and_then(|a| std::str::from_utf8(a).ok()).is_some_and(|a| {
        a.split(',').any(|t| t.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"))
    });
    let number = |name: &str, text: &str| -> Result<u64, (&'static str, String)> {
        text.trim()
            .parse::<u64>()
            .map_err(|_| ("bad_cursor", format!("`{name}` must be a whole number, not `{}`", shown(text))))
    };
    let mut after = match query_param(query, "after") {
        Some(text) => Some(number("after", &text)?),
        None => None,
    };
    if let Some(header) = last_event_id {
        let text = std::str::from_utf8(header).map_err(|_| ("bad_cursor", "`Last-Event-ID` is not text".to_owned()))?;
        let seq = number("Last-Event-ID", text)?;
        // The header is what a reconnecting EventSource sends; it wins over a stale `after`.
        after = Some(seq);
    }
    let limit = match query_param(query, "limit") {
        None => DEFAULT_LIMIT,
        Some(text) => match text.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(("bad_limit", format!("`limit` must be 1 to {MAX_LIMIT}, not `{}`", shown(&text)))),
        },
    };
    let wait = match query_param(query, "wait") {
        None => Duration::ZERO,
        Some(text) => match text.trim().parse::<u64>() {
            Ok(n) if n <= MAX_WAIT_SECS => Duration::from_secs(n),
            _ => {
                return Err((
                    "bad_wait",
                    format!("`wait` must be 0 to {MAX_WAIT_SECS} seconds, not `{}`", shown(&text)),
                ));
            }
        },
    };
    let mut filter = EventFilter::default();
    for list in query_params(query, "types") {
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let kind = EventType::parse(name).ok_or_else(|| {
                let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                ("bad_type", format!("unknown event type `{}` (known: {})", shown(name), known.join(", ")))
            })?;
            if !filter.types.contains(&kind) {
                filter.types.push(kind);
            }
        }
    }
    for list in query_params(query, "platform") {
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let platform = name
                .parse::<Platform>()
                .map_err(|_| ("bad_platform", format!("unknown platform `{}`", shown(name))))?;
            if !filter.platforms.contains(&platform) {
                filter.platforms.push(platform);
            }
        }
    }
    if let Some(conversation) = query_param(query, "conversation") {
        if conversation.is_empty() {
            return Err(("bad_conversation", "`conversation` must not be empty".to_owned()));
        }
        filter.conversation = Some(conversation);
    }
    Ok(FeedRequest { after, filter, limit, wait, json })
}

/// Input echoed in an error, cut short.
fn shown(text: &str) -> String {
    text.chars().take(64).collect()
}

/// `GET /api/events`, after the bearer check.
pub async fn serve(state: &HttpState, request: Request<Incoming>) -> Response<Body> {
    let headers = request.headers();
    let parsed = parse_request(
        request.uri().query().unwrap_or(""),
        headers.get("last-event-id").map(HeaderValue::as_bytes),
        headers.get(header::ACCEPT).map(HeaderValue::as_bytes),
    );
    let feed_request = match parsed {
        Ok(r) => r,
        Err((code, message)) => return bad_request(code, &message),
    };
    if feed_request.json { page(state, feed_request).await } else { stream(state, feed_request) }
}

// ---------------------------------------------------------------------------------------------
// JSON pages

async fn page(state: &HttpState, request: FeedRequest) -> Response<Body> {
    let hub = state.feed.clone();
    let mut woken = hub.subscribe();
    let deadline = tokio::time::Instant::now() + request.wait;
    // As for streams, a cursor beyond the newest event waits for what comes next.
    let mut after = request.after.unwrap_or(0).min(hub.newest());
    let mut reset = None;
    loop {
        let mut events: Vec<Arc<Published>> = Vec::new();
        let mut scanned = 0;
        let mut last_scanned = None;
        // Fill the page: read on while events are filtered out, up to the scan bound.
        while events.len() < request.limit && scanned < MAX_SCAN {
            woken.mark_unchanged();
            match read_after(&hub, after, READ_BATCH).await {
                Ok(FeedRead::Reset { oldest }) => {
                    // `after` absent means "from the oldest retained": no reset to report then.
                    if request.after.is_some() && reset.is_none() {
                        reset = Some(oldest);
                    }
                    after = oldest - 1;
                }
                Ok(FeedRead::Events(batch)) if batch.is_empty() => break,
                Ok(FeedRead::Events(batch)) => {
                    for published in batch {
                        scanned += 1;
                        after = published.event.seq;
                        last_scanned = Some(after);
                        if request.filter.matches(&published.event) {
                            events.push(published);
                            if events.len() == request.limit {
                                break;
                            }
                        }
                    }
                }
                Err(e) => return super::api::read_error(&e),
            }
        }
        let now = tokio::time::Instant::now();
        if !events.is_empty() || request.wait.is_zero() || now >= deadline || scanned >= MAX_SCAN {
            let next = events.last().map(|p| p.event.seq).or(if scanned >= MAX_SCAN { last_scanned } else { None });
            return page_answer(&events, next, reset);
        }
        // Long poll: wait for the next publish, then read again from where the scan stopped.
        let _ = tokio::time::timeout_at(deadline, woken.changed()).await;
        if tokio::time::Instant::now() >= deadline {
            // One last look: something may have come with the wake-up at the deadline.
            if hub.newest() <= after {
                return page_answer(&[], None, reset);
            }
        }
    }
}

fn page_answer(events: &[Arc<Published>], next: Option<u64>, reset: Option<u64>) -> Response<Body> {
    // The events' JSON is rendered once, when published; the page is assembled around it.
    let mut body = String::with_capacity(64 + events.iter().map(|p| p.json().len() + 1).sum::<usize>());
    body.push_str("{\"events\":[");
    for (i, published) in events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(published.json());
    }
    body.push_str("],\"next\":");
    body.push_str(&next.map_or_else(|| "null".to_owned(), |n| n.to_string()));
    if let Some(oldest) = reset {
        body.push_str(&format!(",\"reset\":{{\"oldest_seq\":{oldest}}}"));
    }
    body.push('}');
    let mut answer = response::with_type(StatusCode::OK, "application/json", body.into_bytes());
    answer.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    answer
}

// ---------------------------------------------------------------------------------------------
// Server-sent events

/// The response body of a stream: what the client's task writes, as it is read.
struct StreamBody {
    chunks: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for StreamBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.chunks.poll_recv(cx).map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

fn stream(state: &HttpState, request: FeedRequest) -> Response<Body> {
    let (chunks, receiver) = mpsc::channel(STREAM_BUFFER);
    let hub = state.feed.clone();
    let stopping = state.stopping();
    // A cursor beyond the newest event (a client of a store that was replaced, say) is not an
    // error: the stream sends what comes next.
    let newest = hub.newest();
    let start = request.after.map_or(newest, |after| after.min(newest));
    tokio::spawn(follow(hub, start, request.filter, chunks, stopping));
    let mut answer = Response::new(StreamBody { chunks: receiver }.boxed());
    let headers = answer.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // nginx buffers proxied responses unless told not to.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    answer
}

/// Counts a stream in `/metrics` while it lives.
struct ClientGauge;

impl ClientGauge {
    fn new() -> ClientGauge {
        crate::metrics::metrics().feed_client(1);
        ClientGauge
    }
}

impl Drop for ClientGauge {
    fn drop(&mut self) {
        crate::metrics::metrics().feed_client(-1);
    }
}

/// One client's stream: from `after` on, through the store while behind, then live.
async fn follow(
    hub: Arc<FeedHub>,
    mut after: u64,
    filter: EventFilter,
    chunks: mpsc::Sender<Bytes>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let _gauge = ClientGauge::new();
    let mut woken = hub.subscribe();
    // A first comment at once, so that the client (and any proxy) sees the stream open.
    if chunks.send(Bytes::from_static(b": parley live feed\n\n")).await.is_err() {
        return;
    }
    // When the client was last sent anything. The heartbeat is due 15 s after that, not after
    // the last wake-up: with a filter, events that match nothing wake the stream without sending.
    let mut last_sent = tokio::time::Instant::now();
    let mut last_read;
    loop {
        if *stopping.borrow() {
            return;
        }
        woken.mark_unchanged();
        last_read = tokio::time::Instant::now();
        match read_after(&hub, after, READ_BATCH).await {
            Ok(FeedRead::Events(batch)) if !batch.is_empty() => {
                let mut chunk = Chunk::default();
                for published in &batch {
                    if filter.matches(&published.event) {
                        chunk.push(published.frame());
                        if chunk.len() >= CHUNK_BYTES {
                            if chunks.send(chunk.take()).await.is_err() {
                                return;
                            }
                            last_sent = tokio::time::Instant::now();
                        }
                    }
                }
                after = batch.last().map_or(after, |p| p.event.seq);
                if !chunk.is_empty() {
                    if chunks.send(chunk.take()).await.is_err() {
                        return;
                    }
                    last_sent = tokio::time::Instant::now();
                }
                continue;
            }
            Ok(FeedRead::Events(_)) => {}
            Ok(FeedRead::Reset { oldest }) => {
                let reset = json!({ "type": "feed.reset", "data": { "oldest_seq": oldest } });
                // Its id moves the client's Last-Event-ID to just before the oldest retained
                // event, so a reconnect right after it does not ask for the pruned range again.
                let text = format!("id: {}\nevent: feed.reset\ndata: {reset}\n\n", oldest - 1);
                if chunks.send(Bytes::from(text)).await.is_err() {
                    return;
                }
                last_sent = tokio::time::Instant::now();
                after = oldest - 1;
                continue;
            }
            Err(e) => {
                tracing::debug!(message = "A feed stream could not read the store; trying again.", error = %e);
                tokio::select! {
                    () = tokio::time::sleep(RETRY_AFTER_FAILURE) => continue,
                    () = chunks.closed() => return,
                    _ = stopping.changed() => return,
                }
            }
        }
        // Nothing new: wait for the next publish, a heartbeat, the client leaving, or shutdown.
        tokio::select! {
            changed = woken.changed() => {
                if changed.is_err() {
                    return;
                }
                // Under load, what was published during the pause is read and sent at once.
                let due = last_read + if hub.ingest_busy() { BUSY_READ_INTERVAL } else { READ_INTERVAL };
                if tokio::time::Instant::now() < due {
                    tokio::select! {
                        () = tokio::time::sleep_until(due) => {}
                        () = chunks.closed() => return,
                        _ = stopping.changed() => return,
                    }
                }
            }
            () = tokio::time::sleep_until(last_sent + HEARTBEAT) => {
                if chunks.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                    return;
                }
                last_sent = tokio::time::Instant::now();
            }
            () = chunks.closed() => return,
            _ = stopping.changed() => return,
        }
    }
}

/// What a stream writes next: one event's shared frame as it is, or several copied into one
/// buffer of exactly their size (one write for the client instead of many).
#[derive(Default)]
struct Chunk {
    frames: Vec<Bytes>,
    bytes: usize,
}

impl Chunk {
    fn push(&mut self, frame: Bytes) {
        self.bytes += frame.len();
        self.frames.push(frame);
    }

    fn len(&self) -> usize {
        self.bytes
    }

    fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    fn take(&mut self) -> Bytes {
        let size = std::mem::take(&mut self.bytes);
        if self.frames.len() == 1 {
            return self.frames.pop().unwrap_or_default();
        }
        let mut joined = BytesMut::with_capacity(size);
        for frame in self.frames.drain(..) {
            joined.extend_from_slice(&frame);
        }
        joined.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<FeedRequest, (&'static str, String)> {
        parse_request(query, None, None)
    }

    #[test]
    fn a_plain_request_is_a_live_stream_of_everything() {
        let r = parse("").unwrap();
        assert_eq!(
            r,
            FeedRequest { after: None, filter: EventFilter::default(), limit: 100, wait: Duration::ZERO, json: false }
        );
    }

    #[test]
    fn json_is_chosen_by_accept_and_last_event_id_wins_over_after() {
        let r = parse_request("after=5&limit=1000&wait=30", Some(b"42"), Some(b"text/html, application/json;q=0.9"))
            .unwrap();
        assert!(r.json);
        assert_eq!(r.after, Some(42));
        assert_eq!(r.limit, 1000);
        assert_eq!(r.wait, Duration::from_secs(30));
        assert!(!parse_request("", None, Some(b"text/event-stream")).unwrap().json);
    }

    #[test]
    fn filters_are_read_from_lists_and_repeated_parameters() {
        let r = parse("types=message.received,message.status&types=message.status&platform=whatsapp&conversation=c1")
            .unwrap();
        assert_eq!(r.filter.types, [EventType::MessageReceived, EventType::MessageStatus]);
        assert_eq!(r.filter.platforms, [Platform::Whatsapp]);
        assert_eq!(r.filter.conversation.as_deref(), Some("c1"));
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        for (query, code) in [
            ("after=abc", "bad_cursor"),
            ("after=-1", "bad_cursor"),
            ("limit=0", "bad_limit"),
            ("limit=1001", "bad_limit"),
            ("limit=x", "bad_limit"),
            ("wait=31", "bad_wait"),
            ("types=message.deleted", "bad_type"),
            ("platform=telegram", "bad_platform"),
            ("conversation=", "bad_conversation"),
        ] {
            let (got, message) = parse(query).unwrap_err();
            assert_eq!(got, code, "{query}: {message}");
        }
        assert_eq!(parse_request("", Some(b"x1"), None).unwrap_err().0, "bad_cursor");
        assert_eq!(parse_request("", Some(&[0xff]), None).unwrap_err().0, "bad_cursor");
    }

    #[tokio::test]
    async fn a_stream_sends_chunks_bounded_in_bytes_and_heartbeats_after_filtered_out_events() {
        tokio::time::pause();
        let hub = FeedHub::new(1000);
        let big = "x".repeat(10_000);
        let event = |seq: u64, platform: Platform| crate::feed::Event {
            seq,
            kind: EventType::MessageReceived,
            at: crate::model::Timestamp::from_millis(1_700_000_000_000),
            platform,
            conversation_id: Some("c".into()),
            data: crate::feed::Event::data_of(&json!({ "message": { "text": big } })).unwrap(),
        };
        hub.publish((1..=100).map(|seq| Published::new(event(seq, Platform::Viber))).collect());
        let (sender, mut chunks) = mpsc::channel(STREAM_BUFFER);
        let (_stop, stopping) = tokio::sync::watch::channel(false);
        let filter = EventFilter { platforms: vec![Platform::Viber], ..EventFilter::default() };
        tokio::spawn(follow(hub.clone(), 0, filter, sender, stopping));
        assert_eq!(chunks.recv().await.unwrap(), Bytes::from_static(b": parley live feed\n\n"));
        let mut seen = 0;
        while seen < 100 {
            let chunk = chunks.recv().await.unwrap();
            let one_event = big.len() + 200;
            assert!(chunk.len() < CHUNK_BYTES + one_event, "a chunk of {} bytes", chunk.len());
            seen += chunk.windows(4).filter(|w| w == b"id: ").count();
        }
        // Events the filter drops wake the stream every second but send nothing: the heartbeat
        // still comes 15 s after the last thing sent.
        let mut first_heartbeat = None;
        for second in 1..=20 {
            tokio::time::advance(Duration::from_secs(1)).await;
            hub.publish(vec![Published::new(event(100 + second, Platform::Whatsapp))]);
            for _ in 0..20 {
                tokio::task::yield_now().await;
            }
            if let Ok(chunk) = chunks.try_recv() {
                assert_eq!(chunk, Bytes::from_static(b": keep-alive\n\n"), "at {second} s");
                first_heartbeat.get_or_insert(second);
            }
        }
        // (The timer's millisecond rounding may put it in the 16th second.)
        assert!(matches!(first_heartbeat, Some(15 | 16)), "first heartbeat after {first_heartbeat:?} s");
    }

    #[test]
    fn a_chunk_is_one_frame_as_it_is_or_several_joined_in_order() {
        let mut chunk = Chunk::default();
        assert!(chunk.is_empty());
        let one = Bytes::from_static(b"id: 1\n\n");
        chunk.push(one.clone());
        let taken = chunk.take();
        assert_eq!(taken.as_ptr(), one.as_ptr(), "a single frame is not copied");
        assert!(chunk.is_empty());
        chunk.push(Bytes::from_static(b"a"));
        chunk.push(Bytes::from_static(b"bc"));
        chunk.push(Bytes::from_static(b"def"));
        assert_eq!(chunk.len(), 6);
        assert_eq!(chunk.take(), Bytes::from_static(b"abcdef"));
        assert!(chunk.is_empty() && chunk.take().is_empty());
    }

    #[test]
    fn an_event_is_written_as_id_event_and_data_lines() {
        let published = Published::new(crate::feed::Event {
            seq: 7,
            kind: EventType::MessageStatus,
            at: crate::model::Timestamp::from_millis(1_700_000_000_000),
            platform: Platform::Viber,
            conversation_id: Some("c".into()),
            data: crate::feed::Event::data_of(&json!({"message": {"text": "two\nlines"}})).unwrap(),
        });
        let frame = published.frame();
        let chunk = std::str::from_utf8(&frame).unwrap();
        let lines: Vec<&str> = chunk.split('\n').collect();
        assert_eq!(lines[0], "id: 7");
        assert_eq!(lines[1], "event: message.status");
        assert!(lines[2].starts_with("data: {") && lines[2].contains(r#""two\nlines""#));
        assert_eq!(&lines[3..], ["", ""]);
    }
}

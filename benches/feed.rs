//! Live feed benchmark: what `GET /api/events` costs and how fast it is, against the release
//! daemon on a temporary store.
//!
//! Run by hand, never in CI:
//!
//! ```text
//! cargo bench --bench feed -- [--scenario latency|throughput|memory|all] [--clients N]
//!                              [--rate R] [--duration SECS] [--warmup SECS] [--connections N]
//!                              [--concurrency N] [--memory-clients N] [--types LIST]
//! ```
//!
//! - `latency`: `--clients` (100) server-sent event streams are connected and reading while
//!   signed WhatsApp webhooks are offered at `--rate` (2,000/s) over `--connections` (64) kept-alive
//!   connections; for every webhook and every client, the time from the moment its POST was
//!   written to the moment its `message.received` reached that client (p50/p99/max), and the
//!   POST's own answer time.
//! - `throughput`: a closed loop at `--concurrency` (64) for `--duration`, on a fresh daemon with
//!   no stream, then on a fresh daemon with `--clients` streams reading; the ratio of the rates.
//! - `memory`: `--memory-clients` (1,000) streams: the daemon's RSS before, with them connected,
//!   and after 2,000 events reached all of them; then they leave and `parley_feed_clients` must
//!   fall back to 0.
//!
//! `--types` gives the streams a `types=` filter (default: every event). The load generator and
//! every stream share one tokio thread in this process (about one core), as in the ingest bench.

mod common;
use common::daemon::Daemon;
use common::{client_runtime, cpu_seconds, flag_pairs, number, percentile, positive, resident_mib, resident_text};

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

const WHATSAPP_SECRET: &str = "bench-whatsapp-app-secret";
const PHONE_NUMBER_ID: &str = "106540352242922";
const API_TOKEN: &str = "bench-api-token-7c2e";
/// Distinct senders the webhooks rotate through.
const SENDERS: u64 = 1000;
/// What every bench wamid starts with; the digits after it are the webhook's sequence number.
const MARKER: &[u8] = b"FEEDBENCH";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Events sent to every stream in the memory scenario.
const MEMORY_WEBHOOKS: u64 = 1000;

const USAGE: &str = "usage: cargo bench --bench feed -- [--scenario latency|throughput|memory|all] [--clients N] \
[--rate R] [--duration SECS] [--warmup SECS] [--connections N] [--concurrency N] [--memory-clients N] [--types LIST] [--binary PATH]";

#[derive(Debug)]
struct Options {
    latency: bool,
    throughput: bool,
    memory: bool,
    clients: usize,
    rate: u64,
    duration: Duration,
    warmup: Duration,
    connections: usize,
    concurrency: usize,
    memory_clients: usize,
    types: Option<String>,
    /// The daemon to measure (another build, e.g. an older one, with the same config).
    binary: std::path::PathBuf,
}

impl Options {
    fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut o = Options {
            latency: true,
            throughput: true,
            memory: true,
            clients: 100,
            rate: 2000,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            connections: 64,
            concurrency: 64,
            memory_clients: 1000,
            types: None,
            binary: Daemon::release_binary(),
        };
        for (flag, value) in flag_pairs(args)? {
            match flag.as_str() {
                "--scenario" => {
                    (o.latency, o.throughput, o.memory) = match value.as_str() {
                        "latency" => (true, false, false),
                        "throughput" => (false, true, false),
                        "memory" => (false, false, true),
                        "all" => (true, true, true),
                        other => {
                            return Err(format!("--scenario takes latency, throughput, memory or all, not `{other}`"));
                        }
                    }
                }
                "--clients" => o.clients = number(&flag, &value)?,
                "--rate" => o.rate = positive(&flag, &value)? as u64,
                "--duration" => o.duration = Duration::from_secs(positive(&flag, &value)? as u64),
                "--warmup" => o.warmup = Duration::from_secs(number(&flag, &value)? as u64),
                "--connections" => o.connections = positive(&flag, &value)?,
                "--concurrency" => o.concurrency = positive(&flag, &value)?,
                "--memory-clients" => o.memory_clients = positive(&flag, &value)?,
                "--types" => o.types = Some(value),
                "--binary" => o.binary = std::path::PathBuf::from(value),
                other => return Err(format!("unknown option `{other}`")),
            }
        }
        Ok(o)
    }

    fn stream_path(&self) -> String {
        match &self.types {
            Some(types) => format!("/api/events?types={types}"),
            None => "/api/events".to_owned(),
        }
    }
}

fn main() {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("feed bench: {message}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    raise_fd_limit();
    client_runtime().block_on(run(options));
}

/// Streams and load connections are file descriptors of this process too.
fn raise_fd_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let Err(e) = setrlimit(Resource::Nofile, Rlimit { current: limit.maximum, maximum: limit.maximum }) {
        eprintln!("feed bench: cannot raise the open-file limit ({e}); many streams may fail");
    }
}

async fn run(options: Options) {
    println!("Parley live feed benchmark");
    println!(
        "  one tokio thread in this process drives the load and reads every stream; streams: {}",
        options.stream_path()
    );
    if options.latency {
        latency(&options).await;
    }
    if options.throughput {
        throughput(&options).await;
    }
    if options.memory {
        memory(&options).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

async fn latency(options: &Options) {
    let daemon = Daemon::start(&options.binary, bench_config);
    let total = options.rate * (options.warmup + options.duration).as_secs();
    let measured_from = options.rate * options.warmup.as_secs();
    println!(
        "\nLatency: {} streams, {}/s offered over {} connections, {} s warm-up + {} s ({} webhooks)",
        options.clients,
        options.rate,
        options.connections,
        options.warmup.as_secs(),
        options.duration.as_secs(),
        total
    );
    let epoch = Instant::now();
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let streams =
        connect_streams(daemon.addr, options.clients, &options.stream_path(), Some((epoch, sent_at.clone()))).await;
    println!("  {} streams connected; daemon RSS {}", streams.connected(), rss(&daemon));
    let cpu = Cpu::start(daemon.pid());
    let posts = open_loop(daemon.addr, options.rate, options.connections, total, epoch, sent_at).await;
    // Let the last events reach every stream.
    let deadline = Instant::now() + Duration::from_secs(10);
    while streams.deliveries() < total * streams.connected() as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu = cpu.stop();
    let delivered = streams.stop_and_collect(measured_from).await;
    let mut post_ns: Vec<u64> =
        posts.latencies.iter().filter(|(seq, _)| *seq >= measured_from).map(|(_, l)| *l).collect();
    post_ns.sort_unstable();
    println!(
        "  webhook POST -> 200:               p50 {}  p99 {}  max {}  ({} answered 200, {} other, {} failed)",
        ms(percentile(&post_ns, 0.5)),
        ms(percentile(&post_ns, 0.99)),
        ms(post_ns.last().copied()),
        posts.ok,
        posts.other,
        posts.failed
    );
    let expected = (total - measured_from) * options.clients as u64;
    println!(
        "  webhook POST -> event at a stream: p50 {}  p99 {}  max {}  ({} of {} expected deliveries measured)",
        ms(percentile(&delivered, 0.5)),
        ms(percentile(&delivered, 0.99)),
        ms(delivered.last().copied()),
        delivered.len(),
        expected
    );
    println!("  send lag behind schedule: p99 {}  (the load generator's own delay)", ms(percentile(&posts.lags, 0.99)));
    println!("  cpu: {cpu}; daemon RSS at the end {}", rss(&daemon));
    daemon.print_log_tail(5);
}

async fn throughput(options: &Options) {
    println!(
        "\nThroughput: closed loop c={}, {} s warm-up + {} s, each on a fresh daemon",
        options.concurrency,
        options.warmup.as_secs(),
        options.duration.as_secs()
    );
    let mut rates = Vec::new();
    for clients in [0, options.clients] {
        let daemon = Daemon::start(&options.binary, bench_config);
        let streams = connect_streams(daemon.addr, clients, &options.stream_path(), None).await;
        let cpu = Cpu::start(daemon.pid());
        let (rate, p50, p99) = closed_loop(daemon.addr, options.concurrency, options.warmup, options.duration).await;
        let cpu = cpu.stop();
        let received = streams.events_received();
        streams.stop_and_collect(0).await;
        println!(
            "  {clients:>4} streams: {rate:>8.0} 200/s  p50 {}  p99 {}  ({} events delivered to streams; {cpu})",
            ms(p50),
            ms(p99),
            received
        );
        rates.push(rate);
        daemon.print_log_tail(5);
    }
    println!("  ratio with {} streams / without: {:.3}", options.clients, rates[1] / rates[0]);
}

async fn memory(options: &Options) {
    let daemon = Daemon::start(&options.binary, bench_config);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_mib(&daemon);
    println!("\nMemory: {} streams; daemon RSS idle {}", options.memory_clients, rss(&daemon));
    let epoch = Instant::now();
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..MEMORY_WEBHOOKS).map(|_| AtomicU64::new(0)).collect());
    let streams =
        connect_streams(daemon.addr, options.memory_clients, &options.stream_path(), Some((epoch, sent_at.clone())))
            .await;
    let gauge = wait_for_metric(daemon.addr, "parley_feed_clients", streams.connected() as f64).await;
    let connected = rss_mib(&daemon);
    println!(
        "  {} streams connected (parley_feed_clients {gauge}): RSS {} (+{:.1} MiB)",
        streams.connected(),
        rss(&daemon),
        connected - idle
    );
    let posts = open_loop(daemon.addr, 200, 8, MEMORY_WEBHOOKS, epoch, sent_at).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while streams.deliveries() < MEMORY_WEBHOOKS * streams.connected() as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let loaded = rss_mib(&daemon);
    println!(
        "  after {} webhooks ({} answered 200; {} events each) reached {} of {} stream deliveries: RSS {} (+{:.1} MiB over idle)",
        MEMORY_WEBHOOKS,
        posts.ok,
        2 * MEMORY_WEBHOOKS,
        streams.deliveries(),
        MEMORY_WEBHOOKS * streams.connected() as u64,
        rss(&daemon),
        loaded - idle
    );
    streams.stop_and_collect(0).await;
    let gauge = wait_for_metric(daemon.addr, "parley_feed_clients", 0.0).await;
    println!("  streams closed: parley_feed_clients {gauge}, RSS {}", rss(&daemon));
    daemon.print_log_tail(5);
}

// ---------------------------------------------------------------------------------------------
// Webhooks

/// A one-message WhatsApp webhook whose wamid carries `seq`, signed.
fn signed_webhook(seq: u64) -> (Bytes, HeaderValue) {
    let sender = 5_511_900_000_000 + seq % SENDERS;
    let body = format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"102290129340398","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550001111","phone_number_id":"{PHONE_NUMBER_ID}"}},"contacts":[{{"profile":{{"name":"Bench Customer {n}"}},"wa_id":"{sender}"}}],"messages":[{{"from":"{sender}","id":"wamid.FEEDBENCH{seq:012}","timestamp":"{ts}","type":"text","text":{{"body":"Hi! Did my order #{seq} arrive? It was due yesterday."}}}}]}}}}]}}]}}"#,
        n = seq % SENDERS,
        ts = 1_718_000_000 + seq % 100_000,
    );
    let signature = format!("sha256={}", parley::platform::sign_hex(WHATSAPP_SECRET.as_bytes(), &[body.as_bytes()]));
    (Bytes::from(body), HeaderValue::from_str(&signature).expect("hex is a valid header value"))
}

/// One keep-alive HTTP/1.1 connection that reconnects after an error.
struct Connection {
    link: common::keepalive::KeepAlive,
}

impl Connection {
    fn new(addr: SocketAddr) -> Self {
        Connection { link: common::keepalive::KeepAlive::new(addr) }
    }

    /// Posts webhook `seq`; the status, or None on any failure (the connection is then dropped).
    /// `written` is called just before the request goes out.
    async fn post(&mut self, seq: u64, written: impl FnOnce()) -> Option<u16> {
        let (body, signature) = signed_webhook(seq);
        let request = Request::builder()
            .method(Method::POST)
            .uri("/webhooks/whatsapp")
            .header(HOST, self.link.host.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("x-hub-signature-256", signature)
            .body(Full::new(body))
            .expect("a request built from valid parts");
        let exchange = async {
            let sender = self.link.connect().await?;
            sender.ready().await.map_err(|e| e.to_string())?;
            written();
            let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            response.into_body().collect().await.map_err(|e| e.to_string())?;
            Ok::<u16, String>(status)
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok(status)) => Some(status),
            _ => {
                self.link.reset();
                None
            }
        }
    }
}

#[derive(Default)]
struct Posts {
    /// (seq, POST -> answer in ns) of every 200.
    latencies: Vec<(u64, u64)>,
    lags: Vec<u64>,
    ok: u64,
    other: u64,
    failed: u64,
}

/// Webhooks `0..total` at `rate` per second from now, over `connections`; each POST's write time
/// goes into `sent_at[seq]` (ns since `epoch`, +1 so that 0 means not sent).
async fn open_loop(
    addr: SocketAddr,
    rate: u64,
    connections: usize,
    total: u64,
    epoch: Instant,
    sent_at: Arc<Vec<AtomicU64>>,
) -> Posts {
    let start = Instant::now() + Duration::from_millis(100);
    let slots = Arc::new(AtomicU64::new(0));
    let nanos_per_slot = 1e9 / rate as f64;
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (slots, sent_at) = (slots.clone(), sent_at.clone());
            tokio::spawn(async move {
                let mut connection = Connection::new(addr);
                let _ = connection.link.connect().await;
                let mut posts = Posts::default();
                loop {
                    let seq = slots.fetch_add(1, Ordering::Relaxed);
                    if seq >= total {
                        break;
                    }
                    let scheduled = start + Duration::from_nanos((seq as f64 * nanos_per_slot) as u64);
                    tokio::time::sleep_until(scheduled.into()).await;
                    let mut written = Instant::now();
                    let status = connection
                        .post(seq, || {
                            written = Instant::now();
                            sent_at[seq as usize].store((written - epoch).as_nanos() as u64 + 1, Ordering::Relaxed);
                        })
                        .await;
                    let done = Instant::now();
                    posts.lags.push((written.saturating_duration_since(scheduled)).as_nanos() as u64);
                    match status {
                        Some(200) => {
                            posts.ok += 1;
                            posts.latencies.push((seq, (done - written).as_nanos() as u64));
                        }
                        Some(_) => posts.other += 1,
                        None => posts.failed += 1,
                    }
                }
                posts
            })
        })
        .collect();
    let mut all = Posts::default();
    for task in tasks {
        let posts = task.await.expect("a load task does not panic");
        all.latencies.extend(posts.latencies);
        all.lags.extend(posts.lags);
        all.ok += posts.ok;
        all.other += posts.other;
        all.failed += posts.failed;
    }
    all.lags.sort_unstable();
    all
}

/// `concurrency` connections posting back to back; 200/s over the window, p50 and p99.
async fn closed_loop(
    addr: SocketAddr,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> (f64, Option<u64>, Option<u64>) {
    let window_start = Instant::now() + warmup;
    let window_end = window_start + duration;
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let next = next.clone();
            tokio::spawn(async move {
                let mut connection = Connection::new(addr);
                let (mut ok, mut latencies) = (0u64, Vec::new());
                while Instant::now() < window_end {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    let sent = Instant::now();
                    let status = connection.post(seq, || {}).await;
                    let done = Instant::now();
                    if done >= window_start && done < window_end && status == Some(200) {
                        ok += 1;
                        latencies.push((done - sent).as_nanos() as u64);
                    }
                    if status.is_none() {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                (ok, latencies)
            })
        })
        .collect();
    let (mut ok, mut latencies) = (0, Vec::new());
    for task in tasks {
        let (n, l) = task.await.expect("a load task does not panic");
        ok += n;
        latencies.extend(l);
    }
    latencies.sort_unstable();
    (ok as f64 / duration.as_secs_f64(), percentile(&latencies, 0.5), percentile(&latencies, 0.99))
}

// ---------------------------------------------------------------------------------------------
// Streams

/// Server-sent event streams reading in tasks of their own.
struct Streams {
    tasks: Vec<tokio::task::JoinHandle<Vec<(u64, u64)>>>,
    stop: Arc<AtomicBool>,
    connected: usize,
    /// The highest bench seq any stream has seen, +1.
    /// `message.received` events of bench webhooks seen, over all streams.
    deliveries: Arc<AtomicU64>,
    /// Events of any type seen, over all streams.
    events: Arc<AtomicU64>,
}

impl Streams {
    fn connected(&self) -> usize {
        self.connected
    }

    fn deliveries(&self) -> u64 {
        self.deliveries.load(Ordering::Relaxed)
    }

    fn events_received(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Closes every stream; the sorted delivery latencies (ns) of webhooks from `measured_from` on.
    async fn stop_and_collect(self, measured_from: u64) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        let mut latencies = Vec::new();
        for task in self.tasks {
            let mine = task.await.expect("a stream task does not panic");
            latencies.extend(mine.into_iter().filter(|(seq, _)| *seq >= measured_from).map(|(_, l)| l));
        }
        latencies.sort_unstable();
        latencies
    }
}

/// Opens `count` streams at `path` (each on its own connection) and waits for each one's opening
/// comment. With `timing`, each stream records (seq, ns from the POST's write to arrival).
async fn connect_streams(
    addr: SocketAddr,
    count: usize,
    path: &str,
    timing: Option<(Instant, Arc<Vec<AtomicU64>>)>,
) -> Streams {
    let stop = Arc::new(AtomicBool::new(false));
    let deliveries = Arc::new(AtomicU64::new(0));
    let events = Arc::new(AtomicU64::new(0));
    let opened = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..count {
        let (stop, deliveries, events, opened, failed, timing, path) = (
            stop.clone(),
            deliveries.clone(),
            events.clone(),
            opened.clone(),
            failed.clone(),
            timing.clone(),
            path.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let Ok(mut body) = open_stream(addr, &path).await else {
                failed.fetch_add(1, Ordering::Relaxed);
                return latencies;
            };
            opened.fetch_add(1, Ordering::Relaxed);
            let mut pending: Vec<u8> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let frame = match tokio::time::timeout(Duration::from_millis(200), body.frame()).await {
                    Err(_) => continue,
                    Ok(Some(Ok(frame))) => frame,
                    Ok(_) => break,
                };
                let Ok(data) = frame.into_data() else { continue };
                let now = Instant::now();
                pending.extend_from_slice(&data);
                // Complete events only; what follows the last blank line waits for the next frame.
                let Some(end) = memchr::memmem::rfind(&pending, b"\n\n") else { continue };
                let complete = &pending[..end + 2];
                events.fetch_add(memchr::memmem::find_iter(complete, b"\nid: ").count() as u64, Ordering::Relaxed);
                if complete.starts_with(b"id: ") {
                    events.fetch_add(1, Ordering::Relaxed);
                }
                for at in memchr::memmem::find_iter(complete, MARKER) {
                    // Only the wamid in a `message.received` counts (a conversation event may
                    // quote the message too).
                    let event_line = memchr::memmem::rfind(&complete[..at], b"event: ").unwrap_or(0);
                    if !complete[event_line..].starts_with(b"event: message.received\n") {
                        continue;
                    }
                    let Some(seq) = bench_seq(&complete[at + MARKER.len()..]) else { continue };
                    deliveries.fetch_add(1, Ordering::Relaxed);
                    if let Some((epoch, sent_at)) = &timing
                        && let Some(sent) = sent_at.get(seq as usize).map(|s| s.load(Ordering::Relaxed))
                        && sent > 0
                    {
                        let arrived = (now - *epoch).as_nanos() as u64;
                        latencies.push((seq, arrived.saturating_sub(sent - 1)));
                    }
                }
                pending.drain(..end + 2);
            }
            latencies
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while opened.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 {
        println!("  WARNING: {failed} of {count} streams could not be opened");
    }
    Streams { tasks, stop, connected: opened.load(Ordering::Relaxed), deliveries, events }
}

/// The webhook seq that follows a bench wamid's marker (`MARKER` then 12 digits).
fn bench_seq(after_marker: &[u8]) -> Option<u64> {
    let digits = after_marker.get(..12)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Opens one stream and reads up to its opening comment; the body to read on.
async fn open_stream(addr: SocketAddr, path: &str) -> Result<hyper::body::Incoming, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(HOST, addr.to_string())
        .header(AUTHORIZATION, format!("Bearer {API_TOKEN}"))
        .body(Full::new(Bytes::new()))
        .expect("a request built from valid parts");
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    if response.status() != 200 {
        return Err(format!("status {}", response.status()));
    }
    let mut body = response.into_body();
    // The opening comment says the daemon's task for this stream is running.
    match tokio::time::timeout(Duration::from_secs(30), body.frame()).await {
        Ok(Some(Ok(_))) => Ok(body),
        _ => Err("no opening comment".to_owned()),
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring

async fn wait_for_metric(addr: SocketAddr, name: &str, wanted: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let value = metric(addr, name).await.unwrap_or(f64::NAN);
        if value == wanted || Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(connection);
    let request = Request::builder()
        .uri("/metrics")
        .header(HOST, addr.to_string())
        .body(Full::new(Bytes::new()))
        .expect("a request built from valid parts");
    let response = sender.send_request(request).await.ok()?;
    let body = response.into_body().collect().await.ok()?.to_bytes();
    let text = String::from_utf8_lossy(&body);
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn rss_mib(daemon: &Daemon) -> f64 {
    resident_mib(&daemon.pid().to_string()).map_or(f64::NAN, |(now, _)| now)
}

fn rss(daemon: &Daemon) -> String {
    resident_text(daemon.pid())
}

/// CPU of the daemon and of this process over a phase.
struct Cpu {
    daemon: u32,
    started: Instant,
    own: Option<f64>,
    theirs: Option<f64>,
}

impl Cpu {
    fn start(daemon: u32) -> Cpu {
        Cpu { daemon, started: Instant::now(), own: cpu_seconds("self"), theirs: cpu_seconds(&daemon.to_string()) }
    }

    fn stop(self) -> String {
        let wall = self.started.elapsed().as_secs_f64();
        let cores = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => format!("{:.2}", (b - a) / wall),
            _ => "?".to_owned(),
        };
        format!(
            "parley {} cores, bench {} cores",
            cores(self.theirs, cpu_seconds(&self.daemon.to_string())),
            cores(self.own, cpu_seconds("self"))
        )
    }
}

fn ms(nanos: Option<u64>) -> String {
    nanos.map_or_else(|| "-".to_owned(), |n| format!("{:.2} ms", n as f64 / 1e6))
}

/// All four platforms on with bench secrets; room for many streams.
fn bench_config(store: &Path) -> String {
    common::ingest_config(store, WHATSAPP_SECRET, PHONE_NUMBER_ID)
}
